//! GEMM microkernels: `C[0..mr, 0..nr] = alpha * Ã·B̃ + beta * C` for one `MR x NR` register
//! tile, where Ã is an `MR`-row panel packed k-major (`kc x MR`) and B̃ an `NR`-column panel
//! packed k-major (`kc x NR`); both are zero-padded to full `MR` / `NR`, so a kernel always
//! computes the whole tile and only its loads and stores of C honour `mr x nr`.
//!
//! Within one call each C element is one chain of FMAs in `k` order, so results depend only
//! on the blocking of `k`, never on where a tile sits or which thread runs it.

use super::isa::Isa;

/// A microkernel and its register-tile shape.
#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    /// The instruction set the kernel (and the packers feeding it) run on.
    pub isa: Isa,
    /// Rows of the register tile (the broadcast operand, A).
    pub mr: usize,
    /// Columns of the register tile (the vector operand, B).
    pub nr: usize,
    /// `run(kc, a, b, c, ldc, alpha, beta, mr, nr)`. Safety: `a` holds `kc * MR` floats, `b`
    /// `kc * NR`, and `c` rows `0..mr` of `ldc`-strided columns `0..nr` are valid for reads
    /// (when `beta != 0`) and writes; the CPU supports the kernel's [`Isa`].
    pub run: KernelFn,
    /// The same on the first `NR / 2` columns of the panel only (`nr <= NR / 2`), half the
    /// work for a half-empty panel; `None` where the kernel has no such variant.
    pub half: Option<KernelFn>,
}

impl Kernel {
    /// The kernel for a panel with `nr` valid columns.
    #[inline]
    pub fn for_cols(&self, nr: usize) -> KernelFn {
        match self.half {
            Some(h) if nr <= self.nr / 2 => h,
            _ => self.run,
        }
    }
}

/// The calling convention of a microkernel (see [`Kernel::run`]).
pub(crate) type KernelFn = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, f32, f32, usize, usize);

/// The microkernel for an instruction-set level.
pub(crate) fn kernel(isa: Isa) -> Kernel {
    match isa {
        Isa::Portable => Kernel { isa, mr: 4, nr: 16, run: portable::<4, 16>, half: None },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Kernel { isa, mr: 6, nr: 16, run: avx2::kernel::<6, 2, 16>, half: Some(avx2::kernel::<6, 1, 16>) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Kernel { isa, mr: 14, nr: 32, run: avx512::kernel::<14, 2, 32>, half: Some(avx512::kernel::<14, 1, 32>) },
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => kernel(Isa::Portable),
    }
}

/// The portable kernel: plain arrays that the compiler keeps in vector registers.
///
/// # Safety
/// See [`Kernel::run`].
#[allow(clippy::too_many_arguments)]
unsafe fn portable<const MR: usize, const NR: usize>(
    kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, alpha: f32, beta: f32, mr: usize, nr: usize,
) {
    let mut acc = [[0.0f32; NR]; MR];
    for p in 0..kc {
        // SAFETY: the caller guarantees `kc * MR` floats at `a` and `kc * NR` at `b`.
        let (ar, br) = unsafe {
            (std::slice::from_raw_parts(a.add(p * MR), MR), std::slice::from_raw_parts(b.add(p * NR), NR))
        };
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = ar[i].mul_add(br[j], acc[i][j]);
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(mr) {
        for (j, v) in row.iter().enumerate().take(nr) {
            // SAFETY: `i < mr` and `j < nr`, which the caller guarantees are inside C.
            unsafe {
                let dst = c.add(i * ldc + j);
                *dst = if beta == 0.0 { alpha * v } else { beta.mul_add(*dst, alpha * v) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// `MR x 8·NV` tile, as [`super::avx512::kernel`] with 8-lane vectors: `MR·NV + NV + 1
    /// <= 16` registers (6 x 16: twelve accumulators, two B̃ vectors, one broadcast). Columns
    /// past `nr` are neither read nor written (masked loads and stores).
    ///
    /// # Safety
    /// See [`Kernel::run`](super::Kernel::run); the CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn kernel<const MR: usize, const NV: usize, const BS: usize>(
        kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, alpha: f32, beta: f32, mr: usize, nr: usize,
    ) {
        for i in 0..mr.min(MR) {
            for v in 0..NV {
                _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * ldc + 8 * v) as *const i8);
            }
        }
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        let (mut ap, mut bp) = (a, b);
        for _ in 0..kc {
            // SAFETY: `ap`/`bp` advance by MR / 8·NV floats per k, inside the panels.
            unsafe {
                let mut bv = [_mm256_setzero_ps(); NV];
                for (v, bvv) in bv.iter_mut().enumerate() {
                    *bvv = _mm256_loadu_ps(bp.add(8 * v));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*ap.add(i));
                    for v in 0..NV {
                        row[v] = _mm256_fmadd_ps(av, bv[v], row[v]);
                    }
                }
                ap = ap.add(MR);
                bp = bp.add(BS);
            }
        }
        let va = _mm256_set1_ps(alpha);
        let vb = _mm256_set1_ps(beta);
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (i, row) in acc.iter().enumerate().take(mr) {
            // SAFETY: rows `< mr` and the masked columns `< nr` are inside C.
            unsafe {
                let dst = c.add(i * ldc);
                for (v, accv) in row.iter().enumerate() {
                    let lo = 8 * v;
                    if lo >= nr {
                        break;
                    }
                    let mut r = _mm256_mul_ps(*accv, va);
                    if nr - lo >= 8 {
                        if beta != 0.0 {
                            r = _mm256_fmadd_ps(_mm256_loadu_ps(dst.add(lo)), vb, r);
                        }
                        _mm256_storeu_ps(dst.add(lo), r);
                    } else {
                        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((nr - lo) as i32), lane);
                        if beta != 0.0 {
                            r = _mm256_fmadd_ps(_mm256_maskload_ps(dst.add(lo), mask), vb, r);
                        }
                        _mm256_maskstore_ps(dst.add(lo), mask, r);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// `MR x 16·NV` tile: per `k`, `NV` vector loads of B̃ and `MR` broadcasts of Ã feed
    /// `MR·NV` FMAs into accumulators that stay in registers (`MR·NV + NV + 1 <= 32`). B̃
    /// rows are `BS` floats apart (`16·NV`, or more to use part of a wider panel).
    ///
    /// # Safety
    /// See [`Kernel::run`](super::Kernel::run); the CPU must support AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn kernel<const MR: usize, const NV: usize, const BS: usize>(
        kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, alpha: f32, beta: f32, mr: usize, nr: usize,
    ) {
        // Ask for the C tile now: its loads (or its stores' ownership) come after the k loop,
        // and a large C (a kernel gradient accumulated in place) is not in cache.
        for i in 0..mr.min(MR) {
            for v in 0..NV {
                _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * ldc + 16 * v) as *const i8);
            }
        }
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let (mut ap, mut bp) = (a, b);
        for _ in 0..kc {
            // SAFETY: `ap`/`bp` advance by MR / 16·NV floats per k, inside the panels.
            unsafe {
                let mut bv = [_mm512_setzero_ps(); NV];
                for (v, bvv) in bv.iter_mut().enumerate() {
                    *bvv = _mm512_loadu_ps(bp.add(16 * v));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*ap.add(i));
                    for v in 0..NV {
                        row[v] = _mm512_fmadd_ps(av, bv[v], row[v]);
                    }
                }
                ap = ap.add(MR);
                bp = bp.add(BS);
            }
        }
        let va = _mm512_set1_ps(alpha);
        let vb = _mm512_set1_ps(beta);
        for (i, row) in acc.iter().enumerate().take(mr) {
            // SAFETY: rows `< mr` and the masked columns `< nr` are inside C.
            unsafe {
                let dst = c.add(i * ldc);
                for (v, accv) in row.iter().enumerate() {
                    let lo = 16 * v;
                    if lo >= nr {
                        break;
                    }
                    let mask: __mmask16 = if nr - lo >= 16 { 0xffff } else { ((1u32 << (nr - lo)) - 1) as u16 };
                    let mut r = _mm512_mul_ps(*accv, va);
                    if beta != 0.0 {
                        r = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, dst.add(lo)), vb, r);
                    }
                    _mm512_mask_storeu_ps(dst.add(lo), mask, r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peak(name: &str, mr: usize, nr: usize, run: KernelFn) {
        let kc = 256;
        let a = vec![0.001f32; kc * mr];
        let b = vec![0.001f32; kc * nr];
        let mut c = vec![0.0f32; mr * nr];
        let mut best = 0.0f64;
        for _ in 0..7 {
            let t = std::time::Instant::now();
            let reps = 20000;
            for _ in 0..reps {
                unsafe { run(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), nr, 1.0, 1.0, mr, nr) };
            }
            let s = t.elapsed().as_secs_f64();
            best = best.max(2.0 * (reps * kc * mr * nr) as f64 / s / 1e9);
        }
        println!("{name}: best {best:.1} GFLOP/s");
    }

    #[test]
    #[ignore]
    fn kernel_peak_avx2() {
        use avx2::kernel as k;
        peak("6x16", 6, 16, k::<6, 2, 16>);
        peak("6x8", 6, 8, k::<6, 1, 16>);
        peak("4x24", 4, 24, k::<4, 3, 24>);
        peak("3x32", 3, 32, k::<3, 4, 32>);
    }

    #[test]
    #[ignore]
    fn kernel_peak() {
        use avx512::kernel as k;
        peak("14x32", 14, 32, k::<14, 2, 32>);
        peak("14x16", 14, 16, k::<14, 1, 16>);
        peak("12x32", 12, 32, k::<12, 2, 32>);
        peak("8x32", 8, 32, k::<8, 2, 32>);
        peak("6x64", 6, 64, k::<6, 4, 64>);
        peak("8x48", 8, 48, k::<8, 3, 48>);
    }
}
