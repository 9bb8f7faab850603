//! Pooling and SegNet's upsampling by pooling masks.
//!
//! Every primitive here works plane by plane (`planes` = N*C independent row-major planes,
//! contiguous in their buffers) and overwrites its output. Masks are `f32` buffers holding
//! flat indices `h * W + w` into a plane, the form of Caffe's mask top; a consumer reads an
//! index by truncating toward zero, as Caffe's `static_cast<int>` does.

use super::act::random_bits;
use crate::backend::{PoolSpec, Storage};
use crate::Result;

/// The uniform number in (0, 1] that stochastic pooling draws for output `i` (over all planes)
/// of draw `key`: `(random_bits(key, i) >> 8) + 1` times 2^-24, exact in `f32`. Caffe draws
/// from (0, 1] too (cuRAND's uniform).
#[inline]
pub fn stochastic_uniform(key: u64, i: u64) -> f32 {
    ((random_bits(key, i) >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
}

/// Pooling primitives: max and average pooling with their gradients, and the max-unpooling
/// (Upsample) of SegNet, which scatters by a max pooling's mask.
pub trait Pooling: Storage {
    /// Max pooling with its argmax: for every plane and output cell,
    /// `y = max` over the window clipped to the input (`PoolSpec::max_window` on each axis;
    /// padding never wins) and `mask` = the flat input index of that maximum as `f32`.
    ///
    /// The window is scanned row by row, left to right, starting from `y = -f32::MAX`,
    /// `mask = -1`, and an element replaces the current maximum only when strictly greater:
    /// ties go to the first element, and a window that is empty (it lies past the input) or
    /// holds only values not greater than `-f32::MAX` (`-inf`, NaN) gives `-f32::MAX` with
    /// mask `-1`, exactly as Caffe.
    ///
    /// `x`: `spec.in_len()`, `y` and `mask`: `spec.out_len()` elements; both outputs
    /// overwritten.
    fn max_pool_forward(&self, spec: &PoolSpec, x: &Self::Buf, y: &mut Self::Buf, mask: &mut Self::Buf) -> Result<()>;

    /// Gradient of max pooling: `dx = 0`, then for every plane and output cell in row-major
    /// order `dx[mask] += dy` (so overlapping windows that share an argmax accumulate, in
    /// output order). A negative mask entry (Caffe's `-1` of an empty window) contributes
    /// nothing; an entry that is NaN or not below `in_plane` is an [`Error::Shape`](crate::Error::Shape).
    ///
    /// `dy` and `mask`: `spec.out_len()`, `dx`: `spec.in_len()` elements; `dx` overwritten.
    /// A GPU kernel keeps the same sums without atomics by gathering: each input element adds,
    /// in row-major output order, the `dy` of the windows that cover it and name it.
    fn max_pool_backward(&self, spec: &PoolSpec, dy: &Self::Buf, mask: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;

    /// Average pooling: for every plane and output cell, with the window and divisor `size` of
    /// `PoolSpec::ave_window` on each axis (`pool_size = size_h * size_w`, which counts the
    /// padding inside the padded input), `y = (sum of x over the clipped window) / pool_size`.
    ///
    /// The sum is taken in `f32`, row by row and left to right from 0, and then divided once,
    /// as Caffe does. A window wholly past the padded input has `pool_size <= 0` and gives
    /// `0 / pool_size` (NaN for 0, -0 for a negative size), again as Caffe.
    ///
    /// `x`: `spec.in_len()`, `y`: `spec.out_len()` elements; `y` overwritten.
    fn ave_pool_forward(&self, spec: &PoolSpec, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;

    /// Gradient of average pooling: `dx = 0`, then for every plane and output cell in
    /// row-major order, `g = dy / pool_size` is added to every element of its clipped window.
    ///
    /// `dy`: `spec.out_len()`, `dx`: `spec.in_len()` elements; `dx` overwritten.
    fn ave_pool_backward(&self, spec: &PoolSpec, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;

    /// Stochastic pooling in training (Caffe's GPU `StoPoolForwardTrain`): for every plane and
    /// output cell `o` (flat index `i` over all planes), over the window of
    /// `PoolSpec::max_window` on each axis (the layer allows no padding), `sum` = the window's
    /// values added in `f32` row by row from 0, `t = u * sum` with `u =`
    /// [`stochastic_uniform`]`(key, i)`; the window is scanned again adding from 0, and the
    /// first element at which the running sum reaches `t` (`>=`) is picked: `y = x[pick]` and
    /// `mask` = its flat index in the plane, as max pooling's mask, so its gradient is
    /// [`Pooling::max_pool_backward`]. With nonnegative inputs (Caffe's use, after a ReLU) an
    /// element is picked with probability proportional to its value, and an all-zero window
    /// picks its first element. Where no element reaches `t` (negative or NaN inputs), where
    /// Caffe leaves the output unset, the window's last element is picked; an empty window
    /// (one past the input) gives `y = 0` and mask `-1`.
    ///
    /// `x`: `spec.in_len()`, `y` and `mask`: `spec.out_len()` elements; both overwritten.
    fn stochastic_pool_forward_train(&self, spec: &PoolSpec, key: u64, x: &Self::Buf, y: &mut Self::Buf, mask: &mut Self::Buf) -> Result<()>;

    /// Stochastic pooling at test time (Caffe's GPU `StoPoolForwardTest`), the average of the
    /// window weighted by its values: over the window of [`Pooling::stochastic_pool_forward_train`],
    /// `s` from `f32::MIN_POSITIVE` (Caffe's `FLT_MIN`) adds each value and `q` from 0 takes
    /// `fma(v, v, q)` (the fused multiply-add nvcc makes of Caffe's `q += v * v`), row by row;
    /// `y = q / s`.
    ///
    /// `x`: `spec.in_len()`, `y`: `spec.out_len()` elements; `y` overwritten.
    fn stochastic_pool_forward_test(&self, spec: &PoolSpec, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;

    /// SegNet's Upsample forward (max-unpooling): for every plane `p`, `y[p] = 0` and then, for
    /// every `i` of the input plane in order, `y[p][trunc(mask[p][i])] = x[p][i]`. Where two
    /// entries of a plane name one output (a mask from overlapping pooling windows), the later
    /// one wins; masks of non-overlapping pooling have no duplicates.
    ///
    /// `x` and `mask`: `planes * in_plane`, `y`: `planes * out_plane` elements; `y`
    /// overwritten. A mask entry that is NaN, negative or not below `out_plane` is an
    /// [`Error::Shape`](crate::Error::Shape) (Caffe writes out of bounds there); `y` is then
    /// unspecified.
    fn upsample_forward(
        &self,
        planes: usize,
        in_plane: usize,
        out_plane: usize,
        x: &Self::Buf,
        mask: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()>;

    /// SegNet's Upsample backward (a gather): `dx[p][i] = dy[p][trunc(mask[p][i])]`.
    ///
    /// `dy`: `planes * out_plane`, `mask` and `dx`: `planes * in_plane` elements; `dx`
    /// overwritten. Mask entries are checked as in [`Pooling::upsample_forward`].
    fn upsample_backward(
        &self,
        planes: usize,
        in_plane: usize,
        out_plane: usize,
        dy: &Self::Buf,
        mask: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()>;
}
