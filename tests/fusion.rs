//! Layer fusion (an in-place ReLU run inside the BN before it) must not change a number:
//! training through the solver gives bit-identical losses and weights with and without it, on
//! the CPU and on the CUDA backend; and it fuses exactly the pairs it may.

mod common;

use common::conformance::strict_fp32_gpu;
use common::weight_bits;
use crema::backend::cpu::Cpu;
use crema::backend::Backend;
use crema::net::Net;
use crema::proto::NetParameter;
use crema::solver::Solver;

/// Every kind of pair, fusable or not:
/// - `bn1`+`relu1`: SegNet's in-place pair;
/// - `relu3` has a positive slope, and `relu3b` a negative one (an in-place ReLU's backward
///   reads its own output, which then differs in sign from its input);
/// - `relu8`'s top carries a loss weight, which goes to the split after it: fusable;
/// - none of these fuse: `bn2` writes a new top, on which `relu2` runs in place (the ReLU's
///   bottom diff would be left in that top's diff, where fused it is not); `relu4` is not in
///   place, `relu5` follows a BN in INFERENCE mode, `relu6` a Scale, `relu7` a convolution;
///   `relu9`'s blob is written again later (its gradient in Caffe then depends on what `bn9b`
///   wrote); `relu10`'s top is itself a loss.
const NET: &str = r#"
name: "fusion"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 dim: 1 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "bn1" type: "BN" bottom: "c1" top: "c1"
  bn_param { bn_mode: LEARN scale_filler { type: "constant" value: 1 } shift_filler { type: "constant" value: 0.01 } } }
layer { name: "relu1" type: "ReLU" bottom: "c1" top: "c1" }
layer { name: "conv2" type: "Convolution" bottom: "c1" top: "c2"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn2" type: "BN" bottom: "c2" top: "b2"
  bn_param { bn_mode: LEARN scale_filler { type: "gaussian" std: 1 } shift_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu2" type: "ReLU" bottom: "b2" top: "b2" }
layer { name: "conv3" type: "Convolution" bottom: "b2" top: "c3"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn3" type: "BN" bottom: "c3" top: "c3"
  bn_param { bn_mode: LEARN scale_filler { type: "gaussian" std: 1 } shift_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu3" type: "ReLU" bottom: "c3" top: "c3" relu_param { negative_slope: 0.2 } }
layer { name: "conv3b" type: "Convolution" bottom: "c3" top: "c3b"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn3b" type: "BN" bottom: "c3b" top: "c3b"
  bn_param { bn_mode: LEARN scale_filler { type: "gaussian" std: 1 } shift_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu3b" type: "ReLU" bottom: "c3b" top: "c3b" relu_param { negative_slope: -0.3 } }
layer { name: "conv4" type: "Convolution" bottom: "c3b" top: "c4"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn4" type: "BN" bottom: "c4" top: "c4"
  bn_param { bn_mode: LEARN scale_filler { type: "constant" value: 1 } shift_filler { type: "constant" value: 0 } } }
layer { name: "relu4" type: "ReLU" bottom: "c4" top: "r4" }
layer { name: "bn5" type: "BN" bottom: "r4" top: "r4"
  bn_param { bn_mode: INFERENCE scale_filler { type: "constant" value: 0.9 } shift_filler { type: "constant" value: -0.1 } } }
layer { name: "relu5" type: "ReLU" bottom: "r4" top: "r4" }
layer { name: "scale6" type: "Scale" bottom: "r4" top: "r4" scale_param { bias_term: true } }
layer { name: "relu6" type: "ReLU" bottom: "r4" top: "r4" }
layer { name: "conv7" type: "Convolution" bottom: "r4" top: "c7"
  convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu7" type: "ReLU" bottom: "c7" top: "c7" }
layer { name: "bn8" type: "BN" bottom: "c7" top: "c7"
  bn_param { bn_mode: LEARN scale_filler { type: "constant" value: 1 } shift_filler { type: "constant" value: 0 } } }
layer { name: "relu8" type: "ReLU" bottom: "c7" top: "c7" loss_weight: 0.001 }
layer { name: "conv9" type: "Convolution" bottom: "c7" top: "c9"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn9" type: "BN" bottom: "c9" top: "c9"
  bn_param { bn_mode: LEARN scale_filler { type: "gaussian" std: 1 } shift_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu9" type: "ReLU" bottom: "c9" top: "c9" }
layer { name: "bn9b" type: "BN" bottom: "c9" top: "c9"
  bn_param { bn_mode: LEARN scale_filler { type: "gaussian" std: 1 } shift_filler { type: "gaussian" std: 0.5 } } }
layer { name: "bn10" type: "BN" bottom: "c9" top: "t10"
  bn_param { bn_mode: LEARN scale_filler { type: "constant" value: 1 } shift_filler { type: "constant" value: 0 } } }
layer { name: "relu10" type: "ReLU" bottom: "t10" top: "t10" loss_weight: 0.001 }
layer { name: "score" type: "Convolution" bottom: "c9" top: "score"
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
"#;

/// How the solver's train net runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Unfused,
    Fused,
    /// Fused, and every lent diff buffer that is not zeroed is filled with a huge value first
    /// (a fused backward reading a diff it should not would show).
    FusedPoisoned,
}

fn solver<B: Backend>(be: B, mode: Mode) -> Solver<B> {
    let net: NetParameter = crema::prototxt::parse(NET, "fusion.prototxt").unwrap_or_else(|e| panic!("{e}"));
    let mut s = Solver::new(be, common::sgd_param(net, 0.05, 1)).unwrap_or_else(|e| panic!("{e}"));
    s.net_mut().set_fusion(mode != Mode::Unfused).unwrap();
    s.net_mut().poison_shared_diffs(mode == Mode::FusedPoisoned);
    common::fill_inputs(s.net_mut());
    s
}

/// The layers the net runs inside another, as (ReLU, host) names.
fn fused<B: Backend>(net: &Net<B>) -> Vec<(String, String)> {
    let layers = net.layers();
    layers.iter().filter_map(|l| l.fused_into.map(|h| (l.name().to_string(), layers[h].name().to_string()))).collect()
}

/// Every blob's data and diff, as bits, after a forward and backward with data and diffs of
/// their own.
fn blob_bits<B: Backend>(s: &mut Solver<B>) -> Vec<(String, Vec<u32>, Vec<u32>)> {
    let be = s.backend().clone();
    let net = s.net_mut();
    net.set_diff_sharing(false, &[]).unwrap();
    net.set_data_sharing(false, &[]).unwrap();
    net.forward().unwrap();
    net.backward().unwrap();
    let to_bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    (0..net.blobs().len())
        .map(|i| {
            let b = &net.blobs()[i];
            (net.blob_name(i).to_string(), to_bits(b.data_to_vec(&be).unwrap()), to_bits(b.diff_to_vec(&be).unwrap()))
        })
        .collect()
}

/// Trains 4 iterations fused and not (with shared diffs, as the solver runs); the losses and
/// weights agree to the bit, and training moved the weights. Then every blob's data and diff
/// agree after one more pass: what a user dumps is the same.
fn trains_alike<B: Backend>(be: B) {
    let run = |mode: Mode| {
        let mut s = solver(be.clone(), mode);
        let mut losses = Vec::new();
        for _ in 0..4 {
            s.step(1).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            losses.push(s.smoothed_loss().to_bits());
        }
        (losses, weight_bits(&s), blob_bits(&mut s))
    };
    let plain = run(Mode::Unfused);
    for mode in [Mode::Fused, Mode::FusedPoisoned] {
        let fused = run(mode);
        assert_eq!(fused.0, plain.0, "{mode:?}: losses differ");
        assert!(fused.1 == plain.1, "{mode:?}: weights differ");
        for ((name, data, diff), (_, want_data, want_diff)) in fused.2.iter().zip(&plain.2) {
            assert!(data == want_data, "{mode:?}: the data of blob `{name}` differs");
            assert!(diff == want_diff, "{mode:?}: the diff of blob `{name}` differs");
        }
    }
    assert_ne!(weight_bits(&solver(be, Mode::Unfused)), plain.1, "training did not change the weights");
}

#[test]
fn exactly_the_in_place_relus_after_learning_bns_fuse() {
    let s = solver(Cpu::new(), Mode::Fused);
    let want: Vec<(String, String)> =
        [("relu1", "bn1"), ("relu3", "bn3"), ("relu3b", "bn3b"), ("relu8", "bn8")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(fused(s.net()), want);
    let mut s = solver(Cpu::new(), Mode::Unfused);
    assert!(fused(s.net()).is_empty());
    s.net_mut().set_fusion(true).unwrap();
    assert_eq!(fused(s.net()), want);
}

#[test]
fn fused_and_unfused_nets_train_to_the_same_bits() {
    trains_alike(Cpu::new());
}

#[test]
fn fused_and_unfused_nets_train_to_the_same_bits_on_cuda() {
    let Some(g) = strict_fp32_gpu() else { return };
    trains_alike(g);
}

