//! CUDA activations: kernels from `kernels/act.cu`.

use super::launch::{Family, Kernel, Launch};
use super::{same_len, Cuda, CudaBuf};
use crate::backend::{Activation, Activations, Io};
use crate::{Error, Result};

const RELU_FORWARD: Kernel = Kernel::new(Family::Activations, "crema_relu_forward");
const RELU_BACKWARD: Kernel = Kernel::new(Family::Activations, "crema_relu_backward");

/// Every kernel this file launches (checked against the sources by a unit test).
#[cfg(test)]
pub(super) const KERNELS: &[Kernel] = &[RELU_FORWARD, RELU_BACKWARD];

/// The input and output of an [`Io`] (the same buffer when in place).
fn io_bufs<'a>(io: &'a mut Io<'_, CudaBuf>) -> (&'a CudaBuf, &'a CudaBuf) {
    match io {
        Io::InPlace(y) => (&**y, &**y),
        Io::Pair(x, y) => (&**x, &**y),
    }
}

fn not_yet(what: &str) -> Error {
    Error::Internal(format!("{what} is not implemented on the CUDA backend yet"))
}

#[allow(clippy::too_many_arguments)]
impl Activations for Cuda {
    fn activation_forward(&self, f: Activation, mut io: Io<'_, CudaBuf>) -> Result<()> {
        let (x, y) = io_bufs(&mut io);
        self.own(&[x, y])?;
        same_len("activation forward", x.len, y.len)?;
        match f {
            Activation::ReLU { negative_slope } => Launch::new(&self.dev, RELU_FORWARD)
                .elems(y.len)
                .u64("n", y.len)
                .f32("negative_slope", negative_slope)
                .buf("x", x)
                .buf("y", y)
                .run(),
            _ => Err(not_yet(&format!("{f:?}"))),
        }
    }

    fn activation_backward(&self, f: Activation, x: &CudaBuf, _y: &CudaBuf, mut diff: Io<'_, CudaBuf>) -> Result<()> {
        let (dy, dx) = io_bufs(&mut diff);
        self.own(&[x, dy, dx])?;
        same_len("activation backward", dy.len, dx.len)?;
        same_len("activation backward (bottom data)", x.len, dx.len)?;
        match f {
            Activation::ReLU { negative_slope } => Launch::new(&self.dev, RELU_BACKWARD)
                .elems(dx.len)
                .u64("n", dx.len)
                .f32("negative_slope", negative_slope)
                .buf("x", x)
                .buf("dy", dy)
                .buf("dx", dx)
                .run(),
            _ => Err(not_yet(&format!("{f:?}"))),
        }
    }

    fn swish_forward(&self, _beta: f32, _io: Io<'_, CudaBuf>, _sig: &mut CudaBuf) -> Result<()> {
        Err(not_yet("swish_forward"))
    }

    fn swish_backward(&self, _beta: f32, _y: &CudaBuf, _sig: &CudaBuf, _diff: Io<'_, CudaBuf>) -> Result<()> {
        Err(not_yet("swish_backward"))
    }

    fn prelu_forward(&self, _channels: usize, _dim: usize, _shared: bool, _slope: &CudaBuf, _io: Io<'_, CudaBuf>) -> Result<()> {
        Err(not_yet("prelu_forward"))
    }

    fn prelu_backward_slope(&self, _channels: usize, _dim: usize, _shared: bool, _x: &CudaBuf, _dy: &CudaBuf, _dslope: &mut CudaBuf) -> Result<()> {
        Err(not_yet("prelu_backward_slope"))
    }

    fn prelu_backward_data(&self, _channels: usize, _dim: usize, _shared: bool, _slope: &CudaBuf, _x: &CudaBuf, _diff: Io<'_, CudaBuf>) -> Result<()> {
        Err(not_yet("prelu_backward_data"))
    }

    fn dropout_forward(&self, _key: u64, _threshold: u32, _scale: f32, _io: Io<'_, CudaBuf>, _mask: &mut CudaBuf) -> Result<()> {
        Err(not_yet("dropout_forward"))
    }

    fn dropout_backward(&self, _scale: f32, _mask: &CudaBuf, _diff: Io<'_, CudaBuf>) -> Result<()> {
        Err(not_yet("dropout_backward"))
    }
}
