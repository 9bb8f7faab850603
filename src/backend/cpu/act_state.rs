//! CPU kernels of the activations with state: Swish (its sigmoid cache), PReLU (per-channel
//! slopes) and Dropout (its mask). Formulas as documented in `backend/ops/act.rs`.

use super::act::{cmax, cmin, same_len, sigmoid};
use super::CHUNK;
use crate::backend::{dropout_bits, Io};
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
        *m = if dropout_bits(key, i as u64) >= threshold { 1.0 } else { 0.0 };
        x * *m * scale
    })
}

/// Checks PReLU geometry against a data length and a slope length.
fn prelu_check(what: &str, channels: usize, dim: usize, shared: bool, count: usize, slopes: usize) -> Result<()> {
    let plane_ok = channels > 0 && dim > 0 && count % (channels * dim) == 0;
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
