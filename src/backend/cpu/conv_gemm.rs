//! Convolution as GEMM over an implicit im2col matrix: the packers read the image directly,
//! so no im2col matrix is ever stored. Handles every geometry (N-d, groups, strides, pads,
//! dilations); the fast paths beside it take the common cases.
//!
//! - forward: `y_g = W_g · col(x_g)`;
//! - backward-data, stride 1 (and pad <= dilation·(kernel-1)): a forward convolution of `dy`
//!   with the flipped, transposed kernel; otherwise `col = W_gᵀ · dy_g` in tiles of output
//!   columns, added back into `dx` (col2im);
//! - backward-filter: `dW_g += dy_g · col(x_g)ᵀ`, images in order.

use super::gemm::{gemm, PackA, PackB, Strided};
use super::im2col::{Im2col, Run};
use super::isa::Isa;
use super::pack::transpose_panels;
use crate::backend::ConvSpec;

/// Bytes of im2col tile that backward-data may hold at once (strided case only).
const COL_TILE_BYTES: usize = 4 << 20;

/// Writes run `r` of im2col row `d` (a row of B) into `NR`-column panels.
#[inline]
fn put_run(dst: &mut [f32], nr: usize, kc: usize, d: usize, j0: usize, r: Run, plane: &[f32]) {
    let mut n = r.start - j0;
    let mut i = 0;
    while i < r.len {
        let (q, l) = (n / nr, n % nr);
        let len = (nr - l).min(r.len - i);
        let out = &mut dst[q * nr * kc + d * nr + l..q * nr * kc + d * nr + l + len];
        match r.src {
            None => out.fill(0.0),
            Some(s) if r.step == 1 => out.copy_from_slice(&plane[s + i..s + i + len]),
            Some(s) => out.iter_mut().enumerate().for_each(|(t, v)| *v = plane[s + (i + t) * r.step]),
        }
        n += len;
        i += len;
    }
}

/// The im2col matrix of one image's channel group as the B operand
/// (`channels·kernel_len x out_spatial`).
pub(crate) struct Im2colB<'a> {
    pub geo: Im2col<'a>,
    pub x: &'a [f32],
    pub kl: usize,
    pub in_spatial: usize,
    pub nd: usize,
}

impl PackB for Im2colB<'_> {
    fn pack_b(&self, _isa: Isa, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]) {
        let mut koff = vec![0usize; self.nd];
        let tail = nc % nr;
        let last = nc / nr;
        for d in 0..kc {
            let (c, kk) = ((p0 + d) / self.kl, (p0 + d) % self.kl);
            self.geo.kernel_offset(kk, &mut koff);
            let plane = &self.x[c * self.in_spatial..(c + 1) * self.in_spatial];
            self.geo.runs(&koff, j0, j0 + nc, |r| put_run(dst, nr, kc, d, j0, r, plane));
            if tail > 0 {
                dst[last * nr * kc + d * nr + tail..last * nr * kc + (d + 1) * nr].fill(0.0);
            }
        }
    }
}

/// The transposed im2col matrix (`out_spatial x channels·kernel_len`) as the B operand of
/// backward-filter.
pub(crate) struct Im2colT<'a>(pub Im2colB<'a>);

impl PackB for Im2colT<'_> {
    fn pack_b(&self, isa: Isa, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]) {
        let s = &self.0;
        let mut koff = vec![0usize; s.nd];
        // Each panel's lanes are im2col rows over positions p0..p0 + kc: write them out as
        // rows, then transpose them into the panel.
        PACK_TMP.with(|t| {
            let mut t = t.borrow_mut();
            if t.len() < nr * kc {
                t.resize(nr * kc, 0.0);
            }
            for q in 0..nc.div_ceil(nr) {
                let lanes = nr.min(nc - q * nr);
                for l in 0..lanes {
                    let (c, kk) = ((j0 + q * nr + l) / s.kl, (j0 + q * nr + l) % s.kl);
                    s.geo.kernel_offset(kk, &mut koff);
                    let plane = &s.x[c * s.in_spatial..(c + 1) * s.in_spatial];
                    s.geo.fill_row(&koff, p0, p0 + kc, plane, &mut t[l * kc..(l + 1) * kc]);
                }
                let t = &*t;
                transpose_panels(isa, lanes, kc, nr, |l| &t[l * kc..(l + 1) * kc], &mut dst[q * nr * kc..(q + 1) * nr * kc]);
            }
        });
    }
}

thread_local! {
    /// Rows of one panel of the transposed im2col matrix before they are transposed.
    static PACK_TMP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The kernel of the transposed convolution as the A operand: row `c`, column `(k, kk)` is
/// `w[k, c, kernel_len - 1 - kk]` (weights `out x cg x kernel_len` of one group).
pub(crate) struct FlippedWeights<'a> {
    pub w: &'a [f32],
    pub cg: usize,
    pub kl: usize,
}

impl PackA for FlippedWeights<'_> {
    fn pack_a(&self, _isa: Isa, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize, dst: &mut [f32]) {
        for q in 0..mc.div_ceil(mr) {
            let out = &mut dst[q * mr * kc..(q + 1) * mr * kc];
            for d in 0..kc {
                let (k, kk) = ((p0 + d) / self.kl, (p0 + d) % self.kl);
                for l in 0..mr {
                    let c = i0 + q * mr + l;
                    out[d * mr + l] =
                        if c < i0 + mc { self.w[(k * self.cg + c) * self.kl + self.kl - 1 - kk] } else { 0.0 };
                }
            }
        }
    }
}

/// Channels per group, output channels per group, input and output image lengths.
fn group_dims(s: &ConvSpec) -> (usize, usize, usize, usize) {
    (s.channels / s.group, s.out_channels / s.group, s.in_image_len(), s.out_image_len())
}

/// Threads for each product: all of them inside one product, unless there are several
/// images too small to split, which then run side by side.
fn per_image_parallel(s: &ConvSpec, macs_per_image: usize) -> bool {
    s.num > 1 && macs_per_image < 1 << 24
}

/// `y = conv(x, w)` through the GEMM.
pub(crate) fn forward(isa: Isa, s: &ConvSpec, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (cg, mg, ilen, olen) = group_dims(s);
    let (kl, isp, osp) = (s.kernel_len(), s.in_spatial(), s.out_spatial());
    let kdim = cg * kl;
    let one_image = |n: usize, yn: &mut [f32], threads: usize| {
        for g in 0..s.group {
            let b = Im2colB { geo: Im2col::new(s), x: &x[n * ilen + g * cg * isp..], kl, in_spatial: isp, nd: s.kernel.len() };
            let a = Strided { data: &w[g * mg * kdim..(g + 1) * mg * kdim], rs: kdim, cs: 1 };
            gemm(isa, mg, osp, kdim, 1.0, &a, &b, 0.0, &mut yn[g * mg * osp..], osp, threads);
        }
    };
    for_images(s.num, olen, per_image_parallel(s, s.out_image_len() * kdim), y, one_image);
}

/// Runs `f(n, image n of out, threads)` for every image, in parallel across images when
/// `across`.
fn for_images(num: usize, len: usize, across: bool, out: &mut [f32], f: impl Fn(usize, &mut [f32], usize) + Sync) {
    use rayon::prelude::*;
    if across {
        out[..num * len].par_chunks_mut(len).enumerate().for_each(|(n, o)| f(n, o, 1));
    } else {
        let t = rayon::current_num_threads();
        out[..num * len].chunks_mut(len).enumerate().for_each(|(n, o)| f(n, o, t));
    }
}

/// The spec of the transposed convolution that computes backward-data, when one exists
/// (stride 1 and pad <= dilation·(kernel - 1) on every axis).
pub(crate) fn transposed_spec(s: &ConvSpec) -> Option<ConvSpec> {
    let mut pad = Vec::with_capacity(s.pad.len());
    for a in 0..s.kernel.len() {
        let reach = s.dilation[a] * (s.kernel[a] - 1);
        if s.stride[a] != 1 || s.pad[a] > reach {
            return None;
        }
        pad.push(reach - s.pad[a]);
    }
    Some(ConvSpec {
        num: s.num,
        channels: s.out_channels,
        out_channels: s.channels,
        group: s.group,
        in_shape: s.out_shape.clone(),
        out_shape: s.in_shape.clone(),
        kernel: s.kernel.clone(),
        stride: s.stride.clone(),
        pad,
        dilation: s.dilation.clone(),
    })
}

/// `dx = conv_transpose(dy, w)` through the GEMM.
pub(crate) fn backward_data(isa: Isa, s: &ConvSpec, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (cg, mg, ilen, olen) = group_dims(s);
    let (kl, isp, osp) = (s.kernel_len(), s.in_spatial(), s.out_spatial());
    let kdim = cg * kl;
    let across = per_image_parallel(s, s.out_image_len() * kdim);
    if let Some(t) = transposed_spec(s) {
        let one_image = |n: usize, dxn: &mut [f32], threads: usize| {
            for g in 0..s.group {
                let b = Im2colB { geo: Im2col::new(&t), x: &dy[n * olen + g * mg * osp..], kl, in_spatial: osp, nd: t.kernel.len() };
                let a = FlippedWeights { w: &w[g * mg * kdim..(g + 1) * mg * kdim], cg, kl };
                gemm(isa, cg, isp, mg * kl, 1.0, &a, &b, 0.0, &mut dxn[g * cg * isp..], isp, threads);
            }
        };
        for_images(s.num, ilen, across, dx, one_image);
        return;
    }
    // Strided: col tiles of whole output rows, added back into dx.
    let ol = *s.out_shape.last().unwrap_or(&1);
    let rows_per_tile = (COL_TILE_BYTES / 4 / (kdim * ol).max(1)).max(1);
    let tile = rows_per_tile * ol;
    let one_image = |n: usize, dxn: &mut [f32], threads: usize| {
        dxn.fill(0.0);
        let geo = Im2col::new(s);
        let mut col = vec![0.0f32; kdim * tile.min(osp)];
        for g in 0..s.group {
            let dyg = &dy[n * olen + g * mg * osp..];
            let wg = &w[g * mg * kdim..(g + 1) * mg * kdim];
            for j0 in (0..osp).step_by(tile) {
                let j1 = (j0 + tile).min(osp);
                let a = Strided { data: wg, rs: 1, cs: kdim };
                let b = Strided { data: &dyg[j0..], rs: osp, cs: 1 };
                gemm(isa, kdim, j1 - j0, mg, 1.0, &a, &b, 0.0, &mut col, j1 - j0, threads);
                geo.add_back(cg, &col, j0, j1, &mut dxn[g * cg * isp..(g + 1) * cg * isp]);
            }
        }
    };
    for_images(s.num, ilen, across, dx, one_image);
}

/// `dw += Σ_n dy_n · col(x_n)ᵀ` through the GEMM, images in order.
pub(crate) fn backward_filter(isa: Isa, s: &ConvSpec, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (cg, mg, ilen, olen) = group_dims(s);
    let (kl, isp, osp) = (s.kernel_len(), s.in_spatial(), s.out_spatial());
    let kdim = cg * kl;
    let threads = rayon::current_num_threads();
    for n in 0..s.num {
        for g in 0..s.group {
            let b = Im2colT(Im2colB { geo: Im2col::new(s), x: &x[n * ilen + g * cg * isp..], kl, in_spatial: isp, nd: s.kernel.len() });
            let a = Strided { data: &dy[n * olen + g * mg * osp..], rs: osp, cs: 1 };
            gemm(isa, mg, kdim, osp, 1.0, &a, &b, 1.0, &mut dw[g * mg * kdim..], kdim, threads);
        }
    }
}
