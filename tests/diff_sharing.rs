//! Diff sharing (blobs taking turns with pooled gradient buffers in backward), with data
//! sharing (the same for values; tests/data_sharing.rs has its own), must not change a number:
//! training through the solver gives bit-identical weights with and without them, and every
//! conformance layer case gives bit-identical gradients; and diff sharing must save memory.

mod common;

use common::*;
use crema::backend::cpu::Cpu;
use crema::backend::cuda::{ConvEngine, Cuda, CudaOptions, Precision};
use crema::backend::Backend;
use crema::net::Net;
use crema::proto::{NetParameter, Phase};
use crema::solver::Solver;
use serde_json::Value;

/// Branches, SegNet's pieces and the cases where a diff is read before anyone writes it:
/// - `c1` (in place through BN, ReLU and Dropout) feeds five layers through a Split;
/// - `b` feeds a Concat and a second loss, `d` an Eltwise and a Crop;
/// - `conv_side` does not propagate to its bottom (a Split top no one writes: Caffe's zeros);
/// - Slice's `unused` top is a net output no one writes, read by Slice's backward;
/// - the pooling mask feeds Upsample, which takes no gradient for it;
/// - Crop takes no gradient for its reference `r`, whose producer reads its diff (zeros);
/// - the scored loss has loss_weight 2, the Euclidean loss 0.5, a Reduction 0.01.
const BRANCHY: &str = r#"
name: "branchy"
layer { name: "data" type: "Input" top: "data" top: "label" top: "target"
  input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 dim: 1 dim: 8 dim: 8 } shape { dim: 2 dim: 2 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "bn1" type: "BN" bottom: "c1" top: "c1"
  bn_param { bn_mode: LEARN scale_filler { type: "constant" value: 1 } shift_filler { type: "constant" value: 0.01 } } }
layer { name: "relu1" type: "ReLU" bottom: "c1" top: "c1" }
layer { name: "drop1" type: "Dropout" bottom: "c1" top: "c1" dropout_param { dropout_ratio: 0.25 } }
layer { name: "pool1" type: "Pooling" bottom: "c1" top: "p1" top: "p1_mask" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv_p" type: "Convolution" bottom: "p1" top: "cp"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "up1" type: "Upsample" bottom: "cp" bottom: "p1_mask" top: "u1" upsample_param { scale: 2 } }
layer { name: "conv_a" type: "Convolution" bottom: "c1" top: "a"
  convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "conv_b" type: "Convolution" bottom: "c1" top: "b"
  convolution_param { num_output: 2 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "conv_side" type: "Convolution" bottom: "c1" top: "side" propagate_down: false
  convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" bottom: "side" top: "cat" }
layer { name: "slice" type: "Slice" bottom: "cat" top: "s_main" top: "unused" slice_param { axis: 1 slice_point: 6 } }
layer { name: "conv_d" type: "Convolution" bottom: "s_main" top: "d"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "conv_r" type: "Convolution" bottom: "c1" top: "r"
  convolution_param { num_output: 2 kernel_size: 1 stride: 2 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "crop" type: "Crop" bottom: "d" bottom: "r" top: "dc" crop_param { axis: 2 offset: 1 } }
layer { name: "red" type: "Reduction" bottom: "dc" top: "red" loss_weight: 0.01 reduction_param { operation: SUMSQ } }
layer { name: "sum" type: "Eltwise" bottom: "u1" bottom: "d" top: "e" eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }
layer { name: "scale" type: "Scale" bottom: "e" top: "e" scale_param { bias_term: true } }
layer { name: "relu_e" type: "ReLU" bottom: "e" top: "e" }
layer { name: "score" type: "Convolution" bottom: "e" top: "score"
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" loss_weight: 2 }
layer { name: "loss_b" type: "EuclideanLoss" bottom: "b" bottom: "target" top: "loss_b" loss_weight: 0.5 }
"#;

/// A plain chain: eight 3x3 convolutions with in-place ReLUs, then a Euclidean loss.
fn chain_net(force_backward: bool) -> String {
    let mut s = String::from(
        r#"name: "chain"
layer { name: "data" type: "Input" top: "data" top: "target"
  input_param { shape { dim: 2 dim: 4 dim: 16 dim: 16 } shape { dim: 2 dim: 1 dim: 16 dim: 16 } } }
"#,
    );
    if force_backward {
        s = format!("force_backward: true\n{s}");
    }
    let mut bottom = "data".to_string();
    for k in 1..=8 {
        s += &format!(
            r#"layer {{ name: "conv{k}" type: "Convolution" bottom: "{bottom}" top: "c{k}"
  convolution_param {{ num_output: 8 kernel_size: 3 pad: 1 weight_filler {{ type: "msra" }} }} }}
layer {{ name: "relu{k}" type: "ReLU" bottom: "c{k}" top: "c{k}" }}
"#
        );
        bottom = format!("c{k}");
    }
    s += r#"layer { name: "out" type: "Convolution" bottom: "c8" top: "out"
  convolution_param { num_output: 1 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "out" bottom: "target" top: "loss" }
"#;
    s
}

fn net_param(text: &str) -> NetParameter {
    crema::prototxt::parse(text, "net.prototxt").unwrap_or_else(|e| panic!("{e}"))
}

/// How a solver's train net handles diffs and data.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Every blob keeps its diff and data.
    Owned,
    Shared,
    /// Shared, and every lent buffer that is not zeroed is filled with a huge value first.
    Poisoned,
}

fn solver(net: &str, mode: Mode, iter_size: i32, base_lr: f32) -> Solver<Cpu> {
    solver_on(Cpu::new(), net, mode, iter_size, base_lr)
}

fn solver_on<B: Backend>(be: B, net: &str, mode: Mode, iter_size: i32, base_lr: f32) -> Solver<B> {
    let mut s = Solver::new(be.clone(), sgd_param(net_param(net), base_lr, iter_size)).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.net().shares_diffs() && s.net().shares_data(), "the solver's train net shares diffs and data");
    let net = s.net_mut();
    match mode {
        Mode::Owned => {
            net.set_diff_sharing(false, &[]).unwrap();
            net.set_data_sharing(false, &[]).unwrap();
        }
        Mode::Shared => {}
        Mode::Poisoned => {
            net.poison_shared_diffs(true);
            net.poison_shared_data(true);
        }
    }
    fill_inputs(s.net_mut());
    s
}

/// Trains `iters` iterations in each mode and checks the weights and losses agree to the bit.
fn train_alike(net: &str, iters: u64, iter_size: i32, base_lr: f32) {
    train_alike_on(Cpu::new(), net, iters, iter_size, base_lr);
}

fn train_alike_on<B: Backend>(be: B, net: &str, iters: u64, iter_size: i32, base_lr: f32) {
    let mut runs = Vec::new();
    for mode in [Mode::Owned, Mode::Shared, Mode::Poisoned] {
        let mut s = solver_on(be.clone(), net, mode, iter_size, base_lr);
        let mut losses = Vec::new();
        for _ in 0..iters {
            s.step(1).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            losses.push(s.smoothed_loss().to_bits());
        }
        let w = weight_bits(&s);
        assert!(w.iter().flatten().all(|&b| f32::from_bits(b).is_finite()), "{mode:?}: weights not finite");
        runs.push((mode, losses, w));
    }
    let (_, losses0, w0) = &runs[0];
    for (mode, losses, w) in &runs[1..] {
        assert_eq!(losses, losses0, "{mode:?}: losses differ from owned diffs");
        for (k, (a, b)) in w.iter().zip(w0).enumerate() {
            assert!(a == b, "{mode:?}: learnable blob {k} differs from training with owned diffs");
        }
    }
    // Training moved the weights (a net whose gradients vanished would pass vacuously).
    let fresh = weight_bits(&solver_on(be, net, Mode::Owned, iter_size, base_lr));
    assert_ne!(fresh, *w0, "training did not change the weights");
}

#[test]
fn branchy_net_trains_identically_with_shared_diffs() {
    train_alike(BRANCHY, 4, 1, 0.05);
}

#[test]
fn branchy_net_with_force_backward_and_iter_size_trains_identically() {
    train_alike(&format!("force_backward: true\n{BRANCHY}"), 3, 2, 0.05);
}

/// The CUDA backend in strict FP32 (convolutions on cuDNN, or im2col with
/// `CREMA_CONV_ENGINE=im2col`); None, after saying so, where no GPU can be opened.
fn gpu() -> Option<Cuda> {
    let opened = Cuda::with_options(0, CudaOptions { precision: Precision::Fp32, conv: conv_engine(ConvEngine::Cudnn), ..CudaOptions::default() });
    match opened {
        Ok(g) => Some(g),
        Err(e) => {
            println!("SKIPPED: no CUDA device ({e})");
            None
        }
    }
}

#[test]
fn branchy_net_trains_identically_with_shared_diffs_on_cuda() {
    let Some(g) = gpu() else { return };
    train_alike_on(g.clone(), BRANCHY, 3, 1, 0.05);
    train_alike_on(g, &format!("force_backward: true\n{BRANCHY}"), 2, 2, 0.05);
}

#[test]
fn chain_trains_identically_with_shared_diffs() {
    train_alike(&chain_net(false), 3, 1, 0.001);
}

#[test]
fn chain_plan_keeps_two_diffs_of_eight() {
    let s = solver(&chain_net(false), Mode::Shared, 1, 0.001);
    let mem = s.net().diff_memory();
    let (data, target, conv, out, loss) = (2 * 4 * 16 * 16, 2 * 16 * 16, 2 * 8 * 16 * 16, 2 * 16 * 16, 1);
    assert_eq!(mem.owned, 4 * (data + target + 8 * conv + out + loss));
    // The inputs and the loss keep their own; c1..c8 alternate between two buffers (each is
    // live from its consumer's backward to its producer's, overlapping its neighbours only),
    // and `out` fits in the one c8 does not use.
    assert_eq!(mem.shared, 4 * (data + target + loss + 2 * conv));
    assert!(mem.shared * 3 < mem.owned, "{mem:?}");
    // An unshared net reports the same plan.
    let owned = solver(&chain_net(false), Mode::Owned, 1, 0.001);
    assert_eq!(owned.net().diff_memory(), mem);
}

#[test]
fn shared_diffs_cannot_be_read_after_backward_but_kept_ones_can() {
    let mut s = solver(&chain_net(true), Mode::Shared, 1, 0.001);
    s.step(1).unwrap();
    let be = Cpu::new();
    let net = s.net();
    let c4 = net.blob("c4").unwrap();
    assert!(c4.diff_is_shared());
    let err = c4.diff_to_vec(&be).unwrap_err().to_string();
    assert!(err.contains("shared"), "{err}");
    // The inputs keep theirs (force_backward writes the data gradient), as do loss tops.
    let data = net.blob("data").unwrap();
    assert!(!data.diff_is_shared());
    assert!(data.diff_to_vec(&be).unwrap().iter().any(|&v| v != 0.0));
    assert_eq!(net.blob("loss").unwrap().diff_to_vec(&be).unwrap(), vec![1.0]);

    let net = s.net_mut();
    let err = net.set_diff_sharing(true, &["nope"]).unwrap_err().to_string();
    assert!(err.contains("`nope`"), "{err}");
    net.set_diff_sharing(true, &["c4"]).unwrap();
    assert!(!net.blob("c4").unwrap().diff_is_shared());
    net.forward().unwrap();
    net.backward().unwrap();
    assert!(net.blob("c4").unwrap().diff_to_vec(&be).unwrap().iter().any(|&v| v != 0.0));
    net.set_diff_sharing(false, &[]).unwrap();
    assert!(!net.shares_diffs() && !net.blob("c7").unwrap().diff_is_shared());
}

/// Runs conformance layer case `name` forward and backward as its test does; returns the
/// gradients it checks (input and parameter diffs), as bits.
fn case_gradients(name: &str, share: bool) -> Vec<(String, Vec<u32>)> {
    let dir = conformance_dir().join("layers").join(name);
    let case: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let phase = if case["phase"].as_str() == Some("TRAIN") { Phase::Train } else { Phase::Test };
    let mut net: Net<Cpu> = build_net(&dir.join("net.prototxt"), phase);
    let obj = |v: &Value| v.as_object().cloned().unwrap_or_default();
    let (top_diff, input_grad) = (obj(&case["top_diff"]), obj(&case["input_grad"]));
    if share {
        let keep: Vec<&str> = top_diff.keys().chain(input_grad.keys()).map(String::as_str).collect();
        net.set_diff_sharing(true, &keep).unwrap_or_else(|e| panic!("{name}: {e}"));
        net.poison_shared_diffs(true);
        net.set_data_sharing(true, &keep).unwrap_or_else(|e| panic!("{name}: {e}"));
        net.poison_shared_data(true);
    }
    let weights = dir.join("weights.caffemodel");
    if weights.exists() {
        net.load_weights_files(&[weights]).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let be = net.backend().clone();
    for (blob, file) in obj(&case["inputs"]) {
        set_input(&mut net, &blob, &npy(&dir, file.as_str().unwrap()));
    }
    let mut out = Vec::new();
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    // Twice: the second pass lends buffers that already held other blobs' gradients.
    for pass in 0..2 {
        net.forward().unwrap_or_else(|e| panic!("{name}: forward: {e}"));
        if input_grad.is_empty() && obj(&case["param_grad"]).is_empty() {
            return out;
        }
        if share {
            // Kept diffs are owned, so not poisoned by the pool: poison those a layer says it
            // writes whole, so that one leaving part of a bottom diff unwritten shows too.
            let poisoned: Vec<&String> =
                input_grad.keys().filter(|b| !top_diff.contains_key(*b) && written(&net, b)).collect();
            for blob in poisoned {
                let b = net.blob_mut(blob).unwrap();
                let n = b.count();
                b.set_diff(&be, &vec![1.0e30; n]).unwrap();
            }
        }
        for (blob, file) in &top_diff {
            let arr = npy(&dir, file.as_str().unwrap());
            net.blob_mut(blob).unwrap().set_diff(&be, &arr.data).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        if share && pass == 1 {
            // What data sharing relies on: backward does not read the values a layer says it
            // does not (the inputs are set again for no later pass).
            for b in unread_in_backward(&net) {
                let name = net.blob_name(b).to_string();
                let blob = net.blob_mut(&name).unwrap();
                if !blob.data_is_shared() {
                    let n = blob.count();
                    blob.set_data(&be, &vec![1.0e30; n]).unwrap();
                }
            }
        }
        net.clear_param_diffs().unwrap();
        net.backward().unwrap_or_else(|e| panic!("{name}: backward (shared {share}): {e}"));
        for blob in input_grad.keys() {
            out.push((format!("pass {pass} input_grad {blob}"), bits(net.blob(blob).unwrap().diff_to_vec(&be).unwrap())));
        }
        for (i, p) in net.params().iter().enumerate() {
            out.push((format!("pass {pass} param {i}"), bits(p.diff_to_vec(&be).unwrap())));
        }
    }
    out
}

/// The blobs whose values no layer's backward reads, by the layers' own account
/// ([`crema::layers::Layer::backward_reads_bottom`] and `backward_reads_top`).
fn unread_in_backward(net: &Net<Cpu>) -> Vec<usize> {
    let mut read = vec![false; net.blobs().len()];
    for l in net.layers().iter().filter(|l| l.need_backward && l.fused_into.is_none()) {
        l.bottoms.iter().enumerate().filter(|&(k, _)| l.layer.backward_reads_bottom(k)).for_each(|(_, &b)| read[b] = true);
        l.tops.iter().enumerate().filter(|&(j, _)| l.layer.backward_reads_top(j)).for_each(|(_, &t)| read[t] = true);
    }
    (0..read.len()).filter(|&b| !read[b]).collect()
}

/// Whether a layer's backward writes the whole diff of blob `name` (as a propagated bottom).
fn written(net: &Net<Cpu>, name: &str) -> bool {
    let i = net.blob_index(name).unwrap();
    net.layers().iter().any(|l| {
        l.need_backward
            && l.bottoms.iter().enumerate().any(|(k, &b)| b == i && l.bottom_need_backward[k] && l.layer.writes_bottom_diff(k))
    })
}

#[test]
fn every_layer_case_gives_the_same_gradients_with_shared_diffs_and_data() {
    let mut checked = 0;
    for name in case_names("layers") {
        let owned = case_gradients(&name, false);
        let shared = case_gradients(&name, true);
        assert_eq!(owned.len(), shared.len(), "{name}");
        for ((what, a), (_, b)) in owned.iter().zip(&shared) {
            assert!(a == b, "{name}: {what} differs with shared diffs");
        }
        checked += usize::from(!owned.is_empty());
    }
    assert!(checked >= 20, "only {checked} layer cases ran backward");
}
