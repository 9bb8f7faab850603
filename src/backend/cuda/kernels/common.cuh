// Prepended to every family's source before NVRTC compiles it (NVRTC has no include path):
// the index types, the grid-stride loop and a deterministic block reduction.

typedef unsigned long long u64;
typedef long long i64;

// Threads per block of every reduction kernel; the launch code uses the same number.
#define CREMA_REDUCE_THREADS 256

// for (i = global thread index; i < n; i += total threads): every element once, whatever grid
// the launcher chose.
#define GRID_STRIDE(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n); i += (u64)blockDim.x * gridDim.x)

// Sum of `v` over the block (blockDim.x == CREMA_REDUCE_THREADS), in a fixed tree order, so the
// result depends only on the values, not on timing. Every thread gets the sum. Call at most
// once per kernel, from every thread of the block.
__device__ __forceinline__ double block_sum(double v) {
    __shared__ double s[CREMA_REDUCE_THREADS];
    s[threadIdx.x] = v;
    __syncthreads();
    for (unsigned w = CREMA_REDUCE_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    return s[0];
}
