//! Test helpers for the layers' unit tests: build a small net from prototxt text and report
//! its error or its blob shapes, or build one layer and read the message of its error.

use super::{create_layer, Layer, LayerContext};
use crate::backend::cpu::Cpu;
use crate::net::Net;
use crate::proto::{LayerParameter, NetParameter, Phase};
use crate::Error;
use std::fmt::Debug;

/// An Input layer named `name` with one top of `shape`.
pub(crate) fn input(name: &str, shape: &[usize]) -> String {
    let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
    format!(r#"layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims}}} }} }}"#)
}

/// An Input `x` of `shape` feeding one layer of type `kind`, top `y`, with `param` inside its
/// `field` block (`tile_param`, ...).
pub(crate) fn on_input(shape: &[usize], kind: &str, field: &str, param: &str) -> String {
    format!(r#"{} layer {{ name: "l" type: "{kind}" bottom: "x" top: "y" {field} {{ {param} }} }}"#, input("x", shape))
}

/// The net described by `body`.
pub(crate) fn net(body: &str) -> crate::Result<Net<Cpu>> {
    let param: NetParameter = crate::prototxt::parse(body, "test")?;
    Net::new(Cpu::new(), &param, 1)
}

/// The error building the net gives (panics when it builds).
pub(crate) fn build_error(body: &str) -> String {
    match net(body) {
        Ok(_) => panic!("the net was built:\n{body}"),
        Err(e) => e.to_string(),
    }
}

/// The net described by `body` with the blobs named in `inputs` set to their values.
fn with_inputs(body: &str, inputs: &[(&str, &[f32])]) -> Net<Cpu> {
    let mut net = net(body).unwrap_or_else(|e| panic!("{e}"));
    let be = net.backend().clone();
    for (name, values) in inputs {
        net.blob_mut(name).unwrap_or_else(|| panic!("no blob {name}")).set_data(&be, values).unwrap();
    }
    net
}

/// The net described by `body` after one forward pass from `inputs` (panics on an error).
pub(crate) fn forwarded(body: &str, inputs: &[(&str, &[f32])]) -> Net<Cpu> {
    let mut net = with_inputs(body, inputs);
    net.forward().unwrap_or_else(|e| panic!("{e}"));
    net
}

/// The error of the first forward pass after setting `inputs` (panics when there is none).
pub(crate) fn forward_error(body: &str, inputs: &[(&str, &[f32])]) -> String {
    let mut net = with_inputs(body, inputs);
    match net.forward() {
        Ok(_) => panic!("the forward pass succeeded"),
        Err(e) => e.to_string(),
    }
}

/// The shape of blob `name` in the net described by `body`.
pub(crate) fn shape_of(body: &str, name: &str) -> Vec<usize> {
    let net = net(body).unwrap_or_else(|e| panic!("{e}"));
    net.blob(name).unwrap_or_else(|| panic!("no blob {name}")).shape().to_vec()
}

/// Asserts that `message` contains `part`.
#[track_caller]
pub(crate) fn assert_contains(message: &str, part: &str) {
    assert!(message.contains(part), "`{message}` does not contain `{part}`");
}

/// The layer LayerParameter text `text` describes, built in the Train phase.
pub(crate) fn layer_from(text: &str) -> crate::Result<Box<dyn Layer<Cpu>>> {
    let lp: LayerParameter = crate::prototxt::parse(text, "test").unwrap();
    create_layer(&lp, &LayerContext::new(Phase::Train, 0))
}

/// The message of the Config error `r` holds (panics on anything else); `what` names the
/// input in the panic.
pub(crate) fn config_msg<T>(r: crate::Result<T>, what: &str) -> String {
    match r {
        Err(Error::Config(m)) => m,
        Err(e) => panic!("{what}: not a Config error: {e}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

/// The message of the Shape error `r` holds (panics on anything else).
pub(crate) fn shape_msg<T: Debug>(r: crate::Result<T>) -> String {
    match r {
        Err(Error::Shape(m)) => m,
        other => panic!("not a shape error: {other:?}"),
    }
}
