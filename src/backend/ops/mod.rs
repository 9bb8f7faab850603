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
mod tensor;

pub use act::{random_bits, Activation, Activations};
pub use conv::Convolution;
pub use loss::{label_class, label_kind, ArgMaxOutput, BadLabel, ClassAxis, LabelKind, Losses, LossSum};
pub use math::{Gemm, Math};
pub use norm::{ChannelDims, EpsPlacement, LrnSpec, NormAffine, NormGrad, Normalization};
pub use pool::{stochastic_uniform, Pooling};
pub use solver::{ParamUpdate, Regularization, SolverOps, UpdateRule};
pub use tensor::{ReduceOp, TensorOps};
