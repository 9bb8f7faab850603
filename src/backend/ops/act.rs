//! Element-wise activation functions, the activation layers with state of their own
//! (Swish's sigmoid cache, PReLU's learnable slopes, Dropout's mask) and the LSTM unit's gates
//! (Caffe's LSTMUnit), forward and backward.
//!
//! Every formula is Caffe's, in Caffe's order of floating-point operations; "f64" in a
//! formula means Caffe's C++ evaluates that part in double (a `1.` or `0.5` literal) and
//! rounds the result to f32 once. `min`/`max` are C++'s `std::min`/`std::max`
//! (`min(a, b) = b < a ? b : a`, `max(a, b) = a < b ? b : a`), so a NaN input stays NaN
//! where Caffe's does.
//!
//! In-place rules: a forward [`Io::InPlace`] reads `x` from the buffer and overwrites it with
//! `y`. A backward [`Io::InPlace`] diff reads `dy` from the buffer and overwrites it with `dx`;
//! in that case the layer ran in place, so `x` and `y` are the same buffer (the overwritten
//! data), exactly what Caffe's in-place layers read.

use crate::backend::{Io, Storage};
use crate::Result;

/// An element-wise function with its parameters, as Caffe's layers define them. Constants that
/// Caffe derives once at setup are carried already derived (see each variant).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// ReLU: `y = max(x, 0) + negative_slope * min(x, 0)`;
    /// `dx = dy * ((x > 0) + negative_slope * (x <= 0))` (comparisons as 0.0/1.0).
    ReLU {
        /// Slope for negative inputs.
        negative_slope: f32,
    },
    /// Sigmoid: `y = 0.5 * tanh(0.5 * x) + 0.5` (f64); `dx = ((dy * y) * (1 - y) (f64))`.
    Sigmoid,
    /// TanH: `y = tanh(x)`; `dx = dy * (1 - y * y)`.
    TanH,
    /// AbsVal: `y = |x|`; `dx = sign(x) * dy` with `sign(x) = (0 < x) - (x < 0)`.
    AbsVal,
    /// BNLL, `log(1 + e^x)` guarded: `y = x > 0 ? x + ln(1 + e^-x) : ln(1 + e^x)` (f64);
    /// `e = exp(min(x, 50))` rounded to f32, `dx = (dy * e) / (e + 1) (f64)`.
    BNLL,
    /// ELU: `y = max(x, 0) + alpha * (exp(min(x, 0)) - 1)`;
    /// `dx = dy * ((x > 0) + (alpha + y) * (x <= 0))`.
    ELU {
        /// Scale of the negative part.
        alpha: f32,
    },
    /// Power, `y = (shift + scale * x)^power`, with Caffe's special cases. With
    /// `d = power * scale` (f32):
    /// - forward: if `d == 0`, `y = (power == 0 ? 1 : powf(shift, power))` for every element;
    ///   otherwise `v = x`, `v = v * scale` if `scale != 1`, `v = v + shift` if `shift != 0`,
    ///   `y = powf(v, power)` if `power != 1` else `v`.
    /// - backward: `g = d` if `d == 0` or `power == 1`; else if `power == 2`,
    ///   `g = (d * scale) * x`, plus `d * shift` if `shift != 0`; else if `shift == 0`,
    ///   `g = (y / x) * power`; else `v` as in forward (without the power),
    ///   `g = y / v`, times `d` if `d != 1`. Then `dx = dy * g` if `d != 0`, else `dx = 0`
    ///   (whatever `dy` holds).
    Power {
        /// Exponent.
        power: f32,
        /// Scale of the input.
        scale: f32,
        /// Shift of the scaled input.
        shift: f32,
    },
    /// Exp, `y = base^(shift + scale * x)` as Caffe computes it:
    /// `y = exp(inner_scale * x) * outer_scale` (each product skipped when its factor is 1);
    /// `dx = (y * dy) * inner_scale` (the product skipped when `inner_scale == 1`).
    Exp {
        /// `ln(base) * scale` (`ln(base)` is 1 for base -1, meaning e).
        inner_scale: f32,
        /// `base^shift` (`e^shift` for base -1; 1 when shift is 0).
        outer_scale: f32,
    },
    /// Log, `y = log_base(shift + scale * x)` as Caffe computes it: `v = x`, `v = v * scale`
    /// if `scale != 1`, `v = v + shift` if `shift != 0`; `y = ln(v)`, times `base_scale` if
    /// `base_scale != 1`; `dx = dy * (powf(v, -1) * backward_num_scale)` (the product skipped
    /// when `backward_num_scale == 1`).
    Log {
        /// Scale of the input.
        scale: f32,
        /// Shift of the scaled input.
        shift: f32,
        /// `1 / ln(base)` (1 for base -1, meaning e).
        base_scale: f32,
        /// `scale / ln(base)`.
        backward_num_scale: f32,
    },
    /// Threshold: `y = x > threshold ? 1 : 0`. No backward (Caffe has none).
    Threshold {
        /// The threshold (strictly exceeded to give 1).
        threshold: f32,
    },
    /// Clip: `y = max(min, min(x, max))`; `dx = dy * (x >= min && x <= max)`.
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
}

/// The 32 random bits of element `i` of draw `key` (Dropout's masks, stochastic pooling's
/// picks): the high half of SplitMix64's
/// output for state `key + (i + 1) * 0x9E3779B97F4A7C15` (wrapping), that is
/// `z = that state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) *
/// 0x94D049BB133111EB; z ^= z >> 31; bits = z >> 32` (all wrapping u64 arithmetic).
/// A counter-based stream, so every backend draws the same bits for the same key.
#[inline]
pub fn random_bits(key: u64, i: u64) -> u32 {
    let mut z = key.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 32) as u32
}

/// Activation primitives. Every buffer given together has the same length unless a method
/// says otherwise; a length mismatch is an [`Error::Internal`](crate::Error::Internal).
pub trait Activations: Storage {
    /// `y = f(x)`, in place or not.
    fn activation_forward(&self, f: Activation, io: Io<'_, Self::Buf>) -> Result<()>;
    /// `dx = dy * f'(x)` as the variant documents, from the bottom data `x` and top data `y`
    /// (the same buffer when the layer ran in place; Caffe's formulas then read the
    /// overwritten values, and so do these). Overwrites `dx`. An error for
    /// [`Activation::Threshold`], which has no backward.
    fn activation_backward(&self, f: Activation, x: &Self::Buf, y: &Self::Buf, diff: Io<'_, Self::Buf>) -> Result<()>;

    /// Swish forward: `s = sigmoid(beta * x)` with `beta * x` rounded to f32 and the sigmoid
    /// of [`Activation::Sigmoid`], stored in `sig` (overwritten; kept for backward); then
    /// `y = x * s`.
    fn swish_forward(&self, beta: f32, io: Io<'_, Self::Buf>, sig: &mut Self::Buf) -> Result<()>;
    /// Swish backward from the top data `y` and the stored `sig`: with `b = beta * y` (f32),
    /// `dx = dy * (b + sig * (1 - b)) (f64)`. Overwrites `dx`; correct in place.
    fn swish_backward(&self, beta: f32, y: &Self::Buf, sig: &Self::Buf, diff: Io<'_, Self::Buf>) -> Result<()>;

    /// PReLU forward over a blob of `count = outer * channels * dim` elements (`dim` the
    /// product of the axes after the channel axis): with `c = (i / dim) % channels`, or 0 when
    /// `shared`, `y = max(x, 0) + slope[c] * min(x, 0)`. `slope` holds `channels` values, or 1
    /// when `shared`.
    fn prelu_forward(&self, channels: usize, dim: usize, shared: bool, slope: &Self::Buf, io: Io<'_, Self::Buf>) -> Result<()>;
    /// PReLU slope gradient: `dslope[c] += sum of dy[i] * x[i] * (x[i] <= 0)` over the
    /// elements `i` of channel `c` (all elements when `shared`). Accumulates. The sum is
    /// deterministic: each (image, channel) plane summed in order in f64, then the planes in
    /// order, rounded to f32 and added to `dslope[c]`.
    fn prelu_backward_slope(
        &self,
        channels: usize,
        dim: usize,
        shared: bool,
        x: &Self::Buf,
        dy: &Self::Buf,
        dslope: &mut Self::Buf,
    ) -> Result<()>;
    /// PReLU input gradient: `dx = dy * ((x > 0) + slope[c] * (x <= 0))`, `c` as in forward.
    /// `x` is the bottom data as it was before forward (a copy of it when the layer ran in
    /// place). Overwrites `dx`.
    fn prelu_backward_data(
        &self,
        channels: usize,
        dim: usize,
        shared: bool,
        slope: &Self::Buf,
        x: &Self::Buf,
        diff: Io<'_, Self::Buf>,
    ) -> Result<()>;

    /// Dropout forward (training): draws `mask[i] = 1.0` when
    /// [`random_bits`]`(key, i) >= threshold`, else `0.0` (`mask` overwritten; the unit is
    /// dropped with probability `threshold / 2^32`), and computes `y = (x * mask) * scale`.
    fn dropout_forward(&self, key: u64, threshold: u32, scale: f32, io: Io<'_, Self::Buf>, mask: &mut Self::Buf) -> Result<()>;
    /// Dropout backward: `dx = (dy * mask) * scale`. Overwrites `dx`.
    fn dropout_backward(&self, scale: f32, mask: &Self::Buf, diff: Io<'_, Self::Buf>) -> Result<()>;

    /// LSTM unit forward (Caffe's LSTMUnit) over `num` rows of `dim` cells: `c_prev`, `c` and
    /// `h` hold `num * dim` values, `x` holds `num * 4 * dim` (row `n` is the input, forget,
    /// output and candidate gates' pre-activations, `dim` each), `cont` holds `num`. For row
    /// `n`, cell `d`, with `xn = x[n * 4 * dim..]`, everything in f64 and each output rounded
    /// to f32 once:
    /// `i = s(xn[d])`, `f = cont[n] == 0 ? 0 : cont[n] * s(xn[dim + d])`,
    /// `o = s(xn[2 * dim + d])`, `g = tanh(xn[3 * dim + d])`,
    /// `c = f * c_prev + i * g` (`c[n, d] = c`), `h[n, d] = o * tanh(c)`,
    /// where `s(v) = 0.5 * tanh(0.5 * v) + 0.5` (the logistic function, with no overflow for
    /// any `v`). Overwrites `c` and `h`. (Caffe computes in f32 with `1 / (1 + exp(-v))` and
    /// `tanh(v) = 2 s(2v) - 1`; this differs from it in the last bits only, and its only libm
    /// call is f64 `tanh`, so every backend gives the same bits save double-rounding ties.)
    #[allow(clippy::too_many_arguments)]
    fn lstm_unit_forward(
        &self,
        num: usize,
        dim: usize,
        c_prev: &Self::Buf,
        x: &Self::Buf,
        cont: &Self::Buf,
        c: &mut Self::Buf,
        h: &mut Self::Buf,
    ) -> Result<()>;
    /// LSTM unit backward (Caffe's LSTMUnit), from the bottoms `c_prev`, `x`, `cont`, top 0's
    /// data `c` and the tops' diffs `dc` and `dh` (buffers as in
    /// [`Activations::lstm_unit_forward`]). With `i`, `f`, `o`, `g` as in forward (f64),
    /// `t = tanh(c[n, d])` and `e = dc + dh * o * (1 - t * t)`:
    /// `dc_prev = e * f`; gate diffs `dx[n, d] = e * g * i * (1 - i)`,
    /// `dx[n, dim + d] = e * c_prev * f * (1 - f)` (Caffe's: `f` includes `cont`, the true
    /// gradient for a binary `cont`), `dx[n, 2 * dim + d] = dh * t * o * (1 - o)`,
    /// `dx[n, 3 * dim + d] = e * i * (1 - g * g)`; each computed in f64, left to right, and
    /// rounded to f32 once. Overwrites `dc_prev` and `dx` where given; `cont` gets no gradient.
    #[allow(clippy::too_many_arguments)]
    fn lstm_unit_backward(
        &self,
        num: usize,
        dim: usize,
        c_prev: &Self::Buf,
        x: &Self::Buf,
        cont: &Self::Buf,
        c: &Self::Buf,
        dc: &Self::Buf,
        dh: &Self::Buf,
        dc_prev: Option<&mut Self::Buf>,
        dx: Option<&mut Self::Buf>,
    ) -> Result<()>;
}
