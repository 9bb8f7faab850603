//! Training: Caffe's solvers. A [`Solver`] reads a `SolverParameter`, builds the train net and
//! the test nets, and trains with Caffe's step — clear the parameter gradients, test when due,
//! accumulate `iter_size` forward/backward passes, then update (learning-rate policy, gradient
//! clipping, normalisation, regularisation, the solver type's rule) — snapshotting and
//! restoring as Caffe does, so that a run matches Caffe's weights to float rounding and a
//! resumed run continues bit for bit.
//!
//! - [`lr`]: learning-rate policies; `update`: one update step; `run`: step,
//!   solve and display; [`scores`]: testing and output scores; `snapshot`: snapshots and
//!   restore; [`paths`]: where files named in files are; [`monitor`]: what a running solver
//!   reports.

pub mod lr;
pub mod monitor;
pub mod paths;
mod run;
pub mod scores;
mod snapshot;
mod update;

pub use lr::LrPolicy;
pub use monitor::{Action, IterationRecord, Monitor, Score, Silent, SnapshotFiles, TestRecord};
pub use run::Outcome;

use crate::backend::{Backend, UpdateRule};
use crate::blob::Blob;
use crate::net::{fusion_by_default, Net, NetOptions};
use crate::proto::{NetParameter, NetState, Phase, SolverParameter};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The solver types Caffe registers, by their `type` string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverKind {
    /// "SGD": momentum SGD.
    Sgd,
    /// "Nesterov": Nesterov's accelerated gradient.
    Nesterov,
    /// "AdaGrad".
    AdaGrad,
    /// "RMSProp".
    RmsProp,
    /// "AdaDelta".
    AdaDelta,
    /// "Adam".
    Adam,
}

impl SolverKind {
    /// The solver type named `name` (Caffe's registry key, case-sensitive).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "SGD" => SolverKind::Sgd,
            "Nesterov" => SolverKind::Nesterov,
            "AdaGrad" => SolverKind::AdaGrad,
            "RMSProp" => SolverKind::RmsProp,
            "AdaDelta" => SolverKind::AdaDelta,
            "Adam" => SolverKind::Adam,
            other => {
                return Err(Error::Config(format!(
                    "unknown solver type \"{other}\" (crema knows SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)"
                )));
            }
        })
    }

    /// Caffe's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            SolverKind::Sgd => "SGD",
            SolverKind::Nesterov => "Nesterov",
            SolverKind::AdaGrad => "AdaGrad",
            SolverKind::RmsProp => "RMSProp",
            SolverKind::AdaDelta => "AdaDelta",
            SolverKind::Adam => "Adam",
        }
    }

    /// History blobs kept per learnable blob: 2 for AdaDelta and Adam, else 1. Caffe stores
    /// the first one of every blob, then the second one of every blob.
    pub fn history_per_param(self) -> usize {
        match self {
            SolverKind::AdaDelta | SolverKind::Adam => 2,
            _ => 1,
        }
    }

    /// The checks of Caffe's solver constructors.
    fn check(self, p: &SolverParameter) -> Result<()> {
        match self {
            SolverKind::AdaGrad | SolverKind::RmsProp if p.momentum() != 0.0 => Err(Error::Config(format!(
                "momentum cannot be used with {} (given momentum: {})",
                self.name(),
                p.momentum()
            ))),
            SolverKind::RmsProp if !(0.0..1.0).contains(&p.rms_decay()) => {
                Err(Error::Config(format!("rms_decay must be in [0, 1) (given {})", p.rms_decay())))
            }
            _ => Ok(()),
        }
    }

    /// The update rule at iteration `iter` (Adam's bias correction depends on it).
    pub fn rule(self, p: &SolverParameter, iter: u64) -> UpdateRule {
        match self {
            SolverKind::Sgd => UpdateRule::Sgd { momentum: p.momentum() },
            SolverKind::Nesterov => UpdateRule::Nesterov { momentum: p.momentum() },
            SolverKind::AdaGrad => UpdateRule::AdaGrad { delta: p.delta() },
            SolverKind::RmsProp => UpdateRule::RmsProp { rms_decay: p.rms_decay(), delta: p.delta() },
            SolverKind::AdaDelta => UpdateRule::AdaDelta { momentum: p.momentum(), delta: p.delta() },
            SolverKind::Adam => {
                let (beta1, beta2) = (p.momentum(), p.momentum2());
                let t = iter as f64 + 1.0;
                // As in Caffe: pow(float, int) is evaluated in double precision.
                let correction = (1.0 - (beta2 as f64).powf(t)).sqrt() / (1.0 - (beta1 as f64).powf(t));
                UpdateRule::Adam { beta1, beta2, eps: p.delta(), correction: correction as f32 }
            }
        }
    }
}

/// Weight-decay flavour (`regularization_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegType {
    L2,
    L1,
}

/// A solver training a net on backend `B`.
pub struct Solver<B: Backend> {
    be: B,
    param: SolverParameter,
    kind: SolverKind,
    policy: LrPolicy,
    reg: RegType,
    net: Net<B>,
    test_nets: Vec<Net<B>>,
    /// `(lr_mult, decay_mult)` of each learnable blob.
    mults: Vec<(f32, f32)>,
    /// History blobs in Caffe's order (see [`SolverKind::history_per_param`]).
    history: Vec<Blob<B>>,
    iter: u64,
    current_step: i64,
    losses: Vec<f32>,
    smoothed_loss: f32,
    prefix: Option<String>,
    seed: u64,
    monitor: Box<dyn Monitor>,
    requested_early_exit: bool,
}

impl<B: Backend> Solver<B> {
    /// A solver from parameters that came from no file: every path in them is relative to
    /// the working directory, and snapshots need an explicit `snapshot_prefix`.
    pub fn new(be: B, param: SolverParameter) -> Result<Self> {
        Self::with_file(be, param, None)
    }

    /// Reads (and upgrades) the solver file at `path` and builds the solver.
    pub fn from_file(be: B, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let param = crate::upgrade::read_solver(path)?;
        Self::with_file(be, param, Some(path))
    }

    /// Builds the solver `param`, read from `file` (which paths inside it are resolved
    /// against, and whose stem names snapshots, as Caffe's rules say; see [`paths`]).
    ///
    /// Checks every setting Caffe would reject, checks that snapshots can be written (when any
    /// will be taken), builds the train net and the test nets, and loads `param.weights`.
    pub fn with_file(be: B, param: SolverParameter, file: Option<&Path>) -> Result<Self> {
        let kind = SolverKind::from_name(param.r#type())?;
        kind.check(&param)?;
        let policy = LrPolicy::from_param(&param)?;
        check_settings(&param)?;
        let reg = match param.regularization_type() {
            "L2" => RegType::L2,
            "L1" => RegType::L1,
            other if param.weight_decay() != 0.0 => {
                return Err(Error::Config(format!("unknown regularization_type \"{other}\" (L2 or L1)")));
            }
            _ => RegType::L2,
        };
        let prefix = paths::snapshot_prefix(param.snapshot_prefix.as_deref(), file);
        if param.snapshot() > 0 || param.snapshot_after_train() {
            let prefix = prefix.as_deref().ok_or_else(|| {
                Error::Config("snapshots are asked for (snapshot or snapshot_after_train) but snapshot_prefix is not set".into())
            })?;
            paths::check_writable(prefix, 0)?;
        }
        let seed = if param.random_seed() >= 0 { param.random_seed() as u64 } else { entropy_seed() };

        let (train_param, _, train_dir) = train_net_param(&param, file)?;
        // Nothing reads a blob's diff after a training step (the update reads parameter
        // diffs only; a test net never runs backward), nor a blob's values but the outputs
        // (displayed losses, test scores), so every net shares diff and data memory.
        let shared = |seed, model_dir| NetOptions { seed, model_dir, share_diffs: true, share_data: true, fuse: fusion_by_default() };
        let net = Net::with_options(be.clone(), &train_param, &shared(seed, train_dir))?;
        let mut test_nets = Vec::new();
        for (i, (tp, dir)) in test_net_params(&param, file)?.into_iter().enumerate() {
            let test_seed = crate::rng::Rng::stream(seed, 1 + i as u64).next_u64();
            let mut net = Net::with_options(be.clone(), &tp, &shared(test_seed, dir)).map_err(|e| in_test_net(i, e))?;
            // Caffe never runs a test net backward: it keeps no gradients, nothing for backward,
            // and lends each value only until its last reader ran.
            net.make_forward_only().map_err(|e| in_test_net(i, e))?;
            test_nets.push(net);
        }

        let mut solver = Solver {
            be,
            kind,
            policy,
            reg,
            mults: net.param_info().iter().map(|p| (p.lr_mult, p.decay_mult)).collect(),
            net,
            test_nets,
            history: Vec::new(),
            iter: 0,
            current_step: 0,
            losses: Vec::new(),
            smoothed_loss: 0.0,
            prefix,
            seed,
            monitor: Box::new(Silent),
            requested_early_exit: false,
            param,
        };
        solver.load_solver_weights(file)?;
        solver.init_history()?;
        Ok(solver)
    }

    /// Loads every file of the solver's `weights` field (comma-separated lists allowed) into
    /// the train net and the test nets, as `caffe train --weights` does.
    fn load_solver_weights(&mut self, file: Option<&Path>) -> Result<()> {
        let files: Vec<PathBuf> = self
            .param
            .weights
            .iter()
            .flat_map(|w| w.split(','))
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(|w| paths::resolve(w, file))
            .collect();
        if files.is_empty() {
            return Ok(());
        }
        self.net.load_weights_files(&files)?;
        for (i, t) in self.test_nets.iter_mut().enumerate() {
            t.load_weights_files(&files).map_err(|e| in_test_net(i, e))?;
        }
        Ok(())
    }

    /// Zeroed history blobs in Caffe's order, and a gradient for every learnable blob (a net
    /// where nothing needs backward still gets Caffe's weight-decay-only updates).
    fn init_history(&mut self) -> Result<()> {
        let be = self.be.clone();
        for p in self.net.params_mut() {
            p.set_with_diff(&be, true)?;
        }
        self.history.clear();
        for _ in 0..self.kind.history_per_param() {
            for p in self.net.params() {
                self.history.push(Blob::new(&self.be, p.shape(), false)?);
            }
        }
        Ok(())
    }

    /// Sets what receives the solver's log lines and records, and answers its polls.
    pub fn set_monitor(&mut self, monitor: Box<dyn Monitor>) {
        self.monitor = monitor;
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.be
    }
    /// The solver's parameters.
    pub fn param(&self) -> &SolverParameter {
        &self.param
    }
    /// The solver type.
    pub fn kind(&self) -> SolverKind {
        self.kind
    }
    /// The learning-rate policy.
    pub fn policy(&self) -> &LrPolicy {
        &self.policy
    }
    /// The train net.
    pub fn net(&self) -> &Net<B> {
        &self.net
    }
    /// The train net, writable (to set inputs).
    pub fn net_mut(&mut self) -> &mut Net<B> {
        &mut self.net
    }
    /// The test nets.
    pub fn test_nets(&self) -> &[Net<B>] {
        &self.test_nets
    }
    /// The test nets, writable.
    pub fn test_nets_mut(&mut self) -> &mut [Net<B>] {
        &mut self.test_nets
    }
    /// Updates made so far.
    pub fn iter(&self) -> u64 {
        self.iter
    }
    /// The learning-rate policy's step (step and multistep policies).
    pub fn current_step(&self) -> i64 {
        self.current_step
    }
    /// The history blobs, in Caffe's order (as a solverstate stores them).
    pub fn history(&self) -> &[Blob<B>] {
        &self.history
    }
    /// The smoothed loss of the last iteration (what Caffe displays).
    pub fn smoothed_loss(&self) -> f32 {
        self.smoothed_loss
    }
    /// The resolved snapshot prefix, if snapshots can be taken.
    pub fn snapshot_prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }
    /// The seed the nets were built with (`random_seed`, or one drawn from the clock and the
    /// process when `random_seed` is negative, as in Caffe).
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Whether the last solve stopped on the user's request.
    pub fn stopped_early(&self) -> bool {
        self.requested_early_exit
    }
}

/// Settings Caffe checks (or would misbehave on) outside the solver type and the policy.
fn check_settings(p: &SolverParameter) -> Result<()> {
    let positive = |name: &str, v: i32, min: i32| {
        if v < min {
            Err(Error::Config(format!("{name} must be at least {min} (given {v})")))
        } else {
            Ok(())
        }
    };
    positive("average_loss", p.average_loss(), 1)?;
    positive("iter_size", p.iter_size(), 1)?;
    positive("display", p.display(), 0)?;
    positive("snapshot", p.snapshot(), 0)?;
    positive("max_iter", p.max_iter(), 0)?;
    positive("test_interval", p.test_interval(), 0)?;
    if let Some(&bad) = p.test_iter.iter().find(|&&t| t < 0) {
        return Err(Error::Config(format!("test_iter must not be negative (given {bad})")));
    }
    Ok(())
}

/// A seed from the clock and the process, for `random_seed < 0` (Caffe seeds from entropy).
fn entropy_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    crate::rng::Rng::new(nanos ^ ((std::process::id() as u64) << 32)).next_u64() >> 1
}

fn in_test_net(i: usize, e: Error) -> Error {
    match e {
        Error::Config(m) => Error::Config(format!("test net #{i}: {m}")),
        Error::Shape(m) => Error::Shape(format!("test net #{i}: {m}")),
        e => e,
    }
}

/// Reads a net file named in the solver (upgrading it), resolving its path.
/// The net file `name` and the folder that paths inside it (data sources) resolve against.
fn read_net_file(name: &str, field: &str, solver_file: Option<&Path>) -> Result<(NetParameter, Option<PathBuf>)> {
    let path = paths::resolve(name, solver_file);
    if !path.exists() {
        let near = solver_file.and_then(Path::parent).map(|d| format!(" or in {}", d.display())).unwrap_or_default();
        return Err(Error::Config(format!(
            "the solver's {field} \"{name}\" was not found (looked in the working directory{near})"
        )));
    }
    let dir = NetOptions::for_file(&path, 0).model_dir;
    Ok((crate::upgrade::read_net(&path)?, dir))
}

/// A net given inline in the solver, upgraded as a file would be.
fn inline_net(net: &NetParameter) -> Result<NetParameter> {
    crate::upgrade::upgrade_net(net.clone()).map(|(n, _)| n)
}

/// Protobuf's `MergeFrom` for a NetState: set fields overwrite, stages append.
fn merge_state(dst: &mut NetState, src: &NetState) {
    if src.phase.is_some() {
        dst.phase = src.phase;
    }
    if src.level.is_some() {
        dst.level = src.level;
    }
    dst.stage.extend(src.stage.iter().cloned());
}

/// Sets a net's state as Caffe's solver does: the phase, then the net's own state, then the
/// solver's state for it.
fn with_state(mut net: NetParameter, phase: Phase, solver_state: Option<&NetState>) -> NetParameter {
    let mut state = NetState { phase: Some(phase as i32), ..Default::default() };
    if let Some(own) = &net.state {
        merge_state(&mut state, own);
    }
    if let Some(s) = solver_state {
        merge_state(&mut state, s);
    }
    net.state = Some(state);
    net
}

/// The train net (Caffe's `InitTrainNet`): exactly one of net, net_param, train_net,
/// train_net_param. Returns the net and where it came from.
/// The train net, a description of where it came from, and the folder that paths inside it
/// resolve against (its file's, or the solver file's for a net given inline).
fn train_net_param(p: &SolverParameter, file: Option<&Path>) -> Result<(NetParameter, String, Option<PathBuf>)> {
    const FIELDS: &str = "net, net_param, train_net, train_net_param";
    let count = [p.net.is_some(), p.net_param.is_some(), p.train_net.is_some(), p.train_net_param.is_some()]
        .iter()
        .filter(|&&b| b)
        .count();
    if count == 0 {
        return Err(Error::Config(format!("the solver names no train net: give one of {FIELDS}")));
    }
    if count > 1 {
        return Err(Error::Config(format!("the solver names more than one train net: give only one of {FIELDS}")));
    }
    let solver_dir = || file.and_then(|f| NetOptions::for_file(f, 0).model_dir);
    let ((net, dir), source) = if let Some(n) = &p.train_net_param {
        ((inline_net(n)?, solver_dir()), "train_net_param".to_string())
    } else if let Some(f) = &p.train_net {
        (read_net_file(f, "train_net", file)?, format!("train_net file {f}"))
    } else if let Some(n) = &p.net_param {
        ((inline_net(n)?, solver_dir()), "net_param".to_string())
    } else {
        let f = p.net();
        (read_net_file(f, "net", file)?, format!("net file {f}"))
    };
    Ok((with_state(net, Phase::Train, p.train_state.as_ref()), source, dir))
}

/// The test nets (Caffe's `InitTestNets`): test_net_param entries, test_net files, then as
/// many copies of the generic net (net or net_param) as test_iter entries remain.
/// Each with the folder that paths inside it resolve against.
fn test_net_params(p: &SolverParameter, file: Option<&Path>) -> Result<Vec<(NetParameter, Option<PathBuf>)>> {
    let generic = p.net.is_some() as usize + p.net_param.is_some() as usize;
    if generic > 1 {
        return Err(Error::Config("the solver gives both net and net_param; give one".into()));
    }
    let specific = p.test_net_param.len() + p.test_net.len();
    let test_iters = p.test_iter.len();
    if (generic > 0 && test_iters < specific) || (generic == 0 && test_iters != specific) {
        return Err(Error::Config(format!(
            "test_iter must be given once for each test net ({specific} test_net/test_net_param given, {test_iters} test_iter)"
        )));
    }
    let instances = if generic > 0 { test_iters } else { specific };
    if !p.test_state.is_empty() && p.test_state.len() != instances {
        return Err(Error::Config(format!(
            "test_state must be given once per test net or not at all ({} given for {instances} test nets)",
            p.test_state.len()
        )));
    }
    if instances > 0 && p.test_interval() <= 0 {
        return Err(Error::Config("the solver has test nets but no test_interval (give test_interval > 0)".into()));
    }
    let solver_dir = || file.and_then(|f| NetOptions::for_file(f, 0).model_dir);
    let mut nets = Vec::with_capacity(instances);
    for n in &p.test_net_param {
        nets.push((inline_net(n)?, solver_dir()));
    }
    for f in &p.test_net {
        nets.push(read_net_file(f, "test_net", file)?);
    }
    while nets.len() < instances {
        nets.push(match &p.net_param {
            Some(n) => (inline_net(n)?, solver_dir()),
            None => read_net_file(p.net(), "net", file)?,
        });
    }
    Ok(nets
        .into_iter()
        .enumerate()
        .map(|(i, (n, dir))| (with_state(n, Phase::Test, p.test_state.get(i)), dir))
        .collect())
}

#[cfg(test)]
mod tests;
