//! CPU local response normalisation, both regions, following the order of Caffe's floating
//! point operations: across channels a window sliding along the channel axis (as
//! `LRNLayer::CrossChannelForward_cpu` / `CrossChannelBackward_cpu`), within a channel the
//! composition Caffe builds (square, average pooling with padding, power, product).

use super::norm::check_len;
use crate::backend::LrnSpec;
use crate::{Error, Result};
use rayon::prelude::*;

/// Pixels per task across channels (each task covers every channel of one image's tile).
const TILE: usize = 1024;

fn check(spec: &LrnSpec, bufs: &[(&str, usize)]) -> Result<()> {
    if spec.size.is_multiple_of(2) {
        return Err(Error::Internal(format!("LRN size {} is not odd", spec.size)));
    }
    for (what, len) in bufs {
        check_len(&format!("LRN {what}"), *len, spec.count())?;
    }
    Ok(())
}

/// Splits `buf` (`num` images of `channels` planes of `plane` pixels) into tasks: one per
/// image and tile of `TILE` pixels, each holding that tile's row of every channel.
fn tiles_mut(buf: &mut [f32], channels: usize, plane: usize) -> Vec<(usize, usize, Vec<&mut [f32]>)> {
    let tiles = plane.div_ceil(TILE);
    let images = buf.len() / (channels * plane);
    let mut tasks: Vec<(usize, usize, Vec<&mut [f32]>)> =
        (0..images * tiles).map(|t| (t / tiles, (t % tiles) * TILE, Vec::with_capacity(channels))).collect();
    for (p, pl) in buf.chunks_exact_mut(plane).enumerate() {
        let n = p / channels;
        for (t, row) in pl.chunks_mut(TILE).enumerate() {
            tasks[n * tiles + t].2.push(row);
        }
    }
    tasks
}

pub(super) fn forward(spec: &LrnSpec, x: &[f32], scale: &mut [f32], y: &mut [f32]) -> Result<()> {
    check(spec, &[("input", x.len()), ("scale", scale.len()), ("output", y.len())])?;
    if spec.count() == 0 {
        return Ok(());
    }
    if spec.within_channel {
        within_forward(spec, x, scale, y);
    } else {
        across_forward(spec, x, scale, y);
    }
    Ok(())
}

pub(super) fn backward(spec: &LrnSpec, x: &[f32], y: &[f32], scale: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    check(
        spec,
        &[
            ("input", x.len()),
            ("output", y.len()),
            ("scale", scale.len()),
            ("top diff", dy.len()),
            ("bottom diff", dx.len()),
        ],
    )?;
    if spec.count() == 0 {
        return Ok(());
    }
    if spec.within_channel {
        within_backward(spec, x, scale, dy, dx);
    } else {
        across_backward(spec, x, y, scale, dy, dx);
    }
    Ok(())
}

fn across_forward(spec: &LrnSpec, x: &[f32], scale: &mut [f32], y: &mut [f32]) {
    let (c_n, plane, size) = (spec.channels, spec.height * spec.width, spec.size);
    let pre = (size - 1) / 2;
    let a = spec.alpha / size as f32;
    let (k, beta) = (spec.k, spec.beta);
    tiles_mut(scale, c_n, plane).into_par_iter().zip(tiles_mut(y, c_n, plane)).for_each(
        |((n, t0, mut sc), (_, _, mut ys))| {
            let w = sc[0].len();
            let xrow = |c: usize| &x[(n * c_n + c) * plane + t0..][..w];
            let add_sq = |row: &mut [f32], coef: f32, xr: &[f32]| {
                row.iter_mut().zip(xr).for_each(|(s, &v)| *s += coef * (v * v))
            };
            // Channel 0: k plus the head of the window (padded channels contribute nothing).
            sc[0].fill(k);
            for j in 0..size {
                if j >= pre && j - pre < c_n {
                    add_sq(sc[0], a, xrow(j - pre));
                }
            }
            for c in 1..c_n {
                let (prev, cur) = sc.split_at_mut(c);
                let cur = &mut *cur[0];
                cur.copy_from_slice(prev[c - 1]);
                if c + pre < c_n {
                    add_sq(cur, a, xrow(c + pre));
                }
                if c > pre {
                    add_sq(cur, -a, xrow(c - 1 - pre));
                }
            }
            for (c, (yr, sr)) in ys.iter_mut().zip(&sc).enumerate() {
                yr.iter_mut().zip(sr.iter().zip(xrow(c))).for_each(|(o, (&s, &v))| *o = s.powf(-beta) * v);
            }
        },
    );
}

fn across_backward(spec: &LrnSpec, x: &[f32], y: &[f32], scale: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (c_n, plane, size) = (spec.channels, spec.height * spec.width, spec.size);
    let pre = (size - 1) / 2;
    let beta = spec.beta;
    // Caffe computes this constant in double and stores it as Dtype.
    let crv = (2.0 * spec.alpha as f64 * spec.beta as f64 / size as f64) as f32;
    tiles_mut(dx, c_n, plane).into_par_iter().for_each(|(n, t0, mut dxs)| {
        let w = dxs[0].len();
        fn row(buf: &[f32], at: usize, w: usize) -> &[f32] {
            &buf[at..at + w]
        }
        let at = |c: usize| (n * c_n + c) * plane + t0;
        let row = |buf, c| row(buf, at(c), w);
        // dx = dy * scale^-beta; ratio = dy * y / scale.
        let mut ratio = vec![0.0f32; c_n * w];
        for c in 0..c_n {
            let (g, s, o) = (row(dy, c), row(scale, c), row(y, c));
            dxs[c].iter_mut().zip(g.iter().zip(s)).for_each(|(d, (&g, &s))| *d = g * s.powf(-beta));
            ratio[c * w..(c + 1) * w].iter_mut().zip(g.iter().zip(o.iter().zip(s))).for_each(|(r, (&g, (&o, &s)))| {
                *r = g * o / s;
            });
        }
        let ratio_at = |c: usize| &ratio[c * w..(c + 1) * w];
        // The padded ratio: channel c sits at index c + pre. Sum the first size - 1 entries.
        let mut accum = vec![0.0f32; w];
        for j in 0..size - 1 {
            if j >= pre && j - pre < c_n {
                accum.iter_mut().zip(ratio_at(j - pre)).for_each(|(a, &r)| *a += r);
            }
        }
        for (c, dx) in dxs.iter_mut().enumerate() {
            if c + pre < c_n {
                accum.iter_mut().zip(ratio_at(c + pre)).for_each(|(a, &r)| *a += r);
            }
            dx.iter_mut().zip(row(x, c).iter().zip(&accum)).for_each(|(d, (&v, &a))| *d += -crv * (v * a));
            if c >= pre {
                accum.iter_mut().zip(ratio_at(c - pre)).for_each(|(a, &r)| *a -= r);
            }
        }
    });
}

/// Caffe's average-pooling window of output `o` along an axis of `len` (stride 1, pad `pre`,
/// kernel `size`): the clipped range and the divisor counted before clipping.
fn window(o: usize, len: usize, pre: usize, size: usize) -> (usize, usize, usize) {
    let start = o as isize - pre as isize;
    let end = (start + size as isize).min((len + pre) as isize);
    let count = (end - start) as usize;
    (start.max(0) as usize, (end.min(len as isize)) as usize, count)
}

fn within_forward(spec: &LrnSpec, x: &[f32], scale: &mut [f32], y: &mut [f32]) {
    let (h_n, w_n, size) = (spec.height, spec.width, spec.size);
    let pre = (size - 1) / 2;
    let (alpha, beta) = (spec.alpha, spec.beta);
    let plane = h_n * w_n;
    scale.par_chunks_mut(plane).zip(y.par_chunks_mut(plane)).zip(x.par_chunks(plane)).for_each(|((sc, yp), xp)| {
        for h in 0..h_n {
            let (h0, h1, hc) = window(h, h_n, pre, size);
            for w in 0..w_n {
                let (w0, w1, wc) = window(w, w_n, pre, size);
                let mut sum = 0.0f32;
                for hh in h0..h1 {
                    for &v in &xp[hh * w_n + w0..hh * w_n + w1] {
                        sum += v * v;
                    }
                }
                let avg = sum / (hc * wc) as f32;
                let s = alpha * avg + 1.0;
                sc[h * w_n + w] = s;
                yp[h * w_n + w] = xp[h * w_n + w] * s.powf(-beta);
            }
        }
    });
}

fn within_backward(spec: &LrnSpec, x: &[f32], scale: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (h_n, w_n, size) = (spec.height, spec.width, spec.size);
    let pre = (size - 1) / 2;
    let beta = spec.beta;
    // The power layer's derivative factor, power * scale.
    let diff_scale = -spec.beta * spec.alpha;
    let plane = h_n * w_n;
    dx.par_chunks_mut(plane).enumerate().for_each(|(p, dxp)| {
        let off = p * plane;
        let (xp, sp, gp) = (&x[off..off + plane], &scale[off..off + plane], &dy[off..off + plane]);
        // Gradient reaching the pooled sum: (dy * x) * (power * scale * p / s).
        let pooled: Vec<f32> = (0..plane)
            .map(|i| {
                let s = sp[i];
                (gp[i] * xp[i]) * (diff_scale * (s.powf(-beta) / s))
            })
            .collect();
        for h in 0..h_n {
            // Outputs whose windows cover row h, in the order Caffe's pooling scatters them.
            let (oh0, oh1) = (h.saturating_sub(pre), (h + pre + 1).min(h_n));
            for w in 0..w_n {
                let (ow0, ow1) = (w.saturating_sub(pre), (w + pre + 1).min(w_n));
                let mut d_sq = 0.0f32;
                for oh in oh0..oh1 {
                    let hc = window(oh, h_n, pre, size).2;
                    for ow in ow0..ow1 {
                        let wc = window(ow, w_n, pre, size).2;
                        d_sq += pooled[oh * w_n + ow] / (hc * wc) as f32;
                    }
                }
                let i = h * w_n + w;
                let d_prod = sp[i].powf(-beta) * gp[i];
                dxp[i] = d_prod + d_sq * (2.0 * xp[i]);
            }
        }
    });
}
