//! SoftmaxWithLoss: softmax over `softmax_param.axis`, then the mean (as `loss_param`
//! normalises it) of `-ln(max(p[label], FLT_MIN))` over the positions whose label is not
//! `ignore_label`; an optional second top receives the probabilities.
//!
//! SegNet's class weighting: with `loss_param.weight_by_label_freqs: true`, each position's
//! term and gradient are multiplied by `class_weighting[label]` (one weight per class). This
//! is the SegNet fork's final behaviour: the flag switches the weighting on and the weights
//! come from `class_weighting` (the flag's name is from an earlier version of the fork that
//! weighted by inverse label counts in the batch); `class_weighting` without the flag is
//! ignored, as in the fork. The normaliser stays the number of positions (VALID), not a sum
//! of weights.
//!
//! Caffe quirk kept: the gradient that reaches the probability top is ignored (Caffe's
//! backward reads only the loss top's diff).

use super::loss::{SoftmaxProbs, no_label_gradient};
use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct SoftmaxWithLoss<B: Backend> {
    probs: SoftmaxProbs<B>,
    /// SegNet's per-class weights, when switched on.
    class_weights: Option<Vec<f32>>,
    class_weights_buf: Option<B::Buf>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.loss_param.as_ref();
    let class_weights = match p {
        Some(p) if p.weight_by_label_freqs() => {
            if p.class_weighting.is_empty() {
                return Err(Error::Config(
                    "loss_param.weight_by_label_freqs is set but no loss_param.class_weighting is given \
                     (give one weight per class)"
                        .into(),
                ));
            }
            Some(p.class_weighting.clone())
        }
        _ => None,
    };
    let axis = lp.softmax_param.as_ref().map(|s| s.axis()).unwrap_or(1);
    Ok(Box::new(SoftmaxWithLoss::<B> {
        probs: SoftmaxProbs::new(lp, axis),
        class_weights,
        class_weights_buf: None,
    }))
}

impl<B: Backend> Layer<B> for SoftmaxWithLoss<B> {
    fn type_name(&self) -> &'static str {
        "SoftmaxWithLoss"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(2)
    }
    fn tops(&self) -> Arity {
        Arity::range(1, 2)
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn host_loss(&self) -> Option<f32> {
        self.probs.host_loss()
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    /// Backward reads the labels and the probabilities (kept, or the top that shows them),
    /// not the scores.
    fn backward_reads_bottom(&self, bottom: usize) -> bool {
        bottom != 0
    }
    fn backward_reads_top(&self, top: usize) -> bool {
        top == 1
    }

    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (data, label) = (bottoms[0], bottoms[1]);
        let axis = self.probs.class_axis(data, label)?;
        if let Some(w) = &self.class_weights {
            if w.len() != axis.classes {
                return Err(Error::Config(format!(
                    "loss_param.class_weighting has {} values for {} classes (one weight per class)",
                    w.len(),
                    axis.classes
                )));
            }
            if self.class_weights_buf.is_none() {
                self.class_weights_buf = Some(be.alloc_from(w)?);
            }
        }
        self.probs.reshape(be, axis, data, label)
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let weights = self.class_weights_buf.as_ref();
        self.probs.forward(be, ctx, |axis, ignore_label, prob, bottoms| {
            be.softmax_loss_forward(axis, ignore_label, prob, &bottoms[1].data, weights)
        })
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[1] {
            return Err(no_label_gradient("SoftmaxWithLoss"));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let weights = self.class_weights_buf.as_ref();
        self.probs.backward(be, ctx, |axis, ignore_label, prob, scale, diff, rest| {
            be.softmax_loss_backward(axis, ignore_label, prob, &rest[0].data, weights, scale, diff)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::loss::testing::{build, build_error, forward_error};
    use crate::backend::cpu::Cpu;

    fn net(loss: &str, label_shape: &str) -> String {
        format!(
            r#"force_backward: true
            layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 dim: 2 }} }} }}
            layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ {label_shape} }} }} }}
            layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "loss" {loss} }}"#
        )
    }

    #[test]
    fn label_count_and_first_dimension_are_checked() {
        assert_eq!(
            build_error(&net("", "dim: 2 dim: 3")),
            "layer `loss` (type SoftmaxWithLoss): number of labels must match number of predictions: data of shape \
             [2, 3, 2] has 4 positions around axis 1 (the product of the other dimensions), but the label blob [2, 3] \
             holds 6 values"
        );
        assert_eq!(
            build_error(&net("", "dim: 4")),
            "layer `loss` (type SoftmaxWithLoss): the data and label should have the same first dimension, given \
             shapes [2, 3, 2] and [4]"
        );
        assert!(build_error(&net("softmax_param { axis: 3 }", "dim: 2 dim: 2")).contains("axis 3 out of range"));
    }

    #[test]
    fn class_weighting_must_fit_the_classes() {
        assert_eq!(
            build_error(&net("loss_param { weight_by_label_freqs: true class_weighting: 1 class_weighting: 2 }", "dim: 2 dim: 2")),
            "layer `loss` (type SoftmaxWithLoss): loss_param.class_weighting has 2 values for 3 classes (one weight per class)"
        );
        assert!(build_error(&net("loss_param { weight_by_label_freqs: true }", "dim: 2 dim: 2"))
            .contains("weight_by_label_freqs is set but no loss_param.class_weighting is given"));
        // Without the switch the weights are ignored, as in the SegNet fork.
        build(&net("loss_param { class_weighting: 1 }", "dim: 2 dim: 2")).unwrap();
    }

    #[test]
    fn a_label_out_of_range_is_an_error_naming_it() {
        let x = vec![0.0; 12];
        assert_eq!(
            forward_error(&net("loss_param { ignore_label: 255 }", "dim: 2 dim: 2"), &[("x", x.clone()), ("label", vec![0.0, 1.0, 2.0, 3.0])]),
            "layer `loss` (type SoftmaxWithLoss): label 3 at [1, 1] of the label blob (shape [2, 2]) is not a class in \
             0..3 nor the ignore_label 255"
        );
        assert!(forward_error(&net("", "dim: 2 dim: 2"), &[("x", x), ("label", vec![0.0, -1.0, 2.0, 1.0])])
            .contains("label -1 at [0, 1]"));
    }

    #[test]
    fn no_gradient_to_the_labels() {
        let text = net(r#"propagate_down: true propagate_down: true"#, "dim: 2 dim: 2");
        let mut n = build(&text).unwrap();
        n.blob_mut("label").unwrap().set_data(&Cpu::new(), &[0.0, 1.0, 2.0, 0.0]).unwrap();
        n.forward().unwrap();
        assert_eq!(
            n.backward().unwrap_err().to_string(),
            "layer `loss` (type SoftmaxWithLoss): SoftmaxWithLoss cannot backpropagate to its label input (bottom 1)"
        );
    }

    #[test]
    fn all_ignored_gives_zero_loss_and_gradient() {
        let mut n = build(&net("loss_param { ignore_label: 1 }", "dim: 2 dim: 2")).unwrap();
        let be = Cpu::new();
        n.blob_mut("x").unwrap().set_data(&be, &[0.5; 12]).unwrap();
        n.blob_mut("label").unwrap().set_data(&be, &[1.0; 4]).unwrap();
        assert_eq!(n.forward().unwrap(), 0.0);
        n.backward().unwrap();
        assert!(n.blob("x").unwrap().diff_to_vec(&be).unwrap().iter().all(|&v| v == 0.0));
    }
}
