//! CPU solver primitives.

use super::Cpu;
use crate::backend::SolverOps;

impl SolverOps for Cpu {}
