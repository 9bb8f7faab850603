//! BatchReindex: `top[i] = bottom0[bottom1[i]]` along the first axis, with the indices given as
//! floats (truncated, as Caffe casts them); an index outside the batch is an error.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::blob::count_range;
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct BatchReindex {
    rows: usize,
    row_len: usize,
}

pub(super) fn create<B: Backend>(_: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(BatchReindex { rows: 0, row_len: 0 }))
}

impl<B: Backend> Layer<B> for BatchReindex {
    fn type_name(&self) -> &'static str {
        "BatchReindex"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(2)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    /// The indices get no gradient (Caffe refuses to compute one).
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom == 0
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (data, index) = (bottoms[0], bottoms[1]);
        if index.len() != 1 {
            return Err(Error::Shape(format!("the indices (bottom 1) must have one axis, given shape {index:?}")));
        }
        if data.is_empty() {
            return Err(Error::Shape("the data (bottom 0) must have at least one axis to index".into()));
        }
        self.rows = data[0];
        self.row_len = count_range(data, 1, data.len());
        let mut top = vec![index[0]];
        top.extend_from_slice(&data[1..]);
        Ok(vec![top])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let (data, index) = (&parts.bottoms[0].data, &parts.bottoms[1].data);
        be.gather_rows(index, self.rows, self.row_len, data, &mut parts.tops[0].data)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[1] {
            return Err(Error::Config("cannot backpropagate to the indices (bottom 1)".into()));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let mut parts = ctx.parts_back()?;
        let top = parts.tops[0];
        let [data, index] = parts.bottoms.as_mut_slice() else {
            return Err(Error::Internal("BatchReindex without two bottoms".into()));
        };
        let n = data.count();
        be.fill(&mut data.diff, 0, n, 0.0)?;
        be.scatter_add_rows(&index.data, self.rows, self.row_len, &top.diff, &mut data.diff)
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, forward_error, input, net};

    fn reindex(data: &[usize], index: &[usize]) -> String {
        format!(
            r#"force_backward: true {} {} layer {{ name: "r" type: "BatchReindex" bottom: "x" bottom: "i" top: "y" }}"#,
            input("x", data),
            input("i", index)
        )
    }

    #[test]
    fn batch_reindex_values_and_gradient() {
        let mut net = net(&reindex(&[3, 2], &[4])).unwrap();
        let be = net.backend().clone();
        net.blob_mut("x").unwrap().set_data(&be, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        net.blob_mut("i").unwrap().set_data(&be, &[2.0, 0.0, 2.5, 1.0]).unwrap();
        net.forward().unwrap();
        assert_eq!(net.blob("y").unwrap().shape(), [4, 2]);
        assert_eq!(net.blob("y").unwrap().data_to_vec(&be).unwrap(), [5.0, 6.0, 1.0, 2.0, 5.0, 6.0, 3.0, 4.0]);
        net.blob_mut("y").unwrap().set_diff(&be, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        net.backward().unwrap();
        assert_eq!(net.blob("x").unwrap().diff_to_vec(&be).unwrap(), [3.0, 4.0, 7.0, 8.0, 6.0, 8.0]);
    }

    #[test]
    fn batch_reindex_errors() {
        assert_contains(
            &build_error(&reindex(&[3, 2], &[2, 1])),
            "the indices (bottom 1) must have one axis, given shape [2, 1]",
        );
        let e = forward_error(&reindex(&[3, 2], &[2]), &[("i", &[0.0, 3.0])]);
        assert_contains(&e, "layer `r` (type BatchReindex): index 3 at position 1 is outside the valid range [0, 3)");
        let e = forward_error(&reindex(&[3, 2], &[2]), &[("i", &[-1.0, 0.0])]);
        assert_contains(&e, "index -1 at position 0");
    }
}
