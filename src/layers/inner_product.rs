//! InnerProduct: a fully connected layer, `top = bottom * W^T + b` over the axes from `axis`.

use super::{Arity, Ctx, Layer, LayerContext, ParamDef};
use crate::backend::{Backend, Gemm};
use crate::blob::{canonical_axis, count_range};
use crate::proto::{InnerProductParameter, LayerParameter};
use crate::{Error, Result};

struct InnerProduct {
    param: InnerProductParameter,
    n: usize,
    k: usize,
    m: usize,
    axis: usize,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let param = super::required(&lp.inner_product_param, "inner_product_param")?.clone();
    if param.num_output() == 0 {
        return Err(Error::Config("inner_product_param.num_output must be positive".into()));
    }
    Ok(Box::new(InnerProduct { n: param.num_output() as usize, param, k: 0, m: 0, axis: 0 }))
}

impl<B: Backend> Layer<B> for InnerProduct {
    fn type_name(&self) -> &'static str {
        "InnerProduct"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }

    fn setup(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<ParamDef>> {
        let shape = bottoms[0];
        self.axis = canonical_axis(self.param.axis(), shape.len())?;
        self.k = count_range(shape, self.axis, shape.len());
        let wshape = if self.param.transpose() { vec![self.k, self.n] } else { vec![self.n, self.k] };
        let mut defs = vec![ParamDef { shape: wshape, filler: Some(self.param.weight_filler.clone().unwrap_or_default()) }];
        if self.param.bias_term() {
            defs.push(ParamDef { shape: vec![self.n], filler: Some(self.param.bias_filler.clone().unwrap_or_default()) });
        }
        Ok(defs)
    }

    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        let axis = canonical_axis(self.param.axis(), shape.len())?;
        let k = count_range(shape, axis, shape.len());
        if k != self.k {
            return Err(Error::Shape(format!(
                "input of shape {shape:?} has {k} features from axis {axis}; the weights expect {}",
                self.k
            )));
        }
        self.m = count_range(shape, 0, axis);
        let mut top = shape[..axis].to_vec();
        top.push(self.n);
        Ok(vec![top])
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let (x, y) = (&parts.bottoms[0].data, &mut parts.tops[0].data);
        let g = Gemm::new(false, !self.param.transpose(), self.m, self.n, self.k);
        be.gemm(&g, x, &parts.params[0].data, y)?;
        if self.param.bias_term() {
            be.bias_forward(self.m, self.n, 1, &parts.params[1].data, y)?;
        }
        Ok(())
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let (w_prop, b_prop) = (ctx.param_propagate(0), self.param.bias_term() && ctx.param_propagate(1));
        let mut parts = ctx.parts_back()?;
        let dy = &parts.tops[0].diff;
        let (x, dx) = parts.bottoms[0].data_and_diff_mut();
        let (m, n, k) = (self.m, self.n, self.k);
        if w_prop {
            let g = if self.param.transpose() {
                Gemm::new(true, false, k, n, m).scaled(1.0, 1.0)
            } else {
                Gemm::new(true, false, n, k, m).scaled(1.0, 1.0)
            };
            let (a, b) = if self.param.transpose() { (x, dy) } else { (dy, x) };
            be.gemm(&g, a, b, &mut parts.params[0].diff)?;
        }
        if b_prop {
            be.bias_backward(m, n, 1, dy, &mut parts.params[1].diff)?;
        }
        if propagate_down[0] {
            let g = Gemm::new(false, self.param.transpose(), m, k, n);
            be.gemm(&g, dy, &parts.params[0].data, dx)?;
        }
        Ok(())
    }

    fn flops(&self, _: &[&[usize]], _: &[&[usize]]) -> u64 {
        2 * (self.m * self.n * self.k) as u64
    }
}
