//! Parameter updates of the solvers, one fused pass per parameter blob.

use crate::backend::Storage;

/// Solver update primitives.
pub trait SolverOps: Storage {}
