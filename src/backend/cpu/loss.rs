//! CPU loss primitives: SoftmaxWithLoss (with SegNet's class weights), InfogainLoss and
//! SigmoidCrossEntropyLoss, forward sums and backward gradients. Sums run over fixed chunks of
//! positions combined in order, so they do not depend on the thread count.

use super::lanes::{check_len, for_positions, run, Kernel, Lanes};
use super::{Cpu, CHUNK};
use crate::backend::{label_class, label_kind, ArgMaxOutput, BadLabel, ClassAxis, Io, LabelKind, Losses, LossSum};
use crate::Result;
use rayon::prelude::*;

/// Caffe's floor under a probability before its log in SoftmaxWithLoss (`FLT_MIN`).
const FLT_MIN: f32 = f32::MIN_POSITIVE;
/// Caffe's `kLOG_THRESHOLD`, the floor in InfogainLoss.
const LOG_THRESHOLD: f32 = 1e-20;

/// Sums the loss terms of positions `0..axis.positions()` in fixed chunks. `term(label, base)`
/// gets a position's label and the buffer index of its class 0, and returns `None` for an
/// ignored position, `Some(Err(()))` for a bad label, `Some(Ok(v))` for a valid one.
fn sum_positions(
    axis: &ClassAxis,
    label: &[f32],
    term: impl Fn(f32, usize) -> Option<std::result::Result<f64, ()>> + Sync,
) -> LossSum {
    let n = axis.positions();
    let partial: Vec<LossSum> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut s = LossSum { loss: 0.0, valid: 0, bad: None };
            for_positions(axis, c * CHUNK..((c + 1) * CHUNK).min(n), |p, base| match term(label[p], base) {
                None => {}
                Some(Ok(v)) => {
                    s.loss += v;
                    s.valid += 1;
                }
                Some(Err(())) => {
                    s.bad.get_or_insert(BadLabel { position: p, value: label[p] });
                }
            });
            s
        })
        .collect();
    partial.into_iter().fold(LossSum { loss: 0.0, valid: 0, bad: None }, |a, b| LossSum {
        loss: a.loss + b.loss,
        valid: a.valid + b.valid,
        bad: a.bad.or(b.bad),
    })
}

/// Sums `term(l, base)` over the positions whose label is class `l` (`base` as in
/// [`sum_positions`]), skipping ignored labels and recording the first bad one.
fn sum_classes(
    axis: &ClassAxis,
    ignore_label: Option<i32>,
    label: &[f32],
    term: impl Fn(usize, usize) -> f64 + Sync,
) -> LossSum {
    sum_positions(axis, label, |value, base| match label_kind(value, axis.classes, ignore_label) {
        LabelKind::Ignored => None,
        LabelKind::Bad => Some(Err(())),
        LabelKind::Class(l) => Some(Ok(term(l, base))),
    })
}

/// Checks the buffers of a label loss.
fn check_label_loss(what: &str, axis: &ClassAxis, prob: &[f32], label: &[f32], table: Option<(&[f32], usize)>) -> Result<()> {
    check_len(what, axis, prob.len(), axis.count())?;
    check_len(what, axis, label.len(), axis.positions())?;
    if let Some((t, want)) = table {
        check_len(what, axis, t.len(), want)?;
    }
    Ok(())
}

/// Overwrites the lanes (`dx`) with `grad(c, l, index)` at positions whose label is class
/// `l`, and 0 at ignored and bad ones; labels are decoded once per position.
struct LabelGrad<'a, G> {
    classes: usize,
    ignore_label: Option<i32>,
    label: &'a [f32],
    grad: G,
}

impl<G: Fn(usize, usize, usize) -> f32 + Sync> Kernel for LabelGrad<'_, G> {
    fn apply<L: Lanes>(&self, lanes: &mut L) {
        let classes: Vec<Option<usize>> = (0..lanes.len())
            .map(|k| match label_kind(self.label[lanes.position(k)], self.classes, self.ignore_label) {
                LabelKind::Class(l) => Some(l),
                LabelKind::Ignored | LabelKind::Bad => None,
            })
            .collect();
        for c in 0..self.classes {
            for (k, l) in classes.iter().enumerate() {
                let v = match *l {
                    Some(l) => (self.grad)(c, l, lanes.at(c, k)),
                    None => 0.0,
                };
                lanes.set(c, k, v);
            }
        }
    }
}

fn label_backward(
    axis: &ClassAxis,
    ignore_label: Option<i32>,
    label: &[f32],
    dx: &mut [f32],
    grad: impl Fn(usize, usize, usize) -> f32 + Sync,
) {
    run(dx, axis, &LabelGrad { classes: axis.classes, ignore_label, label, grad });
}

impl Losses for Cpu {
    fn softmax_forward(&self, axis: &ClassAxis, io: Io<'_, Vec<f32>>) -> Result<()> {
        super::softmax::softmax_forward(axis, io)
    }

    fn softmax_backward(&self, axis: &ClassAxis, y: &Vec<f32>, diff: Io<'_, Vec<f32>>) -> Result<()> {
        super::softmax::softmax_backward(axis, y, diff)
    }

    fn softmax_loss_forward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &Vec<f32>,
        label: &Vec<f32>,
        class_weights: Option<&Vec<f32>>,
    ) -> Result<LossSum> {
        check_label_loss("softmax_loss_forward", axis, prob, label, class_weights.map(|w| (w.as_slice(), axis.classes)))?;
        let inner = axis.inner;
        Ok(sum_classes(axis, ignore_label, label, |l, base| {
            let logp = prob[base + l * inner].max(FLT_MIN).ln();
            let term = match class_weights {
                Some(w) => -(logp * w[l]),
                None => -logp,
            };
            term as f64
        }))
    }

    fn softmax_loss_backward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &Vec<f32>,
        label: &Vec<f32>,
        class_weights: Option<&Vec<f32>>,
        scale: f32,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        check_label_loss("softmax_loss_backward", axis, prob, label, class_weights.map(|w| (w.as_slice(), axis.classes)))?;
        check_len("softmax_loss_backward", axis, dx.len(), axis.count())?;
        label_backward(axis, ignore_label, label, dx, |c, l, at| {
            let g = if c == l { prob[at] - 1.0 } else { prob[at] };
            match class_weights {
                Some(w) => g * w[l] * scale,
                None => g * scale,
            }
        });
        Ok(())
    }

    fn infogain_loss_forward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &Vec<f32>,
        label: &Vec<f32>,
        h: &Vec<f32>,
    ) -> Result<LossSum> {
        let classes = axis.classes;
        check_label_loss("infogain_loss_forward", axis, prob, label, Some((h, classes * classes)))?;
        let inner = axis.inner;
        Ok(sum_classes(axis, ignore_label, label, |l, base| {
            let row = &h[l * classes..(l + 1) * classes];
            (0..classes).map(|c| -(row[c] * prob[base + c * inner].max(LOG_THRESHOLD).ln()) as f64).sum()
        }))
    }

    fn infogain_loss_backward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &Vec<f32>,
        label: &Vec<f32>,
        h: &Vec<f32>,
        scale: f32,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        let classes = axis.classes;
        check_label_loss("infogain_loss_backward", axis, prob, label, Some((h, classes * classes)))?;
        check_len("infogain_loss_backward", axis, dx.len(), axis.count())?;
        let row_sums: Vec<f32> = h.chunks(classes.max(1)).map(|row| row.iter().fold(0.0f32, |s, &v| s + v)).collect();
        label_backward(axis, ignore_label, label, dx, |c, l, at| (prob[at] * row_sums[l] - h[l * classes + c]) * scale);
        Ok(())
    }

    fn sigmoid_xent_forward(&self, x: &Vec<f32>, target: &Vec<f32>, ignore_label: Option<i32>) -> Result<LossSum> {
        let axis = ClassAxis { outer: 1, classes: 1, inner: x.len() };
        check_len("sigmoid_xent_forward", &axis, target.len(), x.len())?;
        Ok(sum_positions(&axis, target, |t, i| {
            if ignore_label.is_some() && label_class(t) == ignore_label {
                return None;
            }
            let v = x[i];
            let pos = if v >= 0.0 { 1.0f32 } else { 0.0 };
            let term = v * (t - pos) - (1.0 + (v - 2.0 * v * pos).exp()).ln();
            Some(Ok(-term as f64))
        }))
    }

    fn sigmoid_xent_backward(
        &self,
        x: &Vec<f32>,
        target: &Vec<f32>,
        ignore_label: Option<i32>,
        scale: f32,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        let axis = ClassAxis { outer: 1, classes: 1, inner: x.len() };
        check_len("sigmoid_xent_backward", &axis, target.len(), x.len())?;
        check_len("sigmoid_xent_backward", &axis, dx.len(), x.len())?;
        dx.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, chunk)| {
            for (k, d) in chunk.iter_mut().enumerate() {
                let i = ci * CHUNK + k;
                *d = if ignore_label.is_some() && label_class(target[i]) == ignore_label {
                    0.0
                } else {
                    let s = (0.5 * (0.5 * x[i] as f64).tanh() + 0.5) as f32;
                    (s - target[i]) * scale
                };
            }
        });
        Ok(())
    }

    fn accuracy(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        top_k: usize,
        x: &Vec<f32>,
        label: &Vec<f32>,
        accuracy: &mut Vec<f32>,
        per_class: Option<&mut Vec<f32>>,
    ) -> Result<Option<BadLabel>> {
        super::eval::accuracy(axis, ignore_label, top_k, x, label, accuracy, per_class)
    }

    fn argmax(&self, axis: &ClassAxis, top_k: usize, output: ArgMaxOutput, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        super::eval::argmax(axis, top_k, output, x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(outer: usize, classes: usize, inner: usize) -> ClassAxis {
        ClassAxis { outer, classes, inner }
    }

    /// Positive "probabilities" (not normalised: the primitives do not care).
    fn probs(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000).map(|v| v as f32 / 1000.0 + 1e-3).collect()
    }

    fn labels(n: usize, classes: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7 + 3) % classes) as f32).collect()
    }

    fn at(a: &ClassAxis, p: usize, c: usize) -> usize {
        (p / a.inner * a.classes + c) * a.inner + p % a.inner
    }

    #[test]
    fn label_kinds_follow_caffe_truncation() {
        assert_eq!(label_kind(2.7, 3, None), LabelKind::Class(2));
        assert_eq!(label_kind(-0.5, 3, None), LabelKind::Class(0));
        assert_eq!(label_kind(3.0, 3, None), LabelKind::Bad);
        assert_eq!(label_kind(-1.0, 3, None), LabelKind::Bad);
        assert_eq!(label_kind(-1.0, 3, Some(-1)), LabelKind::Ignored);
        assert_eq!(label_kind(255.9, 3, Some(255)), LabelKind::Ignored);
        assert_eq!(label_kind(1.0, 3, Some(1)), LabelKind::Ignored);
        assert_eq!(label_kind(f32::NAN, 3, Some(0)), LabelKind::Bad);
        assert_eq!(label_kind(3e9, 3, None), LabelKind::Bad);
        assert_eq!(label_class(-2_147_483_648.0), Some(i32::MIN));
        assert_eq!(label_class(-2_147_483_904.0), None);
    }

    #[test]
    fn softmax_loss_forward_matches_naive_sum() {
        let a = axis(2, 4, 3 * CHUNK / 2 + 7);
        let prob = probs(a.count(), 5);
        let mut label = labels(a.positions(), 5); // class 4 is ignored
        let w = vec![0.5f32, 1.5, 2.0, 3.0];
        for weights in [None, Some(&w)] {
            let got = Cpu.softmax_loss_forward(&a, Some(4), &prob, &label, weights).unwrap();
            let (mut loss, mut valid) = (0.0f64, 0);
            for (p, &lv) in label.iter().enumerate() {
                let l = lv as usize;
                if l == 4 {
                    continue;
                }
                loss -= (prob[at(&a, p, l)] as f64).ln() * weights.map_or(1.0, |w| w[l] as f64);
                valid += 1;
            }
            assert_eq!(got.valid, valid);
            assert!(got.bad.is_none());
            assert!((got.loss - loss).abs() < 1e-6 * loss.abs(), "{} vs {loss}", got.loss);
        }
        // A zero probability is floored at FLT_MIN.
        let mut p0 = prob.clone();
        p0[at(&a, 0, label[0] as usize)] = 0.0;
        let s = Cpu.softmax_loss_forward(&a, Some(4), &p0, &label, None).unwrap();
        assert!(s.loss.is_finite());
        // Bad labels: the first position is reported.
        label[1000] = 7.0;
        label[20] = -2.0;
        let s = Cpu.softmax_loss_forward(&a, Some(4), &prob, &label, None).unwrap();
        assert_eq!(s.bad, Some(BadLabel { position: 20, value: -2.0 }));
    }

    #[test]
    fn softmax_loss_backward_matches_naive() {
        let a = axis(3, 3, 5);
        let prob = probs(a.count(), 2);
        let mut label = labels(a.positions(), 4); // 3 is ignored
        label[4] = 9.0; // bad: zero gradient
        let w = vec![0.3f32, 1.7, 2.5];
        for weights in [None, Some(&w)] {
            let mut dx = vec![f32::NAN; a.count()];
            Cpu.softmax_loss_backward(&a, Some(3), &prob, &label, weights, 0.25, &mut dx).unwrap();
            for (p, &lv) in label.iter().enumerate() {
                for c in 0..3 {
                    let want = match lv as usize {
                        3 | 9 => 0.0,
                        l => (prob[at(&a, p, c)] - if c == l { 1.0 } else { 0.0 }) * weights.map_or(1.0, |w| w[l]) * 0.25,
                    };
                    assert!((dx[at(&a, p, c)] - want).abs() < 1e-7, "p {p} c {c}");
                }
            }
        }
    }

    #[test]
    fn infogain_matches_naive_and_identity_is_softmax_loss() {
        let a = axis(2, 3, 4);
        let prob = probs(a.count(), 11);
        let label = labels(a.positions(), 3);
        let h: Vec<f32> = (0..9).map(|i| (i as f32 * 0.37).sin().abs()).collect();
        let got = Cpu.infogain_loss_forward(&a, None, &prob, &label, &h).unwrap();
        let mut loss = 0.0f64;
        for (p, &lv) in label.iter().enumerate() {
            for c in 0..3 {
                loss -= h[lv as usize * 3 + c] as f64 * (prob[at(&a, p, c)] as f64).ln();
            }
        }
        assert!((got.loss - loss).abs() < 1e-5 * loss.abs());
        assert_eq!(got.valid, a.positions());
        let mut dx = vec![0.0; a.count()];
        Cpu.infogain_loss_backward(&a, None, &prob, &label, &h, 2.0, &mut dx).unwrap();
        for (p, &lv) in label.iter().enumerate() {
            let l = lv as usize;
            let rs: f32 = h[l * 3..l * 3 + 3].iter().sum();
            for c in 0..3 {
                let want = (prob[at(&a, p, c)] * rs - h[l * 3 + c]) * 2.0;
                assert!((dx[at(&a, p, c)] - want).abs() < 1e-6);
            }
        }
        let eye = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let ig = Cpu.infogain_loss_forward(&a, Some(1), &prob, &label, &eye).unwrap();
        let sm = Cpu.softmax_loss_forward(&a, Some(1), &prob, &label, None).unwrap();
        assert!((ig.loss - sm.loss).abs() < 1e-9 && ig.valid == sm.valid);
    }

    #[test]
    fn sigmoid_xent_matches_naive() {
        let x: Vec<f32> = (0..50).map(|i| (i as f32 - 25.0) * 0.9).collect();
        let t: Vec<f32> = (0..50).map(|i| if i % 5 == 0 { -1.0 } else { (i % 3) as f32 / 2.0 }).collect();
        let got = Cpu.sigmoid_xent_forward(&x, &t, Some(-1)).unwrap();
        let (mut loss, mut valid) = (0.0f64, 0);
        for i in 0..50 {
            if i % 5 == 0 {
                continue;
            }
            let s = 1.0 / (1.0 + (-(x[i] as f64)).exp());
            loss -= t[i] as f64 * s.ln() + (1.0 - t[i] as f64) * (1.0 - s).ln();
            valid += 1;
        }
        assert_eq!(got.valid, valid);
        assert!((got.loss - loss).abs() < 1e-4 * loss, "{} vs {loss}", got.loss);
        let mut dx = vec![0.0; 50];
        Cpu.sigmoid_xent_backward(&x, &t, Some(-1), 0.5, &mut dx).unwrap();
        for i in 0..50 {
            let want = if i % 5 == 0 { 0.0 } else { ((1.0 / (1.0 + (-(x[i] as f64)).exp())) - t[i] as f64) * 0.5 };
            assert!((dx[i] as f64 - want).abs() < 1e-6);
        }
        let all = Cpu.sigmoid_xent_forward(&x, &t, None).unwrap();
        assert_eq!(all.valid, 50);
    }

    #[test]
    fn sums_do_not_depend_on_the_thread_count() {
        let a = axis(2, 3, 5 * CHUNK + 3);
        let prob = probs(a.count(), 1);
        let label = labels(a.positions(), 3);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| Cpu.softmax_loss_forward(&a, None, &prob, &label, None).unwrap().loss)
        };
        assert_eq!(run(1).to_bits(), run(3).to_bits());
    }
}
