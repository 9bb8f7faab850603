//! Split insertion: a blob read by several layers gets a Split layer that copies it to one top
//! per reader, so that each reader's gradient lands in its own diff and the Split sums them
//! (Caffe's `InsertSplits`, with its layer and blob names).

use crate::proto::{LayerParameter, NetParameter};
use std::collections::HashMap;

/// The name Caffe gives the Split layer for top `top_idx` (`blob`) of layer `layer`.
pub fn split_layer_name(layer: &str, blob: &str, top_idx: usize) -> String {
    format!("{blob}_{layer}_{top_idx}_split")
}

/// The name Caffe gives output `split_idx` of that Split layer.
pub fn split_blob_name(layer: &str, blob: &str, top_idx: usize, split_idx: usize) -> String {
    format!("{blob}_{layer}_{top_idx}_split_{split_idx}")
}

/// `param` with Split layers inserted after every top that more than one bottom reads (a
/// nonzero loss weight on the top counts as one more reader).
pub fn insert_splits(param: &NetParameter) -> NetParameter {
    // (layer, top index) that last produced each blob name, as the layers are read in order.
    let mut last_top: HashMap<&str, (usize, usize)> = HashMap::new();
    // For each (layer, bottom index): the (layer, top index) it reads.
    let mut source_of: HashMap<(usize, usize), (usize, usize)> = HashMap::new();
    let mut readers: HashMap<(usize, usize), usize> = HashMap::new();
    let mut loss_weight: HashMap<(usize, usize), f32> = HashMap::new();
    for (i, layer) in param.layer.iter().enumerate() {
        for (j, bottom) in layer.bottom.iter().enumerate() {
            // A bottom no layer produced is reported when the net is built.
            if let Some(&src) = last_top.get(bottom.as_str()) {
                source_of.insert((i, j), src);
                *readers.entry(src).or_default() += 1;
            }
        }
        for (j, top) in layer.top.iter().enumerate() {
            last_top.insert(top.as_str(), (i, j));
            if let Some(&w) = layer.loss_weight.get(j) {
                loss_weight.insert((i, j), w);
                if w != 0.0 {
                    *readers.entry((i, j)).or_default() += 1;
                }
            }
        }
    }

    let mut out = param.clone();
    out.layer.clear();
    let mut next_split: HashMap<(usize, usize), usize> = HashMap::new();
    for (i, layer) in param.layer.iter().enumerate() {
        let mut layer = layer.clone();
        for j in 0..layer.bottom.len() {
            let Some(&src) = source_of.get(&(i, j)) else { continue };
            if readers.get(&src).copied().unwrap_or(0) > 1 {
                let src_layer = param.layer[src.0].name();
                let k = next_split.entry(src).or_default();
                layer.bottom[j] = split_blob_name(src_layer, &layer.bottom[j], src.1, *k);
                *k += 1;
            }
        }
        let mut splits = Vec::new();
        for j in 0..layer.top.len() {
            let count = readers.get(&(i, j)).copied().unwrap_or(0);
            if count > 1 {
                let w = loss_weight.get(&(i, j)).copied().unwrap_or(0.0);
                splits.push(split_layer(layer.name(), &layer.top[j], j, count, w));
                if w != 0.0 {
                    // The Split's first top carries the loss now.
                    layer.loss_weight.clear();
                    *next_split.entry((i, j)).or_default() += 1;
                }
            }
        }
        out.layer.push(layer);
        out.layer.extend(splits);
    }
    out
}

fn split_layer(layer: &str, blob: &str, top_idx: usize, count: usize, loss_weight: f32) -> LayerParameter {
    let mut split = LayerParameter {
        name: Some(split_layer_name(layer, blob, top_idx)),
        r#type: Some("Split".into()),
        bottom: vec![blob.to_string()],
        top: (0..count).map(|k| split_blob_name(layer, blob, top_idx, k)).collect(),
        ..Default::default()
    };
    if loss_weight != 0.0 {
        split.loss_weight = (0..count).map(|k| if k == 0 { loss_weight } else { 0.0 }).collect();
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, bottoms: &[&str], tops: &[&str]) -> LayerParameter {
        LayerParameter {
            name: Some(name.into()),
            r#type: Some("X".into()),
            bottom: bottoms.iter().map(|s| s.to_string()).collect(),
            top: tops.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn splits_a_blob_read_twice() {
        let net = NetParameter {
            layer: vec![layer("data", &[], &["d"]), layer("a", &["d"], &["x"]), layer("b", &["d"], &["y"])],
            ..Default::default()
        };
        let out = insert_splits(&net);
        let names: Vec<&str> = out.layer.iter().map(|l| l.name()).collect();
        assert_eq!(names, ["data", "d_data_0_split", "a", "b"]);
        assert_eq!(out.layer[1].top, ["d_data_0_split_0", "d_data_0_split_1"]);
        assert_eq!(out.layer[2].bottom, ["d_data_0_split_0"]);
        assert_eq!(out.layer[3].bottom, ["d_data_0_split_1"]);
    }

    #[test]
    fn in_place_chains_need_no_split() {
        let net = NetParameter {
            layer: vec![layer("data", &[], &["d"]), layer("relu", &["d"], &["d"]), layer("b", &["d"], &["y"])],
            ..Default::default()
        };
        assert_eq!(insert_splits(&net).layer.len(), 3);
    }
}
