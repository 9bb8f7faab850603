//! CUDA pool primitives: not implemented yet (each returns an error).

use super::{Cuda, CudaBuf};
use crate::backend::{PoolSpec, Pooling};
use crate::{Error, Result};

fn not_yet(what: &str) -> Error {
    Error::Internal(format!("{what} is not implemented on the CUDA backend yet"))
}

#[allow(clippy::too_many_arguments)]
impl Pooling for Cuda {
    fn max_pool_forward(&self, _spec: &PoolSpec, _x: &CudaBuf, _y: &mut CudaBuf, _mask: &mut CudaBuf) -> Result<()> {
        Err(not_yet("max_pool_forward"))
    }

    fn max_pool_backward(&self, _spec: &PoolSpec, _dy: &CudaBuf, _mask: &CudaBuf, _dx: &mut CudaBuf) -> Result<()> {
        Err(not_yet("max_pool_backward"))
    }

    fn ave_pool_forward(&self, _spec: &PoolSpec, _x: &CudaBuf, _y: &mut CudaBuf) -> Result<()> {
        Err(not_yet("ave_pool_forward"))
    }

    fn ave_pool_backward(&self, _spec: &PoolSpec, _dy: &CudaBuf, _dx: &mut CudaBuf) -> Result<()> {
        Err(not_yet("ave_pool_backward"))
    }

    fn upsample_forward(&self, _planes: usize, _in_plane: usize, _out_plane: usize, _x: &CudaBuf, _mask: &CudaBuf, _y: &mut CudaBuf) -> Result<()> {
        Err(not_yet("upsample_forward"))
    }

    fn upsample_backward(&self, _planes: usize, _in_plane: usize, _out_plane: usize, _dy: &CudaBuf, _mask: &CudaBuf, _dx: &mut CudaBuf) -> Result<()> {
        Err(not_yet("upsample_backward"))
    }
}
