//! Structural and element-wise tensor primitives that [`Math`](super::Math)'s copies and BLAS
//! calls do not cover: reductions along trailing axes, Eltwise's multi-input products and
//! maxima (with their gradients), and row gathers/scatters by index (BatchReindex, Embed).
//!
//! Layers that only move data (Concat, Slice, Split, Crop, Tile, Flatten, Reshape) use
//! [`Math::copy_strided`](super::Math::copy_strided) and need nothing from here.

use crate::Result;
use crate::backend::Storage;

/// What [`TensorOps::reduce_forward`] sums per element (Caffe's `ReductionParameter`, with
/// MEAN expressed as `Sum` and a coefficient divided by the reduced size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// `x`.
    Sum,
    /// `|x|`.
    Asum,
    /// `x * x`.
    Sumsq,
}

/// Tensor primitives. Every buffer argument is a whole buffer of the stated length; no output
/// may alias an input (the borrow rules already forbid it).
pub trait TensorOps: Storage {
    /// `y[i] = coeff * S_i` for `i < num`, where `S_i` is the sum over `j < dim` of `x[i * dim +
    /// j]`, `|x[..]|` or `x[..]^2` for `Sum`, `Asum`, `Sumsq`. `x` has `num * dim` elements, `y`
    /// `num` (overwritten). The sum is rounded to `f32` before the product with `coeff`, as
    /// Caffe scales the sums after computing them; the sum itself may be accumulated in higher
    /// precision but must be deterministic (independent of the thread count).
    fn reduce_forward(
        &self,
        op: ReduceOp,
        num: usize,
        dim: usize,
        coeff: f32,
        x: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()>;

    /// The gradient of [`TensorOps::reduce_forward`], overwriting `dx` (`num * dim`): with
    /// `c = dy[i] * coeff` (an `f32` product), `dx[i * dim + j]` is `c` for `Sum`,
    /// `sign(x) * c` for `Asum` (`sign(0) = 0`) and `(2 * c) * x` for `Sumsq`. `x` is read only
    /// for `Asum` and `Sumsq`.
    #[allow(clippy::too_many_arguments)]
    fn reduce_backward(
        &self,
        op: ReduceOp,
        num: usize,
        dim: usize,
        coeff: f32,
        x: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()>;

    /// `y = sum_k coeffs[k] * xs[k]`, accumulated in input order from zero:
    /// `y = ((0 + c0 x0) + c1 x1) + ...` (Caffe's set-then-axpy). All buffers have one length;
    /// `coeffs.len() == xs.len() >= 1`.
    fn eltwise_sum(&self, xs: &[&Self::Buf], coeffs: &[f32], y: &mut Self::Buf) -> Result<()>;

    /// `y = x0 * x1 * ... ` element-wise, multiplied left to right. `xs.len() >= 1`.
    fn eltwise_prod(&self, xs: &[&Self::Buf], y: &mut Self::Buf) -> Result<()>;

    /// The gradient of [`TensorOps::eltwise_prod`] with respect to input `index`, overwriting
    /// `dx`: when `stable`, `dx = (prod over k != index of xs[k], left to right) * dy`; otherwise
    /// `dx = (y / xs[index]) * dy` (Caffe's `stable_prod_grad: false`, which divides by zero
    /// where the input is zero). `xs.len() >= 2`.
    fn eltwise_prod_backward(
        &self,
        xs: &[&Self::Buf],
        index: usize,
        y: &Self::Buf,
        dy: &Self::Buf,
        stable: bool,
        dx: &mut Self::Buf,
    ) -> Result<()>;

    /// Element-wise maximum of `xs` (at least two) into `y`, with the winning input's index
    /// (as an `f32`) in `argmax`. Ties follow Caffe's CPU code: between inputs 0 and 1 the
    /// later wins (`x0 > x1` picks 0, else 1); each further input `k` wins only when strictly
    /// greater than the running maximum.
    fn eltwise_max(&self, xs: &[&Self::Buf], y: &mut Self::Buf, argmax: &mut Self::Buf) -> Result<()>;

    /// The gradient of [`TensorOps::eltwise_max`] for input `index`, overwriting `dx`:
    /// `dx = dy` where `argmax == index`, else 0.
    fn eltwise_max_backward(&self, argmax: &Self::Buf, index: usize, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;

    /// Row gather: for each `i < len(index)`, `out[i * row_len..][..row_len] = table[r *
    /// row_len..][..row_len]` with `r = trunc(index[i])` (Caffe casts the float to int).
    /// `table` holds `rows * row_len` elements, `out` `len(index) * row_len` (overwritten).
    /// An index that is not in `[0, rows)` (or is NaN) is an [`Error::Shape`](crate::Error)
    /// naming its position and value, and nothing is written.
    fn gather_rows(
        &self,
        index: &Self::Buf,
        rows: usize,
        row_len: usize,
        table: &Self::Buf,
        out: &mut Self::Buf,
    ) -> Result<()>;

    /// Row scatter-add, the gradient of [`TensorOps::gather_rows`]: for each `i` in increasing
    /// order, `table[r * row_len..][..row_len] += src[i * row_len..][..row_len]` with
    /// `r = trunc(index[i])`, so a row that several indices name receives their sum in index
    /// order. Accumulates (the caller zeroes `table` first where it should be overwritten).
    /// Indices are checked as in [`TensorOps::gather_rows`].
    fn scatter_add_rows(
        &self,
        index: &Self::Buf,
        rows: usize,
        row_len: usize,
        src: &Self::Buf,
        table: &mut Self::Buf,
    ) -> Result<()>;
}
