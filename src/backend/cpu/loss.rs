//! CPU loss primitives.

use super::Cpu;
use crate::backend::Losses;

impl Losses for Cpu {}
