//! Normalisation: batch normalisation (Caffe's BatchNorm and SegNet's BN), per-channel affine
//! maps (Scale, Bias, BN in INFERENCE mode), MVN and LRN.
//!
//! Most primitives see their data as a 3-d array `(outer, channels, inner)` ([`ChannelDims`]):
//! a per-channel value `v[c]` applies to every `x[o, c, i]`, and per-channel statistics reduce
//! over `o` and `i`. Batch normalisation of an `(N, C, H, W)` blob is `(N, C, H*W)`; MVN of
//! rows is `(1, rows, row_len)`; Scale with `axis`/`num_axes` is `(outer, scale_dim, inner)`.
//!
//! Per-channel buffers (`mean`, `var`, `std`, `scale`, `shift`, their gradients) hold exactly
//! `channels` elements. Reductions are deterministic: the same inputs give the same bits
//! whatever the number of threads.

use crate::Result;
use crate::backend::{Io, Storage};

/// The `(outer, channels, inner)` view of a buffer of `outer * channels * inner` elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelDims {
    /// Product of the axes before the channel axes.
    pub outer: usize,
    /// Number of channels: the length of every per-channel buffer.
    pub channels: usize,
    /// Product of the axes after the channel axes.
    pub inner: usize,
}

impl ChannelDims {
    /// The dims `(outer, channels, inner)`.
    pub fn new(outer: usize, channels: usize, inner: usize) -> Self {
        ChannelDims { outer, channels, inner }
    }
    /// Elements of the whole buffer.
    pub fn count(&self) -> usize {
        self.outer * self.channels * self.inner
    }
    /// Elements of one channel (`outer * inner`): the `m` of the statistics.
    pub fn per_channel(&self) -> usize {
        self.outer * self.inner
    }
}

/// Where epsilon goes in a standard deviation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpsPlacement {
    /// `std = sqrt(var + eps)` (BatchNorm, SegNet's BN).
    InsideSqrt,
    /// `std = sqrt(var) + eps` (MVN).
    OutsideSqrt,
}

/// Which gradient [`Normalization::channel_norm_backward`] computes for `x_hat = (x - mean) /
/// std`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormGrad {
    /// Mean and std are the batch statistics of `x` (they depend on `x`):
    /// `dx = (g - mean(g) - x_hat * mean(g * x_hat)) / std`.
    BatchStats,
    /// Only the mean is a batch statistic; `std` is a constant (MVN without variance
    /// normalisation): `dx = (g - mean(g)) / std`.
    MeanOnly,
    /// Mean and std are constants (stored statistics): `dx = g / std`.
    Fixed,
}

/// The learnt per-channel part of a batch normalisation, `y = x_hat * scale[c] + shift[c]`
/// (SegNet's BN), and the ReLU the net may have folded into it.
pub struct NormAffine<'a, T> {
    /// Per-channel scale.
    pub scale: &'a T,
    /// Per-channel shift.
    pub shift: &'a T,
    /// `Some(negative_slope)` where an in-place ReLU follows the normalisation and runs inside
    /// it (the net fuses the pair, see `Layer::fuse_relu`). Forward then writes
    /// `r = max(y, 0) + slope * min(y, 0)`, Caffe's ReLU of `y`, instead of `y`; backward first
    /// turns the incoming diff into the ReLU's bottom diff, `dr * ((r > 0) + slope * (r <= 0))`
    /// (Caffe's in-place ReLU reads its own output), with `r` recomputed from `x_hat`, so the
    /// ReLU's input `y` is never stored: the same numbers as the two layers, without the
    /// ReLU's own passes over memory (two forward, three backward).
    pub relu: Option<f32>,
}

impl<T> Clone for NormAffine<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for NormAffine<'_, T> {}

impl<'a, T> NormAffine<'a, T> {
    /// `y = x_hat * scale[c] + shift[c]`, no ReLU.
    pub fn new(scale: &'a T, shift: &'a T) -> Self {
        NormAffine { scale, shift, relu: None }
    }
}

/// Local response normalisation, as Caffe's LRN layer over `(num, channels, height, width)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrnSpec {
    /// Images.
    pub num: usize,
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Window size (odd): channels for ACROSS_CHANNELS, the side of a square for WITHIN_CHANNEL.
    pub size: usize,
    /// Scale of the sum of squares.
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Additive constant (ACROSS_CHANNELS only; WITHIN_CHANNEL uses 1, as Caffe does).
    pub k: f32,
    /// WITHIN_CHANNEL (square windows in each plane) rather than ACROSS_CHANNELS.
    pub within_channel: bool,
}

impl LrnSpec {
    /// Elements of the input (and of the output and the scale buffer).
    pub fn count(&self) -> usize {
        self.num * self.channels * self.height * self.width
    }
}

/// Normalisation primitives. Unless said otherwise a primitive overwrites its outputs, and an
/// [`Io`] may be in place.
pub trait Normalization: Storage {
    /// Per-channel batch statistics of `x` (`dims.count()` elements): `mean[c]` and the
    /// biased variance `var[c] = sum((x - mean[c])^2) / m` over the `m = outer * inner`
    /// elements of channel `c`. Overwrites `mean` and `var`. This is what SegNet's
    /// `compute_bn_statistics` averages over batches.
    fn channel_moments(
        &self,
        dims: ChannelDims,
        x: &Self::Buf,
        mean: &mut Self::Buf,
        var: &mut Self::Buf,
    ) -> Result<()>;

    /// `std[c] = sqrt(var[c] + eps)` or `sqrt(var[c]) + eps` (f32 arithmetic, as Caffe).
    fn channel_std(&self, var: &Self::Buf, eps: f32, placement: EpsPlacement, std: &mut Self::Buf) -> Result<()>;

    /// Batch normalisation with batch statistics, in one call: computes `mean`, `var` as
    /// [`Normalization::channel_moments`] does (over the input, before anything is written),
    /// `std` as [`Normalization::channel_std`] does, then
    /// `x_hat = (x - mean[c]) / std[c]` and `y = x_hat`, or `y = x_hat * scale[c] + shift[c]`
    /// when `affine` is given (then a fused ReLU of `y` where it says so). Writes `x_hat` to
    /// `x_norm` when given (the cache backward needs when `y` is not `x_hat` or is overwritten
    /// later). Overwrites `mean`, `var`, `std`, `y` and `x_norm`.
    #[allow(clippy::too_many_arguments)]
    fn channel_norm_batch(
        &self,
        dims: ChannelDims,
        io: Io<'_, Self::Buf>,
        eps: f32,
        placement: EpsPlacement,
        mean: &mut Self::Buf,
        var: &mut Self::Buf,
        std: &mut Self::Buf,
        affine: Option<NormAffine<'_, Self::Buf>>,
        x_norm: Option<&mut Self::Buf>,
    ) -> Result<()>;

    /// Normalisation with given statistics: `y = (x - mean[c]) / std[c]` (no affine part).
    fn channel_normalize(
        &self,
        dims: ChannelDims,
        io: Io<'_, Self::Buf>,
        mean: &Self::Buf,
        std: &Self::Buf,
    ) -> Result<()>;

    /// Backward of `y = x_hat` or `y = x_hat * scale[c] + shift[c]`, `x_hat = (x - mean) / std`.
    /// `diff` is `dy -> dx` (in place or not); where `affine` has a fused ReLU, it is `dr -> dx`
    /// and `dy` is the ReLU's bottom diff (see [`NormAffine::relu`]). With `g = dy * scale[c]`
    /// (`g = dy` without `affine`), `dx` follows `grad` (see [`NormGrad`]); it is written only
    /// when `write_dx`. Accumulates `dscale[c] += sum(dy * x_hat)` and `dshift[c] += sum(dy)`
    /// when given (all sums over the channel's elements; the diff is read before `dx` is
    /// written). `x_norm` holds `x_hat`; it is needed for [`NormGrad::BatchStats`], for `dscale`
    /// and for a fused ReLU, and may be None otherwise.
    #[allow(clippy::too_many_arguments)]
    fn channel_norm_backward(
        &self,
        dims: ChannelDims,
        grad: NormGrad,
        x_norm: Option<&Self::Buf>,
        diff: Io<'_, Self::Buf>,
        std: &Self::Buf,
        affine: Option<NormAffine<'_, Self::Buf>>,
        dscale: Option<&mut Self::Buf>,
        dshift: Option<&mut Self::Buf>,
        write_dx: bool,
    ) -> Result<()>;

    /// A per-channel affine map `y = x * scale[c] + bias[c]`, either part optional (the
    /// product is rounded before the sum, as Caffe's Scale-then-Bias).
    fn channel_affine(
        &self,
        dims: ChannelDims,
        io: Io<'_, Self::Buf>,
        scale: Option<&Self::Buf>,
        bias: Option<&Self::Buf>,
    ) -> Result<()>;

    /// Backward of [`Normalization::channel_affine`]: accumulates `dscale[c] += sum(dy * x)`
    /// (then `x`, the forward input, must be given) and `dbias[c] += sum(dy)` when given, then,
    /// when `write_dx`, `dx = dy * scale[c]` (`dx = dy` when `scale` is None). `dy` is read
    /// before `dx` is written, so `diff` may be in place.
    #[allow(clippy::too_many_arguments)]
    fn channel_affine_backward(
        &self,
        dims: ChannelDims,
        x: Option<&Self::Buf>,
        diff: Io<'_, Self::Buf>,
        scale: Option<&Self::Buf>,
        dscale: Option<&mut Self::Buf>,
        dbias: Option<&mut Self::Buf>,
        write_dx: bool,
    ) -> Result<()>;

    /// LRN forward. ACROSS_CHANNELS: `scale = k + alpha / size * sum(x^2)` over the channels
    /// `c - (size-1)/2 ..= c + (size-1)/2` that exist, summed as Caffe does (a window sliding
    /// along the channels); WITHIN_CHANNEL: `scale = 1 + alpha * sum(x^2) / size^2` over the
    /// `size x size` square centred on each pixel, clipped to the plane (Caffe's average
    /// pooling with pad `(size-1)/2`). Then `y = x * scale^-beta`. Writes `scale` (kept for
    /// backward) and `y`; `x`, `scale` and `y` are distinct, each `spec.count()` long.
    fn lrn_forward(&self, spec: &LrnSpec, x: &Self::Buf, scale: &mut Self::Buf, y: &mut Self::Buf) -> Result<()>;

    /// LRN backward from the forward's `x`, `y`, `scale` and the top diff `dy`: overwrites
    /// `dx` (distinct from `dy`) with
    /// `dy * scale^-beta - 2 alpha beta / n * x * sum(dy * y / scale)` over the same window
    /// (`n = size` across channels, `size^2` within a channel), following Caffe's order of
    /// operations for each region.
    fn lrn_backward(
        &self,
        spec: &LrnSpec,
        x: &Self::Buf,
        y: &Self::Buf,
        scale: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()>;
}
