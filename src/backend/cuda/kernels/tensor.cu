// TensorOps family: row reductions, Eltwise's chains over several inputs, row gathers and the
// deterministic scatter-add of rows, with the CPU backend's arithmetic (see
// backend/ops/tensor.rs).

// Row reduction: y[i] = (float)(sum over the row of f(x) in double) * coeff; op 0: x, 1: |x|,
// 2: x*x. One block per row (rows grid-strided over blocks), summed through block_sum's fixed
// tree, so the result does not depend on the grid.
__device__ __forceinline__ double reduce_term(int op, float v) {
    double d = (double)v;
    return op == 0 ? d : (op == 1 ? fabs(d) : d * d);
}

extern "C" __global__ void crema_reduce_rows_block(u64 num, u64 dim, int op, float coeff, const float* x, float* y) {
    for (u64 row = blockIdx.x; row < num; row += gridDim.x) {
        const float* r = x + row * dim;
        double acc = 0.0;
        for (u64 j = threadIdx.x; j < dim; j += blockDim.x) acc += reduce_term(op, r[j]);
        double s = block_sum(acc);
        if (threadIdx.x == 0) y[row] = (float)s * coeff;
    }
}

// The same for short rows: one thread per row, summed in order.
extern "C" __global__ void crema_reduce_rows_thread(u64 num, u64 dim, int op, float coeff, const float* x, float* y) {
    GRID_STRIDE(row, num) {
        const float* r = x + row * dim;
        double acc = 0.0;
        for (u64 j = 0; j < dim; ++j) acc += reduce_term(op, r[j]);
        y[row] = (float)acc * coeff;
    }
}

// Gradient of the row reduction: c = dy[k / dim] * coeff; dx = c, sign(x) * c or (2 * c) * x.
extern "C" __global__ void crema_reduce_backward(u64 n, u64 dim, int op, float coeff, const float* x, const float* dy,
                                                 float* dx) {
    GRID_STRIDE(k, n) {
        float c = dy[k / dim] * coeff;
        float v;
        if (op == 0) v = c;
        else if (op == 1) {
            float s = x[k] > 0.0f ? 1.0f : (x[k] < 0.0f ? -1.0f : 0.0f);
            v = s * c;
        } else v = (2.0f * c) * x[k];
        dx[k] = v;
    }
}

// Up to CREMA_MAX_INPUTS inputs of an Eltwise chain. More inputs run as several launches, each
// continuing from what the previous one left in the output. Must match `Chain` in
// cuda/tensor.rs.
#define CREMA_MAX_INPUTS 8
struct Chain {
    u64 x[CREMA_MAX_INPUTS];
    float coeff[CREMA_MAX_INPUTS];
    int count;  // inputs in this launch
    int first;  // this launch starts the chain (else it continues from y)
    int base;   // index of this launch's first input among all inputs
    int unused;
};

#define XS(k, i) (((const float*)g.x[k])[i])

// y = ((0 + c0 x0) + c1 x1) + ...
extern "C" __global__ void crema_eltwise_sum(u64 n, Chain g, float* y) {
    GRID_STRIDE(i, n) {
        float acc = g.first ? 0.0f : y[i];
        for (int k = 0; k < g.count; ++k) acc = acc + g.coeff[k] * XS(k, i);
        y[i] = acc;
    }
}

// y = x0 * x1 * ..., left to right; when `dy` is not null (the last launch of a gradient),
// times dy at the end.
extern "C" __global__ void crema_eltwise_prod(u64 n, Chain g, const float* dy, float* y) {
    GRID_STRIDE(i, n) {
        int k = 0;
        float acc;
        if (g.first) {
            acc = XS(0, i);
            k = 1;
        } else acc = y[i];
        for (; k < g.count; ++k) acc = acc * XS(k, i);
        if (dy) acc = acc * dy[i];
        y[i] = acc;
    }
}

// Caffe's unstable product gradient: dx = (y / x) * dy.
extern "C" __global__ void crema_eltwise_prod_quotient(u64 n, const float* y, const float* x, const float* dy, float* dx) {
    GRID_STRIDE(i, n) dx[i] = (y[i] / x[i]) * dy[i];
}

// Element-wise maximum with the winner's index: inputs 0 and 1 by `x0 > x1 ? 0 : 1` (Caffe's
// CPU tie rule), each later input only when strictly greater.
extern "C" __global__ void crema_eltwise_max(u64 n, Chain g, float* y, float* argmax) {
    GRID_STRIDE(i, n) {
        int k = 0;
        float best, arg;
        if (g.first) {
            float a = XS(0, i), b = XS(1, i);
            if (a > b) {
                best = a;
                arg = 0.0f;
            } else {
                best = b;
                arg = 1.0f;
            }
            k = 2;
        } else {
            best = y[i];
            arg = argmax[i];
        }
        for (; k < g.count; ++k) {
            float v = XS(k, i);
            if (v > best) {
                best = v;
                arg = (float)(g.base + k);
            }
        }
        y[i] = best;
        argmax[i] = arg;
    }
}

// dx = dy where argmax == index, else 0.
extern "C" __global__ void crema_eltwise_max_backward(u64 n, float index, const float* argmax, const float* dy, float* dx) {
    GRID_STRIDE(i, n) dx[i] = argmax[i] == index ? dy[i] : 0.0f;
}

// Whether a row index value is valid: 0 <= v < (float)rows (the CPU's check).
__device__ __forceinline__ bool row_ok(float v, float rows) { return v >= 0.0f && v < rows; }

// The first index value outside [0, rows) (or NaN), as an atomic minimum of its position.
extern "C" __global__ void crema_check_rows(u64 n, float rows, const float* index, u64* bad) {
    GRID_STRIDE(i, n) {
        if (!row_ok(index[i], rows)) atomicMin(bad, i);
    }
}

// out[i * row_len + j] = table[trunc(index[i]) * row_len + j] (indices checked before).
extern "C" __global__ void crema_gather_rows(u64 n, u64 row_len, const float* index, const float* table, float* out) {
    GRID_STRIDE(e, n * row_len) {
        u64 i = e / row_len, j = e - i * row_len;
        out[e] = table[(u64)index[i] * row_len + j];
    }
}

// Scatter-add, step 1: how many indices name each row (integer atomics: exact), and the first
// bad index value.
extern "C" __global__ void crema_scatter_count(u64 n, float rows, const float* index, unsigned* counts, u64* bad) {
    GRID_STRIDE(i, n) {
        float v = index[i];
        if (row_ok(v, rows)) atomicAdd(&counts[(u64)v], 1u);
        else atomicMin(bad, i);
    }
}

// Step 2 (one block): starts[r] = sum of counts below r (starts[rows] = n). Each thread scans
// a contiguous run of rows; thread 0 then scans the runs' totals.
extern "C" __global__ void crema_scatter_starts(u64 rows, const unsigned* counts, unsigned* starts) {
    __shared__ unsigned totals[CREMA_REDUCE_THREADS];
    u64 run = (rows + blockDim.x - 1) / blockDim.x;
    u64 lo = threadIdx.x * run, hi = lo + run < rows ? lo + run : rows;
    unsigned t = 0;
    for (u64 r = lo; r < hi; ++r) t += counts[r];
    totals[threadIdx.x] = t;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned acc = 0;
        for (unsigned k = 0; k < blockDim.x; ++k) {
            unsigned v = totals[k];
            totals[k] = acc;
            acc += v;
        }
        starts[rows] = acc;
    }
    __syncthreads();
    unsigned acc = totals[threadIdx.x];
    for (u64 r = lo; r < hi; ++r) {
        starts[r] = acc;
        acc += counts[r];
    }
}

// Step 3: each index takes a slot in its row's bucket (in whatever order the atomics give).
extern "C" __global__ void crema_scatter_place(u64 n, const float* index, const unsigned* starts, unsigned* fill,
                                               unsigned* order) {
    GRID_STRIDE(i, n) {
        u64 r = (u64)index[i];
        order[starts[r] + atomicAdd(&fill[r], 1u)] = (unsigned)i;
    }
}

// Step 4: each row's bucket sorted into increasing index order (heap sort by one thread; the
// entries are distinct, so the result does not depend on the order step 3 left).
__device__ void sift_down(unsigned* a, u64 start, u64 end) {
    u64 root = start;
    while (2 * root + 1 < end) {
        u64 child = 2 * root + 1;
        if (child + 1 < end && a[child] < a[child + 1]) ++child;
        if (a[root] >= a[child]) return;
        unsigned t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

extern "C" __global__ void crema_scatter_sort(u64 rows, const unsigned* starts, unsigned* order) {
    GRID_STRIDE(r, rows) {
        unsigned* a = order + starts[r];
        u64 len = starts[r + 1] - starts[r];
        if (len < 2) continue;
        for (u64 s = len / 2; s-- > 0;) sift_down(a, s, len);
        for (u64 end = len - 1; end > 0; --end) {
            unsigned t = a[0];
            a[0] = a[end];
            a[end] = t;
            sift_down(a, 0, end);
        }
    }
}

// Step 5: every table element adds its row's sources in increasing index order (the CPU's
// order: table += src[i0], then += src[i1], ...).
extern "C" __global__ void crema_scatter_add(u64 rows, u64 row_len, const unsigned* starts, const unsigned* order,
                                             const float* src, float* table) {
    GRID_STRIDE(e, rows * row_len) {
        u64 r = e / row_len, j = e - r * row_len;
        unsigned lo = starts[r], hi = starts[r + 1];
        if (lo == hi) continue;
        float acc = table[e];
        for (unsigned s = lo; s < hi; ++s) acc += src[(u64)order[s] * row_len + j];
        table[e] = acc;
    }
}
