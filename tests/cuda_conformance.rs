//! The conformance cases of `tests/conformance_layers.rs` (a small net run forward and backward
//! by real Caffe) built on the CUDA backend in strict FP32, `Cuda::with_precision(0,
//! Precision::Fp32)`, compared with Caffe's numbers within each case's tolerance: the whole
//! path of a layer on the GPU (its primitives, the net's blob handling, loss read-back).
//!
//! Every case has a test; a case whose net uses a layer type crema does not know yet says
//! SKIPPED and why (so a new family's cases join by themselves when it lands). Every test says
//! SKIPPED and passes where no GPU can be opened. Convolutions run on cuDNN, or on crema's im2col
//! path with `CREMA_CONV_ENGINE=im2col` (`tools/cuda_emu/check.sh` runs both under the emulator).

mod common;

use common::conformance::{LayerCase, strict_fp32_gpu};
use crema::backend::Storage;

fn run_case(name: &str) {
    let Some(g) = strict_fp32_gpu() else { return };
    let case = LayerCase::open(name);
    let unknown = case.unknown_layer_types();
    if !unknown.is_empty() {
        println!("SKIPPED: {name} uses layer types crema does not know yet: {}", unknown.join(", "));
        return;
    }
    let failures = case.run(g.clone());
    assert!(failures.is_empty(), "{name} on {}:\n  {}", g.describe(), failures.join("\n  "));
    println!("{name}: matches Caffe on {}", g.describe());
}

layer_cases!(run_case);

/// Runs `text` (inputs named in `inputs`, `force_backward`) forward and backward on `be`: the
/// loss and each input's gradient.
fn loss_and_gradients<B: crema::backend::Backend>(be: B, text: &str, inputs: &[(&str, Vec<f32>)]) -> (f32, Vec<Vec<f32>>) {
    let mut param: crema::proto::NetParameter = crema::prototxt::parse(text, "loss.prototxt").unwrap();
    param.state = Some(crema::proto::NetState { phase: Some(crema::proto::Phase::Train as i32), ..Default::default() });
    let mut net = crema::net::Net::new(be.clone(), &param, 1).unwrap();
    for (name, values) in inputs {
        net.blob_mut(name).unwrap().set_data(&be, values).unwrap();
    }
    let loss = net.forward().unwrap();
    net.backward().unwrap();
    let grads = inputs.iter().map(|(name, _)| net.blob(name).unwrap().diff_to_vec(&be).unwrap()).collect();
    (loss, grads)
}

/// The loss layers Caffe's cases do not cover (ContrastiveLoss in both forms, HingeLoss L1 and
/// L2, MultinomialLogisticLoss) give the CPU's loss and gradients on the GPU.
#[test]
fn losses_without_a_caffe_case_match_the_cpu() {
    let Some(g) = strict_fp32_gpu() else { return };
    let input = |name: &str, dims: &str| format!("layer {{ name: '{name}' type: 'Input' top: '{name}' input_param {{ shape {{ {dims} }} }} }}\n");
    let values = |n: usize, k: usize| -> Vec<f32> { (0..n).map(|i| ((i * 37 + k) % 23) as f32 / 23.0 - 0.5).collect() };
    let pairs = format!("force_backward: true\n{}{}{}", input("a", "dim: 6 dim: 5"), input("b", "dim: 6 dim: 5"), input("y", "dim: 6"));
    let scores = format!("force_backward: true\n{}{}", input("x", "dim: 6 dim: 5"), input("label", "dim: 6"));
    let contrastive = |p: &str| format!("{pairs}layer {{ name: 'l' type: 'ContrastiveLoss' bottom: 'a' bottom: 'b' bottom: 'y' top: 'l' {p} }}");
    let label_loss = |t: &str, p: &str| format!("{scores}layer {{ name: 'l' type: '{t}' bottom: 'x' bottom: 'label' top: 'l' {p} }}");
    let sim = vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
    let labels = vec![0.0, 4.0, 2.0, 1.0, 3.0, 2.0];
    let probs: Vec<f32> = values(30, 3).iter().map(|v| v + 0.55).collect();
    type Case<'a> = (String, Vec<(&'a str, Vec<f32>)>);
    let cases: Vec<Case> = vec![
        (contrastive(""), vec![("a", values(30, 0)), ("b", values(30, 5)), ("y", sim.clone())]),
        (contrastive("loss_weight: 2 contrastive_loss_param { margin: 0.5 legacy_version: true }"), vec![("a", values(30, 0)), ("b", values(30, 5)), ("y", sim)]),
        (label_loss("HingeLoss", ""), vec![("x", values(30, 1)), ("label", labels.clone())]),
        (label_loss("HingeLoss", "hinge_loss_param { norm: L2 }"), vec![("x", values(30, 1)), ("label", labels.clone())]),
        (label_loss("MultinomialLogisticLoss", ""), vec![("x", probs), ("label", labels)]),
    ];
    for (text, inputs) in &cases {
        let (cpu_loss, cpu_grads) = loss_and_gradients(crema::backend::cpu::Cpu::new(), text, inputs);
        let (gpu_loss, gpu_grads) = loss_and_gradients(g.clone(), text, inputs);
        assert!((gpu_loss - cpu_loss).abs() <= 1e-6 * cpu_loss.abs().max(1.0), "{text}: loss {gpu_loss} vs {cpu_loss}");
        for ((name, _), (gg, cg)) in inputs.iter().zip(gpu_grads.iter().zip(&cpu_grads)) {
            let worst = gg.iter().zip(cg).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 1e-6, "{text}: gradient of {name} differs by {worst}");
        }
    }
    println!("ContrastiveLoss, HingeLoss, MultinomialLogisticLoss: match the CPU on {}", g.describe());
}

/// The LSTM and RNN fixtures of `tests/recurrent.rs` (a PyTorch reference of Caffe's formulas:
/// two passes with the carried state, then the gradients) on the GPU: the unrolled net, the
/// LSTMUnit kernels and the hand-over of the learnable blobs, on the device.
#[test]
fn recurrent_layers_match_the_reference() {
    let Some(g) = strict_fp32_gpu() else { return };
    for name in ["lstm", "lstm_static", "lstm_expose", "rnn", "rnn_static"] {
        let failures = common::recurrent::run_case(name, g.clone());
        assert!(failures.is_empty(), "{name} on {}:\n  {}", g.describe(), failures.join("\n  "));
    }
    println!("recurrent layers: match the reference on {}", g.describe());
}

/// SPP (its inner net of Split, Pooling, Flatten and Concat) gives the CPU's top and
/// gradient on the GPU, MAX and AVE, including after the input changes size.
#[test]
fn spatial_pyramid_pooling_matches_the_cpu() {
    let Some(g) = strict_fp32_gpu() else { return };
    fn run<B: crema::backend::Backend>(be: B, pool: &str) -> Vec<Vec<f32>> {
        let text = format!(
            "force_backward: true
             layer {{ name: 'x' type: 'Input' top: 'x' input_param {{ shape {{ dim: 2 dim: 3 dim: 13 dim: 10 }} }} }}
             layer {{ name: 'spp' type: 'SPP' bottom: 'x' top: 'y' spp_param {{ pyramid_height: 3 pool: {pool} }} }}"
        );
        let param: crema::proto::NetParameter = crema::prototxt::parse(&text, "spp.prototxt").unwrap();
        let mut net = crema::net::Net::new(be.clone(), &param, 1).unwrap();
        let mut seen = Vec::new();
        for shape in [[2, 3, 13, 10], [1, 3, 8, 9]] {
            let n: usize = shape.iter().product();
            let x: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 97.0).collect();
            let blob = net.blob_mut("x").unwrap();
            blob.reshape(&be, &shape).unwrap();
            blob.set_data(&be, &x).unwrap();
            net.forward().unwrap();
            let y = net.blob("y").unwrap();
            let dy: Vec<f32> = (0..y.count()).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
            net.blob_mut("y").unwrap().set_diff(&be, &dy).unwrap();
            net.backward().unwrap();
            seen.push(net.blob("y").unwrap().data_to_vec(&be).unwrap());
            seen.push(net.blob("x").unwrap().diff_to_vec(&be).unwrap());
        }
        seen
    }
    for pool in ["MAX", "AVE"] {
        let (cpu, gpu) = (run(crema::backend::cpu::Cpu::new(), pool), run(g.clone(), pool));
        for (k, (c, d)) in cpu.iter().zip(&gpu).enumerate() {
            assert_eq!(c.len(), d.len());
            for (i, (a, b)) in c.iter().zip(d).enumerate() {
                assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{pool} result {k} [{i}]: CPU {a}, GPU {b}");
            }
        }
    }
    println!("SPP: matches the CPU on {}", g.describe());
}

/// STOCHASTIC pooling, alone and in SPP, draws the CPU's picks on the GPU for the same seed and
/// pass (TRAIN: outputs and gradients over two passes; TEST: the weighted averages), and an
/// HDF5Output layer reading its bottoms from the device writes the file the CPU writes.
#[test]
fn stochastic_pooling_and_hdf5_output_match_the_cpu() {
    let Some(g) = strict_fp32_gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    fn run<B: crema::backend::Backend>(be: B, phase: &str, file: &std::path::Path) -> Vec<Vec<f32>> {
        let text = format!(
            "force_backward: true state {{ phase: {phase} }}
             layer {{ name: 'x' type: 'Input' top: 'x' top: 'label' input_param {{ shape {{ dim: 2 dim: 3 dim: 8 dim: 8 }} shape {{ dim: 2 }} }} }}
             layer {{ name: 'pool' type: 'Pooling' bottom: 'x' top: 'y' pooling_param {{ pool: STOCHASTIC kernel_size: 3 stride: 2 }} }}
             layer {{ name: 'spp' type: 'SPP' bottom: 'x' top: 's' spp_param {{ pyramid_height: 3 pool: STOCHASTIC }} }}
             layer {{ name: 'out' type: 'HDF5Output' bottom: 's' bottom: 'label' hdf5_output_param {{ file_name: '{}' }} }}",
            file.display()
        );
        let param: crema::proto::NetParameter = crema::prototxt::parse(&text, "stochastic.prototxt").unwrap();
        let mut net = crema::net::Net::new(be.clone(), &param, 7).unwrap();
        let mut seen = Vec::new();
        for iter in 0..2u64 {
            let x: Vec<f32> = (0..384).map(|i| ((i * 7919 + 13 * iter as usize) % 1009) as f32 / 97.0).collect();
            net.blob_mut("x").unwrap().set_data(&be, &x).unwrap();
            net.blob_mut("label").unwrap().set_data(&be, &[iter as f32, 1.0]).unwrap();
            net.set_pass(crema::layers::Pass { iter, sub: 0, per_iter: 1 });
            net.forward().unwrap();
            seen.push(net.blob("y").unwrap().data_to_vec(&be).unwrap());
            seen.push(net.blob("s").unwrap().data_to_vec(&be).unwrap());
            if phase == "TRAIN" {
                for top in ["y", "s"] {
                    let n = net.blob(top).unwrap().count();
                    let dy: Vec<f32> = (0..n).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
                    net.blob_mut(top).unwrap().set_diff(&be, &dy).unwrap();
                }
                net.backward().unwrap();
                seen.push(net.blob("x").unwrap().diff_to_vec(&be).unwrap());
            }
        }
        net.finish().unwrap();
        seen
    }
    for phase in ["TRAIN", "TEST"] {
        let (cpu_file, gpu_file) = (dir.path().join(format!("cpu_{phase}.h5")), dir.path().join(format!("gpu_{phase}.h5")));
        let (cpu, gpu) = (run(crema::backend::cpu::Cpu::new(), phase, &cpu_file), run(g.clone(), phase, &gpu_file));
        for (k, (c, d)) in cpu.iter().zip(&gpu).enumerate() {
            assert_eq!(c.len(), d.len());
            for (i, (a, b)) in c.iter().zip(d).enumerate() {
                assert!(a.to_bits() == b.to_bits(), "{phase} result {k} [{i}]: CPU {a}, GPU {b}");
            }
        }
        assert_eq!(std::fs::read(&cpu_file).unwrap(), std::fs::read(&gpu_file).unwrap(), "{phase}: HDF5Output files differ");
    }
    println!("STOCHASTIC pooling and HDF5Output: match the CPU on {}", g.describe());
}
