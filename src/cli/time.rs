//! `crema time`: Caffe's `caffe time` — forward and backward time per layer and in total,
//! averaged over iterations — with achieved GFLOP/s and peak memory; with `--train`, whole
//! training steps (forward, backward and the solver's SGD update).

use super::device::{peak_rss_bytes, print_peak_device_memory, DeviceOpts, Opened};
use super::{common::NetOpts, parse_phase};
use anyhow::{bail, Context};
use crema::backend::Backend;
use crema::net::Net;
use crema::proto::{NetState, Phase, SolverParameter};
use crema::rng::Rng;
use crema::solver::Solver;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    net: NetOpts,
    #[command(flatten)]
    device: DeviceOpts,
    /// Iterations to time (after one untimed warm-up).
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Phase to build the net in.
    #[arg(long, default_value = "TRAIN")]
    phase: String,
    /// Time whole training steps: forward, backward and the SGD update of the solver (lr 0.001,
    /// momentum 0.9, weight decay 0.0005).
    #[arg(long)]
    train: bool,
    /// On a GPU, also list the cuDNN algorithm chosen for every convolution shape and pass,
    /// with its measured times.
    #[arg(long)]
    algorithms: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let phase = parse_phase(&a.phase)?;
    if a.train && phase != Phase::Train {
        bail!("--train times training steps, which run in the TRAIN phase; drop --phase {}", a.phase);
    }
    match a.device.open()? {
        Opened::Cpu(be) => go(be, &a, phase),
        Opened::Cuda(be) => {
            go(be.clone(), &a, phase)?;
            print_cudnn(&be, a.algorithms);
            Ok(())
        }
    }
}

/// The measured times of the cuDNN algorithms chosen, per pass, against the fastest usable ones
/// (crema prefers deterministic algorithms), and with `all` every choice.
fn print_cudnn(be: &crema::backend::cuda::Cuda, all: bool) {
    let lines = be.conv_algorithms();
    if lines.is_empty() {
        return;
    }
    let t = be.conv_measured_times();
    let (chosen, fastest): (f64, f64) = t.iter().fold((0.0, 0.0), |(a, b), &(c, f)| (a + c, b + f));
    println!(
        "cuDNN convolutions, timed once per distinct shape: {chosen:.2} ms (forward {:.2}, backward data {:.2}, \
         backward filter {:.2}); with the fastest algorithms, deterministic or not: {fastest:.2} ms",
        t[0].0, t[1].0, t[2].0
    );
    let (searches, secs) = be.conv_searches();
    println!("cuDNN algorithm searches: {searches} (one per shape and pass, in the first step), {:.2} s in all", secs);
    if all {
        for l in lines {
            println!("  {l}");
        }
    }
}

fn go<B: Backend>(be: B, a: &Args, phase: Phase) -> anyhow::Result<()> {
    let iterations = a.iterations.max(1);
    if a.train {
        return time_training(be, a, iterations);
    }
    let mut net = a.net.build(be, phase, |_| {})?;
    fill_inputs(&mut net)?;
    time_net(&mut net, iterations)
}

/// Gives the net's inputs values: random in [0, 1) for data, 0 for inputs that only feed label
/// positions (a label of 0 is valid for every loss).
pub fn fill_inputs<B: Backend>(net: &mut Net<B>) -> anyhow::Result<()> {
    let be = net.backend().clone();
    let mut rng = Rng::new(1);
    for &i in &net.inputs().to_vec() {
        let is_label = net.layers().iter().any(|l| {
            l.bottoms.iter().enumerate().any(|(k, &b)| b == i && !l.layer.allow_force_backward(k))
        });
        let name = net.blob_name(i).to_string();
        let blob = net.blob_mut(&name).expect("input blob exists");
        let values: Vec<f32> = (0..blob.count()).map(|_| if is_label { 0.0 } else { rng.uniform() as f32 }).collect();
        blob.set_data(&be, &values)?;
    }
    Ok(())
}

/// The solver `crema time --train` steps with: plain SGD at a fixed rate, Caffe's usual
/// momentum and weight decay, no display, tests or snapshots.
fn timing_solver(net: crema::proto::NetParameter) -> SolverParameter {
    SolverParameter {
        net_param: Some(net),
        r#type: Some("SGD".into()),
        base_lr: Some(0.001),
        lr_policy: Some("fixed".into()),
        momentum: Some(0.9),
        weight_decay: Some(0.0005),
        max_iter: Some(i32::MAX),
        display: Some(0),
        snapshot: Some(0),
        snapshot_after_train: Some(false),
        random_seed: Some(0),
        ..Default::default()
    }
}

/// Times whole training steps with the solver's own step (forward, backward, update).
fn time_training<B: Backend>(be: B, a: &Args, iterations: usize) -> anyhow::Result<()> {
    let mut net_param = a.net.param(Phase::Train, |_| {})?;
    let state = net_param.state.take().unwrap_or_default();
    let mut param = timing_solver(net_param);
    param.train_state = Some(NetState { phase: Some(Phase::Train as i32), ..state });
    let mut solver = Solver::with_file(be.clone(), param, Some(&a.net.model))
        .with_context(|| format!("setting up training of {}", a.net.model.display()))?;
    a.net.load_weights(solver.net_mut())?;
    fill_inputs(solver.net_mut())?;
    // Warm-up: first-touch allocations, kernel compilation and algorithm choices stay out.
    solver.step(1)?;
    be.synchronize()?;
    let first_step = warm_up_done(&be);
    let before = be.activity();
    let mut steps = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        solver.step(1)?;
        be.synchronize()?;
        steps.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let after = be.activity();
    let avg = steps.iter().sum::<f64>() / steps.len() as f64;
    println!("Training steps ({iterations} iterations, {}): SGD lr 0.001, momentum 0.9, weight decay 0.0005", be.describe());
    println!("Average training step: {avg:.2} ms (median {:.2} ms)", median(&mut steps));
    if let (Some(a), Some(b)) = (after, before) {
        println!("{}", per_step(&a.since(&b), iterations));
    }
    print_memory(&be, first_step);
    Ok(())
}

/// "Per training step on the device: 412 kernels, ..." (the timing loop's own waits, one per
/// step, included).
fn per_step(d: &crema::backend::Activity, steps: usize) -> String {
    let n = steps.max(1) as f64;
    let per = |v: u64| v as f64 / n;
    format!(
        "Per training step on the device: {:.1} kernels, {:.1} cuBLAS/cuDNN calls, {:.1} waits for the GPU, \
         {:.1} uploads ({:.1} kB), {:.1} downloads ({:.2} kB), {:.1} allocations",
        per(d.kernels),
        per(d.library_calls),
        per(d.syncs),
        per(d.uploads),
        per(d.upload_bytes) / 1e3,
        per(d.downloads),
        per(d.download_bytes) / 1e3,
        per(d.allocations)
    )
}

/// `Peak resident memory` and, on a GPU, `Peak device memory` (with `first_step`, the peak of
/// the warm-up step, after which the high-water mark was reset: see [`warm_up_done`]).
fn print_memory<B: Backend>(be: &B, first_step: Option<usize>) {
    if let Some(rss) = peak_rss_bytes() {
        println!("Peak resident memory: {:.1} MB", rss as f64 / 1e6);
    }
    print_peak_device_memory(be, false, first_step);
}

/// After the warm-up step: its peak device memory (where the backend counts it), and a new
/// high-water mark from here, so that the steady state's peak can be told from the first
/// step's (which also chooses the convolution algorithms).
fn warm_up_done<B: Backend>(be: &B) -> Option<usize> {
    let first = be.memory_usage().map(|(_, peak)| peak);
    be.reset_memory_peak();
    first
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time_net<B: Backend>(net: &mut Net<B>, iterations: usize) -> anyhow::Result<()> {
    let n = net.layers().len();
    let be = net.backend().clone();
    let backward = net.layers().iter().any(|l| l.need_backward);
    // Warm-up: first-touch allocations and caches stay out of the numbers.
    net.forward()?;
    if backward {
        net.backward()?;
    }
    be.synchronize()?;
    let first_step = warm_up_done(&be);
    let mut fwd = vec![vec![0.0f64; iterations]; n];
    let mut bwd = vec![vec![0.0f64; iterations]; n];
    let (mut fwd_total, mut bwd_total) = (vec![0.0; iterations], vec![0.0; iterations]);
    for it in 0..iterations {
        let start = Instant::now();
        for (i, f) in fwd.iter_mut().enumerate() {
            let t = Instant::now();
            net.forward_layer(i)?;
            be.synchronize()?;
            f[it] = t.elapsed().as_secs_f64() * 1e3;
        }
        fwd_total[it] = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        if backward {
            for i in (0..n).rev() {
                let t = Instant::now();
                net.backward_layer(i)?;
                be.synchronize()?;
                bwd[i][it] = t.elapsed().as_secs_f64() * 1e3;
            }
        }
        bwd_total[it] = start.elapsed().as_secs_f64() * 1e3;
    }
    let flops: Vec<u64> = (0..n)
        .map(|i| {
            let l = &net.layers()[i];
            let b: Vec<&[usize]> = l.bottoms.iter().map(|&x| net.blobs()[x].shape()).collect();
            let t: Vec<&[usize]> = l.tops.iter().map(|&x| net.blobs()[x].shape()).collect();
            l.layer.flops(&b, &t)
        })
        .collect();
    println!("Average time per layer ({iterations} iterations, {}):", be.describe());
    println!("{:<28} {:>12} {:>12} {:>10} {:>10}", "layer", "forward ms", "backward ms", "GFLOP", "fwd GFLOP/s");
    let mut fused = 0;
    for i in 0..n {
        let layer = &net.layers()[i];
        if let Some(host) = layer.fused_into {
            // Its time is its host's.
            println!("{:<28} {:>25}", layer.name(), format!("runs in {}", net.layers()[host].name()));
            fused += 1;
            continue;
        }
        let f = fwd[i].iter().sum::<f64>() / iterations as f64;
        let b = bwd[i].iter().sum::<f64>() / iterations as f64;
        let gf = flops[i] as f64 / 1e9;
        let rate = if f > 0.0 && gf > 0.0 { format!("{:.1}", gf / (f / 1e3)) } else { String::new() };
        println!("{:<28} {:>12.3} {:>12.3} {:>10.3} {:>10}", layer.name(), f, b, gf, rate);
    }
    if fused > 0 {
        println!("{fused} in-place ReLUs run inside the layer before them (CREMA_FUSE=0 times them apart)");
    }
    let total_flops = flops.iter().sum::<u64>() as f64 / 1e9;
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let both: Vec<f64> = fwd_total.iter().zip(&bwd_total).map(|(a, b)| a + b).collect();
    println!("Average Forward pass:  {:.2} ms (median {:.2})", avg(&fwd_total), median(&mut fwd_total.clone()));
    println!("Average Backward pass: {:.2} ms (median {:.2})", avg(&bwd_total), median(&mut bwd_total.clone()));
    println!("Average Forward-Backward: {:.2} ms (median {:.2})", avg(&both), median(&mut both.clone()));
    println!("Forward compute: {total_flops:.2} GFLOP; {:.1} GFLOP/s forward (median)", total_flops / (median(&mut fwd_total.clone()) / 1e3));
    if backward {
        // Convolutions and inner products cost about twice their forward in backward.
        println!(
            "Forward+backward: ~{:.2} GFLOP; {:.1} GFLOP/s (median)",
            3.0 * total_flops,
            3.0 * total_flops / (median(&mut both.clone()) / 1e3)
        );
    }
    print_memory(&be, first_step);
    Ok(())
}
