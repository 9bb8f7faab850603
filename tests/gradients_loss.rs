//! Finite-difference gradient checks (Caffe's GradientChecker method) for the softmax and loss
//! family: Softmax, SoftmaxWithLoss, SigmoidCrossEntropyLoss, InfogainLoss. Labels and targets
//! are inputs with given values and are not checked (no gradient flows to them).

mod common;

use common::gradcheck::{check, GradCheck, Input};
use crema::backend::cpu::Cpu;
use crema::net::Net;
use crema::proto::{NetParameter, NetState, Phase};

/// Labels for `n` positions cycling through `0..classes`, with `ignore` at every fifth.
fn labels(n: usize, classes: usize, ignore: Option<f32>) -> Vec<f32> {
    (0..n)
        .map(|i| match ignore {
            Some(v) if i % 5 == 2 => v,
            _ => ((i * 7 + 1) % classes) as f32,
        })
        .collect()
}

#[test]
fn softmax_axis_1() {
    let net = r#"
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 5 dim: 3 dim: 4 } } }
        layer { name: "sm" type: "Softmax" bottom: "x" top: "y" }"#;
    check(net, &[Input::uniform("x", &[2, 5, 3, 4], -2.0, 2.0)], &["x"], &GradCheck::default());
}

#[test]
fn softmax_axis_2_in_place_and_last_axis() {
    // A 1x1 convolution first, so that the in-place softmax does not overwrite the input.
    let net = r#"
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 3 } } }
        layer { name: "conv" type: "Convolution" bottom: "x" top: "h"
          convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.7 } } }
        layer { name: "sm" type: "Softmax" bottom: "h" top: "h" softmax_param { axis: 2 } }
        layer { name: "sm2" type: "Softmax" bottom: "h" top: "y" softmax_param { axis: -1 } }"#;
    check(net, &[Input::uniform("x", &[2, 3, 5, 3], -2.0, 2.0)], &["x"], &GradCheck::default());
}

/// A SoftmaxWithLoss net on scores `(2, 4, 3, 5)` with labels `(2, 1, 3, 5)` (class 2 ignored
/// where `ignore_label: 2` is set).
fn softmax_loss_net(loss_param: &str, extra: &str) -> String {
    format!(
        r#"
        force_backward: true
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 4 dim: 3 dim: 5 }} }} }}
        layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ dim: 2 dim: 1 dim: 3 dim: 5 }} }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "loss" {extra}
          loss_param {{ {loss_param} }} }}"#
    )
}

fn softmax_loss_inputs(ignore: Option<f32>) -> Vec<Input> {
    vec![Input::uniform("x", &[2, 4, 3, 5], -2.0, 2.0), Input::given("label", &[2, 1, 3, 5], labels(30, 4, ignore))]
}

#[test]
fn softmax_loss_every_normalization_with_ignore_label() {
    for mode in ["FULL", "VALID", "BATCH_SIZE", "NONE"] {
        let net = softmax_loss_net(&format!("ignore_label: 2 normalization: {mode}"), "");
        check(&net, &softmax_loss_inputs(None), &["x"], &GradCheck::default());
    }
}

#[test]
fn softmax_loss_legacy_normalize_and_ignore_label_outside_the_classes() {
    for normalize in ["true", "false"] {
        let net = softmax_loss_net(&format!("ignore_label: -1 normalize: {normalize}"), "");
        check(&net, &softmax_loss_inputs(Some(-1.0)), &["x"], &GradCheck::default());
    }
}

#[test]
fn softmax_loss_segnet_class_weights_with_loss_weight_2() {
    let net = softmax_loss_net(
        "ignore_label: 255 weight_by_label_freqs: true class_weighting: 0.2 class_weighting: 1.0 \
         class_weighting: 3.5 class_weighting: 1.7",
        "loss_weight: 2",
    );
    check(&net, &softmax_loss_inputs(Some(255.0)), &["x"], &GradCheck::default());
}

#[test]
fn softmax_loss_with_prob_top() {
    // The probabilities are a second top, with a loss weight so that the checker leaves them
    // out of its random objective: Caffe's backward ignores their diff, and their sum is
    // constant, so the objective's gradient is the loss's alone. Loss weight 10 on the loss
    // makes the VALID-normalised gradients large enough for a 1e-3 check to see a 5% error.
    let net = softmax_loss_net("normalization: VALID", r#"top: "prob" loss_weight: 10 loss_weight: 0.5"#);
    check(&net, &softmax_loss_inputs(None), &["x"], &GradCheck::default());
}

#[test]
fn softmax_loss_axis_2_odd_shape() {
    let net = r#"
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 3 dim: 2 dim: 3 } } }
        layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 3 dim: 2 } } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "loss" loss_weight: 0.7
          softmax_param { axis: 2 } loss_param { ignore_label: 1 } }"#;
    let inputs = [Input::uniform("x", &[3, 2, 3], -2.0, 2.0), Input::given("label", &[3, 2], labels(6, 3, None))];
    check(net, &inputs, &["x"], &GradCheck::default());
}

#[test]
fn softmax_loss_prob_top_equals_softmax() {
    let build = |text: &str| {
        let mut p: NetParameter = crema::prototxt::parse(text, "test").unwrap();
        p.state = Some(NetState { phase: Some(Phase::Train as i32), ..Default::default() });
        Net::new(Cpu::new(), &p, 1).unwrap()
    };
    let mut with_loss = build(&softmax_loss_net("", r#"top: "prob""#));
    let mut plain = build(
        r#"layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 4 dim: 3 dim: 5 } } }
           layer { name: "sm" type: "Softmax" bottom: "x" top: "prob" }"#,
    );
    let be = Cpu::new();
    let x: Vec<f32> = (0..120).map(|i| ((i * 37) % 23) as f32 / 5.0 - 2.0).collect();
    for net in [&mut with_loss, &mut plain] {
        net.blob_mut("x").unwrap().set_data(&be, &x).unwrap();
    }
    with_loss.blob_mut("label").unwrap().set_data(&be, &labels(30, 4, None)).unwrap();
    with_loss.forward().unwrap();
    plain.forward().unwrap();
    let a = with_loss.blob("prob").unwrap().data_to_vec(&be).unwrap();
    let b = plain.blob("prob").unwrap().data_to_vec(&be).unwrap();
    assert_eq!(with_loss.blob("prob").unwrap().shape(), &[2, 4, 3, 5]);
    assert_eq!(a, b);
}

#[test]
fn sigmoid_cross_entropy_default_and_valid_with_ignore() {
    let targets: Vec<f32> = (0..60).map(|i| if i % 7 == 3 { -1.0 } else { ((i * 5) % 11) as f32 / 10.0 }).collect();
    for loss_param in ["", "loss_param { ignore_label: -1 normalization: VALID }", "loss_param { normalize: false }"] {
        let net = format!(
            r#"
            force_backward: true
            layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 3 dim: 4 dim: 5 }} }} }}
            layer {{ name: "t" type: "Input" top: "t" input_param {{ shape {{ dim: 3 dim: 20 }} }} }}
            layer {{ name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "loss" loss_weight: 1.5
              {loss_param} }}"#
        );
        // Ignored targets only where ignore_label is set; elsewhere -1 is a (strange) target.
        let t: Vec<f32> = if loss_param.contains("ignore") { targets.clone() } else { targets.iter().map(|v| v.abs()).collect() };
        let inputs = [Input::uniform("x", &[3, 4, 5], -4.0, 4.0), Input::given("t", &[3, 20], t)];
        check(&net, &inputs, &["x"], &GradCheck::default());
    }
}

/// A row-stochastic-ish infogain matrix for `c` classes.
fn infogain_matrix(c: usize) -> Vec<f32> {
    (0..c * c).map(|i| if i / c == i % c { 1.0 } else { ((i * 3) % 5) as f32 / 10.0 }).collect()
}

#[test]
fn infogain_loss_h_from_bottom() {
    for loss_param in ["", "loss_param { ignore_label: 0 normalization: FULL }"] {
        let net = format!(
            r#"
            force_backward: true
            layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 dim: 2 dim: 3 }} }} }}
            layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ dim: 2 dim: 1 dim: 2 dim: 3 }} }} }}
            layer {{ name: "H" type: "Input" top: "H" input_param {{ shape {{ dim: 1 dim: 1 dim: 3 dim: 3 }} }} }}
            layer {{ name: "loss" type: "InfogainLoss" bottom: "x" bottom: "label" bottom: "H" top: "loss" {loss_param} }}"#
        );
        let inputs = [
            Input::uniform("x", &[2, 3, 2, 3], -2.0, 2.0),
            Input::given("label", &[2, 1, 2, 3], labels(12, 3, None)),
            Input::given("H", &[1, 1, 3, 3], infogain_matrix(3)),
        ];
        check(&net, &inputs, &["x"], &GradCheck::default());
    }
}

#[test]
fn infogain_loss_h_from_source_axis_2_with_prob_top() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("H.binaryproto");
    crema::io::write_binaryproto(&path, &crema::io::BlobData::new(vec![1, 1, 4, 4], infogain_matrix(4))).unwrap();
    let net = format!(
        r#"
        force_backward: true
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 dim: 4 }} }} }}
        layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
        layer {{ name: "loss" type: "InfogainLoss" bottom: "x" bottom: "label" top: "loss" top: "prob"
          loss_weight: 2 loss_weight: 1
          infogain_loss_param {{ source: "{}" axis: 2 }} loss_param {{ normalization: BATCH_SIZE }} }}"#,
        path.display()
    );
    let inputs = [Input::uniform("x", &[2, 3, 4], -2.0, 2.0), Input::given("label", &[2, 3], labels(6, 4, None))];
    check(&net, &inputs, &["x"], &GradCheck::default());
}

/// ContrastiveLoss on 4 pairs of 3-d features, similar and dissimilar, every dissimilar pair
/// inside the margin (where the loss has a gradient), in Caffe's current and legacy forms, with
/// a loss weight. Caffe's gradient divides by `d + 1e-4`, not `d`: within the threshold here.
#[test]
fn contrastive_loss_both_forms() {
    for (param, weight) in [("margin: 3", ""), ("margin: 3 legacy_version: true", "loss_weight: 2")] {
        let net = format!(
            r#"
            force_backward: true
            layer {{ name: "a" type: "Input" top: "a" input_param {{ shape {{ dim: 4 dim: 3 }} }} }}
            layer {{ name: "b" type: "Input" top: "b" input_param {{ shape {{ dim: 4 dim: 3 dim: 1 dim: 1 }} }} }}
            layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 4 }} }} }}
            layer {{ name: "loss" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "y" top: "loss" {weight}
              contrastive_loss_param {{ {param} }} }}"#
        );
        let inputs = [
            Input::uniform("a", &[4, 3], -0.5, 0.5),
            Input::uniform("b", &[4, 3, 1, 1], -0.5, 0.5),
            Input::given("y", &[4], vec![1.0, 0.0, 1.0, 0.0]),
        ];
        check(&net, &inputs, &["a", "b"], &GradCheck::default());
    }
}

/// HingeLoss, L1 and L2, on scores kept away from the hinges at `s = ±1`.
#[test]
fn hinge_loss_l1_and_l2() {
    let scores: Vec<f32> = (0..20).map(|i| ((i * 37 % 17) as f32 - 8.5) / 5.0).collect();
    for norm in ["L1", "L2"] {
        let net = format!(
            r#"
            force_backward: true
            layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 4 dim: 5 }} }} }}
            layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ dim: 4 }} }} }}
            layer {{ name: "loss" type: "HingeLoss" bottom: "x" bottom: "label" top: "loss" hinge_loss_param {{ norm: {norm} }} }}"#
        );
        let inputs = [Input::given("x", &[4, 5], scores.clone()), Input::given("label", &[4], vec![0.0, 3.0, 4.0, 1.0])];
        check(&net, &inputs, &["x"], &GradCheck::default());
    }
}

#[test]
fn multinomial_logistic_loss() {
    let net = r#"
        force_backward: true
        layer { name: "p" type: "Input" top: "p" input_param { shape { dim: 3 dim: 4 dim: 1 dim: 1 } } }
        layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 3 dim: 1 dim: 1 dim: 1 } } }
        layer { name: "loss" type: "MultinomialLogisticLoss" bottom: "p" bottom: "label" top: "loss" loss_weight: 3 }"#;
    let inputs = [Input::uniform("p", &[3, 4, 1, 1], 0.2, 1.0), Input::given("label", &[3, 1, 1, 1], vec![2.0, 0.0, 3.0])];
    check(net, &inputs, &["p"], &GradCheck::default());
}
