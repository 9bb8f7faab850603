//! Finite-difference gradient checks (Caffe's GradientChecker method) for every layer with a
//! backward, on shapes of their own. Each layer family has its own tests/gradients_<family>.rs.

mod common;

use common::gradcheck::{check, GradCheck, Input};

#[test]
fn convolution_grouped_dilated_strided() {
    let net = r#"
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 4 dim: 7 dim: 6 } } }
        layer { name: "conv" type: "Convolution" bottom: "x" top: "y"
          convolution_param { num_output: 6 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0
            dilation: 1 group: 2 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 } } }"#;
    check(net, &[Input::uniform("x", &[2, 4, 7, 6], -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn convolution_3d_and_deconvolution() {
    let net = r#"
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 dim: 4 dim: 3 dim: 5 } } }
        layer { name: "conv" type: "Convolution" bottom: "x" top: "y"
          convolution_param { num_output: 3 kernel_size: 2 dilation: 1 dilation: 1 dilation: 2 pad: 1
            weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 } } }
        layer { name: "deconv" type: "Deconvolution" bottom: "y" top: "z"
          convolution_param { num_output: 2 kernel_size: 3 stride: 2 pad: 1
            weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 } } }"#;
    check(net, &[Input::uniform("x", &[1, 2, 4, 3, 5], -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn inner_product_both_layouts_and_euclidean_loss() {
    let net = r#"
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 3 dim: 2 dim: 4 } } }
        layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 3 dim: 2 dim: 5 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "h"
          inner_product_param { num_output: 6 axis: 2 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 } } }
        layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "y"
          inner_product_param { num_output: 5 axis: -1 transpose: true weight_filler { type: "gaussian" std: 0.5 } } }
        layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" loss_weight: 2 }"#;
    check(
        net,
        &[Input::uniform("x", &[3, 2, 4], -1.0, 1.0), Input::uniform("t", &[3, 2, 5], -1.0, 1.0)],
        &["x", "t"],
        &GradCheck::default(),
    );
}

#[test]
fn relu_leaky_in_place() {
    let net = r#"
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 4 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "h"
          inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 } } }
        layer { name: "relu" type: "ReLU" bottom: "h" top: "h" relu_param { negative_slope: 0.1 } }"#;
    let opts = GradCheck { kink: Some((0.0, 0.02)), params: false, ..Default::default() };
    check(net, &[Input::uniform("x", &[2, 3, 4], -1.0, 1.0)], &["x"], &opts);
}

#[test]
fn a_loss_layer_without_a_top_still_counts() {
    // Caffe's AutoTopBlobs: the loss gets an anonymous top.
    let net = r#"
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "loss" type: "EuclideanLoss" bottom: "x" bottom: "t" }"#;
    check(net, &[Input::uniform("x", &[2, 3], -1.0, 1.0), Input::uniform("t", &[2, 3], -1.0, 1.0)], &["x"], &GradCheck::default());
}
