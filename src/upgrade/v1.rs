//! Step 3: the V1 layer format (`layers { type: CONVOLUTION blobs_lr: 1 ... }`) to the current
//! one (`layer { type: "Convolution" param { lr_mult: 1 } ... }`), as Caffe's `UpgradeV1Net`
//! does it: the type enum becomes a type string, the per-blob lists `param` (share names),
//! `blob_share_mode`, `blobs_lr` and `weight_decay` become `param { name share_mode lr_mult
//! decay_mult }` entries, and everything else is copied as it is.
//!
//! Every V1 field has a current equivalent except a leftover V0 `layer`; that, a net that mixes
//! `layers` with `layer` (Caffe ignores the latter), or an enum value the schema does not know
//! is an [`Error::Upgrade`](crate::Error::Upgrade).

use super::err;
use crate::Result;
use crate::proto::{
    LayerParameter, NetParameter, ParamSpec, V1LayerParameter, param_spec,
    v1_layer_parameter::{DimCheckMode, LayerType},
};

/// Whether the net has any V1 `layers` (Caffe's `NetNeedsV1ToV2Upgrade`).
pub fn needs(net: &NetParameter) -> bool {
    !net.layers.is_empty()
}

/// Upgrades every V1 layer of `net` into a current `layer`; net-level fields stay as they are.
pub fn upgrade(net: &mut NetParameter) -> Result<()> {
    if !net.layer.is_empty() {
        return Err(err(format!(
            "the net has both V1 `layers` ({}) and current `layer` entries ({}); Caffe's upgrade \
             would drop the `layer` entries. Write the net in one format",
            net.layers.len(),
            net.layer.len()
        )));
    }
    let old = std::mem::take(&mut net.layers);
    net.layer = old.into_iter().enumerate().map(|(i, l)| layer(l, i)).collect::<Result<_>>()?;
    Ok(())
}

/// The current type string of a V1 layer type (Caffe's `UpgradeV1LayerType`, plus the SegNet
/// fork's BN).
pub fn type_name(ty: LayerType) -> &'static str {
    use LayerType::*;
    match ty {
        None => "",
        Absval => "AbsVal",
        Accuracy => "Accuracy",
        Argmax => "ArgMax",
        Bnll => "BNLL",
        Concat => "Concat",
        ContrastiveLoss => "ContrastiveLoss",
        Convolution => "Convolution",
        Deconvolution => "Deconvolution",
        Data => "Data",
        Dropout => "Dropout",
        DummyData => "DummyData",
        EuclideanLoss => "EuclideanLoss",
        Eltwise => "Eltwise",
        Exp => "Exp",
        Flatten => "Flatten",
        Hdf5Data => "HDF5Data",
        Hdf5Output => "HDF5Output",
        HingeLoss => "HingeLoss",
        Im2col => "Im2col",
        ImageData => "ImageData",
        InfogainLoss => "InfogainLoss",
        InnerProduct => "InnerProduct",
        Lrn => "LRN",
        MemoryData => "MemoryData",
        MultinomialLogisticLoss => "MultinomialLogisticLoss",
        Mvn => "MVN",
        Pooling => "Pooling",
        Power => "Power",
        Relu => "ReLU",
        Sigmoid => "Sigmoid",
        SigmoidCrossEntropyLoss => "SigmoidCrossEntropyLoss",
        Silence => "Silence",
        Softmax => "Softmax",
        SoftmaxLoss => "SoftmaxWithLoss",
        Split => "Split",
        Slice => "Slice",
        Tanh => "TanH",
        WindowData => "WindowData",
        Threshold => "Threshold",
        Bn => "BN",
    }
}

fn name_of(v1: &V1LayerParameter, index: usize) -> String {
    match &v1.name {
        Some(name) => format!("layer `{name}`"),
        None => format!("layers[{index}]"),
    }
}

/// The `i`th param spec of `specs`, appending empty ones up to it (Caffe's `add_param` loop).
fn spec(specs: &mut Vec<ParamSpec>, i: usize) -> &mut ParamSpec {
    if specs.len() <= i {
        specs.resize_with(i + 1, ParamSpec::default);
    }
    &mut specs[i]
}

/// Takes `$v1` apart exhaustively, so that a V1 field added to the schema cannot be dropped
/// unnoticed: the fields after `moved:` keep their name and value in the current format and
/// go into the LayerParameter `$moved`; those after `converted:` are bound for the upgrade to
/// change (`field: binding` renames one).
macro_rules! split_v1_layer {
    ($v1:expr => $moved:ident; converted: $($c:ident $(: $bind:ident)?),+; moved: $($m:ident),+ $(,)?) => {
        let V1LayerParameter { $($c $(: $bind)?,)+ $($m,)+ } = $v1;
        let $moved = LayerParameter { $($m,)+ ..Default::default() };
    };
}

/// Upgrades one V1 layer (Caffe's `UpgradeV1LayerParameter`).
pub fn layer(v1: V1LayerParameter, index: usize) -> Result<LayerParameter> {
    let here = name_of(&v1, index);
    split_v1_layer!(v1 => moved;
        converted: r#type, param: share_names, blob_share_mode, blobs_lr, weight_decay, layer: v0;
        moved: name, bottom, top, include, exclude, blobs, loss_weight, transform_param, loss_param, accuracy_param,
            argmax_param, concat_param, contrastive_loss_param, convolution_param, data_param, dropout_param,
            dummy_data_param, eltwise_param, exp_param, hdf5_data_param, hdf5_output_param, hinge_loss_param,
            image_data_param, infogain_loss_param, inner_product_param, lrn_param, memory_data_param, mvn_param,
            pooling_param, power_param, relu_param, sigmoid_param, softmax_param, slice_param, tanh_param,
            threshold_param, window_data_param,
    );
    if v0.is_some() {
        return Err(err(format!(
            "{here}: a V1 layer still holds a V0 `layer`, which has no place in the current format"
        )));
    }
    let r#type = match r#type {
        None => None,
        Some(raw) => {
            let ty = LayerType::try_from(raw).map_err(|_| err(format!("{here}: unknown V1 layer type {raw}")))?;
            Some(type_name(ty).to_string())
        }
    };
    let mut param = Vec::new();
    for (i, share_name) in share_names.into_iter().enumerate() {
        spec(&mut param, i).name = Some(share_name);
    }
    for (i, &mode) in blob_share_mode.iter().enumerate() {
        let mode = match DimCheckMode::try_from(mode) {
            Ok(DimCheckMode::Strict) => param_spec::DimCheckMode::Strict,
            Ok(DimCheckMode::Permissive) => param_spec::DimCheckMode::Permissive,
            Err(_) => return Err(err(format!("{here}: unknown blob_share_mode {mode}"))),
        };
        spec(&mut param, i).share_mode = Some(mode as i32);
    }
    for (i, &lr) in blobs_lr.iter().enumerate() {
        spec(&mut param, i).lr_mult = Some(lr);
    }
    for (i, &decay) in weight_decay.iter().enumerate() {
        spec(&mut param, i).decay_mult = Some(decay);
    }
    Ok(LayerParameter { r#type, param, ..moved })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> NetParameter {
        crate::prototxt::parse(text, "test.prototxt").expect("test net parses")
    }

    #[test]
    fn per_blob_lists_become_param_specs() {
        let mut n = net(r#"name: "n" input: "x"
            layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y"
                param: "w" blob_share_mode: PERMISSIVE
                blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 loss_weight: 0.5
                include { phase: TRAIN } exclude { stage: "deploy" }
                inner_product_param { num_output: 10 } }"#);
        upgrade(&mut n).unwrap();
        assert!(n.layers.is_empty());
        assert_eq!(n.input, ["x"], "net-level fields stay");
        let l = &n.layer[0];
        assert_eq!((l.name.as_deref(), l.r#type.as_deref()), (Some("ip"), Some("InnerProduct")));
        assert_eq!(l.param.len(), 2);
        let p0 = &l.param[0];
        assert_eq!(p0.name.as_deref(), Some("w"));
        assert_eq!(p0.share_mode, Some(param_spec::DimCheckMode::Permissive as i32));
        assert_eq!((p0.lr_mult, p0.decay_mult), (Some(1.0), Some(1.0)));
        let p1 = &l.param[1];
        assert_eq!((p1.name.as_deref(), p1.share_mode, p1.lr_mult, p1.decay_mult), (None, None, Some(2.0), Some(0.0)));
        assert_eq!(l.loss_weight, [0.5]);
        assert_eq!(l.include.len(), 1);
        assert_eq!(l.exclude[0].stage, ["deploy"]);
        assert_eq!(l.inner_product_param.as_ref().and_then(|p| p.num_output), Some(10));
    }

    #[test]
    fn type_names_follow_caffe_and_segnet() {
        assert_eq!(type_name(LayerType::SoftmaxLoss), "SoftmaxWithLoss");
        assert_eq!(type_name(LayerType::Hdf5Data), "HDF5Data");
        assert_eq!(type_name(LayerType::Tanh), "TanH");
        assert_eq!(type_name(LayerType::Bn), "BN");
        let mut n = net(r#"layers { type: NONE } layers { name: "u" }"#);
        upgrade(&mut n).unwrap();
        assert_eq!(n.layer[0].r#type.as_deref(), Some(""), "Caffe sets NONE as an empty type");
        assert_eq!(n.layer[1].r#type, None);
    }

    #[test]
    fn unknown_enum_values_are_errors() {
        let bad_type = V1LayerParameter { name: Some("x".into()), r#type: Some(99), ..Default::default() };
        let e = layer(bad_type, 0).unwrap_err().to_string();
        assert!(e.contains("layer `x`: unknown V1 layer type 99"), "{e}");
        let bad_mode = V1LayerParameter { blob_share_mode: vec![7], ..Default::default() };
        let e = layer(bad_mode, 3).unwrap_err().to_string();
        assert!(e.contains("layers[3]: unknown blob_share_mode 7"), "{e}");
    }

    #[test]
    fn fields_without_an_equivalent_are_errors() {
        let mut mixed = net(r#"layers { name: "a" type: RELU } layer { name: "b" type: "ReLU" }"#);
        let e = upgrade(&mut mixed).unwrap_err().to_string();
        assert!(e.contains("both V1 `layers` (1) and current `layer` entries (1)"), "{e}");
        let leftover =
            V1LayerParameter { name: Some("old".into()), layer: Some(Default::default()), ..Default::default() };
        let e = layer(leftover, 0).unwrap_err().to_string();
        assert!(e.contains("layer `old`: a V1 layer still holds a V0 `layer`"), "{e}");
    }
}
