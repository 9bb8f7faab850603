//! Single-precision matrix products on row-major slices: a BLIS-style blocked GEMM over
//! packed panels and a register-tile microkernel (`gemm_kernel`).
//!
//! The driver is generic over how the operands are packed (`PackA`, `PackB`), so a
//! convolution can pack its im2col matrix straight from the image without materialising it.
//!
//! Loop nest (per thread): `jc` over N in `nc` blocks, `pc` over K in `kc` blocks (pack B̃,
//! `kc x nc`), `ic` over M in `mc` blocks (pack Ã, `mc x kc`), then `NR`-column by `MR`-row
//! register tiles. Threads split M or N, never K, and K is blocked the same way whatever the
//! split, so every result is the same bits for any thread count.

use super::gemm_kernel::{kernel, Kernel};
use super::isa::Isa;
use rayon::prelude::*;
use std::cell::RefCell;

/// `C = alpha * op(A) * op(B) + beta * C`, row-major with leading dimensions, multi-threaded.
/// Panics if a slice is too short for its matrix (callers check geometry first).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    sgemm_isa(Isa::detect(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// [`sgemm`] with an explicit instruction-set level (tests run every level).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_isa(
    isa: Isa,
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let (a_rows, a_cols) = if trans_a { (k, m) } else { (m, k) };
    let (b_rows, b_cols) = if trans_b { (n, k) } else { (k, n) };
    if k > 0 {
        assert!(a_cols <= lda || a_rows == 1, "sgemm: lda smaller than a row of A");
        assert!(b_cols <= ldb || b_rows == 1, "sgemm: ldb smaller than a row of B");
        assert!(a.len() >= (a_rows - 1) * lda + a_cols, "sgemm: A too short");
        assert!(b.len() >= (b_rows - 1) * ldb + b_cols, "sgemm: B too short");
    }
    let a = if trans_a { Strided { data: a, rs: 1, cs: lda } } else { Strided { data: a, rs: lda, cs: 1 } };
    let b = if trans_b { Strided { data: b, rs: 1, cs: ldb } } else { Strided { data: b, rs: ldb, cs: 1 } };
    gemm(isa, m, n, k, alpha, &a, &b, beta, c, ldc, rayon::current_num_threads());
}

/// Packs blocks of a logical `m x k` left operand into `MR`-row panels.
pub(crate) trait PackA: Sync {
    /// Rows `i0..i0 + mc`, columns `p0..p0 + kc` into `ceil(mc / mr)` panels of `kc x mr`
    /// floats each (k-major: the `mr` values of one column are adjacent), rows past `mc` zero.
    #[allow(clippy::too_many_arguments)]
    fn pack_a(&self, isa: Isa, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize, dst: &mut [f32]);
}

/// Packs blocks of a logical `k x n` right operand into `NR`-column panels.
pub(crate) trait PackB: Sync {
    /// Rows `p0..p0 + kc`, columns `j0..j0 + nc` into `ceil(nc / nr)` panels of `kc x nr`
    /// floats each (the `nr` values of one row are adjacent), columns past `nc` zero.
    #[allow(clippy::too_many_arguments)]
    fn pack_b(&self, isa: Isa, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]);
}

/// A matrix in memory: element `(r, c)` at `data[r * rs + c * cs]`.
pub(crate) struct Strided<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl Strided<'_> {
    /// Packs the block `r0.., c0..` as panels of `w` "lanes" along the axis given by
    /// (`lane_stride`, `depth_stride`): panel `q`, depth `d`, lane `l` <- element at
    /// `base + (q·w + l)·lane_stride + d·depth_stride`.
    #[allow(clippy::too_many_arguments)]
    fn pack_panels(&self, isa: Isa, base: usize, lanes: usize, lane_stride: usize, depth: usize, depth_stride: usize, w: usize, dst: &mut [f32]) {
        if lane_stride != 1 && depth_stride == 1 {
            // Lanes are rows contiguous along the depth: a transposing pack.
            let row = |l: usize| &self.data[base + l * lane_stride..base + l * lane_stride + depth];
            super::pack::transpose_panels(isa, lanes, depth, w, row, dst);
            return;
        }
        let panels = lanes.div_ceil(w);
        if lane_stride == 1 {
            // Depth outer, panels inner: each source row is read once, front to back.
            match w {
                32 => copy_rows::<32>(self.data, base, lanes, depth, depth_stride, dst),
                16 => copy_rows::<16>(self.data, base, lanes, depth, depth_stride, dst),
                14 => copy_rows::<14>(self.data, base, lanes, depth, depth_stride, dst),
                _ => {
                    for d in 0..depth {
                        let src = &self.data[base + d * depth_stride..base + d * depth_stride + lanes];
                        for q in 0..panels {
                            let l0 = q * w;
                            let lw = w.min(lanes - l0);
                            let out = &mut dst[q * w * depth + d * w..q * w * depth + (d + 1) * w];
                            out[..lw].copy_from_slice(&src[l0..l0 + lw]);
                            out[lw..].fill(0.0);
                        }
                    }
                }
            }
            return;
        }
        for q in 0..panels {
            let l0 = q * w;
            let lw = w.min(lanes - l0);
            let out = &mut dst[q * w * depth..(q + 1) * w * depth];
            if lw < w {
                out.fill(0.0);
            }
            for l in 0..lw {
                let s = base + (l0 + l) * lane_stride;
                if depth_stride == 1 {
                    for (d, &v) in self.data[s..s + depth].iter().enumerate() {
                        out[d * w + l] = v;
                    }
                } else {
                    for d in 0..depth {
                        out[d * w + l] = self.data[s + d * depth_stride];
                    }
                }
            }
        }
    }
}

/// Panels of `W` lanes from rows that are contiguous along the lanes (the common case of a
/// row-major B or a transposed A): fixed-size copies the compiler turns into vector moves.
fn copy_rows<const W: usize>(data: &[f32], base: usize, lanes: usize, depth: usize, depth_stride: usize, dst: &mut [f32]) {
    let full = lanes / W;
    let rem = lanes - full * W;
    for d in 0..depth {
        let src = &data[base + d * depth_stride..base + d * depth_stride + lanes];
        for q in 0..full {
            let o = q * W * depth + d * W;
            let out: &mut [f32; W] = (&mut dst[o..o + W]).try_into().unwrap();
            *out = src[q * W..q * W + W].try_into().unwrap();
        }
        if rem > 0 {
            let o = full * W * depth + d * W;
            let out = &mut dst[o..o + W];
            out[..rem].copy_from_slice(&src[full * W..]);
            out[rem..].fill(0.0);
        }
    }
}

impl PackA for Strided<'_> {
    fn pack_a(&self, isa: Isa, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize, dst: &mut [f32]) {
        self.pack_panels(isa, i0 * self.rs + p0 * self.cs, mc, self.rs, kc, self.cs, mr, dst);
    }
}

impl PackB for Strided<'_> {
    fn pack_b(&self, isa: Isa, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]) {
        self.pack_panels(isa, p0 * self.rs + j0 * self.cs, nc, self.cs, kc, self.rs, nr, dst);
    }
}

/// Cache blocking for one kernel shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocking {
    /// Depth of one packed block (B̃ micro-panel `kc x NR` lives in L1).
    pub kc: usize,
    /// Rows of Ã (`mc x kc`, in L2); a multiple of `MR`.
    pub mc: usize,
    /// Columns of B̃ (`kc x nc`, in L2/L3); a multiple of `NR`.
    pub nc: usize,
}

/// The blocking for a kernel: kc <= 576 (split evenly), mc = 168 rows, nc = 1024 columns,
/// from sweeps on this project's machine (Zen 5: 48 KB L1d, 1 MB L2 per core).
/// `CREMA_GEMM_KC` / `_MC` / `_NC` override them, read once, for tuning on other machines.
fn blocking(kern: &Kernel) -> Blocking {
    if kern.mr == 4 {
        return Blocking { kc: 256, mc: 64, nc: 1024 };
    }
    static ENV: std::sync::OnceLock<(usize, usize, usize)> = std::sync::OnceLock::new();
    let (kc, mc, nc) = *ENV.get_or_init(|| {
        let env = |name: &str, def: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&v| v > 0).unwrap_or(def);
        (env("CREMA_GEMM_KC", 576), env("CREMA_GEMM_MC", 14 * 12), env("CREMA_GEMM_NC", 1024))
    });
    Blocking { kc, mc: mc.div_ceil(kern.mr) * kern.mr, nc: nc.div_ceil(kern.nr) * kern.nr }
}

/// The C operand shared by the threads of one product, each writing its own disjoint tiles.
#[derive(Clone, Copy)]
struct CPtr {
    ptr: *mut f32,
    ldc: usize,
}
// SAFETY: threads write disjoint row or column ranges of C (see `gemm`).
unsafe impl Send for CPtr {}
// SAFETY: as above.
unsafe impl Sync for CPtr {}

thread_local! {
    /// Per-thread packing buffers (Ã, B̃), grown on demand and reused across calls.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A 64-byte-aligned window of `len` floats inside `v`, growing `v` when needed.
pub(crate) fn aligned(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len + 16 {
        v.resize(len + 16, 0.0);
    }
    let off = v.as_ptr().align_offset(64).min(15);
    &mut v[off..off + len]
}

/// `C = alpha * A·B + beta * C` for packable `A` (`m x k`) and `B` (`k x n`), C row-major with
/// leading dimension `ldc`, on up to `threads` threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<A: PackA, B: PackB>(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &A,
    b: &B,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= ldc || m == 1, "gemm: ldc smaller than a row of C");
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: C too short");
    if k == 0 || alpha == 0.0 {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    let kern = kernel(isa);
    let blk = blocking(&kern);
    let cp = CPtr { ptr: c.as_mut_ptr(), ldc };
    let threads = if (m * n).saturating_mul(k) < 1 << 20 { 1 } else { threads.max(1) };
    // Split the dimension with more register tiles; each part a whole number of tiles.
    let (mt, nt) = (m.div_ceil(kern.mr), n.div_ceil(kern.nr));
    let split_n = nt >= mt || mt < threads;
    let tiles = if split_n { nt } else { mt };
    let parts = threads.min(tiles);
    let step = if split_n { kern.nr } else { kern.mr };
    let range = |t: usize, len: usize| {
        let (lo, hi) = (tiles * t / parts * step, tiles * (t + 1) / parts * step);
        (lo.min(len), hi.min(len))
    };
    let run = |t: usize| {
        let (i0, i1, j0, j1) = if split_n {
            let (lo, hi) = range(t, n);
            (0, m, lo, hi)
        } else {
            let (lo, hi) = range(t, m);
            (lo, hi, 0, n)
        };
        // SAFETY: this part writes only rows i0..i1 x columns j0..j1 of C, disjoint from the others.
        unsafe { gemm_block(&kern, &blk, i0, i1, j0, j1, k, alpha, a, b, beta, cp) };
    };
    if parts == 1 {
        run(0);
    } else {
        (0..parts).into_par_iter().for_each(run);
    }
}

/// One thread's share: rows `i0..i1`, columns `j0..j1` of C.
///
/// # Safety
/// `c` must be valid for rows `i0..i1` x columns `j0..j1` with no other thread touching them.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block<A: PackA, B: PackB>(
    kern: &Kernel,
    blk: &Blocking,
    i0: usize,
    i1: usize,
    j0: usize,
    j1: usize,
    k: usize,
    alpha: f32,
    a: &A,
    b: &B,
    beta: f32,
    c: CPtr,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    // Even K blocks: 576 = 3 x 192 rather than 384 + 192.
    let kblocks = k.div_ceil(blk.kc);
    let kc_max = k.div_ceil(kblocks);
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (abuf, bbuf) = &mut *s;
        let nc_max = blk.nc.min((j1 - j0).div_ceil(nr) * nr);
        let mc_max = blk.mc.min((i1 - i0).div_ceil(mr) * mr);
        let bpk = aligned(bbuf, kc_max * nc_max);
        let apk = aligned(abuf, kc_max * mc_max);
        for jc in (j0..j1).step_by(nc_max) {
            let nc = nc_max.min(j1 - jc);
            for kb in 0..kblocks {
                let p0 = kb * kc_max;
                let kc = kc_max.min(k - p0);
                b.pack_b(kern.isa, p0, kc, jc, nc, nr, bpk);
                let beta_eff = if kb == 0 { beta } else { 1.0 };
                for ic in (i0..i1).step_by(mc_max) {
                    let mc = mc_max.min(i1 - ic);
                    a.pack_a(kern.isa, ic, mc, p0, kc, mr, apk);
                    for jr in (0..nc).step_by(nr) {
                        let bp = bpk[jr * kc..].as_ptr();
                        for ir in (0..mc).step_by(mr) {
                            let ap = apk[ir * kc..].as_ptr();
                            // SAFETY: the panels hold kc x MR / kc x NR floats; the tile
                            // (ic + ir, jc + jr) of size min(mr, ..) x min(nr, ..) is inside
                            // this thread's part of C.
                            unsafe {
                                let cptr = c.ptr.add((ic + ir) * c.ldc + jc + jr);
                                (kern.run)(kc, ap, bp, cptr, c.ldc, alpha, beta_eff, mr.min(mc - ir), nr.min(nc - jr));
                            }
                        }
                    }
                }
            }
        }
    });
}

fn scale_c(m: usize, n: usize, beta: f32, c: &mut [f32], ldc: usize) {
    for r in 0..m {
        let row = &mut c[r * ldc..r * ldc + n];
        if beta == 0.0 {
            row.fill(0.0);
        } else {
            row.iter_mut().for_each(|v| *v *= beta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift) for test data.
    pub(crate) fn rand_vec(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn naive(ta: bool, tb: bool, m: usize, n: usize, k: usize, alpha: f32, a: &[f32], lda: usize, b: &[f32], ldb: usize, beta: f32, c: &mut [f32], ldc: usize) {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if ta { a[p * lda + i] } else { a[i * lda + p] };
                    let bv = if tb { b[j * ldb + p] } else { b[p * ldb + j] };
                    s += av as f64 * bv as f64;
                }
                let old = c[i * ldc + j] as f64;
                c[i * ldc + j] = (alpha as f64 * s + if beta == 0.0 { 0.0 } else { beta as f64 * old }) as f32;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check(isa: Isa, ta: bool, tb: bool, m: usize, n: usize, k: usize, pad: usize, alpha: f32, beta: f32, seed: u64) {
        let lda = if ta { m } else { k } + pad;
        let ldb = if tb { k } else { n } + pad;
        let ldc = n + pad;
        let a = rand_vec(seed, (if ta { k } else { m }).max(1) * lda);
        let b = rand_vec(seed + 1, (if tb { n } else { k }).max(1) * ldb);
        let mut c0 = rand_vec(seed + 2, m * ldc);
        if beta == 0.0 {
            // beta = 0 must ignore whatever C held, NaN included.
            c0.iter_mut().step_by(3).for_each(|v| *v = f32::NAN);
        }
        let mut want = c0.clone();
        naive(ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut want, ldc);
        let mut got = c0.clone();
        sgemm_isa(isa, ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut got, ldc);
        for i in 0..m {
            for j in 0..ldc {
                let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                if j >= n {
                    assert!(g.to_bits() == c0[i * ldc + j].to_bits(), "{isa:?}: padding of C written at ({i},{j})");
                    continue;
                }
                let tol = 1e-5 * (1.0 + (k as f32).sqrt()) * (1.0 + w.abs());
                assert!((g - w).abs() <= tol, "{isa:?} ta={ta} tb={tb} {m}x{n}x{k} a={alpha} b={beta} at ({i},{j}): {g} vs {w}");
            }
        }
    }

    #[test]
    fn matches_naive_in_all_transposes_and_odd_sizes() {
        for isa in Isa::all_available() {
            let mut seed = 1;
            for (m, n, k) in [(1, 1, 1), (13, 29, 17), (14, 32, 5), (15, 33, 70), (70, 1, 3), (1, 70, 64), (3, 5, 0), (29, 47, 61)] {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (2.0, -0.5)] {
                        for pad in [0, 3] {
                            seed += 3;
                            check(isa, ta, tb, m, n, k, pad, alpha, beta, seed);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn blocks_and_threads_agree_with_naive() {
        // Large enough for several K blocks, M/N blocks and a two-way split.
        for isa in Isa::all_available() {
            check(isa, false, false, 200, 300, 900, 1, 1.0, 0.0, 7);
            check(isa, true, true, 301, 150, 410, 0, 1.5, 1.0, 8);
        }
    }

    #[test]
    fn same_bits_for_any_thread_count() {
        let (m, n, k) = (97, 301, 777);
        let a = rand_vec(1, m * k);
        let b = rand_vec(2, k * n);
        let sa = Strided { data: &a, rs: k, cs: 1 };
        let sb = Strided { data: &b, rs: n, cs: 1 };
        for isa in Isa::all_available() {
            let mut c1 = vec![0.0; m * n];
            gemm(isa, m, n, k, 1.0, &sa, &sb, 0.0, &mut c1, n, 1);
            for t in [2, 3, 5] {
                let mut ct = vec![0.0; m * n];
                gemm(isa, m, n, k, 1.0, &sa, &sb, 0.0, &mut ct, n, t);
                assert!(c1.iter().zip(&ct).all(|(x, y)| x.to_bits() == y.to_bits()), "{isa:?} {t} threads");
            }
        }
    }
}
