//! SigmoidCrossEntropyLoss: the cross-entropy of `sigmoid(x)` against targets in `[0, 1]`, in
//! Caffe's overflow-free form, skipping elements whose target (truncated) is
//! `loss_param.ignore_label`, normalised as `loss_param` says (BATCH_SIZE when neither
//! `normalization` nor `normalize` is set, as in Caffe master).

use super::loss::{check_first_dims, loss_weight, no_label_gradient, normalization, normalizer};
use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::proto::loss_parameter::NormalizationMode;
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct SigmoidCrossEntropyLoss {
    ignore_label: Option<i32>,
    normalization: NormalizationMode,
    outer: usize,
    inner: usize,
    /// The normaliser of the last forward, reused by backward (Caffe's `normalizer_`).
    normalizer: f32,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.loss_param.as_ref();
    Ok(Box::new(SigmoidCrossEntropyLoss {
        ignore_label: p.and_then(|p| p.ignore_label),
        normalization: normalization(p, NormalizationMode::BatchSize),
        outer: 0,
        inner: 0,
        normalizer: 1.0,
    }))
}

impl<B: Backend> Layer<B> for SigmoidCrossEntropyLoss {
    fn type_name(&self) -> &'static str {
        "SigmoidCrossEntropyLoss"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(2)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }

    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (data, target) = (bottoms[0], bottoms[1]);
        check_first_dims(data, target)?;
        let (n, t): (usize, usize) = (data.iter().product(), target.iter().product());
        if n != t {
            return Err(Error::Shape(format!(
                "the scores and targets must have the same count, given shapes {data:?} ({n}) and {target:?} ({t})"
            )));
        }
        self.outer = data[0];
        self.inner = data[1..].iter().product();
        Ok(vec![vec![]])
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let sum = be.sigmoid_xent_forward(&parts.bottoms[0].data, &parts.bottoms[1].data, self.ignore_label)?;
        self.normalizer = normalizer(self.normalization, self.outer, self.inner, sum.valid);
        be.upload(&[sum.loss as f32 / self.normalizer], &mut parts.tops[0].data, 0)
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[1] {
            return Err(no_label_gradient("SigmoidCrossEntropyLoss"));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let known = ctx.top_diff_value(0);
        let mut parts = ctx.parts_back()?;
        let scale = loss_weight(be, known, &parts.tops[0].diff)? / self.normalizer;
        let (data, target) = parts.bottoms.split_at_mut(1);
        let (x, dx) = data[0].data_and_diff_mut();
        be.sigmoid_xent_backward(x, &target[0].data, self.ignore_label, scale, dx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::loss::testing::build_error;

    #[test]
    fn scores_and_targets_must_have_the_same_count() {
        let text = r#"
            layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
            layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 2 dim: 4 } } }
            layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "loss" }"#;
        assert_eq!(
            build_error(text),
            "layer `loss` (type SigmoidCrossEntropyLoss): the scores and targets must have the same count, given \
             shapes [2, 3] (6) and [2, 4] (8)"
        );
    }
}
