//! The lung SegNet (`models/lung_segnet*`, the net crema is built to train) on CUDA: the lite
//! variant forward and backward against the CPU backend (every layer type of the full net, on
//! a small input), and, on request (`--ignored`), a timing of the full net's training step at
//! batch 6, 256x256.
//!
//! Both say SKIPPED and pass where no GPU can be opened.

mod common;

use crema::backend::cpu::Cpu;
use crema::backend::cuda::{ConvEngine, Cuda, CudaOptions, Precision};
use crema::backend::{Backend, Storage};
use crema::net::Net;
use crema::proto::{NetParameter, NetState, Phase};
use crema::rng::Rng;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// GPU 0 with `options`, the convolution engine overridden by `CREMA_CONV_ENGINE` where set.
fn gpu(options: CudaOptions) -> Option<Cuda> {
    let options = CudaOptions {
        conv: common::conv_engine(options.conv),
        ..options
    };
    match Cuda::with_options(0, options) {
        Ok(g) => Some(g),
        Err(e) => {
            println!("SKIPPED: no CUDA device ({e})");
            None
        }
    }
}

/// The crate's folder, where `models/` is: `$CREMA_ROOT` when set; else the folder this test
/// was built in, while it exists; else the current directory. scripts/gpu-check runs this
/// test's binary on another machine, from a copy of the repository at another path.
fn crate_root() -> PathBuf {
    if let Some(root) = std::env::var_os("CREMA_ROOT").filter(|v| !v.is_empty()) {
        return PathBuf::from(root);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"));
    if built.join("models").is_dir() {
        built.to_path_buf()
    } else {
        PathBuf::from(".")
    }
}

/// A model's bench net in the TRAIN phase, its inputs resized to `batch x 1 x side x side`.
fn bench_net(model: &str, batch: usize, side: usize) -> NetParameter {
    let path = crate_root().join("models").join(model).join("bench.prototxt");
    let mut param: NetParameter = crema::prototxt::read_file(&path).unwrap_or_else(|e| panic!("{e}"));
    param.state = Some(NetState {
        phase: Some(Phase::Train as i32),
        ..param.state.unwrap_or_default()
    });
    for layer in param.layer.iter_mut().filter(|l| l.r#type() == "Input") {
        for shape in layer
            .input_param
            .as_mut()
            .expect("Input layers have a shape")
            .shape
            .iter_mut()
        {
            shape.dim = vec![batch as i64, 1, side as i64, side as i64];
        }
    }
    param
}

/// Grey images and a lung-like label: two discs of class 1 on class 0.
fn inputs(batch: usize, side: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let data: Vec<f32> = (0..batch * side * side).map(|_| rng.uniform_range(0.0, 1.0)).collect();
    let r = side as f32 / 5.0;
    let label = (0..batch * side * side)
        .map(|k| {
            let (y, x) = (((k / side) % side) as f32, (k % side) as f32);
            let inside = |cx: f32| (x - cx).powi(2) + (y - side as f32 / 2.0).powi(2) < r * r;
            if inside(side as f32 * 0.3) || inside(side as f32 * 0.7) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    (data, label)
}

fn set<B: Backend>(net: &mut Net<B>, name: &str, values: &[f32]) {
    let be = net.backend().clone();
    net.blob_mut(name)
        .unwrap_or_else(|| panic!("no blob `{name}`"))
        .set_data(&be, values)
        .unwrap();
}

/// A lite bench net at `batch x side x side` on `be`, the weights of `weights` (when given),
/// its inputs set; forward and backward run. Returns the net and its loss.
fn run<B: Backend>(
    be: B,
    param: &NetParameter,
    weights: Option<&Net<Cpu>>,
    data: &[f32],
    label: &[f32],
) -> (Net<B>, f32) {
    let mut net = Net::new(be.clone(), param, 1).unwrap_or_else(|e| panic!("{e}"));
    if let Some(w) = weights {
        for (i, p) in w.params().iter().enumerate() {
            let v = p.data_to_vec(w.backend()).unwrap();
            net.params_mut()[i].set_data(&be, &v).unwrap();
        }
    }
    set(&mut net, "data", data);
    set(&mut net, "label", label);
    let loss = net.forward().unwrap_or_else(|e| panic!("{e}"));
    net.clear_param_diffs().unwrap();
    net.backward().unwrap_or_else(|e| panic!("{e}"));
    (net, loss)
}

/// Relative L2 errors of every parameter gradient of `net` against `reference`'s, each over
/// the larger of the reference's norm and 1e-4 of the largest norm (the conv biases before BN
/// layers have a true gradient of 0: both nets hold rounding noise there).
fn gradient_errors<B: Backend>(net: &Net<B>, reference: &Net<Cpu>) -> Vec<f64> {
    let norms: Vec<Vec<f32>> = reference
        .params()
        .iter()
        .map(|p| p.diff_to_vec(reference.backend()).unwrap())
        .collect();
    let l2 = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let floor = norms.iter().map(|v| l2(v)).fold(0f64, f64::max) * 1e-4;
    net.params()
        .iter()
        .zip(&norms)
        .map(|(p, want)| {
            let got = p.diff_to_vec(net.backend()).unwrap();
            let diff: Vec<f32> = got.iter().zip(want).map(|(a, b)| a - b).collect();
            l2(&diff) / l2(want).max(floor).max(f64::MIN_POSITIVE)
        })
        .collect()
}

#[test]
fn segnet_lite_forward_and_backward_match_the_cpu() {
    let Some(g) = gpu(CudaOptions {
        precision: Precision::Fp32,
        conv: ConvEngine::Cudnn,
        ..CudaOptions::default()
    }) else {
        return;
    };
    let (batch, side) = (2, 64);
    let param = bench_net("lung_segnet_lite", batch, side);
    let (data, label) = inputs(batch, side, 7);
    let (cpu_net, cpu_loss) = run(Cpu::new(), &param, None, &data, &label);
    let (gpu_net, gpu_loss) = run(g.clone(), &param, Some(&cpu_net), &data, &label);
    println!("loss: CPU {cpu_loss}, {} {gpu_loss}", g.describe());
    assert!(
        (cpu_loss - gpu_loss).abs() <= 1e-4 * cpu_loss.abs(),
        "loss: CPU {cpu_loss}, CUDA {gpu_loss}"
    );
    // The yardstick: the CPU against itself with one ulp added to 1% of the input pixels. The
    // net is that sensitive: ReLU inputs within the last bits of 0 fall on the other side of the
    // kink and their gradients change wholesale, and the deepest BN layers normalise over 8
    // values. CUDA's sums are ordered differently, so it may differ as much, not much more; a
    // wrong kernel differs by order 1.
    let mut nudged = data.clone();
    for k in (0..nudged.len()).step_by(97) {
        nudged[k] = f32::from_bits(nudged[k].to_bits() + 1);
    }
    let (control_net, _) = run(Cpu::new(), &param, Some(&cpu_net), &nudged, &label);
    let control = gradient_errors(&control_net, &cpu_net);
    let cuda = gradient_errors(&gpu_net, &cpu_net);
    let (mut worst, mut worst_control) = (0f64, 0f64);
    for (i, (&e, &c)) in cuda.iter().zip(&control).enumerate() {
        assert!(
            e <= 3.0 * c.max(1e-4),
            "parameter blob {i}: relative L2 error {e:.2e} of the CUDA gradient, {c:.2e} for the nudged CPU"
        );
        worst = worst.max(e);
        worst_control = worst_control.max(c);
    }
    println!(
        "{} parameter gradients: worst relative L2 error {worst:.2e} on CUDA, {worst_control:.2e} for the CPU with its input nudged by an ulp",
        cuda.len()
    );
}

#[test]
#[ignore = "times the full lung SegNet's training step on a GPU: run with --ignored"]
fn lung_segnet_training_step_time() {
    let Some(g) = gpu(CudaOptions::default()) else { return };
    if g.describe().contains("emulator") {
        println!("SKIPPED: a timing means nothing on the emulator");
        return;
    }
    let (batch, side) = (6, 256);
    let param = bench_net("lung_segnet", batch, side);
    let mut net = Net::new(g.clone(), &param, 1).unwrap_or_else(|e| panic!("{e}"));
    let (data, label) = inputs(batch, side, 7);
    set(&mut net, "data", &data);
    set(&mut net, "label", &label);
    let step = |net: &mut Net<Cuda>| -> f32 {
        net.clear_param_diffs().unwrap();
        let loss = net.forward().unwrap_or_else(|e| panic!("{e}"));
        net.backward().unwrap_or_else(|e| panic!("{e}"));
        loss
    };
    let t0 = Instant::now();
    let first = step(&mut net);
    g.synchronize().unwrap();
    println!(
        "first step (cuDNN's algorithm search included): {:.1} s, loss {first}",
        t0.elapsed().as_secs_f64()
    );
    let iters = 10;
    let t1 = Instant::now();
    let mut loss = 0.0;
    for _ in 0..iters {
        loss = step(&mut net);
    }
    g.synchronize().unwrap();
    let ms = t1.elapsed().as_secs_f64() * 1e3 / iters as f64;
    let (_, peak) = g.memory_usage().unwrap_or((0, 0));
    println!(
        "lung SegNet, batch {batch} x {side}x{side}, forward + backward on {}: {ms:.1} ms a step ({:.1} images/s), loss {loss}, peak memory {:.2} GiB",
        g.describe(),
        batch as f64 * 1e3 / ms,
        peak as f64 / (1u64 << 30) as f64
    );
    assert!(loss.is_finite());
}

/// For diagnosis when the comparison above fails: every blob's data after forward and every
/// bottom diff as backward writes it, CPU against CUDA (largest difference over the blob's
/// largest magnitude). Gradual growth is rounding; a jump at one layer is that layer (or a
/// ReLU kink, where the forward values were already a little apart).
#[test]
#[ignore = "a diagnostic: run with --ignored --nocapture"]
fn diagnose_blob_by_blob() {
    let Some(g) = gpu(CudaOptions {
        precision: Precision::Fp32,
        conv: ConvEngine::Cudnn,
        ..CudaOptions::default()
    }) else {
        return;
    };
    let (batch, side) = (2, 64);
    let param = bench_net("lung_segnet_lite", batch, side);
    let mut cpu_net = Net::new(Cpu::new(), &param, 1).unwrap();
    let mut gpu_net = Net::new(g.clone(), &param, 1).unwrap();
    let cpu_be = Cpu::new();
    for (i, p) in cpu_net.params().iter().enumerate() {
        let v = p.data_to_vec(&cpu_be).unwrap();
        gpu_net.params_mut()[i].set_data(&g, &v).unwrap();
    }
    let (data, label) = inputs(batch, side, 7);
    for net_inputs in [("data", &data), ("label", &label)] {
        set(&mut cpu_net, net_inputs.0, net_inputs.1);
        set(&mut gpu_net, net_inputs.0, net_inputs.1);
    }
    cpu_net.forward().unwrap();
    gpu_net.forward().unwrap();
    let rel = |a: &[f32], b: &[f32]| {
        let big = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs() / big))
    };
    for i in 0..cpu_net.blobs().len() {
        let (c, gb) = (&cpu_net.blobs()[i], &gpu_net.blobs()[i]);
        println!(
            "fwd {:<16} {:.2e}",
            cpu_net.blob_name(i),
            rel(&gb.data_to_vec(&g).unwrap(), &c.data_to_vec(&cpu_be).unwrap())
        );
    }
    // Backward one layer at a time, comparing each layer's bottom diffs as they are written.
    cpu_net.clear_param_diffs().unwrap();
    gpu_net.clear_param_diffs().unwrap();
    for li in (0..cpu_net.layers().len()).rev() {
        cpu_net.backward_layer(li).unwrap();
        gpu_net.backward_layer(li).unwrap();
        let name = cpu_net.layers()[li].name().to_string();
        let mut line = format!("bwd {name:<16}");
        for &b in &cpu_net.layers()[li].bottoms {
            let (c, gb) = (&cpu_net.blobs()[b], &gpu_net.blobs()[b]);
            if c.has_diff() {
                line += &format!(
                    " {}:{:.2e}",
                    cpu_net.blob_name(b),
                    rel(&gb.diff_to_vec(&g).unwrap(), &c.diff_to_vec(&cpu_be).unwrap())
                );
            }
        }
        println!("{line}");
    }
}

/// The lite SegNet's training solver on `g`, reading the fixture X-rays through its
/// DenseImageData layer at `batch x 1 x side x side`.
fn lite_solver(g: &Cuda, batch: u32, side: u32) -> crema::solver::Solver<Cuda> {
    use crema::proto::SolverParameter;
    let path = crate_root().join("models/lung_segnet_lite/train.prototxt");
    let mut net: NetParameter = crema::prototxt::read_file(&path).unwrap_or_else(|e| panic!("{e}"));
    for layer in net.layer.iter_mut().filter(|l| l.r#type() == "DenseImageData") {
        let p = layer.dense_image_data_param.as_mut().expect("a DenseImageData layer has its parameters");
        p.batch_size = Some(batch);
        p.new_height = Some(side);
        p.new_width = Some(side);
    }
    let param = SolverParameter {
        net_param: Some(net),
        r#type: Some("SGD".into()),
        base_lr: Some(0.001),
        lr_policy: Some("fixed".into()),
        momentum: Some(0.9),
        weight_decay: Some(0.0005),
        max_iter: Some(1000),
        display: Some(0),
        average_loss: Some(2),
        snapshot: Some(0),
        snapshot_after_train: Some(false),
        random_seed: Some(1),
        train_state: Some(NetState { phase: Some(Phase::Train as i32), ..Default::default() }),
        ..Default::default()
    };
    crema::solver::Solver::with_file(g.clone(), param, Some(&path)).unwrap_or_else(|e| panic!("{e}"))
}

/// The rule for the GPU: blobs live on the device between iterations, and a training
/// step copies to the device only the data layers' batches (and the loss the host computed
/// from its sum), reads back only results (the loss sum, error flags) and waits for the GPU
/// once, where it reads the loss (the mask checks of pooling and upsampling are read with
/// it); it allocates nothing once the first steps have run.
#[test]
fn training_steps_keep_blobs_on_the_device() {
    let Some(g) = gpu(CudaOptions::default()) else { return };
    let (batch, side, steps) = (2u32, 32u32, 3u64);
    let mut solver = lite_solver(&g, batch, side);
    // Warm-up: buffers, kernels, cuDNN's choices and the shared workspace.
    solver.step(2).unwrap_or_else(|e| panic!("{e}"));
    g.synchronize().unwrap_or_else(|e| panic!("{e}"));
    let before = g.activity();
    solver.step(steps).unwrap_or_else(|e| panic!("{e}"));
    g.synchronize().unwrap_or_else(|e| panic!("{e}"));
    let d = g.activity().since(&before);
    println!("{steps} training steps of the lite SegNet at {batch}x1x{side}x{side} on {}: {d:?}", g.describe());
    assert_eq!(d.allocations, 0, "allocations after the warm-up: {d:?}");
    // Per step: the image batch and the label batch, f32 each, and the loss.
    let inputs = 2 * (batch * side * side) as u64 * 4 + 4;
    assert_eq!(d.upload_bytes, steps * inputs, "bytes uploaded in {steps} steps: {d:?}");
    assert_eq!(d.uploads, steps * 3, "uploads in {steps} steps: {d:?}");
    // One wait per step, and the test's own.
    assert_eq!(d.syncs, steps + 1, "waits for the GPU in {steps} steps: {d:?}");
    // Reads are the loss sum (4 words) and a word per mask check (15 per step): no blob.
    assert!(d.download_bytes <= steps * 256, "downloads of more than results and flags: {d:?}");
    // At most a result and the pending checks per wait.
    assert!(d.downloads <= 2 * d.syncs, "downloads that did not wait: {d:?}");
    assert!(d.kernels > 0 && d.library_calls > 0, "no work counted: {d:?}");
}
