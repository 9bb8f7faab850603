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
    /// The im2col matrix of every image, stored (the Im2col layer's forward; Caffe's
    /// `im2col_cpu` / `im2col_nd_cpu` layout): for image `n`, channel `c`, kernel tap `k`
    /// (row-major over `spec.kernel`) and output position `o` (row-major over
    /// `spec.out_shape`), `col[((n * channels + c) * kernel_len + k) * out_spatial + o]` is the
    /// input value that tap meets at that position, zero in the padding. Overwrites `col`
    /// (`num * channels * kernel_len * out_spatial` elements; `x` holds `num * in_image_len`).
    /// Reads only `num`, `channels` and the spatial geometry of `spec` (not `out_channels` or
    /// `group`).
    fn im2col(&self, spec: &ConvSpec, x: &Self::Buf, col: &mut Self::Buf) -> Result<()>;
    /// The adjoint of [`Convolution::im2col`] (col2im, the Im2col layer's backward): every
    /// input element gets the sum of the `col` entries that read it, added in kernel-tap order
    /// (Caffe's `col2im_cpu` order). Overwrites `dx`.
    fn col2im(&self, spec: &ConvSpec, col: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;
}
