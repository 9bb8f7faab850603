//! CUDA pooling and SegNet's upsampling: kernels from `kernels/pool.cu`.
//!
//! Forward passes compute one output per thread in the CPU's scan order. Gradients gather (each
//! input element sums the windows covering it in row-major output order), which gives the CPU's
//! sums bit for bit without atomics. Upsampling resolves duplicate mask entries ("the later
//! entry wins") with an integer atomic maximum of the writer's index, then fills each output
//! from its winner. Mask entries are checked on the device; the first bad one (lowest flat
//! index, an atomic minimum) is read at the host's next wait (see `device::Checks`) and
//! reported as the CPU reports it, naming the layer that ran the check.

use super::device::{CheckSlot, Device, scratch};
use super::launch::{Family, Kernel, KernelStruct, Launch};
use super::{Cuda, CudaBuf, range_check};
use crate::backend::{Math, PoolSpec, Pooling};
use crate::{Error, Result};

const MAX_FORWARD: Kernel = Kernel::plane_loops(Family::Pooling, "crema_max_pool_forward");
const MAX_BACKWARD: Kernel = Kernel::plane_loops(Family::Pooling, "crema_max_pool_backward");
const MAX_BACKWARD_SCATTER: Kernel = Kernel::new(Family::Pooling, "crema_max_pool_backward_scatter");
const STOCHASTIC_TRAIN: Kernel = Kernel::plane_loops(Family::Pooling, "crema_stochastic_pool_train");
const STOCHASTIC_TEST: Kernel = Kernel::plane_loops(Family::Pooling, "crema_stochastic_pool_test");
const AVE_FORWARD: Kernel = Kernel::plane_loops(Family::Pooling, "crema_ave_pool_forward");
const AVE_BACKWARD: Kernel = Kernel::plane_loops(Family::Pooling, "crema_ave_pool_backward");
const UPSAMPLE_CLAIM: Kernel = Kernel::plane_loops(Family::Pooling, "crema_upsample_claim");
const UPSAMPLE_FILL: Kernel = Kernel::plane_loops(Family::Pooling, "crema_upsample_fill");
const UPSAMPLE_BACKWARD: Kernel = Kernel::plane_loops(Family::Pooling, "crema_upsample_backward");

/// Every kernel this file launches (checked against the sources by a unit test).
#[cfg(test)]
pub(super) const KERNELS: &[Kernel] = &[
    MAX_FORWARD,
    MAX_BACKWARD,
    MAX_BACKWARD_SCATTER,
    STOCHASTIC_TRAIN,
    STOCHASTIC_TEST,
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
    in_h: i32,
    in_w: i32,
    out_h: i32,
    out_w: i32,
    kernel_h: i32,
    kernel_w: i32,
    stride_h: i32,
    stride_w: i32,
    pad_h: i32,
    pad_w: i32,
}

// SAFETY: repr(C), a u64 then ten i32 (48 bytes, no padding), laid out as the .cu struct.
unsafe impl KernelStruct for PoolGeom {}

impl PoolGeom {
    /// The geometry, refused (an internal error) where the kernels' 32-bit in-plane arithmetic
    /// could overflow: a plane, a window's area, or a window's reach along an axis
    /// (`out * stride + kernel + 2 pad + in`) beyond `i32::MAX`.
    fn of(spec: &PoolSpec) -> Result<Self> {
        let too_big = || Error::Internal(format!("pooling geometry {spec:?} exceeds the GPU kernels' 32-bit indices"));
        if spec.stride_h == 0 || spec.stride_w == 0 {
            return Err(Error::Internal(format!("pooling geometry {spec:?}: zero stride")));
        }
        let fits = |v: Option<usize>| v.is_some_and(|v| v <= i32::MAX as usize);
        let reach = |out: usize, stride: usize, kernel: usize, pad: usize, len: usize| {
            out.checked_mul(stride)?.checked_add(kernel)?.checked_add(pad.checked_mul(2)?)?.checked_add(len)
        };
        let ok = fits(spec.in_h.checked_mul(spec.in_w))
            && fits(spec.out_h.checked_mul(spec.out_w))
            && fits(spec.kernel_h.checked_mul(spec.kernel_w))
            && fits(reach(spec.out_h, spec.stride_h, spec.kernel_h, spec.pad_h, spec.in_h))
            && fits(reach(spec.out_w, spec.stride_w, spec.kernel_w, spec.pad_w, spec.in_w));
        if !ok {
            return Err(too_big());
        }
        // Every value below is a term of one of the sums just checked.
        let i = |v: usize| v as i32;
        Ok(PoolGeom {
            planes: spec.planes as u64,
            in_h: i(spec.in_h),
            in_w: i(spec.in_w),
            out_h: i(spec.out_h),
            out_w: i(spec.out_w),
            kernel_h: i(spec.kernel_h),
            kernel_w: i(spec.kernel_w),
            stride_h: i(spec.stride_h),
            stride_w: i(spec.stride_w),
            pad_h: i(spec.pad_h),
            pad_w: i(spec.pad_w),
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

/// A check slot for `n` mask entries (see `device::Checks`), held until its kernel is queued:
/// a bad entry at flat index `at` becomes [`bad_mask`] with planes of `plane_len` entries,
/// indices into planes of `limit`.
fn mask_check<'d>(dev: &'d Device, what: &'static str, n: usize, plane_len: usize, limit: usize) -> Result<CheckSlot<'d>> {
    if n > u32::MAX as usize {
        return Err(Error::Shape(format!(
            "{what}: a mask of {n} entries; the GPU checks masks of at most {} entries per call",
            u32::MAX
        )));
    }
    let plane_len = plane_len.max(1);
    dev.check_slot(Box::new(move |at, value| bad_mask(what, at / plane_len, at % plane_len, value, limit)))
}

impl Pooling for Cuda {
    fn max_pool_forward(&self, spec: &PoolSpec, x: &CudaBuf, y: &mut CudaBuf, mask: &mut CudaBuf) -> Result<()> {
        self.own(&[x, y, mask])?;
        check("max pooling", spec, x.len, y.len)?;
        range_check("max pooling mask", 0, spec.out_len(), mask.len)?;
        Launch::new(&self.dev, MAX_FORWARD)
            .planes(spec.planes, spec.out_plane())
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
        // Scratch before the check slot (the device's lock order).
        let scratch = dev.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let bad = mask_check(dev, "max pooling backward", spec.out_len(), op, ip)?;
        let foreign = scratch::at(scratch.ptr, scratch::BAD);
        dev.memset(foreign, 0, 8)?;
        Launch::new(dev, MAX_BACKWARD)
            .planes(spec.planes, ip.max(op))
            .value("geom", &g)
            .buf("dy", dy)
            .buf("mask", mask)
            .buf("dx", dx)
            .raw("bad", bad.addr, 1)
            .raw("foreign", foreign, 1)
            .run()?;
        drop(bad);
        // Returns at once unless the gather found a mask entry outside its window.
        Launch::new(dev, MAX_BACKWARD_SCATTER)
            .elems(spec.planes)
            .value("geom", &g)
            .buf("dy", dy)
            .buf("mask", mask)
            .buf("dx", dx)
            .raw("foreign", foreign, 1)
            .run()
    }

    fn stochastic_pool_forward_train(&self, spec: &PoolSpec, key: u64, x: &CudaBuf, y: &mut CudaBuf, mask: &mut CudaBuf) -> Result<()> {
        self.own(&[x, y, mask])?;
        check("stochastic pooling", spec, x.len, y.len)?;
        range_check("stochastic pooling mask", 0, spec.out_len(), mask.len)?;
        Launch::new(&self.dev, STOCHASTIC_TRAIN)
            .planes(spec.planes, spec.out_plane())
            .value("geom", &PoolGeom::of(spec)?)
            .u64("key", key as usize)
            .buf("x", x)
            .buf("y", y)
            .buf("mask", mask)
            .run()
    }

    fn stochastic_pool_forward_test(&self, spec: &PoolSpec, x: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        self.own(&[x, y])?;
        check("stochastic pooling", spec, x.len, y.len)?;
        Launch::new(&self.dev, STOCHASTIC_TEST)
            .planes(spec.planes, spec.out_plane())
            .value("geom", &PoolGeom::of(spec)?)
            .buf("x", x)
            .buf("y", y)
            .run()
    }

    fn ave_pool_forward(&self, spec: &PoolSpec, x: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        self.own(&[x, y])?;
        check("average pooling", spec, x.len, y.len)?;
        Launch::new(&self.dev, AVE_FORWARD)
            .planes(spec.planes, spec.out_plane())
            .value("geom", &PoolGeom::of(spec)?)
            .buf("x", x)
            .buf("y", y)
            .run()
    }

    fn ave_pool_backward(&self, spec: &PoolSpec, dy: &CudaBuf, dx: &mut CudaBuf) -> Result<()> {
        self.own(&[dy, dx])?;
        check("average pooling backward", spec, dx.len, dy.len)?;
        Launch::new(&self.dev, AVE_BACKWARD)
            .planes(spec.planes, spec.in_plane())
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
        let bad = mask_check(dev, "upsample", n_in, in_plane, out_plane)?;
        dev.memset(y.ptr, 0xff, n_out * 4)?;
        Launch::new(dev, UPSAMPLE_CLAIM)
            .planes(planes, in_plane)
            .u64("planes", planes)
            .u64("in_plane", in_plane)
            .u64("out_plane", out_plane)
            .buf("mask", mask)
            .buf("winner", y)
            .raw("bad", bad.addr, 1)
            .run()?;
        drop(bad);
        Launch::new(dev, UPSAMPLE_FILL)
            .planes(planes, out_plane)
            .u64("planes", planes)
            .u64("in_plane", in_plane)
            .u64("out_plane", out_plane)
            .buf("x", x)
            .buf("y", y)
            .run()
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
        let bad = mask_check(dev, "upsample backward", n_in, in_plane, out_plane)?;
        Launch::new(dev, UPSAMPLE_BACKWARD)
            .planes(planes, in_plane)
            .u64("planes", planes)
            .u64("in_plane", in_plane)
            .u64("out_plane", out_plane)
            .buf("dy", dy)
            .buf("mask", mask)
            .buf("dx", dx)
            .raw("bad", bad.addr, 1)
            .run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(in_h: usize, in_w: usize, kernel: usize, stride: usize, pad: usize) -> PoolSpec {
        let out = |len: usize| (len + 2 * pad - kernel).div_ceil(stride) + 1;
        PoolSpec {
            planes: 3,
            in_h,
            in_w,
            out_h: out(in_h),
            out_w: out(in_w),
            kernel_h: kernel,
            kernel_w: kernel,
            stride_h: stride,
            stride_w: stride,
            pad_h: pad,
            pad_w: pad,
        }
    }

    #[test]
    fn geometries_beyond_32_bit_in_plane_indices_are_refused() {
        let g = PoolGeom::of(&spec(360, 480, 2, 2, 0)).expect("SegNet's pooling fits");
        assert_eq!((g.planes, g.in_h, g.in_w, g.out_h, g.out_w, g.kernel_h, g.stride_w), (3, 360, 480, 180, 240, 2, 2));
        // A plane of 2^32 elements, a window of 2^32 elements, an axis whose reach overflows.
        for s in [spec(1 << 16, 1 << 16, 2, 2, 0), spec(1 << 16, 1 << 16, 1 << 16, 1, 0), spec(4, 1000, 3, 1 << 30, 1)] {
            let err = PoolGeom::of(&s).err().expect("must be refused");
            assert!(err.to_string().contains("32-bit"), "{err}");
        }
    }
}
