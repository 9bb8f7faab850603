//! Finite-difference gradient checks of LSTMUnit (Caffe's GradientChecker method, through
//! `common::gradcheck`): both bottoms that take a gradient, with sequence continuation
//! indicators in {0, 1} (Caffe's forget-gate gradient `e * c_prev * f * (1 - f)` is the true one
//! only for a binary `cont`), one step and two chained steps, and nets where only one of the two
//! bottoms needs a gradient (the other diff is never written).

mod common;

use common::gradcheck::{check, GradCheck, Input};

fn input(name: &str, dims: &[usize]) -> String {
    let dims: String = dims.iter().map(|d| format!("dim: {d} ")).collect();
    format!("layer {{ name: '{name}' type: 'Input' top: '{name}' input_param {{ shape {{ {dims}}} }} }}\n")
}

fn no_params() -> GradCheck {
    GradCheck { params: false, ..Default::default() }
}

/// Continuation indicators for `n` sequences: alternately 1 and 0, starting with `first`.
fn cont(n: usize, first: f32) -> Vec<f32> {
    (0..n).map(|k| if k % 2 == 0 { first } else { 1.0 - first }).collect()
}

#[test]
fn lstm_unit_one_step() {
    for (n, d) in [(1, 1), (3, 4), (4, 2)] {
        let net = format!(
            "force_backward: true\n{}{}{}layer {{ name: 'lstm' type: 'LSTMUnit' bottom: 'c_prev' bottom: 'x' bottom: 'cont' \
             top: 'c' top: 'h' }}",
            input("c_prev", &[1, n, d]),
            input("x", &[1, n, 4 * d]),
            input("cont", &[1, n])
        );
        for first in [1.0, 0.0] {
            check(
                &net,
                &[
                    Input::uniform("c_prev", &[1, n, d], -1.5, 1.5),
                    Input::uniform("x", &[1, n, 4 * d], -2.0, 2.0),
                    Input::given("cont", &[1, n], cont(n, first)),
                ],
                &["c_prev", "x"],
                &no_params(),
            );
        }
    }
}

#[test]
fn lstm_unit_two_chained_steps() {
    // c1 feeds the second step and is an output too (the net splits it); h1 and h2 are outputs.
    let (n, d) = (3, 2);
    let net = format!(
        "force_backward: true\n{}{}{}{}{}\
         layer {{ name: 'step1' type: 'LSTMUnit' bottom: 'c0' bottom: 'x1' bottom: 'cont1' top: 'c1' top: 'h1' }}\n\
         layer {{ name: 'step2' type: 'LSTMUnit' bottom: 'c1' bottom: 'x2' bottom: 'cont2' top: 'c2' top: 'h2' }}",
        input("c0", &[1, n, d]),
        input("x1", &[1, n, 4 * d]),
        input("x2", &[1, n, 4 * d]),
        input("cont1", &[1, n]),
        input("cont2", &[1, n])
    );
    check(
        &net,
        &[
            Input::uniform("c0", &[1, n, d], -1.0, 1.0),
            Input::uniform("x1", &[1, n, 4 * d], -2.0, 2.0),
            Input::uniform("x2", &[1, n, 4 * d], -2.0, 2.0),
            Input::given("cont1", &[1, n], vec![0.0, 1.0, 1.0]),
            Input::given("cont2", &[1, n], vec![1.0, 0.0, 1.0]),
        ],
        &["c0", "x1", "x2"],
        &no_params(),
    );
}

#[test]
fn lstm_unit_with_only_one_bottom_needing_a_gradient() {
    // No force_backward: the bottom that comes from an InnerProduct needs a gradient, the one
    // straight from an Input does not. The losses on c and h drive backward; the check is on
    // the InnerProduct's parameters.
    let (n, d, k) = (2, 3, 5);
    let ip = |top: &str, out: usize| {
        format!(
            "layer {{ name: 'ip_{top}' type: 'InnerProduct' bottom: 'a' top: '{top}' inner_product_param {{ num_output: {out} \
             axis: 2 weight_filler {{ type: 'gaussian' std: 0.7 }} bias_filler {{ type: 'gaussian' std: 0.5 }} }} }}\n"
        )
    };
    let unit = "layer { name: 'lstm' type: 'LSTMUnit' bottom: 'c_prev' bottom: 'x' bottom: 'cont' top: 'c' top: 'h' \
                loss_weight: 1 loss_weight: 0.5 }";
    let head = format!("{}{}", input("a", &[1, n, k]), input("cont", &[1, n]));
    let gates_learnt = format!("{head}{}{}{unit}", input("c_prev", &[1, n, d]), ip("x", 4 * d));
    let state_learnt = format!("{head}{}{}{unit}", input("x", &[1, n, 4 * d]), ip("c_prev", d));
    for first in [1.0, 0.0] {
        check(
            &gates_learnt,
            &[
                Input::uniform("a", &[1, n, k], -1.0, 1.0),
                Input::uniform("c_prev", &[1, n, d], -1.0, 1.0),
                Input::given("cont", &[1, n], cont(n, first)),
            ],
            &[],
            &GradCheck::default(),
        );
        check(
            &state_learnt,
            &[
                Input::uniform("a", &[1, n, k], -1.0, 1.0),
                Input::uniform("x", &[1, n, 4 * d], -2.0, 2.0),
                Input::given("cont", &[1, n], cont(n, first)),
            ],
            &[],
            &GradCheck::default(),
        );
    }
}
