//! AVX2 direct convolution ([`super`]): the AVX-512 loops with eight-lane vectors, masked
//! loads keeping every read inside its input row (`vmaskmov` does not touch masked-off lanes).

use super::*;
use crate::backend::cpu::conv_winograd::avx2::first;
use std::arch::x86_64::*;

/// Lanes `lo..hi` of eight, as a mask vector.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn span8(lo: isize, hi: isize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let (lo, hi) = (lo.clamp(-1, 8) as i32, hi.clamp(0, 8) as i32);
    _mm256_and_si256(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(lo - 1)), _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), idx))
}

/// Masks and start columns of the vectors of one chunk of 8·V output columns under each
/// kernel column `j` (at most 16 kernel columns; wider kernels take the portable loops).
struct Chunk<const V: usize> {
    start: [[isize; V]; 16],
    mask: [[__m256i; V]; 16],
}

impl<const V: usize> Chunk<V> {
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn new(g: &Geo, ox0: usize) -> Self {
        let mut c = Chunk { start: [[0; V]; 16], mask: [[_mm256_setzero_si256(); V]; 16] };
        for j in 0..g.kw.min(16) {
            for v in 0..V {
                let o = ox0 + 8 * v;
                let st = (o + j) as isize - g.pw as isize;
                // Output columns past ow read nothing (their results are not stored).
                let valid_out = (g.ow as isize - o as isize).clamp(0, 8);
                c.start[j][v] = st;
                c.mask[j][v] = _mm256_and_si256(span8(-st, g.w as isize - st), span8(0, valid_out));
            }
        }
        c
    }
}

/// One output row of channels `k0..k0 + kb` (kb <= 4), 16 columns at a time: each output is
/// one FMA chain over (c, i, j), as in the AVX-512 loop.
///
/// # Safety
/// AVX2 and FMA; `y` holds the output and this row of these channels is the caller's;
/// `g.kw <= 16`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn forward_row(g: &Geo, xg: &[f32], wg: &[f32], o: usize, k0: usize, kb: usize, y: Shared, y0: usize) {
    assert!(kb <= 4 && g.kw <= 16);
    assert!(xg.len() >= g.cg * g.h * g.w && wg.len() >= (k0 + kb) * g.cg * g.kh * g.kw);
    let (plane, kstride) = (g.h * g.w, g.cg * g.kh * g.kw);
    for ox0 in (0..g.ow).step_by(16) {
        let ch = Chunk::<2>::new(g, ox0);
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        for c in 0..g.cg {
            for i in 0..g.kh {
                let Some(ir) = g.in_row(o, i) else { continue };
                let row = xg.as_ptr().wrapping_add(c * plane + ir * g.w);
                let wrow = (c * g.kh + i) * g.kw;
                for j in 0..g.kw {
                    // SAFETY: the masks keep the loads inside this input row.
                    let xv: [__m256; 2] = std::array::from_fn(|v| unsafe { _mm256_maskload_ps(row.wrapping_offset(ch.start[j][v]), ch.mask[j][v]) });
                    for (kk, ak) in acc.iter_mut().enumerate().take(kb) {
                        // SAFETY: inside wg (asserted above).
                        let wv = _mm256_set1_ps(unsafe { *wg.get_unchecked((k0 + kk) * kstride + wrow + j) });
                        for (av, xvv) in ak.iter_mut().zip(&xv) {
                            *av = _mm256_fmadd_ps(wv, *xvv, *av);
                        }
                    }
                }
            }
        }
        for (kk, ak) in acc.iter().enumerate().take(kb) {
            let base = y0 + (k0 + kk) * g.oh * g.ow + ox0;
            for (v, av) in ak.iter().enumerate() {
                let n = (g.ow as isize - (ox0 + 8 * v) as isize).clamp(0, 8) as usize;
                if n == 0 {
                    break;
                }
                assert!(base + 8 * v + n <= y.1);
                // SAFETY: n floats from base + 8v are inside y (checked); ours.
                unsafe { _mm256_maskstore_ps(y.0.add(base + 8 * v), first(n), *av) };
            }
        }
    }
}

/// The sum of a vector's lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
}

/// See [`super::filter_sums`]; `g.kw <= 16`.
///
/// # Safety
/// AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn filter_sums(g: &Geo, xc: &[f32], dyk: &[f32], kb: usize, t0: usize, tn: usize) -> [[f32; 9]; 2] {
    assert!(kb <= 2 && tn <= 9 && g.kw <= 16);
    assert!(xc.len() >= g.h * g.w && dyk.len() >= kb * g.oh * g.ow);
    let mut acc = [[_mm256_setzero_ps(); 9]; 2];
    let taps: [(usize, usize); 9] = std::array::from_fn(|t| ((t0 + t) / g.kw, (t0 + t) % g.kw));
    let chunks: Vec<Chunk<1>> = (0..g.ow).step_by(8).map(|ox0| Chunk::<1>::new(g, ox0)).collect();
    for o in 0..g.oh {
        for (q, ch) in chunks.iter().enumerate() {
            let ox0 = 8 * q;
            let m = first(g.ow - ox0);
            let mut d = [_mm256_setzero_ps(); 2];
            for (kk, dk) in d.iter_mut().enumerate().take(kb) {
                // SAFETY: masked to the row's ow floats, inside dyk (asserted).
                *dk = unsafe { _mm256_maskload_ps(dyk.as_ptr().add((kk * g.oh + o) * g.ow + ox0), m) };
            }
            for (t, &(i, j)) in taps.iter().enumerate().take(tn) {
                let Some(ir) = g.in_row(o, i) else { continue };
                // SAFETY: the mask keeps the load inside input row ir.
                let xv = unsafe { _mm256_maskload_ps(xc.as_ptr().wrapping_add(ir * g.w).wrapping_offset(ch.start[j][0]), ch.mask[j][0]) };
                for (ak, dk) in acc.iter_mut().zip(&d) {
                    ak[t] = _mm256_fmadd_ps(*dk, xv, ak[t]);
                }
            }
        }
    }
    let mut out = [[0.0f32; 9]; 2];
    for kk in 0..kb {
        for t in 0..tn {
            out[kk][t] = hsum(acc[kk][t]);
        }
    }
    out
}
