//! The im2col + cuBLAS convolution path, for what cuDNN does not take (more than three spatial
//! axes, shapes without a cuDNN algorithm) or when asked for ([`super::ConvEngine::Im2col`]).
//! The same arithmetic as the CPU backend: per image, im2col once over all channels, one GEMM
//! per group; col2im gathers in the CPU's order. Its column buffer is the shared workspace.

use super::device::Device;
use super::dnn::Pass;
use super::launch::{Family, Kernel, KernelStruct, Launch};
use crate::backend::{ConvSpec, Gemm};
use crate::{Error, Result};

const IM2COL: Kernel = Kernel::new(Family::Convolution, "crema_im2col");
const COL2IM: Kernel = Kernel::new(Family::Convolution, "crema_col2im");

/// Every kernel this file launches (checked against the sources by a unit test).
#[cfg(test)]
pub(super) const KERNELS: &[Kernel] = &[IM2COL, COL2IM];

/// Most spatial axes of this path (`CREMA_MAX_SPATIAL`).
const MAX_SPATIAL: usize = 6;

/// Mirrors `ConvGeom` in kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ConvGeom {
    channels: i64,
    in_spatial: i64,
    out_spatial: i64,
    kernel_len: i64,
    in_shape: [i64; MAX_SPATIAL],
    out_shape: [i64; MAX_SPATIAL],
    kernel: [i64; MAX_SPATIAL],
    stride: [i64; MAX_SPATIAL],
    pad: [i64; MAX_SPATIAL],
    dilation: [i64; MAX_SPATIAL],
    nd: i32,
    unused: i32,
}

// SAFETY: repr(C), plain integers, laid out as the .cu struct.
unsafe impl KernelStruct for ConvGeom {}

fn geom(spec: &ConvSpec) -> Result<ConvGeom> {
    let nd = spec.kernel.len();
    if nd > MAX_SPATIAL {
        return Err(Error::Config(format!("the CUDA backend convolves at most {MAX_SPATIAL} spatial axes, not {nd}")));
    }
    let mut g = ConvGeom {
        channels: spec.channels as i64,
        in_spatial: spec.in_spatial() as i64,
        out_spatial: spec.out_spatial() as i64,
        kernel_len: spec.kernel_len() as i64,
        nd: nd as i32,
        ..ConvGeom::default()
    };
    for a in 0..nd {
        g.in_shape[a] = spec.in_shape[a] as i64;
        g.out_shape[a] = spec.out_shape[a] as i64;
        g.kernel[a] = spec.kernel[a] as i64;
        g.stride[a] = spec.stride[a] as i64;
        g.pad[a] = spec.pad[a] as i64;
        g.dilation[a] = spec.dilation[a] as i64;
    }
    Ok(g)
}

/// The geometry of all `spec.num` images as one image of `num * channels` channels: images
/// are contiguous, so its im2col matrix is theirs one after another (the Im2col layer's
/// primitives; `x_len` and `col_len` from [`ConvSpec::im2col_lens`]).
fn batch_geom(spec: &ConvSpec) -> Result<ConvGeom> {
    let mut g = geom(spec)?;
    g.channels = (spec.num * spec.channels) as i64;
    Ok(g)
}

/// The stored im2col matrices of all `spec.num` images at `x` into `col` (one launch).
pub(crate) fn im2col(dev: &Device, spec: &ConvSpec, x: u64, x_len: usize, col: u64, col_len: usize) -> Result<()> {
    let g = batch_geom(spec)?;
    Launch::new(dev, IM2COL).elems(col_len).value("geom", &g).raw("x", x, x_len).raw("col", col, col_len).run()
}

/// col2im of all `spec.num` images from `col` into `dx` (overwritten; one launch).
pub(crate) fn col2im(dev: &Device, spec: &ConvSpec, col: u64, col_len: usize, dx: u64, x_len: usize) -> Result<()> {
    let g = batch_geom(spec)?;
    Launch::new(dev, COL2IM).elems(x_len).value("geom", &g).raw("col", col, col_len).raw("dx", dx, x_len).run()
}

/// One pass over `spec.num` images at device addresses `x`, `w`, `y` (as [`super::dnn::Dnn::run`]:
/// forward and backward data overwrite, backward filter accumulates into `w`).
pub(crate) fn run(dev: &Device, pass: Pass, spec: &ConvSpec, x: u64, w: u64, y: u64) -> Result<()> {
    let g = geom(spec)?;
    let (cg, mg) = (spec.channels / spec.group, spec.out_channels / spec.group);
    let (klen, osp, isp) = (spec.kernel_len(), spec.out_spatial(), spec.in_spatial());
    let kdim = cg * klen;
    let (in_len, out_len) = (spec.in_image_len(), spec.out_image_len());
    let col_len = spec.channels * klen * osp;
    let mut ws = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
    let col = ws.get(dev, col_len * 4)?;
    let f = |base: u64, elems: usize| base + 4 * elems as u64;
    for n in 0..spec.num {
        let (xn, yn) = (f(x, n * in_len), f(y, n * out_len));
        let im2col = || Launch::new(dev, IM2COL).elems(col_len).value("geom", &g).raw("x", xn, in_len).raw("col", col, col_len).run();
        match pass {
            Pass::Forward => {
                im2col()?;
                let blas = dev.blas.lock().unwrap_or_else(|p| p.into_inner());
                for gi in 0..spec.group {
                    let gemm = Gemm::new(false, false, mg, osp, kdim);
                    blas.sgemm(&gemm, f(w, gi * mg * kdim), f(col, gi * kdim * osp), f(yn, gi * mg * osp))?;
                }
            }
            Pass::BackwardData => {
                {
                    let blas = dev.blas.lock().unwrap_or_else(|p| p.into_inner());
                    for gi in 0..spec.group {
                        let gemm = Gemm::new(true, false, kdim, osp, mg);
                        blas.sgemm(&gemm, f(w, gi * mg * kdim), f(yn, gi * mg * osp), f(col, gi * kdim * osp))?;
                    }
                }
                Launch::new(dev, COL2IM)
                    .elems(spec.channels * isp)
                    .value("geom", &g)
                    .raw("col", col, col_len)
                    .raw("dx", xn, in_len)
                    .run()?;
            }
            Pass::BackwardFilter => {
                im2col()?;
                let blas = dev.blas.lock().unwrap_or_else(|p| p.into_inner());
                for gi in 0..spec.group {
                    let gemm = Gemm::new(false, true, mg, kdim, osp).scaled(1.0, 1.0);
                    blas.sgemm(&gemm, f(yn, gi * mg * osp), f(col, gi * kdim * osp), f(w, gi * mg * kdim))?;
                }
            }
        }
    }
    Ok(())
}
