//! Convolution and GEMM throughput on the CPU backend: the 26 convolutions of the lung SegNet
//! (batch 1, 1 x 256 x 256, VGG16 encoder-decoder, 3x3 stride 1 pad 1), forward,
//! backward-data and backward-filter, and GEMM on three shapes.
//!
//! `cargo bench --bench conv [-- gemm|conv|accuracy] [--runs N] [--layer L] [--ops fdw]`:
//! prints the median of N runs (default 5) per layer and in total, and the peak RSS of the
//! process; `accuracy` compares sampled outputs of every layer with float64 sums.

use crema::backend::cpu::gemm::sgemm;
use crema::backend::cpu::{conv_paths, Cpu};
use crema::backend::{ConvSpec, Convolution};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn rand_vec(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time of this process so far (all threads), in seconds, from the scheduler's per-thread
/// runtimes: a measure that other processes on the machine disturb much less than wall time.
fn cpu_time() -> f64 {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
    }
    ns as f64 * 1e-9
}

fn bench_gemm(runs: usize) {
    println!("GEMM (row-major C = A·B), {} threads, median of {runs} runs", rayon::current_num_threads());
    for (m, k, n) in [(64, 576, 65536), (256, 2304, 4096), (2048, 2048, 2048)] {
        let a = rand_vec(1, m * k);
        let b = rand_vec(2, k * n);
        let mut c = vec![0.0f32; m * n];
        sgemm(false, false, m, n, k, 1.0, &a, k, &b, n, 0.0, &mut c, n);
        let mut cpu = Vec::new();
        let times: Vec<f64> = (0..runs)
            .map(|_| {
                let (t, c0) = (Instant::now(), cpu_time());
                sgemm(false, false, m, n, k, 1.0, &a, k, &b, n, 0.0, &mut c, n);
                cpu.push(cpu_time() - c0);
                t.elapsed().as_secs_f64()
            })
            .collect();
        let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
        let t = median(times);
        let gf = |t: f64| 2.0 * (m * n * k) as f64 / t / 1e9;
        let per_core = gf(median(cpu)) ;
        println!("  M={m:5} K={k:5} N={n:6}: {:8.2} ms {:7.1} GFLOP/s (best {:7.1}; per core-second of CPU time {:6.1})", t * 1e3, gf(t), gf(best), per_core);
    }
}

/// The lung SegNet's convolutions: (spatial size, in channels, out channels).
const SEGNET: [(usize, usize, usize); 26] = [
    (256, 1, 64), (256, 64, 64),
    (128, 64, 128), (128, 128, 128),
    (64, 128, 256), (64, 256, 256), (64, 256, 256),
    (32, 256, 512), (32, 512, 512), (32, 512, 512),
    (16, 512, 512), (16, 512, 512), (16, 512, 512),
    (16, 512, 512), (16, 512, 512), (16, 512, 512),
    (32, 512, 512), (32, 512, 512), (32, 512, 256),
    (64, 256, 256), (64, 256, 256), (64, 256, 128),
    (128, 128, 128), (128, 128, 64),
    (256, 64, 64), (256, 64, 2),
];

fn spec(hw: usize, c: usize, k: usize) -> ConvSpec {
    ConvSpec {
        num: 1,
        channels: c,
        out_channels: k,
        group: 1,
        in_shape: vec![hw, hw],
        out_shape: vec![hw, hw],
        kernel: vec![3, 3],
        stride: vec![1, 1],
        pad: vec![1, 1],
        dilation: vec![1, 1],
    }
}

fn bench_conv(runs: usize) {
    let cpu = Cpu::new();
    println!("SegNet convolutions, batch 1, {} threads, median of {runs} runs (ms, GFLOP/s)", rayon::current_num_threads());
    println!("(GF/s: direct-convolution FLOPs per wall second; cpu: the same per CPU second per thread, which other load on the machine disturbs less)");
    println!("{:>3} {:>4} {:>4} {:>4} | {:>8} {:>6} {:>6} | {:>8} {:>6} {:>6} | {:>8} {:>6} {:>6}", "#", "HW", "C", "K", "fwd ms", "GF/s", "cpu", "bwd-d ms", "GF/s", "cpu", "bwd-f ms", "GF/s", "cpu");
    let mut tot = [(0.0f64, 0.0f64, 0.0f64); 3];
    let mut flops_all = 0.0;
    let ops: String = std::env::args().skip_while(|a| a != "--ops").nth(1).unwrap_or_else(|| "fdw".into());
    let only: Option<usize> = std::env::args().skip_while(|a| a != "--layer").nth(1).and_then(|v| v.parse().ok());
    for (li, &(hw, c, k)) in SEGNET.iter().enumerate() {
        if only.is_some_and(|l| l != li) {
            continue;
        }
        let s = spec(hw, c, k);
        let x = rand_vec(10 + li as u64, s.in_image_len());
        let w: Vec<f32> = rand_vec(100 + li as u64, s.weight_len()).iter().map(|v| v * (2.0 / (9.0 * c as f32)).sqrt()).collect();
        let dy = rand_vec(200 + li as u64, s.out_image_len());
        let mut y = vec![0.0f32; s.out_image_len()];
        let mut dx = vec![0.0f32; s.in_image_len()];
        let mut dw = vec![0.0f32; s.weight_len()];
        let flops = s.forward_flops() as f64;
        // (median wall seconds, median CPU seconds per thread, best wall seconds)
        let threads = rayon::current_num_threads() as f64;
        let time = |f: &mut dyn FnMut()| {
            f();
            let (mut wall, mut cpu) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let (t, c) = (Instant::now(), cpu_time());
                f();
                cpu.push((cpu_time() - c) / threads);
                wall.push(t.elapsed().as_secs_f64());
            }
            let best = wall.iter().cloned().fold(f64::INFINITY, f64::min);
            (median(wall), median(cpu), best)
        };
        let none = (0.0, 0.0, 0.0);
        let f = if ops.contains('f') { time(&mut || cpu.conv_forward(&s, &x, &w, &mut y).unwrap()) } else { none };
        // The first layer's input (the image) needs no gradient.
        let d = if li == 0 || !ops.contains('d') { none } else { time(&mut || cpu.conv_backward_data(&s, &dy, &w, &mut dx).unwrap()) };
        let g = if ops.contains('w') { time(&mut || cpu.conv_backward_filter(&s, &x, &dy, &mut dw).unwrap()) } else { none };
        for (i, t) in [f, d, g].iter().enumerate() {
            tot[i].0 += t.0;
            tot[i].1 += t.1;
            tot[i].2 += t.2;
        }
        flops_all += flops * if li == 0 { 2.0 } else { 3.0 };
        let gf = |t: f64| if t > 0.0 { flops / t / 1e9 } else { 0.0 };
        println!(
            "{li:>3} {hw:>4} {c:>4} {k:>4} | {:8.2} {:6.1} {:6.1} | {:8.2} {:6.1} {:6.1} | {:8.2} {:6.1} {:6.1} | {}",
            f.0 * 1e3, gf(f.0), gf(f.1), d.0 * 1e3, gf(d.0), gf(d.1), g.0 * 1e3, gf(g.0), gf(g.1), conv_paths(&s)
        );
    }
    let fwd_flops: f64 = SEGNET.iter().map(|&(hw, c, k)| spec(hw, c, k).forward_flops() as f64).sum();
    let bd_flops = fwd_flops - spec(256, 1, 64).forward_flops() as f64;
    let names = ["forward", "backward-data", "backward-filter"];
    let flops = [fwd_flops, bd_flops, fwd_flops];
    for i in 0..3 {
        println!(
            "total {:<16} {:8.1} ms {:6.1} GFLOP/s  (best runs {:8.1} ms; CPU time per thread {:8.1} ms)",
            names[i], tot[i].0 * 1e3, flops[i] / tot[i].0 / 1e9, tot[i].2 * 1e3, tot[i].1 * 1e3
        );
    }
    let sum = |f: fn(&(f64, f64, f64)) -> f64| tot.iter().map(f).sum::<f64>();
    let (all, all_cpu, all_best) = (sum(|t| t.0), sum(|t| t.1), sum(|t| t.2));
    println!(
        "total fwd+bwd            {:8.1} ms {:6.1} GFLOP/s  (best runs {:8.1} ms; CPU time per thread {:8.1} ms; direct-convolution FLOPs {:.1} G)",
        all * 1e3, flops_all / all / 1e9, all_best * 1e3, all_cpu * 1e3, flops_all / 1e9
    );
}

/// Max |got - want| / max |want| over a sample of outputs of each primitive of each SegNet
/// layer, against float64 sums: the accuracy of whichever path the policy takes.
fn accuracy() {
    let cpu = Cpu::new();
    println!("accuracy vs float64 over sampled outputs: max |error| / max |value|, and ‖error‖₂ / ‖value‖₂");
    println!("{:>3} {:>4} {:>4} {:>4} | {:>17} | {:>17} | {:>17} | paths (fwd/bwd-data/bwd-filter)", "#", "HW", "C", "K", "forward", "bwd-data", "bwd-filt");
    let mut worst = [(0.0f64, 0.0f64); 3];
    for (li, &(hw, c, k)) in SEGNET.iter().enumerate() {
        let s = spec(hw, c, k);
        let x = rand_vec(10 + li as u64, s.in_image_len());
        let w: Vec<f32> = rand_vec(100 + li as u64, s.weight_len()).iter().map(|v| v * (2.0 / (9.0 * c as f32)).sqrt()).collect();
        let dy = rand_vec(200 + li as u64, s.out_image_len());
        let mut y = vec![0.0f32; s.out_image_len()];
        let mut dx = vec![0.0f32; s.in_image_len()];
        let mut dw = vec![0.0f32; s.weight_len()];
        cpu.conv_forward(&s, &x, &w, &mut y).unwrap();
        cpu.conv_backward_data(&s, &dy, &w, &mut dx).unwrap();
        cpu.conv_backward_filter(&s, &x, &dy, &mut dw).unwrap();
        let n = hw as isize;
        let at = |v: &[f32], ch: usize, r: isize, q: isize| if r < 0 || q < 0 || r >= n || q >= n { 0.0 } else { v[(ch * hw + r as usize) * hw + q as usize] as f64 };
        let mut rng = rand_vec(7 + li as u64, 3 * 1024).into_iter().map(|v| (v as f64 + 1.0) / 2.0);
        let mut pick = |m: usize| ((rng.next().unwrap() * m as f64) as usize).min(m - 1);
        // (max |error| / max |value|, ‖error‖₂ / ‖value‖₂)
        let rel = |pairs: &[(f64, f64)]| {
            if pairs.is_empty() {
                return (0.0, 0.0);
            }
            let max = pairs.iter().fold(0.0f64, |m, p| m.max(p.1.abs()));
            let l2 = pairs.iter().map(|p| p.1 * p.1).sum::<f64>().sqrt();
            let el2 = pairs.iter().map(|p| (p.0 - p.1) * (p.0 - p.1)).sum::<f64>().sqrt();
            (pairs.iter().fold(0.0f64, |m, p| m.max((p.0 - p.1).abs())) / max, el2 / l2)
        };
        let mut fw = Vec::new();
        for _ in 0..256 {
            let (kk, r, q) = (pick(k), pick(hw) as isize, pick(hw) as isize);
            let mut sum = 0.0;
            for cc in 0..c {
                for i in 0..3 {
                    for j in 0..3 {
                        sum += w[((kk * c + cc) * 3 + i as usize) * 3 + j as usize] as f64 * at(&x, cc, r + i - 1, q + j - 1);
                    }
                }
            }
            fw.push((y[(kk * hw + r as usize) * hw + q as usize] as f64, sum));
        }
        let mut bd = Vec::new();
        for _ in 0..if li == 0 { 0 } else { 256 } {
            let (cc, r, q) = (pick(c), pick(hw) as isize, pick(hw) as isize);
            let mut sum = 0.0;
            for kk in 0..k {
                for i in 0..3 {
                    for j in 0..3 {
                        sum += w[((kk * c + cc) * 3 + i as usize) * 3 + j as usize] as f64 * at(&dy, kk, r - i + 1, q - j + 1);
                    }
                }
            }
            bd.push((dx[(cc * hw + r as usize) * hw + q as usize] as f64, sum));
        }
        let mut bw = Vec::new();
        for _ in 0..48 {
            let (kk, cc, i, j) = (pick(k), pick(c), pick(3) as isize, pick(3) as isize);
            let mut sum = 0.0;
            for r in 0..n {
                for q in 0..n {
                    sum += dy[(kk * hw + r as usize) * hw + q as usize] as f64 * at(&x, cc, r + i - 1, q + j - 1);
                }
            }
            bw.push((dw[((kk * c + cc) * 3 + i as usize) * 3 + j as usize] as f64, sum));
        }
        let e = [rel(&fw), rel(&bd), rel(&bw)];
        for i in 0..3 {
            worst[i].0 = worst[i].0.max(e[i].0);
            worst[i].1 = worst[i].1.max(e[i].1);
        }
        println!("{li:>3} {hw:>4} {c:>4} {k:>4} | {:8.1e} {:8.1e} | {:8.1e} {:8.1e} | {:8.1e} {:8.1e} | {}", e[0].0, e[0].1, e[1].0, e[1].1, e[2].0, e[2].1, conv_paths(&s));
    }
    println!("worst               | {:8.1e} {:8.1e} | {:8.1e} {:8.1e} | {:8.1e} {:8.1e}", worst[0].0, worst[0].1, worst[1].0, worst[1].1, worst[2].0, worst[2].1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(5);
    let want = |w: &str| !args.iter().any(|a| a == "gemm" || a == "conv" || a == "accuracy") || args.iter().any(|a| a == w);
    if want("gemm") {
        bench_gemm(runs);
    }
    if want("conv") {
        bench_conv(runs);
    }
    if args.iter().any(|a| a == "accuracy") {
        accuracy();
    }
    println!("peak RSS {:.0} MB", peak_rss_mb());
}
