#!/bin/sh
# Builds the CUDA emulator and runs crema's CUDA tests on it twice: convolutions on cuDNN (the
# emulator's CPU stand-in, emu_cudnn.c) and on crema's im2col path (CREMA_CONV_ENGINE=im2col).
# Arguments go to the test binaries. CHECK_ENGINES="cudnn" (or "im2col") runs one engine only.
set -eu
crate=$(cd "$(dirname "$0")/../.." && pwd)
"$crate/tools/cuda_emu/build.sh" "$crate/target/cuda-emu"
cd "$crate"
for engine in ${CHECK_ENGINES:-cudnn im2col}; do
    echo "== convolutions on $engine"
    CREMA_CONV_ENGINE=$engine CREMA_CUDA_LIB_PATH="$crate/target/cuda-emu" cargo test --test cuda_kernels --test cuda_parity \
        --test cuda_conformance --test cuda_solvers --test cuda_segnet --test diff_sharing --test cli_gpu -- "$@"
done
