//! Winograd F(4x4, 3x3) kernel gradient of a 3x3 stride-1 convolution:
//! `dW[k, c] += Gᵀ [Σ_t (A dY_t Aᵀ) ⊙ (Bᵀ X_t B)] G` over the 4x4 output tiles `t`.
//!
//! For each transform point ξ the sum over tiles is a GEMM with the tiles as its depth,
//! `dU_ξ (K x C) += Z_ξ (K x tiles) · V_ξᵀ (tiles x C)`, run by the packed-GEMM microkernel.
//! The transforms work on sixteen tiles per vector (eight with AVX2); in-register transposes
//! turn their results into the packed panels the microkernel reads (`Z`:
//! `[ξ][K panel][tile][MR]`, `V`: `[ξ][C panel][tile][NR]`).
//!
//! The transforms run in parallel over output-channel panels and 16-channel chunks. Then:
//! - when `Z` and `V` of all tiles fit a budget ([`Budgets`]; deep layers, few tiles): units
//!   over blocks of output-channel panels, each running the 36 GEMMs of one
//!   `MR x NR` block of `dU` over all tiles and transforming it straight into `dW`;
//! - otherwise (many tiles, few channels): blocks of tiles, the GEMMs in parallel over ξ,
//!   each ξ owning its `dU_ξ`, blocks accumulating in order; `dU` is held for a range of
//!   output channels at a time (also budgeted).
//!
//! Either way every sum has one fixed order, whatever the thread count.

use super::conv_winograd::{gather_tile, grow, Budgets, Half, Problem, Shared, Tiling};
use super::gemm_kernel::{kernel, Kernel};
use super::isa::Isa;
use super::winograd::scalar;
use rayon::prelude::*;
use std::cell::RefCell;


thread_local! {
    /// dU, Z and V of a call (on the calling thread; tasks reach them through pointers).
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
    /// One unit's `dU` tile (36 x MR x NR).
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The shape of one call's buffers.
struct Geo {
    kern: Kernel,
    mr: usize,
    nr: usize,
    /// Input-channel panels of `nr`.
    cpan: usize,
    /// Output-channel panels of this range, from panel `kp0`.
    kp0: usize,
    nkp: usize,
    /// Groups `g0..g0 + tb / 16` of this block; `tb` tiles.
    g0: usize,
    tb: usize,
}

/// `dw[k·ks + c·cs + (3i + j)] += dW[k, c, i, j]` for one channel group: `x` has the
/// problem's input geometry, `dy` its output geometry.
pub(crate) fn backward_filter(isa: Isa, p: &Problem, x: &[f32], dy: &[f32], dw: &mut [f32], ks: usize, cs: usize) {
    backward_filter_with(isa, p, x, dy, dw, ks, cs, &Budgets::DEFAULT)
}

/// [`backward_filter`] with explicit scratch budgets.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_filter_with(isa: Isa, p: &Problem, x: &[f32], dy: &[f32], dw: &mut [f32], ks: usize, cs: usize, b: &Budgets) {
    assert!(p.num > 0 && dy.len() >= (p.num - 1) * p.y_img + p.k * p.oh * p.ow, "winograd: dy too short");
    assert!(x.len() >= (p.num - 1) * p.x_img + p.c * p.h * p.w, "winograd: x too short");
    if p.k == 0 || p.c == 0 || p.oh == 0 || p.ow == 0 {
        return;
    }
    assert!(dw.len() > (p.k - 1) * ks + (p.c - 1) * cs + 8, "winograd: dw too short");
    let kern = kernel(isa);
    let (mr, nr) = (kern.mr, kern.nr);
    let tl = Tiling::new(p);
    let groups = tl.groups();
    let (kpan, cpan) = (p.k.div_ceil(mr), p.c.div_ceil(nr));
    let threads = rayon::current_num_threads();
    let dwp = Shared(dw.as_mut_ptr(), dw.len());
    let t_all = 16 * groups;
    if 36 * 4 * t_all * (kpan * mr + cpan * nr) <= b.zv_all {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let (_, zb, vb) = &mut *s;
            let geo = Geo { kern, mr, nr, cpan, kp0: 0, nkp: kpan, g0: 0, tb: t_all };
            let (z, v) = transform_block(isa, p, &tl, &geo, x, dy, zb, vb);
            let kper = ((512 << 10) / (36 * t_all * mr * 4)).clamp(1, kpan.div_ceil(2 * threads));
            (0..kpan.div_ceil(kper)).into_par_iter().for_each(|u| {
                TILE.with(|t| {
                    let mut t = t.borrow_mut();
                    let tile = grow(&mut t, 36 * mr * nr);
                    for cp in 0..cpan {
                        let (c0, c1) = (cp * nr, (cp * nr + nr).min(p.c));
                        for kp in u * kper..((u + 1) * kper).min(kpan) {
                            // dW is read-modify-written once per element: ask for this
                            // block's rows while the 36 GEMMs run.
                            for k in kp * mr..(kp * mr + mr).min(p.k) {
                                prefetch_range(dwp, k * ks + c0 * cs, (c1 - c0 - 1) * cs + 9);
                            }
                            for xi in 0..36 {
                                let a = z[((xi * kpan + kp) * t_all) * mr..].as_ptr();
                                let bp = v[((xi * cpan + cp) * t_all) * nr..].as_ptr();
                                let c = tile[xi * mr * nr..].as_mut_ptr();
                                // SAFETY: the panels hold t_all x mr and t_all x nr floats; the
                                // tile holds mr x nr at row stride nr.
                                unsafe { (geo.kern.run)(t_all, a, bp, c, nr, 1.0, 0.0, mr, nr) };
                            }
                            for kl in 0..mr.min(p.k - kp * mr) {
                                // SAFETY: this unit owns output channels of panels u·kper...
                                unsafe { filter_stage(isa, p, tile, mr * nr, nr, kl, kp * mr + kl, c0, c1, dwp, ks, cs) };
                            }
                        }
                    }
                });
            });
        });
        return;
    }
    let ldu = cpan * nr;
    let per_kpanel = 36 * mr * ldu * 4;
    let kper = kpan.div_ceil((kpan * per_kpanel).div_ceil(b.du));
    let nkr = kpan.div_ceil(kper);
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (dub, zb, vb) = &mut *s;
        for kr in 0..nkr {
            let (kp0, kp1) = (kr * kper, ((kr + 1) * kper).min(kpan));
            let nkp = kp1 - kp0;
            let per_group = 36 * 16 * 4 * (nkp * mr + ldu);
            let gb = (b.zv / per_group).clamp(1, groups);
            let du = grow(dub, 36 * nkp * mr * ldu);
            du.fill(0.0);
            for g0 in (0..groups).step_by(gb) {
                let tb = 16 * gb.min(groups - g0);
                let geo = Geo { kern, mr, nr, cpan, kp0, nkp, g0, tb };
                let (z, v) = transform_block(isa, p, &tl, &geo, x, dy, zb, vb);
                du.par_chunks_mut(nkp * mr * ldu).enumerate().for_each(|(xi, dux)| {
                    for kp in 0..nkp {
                        let a = z[((xi * nkp + kp) * tb) * mr..].as_ptr();
                        let mr_eff = mr.min(p.k - (kp0 + kp) * mr);
                        for cp in 0..cpan {
                            let b = v[((xi * cpan + cp) * tb) * nr..].as_ptr();
                            let c = dux[kp * mr * ldu + cp * nr..].as_mut_ptr();
                            // SAFETY: the panels hold tb x mr and tb x nr floats; the tile's
                            // mr_eff rows and nr_eff columns are inside dU_ξ (row stride ldu).
                            unsafe { (geo.kern.run)(tb, a, b, c, ldu, 1.0, 1.0, mr_eff, nr.min(p.c - cp * nr)) };
                        }
                    }
                });
            }
            // dW[k, c] += Gᵀ dU G, in parallel over output channels of the range.
            let du = &*du;
            let (k0, k1) = (kp0 * mr, (kp1 * mr).min(p.k));
            (k0..k1).into_par_iter().for_each(|k| {
                // SAFETY: task k adds into dw[k·ks ..] only, for its own k.
                unsafe { filter_stage(isa, p, du, nkp * mr * ldu, ldu, k - k0, k, 0, p.c, dwp, ks, cs) };
            });
        }
    });
}

/// Prefetches `len` floats of `dw` from `from` (a hint only: nothing is accessed).
fn prefetch_range(dw: Shared, from: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for o in (from..from + len).step_by(16) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch never faults and accesses nothing architecturally.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(dw.0.wrapping_add(o) as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dw, from, len);
}

/// Transforms the block's tiles into `Z` (`[ξ][K panel][tile][mr]`) and `V`
/// (`[ξ][C panel][tile][nr]`), in parallel over output-channel panels and 16-channel chunks.
#[allow(clippy::too_many_arguments)]
fn transform_block<'a>(
    isa: Isa,
    p: &Problem,
    tl: &Tiling,
    geo: &Geo,
    x: &[f32],
    dy: &[f32],
    zb: &'a mut Vec<f32>,
    vb: &'a mut Vec<f32>,
) -> (&'a [f32], &'a [f32]) {
    let z = grow(zb, 36 * geo.nkp * geo.tb * geo.mr);
    let v = grow(vb, 36 * geo.cpan * geo.tb * geo.nr);
    let (zp, vp) = (Shared(z.as_mut_ptr(), z.len()), Shared(v.as_mut_ptr(), v.len()));
    let chunks = p.c.div_ceil(16);
    (0..geo.nkp + chunks).into_par_iter().for_each(|task| {
        // SAFETY: task kp writes Z panel kp only; task nkp + q writes channels 16q.. of V only.
        unsafe {
            if task < geo.nkp {
                z_stage(isa, p, tl, geo, dy, task, zp);
            } else {
                v_stage(isa, p, tl, geo, x, task - geo.nkp, vp);
            }
        }
    });
    (&*z, &*v)
}

/// `Z` for output-channel panel `kp` (of the range) and the block's tiles.
///
/// # Safety
/// No other task writes this panel of `z`.
#[allow(clippy::too_many_arguments)]
unsafe fn z_stage(isa: Isa, p: &Problem, tl: &Tiling, geo: &Geo, dy: &[f32], kp: usize, z: Shared) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 available; the rest forwarded.
        Isa::Avx512 => unsafe { avx::z_stage(p, tl, geo, dy, kp, z) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA available; the rest forwarded.
        Isa::Avx2 => unsafe { avx2::z_stage(p, tl, geo, dy, kp, z) },
        _ => {
            let k0 = (geo.kp0 + kp) * geo.mr;
            for gl in 0..geo.tb / 16 {
                for (hi, h) in tl.group(geo.g0 + gl).iter().enumerate() {
                    for j in 0..8 {
                        let t = gl * 16 + hi * 8 + j;
                        for kl in 0..geo.mr.min(p.k - k0) {
                            let d = gather_grad(p, k0 + kl, h, j, dy);
                            let mut out = [0.0; 36];
                            scalar::grad_tile(&d, &mut out);
                            for (xi, val) in out.iter().enumerate() {
                                let o = ((xi * geo.nkp + kp) * geo.tb + t) * geo.mr + kl;
                                debug_assert!(o < z.1);
                                // SAFETY: o is inside z, in this task's panel.
                                unsafe { *z.0.add(o) = *val };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `V` for input channels `16q..16q + 16` and the block's tiles.
///
/// # Safety
/// No other task writes these channels of `v`.
unsafe fn v_stage(isa: Isa, p: &Problem, tl: &Tiling, geo: &Geo, x: &[f32], q: usize, v: Shared) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 available; the rest forwarded.
        Isa::Avx512 => unsafe { avx::v_stage(p, tl, geo, x, q, v) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA available; the rest forwarded.
        Isa::Avx2 => unsafe { avx2::v_stage(p, tl, geo, x, q, v) },
        _ => {
            for gl in 0..geo.tb / 16 {
                for (hi, h) in tl.group(geo.g0 + gl).iter().enumerate() {
                    for j in 0..8 {
                        let t = gl * 16 + hi * 8 + j;
                        for c in 16 * q..(16 * q + 16).min(p.c) {
                            let d = gather_tile(p, c, h, j, x);
                            let mut out = [0.0; 36];
                            scalar::input_tile(&d, &mut out);
                            for (xi, val) in out.iter().enumerate() {
                                let o = ((xi * geo.cpan + c / geo.nr) * geo.tb + t) * geo.nr + c % geo.nr;
                                debug_assert!(o < v.1);
                                // SAFETY: o is inside v, in this task's channels.
                                unsafe { *v.0.add(o) = *val };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The 4x4 output-gradient tile of channel `k` under tile `j` of half-group `h` (zeros past
/// the output and for `j >= h.cnt`).
fn gather_grad(p: &Problem, k: usize, h: &Half, j: usize, dy: &[f32]) -> [[f32; 4]; 4] {
    let mut d = [[0.0f32; 4]; 4];
    if j < h.cnt {
        let plane = h.n * p.y_img + k * p.oh * p.ow;
        for (r, dr) in d.iter_mut().enumerate().take(p.oh - 4 * h.ti) {
            for (s, ds) in dr.iter_mut().enumerate().take(p.ow - 4 * (h.tj0 + j)) {
                *ds = dy[plane + (4 * h.ti + r) * p.ow + 4 * (h.tj0 + j) + s];
            }
        }
    }
    d
}

/// `dw[k, c] += Gᵀ dU[·][kl][c - c0] G` for input channels `c0..c1`, where `dU` element
/// `(ξ, row, column)` is `du[ξ·plane + row·ldu + column]`.
///
/// # Safety
/// No other task writes `dw[k·ks ..]` for these channels.
#[allow(clippy::too_many_arguments)]
unsafe fn filter_stage(isa: Isa, p: &Problem, du: &[f32], plane: usize, ldu: usize, kl: usize, k: usize, c0: usize, c1: usize, dw: Shared, ks: usize, cs: usize) {
    debug_assert!(c1 <= p.c);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 available; the rest forwarded.
        Isa::Avx512 => unsafe { avx::filter_stage(du, plane, ldu, kl, k, c0, c1, dw, ks, cs) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA available; the rest forwarded.
        Isa::Avx2 => unsafe { avx2::filter_stage(du, plane, ldu, kl, k, c0, c1, dw, ks, cs) },
        _ => {
            for c in c0..c1 {
                let u: [f32; 36] = std::array::from_fn(|xi| du[xi * plane + kl * ldu + c - c0]);
                let mut g = [[0.0; 3]; 3];
                scalar::filter_tile(&u, &mut g);
                for t in 0..9 {
                    let o = k * ks + c * cs + t;
                    debug_assert!(o < dw.1);
                    // SAFETY: o is inside dw (checked by backward_filter); the caller owns it.
                    unsafe { *dw.0.add(o) += g[t / 3][t % 3] };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "conv_winograd_filter_avx2.rs"]
mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::*;
    use crate::backend::cpu::conv_winograd::avx::{gather6, load_row, phase_idx, prefetch_rows, span};
    use crate::backend::cpu::winograd::avx512::{filter_tile, grad_tile, input_tile, transpose16};
    use std::arch::x86_64::*;

    /// The 4x4 output-gradient tiles of channel `k` under two half-groups, lanes = tiles.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn gather4(p: &Problem, k: usize, halves: &[Half; 2], dy: &[f32], idx: &[__m512i; 4]) -> [[__m512; 4]; 4] {
        let mut d = [[_mm512_setzero_ps(); 4]; 4];
        for (r, dr) in d.iter_mut().enumerate() {
            let mut ph = [[_mm512_setzero_ps(); 4]; 2];
            for (hi, h) in halves.iter().enumerate() {
                let oh = 4 * h.ti + r;
                if h.cnt == 0 || oh >= p.oh {
                    continue;
                }
                let rowoff = h.n * p.y_img + k * p.oh * p.ow + oh * p.ow;
                assert!(rowoff + p.ow <= dy.len());
                // SAFETY: rowoff..rowoff + ow is one row of dy (checked); loads are masked
                // to it, so tiles past the output read zeros.
                unsafe {
                    let row = dy.as_ptr().add(rowoff);
                    let w0 = (4 * h.tj0) as isize;
                    let (l0, l1) = (load_row(row, w0, p.ow), load_row(row, w0 + 16, p.ow));
                    for s in 0..4 {
                        ph[hi][s] = _mm512_permutex2var_ps(l0, idx[s], l1);
                    }
                }
            }
            for s in 0..4 {
                dr[s] = _mm512_mask_blend_ps(0xFF00, ph[0][s], ph[1][s]);
            }
        }
        d
    }

    /// See [`super::z_stage`].
    ///
    /// # Safety
    /// See [`super::z_stage`]; AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn z_stage(p: &Problem, tl: &Tiling, geo: &Geo, dy: &[f32], kp: usize, z: Shared) {
        let idx = phase_idx();
        let k0 = (geo.kp0 + kp) * geo.mr;
        let rows = geo.mr.min(p.k - k0);
        let mask = span(0, geo.mr as isize);
        let mut stage = [[_mm512_setzero_ps(); 36]; 16];
        for gl in 0..geo.tb / 16 {
            let halves = tl.group(geo.g0 + gl);
            for (kl, st) in stage.iter_mut().enumerate().take(rows) {
                if kl + 1 < rows {
                    prefetch_rows(dy.as_ptr(), (k0 + kl + 1) * p.oh * p.ow, p.y_img, p.oh, p.ow, (0, 0), 4, &halves);
                }
                let d = gather4(p, k0 + kl, &halves, dy, &idx);
                grad_tile(&d, st);
            }
            for xi in 0..36 {
                let r: [__m512; 16] = std::array::from_fn(|kl| stage[kl][xi]);
                let cols = transpose16(&r);
                let base = ((xi * geo.nkp + kp) * geo.tb + gl * 16) * geo.mr;
                assert!(base + 16 * geo.mr <= z.1);
                for (t, col) in cols.iter().enumerate() {
                    // SAFETY: mr floats at base + t·mr, inside z (checked), this task's panel.
                    unsafe { _mm512_mask_storeu_ps(z.0.add(base + t * geo.mr), mask, *col) };
                }
            }
        }
    }

    /// See [`super::v_stage`].
    ///
    /// # Safety
    /// See [`super::v_stage`]; AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn v_stage(p: &Problem, tl: &Tiling, geo: &Geo, x: &[f32], q: usize, v: Shared) {
        let idx = phase_idx();
        let c0 = 16 * q;
        let chans = 16.min(p.c - c0);
        let (cp, off) = (c0 / geo.nr, c0 % geo.nr);
        let mut stage = [[_mm512_setzero_ps(); 36]; 16];
        for gl in 0..geo.tb / 16 {
            let halves = tl.group(geo.g0 + gl);
            for (cl, st) in stage.iter_mut().enumerate().take(chans) {
                if cl + 1 < chans {
                    prefetch_rows(x.as_ptr(), (c0 + cl + 1) * p.h * p.w, p.x_img, p.h, p.w, (p.ph, p.pw), 6, &halves);
                }
                let d = gather6(p, c0 + cl, &halves, x, &idx);
                input_tile(&d, st);
            }
            for xi in 0..36 {
                let r: [__m512; 16] = std::array::from_fn(|cl| stage[cl][xi]);
                let cols = transpose16(&r);
                let base = ((xi * geo.cpan + cp) * geo.tb + gl * 16) * geo.nr + off;
                assert!(base + 15 * geo.nr + 16 <= v.1);
                for (t, col) in cols.iter().enumerate() {
                    // SAFETY: 16 floats at base + t·nr, inside v (checked), this task's channels.
                    unsafe { _mm512_storeu_ps(v.0.add(base + t * geo.nr), *col) };
                }
            }
        }
    }

    /// See [`super::filter_stage`]: sixteen input channels per vector; a 16x16 transpose
    /// turns the nine taps of each into one masked add of nine contiguous floats.
    ///
    /// # Safety
    /// See [`super::filter_stage`]; AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn filter_stage(du: &[f32], plane: usize, ldu: usize, kl: usize, k: usize, c0: usize, c1: usize, dw: Shared, ks: usize, cs: usize) {
        for cb in (c0..c1).step_by(16) {
            let lanes = 16.min(c1 - cb);
            let m = span(0, lanes as isize);
            let mut u = [_mm512_setzero_ps(); 36];
            for (xi, uv) in u.iter_mut().enumerate() {
                let o = xi * plane + kl * ldu + cb - c0;
                assert!(o + lanes <= du.len());
                // SAFETY: checked above; only `lanes` floats are read.
                *uv = unsafe { _mm512_maskz_loadu_ps(m, du.as_ptr().add(o)) };
            }
            let mut g = [[_mm512_setzero_ps(); 3]; 3];
            filter_tile(&u, &mut g);
            let rows: [__m512; 16] = std::array::from_fn(|t| if t < 9 { g[t / 3][t % 3] } else { _mm512_setzero_ps() });
            let cols = transpose16(&rows);
            for (l, col) in cols.iter().enumerate().take(lanes) {
                let o = k * ks + (cb + l) * cs;
                assert!(o + 9 <= dw.1);
                // SAFETY: nine floats at o are inside dw (checked); the caller owns them.
                unsafe {
                    let d = dw.0.add(o);
                    _mm512_mask_storeu_ps(d, 0x1FF, _mm512_add_ps(_mm512_maskz_loadu_ps(0x1FF, d), *col));
                }
            }
        }
    }
}
