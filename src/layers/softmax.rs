//! Softmax over one axis (`softmax_param.axis`, default 1), in place or not.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Backend, ClassAxis};
use crate::blob::canonical_axis;
use crate::proto::LayerParameter;
use crate::Result;

struct Softmax {
    axis_param: i32,
    axis: ClassAxis,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let axis_param = lp.softmax_param.as_ref().map(|p| p.axis()).unwrap_or(1);
    Ok(Box::new(Softmax { axis_param, axis: ClassAxis { outer: 0, classes: 0, inner: 0 } }))
}

impl<B: Backend> Layer<B> for Softmax {
    fn type_name(&self) -> &'static str {
        "Softmax"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        let axis = canonical_axis(self.axis_param, shape.len())?;
        self.axis = ClassAxis::of(shape, axis);
        Ok(vec![shape.to_vec()])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let u = ctx.unary()?;
        be.softmax_forward(&self.axis, u.data)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let u = ctx.unary_back()?;
        be.softmax_backward(&self.axis, u.y, u.diff)
    }
}

#[cfg(test)]
mod tests {
    use super::super::loss::testing::build_error;

    #[test]
    fn axis_out_of_range() {
        let text = r#"
            layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
            layer { name: "sm" type: "Softmax" bottom: "x" top: "y" softmax_param { axis: 2 } }"#;
        assert_eq!(build_error(text), "layer `sm` (type Softmax): axis 2 out of range for a blob of 2 axes");
    }
}
