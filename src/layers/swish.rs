//! Swish: `y = x * sigmoid(beta * x)`, in place or not. The sigmoid values are kept from
//! forward for backward, as Caffe keeps them in its internal Sigmoid layer's top.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct Swish<B: Backend> {
    beta: f32,
    /// `sigmoid(beta * x)` of the last forward.
    sig: Option<B::Buf>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let beta = lp.swish_param.as_ref().map(|p| p.beta()).unwrap_or(1.0);
    Ok(Box::new(Swish::<B> { beta, sig: None }))
}

impl<B: Backend> Layer<B> for Swish<B> {
    fn type_name(&self) -> &'static str {
        "Swish"
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
    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let count: usize = bottoms[0].iter().product();
        if self.sig.as_ref().map(|s| be.len(s)) != Some(count) {
            self.sig = Some(be.alloc(count)?);
        }
        Ok(vec![bottoms[0].to_vec()])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let sig = self.sig.as_mut().ok_or_else(|| Error::Internal("Swish forward before reshape".into()))?;
        let u = ctx.unary()?;
        be.swish_forward(self.beta, u.data, sig)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let sig = self.sig.as_ref().ok_or_else(|| Error::Internal("Swish backward before reshape".into()))?;
        let u = ctx.unary_back()?;
        be.swish_backward(self.beta, u.y, sig, u.diff)
    }
}
