//! MVN, mean-variance normalisation (Caffe's `mvn_param`): each row (the elements of one
//! channel of one image, or of one whole image with `across_channels`) minus its mean and,
//! with `normalize_variance` (the default), divided by `sqrt(var) + eps` (Caffe adds epsilon
//! after the square root; the variance is the biased one).
//!
//! It runs in place too: the normalised values backward needs are kept by the layer (Caffe
//! reads them from the top, which a later in-place layer may have overwritten).

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Backend, ChannelDims, EpsPlacement, Io, NormGrad};
use crate::blob::count_range;
use crate::proto::{LayerParameter, MvnParameter};
use crate::{Error, Result};

struct Bufs<B: Backend> {
    mean: B::Buf,
    var: B::Buf,
    /// `sqrt(var) + eps`, or ones without variance normalisation.
    std: B::Buf,
    /// The normalised output of the last forward (with variance normalisation).
    x_norm: B::Buf,
}

struct Mvn<B: Backend> {
    param: MvnParameter,
    dims: ChannelDims,
    bufs: Option<Bufs<B>>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(Mvn::<B> { param: lp.mvn_param.unwrap_or_default(), dims: ChannelDims::new(0, 0, 0), bufs: None }))
}

impl<B: Backend> Mvn<B> {
    fn bufs(&mut self) -> Result<&mut Bufs<B>> {
        self.bufs.as_mut().ok_or_else(|| Error::Internal("MVN run before reshape".into()))
    }
}

impl<B: Backend> Layer<B> for Mvn<B> {
    fn type_name(&self) -> &'static str {
        "MVN"
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
        let shape = bottoms[0];
        let row_axes = if self.param.across_channels() { 1 } else { 2 };
        if shape.len() < row_axes {
            return Err(Error::Shape(format!("MVN needs a bottom of at least {row_axes} axes, given shape {shape:?}")));
        }
        self.dims = ChannelDims::new(1, count_range(shape, 0, row_axes), count_range(shape, row_axes, shape.len()));
        let (rows, count) = (self.dims.channels, self.dims.count());
        let x_norm_len = if self.param.normalize_variance() { count } else { 0 };
        let fresh = match &self.bufs {
            Some(b) => be.len(&b.mean) != rows || be.len(&b.x_norm) != x_norm_len,
            None => true,
        };
        if fresh {
            let mut std = be.alloc(rows)?;
            be.fill(&mut std, 0, rows, 1.0)?;
            self.bufs = Some(Bufs { mean: be.alloc(rows)?, var: be.alloc(rows)?, std, x_norm: be.alloc(x_norm_len)? });
        }
        Ok(vec![shape.to_vec()])
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let (dims, eps, nv) = (self.dims, self.param.eps(), self.param.normalize_variance());
        let bufs = self.bufs()?;
        let u = ctx.unary()?;
        if nv {
            return be.channel_norm_batch(
                dims,
                u.data,
                eps,
                EpsPlacement::OutsideSqrt,
                &mut bufs.mean,
                &mut bufs.var,
                &mut bufs.std,
                None,
                Some(&mut bufs.x_norm),
            );
        }
        let x = match &u.data {
            Io::InPlace(y) => &**y,
            Io::Pair(x, _) => *x,
        };
        be.channel_moments(dims, x, &mut bufs.mean, &mut bufs.var)?;
        be.channel_normalize(dims, u.data, &bufs.mean, &bufs.std)
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let (dims, nv) = (self.dims, self.param.normalize_variance());
        let bufs = self.bufs()?;
        let u = ctx.unary_back()?;
        let (grad, x_norm) = if nv { (NormGrad::BatchStats, Some(&bufs.x_norm)) } else { (NormGrad::MeanOnly, None) };
        be.channel_norm_backward(dims, grad, x_norm, u.diff, &bufs.std, None, None, None, true)
    }
}
