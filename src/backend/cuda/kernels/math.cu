// Math family: fills, element-wise arithmetic, strided copies and deterministic reductions.
// Element-wise formulas are written as the CPU backend writes them (and compiled with
// --fmad=false), so the results are the CPU's bits.

extern "C" __global__ void crema_fill(u64 n, float value, float* y) {
    GRID_STRIDE(i, n) y[i] = value;
}

// y = alpha * x + beta * y; beta == 1 is axpy (y += alpha * x), as on the CPU.
extern "C" __global__ void crema_axpby(u64 n, float alpha, const float* x, float beta, float* y) {
    if (beta == 1.0f) {
        GRID_STRIDE(i, n) y[i] += alpha * x[i];
    } else {
        GRID_STRIDE(i, n) y[i] = alpha * x[i] + beta * y[i];
    }
}

extern "C" __global__ void crema_scal(u64 n, float alpha, float* x) {
    GRID_STRIDE(i, n) x[i] *= alpha;
}

extern "C" __global__ void crema_mul(u64 n, const float* a, const float* b, float* y) {
    GRID_STRIDE(i, n) y[i] = a[i] * b[i];
}

extern "C" __global__ void crema_add_scalar(u64 n, float value, float* x) {
    GRID_STRIDE(i, n) x[i] += value;
}

// Sets *flag to 1 if any element is NaN or infinite (the flag is zeroed before the launch; every
// writer writes the same value, so the race is benign).
extern "C" __global__ void crema_all_finite(u64 n, const float* x, int* flag) {
    GRID_STRIDE(i, n) {
        if (!isfinite(x[i])) *flag = 1;
    }
}

// Reduction, first pass: every block of a fixed-size grid sums a grid-strided share of
// f(x[i], y[i]) in double and writes one partial. op 0: x*y (dot), 1: |x| (asum), 2: x*x (sumsq).
extern "C" __global__ void crema_reduce_partial(u64 n, int op, const float* x, const float* y, double* partial) {
    double acc = 0.0;
    GRID_STRIDE(i, n) {
        double v = (double)x[i];
        acc += op == 0 ? v * (double)y[i] : (op == 1 ? fabs(v) : v * v);
    }
    double s = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Reduction, second pass: one block sums the `count` partials in a fixed order into out[0].
extern "C" __global__ void crema_reduce_final(u64 count, const double* partial, double* out) {
    double acc = 0.0;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    double s = block_sum(acc);
    if (threadIdx.x == 0) out[0] = s;
}

// N-d strided copy. The axes are split by the launcher into parallel ones (distinct
// destinations: one thread per index) and serial ones (destinations that repeat, e.g. a zero
// destination stride when accumulating a Tile gradient), which each thread walks in row-major
// order, the CPU's order. Must match `StridedGeom` in cuda/math.rs field for field.
#define CREMA_MAX_AXES 8
struct StridedGeom {
    u64 count;   // product of the parallel extents
    u64 serial;  // product of the serial extents
    u64 src_off, dst_off;
    u64 pshape[CREMA_MAX_AXES], psrc[CREMA_MAX_AXES], pdst[CREMA_MAX_AXES];
    u64 sshape[CREMA_MAX_AXES], ssrc[CREMA_MAX_AXES], sdst[CREMA_MAX_AXES];
    int np, ns, accumulate, unused;
};

extern "C" __global__ void crema_copy_strided(StridedGeom g, const float* src, float* dst) {
    GRID_STRIDE(i, g.count) {
        u64 rem = i, s = g.src_off, d = g.dst_off;
        for (int a = g.np - 1; a >= 0; --a) {
            u64 k = rem % g.pshape[a];
            rem /= g.pshape[a];
            s += k * g.psrc[a];
            d += k * g.pdst[a];
        }
        for (u64 j = 0; j < g.serial; ++j) {
            u64 r = j, ss = s, dd = d;
            for (int a = g.ns - 1; a >= 0; --a) {
                u64 k = r % g.sshape[a];
                r /= g.sshape[a];
                ss += k * g.ssrc[a];
                dd += k * g.sdst[a];
            }
            if (g.accumulate) dst[dd] += src[ss];
            else dst[dd] = src[ss];
        }
    }
}
