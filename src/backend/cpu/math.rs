//! CPU fills, copies and BLAS-level arithmetic.

use super::{det_sum, range_check, Cpu, CHUNK};
use crate::backend::{Gemm, Math, StridedCopy};
use crate::{Error, Result};
use rayon::prelude::*;

fn same_len(what: &str, a: usize, b: usize) -> Result<()> {
    if a == b { Ok(()) } else { Err(Error::Internal(format!("{what}: lengths {a} and {b} differ"))) }
}

/// Walks every index of `c.shape` and calls `f(src_index, dst_index)` for runs that are
/// contiguous in both: `f(src, dst, run_len)`.
fn for_each_run(c: &StridedCopy, mut f: impl FnMut(usize, usize, usize)) {
    let nd = c.shape.len();
    if nd == 0 {
        f(c.src_offset, c.dst_offset, 1);
        return;
    }
    if c.shape.contains(&0) {
        return;
    }
    let inner = c.shape[nd - 1];
    let contiguous = c.src_strides[nd - 1] == 1 && c.dst_strides[nd - 1] == 1;
    let mut idx = vec![0usize; nd - 1];
    loop {
        let mut s = c.src_offset;
        let mut d = c.dst_offset;
        for (a, &i) in idx.iter().enumerate() {
            s += i * c.src_strides[a];
            d += i * c.dst_strides[a];
        }
        if contiguous {
            f(s, d, inner);
        } else {
            for j in 0..inner {
                f(s + j * c.src_strides[nd - 1], d + j * c.dst_strides[nd - 1], 1);
            }
        }
        // Odometer increment over the outer axes.
        let mut a = nd - 1;
        loop {
            if a == 0 {
                return;
            }
            a -= 1;
            idx[a] += 1;
            if idx[a] < c.shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
}

/// The largest index (exclusive) that a strided copy touches on each side.
fn extent(shape: &[usize], offset: usize, strides: &[usize]) -> usize {
    if shape.contains(&0) {
        return offset;
    }
    offset + shape.iter().zip(strides).map(|(&n, &s)| (n - 1) * s).sum::<usize>() + 1
}

impl Math for Cpu {
    fn fill(&self, buf: &mut Vec<f32>, offset: usize, len: usize, value: f32) -> Result<()> {
        range_check("fill", offset, len, buf.len())?;
        buf[offset..offset + len].par_chunks_mut(CHUNK).for_each(|c| c.fill(value));
        Ok(())
    }

    fn copy(&self, src: &Vec<f32>, dst: &mut Vec<f32>) -> Result<()> {
        same_len("copy", src.len(), dst.len())?;
        dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| d.copy_from_slice(s));
        Ok(())
    }

    fn copy_strided(&self, src: &Vec<f32>, dst: &mut Vec<f32>, c: &StridedCopy, accumulate: bool) -> Result<()> {
        if c.src_strides.len() != c.shape.len() || c.dst_strides.len() != c.shape.len() {
            return Err(Error::Internal("copy_strided: strides do not match the shape".into()));
        }
        range_check("copy_strided source", 0, extent(&c.shape, c.src_offset, &c.src_strides), src.len())?;
        range_check("copy_strided destination", 0, extent(&c.shape, c.dst_offset, &c.dst_strides), dst.len())?;
        for_each_run(c, |s, d, n| {
            let (from, to) = (&src[s..s + n], &mut dst[d..d + n]);
            if accumulate {
                to.iter_mut().zip(from).for_each(|(t, f)| *t += f);
            } else {
                to.copy_from_slice(from);
            }
        });
        Ok(())
    }

    fn axpby(&self, alpha: f32, x: &Vec<f32>, beta: f32, y: &mut Vec<f32>) -> Result<()> {
        same_len("axpby", x.len(), y.len())?;
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| {
            if beta == 1.0 {
                yc.iter_mut().zip(xc).for_each(|(y, &x)| *y += alpha * x);
            } else {
                yc.iter_mut().zip(xc).for_each(|(y, &x)| *y = alpha * x + beta * *y);
            }
        });
        Ok(())
    }

    fn scal(&self, alpha: f32, x: &mut Vec<f32>) -> Result<()> {
        x.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|v| *v *= alpha));
        Ok(())
    }

    fn mul(&self, a: &Vec<f32>, b: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        same_len("mul", a.len(), y.len())?;
        same_len("mul", b.len(), y.len())?;
        y.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(yc, (ac, bc))| yc.iter_mut().zip(ac.iter().zip(bc)).for_each(|(y, (a, b))| *y = a * b));
        Ok(())
    }

    fn add_scalar(&self, x: &mut Vec<f32>, value: f32) -> Result<()> {
        x.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|v| *v += value));
        Ok(())
    }

    fn dot(&self, n: usize, x: &Vec<f32>, x_off: usize, y: &Vec<f32>, y_off: usize) -> Result<f32> {
        range_check("dot", x_off, n, x.len())?;
        range_check("dot", y_off, n, y.len())?;
        Ok(det_sum(n, |i| x[x_off + i] as f64 * y[y_off + i] as f64) as f32)
    }

    fn asum(&self, x: &Vec<f32>) -> Result<f32> {
        Ok(det_sum(x.len(), |i| x[i].abs() as f64) as f32)
    }

    fn sumsq(&self, x: &Vec<f32>) -> Result<f32> {
        Ok(det_sum(x.len(), |i| (x[i] as f64) * (x[i] as f64)) as f32)
    }

    fn gemm(&self, g: &Gemm, a: &Vec<f32>, b: &Vec<f32>, c: &mut Vec<f32>) -> Result<()> {
        let need = |off: usize, rows: usize, cols: usize| off + rows * cols;
        let (ar, ac) = if g.trans_a { (g.k, g.m) } else { (g.m, g.k) };
        let (br, bc) = if g.trans_b { (g.n, g.k) } else { (g.k, g.n) };
        range_check("gemm A", 0, need(g.a_offset, ar, ac), a.len())?;
        range_check("gemm B", 0, need(g.b_offset, br, bc), b.len())?;
        range_check("gemm C", 0, need(g.c_offset, g.m, g.n), c.len())?;
        super::gemm::sgemm(
            g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha,
            &a[g.a_offset..], g.lda(), &b[g.b_offset..], g.ldb(), g.beta,
            &mut c[g.c_offset..], g.n,
        );
        Ok(())
    }

    fn all_finite(&self, x: &Vec<f32>) -> Result<bool> {
        Ok(x.par_chunks(CHUNK).all(|c| c.iter().all(|v| v.is_finite())))
    }
}
