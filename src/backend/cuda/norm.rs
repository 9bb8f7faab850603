//! CUDA normalisation primitives: kernels from `kernels/norm.cu`.
//!
//! Per-channel sums (statistics, the gradients of scale and shift) run on a grid of channels
//! times parts, the parts fixed by the shape, in double, then add their parts in order: the same
//! bits on every run and GPU, and within rounding of the CPU's sums. The element-wise passes
//! (normalisation, affine maps, gradients, LRN's window arithmetic) write the CPU's formulas in
//! its order of operations; LRN's power is evaluated in double and rounded once.

use super::act::io_bufs;
use super::device::Device;
use super::launch::{BLOCK, Family, Kernel, KernelStruct, Launch};
use super::{Cuda, CudaBuf};
use crate::backend::{ChannelDims, EpsPlacement, Io, LrnSpec, Math, NormAffine, NormGrad, Normalization};
use crate::{Error, Result};

const CHANNEL_SUMS: Kernel = Kernel::new(Family::Normalization, "crema_channel_sums");
const CHANNEL_MOMENTS: Kernel = Kernel::new(Family::Normalization, "crema_channel_moments");
const CHANNEL_STD: Kernel = Kernel::new(Family::Normalization, "crema_channel_std");
const CHANNEL_NORMALIZE: Kernel = Kernel::plane_loops(Family::Normalization, "crema_channel_normalize");
const CHANNEL_GRAD_SUMS: Kernel = Kernel::new(Family::Normalization, "crema_channel_grad_sums");
const CHANNEL_NORM_DX: Kernel = Kernel::plane_loops(Family::Normalization, "crema_channel_norm_dx");
const CHANNEL_AFFINE: Kernel = Kernel::plane_loops(Family::Normalization, "crema_channel_affine");
const CHANNEL_AFFINE_SUMS: Kernel = Kernel::new(Family::Normalization, "crema_channel_affine_sums");
const LRN_ACROSS_FORWARD: Kernel = Kernel::new(Family::Normalization, "crema_lrn_across_forward");
const LRN_ACROSS_BACKWARD: Kernel = Kernel::new(Family::Normalization, "crema_lrn_across_backward");
const LRN_WITHIN_FORWARD: Kernel = Kernel::new(Family::Normalization, "crema_lrn_within_forward");
const LRN_WITHIN_POOLED: Kernel = Kernel::new(Family::Normalization, "crema_lrn_within_pooled");
const LRN_WITHIN_BACKWARD: Kernel = Kernel::new(Family::Normalization, "crema_lrn_within_backward");

/// Every kernel this file launches (checked against the sources by a unit test).
#[cfg(test)]
pub(super) const KERNELS: &[Kernel] = &[
    CHANNEL_SUMS,
    CHANNEL_MOMENTS,
    CHANNEL_STD,
    CHANNEL_NORMALIZE,
    CHANNEL_GRAD_SUMS,
    CHANNEL_NORM_DX,
    CHANNEL_AFFINE,
    CHANNEL_AFFINE_SUMS,
    LRN_ACROSS_FORWARD,
    LRN_ACROSS_BACKWARD,
    LRN_WITHIN_FORWARD,
    LRN_WITHIN_POOLED,
    LRN_WITHIN_BACKWARD,
];

/// What `crema_channel_sums` sums (its `SUM_*` modes).
#[derive(Clone, Copy)]
enum Sum<'a> {
    /// `a - k` and `(a - k)^2`, `k` the channel's first element (SUM_MOMENTS).
    Moments,
    /// `a` and `a * b` (SUM_AND_DOT); with a fused ReLU, of `a` turned into the ReLU's bottom
    /// diff first (SUM_AND_DOT_RELU).
    AndDot(Option<FusedRelu<'a>>),
}

impl Sum<'_> {
    /// The kernel's `mode`.
    fn code(self) -> i32 {
        match self {
            Sum::Moments => 0,
            Sum::AndDot(None) => 1,
            Sum::AndDot(Some(_)) => 2,
        }
    }
}

/// Mirrors `Dims` in kernels/norm.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct Dims {
    outer: u64,
    channels: u64,
    inner: u64,
}

// SAFETY: repr(C), three u64, laid out as the .cu struct.
unsafe impl KernelStruct for Dims {}

impl Dims {
    fn of(d: ChannelDims) -> Self {
        Dims {
            outer: d.outer as u64,
            channels: d.channels as u64,
            inner: d.inner as u64,
        }
    }
}

/// Mirrors `LrnGeom` in kernels/norm.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct LrnGeom {
    num: u64,
    channels: u64,
    height: u64,
    width: u64,
    size: u64,
    alpha: f32,
    beta: f32,
    k: f32,
    a: f32,
    crv: f32,
    diff_scale: f32,
}

// SAFETY: repr(C): five u64 then six f32 (64 bytes, no padding), laid out as the .cu struct.
unsafe impl KernelStruct for LrnGeom {}

impl LrnGeom {
    /// The geometry and the constants the CPU derives on the host, derived the same way.
    fn of(s: &LrnSpec) -> Self {
        LrnGeom {
            num: s.num as u64,
            channels: s.channels as u64,
            height: s.height as u64,
            width: s.width as u64,
            size: s.size as u64,
            alpha: s.alpha,
            beta: s.beta,
            k: s.k,
            a: s.alpha / s.size as f32,
            crv: (2.0 * s.alpha as f64 * s.beta as f64 / s.size as f64) as f32,
            diff_scale: -s.beta * s.alpha,
        }
    }
}

fn check_len(what: &str, len: usize, want: usize) -> Result<()> {
    if len == want {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "{what}: buffer of {len} elements where {want} are expected"
        )))
    }
}

/// A ReLU fused into a batch normalisation: the normalisation's scale and shift (its output
/// is recomputed from x_hat with them) and the ReLU's negative slope.
#[derive(Clone, Copy)]
struct FusedRelu<'a> {
    scale: &'a CudaBuf,
    shift: &'a CudaBuf,
    slope: f32,
}

impl<'a> FusedRelu<'a> {
    fn of(affine: Option<NormAffine<'a, CudaBuf>>) -> Option<Self> {
        affine.and_then(|a| a.relu.map(|slope| FusedRelu { scale: a.scale, shift: a.shift, slope }))
    }
}

/// Parts per channel of the sums: from the shape only, so the sums do not depend on the GPU.
fn parts_of(d: ChannelDims) -> usize {
    d.per_channel().div_ceil(1 << 14).clamp(1, 64)
}

impl Cuda {
    /// Runs `crema_channel_sums` (partials at `partial`: `2 * channels * parts` doubles).
    #[allow(clippy::too_many_arguments)]
    fn channel_sums(
        &self,
        dev: &Device,
        d: ChannelDims,
        parts: usize,
        sum: Sum<'_>,
        a: &CudaBuf,
        b: Option<&CudaBuf>,
        partial: u64,
    ) -> Result<()> {
        if d.channels > i32::MAX as usize {
            return Err(Error::Internal(format!("{} channels exceed a grid", d.channels)));
        }
        let relu = match sum {
            Sum::AndDot(relu) => relu,
            Sum::Moments => None,
        };
        Launch::new(dev, CHANNEL_SUMS)
            .dims((d.channels as u32, parts as u32, 1), (BLOCK, 1, 1))
            .value("dims", &Dims::of(d))
            .u64("parts", parts)
            .i32("mode", sum.code())
            .buf("a", a)
            .opt_buf("b", b)
            .opt_buf("scale", relu.map(|r| r.scale))
            .opt_buf("shift", relu.map(|r| r.shift))
            .f32("slope", relu.map_or(0.0, |r| r.slope))
            .raw("partial", partial, 2 * d.channels * parts)
            .run()
    }

    /// The per-channel sums of an affine map's backward, each optional: `dscale[c] += sum(dy *
    /// x)` (needs `x`), `dbias[c] += sum(dy)` (also a convolution's bias gradient). The caller
    /// has checked the buffers against `d`.
    pub(super) fn affine_sums(
        &self,
        d: ChannelDims,
        dy: &CudaBuf,
        x: Option<&CudaBuf>,
        dscale: Option<&CudaBuf>,
        dbias: Option<&CudaBuf>,
    ) -> Result<()> {
        if d.count() == 0 || (dscale.is_none() && dbias.is_none()) {
            return Ok(());
        }
        let dev = &*self.dev;
        let parts = parts_of(d);
        let mut ws = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
        let partial = ws.get(dev, 2 * d.channels * parts * 8)?;
        self.channel_sums(dev, d, parts, Sum::AndDot(None), dy, if dscale.is_some() { x } else { None }, partial)?;
        Launch::new(dev, CHANNEL_AFFINE_SUMS)
            .elems(d.channels)
            .u64("channels", d.channels)
            .u64("parts", parts)
            .raw("partial", partial, 2 * d.channels * parts)
            .opt_buf("dscale", dscale)
            .opt_buf("dbias", dbias)
            .run()
    }

    /// Mean, variance and (when given) std of every channel of `x`, into the buffers: one pass
    /// over `x` (see `crema_channel_moments`).
    fn moments_into(
        &self,
        d: ChannelDims,
        x: &CudaBuf,
        mean: &CudaBuf,
        var: &CudaBuf,
        std: Option<(&CudaBuf, f32, EpsPlacement)>,
    ) -> Result<()> {
        let dev = &*self.dev;
        let parts = parts_of(d);
        let mut ws = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
        let partial = ws.get(dev, 2 * d.channels * parts * 8)?;
        self.channel_sums(dev, d, parts, Sum::Moments, x, None, partial)?;
        let (eps, inside) = std.map_or((0.0, 1), |s| (s.1, (s.2 == EpsPlacement::InsideSqrt) as i32));
        Launch::new(dev, CHANNEL_MOMENTS)
            .elems(d.channels)
            .value("dims", &Dims::of(d))
            .u64("parts", parts)
            .buf("x", x)
            .raw("partial", partial, 2 * d.channels * parts)
            .f32("eps", eps)
            .i32("inside", inside)
            .buf("mean", mean)
            .buf("var", var)
            .opt_buf("std", std.map(|s| s.0))
            .run()
    }

    /// `y = (x - mean) / std`, optionally `* scale + shift`, optionally keeping `x_hat`.
    #[allow(clippy::too_many_arguments)]
    fn normalize(
        &self,
        d: ChannelDims,
        x: &CudaBuf,
        mean: &CudaBuf,
        std: &CudaBuf,
        affine: Option<NormAffine<'_, CudaBuf>>,
        x_norm: Option<&CudaBuf>,
        y: &CudaBuf,
    ) -> Result<()> {
        let relu = affine.and_then(|a| a.relu);
        Launch::new(&self.dev, CHANNEL_NORMALIZE)
            .planes(d.outer * d.channels, d.inner)
            .value("dims", &Dims::of(d))
            .buf("x", x)
            .buf("mean", mean)
            .buf("std", std)
            .opt_buf("scale", affine.map(|a| a.scale))
            .opt_buf("shift", affine.map(|a| a.shift))
            .i32("relu", relu.is_some() as i32)
            .f32("slope", relu.unwrap_or(0.0))
            .opt_buf("x_norm", x_norm)
            .buf("y", y)
            .run()
    }
}

impl Normalization for Cuda {
    fn channel_moments(&self, d: ChannelDims, x: &CudaBuf, mean: &mut CudaBuf, var: &mut CudaBuf) -> Result<()> {
        self.own(&[x, mean, var])?;
        check_len("channel_moments input", x.len, d.count())?;
        check_len("channel_moments mean", mean.len, d.channels)?;
        check_len("channel_moments var", var.len, d.channels)?;
        if d.count() == 0 {
            self.fill(mean, 0, d.channels, 0.0)?;
            return self.fill(var, 0, d.channels, 0.0);
        }
        self.moments_into(d, x, mean, var, None)
    }

    fn channel_std(&self, var: &CudaBuf, eps: f32, placement: EpsPlacement, std: &mut CudaBuf) -> Result<()> {
        self.own(&[var, std])?;
        check_len("channel_std", std.len, var.len)?;
        Launch::new(&self.dev, CHANNEL_STD)
            .elems(std.len)
            .u64("channels", std.len)
            .f32("eps", eps)
            .i32("inside", (placement == EpsPlacement::InsideSqrt) as i32)
            .buf("var", var)
            .buf("std", std)
            .run()
    }

    fn channel_norm_batch(
        &self,
        d: ChannelDims,
        mut io: Io<'_, CudaBuf>,
        eps: f32,
        placement: EpsPlacement,
        mean: &mut CudaBuf,
        var: &mut CudaBuf,
        std: &mut CudaBuf,
        affine: Option<NormAffine<'_, CudaBuf>>,
        x_norm: Option<&mut CudaBuf>,
    ) -> Result<()> {
        let (x, y) = io_bufs(&mut io);
        self.own(&[x, y, mean, var, std])?;
        check_len("channel_norm_batch input", x.len, d.count())?;
        check_len("channel_norm_batch output", y.len, d.count())?;
        for (what, b) in [("mean", &*mean), ("var", &*var), ("std", &*std)] {
            check_len(&format!("channel_norm_batch {what}"), b.len, d.channels)?;
        }
        if let Some(a) = affine {
            self.own(&[a.scale, a.shift])?;
            check_len("channel_norm_batch scale", a.scale.len, d.channels)?;
            check_len("channel_norm_batch shift", a.shift.len, d.channels)?;
        }
        let x_norm = x_norm.map(|b| &*b);
        if let Some(xn) = x_norm {
            self.own(&[xn])?;
            check_len("channel_norm_batch x_norm", xn.len, d.count())?;
        }
        if d.count() == 0 {
            return Ok(());
        }
        // Statistics over the input before anything is written (in place, y is x).
        self.moments_into(d, x, mean, var, Some((std, eps, placement)))?;
        self.normalize(d, x, mean, std, affine, x_norm, y)
    }

    fn channel_normalize(&self, d: ChannelDims, mut io: Io<'_, CudaBuf>, mean: &CudaBuf, std: &CudaBuf) -> Result<()> {
        let (x, y) = io_bufs(&mut io);
        self.own(&[x, y, mean, std])?;
        check_len("channel_normalize input", x.len, d.count())?;
        check_len("channel_normalize output", y.len, d.count())?;
        check_len("channel_normalize mean", mean.len, d.channels)?;
        check_len("channel_normalize std", std.len, d.channels)?;
        self.normalize(d, x, mean, std, None, None, y)
    }

    fn channel_norm_backward(
        &self,
        d: ChannelDims,
        grad: NormGrad,
        x_norm: Option<&CudaBuf>,
        mut diff: Io<'_, CudaBuf>,
        std: &CudaBuf,
        affine: Option<NormAffine<'_, CudaBuf>>,
        dscale: Option<&mut CudaBuf>,
        dshift: Option<&mut CudaBuf>,
        write_dx: bool,
    ) -> Result<()> {
        let (dy, dx) = io_bufs(&mut diff);
        self.own(&[dy, dx, std])?;
        check_len("channel_norm_backward dy", dy.len, d.count())?;
        check_len("channel_norm_backward dx", dx.len, d.count())?;
        check_len("channel_norm_backward std", std.len, d.channels)?;
        let (dscale, dshift) = (dscale.map(|b| &*b), dshift.map(|b| &*b));
        let (scale, shift) = (affine.map(|a| a.scale), affine.map(|a| a.shift));
        for (what, b) in [("scale", scale), ("shift", shift), ("dscale", dscale), ("dshift", dshift)] {
            if let Some(b) = b {
                self.own(&[b])?;
                check_len(&format!("channel_norm_backward {what}"), b.len, d.channels)?;
            }
        }
        let relu = FusedRelu::of(affine);
        let need_xn = dscale.is_some() || (write_dx && grad == NormGrad::BatchStats) || relu.is_some();
        match x_norm {
            Some(xn) => {
                self.own(&[xn])?;
                check_len("channel_norm_backward x_norm", xn.len, d.count())?;
            }
            None if need_xn => {
                return Err(Error::Internal(
                    "channel_norm_backward: x_norm is needed and not given".into(),
                ));
            }
            None => {}
        }
        if d.count() == 0 {
            return Ok(());
        }
        let dev = &*self.dev;
        let parts = parts_of(d);
        let c = d.channels;
        let mut ws = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
        // Partials (2 c parts doubles), then mg and mgx (c floats each).
        let partial = ws.get(dev, 2 * c * parts * 8 + 2 * c * 4)?;
        let (mg, mgx) = (
            partial + (2 * c * parts * 8) as u64,
            partial + (2 * c * parts * 8 + c * 4) as u64,
        );
        let want_sums = dscale.is_some() || dshift.is_some() || (write_dx && grad != NormGrad::Fixed);
        if want_sums {
            self.channel_sums(dev, d, parts, Sum::AndDot(relu), dy, x_norm, partial)?;
            let (mgp, mgxp) = if write_dx { (mg, mgx) } else { (0, 0) };
            Launch::new(dev, CHANNEL_GRAD_SUMS)
                .elems(c)
                .u64("channels", c)
                .u64("parts", parts)
                .f64("m", d.per_channel() as f64)
                .raw("partial", partial, 2 * c * parts)
                .opt_buf("scale", scale)
                .opt_buf("dscale", dscale)
                .opt_buf("dshift", dshift)
                .raw("mg", mgp, c)
                .raw("mgx", mgxp, c)
                .run()?;
        }
        if !write_dx {
            return Ok(());
        }
        let code = match grad {
            NormGrad::BatchStats => 0,
            NormGrad::MeanOnly => 1,
            NormGrad::Fixed => 2,
        };
        Launch::new(dev, CHANNEL_NORM_DX)
            .planes(d.outer * d.channels, d.inner)
            .value("dims", &Dims::of(d))
            .i32("grad", code)
            .opt_buf("x_norm", x_norm)
            .buf("dy", dy)
            .buf("std", std)
            .opt_buf("scale", scale)
            .opt_buf("shift", relu.map(|r| r.shift))
            .i32("relu", relu.is_some() as i32)
            .f32("slope", relu.map_or(0.0, |r| r.slope))
            .raw("mg", mg, c)
            .raw("mgx", mgx, c)
            .buf("dx", dx)
            .run()
    }

    fn channel_affine(
        &self,
        d: ChannelDims,
        mut io: Io<'_, CudaBuf>,
        scale: Option<&CudaBuf>,
        bias: Option<&CudaBuf>,
    ) -> Result<()> {
        let in_place = matches!(io, Io::InPlace(_));
        let (x, y) = io_bufs(&mut io);
        self.own(&[x, y])?;
        check_len("channel_affine input", x.len, d.count())?;
        check_len("channel_affine output", y.len, d.count())?;
        for (what, b) in [("scale", scale), ("bias", bias)] {
            if let Some(b) = b {
                self.own(&[b])?;
                check_len(&format!("channel_affine {what}"), b.len, d.channels)?;
            }
        }
        if d.count() == 0 || (in_place && scale.is_none() && bias.is_none()) {
            return Ok(());
        }
        Launch::new(&self.dev, CHANNEL_AFFINE)
            .planes(d.outer * d.channels, d.inner)
            .value("dims", &Dims::of(d))
            .buf("x", x)
            .opt_buf("scale", scale)
            .opt_buf("bias", bias)
            .buf("y", y)
            .run()
    }

    fn channel_affine_backward(
        &self,
        d: ChannelDims,
        x: Option<&CudaBuf>,
        mut diff: Io<'_, CudaBuf>,
        scale: Option<&CudaBuf>,
        dscale: Option<&mut CudaBuf>,
        dbias: Option<&mut CudaBuf>,
        write_dx: bool,
    ) -> Result<()> {
        let in_place = matches!(diff, Io::InPlace(_));
        let (dy, dx) = io_bufs(&mut diff);
        self.own(&[dy, dx])?;
        check_len("channel_affine_backward dy", dy.len, d.count())?;
        check_len("channel_affine_backward dx", dx.len, d.count())?;
        let (dscale, dbias) = (dscale.map(|b| &*b), dbias.map(|b| &*b));
        for (what, b) in [("scale", scale), ("dscale", dscale), ("dbias", dbias)] {
            if let Some(b) = b {
                self.own(&[b])?;
                check_len(&format!("channel_affine_backward {what}"), b.len, d.channels)?;
            }
        }
        match x {
            Some(x) => {
                self.own(&[x])?;
                check_len("channel_affine_backward x", x.len, d.count())?;
            }
            None if dscale.is_some() => return Err(Error::Internal("channel_affine_backward: dscale needs x".into())),
            None => {}
        }
        if d.count() == 0 {
            return Ok(());
        }
        let dev = &*self.dev;
        self.affine_sums(d, dy, x, dscale, dbias)?;
        if !write_dx || (scale.is_none() && in_place) {
            return Ok(());
        }
        Launch::new(dev, CHANNEL_AFFINE)
            .planes(d.outer * d.channels, d.inner)
            .value("dims", &Dims::of(d))
            .buf("x", dy)
            .opt_buf("scale", scale)
            .raw("bias", 0, 0)
            .buf("y", dx)
            .run()
    }

    fn lrn_forward(&self, spec: &LrnSpec, x: &CudaBuf, scale: &mut CudaBuf, y: &mut CudaBuf) -> Result<()> {
        self.own(&[x, scale, y])?;
        lrn_check(spec, &[("input", x.len), ("scale", scale.len), ("output", y.len)])?;
        let g = LrnGeom::of(spec);
        let launch = if spec.within_channel {
            Launch::new(&self.dev, LRN_WITHIN_FORWARD).elems(spec.count())
        } else {
            Launch::new(&self.dev, LRN_ACROSS_FORWARD).elems(spec.num * spec.height * spec.width)
        };
        launch
            .value("geom", &g)
            .buf("x", x)
            .buf("scale", scale)
            .buf("y", y)
            .run()
    }

    fn lrn_backward(
        &self,
        spec: &LrnSpec,
        x: &CudaBuf,
        y: &CudaBuf,
        scale: &CudaBuf,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        self.own(&[x, y, scale, dy, dx])?;
        lrn_check(
            spec,
            &[
                ("input", x.len),
                ("output", y.len),
                ("scale", scale.len),
                ("top diff", dy.len),
                ("bottom diff", dx.len),
            ],
        )?;
        let g = LrnGeom::of(spec);
        let dev = &*self.dev;
        if !spec.within_channel {
            return Launch::new(dev, LRN_ACROSS_BACKWARD)
                .elems(spec.num * spec.height * spec.width)
                .value("geom", &g)
                .buf("x", x)
                .buf("y", y)
                .buf("scale", scale)
                .buf("dy", dy)
                .buf("dx", dx)
                .run();
        }
        let n = spec.count();
        if n == 0 {
            return Ok(());
        }
        let mut ws = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
        let pooled = ws.get(dev, n * 4)?;
        Launch::new(dev, LRN_WITHIN_POOLED)
            .elems(n)
            .u64("n", n)
            .f32("beta", spec.beta)
            .f32("diff_scale", g.diff_scale)
            .buf("x", x)
            .buf("scale", scale)
            .buf("dy", dy)
            .raw("pooled", pooled, n)
            .run()?;
        Launch::new(dev, LRN_WITHIN_BACKWARD)
            .elems(n)
            .value("geom", &g)
            .buf("x", x)
            .buf("scale", scale)
            .buf("dy", dy)
            .raw("pooled", pooled, n)
            .buf("dx", dx)
            .run()
    }
}

/// The CPU's checks of an LRN call: an odd size, every buffer `spec.count()` long.
fn lrn_check(spec: &LrnSpec, bufs: &[(&str, usize)]) -> Result<()> {
    if spec.size.is_multiple_of(2) {
        return Err(Error::Internal(format!("LRN size {} is not odd", spec.size)));
    }
    for (what, len) in bufs {
        check_len(&format!("LRN {what}"), *len, spec.count())?;
    }
    Ok(())
}
