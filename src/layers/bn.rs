//! BN, the batch normalisation layer of the SegNet fork of Caffe (`bn_param`): a learnt
//! per-channel scale and shift, blobs of shape `(1, C, 1, 1)`.
//!
//! - LEARN (in every phase): `y = scale * (x - mean) / sqrt(var + 1e-9) + shift` with the
//!   batch mean and biased variance of each channel over (N, H, W). Optional tops 1 and 2
//!   receive that batch mean and variance, shape `(1, C, 1, 1)` (variance before epsilon), as
//!   SegNet's `compute_bn_statistics` reads them.
//! - INFERENCE: `y = scale * x + shift`; the statistics have been folded into scale and shift.
//!
//! SegNet runs BN in place (top == bottom), so the layer keeps what backward needs: the
//! normalised input in LEARN mode, a copy of the input in INFERENCE mode when the scale's
//! gradient is wanted; nothing in a net that runs forward only.

use super::{Arity, Ctx, Layer, LayerContext, ParamDef};
use crate::backend::{Backend, ChannelDims, EpsPlacement, Io, NormAffine, NormGrad};
use crate::proto::bn_parameter::BnMode;
use crate::proto::{BnParameter, LayerParameter};
use crate::{Error, Result};

/// The fork's `var_eps_`, added to the variance before the square root.
pub const BN_EPS: f32 = 1e-9;

/// The layer's own buffers.
struct Bufs<B: Backend> {
    mean: B::Buf,
    var: B::Buf,
    std: B::Buf,
    /// LEARN: the normalised input of the last forward. INFERENCE in place, with the scale's
    /// gradient wanted: the input. Otherwise empty.
    cache: B::Buf,
}

struct Bn<B: Backend> {
    param: BnParameter,
    learn: bool,
    /// Number of tops (the statistics tops are optional).
    tops: usize,
    channels: usize,
    dims: ChannelDims,
    bufs: Option<Bufs<B>>,
    /// Whether `cache` holds the input of the last INFERENCE forward.
    cached_input: bool,
    /// The negative slope of the in-place ReLU the net fused into this layer (LEARN only).
    relu: Option<f32>,
    /// Whether the net may run backward (it keeps nothing for backward otherwise).
    backward: bool,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let param = lp.bn_param.clone().unwrap_or_default();
    let learn = param.bn_mode() == BnMode::Learn;
    Ok(Box::new(Bn::<B> {
        param,
        learn,
        tops: lp.top.len(),
        channels: 0,
        dims: ChannelDims::new(0, 0, 0),
        bufs: None,
        cached_input: false,
        relu: None,
        backward: true,
    }))
}

/// `(N, C, H*W)` of a blob of at most 4 axes, as the fork's legacy accessors read it.
fn legacy_dims(shape: &[usize]) -> Result<ChannelDims> {
    if shape.is_empty() || shape.len() > 4 {
        return Err(Error::Shape(format!("BN needs a blob of 1 to 4 axes (N, C, H, W), given shape {shape:?}")));
    }
    let at = |i: usize| shape.get(i).copied().unwrap_or(1);
    Ok(ChannelDims::new(at(0), at(1), at(2) * at(3)))
}

impl<B: Backend> Bn<B> {
    fn bufs(&mut self) -> Result<&mut Bufs<B>> {
        self.bufs.as_mut().ok_or_else(|| Error::Internal("BN run before reshape".into()))
    }
}

impl<B: Backend> Layer<B> for Bn<B> {
    fn type_name(&self) -> &'static str {
        "BN"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        if self.learn { Arity::range(1, 3) } else { Arity::exactly(1) }
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    /// In LEARN mode the ReLU runs inside the normalisation (see [`NormAffine::relu`]).
    fn fuse_relu(&mut self, negative_slope: Option<f32>) -> bool {
        self.relu = negative_slope.filter(|_| self.learn);
        self.learn
    }
    /// LEARN backward works from the normalized input it kept (and recomputes a fused ReLU's
    /// output from it); the other modes may read the input for the scale gradient.
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        !self.learn
    }
    fn backward_reads_top(&self, _top: usize) -> bool {
        false
    }
    fn forward_only(&mut self) -> Result<()> {
        self.backward = false;
        Ok(())
    }

    fn setup(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<ParamDef>> {
        self.channels = legacy_dims(bottoms[0])?.channels;
        let shape = vec![1, self.channels, 1, 1];
        // The fork fills with the given fillers; an absent one is Caffe's default filler
        // (constant 0).
        Ok(vec![
            ParamDef { shape: shape.clone(), filler: Some(self.param.scale_filler.clone().unwrap_or_default()) },
            ParamDef { shape, filler: Some(self.param.shift_filler.clone().unwrap_or_default()) },
        ])
    }

    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let dims = legacy_dims(bottoms[0])?;
        if dims.channels != self.channels {
            return Err(Error::Shape(format!(
                "bottom of shape {:?} has {} channels; the layer was set up for {}",
                bottoms[0], dims.channels, self.channels
            )));
        }
        self.dims = dims;
        // The cache is sized by forward, which knows whether it keeps anything.
        match &mut self.bufs {
            Some(_) => {}
            None => {
                let c = self.channels;
                self.bufs = Some(Bufs {
                    mean: be.alloc(c)?,
                    var: be.alloc(c)?,
                    std: be.alloc(c)?,
                    cache: be.alloc(0)?,
                });
            }
        }
        let mut tops = vec![bottoms[0].to_vec()];
        tops.resize(self.tops.max(1), vec![1, self.channels, 1, 1]);
        Ok(tops)
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let dims = self.dims;
        let keep_input = !self.learn && self.backward && ctx.in_place() && ctx.param_propagate(0);
        let (learn, relu, backward) = (self.learn, self.relu, self.backward);
        let bufs = self.bufs()?;
        // Allocated at the first forward that keeps something (not when the net is built).
        let cache_len = if (learn && backward) || keep_input { dims.count() } else { 0 };
        if be.len(&bufs.cache) != cache_len {
            bufs.cache = be.alloc(0)?;
            bufs.cache = be.alloc(cache_len)?;
        }
        {
            let u = ctx.unary()?;
            let (scale, shift) = (&u.params[0].data, &u.params[1].data);
            if learn {
                be.channel_norm_batch(
                    dims,
                    u.data,
                    BN_EPS,
                    EpsPlacement::InsideSqrt,
                    &mut bufs.mean,
                    &mut bufs.var,
                    &mut bufs.std,
                    Some(NormAffine { scale, shift, relu }),
                    backward.then_some(&mut bufs.cache),
                )?;
            } else {
                if let (true, Io::InPlace(x)) = (keep_input, &u.data) {
                    be.copy(x, &mut bufs.cache)?;
                }
                be.channel_affine(dims, u.data, Some(scale), Some(shift))?;
            }
        }
        if learn {
            for (t, stat) in [(1, &bufs.mean), (2, &bufs.var)] {
                if t < ctx.num_tops() {
                    be.copy(stat, &mut ctx.top_mut(t).data)?;
                }
            }
        }
        self.cached_input = keep_input;
        Ok(())
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let (p_scale, p_shift, p_x) = (ctx.param_propagate(0), ctx.param_propagate(1), propagate_down[0]);
        if !(p_scale || p_shift || p_x) {
            return Ok(());
        }
        let (dims, learn, cached_input, relu) = (self.dims, self.learn, self.cached_input, self.relu);
        let bufs = self.bufs()?;
        let mut u = ctx.unary_back()?;
        let (scale_blob, shift_blob) = u.params.split_at_mut(1);
        let (scale, dscale) = scale_blob[0].data_and_diff_mut();
        let (shift, dshift) = shift_blob[0].data_and_diff_mut();
        let (dscale, dshift) = (p_scale.then_some(dscale), p_shift.then_some(dshift));
        if learn {
            return be.channel_norm_backward(
                dims,
                NormGrad::BatchStats,
                Some(&bufs.cache),
                u.diff,
                &bufs.std,
                Some(NormAffine { scale, shift, relu }),
                dscale,
                dshift,
                p_x,
            );
        }
        let x = match (p_scale, u.in_place) {
            (false, _) => None,
            (true, false) => Some(u.x),
            (true, true) if cached_input => Some(&bufs.cache),
            (true, true) => return Err(Error::Internal("BN: the input was not kept for the scale gradient".into())),
        };
        be.channel_affine_backward(dims, x, u.diff, Some(scale), dscale, dshift, p_x)
    }
}
