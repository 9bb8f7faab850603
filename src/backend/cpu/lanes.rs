//! How the CPU splits an `outer x classes x inner` buffer ([`ClassAxis`]) into parallel tasks
//! whose memory is disjoint and which each hold every class of their positions, so that a
//! per-position kernel (softmax, a loss gradient) runs without synchronisation:
//! - with `inner > 1`, a task is one item and a run of its positions, held as one slice per
//!   class ([`Rows`]): SegNet's `N x 2 x 256*256` scores cut into runs of thousands;
//! - with `inner == 1` (classifiers), a task is a group of whole items, whose classes are
//!   contiguous ([`Items`]).
//!
//! A kernel implements [`Kernel`] once, generic over [`Lanes`], and [`run`] dispatches it.

use super::CHUNK;
use crate::backend::ClassAxis;
use crate::{Error, Result};
use rayon::prelude::*;

/// The positions of one task: `len()` positions of `classes` values each.
pub(crate) trait Lanes {
    /// Number of positions.
    fn len(&self) -> usize;
    /// Index in the whole buffer of class `c` at position `k`.
    fn at(&self, c: usize, k: usize) -> usize;
    /// Position number (label index) of position `k`.
    fn position(&self, k: usize) -> usize;
    /// The value of class `c` at position `k`.
    fn get(&self, c: usize, k: usize) -> f32;
    /// Sets the value of class `c` at position `k`.
    fn set(&mut self, c: usize, k: usize, v: f32);
    /// Copies this task's part of `src`, a buffer laid out like the whole one.
    fn fill_from(&mut self, src: &[f32]);
}

/// A run of positions of one item, one slice per class.
pub(crate) struct Rows<'a> {
    item: usize,
    start: usize,
    len: usize,
    axis: ClassAxis,
    rows: Vec<&'a mut [f32]>,
}

impl Lanes for Rows<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn at(&self, c: usize, k: usize) -> usize {
        (self.item * self.axis.classes + c) * self.axis.inner + self.start + k
    }
    fn position(&self, k: usize) -> usize {
        self.item * self.axis.inner + self.start + k
    }
    #[inline]
    fn get(&self, c: usize, k: usize) -> f32 {
        self.rows[c][k]
    }
    #[inline]
    fn set(&mut self, c: usize, k: usize, v: f32) {
        self.rows[c][k] = v;
    }
    fn fill_from(&mut self, src: &[f32]) {
        for c in 0..self.rows.len() {
            let off = self.at(c, 0);
            let len = self.len;
            self.rows[c].copy_from_slice(&src[off..off + len]);
        }
    }
}

/// Whole items (with `inner == 1`): `classes` contiguous values per item.
pub(crate) struct Items<'a> {
    first: usize,
    classes: usize,
    data: &'a mut [f32],
}

impl Lanes for Items<'_> {
    fn len(&self) -> usize {
        self.data.len() / self.classes
    }
    fn at(&self, c: usize, k: usize) -> usize {
        (self.first + k) * self.classes + c
    }
    fn position(&self, k: usize) -> usize {
        self.first + k
    }
    #[inline]
    fn get(&self, c: usize, k: usize) -> f32 {
        self.data[k * self.classes + c]
    }
    #[inline]
    fn set(&mut self, c: usize, k: usize, v: f32) {
        self.data[k * self.classes + c] = v;
    }
    fn fill_from(&mut self, src: &[f32]) {
        let off = self.first * self.classes;
        let len = self.data.len();
        self.data.copy_from_slice(&src[off..off + len]);
    }
}

/// A per-position computation over one task's lanes.
pub(crate) trait Kernel: Sync {
    /// Computes the task.
    fn apply<L: Lanes>(&self, lanes: &mut L);
}

/// Runs `kernel` over every task of `buf` (`axis.count()` values), in parallel.
pub(crate) fn run<K: Kernel>(buf: &mut [f32], axis: &ClassAxis, kernel: &K) {
    if axis.count() == 0 {
        return;
    }
    let classes = axis.classes;
    if axis.inner == 1 {
        let items = (CHUNK / classes).max(1);
        buf.par_chunks_mut(items * classes).enumerate().for_each(|(t, data)| {
            kernel.apply(&mut Items { first: t * items, classes, data });
        });
        return;
    }
    let inner = axis.inner;
    let run = (CHUNK / classes).clamp(1, inner);
    let runs = inner.div_ceil(run);
    let mut tasks: Vec<Rows<'_>> = Vec::with_capacity(axis.outer * runs);
    for (item, block) in buf.chunks_mut(classes * inner).enumerate() {
        let first = tasks.len();
        tasks.extend((0..runs).map(|r| Rows {
            item,
            start: r * run,
            len: run.min(inner - r * run),
            axis: *axis,
            rows: Vec::with_capacity(classes),
        }));
        for row in block.chunks_mut(inner) {
            for (r, piece) in row.chunks_mut(run).enumerate() {
                tasks[first + r].rows.push(piece);
            }
        }
    }
    tasks.into_par_iter().for_each(|mut t| kernel.apply(&mut t));
}

/// Calls `f(position, base)` for positions `range` in order, where `base` is the buffer index
/// of class 0 at that position (class `c` is at `base + c * inner`), without a division per
/// position.
#[inline]
pub(crate) fn for_positions(axis: &ClassAxis, range: std::ops::Range<usize>, mut f: impl FnMut(usize, usize)) {
    if range.is_empty() {
        return;
    }
    let inner = axis.inner;
    let (mut i, mut j) = (range.start / inner, range.start % inner);
    let mut base = i * axis.classes * inner + j;
    for p in range {
        f(p, base);
        j += 1;
        base += 1;
        if j == inner {
            j = 0;
            i += 1;
            base = i * axis.classes * inner;
        }
    }
}

/// Checks that a buffer of `buf_len` values has the `want` values `axis` calls for.
pub(crate) fn check_len(what: &str, axis: &ClassAxis, buf_len: usize, want: usize) -> Result<()> {
    if buf_len == want {
        Ok(())
    } else {
        Err(Error::Internal(format!("{what}: buffer of {buf_len} values for {axis:?} (want {want})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes into each element its own index plus one, through the lanes.
    struct Index(usize);
    impl Kernel for Index {
        fn apply<L: Lanes>(&self, lanes: &mut L) {
            for k in 0..lanes.len() {
                for c in 0..self.0 {
                    let v = lanes.get(c, k) + lanes.at(c, k) as f32 + 1.0;
                    lanes.set(c, k, v);
                }
            }
        }
    }

    #[test]
    fn tasks_cover_every_element_once() {
        let axes = [
            ClassAxis { outer: 3, classes: 5, inner: 7 },
            ClassAxis { outer: 2, classes: 2, inner: 3 * CHUNK + 5 },
            ClassAxis { outer: 1, classes: CHUNK * 2, inner: 1 },
            ClassAxis { outer: 4, classes: 1, inner: 1 },
            ClassAxis { outer: CHUNK / 3 + 7, classes: 10, inner: 1 },
        ];
        for a in axes {
            let mut buf = vec![0.0f32; a.count()];
            run(&mut buf, &a, &Index(a.classes));
            assert!(buf.iter().enumerate().all(|(i, &v)| v == i as f32 + 1.0), "{a:?}");
        }
    }

    #[test]
    fn positions_walk_the_bases() {
        let a = ClassAxis { outer: 3, classes: 4, inner: 5 };
        let mut seen = Vec::new();
        for_positions(&a, 3..12, |p, base| seen.push((p, base)));
        let want: Vec<(usize, usize)> = (3..12).map(|p| (p, p / 5 * 20 + p % 5)).collect();
        assert_eq!(seen, want);
    }
}
