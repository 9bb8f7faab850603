//! CUDA activations: kernels from `kernels/act.cu`.

use super::launch::{Family, Kernel, Launch};
use super::{same_len, Cuda, CudaBuf};
use crate::backend::{Activation, Activations, Io};
use crate::Result;

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
        }
    }
}
