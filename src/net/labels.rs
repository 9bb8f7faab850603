//! Telling data layers which label values the net can take: each layer that reads class labels
//! (SoftmaxWithLoss, Accuracy) has its label bottom traced back, through Split layers, to the
//! top that produced it, and that layer hears the class count (the channels of the reader's
//! bottom 0 along its axis) and the reader's `ignore_label` through
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
            let p = lp.accuracy_param.clone().unwrap_or_default();
            Some((p.axis(), p.ignore_label))
        }
        _ => None,
    }
}

impl<B: Backend> Net<B> {
    /// Calls `set_label_range` on the producer of every class-label bottom.
    pub(super) fn tell_label_ranges(&mut self) -> Result<()> {
        // The layer and top index that created each blob (in-place layers reuse it).
        let mut creator: Vec<Option<(usize, usize)>> = vec![None; self.blobs.len()];
        for (li, entry) in self.layers.iter().enumerate() {
            for (j, &t) in entry.tops.iter().enumerate() {
                creator[t].get_or_insert((li, j));
            }
        }
        for li in 0..self.layers.len() {
            let entry = &self.layers[li];
            let Some((axis, ignore)) = label_reader(&entry.param) else { continue };
            if entry.bottoms.len() < 2 {
                continue;
            }
            let shape = self.blobs[entry.bottoms[0]].shape();
            // A bad axis is the reader's own error to report.
            let Ok(axis) = canonical_axis(axis, shape.len()) else { continue };
            let classes = shape[axis];
            let mut blob = entry.bottoms[1];
            while let Some((pl, pt)) = creator[blob] {
                let producer = &mut self.layers[pl];
                if producer.type_name() == "Split" {
                    blob = producer.bottoms[0];
                    continue;
                }
                let (name, kind) = (producer.name().to_string(), producer.type_name().to_string());
                producer.layer.set_label_range(pt, classes, ignore).map_err(|e| e.in_layer(&name, &kind))?;
                break;
            }
        }
        Ok(())
    }

    /// Positions every data layer at forward pass `pass` of an uninterrupted run (see
    /// [`Layer::set_iteration`](crate::layers::Layer::set_iteration)): a solver resuming at
    /// iteration `iter` passes `iter * iter_size`.
    pub fn set_iteration(&mut self, pass: u64) {
        for entry in &mut self.layers {
            entry.layer.set_iteration(pass);
        }
    }
}
