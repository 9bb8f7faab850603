//! What Caffe's loss layers share: `loss_param` normalisation, the label-count checks of
//! `LossLayer::Reshape`, the loss weight read from the top's diff, the error for a label
//! that is not a class, and the softmax probabilities of SoftmaxWithLoss and InfogainLoss.

use super::Ctx;
use crate::backend::{Backend, BadLabel, ClassAxis, Io, LossSum};
use crate::backend::strides_of;
use crate::blob::{Blob, canonical_axis};
use crate::proto::loss_parameter::NormalizationMode;
use crate::proto::{LayerParameter, LossParameter};
use crate::{Error, Result};

/// The normalisation a loss layer uses: `normalization` when set; else the legacy `normalize`
/// when set (true: VALID, false: BATCH_SIZE); else `unset` (VALID for SoftmaxWithLoss, the
/// field's default; BATCH_SIZE for SigmoidCrossEntropyLoss).
pub(super) fn normalization(p: Option<&LossParameter>, unset: NormalizationMode) -> NormalizationMode {
    match p {
        Some(p) if p.normalization.is_some() => p.normalization(),
        Some(LossParameter { normalize: Some(true), .. }) => NormalizationMode::Valid,
        Some(LossParameter { normalize: Some(false), .. }) => NormalizationMode::BatchSize,
        _ => unset,
    }
}

/// Caffe's `get_normalizer`: what the summed loss is divided by, never less than 1 (so that a
/// batch whose labels are all ignored gives 0, not NaN).
pub(super) fn normalizer(mode: NormalizationMode, outer: usize, inner: usize, valid: usize) -> f32 {
    let n = match mode {
        NormalizationMode::Full => (outer * inner) as f32,
        NormalizationMode::Valid => valid as f32,
        NormalizationMode::BatchSize => outer as f32,
        NormalizationMode::None => 1.0,
    };
    n.max(1.0)
}

/// `LossLayer::Reshape`'s check: data and labels have the same first dimension.
pub(super) fn check_first_dims(data: &[usize], label: &[usize]) -> Result<()> {
    if data.is_empty() || data.first() != label.first() {
        return Err(Error::Shape(format!(
            "the data and label should have the same first dimension, given shapes {data:?} and {label:?}"
        )));
    }
    Ok(())
}

/// The label-count check of the softmax-style losses and Accuracy: one label per position.
pub(super) fn check_label_count(axis: &ClassAxis, axis_index: usize, data: &[usize], label: &[usize]) -> Result<()> {
    let labels: usize = label.iter().product();
    if labels != axis.positions() {
        return Err(Error::Shape(format!(
            "number of labels must match number of predictions: data of shape {data:?} has {} positions around \
             axis {axis_index} (the product of the other dimensions), but the label blob {label:?} holds {labels} values",
            axis.positions()
        )));
    }
    Ok(())
}

/// The loss weight: the diff of the (scalar) loss top, which the net set: `known` where the
/// net knows it without reading it (see `Ctx::top_diff_value`), else read from the buffer.
pub(super) fn loss_weight<B: Backend>(be: &B, known: Option<f32>, top_diff: &B::Buf) -> Result<f32> {
    if let Some(w) = known {
        return Ok(w);
    }
    let mut w = [0.0f32];
    be.download(top_diff, 0, &mut w)?;
    Ok(w[0])
}

/// The error for a label that is neither a class in `0..classes` nor the ignore label, naming
/// its value and its index in the label blob.
pub(super) fn bad_label(bad: BadLabel, label_shape: &[usize], classes: usize, ignore_label: Option<i32>) -> Error {
    let mut rest = bad.position;
    let index: Vec<usize> = strides_of(label_shape)
        .into_iter()
        .map(|s| {
            let i = rest / s.max(1);
            rest %= s.max(1);
            i
        })
        .collect();
    let ignore = match ignore_label {
        Some(l) => format!(" nor the ignore_label {l}"),
        None => String::new(),
    };
    Error::Shape(format!(
        "label {} at {index:?} of the label blob (shape {label_shape:?}) is not a class in 0..{classes}{ignore}",
        bad.value
    ))
}

/// The error for a backward request to the label bottom.
pub(super) fn no_label_gradient(kind: &str) -> Error {
    Error::Config(format!("{kind} cannot backpropagate to its label input (bottom 1)"))
}

/// What the losses on a softmax (SoftmaxWithLoss, InfogainLoss) share: the class axis and the
/// label checks, the probabilities (in the optional second top, else in a buffer of the
/// layer's own), and the normaliser that forward counts and backward reuses.
pub(super) struct SoftmaxProbs<B: Backend> {
    axis_param: i32,
    ignore_label: Option<i32>,
    normalization: NormalizationMode,
    /// Whether the probabilities go to a second top.
    prob_top: bool,
    /// The probabilities when there is no second top to hold them.
    prob: Option<B::Buf>,
    axis: ClassAxis,
    label_shape: Vec<usize>,
    /// Valid positions counted by the last forward, for backward's normaliser.
    valid: usize,
    /// The loss the last forward wrote to the loss top.
    loss: Option<f32>,
}

impl<B: Backend> SoftmaxProbs<B> {
    /// The softmax over `axis_param`, with `loss_param.ignore_label` and its normalization
    /// (VALID when unset, as both softmax losses default).
    pub fn new(lp: &LayerParameter, axis_param: i32) -> Self {
        SoftmaxProbs {
            axis_param,
            ignore_label: lp.loss_param.as_ref().and_then(|p| p.ignore_label),
            normalization: normalization(lp.loss_param.as_ref(), NormalizationMode::Valid),
            prob_top: lp.top.len() > 1,
            prob: None,
            axis: ClassAxis { outer: 0, classes: 0, inner: 0 },
            label_shape: Vec::new(),
            valid: 0,
            loss: None,
        }
    }

    /// Checks the data and label shapes (`LossLayer::Reshape`, one label per position) and
    /// gives the class axis of `data`; `reshape` keeps it once the layer's own checks pass.
    pub fn class_axis(&self, data: &[usize], label: &[usize]) -> Result<ClassAxis> {
        check_first_dims(data, label)?;
        let axis_index = canonical_axis(self.axis_param, data.len())?;
        let axis = ClassAxis::of(data, axis_index);
        check_label_count(&axis, axis_index, data, label)?;
        Ok(axis)
    }

    /// Keeps `axis` and the label shape, makes room for the probabilities where there is no
    /// second top, and gives the tops' shapes (a scalar loss, then the probabilities).
    pub fn reshape(&mut self, be: &B, axis: ClassAxis, data: &[usize], label: &[usize]) -> Result<Vec<Vec<usize>>> {
        self.axis = axis;
        self.label_shape = label.to_vec();
        if self.prob_top {
            return Ok(vec![vec![], data.to_vec()]);
        }
        if self.prob.as_ref().map(|p| be.len(p)) != Some(axis.count()) {
            self.prob = Some(be.alloc(axis.count())?);
        }
        Ok(vec![vec![]])
    }

    /// The softmax of bottom 0 into the probabilities, then `loss(axis, ignore_label,
    /// probabilities, bottoms)` (bottom 1 holds the labels), normalised into the loss top.
    pub fn forward(
        &mut self,
        be: &B,
        ctx: &mut Ctx<'_, B>,
        loss: impl FnOnce(&ClassAxis, Option<i32>, &B::Buf, &[&Blob<B>]) -> Result<LossSum>,
    ) -> Result<()> {
        let mut parts = ctx.parts()?;
        let (loss_top, prob_top) = parts.tops.split_at_mut(1);
        let prob = match prob_top.first_mut() {
            Some(t) => &mut t.data,
            None => self.prob.as_mut().ok_or_else(|| Error::Internal("forward before reshape".into()))?,
        };
        be.softmax_forward(&self.axis, Io::Pair(&parts.bottoms[0].data, prob))?;
        self.loss = None;
        let sum = loss(&self.axis, self.ignore_label, prob, &parts.bottoms)?;
        if let Some(bad) = sum.bad {
            return Err(bad_label(bad, &self.label_shape, self.axis.classes, self.ignore_label));
        }
        self.valid = sum.valid;
        let loss = sum.loss as f32 / normalizer(self.normalization, self.axis.outer, self.axis.inner, sum.valid);
        self.loss = Some(loss);
        be.upload(&[loss], &mut loss_top[0].data, 0)
    }

    /// The loss the last forward wrote (see `Layer::host_loss`).
    pub fn host_loss(&self) -> Option<f32> {
        self.loss
    }

    /// Bottom 0's gradient: `grad(axis, ignore_label, probabilities, scale, bottom 0's diff,
    /// the other bottoms)`, where `scale` is the loss weight over forward's normaliser.
    pub fn backward(
        &self,
        be: &B,
        ctx: &mut Ctx<'_, B>,
        grad: impl FnOnce(&ClassAxis, Option<i32>, &B::Buf, f32, &mut B::Buf, &[&mut Blob<B>]) -> Result<()>,
    ) -> Result<()> {
        let known = ctx.top_diff_value(0);
        let mut parts = ctx.parts_back()?;
        let scale = loss_weight(be, known, &parts.tops[0].diff)?
            / normalizer(self.normalization, self.axis.outer, self.axis.inner, self.valid);
        let prob = match parts.tops.get(1) {
            Some(t) => &t.data,
            None => self.prob.as_ref().ok_or_else(|| Error::Internal("backward before reshape".into()))?,
        };
        let (data, rest) = parts.bottoms.split_at_mut(1);
        grad(&self.axis, self.ignore_label, prob, scale, &mut data[0].diff, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_modes_follow_caffe() {
        let p = |normalization: Option<NormalizationMode>, normalize: Option<bool>| LossParameter {
            normalization: normalization.map(|m| m as i32),
            normalize,
            ..Default::default()
        };
        use NormalizationMode as M;
        assert_eq!(normalization(None, M::Valid), M::Valid);
        assert_eq!(normalization(None, M::BatchSize), M::BatchSize);
        assert_eq!(normalization(Some(&p(None, None)), M::BatchSize), M::BatchSize);
        assert_eq!(normalization(Some(&p(None, Some(true))), M::BatchSize), M::Valid);
        assert_eq!(normalization(Some(&p(None, Some(false))), M::Valid), M::BatchSize);
        assert_eq!(normalization(Some(&p(Some(M::Full), Some(false))), M::Valid), M::Full);
        assert_eq!(normalizer(M::Full, 2, 3, 4), 6.0);
        assert_eq!(normalizer(M::Valid, 2, 3, 4), 4.0);
        assert_eq!(normalizer(M::Valid, 2, 3, 0), 1.0);
        assert_eq!(normalizer(M::BatchSize, 2, 3, 4), 2.0);
        assert_eq!(normalizer(M::None, 2, 3, 4), 1.0);
    }

    #[test]
    fn bad_label_names_value_and_index() {
        let e = bad_label(BadLabel { position: 7, value: 5.0 }, &[2, 1, 2, 3], 3, Some(255));
        assert_eq!(
            e.to_string(),
            "label 5 at [1, 0, 0, 1] of the label blob (shape [2, 1, 2, 3]) is not a class in 0..3 nor the ignore_label 255"
        );
    }
}

/// Builds small nets for the error tests of this family's layers.
#[cfg(test)]
pub(super) mod testing {
    use crate::backend::cpu::Cpu;
    use crate::net::Net;
    use crate::proto::{NetParameter, NetState, Phase};
    use crate::Result;

    /// Builds `text` in the TRAIN phase.
    pub fn build(text: &str) -> Result<Net<Cpu>> {
        let mut p: NetParameter = crate::prototxt::parse(text, "test")?;
        p.state = Some(NetState { phase: Some(Phase::Train as i32), ..Default::default() });
        Net::new(Cpu::new(), &p, 1)
    }

    /// The message of building `text`'s error (panics when it builds).
    pub fn build_error(text: &str) -> String {
        match build(text) {
            Ok(_) => panic!("the net built"),
            Err(e) => e.to_string(),
        }
    }

    /// Builds `text`, sets `inputs` and runs forward, returning its error message.
    pub fn forward_error(text: &str, inputs: &[(&str, Vec<f32>)]) -> String {
        let mut net = build(text).unwrap_or_else(|e| panic!("{e}"));
        let be = Cpu::new();
        for (name, values) in inputs {
            net.blob_mut(name).expect("input").set_data(&be, values).unwrap();
        }
        match net.forward() {
            Ok(_) => panic!("forward succeeded"),
            Err(e) => e.to_string(),
        }
    }
}

