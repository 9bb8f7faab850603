//! The training loop: Caffe's `Solver::Step` and `Solver::Solve`, with the smoothed loss and
//! the display lines they log, and crema's stop on a non-finite loss.

use super::monitor::{fmt_g, Action, IterationRecord};
use super::scores::{describe, output_values};
use super::Solver;
use crate::backend::Backend;
use crate::layers::Pass;
use crate::{Error, Result};
use std::time::Instant;

/// How a solve ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It reached `max_iter` (or the iteration limit it was given).
    Finished,
    /// The user asked it to stop.
    Stopped,
}

/// Whether an every-`n`-iterations event (`n` = 0: never) falls on `iter`.
fn due(n: u64, iter: u64) -> bool {
    n > 0 && iter.is_multiple_of(n)
}

impl<B: Backend> Solver<B> {
    /// Trains for `iters` iterations (Caffe's `Step`). Each iteration: zero the gradients; test
    /// when `test_interval` says so; run `iter_size` forward/backward passes, accumulating
    /// gradients and averaging their losses; display; update; count the iteration; snapshot
    /// when `snapshot` says so or the user asks; stop when the user asks.
    ///
    /// A loss that is NaN or infinite stops training with [`Error::Diverged`], naming the
    /// first layer whose output was not finite; the weights are not updated with it.
    pub fn step(&mut self, iters: u64) -> Result<()> {
        let start_iter = self.iter;
        let stop_iter = self.iter.saturating_add(iters);
        let average_loss = self.param.average_loss().max(1) as usize;
        let iter_size = self.param.iter_size().max(1) as u32;
        let display_every = self.param.display().max(0) as u64;
        let test_interval = self.param.test_interval().max(0) as u64;
        let snapshot_every = self.param.snapshot().max(0) as u64;
        self.losses.clear();
        self.smoothed_loss = 0.0;
        let mut timer = Instant::now();
        let mut iterations_last = self.iter;

        while self.iter < stop_iter {
            self.net.clear_param_diffs()?;
            if due(test_interval, self.iter) && (self.iter > 0 || self.param.test_initialization())
            {
                self.test_all()?;
                if self.requested_early_exit {
                    break;
                }
            }
            let display = due(display_every, self.iter);
            let mut loss = 0.0f32;
            for sub in 0..iter_size {
                let pass = Pass { iter: self.iter, sub, per_iter: iter_size };
                self.net.set_pass(pass);
                let l = self.net.forward()?;
                if !l.is_finite() {
                    return Err(self.diagnose(pass, l));
                }
                self.net.backward()?;
                loss += l;
            }
            loss /= iter_size as f32;
            self.update_smoothed_loss(loss, start_iter, average_loss);
            if display {
                let lapse = timer.elapsed().as_secs_f32();
                let per_s = (self.iter - iterations_last) as f32 / if lapse > 0.0 { lapse } else { 1.0 };
                self.monitor.log(&format!(
                    "Iteration {} ({} iter/s, {}s/{} iters), loss = {}",
                    self.iter,
                    fmt_g(per_s as f64),
                    fmt_g(lapse as f64),
                    display_every,
                    fmt_g(self.smoothed_loss as f64)
                ));
                timer = Instant::now();
                iterations_last = self.iter;
                for (k, s) in output_values(&self.net)?.iter().enumerate() {
                    self.monitor.log(&format!("    Train net output #{k}: {}", describe(s)));
                }
            }
            let lr = self.apply_update(display)?;
            self.monitor.iteration(&IterationRecord { iter: self.iter, loss, smoothed_loss: self.smoothed_loss, lr });
            self.iter += 1;

            let request = self.monitor.poll();
            if due(snapshot_every, self.iter) || request == Action::Snapshot {
                self.snapshot()?;
            }
            if request == Action::Stop {
                self.requested_early_exit = true;
                break;
            }
        }
        Ok(())
    }

    /// Trains to `max_iter` (Caffe's `Solve`, after any restore). See [`Solver::solve_for`].
    pub fn solve(&mut self) -> Result<Outcome> {
        self.solve_for(None)
    }

    /// Trains to `max_iter`, or for at most `limit` more iterations. Then, as Caffe: takes the
    /// end-of-training snapshot (`snapshot_after_train`, unless the last iteration just took
    /// one); and, unless stopped early, displays the loss of one more forward pass and runs
    /// the tests when their intervals fall on the final iteration. Last, whether training
    /// succeeded or not, [`Solver::finish`] (an error of training comes first).
    pub fn solve_for(&mut self, limit: Option<u64>) -> Result<Outcome> {
        let outcome = self.train_and_test(limit);
        let finished = self.finish();
        let outcome = outcome?;
        finished?;
        Ok(outcome)
    }

    /// Tells the train net and every test net that training is over for now (see
    /// [`crate::net::Net::finish`]): HDF5Output layers write the rows they still hold. Every
    /// net is told even when one fails; the first error is returned. Training may go on after.
    pub fn finish(&mut self) -> Result<()> {
        let mut first = self.net.finish();
        for (i, t) in self.test_nets.iter_mut().enumerate() {
            let done = t.finish().map_err(|e| super::in_test_net(i, e));
            if first.is_ok() {
                first = done;
            }
        }
        first
    }

    /// [`Solver::solve_for`] but the final [`Solver::finish`].
    fn train_and_test(&mut self, limit: Option<u64>) -> Result<Outcome> {
        self.monitor.log(&format!("Solving {}", self.net.name()));
        self.monitor.log(&format!("Learning Rate Policy: {}", self.policy.name()));
        self.requested_early_exit = false;
        let start_iter = self.iter;
        let max_iter = self.param.max_iter().max(0) as u64;
        let stop = match limit {
            Some(n) => self.iter.saturating_add(n).min(max_iter),
            None => max_iter,
        };
        self.step(stop.saturating_sub(self.iter))?;
        let snapshot_every = self.param.snapshot().max(0) as u64;
        if self.param.snapshot_after_train() && !due(snapshot_every, self.iter) {
            self.snapshot()?;
        }
        if self.requested_early_exit {
            self.monitor.log("Optimization stopped early.");
            return Ok(Outcome::Stopped);
        }
        let display_every = self.param.display().max(0) as u64;
        if due(display_every, self.iter) {
            let pass = Pass { iter: self.iter, sub: 0, per_iter: self.param.iter_size().max(1) as u32 };
            self.net.set_pass(pass);
            let loss = self.net.forward()?;
            self.update_smoothed_loss(loss, start_iter, self.param.average_loss().max(1) as usize);
            self.monitor.log(&format!("Iteration {}, loss = {}", self.iter, fmt_g(self.smoothed_loss as f64)));
        }
        let test_interval = self.param.test_interval().max(0) as u64;
        if due(test_interval, self.iter) {
            self.test_all()?;
        }
        self.monitor.log("Optimization Done.");
        Ok(Outcome::Finished)
    }

    /// Caffe's `UpdateSmoothedLoss`: the mean of the last `average_loss` losses, kept in a
    /// ring indexed by the iterations since `start_iter`.
    fn update_smoothed_loss(&mut self, loss: f32, start_iter: u64, average_loss: usize) {
        if self.losses.len() < average_loss {
            self.losses.push(loss);
            let size = self.losses.len() as f32;
            self.smoothed_loss = (self.smoothed_loss * (size - 1.0) + loss) / size;
        } else {
            let idx = ((self.iter - start_iter) % average_loss as u64) as usize;
            self.smoothed_loss += (loss - self.losses[idx]) / average_loss as f32;
            self.losses[idx] = loss;
        }
    }

    /// The error for a non-finite loss: re-runs the pass checking each layer's outputs, to
    /// name the first layer that produced a non-finite value.
    fn diagnose(&mut self, pass: Pass, loss: f32) -> Error {
        self.net.set_pass(pass);
        let culprit = match self.net.forward_checked() {
            Ok(Err((layer, top))) => {
                let kind = self.net.layer_index(&layer).map(|i| self.net.layers()[i].type_name().to_string()).unwrap_or_default();
                format!("layer `{layer}` (type {kind}) is the first whose output (top `{top}`) is not finite")
            }
            Ok(Ok(_)) => "every layer's output was finite when the pass was run again".to_string(),
            Err(e) => format!("running the pass again to find the layer failed: {e}"),
        };
        Error::Diverged {
            iter: self.iter,
            msg: format!(
                "the loss is {}; {culprit}. Snapshots already written are intact; a lower base_lr or clip_gradients may help",
                fmt_g(loss as f64)
            ),
        }
    }
}
