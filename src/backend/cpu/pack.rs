//! Transposing packs: panels of `w` lanes whose sources are rows contiguous along the depth
//! (a row-major A, a transposed B, rows of an image). The AVX-512 version moves 16x16 blocks
//! through an in-register transpose instead of one scalar store per element.

use super::isa::Isa;

/// Fills panels of `w` lanes (`ceil(nlanes / w)` panels of `depth x w` floats, depth-major):
/// panel `q`, depth `d`, lane `l` <- `row(q·w + l)[d]`, zero for lanes past `nlanes`.
/// `row(l)` is lane `l`'s `depth` contiguous values.
pub(crate) fn transpose_panels<'a>(isa: Isa, nlanes: usize, depth: usize, w: usize, row: impl Fn(usize) -> &'a [f32], dst: &mut [f32]) {
    let panels = nlanes.div_ceil(w);
    assert!(dst.len() >= panels * w * depth);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 available (detected, or chosen by a test among available ISAs).
        Isa::Avx512 => unsafe { avx::transpose_panels(nlanes, depth, w, &row, dst) },
        _ => {
            for q in 0..panels {
                let out = &mut dst[q * w * depth..(q + 1) * w * depth];
                let lw = w.min(nlanes - q * w);
                if lw < w {
                    out.fill(0.0);
                }
                for l in 0..lw {
                    for (d, &v) in row(q * w + l)[..depth].iter().enumerate() {
                        out[d * w + l] = v;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use crate::backend::cpu::winograd::avx512::transpose16;
    use std::arch::x86_64::*;

    #[inline(always)]
    fn span(n: usize) -> u16 {
        if n >= 16 { 0xFFFF } else { ((1u32 << n) - 1) as u16 }
    }

    /// See [`super::transpose_panels`].
    ///
    /// # Safety
    /// AVX-512F; `dst` holds the panels (checked by the caller).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_panels<'a>(nlanes: usize, depth: usize, w: usize, row: &impl Fn(usize) -> &'a [f32], dst: &mut [f32]) {
        let panels = nlanes.div_ceil(w);
        for q in 0..panels {
            let base = q * w * depth;
            for h0 in (0..w).step_by(16) {
                let hw = 16.min(w - h0); // lanes of this half in the panel layout
                let live = hw.min(nlanes.saturating_sub(q * w + h0)); // lanes with data
                let rows: Vec<&[f32]> = (0..live).map(|r| &row(q * w + h0 + r)[..depth]).collect();
                for d0 in (0..depth).step_by(16) {
                    let dn = 16.min(depth - d0);
                    let mut r = [_mm512_setzero_ps(); 16];
                    for (rv, src) in r.iter_mut().zip(&rows) {
                        // SAFETY: dn floats from d0 are inside the row (depth long).
                        *rv = unsafe { _mm512_maskz_loadu_ps(span(dn), src.as_ptr().add(d0)) };
                    }
                    let cols = transpose16(&r);
                    for (dd, col) in cols.iter().enumerate().take(dn) {
                        let o = base + (d0 + dd) * w + h0;
                        debug_assert!(o + hw <= dst.len());
                        // SAFETY: hw floats at o are inside dst (panels checked by the caller).
                        unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr().add(o), span(hw), *col) };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_isas_transpose_the_same() {
        let (nlanes, depth) = (45usize, 37usize);
        let src: Vec<f32> = (0..nlanes * depth).map(|i| i as f32).collect();
        for w in [4, 14, 16, 32] {
            let panels = nlanes.div_ceil(w);
            let mut want = vec![f32::NAN; panels * w * depth];
            transpose_panels(Isa::Portable, nlanes, depth, w, |l| &src[l * depth..(l + 1) * depth], &mut want);
            for isa in Isa::all_available() {
                let mut got = vec![f32::NAN; panels * w * depth];
                transpose_panels(isa, nlanes, depth, w, |l| &src[l * depth..(l + 1) * depth], &mut got);
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{isa:?} w={w}");
            }
            // Panel 0, depth 2, lane 1 is lane 1's element 2.
            assert_eq!(want[2 * w + 1], src[depth + 2]);
        }
    }
}
