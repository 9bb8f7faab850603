//! Finite-difference gradient checks of the normalisation layers: BN (SegNet), BatchNorm,
//! Scale, Bias, LRN and MVN, in place and not, over their options and odd shapes.
//!
//! A layer run in place needs a producer before it (the checker perturbs the input blob, which
//! an in-place layer on the input itself would overwrite): a 1x1 convolution, whose own
//! gradients are then checked too.

mod common;

use common::gradcheck::{GradCheck, Input, check};
use crema::proto::Phase;

/// `x` of `shape` mapped by a 1x1 convolution (to `channels` channels) to `h`.
fn producer(shape: &[usize], channels: usize) -> String {
    let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
    format!(
        r#"force_backward: true
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }}
        layer {{ name: "mix" type: "Convolution" bottom: "x" top: "h"
          convolution_param {{ num_output: {channels} kernel_size: 1 weight_filler {{ type: "gaussian" std: 0.7 }}
            bias_filler {{ type: "gaussian" std: 0.5 }} }} }}"#
    )
}

fn input(name: &str, shape: &[usize]) -> String {
    let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
    format!(r#"layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}"#)
}

// ---------------------------------------------------------------------------------- BN

const BN_FILLERS: &str =
    r#"scale_filler { type: "gaussian" mean: 1 std: 0.5 } shift_filler { type: "gaussian" std: 0.5 }"#;

#[test]
fn bn_learn_not_in_place() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "bn" type: "BN" bottom: "x" top: "y" bn_param {{ {BN_FILLERS} }} }}"#,
        input("x", &[4, 3, 3, 5])
    );
    check(&net, &[Input::uniform("x", &[4, 3, 3, 5], -2.0, 2.0)], &["x"], &GradCheck::default());
}

#[test]
fn bn_learn_in_place_after_a_producer() {
    let net = format!(
        r#"{}
        layer {{ name: "bn" type: "BN" bottom: "h" top: "h" bn_param {{ bn_mode: LEARN {BN_FILLERS} }} }}"#,
        producer(&[5, 2, 3, 3], 4)
    );
    check(&net, &[Input::uniform("x", &[5, 2, 3, 3], -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn bn_learn_two_axes_in_test_phase() {
    // LEARN uses batch statistics in every phase; a 2-axis blob is (N, C) with H = W = 1.
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "bn" type: "BN" bottom: "x" top: "y" bn_param {{ {BN_FILLERS} }} }}"#,
        input("x", &[7, 3])
    );
    let opts = GradCheck { phase: Phase::Test, ..Default::default() };
    check(&net, &[Input::uniform("x", &[7, 3], -2.0, 2.0)], &["x"], &opts);
}

#[test]
fn bn_inference_in_place_and_not() {
    let net = format!(
        r#"{}
        layer {{ name: "bn1" type: "BN" bottom: "h" top: "h" bn_param {{ bn_mode: INFERENCE {BN_FILLERS} }} }}
        layer {{ name: "bn2" type: "BN" bottom: "h" top: "y" bn_param {{ bn_mode: INFERENCE {BN_FILLERS} }} }}"#,
        producer(&[2, 3, 2, 5], 3)
    );
    check(&net, &[Input::uniform("x", &[2, 3, 2, 5], -1.0, 1.0)], &["x"], &GradCheck::default());
}

// ---------------------------------------------------------------------------- BatchNorm

#[test]
fn batchnorm_batch_statistics_not_in_place() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "bn" type: "BatchNorm" bottom: "x" top: "y" }}"#,
        input("x", &[5, 2, 3, 4])
    );
    check(&net, &[Input::uniform("x", &[5, 2, 3, 4], -2.0, 2.0)], &["x"], &GradCheck::default());
}

#[test]
fn batchnorm_batch_statistics_in_place_then_scale_in_place() {
    // The Scale in place overwrites BatchNorm's top: its backward must use its own cache.
    let net = format!(
        r#"{}
        layer {{ name: "bn" type: "BatchNorm" bottom: "h" top: "h" batch_norm_param {{ eps: 0.001 }} }}
        layer {{ name: "sc" type: "Scale" bottom: "h" top: "h"
          scale_param {{ bias_term: true filler {{ type: "gaussian" mean: 1 std: 0.5 }} bias_filler {{ type: "gaussian" std: 0.5 }} }} }}"#,
        producer(&[4, 3, 2, 3], 3)
    );
    check(&net, &[Input::uniform("x", &[4, 3, 2, 3], -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn batchnorm_global_statistics() {
    // Stored sums divided by the factor 2: mean (0.2, -0.4, 0.1), variance (0.5, 1.5, 0.25).
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "bn" type: "BatchNorm" bottom: "x" top: "y" batch_norm_param {{ use_global_stats: true }}
          blobs {{ shape {{ dim: 3 }} data: 0.4 data: -0.8 data: 0.2 }}
          blobs {{ shape {{ dim: 3 }} data: 1.0 data: 3.0 data: 0.5 }}
          blobs {{ shape {{ dim: 1 }} data: 2 }} }}
        layer {{ name: "bn2" type: "BatchNorm" bottom: "y" top: "z" }}"#,
        input("x", &[2, 3, 5])
    );
    // In TEST, bn2 also uses its (zero) stored statistics: 0 mean, 0 variance, eps 1e-5.
    // The statistics are not learnt, so their (absent) gradients are not checked.
    let opts = GradCheck { phase: Phase::Test, params: false, ..Default::default() };
    check(&net, &[Input::uniform("x", &[2, 3, 5], -0.01, 0.01)], &["x"], &opts);
}

// -------------------------------------------------------------------------------- Scale

const GAUSS: &str = r#"{ type: "gaussian" mean: 0.5 std: 0.7 }"#;

#[test]
fn scale_learnt_with_bias_not_in_place() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "sc" type: "Scale" bottom: "x" top: "y" scale_param {{ bias_term: true filler {GAUSS} bias_filler {GAUSS} }} }}"#,
        input("x", &[2, 3, 4, 5])
    );
    check(&net, &[Input::uniform("x", &[2, 3, 4, 5], -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn scale_learnt_in_place_axis_and_num_axes_variants() {
    let net = format!(
        r#"{}
        layer {{ name: "s1" type: "Scale" bottom: "h" top: "h" scale_param {{ axis: 1 num_axes: 2 bias_term: true filler {GAUSS} bias_filler {GAUSS} }} }}
        layer {{ name: "s2" type: "Scale" bottom: "h" top: "h" scale_param {{ axis: -1 num_axes: -1 filler {GAUSS} }} }}
        layer {{ name: "s3" type: "Scale" bottom: "h" top: "h" scale_param {{ num_axes: 0 bias_term: true filler {GAUSS} bias_filler {GAUSS} }} }}
        layer {{ name: "s4" type: "Scale" bottom: "h" top: "y" scale_param {{ axis: 0 num_axes: -1 filler {GAUSS} }} }}"#,
        producer(&[2, 3, 3, 2], 3)
    );
    check(&net, &[Input::uniform("x", &[2, 3, 3, 2], -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn scale_from_a_bottom_broadcast_variants() {
    let shape = [2, 3, 4, 5];
    let variants: [(&str, &[usize], &str); 4] = [
        ("ch", &[3], ""),
        ("hw", &[4, 5], "axis: 2 bias_term: true bias_filler { type: \"gaussian\" std: 0.7 }"),
        ("nc", &[2, 3], "axis: 0"),
        ("w", &[5], "axis: -1"),
    ];
    let mut net = String::from("force_backward: true\n");
    let mut inputs = Vec::new();
    let mut names = Vec::new();
    for (v, s_shape, options) in variants {
        let (x, s): (&'static str, &'static str) = (format!("x_{v}").leak(), format!("s_{v}").leak());
        net += &input(x, &shape);
        net += &input(s, s_shape);
        net += &format!(
            r#"layer {{ name: "{v}" type: "Scale" bottom: "{x}" bottom: "{s}" top: "y_{v}" scale_param {{ {options} }} }}"#
        );
        inputs.push(Input::uniform(x, &shape, -1.0, 1.0));
        inputs.push(Input::uniform(s, s_shape, -1.5, 1.5));
        names.extend([x, s]);
    }
    check(&net, &inputs, &names, &GradCheck::default());
}

#[test]
fn scale_from_a_bottom_in_place_and_scalar() {
    let net = format!(
        r#"{}
        {}
        {}
        layer {{ name: "a" type: "Scale" bottom: "h" bottom: "s" top: "h" scale_param {{ axis: 1 }} }}
        layer {{ name: "b" type: "Scale" bottom: "h" bottom: "k" top: "y" scale_param {{ bias_term: true bias_filler {GAUSS} }} }}"#,
        producer(&[2, 3, 2, 3], 3),
        input("s", &[3, 2]),
        r#"layer { name: "k" type: "Input" top: "k" input_param { shape { } } }"#,
    );
    check(
        &net,
        &[
            Input::uniform("x", &[2, 3, 2, 3], -1.0, 1.0),
            Input::uniform("s", &[3, 2], -1.5, 1.5),
            Input::uniform("k", &[], -1.5, 1.5),
        ],
        &["x", "s", "k"],
        &GradCheck::default(),
    );
}

// --------------------------------------------------------------------------------- Bias

#[test]
fn bias_learnt_and_from_a_bottom_in_place_and_not() {
    let net = format!(
        r#"{}
        {}
        layer {{ name: "b1" type: "Bias" bottom: "h" top: "h" bias_param {{ axis: 1 num_axes: 2 filler {GAUSS} }} }}
        layer {{ name: "b2" type: "Bias" bottom: "h" bottom: "b" top: "h2" bias_param {{ axis: -2 }} }}
        {}
        layer {{ name: "b3" type: "Bias" bottom: "h2" bottom: "c" top: "h2" bias_param {{ axis: 2 }} }}
        layer {{ name: "b4" type: "Bias" bottom: "h2" top: "y" bias_param {{ num_axes: 0 filler {GAUSS} }} }}"#,
        producer(&[2, 3, 4, 2], 3),
        input("b", &[4, 2]),
        input("c", &[4]),
    );
    check(
        &net,
        &[
            Input::uniform("x", &[2, 3, 4, 2], -1.0, 1.0),
            Input::uniform("b", &[4, 2], -1.0, 1.0),
            Input::uniform("c", &[4], -1.0, 1.0),
        ],
        &["x", "b", "c"],
        &GradCheck::default(),
    );
}

// ---------------------------------------------------------------------------------- LRN

#[test]
fn lrn_across_channels() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "l3" type: "LRN" bottom: "x" top: "y3" lrn_param {{ local_size: 3 alpha: 0.8 beta: 0.75 k: 1.5 }} }}
        {}
        layer {{ name: "l5" type: "LRN" bottom: "x2" top: "y5" lrn_param {{ local_size: 7 alpha: 1.3 beta: 0.6 k: 2 }} }}"#,
        input("x", &[2, 5, 3, 3]),
        input("x2", &[1, 3, 2, 5]),
    );
    check(
        &net,
        &[Input::uniform("x", &[2, 5, 3, 3], -1.5, 1.5), Input::uniform("x2", &[1, 3, 2, 5], -1.5, 1.5)],
        &["x", "x2"],
        &GradCheck::default(),
    );
}

#[test]
fn lrn_within_channel() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "l3" type: "LRN" bottom: "x" top: "y3" lrn_param {{ local_size: 3 alpha: 0.9 beta: 0.75 norm_region: WITHIN_CHANNEL }} }}
        {}
        layer {{ name: "l5" type: "LRN" bottom: "x2" top: "y5" lrn_param {{ local_size: 5 alpha: 2 beta: 0.5 norm_region: WITHIN_CHANNEL }} }}"#,
        input("x", &[2, 2, 5, 4]),
        input("x2", &[1, 2, 3, 6]),
    );
    check(
        &net,
        &[Input::uniform("x", &[2, 2, 5, 4], -1.5, 1.5), Input::uniform("x2", &[1, 2, 3, 6], -1.5, 1.5)],
        &["x", "x2"],
        &GradCheck::default(),
    );
}

// ---------------------------------------------------------------------------------- MVN

fn mvn_net(options: &str, in_place: bool) -> String {
    if in_place {
        format!(
            r#"{}
            layer {{ name: "mvn" type: "MVN" bottom: "h" top: "h" mvn_param {{ {options} }} }}
            layer {{ name: "sc" type: "Scale" bottom: "h" top: "h" scale_param {{ filler {GAUSS} }} }}"#,
            producer(&[2, 3, 3, 4], 3)
        )
    } else {
        format!(
            r#"force_backward: true
            {}
            layer {{ name: "mvn" type: "MVN" bottom: "x" top: "y" mvn_param {{ {options} }} }}"#,
            input("x", &[2, 3, 3, 4])
        )
    }
}

#[test]
fn mvn_all_options() {
    for options in [
        "",
        "normalize_variance: false",
        "across_channels: true",
        "across_channels: true normalize_variance: false",
        // Caffe's backward treats `sqrt(var) + eps` as `sqrt(var)` where it differentiates the
        // deviation, so its gradient is off by about eps / std: exact to 1e-3 for a small eps.
        "eps: 0.0001 across_channels: true",
    ] {
        check(
            &mvn_net(options, false),
            &[Input::uniform("x", &[2, 3, 3, 4], -2.0, 2.0)],
            &["x"],
            &GradCheck::default(),
        );
    }
}

#[test]
fn mvn_in_place_under_an_in_place_scale() {
    // The Scale overwrites MVN's output; MVN's backward must use its own copy.
    for options in ["", "across_channels: true", "normalize_variance: false"] {
        check(&mvn_net(options, true), &[Input::uniform("x", &[2, 3, 3, 4], -1.0, 1.0)], &["x"], &GradCheck::default());
    }
}
