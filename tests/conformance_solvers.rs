//! Every case under ../shared/conformance/solvers: a small net trained by real Caffe from given
//! weights on fixed inputs. crema must report the same loss at every iteration and reach the
//! same weights after the listed iterations; the resume_* cases restore Caffe's solverstate
//! and continue from it.

mod common;

use common::*;
use crema::backend::cpu::Cpu;
use crema::solver::{IterationRecord, Monitor, Solver};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Keeps the loss of each iteration.
#[derive(Clone, Default)]
struct Losses(Arc<Mutex<Vec<(u64, f32)>>>);

impl Monitor for Losses {
    fn iteration(&mut self, r: &IterationRecord) {
        self.0.lock().unwrap().push((r.iter, r.loss));
    }
}

/// Compares the net's learnable blobs with a caffemodel of Caffe's, layer by layer.
fn compare_weights(solver: &Solver<Cpu>, file: &Path, tol: Tolerance, what: &str) -> Vec<String> {
    let net = solver.net();
    let weights = crema::io::read_weights(file).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for layer in weights.layers.iter().filter(|l| !l.blobs.is_empty()) {
        let li = net.layer_index(&layer.name).unwrap_or_else(|| panic!("{what}: no layer `{}`", layer.name));
        let params = net.layer_params(li);
        assert_eq!(params.len(), layer.blobs.len(), "{what}: layer `{}`", layer.name);
        for (k, (p, want)) in params.iter().zip(&layer.blobs).enumerate() {
            let want = crema::io::NpyArray { shape: want.shape.clone(), data: want.data.clone() };
            let got = p.data_to_vec(net.backend()).unwrap();
            failures.extend(compare(&format!("{what}: {}[{k}]", layer.name), &got, p.shape(), &want, tol));
        }
    }
    failures
}

fn run_case(name: &str) {
    let dir = conformance_dir().join("solvers").join(name);
    let case: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let tol = Tolerance::from_json(&case["tolerance"]);
    let iterations = case["iterations"].as_u64().expect("iterations");
    let want_losses: Vec<f64> = case["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(want_losses.len() as u64, iterations);

    let mut solver = Solver::from_file(Cpu::new(), dir.join("solver.prototxt")).unwrap_or_else(|e| panic!("{name}: {e}"));
    let init = dir.join(case["init_weights"].as_str().unwrap());
    solver.net_mut().load_weights_files(&[init]).unwrap_or_else(|e| panic!("{name}: {e}"));
    let be = solver.backend().clone();
    for (blob, file) in case["inputs"].as_object().unwrap() {
        let arr = npy(&dir, file.as_str().unwrap());
        let b = solver.net_mut().blob_mut(blob).unwrap_or_else(|| panic!("{name}: no blob `{blob}`"));
        b.reshape(&be, &arr.shape).unwrap();
        b.set_data(&be, &arr.data).unwrap();
    }
    if let Some(state) = case["resume_from"].as_str() {
        solver.restore(dir.join(state)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(solver.iter() > 0 && solver.iter() < iterations, "{name}: restored at {}", solver.iter());
    }
    let losses = Losses::default();
    solver.set_monitor(Box::new(losses.clone()));

    let mut checkpoints: Vec<(u64, String)> = case["weights_after"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_str().unwrap().to_string()))
        .filter(|(k, _)| *k > solver.iter())
        .collect();
    checkpoints.sort();
    assert!(!checkpoints.is_empty(), "{name}: no weights to compare");
    let mut failures = Vec::new();
    for (at, file) in &checkpoints {
        solver.step(at - solver.iter()).unwrap_or_else(|e| panic!("{name}: {e}"));
        failures.extend(compare_weights(&solver, &dir.join(file), tol, &format!("after {at} iterations")));
    }
    assert_eq!(solver.iter(), iterations);
    for &(iter, got) in losses.0.lock().unwrap().iter() {
        let want = want_losses[iter as usize];
        let err = (got as f64 - want).abs();
        if err.is_nan() || err > tol.abs + tol.rel * want.abs() {
            failures.push(format!("loss of iteration {iter}: {got} vs Caffe's {want}"));
        }
    }
    assert!(failures.is_empty(), "{name}:\n  {}", failures.join("\n  "));
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        $( #[test] fn $case() { run_case(stringify!($case)); } )*
        /// Every case folder has a test above, so a new case cannot go unchecked.
        #[test]
        fn every_case_folder_is_listed() {
            let listed: Vec<&str> = vec![$(stringify!($case)),*];
            assert_eq!(case_names("solvers"), listed);
        }
    };
}

cases!(
    adadelta, adagrad, adam, legacy_solver_type_enum, nesterov, resume_adam, resume_sgd, rmsprop, sgd_exp, sgd_inv,
    sgd_iter_size_clip, sgd_l1, sgd_multistep, sgd_poly, sgd_sigmoid, sgd_step_momentum_wd,
);
