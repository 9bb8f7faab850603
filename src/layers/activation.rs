//! Element-wise activation layers (ReLU, ...): each maps one bottom to one top, in place or
//! not, through the backend's activation primitive.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Activation, Backend};
use crate::proto::LayerParameter;
use crate::Result;

/// A layer computing one [`Activation`].
struct ActivationLayer {
    name: &'static str,
    f: Activation,
}

pub(super) fn create_relu<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let slope = lp.relu_param.as_ref().map(|p| p.negative_slope()).unwrap_or(0.0);
    Ok(Box::new(ActivationLayer { name: "ReLU", f: Activation::ReLU { negative_slope: slope } }))
}

impl<B: Backend> Layer<B> for ActivationLayer {
    fn type_name(&self) -> &'static str {
        self.name
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
        Ok(vec![bottoms[0].to_vec()])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let u = ctx.unary()?;
        be.activation_forward(self.f, u.data)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let u = ctx.unary_back()?;
        be.activation_backward(self.f, u.x, u.y, u.diff)
    }
}
