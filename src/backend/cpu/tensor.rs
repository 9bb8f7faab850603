//! CPU tensor primitives: reductions, Eltwise, row gathers and scatters. Element-wise loops run
//! in parallel over fixed chunks; reductions sum each row in `f64`, over fixed chunks for long
//! rows, so results do not depend on the thread count.

use super::{CHUNK, Cpu, det_sum};
use crate::backend::{ReduceOp, TensorOps};
use crate::{Error, Result};
use rayon::prelude::*;

fn expect_len(what: &str, buf: &[f32], len: usize) -> Result<()> {
    if buf.len() == len {
        Ok(())
    } else {
        Err(Error::Internal(format!("{what}: a buffer of {} elements where {len} are expected", buf.len())))
    }
}

/// Checks that every input has `y`'s length (and that there are at least `min` of them).
fn same_lens(what: &str, xs: &[&Vec<f32>], min: usize, len: usize) -> Result<()> {
    if xs.len() < min {
        return Err(Error::Internal(format!("{what}: {} inputs, at least {min} needed", xs.len())));
    }
    xs.iter().try_for_each(|x| expect_len(what, x, len))
}

/// `index` as row numbers (`trunc` of each value), or an error naming the first value outside
/// `[0, rows)`.
fn rows_of(index: &[f32], rows: usize) -> Result<Vec<usize>> {
    index
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 && v < rows as f32 {
                Ok(v as usize)
            } else {
                Err(Error::Shape(format!("index {v} at position {i} is outside the valid range [0, {rows})")))
            }
        })
        .collect()
}

fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl TensorOps for Cpu {
    fn reduce_forward(
        &self,
        op: ReduceOp,
        num: usize,
        dim: usize,
        coeff: f32,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        expect_len("reduce_forward x", x, num * dim)?;
        expect_len("reduce_forward y", y, num)?;
        let f = move |v: f32| -> f64 {
            let v = v as f64;
            match op {
                ReduceOp::Sum => v,
                ReduceOp::Asum => v.abs(),
                ReduceOp::Sumsq => v * v,
            }
        };
        let row_sum = |i: usize| -> f32 {
            let row = &x[i * dim..(i + 1) * dim];
            let s = if dim > CHUNK { det_sum(dim, |j| f(row[j])) } else { row.iter().map(|&v| f(v)).sum::<f64>() };
            s as f32 * coeff
        };
        let min_len = (CHUNK / dim.max(1)).max(1);
        y.par_iter_mut().enumerate().with_min_len(min_len).for_each(|(i, v)| *v = row_sum(i));
        Ok(())
    }

    fn reduce_backward(
        &self,
        op: ReduceOp,
        num: usize,
        dim: usize,
        coeff: f32,
        x: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        expect_len("reduce_backward x", x, num * dim)?;
        expect_len("reduce_backward dy", dy, num)?;
        expect_len("reduce_backward dx", dx, num * dim)?;
        dx.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, chunk)| {
            let base = ci * CHUNK;
            for (j, v) in chunk.iter_mut().enumerate() {
                let k = base + j;
                let c = dy[k / dim] * coeff;
                *v = match op {
                    ReduceOp::Sum => c,
                    ReduceOp::Asum => sign(x[k]) * c,
                    ReduceOp::Sumsq => (2.0 * c) * x[k],
                };
            }
        });
        Ok(())
    }

    fn eltwise_sum(&self, xs: &[&Vec<f32>], coeffs: &[f32], y: &mut Vec<f32>) -> Result<()> {
        same_lens("eltwise_sum", xs, 1, y.len())?;
        if coeffs.len() != xs.len() {
            return Err(Error::Internal(format!("eltwise_sum: {} coefficients for {} inputs", coeffs.len(), xs.len())));
        }
        y.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, yc)| {
            let (off, n) = (ci * CHUNK, yc.len());
            yc.fill(0.0);
            for (x, &c) in xs.iter().zip(coeffs) {
                yc.iter_mut().zip(&x[off..off + n]).for_each(|(y, &x)| *y += c * x);
            }
        });
        Ok(())
    }

    fn eltwise_prod(&self, xs: &[&Vec<f32>], y: &mut Vec<f32>) -> Result<()> {
        same_lens("eltwise_prod", xs, 1, y.len())?;
        y.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, yc)| {
            let off = ci * CHUNK;
            let n = yc.len();
            yc.copy_from_slice(&xs[0][off..off + n]);
            for x in &xs[1..] {
                yc.iter_mut().zip(&x[off..off + n]).for_each(|(y, &x)| *y *= x);
            }
        });
        Ok(())
    }

    fn eltwise_prod_backward(
        &self,
        xs: &[&Vec<f32>],
        index: usize,
        y: &Vec<f32>,
        dy: &Vec<f32>,
        stable: bool,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        let len = dx.len();
        same_lens("eltwise_prod_backward", xs, 2, len)?;
        expect_len("eltwise_prod_backward y", y, len)?;
        expect_len("eltwise_prod_backward dy", dy, len)?;
        if index >= xs.len() {
            return Err(Error::Internal(format!("eltwise_prod_backward: input {index} of {}", xs.len())));
        }
        dx.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, dc)| {
            let off = ci * CHUNK;
            let n = dc.len();
            if stable {
                let mut first = true;
                for (k, x) in xs.iter().enumerate() {
                    if k == index {
                        continue;
                    }
                    let xc = &x[off..off + n];
                    if first {
                        dc.copy_from_slice(xc);
                        first = false;
                    } else {
                        dc.iter_mut().zip(xc).for_each(|(d, &x)| *d *= x);
                    }
                }
            } else {
                let (yc, xc) = (&y[off..off + n], &xs[index][off..off + n]);
                dc.iter_mut().zip(yc.iter().zip(xc)).for_each(|(d, (&y, &x))| *d = y / x);
            }
            dc.iter_mut().zip(&dy[off..off + n]).for_each(|(d, &g)| *d *= g);
        });
        Ok(())
    }

    fn eltwise_max(&self, xs: &[&Vec<f32>], y: &mut Vec<f32>, argmax: &mut Vec<f32>) -> Result<()> {
        let len = y.len();
        same_lens("eltwise_max", xs, 2, len)?;
        expect_len("eltwise_max argmax", argmax, len)?;
        y.par_chunks_mut(CHUNK).zip(argmax.par_chunks_mut(CHUNK)).enumerate().for_each(|(ci, (yc, mc))| {
            let off = ci * CHUNK;
            for (j, (y, m)) in yc.iter_mut().zip(mc.iter_mut()).enumerate() {
                let (a, b) = (xs[0][off + j], xs[1][off + j]);
                // Caffe's quirk: a tie between inputs 0 and 1 goes to input 1.
                (*y, *m) = if a > b { (a, 0.0) } else { (b, 1.0) };
                for (k, x) in xs.iter().enumerate().skip(2) {
                    if x[off + j] > *y {
                        *y = x[off + j];
                        *m = k as f32;
                    }
                }
            }
        });
        Ok(())
    }

    fn eltwise_max_backward(&self, argmax: &Vec<f32>, index: usize, dy: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        expect_len("eltwise_max_backward argmax", argmax, dx.len())?;
        expect_len("eltwise_max_backward dy", dy, dx.len())?;
        let k = index as f32;
        dx.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, dc)| {
            let off = ci * CHUNK;
            for (j, d) in dc.iter_mut().enumerate() {
                *d = if argmax[off + j] == k { dy[off + j] } else { 0.0 };
            }
        });
        Ok(())
    }

    fn gather_rows(
        &self,
        index: &Vec<f32>,
        rows: usize,
        row_len: usize,
        table: &Vec<f32>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        expect_len("gather_rows table", table, rows * row_len)?;
        expect_len("gather_rows out", out, index.len() * row_len)?;
        let r = rows_of(index, rows)?;
        if row_len > 0 {
            out.par_chunks_mut(row_len).zip(r.par_iter()).for_each(|(o, &r)| {
                o.copy_from_slice(&table[r * row_len..(r + 1) * row_len]);
            });
        }
        Ok(())
    }

    fn scatter_add_rows(
        &self,
        index: &Vec<f32>,
        rows: usize,
        row_len: usize,
        src: &Vec<f32>,
        table: &mut Vec<f32>,
    ) -> Result<()> {
        expect_len("scatter_add_rows table", table, rows * row_len)?;
        expect_len("scatter_add_rows src", src, index.len() * row_len)?;
        let r = rows_of(index, rows)?;
        if row_len == 0 {
            return Ok(());
        }
        // Sources grouped by destination row, in index order within a row (a stable sort), so
        // that rows can be summed in parallel and each in Caffe's order.
        let mut order: Vec<usize> = (0..r.len()).collect();
        order.sort_by_key(|&i| r[i]);
        let mut starts = vec![0usize; rows + 1];
        for &ri in &r {
            starts[ri + 1] += 1;
        }
        for k in 0..rows {
            starts[k + 1] += starts[k];
        }
        table.par_chunks_mut(row_len).enumerate().for_each(|(row, t)| {
            for &i in &order[starts[row]..starts[row + 1]] {
                t.iter_mut().zip(&src[i * row_len..(i + 1) * row_len]).for_each(|(t, &s)| *t += s);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.uniform_range(-2.0, 2.0)).collect()
    }

    #[test]
    fn reduce_forward_matches_naive_loops() {
        let be = Cpu::new();
        // A long row (several chunks) and many short rows.
        for &(num, dim) in &[(3usize, 40_000usize), (50, 7), (1, 1), (4, 0)] {
            let x = random(num * dim, 1);
            for (op, f) in [
                (ReduceOp::Sum, (|v: f32| v as f64) as fn(f32) -> f64),
                (ReduceOp::Asum, |v: f32| v.abs() as f64),
                (ReduceOp::Sumsq, |v: f32| (v as f64) * (v as f64)),
            ] {
                let mut y = vec![0.0; num];
                be.reduce_forward(op, num, dim, 0.5, &x, &mut y).unwrap();
                for i in 0..num {
                    let want = x[i * dim..(i + 1) * dim].iter().map(|&v| f(v)).sum::<f64>() as f32 * 0.5;
                    assert!((y[i] - want).abs() <= 1e-5 * want.abs().max(1.0), "{op:?} row {i}: {} vs {want}", y[i]);
                }
            }
        }
    }

    #[test]
    fn reduce_backward_matches_naive_loops() {
        let be = Cpu::new();
        let (num, dim) = (5, 9);
        let mut x = random(num * dim, 2);
        x[3] = 0.0;
        let dy = random(num, 3);
        for op in [ReduceOp::Sum, ReduceOp::Asum, ReduceOp::Sumsq] {
            let mut dx = vec![7.0; num * dim];
            be.reduce_backward(op, num, dim, -1.5, &x, &dy, &mut dx).unwrap();
            for k in 0..num * dim {
                let c = dy[k / dim] * -1.5;
                let want = match op {
                    ReduceOp::Sum => c,
                    ReduceOp::Asum => {
                        c * if x[k] > 0.0 {
                            1.0
                        } else if x[k] < 0.0 {
                            -1.0
                        } else {
                            0.0
                        }
                    }
                    ReduceOp::Sumsq => 2.0 * c * x[k],
                };
                assert_eq!(dx[k], want, "{op:?} at {k}");
            }
        }
    }

    #[test]
    fn eltwise_sum_prod_and_gradients_match_naive_loops() {
        let be = Cpu::new();
        let n = 2 * CHUNK + 5;
        let (a, b, c) = (random(n, 4), random(n, 5), random(n, 6));
        let xs = [&a, &b, &c];
        let mut y = vec![0.0; n];
        be.eltwise_sum(&xs, &[0.5, -2.0, 1.0], &mut y).unwrap();
        for i in 0..n {
            assert_eq!(y[i], ((0.0 + 0.5 * a[i]) + -2.0 * b[i]) + c[i]);
        }
        be.eltwise_prod(&xs, &mut y).unwrap();
        for i in 0..n {
            assert_eq!(y[i], a[i] * b[i] * c[i]);
        }
        let dy = random(n, 7);
        let mut dx = vec![0.0; n];
        be.eltwise_prod_backward(&xs, 1, &y, &dy, true, &mut dx).unwrap();
        for i in 0..n {
            assert_eq!(dx[i], a[i] * c[i] * dy[i]);
        }
        be.eltwise_prod_backward(&xs, 2, &y, &dy, false, &mut dx).unwrap();
        for i in 0..n {
            assert_eq!(dx[i], y[i] / c[i] * dy[i]);
        }
    }

    #[test]
    fn eltwise_max_breaks_ties_as_caffe_does() {
        let be = Cpu::new();
        let a = vec![1.0, 2.0, 3.0, 0.0, 5.0];
        let b = vec![1.0, 1.0, 4.0, 0.0, 5.0];
        let c = vec![1.0, 2.0, 4.0, 0.5, 6.0];
        let mut y = vec![0.0; 5];
        let mut m = vec![0.0; 5];
        be.eltwise_max(&[&a, &b, &c], &mut y, &mut m).unwrap();
        assert_eq!(y, [1.0, 2.0, 4.0, 0.5, 6.0]);
        // Tie of 0 and 1 -> 1; a later tie with the running maximum keeps the earlier input.
        assert_eq!(m, [1.0, 0.0, 1.0, 2.0, 2.0]);
        let dy = vec![10.0, 20.0, 30.0, 40.0, 50.0];
        let mut dx = vec![9.0; 5];
        be.eltwise_max_backward(&m, 1, &dy, &mut dx).unwrap();
        assert_eq!(dx, [10.0, 0.0, 30.0, 0.0, 0.0]);
    }

    #[test]
    fn eltwise_checks_lengths() {
        let be = Cpu::new();
        let (a, b) = (vec![0.0; 3], vec![0.0; 4]);
        let mut y = vec![0.0; 3];
        assert!(be.eltwise_sum(&[&a, &b], &[1.0, 1.0], &mut y).is_err());
        assert!(be.eltwise_sum(&[&a], &[1.0, 1.0], &mut y).is_err());
        assert!(be.eltwise_max(&[&a], &mut y, &mut vec![0.0; 3]).is_err());
    }

    #[test]
    fn gather_and_scatter_rows() {
        let be = Cpu::new();
        let table: Vec<f32> = (0..12).map(|v| v as f32).collect(); // 4 rows of 3
        let index = vec![2.0, 0.0, 2.7, 3.0];
        let mut out = vec![0.0; 12];
        be.gather_rows(&index, 4, 3, &table, &mut out).unwrap();
        assert_eq!(out, [6.0, 7.0, 8.0, 0.0, 1.0, 2.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        let src: Vec<f32> = (0..12).map(|v| 0.5 + v as f32).collect();
        let mut acc = vec![1.0; 12];
        be.scatter_add_rows(&index, 4, 3, &src, &mut acc).unwrap();
        let mut want = vec![1.0f32; 12];
        for (i, &r) in index.iter().enumerate() {
            for j in 0..3 {
                want[r as usize * 3 + j] += src[i * 3 + j];
            }
        }
        assert_eq!(acc, want);
    }

    #[test]
    fn gather_rejects_indices_out_of_range() {
        let be = Cpu::new();
        let table = vec![0.0; 6];
        let mut out = vec![0.0; 4];
        for bad in [3.0, -0.5, f32::NAN] {
            let err = be.gather_rows(&vec![1.0, bad], 3, 2, &table, &mut out).unwrap_err().to_string();
            assert!(err.contains("at position 1 is outside the valid range [0, 3)"), "{err}");
            let err =
                be.scatter_add_rows(&vec![bad, 0.0], 3, 2, &vec![0.0; 4], &mut vec![0.0; 6]).unwrap_err().to_string();
            assert!(err.contains("at position 0"), "{err}");
        }
    }
}
