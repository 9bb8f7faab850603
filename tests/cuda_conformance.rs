//! The conformance cases of `tests/conformance_layers.rs` (a small net run forward and backward
//! by real Caffe) built on the CUDA backend in strict FP32, `Cuda::with_precision(0,
//! Precision::Fp32)`, compared with Caffe's numbers within each case's tolerance: the whole
//! path of a layer on the GPU (its primitives, the net's blob handling, loss read-back).
//!
//! Every case has a test; a case whose net uses a layer type crema does not know yet says
//! SKIPPED and why (so a new family's cases join by themselves when it lands). Every test says
//! SKIPPED and passes where no GPU can be opened. Under the CUDA emulator (`tools/cuda_emu`),
//! which has no cuDNN, convolutions take crema's im2col path.

mod common;

use common::*;
use crema::backend::Storage;
use crema::backend::cuda::{ConvEngine, Cuda, CudaOptions, Precision};
use crema::layers::layer_types;
use crema::net::Net;
use crema::proto::{NetParameter, NetState, Phase};
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

static GPU: OnceLock<Result<Cuda, String>> = OnceLock::new();

/// The strict-FP32 backend on GPU 0, shared by the tests; None (after saying why) without one.
fn gpu() -> Option<Cuda> {
    let opened = GPU.get_or_init(|| {
        let g = Cuda::with_precision(0, Precision::Fp32).map_err(|e| e.to_string())?;
        if g.describe().contains("emulator") {
            return Cuda::with_options(
                0,
                CudaOptions {
                    precision: Precision::Fp32,
                    conv: ConvEngine::Im2col,
                },
            )
            .map_err(|e| e.to_string());
        }
        Ok(g)
    });
    match opened {
        Ok(g) => Some(g.clone()),
        Err(e) => {
            println!("SKIPPED: no CUDA device ({e})");
            None
        }
    }
}

/// The case's net, or the layer types in it that crema does not know.
fn read_net(path: &Path, phase: Phase) -> Result<NetParameter, Vec<String>> {
    let mut param: NetParameter = crema::prototxt::read_file(path).unwrap_or_else(|e| panic!("{e}"));
    param.state = Some(NetState {
        phase: Some(phase as i32),
        ..param.state.unwrap_or_default()
    });
    let known = layer_types();
    let mut unknown: Vec<String> = param
        .layer
        .iter()
        .map(|l| l.r#type().to_string())
        .filter(|t| !known.contains(&t.as_str()))
        .collect();
    unknown.dedup();
    if unknown.is_empty() { Ok(param) } else { Err(unknown) }
}

fn set_input<B: crema::backend::Backend>(net: &mut Net<B>, name: &str, arr: &crema::io::NpyArray) {
    let be = net.backend().clone();
    let blob = net.blob_mut(name).unwrap_or_else(|| panic!("no blob `{name}`"));
    blob.reshape(&be, &arr.shape).unwrap();
    blob.set_data(&be, &arr.data).unwrap();
}

fn run_case(name: &str) {
    let Some(g) = gpu() else { return };
    let dir = conformance_dir().join("layers").join(name);
    let case: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let phase = match case["phase"].as_str() {
        Some("TRAIN") => Phase::Train,
        Some("TEST") => Phase::Test,
        other => panic!("{name}: unknown phase {other:?}"),
    };
    let param = match read_net(&dir.join("net.prototxt"), phase) {
        Ok(p) => p,
        Err(unknown) => {
            println!(
                "SKIPPED: {name} uses layer types crema does not know yet: {}",
                unknown.join(", ")
            );
            return;
        }
    };
    let tol = Tolerance::from_json(&case["tolerance"]);
    let mut net = Net::new(g.clone(), &param, 1).unwrap_or_else(|e| panic!("{name}: {e}"));
    let weights = dir.join("weights.caffemodel");
    if weights.exists() {
        net.load_weights_files(&[weights])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
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
        failures.extend(compare(
            &format!("forward {blob}"),
            &got,
            b.shape(),
            &npy(&dir, file.as_str().unwrap()),
            tol,
        ));
    }
    let backward = !obj(&case["input_grad"]).is_empty() || !obj(&case["param_grad"]).is_empty();
    if backward {
        for (blob, file) in obj(&case["top_diff"]) {
            let arr = npy(&dir, file.as_str().unwrap());
            net.blob_mut(&blob)
                .unwrap_or_else(|| panic!("{name}: no blob `{blob}`"))
                .set_diff(&be, &arr.data)
                .unwrap();
        }
        net.clear_param_diffs().unwrap();
        net.backward().unwrap_or_else(|e| panic!("{name}: backward: {e}"));
        for (blob, file) in obj(&case["input_grad"]) {
            let b = net.blob(&blob).unwrap();
            let got = b.diff_to_vec(&be).unwrap();
            failures.extend(compare(
                &format!("input_grad {blob}"),
                &got,
                b.shape(),
                &npy(&dir, file.as_str().unwrap()),
                tol,
            ));
        }
        for (layer, files) in obj(&case["param_grad"]) {
            let li = net
                .layer_index(&layer)
                .unwrap_or_else(|| panic!("{name}: no layer `{layer}`"));
            let params = net.layer_params(li);
            let files = files.as_array().unwrap();
            assert_eq!(
                params.len(),
                files.len(),
                "{name}: layer `{layer}` has {} params",
                params.len()
            );
            for (k, (p, f)) in params.iter().zip(files).enumerate() {
                let got = p.diff_to_vec(&be).unwrap();
                failures.extend(compare(
                    &format!("param_grad {layer}[{k}]"),
                    &got,
                    p.shape(),
                    &npy(&dir, f.as_str().unwrap()),
                    tol,
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name} on {}:\n  {}",
        g.describe(),
        failures.join("\n  ")
    );
    println!("{name}: matches Caffe on {}", g.describe());
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
    accuracy,
    act_absval,
    act_bnll,
    act_elu,
    act_exp,
    act_log,
    act_power,
    act_relu,
    act_relu_inplace_chain,
    act_relu_leaky,
    act_sigmoid,
    act_tanh,
    argmax,
    batchnorm_global_stats,
    batchnorm_scale_train,
    concat_slice,
    conv_1x1_stride2,
    conv_basic,
    conv_dilation_nobias,
    conv_stride_pad_group_rect,
    crop_reshape_flatten,
    deconv,
    dropout_test,
    eltwise,
    euclidean_loss,
    innerproduct,
    innerproduct_transpose_axis2,
    lenet,
    lrn_across,
    lrn_within,
    pool_ave_pad,
    pool_global,
    pool_max_2x2_odd,
    pool_max_ceil_mask,
    prelu,
    scale_bias_two_bottoms,
    segnet_bn_learn,
    segnet_upsample,
    segnet_weighted_softmax_loss,
    shared_params,
    sigmoid_xent_loss,
    softmax,
    softmax_loss_batch_size,
    softmax_loss_full,
    softmax_loss_none,
    softmax_loss_valid,
    softmax_loss_weighted_2,
    state_filter,
    threshold,
    tile_reduction,
);
