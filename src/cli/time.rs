//! `crema time`: Caffe's `caffe time` — forward and backward time per layer and in total,
//! averaged over iterations — with achieved GFLOP/s and peak memory.

use super::{common::NetOpts, parse_phase};
use crema::backend::cpu::Cpu;
use crema::net::Net;
use crema::rng::Rng;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    net: NetOpts,
    /// Iterations to time (after one untimed warm-up).
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Phase to build the net in.
    #[arg(long, default_value = "TRAIN")]
    phase: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let phase = parse_phase(&a.phase)?;
    let mut net = a.net.build_cpu(phase, |_| {})?;
    fill_inputs(&mut net)?;
    time_net(&mut net, a.iterations.max(1))
}

/// Gives the net's inputs values: random in [0, 1) for data, 0 for inputs that only feed label
/// positions (a label of 0 is valid for every loss).
fn fill_inputs(net: &mut Net<Cpu>) -> anyhow::Result<()> {
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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Peak resident memory of this process, from /proc (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn time_net<B: crema::backend::Backend>(net: &mut Net<B>, iterations: usize) -> anyhow::Result<()> {
    let n = net.layers().len();
    let be = net.backend().clone();
    let backward = net.layers().iter().any(|l| l.need_backward);
    // Warm-up: first-touch allocations and caches stay out of the numbers.
    net.forward()?;
    if backward {
        net.backward()?;
    }
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
    for i in 0..n {
        let f = fwd[i].iter().sum::<f64>() / iterations as f64;
        let b = bwd[i].iter().sum::<f64>() / iterations as f64;
        let gf = flops[i] as f64 / 1e9;
        let rate = if f > 0.0 && gf > 0.0 { format!("{:.1}", gf / (f / 1e3)) } else { String::new() };
        println!("{:<28} {:>12.3} {:>12.3} {:>10.3} {:>10}", net.layers()[i].name(), f, b, gf, rate);
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
    if let Some(rss) = peak_rss_bytes() {
        println!("Peak resident memory: {:.1} MB", rss as f64 / 1e6);
    }
    if let Some((_, peak)) = be.memory_usage() {
        println!("Peak device memory: {:.1} MB", peak as f64 / 1e6);
    }
    Ok(())
}
