//! Reduction: every axis from `axis` on summed away (SUM, ASUM, SUMSQ or MEAN), times `coeff`.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::Result;
use crate::backend::{Backend, ReduceOp};
use crate::blob::{canonical_axis, count_range};
use crate::proto::LayerParameter;
use crate::proto::reduction_parameter::ReductionOp;

struct Reduction {
    op: ReductionOp,
    axis: i32,
    coeff: f32,
    num: usize,
    dim: usize,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.reduction_param.unwrap_or_default();
    Ok(Box::new(Reduction { op: p.operation(), axis: p.axis(), coeff: p.coeff(), num: 0, dim: 0 }))
}

impl Reduction {
    /// The primitive's operation and coefficient: MEAN is SUM with `coeff / dim`, as Caffe
    /// computes it (in `f32`).
    fn primitive(&self) -> (ReduceOp, f32) {
        match self.op {
            ReductionOp::Sum => (ReduceOp::Sum, self.coeff),
            ReductionOp::Mean => (ReduceOp::Sum, self.coeff / self.dim as f32),
            ReductionOp::Asum => (ReduceOp::Asum, self.coeff),
            ReductionOp::Sumsq => (ReduceOp::Sumsq, self.coeff),
        }
    }
}

impl<B: Backend> Layer<B> for Reduction {
    fn type_name(&self) -> &'static str {
        "Reduction"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        let axis = canonical_axis(self.axis, shape.len())?;
        self.num = count_range(shape, 0, axis);
        self.dim = count_range(shape, axis, shape.len());
        Ok(vec![shape[..axis].to_vec()])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let (op, coeff) = self.primitive();
        let mut parts = ctx.parts()?;
        be.reduce_forward(op, self.num, self.dim, coeff, &parts.bottoms[0].data, &mut parts.tops[0].data)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let (op, coeff) = self.primitive();
        let mut parts = ctx.parts_back()?;
        let dy = &parts.tops[0].diff;
        let (x, dx) = parts.bottoms[0].data_and_diff_mut();
        be.reduce_backward(op, self.num, self.dim, coeff, x, dy, dx)
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, forwarded, on_input};

    fn reduce(shape: &[usize], param: &str) -> String {
        on_input(shape, "Reduction", "reduction_param", param)
    }

    #[test]
    fn reduction_values_and_shapes() {
        let x = [1.0, -2.0, 3.0, -4.0, 5.0, -6.0];
        for (param, shape, want) in [
            ("", vec![], vec![-3.0]),
            ("operation: ASUM axis: 1 coeff: 2", vec![2], vec![12.0, 30.0]),
            ("operation: SUMSQ axis: -1", vec![2, 3], vec![1.0, 4.0, 9.0, 16.0, 25.0, 36.0]),
            ("operation: MEAN axis: 1 coeff: 3", vec![2], vec![2.0, -5.0]),
        ] {
            let net = forwarded(&reduce(&[2, 3, 1], param), &[("x", &x)]);
            let be = net.backend().clone();
            let y = net.blob("y").unwrap();
            assert_eq!(y.shape(), shape.as_slice(), "{param}");
            assert_eq!(y.data_to_vec(&be).unwrap(), want, "{param}");
        }
    }

    #[test]
    fn reduction_axis_out_of_range() {
        assert_contains(&build_error(&reduce(&[2, 3], "axis: 2")), "axis 2 out of range for a blob of 2 axes");
    }
}
