#!/bin/sh
# Builds the CUDA emulator and runs crema's CUDA tests on it (arguments go to the test binaries).
set -eu
crate=$(cd "$(dirname "$0")/../.." && pwd)
"$crate/tools/cuda_emu/build.sh" "$crate/target/cuda-emu"
cd "$crate"
CREMA_CUDA_LIB_PATH="$crate/target/cuda-emu" cargo test --test cuda_kernels --test cuda_parity --test cuda_conformance --test cuda_solvers --test diff_sharing -- "$@"
