//! Testing: the solver's periodic tests of its test nets (Caffe's `Solver::TestAll` and
//! `Test`), `caffe test`'s scoring of a net ([`evaluate`]), and the sharing of trained weights
//! from the train net into the test nets.

use super::monitor::{fmt_g, Action, Score, TestRecord};
use super::Solver;
use crate::backend::Backend;
use crate::layers::Pass;
use crate::net::Net;
use crate::{Error, Result};

/// The net's outputs with their loss weights, as Caffe's `blob_loss_weights` holds them: the
/// weight the last layer writing the blob gave it.
pub fn outputs<B: Backend>(net: &Net<B>) -> Vec<(usize, String, f32)> {
    net.outputs()
        .iter()
        .map(|&blob| {
            let mut weight = 0.0;
            for l in net.layers() {
                for (j, &t) in l.tops.iter().enumerate() {
                    if t == blob {
                        weight = l.loss_weights[j];
                    }
                }
            }
            (blob, net.blob_name(blob).to_string(), weight)
        })
        .collect()
}

/// Every element of every output, in Caffe's order, with its name and loss weight.
pub fn output_values<B: Backend>(net: &Net<B>) -> Result<Vec<Score>> {
    let mut scores = Vec::new();
    for (blob, name, loss_weight) in outputs(net) {
        for value in net.blobs()[blob].data_to_vec(net.backend())? {
            scores.push(Score { name: name.clone(), value, loss_weight });
        }
    }
    Ok(scores)
}

/// A score as Caffe logs it: `name = value`, plus ` (* w = w*value loss)` for losses.
pub fn describe(score: &Score) -> String {
    let mut s = format!("{} = {}", score.name, fmt_g(score.value as f64));
    if score.loss_weight != 0.0 {
        s += &format!(
            " (* {} = {} loss)",
            fmt_g(score.loss_weight as f64),
            fmt_g((score.loss_weight * score.value) as f64)
        );
    }
    s
}

/// The result of scoring a net over several batches.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The mean of the forward passes' losses.
    pub loss: f32,
    /// The mean of each output element over the batches.
    pub scores: Vec<Score>,
}

/// `caffe test`: runs `net` forward `iterations` times, calling `batch(i, scores)` after each
/// pass, and returns the mean loss and the mean of each output (sums in `f32`, divided at the
/// end, as Caffe does).
pub fn evaluate<B: Backend>(net: &mut Net<B>, iterations: u32, mut batch: impl FnMut(u32, &[Score])) -> Result<Evaluation> {
    let mut loss = 0.0f32;
    let mut sums: Vec<Score> = Vec::new();
    for i in 0..iterations {
        net.set_pass(Pass { iter: 0, sub: i, per_iter: iterations });
        loss += net.forward()?;
        let scores = output_values(net)?;
        batch(i, &scores);
        accumulate(&mut sums, &scores, i == 0)?;
    }
    Ok(Evaluation { loss: loss / iterations.max(1) as f32, scores: means(sums, iterations) })
}

/// Adds a batch's scores to the running sums (the first batch sets them).
fn accumulate(sums: &mut Vec<Score>, scores: &[Score], first: bool) -> Result<()> {
    if first {
        *sums = scores.to_vec();
        return Ok(());
    }
    if sums.len() != scores.len() {
        return Err(Error::Shape(format!(
            "the net's outputs changed size between batches ({} values, then {})",
            sums.len(),
            scores.len()
        )));
    }
    for (s, b) in sums.iter_mut().zip(scores) {
        s.value += b.value;
    }
    Ok(())
}

fn means(mut sums: Vec<Score>, n: u32) -> Vec<Score> {
    for s in &mut sums {
        s.value /= n as f32;
    }
    sums
}

/// The learnable blobs Caffe's `ShareTrainedLayersWith` pairs: those of every layer of `dst`
/// named like a layer of `src`, as (index in `src`, index in `dst`), in Caffe's order; an
/// error where the blob counts or shapes of a pair of layers disagree.
fn trained_pairs<B: Backend>(dst: &Net<B>, src: &Net<B>) -> Result<Vec<(usize, usize)>> {
    let mut pairs = Vec::new();
    for s in src.layers() {
        let Some(di) = dst.layer_index(s.name()) else { continue };
        let d = &dst.layers()[di];
        if d.params.len() != s.params.len() {
            return Err(Error::Config(format!(
                "layer `{}` has {} learnable blobs in the train net but {} in the test net",
                s.name(),
                s.params.len(),
                d.params.len()
            )));
        }
        for (j, (&sp, &dp)) in s.params.iter().zip(&d.params).enumerate() {
            let (a, b) = (src.params()[sp].shape(), dst.params()[dp].shape());
            if a != b {
                return Err(Error::Shape(format!(
                    "layer `{}` blob {j} has shape {:?} in the train net but {:?} in the test net",
                    s.name(),
                    a,
                    b
                )));
            }
            pairs.push((sp, dp));
        }
    }
    Ok(pairs)
}

/// Swaps the values of each pair's learnable blobs between the two nets.
fn swap_values<B: Backend>(test: &mut Net<B>, train: &mut Net<B>, lent: &[(usize, usize)]) {
    for &(sp, dp) in lent {
        std::mem::swap(&mut train.params_mut()[sp].data, &mut test.params_mut()[dp].data);
    }
}

impl<B: Backend> Solver<B> {
    /// Tests every test net (Caffe's `TestAll`), until the user asks to stop.
    pub fn test_all(&mut self) -> Result<()> {
        for i in 0..self.test_nets.len() {
            if self.requested_early_exit {
                break;
            }
            self.test(i)?;
        }
        Ok(())
    }

    /// Tests test net `id` with the train net's current weights (Caffe's `Test`): `test_iter`
    /// forward passes, logging the mean of each output. Snapshot and stop requests are
    /// honoured between batches.
    pub fn test(&mut self, id: usize) -> Result<Option<TestRecord>> {
        if id >= self.test_nets.len() {
            return Err(Error::Config(format!("no test net #{id} (the solver has {})", self.test_nets.len())));
        }
        self.monitor.log(&format!("Iteration {}, Testing net (#{id})", self.iter));
        let test_iter = self.param.test_iter.get(id).copied().unwrap_or(0).max(0) as u32;
        // The test net computes with the train net's own values, lent for the test (Caffe's
        // test nets share them), and keeps none between tests; a test blob that several train
        // blobs feed (a shared parameter split in training) is copied in Caffe's order instead.
        let pairs = trained_pairs(&self.test_nets[id], &self.net)?;
        // A pair is lent when no other pair names either of its blobs.
        let alone = |&(sp, dp): &(usize, usize)| pairs.iter().filter(|&&(s, d)| s == sp || d == dp).count() == 1;
        let (lent, copied): (Vec<_>, Vec<_>) = pairs.iter().copied().partition(alone);
        let (test, train) = (&mut self.test_nets[id], &mut self.net);
        for (sp, dp) in copied {
            self.be.copy(&train.params()[sp].data, &mut test.params_mut()[dp].data)?;
        }
        for &(_, dp) in &lent {
            test.params_mut()[dp].set_data_shared(&self.be, true)?;
        }
        swap_values(test, train, &lent);
        let result = self.run_test(id, test_iter);
        swap_values(&mut self.test_nets[id], &mut self.net, &lent);
        result
    }

    /// `test_iter` forward passes of test net `id` and their scores, logged.
    fn run_test(&mut self, id: usize, test_iter: u32) -> Result<Option<TestRecord>> {
        let compute_loss = self.param.test_compute_loss();
        let mut loss = 0.0f32;
        let mut sums: Vec<Score> = Vec::new();
        for i in 0..test_iter {
            loop {
                match self.monitor.poll() {
                    Action::None => break,
                    Action::Snapshot => {
                        self.snapshot()?;
                    }
                    Action::Stop => self.requested_early_exit = true,
                }
            }
            if self.requested_early_exit {
                break;
            }
            let net = &mut self.test_nets[id];
            net.set_pass(Pass { iter: self.iter, sub: i, per_iter: test_iter });
            let l = net.forward()?;
            if compute_loss {
                loss += l;
            }
            accumulate(&mut sums, &output_values(net)?, i == 0)?;
        }
        if self.requested_early_exit {
            self.monitor.log("Test interrupted.");
            return Ok(None);
        }
        let loss = compute_loss.then(|| loss / test_iter as f32);
        if let Some(l) = loss {
            self.monitor.log(&format!("Test loss: {}", fmt_g(l as f64)));
        }
        let scores = means(sums, test_iter);
        for (k, s) in scores.iter().enumerate() {
            self.monitor.log(&format!("    Test net output #{k}: {}", describe(s)));
        }
        let record = TestRecord { iter: self.iter, net: id, loss, scores };
        self.monitor.tested(&record);
        Ok(Some(record))
    }
}
