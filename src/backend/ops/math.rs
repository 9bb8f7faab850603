//! General arithmetic: fills, copies, BLAS-like operations.

use crate::backend::{Storage, StridedCopy};
use crate::Result;

/// A matrix product `C = alpha * op(A) * op(B) + beta * C` on row-major matrices inside
/// buffers: `op(A)` is `m x k`, `op(B)` is `k x n`, `C` is `m x n`, each starting at its
/// offset, with the leading dimension the row length of the stored (untransposed) matrix.
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    /// Use A transposed.
    pub trans_a: bool,
    /// Use B transposed.
    pub trans_b: bool,
    /// Rows of op(A) and C.
    pub m: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// Columns of op(A), rows of op(B).
    pub k: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of C before adding.
    pub beta: f32,
    /// Offset of A in its buffer.
    pub a_offset: usize,
    /// Offset of B in its buffer.
    pub b_offset: usize,
    /// Offset of C in its buffer.
    pub c_offset: usize,
}

impl Gemm {
    /// A plain `C = op(A) op(B)` at offset 0 of each buffer.
    pub fn new(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> Self {
        Gemm { trans_a, trans_b, m, n, k, alpha: 1.0, beta: 0.0, a_offset: 0, b_offset: 0, c_offset: 0 }
    }
    /// Sets `alpha` and `beta`.
    pub fn scaled(mut self, alpha: f32, beta: f32) -> Self {
        self.alpha = alpha;
        self.beta = beta;
        self
    }
    /// Sets the three offsets.
    pub fn offsets(mut self, a: usize, b: usize, c: usize) -> Self {
        self.a_offset = a;
        self.b_offset = b;
        self.c_offset = c;
        self
    }
    /// Leading dimension of A as stored.
    pub fn lda(&self) -> usize {
        if self.trans_a { self.m } else { self.k }
    }
    /// Leading dimension of B as stored.
    pub fn ldb(&self) -> usize {
        if self.trans_b { self.k } else { self.n }
    }
}

/// Fills, copies and BLAS-level arithmetic. Reductions are deterministic: the same inputs give
/// the same bits on every run with the same thread count.
pub trait Math: Storage {
    /// Sets `buf[offset..offset + len]` to `value`.
    fn fill(&self, buf: &mut Self::Buf, offset: usize, len: usize, value: f32) -> Result<()>;
    /// Copies all of `src` into `dst` (equal lengths).
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf) -> Result<()>;
    /// An N-d strided copy (or accumulation) from `src` to `dst`.
    fn copy_strided(&self, src: &Self::Buf, dst: &mut Self::Buf, copy: &StridedCopy, accumulate: bool) -> Result<()>;
    /// `y = alpha * x + beta * y` over the whole of `y` (Caffe's axpby; `beta = 1` is axpy).
    fn axpby(&self, alpha: f32, x: &Self::Buf, beta: f32, y: &mut Self::Buf) -> Result<()>;
    /// `x *= alpha`.
    fn scal(&self, alpha: f32, x: &mut Self::Buf) -> Result<()>;
    /// `y = a * b` element-wise (`y` may not alias).
    fn mul(&self, a: &Self::Buf, b: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// `x += value` element-wise.
    fn add_scalar(&self, x: &mut Self::Buf, value: f32) -> Result<()>;
    /// Dot product of `x[x_off..x_off + n]` and `y[y_off..y_off + n]`.
    fn dot(&self, n: usize, x: &Self::Buf, x_off: usize, y: &Self::Buf, y_off: usize) -> Result<f32>;
    /// Sum of absolute values of the whole buffer.
    fn asum(&self, x: &Self::Buf) -> Result<f32>;
    /// Sum of squares of the whole buffer.
    fn sumsq(&self, x: &Self::Buf) -> Result<f32>;
    /// A matrix product.
    fn gemm(&self, g: &Gemm, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) -> Result<()>;
    /// Whether every element is finite.
    fn all_finite(&self, x: &Self::Buf) -> Result<bool>;
}
