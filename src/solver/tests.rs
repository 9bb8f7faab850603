//! Solver tests on small nets of InnerProduct, ReLU and EuclideanLoss: the update formulas
//! against a host reference, exact resume, tests, divergence and the errors for bad input.

use super::*;
use crate::backend::cpu::Cpu;
use std::sync::{Arc, Mutex};

const NET: &str = r#"
name: "regression"
layer { name: "data" type: "Input" top: "data" top: "target"
  input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { lr_mult: 0.5 } param { lr_mult: 1 decay_mult: 0.5 }
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip2" bottom: "target" top: "loss" }
"#;

/// The same net fed by DummyData layers that draw new Gaussian data on every pass.
const RANDOM_NET: &str = r#"
name: "random"
layer { name: "data" type: "DummyData" top: "data" top: "target"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip2" bottom: "target" top: "loss" }
"#;

/// RANDOM_NET with a Dropout layer: its masks must also follow the pass, not the draw count.
const DROPOUT_NET: &str = r#"
name: "dropout"
layer { name: "data" type: "DummyData" top: "data" top: "target"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 16 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "drop" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param { dropout_ratio: 0.5 } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip2" bottom: "target" top: "loss" }
"#;

/// A folder with `net.prototxt` and `solver.prototxt` (the given body plus `net:`).
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(solver_body: &str) -> Self {
        Self::with_net(NET, solver_body)
    }
    fn with_net(net: &str, solver_body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.prototxt"), net).unwrap();
        // Snapshot prefixes "out/..." resolve beside the solver file (there is no `out` in the
        // working directory), so no test writes into the crate.
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let text = format!("net: \"net.prototxt\"\nrandom_seed: 3\n{solver_body}\n");
        std::fs::write(dir.path().join("solver.prototxt"), text).unwrap();
        Case { dir }
    }
    fn solver_path(&self) -> PathBuf {
        self.dir.path().join("solver.prototxt")
    }
    fn solver(&self) -> Solver<Cpu> {
        let mut s = Solver::from_file(Cpu::new(), self.solver_path()).unwrap();
        set_inputs(&mut s);
        s
    }
    fn error(&self) -> String {
        match Solver::from_file(Cpu::new(), self.solver_path()) {
            Ok(_) => panic!("the solver was accepted"),
            Err(e) => e.to_string(),
        }
    }
}

fn set_inputs(s: &mut Solver<Cpu>) {
    if s.net().name() != "regression" {
        return;
    }
    let be = Cpu::new();
    let data: Vec<f32> = (0..12).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
    let target: Vec<f32> = (0..8).map(|i| ((i * 5 % 7) as f32 - 3.0) / 3.0).collect();
    let set = |net: &mut Net<Cpu>| {
        net.blob_mut("data").unwrap().set_data(&be, &data).unwrap();
        net.blob_mut("target").unwrap().set_data(&be, &target).unwrap();
    };
    set(s.net_mut());
    s.test_nets_mut().iter_mut().for_each(set);
}

fn params(s: &Solver<Cpu>) -> Vec<Vec<f32>> {
    s.net().params().iter().map(|p| p.data.clone()).collect()
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter().map(|b| b.iter().map(|x| x.to_bits()).collect()).collect()
}

/// Collects what a solver reports.
#[derive(Clone, Default)]
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
    iterations: Arc<Mutex<Vec<IterationRecord>>>,
    tests: Arc<Mutex<Vec<TestRecord>>>,
    actions: Arc<Mutex<Vec<(u64, Action)>>>,
    polls: Arc<Mutex<u64>>,
}

impl Monitor for Recorder {
    fn log(&mut self, line: &str) {
        self.lines.lock().unwrap().push(line.to_string());
    }
    fn iteration(&mut self, r: &IterationRecord) {
        self.iterations.lock().unwrap().push(*r);
    }
    fn tested(&mut self, r: &TestRecord) {
        self.tests.lock().unwrap().push(r.clone());
    }
    fn poll(&mut self) -> Action {
        let mut n = self.polls.lock().unwrap();
        *n += 1;
        let actions = self.actions.lock().unwrap();
        actions.iter().find(|(at, _)| *at == *n).map(|(_, a)| *a).unwrap_or_default()
    }
}

/// SGD with momentum, weight decay and lr_mult/decay_mult, computed on the host from the
/// gradients the net gives, against the solver.
#[test]
fn sgd_update_matches_the_formula() {
    let case = Case::new(
        r#"base_lr: 0.1 lr_policy: "step" gamma: 0.5 stepsize: 2 momentum: 0.9 weight_decay: 0.01
           max_iter: 10 snapshot_after_train: false"#,
    );
    let mut s = case.solver();
    let mults = [(1.0f32, 1.0f32), (2.0, 0.0), (0.5, 1.0), (1.0, 0.5)];
    let mut history: Vec<Vec<f32>> = s.net().params().iter().map(|p| vec![0.0; p.count()]).collect();
    for iter in 0..4u64 {
        // The gradients of this iteration, from a copy of the net's state.
        let before = params(&s);
        s.net_mut().clear_param_diffs().unwrap();
        s.net_mut().forward().unwrap();
        s.net_mut().backward().unwrap();
        let grads: Vec<Vec<f32>> = s.net().params().iter().map(|p| p.diff.clone()).collect();
        s.step(1).unwrap();
        let rate = (0.1f64 * 0.5f64.powi((iter / 2) as i32)) as f32;
        for (i, (w, g)) in before.iter().zip(&grads).enumerate() {
            let (lr_mult, decay_mult) = mults[i];
            let decay = 0.01f32 * decay_mult;
            for j in 0..w.len() {
                let g = g[j] + decay * w[j];
                history[i][j] = 0.9 * history[i][j] + rate * lr_mult * g;
                let want = w[j] - history[i][j];
                let got = s.net().params()[i].data[j];
                assert_eq!(got.to_bits(), want.to_bits(), "iter {iter} param {i}[{j}]: {got} vs {want}");
            }
        }
    }
    assert_eq!(s.iter(), 4);
    assert_eq!(s.current_step(), 1);
}

/// Runs 2N iterations straight, and N + snapshot + restore in a new solver + N; compares
/// weights and history bit for bit.
fn resume_is_exact(body: &str) {
    resume_is_exact_on(NET, body)
}

fn resume_is_exact_on(net: &str, body: &str) {
    const N: u64 = 6;
    let case = Case::with_net(net, &format!("{body} max_iter: 12 snapshot_after_train: false snapshot_prefix: \"out/snap\""));
    let mut straight = case.solver();
    straight.step(2 * N).unwrap();

    let mut first = case.solver();
    first.step(N).unwrap();
    let files = first.snapshot().unwrap();
    let ext = if body.contains("snapshot_format: HDF5") { ".h5" } else { "" };
    assert_eq!(files.model, case.dir.path().join(format!("out/snap_iter_{N}.caffemodel{ext}")));
    assert_eq!(files.state, case.dir.path().join(format!("out/snap_iter_{N}.solverstate{ext}")));
    let mut resumed = Solver::from_file(Cpu::new(), case.solver_path()).unwrap();
    set_inputs(&mut resumed);
    resumed.restore(&files.state).unwrap();
    assert_eq!((resumed.iter(), resumed.current_step()), (first.iter(), first.current_step()));
    resumed.step(N).unwrap();

    assert_eq!(bits(&params(&resumed)), bits(&params(&straight)), "{body}: weights");
    let history = |s: &Solver<Cpu>| bits(&s.history().iter().map(|h| h.data.clone()).collect::<Vec<_>>());
    assert_eq!(history(&resumed), history(&straight), "{body}: history");
    assert_eq!(resumed.current_step(), straight.current_step());
    // And the solverstates they write are the same bytes.
    let a = resumed.snapshot().unwrap();
    let b = std::fs::read(&a.state).unwrap();
    straight.snapshot().unwrap();
    assert_eq!(std::fs::read(&a.state).unwrap(), b);
}

#[test]
fn resume_is_bit_exact_with_momentum() {
    resume_is_exact(r#"base_lr: 0.05 lr_policy: "multistep" gamma: 0.5 stepvalue: 3 stepvalue: 8 momentum: 0.9 weight_decay: 0.01"#);
}

#[test]
fn resume_is_bit_exact_with_adam() {
    resume_is_exact(r#"type: "Adam" base_lr: 0.01 lr_policy: "fixed" momentum: 0.9 momentum2: 0.999 delta: 1e-8"#);
}

/// Caffe's HDF5 snapshots (`.caffemodel.h5`, `.solverstate.h5`) resume as exactly as its
/// binary ones, for a solver of one history blob per parameter and one of two.
#[test]
fn resume_is_bit_exact_from_hdf5_snapshots() {
    resume_is_exact(r#"base_lr: 0.05 lr_policy: "multistep" gamma: 0.5 stepvalue: 3 stepvalue: 8 momentum: 0.9 snapshot_format: HDF5"#);
    resume_is_exact(r#"type: "Adam" base_lr: 0.01 lr_policy: "fixed" momentum: 0.9 momentum2: 0.999 snapshot_format: HDF5"#);
}

#[test]
fn resume_is_bit_exact_for_every_type_and_iter_size() {
    resume_is_exact(r#"type: "Nesterov" base_lr: 0.02 lr_policy: "inv" gamma: 0.1 power: 0.75 momentum: 0.9 iter_size: 2"#);
    resume_is_exact(r#"type: "AdaGrad" base_lr: 0.05 lr_policy: "fixed" regularization_type: "L1" weight_decay: 0.01"#);
    resume_is_exact(r#"type: "RMSProp" base_lr: 0.01 lr_policy: "poly" power: 2 rms_decay: 0.9 clip_gradients: 0.5"#);
    resume_is_exact(r#"type: "AdaDelta" base_lr: 1 lr_policy: "fixed" momentum: 0.95 delta: 1e-6"#);
}

#[test]
fn resume_is_bit_exact_with_dropout() {
    resume_is_exact_on(DROPOUT_NET, r#"base_lr: 0.05 lr_policy: "fixed" momentum: 0.9 iter_size: 2"#);
}

#[test]
fn resume_is_bit_exact_with_data_drawn_on_every_pass() {
    resume_is_exact_on(RANDOM_NET, r#"base_lr: 0.05 lr_policy: "fixed" momentum: 0.9 iter_size: 2"#);
    // The draws do change from pass to pass.
    let case = Case::with_net(RANDOM_NET, r#"base_lr: 0 lr_policy: "fixed" snapshot_after_train: false"#);
    let mut s = case.solver();
    let rec = Recorder::default();
    s.set_monitor(Box::new(rec.clone()));
    s.step(2).unwrap();
    let its = rec.iterations.lock().unwrap();
    assert_ne!(its[0].loss, its[1].loss);
}

#[test]
fn history_layout_is_caffes() {
    let case = Case::new(r#"type: "AdaDelta" base_lr: 1 lr_policy: "fixed" momentum: 0.9 snapshot_after_train: false"#);
    let s = case.solver();
    let shapes: Vec<Vec<usize>> = s.history().iter().map(|h| h.shape().to_vec()).collect();
    assert_eq!(shapes, [vec![5, 3], vec![5], vec![2, 5], vec![2], vec![5, 3], vec![5], vec![2, 5], vec![2]]);
    let case = Case::new(r#"base_lr: 1 lr_policy: "fixed" snapshot_after_train: false"#);
    assert_eq!(case.solver().history().len(), 4);
}

#[test]
fn display_and_tests_log_as_caffe_does() {
    let case = Case::new(
        r#"base_lr: 0.01 lr_policy: "fixed" max_iter: 4 display: 2 average_loss: 2
           test_iter: 2 test_interval: 2 test_compute_loss: true snapshot_after_train: false"#,
    );
    let mut s = case.solver();
    let rec = Recorder::default();
    s.set_monitor(Box::new(rec.clone()));
    assert_eq!(s.test_nets().len(), 1);
    assert_eq!(s.solve().unwrap(), Outcome::Finished);
    let lines = rec.lines.lock().unwrap().clone();
    assert_eq!(lines[0], "Solving regression");
    assert_eq!(lines[1], "Learning Rate Policy: fixed");
    assert_eq!(lines[2], "Iteration 0, Testing net (#0)");
    assert!(lines[3].starts_with("Test loss: "), "{lines:?}");
    assert!(lines[4].starts_with("    Test net output #0: loss = "), "{lines:?}");
    assert!(lines[4].ends_with(" loss)") && lines[4].contains("(* 1 = "), "{lines:?}");
    assert!(lines[5].starts_with("Iteration 0 (0 iter/s, "), "{lines:?}");
    assert!(lines[5].contains("s/2 iters), loss = "), "{lines:?}");
    assert!(lines[6].starts_with("    Train net output #0: loss = "), "{lines:?}");
    assert_eq!(lines[7], "Iteration 0, lr = 0.01");
    assert_eq!(lines.last().unwrap(), "Optimization Done.");
    assert!(lines.iter().any(|l| l.starts_with("Iteration 4, loss = ")), "{lines:?}");
    // Tests at 0, 2 and after the last iteration.
    let tests = rec.tests.lock().unwrap();
    assert_eq!(tests.iter().map(|t| t.iter).collect::<Vec<_>>(), [0, 2, 4]);
    // The smoothed loss is the mean of the last two.
    let its = rec.iterations.lock().unwrap();
    assert_eq!(its.len(), 4);
    assert_eq!(its[1].smoothed_loss, (its[0].loss + its[1].loss) / 2.0);
    assert_eq!(its[3].smoothed_loss, its[2].smoothed_loss + (its[3].loss - its[1].loss) / 2.0);
    // The test net shares the train net's weights: its loss at iteration 0 is the train loss.
    assert_eq!(tests[0].loss, Some(its[0].loss));
}

#[test]
fn test_nets_borrow_the_trained_values_and_keep_none() {
    let case = Case::new(r#"base_lr: 0.01 lr_policy: "fixed" test_iter: 1 test_interval: 1 test_compute_loss: true"#);
    let mut s = case.solver();
    let be = s.backend().clone();
    let values = |s: &Solver<Cpu>| s.net().params().iter().map(|p| p.data_to_vec(&be).unwrap()).collect::<Vec<_>>();
    s.step(1).unwrap();
    let trained = values(&s);
    let first = s.test(0).unwrap().unwrap();
    // Testing leaves the train net's values in place; the test net keeps none of its own.
    assert_eq!(values(&s), trained);
    for p in s.test_nets()[0].params() {
        assert!(p.data_is_shared());
        assert!(p.data_to_vec(&be).unwrap_err().to_string().contains("shared"));
    }
    let again = s.test(0).unwrap().unwrap();
    assert_eq!(again.loss, first.loss);
    assert!(first.loss.is_some());
}

/// NET with a square InnerProduct applied twice with one shared weight.
const SHARED_NET: &str = r#"
name: "shared"
layer { name: "data" type: "Input" top: "data" top: "target"
  input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "sq1" type: "InnerProduct" bottom: "ip1" top: "sq1" param { name: "sq" }
  inner_product_param { num_output: 5 bias_term: false weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "sq2" type: "InnerProduct" bottom: "sq1" top: "sq2" param { name: "sq" }
  inner_product_param { num_output: 5 bias_term: false weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "ip2" type: "InnerProduct" bottom: "sq2" top: "ip2"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip2" bottom: "target" top: "loss" }
"#;

#[test]
fn a_test_net_copies_the_values_of_a_shared_parameter() {
    let body = r#"base_lr: 0.01 lr_policy: "fixed" max_iter: 2 test_iter: 1 test_interval: 2 test_compute_loss: true
                  snapshot_after_train: false"#;
    let case = Case::with_net(SHARED_NET, body);
    let mut s = case.solver();
    let rec = Recorder::default();
    s.set_monitor(Box::new(rec.clone()));
    assert_eq!(s.solve().unwrap(), Outcome::Finished);
    // The test net computes with the train net's values: at iteration 0, the same loss.
    let (tests, its) = (rec.tests.lock().unwrap(), rec.iterations.lock().unwrap());
    assert_eq!(tests[0].loss, Some(its[0].loss));
    let be = Cpu::new();
    let mut check = s.net().params().iter().map(|p| p.data_to_vec(&be).unwrap()).collect::<Vec<_>>();
    let net = &s.test_nets()[0];
    // The shared weight (used by two layers) was copied and is the test net's own; the others
    // are lent for each test.
    let shared: Vec<bool> = net.params().iter().map(|p| p.data_is_shared()).collect();
    assert_eq!(shared, [true, true, false, true, true]);
    assert_eq!(net.params()[2].data_to_vec(&be).unwrap(), check.remove(2));
}

#[test]
fn actions_snapshot_and_stop() {
    let case = Case::new(r#"base_lr: 0.01 lr_policy: "fixed" max_iter: 10 snapshot_prefix: "out/run""#);
    let mut s = case.solver();
    let rec = Recorder::default();
    rec.actions.lock().unwrap().extend([(2, Action::Snapshot), (4, Action::Stop)]);
    s.set_monitor(Box::new(rec.clone()));
    assert_eq!(s.solve().unwrap(), Outcome::Stopped);
    assert_eq!(s.iter(), 4);
    let dir = case.dir.path();
    for n in [2, 4] {
        assert!(dir.join(format!("out/run_iter_{n}.caffemodel")).exists(), "{n}");
        assert!(dir.join(format!("out/run_iter_{n}.solverstate")).exists(), "{n}");
    }
    assert!(rec.lines.lock().unwrap().iter().any(|l| l == "Optimization stopped early."));
}

#[test]
fn snapshot_after_train_uses_the_solver_stem_for_a_directory_prefix() {
    let case = Case::new(r#"base_lr: 0.01 lr_policy: "fixed" max_iter: 3 snapshot: 2 snapshot_prefix: "snaps""#);
    std::fs::create_dir(case.dir.path().join("snaps")).unwrap();
    let mut s = case.solver();
    s.solve().unwrap();
    for n in [2, 3] {
        assert!(case.dir.path().join(format!("snaps/solver_iter_{n}.solverstate")).exists(), "{n}");
    }
    // The solverstate names its caffemodel, which loads.
    let state = crate::io::read_solverstate(case.dir.path().join("snaps/solver_iter_3.solverstate")).unwrap();
    assert_eq!(state.iter, 3);
    assert!(state.learned_net.ends_with("snaps/solver_iter_3.caffemodel"), "{}", state.learned_net);
    crate::io::read_weights(&state.learned_net).unwrap();
}

#[test]
fn a_diverging_loss_names_the_layer() {
    let case = Case::new(r#"base_lr: 0.01 lr_policy: "fixed" max_iter: 10 snapshot: 1 snapshot_prefix: "out/d""#);
    let mut s = case.solver();
    s.step(2).unwrap();
    // A weight of ip2 turns NaN (as a too-large rate would make it).
    let be = Cpu::new();
    let mut w = s.net().params()[2].data.clone();
    w[3] = f32::NAN;
    s.net_mut().params_mut()[2].set_data(&be, &w).unwrap();
    let e = s.step(10).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Diverged { iter: 2, .. }), "{msg}");
    assert!(msg.starts_with("training diverged at iteration 2: the loss is nan; "), "{msg}");
    assert!(msg.contains("layer `ip2` (type InnerProduct) is the first whose output (top `ip2`) is not finite"), "{msg}");
    // The last good snapshot is in place and no snapshot of the bad state was taken.
    assert!(case.dir.path().join("out/d_iter_2.solverstate").exists());
    assert!(!case.dir.path().join("out/d_iter_3.solverstate").exists());
    // A rate that overflows is caught too, whichever layer overflows first.
    let case = Case::new(r#"base_lr: 1e30 lr_policy: "fixed" max_iter: 10 snapshot_after_train: false"#);
    let msg = case.solver().step(10).unwrap_err().to_string();
    assert!(msg.contains("is the first whose output (top `"), "{msg}");
}

#[test]
fn iteration_limits_stop_at_max_iter() {
    let case = Case::new(r#"base_lr: 0.01 lr_policy: "fixed" max_iter: 5 snapshot_after_train: false"#);
    let mut s = case.solver();
    s.solve_for(Some(3)).unwrap();
    assert_eq!(s.iter(), 3);
    s.solve_for(Some(30)).unwrap();
    assert_eq!(s.iter(), 5);
}

#[test]
fn states_merge_as_caffe_merges_them() {
    let mut net = NetParameter {
        state: Some(NetState { phase: None, level: Some(2), stage: vec!["a".into()] }),
        ..Default::default()
    };
    net = with_state(net, Phase::Train, Some(&NetState { phase: None, level: None, stage: vec!["b".into()] }));
    assert_eq!(net.state, Some(NetState { phase: Some(Phase::Train as i32), level: Some(2), stage: vec!["a".into(), "b".into()] }));
    let net = with_state(net, Phase::Test, Some(&NetState { level: Some(1), ..Default::default() }));
    assert_eq!(net.state.as_ref().unwrap().phase(), Phase::Train, "the net's own phase wins over the default");
    assert_eq!(net.state.as_ref().unwrap().level(), 1);
}

#[test]
fn bad_solvers_are_clear_errors() {
    let cases: [(&str, &str); 11] = [
        (r#"type: "Momentum" base_lr: 1 lr_policy: "fixed""#, "unknown solver type \"Momentum\" (crema knows SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)"),
        (r#"base_lr: 1 lr_policy: "triangular""#, "unknown lr_policy \"triangular\""),
        (r#"base_lr: 1 lr_policy: "step" gamma: 0.1"#, "lr_policy \"step\" needs a positive stepsize (given none)"),
        (r#"base_lr: 1"#, "the solver has no lr_policy"),
        (r#"type: "AdaGrad" base_lr: 1 lr_policy: "fixed" momentum: 0.9"#, "momentum cannot be used with AdaGrad (given momentum: 0.9)"),
        (r#"type: "RMSProp" base_lr: 1 lr_policy: "fixed" rms_decay: 1"#, "rms_decay must be in [0, 1) (given 1)"),
        (r#"base_lr: 1 lr_policy: "fixed" average_loss: 0"#, "average_loss must be at least 1 (given 0)"),
        (r#"base_lr: 1 lr_policy: "fixed" iter_size: 0"#, "iter_size must be at least 1 (given 0)"),
        (r#"base_lr: 1 lr_policy: "fixed" weight_decay: 1 regularization_type: "L3""#, "unknown regularization_type \"L3\" (L2 or L1)"),
        (r#"base_lr: 1 lr_policy: "fixed" test_iter: 1"#, "the solver has test nets but no test_interval"),
        (r#"base_lr: 1 lr_policy: "fixed" test_net: "net.prototxt""#, "test_iter must be given once for each test net (1 test_net/test_net_param given, 0 test_iter)"),
    ];
    for (body, want) in cases {
        let e = Case::new(body).error();
        assert!(e.contains(want), "{body}:\n  got  {e}\n  want {want}");
    }
}

#[test]
fn missing_nets_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let solver = dir.path().join("solver.prototxt");
    std::fs::write(&solver, r#"base_lr: 1 lr_policy: "fixed""#).unwrap();
    let e = Solver::from_file(Cpu::new(), &solver).err().unwrap().to_string();
    assert_eq!(e, "the solver names no train net: give one of net, net_param, train_net, train_net_param");
    std::fs::write(&solver, r#"net: "missing.prototxt" base_lr: 1 lr_policy: "fixed""#).unwrap();
    let e = Solver::from_file(Cpu::new(), &solver).err().unwrap().to_string();
    assert_eq!(
        e,
        format!(
            "the solver's net \"missing.prototxt\" was not found (looked in the working directory or in {})",
            dir.path().display()
        )
    );
    std::fs::write(&solver, r#"net: "a" train_net: "b" base_lr: 1 lr_policy: "fixed""#).unwrap();
    let e = Solver::from_file(Cpu::new(), &solver).err().unwrap().to_string();
    assert!(e.starts_with("the solver names more than one train net"), "{e}");
}

#[test]
fn an_unwritable_prefix_fails_before_training() {
    let case = Case::new(r#"base_lr: 1 lr_policy: "fixed" snapshot: 10 snapshot_prefix: "/nonexistent/dir/x""#);
    let e = case.error();
    assert!(e.starts_with("cannot write snapshots with snapshot_prefix \"/nonexistent/dir/x\""), "{e}");
    // Without a file, snapshots need a prefix.
    let param: SolverParameter = crate::prototxt::parse(r#"net: "x" base_lr: 1 lr_policy: "fixed""#, "s").unwrap();
    let e = Solver::new(Cpu::new(), param).err().unwrap().to_string();
    assert!(e.contains("snapshot_prefix is not set"), "{e}");
}

#[test]
fn mismatched_solverstates_are_refused() {
    let case = Case::new(r#"base_lr: 0.01 lr_policy: "fixed" snapshot_after_train: false snapshot_prefix: "out/a""#);
    let mut s = case.solver();
    s.step(1).unwrap();
    let files = s.snapshot().unwrap();
    // Adam keeps two history blobs per parameter: an SGD solverstate does not fit it.
    let adam = Case::new(r#"type: "Adam" base_lr: 0.01 lr_policy: "fixed" snapshot_after_train: false"#);
    let mut a = adam.solver();
    let e = a.restore(&files.state).unwrap_err().to_string();
    assert!(
        e.ends_with("holds 4 history blobs, but the Adam solver keeps 8 for this net (4 learnable blobs x 2); was it written for another net or another solver type?"),
        "{e}"
    );
    assert_eq!(a.iter(), 0, "nothing changed");
    // Same count, other shapes.
    let state = crate::io::read_solverstate(&files.state).unwrap();
    let mut other = state.clone();
    other.history[2] = crate::io::BlobData::new(vec![5, 2], vec![0.0; 10]);
    let bad = case.dir.path().join("bad.solverstate");
    other.write(&bad).unwrap();
    let e = s.restore(&bad).unwrap_err().to_string();
    assert!(e.contains("history blob 2 has shape [5, 2] but belongs to blob 0 of layer `ip2`, of shape [2, 5]"), "{e}");
    // A path ending in .h5 is read as HDF5, as Caffe reads it.
    let renamed = case.dir.path().join("x.solverstate.h5");
    std::fs::copy(&files.state, &renamed).unwrap();
    let e = s.restore(&renamed).unwrap_err().to_string();
    assert!(e.contains("x.solverstate.h5") && e.contains("not an HDF5 file"), "{e}");
}

