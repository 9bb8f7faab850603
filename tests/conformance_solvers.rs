//! Every case under ../shared/conformance/solvers: a small net trained by real Caffe from given
//! weights on fixed inputs. crema must report the same loss at every iteration and reach the
//! same weights after the listed iterations; the resume_* cases restore Caffe's solverstate
//! and continue from it. The case list and the runner are shared with `tests/cuda_solvers.rs`
//! (`tests/common/conformance.rs`).

mod common;

use common::conformance::run_solver_case;
use crema::backend::cpu::Cpu;

fn run_case(name: &str) {
    let failures = run_solver_case(Cpu::new(), name);
    assert!(failures.is_empty(), "{name}:\n  {}", failures.join("\n  "));
}

solver_cases!(run_case);
