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
