//! CPU pool primitives.

use super::Cpu;
use crate::backend::Pooling;

impl Pooling for Cpu {}
