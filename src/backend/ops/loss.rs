//! Softmax and the arithmetic of the loss and evaluation layers (SoftmaxWithLoss, InfogainLoss,
//! SigmoidCrossEntropyLoss, Accuracy, ArgMax).
//!
//! Tensors here are seen as `outer x classes x inner` around one axis ([`ClassAxis`]): element
//! `(i, c, j)` is at `(i * classes + c) * inner + j`, and a *position* `(i, j)` (one vector of
//! `classes` values) is numbered `i * inner + j`, which is also where its label sits in the
//! label blob.
//!
//! # Labels
//! Labels are `f32`, read as Caffe reads them: `static_cast<int>`, that is truncated toward
//! zero (`2.7` is class 2, `-0.5` is class 0). A position is *ignored* when its truncated label
//! equals `ignore_label`; otherwise its label is *valid* when the truncated value lies in
//! `0..classes`, and *bad* when it does not (or when the value is NaN or beyond the `i32`
//! range). Caffe reads out of bounds on a bad label; these primitives never do: they skip the
//! position and report the first bad one (lowest position number) as a [`BadLabel`], so that
//! the layer can fail with a message. A device implementation finds it with a min-reduction
//! over the positions (an atomic min of the position number, say) and reads the value there.
//!
//! # Reductions
//! Loss sums are reported in `f64`; the CPU backend sums in `f64` over fixed chunks of
//! positions, combined in order, so the result does not depend on the thread count. A device
//! backend may sum in `f32` with any fixed order (Caffe itself sums in `f32`).

use crate::backend::{Io, Storage};
use crate::Result;

/// A tensor seen around one axis: `outer` items of `classes` vectors of `inner` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassAxis {
    /// Product of the dimensions before the axis.
    pub outer: usize,
    /// The axis' own dimension (the number of classes).
    pub classes: usize,
    /// Product of the dimensions after the axis.
    pub inner: usize,
}

impl ClassAxis {
    /// The split of `shape` around `axis` (which must be in range).
    pub fn of(shape: &[usize], axis: usize) -> Self {
        ClassAxis {
            outer: shape[..axis].iter().product(),
            classes: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        }
    }
    /// Number of positions (`outer * inner`): the number of labels.
    pub fn positions(&self) -> usize {
        self.outer * self.inner
    }
    /// Number of elements (`outer * classes * inner`).
    pub fn count(&self) -> usize {
        self.outer * self.classes * self.inner
    }
}

/// The class a label value denotes, as Caffe's `static_cast<int>` reads it, or `None` when
/// the cast is undefined in C++ (NaN, or beyond the `i32` range).
#[inline]
pub fn label_class(value: f32) -> Option<i32> {
    // -2147483904.0 is the largest f32 below i32::MIN - 1: every f32 strictly between it and
    // 2147483648.0 truncates into the i32 range.
    if value > -2_147_483_904.0 && value < 2_147_483_648.0 { Some(value as i32) } else { None }
}

/// What a label means at one position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKind {
    /// A class in `0..classes`.
    Class(usize),
    /// The ignore label.
    Ignored,
    /// Neither: out of range, NaN or too large.
    Bad,
}

/// Classifies a label value (see the module documentation).
#[inline]
pub fn label_kind(value: f32, classes: usize, ignore_label: Option<i32>) -> LabelKind {
    match label_class(value) {
        Some(l) if ignore_label == Some(l) => LabelKind::Ignored,
        Some(l) if l >= 0 && (l as usize) < classes => LabelKind::Class(l as usize),
        _ => LabelKind::Bad,
    }
}

/// The first label that is neither a class nor the ignore label.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BadLabel {
    /// Its position number (its index in the label blob).
    pub position: usize,
    /// The label value found there.
    pub value: f32,
}

/// The result of a loss forward pass over positions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossSum {
    /// The loss summed over the valid positions (before normalisation).
    pub loss: f64,
    /// Number of valid positions (neither ignored nor bad).
    pub valid: usize,
    /// The first bad label, if any (always `None` for SigmoidCrossEntropyLoss, whose targets
    /// are not classes).
    pub bad: Option<BadLabel>,
}

/// What ArgMax writes for each of its `top_k` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgMaxOutput {
    /// The class index, at `(i, k, j)` of an `outer x top_k x inner` output.
    Index,
    /// The value, at `(i, k, j)` of an `outer x top_k x inner` output.
    Value,
    /// Indices then values: `y[2 i top_k + k]` is the index and `y[(2 i + 1) top_k + k]` the
    /// value of pick `k` of item `i`. Only with `inner == 1` (Caffe's ArgMax without `axis`).
    IndexAndValue,
}

/// Softmax and loss primitives. None of them allocates device memory beyond scratch; every
/// output is overwritten, never accumulated.
pub trait Losses: Storage {
    /// Softmax over the classes of every position, as Caffe computes it: the maximum over the
    /// classes is subtracted, `exp` taken, and each value divided by the sum over the classes
    /// of the exponentials (summed in class order). `io` may be in place.
    fn softmax_forward(&self, axis: &ClassAxis, io: Io<'_, Self::Buf>) -> Result<()>;

    /// Softmax backward from the top data `y`: `dx = (dy - sum_c dy_c y_c) y` per position.
    /// `diff` maps `dy` to `dx`, in place or not.
    fn softmax_backward(&self, axis: &ClassAxis, y: &Self::Buf, diff: Io<'_, Self::Buf>) -> Result<()>;

    /// SoftmaxWithLoss forward from probabilities `prob` (`axis.count()` values) and `label`
    /// (`axis.positions()` values): the sum over valid positions of
    /// `-w[l] ln(max(prob[i, l, j], FLT_MIN))`, where `l` is the position's class and `w` the
    /// optional class weights (`axis.classes` values; SegNet's `class_weighting`), 1 without.
    fn softmax_loss_forward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &Self::Buf,
        label: &Self::Buf,
        class_weights: Option<&Self::Buf>,
    ) -> Result<LossSum>;

    /// SoftmaxWithLoss backward: overwrites `dx` (`axis.count()` values) with
    /// `((prob[i, c, j] - [c == l]) * w[l]) * scale` at every valid position and 0 at ignored
    /// and bad ones (`w` as in [`Losses::softmax_loss_forward`]; `scale` is the loss weight
    /// over the normaliser).
    #[allow(clippy::too_many_arguments)]
    fn softmax_loss_backward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &Self::Buf,
        label: &Self::Buf,
        class_weights: Option<&Self::Buf>,
        scale: f32,
        dx: &mut Self::Buf,
    ) -> Result<()>;

    /// InfogainLoss forward: the sum over valid positions of
    /// `-sum_c H[l, c] ln(max(prob[i, c, j], 1e-20))`, with `h` the row-major
    /// `classes x classes` infogain matrix.
    fn infogain_loss_forward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &Self::Buf,
        label: &Self::Buf,
        h: &Self::Buf,
    ) -> Result<LossSum>;

    /// InfogainLoss backward: overwrites `dx` with
    /// `(prob[i, c, j] * rowsum(H)[l] - H[l, c]) * scale` at valid positions and 0 at ignored
    /// and bad ones; `rowsum(H)[l]` is the row's sum in column order.
    #[allow(clippy::too_many_arguments)]
    fn infogain_loss_backward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &Self::Buf,
        label: &Self::Buf,
        h: &Self::Buf,
        scale: f32,
        dx: &mut Self::Buf,
    ) -> Result<()>;

    /// SigmoidCrossEntropyLoss forward over equal-length `x` (scores) and `target`: the sum over
    /// elements whose truncated target is not `ignore_label` of Caffe's stable form
    /// `-(x (t - [x >= 0]) - ln(1 + exp(x - 2 x [x >= 0])))`, and their number.
    fn sigmoid_xent_forward(&self, x: &Self::Buf, target: &Self::Buf, ignore_label: Option<i32>) -> Result<LossSum>;

    /// SigmoidCrossEntropyLoss backward: overwrites `dx` with `(sigmoid(x) - t) * scale`, 0
    /// where the target is ignored; `sigmoid(x) = 0.5 tanh(0.5 x) + 0.5` (Caffe's, evaluated in
    /// double and rounded to `f32`).
    fn sigmoid_xent_backward(
        &self,
        x: &Self::Buf,
        target: &Self::Buf,
        ignore_label: Option<i32>,
        scale: f32,
        dx: &mut Self::Buf,
    ) -> Result<()>;

    /// Accuracy: a valid position is correct when fewer than `top_k` classes score `>=` the
    /// score of its own class, not counting itself (Caffe's test, ties counting against).
    /// Writes `correct / valid` (0 when no position is valid) to `accuracy[0]` and, when
    /// `per_class` is given (`axis.classes` values), `correct_c / valid_c` for each class
    /// (0 where a class has no valid position). Returns the first bad label; the outputs are
    /// then unspecified.
    #[allow(clippy::too_many_arguments)]
    fn accuracy(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        top_k: usize,
        x: &Self::Buf,
        label: &Self::Buf,
        accuracy: &mut Self::Buf,
        per_class: Option<&mut Self::Buf>,
    ) -> Result<Option<BadLabel>>;

    /// ArgMax: for every position, the `top_k` (`1..=classes`) largest values, in decreasing
    /// order of value and, among equal values, of decreasing class index (Caffe's
    /// `std::greater` on `(value, index)` pairs); values compare by IEEE total order
    /// (`f32::total_cmp`, so a NaN of positive sign ranks first). Writes indices (as `f32`) or
    /// values or both, laid out as [`ArgMaxOutput`] says. Overwrites `y`.
    fn argmax(&self, axis: &ClassAxis, top_k: usize, output: ArgMaxOutput, x: &Self::Buf, y: &mut Self::Buf)
        -> Result<()>;
}
