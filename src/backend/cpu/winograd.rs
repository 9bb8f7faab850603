//! Winograd F(4x4, 3x3) transforms (Lavin & Gray's points 0, ±1, ±2, ∞): `V = Bᵀ d B`
//! (6x6 input tile), `U = G g Gᵀ` (3x3 kernel), `Y = Aᵀ M A` (4x4 output tile), and for the
//! kernel gradient their adjoints `Z = A dY Aᵀ` (4x4 output-gradient tile) and
//! `dg = Gᵀ dU G` (3x3 kernel gradient).
//!
//! The formulas are written once ([`transforms!`]) over a lane type and four operations in
//! scope (`add`, `sub`, `madd`, `scale`), and instantiated for scalar `f32` (the portable
//! path, one tile at a time), for `__m256` (eight tiles at a time, in AVX2 functions) and for
//! `__m512` (sixteen, in AVX-512 functions). Explicit vector types rather than arrays the compiler might vectorise: left
//! to itself it vectorised `[f32; 16]` lanes across the wrong axis, into gathers.

/// Defines `bt6`, `at6`, `g6` (one-dimensional transforms) and `input_tile`, `output_tile`,
/// `weight_tile` (two-dimensional, row-major 6x6 / 4x4 / 3x3 tiles) over lane type `$L`,
/// each function carrying the attributes and qualifiers `$q`.
macro_rules! transforms {
    ($L:ty, $zero:expr, [$($q:tt)*]) => {
        /// `Bᵀ d` for one column of six.
        $($q)* fn bt6(d: [$L; 6]) -> [$L; 6] {
            let a = madd(d[2], -4.0, d[4]);
            let b = madd(d[1], -4.0, d[3]);
            let c = sub(d[4], d[2]);
            let e = scale(sub(d[3], d[1]), 2.0);
            [
                madd(d[0], 4.0, madd(d[2], -5.0, d[4])),
                add(a, b),
                sub(a, b),
                add(c, e),
                sub(c, e),
                madd(d[1], 4.0, madd(d[3], -5.0, d[5])),
            ]
        }

        /// `Aᵀ m` for one column of six.
        $($q)* fn at6(m: [$L; 6]) -> [$L; 4] {
            let p = add(m[1], m[2]);
            let q = sub(m[1], m[2]);
            let r = add(m[3], m[4]);
            let s = sub(m[3], m[4]);
            [add(add(m[0], p), r), madd(s, 2.0, q), madd(r, 4.0, p), add(madd(s, 8.0, q), m[5])]
        }

        /// `G g` for one column of three.
        $($q)* fn g6(g: [$L; 3]) -> [$L; 6] {
            let s02 = add(g[0], g[2]);
            let a = scale(add(s02, g[1]), -1.0 / 6.0);
            let b = scale(sub(s02, g[1]), -1.0 / 6.0);
            let c = madd(g[0], 1.0 / 24.0, scale(g[2], 1.0 / 6.0));
            let d = scale(g[1], 1.0 / 12.0);
            [scale(g[0], 0.25), a, b, add(c, d), sub(c, d), g[2]]
        }

        /// `A d` for one column of four (the adjoint of `at6`).
        $($q)* fn a6(d: [$L; 4]) -> [$L; 6] {
            let e = add(d[0], d[2]);
            let o = add(d[1], d[3]);
            let e4 = madd(d[2], 4.0, d[0]);
            let o4 = madd(d[3], 8.0, scale(d[1], 2.0));
            [d[0], add(e, o), sub(e, o), add(e4, o4), sub(e4, o4), d[3]]
        }

        /// `Gᵀ u` for one column of six (the adjoint of `g6`).
        $($q)* fn gt6(u: [$L; 6]) -> [$L; 3] {
            let p = add(u[1], u[2]);
            let q = sub(u[1], u[2]);
            let r = add(u[3], u[4]);
            let s = sub(u[3], u[4]);
            [
                madd(u[0], 0.25, madd(p, -1.0 / 6.0, scale(r, 1.0 / 24.0))),
                madd(q, -1.0 / 6.0, scale(s, 1.0 / 12.0)),
                madd(sub(r, p), 1.0 / 6.0, u[5]),
            ]
        }

        /// `A dY Aᵀ` of a 4x4 output-gradient tile `d[row][col]`, row-major into `out`.
        $($q)* fn grad_tile(d: &[[$L; 4]; 4], out: &mut [$L; 36]) {
            let mut e = [[$zero; 4]; 6];
            for s in 0..4 {
                let col = a6([d[0][s], d[1][s], d[2][s], d[3][s]]);
                for i in 0..6 {
                    e[i][s] = col[i];
                }
            }
            for i in 0..6 {
                let row = a6(e[i]);
                for j in 0..6 {
                    out[i * 6 + j] = row[j];
                }
            }
        }

        /// `Gᵀ dU G` of 36 summed products (row-major 6x6) into a 3x3 kernel gradient.
        $($q)* fn filter_tile(u: &[$L; 36], g: &mut [[$L; 3]; 3]) {
            let mut e = [[$zero; 6]; 3];
            for j in 0..6 {
                let col = gt6([u[j], u[6 + j], u[12 + j], u[18 + j], u[24 + j], u[30 + j]]);
                for i in 0..3 {
                    e[i][j] = col[i];
                }
            }
            for i in 0..3 {
                g[i] = gt6(e[i]);
            }
        }

        /// `Bᵀ d B` of a 6x6 tile `d[row][col]`, row-major into `out`.
        $($q)* fn input_tile(d: &[[$L; 6]; 6], out: &mut [$L; 36]) {
            let mut e = [[$zero; 6]; 6];
            for s in 0..6 {
                let col = bt6([d[0][s], d[1][s], d[2][s], d[3][s], d[4][s], d[5][s]]);
                for i in 0..6 {
                    e[i][s] = col[i];
                }
            }
            for i in 0..6 {
                let row = bt6(e[i]);
                for j in 0..6 {
                    out[i * 6 + j] = row[j];
                }
            }
        }

        /// `Aᵀ M A` of 36 products (row-major 6x6) into a 4x4 tile `t[row][col]`.
        $($q)* fn output_tile(m: &[$L; 36], t: &mut [[$L; 4]; 4]) {
            let mut e = [[$zero; 6]; 4];
            for j in 0..6 {
                let col = at6([m[j], m[6 + j], m[12 + j], m[18 + j], m[24 + j], m[30 + j]]);
                for r in 0..4 {
                    e[r][j] = col[r];
                }
            }
            for r in 0..4 {
                t[r] = at6(e[r]);
            }
        }

        /// `G g Gᵀ` of a 3x3 kernel `g[row][col]`, row-major into `out`.
        $($q)* fn weight_tile(g: &[[$L; 3]; 3], out: &mut [$L; 36]) {
            let mut e = [[$zero; 3]; 6];
            for j in 0..3 {
                let col = g6([g[0][j], g[1][j], g[2][j]]);
                for i in 0..6 {
                    e[i][j] = col[i];
                }
            }
            for i in 0..6 {
                let row = g6(e[i]);
                for j in 0..6 {
                    out[i * 6 + j] = row[j];
                }
            }
        }
    };
}

/// The transforms on one tile at a time (the portable path).
pub(crate) mod scalar {
    #[inline(always)]
    fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
    /// `a * c + b`, two roundings (no FMA instruction is assumed).
    #[inline(always)]
    fn madd(a: f32, c: f32, b: f32) -> f32 {
        a * c + b
    }
    #[inline(always)]
    fn scale(a: f32, c: f32) -> f32 {
        a * c
    }
    transforms!(f32, 0.0f32, [#[inline(always)] pub(crate)]);
}

/// The transforms on eight tiles at a time, with the same operations as [`avx512`] (fused
/// `madd`), so both give the same bits.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sub(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    /// `a * c + b`, fused.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn madd(a: __m256, c: f32, b: __m256) -> __m256 {
        _mm256_fmadd_ps(a, _mm256_set1_ps(c), b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn scale(a: __m256, c: f32) -> __m256 {
        _mm256_mul_ps(a, _mm256_set1_ps(c))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    transforms!(__m256, zero(), [#[inline] #[target_feature(enable = "avx2,fma")] pub(crate)]);

    /// The transpose of a 4x4 block in each 128-bit half: lane `j` of `out[s]` is lane `s`
    /// of `r[j % 4]` in the half `j / 4` (the halves of `r[k]` hold rows `k` and `k + 4`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn transpose4x2(r: [__m256; 4]) -> [__m256; 4] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        [
            _mm256_shuffle_ps::<0x44>(t0, t2),
            _mm256_shuffle_ps::<0xEE>(t0, t2),
            _mm256_shuffle_ps::<0x44>(t1, t3),
            _mm256_shuffle_ps::<0xEE>(t1, t3),
        ]
    }

    /// The transpose of an 8x8 block: `out[j][i] = rows[i][j]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn transpose8(r: &[__m256; 8]) -> [__m256; 8] {
        let lo = transpose4x2([r[0], r[1], r[2], r[3]]);
        let hi = transpose4x2([r[4], r[5], r[6], r[7]]);
        // lo[s] holds rows 0..4 at column s (low half) and s + 4 (high half); hi, rows 4..8.
        std::array::from_fn(|j| {
            let s = j % 4;
            if j < 4 { _mm256_permute2f128_ps::<0x20>(lo[s], hi[s]) } else { _mm256_permute2f128_ps::<0x31>(lo[s], hi[s]) }
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn transpose8_transposes() {
            if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
                return;
            }
            let m: Vec<f32> = (0..64).map(|i| i as f32).collect();
            // SAFETY: AVX2 detected; the loads and stores stay inside m and out.
            unsafe {
                let rows: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(m[8 * i..].as_ptr()));
                let cols = transpose8(&rows);
                let mut out = vec![0.0f32; 64];
                for (j, c) in cols.iter().enumerate() {
                    _mm256_storeu_ps(out[8 * j..].as_mut_ptr(), *c);
                }
                for i in 0..8 {
                    for j in 0..8 {
                        assert_eq!(out[8 * j + i], m[8 * i + j]);
                    }
                }
            }
        }
    }
}

/// The transforms on sixteen tiles at a time.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn sub(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    /// `a * c + b`, fused.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn madd(a: __m512, c: f32, b: __m512) -> __m512 {
        _mm512_fmadd_ps(a, _mm512_set1_ps(c), b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn scale(a: __m512, c: f32) -> __m512 {
        _mm512_mul_ps(a, _mm512_set1_ps(c))
    }
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    transforms!(__m512, zero(), [#[inline] #[target_feature(enable = "avx512f,fma")] pub(crate)]);

    /// The transpose of a 16x16 block: `out[j][i] = rows[i][j]`.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    pub(crate) fn transpose16(r: &[__m512; 16]) -> [__m512; 16] {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_ps(); 16];
        for a in 0..4 {
            let (t0, t1, t2, t3) = (_mm512_castps_pd(t[4 * a]), _mm512_castps_pd(t[4 * a + 1]), _mm512_castps_pd(t[4 * a + 2]), _mm512_castps_pd(t[4 * a + 3]));
            u[4 * a] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
            u[4 * a + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
            u[4 * a + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
            u[4 * a + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
        }
        // u[4a + b] holds rows 4a..4a+3 at columns b, b+4, b+8, b+12 (one per 128-bit lane).
        let mut out = [_mm512_setzero_ps(); 16];
        for b in 0..4 {
            let v0 = _mm512_shuffle_f32x4::<0x44>(u[b], u[4 + b]);
            let v1 = _mm512_shuffle_f32x4::<0x44>(u[8 + b], u[12 + b]);
            let w0 = _mm512_shuffle_f32x4::<0xEE>(u[b], u[4 + b]);
            let w1 = _mm512_shuffle_f32x4::<0xEE>(u[8 + b], u[12 + b]);
            out[b] = _mm512_shuffle_f32x4::<0x88>(v0, v1);
            out[b + 4] = _mm512_shuffle_f32x4::<0xDD>(v0, v1);
            out[b + 8] = _mm512_shuffle_f32x4::<0x88>(w0, w1);
            out[b + 12] = _mm512_shuffle_f32x4::<0xDD>(w0, w1);
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn transpose16_transposes() {
            if !std::arch::is_x86_feature_detected!("avx512f") {
                return;
            }
            let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
            // SAFETY: AVX-512F detected; the loads and stores stay inside m and out.
            unsafe {
                let rows: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(m[16 * i..].as_ptr()));
                let cols = transpose16(&rows);
                let mut out = vec![0.0f32; 256];
                for (j, c) in cols.iter().enumerate() {
                    _mm512_storeu_ps(out[16 * j..].as_mut_ptr(), *c);
                }
                for i in 0..16 {
                    for j in 0..16 {
                        assert_eq!(out[16 * j + i], m[16 * i + j]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scalar::*;

    /// The kernel gradient of one tile through the adjoint transforms equals the direct
    /// correlation of the input tile with the output-gradient tile.
    #[test]
    fn adjoint_transforms_compute_a_kernel_gradient() {
        let x: [[f32; 6]; 6] = std::array::from_fn(|r| std::array::from_fn(|s| (((r * 6 + s) * 7 % 11) as f32 - 5.0) / 4.0));
        let dy: [[f32; 4]; 4] = std::array::from_fn(|r| std::array::from_fn(|s| (((r * 4 + s) * 5 % 9) as f32 - 4.0) / 3.0));
        let (mut v, mut z) = ([0.0; 36], [0.0; 36]);
        input_tile(&x, &mut v);
        grad_tile(&dy, &mut z);
        let du: [f32; 36] = std::array::from_fn(|i| v[i] * z[i]);
        let mut dg = [[0.0; 3]; 3];
        filter_tile(&du, &mut dg);
        for i in 0..3 {
            for j in 0..3 {
                let mut want = 0.0f64;
                for r in 0..4 {
                    for s in 0..4 {
                        want += dy[r][s] as f64 * x[r + i][s + j] as f64;
                    }
                }
                assert!((dg[i][j] as f64 - want).abs() < 1e-4, "({i},{j}): {} vs {want}", dg[i][j]);
            }
        }
    }

    /// One tile through the transforms equals the direct 3x3 correlation.
    #[test]
    fn transforms_compute_a_correlation() {
        let d: [[f32; 6]; 6] = std::array::from_fn(|r| std::array::from_fn(|s| (((r * 6 + s) * 7 % 11) as f32 - 5.0) / 4.0));
        let g: [[f32; 3]; 3] = std::array::from_fn(|r| std::array::from_fn(|s| (((r * 3 + s) * 5 % 7) as f32 - 3.0) / 3.0));
        let (mut v, mut u) = ([0.0; 36], [0.0; 36]);
        input_tile(&d, &mut v);
        weight_tile(&g, &mut u);
        let m: [f32; 36] = std::array::from_fn(|i| v[i] * u[i]);
        let mut y = [[0.0; 4]; 4];
        output_tile(&m, &mut y);
        for r in 0..4 {
            for s in 0..4 {
                let mut want = 0.0f64;
                for i in 0..3 {
                    for j in 0..3 {
                        want += d[r + i][s + j] as f64 * g[i][j] as f64;
                    }
                }
                assert!((y[r][s] as f64 - want).abs() < 1e-4, "({r},{s}): {} vs {want}", y[r][s]);
            }
        }
    }
}
