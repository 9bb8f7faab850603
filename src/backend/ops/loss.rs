//! Softmax and the loss layers' arithmetic.

use crate::backend::Storage;

/// Softmax and loss primitives.
pub trait Losses: Storage {}
