//! One update of the learnable blobs (Caffe's `SGDSolver::ApplyUpdate`): the policy's rate,
//! gradient clipping over all blobs, then per blob normalisation, regularisation, the type's
//! rule and the step `data -= update`, fused in [`SolverOps::update_param`].

use super::{RegType, Solver};
use crate::backend::{Backend, ParamUpdate, Regularization};
use crate::solver::monitor::fmt_g;
use crate::Result;

impl<B: Backend> Solver<B> {
    /// The learning rate of the current iteration, as the policy gives it (advancing the
    /// step and multistep policies' `current_step`, as Caffe does).
    pub(super) fn learning_rate(&mut self) -> f32 {
        let (rate, note) = self.policy.rate(self.param.base_lr(), self.iter, &mut self.current_step);
        if let Some(line) = note {
            self.monitor.log(&line);
        }
        rate
    }

    /// Updates every learnable blob from its accumulated gradient; returns the rate used.
    pub(super) fn apply_update(&mut self, display: bool) -> Result<f32> {
        let rate = self.learning_rate();
        if display {
            self.monitor.log(&format!("Iteration {}, lr = {}", self.iter, fmt_g(rate as f64)));
        }
        self.clip_gradients()?;
        let iter_size = self.param.iter_size();
        let normalize = (iter_size != 1).then(|| 1.0f32 / iter_size as f32);
        let weight_decay = self.param.weight_decay();
        let rule = self.kind.rule(&self.param, self.iter);
        let n = self.net.params().len();
        let (first, second) = self.history.split_at_mut(n);
        for (i, p) in self.net.params_mut().iter_mut().enumerate() {
            let (lr_mult, decay_mult) = self.mults[i];
            let local_decay = weight_decay * decay_mult;
            let regularization = (local_decay != 0.0).then_some(match self.reg {
                RegType::L2 => Regularization::L2(local_decay),
                RegType::L1 => Regularization::L1(local_decay),
            });
            let update = ParamUpdate { rule, normalize, regularization, local_rate: rate * lr_mult };
            let h2 = second.get_mut(i).map(|b| &mut b.data);
            self.be.update_param(&update, &mut p.data, &mut p.diff, &mut first[i].data, h2)?;
        }
        Ok(rate)
    }

    /// Caffe's `ClipGradients`: when the L2 norm of all gradients together exceeds
    /// `clip_gradients` (>= 0), scales every gradient down to that norm. It runs before the
    /// `iter_size` normalisation, so it sees the accumulated (summed) gradients, as in Caffe.
    fn clip_gradients(&mut self) -> Result<()> {
        let clip = self.param.clip_gradients();
        if clip < 0.0 {
            return Ok(());
        }
        let mut sumsq = 0.0f32;
        for p in self.net.params() {
            sumsq += self.be.sumsq(&p.diff)?;
        }
        let norm = sumsq.sqrt();
        if norm > clip {
            let scale = clip / norm;
            self.monitor.log(&format!(
                "Gradient clipping: scaling down gradients (L2 norm {} > {}) by scale factor {}",
                fmt_g(norm as f64),
                fmt_g(clip as f64),
                fmt_g(scale as f64)
            ));
            for p in self.net.params_mut() {
                self.be.scal(scale, &mut p.diff)?;
            }
        }
        Ok(())
    }
}
