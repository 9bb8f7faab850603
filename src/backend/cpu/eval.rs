//! CPU evaluation primitives: Accuracy (top-k, per class) and ArgMax.

use super::lanes::{check_len, for_positions};
use super::CHUNK;
use crate::backend::{label_kind, ArgMaxOutput, BadLabel, ClassAxis, LabelKind};
use crate::{Error, Result};
use rayon::prelude::*;
use std::cmp::Ordering;

/// Counts of one chunk of positions: per class, valid positions and correct ones.
struct Counts {
    valid: Vec<u64>,
    correct: Vec<u64>,
    bad: Option<BadLabel>,
}

pub(crate) fn accuracy(
    axis: &ClassAxis,
    ignore_label: Option<i32>,
    top_k: usize,
    x: &[f32],
    label: &[f32],
    accuracy: &mut [f32],
    per_class: Option<&mut Vec<f32>>,
) -> Result<Option<BadLabel>> {
    check_len("accuracy scores", axis, x.len(), axis.count())?;
    check_len("accuracy labels", axis, label.len(), axis.positions())?;
    check_len("accuracy output", axis, accuracy.len(), 1)?;
    let (classes, inner, n) = (axis.classes, axis.inner, axis.positions());
    let partial: Vec<Counts> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let mut s = Counts { valid: vec![0; classes], correct: vec![0; classes], bad: None };
            for_positions(axis, chunk * CHUNK..((chunk + 1) * CHUNK).min(n), |p, base| {
                let value = label[p];
                let l = match label_kind(value, classes, ignore_label) {
                    LabelKind::Class(l) => l,
                    LabelKind::Ignored => return,
                    LabelKind::Bad => {
                        s.bad.get_or_insert(BadLabel { position: p, value });
                        return;
                    }
                };
                let truth = x[base + l * inner];
                // The true class counts itself as one "better" prediction.
                let better = (0..classes).filter(|&c| x[base + c * inner] >= truth).count();
                s.valid[l] += 1;
                if better <= top_k {
                    s.correct[l] += 1;
                }
            });
            s
        })
        .collect();
    let mut total = Counts { valid: vec![0; classes], correct: vec![0; classes], bad: None };
    for s in partial {
        total.valid.iter_mut().zip(&s.valid).for_each(|(a, b)| *a += b);
        total.correct.iter_mut().zip(&s.correct).for_each(|(a, b)| *a += b);
        total.bad = total.bad.or(s.bad);
    }
    let (valid, correct): (u64, u64) = (total.valid.iter().sum(), total.correct.iter().sum());
    accuracy[0] = if valid == 0 { 0.0 } else { correct as f32 / valid as f32 };
    if let Some(pc) = per_class {
        check_len("accuracy per-class output", axis, pc.len(), classes)?;
        for (o, (&v, &c)) in pc.iter_mut().zip(total.valid.iter().zip(&total.correct)) {
            *o = if v == 0 { 0.0 } else { c as f32 / v as f32 };
        }
    }
    Ok(total.bad)
}

/// Caffe's order of ArgMax picks: `std::greater` on `(value, index)`.
fn pick_order(a: &(f32, usize), b: &(f32, usize)) -> Ordering {
    b.0.total_cmp(&a.0).then(b.1.cmp(&a.1))
}

pub(crate) fn argmax(axis: &ClassAxis, top_k: usize, output: ArgMaxOutput, x: &[f32], y: &mut [f32]) -> Result<()> {
    let (classes, inner) = (axis.classes, axis.inner);
    check_len("argmax input", axis, x.len(), axis.count())?;
    if top_k == 0 || top_k > classes {
        return Err(Error::Internal(format!("argmax: top_k {top_k} for {classes} classes")));
    }
    let per_item = match output {
        ArgMaxOutput::IndexAndValue if inner != 1 => {
            return Err(Error::Internal("argmax: indices and values together need inner == 1".into()));
        }
        ArgMaxOutput::IndexAndValue => 2 * top_k,
        ArgMaxOutput::Index | ArgMaxOutput::Value => top_k * inner,
    };
    check_len("argmax output", axis, y.len(), axis.outer * per_item)?;
    if per_item == 0 {
        return Ok(());
    }
    y.par_chunks_mut(per_item).enumerate().for_each(|(i, out)| {
        let mut v: Vec<(f32, usize)> = Vec::with_capacity(classes);
        for j in 0..inner {
            v.clear();
            v.extend((0..classes).map(|c| (x[(i * classes + c) * inner + j], c)));
            if top_k < classes {
                v.select_nth_unstable_by(top_k - 1, pick_order);
            }
            v[..top_k].sort_unstable_by(pick_order);
            for (k, &(value, index)) in v[..top_k].iter().enumerate() {
                match output {
                    ArgMaxOutput::Index => out[k * inner + j] = index as f32,
                    ArgMaxOutput::Value => out[k * inner + j] = value,
                    ArgMaxOutput::IndexAndValue => {
                        out[k] = index as f32;
                        out[top_k + k] = value;
                    }
                }
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

    fn scores(n: usize) -> Vec<f32> {
        // Few distinct values, so that ties occur.
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) >> 12) % 7) as f32).collect()
    }

    /// Caffe's loop, literally.
    fn naive_accuracy(a: &ClassAxis, ignore: Option<i32>, k: usize, x: &[f32], label: &[f32]) -> (f32, Vec<f32>) {
        let (mut acc, mut count) = (0.0f32, 0);
        let mut nums = vec![0.0f32; a.classes];
        let mut per = vec![0.0f32; a.classes];
        for i in 0..a.outer {
            for j in 0..a.inner {
                let l = label[i * a.inner + j] as i32;
                if Some(l) == ignore {
                    continue;
                }
                let l = l as usize;
                nums[l] += 1.0;
                let dim = a.classes * a.inner;
                let truth = x[i * dim + l * a.inner + j];
                let mut better = -1i64;
                let mut c = 0;
                while c < a.classes && better < k as i64 {
                    better += (x[i * dim + c * a.inner + j] >= truth) as i64;
                    c += 1;
                }
                if better < k as i64 {
                    acc += 1.0;
                    per[l] += 1.0;
                }
                count += 1;
            }
        }
        let per = per.iter().zip(&nums).map(|(p, n)| if *n == 0.0 { 0.0 } else { p / n }).collect();
        (if count == 0 { 0.0 } else { acc / count as f32 }, per)
    }

    #[test]
    fn accuracy_matches_caffe_loop() {
        for (a, k, ignore) in [(axis(4, 5, 9), 1, Some(1)), (axis(3, 6, 1), 2, None), (axis(2, 3, CHUNK + 9), 2, Some(0))] {
            let x = scores(a.count());
            let label: Vec<f32> = (0..a.positions()).map(|p| ((p * 5 + 1) % a.classes) as f32).collect();
            let (want, want_pc) = naive_accuracy(&a, ignore, k, &x, &label);
            let mut acc = vec![0.0];
            let mut pc = vec![0.0; a.classes];
            let bad = accuracy(&a, ignore, k, &x, &label, &mut acc, Some(&mut pc)).unwrap();
            assert!(bad.is_none());
            assert_eq!(acc[0], want, "{a:?}");
            assert_eq!(pc, want_pc, "{a:?}");
        }
    }

    #[test]
    fn accuracy_with_everything_ignored_is_zero_and_bad_labels_are_reported() {
        let a = axis(2, 3, 2);
        let x = scores(a.count());
        let mut label = vec![2.0; 4];
        let mut acc = vec![1.0];
        assert!(accuracy(&a, Some(2), 1, &x, &label, &mut acc, None).unwrap().is_none());
        assert_eq!(acc[0], 0.0);
        label[3] = 3.0;
        label[2] = -1.0;
        assert_eq!(accuracy(&a, None, 1, &x, &label, &mut acc, None).unwrap(), Some(BadLabel { position: 2, value: -1.0 }));
    }

    /// Caffe's partial sort on (value, index) pairs, by a full sort.
    fn naive_top(values: &[f32], k: usize) -> Vec<(f32, usize)> {
        let mut v: Vec<(f32, usize)> = values.iter().copied().zip(0..).collect();
        v.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(b.1.cmp(&a.1)));
        v.truncate(k);
        v
    }

    #[test]
    fn argmax_layouts_and_ties() {
        let a = axis(2, 5, 3);
        let x = scores(a.count());
        for k in [1, 2, 5] {
            let mut idx = vec![0.0; 2 * k * 3];
            let mut val = vec![0.0; 2 * k * 3];
            argmax(&a, k, ArgMaxOutput::Index, &x, &mut idx).unwrap();
            argmax(&a, k, ArgMaxOutput::Value, &x, &mut val).unwrap();
            for i in 0..2 {
                for j in 0..3 {
                    let column: Vec<f32> = (0..5).map(|c| x[(i * 5 + c) * 3 + j]).collect();
                    for (n, (v, c)) in naive_top(&column, k).into_iter().enumerate() {
                        assert_eq!(idx[(i * k + n) * 3 + j], c as f32);
                        assert_eq!(val[(i * k + n) * 3 + j], v);
                    }
                }
            }
        }
        let flat = axis(2, 15, 1);
        let mut both = vec![0.0; 2 * 2 * 3];
        argmax(&flat, 3, ArgMaxOutput::IndexAndValue, &x, &mut both).unwrap();
        for i in 0..2 {
            for (n, (v, c)) in naive_top(&x[i * 15..(i + 1) * 15], 3).into_iter().enumerate() {
                assert_eq!(both[2 * i * 3 + n], c as f32);
                assert_eq!(both[2 * i * 3 + 3 + n], v);
            }
        }
        // Ties go to the larger index.
        let mut y = vec![0.0];
        argmax(&axis(1, 3, 1), 1, ArgMaxOutput::Index, &[1.0, 1.0, 0.0], &mut y).unwrap();
        assert_eq!(y[0], 1.0);
        assert!(argmax(&axis(1, 3, 1), 4, ArgMaxOutput::Index, &[1.0, 1.0, 0.0], &mut y).is_err());
    }
}
