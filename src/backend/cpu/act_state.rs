//! CPU kernels of the activations with state: Swish (its sigmoid cache), PReLU (per-channel
//! slopes) and Dropout (its mask). Formulas as documented in `backend/ops/act.rs`.

use super::act::{cmax, cmin, same_len, sigmoid};
use super::CHUNK;
use crate::backend::{random_bits, Io};
use crate::{Error, Result};
use rayon::prelude::*;

/// `y[i] = f(i, x[i], &mut aux[i])` over an [`Io`], lengths checked.
fn map_io_aux(what: &str, io: Io<'_, Vec<f32>>, aux: &mut [f32], f: impl Fn(usize, f32, &mut f32) -> f32 + Sync) -> Result<()> {
    match io {
        Io::InPlace(y) => {
            same_len(what, &[y.len(), aux.len()])?;
            y.par_chunks_mut(CHUNK).zip(aux.par_chunks_mut(CHUNK)).enumerate().for_each(|(c, (yc, ac))| {
                yc.iter_mut().zip(ac).enumerate().for_each(|(j, (y, a))| *y = f(c * CHUNK + j, *y, a))
            });
        }
        Io::Pair(x, y) => {
            same_len(what, &[x.len(), y.len(), aux.len()])?;
            y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(aux.par_chunks_mut(CHUNK))).enumerate().for_each(
                |(c, (yc, (xc, ac)))| {
                    yc.iter_mut()
                        .zip(xc.iter().zip(ac))
                        .enumerate()
                        .for_each(|(j, (y, (&x, a)))| *y = f(c * CHUNK + j, x, a))
                },
            );
        }
    }
    Ok(())
}

pub(super) fn swish_forward(beta: f32, io: Io<'_, Vec<f32>>, sig: &mut [f32]) -> Result<()> {
    map_io_aux("swish_forward", io, sig, |_, x, s| {
        *s = sigmoid(beta * x);
        x * *s
    })
}

pub(super) fn dropout_forward(key: u64, threshold: u32, scale: f32, io: Io<'_, Vec<f32>>, mask: &mut [f32]) -> Result<()> {
    map_io_aux("dropout_forward", io, mask, |i, x, m| {
        *m = if random_bits(key, i as u64) >= threshold { 1.0 } else { 0.0 };
        x * *m * scale
    })
}

/// Checks PReLU geometry against a data length and a slope length.
fn prelu_check(what: &str, channels: usize, dim: usize, shared: bool, count: usize, slopes: usize) -> Result<()> {
    let plane_ok = channels > 0 && dim > 0 && count.is_multiple_of(channels * dim);
    let want_slopes = if shared { 1 } else { channels };
    if (count > 0 && !plane_ok) || slopes != want_slopes {
        return Err(Error::Internal(format!(
            "{what}: {count} elements, {channels} channels of {dim}, {slopes} slopes (shared: {shared})"
        )));
    }
    Ok(())
}

/// Runs `f(channel, out_plane, in_planes)` over the planes of `dim` elements of `out` and the
/// same planes of each of `ins` (all of `out`'s length), several planes per parallel task.
fn for_planes<const N: usize>(
    channels: usize,
    dim: usize,
    shared: bool,
    out: &mut [f32],
    ins: [&[f32]; N],
    f: impl Fn(usize, &mut [f32], [&[f32]; N]) + Sync,
) {
    if out.is_empty() {
        return;
    }
    let per_task = (CHUNK / dim).max(1);
    let task = per_task * dim;
    out.par_chunks_mut(task).enumerate().for_each(|(t, oc)| {
        for (j, op) in oc.chunks_mut(dim).enumerate() {
            let plane = t * per_task + j;
            let start = plane * dim;
            let c = if shared { 0 } else { plane % channels };
            f(c, op, ins.map(|s| &s[start..start + dim]));
        }
    });
}

pub(super) fn prelu_forward(channels: usize, dim: usize, shared: bool, slope: &[f32], io: Io<'_, Vec<f32>>) -> Result<()> {
    let what = "prelu_forward";
    let f = |x: f32, s: f32| cmax(x, 0.0) + s * cmin(x, 0.0);
    match io {
        Io::InPlace(y) => {
            prelu_check(what, channels, dim, shared, y.len(), slope.len())?;
            for_planes(channels, dim, shared, y, [], |c, yp, []| yp.iter_mut().for_each(|v| *v = f(*v, slope[c])));
        }
        Io::Pair(x, y) => {
            same_len(what, &[x.len(), y.len()])?;
            prelu_check(what, channels, dim, shared, y.len(), slope.len())?;
            for_planes(channels, dim, shared, y, [x], |c, yp, [xp]| {
                yp.iter_mut().zip(xp).for_each(|(v, &x)| *v = f(x, slope[c]))
            });
        }
    }
    Ok(())
}

pub(super) fn prelu_backward_data(
    channels: usize,
    dim: usize,
    shared: bool,
    slope: &[f32],
    x: &[f32],
    diff: Io<'_, Vec<f32>>,
) -> Result<()> {
    let what = "prelu_backward_data";
    let g = |dy: f32, x: f32, s: f32| dy * ((if x > 0.0 { 1.0 } else { 0.0 }) + s * (if x <= 0.0 { 1.0 } else { 0.0 }));
    match diff {
        Io::InPlace(d) => {
            same_len(what, &[x.len(), d.len()])?;
            prelu_check(what, channels, dim, shared, d.len(), slope.len())?;
            for_planes(channels, dim, shared, d, [x], |c, dp, [xp]| {
                dp.iter_mut().zip(xp).for_each(|(d, &x)| *d = g(*d, x, slope[c]))
            });
        }
        Io::Pair(dy, dx) => {
            same_len(what, &[x.len(), dy.len(), dx.len()])?;
            prelu_check(what, channels, dim, shared, dx.len(), slope.len())?;
            for_planes(channels, dim, shared, dx, [dy, x], |c, dp, [yp, xp]| {
                dp.iter_mut().zip(yp.iter().zip(xp)).for_each(|(d, (&dy, &x))| *d = g(dy, x, slope[c]))
            });
        }
    }
    Ok(())
}

pub(super) fn prelu_backward_slope(
    channels: usize,
    dim: usize,
    shared: bool,
    x: &[f32],
    dy: &[f32],
    dslope: &mut [f32],
) -> Result<()> {
    let what = "prelu_backward_slope";
    same_len(what, &[x.len(), dy.len()])?;
    prelu_check(what, channels, dim, shared, x.len(), dslope.len())?;
    if x.is_empty() {
        return Ok(());
    }
    let planes: Vec<f64> = x
        .par_chunks(dim)
        .zip(dy.par_chunks(dim))
        .map(|(xp, yp)| {
            xp.iter()
                .zip(yp)
                .map(|(&x, &dy)| (dy * x * if x <= 0.0 { 1.0 } else { 0.0 }) as f64)
                .sum::<f64>()
        })
        .collect();
    let mut sums = vec![0.0f64; dslope.len()];
    for (p, s) in planes.iter().enumerate() {
        sums[if shared { 0 } else { p % channels }] += s;
    }
    dslope.iter_mut().zip(&sums).for_each(|(d, s)| *d += *s as f32);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;
    use crate::backend::Activations;
    use crate::rng::Rng;

    fn uniform(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.uniform_range(lo, hi)).collect()
    }

    /// Naive PReLU loops, Caffe's indexing: `c = (i / dim) % channels / div_factor`.
    fn naive(n: usize, channels: usize, dim: usize, shared: bool, slope: &[f32], x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f64>) {
        let count = n * channels * dim;
        let div = if shared { channels } else { 1 };
        let (mut y, mut dx, mut ds) = (vec![0.0; count], vec![0.0; count], vec![0.0f64; slope.len()]);
        for i in 0..count {
            let c = (i / dim) % channels / div;
            y[i] = x[i].max(0.0) + slope[c] * x[i].min(0.0);
            dx[i] = dy[i] * if x[i] > 0.0 { 1.0 } else { slope[c] };
            ds[c] += if x[i] <= 0.0 { (dy[i] * x[i]) as f64 } else { 0.0 };
        }
        (y, dx, ds)
    }

    #[test]
    fn prelu_matches_naive_loops() {
        // Small planes (many per task) and large ones (a plane longer than a chunk).
        for (n, channels, dim) in [(2, 3, 7), (3, 2, CHUNK + 5), (1, 4, 1)] {
            for shared in [false, true] {
                let count = n * channels * dim;
                let x = uniform(count, -2.0, 2.0, 1);
                let dy = uniform(count, -1.0, 1.0, 2);
                let slope = if shared { vec![0.3] } else { uniform(channels, -0.5, 0.5, 3) };
                let (y_want, dx_want, ds_want) = naive(n, channels, dim, shared, &slope, &x, &dy);
                let be = Cpu;
                let mut y = vec![0.0; count];
                be.prelu_forward(channels, dim, shared, &slope, Io::Pair(&x, &mut y)).unwrap();
                assert_eq!(y, y_want);
                let mut yi = x.clone();
                be.prelu_forward(channels, dim, shared, &slope, Io::InPlace(&mut yi)).unwrap();
                assert_eq!(yi, y_want);
                let mut dx = vec![0.0; count];
                be.prelu_backward_data(channels, dim, shared, &slope, &x, Io::Pair(&dy, &mut dx)).unwrap();
                assert_eq!(dx, dx_want);
                let mut d = dy.clone();
                be.prelu_backward_data(channels, dim, shared, &slope, &x, Io::InPlace(&mut d)).unwrap();
                assert_eq!(d, dx_want);
                // Accumulates onto what is there.
                let mut ds = vec![1.0; slope.len()];
                be.prelu_backward_slope(channels, dim, shared, &x, &dy, &mut ds).unwrap();
                for (g, w) in ds.iter().zip(&ds_want) {
                    assert!((*g as f64 - (1.0 + w)).abs() < 1e-4, "{g} vs 1 + {w}");
                }
            }
        }
    }

    #[test]
    fn prelu_slope_sum_is_the_same_on_one_thread() {
        let (n, channels, dim) = (4, 3, 2 * CHUNK + 11);
        let x = uniform(n * channels * dim, -2.0, 2.0, 4);
        let dy = uniform(n * channels * dim, -1.0, 1.0, 5);
        let run = || {
            let mut ds = vec![0.0; channels];
            prelu_backward_slope(channels, dim, false, &x, &dy, &mut ds).unwrap();
            ds
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
        assert_eq!(one, run());
    }

    #[test]
    fn prelu_geometry_is_checked() {
        let x = vec![0.0; 12];
        let mut y = vec![0.0; 12];
        let e = prelu_forward(5, 2, false, &[0.1; 5], Io::Pair(&x, &mut y)).unwrap_err();
        assert!(e.to_string().contains("prelu_forward: 12 elements, 5 channels of 2, 5 slopes"), "{e}");
        let e = prelu_forward(3, 2, false, &[0.1; 1], Io::Pair(&x, &mut y)).unwrap_err();
        assert!(e.to_string().contains("1 slopes (shared: false)"), "{e}");
    }

    #[test]
    fn dropout_mask_scale_and_backward() {
        let n = 3 * CHUNK + 101;
        let x = uniform(n, 0.5, 1.5, 6);
        let ratio = 0.3f32;
        let threshold = (ratio as f64 * 4_294_967_296.0).floor() as u32;
        let scale = (1.0 / (1.0 - ratio as f64)) as f32;
        let (mut y, mut mask) = (vec![0.0; n], vec![0.0; n]);
        Cpu.dropout_forward(42, threshold, scale, Io::Pair(&x, &mut y), &mut mask).unwrap();
        for i in 0..n {
            let keep = random_bits(42, i as u64) >= threshold;
            assert_eq!(mask[i], if keep { 1.0 } else { 0.0 });
            assert_eq!(y[i], if keep { x[i] * scale } else { 0.0 });
        }
        let kept = mask.iter().sum::<f32>() as f64 / n as f64;
        assert!((kept - 0.7).abs() < 0.01, "kept {kept}");
        // In place: the same mask for the same key; another key, another mask.
        let (mut yi, mut mask2) = (x.clone(), vec![0.0; n]);
        Cpu.dropout_forward(42, threshold, scale, Io::InPlace(&mut yi), &mut mask2).unwrap();
        assert_eq!((&yi, &mask2), (&y, &mask));
        Cpu.dropout_forward(43, threshold, scale, Io::InPlace(&mut x.clone()), &mut mask2).unwrap();
        assert_ne!(mask2, mask);
        let dy = uniform(n, -1.0, 1.0, 7);
        let mut dx = vec![0.0; n];
        Cpu.dropout_backward(scale, &mask, Io::Pair(&dy, &mut dx)).unwrap();
        for i in 0..n {
            assert_eq!(dx[i], dy[i] * mask[i] * scale);
        }
        // Ratio 0 keeps everything.
        Cpu.dropout_forward(1, 0, 1.0, Io::Pair(&x, &mut y), &mut mask).unwrap();
        assert_eq!(y, x);
    }

    #[test]
    fn swish_matches_its_formula() {
        let n = CHUNK + 3;
        let x = uniform(n, -4.0, 4.0, 8);
        let dy = uniform(n, -1.0, 1.0, 9);
        for beta in [1.0f32, 0.5, 2.0] {
            let b = beta as f64;
            let (mut y, mut sig) = (vec![0.0; n], vec![0.0; n]);
            Cpu.swish_forward(beta, Io::Pair(&x, &mut y), &mut sig).unwrap();
            let mut dx = vec![0.0; n];
            Cpu.swish_backward(beta, &y, &sig, Io::Pair(&dy, &mut dx)).unwrap();
            for i in 0..n {
                let xd = x[i] as f64;
                let s = 1.0 / (1.0 + (-b * xd).exp());
                assert!((y[i] as f64 - xd * s).abs() < 1e-5, "y[{i}]");
                let d = s + b * xd * s * (1.0 - s);
                assert!((dx[i] as f64 - dy[i] as f64 * d).abs() < 1e-5, "dx[{i}]");
            }
            let (mut yi, mut sig2) = (x.clone(), vec![0.0; n]);
            Cpu.swish_forward(beta, Io::InPlace(&mut yi), &mut sig2).unwrap();
            assert_eq!((yi, sig2), (y, sig));
        }
    }
}
