//! InfogainLoss (Caffe master): softmax over `infogain_loss_param.axis`, then
//! `-sum_c H[label, c] ln(max(p_c, 1e-20))` per position, normalised as
//! `loss_param.normalization` says (VALID by default; the legacy `normalize` is refused, as in
//! Caffe). `H` is `classes x classes`, read from the `.binaryproto` named by
//! `infogain_loss_param.source`, or taken from a third bottom. An optional second top receives
//! the probabilities. No gradient flows to the labels or to `H`.

use super::loss::{SoftmaxProbs, no_label_gradient};
use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct InfogainLoss<B: Backend> {
    probs: SoftmaxProbs<B>,
    /// `H` read from `source` (values, and the file's shape for messages), when there is no
    /// third bottom.
    source: Option<(String, Vec<usize>, Vec<f32>)>,
    h: Option<B::Buf>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.loss_param.as_ref();
    if p.is_some_and(|p| p.normalize.is_some()) {
        return Err(Error::Config(
            "loss_param.normalize is deprecated and InfogainLoss refuses it; use loss_param.normalization".into(),
        ));
    }
    let ip = lp.infogain_loss_param.clone().unwrap_or_default();
    let source = if lp.bottom.len() < 3 {
        let Some(path) = ip.source.clone() else {
            return Err(Error::Config(
                "the infogain matrix must be given: set infogain_loss_param.source or add a third bottom".into(),
            ));
        };
        let blob = crate::io::read_binaryproto(&path)?;
        Some((path, blob.shape, blob.data))
    } else {
        None
    };
    // `normalize` is refused above, so the normalization is `normalization`'s (VALID unset).
    Ok(Box::new(InfogainLoss::<B> { probs: SoftmaxProbs::new(lp, ip.axis()), source, h: None }))
}

impl<B: Backend> Layer<B> for InfogainLoss<B> {
    fn type_name(&self) -> &'static str {
        "InfogainLoss"
    }
    fn bottoms(&self) -> Arity {
        Arity::range(2, 3)
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
    /// Neither the labels nor `H` take a gradient (Caffe allows forcing one to `H`, then
    /// aborts in backward; crema never asks).
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom == 0
    }

    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (data, label) = (bottoms[0], bottoms[1]);
        let axis = self.probs.class_axis(data, label)?;
        let want = axis.classes * axis.classes;
        match (&self.source, bottoms.get(2)) {
            (_, Some(h)) => {
                let n: usize = h.iter().product();
                if n != want {
                    return Err(Error::Shape(format!(
                        "the infogain matrix (bottom 2, shape {h:?}) must be {0}x{0} for {0} classes",
                        axis.classes
                    )));
                }
            }
            (Some((path, shape, values)), None) => {
                if values.len() != want {
                    return Err(Error::Shape(format!(
                        "the infogain matrix in {path} (shape {shape:?}, {} values) must be {1}x{1} for {1} classes",
                        values.len(),
                        axis.classes
                    )));
                }
                if self.h.is_none() {
                    self.h = Some(be.alloc_from(values)?);
                }
            }
            (None, None) => return Err(Error::Internal("InfogainLoss without a matrix".into())),
        }
        self.probs.reshape(be, axis, data, label)
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let own_h = self.h.as_ref();
        self.probs.forward(be, ctx, |axis, ignore_label, prob, bottoms| {
            let h = match bottoms.get(2) {
                Some(b) => &b.data,
                None => own_h.ok_or_else(|| Error::Internal("forward before reshape".into()))?,
            };
            be.infogain_loss_forward(axis, ignore_label, prob, &bottoms[1].data, h)
        })
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[1] {
            return Err(no_label_gradient("InfogainLoss"));
        }
        if propagate_down.get(2) == Some(&true) {
            return Err(Error::Config("InfogainLoss cannot backpropagate to the infogain matrix (bottom 2)".into()));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let own_h = self.h.as_ref();
        self.probs.backward(be, ctx, |axis, ignore_label, prob, scale, diff, rest| {
            let h = match rest.get(1) {
                Some(b) => &b.data,
                None => own_h.ok_or_else(|| Error::Internal("backward before reshape".into()))?,
            };
            be.infogain_loss_backward(axis, ignore_label, prob, &rest[0].data, h, scale, diff)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::loss::testing::{build, build_error, forward_error};

    fn net(extra: &str, h_bottom: bool) -> String {
        let (h_layer, h) = if h_bottom {
            (r#"layer { name: "H" type: "Input" top: "H" input_param { shape { dim: 2 dim: 2 } } }"#, r#"bottom: "H""#)
        } else {
            ("", "")
        };
        format!(
            r#"layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
            layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ dim: 2 }} }} }}
            {h_layer}
            layer {{ name: "loss" type: "InfogainLoss" bottom: "x" bottom: "label" {h} top: "loss" {extra} }}"#
        )
    }

    #[test]
    fn parameter_errors() {
        assert_eq!(
            build_error(&net("", false)),
            "layer `loss` (type InfogainLoss): the infogain matrix must be given: set infogain_loss_param.source or \
             add a third bottom"
        );
        assert!(build_error(&net("loss_param { normalize: true }", true)).contains("normalize is deprecated"));
        assert!(build_error(&net(r#"infogain_loss_param { source: "/nonexistent/H.binaryproto" }"#, false))
            .contains("/nonexistent/H.binaryproto"));
    }

    #[test]
    fn the_matrix_must_be_classes_by_classes() {
        assert_eq!(
            build_error(&net("", true)),
            "layer `loss` (type InfogainLoss): the infogain matrix (bottom 2, shape [2, 2]) must be 3x3 for 3 classes"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("H.binaryproto");
        crate::io::write_binaryproto(&path, &crate::io::BlobData::new(vec![2, 2], vec![1.0; 4])).unwrap();
        let e = build_error(&net(&format!(r#"infogain_loss_param {{ source: "{}" }}"#, path.display()), false));
        assert!(e.ends_with("(shape [2, 2], 4 values) must be 3x3 for 3 classes"), "{e}");
    }

    #[test]
    fn a_bad_label_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("H.binaryproto");
        crate::io::write_binaryproto(&path, &crate::io::BlobData::new(vec![3, 3], vec![1.0; 9])).unwrap();
        let text = net(&format!(r#"infogain_loss_param {{ source: "{}" }}"#, path.display()), false);
        build(&text).unwrap();
        assert!(forward_error(&text, &[("label", vec![1.0, 3.0])]).contains("label 3 at [1] of the label blob"));
    }
}
