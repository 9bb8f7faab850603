//! Split (one bottom copied to every top; the net inserts it where a blob has several readers)
//! and Silence (consumes its bottoms, produces nothing).

use super::{Arity, Ctx, Layer, LayerContext};
use crate::Result;
use crate::backend::Backend;
use crate::proto::LayerParameter;

/// Split: each top is a copy of the bottom (Caffe shares the data; the net gives every top its
/// own storage, so it is copied), and the bottom's gradient is the sum of the tops' gradients,
/// added in top order.
struct Split {
    tops: usize,
}

pub(super) fn create_split<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(Split { tops: lp.top.len() }))
}

impl<B: Backend> Layer<B> for Split {
    fn type_name(&self) -> &'static str {
        "Split"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::at_least(1)
    }
    /// Backward adds gradients; no values.
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        false
    }
    fn backward_reads_top(&self, _top: usize) -> bool {
        false
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok(vec![bottoms[0].to_vec(); self.tops])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let bottom = parts.bottoms[0];
        for t in parts.tops.iter_mut() {
            be.copy(&bottom.data, &mut t.data)?;
        }
        Ok(())
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let mut parts = ctx.parts_back()?;
        let bottom = &mut parts.bottoms[0];
        be.copy(&parts.tops[0].diff, &mut bottom.diff)?;
        for t in &parts.tops[1..] {
            be.axpby(1.0, &t.diff, 1.0, &mut bottom.diff)?;
        }
        Ok(())
    }
}

/// Silence: no tops; its backward zeroes the bottoms' gradients.
struct Silence;

pub(super) fn create_silence<B: Backend>(_: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(Silence))
}

impl<B: Backend> Layer<B> for Silence {
    fn type_name(&self) -> &'static str {
        "Silence"
    }
    fn bottoms(&self) -> Arity {
        Arity::at_least(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(0)
    }
    fn reshape(&mut self, _: &B, _: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok(Vec::new())
    }
    fn forward(&mut self, _: &B, _: &mut Ctx<'_, B>) -> Result<()> {
        Ok(())
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let mut parts = ctx.parts_back()?;
        for (b, &down) in parts.bottoms.iter_mut().zip(propagate_down) {
            if down {
                let n = b.count();
                be.fill(&mut b.diff, 0, n, 0.0)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, input, net};

    #[test]
    fn split_copies_and_sums_gradients_in_top_order() {
        let body = format!(
            r#"force_backward: true {} layer {{ name: "s" type: "Split" bottom: "x" top: "a" top: "b" top: "c" }}"#,
            input("x", &[3])
        );
        let mut net = net(&body).unwrap();
        let be = net.backend().clone();
        net.blob_mut("x").unwrap().set_data(&be, &[1.0, 2.0, 3.0]).unwrap();
        net.forward().unwrap();
        for (t, d) in [("a", [1.0, 0.0, 1e8]), ("b", [2.0, 1.0, 1.0]), ("c", [3.0, -1.0, -1e8])] {
            assert_eq!(net.blob(t).unwrap().data_to_vec(&be).unwrap(), [1.0, 2.0, 3.0]);
            net.blob_mut(t).unwrap().set_diff(&be, &d).unwrap();
        }
        net.backward().unwrap();
        // (1e8 + 1) - 1e8 in f32 is 0: the tops are added in order.
        assert_eq!(net.blob("x").unwrap().diff_to_vec(&be).unwrap(), [6.0, 0.0, 0.0]);
    }

    #[test]
    fn split_and_silence_arity() {
        let e =
            build_error(&format!(r#"{} layer {{ name: "s" type: "Silence" bottom: "x" top: "y" }}"#, input("x", &[1])));
        assert_contains(&e, "takes exactly 0 top blob(s), given 1");
        let e =
            build_error(&format!(r#"{} layer {{ name: "s" type: "Split" bottom: "x" top: "x" }}"#, input("x", &[1])));
        assert_contains(&e, "cannot run in place");
    }
}
