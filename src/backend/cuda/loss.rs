//! CUDA loss primitives: none in the trait yet. Each new primitive is a kernel in
//! `kernels/loss.cu` launched from here with [`Launch`](super::launch::Launch).

use super::Cuda;
use crate::backend::Losses;

impl Losses for Cuda {}
