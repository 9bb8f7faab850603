//! CPU norm primitives.

use super::Cpu;
use crate::backend::Normalization;

impl Normalization for Cpu {}
