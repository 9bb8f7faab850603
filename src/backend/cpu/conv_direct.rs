//! Direct 2-d convolution (stride 1, dilation 1, any kernel size and padding) for layers with
//! very few output or input channels, where a GEMM would mostly pack and waste its register
//! tile: SegNet's 1-channel input and 2-class output layers.
//!
//! Vectors run along output rows. Forward keeps up to 4 output channels x 4 vectors of one
//! row in registers; backward-filter keeps the partial sums of 2 output channels x up to 9
//! kernel taps of one input channel as vectors over all positions, reduced once at the end,
//! so each kernel-gradient element is one sum in one fixed order.

use super::conv_winograd::Shared;
use super::isa::Isa;
use crate::backend::ConvSpec;
use rayon::prelude::*;

/// The geometry the direct path reads from a spec (2-d, stride 1, dilation 1).
#[derive(Clone, Copy)]
struct Geo {
    cg: usize,
    kg: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    ph: usize,
    pw: usize,
}

impl Geo {
    fn new(s: &ConvSpec) -> Self {
        Geo {
            cg: s.channels / s.group,
            kg: s.out_channels / s.group,
            h: s.in_shape[0],
            w: s.in_shape[1],
            oh: s.out_shape[0],
            ow: s.out_shape[1],
            kh: s.kernel[0],
            kw: s.kernel[1],
            ph: s.pad[0],
            pw: s.pad[1],
        }
    }
    /// Input row of output row `o` under kernel row `i`, if inside the image.
    #[inline]
    fn in_row(&self, o: usize, i: usize) -> Option<usize> {
        let r = (o + i) as isize - self.ph as isize;
        (r >= 0 && r < self.h as isize).then_some(r as usize)
    }
}

/// Whether the direct path can run `s` (2-d, stride 1, dilation 1).
pub(crate) fn fits(s: &ConvSpec) -> bool {
    s.kernel.len() == 2 && s.stride == [1, 1] && s.dilation == [1, 1]
}

/// `y = conv(x, w)`, in parallel over (image, group, output row).
pub(crate) fn forward(isa: Isa, s: &ConvSpec, x: &[f32], w: &[f32], y: &mut [f32]) {
    let g = Geo::new(s);
    let (ilen, olen) = (s.in_image_len(), s.out_image_len());
    let rows = s.num * s.group * g.oh;
    let yp = Shared(y.as_mut_ptr(), y.len());
    assert!(y.len() >= s.num * olen && x.len() >= s.num * ilen && w.len() >= s.weight_len());
    (0..rows).into_par_iter().for_each(|r| {
        let (n, gr, o) = (r / (s.group * g.oh), (r / g.oh) % s.group, r % g.oh);
        let xg = &x[n * ilen + gr * g.cg * g.h * g.w..n * ilen + (gr + 1) * g.cg * g.h * g.w];
        let wg = &w[gr * g.kg * g.cg * g.kh * g.kw..(gr + 1) * g.kg * g.cg * g.kh * g.kw];
        let y0 = n * olen + gr * g.kg * g.oh * g.ow + o * g.ow;
        for k0 in (0..g.kg).step_by(4) {
            let kb = 4.min(g.kg - k0);
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX-512 available; row o of channels k0..k0 + kb is this task's.
                Isa::Avx512 if g.kw <= 16 => unsafe { avx::forward_row(&g, xg, wg, o, k0, kb, yp, y0) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2 and FMA available; as above.
                Isa::Avx2 if g.kw <= 16 => unsafe { avx2::forward_row(&g, xg, wg, o, k0, kb, yp, y0) },
                _ => {
                    for k in k0..k0 + kb {
                        for ox in 0..g.ow {
                            let mut acc = 0.0f32;
                            for c in 0..g.cg {
                                for i in 0..g.kh {
                                    let Some(ir) = g.in_row(o, i) else { continue };
                                    for j in 0..g.kw {
                                        let ic = (ox + j) as isize - g.pw as isize;
                                        if ic >= 0 && (ic as usize) < g.w {
                                            acc += wg[((k * g.cg + c) * g.kh + i) * g.kw + j] * xg[(c * g.h + ir) * g.w + ic as usize];
                                        }
                                    }
                                }
                            }
                            // SAFETY: inside y (asserted above); this task's row.
                            unsafe { *yp.at(y0 + k * g.oh * g.ow + ox) = acc };
                        }
                    }
                }
            }
        }
    });
}

/// `dw += Σ_n correlation(x_n, dy_n)`, in parallel over (group, pair of output channels,
/// input channel).
pub(crate) fn backward_filter(isa: Isa, s: &ConvSpec, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let g = Geo::new(s);
    let kpairs = g.kg.div_ceil(2);
    let units = s.group * kpairs * g.cg;
    let dwp = Shared(dw.as_mut_ptr(), dw.len());
    assert!(dw.len() >= s.weight_len() && x.len() >= s.num * s.in_image_len() && dy.len() >= s.num * s.out_image_len());
    (0..units).into_par_iter().for_each(|u| {
        let (gr, kp, c) = (u / (kpairs * g.cg), (u / g.cg) % kpairs, u % g.cg);
        let (k0, kb) = (2 * kp, 2.min(g.kg - 2 * kp));
        let taps = g.kh * g.kw;
        // Kernel taps in chunks of 9: 2 x 9 vector accumulators.
        for t0 in (0..taps).step_by(9) {
            let tn = 9.min(taps - t0);
            let mut sums = [[0.0f64; 9]; 2];
            for n in 0..s.num {
                let xc = &x[n * s.in_image_len() + (gr * g.cg + c) * g.h * g.w..][..g.h * g.w];
                let dyk = &dy[n * s.out_image_len() + (gr * g.kg + k0) * g.oh * g.ow..][..kb * g.oh * g.ow];
                let part = match isa {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX-512 available.
                    Isa::Avx512 if g.kw <= 16 => unsafe { avx::filter_sums(&g, xc, dyk, kb, t0, tn) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2 and FMA available.
                    Isa::Avx2 if g.kw <= 16 => unsafe { avx2::filter_sums(&g, xc, dyk, kb, t0, tn) },
                    _ => filter_sums(&g, xc, dyk, kb, t0, tn),
                };
                for (sk, pk) in sums.iter_mut().zip(&part).take(kb) {
                    for (st, pt) in sk.iter_mut().zip(pk).take(tn) {
                        *st += *pt as f64;
                    }
                }
            }
            for (kk, sk) in sums.iter().enumerate().take(kb) {
                for (t, st) in sk.iter().enumerate().take(tn) {
                    let o = (((gr * g.kg + k0 + kk) * g.cg + c) * taps) + t0 + t;
                    // SAFETY: inside dw (asserted above); (k, c) belongs to this unit only.
                    unsafe { *dwp.at(o) += *st as f32 };
                }
            }
        }
    });
}

/// Σ over one image's positions of `dy[k0 + kk] · x` shifted by taps `t0..t0 + tn` (summed in
/// float64: one long scalar sum would lose more than the GEMM's blocked sums).
fn filter_sums(g: &Geo, xc: &[f32], dyk: &[f32], kb: usize, t0: usize, tn: usize) -> [[f32; 9]; 2] {
    let mut out = [[0.0f32; 9]; 2];
    for (kk, ok) in out.iter_mut().enumerate().take(kb) {
        for (t, ot) in ok.iter_mut().enumerate().take(tn) {
            let (i, j) = ((t0 + t) / g.kw, (t0 + t) % g.kw);
            let mut acc = 0.0f64;
            for o in 0..g.oh {
                let Some(ir) = g.in_row(o, i) else { continue };
                for ox in 0..g.ow {
                    let ic = (ox + j) as isize - g.pw as isize;
                    if ic >= 0 && (ic as usize) < g.w {
                        acc += dyk[(kk * g.oh + o) * g.ow + ox] as f64 * xc[ir * g.w + ic as usize] as f64;
                    }
                }
            }
            *ot = acc as f32;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[path = "conv_direct_avx2.rs"]
mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::*;
    use crate::backend::cpu::conv_winograd::avx::span;
    use std::arch::x86_64::*;

    /// Masks and start columns of the vectors of one chunk of 16·V output columns under
    /// each kernel column `j` (at most 16 kernel columns handled this way; wider kernels
    /// take the portable loops).
    struct Chunk<const V: usize> {
        start: [[isize; V]; 16],
        mask: [[u16; V]; 16],
    }

    impl<const V: usize> Chunk<V> {
        #[inline(always)]
        fn new(g: &Geo, ox0: usize) -> Self {
            let mut c = Chunk { start: [[0; V]; 16], mask: [[0; V]; 16] };
            for j in 0..g.kw.min(16) {
                for v in 0..V {
                    let o = ox0 + 16 * v;
                    let st = (o + j) as isize - g.pw as isize;
                    // Output columns past ow read nothing (their results are not stored).
                    let valid_out = (g.ow as isize - o as isize).clamp(0, 16);
                    c.start[j][v] = st;
                    c.mask[j][v] = span(-st, g.w as isize - st) & span(0, valid_out);
                }
            }
            c
        }
    }

    /// One output row of channels `k0..k0 + kb` (kb <= 4), 64 columns at a time.
    ///
    /// # Safety
    /// AVX-512F; `y` holds the output and this row of these channels is the caller's;
    /// `g.kw <= 16`.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn forward_row(g: &Geo, xg: &[f32], wg: &[f32], o: usize, k0: usize, kb: usize, y: Shared, y0: usize) {
        assert!(xg.len() >= g.cg * g.h * g.w && wg.len() >= (k0 + kb) * g.cg * g.kh * g.kw);
        let (plane, kstride) = (g.h * g.w, g.cg * g.kh * g.kw);
        for ox0 in (0..g.ow).step_by(64) {
            let ch = Chunk::<4>::new(g, ox0);
            let mut acc = [[_mm512_setzero_ps(); 4]; 4];
            for c in 0..g.cg {
                for i in 0..g.kh {
                    let Some(ir) = g.in_row(o, i) else { continue };
                    let row = xg.as_ptr().wrapping_add(c * plane + ir * g.w);
                    // The next channel's row, while this one is in use: the loop visits
                    // one short stretch of many planes, too many streams to prefetch alone.
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(plane + ox0) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(plane + ox0 + 32) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(plane + ox0 + 64) as *const i8);
                    let wrow = (c * g.kh + i) * g.kw;
                    for j in 0..g.kw {
                        let mut xv = [_mm512_setzero_ps(); 4];
                        for (v, xvv) in xv.iter_mut().enumerate() {
                            // SAFETY: the mask keeps the load inside this input row.
                            *xvv = unsafe { _mm512_maskz_loadu_ps(ch.mask[j][v], row.wrapping_offset(ch.start[j][v])) };
                        }
                        for (kk, ak) in acc.iter_mut().enumerate().take(kb) {
                            // SAFETY: inside wg (asserted above).
                            let wv = _mm512_set1_ps(unsafe { *wg.get_unchecked((k0 + kk) * kstride + wrow + j) });
                            for (av, xvv) in ak.iter_mut().zip(&xv) {
                                *av = _mm512_fmadd_ps(wv, *xvv, *av);
                            }
                        }
                    }
                }
            }
            for (kk, ak) in acc.iter().enumerate().take(kb) {
                let base = y0 + (k0 + kk) * g.oh * g.ow + ox0;
                for (v, av) in ak.iter().enumerate() {
                    let n = (g.ow as isize - (ox0 + 16 * v) as isize).clamp(0, 16);
                    if n == 0 {
                        break;
                    }
                    assert!(base + 16 * v + n as usize <= y.1);
                    // SAFETY: n floats from base + 16v are inside y (checked); ours.
                    unsafe { _mm512_mask_storeu_ps(y.0.add(base + 16 * v), span(0, n), *av) };
                }
            }
        }
    }

    /// See [`super::filter_sums`]; `g.kw <= 16`.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn filter_sums(g: &Geo, xc: &[f32], dyk: &[f32], kb: usize, t0: usize, tn: usize) -> [[f32; 9]; 2] {
        assert!(xc.len() >= g.h * g.w && dyk.len() >= kb * g.oh * g.ow);
        let mut acc = [[_mm512_setzero_ps(); 9]; 2];
        let taps: [(usize, usize); 9] = std::array::from_fn(|t| ((t0 + t) / g.kw, (t0 + t) % g.kw));
        let chunks: Vec<Chunk<1>> = (0..g.ow).step_by(16).map(|ox0| Chunk::<1>::new(g, ox0)).collect();
        for o in 0..g.oh {
            for (q, ch) in chunks.iter().enumerate() {
                let ox0 = 16 * q;
                let m = span(0, (g.ow - ox0) as isize);
                let mut d = [_mm512_setzero_ps(); 2];
                for (kk, dk) in d.iter_mut().enumerate().take(kb) {
                    // SAFETY: masked to the row's ow floats, inside dyk (asserted).
                    *dk = unsafe { _mm512_maskz_loadu_ps(m, dyk.as_ptr().add((kk * g.oh + o) * g.ow + ox0)) };
                }
                for (t, &(i, j)) in taps.iter().enumerate().take(tn) {
                    let Some(ir) = g.in_row(o, i) else { continue };
                    // SAFETY: the mask keeps the load inside input row ir.
                    let xv = unsafe { _mm512_maskz_loadu_ps(ch.mask[j][0], xc.as_ptr().wrapping_add(ir * g.w).wrapping_offset(ch.start[j][0])) };
                    for (ak, dk) in acc.iter_mut().zip(&d) {
                        ak[t] = _mm512_fmadd_ps(*dk, xv, ak[t]);
                    }
                }
            }
        }
        let mut out = [[0.0f32; 9]; 2];
        for kk in 0..kb {
            for t in 0..tn {
                out[kk][t] = _mm512_reduce_add_ps(acc[kk][t]);
            }
        }
        out
    }
}
