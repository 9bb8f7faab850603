//! HingeLoss and MultinomialLogisticLoss (BVLC Caffe): losses of a score or probability per
//! class, `(N, K)` (or any shape whose first axis is N; K is the rest), against one integer
//! label per row.
//!
//! - HingeLoss: the one-vs-all hinge `sum_i sum_k max(0, 1 - delta(l_i = k) s_ik)` with
//!   `delta = 1` for the label and `-1` otherwise, divided by N (`norm: L1`, the default), or the
//!   sum of the squared terms over N (`norm: L2`).
//! - MultinomialLogisticLoss: `-1/N sum_i ln(max(p_i,l_i, 1e-20))` of given probabilities.
//!
//! Both are computed on the host, as Caffe computes them (its GPU build runs them on the CPU
//! too): the terms are few. A label that is not a class in `0..K` is an error naming it, where
//! Caffe reads out of bounds. No gradient flows to the labels.

use super::loss::{bad_label, check_first_dims, loss_weight, no_label_gradient};
use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Backend, BadLabel};
use crate::proto::hinge_loss_parameter::Norm;
use crate::proto::LayerParameter;
use crate::{Error, Result};

/// Caffe's `kLOG_THRESHOLD`: the least probability whose logarithm is taken.
const LOG_THRESHOLD: f32 = 1e-20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hinge { l2: bool },
    MultinomialLogistic,
}

struct LabelLoss {
    kind: Kind,
    num: usize,
    dim: usize,
    label_shape: Vec<usize>,
    /// From the last forward: for HingeLoss, the margins `max(0, 1 + delta s)` with the label's
    /// sign restored (Caffe's bottom diff before scaling); for MultinomialLogisticLoss, the
    /// clamped probability of each row's label.
    kept: Vec<f32>,
    labels: Vec<usize>,
}

pub(super) fn create_hinge<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let l2 = lp.hinge_loss_param.as_ref().is_some_and(|p| p.norm() == Norm::L2);
    Ok(Box::new(LabelLoss::new(Kind::Hinge { l2 })))
}

pub(super) fn create_multinomial<B: Backend>(_: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(LabelLoss::new(Kind::MultinomialLogistic)))
}

impl LabelLoss {
    fn new(kind: Kind) -> Self {
        LabelLoss { kind, num: 0, dim: 0, label_shape: Vec::new(), kept: Vec::new(), labels: Vec::new() }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Hinge { .. } => "HingeLoss",
            Kind::MultinomialLogistic => "MultinomialLogisticLoss",
        }
    }

    /// Each row's label as a class index, checked.
    fn read_labels(&self, values: &[f32]) -> Result<Vec<usize>> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = v as i32;
                usize::try_from(c)
                    .ok()
                    .filter(|&c| c < self.dim)
                    .ok_or_else(|| bad_label(BadLabel { position: i, value: v }, &self.label_shape, self.dim, None))
            })
            .collect()
    }
}

impl<B: Backend> Layer<B> for LabelLoss {
    fn type_name(&self) -> &'static str {
        self.name()
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
        bottom == 0
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (data, label) = (bottoms[0], bottoms[1]);
        check_first_dims(data, label)?;
        let per_row: usize = label[1..].iter().product();
        if per_row != 1 {
            return Err(Error::Shape(format!("the label bottom must hold one label per row, given shape {label:?}")));
        }
        self.num = data[0];
        self.dim = data[1..].iter().product();
        self.label_shape = label.to_vec();
        Ok(vec![vec![]])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let (num, dim) = (self.num, self.dim);
        let mut data = vec![0.0; num * dim];
        be.download(&parts.bottoms[0].data, 0, &mut data)?;
        let mut raw = vec![0.0; num];
        be.download(&parts.bottoms[1].data, 0, &mut raw)?;
        self.labels = self.read_labels(&raw)?;
        let loss = match self.kind {
            Kind::Hinge { l2 } => {
                for (row, &l) in data.chunks_exact_mut(dim.max(1)).zip(&self.labels) {
                    row[l] = -row[l];
                }
                for v in &mut data {
                    *v = (1.0 + *v).max(0.0);
                }
                let loss = if l2 { data.iter().map(|v| v * v).sum::<f32>() } else { data.iter().sum::<f32>() };
                for (row, &l) in data.chunks_exact_mut(dim.max(1)).zip(&self.labels) {
                    row[l] = -row[l];
                }
                self.kept = data;
                loss / num as f32
            }
            Kind::MultinomialLogistic => {
                self.kept = self.labels.iter().enumerate().map(|(i, &l)| data[i * dim + l].max(LOG_THRESHOLD)).collect();
                let loss: f32 = self.kept.iter().map(|p| -p.ln()).sum();
                loss / num as f32
            }
        };
        be.upload(&[loss], &mut parts.tops[0].data, 0)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[1] {
            return Err(no_label_gradient(self.name()));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let known = ctx.top_diff_value(0);
        let mut parts = ctx.parts_back()?;
        let weight = loss_weight(be, known, &parts.tops[0].diff)?;
        let num = self.num as f32;
        let grad: Vec<f32> = match self.kind {
            Kind::Hinge { l2: false } => {
                let scale = weight / num;
                self.kept.iter().map(|&v| if v > 0.0 { scale } else if v < 0.0 { -scale } else { 0.0 }).collect()
            }
            Kind::Hinge { l2: true } => {
                let scale = weight * 2.0 / num;
                self.kept.iter().map(|&v| v * scale).collect()
            }
            Kind::MultinomialLogistic => {
                let scale = -weight / num;
                let mut g = vec![0.0; self.num * self.dim];
                for (i, (&l, &p)) in self.labels.iter().zip(&self.kept).enumerate() {
                    g[i * self.dim + l] = scale / p;
                }
                g
            }
        };
        be.upload(&grad, &mut parts.bottoms[0].diff, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::loss::testing::{build, forward_error};
    use crate::backend::cpu::Cpu;

    fn net(kind: &str, param: &str) -> String {
        format!(
            r#"
            layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
            layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ dim: 2 }} }} }}
            layer {{ name: "loss" type: "{kind}" bottom: "x" bottom: "label" top: "loss" {param} }}"#
        )
    }

    fn loss(kind: &str, param: &str, x: &[f32], label: &[f32]) -> f32 {
        let mut n = build(&net(kind, param)).unwrap();
        let be = Cpu::new();
        n.blob_mut("x").unwrap().set_data(&be, x).unwrap();
        n.blob_mut("label").unwrap().set_data(&be, label).unwrap();
        n.forward().unwrap()
    }

    #[test]
    fn hinge_loss_follows_caffes_formula() {
        // Row 0, label 0: margins max(0, 1 + [-2, -1, 0.5]) = [0, 0, 1.5]; row 1, label 2:
        // max(0, 1 + [0.5, 0.25, 3]) = [1.5, 1.25, 4].
        let x = [2.0, -1.0, 0.5, 0.5, 0.25, -3.0];
        assert_eq!(loss("HingeLoss", "", &x, &[0.0, 2.0]), (1.5 + 1.5 + 1.25 + 4.0) / 2.0);
        assert_eq!(loss("HingeLoss", "hinge_loss_param { norm: L2 }", &x, &[0.0, 2.9]), (2.25 + 2.25 + 1.5625 + 16.0) / 2.0);
    }

    #[test]
    fn multinomial_logistic_loss_clamps_at_1e_20() {
        let got = loss("MultinomialLogisticLoss", "", &[0.5, 0.25, 0.25, 0.0, 1.0, 0.0], &[0.0, 0.0]);
        let want = (-(0.5f32.ln()) - 1e-20f32.ln()) / 2.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn labels_outside_the_classes_are_errors() {
        for kind in ["HingeLoss", "MultinomialLogisticLoss"] {
            let e = forward_error(&net(kind, ""), &[("x", vec![0.5; 6]), ("label", vec![1.0, 3.0])]);
            assert!(e.contains("label 3 at [1]") && e.contains("not a class in 0..3"), "{kind}: {e}");
            let e = forward_error(&net(kind, ""), &[("x", vec![0.5; 6]), ("label", vec![-1.0, 0.0])]);
            assert!(e.contains("label -1 at [0]"), "{kind}: {e}");
        }
    }
}
