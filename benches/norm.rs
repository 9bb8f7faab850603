//! Times the batch-normalisation primitives on the CPU at the size of the lung SegNet's
//! largest BN (4 x 64 x 256 x 256, in place, with scale and shift), alone, followed by a ReLU
//! and with the ReLU fused into it, beside a plain copy of the same tensor as the
//! memory-bandwidth yardstick.
//!
//! `cargo bench --bench norm` (`CREMA_BENCH_NUM` sets the batch). Prints the best of 5 runs;
//! passes or fails on nothing but errors.

use std::time::{Duration, Instant};

use crema::backend::cpu::Cpu;
use crema::backend::{Activation, Activations, ChannelDims, EpsPlacement, Io, Math, NormAffine, NormGrad, Normalization, Storage};

fn best_of(runs: usize, mut f: impl FnMut() -> crema::Result<()>) -> crema::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

/// The tensors of one batch normalisation.
struct Bn {
    d: ChannelDims,
    x: Vec<f32>,
    y: Vec<f32>,
    x_norm: Vec<f32>,
    dx: Vec<f32>,
    stats: [Vec<f32>; 3],
    scale: Vec<f32>,
    shift: Vec<f32>,
    dscale: Vec<f32>,
    dshift: Vec<f32>,
}

impl Bn {
    fn forward(&mut self, be: &Cpu, relu: Option<f32>) -> crema::Result<()> {
        let affine = NormAffine { relu, ..NormAffine::new(&self.scale, &self.shift) };
        let [mean, var, std] = &mut self.stats;
        let io = Io::Pair(&self.x, &mut self.y);
        be.channel_norm_batch(self.d, io, 1e-9, EpsPlacement::InsideSqrt, mean, var, std, Some(affine), Some(&mut self.x_norm))
    }

    fn backward(&mut self, be: &Cpu, relu: Option<f32>) -> crema::Result<()> {
        let affine = NormAffine { relu, ..NormAffine::new(&self.scale, &self.shift) };
        let io = Io::Pair(&self.y, &mut self.dx);
        let std = &self.stats[2];
        be.channel_norm_backward(self.d, NormGrad::BatchStats, Some(&self.x_norm), io, std, Some(affine), Some(&mut self.dscale), Some(&mut self.dshift), true)
    }
}

fn main() -> crema::Result<()> {
    let num: usize = std::env::var("CREMA_BENCH_NUM").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let d = ChannelDims::new(num, 64, 256 * 256);
    let (n, c) = (d.count(), d.channels);
    let be = Cpu::new();
    let x: Vec<f32> = (0..n).map(|i| (i.wrapping_mul(2_654_435_761) % 1000) as f32 * 1e-3 - 0.5).collect();
    let mut bn = Bn {
        d,
        y: x.clone(),
        x,
        x_norm: vec![0.0; n],
        dx: vec![0.0; n],
        stats: [vec![0.0; c], vec![0.0; c], vec![0.0; c]],
        scale: vec![1.5; c],
        shift: vec![0.1; c],
        dscale: vec![0.0; c],
        dshift: vec![0.0; c],
    };
    println!("{} x {} x 256 x 256 ({} MB), {}", num, c, (n * 4) >> 20, be.describe());
    let relu = Activation::ReLU { negative_slope: 0.0 };
    let rows: Vec<(&str, Duration)> = vec![
        ("copy (bandwidth yardstick)", best_of(5, || be.copy(&bn.x, &mut bn.dx))?),
        ("channel_moments", best_of(5, || {
            let [mean, var, _] = &mut bn.stats;
            be.channel_moments(d, &bn.x, mean, var)
        })?),
        ("channel_norm_batch (affine, x_norm)", best_of(5, || bn.forward(&be, None))?),
        ("ReLU in place", best_of(5, || be.activation_forward(relu, Io::InPlace(&mut bn.y)))?),
        ("channel_norm_batch with the ReLU fused", best_of(5, || bn.forward(&be, Some(0.0)))?),
        ("ReLU backward in place", best_of(5, || be.activation_backward(relu, &bn.x, &bn.x, Io::InPlace(&mut bn.dx)))?),
        ("channel_norm_backward (dx, dscale, dshift)", best_of(5, || bn.backward(&be, None))?),
        ("channel_norm_backward with the ReLU fused", best_of(5, || bn.backward(&be, Some(0.0)))?),
        ("channel_affine in place", best_of(5, || be.channel_affine(d, Io::InPlace(&mut bn.y), Some(&bn.scale), Some(&bn.shift)))?),
    ];
    for (what, t) in rows {
        println!("{what:44} {:8.2} ms", t.as_secs_f64() * 1e3);
    }
    Ok(())
}
