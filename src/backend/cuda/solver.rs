//! CUDA solver primitives: none in the trait yet. Each new primitive is a kernel in
//! `kernels/solver.cu` launched from here with [`Launch`](super::launch::Launch).

use super::Cuda;
use crate::backend::SolverOps;

impl SolverOps for Cuda {}
