//! Finite-difference gradient checks of the activation layers, in place and not, over their
//! parameter options; direct checks of Dropout (whose mask changes every forward, so no
//! finite difference applies in TRAIN) and of the in-place quirks Caffe has and crema
//! reproduces (BNLL, Power, Log and Clip read the overwritten top in place, so their in-place
//! gradient is not the true one).

mod common;

use common::gradcheck::{check, GradCheck, Input};
use crema::backend::cpu::Cpu;
use crema::net::Net;
use crema::proto::{NetParameter, NetState, Phase};
use crema::rng::Rng;

/// `n` values uniform in `[lo, hi]`, each at least 0.05 away from every kink.
fn away_from(kinks: &[f32], n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| loop {
            let v = rng.uniform_range(lo, hi);
            if kinks.iter().all(|k| (v - k).abs() >= 0.05) {
                break v;
            }
        })
        .collect()
}

/// A net of one activation `layer` (type and parameters, e.g. `type: "ELU" elu_param { .. }`)
/// on input `x` of `shape`. Not in place: `x -> y`. In place: `x` goes through an identity
/// Power layer into `h` (so that the input stays untouched and `h` equals `x`), and the layer
/// runs on `h` in place.
fn act_net(layer: &str, shape: &[usize], in_place: bool) -> String {
    let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
    let head = format!(
        "force_backward: true\nlayer {{ name: 'x' type: 'Input' top: 'x' input_param {{ shape {{ {dims}}} }} }}\n"
    );
    if in_place {
        format!("{head}layer {{ name: 'id' type: 'Power' bottom: 'x' top: 'h' }}\nlayer {{ name: 'act' {layer} bottom: 'h' top: 'h' }}")
    } else {
        format!("{head}layer {{ name: 'act' {layer} bottom: 'x' top: 'y' }}")
    }
}

/// Gradient-checks `layer` on inputs `x`, in place and not (where `both`).
fn check_act(layer: &str, shape: &[usize], x: Vec<f32>, opts: &GradCheck, both: bool) {
    for in_place in if both { vec![false, true] } else { vec![false] } {
        let net = act_net(layer, shape, in_place);
        check(&net, &[Input::given("x", shape, x.clone())], &["x"], opts);
    }
}

fn count(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn no_params() -> GradCheck {
    GradCheck { params: false, ..Default::default() }
}

#[test]
fn relu_plain_and_leaky() {
    let shape = [2, 3, 5];
    let x = away_from(&[0.0], count(&shape), -2.0, 2.0, 1);
    check_act(r#"type: "ReLU""#, &shape, x.clone(), &no_params(), true);
    check_act(r#"type: "ReLU" relu_param { negative_slope: 0.1 }"#, &shape, x, &no_params(), true);
}

#[test]
fn sigmoid_tanh() {
    let shape = [3, 2, 3, 2];
    let x = away_from(&[], count(&shape), -3.0, 3.0, 2);
    check_act(r#"type: "Sigmoid""#, &shape, x.clone(), &no_params(), true);
    check_act(r#"type: "TanH""#, &shape, x, &no_params(), true);
}

#[test]
fn absval_and_bnll() {
    let shape = [4, 7];
    let x = away_from(&[0.0], count(&shape), -3.0, 3.0, 3);
    // AbsVal refuses to run in place; BNLL's in-place gradient is Caffe's quirk (below).
    check_act(r#"type: "AbsVal""#, &shape, x.clone(), &no_params(), false);
    check_act(r#"type: "BNLL""#, &shape, x, &no_params(), false);
}

#[test]
fn elu_alphas() {
    let shape = [2, 3, 5];
    let x = away_from(&[0.0], count(&shape), -3.0, 3.0, 4);
    for alpha in ["1", "0.7", "2.5"] {
        check_act(&format!(r#"type: "ELU" elu_param {{ alpha: {alpha} }}"#), &shape, x.clone(), &no_params(), true);
    }
}

#[test]
fn power_branches() {
    let shape = [2, 3, 4];
    let any = away_from(&[], count(&shape), -2.0, 2.0, 5);
    let pos = away_from(&[], count(&shape), 0.5, 2.0, 6);
    for (params, x) in [
        ("power: 2 scale: 0.5 shift: 1", &any),
        ("power: 2 scale: 1.5", &any),
        ("power: 1 scale: 2 shift: -0.5", &any),
        ("power: 0.5", &pos),
        ("power: 0.5 scale: 3", &pos),
        ("power: 3 scale: 0.7 shift: 0.2", &pos),
        ("power: -1.5 scale: 2 shift: 1", &pos),
        ("power: 0 scale: 2 shift: 3", &any),
        ("power: 2 scale: 0 shift: 3", &any),
    ] {
        check_act(&format!(r#"type: "Power" power_param {{ {params} }}"#), &shape, x.clone(), &no_params(), false);
    }
}

#[test]
fn exp_and_log_bases_scales_shifts() {
    let shape = [3, 5];
    let x = away_from(&[], count(&shape), -1.5, 1.5, 7);
    for params in ["", "base: -1 scale: 0.5 shift: 0.1", "base: 2", "base: 3 scale: -0.7 shift: 1.2", "base: 0.5 shift: -1"] {
        check_act(&format!(r#"type: "Exp" exp_param {{ {params} }}"#), &shape, x.clone(), &no_params(), true);
    }
    let pos = away_from(&[], count(&shape), 0.5, 3.0, 8);
    for params in ["", "base: 2", "base: 10 scale: 0.5 shift: 0.3", "base: -1 scale: 2 shift: 1"] {
        check_act(&format!(r#"type: "Log" log_param {{ {params} }}"#), &shape, pos.clone(), &no_params(), false);
    }
}

#[test]
fn clip_and_swish() {
    let shape = [2, 9];
    let x = away_from(&[-0.5, 0.6], count(&shape), -2.0, 2.0, 9);
    check_act(r#"type: "Clip" clip_param { min: -0.5 max: 0.6 }"#, &shape, x, &no_params(), false);
    let x = away_from(&[], count(&shape), -4.0, 4.0, 10);
    for beta in ["1", "0.5", "2"] {
        check_act(&format!(r#"type: "Swish" swish_param {{ beta: {beta} }}"#), &shape, x.clone(), &no_params(), true);
    }
}

#[test]
fn prelu_shared_and_per_channel_input_and_slope() {
    // Random slopes (some negative, some above 1) so that the slope gradient is not trivial.
    let filler = r#"filler { type: "uniform" min: -0.6 max: 1.3 }"#;
    let opts = GradCheck { kink: Some((0.0, 0.02)), ..Default::default() };
    for shape in [vec![2, 3, 5], vec![3, 4], vec![2, 3, 2, 1, 3]] {
        let x = away_from(&[0.0], count(&shape), -2.0, 2.0, 11);
        for shared in ["false", "true"] {
            let layer = format!(r#"type: "PReLU" prelu_param {{ channel_shared: {shared} {filler} }}"#);
            check_act(&layer, &shape, x.clone(), &opts, true);
        }
    }
}

#[test]
fn dropout_in_test_phase_is_the_identity() {
    let shape = [2, 3, 4];
    let x = away_from(&[], count(&shape), -1.0, 1.0, 12);
    let opts = GradCheck { phase: Phase::Test, params: false, ..Default::default() };
    check_act(r#"type: "Dropout" dropout_param { dropout_ratio: 0.4 }"#, &shape, x, &opts, true);
}

/// Builds `text` in `phase` with `x` set, runs forward, sets `top`'s diff to `dy`, runs
/// backward; returns the net.
fn run(text: &str, phase: Phase, x: &[f32], top: &str, dy: &[f32]) -> Net<Cpu> {
    let mut param: NetParameter = crema::prototxt::parse(text, "test").unwrap();
    param.state = Some(NetState { phase: Some(phase as i32), ..Default::default() });
    let mut net = Net::new(Cpu::new(), &param, 3).unwrap();
    let be = net.backend().clone();
    net.blob_mut("x").unwrap().set_data(&be, x).unwrap();
    net.forward().unwrap();
    net.blob_mut(top).unwrap().set_diff(&be, dy).unwrap();
    net.backward().unwrap();
    net
}

fn data(net: &Net<Cpu>, blob: &str) -> Vec<f32> {
    net.blob(blob).unwrap().data_to_vec(net.backend()).unwrap()
}

fn diff(net: &Net<Cpu>, blob: &str) -> Vec<f32> {
    net.blob(blob).unwrap().diff_to_vec(net.backend()).unwrap()
}

#[test]
fn dropout_train_scales_kept_units_and_backward_uses_the_same_mask() {
    let shape = [4, 16, 32, 32];
    let n = count(&shape);
    let x = away_from(&[0.0], n, -1.0, 1.0, 13);
    let dy = away_from(&[], n, -1.0, 1.0, 14);
    let ratio = 0.3f32;
    let scale = (1.0 / (1.0 - ratio as f64)) as f32;
    for in_place in [false, true] {
        let layer = format!(r#"type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}"#);
        let text = act_net(&layer, &shape, in_place);
        let top = if in_place { "h" } else { "y" };
        let net = run(&text, Phase::Train, &x, top, &dy);
        let (y, dx) = (data(&net, top), diff(&net, "x"));
        let mut kept = 0usize;
        for i in 0..n {
            // x is never 0, so a 0 output is a dropped unit.
            if y[i] != 0.0 {
                kept += 1;
                assert_eq!(y[i], x[i] * scale, "kept unit {i}");
                assert_eq!(dx[i], dy[i] * scale, "gradient of kept unit {i}");
            } else {
                assert_eq!(dx[i], 0.0, "gradient of dropped unit {i}");
            }
        }
        let fraction = kept as f64 / n as f64;
        assert!((fraction - 0.7).abs() < 0.01, "kept {fraction} of the units");
    }
}

#[test]
fn dropout_draws_a_fresh_mask_each_forward_and_samples_in_test_when_asked() {
    let shape = [2, 50];
    let x = vec![1.0; 100];
    let mask_of = |net: &Net<Cpu>, top: &str| -> Vec<bool> { data(net, top).iter().map(|&v| v != 0.0).collect() };
    let text = act_net(r#"type: "Dropout" dropout_param { dropout_ratio: 0.5 }"#, &shape, false);
    let mut net = run(&text, Phase::Train, &x, "y", &x);
    let first = mask_of(&net, "y");
    net.forward().unwrap();
    assert_ne!(first, mask_of(&net, "y"), "the second forward reused the mask");
    // The same seed draws the same masks.
    assert_eq!(first, mask_of(&run(&text, Phase::Train, &x, "y", &x), "y"));

    // TEST: the identity, unless SegNet's sample_weights_test asks for Monte-Carlo dropout.
    let net = run(&text, Phase::Test, &x, "y", &x);
    assert_eq!(data(&net, "y"), x);
    assert_eq!(diff(&net, "x"), x);
    let mc = act_net(r#"type: "Dropout" dropout_param { dropout_ratio: 0.5 sample_weights_test: true }"#, &shape, false);
    let net = run(&mc, Phase::Test, &x, "y", &x);
    let y = data(&net, "y");
    assert!(y.iter().all(|&v| v == 0.0 || v == 2.0) && y.contains(&0.0) && y.contains(&2.0), "{y:?}");
    assert_eq!(diff(&net, "x"), y, "backward applies the mask and scale of forward");
}

/// Caffe's in-place quirks, reproduced: the gradient these layers give in place is computed
/// from the overwritten top (and for Power and Log multiplied by itself, the top diff lost).
#[test]
fn in_place_quirks_of_caffe() {
    let shape = [3, 7];
    let x = away_from(&[-0.5, 0.6], count(&shape), 0.2, 2.0, 15);
    let dy = away_from(&[], count(&shape), -1.0, 1.0, 16);
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    type Want<'a> = Box<dyn Fn(f64, f64) -> f64 + 'a>;
    let cases: Vec<(&str, Want)> = vec![
        // BNLL reads y as if it were x.
        (r#"type: "BNLL""#, Box::new(|y, dy| dy * sig(y))),
        // Clip reads y, always inside the bounds: every gradient passes.
        (r#"type: "Clip" clip_param { min: -0.5 max: 0.6 }"#, Box::new(|_, dy| dy)),
        // Power (2, 0.5, 1): g(y) = 2 * 0.5 * (1 + 0.5 y), squared.
        (r#"type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }"#, Box::new(|y, _| (1.0 + 0.5 * y).powi(2))),
        // Power 1: the constant derivative 2, squared.
        (r#"type: "Power" power_param { scale: 2 shift: 1 }"#, Box::new(|_, _| 4.0)),
        // Log base 2: g(y) = 1 / (y ln 2), squared.
        (r#"type: "Log" log_param { base: 2 }"#, Box::new(|y, _| (1.0 / (y * 2f64.ln())).powi(2))),
    ];
    for (layer, want) in cases {
        let net = run(&act_net(layer, &shape, true), Phase::Train, &x, "h", &dy);
        let (y, dx) = (data(&net, "h"), diff(&net, "x"));
        for i in 0..x.len() {
            let w = want(y[i] as f64, dy[i] as f64);
            assert!((dx[i] as f64 - w).abs() <= 1e-5 * w.abs().max(1.0), "{layer} [{i}]: {} vs {w}", dx[i]);
        }
    }
}
