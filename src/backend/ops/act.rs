//! Element-wise activation functions, forward and backward.

use crate::backend::{Io, Storage};
use crate::Result;

/// An element-wise function with its parameters, as Caffe's layers define them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0) + negative_slope * min(x, 0)`.
    ReLU {
        /// Slope for negative inputs.
        negative_slope: f32,
    },
}

/// Element-wise activations.
pub trait Activations: Storage {
    /// `y = f(x)`, in place or not.
    fn activation_forward(&self, f: Activation, io: Io<'_, Self::Buf>) -> Result<()>;
    /// `dx = dy * f'(x)`, from the bottom data `x` and top data `y` (the same buffer when the
    /// layer ran in place; Caffe's formulas then read the overwritten values, and so do these).
    fn activation_backward(&self, f: Activation, x: &Self::Buf, y: &Self::Buf, diff: Io<'_, Self::Buf>) -> Result<()>;
}
