//! CUDA pooling and SegNet's upsampling: kernels from `kernels/pool.cu`.
//!
//! Forward passes compute one output per thread in the CPU's scan order. Gradients gather (each
//! input element sums the windows covering it in row-major output order), which gives the CPU's
//! sums bit for bit without atomics. Upsampling resolves duplicate mask entries ("the later
//! entry wins") with an integer atomic maximum of the writer's index, then fills each output
//! from its winner. Mask entries are checked on the device; the first bad one (lowest flat
//! index, an atomic minimum) is read back and reported as the CPU reports it.

use super::device::{Device, scratch};
use super::launch::{Family, Kernel, KernelStruct, Launch};
use super::{Cuda, CudaBuf, range_check};
use crate::backend::{Math, PoolSpec, Pooling, Storage};
use crate::{Error, Result};

const MAX_FORWARD: Kernel = Kernel::new(Family::Pooling, "crema_max_pool_forward");
const MAX_BACKWARD: Kernel = Kernel::new(Family::Pooling, "crema_max_pool_backward");
const MAX_BACKWARD_SCATTER: Kernel = Kernel::new(Family::Pooling, "crema_max_pool_backward_scatter");
const AVE_FORWARD: Kernel = Kernel::new(Family::Pooling, "crema_ave_pool_forward");
const AVE_BACKWARD: Kernel = Kernel::new(Family::Pooling, "crema_ave_pool_backward");
const UPSAMPLE_CLAIM: Kernel = Kernel::new(Family::Pooling, "crema_upsample_claim");
const UPSAMPLE_FILL: Kernel = Kernel::new(Family::Pooling, "crema_upsample_fill");
const UPSAMPLE_BACKWARD: Kernel = Kernel::new(Family::Pooling, "crema_upsample_backward");

/// Every kernel this file launches (checked against the sources by a unit test).
#[cfg(test)]
pub(super) const KERNELS: &[Kernel] = &[
    MAX_FORWARD,
    MAX_BACKWARD,
    MAX_BACKWARD_SCATTER,
    AVE_FORWARD,
    AVE_BACKWARD,
    UPSAMPLE_CLAIM,
    UPSAMPLE_FILL,
    UPSAMPLE_BACKWARD,
];

/// Mirrors `PoolGeom` in kernels/pool.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct PoolGeom {
    planes: u64,
    in_h: i64,
    in_w: i64,
    out_h: i64,
    out_w: i64,
    kernel_h: i64,
    kernel_w: i64,
    stride_h: i64,
    stride_w: i64,
    pad_h: i64,
    pad_w: i64,
}

// SAFETY: repr(C), eleven 8-byte integers, laid out as the .cu struct.
unsafe impl KernelStruct for PoolGeom {}

impl PoolGeom {
    fn of(spec: &PoolSpec) -> Result<Self> {
        let i =
            |v: usize| i64::try_from(v).map_err(|_| Error::Internal(format!("pooling geometry {spec:?} overflows")));
        if spec.stride_h == 0 || spec.stride_w == 0 {
            return Err(Error::Internal(format!("pooling geometry {spec:?}: zero stride")));
        }
        Ok(PoolGeom {
            planes: spec.planes as u64,
            in_h: i(spec.in_h)?,
            in_w: i(spec.in_w)?,
            out_h: i(spec.out_h)?,
            out_w: i(spec.out_w)?,
            kernel_h: i(spec.kernel_h)?,
            kernel_w: i(spec.kernel_w)?,
            stride_h: i(spec.stride_h)?,
            stride_w: i(spec.stride_w)?,
            pad_h: i(spec.pad_h)?,
            pad_w: i(spec.pad_w)?,
        })
    }
}

fn check(what: &str, spec: &PoolSpec, x: usize, y: usize) -> Result<()> {
    range_check(&format!("{what} input"), 0, spec.in_len(), x)?;
    range_check(&format!("{what} output"), 0, spec.out_len(), y)
}

/// The CPU backend's message for a bad mask entry (`cpu/pool.rs`), word for word.
fn bad_mask(what: &str, plane: usize, i: usize, value: f32, limit: usize) -> Error {
    Error::Shape(format!(
        "{what}: mask value {value} at index {i} of plane {plane} is not an index into a plane of {limit} elements \
         (does the mask come from a max pooling of the matching size?)"
    ))
}

impl Cuda {
    /// Reads back the first-bad-index word (and the flag after it) of the scratch buffer and,
    /// when an index was recorded, the mask value there: `(first bad flat index, flag)`.
    fn read_mask_flags(&self, dev: &Device, flags: u64) -> Result<(Option<usize>, bool)> {
        let mut words = [0u64; 2];
        dev.read_back(flags, &mut words, "reading a mask check")?;
        Ok(((words[0] != u64::MAX).then_some(words[0] as usize), words[1] != 0))
    }

    /// The error for the bad entry at flat index `at` of `mask` (planes of `plane_len`
    /// entries, indices into planes of `limit`).
    fn mask_error(&self, what: &str, mask: &CudaBuf, at: usize, plane_len: usize, limit: usize) -> Result<Error> {
        let mut value = [0f32; 1];
        self.download(mask, at, &mut value)?;
        Ok(bad_mask(what, at / plane_len, at % plane_len, value[0], limit))
    }
}

impl Pooling for Cuda {
    fn max_pool_forward(&self, spec: &PoolSpec, x: &CudaBuf, y: &mut CudaBuf, mask: &mut CudaBuf) -> Result<()> {
        self.own(&[x, y, mask])?;
        check("max pooling", spec, x.len, y.len)?;
        range_check("max pooling mask", 0, spec.out_len(), mask.len)?;
        Launch::new(&self.dev, MAX_FORWARD)
            .elems(spec.out_len())
            .value("geom", &PoolGeom::of(spec)?)
            .buf("x", x)
            .buf("y", y)
            .buf("mask", mask)
            .run()
    }

    fn max_pool_backward(&self, spec: &PoolSpec, dy: &CudaBuf, mask: &CudaBuf, dx: &mut CudaBuf) -> Result<()> {
        self.own(&[dy, mask, dx])?;
        check("max pooling backward", spec, dx.len, dy.len)?;
        range_check("max pooling backward mask", 0, spec.out_len(), mask.len)?;
        let (ip, op) = (spec.in_plane(), spec.out_plane());
        if ip == 0 || spec.planes == 0 {
            return Ok(());
        }
        let g = PoolGeom::of(spec)?;
        let dev = &*self.dev;
        let scratch = dev.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let flags = scratch::at(scratch.ptr, scratch::BAD);
        dev.memset(flags, 0xff, 8)?;
        dev.memset(flags + 8, 0, 8)?;
        Launch::new(dev, MAX_BACKWARD)
            .elems(spec.in_len().max(spec.out_len()))
            .value("geom", &g)
            .buf("dy", dy)
            .buf("mask", mask)
            .buf("dx", dx)
            .raw("flags", flags, 2)
            .run()?;
        let (bad, foreign) = self.read_mask_flags(dev, flags)?;
        drop(scratch);
        if let Some(at) = bad {
            return Err(self.mask_error("max pooling backward", mask, at, op, ip)?);
        }
        if foreign {
            Launch::new(dev, MAX_BACKWARD_SCATTER)
                .elems(spec.planes)
                .value("geom", &g)
                .buf("dy", dy)
                .buf("mask", mask)
                .buf("dx", dx)
                .run()?;
        }
        Ok(())
    }

    fn ave_pool_forward(&self, spec: &PoolSpec, x: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        self.own(&[x, y])?;
        check("average pooling", spec, x.len, y.len)?;
        Launch::new(&self.dev, AVE_FORWARD)
            .elems(spec.out_len())
            .value("geom", &PoolGeom::of(spec)?)
            .buf("x", x)
            .buf("y", y)
            .run()
    }

    fn ave_pool_backward(&self, spec: &PoolSpec, dy: &CudaBuf, dx: &mut CudaBuf) -> Result<()> {
        self.own(&[dy, dx])?;
        check("average pooling backward", spec, dx.len, dy.len)?;
        Launch::new(&self.dev, AVE_BACKWARD)
            .elems(spec.in_len())
            .value("geom", &PoolGeom::of(spec)?)
            .buf("dy", dy)
            .buf("dx", dx)
            .run()
    }

    fn upsample_forward(
        &self,
        planes: usize,
        in_plane: usize,
        out_plane: usize,
        x: &CudaBuf,
        mask: &CudaBuf,
        y: &mut CudaBuf,
    ) -> Result<()> {
        self.own(&[x, mask, y])?;
        let overflow = || Error::Internal("upsample size overflows".into());
        let (n_in, n_out) = (
            planes.checked_mul(in_plane).ok_or_else(overflow)?,
            planes.checked_mul(out_plane).ok_or_else(overflow)?,
        );
        range_check("upsample input", 0, n_in, x.len)?;
        range_check("upsample mask", 0, n_in, mask.len)?;
        range_check("upsample output", 0, n_out, y.len)?;
        if n_in == 0 {
            // Nothing to scatter: y is all zeros (no plane has an input to check).
            return self.fill(y, 0, n_out, 0.0);
        }
        if in_plane > i32::MAX as usize {
            return Err(Error::Internal(format!(
                "upsample: planes of {in_plane} inputs exceed the kernel's 32-bit indices"
            )));
        }
        let dev = &*self.dev;
        let scratch = dev.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let bad = scratch::at(scratch.ptr, scratch::BAD);
        dev.memset(bad, 0xff, 8)?;
        dev.memset(bad + 8, 0, 8)?;
        dev.memset(y.ptr, 0xff, n_out * 4)?;
        Launch::new(dev, UPSAMPLE_CLAIM)
            .elems(n_in)
            .u64("planes", planes)
            .u64("in_plane", in_plane)
            .u64("out_plane", out_plane)
            .buf("mask", mask)
            .buf("winner", y)
            .raw("bad", bad, 1)
            .run()?;
        Launch::new(dev, UPSAMPLE_FILL)
            .elems(n_out)
            .u64("planes", planes)
            .u64("in_plane", in_plane)
            .u64("out_plane", out_plane)
            .buf("x", x)
            .buf("y", y)
            .run()?;
        let (first, _) = self.read_mask_flags(dev, bad)?;
        drop(scratch);
        match first {
            Some(at) => Err(self.mask_error("upsample", mask, at, in_plane, out_plane)?),
            None => Ok(()),
        }
    }

    fn upsample_backward(
        &self,
        planes: usize,
        in_plane: usize,
        out_plane: usize,
        dy: &CudaBuf,
        mask: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        self.own(&[dy, mask, dx])?;
        let overflow = || Error::Internal("upsample size overflows".into());
        let (n_in, n_out) = (
            planes.checked_mul(in_plane).ok_or_else(overflow)?,
            planes.checked_mul(out_plane).ok_or_else(overflow)?,
        );
        range_check("upsample backward top diff", 0, n_out, dy.len)?;
        range_check("upsample backward mask", 0, n_in, mask.len)?;
        range_check("upsample backward bottom diff", 0, n_in, dx.len)?;
        if n_in == 0 {
            return Ok(());
        }
        let dev = &*self.dev;
        let scratch = dev.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let bad = scratch::at(scratch.ptr, scratch::BAD);
        dev.memset(bad, 0xff, 8)?;
        dev.memset(bad + 8, 0, 8)?;
        Launch::new(dev, UPSAMPLE_BACKWARD)
            .elems(n_in)
            .u64("planes", planes)
            .u64("in_plane", in_plane)
            .u64("out_plane", out_plane)
            .buf("dy", dy)
            .buf("mask", mask)
            .buf("dx", dx)
            .raw("bad", bad, 1)
            .run()?;
        let (first, _) = self.read_mask_flags(dev, bad)?;
        drop(scratch);
        match first {
            Some(at) => Err(self.mask_error("upsample backward", mask, at, in_plane, out_plane)?),
            None => Ok(()),
        }
    }
}
