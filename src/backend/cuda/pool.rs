//! CUDA pool primitives: none in the trait yet. Each new primitive is a kernel in
//! `kernels/pool.cu` launched from here with [`Launch`](super::launch::Launch).

use super::Cuda;
use crate::backend::Pooling;

impl Pooling for Cuda {}
