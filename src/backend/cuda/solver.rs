//! CUDA solver primitives: the fused parameter update of `kernels/solver.cu`, the CPU's
//! arithmetic element for element.

use super::launch::{Family, Kernel, KernelStruct, Launch};
use super::{Cuda, CudaBuf};
use crate::backend::{ParamUpdate, Regularization, SolverOps, UpdateRule};
use crate::{Error, Result};

const UPDATE_PARAM: Kernel = Kernel::new(Family::Solver, "crema_update_param");

/// Every kernel this file launches (checked against the sources by a unit test).
#[cfg(test)]
pub(super) const KERNELS: &[Kernel] = &[UPDATE_PARAM];

/// Mirrors `UpdateArgs` in kernels/solver.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
struct UpdateArgs {
    rule: i32,
    normalize: i32,
    scale: f32,
    regularization: i32,
    decay: f32,
    lr: f32,
    a: f32,
    b: f32,
    c: f32,
    d: f32,
}

// SAFETY: repr(C), ten 4-byte fields (40 bytes, no padding), laid out as the .cu struct.
unsafe impl KernelStruct for UpdateArgs {}

impl UpdateArgs {
    fn of(u: &ParamUpdate) -> Self {
        let (rule, [a, b, c, d]) = match u.rule {
            UpdateRule::Sgd { momentum } => (0, [momentum, 0.0, 0.0, 0.0]),
            UpdateRule::Nesterov { momentum } => (1, [momentum, 0.0, 0.0, 0.0]),
            UpdateRule::AdaGrad { delta } => (2, [delta, 0.0, 0.0, 0.0]),
            UpdateRule::RmsProp { rms_decay, delta } => (3, [rms_decay, delta, 0.0, 0.0]),
            UpdateRule::AdaDelta { momentum, delta } => (4, [momentum, delta, 0.0, 0.0]),
            UpdateRule::Adam {
                beta1,
                beta2,
                eps,
                correction,
            } => (5, [beta1, beta2, eps, correction]),
        };
        let (regularization, decay) = match u.regularization {
            None => (0, 0.0),
            Some(Regularization::L2(decay)) => (1, decay),
            Some(Regularization::L1(decay)) => (2, decay),
        };
        UpdateArgs {
            rule,
            normalize: u.normalize.is_some() as i32,
            scale: u.normalize.unwrap_or(1.0),
            regularization,
            decay,
            lr: u.local_rate,
            a,
            b,
            c,
            d,
        }
    }
}

impl SolverOps for Cuda {
    fn update_param(
        &self,
        u: &ParamUpdate,
        data: &mut CudaBuf,
        diff: &mut CudaBuf,
        history: &mut CudaBuf,
        history2: Option<&mut CudaBuf>,
    ) -> Result<()> {
        self.own(&[data, diff, history])?;
        let n = data.len;
        if diff.len != n || history.len != n || history2.as_ref().is_some_and(|h| h.len != n) {
            return Err(Error::Internal(format!(
                "update_param: data {n}, diff {}, history {}, history2 {:?} differ",
                diff.len,
                history.len,
                history2.as_ref().map(|h| h.len)
            )));
        }
        if history2.is_some() != (u.rule.history_len() == 2) {
            return Err(Error::Internal(format!(
                "update_param: {:?} given the wrong number of history buffers",
                u.rule
            )));
        }
        if let Some(h) = &history2 {
            self.own(&[h])?;
        }
        Launch::new(&self.dev, UPDATE_PARAM)
            .elems(n)
            .u64("n", n)
            .value("update", &UpdateArgs::of(u))
            .buf("data", data)
            .buf("diff", diff)
            .buf("history", history)
            .opt_buf("history2", history2.as_deref())
            .run()
    }
}
