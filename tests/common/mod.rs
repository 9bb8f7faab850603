//! Helpers shared by the integration tests: where the conformance cases are, how numbers are
//! compared, and how a case's net is built.
#![allow(dead_code)]

pub mod conformance;
pub mod examples;
pub mod gradcheck;
pub mod recurrent;

use crema::backend::Backend;
use crema::backend::cpu::Cpu;
use crema::net::Net;
use crema::proto::{NetParameter, NetState, Phase, SolverParameter};
use crema::solver::Solver;
use std::path::{Path, PathBuf};

/// The convolution engine the CUDA tests use: `CREMA_CONV_ENGINE` (`cudnn` or `im2col`, as the
/// CLI reads it) where set, else `default`. Unset on a GPU, so the tests run as written there;
/// `tools/cuda_emu/check.sh` sets it to run the suite on each engine under the emulator.
pub fn conv_engine(default: crema::backend::cuda::ConvEngine) -> crema::backend::cuda::ConvEngine {
    crema::backend::cuda::ConvEngine::from_env().unwrap_or_else(|e| panic!("{e}")).unwrap_or(default)
}

/// `../shared/conformance` beside the crate, or `$CREMA_CONFORMANCE`. Panics (failing the
/// test) when it is missing: a missing folder must not pass as "nothing to check".
pub fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("CREMA_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    assert!(dir.is_dir(), "conformance cases not found at {} (set CREMA_CONFORMANCE)", dir.display());
    dir
}

/// Case folders under `conformance/<group>`, sorted.
pub fn case_names(group: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(conformance_dir().join(group))
        .expect("read conformance group")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A case's tolerance.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub abs: f64,
    pub rel: f64,
}

impl Tolerance {
    pub fn from_json(v: &serde_json::Value) -> Self {
        Tolerance { abs: v["abs"].as_f64().expect("tolerance.abs"), rel: v["rel"].as_f64().expect("tolerance.rel") }
    }
}

/// Compares `got` with `want` element-wise (`|a - e| <= abs + rel |e|`); returns a description
/// of the first mismatches, or None.
pub fn compare(what: &str, got: &[f32], got_shape: &[usize], want: &crema::io::NpyArray, tol: Tolerance) -> Option<String> {
    let want_count: usize = want.shape.iter().product();
    let got_count: usize = got_shape.iter().product();
    if want_count != got_count || (want.shape != got_shape && !(want.shape.is_empty() && got_count == 1)) {
        return Some(format!("{what}: shape {:?}, expected {:?}", got_shape, want.shape));
    }
    let mut bad = Vec::new();
    let mut worst = 0.0f64;
    for (i, (&a, &e)) in got.iter().zip(&want.data).enumerate() {
        let err = (a as f64 - e as f64).abs();
        let allowed = tol.abs + tol.rel * (e as f64).abs();
        if err.is_nan() || allowed.is_nan() || err > allowed {
            worst = worst.max(err);
            if bad.len() < 5 {
                bad.push(format!("[{i}] {a} vs {e}"));
            }
        }
    }
    if bad.is_empty() {
        None
    } else {
        Some(format!("{what}: {} of {} values differ (worst {worst:e}): {}", bad.len(), got.len(), bad.join(", ")))
    }
}

/// Reads a `.npy` from a case folder.
pub fn npy(dir: &Path, file: &str) -> crema::io::NpyArray {
    crema::io::read_npy(dir.join(file)).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses `net.prototxt` of a case folder and builds it in `phase` on the CPU.
pub fn build_net(path: &Path, phase: Phase) -> Net<Cpu> {
    let param = conformance::read_net_param(path, phase);
    Net::new(Cpu::new(), &param, 1).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Plain SGD on `net` in the TRAIN phase: a fixed rate, momentum 0.9, weight decay 0.001, seed
/// 7, up to 100 iterations, no display or snapshot (the solver the training-equivalence tests
/// step).
pub fn sgd_param(net: NetParameter, base_lr: f32, iter_size: i32) -> SolverParameter {
    SolverParameter {
        net_param: Some(net),
        r#type: Some("SGD".into()),
        base_lr: Some(base_lr),
        lr_policy: Some("fixed".into()),
        momentum: Some(0.9),
        weight_decay: Some(0.001),
        iter_size: Some(iter_size),
        max_iter: Some(100),
        display: Some(0),
        snapshot_after_train: Some(false),
        random_seed: Some(7),
        train_state: Some(NetState { phase: Some(Phase::Train as i32), ..Default::default() }),
        ..Default::default()
    }
}

/// The values of a solver's learnable blobs, as bits.
pub fn weight_bits<B: Backend>(s: &Solver<B>) -> Vec<Vec<u32>> {
    s.net().params().iter().map(|p| p.data_to_vec(s.backend()).unwrap().iter().map(|v| v.to_bits()).collect()).collect()
}

/// Gives every Input top of `net` fixed values: labels in 0..3 for a blob called `label`,
/// values in [-1.25, 1.25] for the others.
pub fn fill_inputs<B: Backend>(net: &mut Net<B>) {
    let be = net.backend().clone();
    for i in net.inputs().to_vec() {
        let name = net.blob_name(i).to_string();
        let blob = net.blob_mut(&name).unwrap();
        let n = blob.count();
        let values: Vec<f32> = match name.as_str() {
            "label" => (0..n).map(|j| ((j * 7 + j / 5) % 3) as f32).collect(),
            _ => (0..n).map(|j| ((j * 37 % 101) as f32 - 50.0) / 40.0).collect(),
        };
        blob.set_data(&be, &values).unwrap();
    }
}

/// Sets an input blob from host values, reshaping it.
pub fn set_input<B: Backend>(net: &mut Net<B>, name: &str, arr: &crema::io::NpyArray) {
    let be = net.backend().clone();
    let blob = net.blob_mut(name).unwrap_or_else(|| panic!("no blob `{name}`"));
    blob.reshape(&be, &arr.shape).unwrap();
    blob.set_data(&be, &arr.data).unwrap();
}
