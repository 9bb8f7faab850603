// Prepended to every family's source before NVRTC compiles it (NVRTC has no include path):
// the index types, the grid-stride loop, deterministic block reductions and the C++ helpers
// the CPU backend's formulas are written with.

typedef unsigned long long u64;
typedef long long i64;

// Threads per block of every reduction kernel; the launch code uses the same number.
#define CREMA_REDUCE_THREADS 256

// FLT_MAX and FLT_MIN (NVRTC has no <cfloat>).
#define CREMA_FLT_MAX 3.40282347e+38f
#define CREMA_FLT_MIN 1.17549435e-38f

// No first bad index found (the initial value of an atomic-minimum word).
#define CREMA_NONE 0xffffffffffffffffull

// for (i = global thread index; i < n; i += total threads): every element once, whatever grid
// the launcher chose.
#define GRID_STRIDE(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n); i += (u64)blockDim.x * gridDim.x)

// Plane loops, for a grid from Launch::planes (cuda/launch.rs; the launch refuses any other
// grid for a kernel declared with Kernel::plane_loops): blocks (x, y) take planes y, y +
// gridDim.y, ... and, in each, elements x * blockDim.x + threadIdx.x, then a grid's width
// further, ... A thread works out what depends on the plane once per plane, and indices within
// a plane need no division by the plane's length.
#define FOR_EACH_PLANE(p, planes) for (u64 p = blockIdx.y; p < (u64)(planes); p += gridDim.y)
#define FOR_IN_PLANE(i, len) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(len); i += (u64)blockDim.x * gridDim.x)

// Sum of `v` over the block (blockDim.x == CREMA_REDUCE_THREADS), in a fixed tree order, so the
// result depends only on the values, not on timing. Every thread gets the sum. Call from every
// thread of the block; it ends with a barrier, so it may be called again (in a loop, or for a
// second quantity).
__device__ __forceinline__ double block_sum(double v) {
    __shared__ double s[CREMA_REDUCE_THREADS];
    s[threadIdx.x] = v;
    __syncthreads();
    for (unsigned w = CREMA_REDUCE_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    double r = s[0];
    __syncthreads();
    return r;
}

// C++'s std::min and std::max, as the CPU backend writes them (`cmin`/`cmax`): a NaN first
// argument is kept, unlike fminf/fmaxf.
__device__ __forceinline__ float cmin(float a, float b) { return b < a ? b : a; }
__device__ __forceinline__ float cmax(float a, float b) { return a < b ? b : a; }

// C++'s bool-to-float conversion.
__device__ __forceinline__ float b2f(bool b) { return b ? 1.0f : 0.0f; }

// Caffe's ReLU, max(x, 0) + slope * min(x, 0) (a NaN stays NaN), and its backward for bottom
// data x, dy * ((x > 0) + slope * (x <= 0)): the CPU's `relu` and `relu_grad`. Shared by the
// ReLU kernels and the batch normalisation that runs a fused ReLU.
__device__ __forceinline__ float relu_of(float x, float slope) { return cmax(x, 0.0f) + slope * cmin(x, 0.0f); }
__device__ __forceinline__ float relu_grad_of(float dy, float x, float slope) {
    return dy * (b2f(x > 0.0f) + slope * b2f(x <= 0.0f));
}

// Single-precision exp, log, tanh and pow evaluated in double and rounded once: within half an
// ulp of the exact value (save double-rounding ties), so they agree with the CPU's libm (whose
// expf/logf/powf are within 0.82 ulp) far more often than CUDA's own single-precision ones.
__device__ __forceinline__ float exp_f(float x) { return (float)exp((double)x); }
__device__ __forceinline__ float log_f(float x) { return (float)log((double)x); }
__device__ __forceinline__ float tanh_f(float x) { return (float)tanh((double)x); }
__device__ __forceinline__ float pow_f(float x, float y) { return (float)pow((double)x, (double)y); }

// Caffe's sigmoid, 0.5 * tanh(0.5 * x) + 0.5 evaluated in double (the CPU's `sigmoid`).
__device__ __forceinline__ float sigmoid_d(float x) { return (float)(0.5 * tanh(0.5 * (double)x) + 0.5); }

// What a check records for a bad entry `v` at flat index `i` (below 2^32): the index in the high
// half, the value's bits in the low half, so that an atomic minimum keeps the first bad entry
// and its value (read back and split by `Device::sync` in cuda/device.rs).
__device__ __forceinline__ u64 finding(u64 i, float v) { return (i << 32) | (u64)__float_as_uint(v); }

// A mask entry as an index into a plane of `limit` elements, truncated toward zero as Caffe's
// static_cast<int> (the CPU's `mask_index`); -1 when it is NaN or outside 0..limit.
__device__ __forceinline__ i64 mask_index(float m, u64 limit) {
    float t = truncf(m);
    return (t >= 0.0f && (double)t < (double)limit) ? (i64)t : -1;
}

// The 32 random bits of element i of draw `key` (backend/ops/act.rs `random_bits`; Dropout's
// masks, stochastic pooling's picks): SplitMix64 of key + (i + 1) * golden gamma, high half.
__device__ __forceinline__ unsigned random_bits(u64 key, u64 i) {
    u64 z = key + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (unsigned)(z >> 32);
}
