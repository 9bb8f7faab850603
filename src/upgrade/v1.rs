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

/// Upgrades one V1 layer (Caffe's `UpgradeV1LayerParameter`).
pub fn layer(v1: V1LayerParameter, index: usize) -> Result<LayerParameter> {
    let here = name_of(&v1, index);
    // Exhaustive, so that a V1 field added to the schema cannot be dropped unnoticed.
    let V1LayerParameter {
        bottom, top, name, include, exclude, r#type, blobs, param: share_names, blob_share_mode,
        blobs_lr, weight_decay, loss_weight, accuracy_param, argmax_param, concat_param,
        contrastive_loss_param, convolution_param, data_param, dropout_param, dummy_data_param,
        eltwise_param, exp_param, hdf5_data_param, hdf5_output_param, hinge_loss_param,
        image_data_param, infogain_loss_param, inner_product_param, lrn_param, memory_data_param,
        mvn_param, pooling_param, power_param, relu_param, sigmoid_param, softmax_param,
        slice_param, tanh_param, threshold_param, window_data_param, transform_param, loss_param,
        layer: v0,
    } = v1;
    if v0.is_some() {
        return Err(err(format!(
            "{here}: a V1 layer still holds a V0 `layer`, which has no place in the current format"
        )));
    }
    let r#type = match r#type {
        Option::None => Option::None,
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
    Ok(LayerParameter {
        name, r#type, bottom, top, loss_weight, param, blobs, include, exclude, transform_param,
        loss_param, accuracy_param, argmax_param, concat_param, contrastive_loss_param,
        convolution_param, data_param, dropout_param, dummy_data_param, eltwise_param, exp_param,
        hdf5_data_param, hdf5_output_param, hinge_loss_param, image_data_param,
        infogain_loss_param, inner_product_param, lrn_param, memory_data_param, mvn_param,
        pooling_param, power_param, relu_param, sigmoid_param, softmax_param, slice_param,
        tanh_param, threshold_param, window_data_param,
        ..Default::default()
    })
}
