//! Caffe's GradientChecker method on whole nets: the analytic gradients from backward are
//! compared with central differences of an objective computed by forward.
//!
//! The objective is the net's loss (loss weights applied) plus `sum(w * out)` over every
//! non-loss output with fixed random `w`, so every output element's gradient path is checked.

use crema::backend::cpu::Cpu;
use crema::net::Net;
use crema::proto::{NetParameter, NetState, Phase};
use crema::rng::Rng;

/// How a gradient check runs.
#[derive(Clone, Debug)]
pub struct GradCheck {
    /// Finite-difference step.
    pub step: f32,
    /// Allowed error relative to `max(|analytic|, |numeric|, 1)`.
    pub threshold: f32,
    /// Elements within `kink_range` of `kink` are skipped (non-differentiable points).
    pub kink: Option<(f32, f32)>,
    /// At most this many elements are checked per blob (a fixed random sample beyond).
    pub max_per_blob: usize,
    /// Phase to build the net in.
    pub phase: Phase,
    /// Whether to check the learnable blobs too.
    pub params: bool,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck { step: 1e-2, threshold: 1e-3, kink: None, max_per_blob: 120, phase: Phase::Train, params: true }
    }
}

/// An input of the net: its blob name, shape and the range its random values are drawn from
/// (or explicit values).
pub struct Input {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub values: InputValues,
}

pub enum InputValues {
    Uniform(f32, f32),
    Given(Vec<f32>),
}

impl Input {
    pub fn uniform(name: &'static str, shape: &[usize], lo: f32, hi: f32) -> Self {
        Input { name, shape: shape.to_vec(), values: InputValues::Uniform(lo, hi) }
    }
    pub fn given(name: &'static str, shape: &[usize], values: Vec<f32>) -> Self {
        Input { name, shape: shape.to_vec(), values: InputValues::Given(values) }
    }
}

/// Builds `prototxt` (which should set `force_backward: true`), sets `inputs`, and checks the
/// gradient of every input (`check_inputs` names which; inputs such as labels are skipped) and
/// every learnable blob. Panics with every mismatch.
pub fn check(prototxt: &str, inputs: &[Input], check_inputs: &[&str], opts: &GradCheck) {
    let mut param: NetParameter = crema::prototxt::parse(prototxt, "gradcheck").unwrap_or_else(|e| panic!("{e}"));
    param.state = Some(NetState { phase: Some(opts.phase as i32), ..Default::default() });
    let mut net = Net::new(Cpu::new(), &param, 5).unwrap_or_else(|e| panic!("{e}"));
    let be = net.backend().clone();
    let mut rng = Rng::new(11);
    for input in inputs {
        let count: usize = input.shape.iter().product();
        let values = match &input.values {
            InputValues::Uniform(lo, hi) => (0..count).map(|_| rng.uniform_range(*lo, *hi)).collect(),
            InputValues::Given(v) => v.clone(),
        };
        let blob = net.blob_mut(input.name).unwrap_or_else(|| panic!("no input `{}`", input.name));
        blob.reshape(&be, &input.shape).unwrap();
        blob.set_data(&be, &values).unwrap();
    }
    net.forward().unwrap_or_else(|e| panic!("{e}"));
    // Random weights for the non-loss outputs.
    let loss_tops: Vec<usize> = net
        .layers()
        .iter()
        .flat_map(|l| l.tops.iter().zip(&l.loss_weights).filter(|(_, w)| **w != 0.0).map(|(t, _)| *t))
        .collect();
    let weights: Vec<(usize, Vec<f32>)> = net
        .outputs()
        .iter()
        .filter(|o| !loss_tops.contains(o))
        .map(|&o| (o, (0..net.blobs()[o].count()).map(|_| rng.uniform_range(-1.0, 1.0)).collect()))
        .collect();
    let objective = |net: &mut Net<Cpu>| -> f64 {
        let loss = net.forward().unwrap_or_else(|e| panic!("{e}")) as f64;
        let be = net.backend().clone();
        loss + weights
            .iter()
            .map(|(o, w)| {
                let out = net.blobs()[*o].data_to_vec(&be).unwrap();
                out.iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
            })
            .sum::<f64>()
    };
    objective(&mut net);
    for (o, w) in &weights {
        let name = net.blob_name(*o).to_string();
        net.blob_mut(&name).unwrap().set_diff(&be, w).unwrap();
    }
    net.clear_param_diffs().unwrap();
    net.backward().unwrap_or_else(|e| panic!("{e}"));

    // Analytic gradients, captured before the numeric passes disturb anything.
    let mut targets: Vec<(String, bool, usize, Vec<f32>)> = Vec::new(); // (label, is_param, index, grad)
    for name in check_inputs {
        let i = net.blob_index(name).unwrap_or_else(|| panic!("no blob `{name}`"));
        targets.push((format!("input `{name}`"), false, i, net.blobs()[i].diff_to_vec(&be).unwrap()));
    }
    if opts.params {
        for (p, info) in net.param_info().to_vec().iter().enumerate() {
            targets.push((format!("param {}[{}]", info.layer, info.index), true, p, net.params()[p].diff_to_vec(&be).unwrap()));
        }
    }

    let mut failures = Vec::new();
    let mut checked = 0;
    for (label, is_param, idx, analytic) in &targets {
        let count = analytic.len();
        let mut elems: Vec<usize> = (0..count).collect();
        if count > opts.max_per_blob {
            rng.shuffle(&mut elems);
            elems.truncate(opts.max_per_blob);
        }
        for &e in &elems {
            let get = |net: &Net<Cpu>| -> Vec<f32> {
                let b = if *is_param { &net.params()[*idx] } else { &net.blobs()[*idx] };
                b.data_to_vec(&be).unwrap()
            };
            let original = get(&net);
            let x = original[e];
            if let Some((k, r)) = opts.kink
                && (x - k).abs() < r
            {
                continue;
            }
            let set = |net: &mut Net<Cpu>, v: f32| {
                let mut vals = original.clone();
                vals[e] = v;
                let b = if *is_param { &mut net.params_mut()[*idx] } else { &mut net.blobs_mut_for_tests()[*idx] };
                b.set_data(&be, &vals).unwrap();
            };
            set(&mut net, x + opts.step);
            let plus = objective(&mut net);
            set(&mut net, x - opts.step);
            let minus = objective(&mut net);
            set(&mut net, x);
            let numeric = (plus - minus) / (2.0 * opts.step as f64);
            let a = analytic[e] as f64;
            let scale = a.abs().max(numeric.abs()).max(1.0);
            checked += 1;
            if (a - numeric).abs() > opts.threshold as f64 * scale {
                failures.push(format!("{label}[{e}] (x = {x}): analytic {a}, numeric {numeric}"));
            }
        }
    }
    assert!(checked > 0, "nothing was checked");
    assert!(failures.is_empty(), "{} of {checked} gradients differ:\n  {}", failures.len(), failures.join("\n  "));
}
