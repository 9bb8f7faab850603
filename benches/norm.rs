//! Times the batch-normalisation primitives on the CPU at the size of the lung SegNet's
//! largest BN (4 x 64 x 256 x 256, in place, with scale and shift), beside a plain copy of
//! the same tensor as the memory-bandwidth yardstick.
//!
//! `cargo bench --bench norm` (`CREMA_BENCH_NUM` sets the batch). Prints the best of 5 runs;
//! passes or fails on nothing but errors.

use std::time::{Duration, Instant};

use crema::backend::cpu::Cpu;
use crema::backend::{ChannelDims, EpsPlacement, Io, Math, NormGrad, Normalization, Storage};

fn best_of(runs: usize, mut f: impl FnMut() -> crema::Result<()>) -> crema::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

fn main() -> crema::Result<()> {
    let num: usize = std::env::var("CREMA_BENCH_NUM").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let d = ChannelDims::new(num, 64, 256 * 256);
    let n = d.count();
    let be = Cpu::new();
    let x: Vec<f32> = (0..n).map(|i| (i.wrapping_mul(2_654_435_761) % 1000) as f32 * 1e-3).collect();
    let (mut y, mut x_norm, mut dx) = (x.clone(), vec![0.0f32; n], vec![0.0f32; n]);
    let c = d.channels;
    let (mut mean, mut var, mut std) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    let (scale, shift) = (vec![1.5f32; c], vec![0.1f32; c]);
    let (mut dscale, mut dshift) = (vec![0.0f32; c], vec![0.0f32; c]);
    println!("{} x {} x 256 x 256 ({} MB), {}", num, c, (n * 4) >> 20, be.describe());
    let rows: [(&str, Duration); 5] = [
        ("copy (bandwidth yardstick)", best_of(5, || be.copy(&x, &mut y))?),
        ("channel_moments", best_of(5, || be.channel_moments(d, &x, &mut mean, &mut var))?),
        (
            "channel_norm_batch (affine, x_norm)",
            best_of(5, || {
                let io = Io::Pair(&x, &mut y);
                let affine = Some((&scale, &shift));
                be.channel_norm_batch(
                    d,
                    io,
                    1e-9,
                    EpsPlacement::InsideSqrt,
                    &mut mean,
                    &mut var,
                    &mut std,
                    affine,
                    Some(&mut x_norm),
                )
            })?,
        ),
        (
            "channel_norm_backward (dx, dscale, dshift)",
            best_of(5, || {
                let io = Io::Pair(&x, &mut dx);
                be.channel_norm_backward(
                    d,
                    NormGrad::BatchStats,
                    Some(&x_norm),
                    io,
                    &std,
                    Some(&scale),
                    Some(&mut dscale),
                    Some(&mut dshift),
                    true,
                )
            })?,
        ),
        (
            "channel_affine in place",
            best_of(5, || be.channel_affine(d, Io::InPlace(&mut y), Some(&scale), Some(&shift)))?,
        ),
    ];
    for (what, t) in rows {
        println!("{what:44} {:8.2} ms", t.as_secs_f64() * 1e3);
    }
    Ok(())
}
