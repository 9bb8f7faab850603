//! Every case under ../shared/conformance/layers: a small net run forward and backward by
//! real Caffe; crema must reproduce its outputs and gradients within the case's tolerance.

mod common;

use common::*;
use crema::proto::Phase;
use serde_json::Value;

fn run_case(name: &str) {
    let dir = conformance_dir().join("layers").join(name);
    let case: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let phase = match case["phase"].as_str() {
        Some("TRAIN") => Phase::Train,
        Some("TEST") => Phase::Test,
        other => panic!("{name}: unknown phase {other:?}"),
    };
    let tol = Tolerance::from_json(&case["tolerance"]);
    let mut net = build_net(&dir.join("net.prototxt"), phase);
    let weights = dir.join("weights.caffemodel");
    if weights.exists() {
        net.load_weights_files(&[weights]).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let be = net.backend().clone();
    let obj = |v: &Value| v.as_object().cloned().unwrap_or_default();
    for (blob, file) in obj(&case["inputs"]) {
        set_input(&mut net, &blob, &npy(&dir, file.as_str().unwrap()));
    }
    net.forward().unwrap_or_else(|e| panic!("{name}: forward: {e}"));
    let mut failures = Vec::new();
    for (blob, file) in obj(&case["forward"]) {
        let b = net.blob(&blob).unwrap_or_else(|| panic!("{name}: no blob `{blob}`"));
        let got = b.data_to_vec(&be).unwrap();
        failures.extend(compare(&format!("forward {blob}"), &got, b.shape(), &npy(&dir, file.as_str().unwrap()), tol));
    }
    let backward = !obj(&case["input_grad"]).is_empty() || !obj(&case["param_grad"]).is_empty();
    if backward {
        for (blob, file) in obj(&case["top_diff"]) {
            let arr = npy(&dir, file.as_str().unwrap());
            net.blob_mut(&blob).unwrap_or_else(|| panic!("{name}: no blob `{blob}`")).set_diff(&be, &arr.data).unwrap();
        }
        net.clear_param_diffs().unwrap();
        net.backward().unwrap_or_else(|e| panic!("{name}: backward: {e}"));
        for (blob, file) in obj(&case["input_grad"]) {
            let b = net.blob(&blob).unwrap();
            let got = b.diff_to_vec(&be).unwrap();
            failures.extend(compare(&format!("input_grad {blob}"), &got, b.shape(), &npy(&dir, file.as_str().unwrap()), tol));
        }
        for (layer, files) in obj(&case["param_grad"]) {
            let li = net.layer_index(&layer).unwrap_or_else(|| panic!("{name}: no layer `{layer}`"));
            let params = net.layer_params(li);
            let files = files.as_array().unwrap();
            assert_eq!(params.len(), files.len(), "{name}: layer `{layer}` has {} params", params.len());
            for (k, (p, f)) in params.iter().zip(files).enumerate() {
                let got = p.diff_to_vec(&be).unwrap();
                failures.extend(compare(&format!("param_grad {layer}[{k}]"), &got, p.shape(), &npy(&dir, f.as_str().unwrap()), tol));
            }
        }
    }
    assert!(failures.is_empty(), "{name}:\n  {}", failures.join("\n  "));
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        $( #[test] fn $case() { run_case(stringify!($case)); } )*
        /// Every case folder has a test above, so a new case cannot go unchecked.
        #[test]
        fn every_case_folder_is_listed() {
            let listed: Vec<&str> = vec![$(stringify!($case)),*];
            assert_eq!(case_names("layers"), listed);
        }
    };
}

cases!(
    accuracy, act_absval, act_bnll, act_elu, act_exp, act_log, act_power, act_relu, act_relu_inplace_chain,
    act_relu_leaky, act_sigmoid, act_tanh, argmax, batchnorm_global_stats, batchnorm_scale_train, concat_slice,
    conv_1x1_stride2, conv_basic, conv_dilation_nobias, conv_stride_pad_group_rect, crop_reshape_flatten, deconv,
    dropout_test, eltwise, euclidean_loss, innerproduct, innerproduct_transpose_axis2, lenet, lrn_across, lrn_within,
    pool_ave_pad, pool_global, pool_max_2x2_odd, pool_max_ceil_mask, prelu, scale_bias_two_bottoms, segnet_bn_learn,
    segnet_upsample, segnet_weighted_softmax_loss, shared_params, sigmoid_xent_loss, softmax, softmax_loss_batch_size,
    softmax_loss_full, softmax_loss_none, softmax_loss_valid, softmax_loss_weighted_2, state_filter, threshold,
    tile_reduction,
);
