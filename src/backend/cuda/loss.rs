//! CUDA loss primitives: not implemented yet (each returns an error).

use super::{Cuda, CudaBuf};
use crate::backend::{ArgMaxOutput, BadLabel, ClassAxis, Io, Losses, LossSum};
use crate::{Error, Result};

fn not_yet(what: &str) -> Error {
    Error::Internal(format!("{what} is not implemented on the CUDA backend yet"))
}

#[allow(clippy::too_many_arguments)]
impl Losses for Cuda {
    fn softmax_forward(&self, _axis: &ClassAxis, _io: Io<'_, CudaBuf>) -> Result<()> {
        Err(not_yet("softmax_forward"))
    }

    fn softmax_backward(&self, _axis: &ClassAxis, _y: &CudaBuf, _diff: Io<'_, CudaBuf>) -> Result<()> {
        Err(not_yet("softmax_backward"))
    }

    fn softmax_loss_forward(&self, _axis: &ClassAxis, _ignore_label: Option<i32>, _prob: &CudaBuf, _label: &CudaBuf, _class_weights: Option<&CudaBuf>) -> Result<LossSum> {
        Err(not_yet("softmax_loss_forward"))
    }

    fn softmax_loss_backward(&self, _axis: &ClassAxis, _ignore_label: Option<i32>, _prob: &CudaBuf, _label: &CudaBuf, _class_weights: Option<&CudaBuf>, _scale: f32, _dx: &mut CudaBuf) -> Result<()> {
        Err(not_yet("softmax_loss_backward"))
    }

    fn infogain_loss_forward(&self, _axis: &ClassAxis, _ignore_label: Option<i32>, _prob: &CudaBuf, _label: &CudaBuf, _h: &CudaBuf) -> Result<LossSum> {
        Err(not_yet("infogain_loss_forward"))
    }

    fn infogain_loss_backward(&self, _axis: &ClassAxis, _ignore_label: Option<i32>, _prob: &CudaBuf, _label: &CudaBuf, _h: &CudaBuf, _scale: f32, _dx: &mut CudaBuf) -> Result<()> {
        Err(not_yet("infogain_loss_backward"))
    }

    fn sigmoid_xent_forward(&self, _x: &CudaBuf, _target: &CudaBuf, _ignore_label: Option<i32>) -> Result<LossSum> {
        Err(not_yet("sigmoid_xent_forward"))
    }

    fn sigmoid_xent_backward(&self, _x: &CudaBuf, _target: &CudaBuf, _ignore_label: Option<i32>, _scale: f32, _dx: &mut CudaBuf) -> Result<()> {
        Err(not_yet("sigmoid_xent_backward"))
    }

    fn accuracy(&self, _axis: &ClassAxis, _ignore_label: Option<i32>, _top_k: usize, _x: &CudaBuf, _label: &CudaBuf, _accuracy: &mut CudaBuf, _per_class: Option<&mut CudaBuf>) -> Result<Option<BadLabel>> {
        Err(not_yet("accuracy"))
    }

    fn argmax(&self, _axis: &ClassAxis, _top_k: usize, _output: ArgMaxOutput, _x: &CudaBuf, _y: &mut CudaBuf) -> Result<()> {
        Err(not_yet("argmax"))
    }
}
