//! CPU pooling and upsampling: one task per group of planes (so small planes are not one task
//! each), each plane computed in Caffe's loop order, so results are the same bits whatever the
//! thread count.

use super::{range_check, Cpu, CHUNK};
use crate::backend::{stochastic_uniform, PoolSpec, Pooling};
use crate::{Error, Result};
use rayon::prelude::*;

/// Planes per rayon task for planes of `plane_len` elements: about [`CHUNK`] elements a task.
fn planes_per_task(plane_len: usize) -> usize {
    (CHUNK / plane_len.max(1)).max(1)
}

fn check(what: &str, spec: &PoolSpec, x: usize, y: usize) -> Result<()> {
    range_check(&format!("{what} input"), 0, spec.in_len(), x)?;
    range_check(&format!("{what} output"), 0, spec.out_len(), y)
}

/// Per output row and per output column: a window `[lo, hi)` along that axis.
type Windows = (Vec<(usize, usize)>, Vec<(usize, usize)>);
/// Per output row and per output column: a window `[lo, hi)` and its divisor.
type AveWindows = (Vec<(usize, usize, i64)>, Vec<(usize, usize, i64)>);

/// The clipped max-pooling windows of every output row and column (the windows of stochastic
/// pooling too).
fn max_windows(spec: &PoolSpec) -> Windows {
    let axis = |out, kernel, stride, pad, input| (0..out).map(|o| PoolSpec::max_window(o, kernel, stride, pad, input)).collect();
    (axis(spec.out_h, spec.kernel_h, spec.stride_h, spec.pad_h, spec.in_h), axis(spec.out_w, spec.kernel_w, spec.stride_w, spec.pad_w, spec.in_w))
}

/// The clipped average-pooling windows and divisors of every output row and column.
fn ave_windows(spec: &PoolSpec) -> AveWindows {
    let axis = |out, kernel, stride, pad, input| (0..out).map(|o| PoolSpec::ave_window(o, kernel, stride, pad, input)).collect();
    (axis(spec.out_h, spec.kernel_h, spec.stride_h, spec.pad_h, spec.in_h), axis(spec.out_w, spec.kernel_w, spec.stride_w, spec.pad_w, spec.in_w))
}

/// Max pooling of one plane, any geometry.
fn max_plane_generic(spec: &PoolSpec, rows: &[(usize, usize)], cols: &[(usize, usize)], x: &[f32], y: &mut [f32], mask: &mut [f32]) {
    let iw = spec.in_w;
    for (ph, &(h0, h1)) in rows.iter().enumerate() {
        let yrow = &mut y[ph * spec.out_w..(ph + 1) * spec.out_w];
        let mrow = &mut mask[ph * spec.out_w..(ph + 1) * spec.out_w];
        for (pw, &(w0, w1)) in cols.iter().enumerate() {
            let mut best = -f32::MAX;
            let mut arg: i64 = -1;
            for h in h0..h1 {
                let row = &x[h * iw..h * iw + w1];
                for (w, &v) in row.iter().enumerate().skip(w0) {
                    if v > best {
                        best = v;
                        arg = (h * iw + w) as i64;
                    }
                }
            }
            yrow[pw] = best;
            mrow[pw] = arg as f32;
        }
    }
}

/// Max pooling of one plane with a 2x2 kernel, stride 2 and no padding (SegNet's pools): two
/// input rows per output row, pairs of columns, the same scan order and comparisons as the
/// generic loop; the clipped last row or column (odd sizes, ceil rounding) falls back to it.
fn max_plane_2x2(spec: &PoolSpec, x: &[f32], y: &mut [f32], mask: &mut [f32]) {
    let (ih, iw, ow) = (spec.in_h, spec.in_w, spec.out_w);
    let full_cols = (iw / 2).min(ow);
    for ph in 0..spec.out_h {
        let r0 = 2 * ph;
        let yrow = &mut y[ph * ow..(ph + 1) * ow];
        let mrow = &mut mask[ph * ow..(ph + 1) * ow];
        let row0 = &x[r0 * iw..(r0 + 1) * iw];
        if r0 + 1 < ih {
            let row1 = &x[(r0 + 1) * iw..(r0 + 2) * iw];
            let base0 = (r0 * iw) as i64;
            let base1 = base0 + iw as i64;
            for pw in 0..full_cols {
                let c = 2 * pw;
                let mut best = -f32::MAX;
                let mut arg: i64 = -1;
                for (v, i) in [(row0[c], base0), (row0[c + 1], base0 + 1), (row1[c], base1), (row1[c + 1], base1 + 1)] {
                    if v > best {
                        best = v;
                        arg = i + c as i64;
                    }
                }
                yrow[pw] = best;
                mrow[pw] = arg as f32;
            }
        } else {
            let base0 = (r0 * iw) as i64;
            for pw in 0..full_cols {
                let c = 2 * pw;
                let mut best = -f32::MAX;
                let mut arg: i64 = -1;
                for (v, i) in [(row0[c], base0), (row0[c + 1], base0 + 1)] {
                    if v > best {
                        best = v;
                        arg = i + c as i64;
                    }
                }
                yrow[pw] = best;
                mrow[pw] = arg as f32;
            }
        }
        for pw in full_cols..ow {
            let (h0, h1) = PoolSpec::max_window(ph, 2, 2, 0, ih);
            let (w0, w1) = PoolSpec::max_window(pw, 2, 2, 0, iw);
            let mut best = -f32::MAX;
            let mut arg: i64 = -1;
            for h in h0..h1 {
                for w in w0..w1 {
                    let v = x[h * iw + w];
                    if v > best {
                        best = v;
                        arg = (h * iw + w) as i64;
                    }
                }
            }
            yrow[pw] = best;
            mrow[pw] = arg as f32;
        }
    }
}

/// A mask entry as an index into a plane of `limit` elements (truncated toward zero, as
/// Caffe's `static_cast<int>`), or None when it is NaN or outside `0..limit`.
fn mask_index(m: f32, limit: usize) -> Option<usize> {
    let t = m.trunc();
    if t >= 0.0 && (t as usize) < limit { Some(t as usize) } else { None }
}

fn bad_mask(what: &str, plane: usize, i: usize, value: f32, limit: usize) -> Error {
    Error::Shape(format!(
        "{what}: mask value {value} at index {i} of plane {plane} is not an index into a plane of {limit} elements \
         (does the mask come from a max pooling of the matching size?)"
    ))
}

/// Stochastic pooling's pick in one window (rows `h0..h1`, columns `w0..w1` of a plane `iw`
/// wide) for the uniform draw `u`: the flat index of the first element at which the running
/// sum reaches `u * sum`, else the last element; None for an empty window.
fn stochastic_pick(xp: &[f32], iw: usize, (h0, h1): (usize, usize), (w0, w1): (usize, usize), u: f32) -> Option<usize> {
    let cells = || (h0..h1).flat_map(move |h| (w0..w1).map(move |w| h * iw + w));
    let mut sum = 0.0f32;
    for i in cells() {
        sum += xp[i];
    }
    let thres = u * sum;
    let mut run = 0.0f32;
    let mut last = None;
    for i in cells() {
        run += xp[i];
        if run >= thres {
            return Some(i);
        }
        last = Some(i);
    }
    last
}

impl Pooling for Cpu {
    fn max_pool_forward(&self, spec: &PoolSpec, x: &Vec<f32>, y: &mut Vec<f32>, mask: &mut Vec<f32>) -> Result<()> {
        check("max pooling", spec, x.len(), y.len())?;
        range_check("max pooling mask", 0, spec.out_len(), mask.len())?;
        let (ip, op) = (spec.in_plane(), spec.out_plane());
        if op == 0 {
            return Ok(());
        }
        if ip == 0 {
            // Every window is empty.
            y[..spec.out_len()].fill(-f32::MAX);
            mask[..spec.out_len()].fill(-1.0);
            return Ok(());
        }
        let fast = spec.kernel_h == 2 && spec.kernel_w == 2 && spec.stride_h == 2 && spec.stride_w == 2 && spec.pad_h == 0 && spec.pad_w == 0;
        let (rows, cols) = max_windows(spec);
        y[..spec.out_len()]
            .par_chunks_mut(op)
            .zip(mask[..spec.out_len()].par_chunks_mut(op))
            .zip(x[..spec.in_len()].par_chunks(ip))
            .with_min_len(planes_per_task(ip))
            .for_each(|((yp, mp), xp)| {
                if fast {
                    max_plane_2x2(spec, xp, yp, mp);
                } else {
                    max_plane_generic(spec, &rows, &cols, xp, yp, mp);
                }
            });
        Ok(())
    }

    fn max_pool_backward(&self, spec: &PoolSpec, dy: &Vec<f32>, mask: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        check("max pooling backward", spec, dx.len(), dy.len())?;
        range_check("max pooling backward mask", 0, spec.out_len(), mask.len())?;
        let (ip, op) = (spec.in_plane(), spec.out_plane());
        if ip == 0 {
            return Ok(());
        }
        if op == 0 {
            dx[..spec.in_len()].fill(0.0);
            return Ok(());
        }
        let bad = dx[..spec.in_len()]
            .par_chunks_mut(ip)
            .zip(dy[..spec.out_len()].par_chunks(op))
            .zip(mask[..spec.out_len()].par_chunks(op))
            .with_min_len(planes_per_task(ip))
            .enumerate()
            .find_map_first(|(p, ((dxp, dyp), mp))| {
                dxp.fill(0.0);
                for (i, (&g, &m)) in dyp.iter().zip(mp).enumerate() {
                    // Caffe's -1 of an empty window (where Caffe writes out of bounds).
                    if m <= -1.0 {
                        continue;
                    }
                    match mask_index(m, ip) {
                        Some(j) => dxp[j] += g,
                        None => return Some((p, i, m)),
                    }
                }
                None
            });
        match bad {
            Some((p, i, m)) => Err(bad_mask("max pooling backward", p, i, m, ip)),
            None => Ok(()),
        }
    }

    fn stochastic_pool_forward_train(&self, spec: &PoolSpec, key: u64, x: &Vec<f32>, y: &mut Vec<f32>, mask: &mut Vec<f32>) -> Result<()> {
        check("stochastic pooling", spec, x.len(), y.len())?;
        range_check("stochastic pooling mask", 0, spec.out_len(), mask.len())?;
        let (ip, op) = (spec.in_plane(), spec.out_plane());
        if op == 0 {
            return Ok(());
        }
        let (rows, cols) = max_windows(spec);
        y[..spec.out_len()]
            .par_chunks_mut(op)
            .zip(mask[..spec.out_len()].par_chunks_mut(op))
            .with_min_len(planes_per_task(ip.max(op)))
            .enumerate()
            .for_each(|(p, (yp, mp))| {
                let xp = &x[p * ip..(p + 1) * ip];
                for (ph, &hw) in rows.iter().enumerate() {
                    for (pw, &ww) in cols.iter().enumerate() {
                        let o = ph * spec.out_w + pw;
                        let u = stochastic_uniform(key, (p * op + o) as u64);
                        (yp[o], mp[o]) = match stochastic_pick(xp, spec.in_w, hw, ww, u) {
                            Some(i) => (xp[i], i as f32),
                            None => (0.0, -1.0),
                        };
                    }
                }
            });
        Ok(())
    }

    fn stochastic_pool_forward_test(&self, spec: &PoolSpec, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        check("stochastic pooling", spec, x.len(), y.len())?;
        let (ip, op) = (spec.in_plane(), spec.out_plane());
        if op == 0 {
            return Ok(());
        }
        let (rows, cols) = max_windows(spec);
        let iw = spec.in_w;
        y[..spec.out_len()].par_chunks_mut(op).with_min_len(planes_per_task(ip.max(op))).enumerate().for_each(|(p, yp)| {
            let xp = &x[p * ip..(p + 1) * ip];
            for (ph, &(h0, h1)) in rows.iter().enumerate() {
                for (pw, &(w0, w1)) in cols.iter().enumerate() {
                    let (mut sum, mut squares) = (f32::MIN_POSITIVE, 0.0f32);
                    for h in h0..h1 {
                        for w in w0..w1 {
                            let v = xp[h * iw + w];
                            sum += v;
                            squares = v.mul_add(v, squares);
                        }
                    }
                    yp[ph * spec.out_w + pw] = squares / sum;
                }
            }
        });
        Ok(())
    }

    fn ave_pool_forward(&self, spec: &PoolSpec, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        check("average pooling", spec, x.len(), y.len())?;
        let (ip, op) = (spec.in_plane(), spec.out_plane());
        if op == 0 {
            return Ok(());
        }
        let (rows, cols) = ave_windows(spec);
        let iw = spec.in_w;
        let plane = |p: usize, yp: &mut [f32]| {
            let xp = &x[p * ip..(p + 1) * ip];
            for (ph, &(h0, h1, sh)) in rows.iter().enumerate() {
                for (pw, &(w0, w1, sw)) in cols.iter().enumerate() {
                    let mut sum = 0.0f32;
                    if w0 < w1 {
                        for h in h0..h1 {
                            for &v in &xp[h * iw + w0..h * iw + w1] {
                                sum += v;
                            }
                        }
                    }
                    yp[ph * spec.out_w + pw] = sum / (sh * sw) as f32;
                }
            }
        };
        y[..spec.out_len()]
            .par_chunks_mut(op)
            .with_min_len(planes_per_task(ip.max(op)))
            .enumerate()
            .for_each(|(p, yp)| plane(p, yp));
        Ok(())
    }

    fn ave_pool_backward(&self, spec: &PoolSpec, dy: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        check("average pooling backward", spec, dx.len(), dy.len())?;
        let (ip, op) = (spec.in_plane(), spec.out_plane());
        if ip == 0 {
            return Ok(());
        }
        let (rows, cols) = ave_windows(spec);
        let iw = spec.in_w;
        dx[..spec.in_len()].par_chunks_mut(ip).with_min_len(planes_per_task(ip)).enumerate().for_each(|(p, dxp)| {
            dxp.fill(0.0);
            let dyp = &dy[p * op..(p + 1) * op];
            for (ph, &(h0, h1, sh)) in rows.iter().enumerate() {
                for (pw, &(w0, w1, sw)) in cols.iter().enumerate() {
                    if w0 >= w1 {
                        continue;
                    }
                    let g = dyp[ph * spec.out_w + pw] / (sh * sw) as f32;
                    for h in h0..h1 {
                        for v in &mut dxp[h * iw + w0..h * iw + w1] {
                            *v += g;
                        }
                    }
                }
            }
        });
        Ok(())
    }

    fn upsample_forward(
        &self,
        planes: usize,
        in_plane: usize,
        out_plane: usize,
        x: &Vec<f32>,
        mask: &Vec<f32>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        let (n_in, n_out) = (planes * in_plane, planes * out_plane);
        range_check("upsample input", 0, n_in, x.len())?;
        range_check("upsample mask", 0, n_in, mask.len())?;
        range_check("upsample output", 0, n_out, y.len())?;
        if out_plane == 0 {
            return match mask[..n_in].first() {
                Some(&m) => Err(bad_mask("upsample", 0, 0, m, 0)),
                None => Ok(()),
            };
        }
        let bad = y[..n_out]
            .par_chunks_mut(out_plane)
            .with_min_len(planes_per_task(out_plane))
            .enumerate()
            .find_map_first(|(p, yp)| {
                yp.fill(0.0);
                let (xp, mp) = (&x[p * in_plane..(p + 1) * in_plane], &mask[p * in_plane..(p + 1) * in_plane]);
                for (i, (&v, &m)) in xp.iter().zip(mp).enumerate() {
                    match mask_index(m, out_plane) {
                        Some(j) => yp[j] = v,
                        None => return Some((p, i, m)),
                    }
                }
                None
            });
        match bad {
            Some((p, i, m)) => Err(bad_mask("upsample", p, i, m, out_plane)),
            None => Ok(()),
        }
    }

    fn upsample_backward(
        &self,
        planes: usize,
        in_plane: usize,
        out_plane: usize,
        dy: &Vec<f32>,
        mask: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        let (n_in, n_out) = (planes * in_plane, planes * out_plane);
        range_check("upsample backward top diff", 0, n_out, dy.len())?;
        range_check("upsample backward mask", 0, n_in, mask.len())?;
        range_check("upsample backward bottom diff", 0, n_in, dx.len())?;
        if in_plane == 0 {
            return Ok(());
        }
        let bad = dx[..n_in]
            .par_chunks_mut(in_plane)
            .with_min_len(planes_per_task(in_plane))
            .enumerate()
            .find_map_first(|(p, dxp)| {
                let (dyp, mp) = (&dy[p * out_plane..(p + 1) * out_plane], &mask[p * in_plane..(p + 1) * in_plane]);
                for (i, (d, &m)) in dxp.iter_mut().zip(mp).enumerate() {
                    match mask_index(m, out_plane) {
                        Some(j) => *d = dyp[j],
                        None => return Some((p, i, m)),
                    }
                }
                None
            });
        match bad {
            Some((p, i, m)) => Err(bad_mask("upsample backward", p, i, m, out_plane)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
