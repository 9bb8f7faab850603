#!/bin/sh
# Builds the CUDA emulator and runs crema's CUDA tests on it: all of them with convolutions on
# cuDNN (the emulator's CPU stand-in, emu_cudnn.c), then those whose convolutions follow
# CREMA_CONV_ENGINE again on crema's im2col path (cuda_parity and cuda_kernels test both engines
# by themselves). Arguments go to the test binaries. CHECK_ENGINES="cudnn" (or "im2col") runs
# one pass only. About 10 + 5 minutes on 2 cores.
set -eu
crate=$(cd "$(dirname "$0")/../.." && pwd)
"$crate/tools/cuda_emu/build.sh" "$crate/target/cuda-emu"
cd "$crate"
for engine in ${CHECK_ENGINES:-cudnn im2col}; do
    echo "== convolutions on $engine"
    tests="--test cuda_conformance --test cuda_solvers --test cuda_segnet --test diff_sharing --test cli_gpu"
    [ "$engine" = cudnn ] && tests="--test cuda_kernels --test cuda_parity $tests"
    CREMA_CONV_ENGINE=$engine CREMA_CUDA_LIB_PATH="$crate/target/cuda-emu" cargo test $tests -- "$@"
done
