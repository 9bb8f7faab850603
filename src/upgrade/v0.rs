//! Step 1: the V0 layer format (`layers { layer { type: "conv" ... } bottom: ... }`) to the V1
//! format (`layers { type: CONVOLUTION convolution_param { ... } }`), as Caffe's `UpgradeV0Net`
//! does it: padding layers are first folded into the convolution or pooling layer they feed
//! (`UpgradeV0PaddingLayers`), then each V0 layer's flat fields move into the V1 `*_param`
//! message of its type.
//!
//! Where Caffe logs "Unknown parameter ... for layer type ..." and drops the field, crema stops
//! with an [`Error::Upgrade`](crate::Error::Upgrade): the field cannot be carried over, and a
//! silent drop would change what the user wrote.

use super::err;
use crate::Result;
use crate::proto::{
    ConcatParameter, ConvolutionParameter, DataParameter, DropoutParameter, Hdf5DataParameter, ImageDataParameter,
    InfogainLossParameter, InnerProductParameter, LrnParameter, NetParameter, PoolingParameter,
    TransformationParameter, V0LayerParameter, V1LayerParameter, WindowDataParameter, pooling_parameter,
    v0_layer_parameter, v1_layer_parameter::LayerType,
};
use std::collections::HashMap;

/// Whether any `layers` entry holds a V0 `layer` (Caffe's `NetNeedsV0ToV1Upgrade`).
pub fn needs(net: &NetParameter) -> bool {
    net.layers.iter().any(|l| l.layer.is_some())
}

/// Upgrades a V0 net to the V1 format. Like Caffe, the result keeps only the net's name,
/// inputs, input dimensions and `force_backward`; any newer net-level field is an error.
/// Layers are moved, not copied: a binary V0 net carries its weights in them.
pub fn upgrade(net: NetParameter) -> Result<NetParameter> {
    let newer = [
        (!net.input_shape.is_empty(), "input_shape"),
        (net.state.is_some(), "state"),
        (net.debug_info.is_some(), "debug_info"),
        (!net.layer.is_empty(), "layer"),
    ];
    if let Some((_, field)) = newer.iter().find(|(set, _)| *set) {
        return Err(err(format!(
            "the net mixes the V0 layer format with the newer net field `{field}`, which \
             Caffe's V0 upgrade drops; write the net in one format"
        )));
    }
    let NetParameter { name, layers, input, input_dim, force_backward, .. } = net;
    let folded = fold_padding(layers, &input)?;
    let layers = folded.into_iter().enumerate().map(|(i, l)| layer(l, i)).collect::<Result<Vec<_>>>()?;
    Ok(NetParameter { name, layers, input, input_dim, force_backward, ..Default::default() })
}

fn v0_type(conn: &V1LayerParameter) -> &str {
    conn.layer.as_ref().map(|l| l.r#type()).unwrap_or("")
}

fn v0_name(conn: &V1LayerParameter, index: usize) -> String {
    match conn.layer.as_ref().and_then(|l| l.name.as_deref()) {
        Some(name) => format!("layer `{name}`"),
        None => format!("layers[{index}]"),
    }
}

/// What folding does to one layer fed by a padding layer: its `pad`, and for its bottom
/// `.1`, the padding layer's input `.2`.
type Fold = (u32, usize, String);

/// Removes V0 `padding` layers from `layers` (of a net with inputs `inputs`), setting their
/// `pad` on the convolution or pooling layer that reads their output and pointing that layer
/// at the padding layer's input (Caffe's `UpgradeV0PaddingLayers`).
pub fn fold_padding(layers: Vec<V1LayerParameter>, inputs: &[String]) -> Result<Vec<V1LayerParameter>> {
    // Blob name -> index of the layer that last wrote it; None for a net input.
    let mut last_top: HashMap<&str, Option<usize>> = inputs.iter().map(|b| (b.as_str(), None)).collect();
    let mut folds: Vec<Vec<Fold>> = vec![Vec::new(); layers.len()];
    for (i, conn) in layers.iter().enumerate() {
        let ty = v0_type(conn);
        for (j, bottom) in conn.bottom.iter().enumerate() {
            let source = match last_top.get(bottom.as_str()) {
                None => {
                    return Err(err(format!(
                        "{}: bottom `{bottom}` is neither a net input nor the top of an earlier layer",
                        v0_name(conn, i)
                    )));
                }
                Some(None) => continue,
                Some(Some(k)) => &layers[*k],
            };
            if v0_type(source) != "padding" {
                continue;
            }
            let here = v0_name(conn, i);
            if ty != "conv" && ty != "pool" {
                return Err(err(format!(
                    "{here}: a padding layer feeds this `{ty}` layer; only conv and pool layers can take its padding"
                )));
            }
            if conn.bottom.len() != 1 {
                return Err(err(format!("{here}: a layer fed by a padding layer must have exactly one bottom")));
            }
            if source.bottom.len() != 1 || source.top.len() != 1 {
                return Err(err(format!(
                    "{}: a padding layer must have exactly one bottom and one top",
                    v0_name(source, 0)
                )));
            }
            let pad = source.layer.as_ref().map(|l| l.pad()).unwrap_or(0);
            folds[i].push((pad, j, source.bottom[0].clone()));
        }
        for top in &conn.top {
            last_top.insert(top.as_str(), Some(i));
        }
    }
    let mut out = Vec::with_capacity(layers.len());
    for (mut conn, folds) in layers.into_iter().zip(folds) {
        if v0_type(&conn) == "padding" {
            continue;
        }
        for (pad, j, bottom) in folds {
            conn.layer.get_or_insert_with(Default::default).pad = Some(pad);
            conn.bottom[j] = bottom;
        }
        out.push(conn);
    }
    Ok(out)
}

/// The V1 layer type of a V0 type string (Caffe's `UpgradeV0LayerType`).
pub fn layer_type(ty: &str) -> Option<LayerType> {
    Some(match ty {
        "accuracy" => LayerType::Accuracy,
        "bnll" => LayerType::Bnll,
        "concat" => LayerType::Concat,
        "conv" => LayerType::Convolution,
        "data" => LayerType::Data,
        "dropout" => LayerType::Dropout,
        "euclidean_loss" => LayerType::EuclideanLoss,
        "flatten" => LayerType::Flatten,
        "hdf5_data" => LayerType::Hdf5Data,
        "hdf5_output" => LayerType::Hdf5Output,
        "im2col" => LayerType::Im2col,
        "images" => LayerType::ImageData,
        "infogain_loss" => LayerType::InfogainLoss,
        "innerproduct" => LayerType::InnerProduct,
        "lrn" => LayerType::Lrn,
        "multinomial_logistic_loss" => LayerType::MultinomialLogisticLoss,
        "pool" => LayerType::Pooling,
        "relu" => LayerType::Relu,
        "sigmoid" => LayerType::Sigmoid,
        "softmax" => LayerType::Softmax,
        "softmax_loss" => LayerType::SoftmaxLoss,
        "split" => LayerType::Split,
        "tanh" => LayerType::Tanh,
        "window_data" => LayerType::WindowData,
        _ => return None,
    })
}

/// Upgrades one `layers` entry of a V0 net (Caffe's `UpgradeV0LayerParameter`).
pub fn layer(conn: V1LayerParameter, index: usize) -> Result<V1LayerParameter> {
    let here = v0_name(&conn, index);
    let mut rest = conn;
    let bottom = std::mem::take(&mut rest.bottom);
    let top = std::mem::take(&mut rest.top);
    let v0 = rest.layer.take();
    if rest != V1LayerParameter::default() {
        return Err(err(format!(
            "{here}: a layer of a V0-format net sets V1 fields beside (or instead of) its V0 `layer`; \
             Caffe's V0 upgrade would drop them. Write the net in one format"
        )));
    }
    let mut out = V1LayerParameter { bottom, top, ..Default::default() };
    let Some(mut v0) = v0 else {
        return Ok(out);
    };
    let ty = v0.r#type();
    out.name = v0.name.clone();
    if v0.r#type.is_some() {
        let upgraded = layer_type(ty).ok_or_else(|| err(format!("{here}: unknown V0 layer type `{ty}`")))?;
        out.r#type = Some(upgraded as i32);
    }
    out.blobs = std::mem::take(&mut v0.blobs);
    out.blobs_lr = std::mem::take(&mut v0.blobs_lr);
    out.weight_decay = std::mem::take(&mut v0.weight_decay);
    Fields { v0: &v0, ty: v0.r#type(), here: &here, out: &mut out }.move_all()?;
    Ok(out)
}

/// Moves the flat V0 fields of one layer into the V1 `*_param` messages of its type.
struct Fields<'a> {
    v0: &'a V0LayerParameter,
    ty: &'a str,
    here: &'a str,
    out: &'a mut V1LayerParameter,
}

fn get<T: Default>(slot: &mut Option<T>) -> &mut T {
    slot.get_or_insert_with(T::default)
}

impl Fields<'_> {
    fn misplaced(&self, field: &str) -> crate::Error {
        err(format!(
            "{}: the V0 field `{field}` has no meaning for layer type `{}` (Caffe's upgrade drops it); remove it",
            self.here, self.ty
        ))
    }

    fn conv(&mut self) -> &mut ConvolutionParameter {
        get(&mut self.out.convolution_param)
    }
    fn ip(&mut self) -> &mut InnerProductParameter {
        get(&mut self.out.inner_product_param)
    }
    fn pool(&mut self) -> &mut PoolingParameter {
        get(&mut self.out.pooling_param)
    }
    fn lrn(&mut self) -> &mut LrnParameter {
        get(&mut self.out.lrn_param)
    }
    fn transform(&mut self) -> &mut TransformationParameter {
        get(&mut self.out.transform_param)
    }
    fn data(&mut self) -> &mut DataParameter {
        get(&mut self.out.data_param)
    }
    fn hdf5(&mut self) -> &mut Hdf5DataParameter {
        get(&mut self.out.hdf5_data_param)
    }
    fn images(&mut self) -> &mut ImageDataParameter {
        get(&mut self.out.image_data_param)
    }
    fn window(&mut self) -> &mut WindowDataParameter {
        get(&mut self.out.window_data_param)
    }

    fn move_all(mut self) -> Result<()> {
        let v0 = self.v0;
        let ty = self.ty;
        if let Some(n) = v0.num_output {
            match ty {
                "conv" => self.conv().num_output = Some(n),
                "innerproduct" => self.ip().num_output = Some(n),
                _ => return Err(self.misplaced("num_output")),
            }
        }
        if let Some(b) = v0.biasterm {
            match ty {
                "conv" => self.conv().bias_term = Some(b),
                "innerproduct" => self.ip().bias_term = Some(b),
                _ => return Err(self.misplaced("biasterm")),
            }
        }
        if let Some(f) = &v0.weight_filler {
            match ty {
                "conv" => self.conv().weight_filler = Some(f.clone()),
                "innerproduct" => self.ip().weight_filler = Some(f.clone()),
                _ => return Err(self.misplaced("weight_filler")),
            }
        }
        if let Some(f) = &v0.bias_filler {
            match ty {
                "conv" => self.conv().bias_filler = Some(f.clone()),
                "innerproduct" => self.ip().bias_filler = Some(f.clone()),
                _ => return Err(self.misplaced("bias_filler")),
            }
        }
        if let Some(p) = v0.pad {
            match ty {
                "conv" => self.conv().pad.push(p),
                "pool" => self.pool().pad = Some(p),
                _ => return Err(self.misplaced("pad")),
            }
        }
        if let Some(k) = v0.kernelsize {
            match ty {
                "conv" => self.conv().kernel_size.push(k),
                "pool" => self.pool().kernel_size = Some(k),
                _ => return Err(self.misplaced("kernelsize")),
            }
        }
        if let Some(g) = v0.group {
            match ty {
                "conv" => self.conv().group = Some(g),
                _ => return Err(self.misplaced("group")),
            }
        }
        if let Some(s) = v0.stride {
            match ty {
                "conv" => self.conv().stride.push(s),
                "pool" => self.pool().stride = Some(s),
                _ => return Err(self.misplaced("stride")),
            }
        }
        if let Some(p) = v0.pool {
            if ty != "pool" {
                return Err(self.misplaced("pool"));
            }
            use pooling_parameter::PoolMethod as New;
            use v0_layer_parameter::PoolMethod as Old;
            let method = match Old::try_from(p) {
                Ok(Old::Max) => New::Max,
                Ok(Old::Ave) => New::Ave,
                Ok(Old::Stochastic) => New::Stochastic,
                Err(_) => return Err(err(format!("{}: unknown V0 pool method {p}", self.here))),
            };
            self.pool().pool = Some(method as i32);
        }
        if let Some(r) = v0.dropout_ratio {
            match ty {
                "dropout" => get::<DropoutParameter>(&mut self.out.dropout_param).dropout_ratio = Some(r),
                _ => return Err(self.misplaced("dropout_ratio")),
            }
        }
        if let Some(n) = v0.local_size {
            match ty {
                "lrn" => self.lrn().local_size = Some(n),
                _ => return Err(self.misplaced("local_size")),
            }
        }
        if let Some(a) = v0.alpha {
            match ty {
                "lrn" => self.lrn().alpha = Some(a),
                _ => return Err(self.misplaced("alpha")),
            }
        }
        if let Some(b) = v0.beta {
            match ty {
                "lrn" => self.lrn().beta = Some(b),
                _ => return Err(self.misplaced("beta")),
            }
        }
        if let Some(k) = v0.k {
            match ty {
                "lrn" => self.lrn().k = Some(k),
                _ => return Err(self.misplaced("k")),
            }
        }
        if let Some(s) = &v0.source {
            let s = Some(s.clone());
            match ty {
                "data" => self.data().source = s,
                "hdf5_data" => self.hdf5().source = s,
                "images" => self.images().source = s,
                "window_data" => self.window().source = s,
                "infogain_loss" => get::<InfogainLossParameter>(&mut self.out.infogain_loss_param).source = s,
                _ => return Err(self.misplaced("source")),
            }
        }
        // Caffe moves the transformation fields whatever the layer type.
        if let Some(s) = v0.scale {
            self.transform().scale = Some(s);
        }
        if let Some(m) = &v0.meanfile {
            self.transform().mean_file = Some(m.clone());
        }
        if let Some(b) = v0.batchsize {
            match ty {
                "data" => self.data().batch_size = Some(b),
                "hdf5_data" => self.hdf5().batch_size = Some(b),
                "images" => self.images().batch_size = Some(b),
                "window_data" => self.window().batch_size = Some(b),
                _ => return Err(self.misplaced("batchsize")),
            }
        }
        if let Some(c) = v0.cropsize {
            self.transform().crop_size = Some(c);
        }
        if let Some(m) = v0.mirror {
            self.transform().mirror = Some(m);
        }
        if let Some(r) = v0.rand_skip {
            match ty {
                "data" => self.data().rand_skip = Some(r),
                "images" => self.images().rand_skip = Some(r),
                _ => return Err(self.misplaced("rand_skip")),
            }
        }
        if let Some(s) = v0.shuffle_images {
            match ty {
                "images" => self.images().shuffle = Some(s),
                _ => return Err(self.misplaced("shuffle_images")),
            }
        }
        // V0 declares these int32, the V1 field uint32: C++ converts modulo 2^32.
        if let Some(h) = v0.new_height {
            match ty {
                "images" => self.images().new_height = Some(h as u32),
                _ => return Err(self.misplaced("new_height")),
            }
        }
        if let Some(w) = v0.new_width {
            match ty {
                "images" => self.images().new_width = Some(w as u32),
                _ => return Err(self.misplaced("new_width")),
            }
        }
        if let Some(d) = v0.concat_dim {
            match ty {
                "concat" => get::<ConcatParameter>(&mut self.out.concat_param).concat_dim = Some(d),
                _ => return Err(self.misplaced("concat_dim")),
            }
        }
        if ty != "window_data" {
            let det = [
                (v0.det_fg_threshold.is_some(), "det_fg_threshold"),
                (v0.det_bg_threshold.is_some(), "det_bg_threshold"),
                (v0.det_fg_fraction.is_some(), "det_fg_fraction"),
                (v0.det_context_pad.is_some(), "det_context_pad"),
                (v0.det_crop_mode.is_some(), "det_crop_mode"),
            ];
            if let Some((_, field)) = det.iter().find(|(set, _)| *set) {
                return Err(self.misplaced(field));
            }
        } else {
            if let Some(t) = v0.det_fg_threshold {
                self.window().fg_threshold = Some(t);
            }
            if let Some(t) = v0.det_bg_threshold {
                self.window().bg_threshold = Some(t);
            }
            if let Some(f) = v0.det_fg_fraction {
                self.window().fg_fraction = Some(f);
            }
            if let Some(p) = v0.det_context_pad {
                self.window().context_pad = Some(p);
            }
            if let Some(m) = &v0.det_crop_mode {
                self.window().crop_mode = Some(m.clone());
            }
        }
        if let Some(h) = &v0.hdf5_output_param {
            match ty {
                "hdf5_output" => self.out.hdf5_output_param = Some(h.clone()),
                _ => return Err(self.misplaced("hdf5_output_param")),
            }
        }
        // Caffe ignores these two without a word; no V1 layer has a place for them.
        if v0.new_num.is_some() {
            return Err(self.misplaced("new_num"));
        }
        if v0.new_channels.is_some() {
            return Err(self.misplaced("new_channels"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{pooling_parameter::PoolMethod, v1_layer_parameter::LayerType};

    fn net(text: &str) -> NetParameter {
        crate::prototxt::parse(text, "test.prototxt").expect("test net parses")
    }

    fn msg(e: crate::Error) -> String {
        e.to_string()
    }

    #[test]
    fn type_strings_map_to_v1_types() {
        assert_eq!(layer_type("conv"), Some(LayerType::Convolution));
        assert_eq!(layer_type("innerproduct"), Some(LayerType::InnerProduct));
        assert_eq!(layer_type("images"), Some(LayerType::ImageData));
        assert_eq!(layer_type("softmax_loss"), Some(LayerType::SoftmaxLoss));
        assert_eq!(layer_type("padding"), None, "padding layers are folded, never upgraded");
        assert_eq!(layer_type("Convolution"), None);
    }

    #[test]
    fn unknown_v0_type_is_an_error() {
        let e = upgrade(net(r#"layers { layer { name: "c" type: "convolution" } top: "x" }"#)).unwrap_err();
        assert!(msg(e).contains("layer `c`: unknown V0 layer type `convolution`"));
    }

    #[test]
    fn padding_layer_folds_into_the_conv_it_feeds() {
        let up = upgrade(net(
            r#"name: "n" input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
            layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
            layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 5 } bottom: "pad1" top: "conv1" }
            layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 3 stride: 2 } bottom: "conv1" top: "pool1" }"#,
        ))
        .unwrap();
        assert_eq!(up.name.as_deref(), Some("n"));
        assert_eq!(up.input, ["data"]);
        assert_eq!(up.input_dim, [1, 3, 8, 8]);
        assert_eq!(up.layers.len(), 2, "the padding layer is gone");
        let conv = &up.layers[0];
        assert_eq!(conv.r#type, Some(LayerType::Convolution as i32));
        assert_eq!(conv.bottom, ["data"], "the conv reads the padding layer's input");
        let p = conv.convolution_param.as_ref().unwrap();
        assert_eq!((p.num_output, &p.pad[..], &p.kernel_size[..]), (Some(4), &[2][..], &[5][..]));
        let pool = up.layers[1].pooling_param.as_ref().unwrap();
        assert_eq!(pool.pool, Some(PoolMethod::Ave as i32));
        assert_eq!((pool.kernel_size, pool.stride, pool.pad), (Some(3), Some(2), None));
    }

    #[test]
    fn padding_layer_folds_into_a_pool() {
        let up = upgrade(net(r#"input: "data"
            layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "p" }
            layers { layer { name: "pool" type: "pool" kernelsize: 3 } bottom: "p" top: "q" }"#))
        .unwrap();
        assert_eq!(up.layers.len(), 1);
        assert_eq!(up.layers[0].bottom, ["data"]);
        assert_eq!(up.layers[0].pooling_param.as_ref().and_then(|p| p.pad), Some(1));
    }

    #[test]
    fn padding_into_a_non_conv_layer_is_an_error() {
        let e = upgrade(net(r#"input: "data"
            layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "p" }
            layers { layer { name: "relu" type: "relu" } bottom: "p" top: "r" }"#))
        .unwrap_err();
        assert!(msg(e).contains("layer `relu`: a padding layer feeds this `relu` layer"));
    }

    #[test]
    fn unknown_bottom_is_an_error() {
        let e =
            upgrade(net(r#"layers { layer { name: "relu" type: "relu" } bottom: "nowhere" top: "r" }"#)).unwrap_err();
        assert!(msg(e).contains("bottom `nowhere` is neither a net input nor the top of an earlier layer"));
    }

    #[test]
    fn data_and_window_fields_move_to_their_params() {
        let up = upgrade(net(r#"layers { layer { name: "d" type: "data" source: "db" batchsize: 32 rand_skip: 7
                  meanfile: "mean.binaryproto" cropsize: 227 mirror: true scale: 0.5 } top: "data" }
            layers { layer { name: "w" type: "window_data" source: "w.txt" batchsize: 8
                  det_fg_threshold: 0.6 det_bg_threshold: 0.4 det_fg_fraction: 0.3
                  det_context_pad: 16 det_crop_mode: "square" } top: "wd" }
            layers { layer { name: "i" type: "images" source: "list" shuffle_images: true
                  new_height: 256 new_width: 128 } top: "img" }"#))
        .unwrap();
        let d = &up.layers[0];
        let dp = d.data_param.as_ref().unwrap();
        assert_eq!((dp.source.as_deref(), dp.batch_size, dp.rand_skip), (Some("db"), Some(32), Some(7)));
        let t = d.transform_param.as_ref().unwrap();
        assert_eq!(t.mean_file.as_deref(), Some("mean.binaryproto"));
        assert_eq!((t.crop_size, t.mirror, t.scale), (Some(227), Some(true), Some(0.5)));
        let w = up.layers[1].window_data_param.as_ref().unwrap();
        assert_eq!((w.fg_threshold, w.bg_threshold, w.fg_fraction), (Some(0.6), Some(0.4), Some(0.3)));
        assert_eq!((w.context_pad, w.crop_mode.as_deref()), (Some(16), Some("square")));
        let i = up.layers[2].image_data_param.as_ref().unwrap();
        assert_eq!((i.shuffle, i.new_height, i.new_width), (Some(true), Some(256), Some(128)));
    }

    #[test]
    fn a_field_foreign_to_the_layer_type_is_an_error() {
        let e = upgrade(net(r#"layers { layer { name: "r" type: "relu" num_output: 3 } top: "x" }"#)).unwrap_err();
        assert!(msg(e).contains("layer `r`: the V0 field `num_output` has no meaning for layer type `relu`"));
        let e =
            upgrade(net(r#"layers { layer { name: "c" type: "conv" det_crop_mode: "warp" } top: "x" }"#)).unwrap_err();
        assert!(msg(e).contains("`det_crop_mode`"));
    }

    #[test]
    fn v1_fields_beside_a_v0_layer_are_an_error() {
        let e = upgrade(net(r#"layers { layer { name: "r" type: "relu" } blobs_lr: 1 top: "x" }"#)).unwrap_err();
        assert!(msg(e).contains("sets V1 fields"));
    }

    #[test]
    fn newer_net_fields_are_an_error() {
        let e = upgrade(net(r#"state { phase: TRAIN } layers { layer { name: "r" type: "relu" } }"#)).unwrap_err();
        assert!(msg(e).contains("`state`"));
    }
}
