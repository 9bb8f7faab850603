//! CPU softmax over one axis, and the column split that the loss kernels share: a buffer of
//! `outer x classes x inner` values cut into tasks of one item and a run of `inner` positions,
//! each holding one mutable slice per class, so that tasks run in parallel on disjoint memory
//! and every position's classes are in one task.

use super::CHUNK;
use crate::backend::{ClassAxis, Io};
use crate::{Error, Result};
use rayon::prelude::*;

/// One task: item `item`, positions `start..start + len` of it, and for each class the
/// slice of those positions.
pub(crate) struct Column<'a> {
    /// The item (index along `outer`).
    pub item: usize,
    /// First position within the item.
    pub start: usize,
    /// Number of positions.
    pub len: usize,
    /// One slice of `len` values per class.
    pub rows: Vec<&'a mut [f32]>,
}

impl Column<'_> {
    /// Offset in the whole buffer of class `c` at the first position.
    pub fn offset(&self, axis: &ClassAxis, c: usize) -> usize {
        (self.item * axis.classes + c) * axis.inner + self.start
    }
    /// Position number (label index) of the first position.
    pub fn first_position(&self, axis: &ClassAxis) -> usize {
        self.item * axis.inner + self.start
    }
}

/// Splits `buf` (`axis.count()` values) into columns of about `CHUNK` values each.
pub(crate) fn columns<'a>(buf: &'a mut [f32], axis: &ClassAxis) -> Vec<Column<'a>> {
    let (classes, inner) = (axis.classes.max(1), axis.inner.max(1));
    let run = (CHUNK / classes).clamp(1, inner);
    let runs = inner.div_ceil(run);
    let mut out = Vec::with_capacity(axis.outer * runs);
    if axis.count() == 0 {
        return out;
    }
    for (item, block) in buf.chunks_mut(axis.classes * axis.inner).enumerate() {
        let mut cols: Vec<Column<'a>> = (0..runs)
            .map(|r| Column { item, start: r * run, len: run.min(inner - r * run), rows: Vec::with_capacity(classes) })
            .collect();
        for row in block.chunks_mut(axis.inner) {
            for (r, piece) in row.chunks_mut(run).enumerate() {
                cols[r].rows.push(piece);
            }
        }
        out.extend(cols);
    }
    out
}

/// Checks that `buf_len` values fit `axis`.
pub(crate) fn check_len(what: &str, axis: &ClassAxis, buf_len: usize, want: usize) -> Result<()> {
    if buf_len == want {
        Ok(())
    } else {
        Err(Error::Internal(format!("{what}: buffer of {buf_len} values for {axis:?} (want {want})")))
    }
}

/// Copies the column's part of `src` (a buffer laid out like the column's own) into it.
fn fill_from(col: &mut Column<'_>, axis: &ClassAxis, src: &[f32]) {
    for c in 0..col.rows.len() {
        let off = col.offset(axis, c);
        let len = col.len;
        col.rows[c].copy_from_slice(&src[off..off + len]);
    }
}

/// Softmax of one column in place, in Caffe's order of operations.
fn softmax_column(col: &mut Column<'_>) {
    let n = col.len;
    let rows = &mut col.rows;
    let mut max = rows[0].to_vec();
    for row in rows.iter().skip(1) {
        for (m, &v) in max.iter_mut().zip(row.iter()) {
            // std::max(m, v): keeps m unless m < v.
            if *m < v {
                *m = v;
            }
        }
    }
    let mut sum = vec![0.0f32; n];
    for row in rows.iter_mut() {
        for ((v, &m), s) in row.iter_mut().zip(&max).zip(sum.iter_mut()) {
            *v = (*v - m).exp();
            *s += *v;
        }
    }
    for row in rows.iter_mut() {
        for (v, &s) in row.iter_mut().zip(&sum) {
            *v /= s;
        }
    }
}

/// `y = softmax(x)` over the classes of every position.
pub(crate) fn softmax_forward(axis: &ClassAxis, io: Io<'_, Vec<f32>>) -> Result<()> {
    let want = axis.count();
    match io {
        Io::InPlace(y) => {
            check_len("softmax_forward", axis, y.len(), want)?;
            columns(y, axis).into_par_iter().for_each(|mut col| softmax_column(&mut col));
        }
        Io::Pair(x, y) => {
            check_len("softmax_forward input", axis, x.len(), want)?;
            check_len("softmax_forward output", axis, y.len(), want)?;
            columns(y, axis).into_par_iter().for_each(|mut col| {
                fill_from(&mut col, axis, x);
                softmax_column(&mut col);
            });
        }
    }
    Ok(())
}

/// `dx = (dy - sum_c dy_c y_c) y` over the classes of every position.
pub(crate) fn softmax_backward(axis: &ClassAxis, y: &[f32], diff: Io<'_, Vec<f32>>) -> Result<()> {
    let want = axis.count();
    check_len("softmax_backward top data", axis, y.len(), want)?;
    let (src, dx) = match diff {
        Io::InPlace(d) => (None, d),
        Io::Pair(dy, dx) => {
            check_len("softmax_backward top diff", axis, dy.len(), want)?;
            (Some(dy), dx)
        }
    };
    check_len("softmax_backward bottom diff", axis, dx.len(), want)?;
    columns(dx, axis).into_par_iter().for_each(|mut col| {
        if let Some(dy) = src {
            fill_from(&mut col, axis, dy);
        }
        let mut dot = vec![0.0f32; col.len];
        for c in 0..col.rows.len() {
            let yoff = col.offset(axis, c);
            let yrow = &y[yoff..yoff + col.len];
            for ((d, &g), &p) in dot.iter_mut().zip(col.rows[c].iter()).zip(yrow) {
                *d += g * p;
            }
        }
        for c in 0..col.rows.len() {
            let yoff = col.offset(axis, c);
            let yrow = &y[yoff..yoff + col.len];
            for ((g, &d), &p) in col.rows[c].iter_mut().zip(&dot).zip(yrow) {
                *g = (*g - d) * p;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(outer: usize, classes: usize, inner: usize) -> ClassAxis {
        ClassAxis { outer, classes, inner }
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2000) as f32 / 200.0 - 5.0).collect()
    }

    /// Softmax by the definition, in f64.
    fn naive_softmax(a: &ClassAxis, x: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for i in 0..a.outer {
            for j in 0..a.inner {
                let at = |c: usize| (i * a.classes + c) * a.inner + j;
                let m = (0..a.classes).map(|c| x[at(c)] as f64).fold(f64::MIN, f64::max);
                let s: f64 = (0..a.classes).map(|c| (x[at(c)] as f64 - m).exp()).sum();
                for c in 0..a.classes {
                    y[at(c)] = (x[at(c)] as f64 - m).exp() / s;
                }
            }
        }
        y
    }

    #[test]
    fn columns_cover_every_element_once() {
        for a in [axis(3, 5, 7), axis(2, 2, 3 * CHUNK + 5), axis(1, CHUNK * 2, 1), axis(4, 1, 1)] {
            let mut buf = vec![0.0f32; a.count()];
            for col in columns(&mut buf, &a) {
                assert_eq!(col.rows.len(), a.classes);
                for (c, row) in col.rows.into_iter().enumerate() {
                    assert_eq!(row.len(), col.len);
                    for (k, v) in row.iter_mut().enumerate() {
                        *v += ((col.item * a.classes + c) * a.inner + col.start + k) as f32 + 1.0;
                    }
                }
            }
            assert!(buf.iter().enumerate().all(|(i, &v)| v == i as f32 + 1.0), "{a:?}");
        }
    }

    #[test]
    fn softmax_forward_matches_definition_in_place_and_not() {
        for a in [axis(2, 5, 12), axis(3, 4, 1), axis(1, 3, CHUNK + 17), axis(2, 1, 6)] {
            let x = values(a.count(), 3);
            let want = naive_softmax(&a, &x);
            let mut y = vec![0.0; x.len()];
            softmax_forward(&a, Io::Pair(&x, &mut y)).unwrap();
            let mut z = x.clone();
            softmax_forward(&a, Io::InPlace(&mut z)).unwrap();
            assert_eq!(y, z);
            for (g, w) in y.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-6, "{a:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn softmax_is_stable_for_large_inputs() {
        let a = axis(1, 3, 1);
        let mut y = vec![1000.0f32, 1001.0, -1000.0];
        softmax_forward(&a, Io::InPlace(&mut y)).unwrap();
        assert!(y.iter().all(|v| v.is_finite()));
        assert!((y[1] - 0.7310586).abs() < 1e-6);
    }

    #[test]
    fn softmax_backward_matches_definition_in_place_and_not() {
        for a in [axis(2, 5, 12), axis(3, 4, 1), axis(1, 3, CHUNK + 17)] {
            let mut y = values(a.count(), 1);
            softmax_forward(&a, Io::InPlace(&mut y)).unwrap();
            let dy = values(a.count(), 9);
            let mut want = vec![0.0f64; dy.len()];
            for i in 0..a.outer {
                for j in 0..a.inner {
                    let at = |c: usize| (i * a.classes + c) * a.inner + j;
                    let dot: f64 = (0..a.classes).map(|c| dy[at(c)] as f64 * y[at(c)] as f64).sum();
                    for c in 0..a.classes {
                        want[at(c)] = (dy[at(c)] as f64 - dot) * y[at(c)] as f64;
                    }
                }
            }
            let mut dx = vec![0.0; dy.len()];
            softmax_backward(&a, &y, Io::Pair(&dy, &mut dx)).unwrap();
            let mut d2 = dy.clone();
            softmax_backward(&a, &y, Io::InPlace(&mut d2)).unwrap();
            assert_eq!(dx, d2);
            for (g, w) in dx.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-5, "{a:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn wrong_lengths_are_internal_errors() {
        let a = axis(2, 3, 4);
        let mut y = vec![0.0; 23];
        assert!(matches!(softmax_forward(&a, Io::InPlace(&mut y)), Err(Error::Internal(_))));
    }
}
