//! CPU convolution: im2col + GEMM per image and group, images in parallel.

use super::gemm::sgemm;
use super::{range_check, Cpu};
use crate::backend::{ConvSpec, Convolution};
use crate::Result;
use rayon::prelude::*;

/// Fills `col` (`(channels * kernel_len) x out_spatial`, row-major) with the patches of one
/// image `x` (`channels x in_spatial`), zero where a patch reaches into the padding.
pub(crate) fn im2col(spec: &ConvSpec, channels: usize, x: &[f32], col: &mut [f32]) {
    let nd = spec.kernel.len();
    let kernel_len = spec.kernel_len();
    let out_spatial = spec.out_spatial();
    let in_spatial = spec.in_spatial();
    let mut koff = vec![0usize; nd];
    let mut oidx = vec![0usize; nd];
    for c in 0..channels {
        let plane = &x[c * in_spatial..(c + 1) * in_spatial];
        for kk in 0..kernel_len {
            unravel(kk, &spec.kernel, &mut koff);
            let row = &mut col[(c * kernel_len + kk) * out_spatial..(c * kernel_len + kk + 1) * out_spatial];
            for (o, out) in row.iter_mut().enumerate() {
                unravel(o, &spec.out_shape, &mut oidx);
                *out = match input_index(spec, &koff, &oidx) {
                    Some(i) => plane[i],
                    None => 0.0,
                };
            }
        }
    }
}

/// Adds the columns of `col` back into image `dx` (the transpose of [`im2col`]).
pub(crate) fn col2im(spec: &ConvSpec, channels: usize, col: &[f32], dx: &mut [f32]) {
    let nd = spec.kernel.len();
    let kernel_len = spec.kernel_len();
    let out_spatial = spec.out_spatial();
    let in_spatial = spec.in_spatial();
    let mut koff = vec![0usize; nd];
    let mut oidx = vec![0usize; nd];
    dx[..channels * in_spatial].fill(0.0);
    for c in 0..channels {
        let plane = &mut dx[c * in_spatial..(c + 1) * in_spatial];
        for kk in 0..kernel_len {
            unravel(kk, &spec.kernel, &mut koff);
            let row = &col[(c * kernel_len + kk) * out_spatial..(c * kernel_len + kk + 1) * out_spatial];
            for (o, &v) in row.iter().enumerate() {
                unravel(o, &spec.out_shape, &mut oidx);
                if let Some(i) = input_index(spec, &koff, &oidx) {
                    plane[i] += v;
                }
            }
        }
    }
}

fn unravel(mut i: usize, shape: &[usize], out: &mut [usize]) {
    for a in (0..shape.len()).rev() {
        out[a] = i % shape[a];
        i /= shape[a];
    }
}

fn input_index(spec: &ConvSpec, koff: &[usize], oidx: &[usize]) -> Option<usize> {
    let mut idx = 0usize;
    for a in 0..koff.len() {
        let pos = (oidx[a] * spec.stride[a] + koff[a] * spec.dilation[a]) as isize - spec.pad[a] as isize;
        if pos < 0 || pos as usize >= spec.in_shape[a] {
            return None;
        }
        idx = idx * spec.in_shape[a] + pos as usize;
    }
    Some(idx)
}

fn check(spec: &ConvSpec, x: usize, w: usize, y: usize) -> Result<()> {
    range_check("convolution input", 0, spec.num * spec.in_image_len(), x)?;
    range_check("convolution weights", 0, spec.weight_len(), w)?;
    range_check("convolution output", 0, spec.num * spec.out_image_len(), y)
}

impl Convolution for Cpu {
    fn conv_forward(&self, spec: &ConvSpec, x: &Vec<f32>, w: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        check(spec, x.len(), w.len(), y.len())?;
        let (g, cg, mg) = (spec.group, spec.channels / spec.group, spec.out_channels / spec.group);
        let (kdim, osp) = (cg * spec.kernel_len(), spec.out_spatial());
        let (ilen, olen) = (spec.in_image_len(), spec.out_image_len());
        y[..spec.num * olen].par_chunks_mut(olen).enumerate().for_each(|(n, yn)| {
            let mut col = vec![0.0f32; kdim * osp];
            for gi in 0..g {
                let xg = &x[n * ilen + gi * cg * spec.in_spatial()..];
                im2col(spec, cg, xg, &mut col);
                sgemm(false, false, mg, osp, kdim, 1.0, &w[gi * mg * kdim..], kdim, &col, osp, 0.0, &mut yn[gi * mg * osp..], osp);
            }
        });
        Ok(())
    }

    fn conv_backward_data(&self, spec: &ConvSpec, dy: &Vec<f32>, w: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        check(spec, dx.len(), w.len(), dy.len())?;
        let (g, cg, mg) = (spec.group, spec.channels / spec.group, spec.out_channels / spec.group);
        let (kdim, osp) = (cg * spec.kernel_len(), spec.out_spatial());
        let (ilen, olen) = (spec.in_image_len(), spec.out_image_len());
        dx[..spec.num * ilen].par_chunks_mut(ilen).enumerate().for_each(|(n, dxn)| {
            let mut col = vec![0.0f32; kdim * osp];
            for gi in 0..g {
                sgemm(true, false, kdim, osp, mg, 1.0, &w[gi * mg * kdim..], kdim, &dy[n * olen + gi * mg * osp..], osp, 0.0, &mut col, osp);
                col2im(spec, cg, &col, &mut dxn[gi * cg * spec.in_spatial()..]);
            }
        });
        Ok(())
    }

    fn conv_backward_filter(&self, spec: &ConvSpec, x: &Vec<f32>, dy: &Vec<f32>, dw: &mut Vec<f32>) -> Result<()> {
        check(spec, x.len(), dw.len(), dy.len())?;
        let (g, cg, mg) = (spec.group, spec.channels / spec.group, spec.out_channels / spec.group);
        let (kdim, osp) = (cg * spec.kernel_len(), spec.out_spatial());
        let (ilen, olen) = (spec.in_image_len(), spec.out_image_len());
        // Images accumulate in order, so the sum does not depend on the thread count.
        let mut col = vec![0.0f32; kdim * osp];
        for n in 0..spec.num {
            for gi in 0..g {
                im2col(spec, cg, &x[n * ilen + gi * cg * spec.in_spatial()..], &mut col);
                sgemm(false, true, mg, kdim, osp, 1.0, &dy[n * olen + gi * mg * osp..], osp, &col, osp, 1.0, &mut dw[gi * mg * kdim..], kdim);
            }
        }
        Ok(())
    }

    fn bias_forward(&self, num: usize, channels: usize, spatial: usize, bias: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        range_check("bias", 0, channels, bias.len())?;
        range_check("bias output", 0, num * channels * spatial, y.len())?;
        if spatial == 0 {
            return Ok(());
        }
        y[..num * channels * spatial].par_chunks_mut(spatial).enumerate().for_each(|(p, plane)| {
            let b = bias[p % channels];
            plane.iter_mut().for_each(|v| *v += b);
        });
        Ok(())
    }

    fn bias_backward(&self, num: usize, channels: usize, spatial: usize, dy: &Vec<f32>, db: &mut Vec<f32>) -> Result<()> {
        range_check("bias diff", 0, channels, db.len())?;
        range_check("bias top diff", 0, num * channels * spatial, dy.len())?;
        let sums: Vec<f32> = (0..channels)
            .into_par_iter()
            .map(|c| {
                let mut s = 0.0f32;
                for n in 0..num {
                    let plane = &dy[(n * channels + c) * spatial..(n * channels + c + 1) * spatial];
                    s += plane.iter().sum::<f32>();
                }
                s
            })
            .collect();
        db.iter_mut().zip(sums).for_each(|(d, s)| *d += s);
        Ok(())
    }
}
