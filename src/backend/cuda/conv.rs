//! CUDA convolution: cuDNN for 1 to 3 spatial axes (batches split where cuDNN's 32-bit sizes
//! require), the im2col + cuBLAS path otherwise; the bias through the per-channel affine
//! kernels of `kernels/norm.cu` (a bias is a Bias layer's map and gradient).

use super::dnn::{self, Pass};
use super::{conv_gemm, range_check, ConvEngine, Cuda, CudaBuf};
use crate::backend::{ChannelDims, ConvSpec, Convolution, Io, Normalization};
use crate::{Error, Result};


/// Checks the geometry itself and that the buffers hold what it describes.
fn check(spec: &ConvSpec, x: usize, w: usize, y: usize) -> Result<()> {
    let nd = spec.kernel.len();
    let bad = |why: String| Err(Error::Internal(format!("convolution geometry {spec:?}: {why}")));
    if [spec.in_shape.len(), spec.out_shape.len(), spec.stride.len(), spec.pad.len(), spec.dilation.len()].iter().any(|&l| l != nd) {
        return bad("spatial vectors of different lengths".into());
    }
    if spec.group == 0 || !spec.channels.is_multiple_of(spec.group) || !spec.out_channels.is_multiple_of(spec.group) {
        return bad("channels not divisible by the group count".into());
    }
    for a in 0..nd {
        if ConvSpec::output_extent(spec.in_shape[a], spec.kernel[a], spec.stride[a], spec.pad[a], spec.dilation[a]) != Some(spec.out_shape[a]) {
            return bad(format!("output extent of axis {a} does not follow from the input, kernel, stride, pad and dilation"));
        }
    }
    let total = |per: usize| spec.num.checked_mul(per).ok_or_else(|| Error::Internal("convolution size overflows".into()));
    range_check("convolution input", 0, total(spec.in_image_len())?, x)?;
    range_check("convolution weights", 0, spec.weight_len(), w)?;
    range_check("convolution output", 0, total(spec.out_image_len())?, y)
}

impl Cuda {
    /// Runs one pass over all images: cuDNN in batches its sizes allow, else im2col + GEMM.
    fn conv(&self, pass: Pass, spec: &ConvSpec, x: &CudaBuf, w: &CudaBuf, y: &CudaBuf) -> Result<()> {
        let (in_len, out_len) = (spec.in_image_len(), spec.out_image_len());
        if spec.num == 0 || in_len == 0 || out_len == 0 || spec.weight_len() == 0 {
            return Ok(());
        }
        let dev = &*self.dev;
        dev.bind()?;
        let per_image = in_len.max(out_len);
        let cudnn = dev.options.conv == ConvEngine::Cudnn && dnn::supports(spec) && per_image <= i32::MAX as usize;
        let mut batch = if cudnn { (i32::MAX as usize / per_image).clamp(1, spec.num) } else { spec.num };
        if batch < spec.num {
            // Batches of a multiple of this many images keep every batch's start 256-byte
            // aligned, as the buffers are: every batch but the last runs the plan searched on
            // the first's addresses, and some cuDNN kernels need that alignment.
            let images = |len: usize| 64usize >> len.trailing_zeros().min(6);
            let align = images(in_len).max(images(out_len));
            if batch >= align {
                batch -= batch % align;
            }
        }
        let mut n0 = 0;
        while n0 < spec.num {
            let nb = batch.min(spec.num - n0);
            let sub = ConvSpec { num: nb, ..spec.clone() };
            let (xo, yo) = (x.at(n0 * in_len), y.at(n0 * out_len));
            // A batch whose start is not 256-byte aligned (only where one batch holds fewer
            // images than alignment needs) does not run a plan searched on an aligned one.
            let aligned = (n0 * in_len) % 64 == 0 && (n0 * out_len) % 64 == 0;
            let done = cudnn && aligned && dev.dnn.lock().unwrap_or_else(|p| p.into_inner()).run(dev, pass, &sub, xo, w.ptr, yo)?;
            if !done {
                conv_gemm::run(dev, pass, &sub, xo, w.ptr, yo)?;
            }
            n0 += nb;
        }
        Ok(())
    }
}

impl Convolution for Cuda {
    fn conv_forward(&self, spec: &ConvSpec, x: &CudaBuf, w: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        self.own(&[x, w, y])?;
        check(spec, x.len, w.len, y.len)?;
        self.conv(Pass::Forward, spec, x, w, y)
    }

    fn conv_backward_data(&self, spec: &ConvSpec, dy: &CudaBuf, w: &CudaBuf, dx: &mut CudaBuf) -> Result<()> {
        self.own(&[dy, w, dx])?;
        check(spec, dx.len, w.len, dy.len)?;
        self.conv(Pass::BackwardData, spec, dx, w, dy)
    }

    fn conv_backward_filter(&self, spec: &ConvSpec, x: &CudaBuf, dy: &CudaBuf, dw: &mut CudaBuf) -> Result<()> {
        self.own(&[x, dy, dw])?;
        check(spec, x.len, dw.len, dy.len)?;
        self.conv(Pass::BackwardFilter, spec, x, dw, dy)
    }

    fn bias_forward(&self, num: usize, channels: usize, spatial: usize, bias: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        self.own(&[bias, y])?;
        range_check("bias", 0, channels, bias.len)?;
        let d = bias_dims(num, channels, spatial)?;
        range_check("bias output", 0, d.count(), y.len)?;
        // y = y + bias[c]: the CPU's sum, as Bias computes it.
        self.channel_affine(d, Io::InPlace(y), None, Some(bias))
    }

    fn bias_backward(&self, num: usize, channels: usize, spatial: usize, dy: &CudaBuf, db: &mut CudaBuf) -> Result<()> {
        self.own(&[dy, db])?;
        range_check("bias diff", 0, channels, db.len)?;
        let d = bias_dims(num, channels, spatial)?;
        range_check("bias top diff", 0, d.count(), dy.len)?;
        // db[c] += the sum of channel c of dy: Bias's gradient.
        self.affine_sums(d, dy, None, None, Some(db))
    }

    fn im2col(&self, spec: &ConvSpec, x: &CudaBuf, col: &mut CudaBuf) -> Result<()> {
        self.own(&[x, col])?;
        let (x_len, col_len) = spec.im2col_lens()?;
        range_check("im2col input", 0, x_len, x.len)?;
        range_check("im2col output", 0, col_len, col.len)?;
        conv_gemm::im2col(&self.dev, spec, x.ptr, x_len, col.ptr, col_len)
    }

    fn col2im(&self, spec: &ConvSpec, col: &CudaBuf, dx: &mut CudaBuf) -> Result<()> {
        self.own(&[col, dx])?;
        let (x_len, col_len) = spec.im2col_lens()?;
        range_check("col2im input", 0, col_len, col.len)?;
        range_check("col2im output", 0, x_len, dx.len)?;
        conv_gemm::col2im(&self.dev, spec, col.ptr, col_len, dx.ptr, x_len)
    }
}

/// `(num, channels, spatial)` as channel dims, their product checked.
fn bias_dims(num: usize, channels: usize, spatial: usize) -> Result<ChannelDims> {
    num.checked_mul(channels)
        .and_then(|v| v.checked_mul(spatial))
        .map(|_| ChannelDims::new(num, channels, spatial))
        .ok_or_else(|| Error::Internal("bias size overflows".into()))
}
