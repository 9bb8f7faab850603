//! CPU normalisation primitives over `(outer, channels, inner)` data: per-channel statistics,
//! batch normalisation forward and backward, per-channel affine maps. LRN is in `lrn.rs`.
//!
//! Batch normalisation works one channel per task: its statistics and its normalised output
//! (or its gradient sums and its input gradient) are computed while the channel's elements are
//! in cache, so a forward reads the input from memory once and a backward reads `dy` and
//! `x_hat` once. Sums run in eight fixed lanes, f32 within blocks of a row and f64 across
//! blocks, combined in a fixed order, so the bits do not depend on the thread count.

use super::act::{relu, relu_grad};
use super::{CHUNK, Cpu};
use crate::backend::{ChannelDims, EpsPlacement, Io, NormAffine, NormGrad, Normalization};
use crate::{Error, Result};
use rayon::prelude::*;

/// Independent accumulators per sum (lets the compiler vectorise; fixed, so deterministic).
const LANES: usize = 8;

pub(super) fn check_len(what: &str, len: usize, want: usize) -> Result<()> {
    if len == want {
        Ok(())
    } else {
        Err(Error::Internal(format!("{what}: buffer of {len} elements where {want} are expected")))
    }
}

/// Elements of a row summed in f32 lanes before they join the f64 lanes (f32 arithmetic is
/// twice as wide; a block's partial sums stay exact to a few units in the last place).
const BLOCK: usize = 256;

fn lanes_add(acc: &mut [f64; LANES], row: &[f32], f: impl Fn(f32) -> f32) {
    for block in row.chunks(BLOCK) {
        let mut part = [0.0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for ch in &mut chunks {
            for l in 0..LANES {
                part[l] += f(ch[l]);
            }
        }
        for (l, &v) in chunks.remainder().iter().enumerate() {
            part[l] += f(v);
        }
        for l in 0..LANES {
            acc[l] += part[l] as f64;
        }
    }
}

fn lanes_add2(acc: &mut [f64; LANES], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for (ba, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut part = [0.0f32; LANES];
        let mut ca = ba.chunks_exact(LANES);
        let mut cb = bb.chunks_exact(LANES);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for l in 0..LANES {
                part[l] += f(x[l], y[l]);
            }
        }
        for (l, (&x, &y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
            part[l] += f(x, y);
        }
        for l in 0..LANES {
            acc[l] += part[l] as f64;
        }
    }
}

fn lanes_total(acc: &[f64; LANES]) -> f64 {
    acc.iter().sum()
}

/// The rows of channel `c`: `outer` runs of `inner` elements.
fn channel_rows(buf: &[f32], d: ChannelDims, c: usize) -> Vec<&[f32]> {
    (0..d.outer).map(|o| &buf[(o * d.channels + c) * d.inner..][..d.inner]).collect()
}

/// Every row of `buf`, writable, grouped by channel.
fn rows_by_channel_mut(buf: &mut [f32], d: ChannelDims) -> Vec<Vec<&mut [f32]>> {
    let mut groups: Vec<Vec<&mut [f32]>> = (0..d.channels).map(|_| Vec::with_capacity(d.outer)).collect();
    for (r, row) in buf.chunks_exact_mut(d.inner).enumerate() {
        groups[r % d.channels].push(row);
    }
    groups
}

/// Mean and biased variance of a channel's rows: two passes (the second over data still in
/// cache) summing the squared deviations from the mean, so no cancellation however large
/// the mean.
fn moments(rows: &[&[f32]], m: usize) -> (f32, f32) {
    if m == 0 {
        return (0.0, 0.0);
    }
    let mut acc = [0.0; LANES];
    rows.iter().for_each(|r| lanes_add(&mut acc, r, |v| v));
    let mean = (lanes_total(&acc) / m as f64) as f32;
    let mut acc = [0.0; LANES];
    rows.iter().for_each(|r| {
        lanes_add(&mut acc, r, |v| {
            let e = v - mean;
            e * e
        })
    });
    (mean, (lanes_total(&acc) / m as f64) as f32)
}

fn std_of(var: f32, eps: f32, placement: EpsPlacement) -> f32 {
    match placement {
        EpsPlacement::InsideSqrt => (var + eps).sqrt(),
        EpsPlacement::OutsideSqrt => var.sqrt() + eps,
    }
}

/// What a batch normalisation writes for `x_hat` in one channel.
#[derive(Clone, Copy)]
enum Out {
    /// `x_hat`.
    Plain,
    /// `x_hat * scale + shift`.
    Affine(f32, f32),
    /// Caffe's ReLU of `x_hat * scale + shift`, with its negative slope.
    AffineRelu(f32, f32, f32),
}

impl Out {
    fn of(affine: Option<NormAffine<'_, Vec<f32>>>, c: usize) -> Out {
        match affine {
            None => Out::Plain,
            Some(a) => match a.relu {
                None => Out::Affine(a.scale[c], a.shift[c]),
                Some(k) => Out::AffineRelu(a.scale[c], a.shift[c], k),
            },
        }
    }
}

/// `dst[i] = f(src[i])`, or `dst[i] = f(dst[i])` in place.
#[inline(always)]
fn map_row(src: Option<&[f32]>, dst: &mut [f32], f: impl Fn(f32) -> f32) {
    match src {
        Some(x) => dst.iter_mut().zip(x).for_each(|(d, &v)| *d = f(v)),
        None => dst.iter_mut().for_each(|d| *d = f(*d)),
    }
}

/// `dst[i] = f(src[i], b[i])`, or `dst[i] = f(dst[i], b[i])` in place.
#[inline(always)]
fn map_row2(src: Option<&[f32]>, b: &[f32], dst: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    match src {
        Some(x) => dst.iter_mut().zip(x.iter().zip(b)).for_each(|(d, (&v, &w))| *d = f(v, w)),
        None => dst.iter_mut().zip(b).for_each(|(d, &w)| *d = f(*d, w)),
    }
}

/// Applies `seg(c, src, dst)` to every run of elements of one row (one channel), in parallel
/// chunks over the flat buffer; `src` is None in place.
fn par_segments(d: ChannelDims, io: Io<'_, Vec<f32>>, seg: impl Fn(usize, Option<&[f32]>, &mut [f32]) + Sync) {
    let walk = |start: usize, src: Option<&[f32]>, dst: &mut [f32]| {
        let (mut i, end) = (start, start + dst.len());
        while i < end {
            let row = i / d.inner;
            let stop = ((row + 1) * d.inner).min(end);
            seg(row % d.channels, src.map(|s| &s[i - start..stop - start]), &mut dst[i - start..stop - start]);
            i = stop;
        }
    };
    match io {
        Io::InPlace(y) => y.par_chunks_mut(CHUNK).enumerate().for_each(|(k, yc)| walk(k * CHUNK, None, yc)),
        Io::Pair(x, y) => y
            .par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(k, (yc, xc))| walk(k * CHUNK, Some(xc), yc)),
    }
}

fn io_lens(io: &Io<'_, Vec<f32>>) -> (usize, usize) {
    match io {
        Io::InPlace(y) => (y.len(), y.len()),
        Io::Pair(x, y) => (x.len(), y.len()),
    }
}

impl Normalization for Cpu {
    fn channel_moments(&self, d: ChannelDims, x: &Vec<f32>, mean: &mut Vec<f32>, var: &mut Vec<f32>) -> Result<()> {
        check_len("channel_moments input", x.len(), d.count())?;
        check_len("channel_moments mean", mean.len(), d.channels)?;
        check_len("channel_moments var", var.len(), d.channels)?;
        if d.count() == 0 {
            mean.fill(0.0);
            var.fill(0.0);
            return Ok(());
        }
        let m = d.per_channel();
        let stats: Vec<(f32, f32)> =
            (0..d.channels).into_par_iter().map(|c| moments(&channel_rows(x, d, c), m)).collect();
        for (c, (mu, v)) in stats.into_iter().enumerate() {
            mean[c] = mu;
            var[c] = v;
        }
        Ok(())
    }

    fn channel_std(&self, var: &Vec<f32>, eps: f32, placement: EpsPlacement, std: &mut Vec<f32>) -> Result<()> {
        check_len("channel_std", std.len(), var.len())?;
        std.iter_mut().zip(var).for_each(|(s, &v)| *s = std_of(v, eps, placement));
        Ok(())
    }

    fn channel_norm_batch(
        &self,
        d: ChannelDims,
        io: Io<'_, Vec<f32>>,
        eps: f32,
        placement: EpsPlacement,
        mean: &mut Vec<f32>,
        var: &mut Vec<f32>,
        std: &mut Vec<f32>,
        affine: Option<NormAffine<'_, Vec<f32>>>,
        x_norm: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        let (xl, yl) = io_lens(&io);
        check_len("channel_norm_batch input", xl, d.count())?;
        check_len("channel_norm_batch output", yl, d.count())?;
        for (what, b) in [("mean", &*mean), ("var", &*var), ("std", &*std)] {
            check_len(&format!("channel_norm_batch {what}"), b.len(), d.channels)?;
        }
        if let Some(a) = affine {
            check_len("channel_norm_batch scale", a.scale.len(), d.channels)?;
            check_len("channel_norm_batch shift", a.shift.len(), d.channels)?;
        }
        if let Some(xn) = &x_norm {
            check_len("channel_norm_batch x_norm", xn.len(), d.count())?;
        }
        if d.count() == 0 {
            return Ok(());
        }
        let m = d.per_channel();
        let (src, dst) = match io {
            Io::InPlace(y) => (None, y),
            Io::Pair(x, y) => (Some(x), y),
        };
        let dst_rows = rows_by_channel_mut(dst, d);
        let xn_rows: Vec<Option<Vec<&mut [f32]>>> = match x_norm {
            Some(xn) => rows_by_channel_mut(xn, d).into_iter().map(Some).collect(),
            None => (0..d.channels).map(|_| None).collect(),
        };
        let tasks: Vec<_> = dst_rows.into_iter().zip(xn_rows).collect();
        let stats: Vec<(f32, f32, f32)> = tasks
            .into_par_iter()
            .enumerate()
            .map(|(c, (mut ys, mut xns))| {
                let xs: Option<Vec<&[f32]>> = src.map(|x| channel_rows(x, d, c));
                let (mu, v) = match &xs {
                    Some(xs) => moments(xs, m),
                    None => moments(&ys.iter().map(|r| &**r).collect::<Vec<_>>(), m),
                };
                let sd = std_of(v, eps, placement);
                let out = Out::of(affine, c);
                for (r, y) in ys.iter_mut().enumerate() {
                    let x = xs.as_ref().map(|xs| xs[r]);
                    match (xns.as_mut(), out) {
                        (Some(xns), _) => {
                            let xn = &mut *xns[r];
                            map_row(Some(x.unwrap_or(y)), xn, |v| (v - mu) / sd);
                            match out {
                                Out::Plain => y.copy_from_slice(xn),
                                Out::Affine(s, b) => map_row(Some(xn), y, |v| v * s + b),
                                Out::AffineRelu(s, b, k) => map_row(Some(xn), y, |v| relu(v * s + b, k)),
                            }
                        }
                        (None, Out::Plain) => map_row(x, y, |v| (v - mu) / sd),
                        (None, Out::Affine(s, b)) => map_row(x, y, |v| (v - mu) / sd * s + b),
                        (None, Out::AffineRelu(s, b, k)) => map_row(x, y, |v| relu((v - mu) / sd * s + b, k)),
                    }
                }
                (mu, v, sd)
            })
            .collect();
        for (c, (mu, v, sd)) in stats.into_iter().enumerate() {
            mean[c] = mu;
            var[c] = v;
            std[c] = sd;
        }
        Ok(())
    }

    fn channel_normalize(&self, d: ChannelDims, io: Io<'_, Vec<f32>>, mean: &Vec<f32>, std: &Vec<f32>) -> Result<()> {
        let (xl, yl) = io_lens(&io);
        check_len("channel_normalize input", xl, d.count())?;
        check_len("channel_normalize output", yl, d.count())?;
        check_len("channel_normalize mean", mean.len(), d.channels)?;
        check_len("channel_normalize std", std.len(), d.channels)?;
        if d.count() == 0 {
            return Ok(());
        }
        par_segments(d, io, |c, x, y| {
            let (mu, sd) = (mean[c], std[c]);
            map_row(x, y, |v| (v - mu) / sd)
        });
        Ok(())
    }

    fn channel_norm_backward(
        &self,
        d: ChannelDims,
        grad: NormGrad,
        x_norm: Option<&Vec<f32>>,
        diff: Io<'_, Vec<f32>>,
        std: &Vec<f32>,
        affine: Option<NormAffine<'_, Vec<f32>>>,
        mut dscale: Option<&mut Vec<f32>>,
        mut dshift: Option<&mut Vec<f32>>,
        write_dx: bool,
    ) -> Result<()> {
        let (dyl, dxl) = io_lens(&diff);
        check_len("channel_norm_backward dy", dyl, d.count())?;
        check_len("channel_norm_backward dx", dxl, d.count())?;
        check_len("channel_norm_backward std", std.len(), d.channels)?;
        for (what, b) in [
            ("scale", affine.map(|a| a.scale.len())),
            ("shift", affine.map(|a| a.shift.len())),
            ("dscale", dscale.as_ref().map(|b| b.len())),
            ("dshift", dshift.as_ref().map(|b| b.len())),
        ] {
            if let Some(len) = b {
                check_len(&format!("channel_norm_backward {what}"), len, d.channels)?;
            }
        }
        let fused_relu = affine.is_some_and(|a| a.relu.is_some());
        let need_xn = dscale.is_some() || (write_dx && grad == NormGrad::BatchStats) || fused_relu;
        match x_norm {
            Some(xn) => check_len("channel_norm_backward x_norm", xn.len(), d.count())?,
            None if need_xn => {
                return Err(Error::Internal("channel_norm_backward: x_norm is needed and not given".into()));
            }
            None => {}
        }
        if d.count() == 0 {
            return Ok(());
        }
        let m = d.per_channel() as f64;
        let want_sum_dy = dshift.is_some() || (write_dx && grad != NormGrad::Fixed);
        let want_sum_dyx = dscale.is_some() || (write_dx && grad == NormGrad::BatchStats);
        let (dy_src, dx_dst) = match diff {
            Io::InPlace(g) => (None, g),
            Io::Pair(dy, dx) => (Some(dy), dx),
        };
        let sums: Vec<(f64, f64)> = rows_by_channel_mut(dx_dst, d)
            .into_par_iter()
            .enumerate()
            .map(|(c, mut dxs)| {
                let mut dys: Option<Vec<&[f32]>> = dy_src.map(|dy| channel_rows(dy, d, c));
                let xns: Vec<&[f32]> = match x_norm {
                    Some(xn) => channel_rows(xn, d, c),
                    None => vec![&[]; d.outer],
                };
                let s = affine.map(|a| a.scale[c]).unwrap_or(1.0);
                // The diff as this layer's output diff: the fused ReLU's bottom diff, from the
                // ReLU's output recomputed from x_hat, or the diff itself. Where dx is to be
                // written, the ReLU's backward writes it there first, while the channel is in
                // cache (as the ReLU layer would have), and the rest runs in place; otherwise
                // each use applies it.
                let mut relu_mask = affine.and_then(|a| a.relu.map(|k| (a.shift[c], k)));
                if let Some((b, k)) = relu_mask
                    && write_dx
                {
                    for (r, dx) in dxs.iter_mut().enumerate() {
                        let dy = dys.as_ref().map(|v| v[r]);
                        map_row2(dy, xns[r], dx, |g, x| relu_grad(g, relu(x * s + b, k), k));
                    }
                    dys = None;
                    relu_mask = None;
                }
                let dy_of = |g: f32, x: f32| match relu_mask {
                    Some((b, k)) => relu_grad(g, relu(x * s + b, k), k),
                    None => g,
                };
                let (mut a_dy, mut a_dyx) = ([0.0; LANES], [0.0; LANES]);
                for r in 0..d.outer {
                    let dy: &[f32] = match &dys {
                        Some(dys) => dys[r],
                        None => &*dxs[r],
                    };
                    match (want_sum_dy, relu_mask) {
                        (false, _) => {}
                        (true, None) => lanes_add(&mut a_dy, dy, |v| v),
                        (true, Some(_)) => lanes_add2(&mut a_dy, dy, xns[r], dy_of),
                    }
                    if want_sum_dyx {
                        lanes_add2(&mut a_dyx, dy, xns[r], |g, x| dy_of(g, x) * x);
                    }
                }
                let (sum_dy, sum_dyx) = (lanes_total(&a_dy), lanes_total(&a_dyx));
                if write_dx {
                    let sd = std[c];
                    let mg = (s as f64 * sum_dy / m) as f32;
                    let mgx = (s as f64 * sum_dyx / m) as f32;
                    let f = |g: f32, x: f32| {
                        let g = dy_of(g, x);
                        match grad {
                            NormGrad::Fixed => g * s / sd,
                            NormGrad::MeanOnly => (g * s - mg) / sd,
                            NormGrad::BatchStats => (g * s - (x * mgx + mg)) / sd,
                        }
                    };
                    for (r, dx) in dxs.iter_mut().enumerate() {
                        let dy = dys.as_ref().map(|v| v[r]);
                        match (grad, relu_mask) {
                            // No x_hat needed: none may have been given.
                            (NormGrad::Fixed, None) => map_row(dy, dx, |g| g * s / sd),
                            (NormGrad::MeanOnly, None) => map_row(dy, dx, |g| (g * s - mg) / sd),
                            _ => map_row2(dy, xns[r], dx, f),
                        }
                    }
                }
                (sum_dy, sum_dyx)
            })
            .collect();
        for (c, (sum_dy, sum_dyx)) in sums.into_iter().enumerate() {
            if let Some(ds) = dscale.as_deref_mut() {
                ds[c] += sum_dyx as f32;
            }
            if let Some(db) = dshift.as_deref_mut() {
                db[c] += sum_dy as f32;
            }
        }
        Ok(())
    }

    fn channel_affine(
        &self,
        d: ChannelDims,
        io: Io<'_, Vec<f32>>,
        scale: Option<&Vec<f32>>,
        bias: Option<&Vec<f32>>,
    ) -> Result<()> {
        let (xl, yl) = io_lens(&io);
        check_len("channel_affine input", xl, d.count())?;
        check_len("channel_affine output", yl, d.count())?;
        if let Some(s) = scale {
            check_len("channel_affine scale", s.len(), d.channels)?;
        }
        if let Some(b) = bias {
            check_len("channel_affine bias", b.len(), d.channels)?;
        }
        if d.count() == 0 {
            return Ok(());
        }
        par_segments(d, io, |c, x, y| match (scale, bias) {
            (Some(s), Some(b)) => {
                let (s, b) = (s[c], b[c]);
                map_row(x, y, |v| v * s + b)
            }
            (Some(s), None) => {
                let s = s[c];
                map_row(x, y, |v| v * s)
            }
            (None, Some(b)) => {
                let b = b[c];
                map_row(x, y, |v| v + b)
            }
            (None, None) => {
                if let Some(x) = x {
                    y.copy_from_slice(x)
                }
            }
        });
        Ok(())
    }

    fn channel_affine_backward(
        &self,
        d: ChannelDims,
        x: Option<&Vec<f32>>,
        diff: Io<'_, Vec<f32>>,
        scale: Option<&Vec<f32>>,
        dscale: Option<&mut Vec<f32>>,
        dbias: Option<&mut Vec<f32>>,
        write_dx: bool,
    ) -> Result<()> {
        let (dyl, dxl) = io_lens(&diff);
        check_len("channel_affine_backward dy", dyl, d.count())?;
        check_len("channel_affine_backward dx", dxl, d.count())?;
        for (what, b) in [
            ("scale", scale.map(|b| b.len())),
            ("dscale", dscale.as_ref().map(|b| b.len())),
            ("dbias", dbias.as_ref().map(|b| b.len())),
        ] {
            if let Some(len) = b {
                check_len(&format!("channel_affine_backward {what}"), len, d.channels)?;
            }
        }
        match x {
            Some(x) => check_len("channel_affine_backward x", x.len(), d.count())?,
            None if dscale.is_some() => return Err(Error::Internal("channel_affine_backward: dscale needs x".into())),
            None => {}
        }
        if d.count() == 0 {
            return Ok(());
        }
        if dscale.is_some() || dbias.is_some() {
            let dy: &[f32] = match &diff {
                Io::InPlace(g) => g,
                Io::Pair(dy, _) => dy,
            };
            let (want_s, want_b) = (dscale.is_some(), dbias.is_some());
            let sums: Vec<(f64, f64)> = (0..d.channels)
                .into_par_iter()
                .map(|c| {
                    let (mut a_s, mut a_b) = ([0.0; LANES], [0.0; LANES]);
                    for o in 0..d.outer {
                        let at = (o * d.channels + c) * d.inner;
                        let g = &dy[at..at + d.inner];
                        if want_b {
                            lanes_add(&mut a_b, g, |v| v);
                        }
                        if let (true, Some(x)) = (want_s, x) {
                            lanes_add2(&mut a_s, g, &x[at..at + d.inner], |g, x| g * x);
                        }
                    }
                    (lanes_total(&a_s), lanes_total(&a_b))
                })
                .collect();
            let (mut dscale, mut dbias) = (dscale, dbias);
            for (c, (s, b)) in sums.into_iter().enumerate() {
                if let Some(ds) = dscale.as_deref_mut() {
                    ds[c] += s as f32;
                }
                if let Some(db) = dbias.as_deref_mut() {
                    db[c] += b as f32;
                }
            }
        }
        if write_dx {
            match (scale, diff) {
                (None, Io::InPlace(_)) => {}
                (None, Io::Pair(dy, dx)) => {
                    dx.par_chunks_mut(CHUNK).zip(dy.par_chunks(CHUNK)).for_each(|(o, i)| o.copy_from_slice(i))
                }
                (Some(s), diff) => par_segments(d, diff, |c, dy, dx| {
                    let s = s[c];
                    map_row(dy, dx, |g| g * s)
                }),
            }
        }
        Ok(())
    }

    fn lrn_forward(
        &self,
        spec: &crate::backend::LrnSpec,
        x: &Vec<f32>,
        scale: &mut Vec<f32>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        super::lrn::forward(spec, x, scale, y)
    }

    fn lrn_backward(
        &self,
        spec: &crate::backend::LrnSpec,
        x: &Vec<f32>,
        y: &Vec<f32>,
        scale: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        super::lrn::backward(spec, x, y, scale, dy, dx)
    }
}
