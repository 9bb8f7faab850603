//! The primitive families, one trait per file. Each takes buffers of the backend's own
//! [`Storage::Buf`](super::Storage) and plain geometry; none of them allocates host memory
//! for data.

mod act;
mod conv;
mod loss;
mod math;
mod norm;
mod pool;
mod solver;

pub use act::{Activation, Activations};
pub use conv::Convolution;
pub use loss::Losses;
pub use math::{Gemm, Math};
pub use norm::{ChannelDims, EpsPlacement, LrnSpec, NormGrad, Normalization};
pub use pool::Pooling;
pub use solver::SolverOps;
