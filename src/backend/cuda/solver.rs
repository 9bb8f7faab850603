//! CUDA solver primitives: not implemented yet (each returns an error).

use super::{Cuda, CudaBuf};
use crate::backend::{ParamUpdate, SolverOps};
use crate::{Error, Result};

fn not_yet(what: &str) -> Error {
    Error::Internal(format!("{what} is not implemented on the CUDA backend yet"))
}

impl SolverOps for Cuda {
    fn update_param(&self, _update: &ParamUpdate, _data: &mut CudaBuf, _diff: &mut CudaBuf, _history: &mut CudaBuf, _history2: Option<&mut CudaBuf>) -> Result<()> {
        Err(not_yet("update_param"))
    }
}
