//! AVX2 stages of the Winograd path ([`super`]): one vector is one half-group of eight tiles,
//! so the layouts are the portable path's, computed eight tiles (or eight channels) at a time
//! with the transforms of [`winograd::avx2`](crate::backend::cpu::winograd::avx2), which give
//! the AVX-512 stages' bits. A half-group's six input columns are stride-4 phases of one input
//! row: 4x4 transposes within each 128-bit half pull them out, and put output rows back
//! together.

use super::*;
use crate::backend::cpu::winograd::avx2::{input_tile, output_tile, transpose4x2, transpose8, weight_tile};
use std::arch::x86_64::*;

/// Lanes `0..n` of a mask vector (`n` up to 8).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn first(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Stores the first `mr` lanes of `v` (`kmask`) at `dst`, one of a series of `mr`-float runs
/// stored front to back: all eight lanes but for the `last` run, since the next run's store
/// overwrites the two after it. (A masked store costs many times a plain one on AMD's cores.)
///
/// # Safety
/// `mr` floats at `dst` are writable, and unless `last` the `8 - mr` after them too; `mr`
/// is at least 2 (with eight lanes the next run then covers them).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn store_run(dst: *mut f32, v: __m256, kmask: __m256i, last: bool) {
    // SAFETY: forwarded.
    unsafe {
        if last {
            _mm256_maskstore_ps(dst, kmask, v);
        } else {
            _mm256_storeu_ps(dst, v);
        }
    }
}

/// See [`super::weights_panel`]: eight input channels per vector, gathered from the panel's
/// kernels copied compact; an 8x8 transpose per ξ turns the panel's output channels into the
/// packed lanes.
///
/// # Safety
/// AVX2 and FMA; `2 <= mr <= 8`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn weights_panel(p: &Problem, wts: &Weights, mr: usize, kp: usize, blk: &mut [f32]) {
    // SAFETY: forwarded (AVX2 and FMA).
    with_compact_panel(p, wts, mr, kp, |local, rows| unsafe { weights_from(p, local, mr, rows, blk) });
}

/// [`weights_panel`] on the panel's kernels, `rows` output channels from 0 in `wts`.
///
/// # Safety
/// AVX2 and FMA; `2 <= mr <= 8`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn weights_from(p: &Problem, wts: &Weights, mr: usize, rows: usize, blk: &mut [f32]) {
    assert!((2..=8).contains(&mr) && rows <= mr);
    let kmask = first(mr);
    let step = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(wts.cs as i32));
    let mut stage = [[_mm256_setzero_ps(); 36]; 8];
    for c0 in (0..p.c).step_by(8) {
        let lanes = 8.min(p.c - c0);
        let cmask = _mm256_castsi256_ps(first(lanes));
        for (kl, st) in stage.iter_mut().enumerate().take(rows) {
            let base = kl * wts.ks + c0 * wts.cs;
            assert!(base + (lanes - 1) * wts.cs + 9 <= wts.w.len());
            let mut g = [[_mm256_setzero_ps(); 3]; 3];
            for t in 0..9 {
                let src = if wts.flip { 8 - t } else { t };
                // SAFETY: the gathered lanes (< lanes) read w[base + l·cs + src], inside w
                // (checked above); masked-off lanes read nothing.
                g[t / 3][t % 3] = unsafe { _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), wts.w.as_ptr().add(base + src), step, cmask) };
            }
            weight_tile(&g, st);
        }
        for xi in 0..36 {
            let r: [__m256; 8] = std::array::from_fn(|kl| if kl < rows { stage[kl][xi] } else { _mm256_setzero_ps() });
            let cols = transpose8(&r);
            let o = (xi * p.c + c0) * mr;
            assert!(o + lanes * mr <= blk.len());
            for (cl, col) in cols.iter().enumerate().take(lanes) {
                // SAFETY: mr floats at o + cl·mr, inside blk (checked above).
                unsafe { store_run(blk.as_mut_ptr().add(o + cl * mr), *col, kmask, cl + 1 == lanes) };
            }
        }
    }
}

/// Floats `i..i + 4` and `i + 16..i + 20` of `q`, as the low and high halves of a vector.
///
/// # Safety
/// `q` holds `i + 20` floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn halves_at(q: *const f32, i: usize) -> __m256 {
    // SAFETY: forwarded.
    unsafe { _mm256_loadu2_m128(q.add(i + 16), q.add(i)) }
}

/// Floats `w0..w0 + 36` of `row`, zero outside it: what eight tiles of a row read (34 for
/// 6x6 input tiles, 32 for 4x4 gradient tiles).
#[inline]
pub(crate) fn window(row: &[f32], w0: isize) -> [f32; 36] {
    let mut buf = [0.0f32; 36];
    let (a, b) = (w0.max(0), (w0 + 36).min(row.len() as isize));
    if a < b {
        buf[(a - w0) as usize..(b - w0) as usize].copy_from_slice(&row[a as usize..b as usize]);
    }
    buf
}

/// Four stride-4 phases of a window from float `at` (0 or 4): lane `j` of phase `s` is
/// float `at + 4j + s`, the column `s` of tile `j` (four columns on for `at == 4`).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn phases(buf: &[f32; 36], at: usize) -> [__m256; 4] {
    assert!(at <= 4);
    let q = buf.as_ptr();
    // SAFETY: the highest float read is at + 12 + 16 + 3 <= 35, inside buf.
    unsafe { transpose4x2([halves_at(q, at), halves_at(q, at + 4), halves_at(q, at + 8), halves_at(q, at + 12)]) }
}

/// The 6x6 input tiles of channel `c` under half-group `h`, lanes = tiles (zeros past the
/// image and where `h.cnt == 0`; lanes past `cnt` hold whatever the image has there).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn gather6(p: &Problem, c: usize, h: &Half, x: &[f32]) -> [[__m256; 6]; 6] {
    let mut d = [[_mm256_setzero_ps(); 6]; 6];
    if h.cnt == 0 {
        return d;
    }
    for (r, dr) in d.iter_mut().enumerate() {
        let ih = (4 * h.ti + r) as isize - p.ph as isize;
        if ih < 0 || ih >= p.h as isize {
            continue;
        }
        let row = &x[h.n * p.x_img + c * p.h * p.w + ih as usize * p.w..][..p.w];
        let buf = window(row, (4 * h.tj0) as isize - p.pw as isize);
        // Phases 4 and 5 are phases 0 and 1 four columns on.
        let (lo, hi) = (phases(&buf, 0), phases(&buf, 4));
        *dr = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]];
    }
    d
}

/// See [`super::input_stage`].
///
/// # Safety
/// See [`super::input_stage`]; AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn input_stage(p: &Problem, tl: &Tiling, geo: &Geo, x: &[f32], c0: usize, c1: usize, pa: usize, pb: usize, v: Shared) {
    let np = pb - pa;
    let hs: Vec<[Half; 2]> = (pa * geo.gpp..pb * geo.gpp).map(|gi| tl.group(gi)).collect();
    // Channel by channel, so that each plane's rows are read front to back.
    for c in c0..c1 {
        for (gl, halves) in hs.iter().enumerate() {
            let gi = pa * geo.gpp + gl;
            let (tp, off) = (gi / geo.gpp - pa, (gi % geo.gpp) * 16);
            for (hi, h) in halves.iter().enumerate() {
                let d = gather6(p, c, h, x);
                let mut out = [_mm256_setzero_ps(); 36];
                input_tile(&d, &mut out);
                for (xi, ov) in out.iter().enumerate() {
                    let o = ((xi * np + tp) * p.c + c) * geo.nr + off + 8 * hi;
                    debug_assert!(o + 8 <= v.1);
                    // SAFETY: o..o + 8 is inside v; channel c is this task's.
                    unsafe { _mm256_storeu_ps(v.0.add(o), *ov) };
                }
            }
        }
    }
}

/// See [`super::output_stage`].
///
/// # Safety
/// See [`super::output_stage`]; AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn output_stage(p: &Problem, tl: &Tiling, geo: &Geo, m: &[f32], kbase: usize, kloc: usize, ks: usize, ke: usize, t0: usize, t1: usize, y: Shared) {
    let tw = (t1 - t0) * geo.nr;
    let hs: Vec<[Half; 2]> = (t0 * geo.gpp..t1 * geo.gpp).map(|gi| tl.group(gi)).collect();
    // Channel by channel, so that each output plane's rows are written front to back.
    for k in ks..ke {
        for (gl, halves) in hs.iter().enumerate() {
            for (hi, h) in halves.iter().enumerate() {
                if h.cnt == 0 {
                    continue;
                }
                let lane0 = gl * 16 + 8 * hi;
                let mut mv = [_mm256_setzero_ps(); 36];
                for (xi, v) in mv.iter_mut().enumerate() {
                    let o = (xi * kloc + k - kbase) * tw + lane0;
                    assert!(o + 8 <= m.len());
                    // SAFETY: checked above.
                    *v = unsafe { _mm256_loadu_ps(m.as_ptr().add(o)) };
                }
                let mut t = [[_mm256_setzero_ps(); 4]; 4];
                output_tile(&mv, &mut t);
                // SAFETY: forwarded: the caller owns these outputs.
                unsafe { scatter(p, k, h, &t, y) };
            }
        }
    }
}

/// Writes the 4x4 output tiles of half-group `h` for output channel `k`: `t[r][s]` holds,
/// in lane `j`, row `r` and column `s` of tile `j`.
///
/// # Safety
/// `y` holds the problem's output and the caller owns these tiles of channel `k`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scatter(p: &Problem, k: usize, h: &Half, t: &[[__m256; 4]; 4], y: Shared) {
    // Columns of this half-group that exist: below ow and inside its `cnt` tiles.
    let col0 = 4 * h.tj0;
    let n = p.ow.min(4 * (h.tj0 + h.cnt)) - col0;
    for (r, tr) in t.iter().enumerate() {
        let oh = 4 * h.ti + r;
        if oh >= p.oh {
            break;
        }
        let off = h.n * p.y_img + k * p.oh * p.ow + oh * p.ow + col0;
        assert!(off + n <= y.1);
        // q[s] holds tile s's four columns in its low half and tile s + 4's in its high half.
        let q = transpose4x2(*tr);
        let row = [
            _mm256_permute2f128_ps::<0x20>(q[0], q[1]),
            _mm256_permute2f128_ps::<0x20>(q[2], q[3]),
            _mm256_permute2f128_ps::<0x31>(q[0], q[1]),
            _mm256_permute2f128_ps::<0x31>(q[2], q[3]),
        ];
        for (i, v) in row.iter().enumerate() {
            let lo = 8 * i;
            if lo >= n {
                break;
            }
            // SAFETY: columns lo..min(lo + 8, n) of row `oh`, inside y (checked) and ours.
            unsafe {
                if n - lo >= 8 {
                    _mm256_storeu_ps(y.0.add(off + lo), *v);
                } else {
                    _mm256_maskstore_ps(y.0.add(off + lo), first(n - lo), *v);
                }
            }
        }
    }
}
