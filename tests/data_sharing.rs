//! Data sharing (blobs whose values are never needed at the same time taking turns with pooled
//! buffers) must not change a number: training through the solver gives bit-identical losses
//! and weights with and without it, fused or not, on the CPU and on CUDA; a forward-only net
//! gives the same outputs. And it must lend exactly the memory SegNet allows.

mod common;

use common::conformance::strict_fp32_gpu;
use common::{fill_inputs, sgd_param, weight_bits};
use crema::backend::cpu::Cpu;
use crema::backend::Backend;
use crema::net::{Net, NetOptions};
use crema::proto::{NetParameter, NetState, Phase};
use crema::solver::Solver;

/// SegNet in small: conv+BN+ReLU pairs, max pooling with masks, upsampling through them, a
/// scored loss and an accuracy reading the same scores. `c1b` and `c2` feed only a pooling,
/// `c3` and `d2` only an upsampling's data input: their values die in forward.
const SEGNET_MINI: &str = r#"
name: "segnet_mini"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 2 dim: 3 dim: 16 dim: 16 } shape { dim: 2 dim: 1 dim: 16 dim: 16 } } }
layer { name: "conv1a" type: "Convolution" bottom: "data" top: "c1a"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "bn1a" type: "BN" bottom: "c1a" top: "c1a"
  bn_param { bn_mode: LEARN scale_filler { type: "constant" value: 1 } shift_filler { type: "constant" value: 0.01 } } }
layer { name: "relu1a" type: "ReLU" bottom: "c1a" top: "c1a" }
layer { name: "conv1b" type: "Convolution" bottom: "c1a" top: "c1b"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn1b" type: "BN" bottom: "c1b" top: "c1b"
  bn_param { bn_mode: LEARN scale_filler { type: "gaussian" std: 1 } shift_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu1b" type: "ReLU" bottom: "c1b" top: "c1b" }
layer { name: "pool1" type: "Pooling" bottom: "c1b" top: "p1" top: "p1_mask" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "p1" top: "c2"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn2" type: "BN" bottom: "c2" top: "c2"
  bn_param { bn_mode: LEARN scale_filler { type: "gaussian" std: 1 } shift_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu2" type: "ReLU" bottom: "c2" top: "c2" }
layer { name: "pool2" type: "Pooling" bottom: "c2" top: "p2" top: "p2_mask" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "p2" top: "c3"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn3" type: "BN" bottom: "c3" top: "c3"
  bn_param { bn_mode: LEARN scale_filler { type: "gaussian" std: 1 } shift_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu3" type: "ReLU" bottom: "c3" top: "c3" relu_param { negative_slope: 0.1 } }
layer { name: "up2" type: "Upsample" bottom: "c3" bottom: "p2_mask" top: "u2" upsample_param { scale: 2 } }
layer { name: "conv2d" type: "Convolution" bottom: "u2" top: "d2"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn2d" type: "BN" bottom: "d2" top: "d2"
  bn_param { bn_mode: LEARN scale_filler { type: "gaussian" std: 1 } shift_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu2d" type: "ReLU" bottom: "d2" top: "d2" }
layer { name: "up1" type: "Upsample" bottom: "d2" bottom: "p1_mask" top: "u1" upsample_param { scale: 2 } }
layer { name: "conv1d" type: "Convolution" bottom: "u1" top: "d1"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn1d" type: "BN" bottom: "d1" top: "d1"
  bn_param { bn_mode: LEARN scale_filler { type: "gaussian" std: 1 } shift_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu1d" type: "ReLU" bottom: "d1" top: "d1" }
layer { name: "score" type: "Convolution" bottom: "d1" top: "score"
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "score" bottom: "label" top: "acc" }
"#;

/// How the solver's train net runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Every blob keeps its values (Caffe's layout).
    Owned,
    Shared,
    /// Shared, and every lent data and diff buffer is filled with a huge value first.
    Poisoned,
}

fn net_param(text: &str) -> NetParameter {
    crema::prototxt::parse(text, "segnet_mini.prototxt").unwrap_or_else(|e| panic!("{e}"))
}

fn solver<B: Backend>(be: B, mode: Mode, fuse: bool, iter_size: i32) -> Solver<B> {
    let mut s = Solver::new(be, sgd_param(net_param(SEGNET_MINI), 0.05, iter_size)).unwrap_or_else(|e| panic!("{e}"));
    let net = s.net_mut();
    assert!(net.shares_data(), "the solver's train net shares data");
    net.set_fusion(fuse).unwrap();
    match mode {
        Mode::Owned => net.set_data_sharing(false, &[]).unwrap(),
        Mode::Shared => {}
        Mode::Poisoned => {
            net.poison_shared_data(true);
            net.poison_shared_diffs(true);
        }
    }
    fill_inputs(net);
    s
}

/// The names of the blobs whose data is lent.
fn lent<B: Backend>(net: &Net<B>) -> Vec<String> {
    (0..net.blobs().len()).filter(|&i| net.blobs()[i].data_is_shared()).map(|i| net.blob_name(i).to_string()).collect()
}

/// Trains 3 iterations in every mode, fused and not; losses (and the accuracy output) and
/// weights agree to the bit with owned data, and training moved the weights.
fn trains_alike<B: Backend>(be: B, iter_size: i32) {
    for fuse in [true, false] {
        let run = |mode: Mode| {
            let mut s = solver(be.clone(), mode, fuse, iter_size);
            let mut seen = Vec::new();
            for _ in 0..3 {
                s.step(1).unwrap_or_else(|e| panic!("{mode:?} fused {fuse}: {e}"));
                let acc = s.net().blob("acc").unwrap().data_to_vec(&be).unwrap()[0];
                seen.push((s.smoothed_loss().to_bits(), acc.to_bits()));
            }
            (seen, weight_bits(&s))
        };
        let owned = run(Mode::Owned);
        for mode in [Mode::Shared, Mode::Poisoned] {
            let shared = run(mode);
            assert_eq!(shared.0, owned.0, "{mode:?} fused {fuse}: losses or accuracies differ");
            assert!(shared.1 == owned.1, "{mode:?} fused {fuse}: weights differ");
        }
        assert_ne!(weight_bits(&solver(be.clone(), Mode::Owned, fuse, iter_size)), owned.1, "training did not change the weights");
    }
}

#[test]
fn segnet_mini_lends_the_blobs_read_only_in_forward() {
    let s = solver(Cpu::new(), Mode::Shared, true, 1);
    // The four that die in forward, and the decoder blobs made after them.
    let mut got = lent(s.net());
    got.sort();
    assert_eq!(got, ["c1b", "c2", "c3", "d1", "d2", "u1"]);
}

#[test]
fn segnet_mini_trains_identically_with_shared_data() {
    trains_alike(Cpu::new(), 1);
}

#[test]
fn segnet_mini_with_iter_size_trains_identically_with_shared_data() {
    trains_alike(Cpu::new(), 2);
}

#[test]
fn segnet_mini_trains_identically_with_shared_data_on_cuda() {
    let Some(g) = strict_fp32_gpu() else { return };
    // Two passes an iteration: buffers are lent again within one update.
    trains_alike(g, 2);
}

#[test]
fn shared_data_cannot_be_read_after_a_step_but_outputs_and_kept_blobs_can() {
    let be = Cpu::new();
    let mut s = solver(be.clone(), Mode::Shared, true, 1);
    s.step(1).unwrap();
    let net = s.net_mut();
    let err = net.blob("c1b").unwrap().data_to_vec(&be).unwrap_err().to_string();
    assert!(err.contains("shared"), "{err}");
    let n = net.blob("c1b").unwrap().count();
    assert!(net.blob_mut("c1b").unwrap().set_data(&be, &vec![0.0; n]).is_err());
    // Outputs, loss tops and inputs keep theirs.
    for name in ["loss", "acc", "data", "label"] {
        assert!(!net.blob(name).unwrap().data_is_shared(), "{name}");
        net.blob(name).unwrap().data_to_vec(&be).unwrap();
    }
    let err = net.set_data_sharing(true, &["nope"]).unwrap_err().to_string();
    assert!(err.contains("`nope`"), "{err}");
    net.set_data_sharing(true, &["c1b"]).unwrap();
    assert!(!net.blob("c1b").unwrap().data_is_shared());
    net.forward().unwrap();
    net.backward().unwrap();
    let kept = net.blob("c1b").unwrap().data_to_vec(&be).unwrap();
    assert!(kept.iter().any(|&v| v != 0.0));
    net.set_data_sharing(false, &[]).unwrap();
    assert!(!net.shares_data() && lent(net).is_empty());
    net.forward().unwrap();
    assert_eq!(net.blob("c1b").unwrap().data_to_vec(&be).unwrap(), kept);
}

/// A net made forward-only (as the solver makes its test nets) lends every blob once its last
/// reader ran forward, more than training does, keeps no gradients and refuses backward; its
/// outputs are those of the plain net.
#[test]
fn a_forward_only_net_shares_more_and_computes_the_same_outputs() {
    let mut param = net_param(SEGNET_MINI);
    param.state = Some(NetState { phase: Some(Phase::Test as i32), ..Default::default() });
    let outputs = |forward_only: bool| {
        let opts = NetOptions { seed: 3, model_dir: None, share_diffs: false, share_data: forward_only, fuse: true };
        let mut net = Net::with_options(Cpu::new(), &param, &opts).unwrap();
        if forward_only {
            net.set_data_sharing(true, &["score"]).unwrap();
            net.make_forward_only().unwrap();
        }
        fill_inputs(&mut net);
        let mut seen = Vec::new();
        // Twice: the second pass lends buffers that held other blobs.
        for _ in 0..2 {
            net.forward().unwrap();
            for name in ["score", "loss", "acc"] {
                seen.extend(net.blob(name).unwrap().data_to_vec(net.backend()).unwrap().iter().map(|v| v.to_bits()));
            }
        }
        (seen, net)
    };
    let (plain, _) = outputs(false);
    let (shared, mut net) = outputs(true);
    assert!(shared == plain, "the outputs differ forward-only with shared data");
    assert!(net.is_forward_only() && net.layers().iter().all(|l| !l.need_backward));
    assert_eq!(net.diff_memory().owned, 0, "a forward-only net keeps no gradients");
    assert!(net.params().iter().all(|p| !p.has_diff()));
    let err = net.backward().unwrap_err().to_string();
    assert!(err.contains("forward only"), "{err}");
    let mem = net.data_memory();
    let trained = solver(Cpu::new(), Mode::Shared, true, 1).net().data_memory();
    assert_eq!(mem.owned, trained.owned);
    assert!(lent(&net).len() > 6 && mem.shared < trained.shared, "{:?} lent, {mem:?} vs training {trained:?}", lent(&net));
}

/// The lung SegNet at 32x32: the blobs that feed only a max pooling (conv1_2 .. conv5_3) or
/// an upsampling's data input (pool5 and the decoder's conv5_1_D .. conv2_1_D) die in forward,
/// and every one of them lends its memory to a blob made later.
#[test]
fn lung_segnet_lends_the_memory_of_every_blob_it_reads_only_in_forward() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lung_segnet/bench.prototxt");
    let text = std::fs::read_to_string(path).unwrap().replace("dim: 256 dim: 256", "dim: 32 dim: 32");
    let mut param = net_param(&text);
    param.state = Some(NetState { phase: Some(Phase::Train as i32), ..Default::default() });
    let build = |share_data| {
        let opts = NetOptions { seed: 1, model_dir: None, share_diffs: true, share_data, fuse: true };
        Net::with_options(Cpu::new(), &param, &opts).unwrap()
    };
    let mut net = build(true);
    let dying = ["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3", "pool5", "conv5_1_D", "conv4_1_D", "conv3_1_D", "conv2_1_D"];
    let size = |net: &Net<Cpu>, names: &[&str]| names.iter().map(|n| net.blob(n).unwrap().count() * 4).sum::<usize>();
    let mem = net.data_memory();
    assert_eq!(mem.owned - mem.shared, size(&net, &dying), "{mem:?}");
    assert_eq!(build(false).data_memory(), mem, "the report does not depend on whether the net shares");
    // Forward-only, every blob dies after its last reader's forward: what the report foresaw.
    let mut forward_only = build(true);
    forward_only.make_forward_only().unwrap();
    assert_eq!(forward_only.data_memory().shared, mem.forward_only);
    assert!(mem.forward_only * 2 < mem.shared, "{mem:?}");
    let mut got = lent(&net);
    got.sort();
    let mut want: Vec<String> = dying.iter().chain(&["pool1_D", "conv1_2_D"]).map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    // Unfused, each in-place ReLU's backward reads its blob: only pool5 still dies in forward.
    net.set_fusion(false).unwrap();
    let mem = net.data_memory();
    assert_eq!(mem.owned - mem.shared, size(&net, &["pool5"]), "{mem:?}");
    assert_eq!(lent(&net).len(), 2);
}
