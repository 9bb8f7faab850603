//! `crema train` and `crema test` as a user runs them: the real binary, killed and signalled
//! mid-run, resumed, and given bad input.

use crema::backend::cpu::Cpu;
use crema::solver::Solver;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const CREMA: &str = env!("CARGO_BIN_EXE_crema");

/// A net fed by DummyData (new Gaussian data every pass), big enough that an iteration takes
/// a few milliseconds and a snapshot a few hundred kilobytes.
const NET: &str = r#"
name: "cli"
layer { name: "data" type: "DummyData" top: "data" top: "target"
  dummy_data_param { shape { dim: 16 dim: 256 } shape { dim: 16 dim: 8 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 256 weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 8 weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip2" bottom: "target" top: "loss" }
"#;

/// A folder holding net.prototxt, a `snaps/` folder and solver files.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("net.prototxt"), NET).unwrap();
    std::fs::create_dir(dir.path().join("snaps")).unwrap();
    dir
}

fn write_solver(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "net: \"net.prototxt\"\nrandom_seed: 5\nbase_lr: 0.01\nlr_policy: \"fixed\"\nmomentum: 0.9\nweight_decay: 0.0005\n{body}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `crema train` in `dir` with its stderr lines sent to a channel.
fn spawn(dir: &Path, args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(CREMA)
        .arg("train")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits (at most a minute) for a stderr line starting with `prefix`; returns the lines so far.
fn wait_for_line(rx: &Receiver<String>, prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let found = line.starts_with(prefix);
            seen.push(line);
            if found {
                return seen;
            }
        }
    }
    panic!("no line starting with {prefix:?} within a minute; saw:\n{}", seen.join("\n"));
}

/// Waits (at most a minute) until `f` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -{name}");
}

fn solverstates(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "solverstate"))
        .collect();
    v.sort();
    v
}

/// A snapshot is whole: the solverstate reads, its caffemodel reads, and a fresh solver
/// restores from it. Returns its iteration.
fn check_snapshot(solver_file: &Path, state: &Path) -> u64 {
    let s = crema::io::read_solverstate(state).unwrap_or_else(|e| panic!("{e}"));
    let model = state.with_extension("caffemodel");
    crema::io::read_weights(&model).unwrap_or_else(|e| panic!("{e}"));
    let mut solver = Solver::from_file(Cpu::new(), solver_file).unwrap();
    solver.restore(state).unwrap_or_else(|e| panic!("{}: {e}", state.display()));
    assert_eq!(solver.iter() as i64, s.iter);
    solver.iter()
}

#[test]
fn sigkill_mid_run_leaves_the_previous_snapshots_whole() {
    let dir = folder();
    let solver = write_solver(dir.path(), "solver.prototxt", "max_iter: 1000000 snapshot: 25 snapshot_prefix: \"snaps/k\"");
    let (mut child, _rx) = spawn(dir.path(), &["-solver", "solver.prototxt"]);
    let snaps = dir.path().join("snaps");
    wait_until("three snapshots", || solverstates(&snaps).len() >= 3);
    child.kill().unwrap();
    child.wait().unwrap();
    let states = solverstates(&snaps);
    assert!(states.len() >= 3);
    for state in &states {
        let iter = check_snapshot(&solver, state);
        assert_eq!(iter % 25, 0);
    }
}

#[test]
fn sigint_takes_the_snapshot_asked_for_and_sighup_stops() {
    let dir = folder();
    let solver = write_solver(
        dir.path(),
        "solver.prototxt",
        "max_iter: 1000000 display: 10 snapshot_after_train: false snapshot_prefix: \"snaps/s\"",
    );
    let (mut child, rx) =
        spawn(dir.path(), &["-solver", "solver.prototxt", "-sigint_effect", "snapshot", "-sighup_effect", "stop"]);
    wait_for_line(&rx, "Iteration 10 ");
    signal(&child, "INT");
    let snaps = dir.path().join("snaps");
    wait_until("the snapshot SIGINT asked for", || !solverstates(&snaps).is_empty());
    wait_for_line(&rx, "Snapshotting solver state");
    signal(&child, "HUP");
    let lines = wait_for_line(&rx, "Optimization stopped early.");
    assert!(child.wait().unwrap().success());
    let states = solverstates(&snaps);
    assert_eq!(states.len(), 1, "{states:?}\n{}", lines.join("\n"));
    assert!(check_snapshot(&solver, &states[0]) >= 10);
}

#[test]
fn sigint_stops_after_the_end_of_training_snapshot() {
    let dir = folder();
    let solver = write_solver(dir.path(), "solver.prototxt", "max_iter: 1000000 display: 10 snapshot_prefix: \"snaps/t\"");
    let (mut child, rx) = spawn(dir.path(), &["-solver", "solver.prototxt"]);
    wait_for_line(&rx, "Iteration 10 ");
    signal(&child, "INT");
    let lines = wait_for_line(&rx, "Optimization stopped early.");
    assert!(child.wait().unwrap().success());
    let states = solverstates(&dir.path().join("snaps"));
    assert_eq!(states.len(), 1, "{}", lines.join("\n"));
    let iter = check_snapshot(&solver, &states[0]);
    assert!(lines.iter().any(|l| l.ends_with(&format!("t_iter_{iter}.solverstate"))), "{}", lines.join("\n"));
    // The curves were written beside the snapshots.
    let csv = std::fs::read_to_string(dir.path().join("snaps/t_train.csv")).unwrap();
    assert!(csv.starts_with("iteration,loss,smoothed_loss,lr\n0,"), "{csv}");
    assert_eq!(csv.lines().count() as u64, iter + 1);
    assert!(dir.path().join("snaps/t_train.png").exists());
}

/// 2N iterations in one run give the same bits as N, then a resume for N more, through the
/// command line (with data drawn anew on every pass).
#[test]
fn a_resumed_run_matches_an_unbroken_one() {
    let dir = folder();
    write_solver(dir.path(), "a.prototxt", "max_iter: 40 snapshot_prefix: \"snaps/a\"");
    write_solver(dir.path(), "b.prototxt", "max_iter: 40 snapshot_prefix: \"snaps/b\"");
    let run = |args: &[&str]| {
        let out = Command::new(CREMA).arg("train").args(args).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["--solver", "a.prototxt"]);
    run(&["--solver", "b.prototxt", "--iterations", "20"]);
    assert!(dir.path().join("snaps/b_iter_20.solverstate").exists());
    run(&["--solver", "b.prototxt", "--snapshot", "snaps/b_iter_20.solverstate"]);
    let a = crema::io::read_solverstate(dir.path().join("snaps/a_iter_40.solverstate")).unwrap();
    let b = crema::io::read_solverstate(dir.path().join("snaps/b_iter_40.solverstate")).unwrap();
    assert_eq!((a.iter, a.current_step), (b.iter, b.current_step));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(a.history.len(), b.history.len());
    for (x, y) in a.history.iter().zip(&b.history) {
        assert_eq!(bits(&x.data), bits(&y.data), "history");
    }
    let wa = crema::io::read_weights(dir.path().join("snaps/a_iter_40.caffemodel")).unwrap();
    let wb = crema::io::read_weights(dir.path().join("snaps/b_iter_40.caffemodel")).unwrap();
    for (la, lb) in wa.layers.iter().zip(&wb.layers) {
        for (x, y) in la.blobs.iter().zip(&lb.blobs) {
            assert_eq!(bits(&x.data), bits(&y.data), "layer {}", la.name);
        }
    }
    // The resumed run's curves continue the first half's: one CSV, as the unbroken run's.
    let csv = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(csv("snaps/a_train.csv"), csv("snaps/b_train.csv"));
    assert_eq!(csv("snaps/b_train.csv").lines().count(), 41);
    // `crema test` scores the trained weights.
    let out = Command::new(CREMA)
        .args(["test", "--model", "net.prototxt", "--weights", "snaps/a_iter_40.caffemodel", "--iterations", "3"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("Loss: "), "{stdout}");
    assert!(stdout.contains("\nloss = ") && stdout.contains(" (* 1 = "), "{stdout}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).matches("Batch ").count(), 3);
}

/// A resume whose curves CSV cannot be read keeps it aside and starts the curves again at the
/// resumed iteration, with a warning; training goes on.
#[test]
fn an_unreadable_curves_file_is_kept_aside_on_resume() {
    let dir = folder();
    write_solver(dir.path(), "s.prototxt", "max_iter: 10 snapshot_prefix: \"snaps/s\"");
    let run = |args: &[&str]| {
        let out = Command::new(CREMA).arg("train").args(args).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    run(&["--solver", "s.prototxt", "--iterations", "5"]);
    let csv = dir.path().join("snaps/s_train.csv");
    std::fs::write(&csv, "not,a,curves,file\nx\n").unwrap();
    let err = run(&["--solver", "s.prototxt", "--snapshot", "snaps/s_iter_5.solverstate"]);
    assert!(err.contains("warning: ") && err.contains("s_train.csv") && err.contains("moved to ") && err.contains("start again at iteration 5"), "{err}");
    let aside = std::fs::read_to_string(dir.path().join("snaps/s_train.csv.unreadable")).unwrap();
    assert_eq!(aside, "not,a,curves,file\nx\n");
    // The new curves hold the resumed steps only, iterations 5 to 9.
    let text = std::fs::read_to_string(&csv).unwrap();
    let iters: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(iters, ["5", "6", "7", "8", "9"], "{text}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = folder();
    let run = |args: &[&str]| {
        let out = Command::new(CREMA).args(args).current_dir(dir.path()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&["train", "--solver", "missing.prototxt"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("missing.prototxt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    write_solver(dir.path(), "s.prototxt", "max_iter: 10");
    let (code, err) = run(&["train", "--solver", "s.prototxt", "--weights", "w.caffemodel", "--snapshot", "x.solverstate"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");

    write_solver(dir.path(), "ro.prototxt", "max_iter: 10 snapshot: 5 snapshot_prefix: \"/nonexistent/folder/x\"");
    let (code, err) = run(&["train", "--solver", "ro.prototxt"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot write snapshots with snapshot_prefix \"/nonexistent/folder/x\""), "{err}");

    std::fs::write(dir.path().join("t.prototxt"), "net: \"net.prototxt\" base_lr: 1 lr_policy: \"step\"").unwrap();
    let (code, err) = run(&["train", "--solver", "t.prototxt"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("lr_policy \"step\" needs a positive stepsize"), "{err}");

    // (--gpu 0 on a machine without CUDA: tests/cli_gpu.rs.)
    let (code, err) = run(&["train", "--solver", "s.prototxt", "--gpu", "0,1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("multi-GPU training is not supported"), "{err}");

    let (code, err) = run(&["test", "--model", "net.prototxt"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--weights is required"), "{err}");
}
