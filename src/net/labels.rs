//! Telling data layers which label values the net can take: each layer that reads class labels
//! (SoftmaxWithLoss, Accuracy) has its label bottom traced back, through Split layers, to the
//! top that produced it, and that layer hears the class count (the extent of the reader's
//! bottom 0 along its class axis) and the reader's `ignore_label` through
//! [`Layer::set_label_range`](crate::layers::Layer::set_label_range).

use super::Net;
use crate::backend::Backend;
use crate::blob::canonical_axis;
use crate::proto::LayerParameter;
use crate::Result;

/// For a layer that reads class labels as bottom 1: its class axis and ignore label.
fn label_reader(lp: &LayerParameter) -> Option<(i32, Option<i32>)> {
    match lp.r#type() {
        "SoftmaxWithLoss" => Some((
            lp.softmax_param.as_ref().map(|p| p.axis()).unwrap_or(1),
            lp.loss_param.as_ref().and_then(|p| p.ignore_label),
        )),
        "Accuracy" => {
            let p = lp.accuracy_param.unwrap_or_default();
            Some((p.axis(), p.ignore_label))
        }
        _ => None,
    }
}

/// A layer as the tracing sees it.
pub(super) struct Wiring<'a> {
    pub param: &'a LayerParameter,
    pub bottoms: &'a [usize],
    pub tops: &'a [usize],
}

/// One label constraint to deliver: layer `producer`'s top `top` feeds labels in
/// `0..classes` (or `ignore`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LabelLink {
    pub producer: usize,
    pub top: usize,
    pub classes: usize,
    pub ignore: Option<i32>,
}

/// Traces every label reader of `layers` to the layer that produced its labels; `shape`
/// gives a blob's shape, `blobs` the number of blobs.
pub(super) fn label_links(layers: &[Wiring<'_>], blobs: usize, shape: impl Fn(usize) -> Vec<usize>) -> Vec<LabelLink> {
    // The layer and top index that created each blob (in-place layers reuse it).
    let mut creator: Vec<Option<(usize, usize)>> = vec![None; blobs];
    for (li, l) in layers.iter().enumerate() {
        for (j, &t) in l.tops.iter().enumerate() {
            creator[t].get_or_insert((li, j));
        }
    }
    let mut links = Vec::new();
    for l in layers {
        let Some((axis, ignore)) = label_reader(l.param) else { continue };
        if l.bottoms.len() < 2 {
            continue;
        }
        let s = shape(l.bottoms[0]);
        // A bad axis is the reader's own error to report.
        let Ok(axis) = canonical_axis(axis, s.len()) else { continue };
        let mut blob = l.bottoms[1];
        while let Some((pl, pt)) = creator[blob] {
            if layers[pl].param.r#type() == "Split" {
                blob = layers[pl].bottoms[0];
                continue;
            }
            links.push(LabelLink { producer: pl, top: pt, classes: s[axis], ignore });
            break;
        }
    }
    links
}

impl<B: Backend> Net<B> {
    /// Calls `set_label_range` on the producer of every class-label bottom.
    pub(super) fn tell_label_ranges(&mut self) -> Result<()> {
        let wiring: Vec<Wiring<'_>> =
            self.layers.iter().map(|e| Wiring { param: &e.param, bottoms: &e.bottoms, tops: &e.tops }).collect();
        let links = label_links(&wiring, self.blobs.len(), |b| self.blobs[b].shape().to_vec());
        for link in links {
            let producer = &mut self.layers[link.producer];
            let (name, kind) = (producer.name().to_string(), producer.type_name().to_string());
            producer.layer.set_label_range(link.top, link.classes, link.ignore).map_err(|e| e.in_layer(&name, &kind))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AccuracyParameter, LossParameter};

    fn layer(kind: &str) -> LayerParameter {
        LayerParameter { r#type: Some(kind.into()), ..Default::default() }
    }

    #[test]
    fn traces_labels_through_splits_to_their_producer() {
        // Blobs: 0 data, 1 label, 2 score, 3/4 label splits.
        let data = layer("DenseImageData");
        let conv = layer("Convolution");
        let split = layer("Split");
        let loss = LayerParameter {
            loss_param: Some(LossParameter { ignore_label: Some(255), ..Default::default() }),
            ..layer("SoftmaxWithLoss")
        };
        let acc = LayerParameter {
            accuracy_param: Some(AccuracyParameter { axis: Some(-3), ..Default::default() }),
            ..layer("Accuracy")
        };
        let other = layer("EuclideanLoss");
        let layers = [
            Wiring { param: &data, bottoms: &[], tops: &[0, 1] },
            Wiring { param: &conv, bottoms: &[0], tops: &[2] },
            Wiring { param: &split, bottoms: &[1], tops: &[3, 4] },
            Wiring { param: &loss, bottoms: &[2, 3], tops: &[5] },
            Wiring { param: &acc, bottoms: &[2, 4], tops: &[6] },
            Wiring { param: &other, bottoms: &[2, 2], tops: &[7] },
        ];
        let links = label_links(&layers, 8, |_| vec![6, 2, 5, 5]);
        assert_eq!(
            links,
            [
                LabelLink { producer: 0, top: 1, classes: 2, ignore: Some(255) },
                LabelLink { producer: 0, top: 1, classes: 2, ignore: None },
            ]
        );
    }
}
