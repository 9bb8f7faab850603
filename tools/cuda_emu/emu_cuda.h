// Compiles crema's CUDA C kernels (src/backend/cuda/kernels/*.cu) as host C++ for the CUDA
// emulator (see README.md): the CUDA keywords, built-in variables, intrinsics, atomics, warp
// shuffles and barriers the kernels use, mapped onto emu_runtime.cpp's cooperative threads.
//
// Threads of a block run as fibers on one OS thread and switch only at barriers, so atomics
// are plain read-modify-writes and shared memory is a static variable (blocks run one after
// another). Races between threads are therefore not detected, but their order is shuffled
// between barriers, so a kernel that relies on thread order gives varying results.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <utility>

struct uint3 {
    unsigned x, y, z;
};

namespace emu {
struct ThreadState {
    uint3 tid;
};
extern uint3 block_idx, block_dim, grid_dim;
ThreadState* current();
void sync_block();
void sync_warp();
// Exchanges 8-byte words among the warp: every lane publishes `v`, gets lane `src`'s word (its
// own when `src` is out of range).
unsigned long long exchange(unsigned long long v, int src);
unsigned lane();

typedef void (*Tramp)(void**);
// Makes kernel `name` launchable (see EMU_REGISTER).
void register_kernel(const char* name, Tramp t);

template <typename... A, std::size_t... I>
inline void invoke(void (*f)(A...), void** p, std::index_sequence<I...>) {
    f(*static_cast<A*>(p[I])...);
}
// Calls `f` with the arguments a launch passes as cuLaunchKernel's parameter array.
template <typename... A>
inline void invoke_all(void (*f)(A...), void** p) {
    invoke(f, p, std::index_sequence_for<A...>{});
}

template <typename T>
inline unsigned long long to_word(T v) {
    unsigned long long w = 0;
    std::memcpy(&w, &v, sizeof(T));
    return w;
}
template <typename T>
inline T from_word(unsigned long long w) {
    T v;
    std::memcpy(&v, &w, sizeof(T));
    return v;
}
}  // namespace emu

#define __global__
#define __device__ static
#define __forceinline__ inline
#define __shared__ static
#define threadIdx (emu::current()->tid)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

inline void __syncthreads() { emu::sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::sync_warp(); }

template <typename T>
inline T __shfl_sync(unsigned, T v, int src) {
    return emu::from_word<T>(emu::exchange(emu::to_word(v), src));
}
template <typename T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta) {
    int src = (int)(emu::lane() + delta);
    return emu::from_word<T>(emu::exchange(emu::to_word(v), src < 32 ? src : -1));
}

inline int __float_as_int(float v) { return emu::from_word<int>(emu::to_word(v)); }
inline unsigned __float_as_uint(float v) { return emu::from_word<unsigned>(emu::to_word(v)); }
inline float __int_as_float(int v) { return emu::from_word<float>(emu::to_word(v)); }
inline long long __double_as_longlong(double v) { return emu::from_word<long long>(emu::to_word(v)); }

template <typename T>
inline T atomicMin(T* p, T v) {
    T old = *p;
    if (v < old) *p = v;
    return old;
}
template <typename T>
inline T atomicMax(T* p, T v) {
    T old = *p;
    if (old < v) *p = v;
    return old;
}
template <typename T>
inline T atomicAdd(T* p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}

using std::isfinite;

// Registers kernel `name` of the translation unit (one line per extern "C" kernel, appended by
// build.sh).
#define EMU_REGISTER(name) \
    static const int emu_reg_##name = (emu::register_kernel(#name, [](void** p) { emu::invoke_all(&name, p); }), 0);
