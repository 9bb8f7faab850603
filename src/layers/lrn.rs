//! LRN, local response normalisation (Caffe's `lrn_param`): `y = x * scale^-beta` with
//! `scale = k + alpha / n * sum(x^2)` over a window of `local_size` neighbouring channels
//! (ACROSS_CHANNELS, `n = local_size`) or `scale = 1 + alpha / n * sum(x^2)` over a square of
//! side `local_size` in the same plane (WITHIN_CHANNEL, `n = local_size^2`; `k` is unused, as
//! in Caffe's composition of pooling and power layers). Bottoms of 4 axes.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Backend, LrnSpec};
use crate::proto::LayerParameter;
use crate::proto::lrn_parameter::NormRegion;
use crate::{Error, Result};

struct Lrn<B: Backend> {
    spec: LrnSpec,
    /// The denominator's base of the last forward, for backward.
    scale: Option<B::Buf>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.lrn_param.unwrap_or_default();
    let size = p.local_size() as usize;
    if size.is_multiple_of(2) {
        return Err(Error::Config(format!("LRN only supports odd values for local_size, given {size}")));
    }
    Ok(Box::new(Lrn::<B> {
        spec: LrnSpec {
            num: 0,
            channels: 0,
            height: 0,
            width: 0,
            size,
            alpha: p.alpha(),
            beta: p.beta(),
            k: p.k(),
            within_channel: p.norm_region() == NormRegion::WithinChannel,
        },
        scale: None,
    }))
}

impl<B: Backend> Layer<B> for Lrn<B> {
    fn type_name(&self) -> &'static str {
        "LRN"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        let &[num, channels, height, width] = shape else {
            return Err(Error::Shape(format!(
                "LRN needs a bottom of 4 axes (num, channels, height, width), given shape {shape:?}"
            )));
        };
        self.spec = LrnSpec { num, channels, height, width, ..self.spec };
        let count = self.spec.count();
        if self.scale.as_ref().map(|s| be.len(s)) != Some(count) {
            self.scale = Some(be.alloc(count)?);
        }
        Ok(vec![shape.to_vec()])
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let scale = self.scale.as_mut().ok_or_else(|| Error::Internal("LRN run before reshape".into()))?;
        let mut parts = ctx.parts()?;
        be.lrn_forward(&self.spec, &parts.bottoms[0].data, scale, &mut parts.tops[0].data)
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let scale = self.scale.as_ref().ok_or_else(|| Error::Internal("LRN run before reshape".into()))?;
        let mut parts = ctx.parts_back()?;
        let top = parts.tops[0];
        let (x, dx) = parts.bottoms[0].data_and_diff_mut();
        be.lrn_backward(&self.spec, x, &top.data, scale, &top.diff, dx)
    }

    fn flops(&self, _: &[&[usize]], _: &[&[usize]]) -> u64 {
        let window = if self.spec.within_channel { self.spec.size * self.spec.size } else { 2 };
        (self.spec.count() * (window + 4)) as u64
    }
}
