//! Normalisation: batch normalisation (Caffe's and SegNet's), per-channel affine maps, LRN, MVN.

use crate::backend::Storage;

/// Normalisation primitives.
pub trait Normalization: Storage {}
