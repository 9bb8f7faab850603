//! The CUDA backend (being built): library probing and loading, NVRTC kernel compilation.

pub mod loader;
pub mod nvrtc;
pub mod probe;
