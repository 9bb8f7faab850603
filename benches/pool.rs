//! Times the pooling primitives on the lung SegNet's largest pooling (64 channels of 256x256
//! per image, 2x2 stride 2 with a mask) and its Upsample, plus a 3x3 stride-2 padded max
//! pooling of the same size on the generic path, and reports the memory traffic per second.
//!
//! `cargo bench --bench pool` (`CREMA_BENCH_BATCH` for the images per batch, default 1).
//! Prints timings; passes or fails on nothing but errors.

use std::time::{Duration, Instant};

use crema::backend::cpu::Cpu;
use crema::backend::{PoolSpec, Pooling, Storage};

fn best_of(runs: usize, mut f: impl FnMut() -> crema::Result<()>) -> crema::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

fn report(what: &str, t: Duration, bytes: usize) {
    println!("{what:<44} {:>8.3} ms  {:>6.1} GB/s", t.as_secs_f64() * 1e3, bytes as f64 / t.as_secs_f64() / 1e9);
}

fn spec(planes: usize, k: usize, s: usize, p: usize, out: usize) -> PoolSpec {
    PoolSpec {
        planes,
        in_h: 256,
        in_w: 256,
        out_h: out,
        out_w: out,
        kernel_h: k,
        kernel_w: k,
        stride_h: s,
        stride_w: s,
        pad_h: p,
        pad_w: p,
    }
}

fn main() -> crema::Result<()> {
    let batch: usize = std::env::var("CREMA_BENCH_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let be = Cpu::new();
    println!("{}; {batch} x 64 x 256 x 256", be.describe());
    let planes = batch * 64;
    let fast = spec(planes, 2, 2, 0, 128);
    let generic = spec(planes, 3, 2, 1, 128);
    let (n_in, n_out) = (fast.in_len(), fast.out_len());
    let x: Vec<f32> = (0..n_in).map(|i| ((i * 7919) % 10007) as f32 * 1e-3).collect();
    let dy: Vec<f32> = (0..n_out).map(|i| ((i * 31) % 101) as f32 * 1e-2).collect();
    let (mut y, mut mask, mut dx) = (be.alloc(n_out)?, be.alloc(n_out)?, be.alloc(n_in)?);
    let (mut up, mut dup) = (be.alloc(n_in)?, be.alloc(n_out)?);
    let runs = 20;

    let t = best_of(runs, || be.max_pool_forward(&fast, &x, &mut y, &mut mask))?;
    report("max_pool_forward 2x2/2 (fast path)", t, 4 * (n_in + 2 * n_out));
    let t = best_of(runs, || be.max_pool_backward(&fast, &dy, &mask, &mut dx))?;
    report("max_pool_backward 2x2/2", t, 4 * (n_in + 2 * n_out));
    let t = best_of(runs, || be.upsample_forward(planes, fast.out_plane(), fast.in_plane(), &y, &mask, &mut up))?;
    report("upsample_forward 128 -> 256", t, 4 * (n_in + 2 * n_out));
    let t = best_of(runs, || be.upsample_backward(planes, fast.out_plane(), fast.in_plane(), &up, &mask, &mut dup))?;
    report("upsample_backward 256 -> 128", t, 4 * (n_in + 2 * n_out));
    let t = best_of(runs, || be.max_pool_forward(&generic, &x, &mut y, &mut mask))?;
    report("max_pool_forward 3x3/2 pad 1 (generic)", t, 4 * (n_in + 2 * n_out));
    let t = best_of(runs, || be.ave_pool_forward(&generic, &x, &mut y))?;
    report("ave_pool_forward 3x3/2 pad 1", t, 4 * (n_in + n_out));
    let t = best_of(runs, || be.ave_pool_backward(&generic, &dy, &mut dx))?;
    report("ave_pool_backward 3x3/2 pad 1", t, 4 * (n_in + n_out));
    Ok(())
}
