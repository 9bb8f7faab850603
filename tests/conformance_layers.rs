//! Every case under ../shared/conformance/layers: a small net run forward and backward by
//! real Caffe; crema must reproduce its outputs and gradients within the case's tolerance.
//! The case list and the runner are shared with `tests/cuda_conformance.rs`
//! (`tests/common/conformance.rs`).

mod common;

use common::conformance::LayerCase;
use crema::backend::cpu::Cpu;

fn run_case(name: &str) {
    let failures = LayerCase::open(name).run(Cpu::new());
    assert!(failures.is_empty(), "{name}:\n  {}", failures.join("\n  "));
}

layer_cases!(run_case);
