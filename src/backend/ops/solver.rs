//! Parameter updates of the solvers: one fused pass per learnable blob that normalises the
//! accumulated gradient, regularises it, turns it into the update value of the solver type's
//! rule (updating the history), and applies it.
//!
//! Caffe runs these as separate BLAS passes (`Normalize`, `Regularize`, `ComputeUpdateValue`,
//! then `Net::Update`); the fused pass performs the same float operations in the same order for
//! each element, so it gives the same bits. Gradient clipping needs a norm over all blobs
//! first and stays outside (`Math::sumsq` + `Math::scal`).

use crate::backend::Storage;
use crate::Result;

/// A solver type's update rule with its scalars (Caffe's `ComputeUpdateValue`). `g` is the
/// normalised, regularised gradient, `lr` the local rate [`ParamUpdate::local_rate`], `h` and
/// `h2` the blob's history buffers. All arithmetic is `f32`, evaluated as written, left to
/// right (`a*x + b*y` rounds both products, then the sum):
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UpdateRule {
    /// SGD: `h = momentum*h + lr*g; u = h`.
    Sgd {
        /// Momentum.
        momentum: f32,
    },
    /// Nesterov: `h_old = h; h = momentum*h + lr*g; u = (-momentum)*h_old + (1+momentum)*h`,
    /// with `1+momentum` rounded to `f32` first.
    Nesterov {
        /// Momentum.
        momentum: f32,
    },
    /// AdaGrad: `h = g*g + h; u = lr * (g / (sqrt(h) + delta))`.
    AdaGrad {
        /// Added to the root of the history.
        delta: f32,
    },
    /// RMSProp: `h = rms_decay*h + (1-rms_decay)*(g*g); u = lr * (g / (sqrt(h) + delta))`,
    /// with `1-rms_decay` rounded to `f32` first.
    RmsProp {
        /// Decay of the squared-gradient average.
        rms_decay: f32,
        /// Added to the root of the history.
        delta: f32,
    },
    /// AdaDelta, with `h` the squared gradients and `h2` the squared updates:
    /// `h = momentum*h + (1-momentum)*(g*g); s = sqrt((delta + h2) / (delta + h)); v = g*s;
    /// h2 = momentum*h2 + (1-momentum)*(v*v); u = lr * v`.
    AdaDelta {
        /// Decay of both averages.
        momentum: f32,
        /// Guards both roots against zero.
        delta: f32,
    },
    /// Adam, with `h` the first moment and `h2` the second: `h = beta1*h + (1-beta1)*g;
    /// h2 = beta2*h2 + (1-beta2)*(g*g); u = (lr*correction) * (h / (sqrt(h2) + eps))`, where
    /// `correction = sqrt(1 - beta2^t) / (1 - beta1^t)` for step `t = iter + 1` (computed by the
    /// caller, as Caffe does, in double precision and rounded to `f32`).
    Adam {
        /// Decay of the first moment (Caffe's `momentum`).
        beta1: f32,
        /// Decay of the second moment (Caffe's `momentum2`).
        beta2: f32,
        /// Added to the root of the second moment (Caffe's `delta`).
        eps: f32,
        /// The bias correction of this step.
        correction: f32,
    },
}

impl UpdateRule {
    /// How many history buffers the rule keeps per learnable blob (1, or 2 for AdaDelta and
    /// Adam).
    pub fn history_len(&self) -> usize {
        match self {
            UpdateRule::AdaDelta { .. } | UpdateRule::Adam { .. } => 2,
            _ => 1,
        }
    }
}

/// Weight decay added to the gradient (Caffe's `Regularize`); `decay` is the solver's
/// `weight_decay` times the blob's `decay_mult`. A decay of 0 does nothing (Caffe skips it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Regularization {
    /// `g = g + decay * w`.
    L2(f32),
    /// `g = g + decay * sign(w)`, with `sign(0) = 0`.
    L1(f32),
}

/// Everything one parameter update needs besides the buffers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamUpdate {
    /// The solver type's rule.
    pub rule: UpdateRule,
    /// `1 / iter_size` when gradients of several passes were accumulated (`g = g * scale`);
    /// `None` when `iter_size` is 1 (Caffe skips the pass).
    pub normalize: Option<f32>,
    /// Weight decay, or `None` where the blob's decay is 0.
    pub regularization: Option<Regularization>,
    /// The policy's learning rate times the blob's `lr_mult`.
    pub local_rate: f32,
}

/// Solver update primitives.
pub trait SolverOps: Storage {
    /// Updates one learnable blob, element by element: `g = diff[i]`, normalised
    /// (`g * scale`), regularised with `data[i]`, turned into the update value `u` by the rule
    /// (updating `history[i]`, and `history2[i]` for two-buffer rules), then `diff[i] = u` and
    /// `data[i] = data[i] - u`.
    ///
    /// `data`, `diff`, `history` (and `history2`) have the same length; `history2` must be
    /// `Some` exactly when `update.rule.history_len() == 2`. Every element is independent.
    fn update_param(
        &self,
        update: &ParamUpdate,
        data: &mut Self::Buf,
        diff: &mut Self::Buf,
        history: &mut Self::Buf,
        history2: Option<&mut Self::Buf>,
    ) -> Result<()>;
}
