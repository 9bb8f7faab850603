//! The solver conformance cases of `tests/conformance_solvers.rs` (a small net trained by real
//! Caffe for ten iterations: losses at every iteration, weights at checkpoints, resuming from
//! Caffe's solverstate) trained on the CUDA backend in strict FP32: forward, backward and the
//! fused parameter update all on the GPU.
//!
//! Every test says SKIPPED and passes where no GPU can be opened. Convolutions run on cuDNN, or
//! on crema's im2col path with `CREMA_CONV_ENGINE=im2col` (`tools/cuda_emu/check.sh` runs both
//! under the emulator).

mod common;

use common::conformance::{run_solver_case, strict_fp32_gpu};
use crema::backend::Storage;

fn run_case(name: &str) {
    let Some(g) = strict_fp32_gpu() else { return };
    let failures = run_solver_case(g.clone(), name);
    assert!(failures.is_empty(), "{name} on {}:\n  {}", g.describe(), failures.join("\n  "));
    println!("{name}: matches Caffe on {}", g.describe());
}

solver_cases!(run_case);
