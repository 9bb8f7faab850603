//! CUDA activations: kernels from `kernels/act.cu`, one per function family (ReLU on its own,
//! the other element-wise functions behind one switch, Swish, PReLU, Dropout, the LSTM unit).
//! Every kernel writes the CPU backend's formula in the CPU's order of operations; constants the
//! CPU derives on the host (Power's constant output, its derivative factors) are derived here
//! the same way.

use super::device::Device;
use super::launch::{Family, Kernel, Launch};
use super::{Cuda, CudaBuf, same_len};
use crate::backend::{Activation, Activations, Io, Math};
use crate::{Error, Result};

const RELU_FORWARD: Kernel = Kernel::new(Family::Activations, "crema_relu_forward");
const RELU_BACKWARD: Kernel = Kernel::new(Family::Activations, "crema_relu_backward");
const ACT_FORWARD: Kernel = Kernel::new(Family::Activations, "crema_act_forward");
const ACT_BACKWARD: Kernel = Kernel::new(Family::Activations, "crema_act_backward");
const SWISH_FORWARD: Kernel = Kernel::new(Family::Activations, "crema_swish_forward");
const SWISH_BACKWARD: Kernel = Kernel::new(Family::Activations, "crema_swish_backward");
const PRELU_FORWARD: Kernel = Kernel::new(Family::Activations, "crema_prelu_forward");
const PRELU_BACKWARD_DATA: Kernel = Kernel::new(Family::Activations, "crema_prelu_backward_data");
const PRELU_SLOPE_PARTIAL: Kernel = Kernel::new(Family::Activations, "crema_prelu_slope_partial");
const PRELU_SLOPE_FINAL: Kernel = Kernel::new(Family::Activations, "crema_prelu_slope_final");
const DROPOUT_FORWARD: Kernel = Kernel::new(Family::Activations, "crema_dropout_forward");
const DROPOUT_BACKWARD: Kernel = Kernel::new(Family::Activations, "crema_dropout_backward");
const LSTM_UNIT_FORWARD: Kernel = Kernel::new(Family::Activations, "crema_lstm_unit_forward");
const LSTM_UNIT_BACKWARD: Kernel = Kernel::new(Family::Activations, "crema_lstm_unit_backward");

/// Every kernel this file launches (checked against the sources by a unit test).
#[cfg(test)]
pub(super) const KERNELS: &[Kernel] = &[
    RELU_FORWARD,
    RELU_BACKWARD,
    ACT_FORWARD,
    ACT_BACKWARD,
    SWISH_FORWARD,
    SWISH_BACKWARD,
    PRELU_FORWARD,
    PRELU_BACKWARD_DATA,
    PRELU_SLOPE_PARTIAL,
    PRELU_SLOPE_FINAL,
    DROPOUT_FORWARD,
    DROPOUT_BACKWARD,
    LSTM_UNIT_FORWARD,
    LSTM_UNIT_BACKWARD,
];

/// The `ACT_*` codes of `crema_act_forward`.
#[derive(Clone, Copy)]
enum Forward {
    Sigmoid = 1,
    TanH = 2,
    AbsVal = 3,
    Bnll = 4,
    Elu = 5,
    Power = 6,
    Exp = 7,
    Log = 8,
    Threshold = 9,
    Clip = 10,
}

/// The `GRAD_*` codes of `crema_act_backward`.
#[derive(Clone, Copy)]
enum Backward {
    Sigmoid = 1,
    TanH = 2,
    AbsVal = 3,
    Bnll = 4,
    Elu = 5,
    PowerLinear = 6,
    PowerSquare = 7,
    PowerNoShift = 8,
    Power = 9,
    Exp = 10,
    Log = 11,
    Clip = 12,
}

/// The input and output of an [`Io`] (the same buffer when in place).
pub(super) fn io_bufs<'a>(io: &'a mut Io<'_, CudaBuf>) -> (&'a CudaBuf, &'a CudaBuf) {
    match io {
        Io::InPlace(y) => (&**y, &**y),
        Io::Pair(x, y) => (&**x, &**y),
    }
}

fn forward(dev: &Device, op: Forward, p: [f32; 3], x: &CudaBuf, y: &CudaBuf) -> Result<()> {
    Launch::new(dev, ACT_FORWARD)
        .elems(y.len)
        .u64("n", y.len)
        .i32("op", op as i32)
        .f32("a", p[0])
        .f32("b", p[1])
        .f32("c", p[2])
        .buf("x", x)
        .buf("y", y)
        .run()
}

fn backward(
    dev: &Device,
    op: Backward,
    p: [f32; 3],
    x: &CudaBuf,
    y: &CudaBuf,
    dy: &CudaBuf,
    dx: &CudaBuf,
) -> Result<()> {
    Launch::new(dev, ACT_BACKWARD)
        .elems(dx.len)
        .u64("n", dx.len)
        .i32("op", op as i32)
        .f32("a", p[0])
        .f32("b", p[1])
        .f32("c", p[2])
        .buf("x", x)
        .buf("y", y)
        .buf("dy", dy)
        .buf("dx", dx)
        .run()
}

/// Checks PReLU geometry against a data length and a slope length, as the CPU does.
fn prelu_check(what: &str, channels: usize, dim: usize, shared: bool, count: usize, slopes: usize) -> Result<()> {
    let plane_ok = channels > 0 && dim > 0 && count.is_multiple_of(channels * dim);
    let want_slopes = if shared { 1 } else { channels };
    if (count > 0 && !plane_ok) || slopes != want_slopes {
        return Err(Error::Internal(format!(
            "{what}: {count} elements, {channels} channels of {dim}, {slopes} slopes (shared: {shared})"
        )));
    }
    Ok(())
}

impl Activations for Cuda {
    fn activation_forward(&self, f: Activation, mut io: Io<'_, CudaBuf>) -> Result<()> {
        let (x, y) = io_bufs(&mut io);
        self.own(&[x, y])?;
        same_len("activation forward", x.len, y.len)?;
        let dev = &*self.dev;
        match f {
            Activation::ReLU { negative_slope } => Launch::new(dev, RELU_FORWARD)
                .elems(y.len)
                .u64("n", y.len)
                .f32("negative_slope", negative_slope)
                .buf("x", x)
                .buf("y", y)
                .run(),
            Activation::Sigmoid => forward(dev, Forward::Sigmoid, [0.0; 3], x, y),
            Activation::TanH => forward(dev, Forward::TanH, [0.0; 3], x, y),
            Activation::AbsVal => forward(dev, Forward::AbsVal, [0.0; 3], x, y),
            Activation::BNLL => forward(dev, Forward::Bnll, [0.0; 3], x, y),
            Activation::ELU { alpha } => forward(dev, Forward::Elu, [alpha, 0.0, 0.0], x, y),
            Activation::Power { power, scale, shift } => {
                if power * scale == 0.0 {
                    // The CPU's constant, computed by the same host code.
                    let value = if power == 0.0 { 1.0 } else { shift.powf(power) };
                    let n = y.len;
                    let y = io.output();
                    self.fill(y, 0, n, value)
                } else {
                    forward(dev, Forward::Power, [power, scale, shift], x, y)
                }
            }
            Activation::Exp {
                inner_scale,
                outer_scale,
            } => forward(dev, Forward::Exp, [inner_scale, outer_scale, 0.0], x, y),
            Activation::Log {
                scale,
                shift,
                base_scale,
                ..
            } => forward(dev, Forward::Log, [scale, shift, base_scale], x, y),
            Activation::Threshold { threshold } => forward(dev, Forward::Threshold, [threshold, 0.0, 0.0], x, y),
            Activation::Clip { min, max } => forward(dev, Forward::Clip, [min, max, 0.0], x, y),
        }
    }

    fn activation_backward(&self, f: Activation, x: &CudaBuf, y: &CudaBuf, mut diff: Io<'_, CudaBuf>) -> Result<()> {
        let (dy, dx) = io_bufs(&mut diff);
        self.own(&[x, y, dy, dx])?;
        same_len("activation backward", dy.len, dx.len)?;
        same_len("activation backward (bottom data)", x.len, dx.len)?;
        same_len("activation backward (top data)", y.len, dx.len)?;
        let dev = &*self.dev;
        let grad = |op: Backward, p: [f32; 3]| backward(dev, op, p, x, y, dy, dx);
        match f {
            Activation::ReLU { negative_slope } => Launch::new(dev, RELU_BACKWARD)
                .elems(dx.len)
                .u64("n", dx.len)
                .f32("negative_slope", negative_slope)
                .buf("x", x)
                .buf("dy", dy)
                .buf("dx", dx)
                .run(),
            Activation::Sigmoid => grad(Backward::Sigmoid, [0.0; 3]),
            Activation::TanH => grad(Backward::TanH, [0.0; 3]),
            Activation::AbsVal => grad(Backward::AbsVal, [0.0; 3]),
            Activation::BNLL => grad(Backward::Bnll, [0.0; 3]),
            Activation::ELU { alpha } => grad(Backward::Elu, [alpha, 0.0, 0.0]),
            Activation::Power { power, scale, shift } => {
                let d = power * scale;
                if d == 0.0 {
                    // dx = 0 whatever dy holds.
                    let n = dx.len;
                    self.fill(diff.output(), 0, n, 0.0)
                } else if power == 1.0 {
                    grad(Backward::PowerLinear, [d, 0.0, 0.0])
                } else if power == 2.0 {
                    grad(Backward::PowerSquare, [d * scale, d * shift, shift])
                } else if shift == 0.0 {
                    grad(Backward::PowerNoShift, [power, 0.0, 0.0])
                } else {
                    grad(Backward::Power, [scale, shift, d])
                }
            }
            Activation::Exp { inner_scale, .. } => grad(Backward::Exp, [inner_scale, 0.0, 0.0]),
            Activation::Log {
                scale,
                shift,
                backward_num_scale,
                ..
            } => grad(Backward::Log, [scale, shift, backward_num_scale]),
            Activation::Threshold { .. } => Err(Error::Internal("Threshold has no backward".into())),
            Activation::Clip { min, max } => grad(Backward::Clip, [min, max, 0.0]),
        }
    }

    fn swish_forward(&self, beta: f32, mut io: Io<'_, CudaBuf>, sig: &mut CudaBuf) -> Result<()> {
        let (x, y) = io_bufs(&mut io);
        self.own(&[x, y, sig])?;
        same_len("swish_forward", x.len, y.len)?;
        same_len("swish_forward (sigmoid)", sig.len, y.len)?;
        Launch::new(&self.dev, SWISH_FORWARD)
            .elems(y.len)
            .u64("n", y.len)
            .f32("beta", beta)
            .buf("x", x)
            .buf("y", y)
            .buf("sig", sig)
            .run()
    }

    fn swish_backward(&self, beta: f32, y: &CudaBuf, sig: &CudaBuf, mut diff: Io<'_, CudaBuf>) -> Result<()> {
        let (dy, dx) = io_bufs(&mut diff);
        self.own(&[y, sig, dy, dx])?;
        same_len("swish_backward", dy.len, dx.len)?;
        same_len("swish_backward (top data)", y.len, dx.len)?;
        same_len("swish_backward (sigmoid)", sig.len, dx.len)?;
        Launch::new(&self.dev, SWISH_BACKWARD)
            .elems(dx.len)
            .u64("n", dx.len)
            .f32("beta", beta)
            .buf("y", y)
            .buf("sig", sig)
            .buf("dy", dy)
            .buf("dx", dx)
            .run()
    }

    fn prelu_forward(
        &self,
        channels: usize,
        dim: usize,
        shared: bool,
        slope: &CudaBuf,
        mut io: Io<'_, CudaBuf>,
    ) -> Result<()> {
        let (x, y) = io_bufs(&mut io);
        self.own(&[slope, x, y])?;
        same_len("prelu_forward", x.len, y.len)?;
        prelu_check("prelu_forward", channels, dim, shared, y.len, slope.len)?;
        Launch::new(&self.dev, PRELU_FORWARD)
            .elems(y.len)
            .u64("n", y.len)
            .u64("channels", channels)
            .u64("dim", dim)
            .i32("shared", shared as i32)
            .buf("slope", slope)
            .buf("x", x)
            .buf("y", y)
            .run()
    }

    fn prelu_backward_slope(
        &self,
        channels: usize,
        dim: usize,
        shared: bool,
        x: &CudaBuf,
        dy: &CudaBuf,
        dslope: &mut CudaBuf,
    ) -> Result<()> {
        self.own(&[x, dy, dslope])?;
        same_len("prelu_backward_slope", x.len, dy.len)?;
        prelu_check("prelu_backward_slope", channels, dim, shared, x.len, dslope.len)?;
        if x.len == 0 {
            return Ok(());
        }
        let planes = x.len / dim;
        // Parts per plane depend on the shape only, so the sums do not depend on the GPU.
        let parts = dim.div_ceil(1 << 13).clamp(1, 64);
        let jobs = planes * parts;
        let dev = &*self.dev;
        let mut ws = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
        let partial = ws.get(dev, jobs * 8)?;
        Launch::new(dev, PRELU_SLOPE_PARTIAL)
            .dims((jobs.min(1 << 16) as u32, 1, 1), (super::launch::BLOCK, 1, 1))
            .u64("planes", planes)
            .u64("dim", dim)
            .u64("parts", parts)
            .buf("x", x)
            .buf("dy", dy)
            .raw("partial", partial, jobs)
            .run()?;
        Launch::new(dev, PRELU_SLOPE_FINAL)
            .elems(dslope.len)
            .u64("slopes", dslope.len)
            .u64("planes", planes)
            .u64("channels", channels)
            .u64("parts", parts)
            .raw("partial", partial, jobs)
            .buf("dslope", dslope)
            .run()
    }

    fn prelu_backward_data(
        &self,
        channels: usize,
        dim: usize,
        shared: bool,
        slope: &CudaBuf,
        x: &CudaBuf,
        mut diff: Io<'_, CudaBuf>,
    ) -> Result<()> {
        let (dy, dx) = io_bufs(&mut diff);
        self.own(&[slope, x, dy, dx])?;
        same_len("prelu_backward_data", dy.len, dx.len)?;
        same_len("prelu_backward_data (bottom data)", x.len, dx.len)?;
        prelu_check("prelu_backward_data", channels, dim, shared, dx.len, slope.len)?;
        Launch::new(&self.dev, PRELU_BACKWARD_DATA)
            .elems(dx.len)
            .u64("n", dx.len)
            .u64("channels", channels)
            .u64("dim", dim)
            .i32("shared", shared as i32)
            .buf("slope", slope)
            .buf("x", x)
            .buf("dy", dy)
            .buf("dx", dx)
            .run()
    }

    fn dropout_forward(
        &self,
        key: u64,
        threshold: u32,
        scale: f32,
        mut io: Io<'_, CudaBuf>,
        mask: &mut CudaBuf,
    ) -> Result<()> {
        let (x, y) = io_bufs(&mut io);
        self.own(&[x, y, mask])?;
        same_len("dropout_forward", x.len, y.len)?;
        same_len("dropout_forward (mask)", mask.len, y.len)?;
        Launch::new(&self.dev, DROPOUT_FORWARD)
            .elems(y.len)
            .u64("n", y.len)
            .u64("key", key as usize)
            .u64("threshold", threshold as usize)
            .f32("scale", scale)
            .buf("x", x)
            .buf("y", y)
            .buf("mask", mask)
            .run()
    }

    fn dropout_backward(&self, scale: f32, mask: &CudaBuf, mut diff: Io<'_, CudaBuf>) -> Result<()> {
        let (dy, dx) = io_bufs(&mut diff);
        self.own(&[mask, dy, dx])?;
        same_len("dropout_backward", dy.len, dx.len)?;
        same_len("dropout_backward (mask)", mask.len, dx.len)?;
        Launch::new(&self.dev, DROPOUT_BACKWARD)
            .elems(dx.len)
            .u64("n", dx.len)
            .f32("scale", scale)
            .buf("mask", mask)
            .buf("dy", dy)
            .buf("dx", dx)
            .run()
    }

    fn lstm_unit_forward(
        &self,
        num: usize,
        dim: usize,
        c_prev: &CudaBuf,
        x: &CudaBuf,
        cont: &CudaBuf,
        c: &mut CudaBuf,
        h: &mut CudaBuf,
    ) -> Result<()> {
        self.own(&[c_prev, x, cont, c, h])?;
        let n = crate::backend::spec::lstm_unit_cells("lstm_unit_forward", num, dim, &[c_prev.len, c.len, h.len], &[x.len], cont.len)?;
        Launch::new(&self.dev, LSTM_UNIT_FORWARD)
            .elems(n)
            .u64("n", n)
            .u64("dim", dim)
            .buf("c_prev", c_prev)
            .buf("x", x)
            .buf("cont", cont)
            .buf("c", c)
            .buf("h", h)
            .run()
    }

    fn lstm_unit_backward(
        &self,
        num: usize,
        dim: usize,
        c_prev: &CudaBuf,
        x: &CudaBuf,
        cont: &CudaBuf,
        c: &CudaBuf,
        dc: &CudaBuf,
        dh: &CudaBuf,
        dc_prev: Option<&mut CudaBuf>,
        dx: Option<&mut CudaBuf>,
    ) -> Result<()> {
        let what = "lstm_unit_backward";
        let (dc_prev, dx) = (dc_prev.map(|b| &*b), dx.map(|b| &*b));
        self.own(&[c_prev, x, cont, c, dc, dh])?;
        self.own(&dc_prev.iter().chain(&dx).copied().collect::<Vec<_>>())?;
        let mut cells = vec![c_prev.len, c.len, dc.len, dh.len];
        cells.extend(dc_prev.map(|b| b.len));
        let mut gates = vec![x.len];
        gates.extend(dx.map(|b| b.len));
        let n = crate::backend::spec::lstm_unit_cells(what, num, dim, &cells, &gates, cont.len)?;
        if dc_prev.is_none() && dx.is_none() {
            return Ok(());
        }
        Launch::new(&self.dev, LSTM_UNIT_BACKWARD)
            .elems(n)
            .u64("n", n)
            .u64("dim", dim)
            .buf("c_prev", c_prev)
            .buf("x", x)
            .buf("cont", cont)
            .buf("c", c)
            .buf("dc", dc)
            .buf("dh", dh)
            .opt_buf("dc_prev", dc_prev)
            .opt_buf("dx", dx)
            .run()
    }
}
