//! CUDA normalisation primitives: not implemented yet (each returns an error).

use super::{Cuda, CudaBuf};
use crate::backend::{ChannelDims, EpsPlacement, Io, LrnSpec, NormGrad, Normalization};
use crate::{Error, Result};

fn not_yet(what: &str) -> Error {
    Error::Internal(format!("{what} is not implemented on the CUDA backend yet"))
}

#[allow(clippy::too_many_arguments)]
impl Normalization for Cuda {
    fn channel_moments(&self, _dims: ChannelDims, _x: &CudaBuf, _mean: &mut CudaBuf, _var: &mut CudaBuf) -> Result<()> {
        Err(not_yet("channel_moments"))
    }

    fn channel_std(&self, _var: &CudaBuf, _eps: f32, _placement: EpsPlacement, _std: &mut CudaBuf) -> Result<()> {
        Err(not_yet("channel_std"))
    }

    fn channel_norm_batch(&self, _dims: ChannelDims, _io: Io<'_, CudaBuf>, _eps: f32, _placement: EpsPlacement, _mean: &mut CudaBuf, _var: &mut CudaBuf, _std: &mut CudaBuf, _affine: Option<(&CudaBuf, &CudaBuf)>, _x_norm: Option<&mut CudaBuf>) -> Result<()> {
        Err(not_yet("channel_norm_batch"))
    }

    fn channel_normalize(&self, _dims: ChannelDims, _io: Io<'_, CudaBuf>, _mean: &CudaBuf, _std: &CudaBuf) -> Result<()> {
        Err(not_yet("channel_normalize"))
    }

    fn channel_norm_backward(&self, _dims: ChannelDims, _grad: NormGrad, _x_norm: Option<&CudaBuf>, _diff: Io<'_, CudaBuf>, _std: &CudaBuf, _scale: Option<&CudaBuf>, _dscale: Option<&mut CudaBuf>, _dshift: Option<&mut CudaBuf>, _write_dx: bool) -> Result<()> {
        Err(not_yet("channel_norm_backward"))
    }

    fn channel_affine(&self, _dims: ChannelDims, _io: Io<'_, CudaBuf>, _scale: Option<&CudaBuf>, _bias: Option<&CudaBuf>) -> Result<()> {
        Err(not_yet("channel_affine"))
    }

    fn channel_affine_backward(&self, _dims: ChannelDims, _x: Option<&CudaBuf>, _diff: Io<'_, CudaBuf>, _scale: Option<&CudaBuf>, _dscale: Option<&mut CudaBuf>, _dbias: Option<&mut CudaBuf>, _write_dx: bool) -> Result<()> {
        Err(not_yet("channel_affine_backward"))
    }

    fn lrn_forward(&self, _spec: &LrnSpec, _x: &CudaBuf, _scale: &mut CudaBuf, _y: &mut CudaBuf) -> Result<()> {
        Err(not_yet("lrn_forward"))
    }

    fn lrn_backward(&self, _spec: &LrnSpec, _x: &CudaBuf, _y: &CudaBuf, _scale: &CudaBuf, _dy: &CudaBuf, _dx: &mut CudaBuf) -> Result<()> {
        Err(not_yet("lrn_backward"))
    }
}
