//! Accuracy: the fraction of positions whose label is among the `top_k` best-scoring classes
//! along `accuracy_param.axis` (ties count against), skipping `accuracy_param.ignore_label`;
//! an optional second top receives the accuracy of each class. No backward.

use super::loss::{bad_label, check_label_count};
use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Backend, ClassAxis};
use crate::blob::canonical_axis;
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct Accuracy {
    top_k: usize,
    axis_param: i32,
    ignore_label: Option<i32>,
    per_class: bool,
    axis: ClassAxis,
    label_shape: Vec<usize>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.accuracy_param.unwrap_or_default();
    Ok(Box::new(Accuracy {
        top_k: p.top_k() as usize,
        axis_param: p.axis(),
        ignore_label: p.ignore_label,
        per_class: lp.top.len() > 1,
        axis: ClassAxis { outer: 0, classes: 0, inner: 0 },
        label_shape: Vec::new(),
    }))
}

impl<B: Backend> Layer<B> for Accuracy {
    fn type_name(&self) -> &'static str {
        "Accuracy"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(2)
    }
    fn tops(&self) -> Arity {
        Arity::range(1, 2)
    }
    fn allow_force_backward(&self, _: usize) -> bool {
        false
    }
    fn has_backward(&self) -> bool {
        false
    }

    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (data, label) = (bottoms[0], bottoms[1]);
        let axis_index = canonical_axis(self.axis_param, data.len())?;
        let axis = ClassAxis::of(data, axis_index);
        check_label_count(&axis, axis_index, data, label)?;
        if self.top_k > axis.classes {
            return Err(Error::Config(format!(
                "accuracy_param.top_k ({}) must be at most the number of classes ({})",
                self.top_k, axis.classes
            )));
        }
        self.axis = axis;
        self.label_shape = label.to_vec();
        let mut tops = vec![vec![]];
        if self.per_class {
            tops.push(vec![axis.classes]);
        }
        Ok(tops)
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let (acc, per_class) = parts.tops.split_at_mut(1);
        let bad = be.accuracy(
            &self.axis,
            self.ignore_label,
            self.top_k,
            &parts.bottoms[0].data,
            &parts.bottoms[1].data,
            &mut acc[0].data,
            per_class.first_mut().map(|t| &mut t.data),
        )?;
        match bad {
            Some(bad) => Err(bad_label(bad, &self.label_shape, self.axis.classes, self.ignore_label)),
            None => Ok(()),
        }
    }

    fn backward(&mut self, _: &B, _: &mut Ctx<'_, B>, _: &[bool]) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::loss::testing::{build, build_error, forward_error};
    use crate::backend::cpu::Cpu;

    fn net(param: &str, tops: &str) -> String {
        format!(
            r#"layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
            layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ dim: 2 }} }} }}
            layer {{ name: "acc" type: "Accuracy" bottom: "x" bottom: "label" {tops} accuracy_param {{ {param} }} }}"#
        )
    }

    #[test]
    fn top_k_and_labels_are_checked() {
        assert_eq!(
            build_error(&net("top_k: 4", r#"top: "a""#)),
            "layer `acc` (type Accuracy): accuracy_param.top_k (4) must be at most the number of classes (3)"
        );
        assert!(forward_error(&net("", r#"top: "a""#), &[("label", vec![0.0, 5.0])]).contains("label 5 at [1]"));
    }

    #[test]
    fn per_class_top_and_ignore_label() {
        let mut n = build(&net("ignore_label: 2", r#"top: "a" top: "per_class""#)).unwrap();
        let be = Cpu::new();
        n.blob_mut("x").unwrap().set_data(&be, &[0.1, 0.7, 0.2, 0.5, 0.3, 0.2]).unwrap();
        n.blob_mut("label").unwrap().set_data(&be, &[1.0, 1.0]).unwrap();
        n.forward().unwrap();
        assert_eq!(n.blob("a").unwrap().data_to_vec(&be).unwrap(), [0.5]);
        assert_eq!(n.blob("per_class").unwrap().shape(), &[3]);
        assert_eq!(n.blob("per_class").unwrap().data_to_vec(&be).unwrap(), [0.0, 0.5, 0.0]);
        n.blob_mut("label").unwrap().set_data(&be, &[2.0, 2.0]).unwrap();
        n.forward().unwrap();
        assert_eq!(n.blob("a").unwrap().data_to_vec(&be).unwrap(), [0.0]);
    }
}
