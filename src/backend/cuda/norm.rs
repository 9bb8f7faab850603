//! CUDA norm primitives: none in the trait yet. Each new primitive is a kernel in
//! `kernels/norm.cu` launched from here with [`Launch`](super::launch::Launch).

use super::Cuda;
use crate::backend::Normalization;

impl Normalization for Cuda {}
