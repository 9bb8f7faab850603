//! The normalisation layers in small nets: Caffe's checks as errors with their messages, and
//! behaviour the gradient checks do not see (running statistics, statistics tops, gradients
//! that overwrite rather than accumulate, default ParamSpecs).

use crate::Result;
use crate::backend::cpu::Cpu;
use crate::net::Net;
use crate::proto::{NetParameter, NetState, Phase};

fn net(text: &str, phase: Phase) -> Result<Net<Cpu>> {
    let mut p: NetParameter = crate::prototxt::parse(text, "test")?;
    p.state = Some(NetState { phase: Some(phase as i32), ..Default::default() });
    Net::new(Cpu::new(), &p, 1)
}

fn input(name: &str, shape: &[usize]) -> String {
    let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
    format!(r#"layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}"#)
}

fn error(text: &str) -> String {
    match net(text, Phase::Train) {
        Ok(_) => panic!("built without error:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn set(net: &mut Net<Cpu>, name: &str, values: &[f32]) {
    let be = net.backend().clone();
    net.blob_mut(name).unwrap().set_data(&be, values).unwrap();
}

fn get(net: &Net<Cpu>, name: &str) -> Vec<f32> {
    net.blob(name).unwrap().data_to_vec(net.backend()).unwrap()
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.0).collect()
}

#[test]
fn bad_parameters_and_shapes_are_errors_naming_the_layer() {
    let cases: Vec<(String, &str)> = vec![
        (
            input("x", &[1, 2, 3, 4, 5]) + r#"layer { name: "bn" type: "BN" bottom: "x" top: "x" }"#,
            "layer `bn` (type BN): BN needs a blob of 1 to 4 axes",
        ),
        (
            input("x", &[2, 3, 4])
                + r#"layer { name: "bn" type: "BN" bottom: "x" top: "y" top: "m" top: "v" bn_param { bn_mode: INFERENCE } }"#,
            "takes exactly 1 top blob(s), given 3",
        ),
        (
            input("x", &[2, 3])
                + r#"layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" param { lr_mult: 0 } param { lr_mult: 1 } }"#,
            "cannot configure batch normalization statistics as layer parameters: param 1 has lr_mult 1",
        ),
        (
            input("x", &[2, 3])
                + r#"layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" param { name: "shared" } }"#,
            "param 0 has lr_mult 1, which must be 0",
        ),
        (
            input("x", &[]) + r#"layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" }"#,
            "BatchNorm needs a blob of at least 1 axis",
        ),
        (
            input("x", &[2, 3, 4])
                + r#"layer { name: "s" type: "Scale" bottom: "x" top: "y" scale_param { num_axes: -2 } }"#,
            "num_axes must be non-negative, or -1",
        ),
        (
            input("x", &[2, 3, 4])
                + r#"layer { name: "s" type: "Scale" bottom: "x" top: "y" scale_param { axis: 1 num_axes: 3 } }"#,
            "the scale blob's 3 axes extend past the bottom's shape [2, 3, 4] when applied from axis 1",
        ),
        (
            input("x", &[2, 3, 4])
                + &input("s", &[4, 3])
                + r#"layer { name: "s2" type: "Scale" bottom: "x" bottom: "s" top: "y" }"#,
            "the scale of shape [4, 3] does not match the bottom's shape [2, 3, 4] from axis 1",
        ),
        (
            input("x", &[2, 3, 4]) + r#"layer { name: "b" type: "Bias" bottom: "x" top: "y" bias_param { axis: 3 } }"#,
            "axis 3 out of range for a blob of 3 axes",
        ),
        (
            input("x", &[2, 3, 4])
                + &input("b", &[2, 4])
                + r#"layer { name: "b2" type: "Bias" bottom: "x" bottom: "b" top: "y" bias_param { axis: 0 } }"#,
            "the bias of shape [2, 4] does not match",
        ),
        (
            input("x", &[2, 3, 4, 4])
                + r#"layer { name: "l" type: "LRN" bottom: "x" top: "y" lrn_param { local_size: 4 } }"#,
            "LRN only supports odd values for local_size, given 4",
        ),
        (
            input("x", &[2, 3, 4]) + r#"layer { name: "l" type: "LRN" bottom: "x" top: "y" }"#,
            "LRN needs a bottom of 4 axes",
        ),
        (
            input("x", &[6]) + r#"layer { name: "m" type: "MVN" bottom: "x" top: "y" }"#,
            "MVN needs a bottom of at least 2 axes",
        ),
        (input("x", &[2, 3]) + r#"layer { name: "l" type: "LRN" bottom: "x" top: "x" }"#, "cannot run in place"),
    ];
    for (text, want) in cases {
        let e = error(&text);
        assert!(e.contains(want), "expected `{want}` in: {e}");
    }
}

#[test]
fn a_bottom_whose_channels_change_is_a_shape_error() {
    for kind in ["BN", "BatchNorm"] {
        let mut n = net(
            &(input("x", &[2, 3, 4]) + &format!(r#"layer {{ name: "bn" type: "{kind}" bottom: "x" top: "y" }}"#)),
            Phase::Train,
        )
        .unwrap();
        let be = n.backend().clone();
        n.blob_mut("x").unwrap().reshape(&be, &[2, 5, 4]).unwrap();
        let e = n.forward().unwrap_err().to_string();
        assert!(e.contains("has 5 channels; the layer was set up for 3"), "{e}");
    }
}

#[test]
fn batchnorm_statistics_are_never_learnt() {
    let n = net(
        &(input("x", &[2, 3])
            + r#"layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" param { lr_mult: 0 decay_mult: 0 } }"#),
        Phase::Train,
    )
    .unwrap();
    let info = n.param_info();
    assert_eq!(info.len(), 3);
    assert!(info.iter().all(|p| p.lr_mult == 0.0), "{info:?}");
    assert_eq!((info[0].decay_mult, info[1].decay_mult), (0.0, 1.0));
}

#[test]
fn bn_learn_writes_the_batch_statistics_to_its_extra_tops() {
    let text = input("x", &[2, 3, 2, 2])
        + r#"layer { name: "bn" type: "BN" bottom: "x" top: "h" top: "mean" top: "var"
              bn_param { scale_filler { type: "constant" value: 2 } shift_filler { type: "constant" value: 1 } } }"#;
    let mut n = net(&text, Phase::Test).unwrap();
    let x = ramp(24);
    set(&mut n, "x", &x);
    n.forward().unwrap();
    assert_eq!(n.blob("mean").unwrap().shape(), &[1, 3, 1, 1]);
    let (mean, var, h) = (get(&n, "mean"), get(&n, "var"), get(&n, "h"));
    for c in 0..3 {
        let vals: Vec<f64> =
            (0..2).flat_map(|i| (0..4).map(move |s| (i * 3 + c) * 4 + s)).map(|j| x[j] as f64).collect();
        let m = vals.iter().sum::<f64>() / 8.0;
        let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / 8.0;
        assert!((mean[c] as f64 - m).abs() < 1e-6 && (var[c] as f64 - v).abs() < 1e-6, "channel {c}");
        let j = c * 4;
        let want = 2.0 * (x[j] as f64 - m) / (v + 1e-9).sqrt() + 1.0;
        assert!((h[j] as f64 - want).abs() < 1e-5);
    }
}

#[test]
fn bn_inference_is_the_affine_map() {
    let text = input("x", &[1, 2, 3])
        + r#"layer { name: "bn" type: "BN" bottom: "x" top: "x2" bn_param { bn_mode: INFERENCE } blobs { shape { dim: 1 dim: 2 dim: 1 dim: 1 } data: 2 data: -1 } blobs { shape { dim: 1 dim: 2 dim: 1 dim: 1 } data: 0.5 data: 3 } }"#;
    let mut n = net(&text, Phase::Train).unwrap();
    set(&mut n, "x", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    n.forward().unwrap();
    assert_eq!(get(&n, "x2"), vec![2.5, 4.5, 6.5, -1.0, -2.0, -3.0]);
}

#[test]
fn batchnorm_updates_its_running_statistics_as_caffe() {
    let text = input("x", &[3, 2, 2])
        + r#"layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" batch_norm_param { moving_average_fraction: 0.9 }
              blobs { shape { dim: 2 } data: 1 data: 2 } blobs { shape { dim: 2 } data: 3 data: 4 } blobs { shape { dim: 1 } data: 5 } }"#;
    let mut n = net(&text, Phase::Train).unwrap();
    let x = ramp(12);
    set(&mut n, "x", &x);
    n.forward().unwrap();
    let be = n.backend().clone();
    let blobs: Vec<Vec<f32>> = n.layer_params(1).iter().map(|b| b.data_to_vec(&be).unwrap()).collect();
    assert_eq!(blobs[2], vec![5.0f32 * 0.9 + 1.0]);
    for c in 0..2 {
        let vals: Vec<f64> =
            (0..3).flat_map(|i| (0..2).map(move |s| (i * 2 + c) * 2 + s)).map(|j| x[j] as f64).collect();
        let m = vals.iter().sum::<f64>() / 6.0;
        let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / 6.0;
        let want_mean = m + 0.9 * [1.0, 2.0][c];
        let want_var = 6.0 / 5.0 * v + 0.9 * [3.0, 4.0][c];
        assert!((blobs[0][c] as f64 - want_mean).abs() < 1e-5, "mean {c}: {} vs {want_mean}", blobs[0][c]);
        assert!((blobs[1][c] as f64 - want_var).abs() < 1e-5, "var {c}: {} vs {want_var}", blobs[1][c]);
    }
}

#[test]
fn batchnorm_global_statistics_with_a_zero_factor_are_zero() {
    let text = input("x", &[2, 2])
        + r#"layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" batch_norm_param { eps: 0.25 } }"#;
    let mut n = net(&text, Phase::Test).unwrap();
    set(&mut n, "x", &[1.0, -2.0, 3.0, 0.5]);
    n.forward().unwrap();
    assert_eq!(get(&n, "y"), vec![2.0, -4.0, 6.0, 1.0]);
}

#[test]
fn bottom_operand_gradients_are_overwritten_and_learnt_ones_accumulated() {
    let text = String::from("force_backward: true\n")
        + &input("x", &[2, 3])
        + &input("s", &[3])
        + &input("b", &[3])
        + r#"layer { name: "sc" type: "Scale" bottom: "x" bottom: "s" top: "y" scale_param { bias_term: true } }
             layer { name: "bi" type: "Bias" bottom: "y" bottom: "b" top: "z" }"#;
    let mut n = net(&text, Phase::Train).unwrap();
    let be = n.backend().clone();
    set(&mut n, "x", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    set(&mut n, "s", &[1.0, 1.0, 1.0]);
    n.forward().unwrap();
    n.blob_mut("z").unwrap().set_diff(&be, &[1.0; 6]).unwrap();
    n.clear_param_diffs().unwrap();
    let diffs = |n: &Net<Cpu>| {
        let d = |name: &str| n.blob(name).unwrap().diff_to_vec(&be).unwrap();
        (d("s"), d("b"), n.layer_params(3)[0].diff_to_vec(&be).unwrap())
    };
    n.backward().unwrap();
    let (s1, b1, p1) = diffs(&n);
    assert_eq!((s1.clone(), b1.clone(), p1.clone()), (vec![5.0, 7.0, 9.0], vec![2.0; 3], vec![2.0; 3]));
    n.backward().unwrap();
    let (s2, b2, p2) = diffs(&n);
    assert_eq!((s2, b2), (s1, b1));
    assert_eq!(p2, vec![4.0; 3]);
}
