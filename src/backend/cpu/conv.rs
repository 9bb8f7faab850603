//! CPU convolution: a policy picks, per call, among the paths beside this file.
//!
//! - [`conv_gemm`](super::conv_gemm): implicit-im2col GEMM, every geometry;
//!
//! Every path is tested against a naive float64 convolution (`conv_tests`).

use super::isa::Isa;
use super::{conv_gemm, range_check, Cpu};
use crate::backend::{ConvSpec, Convolution};
use crate::Result;
use rayon::prelude::*;

/// An algorithm for one convolution primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Implicit-im2col GEMM (any geometry).
    Gemm,
}

/// The primitives a path may serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Forward,
    BackwardData,
    BackwardFilter,
}

/// The paths that can compute `op` for `spec`, fastest first by the policy's measure.
pub(crate) fn applicable(_spec: &ConvSpec, _op: Op) -> Vec<Path> {
    vec![Path::Gemm]
}

/// The path the policy picks for `op` on `spec`.
pub(crate) fn choose(spec: &ConvSpec, op: Op) -> Path {
    applicable(spec, op)[0]
}

/// `y = conv(x, w)` (overwrites `y`) by `path`.
pub(crate) fn forward(isa: Isa, path: Path, s: &ConvSpec, x: &[f32], w: &[f32], y: &mut [f32]) {
    match path {
        Path::Gemm => conv_gemm::forward(isa, s, x, w, y),
    }
}

/// `dx = conv_transpose(dy, w)` (overwrites `dx`) by `path`.
pub(crate) fn backward_data(isa: Isa, path: Path, s: &ConvSpec, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    match path {
        Path::Gemm => conv_gemm::backward_data(isa, s, dy, w, dx),
    }
}

/// `dw += correlation(x, dy)` by `path`.
pub(crate) fn backward_filter(isa: Isa, path: Path, s: &ConvSpec, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    match path {
        Path::Gemm => conv_gemm::backward_filter(isa, s, x, dy, dw),
    }
}

fn check(spec: &ConvSpec, x: usize, w: usize, y: usize) -> Result<()> {
    range_check("convolution input", 0, spec.num * spec.in_image_len(), x)?;
    range_check("convolution weights", 0, spec.weight_len(), w)?;
    range_check("convolution output", 0, spec.num * spec.out_image_len(), y)
}

impl Convolution for Cpu {
    fn conv_forward(&self, spec: &ConvSpec, x: &Vec<f32>, w: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        check(spec, x.len(), w.len(), y.len())?;
        forward(Isa::detect(), choose(spec, Op::Forward), spec, x, w, y);
        Ok(())
    }

    fn conv_backward_data(&self, spec: &ConvSpec, dy: &Vec<f32>, w: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        check(spec, dx.len(), w.len(), dy.len())?;
        backward_data(Isa::detect(), choose(spec, Op::BackwardData), spec, dy, w, dx);
        Ok(())
    }

    fn conv_backward_filter(&self, spec: &ConvSpec, x: &Vec<f32>, dy: &Vec<f32>, dw: &mut Vec<f32>) -> Result<()> {
        check(spec, x.len(), dw.len(), dy.len())?;
        backward_filter(Isa::detect(), choose(spec, Op::BackwardFilter), spec, x, dy, dw);
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
