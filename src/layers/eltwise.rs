//! Eltwise: element-wise PROD, SUM (with a coefficient per bottom) or MAX of two or more
//! bottoms of one shape.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::blob::shape_string;
use crate::proto::LayerParameter;
use crate::proto::eltwise_parameter::EltwiseOp;
use crate::{Error, Result};

struct Eltwise<B: Backend> {
    op: EltwiseOp,
    coeffs: Vec<f32>,
    stable_prod_grad: bool,
    /// MAX: the index of the bottom that won each element.
    argmax: Option<B::Buf>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.eltwise_param.clone().unwrap_or_default();
    let n = lp.bottom.len();
    if !p.coeff.is_empty() && p.coeff.len() != n {
        return Err(Error::Config(format!(
            "eltwise_param gives {} coefficients for {n} bottoms (give one per bottom, or none)",
            p.coeff.len()
        )));
    }
    // Caffe rejects coefficients for PROD only; MAX ignores them.
    if p.operation() == EltwiseOp::Prod && !p.coeff.is_empty() {
        return Err(Error::Config("eltwise_param.coeff is only for operation SUM, not PROD".into()));
    }
    let coeffs = if p.coeff.is_empty() { vec![1.0; n] } else { p.coeff.clone() };
    Ok(Box::new(Eltwise::<B> { op: p.operation(), coeffs, stable_prod_grad: p.stable_prod_grad(), argmax: None }))
}

impl<B: Backend> Layer<B> for Eltwise<B> {
    fn type_name(&self) -> &'static str {
        "Eltwise"
    }
    fn bottoms(&self) -> Arity {
        Arity::at_least(2)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let first = bottoms[0];
        if let Some((i, b)) = bottoms.iter().enumerate().skip(1).find(|(_, b)| **b != first) {
            return Err(Error::Shape(format!(
                "all bottoms must have one shape: bottom 0 is {}, bottom {i} is {}",
                shape_string(first),
                shape_string(b)
            )));
        }
        if self.op == EltwiseOp::Max {
            let count: usize = first.iter().product();
            if self.argmax.as_ref().map(|m| be.len(m)) != Some(count) {
                self.argmax = Some(be.alloc(count)?);
            }
        }
        Ok(vec![first.to_vec()])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let xs: Vec<&B::Buf> = parts.bottoms.iter().map(|b| &b.data).collect();
        let y = &mut parts.tops[0].data;
        match self.op {
            EltwiseOp::Prod => be.eltwise_prod(&xs, y),
            EltwiseOp::Sum => be.eltwise_sum(&xs, &self.coeffs, y),
            EltwiseOp::Max => {
                let argmax = self.argmax.as_mut().ok_or_else(|| Error::Internal("forward before reshape".into()))?;
                be.eltwise_max(&xs, y, argmax)
            }
        }
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let mut parts = ctx.parts_back()?;
        let top = parts.tops[0];
        let (xs, dxs): (Vec<&B::Buf>, Vec<&mut B::Buf>) = parts
            .bottoms
            .iter_mut()
            .map(|b| {
                let crate::blob::Blob { data, diff, .. } = &mut **b;
                (&*data, diff)
            })
            .unzip();
        for (i, dx) in dxs.into_iter().enumerate() {
            if !propagate_down[i] {
                continue;
            }
            match self.op {
                EltwiseOp::Prod => be.eltwise_prod_backward(&xs, i, &top.data, &top.diff, self.stable_prod_grad, dx)?,
                EltwiseOp::Sum => {
                    be.copy(&top.diff, dx)?;
                    if self.coeffs[i] != 1.0 {
                        be.scal(self.coeffs[i], dx)?;
                    }
                }
                EltwiseOp::Max => {
                    let argmax =
                        self.argmax.as_ref().ok_or_else(|| Error::Internal("backward before forward".into()))?;
                    be.eltwise_max_backward(argmax, i, &top.diff, dx)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, input, net};

    fn eltwise(a: &[usize], b: &[usize], param: &str) -> String {
        format!(
            r#"{} {} layer {{ name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "y" eltwise_param {{ {param} }} }}"#,
            input("a", a),
            input("b", b)
        )
    }

    #[test]
    fn eltwise_errors() {
        assert_contains(
            &build_error(&eltwise(&[2], &[2], "coeff: 1")),
            "eltwise_param gives 1 coefficients for 2 bottoms",
        );
        assert_contains(
            &build_error(&eltwise(&[2], &[2], "operation: PROD coeff: 1 coeff: 2")),
            "only for operation SUM, not PROD",
        );
        let e = build_error(&eltwise(&[2, 3], &[3, 2], ""));
        assert_contains(&e, "all bottoms must have one shape: bottom 0 is 2 3 (6), bottom 1 is 3 2 (6)");
        let e =
            build_error(&format!(r#"{} layer {{ name: "e" type: "Eltwise" bottom: "a" top: "y" }}"#, input("a", &[2])));
        assert_contains(&e, "takes at least 2 bottom blob(s), given 1");
        let e = build_error(&format!(
            r#"{} {} layer {{ name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "a" }}"#,
            input("a", &[2]),
            input("b", &[2])
        ));
        assert_contains(&e, "cannot run in place");
    }

    /// Caffe accepts (and ignores) coefficients for MAX; ties between bottoms 0 and 1 go to 1.
    #[test]
    fn eltwise_max_ignores_coeffs_and_routes_ties_to_bottom_1() {
        let mut net =
            net(&format!("force_backward: true {}", eltwise(&[3], &[3], "operation: MAX coeff: 5 coeff: 7"))).unwrap();
        let be = net.backend().clone();
        net.blob_mut("a").unwrap().set_data(&be, &[1.0, 2.0, 3.0]).unwrap();
        net.blob_mut("b").unwrap().set_data(&be, &[1.0, 1.0, 4.0]).unwrap();
        net.forward().unwrap();
        assert_eq!(net.blob("y").unwrap().data_to_vec(&be).unwrap(), [1.0, 2.0, 4.0]);
        net.blob_mut("y").unwrap().set_diff(&be, &[10.0, 20.0, 30.0]).unwrap();
        net.backward().unwrap();
        assert_eq!(net.blob("a").unwrap().diff_to_vec(&be).unwrap(), [0.0, 20.0, 0.0]);
        assert_eq!(net.blob("b").unwrap().diff_to_vec(&be).unwrap(), [10.0, 0.0, 30.0]);
    }
}
