#!/bin/sh
# Builds the CUDA emulator and runs crema's CUDA tests on it: all of them with convolutions on
# cuDNN (the emulator's CPU stand-in, emu_cudnn.c), then those whose convolutions follow
# CREMA_CONV_ENGINE again on crema's im2col path (cuda_parity and cuda_kernels test both engines
# by themselves). Arguments go to the test binaries. CHECK_ENGINES="cudnn" (or "im2col") runs
# one pass only (.ci/run runs the cudnn pass). On 2 cores the cudnn pass's tests take about 2
# minutes, the im2col pass's fewer. Fails when a test says SKIPPED: on the emulator everything
# must run.
set -eu
crate=$(cd "$(dirname "$0")/../.." && pwd)
"$crate/tools/cuda_emu/build.sh" "$crate/target/cuda-emu"
cd "$crate"
for engine in ${CHECK_ENGINES:-cudnn im2col}; do
    echo "== convolutions on $engine"
    tests="--test cuda_conformance --test cuda_solvers --test cuda_segnet --test diff_sharing --test data_sharing --test fusion --test cli_gpu"
    [ "$engine" = cudnn ] && tests="--test cuda_kernels --test cuda_parity $tests"
    log="$crate/target/cuda-emu/check-$engine.log"
    # --show-output: a test that says SKIPPED passes, so its message is the only sign of it.
    CREMA_CONV_ENGINE=$engine CREMA_CUDA_LIB_PATH="$crate/target/cuda-emu" \
        cargo test --locked $tests -- --show-output "$@" > "$log" 2>&1 || { cat "$log"; exit 1; }
    grep -E '^test result|^     Running' "$log"
    # Everything runs on the emulator, NVRTC and cuDNN included: a SKIPPED test means something
    # was not found, and the check would pass without checking.
    if grep -n 'SKIPPED' "$log"; then
        echo "check.sh: tests said SKIPPED on the CUDA emulator (full output: $log)" >&2
        exit 1
    fi
done
