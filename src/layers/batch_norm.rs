//! BatchNorm, BVLC Caffe's batch normalisation (no scale or shift: a Scale layer follows it).
//!
//! Its three blobs are the running mean `(C)`, the running variance `(C)` and a scale factor
//! `(1)`; the stored statistics are the running sums divided by that factor. With batch
//! statistics (the default in TRAIN) forward also updates them, as Caffe does:
//! `factor = factor * f + 1`, `mean_sum = mean + f * mean_sum`,
//! `var_sum = m / (m - 1) * var + f * var_sum` (`f` = `moving_average_fraction`, `m` the
//! elements per channel). With `use_global_stats` (the default in TEST) it normalises by the
//! stored statistics, `mean_sum / factor` and `var_sum / factor` (all zeros when the factor is
//! 0). The blobs are never learnt: their `ParamSpec`s default to lr_mult 0 and a non-zero
//! lr_mult is an error, as in Caffe.

use super::{Arity, Ctx, Layer, LayerContext, ParamDef};
use crate::backend::{Backend, ChannelDims, EpsPlacement, NormGrad};
use crate::blob::count_range;
use crate::proto::{LayerParameter, ParamSpec, Phase};
use crate::{Error, Result};

struct Bufs<B: Backend> {
    mean: B::Buf,
    var: B::Buf,
    std: B::Buf,
    /// The normalised input of the last forward with batch statistics (Caffe's `x_norm_`):
    /// later in-place layers may overwrite the top.
    x_norm: B::Buf,
}

struct BatchNorm<B: Backend> {
    use_global_stats: bool,
    moving_average_fraction: f32,
    eps: f32,
    channels: usize,
    dims: ChannelDims,
    bufs: Option<Bufs<B>>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.batch_norm_param.unwrap_or_default();
    for (i, spec) in lp.param.iter().enumerate().take(3) {
        if spec.lr_mult() != 0.0 {
            return Err(Error::Config(format!(
                "cannot configure batch normalization statistics as layer parameters: param {i} has lr_mult {}, \
                 which must be 0",
                spec.lr_mult()
            )));
        }
    }
    Ok(Box::new(BatchNorm::<B> {
        use_global_stats: p.use_global_stats.unwrap_or(cx.phase == Phase::Test),
        moving_average_fraction: p.moving_average_fraction(),
        eps: p.eps(),
        channels: 0,
        dims: ChannelDims::new(0, 0, 0),
        bufs: None,
    }))
}

impl<B: Backend> BatchNorm<B> {
    fn bufs(&mut self) -> Result<&mut Bufs<B>> {
        self.bufs.as_mut().ok_or_else(|| Error::Internal("BatchNorm run before reshape".into()))
    }
}

/// Caffe's channel count: axis 1, or 1 for a blob of one axis.
fn channels_of(shape: &[usize]) -> Result<usize> {
    match shape.len() {
        0 => Err(Error::Shape("BatchNorm needs a blob of at least 1 axis, given a scalar".into())),
        1 => Ok(1),
        _ => Ok(shape[1]),
    }
}

impl<B: Backend> Layer<B> for BatchNorm<B> {
    fn type_name(&self) -> &'static str {
        "BatchNorm"
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
    fn default_param_spec(&self, _index: usize) -> Option<ParamSpec> {
        Some(ParamSpec { lr_mult: Some(0.0), ..Default::default() })
    }

    fn setup(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<ParamDef>> {
        self.channels = channels_of(bottoms[0])?;
        let c = self.channels;
        Ok(vec![
            ParamDef { shape: vec![c], filler: None },
            ParamDef { shape: vec![c], filler: None },
            ParamDef { shape: vec![1], filler: None },
        ])
    }

    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        let c = channels_of(shape)?;
        if c != self.channels {
            return Err(Error::Shape(format!(
                "bottom of shape {shape:?} has {c} channels; the layer was set up for {}",
                self.channels
            )));
        }
        self.dims = ChannelDims::new(shape[0], c, count_range(shape, 2, shape.len()));
        let count = self.dims.count();
        let x_norm_len = if self.use_global_stats { 0 } else { count };
        match &mut self.bufs {
            Some(b) if be.len(&b.x_norm) == x_norm_len => {}
            Some(b) => b.x_norm = be.alloc(x_norm_len)?,
            None => {
                self.bufs = Some(Bufs {
                    mean: be.alloc(c)?,
                    var: be.alloc(c)?,
                    std: be.alloc(c)?,
                    x_norm: be.alloc(x_norm_len)?,
                })
            }
        }
        Ok(vec![shape.to_vec()])
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let (dims, eps, maf, global) = (self.dims, self.eps, self.moving_average_fraction, self.use_global_stats);
        let bufs = self.bufs()?;
        let mut u = ctx.unary()?;
        let mut factor = [0.0f32];
        be.download(&u.params[2].data, 0, &mut factor)?;
        if global {
            let f = if factor[0] == 0.0 { 0.0 } else { 1.0 / factor[0] };
            be.copy(&u.params[0].data, &mut bufs.mean)?;
            be.scal(f, &mut bufs.mean)?;
            be.copy(&u.params[1].data, &mut bufs.var)?;
            be.scal(f, &mut bufs.var)?;
            be.channel_std(&bufs.var, eps, EpsPlacement::InsideSqrt, &mut bufs.std)?;
            return be.channel_normalize(dims, u.data, &bufs.mean, &bufs.std);
        }
        be.channel_norm_batch(
            dims,
            u.data,
            eps,
            EpsPlacement::InsideSqrt,
            &mut bufs.mean,
            &mut bufs.var,
            &mut bufs.std,
            None,
            Some(&mut bufs.x_norm),
        )?;
        factor[0] *= maf;
        factor[0] += 1.0;
        be.upload(&factor, &mut u.params[2].data, 0)?;
        be.axpby(1.0, &bufs.mean, maf, &mut u.params[0].data)?;
        let m = dims.per_channel();
        let correction = if m > 1 { m as f32 / (m - 1) as f32 } else { 1.0 };
        be.axpby(correction, &bufs.var, maf, &mut u.params[1].data)
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let (dims, global) = (self.dims, self.use_global_stats);
        let bufs = self.bufs()?;
        let u = ctx.unary_back()?;
        if global {
            be.channel_norm_backward(dims, NormGrad::Fixed, None, u.diff, &bufs.std, None, None, None, true)
        } else {
            be.channel_norm_backward(
                dims,
                NormGrad::BatchStats,
                Some(&bufs.x_norm),
                u.diff,
                &bufs.std,
                None,
                None,
                None,
                true,
            )
        }
    }
}
