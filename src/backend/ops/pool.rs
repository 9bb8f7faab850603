//! Pooling and SegNet's upsampling by pooling masks.

use crate::backend::Storage;

/// Pooling primitives.
pub trait Pooling: Storage {}
