//! CUDA tensor primitives: not implemented yet (each returns an error).

use super::{Cuda, CudaBuf};
use crate::backend::{ReduceOp, TensorOps};
use crate::{Error, Result};

fn not_yet(what: &str) -> Error {
    Error::Internal(format!("{what} is not implemented on the CUDA backend yet"))
}

#[allow(clippy::too_many_arguments)]
impl TensorOps for Cuda {
    fn reduce_forward(&self, _op: ReduceOp, _num: usize, _dim: usize, _coeff: f32, _x: &CudaBuf, _y: &mut CudaBuf) -> Result<()> {
        Err(not_yet("reduce_forward"))
    }

    fn reduce_backward(&self, _op: ReduceOp, _num: usize, _dim: usize, _coeff: f32, _x: &CudaBuf, _dy: &CudaBuf, _dx: &mut CudaBuf) -> Result<()> {
        Err(not_yet("reduce_backward"))
    }

    fn eltwise_sum(&self, _xs: &[&CudaBuf], _coeffs: &[f32], _y: &mut CudaBuf) -> Result<()> {
        Err(not_yet("eltwise_sum"))
    }

    fn eltwise_prod(&self, _xs: &[&CudaBuf], _y: &mut CudaBuf) -> Result<()> {
        Err(not_yet("eltwise_prod"))
    }

    fn eltwise_prod_backward(&self, _xs: &[&CudaBuf], _index: usize, _y: &CudaBuf, _dy: &CudaBuf, _stable: bool, _dx: &mut CudaBuf) -> Result<()> {
        Err(not_yet("eltwise_prod_backward"))
    }

    fn eltwise_max(&self, _xs: &[&CudaBuf], _y: &mut CudaBuf, _argmax: &mut CudaBuf) -> Result<()> {
        Err(not_yet("eltwise_max"))
    }

    fn eltwise_max_backward(&self, _argmax: &CudaBuf, _index: usize, _dy: &CudaBuf, _dx: &mut CudaBuf) -> Result<()> {
        Err(not_yet("eltwise_max_backward"))
    }

    fn gather_rows(&self, _index: &CudaBuf, _rows: usize, _row_len: usize, _table: &CudaBuf, _out: &mut CudaBuf) -> Result<()> {
        Err(not_yet("gather_rows"))
    }

    fn scatter_add_rows(&self, _index: &CudaBuf, _rows: usize, _row_len: usize, _src: &CudaBuf, _table: &mut CudaBuf) -> Result<()> {
        Err(not_yet("scatter_add_rows"))
    }
}
