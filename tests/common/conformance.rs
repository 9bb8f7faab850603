//! Running the Caffe conformance cases (`conformance/layers`, `conformance/solvers`) on any
//! backend: the CPU tests and the CUDA tests read the same cases, run them the same way and
//! compare with the same tolerances; only the backend they pass in differs.

use super::{Tolerance, compare, conformance_dir, conv_engine, npy, set_input};
use crema::backend::Backend;
use crema::backend::cuda::{ConvEngine, Cuda, CudaOptions, Precision};
use crema::layers::layer_types;
use crema::net::Net;
use crema::proto::{NetParameter, NetState, Phase};
use crema::solver::{IterationRecord, Monitor, Solver};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Lists the cases of a group as tests, `$run(name)` each, plus a test that every case folder
/// of the group is listed, so that a new case cannot go unchecked.
#[macro_export]
macro_rules! conformance_cases {
    ($group:literal, $run:path; $($case:ident),* $(,)?) => {
        $( #[test] fn $case() { $run(stringify!($case)); } )*
        /// Every case folder has a test above, so a new case cannot go unchecked.
        #[test]
        fn every_case_folder_is_listed() {
            let listed: Vec<&str> = vec![$(stringify!($case)),*];
            assert_eq!($crate::common::case_names($group), listed);
        }
    };
}

/// A test per case of `conformance/layers`, each calling `$run(name)`.
#[macro_export]
macro_rules! layer_cases {
    ($run:path) => {
        $crate::conformance_cases!(
            "layers", $run;
            accuracy, act_absval, act_bnll, act_elu, act_exp, act_log, act_power, act_relu, act_relu_inplace_chain,
            act_relu_leaky, act_sigmoid, act_tanh, argmax, batchnorm_global_stats, batchnorm_scale_train, concat_slice,
            conv_1x1_stride2, conv_basic, conv_dilation_nobias, conv_stride_pad_group_rect, crop_reshape_flatten, deconv,
            dropout_test, eltwise, euclidean_loss, innerproduct, innerproduct_transpose_axis2, lenet, lrn_across,
            lrn_within, pool_ave_pad, pool_global, pool_max_2x2_odd, pool_max_ceil_mask, prelu, scale_bias_two_bottoms,
            segnet_bn_learn, segnet_upsample, segnet_weighted_softmax_loss, shared_params, sigmoid_xent_loss, softmax,
            softmax_loss_batch_size, softmax_loss_full, softmax_loss_none, softmax_loss_valid, softmax_loss_weighted_2,
            state_filter, threshold, tile_reduction,
        );
    };
}

/// A test per case of `conformance/solvers`, each calling `$run(name)`.
#[macro_export]
macro_rules! solver_cases {
    ($run:path) => {
        $crate::conformance_cases!(
            "solvers", $run;
            adadelta, adagrad, adam, legacy_solver_type_enum, nesterov, resume_adam, resume_sgd, rmsprop, sgd_exp,
            sgd_inv, sgd_iter_size_clip, sgd_l1, sgd_multistep, sgd_poly, sgd_sigmoid, sgd_step_momentum_wd,
        );
    };
}

static GPU: OnceLock<Result<Cuda, String>> = OnceLock::new();

/// The strict-FP32 CUDA backend on GPU 0, its convolutions on cuDNN unless `CREMA_CONV_ENGINE`
/// says otherwise (see `conv_engine`), shared by a test binary's tests; None, after printing
/// `SKIPPED: ...`, where no GPU can be opened.
pub fn strict_fp32_gpu() -> Option<Cuda> {
    let opened = GPU.get_or_init(|| {
        Cuda::with_options(0, CudaOptions { precision: Precision::Fp32, conv: conv_engine(ConvEngine::Cudnn), ..CudaOptions::default() })
            .map_err(|e| e.to_string())
    });
    match opened {
        Ok(g) => Some(g.clone()),
        Err(e) => {
            println!("SKIPPED: no CUDA device ({e})");
            None
        }
    }
}

/// A case folder and its `case.json`.
fn read_case(group: &str, name: &str) -> (PathBuf, Value) {
    let dir = conformance_dir().join(group).join(name);
    let case = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    (dir, case)
}

/// Parses a net file and sets the phase of its state.
pub fn read_net_param(path: &Path, phase: Phase) -> NetParameter {
    let mut param: NetParameter = crema::prototxt::read_file(path).unwrap_or_else(|e| panic!("{e}"));
    param.state = Some(NetState { phase: Some(phase as i32), ..param.state.unwrap_or_default() });
    param
}

/// A case of `conformance/layers`: one small net run forward and backward by Caffe.
pub struct LayerCase {
    pub name: String,
    dir: PathBuf,
    case: Value,
    tol: Tolerance,
    /// `net.prototxt` in the case's phase.
    pub net: NetParameter,
}

impl LayerCase {
    pub fn open(name: &str) -> Self {
        let (dir, case) = read_case("layers", name);
        let phase = match case["phase"].as_str() {
            Some("TRAIN") => Phase::Train,
            Some("TEST") => Phase::Test,
            other => panic!("{name}: unknown phase {other:?}"),
        };
        let tol = Tolerance::from_json(&case["tolerance"]);
        let net = read_net_param(&dir.join("net.prototxt"), phase);
        LayerCase { name: name.to_string(), dir, case, tol, net }
    }

    /// The layer types of the net that crema does not know.
    pub fn unknown_layer_types(&self) -> Vec<String> {
        let known = layer_types();
        let mut unknown: Vec<String> = self
            .net
            .layer
            .iter()
            .map(|l| l.r#type().to_string())
            .filter(|t| !known.contains(&t.as_str()))
            .collect();
        unknown.dedup();
        unknown
    }

    /// An object of `case.json` (empty where absent).
    fn map(&self, key: &str) -> Map<String, Value> {
        self.case[key].as_object().cloned().unwrap_or_default()
    }

    /// Builds the net on `be`, loads the case's weights and inputs, runs forward and (where the
    /// case checks gradients) backward, and compares with Caffe's numbers: the mismatches.
    pub fn run<B: Backend>(&self, be: B) -> Vec<String> {
        let (name, dir, tol) = (&self.name, &self.dir, self.tol);
        let mut net = Net::new(be, &self.net, 1).unwrap_or_else(|e| panic!("{name}: {e}"));
        let be = net.backend().clone();
        let weights = dir.join("weights.caffemodel");
        if weights.exists() {
            net.load_weights_files(&[weights]).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for (blob, file) in self.map("inputs") {
            set_input(&mut net, &blob, &npy(dir, file.as_str().unwrap()));
        }
        net.forward().unwrap_or_else(|e| panic!("{name}: forward: {e}"));
        let mut failures = Vec::new();
        for (blob, file) in self.map("forward") {
            let b = net.blob(&blob).unwrap_or_else(|| panic!("{name}: no blob `{blob}`"));
            let got = b.data_to_vec(&be).unwrap();
            failures.extend(compare(&format!("forward {blob}"), &got, b.shape(), &npy(dir, file.as_str().unwrap()), tol));
        }
        let (input_grad, param_grad) = (self.map("input_grad"), self.map("param_grad"));
        if input_grad.is_empty() && param_grad.is_empty() {
            return failures;
        }
        for (blob, file) in self.map("top_diff") {
            let arr = npy(dir, file.as_str().unwrap());
            net.blob_mut(&blob).unwrap_or_else(|| panic!("{name}: no blob `{blob}`")).set_diff(&be, &arr.data).unwrap();
        }
        net.clear_param_diffs().unwrap();
        net.backward().unwrap_or_else(|e| panic!("{name}: backward: {e}"));
        for (blob, file) in input_grad {
            let b = net.blob(&blob).unwrap();
            let got = b.diff_to_vec(&be).unwrap();
            failures.extend(compare(&format!("input_grad {blob}"), &got, b.shape(), &npy(dir, file.as_str().unwrap()), tol));
        }
        for (layer, files) in param_grad {
            let li = net.layer_index(&layer).unwrap_or_else(|| panic!("{name}: no layer `{layer}`"));
            let params = net.layer_params(li);
            let files = files.as_array().unwrap();
            assert_eq!(params.len(), files.len(), "{name}: layer `{layer}` has {} params", params.len());
            for (k, (p, f)) in params.iter().zip(files).enumerate() {
                let got = p.diff_to_vec(&be).unwrap();
                failures.extend(compare(&format!("param_grad {layer}[{k}]"), &got, p.shape(), &npy(dir, f.as_str().unwrap()), tol));
            }
        }
        failures
    }
}

/// Keeps the loss of each iteration.
#[derive(Clone, Default)]
struct Losses(Arc<Mutex<Vec<(u64, f32)>>>);

impl Monitor for Losses {
    fn iteration(&mut self, r: &IterationRecord) {
        self.0.lock().unwrap().push((r.iter, r.loss));
    }
}

/// Compares the net's learnable blobs with a caffemodel of Caffe's, layer by layer.
fn compare_weights<B: Backend>(solver: &Solver<B>, file: &Path, tol: Tolerance, what: &str) -> Vec<String> {
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

/// Runs solver case `name` of `conformance/solvers` on `be` (restoring Caffe's solverstate for
/// the resume_* cases) and compares every iteration's loss and the weights at each checkpoint
/// with Caffe's: the mismatches.
pub fn run_solver_case<B: Backend>(be: B, name: &str) -> Vec<String> {
    let (dir, case) = read_case("solvers", name);
    let tol = Tolerance::from_json(&case["tolerance"]);
    let iterations = case["iterations"].as_u64().expect("iterations");
    let want_losses: Vec<f64> = case["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(want_losses.len() as u64, iterations);

    let mut solver = Solver::from_file(be, dir.join("solver.prototxt")).unwrap_or_else(|e| panic!("{name}: {e}"));
    let init = dir.join(case["init_weights"].as_str().unwrap());
    solver.net_mut().load_weights_files(&[init]).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (blob, file) in case["inputs"].as_object().unwrap() {
        set_input(solver.net_mut(), blob, &npy(&dir, file.as_str().unwrap()));
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
    failures
}
