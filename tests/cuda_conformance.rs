//! The conformance cases of `tests/conformance_layers.rs` (a small net run forward and backward
//! by real Caffe) built on the CUDA backend in strict FP32, `Cuda::with_precision(0,
//! Precision::Fp32)`, compared with Caffe's numbers within each case's tolerance: the whole
//! path of a layer on the GPU (its primitives, the net's blob handling, loss read-back).
//!
//! Every case has a test; a case whose net uses a layer type crema does not know yet says
//! SKIPPED and why (so a new family's cases join by themselves when it lands). Every test says
//! SKIPPED and passes where no GPU can be opened. Convolutions run on cuDNN, or on crema's im2col
//! path with `CREMA_CONV_ENGINE=im2col` (`tools/cuda_emu/check.sh` runs both under the emulator).

mod common;

use common::conformance::{LayerCase, strict_fp32_gpu};
use crema::backend::Storage;

fn run_case(name: &str) {
    let Some(g) = strict_fp32_gpu() else { return };
    let case = LayerCase::open(name);
    let unknown = case.unknown_layer_types();
    if !unknown.is_empty() {
        println!("SKIPPED: {name} uses layer types crema does not know yet: {}", unknown.join(", "));
        return;
    }
    let failures = case.run(g.clone());
    assert!(failures.is_empty(), "{name} on {}:\n  {}", g.describe(), failures.join("\n  "));
    println!("{name}: matches Caffe on {}", g.describe());
}

layer_cases!(run_case);
