//! CPU convolution: a policy picks, per call, among the paths beside this file.
//!
//! - [`conv_gemm`](super::conv_gemm): implicit-im2col GEMM, every geometry;
//! - [`conv_direct`](super::conv_direct): direct loops, 2-d stride 1, for very few channels;
//! - [`conv_winograd`](super::conv_winograd) and
//!   [`conv_winograd_filter`](super::conv_winograd_filter): Winograd F(4x4, 3x3), 2-d 3x3
//!   stride 1;
//!
//! Every path is tested against a naive float64 convolution (`conv_tests`).

use super::isa::Isa;
use super::conv_winograd::{self, Problem, Weights};
use super::im2col::Im2col;
use super::{conv_direct, conv_gemm, conv_winograd_filter, range_check, Cpu};
use crate::backend::{ConvSpec, Convolution};
use crate::Result;
use rayon::prelude::*;

/// An algorithm for one convolution primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Implicit-im2col GEMM (any geometry).
    Gemm,
    /// Winograd F(4x4, 3x3): 2-d, 3x3, stride 1, dilation 1 (backward-data: pad <= 2);
    /// every primitive.
    Winograd,
    /// Direct loops over rows: 2-d, stride 1, dilation 1; forward and backward-filter.
    Direct,
}

/// The primitives a path may serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Forward,
    BackwardData,
    BackwardFilter,
}

/// The paths that can compute `op` for `spec`, the policy's choice first.
pub(crate) fn applicable(spec: &ConvSpec, op: Op) -> Vec<Path> {
    let mut v = vec![Path::Gemm];
    if winograd_fits(spec, op) {
        if winograd_pays(spec, op) {
            v.insert(0, Path::Winograd);
        } else {
            v.push(Path::Winograd);
        }
    }
    if conv_direct::fits(spec) && op != Op::BackwardData {
        if direct_pays(spec, op) {
            v.insert(0, Path::Direct);
        } else {
            v.push(Path::Direct);
        }
    }
    v
}

/// Whether the direct loops beat the alternatives: when one side has so few channels that
/// a GEMM tile or a Winograd transform would be mostly waste (SegNet's first and last layers).
fn direct_pays(s: &ConvSpec, op: Op) -> bool {
    let (cg, kg) = (s.channels / s.group, s.out_channels / s.group);
    match op {
        Op::Forward => kg <= 4,
        Op::BackwardFilter => cg.min(kg) <= 4,
        Op::BackwardData => false,
    }
}

/// Whether Winograd beats the GEMM on `spec`, by measurements on SegNet's layers (2 threads,
/// CPU time): its transforms cost per input channel and per tile, its GEMMs save 4x.
/// - forward / backward-data: needs 8+ channels into the transform (SegNet's 1-channel
///   input: GEMM 2.5x faster; backward-data into 2 channels: GEMM 2.6x faster) and 16+
///   tiles (16x16 with 512 channels, 16 tiles: Winograd still 1.2-1.5x faster);
/// - backward-filter: 16+ tiles (16x16 with 512 channels: Winograd 350 vs GEMM 337 CPU-time
///   GFLOP/s; from 64 tiles on Winograd is 1.8-2.9x faster) and 8+ input channels.
///
/// It keeps small layers (all of Caffe's conformance cases) on the GEMM, which rounds like
/// Caffe; Winograd's error is about 1e-5 of the output's norm.
fn winograd_pays(s: &ConvSpec, op: Op) -> bool {
    let (cg, kg) = (s.channels / s.group, s.out_channels / s.group);
    let tiles = s.num * s.out_shape[0].div_ceil(4) * s.out_shape[1].div_ceil(4);
    match op {
        Op::Forward => cg >= 8 && tiles >= 16,
        Op::BackwardData => kg >= 8 && tiles >= 16,
        Op::BackwardFilter => cg >= 8 && tiles >= 16,
    }
}

/// Whether the Winograd path can compute `op` on `spec`.
fn winograd_fits(s: &ConvSpec, op: Op) -> bool {
    let geometry = s.kernel == [3, 3] && s.stride == [1, 1] && s.dilation == [1, 1];
    match op {
        Op::Forward => geometry,
        Op::BackwardData => geometry && s.pad.iter().all(|&p| p <= 2),
        Op::BackwardFilter => geometry,
    }
}

/// The path the policy picks for `op` on `spec`. `CREMA_CONV_PATH=gemm` or `winograd`
/// overrides the policy wherever that path applies (for benchmarks and comparisons).
pub(crate) fn choose(spec: &ConvSpec, op: Op) -> Path {
    let paths = applicable(spec, op);
    if let Some(forced) = forced_path().filter(|f| paths.contains(f)) {
        return forced;
    }
    paths[0]
}

fn forced_path() -> Option<Path> {
    static FORCED: std::sync::OnceLock<Option<Path>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var("CREMA_CONV_PATH").ok()?.to_ascii_lowercase().as_str() {
        "gemm" => Some(Path::Gemm),
        "winograd" => Some(Path::Winograd),
        "direct" => Some(Path::Direct),
        _ => None,
    })
}

/// One channel group of `s` as the Winograd path runs it forward (x to y): the problem of the
/// forward pass and of the filter gradient alike.
fn winograd_problem(s: &ConvSpec) -> Problem {
    Problem {
        num: s.num,
        c: s.channels / s.group,
        k: s.out_channels / s.group,
        h: s.in_shape[0],
        w: s.in_shape[1],
        oh: s.out_shape[0],
        ow: s.out_shape[1],
        ph: s.pad[0],
        pw: s.pad[1],
        x_img: s.in_image_len(),
        y_img: s.out_image_len(),
    }
}

/// `y = conv(x, w)` (overwrites `y`) by `path`.
pub(crate) fn forward(isa: Isa, path: Path, s: &ConvSpec, x: &[f32], w: &[f32], y: &mut [f32]) {
    match path {
        Path::Gemm => conv_gemm::forward(isa, s, x, w, y),
        Path::Direct => conv_direct::forward(isa, s, x, w, y),
        Path::Winograd => {
            let p = winograd_problem(s);
            let (cg, mg) = (p.c, p.k);
            let (isp, osp) = (s.in_spatial(), s.out_spatial());
            for g in 0..s.group {
                let wts = Weights { w: &w[g * mg * cg * 9..(g + 1) * mg * cg * 9], ks: cg * 9, cs: 9, flip: false };
                conv_winograd::forward(isa, &p, &x[g * cg * isp..], &wts, &mut y[g * mg * osp..]);
            }
        }
    }
}

/// `dx = conv_transpose(dy, w)` (overwrites `dx`) by `path`.
pub(crate) fn backward_data(isa: Isa, path: Path, s: &ConvSpec, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    match path {
        Path::Gemm => conv_gemm::backward_data(isa, s, dy, w, dx),
        Path::Direct => unreachable!("no direct backward-data"),
        Path::Winograd => {
            // The transposed convolution: dy (K channels) with the flipped kernel, pad 2 - p.
            let (cg, mg) = (s.channels / s.group, s.out_channels / s.group);
            let (isp, osp) = (s.in_spatial(), s.out_spatial());
            for g in 0..s.group {
                let p = Problem {
                    num: s.num,
                    c: mg,
                    k: cg,
                    h: s.out_shape[0],
                    w: s.out_shape[1],
                    oh: s.in_shape[0],
                    ow: s.in_shape[1],
                    ph: 2 - s.pad[0],
                    pw: 2 - s.pad[1],
                    x_img: s.out_image_len(),
                    y_img: s.in_image_len(),
                };
                let wts = Weights { w: &w[g * mg * cg * 9..(g + 1) * mg * cg * 9], ks: 9, cs: cg * 9, flip: true };
                conv_winograd::forward(isa, &p, &dy[g * mg * osp..], &wts, &mut dx[g * cg * isp..]);
            }
        }
    }
}

/// `dw += correlation(x, dy)` by `path`.
pub(crate) fn backward_filter(isa: Isa, path: Path, s: &ConvSpec, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    match path {
        Path::Gemm => conv_gemm::backward_filter(isa, s, x, dy, dw),
        Path::Direct => conv_direct::backward_filter(isa, s, x, dy, dw),
        Path::Winograd => {
            let p = winograd_problem(s);
            let (cg, mg) = (p.c, p.k);
            let (isp, osp) = (s.in_spatial(), s.out_spatial());
            for g in 0..s.group {
                let dwg = &mut dw[g * mg * cg * 9..(g + 1) * mg * cg * 9];
                conv_winograd_filter::backward_filter(isa, &p, &x[g * cg * isp..], &dy[g * mg * osp..], dwg, cg * 9, 9);
            }
        }
    }
}

/// The algorithms the CPU backend picks for `spec` (forward, backward-data, backward-filter),
/// e.g. for timing reports: `"winograd/winograd/gemm"`.
pub fn conv_paths(spec: &ConvSpec) -> String {
    let name = |p: Path| match p {
        Path::Gemm => "gemm",
        Path::Winograd => "winograd",
        Path::Direct => "direct",
    };
    [Op::Forward, Op::BackwardData, Op::BackwardFilter].map(|op| name(choose(spec, op))).join("/")
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

    fn im2col(&self, spec: &ConvSpec, x: &Vec<f32>, col: &mut Vec<f32>) -> Result<()> {
        let (x_len, col_len) = spec.im2col_lens()?;
        range_check("im2col input", 0, x_len, x.len())?;
        range_check("im2col output", 0, col_len, col.len())?;
        if col_len == 0 {
            return Ok(());
        }
        // Images are contiguous: `num` images of `channels` planes are `num * channels`
        // planes, each with its own `kernel_len` rows of the matrix.
        let (isp, rows) = (spec.in_spatial(), spec.kernel_len() * spec.out_spatial());
        let geo = Im2col::new(spec);
        col[..col_len].par_chunks_mut(rows).enumerate().for_each(|(p, block)| {
            let plane = &x[p * isp..(p + 1) * isp];
            let mut koff = vec![0usize; spec.kernel.len()];
            for (kk, row) in block.chunks_mut(spec.out_spatial()).enumerate() {
                geo.kernel_offset(kk, &mut koff);
                geo.fill_row(&koff, 0, row.len(), plane, row);
            }
        });
        Ok(())
    }

    fn col2im(&self, spec: &ConvSpec, col: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        let (x_len, col_len) = spec.im2col_lens()?;
        range_check("col2im input", 0, col_len, col.len())?;
        range_check("col2im output", 0, x_len, dx.len())?;
        if x_len == 0 {
            return Ok(());
        }
        let (isp, rows) = (spec.in_spatial(), spec.kernel_len() * spec.out_spatial());
        let geo = Im2col::new(spec);
        dx[..x_len].par_chunks_mut(isp).enumerate().for_each(|(p, plane)| {
            plane.fill(0.0);
            geo.add_back(1, &col[p * rows..(p + 1) * rows], 0, spec.out_spatial(), plane);
        });
        Ok(())
    }
}
