//! AVX2 stages of the Winograd kernel gradient ([`super`]): eight tiles (one half-group) or
//! eight channels per vector, 8x8 transposes into the packed panels, with the transforms of
//! [`winograd::avx2`](crate::backend::cpu::winograd::avx2).

use super::*;
use crate::backend::cpu::conv_winograd::avx2::{first, gather6, phases, store_run, window};
use crate::backend::cpu::winograd::avx2::{filter_tile, grad_tile, input_tile, transpose8};
use std::arch::x86_64::*;

/// The 4x4 output-gradient tiles of channel `k` under half-group `h`, lanes = tiles (zeros
/// past the output, so for lanes past `cnt`, and where `h.cnt == 0`).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn gather4(p: &Problem, k: usize, h: &Half, dy: &[f32]) -> [[__m256; 4]; 4] {
    let mut d = [[_mm256_setzero_ps(); 4]; 4];
    if h.cnt == 0 {
        return d;
    }
    for (r, dr) in d.iter_mut().enumerate() {
        let oh = 4 * h.ti + r;
        if oh >= p.oh {
            break;
        }
        let row = &dy[h.n * p.y_img + k * p.oh * p.ow + oh * p.ow..][..p.ow];
        *dr = phases(&window(row, (4 * h.tj0) as isize), 0);
    }
    d
}

/// See [`super::z_stage`].
///
/// # Safety
/// See [`super::z_stage`]; AVX2 and FMA; `2 <= mr <= 8`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn z_stage(p: &Problem, tl: &Tiling, geo: &Geo, dy: &[f32], kp: usize, z: Shared) {
    assert!((2..=8).contains(&geo.mr));
    let k0 = (geo.kp0 + kp) * geo.mr;
    let rows = geo.mr.min(p.k - k0);
    let mask = first(geo.mr);
    let mut stage = [[_mm256_setzero_ps(); 36]; 8];
    for gl in 0..geo.tb / 16 {
        for (hi, h) in tl.group(geo.g0 + gl).iter().enumerate() {
            for (kl, st) in stage.iter_mut().enumerate().take(rows) {
                grad_tile(&gather4(p, k0 + kl, h, dy), st);
            }
            for xi in 0..36 {
                let r: [__m256; 8] = std::array::from_fn(|kl| if kl < rows { stage[kl][xi] } else { _mm256_setzero_ps() });
                let cols = transpose8(&r);
                let base = ((xi * geo.nkp + kp) * geo.tb + gl * 16 + hi * 8) * geo.mr;
                assert!(base + 8 * geo.mr <= z.1);
                for (t, col) in cols.iter().enumerate() {
                    // SAFETY: mr floats at base + t·mr, inside z (checked), this task's panel;
                    // all but the last run are followed by the next.
                    unsafe { store_run(z.0.add(base + t * geo.mr), *col, mask, t == 7) };
                }
            }
        }
    }
}

/// See [`super::v_stage`].
///
/// # Safety
/// See [`super::v_stage`]; AVX2 and FMA; `nr` a multiple of 8.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn v_stage(p: &Problem, tl: &Tiling, geo: &Geo, x: &[f32], q: usize, v: Shared) {
    assert!(geo.nr.is_multiple_of(8));
    let c0 = 16 * q;
    let chans = 16.min(p.c - c0);
    let (cp, off) = (c0 / geo.nr, c0 % geo.nr);
    let mut stage = [[_mm256_setzero_ps(); 36]; 16];
    for gl in 0..geo.tb / 16 {
        for (hi, h) in tl.group(geo.g0 + gl).iter().enumerate() {
            for (cl, st) in stage.iter_mut().enumerate().take(chans) {
                input_tile(&gather6(p, c0 + cl, h, x), st);
            }
            for xi in 0..36 {
                let base = ((xi * geo.cpan + cp) * geo.tb + gl * 16 + hi * 8) * geo.nr + off;
                assert!(base + 7 * geo.nr + 16 <= v.1);
                // Channels 8e..8e + 8 of the chunk, one vector per tile (zeros past `chans`).
                for e in 0..2 {
                    let r: [__m256; 8] = std::array::from_fn(|l| if 8 * e + l < chans { stage[8 * e + l][xi] } else { _mm256_setzero_ps() });
                    for (t, col) in transpose8(&r).iter().enumerate() {
                        // SAFETY: 8 floats at base + t·nr + 8e, inside v (checked), this task's
                        // channels.
                        unsafe { _mm256_storeu_ps(v.0.add(base + t * geo.nr + 8 * e), *col) };
                    }
                }
            }
        }
    }
}

/// See [`super::filter_stage`]: eight input channels per vector; an 8x8 transpose turns taps
/// 0..8 of each into one add of eight contiguous floats, and tap 8 is added on its own.
///
/// # Safety
/// See [`super::filter_stage`]; AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn filter_stage(du: &[f32], plane: usize, ldu: usize, kl: usize, k: usize, c0: usize, c1: usize, dw: Shared, ks: usize, cs: usize) {
    for cb in (c0..c1).step_by(8) {
        let lanes = 8.min(c1 - cb);
        let m = first(lanes);
        let mut u = [_mm256_setzero_ps(); 36];
        for (xi, uv) in u.iter_mut().enumerate() {
            let o = xi * plane + kl * ldu + cb - c0;
            assert!(o + lanes <= du.len());
            // SAFETY: checked above; only `lanes` floats are read.
            *uv = unsafe { if lanes == 8 { _mm256_loadu_ps(du.as_ptr().add(o)) } else { _mm256_maskload_ps(du.as_ptr().add(o), m) } };
        }
        let mut g = [[_mm256_setzero_ps(); 3]; 3];
        filter_tile(&u, &mut g);
        let taps: [__m256; 8] = std::array::from_fn(|t| g[t / 3][t % 3]);
        let mut last = [0.0f32; 8];
        // SAFETY: 8 floats into `last`.
        unsafe { _mm256_storeu_ps(last.as_mut_ptr(), g[2][2]) };
        for (l, col) in transpose8(&taps).iter().enumerate().take(lanes) {
            let o = k * ks + (cb + l) * cs;
            assert!(o + 9 <= dw.1);
            // SAFETY: nine floats at o are inside dw (checked); the caller owns them.
            unsafe {
                let d = dw.0.add(o);
                _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), *col));
                *d.add(8) += last[l];
            }
        }
    }
}
