//! Finite-difference gradient checks (Caffe's GradientChecker method) for the structural and
//! element-wise tensor layers: Concat, Slice, Split, Silence, Flatten, Reshape, Crop, Tile,
//! Reduction, Eltwise, BatchReindex, Embed, Parameter, Filter, Im2col.

mod common;

use common::gradcheck::{GradCheck, Input, check};

fn input(name: &str, shape: &[usize]) -> String {
    let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
    format!(r#"layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims}}} }} }}"#)
}

#[test]
fn concat_along_first_last_and_legacy_axes() {
    let net = format!(
        r#"force_backward: true
        {} {} {} {}
        layer {{ name: "c0" type: "Concat" bottom: "a" bottom: "b" top: "ab" concat_param {{ axis: 0 }} }}
        layer {{ name: "c1" type: "Concat" bottom: "ab" bottom: "c" top: "abc" concat_param {{ axis: -1 }} }}
        layer {{ name: "c2" type: "Concat" bottom: "abc" bottom: "d" top: "y" concat_param {{ concat_dim: 1 }} }}"#,
        input("a", &[2, 3, 4]),
        input("b", &[1, 3, 4]),
        input("c", &[3, 3, 2]),
        input("d", &[3, 1, 6]),
    );
    check(
        &net,
        &[
            Input::uniform("a", &[2, 3, 4], -1.0, 1.0),
            Input::uniform("b", &[1, 3, 4], -1.0, 1.0),
            Input::uniform("c", &[3, 3, 2], -1.0, 1.0),
            Input::uniform("d", &[3, 1, 6], -1.0, 1.0),
        ],
        &["a", "b", "c", "d"],
        &GradCheck::default(),
    );
}

#[test]
fn slice_with_points_equal_parts_and_negative_axis() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "s0" type: "Slice" bottom: "x" top: "p" top: "q" top: "r" slice_param {{ axis: 1 slice_point: 1 slice_point: 4 }} }}
        layer {{ name: "s1" type: "Slice" bottom: "q" top: "q0" top: "q1" top: "q2" slice_param {{ axis: -1 }} }}
        layer {{ name: "s2" type: "Slice" bottom: "r" top: "r0" top: "r1" slice_param {{ slice_dim: 0 }} }}"#,
        input("x", &[4, 6, 3]),
    );
    check(&net, &[Input::uniform("x", &[4, 6, 3], -1.0, 1.0)], &["x"], &GradCheck::default());
}

/// `h` feeds four layers (the net inserts a Split whose backward sums their gradients), one of
/// them a Silence whose gradient is zero.
#[test]
fn split_of_a_blob_read_by_several_layers_and_silence() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "h"
          inner_product_param {{ num_output: 6 weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "gaussian" std: 0.5 }} }} }}
        layer {{ name: "sq" type: "Reduction" bottom: "h" top: "sq" reduction_param {{ operation: SUMSQ axis: 1 }} }}
        layer {{ name: "ip2" type: "InnerProduct" bottom: "h" top: "h2"
          inner_product_param {{ num_output: 6 weight_filler {{ type: "gaussian" std: 0.5 }} }} }}
        layer {{ name: "prod" type: "Eltwise" bottom: "h" bottom: "h2" top: "prod" eltwise_param {{ operation: PROD }} }}
        layer {{ name: "silence" type: "Silence" bottom: "h" }}"#,
        input("x", &[3, 5]),
    );
    check(&net, &[Input::uniform("x", &[3, 5], -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn flatten_and_reshape_options() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "f0" type: "Flatten" bottom: "x" top: "f0" flatten_param {{ axis: 1 end_axis: 2 }} }}
        layer {{ name: "r0" type: "Reshape" bottom: "f0" top: "r0" reshape_param {{ shape {{ dim: 0 dim: 3 dim: -1 }} }} }}
        layer {{ name: "r1" type: "Reshape" bottom: "r0" top: "r1" reshape_param {{ shape {{ dim: -1 dim: 2 }} axis: -2 num_axes: 1 }} }}
        layer {{ name: "f1" type: "Flatten" bottom: "r1" top: "y" flatten_param {{ axis: -3 }} }}"#,
        input("x", &[2, 3, 4, 5]),
    );
    check(&net, &[Input::uniform("x", &[2, 3, 4, 5], -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn crop_with_one_and_per_axis_offsets() {
    let net = format!(
        r#"force_backward: true
        {} {} {}
        layer {{ name: "c0" type: "Crop" bottom: "x" bottom: "like" top: "c0" crop_param {{ axis: 1 offset: 1 offset: 0 offset: 2 }} }}
        layer {{ name: "c1" type: "Crop" bottom: "c0" bottom: "like2" top: "c1" crop_param {{ axis: -2 offset: 1 }} }}"#,
        input("x", &[2, 4, 5, 6]),
        input("like", &[1, 2, 4, 3]),
        input("like2", &[2, 2, 3, 2]),
    );
    check(
        &net,
        &[
            Input::uniform("x", &[2, 4, 5, 6], -1.0, 1.0),
            Input::uniform("like", &[1, 2, 4, 3], -1.0, 1.0),
            Input::uniform("like2", &[2, 2, 3, 2], -1.0, 1.0),
        ],
        &["x"],
        &GradCheck::default(),
    );
}

#[test]
fn tile_along_outer_and_inner_axes() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "t0" type: "Tile" bottom: "x" top: "t0" tile_param {{ axis: 0 tiles: 3 }} }}
        layer {{ name: "t1" type: "Tile" bottom: "t0" top: "t1" tile_param {{ axis: -1 tiles: 2 }} }}
        layer {{ name: "t2" type: "Tile" bottom: "t1" top: "y" tile_param {{ tiles: 2 }} }}"#,
        input("x", &[2, 3, 4]),
    );
    check(&net, &[Input::uniform("x", &[2, 3, 4], -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn reduction_each_operation_with_coeff_and_axis() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "sum" type: "Reduction" bottom: "x" top: "sum" reduction_param {{ operation: SUM axis: 1 coeff: 2 }} }}
        layer {{ name: "asum" type: "Reduction" bottom: "x" top: "asum" reduction_param {{ operation: ASUM axis: -1 coeff: -0.5 }} }}
        layer {{ name: "sumsq" type: "Reduction" bottom: "x" top: "sumsq" reduction_param {{ operation: SUMSQ coeff: 0.5 }} loss_weight: 1.5 }}
        layer {{ name: "mean" type: "Reduction" bottom: "x" top: "mean" reduction_param {{ operation: MEAN axis: 2 coeff: 3 }} }}"#,
        input("x", &[2, 3, 4, 2]),
    );
    // ASUM is not differentiable at 0.
    let opts = GradCheck { kink: Some((0.0, 0.02)), ..Default::default() };
    check(&net, &[Input::uniform("x", &[2, 3, 4, 2], -1.0, 1.0)], &["x"], &opts);
}

/// Three inputs whose element-wise maximum wins by at least 0.1, so that no finite-difference
/// step changes the winner.
fn separated_inputs(n: usize) -> [Vec<f32>; 3] {
    let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 23) as f32 / 23.0) * 2.0 - 1.0).collect();
    let b: Vec<f32> = a.iter().enumerate().map(|(i, v)| v + [0.3, -0.2, -0.15][i % 3]).collect();
    let c: Vec<f32> = a.iter().enumerate().map(|(i, v)| v + [-0.25, 0.35, -0.1][i % 3]).collect();
    [a, b, c]
}

#[test]
fn eltwise_prod_stable_and_unstable_sum_with_coeffs_max() {
    let net = format!(
        r#"force_backward: true
        {} {} {}
        layer {{ name: "prod" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "prod" eltwise_param {{ operation: PROD }} }}
        layer {{ name: "uprod" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "uprod"
          eltwise_param {{ operation: PROD stable_prod_grad: false }} }}
        layer {{ name: "sum" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "sum" eltwise_param {{ operation: SUM coeff: 0.5 coeff: -2 coeff: 1.5 }} }}
        layer {{ name: "max" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "max" eltwise_param {{ operation: MAX }} }}"#,
        input("a", &[2, 3, 5]),
        input("b", &[2, 3, 5]),
        input("c", &[2, 3, 5]),
    );
    let [a, b, c] = separated_inputs(30);
    check(
        &net,
        &[Input::given("a", &[2, 3, 5], a), Input::given("b", &[2, 3, 5], b), Input::given("c", &[2, 3, 5], c)],
        &["a", "b", "c"],
        &GradCheck::default(),
    );
}

#[test]
fn batch_reindex_with_repeated_and_missing_rows() {
    let net = format!(
        r#"force_backward: true
        {} {}
        layer {{ name: "re" type: "BatchReindex" bottom: "x" bottom: "idx" top: "y" }}"#,
        input("x", &[4, 3, 2]),
        input("idx", &[5]),
    );
    check(
        &net,
        &[Input::uniform("x", &[4, 3, 2], -1.0, 1.0), Input::given("idx", &[5], vec![2.0, 0.0, 2.0, 3.0, 0.0])],
        &["x"],
        &GradCheck::default(),
    );
}

#[test]
fn embed_weights_and_bias() {
    let net = format!(
        r#"force_backward: true
        {}
        layer {{ name: "emb" type: "Embed" bottom: "ids" top: "e"
          embed_param {{ num_output: 4 input_dim: 5 weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "gaussian" std: 0.5 }} }} }}
        layer {{ name: "sq" type: "Reduction" bottom: "e" top: "loss" reduction_param {{ operation: SUMSQ }} loss_weight: 1 }}"#,
        input("ids", &[2, 3]),
    );
    let ids = vec![4.0, 0.0, 4.0, 2.0, 1.0, 4.0];
    check(&net, &[Input::given("ids", &[2, 3], ids)], &[], &GradCheck::default());
}

#[test]
fn parameter_blob_as_a_top() {
    let net = format!(
        r#"force_backward: true
        {} {}
        layer {{ name: "p" type: "Parameter" top: "p" parameter_param {{ shape {{ dim: 2 dim: 3 }} }} }}
        layer {{ name: "sum" type: "Eltwise" bottom: "x" bottom: "p" top: "s" eltwise_param {{ coeff: 1 coeff: -0.5 }} }}
        layer {{ name: "prod" type: "Eltwise" bottom: "s" bottom: "x2" top: "y" eltwise_param {{ operation: PROD }} }}"#,
        input("x", &[2, 3]),
        input("x2", &[2, 3]),
    );
    check(
        &net,
        &[Input::uniform("x", &[2, 3], -1.0, 1.0), Input::uniform("x2", &[2, 3], -1.0, 1.0)],
        &["x", "x2"],
        &GradCheck::default(),
    );
}

/// Filter keeps items 0, 2 and 3 of two data bottoms; its tops' size depends on the selector,
/// so they feed losses (the checker weights outputs by their size when the net is built).
#[test]
fn filter_two_data_bottoms() {
    let net = format!(
        r#"force_backward: true
        {} {} {}
        layer {{ name: "f" type: "Filter" bottom: "x" bottom: "v" bottom: "s" top: "fx" top: "fv" }}
        layer {{ name: "lx" type: "Reduction" bottom: "fx" top: "lx" reduction_param {{ operation: SUMSQ }} loss_weight: 1 }}
        layer {{ name: "lv" type: "Reduction" bottom: "fv" top: "lv" reduction_param {{ operation: SUMSQ }} loss_weight: 0.5 }}"#,
        input("x", &[5, 3, 2]),
        input("v", &[5, 4]),
        input("s", &[5, 1]),
    );
    check(
        &net,
        &[
            Input::uniform("x", &[5, 3, 2], -1.0, 1.0),
            Input::uniform("v", &[5, 4], -1.0, 1.0),
            Input::given("s", &[5, 1], vec![1.0, 0.0, -2.0, 0.5, 0.0]),
        ],
        &["x", "v"],
        &GradCheck::default(),
    );
}

/// Im2col in 2-d (rectangular kernel, padding, stride, dilation) and 3-d.
#[test]
fn im2col_2d_and_3d() {
    let net = format!(
        r#"force_backward: true
        {} {}
        layer {{ name: "c2" type: "Im2col" bottom: "x" top: "c2"
          convolution_param {{ kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 stride_h: 1 stride_w: 2 dilation: 2 }} }}
        layer {{ name: "c3" type: "Im2col" bottom: "x3" top: "c3"
          convolution_param {{ kernel_size: 2 pad: 1 pad: 0 pad: 1 stride: 1 stride: 2 stride: 1 }} }}"#,
        input("x", &[2, 2, 4, 5]),
        input("x3", &[1, 2, 3, 4, 3]),
    );
    check(
        &net,
        &[Input::uniform("x", &[2, 2, 4, 5], -1.0, 1.0), Input::uniform("x3", &[1, 2, 3, 4, 3], -1.0, 1.0)],
        &["x", "x3"],
        &GradCheck::default(),
    );
}
