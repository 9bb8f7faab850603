//! CPU activations.

use super::{map_io, map_io_indexed, Cpu};
use crate::backend::{Activation, Activations, Io};
use crate::Result;

impl Activations for Cpu {
    fn activation_forward(&self, f: Activation, io: Io<'_, Vec<f32>>) -> Result<()> {
        match f {
            Activation::ReLU { negative_slope } => {
                map_io(io, |x| x.max(0.0) + negative_slope * x.min(0.0))
            }
        }
        Ok(())
    }

    fn activation_backward(&self, f: Activation, x: &Vec<f32>, _y: &Vec<f32>, diff: Io<'_, Vec<f32>>) -> Result<()> {
        match f {
            Activation::ReLU { negative_slope } => map_io_indexed(diff, |dy, i| {
                dy * if x[i] > 0.0 { 1.0 } else { negative_slope }
            }),
        }
        Ok(())
    }
}
