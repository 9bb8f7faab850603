//! What a running solver tells the outside world, and what it asks of it: Caffe's log lines,
//! one record per iteration, test scores, snapshots written, and the action requested by the
//! user (Caffe's `SetActionFunction`, which `caffe train` wires to SIGINT and SIGHUP).
//!
//! The library prints nothing itself; a [`Monitor`] decides where lines and records go.

use std::path::PathBuf;

/// What the user asks the solver to do between two iterations (Caffe's `SolverAction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    /// Carry on.
    #[default]
    None,
    /// Take a snapshot, then carry on.
    Snapshot,
    /// Stop training (the solver still takes its end-of-training snapshot when
    /// `snapshot_after_train` asks for one).
    Stop,
}

/// One training iteration, after its update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IterationRecord {
    /// The iteration's number (the count of updates before it, as Caffe displays it).
    pub iter: u64,
    /// Its loss: the mean over its `iter_size` forward passes.
    pub loss: f32,
    /// The loss averaged over the last `average_loss` iterations (what Caffe displays).
    pub smoothed_loss: f32,
    /// The learning rate of the policy for this iteration (before `lr_mult`).
    pub lr: f32,
}

/// One output value of a net, averaged over a test's batches.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The output blob's name.
    pub name: String,
    /// The value (the mean over batches in a test).
    pub value: f32,
    /// The blob's loss weight (0 for outputs that are not losses).
    pub loss_weight: f32,
}

/// The scores of one test of one test net.
#[derive(Clone, Debug, PartialEq)]
pub struct TestRecord {
    /// The training iteration the test ran at.
    pub iter: u64,
    /// Which test net (`#0`, `#1`, ... in Caffe's log).
    pub net: usize,
    /// The mean loss, when `test_compute_loss` asks for it.
    pub loss: Option<f32>,
    /// Every element of every output, in Caffe's order.
    pub scores: Vec<Score>,
}

/// The two files of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFiles {
    /// The iteration the snapshot holds (updates made so far).
    pub iter: u64,
    /// `<prefix>_iter_<N>.caffemodel`.
    pub model: PathBuf,
    /// `<prefix>_iter_<N>.solverstate`.
    pub state: PathBuf,
}

/// Receives what a solver reports while it runs. Every method has a do-nothing default.
pub trait Monitor: Send {
    /// One line of Caffe's training log ("Iteration 20, lr = 0.01").
    fn log(&mut self, _line: &str) {}
    /// Called after every iteration's update.
    fn iteration(&mut self, _record: &IterationRecord) {}
    /// Called after each test of a test net.
    fn tested(&mut self, _record: &TestRecord) {}
    /// Called after a snapshot has been written.
    fn snapshotted(&mut self, _files: &SnapshotFiles) {}
    /// Asked after every iteration, and before every test batch: what the user wants.
    fn poll(&mut self) -> Action {
        Action::None
    }
}

/// A monitor that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Monitor for Silent {}

/// Formats a number as C++'s `ostream << float` does by default (`%g`, 6 significant digits),
/// so that log lines read as Caffe's: `0.05`, `1e-05`, `1.23457e+06`, `nan`.
pub fn fmt_g(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan".into() } else { "nan".into() };
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    const PRECISION: i32 = 6;
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..PRECISION).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip_zeros(mantissa), exp.abs())
    } else {
        strip_zeros(&format!("{:.*}", (PRECISION - 1 - exp) as usize, x)).to_string()
    }
}

/// Removes trailing zeros after a decimal point, and the point if nothing follows it.
fn strip_zeros(s: &str) -> &str {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { s }
}

#[cfg(test)]
mod tests {
    use super::fmt_g;

    #[test]
    fn numbers_print_as_cpp_streams_print_them() {
        let cases: [(f64, &str); 14] = [
            (0.05, "0.05"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.00012345678, "0.000123457"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (999999.5, "1e+06"),
            (2.0, "2"),
            (-0.5, "-0.5"),
            (0.6506963968276978, "0.650696"),
            (1e100, "1e+100"),
            (0.0, "0"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (x, want) in cases {
            assert_eq!(fmt_g(x), want, "{x}");
        }
        assert_eq!(fmt_g(0.1f32 as f64), "0.1");
    }
}
