//! Convolution: the fused primitive of Convolution and Deconvolution layers.

use crate::backend::{ConvSpec, Storage};
use crate::Result;

/// Convolution primitives. Deconvolution is these with the roles of forward and backward-data
/// exchanged.
pub trait Convolution: Storage {
    /// `y = conv(x, w)` for all `spec.num` images (overwrites `y`; no bias).
    fn conv_forward(&self, spec: &ConvSpec, x: &Self::Buf, w: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// `dx = conv_transpose(dy, w)` (overwrites `dx`).
    fn conv_backward_data(&self, spec: &ConvSpec, dy: &Self::Buf, w: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;
    /// `dw += correlation of x and dy`, summed over images (accumulates, as Caffe's param
    /// gradients do).
    fn conv_backward_filter(&self, spec: &ConvSpec, x: &Self::Buf, dy: &Self::Buf, dw: &mut Self::Buf) -> Result<()>;
    /// `y[n, c, s] += bias[c]` over `num x channels x spatial`.
    fn bias_forward(&self, num: usize, channels: usize, spatial: usize, bias: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// `db[c] += sum over n, s of dy[n, c, s]`.
    fn bias_backward(&self, num: usize, channels: usize, spatial: usize, dy: &Self::Buf, db: &mut Self::Buf) -> Result<()>;
}
