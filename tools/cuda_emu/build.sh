#!/bin/sh
# Builds the CUDA emulator (see README.md) into $1 (default: target/cuda-emu under the crate):
# libcuda.so.1 running crema's kernels on the CPU, a cuBLAS stand-in (stubs.c: SGEMM as a loop),
# and libcudnn.so.9 from emu_cudnn.c (cuDNN's legacy convolution API computed on the CPU, checking
# its arguments as the cuDNN reference does). Plain gcc/g++: no CUDA headers are needed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
crate=$(cd "$here/../.." && pwd)
out=${1:-$crate/target/cuda-emu}
kernels=$crate/src/backend/cuda/kernels
mkdir -p "$out/obj"
CXX=${CXX:-g++}
CC=${CC:-gcc}
# No FMA contraction and no fast math: float arithmetic rounds as on the GPU with --fmad=false.
flags="-O2 -g -fPIC -fvisibility=hidden -fvisibility-inlines-hidden -ffp-contract=off -fno-fast-math -std=c++17 -Wall -Wno-unused-function -Wno-unused-variable"
objs=""
for cu in "$kernels"/*.cu; do
    fam=$(basename "$cu" .cu)
    src="$out/obj/$fam.cpp"
    {
        echo '#include "emu_cuda.h"'
        cat "$kernels/common.cuh"
        echo "#line 1 \"$fam.cu\""
        cat "$cu"
        grep -o 'extern "C" __global__ void [A-Za-z0-9_]*' "$cu" | sed 's/.* void \(.*\)/EMU_REGISTER(\1)/'
    } > "$src"
    $CXX $flags -I"$here" -c "$src" -o "$out/obj/$fam.o"
    objs="$objs $out/obj/$fam.o"
done
$CXX $flags -I"$here" -c "$here/emu_runtime.cpp" -o "$out/obj/emu_runtime.o"
$CXX -shared -Wl,-soname,libcuda.so.1 -Wl,--version-script="$here/exports.map" -o "$out/libcuda.so.1" "$out/obj/emu_runtime.o" $objs
$CC -O2 -fPIC -shared -DEMU_CUBLAS -Wl,-soname,libcublas.so.13 -o "$out/libcublas.so.13" "$here/stubs.c"
$CC -O2 -fPIC -shared -Wl,-soname,libcublasLt.so.13 -o "$out/libcublasLt.so.13" "$here/empty.c"
$CC -O2 -g -fPIC -shared -fvisibility=hidden -ffp-contract=off -fno-fast-math -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
    -Wl,-soname,libcudnn.so.9 -o "$out/libcudnn.so.9" "$here/emu_cudnn.c" -ldl -lpthread
# A stand-in for the CUDA toolkit's stub libcuda.so (in a folder of its own, for tests that put it
# first on LD_LIBRARY_PATH): no driver behind it.
mkdir -p "$out/stub"
$CC -O2 -fPIC -shared -Wl,-soname,libcuda.so -o "$out/stub/libcuda.so" "$here/empty.c"
# The driver under another SONAME (in a folder of its own): crema opens it by path, but cudarc,
# which opens the driver by name, cannot find it (a test that this is an error, not an abort).
mkdir -p "$out/renamed"
$CXX -shared -Wl,-soname,libcuda-renamed.so.1 -Wl,--version-script="$here/exports.map" -o "$out/renamed/libcuda.so.1" "$out/obj/emu_runtime.o" $objs
for sub in graph ops cnn engines_precompiled; do
    $CC -O2 -fPIC -shared -Wl,-soname,libcudnn_$sub.so.9 -o "$out/libcudnn_$sub.so.9" "$here/empty.c"
done
echo "CUDA emulator built in $out: run tests with CREMA_CUDA_LIB_PATH=$out"
