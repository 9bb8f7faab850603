//! Single-precision matrix products on row-major slices.

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
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "sgemm: C too short");
    if k == 0 {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    let (a_rows, a_cols) = if trans_a { (k, m) } else { (m, k) };
    let (b_rows, b_cols) = if trans_b { (n, k) } else { (k, n) };
    assert!(a.len() >= (a_rows - 1) * lda + a_cols, "sgemm: A too short");
    assert!(b.len() >= (b_rows - 1) * ldb + b_cols, "sgemm: B too short");
    // (row stride, column stride) of op(A) and op(B) as the gemm crate sees them.
    let (a_rs, a_cs) = if trans_a { (1, lda as isize) } else { (lda as isize, 1) };
    let (b_rs, b_cs) = if trans_b { (1, ldb as isize) } else { (ldb as isize, 1) };
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && (m * n * k) > 1 << 18 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    if beta != 0.0 && beta != 1.0 {
        scale_c(m, n, beta, c, ldc);
    }
    // SAFETY: the asserts above keep every index the strides reach inside the slices.
    unsafe {
        gemm::gemm(
            m, n, k,
            c.as_mut_ptr(), 1, ldc as isize,
            beta != 0.0,
            a.as_ptr(), a_cs, a_rs,
            b.as_ptr(), b_cs, b_rs,
            1.0f32, alpha,
            false, false, false,
            par,
        );
    }
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

    fn naive(ta: bool, tb: bool, m: usize, n: usize, k: usize, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av as f64 * bv as f64;
                }
                c[i * n + j] = alpha * s as f32 + beta * c[i * n + j];
            }
        }
    }

    #[test]
    fn matches_naive_in_all_transposes() {
        let (m, n, k) = (13, 29, 17);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 13) as f32 - 6.0) / 4.0).collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (2.0, -0.5)] {
                let c0: Vec<f32> = (0..m * n).map(|i| (i % 3) as f32).collect();
                let mut want = c0.clone();
                naive(ta, tb, m, n, k, alpha, &a, &b, beta, &mut want);
                let mut got = c0.clone();
                let lda = if ta { m } else { k };
                let ldb = if tb { k } else { n };
                sgemm(ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut got, n);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{ta} {tb}: {g} vs {w}");
                }
            }
        }
    }
}
