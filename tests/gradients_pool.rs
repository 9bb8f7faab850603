//! Finite-difference gradient checks (Caffe's GradientChecker method) for Pooling and
//! Upsample, on shapes and options of their own: overlapping and clipped windows, padding,
//! rectangular kernels, odd sizes, global pooling, with and without the mask top, and
//! Pool -> Upsample chains.
//!
//! Max pooling is differentiable only away from ties, so its inputs are distinct values at
//! least 5 finite-difference steps apart (Caffe's own pooling test does the same).

mod common;

use common::gradcheck::{check, GradCheck, Input};
use crema::rng::Rng;

/// `shape`'s count of distinct values, 0.05 apart, in a shuffled order.
fn distinct(shape: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
    Rng::new(seed).shuffle(&mut v);
    v
}

fn input_net(shape: &[usize], layers: &str) -> String {
    let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
    format!(
        r#"force_backward: true
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }}
        {layers}"#
    )
}

fn max_check(shape: &[usize], pooling_param: &str, mask_top: bool) {
    let mask = if mask_top { r#"top: "mask""# } else { "" };
    let net = input_net(shape, &format!(r#"layer {{ name: "pool" type: "Pooling" bottom: "x" top: "y" {mask} pooling_param {{ {pooling_param} }} }}"#));
    check(&net, &[Input::given("x", shape, distinct(shape, 7))], &["x"], &GradCheck::default());
}

fn ave_check(shape: &[usize], pooling_param: &str) {
    let net = input_net(shape, &format!(r#"layer {{ name: "pool" type: "Pooling" bottom: "x" top: "y" pooling_param {{ pool: AVE {pooling_param} }} }}"#));
    check(&net, &[Input::uniform("x", shape, -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn max_overlapping_padded_with_mask_top() {
    max_check(&[2, 3, 7, 9], "kernel_size: 3 stride: 2 pad: 1", true);
}

#[test]
fn max_overlapping_padded_without_mask_top() {
    max_check(&[2, 3, 7, 9], "kernel_size: 3 stride: 2 pad: 1", false);
}

#[test]
fn max_stride_one_rectangular() {
    // Each input is in up to 6 windows: the gradient accumulates over them.
    max_check(&[1, 2, 6, 5], "kernel_h: 3 kernel_w: 2 stride: 1", false);
    max_check(&[1, 2, 6, 5], "kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 2 pad_w: 1", true);
}

#[test]
fn max_2x2_odd_sizes_ceil_and_floor() {
    max_check(&[2, 2, 9, 7], "kernel_size: 2 stride: 2", false);
    max_check(&[2, 2, 9, 7], "kernel_size: 2 stride: 2", true);
    max_check(&[2, 2, 9, 7], "kernel_size: 2 stride: 2 round_mode: FLOOR", false);
}

#[test]
fn ave_padded_clipped() {
    // Windows reach into the padding (counted in the divisor) and past it (not counted).
    ave_check(&[2, 3, 7, 9], "kernel_size: 3 stride: 2 pad: 1");
    ave_check(&[2, 2, 6, 5], "kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 2 pad_w: 1");
    ave_check(&[1, 2, 8, 8], "kernel_size: 3 stride: 2 round_mode: FLOOR");
}

#[test]
fn global_max_and_ave() {
    max_check(&[2, 4, 5, 6], "global_pooling: true", false);
    max_check(&[2, 4, 5, 6], "global_pooling: true", true);
    ave_check(&[2, 4, 5, 3], "global_pooling: true");
}

fn chain_check(shape: &[usize], pooling_param: &str, upsample_param: &str) {
    let net = input_net(
        shape,
        &format!(
            r#"layer {{ name: "pool" type: "Pooling" bottom: "x" top: "p" top: "mask" pooling_param {{ {pooling_param} }} }}
            layer {{ name: "unpool" type: "Upsample" bottom: "p" bottom: "mask" top: "y" upsample_param {{ {upsample_param} }} }}"#
        ),
    );
    check(&net, &[Input::given("x", shape, distinct(shape, 9))], &["x"], &GradCheck::default());
}

#[test]
fn pool_upsample_chain_odd_sizes() {
    chain_check(&[2, 3, 7, 9], "kernel_size: 2 stride: 2", "upsample_h: 7 upsample_w: 9");
    chain_check(&[2, 3, 7, 9], "kernel_size: 2 stride: 2", "scale: 2 pad_out_h: true pad_out_w: true");
    chain_check(&[1, 2, 8, 6], "kernel_size: 2 stride: 2", "scale: 2");
    // Padded windows (still disjoint).
    chain_check(&[1, 2, 7, 7], "kernel_size: 2 stride: 2 pad: 1", "upsample_h: 7 upsample_w: 7");
    // Not checked: overlapping windows. Where one input is the argmax of two windows, the
    // forward scatter writes it once but the fork's backward gathers its diff into both
    // windows, and max pooling's backward then adds them: the chain's "gradient" is twice the
    // true one there. That is the fork's formula, reproduced as it is.
}

#[test]
fn upsample_data_gradient_apart_from_the_pooling() {
    // The upsampled data is an input of its own; the mask comes from pooling another input.
    let net = r#"force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 2 dim: 9 dim: 7 } } }
        layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 2 dim: 2 dim: 5 dim: 4 } } }
        layer { name: "pool" type: "Pooling" bottom: "x" top: "p" top: "mask" pooling_param { kernel_size: 2 stride: 2 } }
        layer { name: "unpool" type: "Upsample" bottom: "d" bottom: "mask" top: "y" upsample_param { scale_h: 2 scale_w: 2 pad_out_h: true pad_out_w: true } }"#;
    check(
        net,
        &[Input::given("x", &[2, 2, 9, 7], distinct(&[2, 2, 9, 7], 3)), Input::uniform("d", &[2, 2, 5, 4], -1.0, 1.0)],
        &["x", "d"],
        &GradCheck::default(),
    );
}
