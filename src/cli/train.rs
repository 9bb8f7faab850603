//! `crema train`: Caffe's `caffe train` — a solver file, optional starting weights or a
//! snapshot to resume, SIGINT/SIGHUP handling — with Caffe's log lines on stderr, a progress
//! bar when stderr is a terminal, and the training curves (CSV and PNG) beside the snapshots.

use super::curves::Curves;
use super::device::{peak_rss_bytes, print_peak_device_memory, DeviceOpts, Opened};
use super::split_list;
use anyhow::{bail, Context};
use crema::backend::Backend;
use crema::proto::solver_parameter::SolverMode;
use crema::solver::monitor::fmt_g;
use crema::solver::{Action, IterationRecord, Monitor, Outcome, SnapshotFiles, Solver, TestRecord};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a signal does (Caffe's `--sigint_effect` / `--sighup_effect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Effect {
    /// Stop training (taking the end-of-training snapshot when the solver asks for one).
    Stop,
    /// Take a snapshot and carry on.
    Snapshot,
    /// Ignore the signal.
    None,
}

impl Effect {
    fn action(self) -> Action {
        match self {
            Effect::Stop => Action::Stop,
            Effect::Snapshot => Action::Snapshot,
            Effect::None => Action::None,
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// The solver definition (solver.prototxt).
    #[arg(long)]
    solver: PathBuf,
    /// Weights to start from (fine-tuning), comma-separated files loaded in order.
    #[arg(long, conflicts_with = "snapshot")]
    weights: Option<String>,
    /// A .solverstate to resume training from.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    // Without --gpu, the solver's solver_mode (and device_id) decide (Caffe's rule).
    #[command(flatten)]
    device: DeviceOpts,
    /// NetState level of the train net.
    #[arg(long, allow_negative_numbers = true)]
    level: Option<i32>,
    /// NetState stages of the train net, comma-separated.
    #[arg(long)]
    stage: Option<String>,
    /// Train at most this many iterations from where training starts (max_iter still ends
    /// the run and shapes the learning rate).
    #[arg(long)]
    iterations: Option<u64>,
    /// What SIGINT (Ctrl-C) does.
    #[arg(long = "sigint_effect", value_enum, default_value = "stop")]
    sigint_effect: Effect,
    /// What SIGHUP does.
    #[arg(long = "sighup_effect", value_enum, default_value = "snapshot")]
    sighup_effect: Effect,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut param = crema::upgrade::read_solver(&a.solver)?;
    let train_state = param.train_state.get_or_insert_with(Default::default);
    if let Some(level) = a.level {
        train_state.level = Some(level);
    }
    train_state.stage.extend(a.stage.as_deref().map(split_list).unwrap_or_default());
    if a.snapshot.is_some() {
        param.weights.clear();
    } else if let Some(w) = &a.weights {
        param.weights = vec![w.clone()];
    }
    // Caffe's rule: --gpu wins; without it, solver_mode: GPU trains on device_id (default 0).
    let opened = match &a.device.gpu {
        Some(_) => a.device.open()?,
        None if param.solver_mode.is_some() && param.solver_mode() == SolverMode::Gpu => {
            let id = param.device_id();
            if id < 0 {
                bail!("{}: device_id must not be negative (given {id})", a.solver.display());
            }
            let device = DeviceOpts { gpu: Some(id.to_string()), ..a.device.clone() };
            device.open().with_context(|| {
                format!(
                    "{} asks for solver_mode: GPU (device_id {id}); set solver_mode: CPU in it to train on the CPU",
                    a.solver.display()
                )
            })?
        }
        None => a.device.open()?,
    };
    match opened {
        Opened::Cpu(be) => train(be, param, &a),
        Opened::Cuda(be) => train(be, param, &a),
    }
}

fn train<B: Backend>(be: B, param: crema::proto::SolverParameter, a: &Args) -> anyhow::Result<()> {
    eprintln!("Using {}", be.describe());
    let random_seed = param.random_seed();
    let mut solver = Solver::with_file(be, param, Some(&a.solver))
        .with_context(|| format!("setting up the solver {}", a.solver.display()))?;
    if random_seed < 0 {
        eprintln!("random_seed is not set: using {} (set random_seed to repeat this run)", solver.seed());
    }
    if let Some(w) = &a.weights {
        eprintln!("Finetuning from {w}");
    }

    let sigint = Arc::new(AtomicBool::new(false));
    let sighup = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT};
        // A second Ctrl-C while the first is still pending ends the process at once.
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&sigint))?;
        signal_hook::flag::register(SIGINT, Arc::clone(&sigint))?;
        signal_hook::flag::register(SIGHUP, Arc::clone(&sighup))?;
    }

    let curves = Arc::new(Mutex::new(Curves::default()));
    let prefix = solver.snapshot_prefix().map(str::to_string);
    let mut monitor = CliMonitor {
        bar: ProgressBar::hidden(),
        curves: Arc::clone(&curves),
        prefix: prefix.clone(),
        sigint,
        sighup,
        sigint_effect: a.sigint_effect.action(),
        sighup_effect: a.sighup_effect.action(),
    };
    if let Some(state) = &a.snapshot {
        monitor.log(&format!("Resuming from {}", state.display()));
        solver.set_monitor(Box::new(monitor.clone()));
        solver.restore(state)?;
        // Continue the curves of the run that wrote the snapshot rather than replace them.
        if let Some(earlier) = prefix.as_deref().and_then(|p| earlier_curves(p, solver.iter(), &mut monitor)) {
            *curves.lock().map_err(|_| anyhow::anyhow!("curves lock poisoned"))? = earlier;
        }
    }
    let max_iter = solver.param().max_iter().max(0) as u64;
    let stop = a.iterations.map_or(max_iter, |n| solver.iter().saturating_add(n).min(max_iter));
    monitor.bar = progress_bar(solver.iter(), stop);
    solver.set_monitor(Box::new(monitor.clone()));

    let (start_iter, started) = (solver.iter(), Instant::now());
    let result = solver.solve_for(a.iterations);
    let synced = solver.backend().synchronize();
    let seconds = started.elapsed().as_secs_f64();
    monitor.bar.finish_and_clear();
    if let Some(prefix) = &prefix {
        let (csv, png) = Curves::paths(prefix);
        match curves.lock().map_err(|_| anyhow::anyhow!("curves lock poisoned"))?.write(prefix) {
            Ok(()) => eprintln!("Training curves: {} and {}", csv.display(), png.display()),
            Err(e) => eprintln!("warning: could not write the training curves: {e:#}"),
        }
    }
    let outcome = result?;
    synced?;
    match outcome {
        Outcome::Finished => {}
        Outcome::Stopped => eprintln!("Training stopped at iteration {}", solver.iter()),
    }
    let trained = solver.iter().saturating_sub(start_iter);
    let per_iter = if trained > 0 { format!("{:.2}", seconds * 1e3 / trained as f64) } else { "-".into() };
    eprintln!("Trained {trained} iterations in {seconds:.2} s ({per_iter} ms/iter)");
    if solver.backend().memory_usage().is_some() {
        print_peak_device_memory(solver.backend(), true, None);
    } else if let Some(rss) = peak_rss_bytes() {
        eprintln!("Peak resident memory: {:.1} MB", rss as f64 / 1e6);
    }
    Ok(())
}

/// A progress bar on stderr with the loss, rate and ETA; hidden when stderr is not a terminal.
fn progress_bar(start: u64, stop: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(stop.saturating_sub(start)), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} it  {msg}  {rate}  ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{} it/s", fmt_g(s.per_sec()));
        })
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// The curves of the run that wrote a snapshot at iteration `iter`, from the CSV beside
/// `prefix`'s snapshots; None where there is none. An unreadable CSV is moved aside (never
/// overwritten) with a warning, and the curves start again at `iter`.
fn earlier_curves(prefix: &str, iter: u64, monitor: &mut CliMonitor) -> Option<Curves> {
    let (csv, _) = Curves::paths(prefix);
    let text = std::fs::read_to_string(&csv).ok()?;
    match Curves::resume_from(&text, iter) {
        Ok(earlier) => Some(earlier),
        Err(e) => {
            let aside = PathBuf::from(format!("{}.unreadable", csv.display()));
            let kept = std::fs::rename(&csv, &aside).map(|()| format!("moved to {}", aside.display()));
            monitor.log(&format!(
                "warning: {}: {e} ({}); the curves start again at iteration {iter}",
                csv.display(),
                kept.unwrap_or_else(|e| format!("could not move it aside: {e}")),
            ));
            None
        }
    }
}

/// The CLI's side of the solver: log lines (above the progress bar), the bar, the curves,
/// and the signals.
#[derive(Clone)]
struct CliMonitor {
    bar: ProgressBar,
    curves: Arc<Mutex<Curves>>,
    prefix: Option<String>,
    sigint: Arc<AtomicBool>,
    sighup: Arc<AtomicBool>,
    sigint_effect: Action,
    sighup_effect: Action,
}

impl Monitor for CliMonitor {
    fn log(&mut self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn iteration(&mut self, r: &IterationRecord) {
        if let Ok(mut c) = self.curves.lock() {
            c.iteration(r);
        }
        self.bar.inc(1);
        self.bar.set_message(format!(
            "loss {} (smoothed {})  lr {}",
            fmt_g(r.loss as f64),
            fmt_g(r.smoothed_loss as f64),
            fmt_g(r.lr as f64)
        ));
    }

    fn tested(&mut self, r: &TestRecord) {
        if let Ok(mut c) = self.curves.lock() {
            c.tested(r);
        }
    }

    fn snapshotted(&mut self, _files: &SnapshotFiles) {
        let Some(prefix) = self.prefix.clone() else { return };
        let written = match self.curves.lock() {
            Ok(c) => c.write(&prefix),
            Err(_) => return,
        };
        if let Err(e) = written {
            self.log(&format!("warning: could not write the training curves: {e:#}"));
        }
    }

    /// Caffe's `SignalHandler::CheckForSignals`: SIGINT first, then SIGHUP.
    fn poll(&mut self) -> Action {
        if self.sigint.swap(false, Ordering::SeqCst) {
            return self.sigint_effect;
        }
        if self.sighup.swap(false, Ordering::SeqCst) {
            return self.sighup_effect;
        }
        Action::None
    }
}
