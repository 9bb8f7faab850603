// Losses family: softmax, the loss layers' sums and gradients, Accuracy and ArgMax, with the
// CPU backend's formulas (see backend/ops/loss.rs). A tensor is `outer x classes x inner`
// around its class axis; position p = i * inner + j has class c at (i * classes + c) * inner + j.
//
// Softmax runs one thread per position where positions are many and contiguous (segmentation
// scores: coalesced over j), and one warp per position where the classes are many and the
// positions few (classifiers: coalesced over c). Both take the maximum, subtract, exponentiate
// and sum in class order in float, as the CPU does, so they give the same bits as each other.
//
// Loss sums are deterministic: a fixed grid of CREMA reduction blocks, each summing a
// grid-strided share of the positions in double through a fixed tree, then one block summing
// the partials in order. The first bad label is an atomic minimum of its position.

// Must match `AxisGeom` in cuda/loss.rs.
struct Axis {
    u64 outer, classes, inner;
    int has_ignore, ignore;
};

// Buffer index of class 0 at position p.
__device__ __forceinline__ u64 base_of(const Axis& a, u64 p) {
    u64 i = p / a.inner;
    return i * a.classes * a.inner + (p - i * a.inner);
}

#define LABEL_IGNORED -1
#define LABEL_BAD -2

// Caffe's static_cast<int> of a label where it is defined (the CPU's `label_class`).
__device__ __forceinline__ bool label_class(float v, int* l) {
    if (!(v > -2147483904.0f && v < 2147483648.0f)) return false;
    *l = (int)v;
    return true;
}

// The CPU's `label_kind`: a class in 0..classes, LABEL_IGNORED or LABEL_BAD.
__device__ __forceinline__ i64 label_kind(float v, const Axis& a) {
    int l;
    if (!label_class(v, &l)) return LABEL_BAD;
    if (a.has_ignore && l == a.ignore) return LABEL_IGNORED;
    if (l >= 0 && (u64)l < a.classes) return l;
    return LABEL_BAD;
}

// Softmax, one thread per position.
extern "C" __global__ void crema_softmax_forward_thread(Axis a, const float* x, float* y) {
    GRID_STRIDE(p, a.outer * a.inner) {
        u64 b = base_of(a, p);
        float m = x[b];
        for (u64 c = 1; c < a.classes; ++c) {
            float v = x[b + c * a.inner];
            if (m < v) m = v;
        }
        float s = 0.0f;
        for (u64 c = 0; c < a.classes; ++c) {
            float e = exp_f(x[b + c * a.inner] - m);
            y[b + c * a.inner] = e;
            s += e;
        }
        for (u64 c = 0; c < a.classes; ++c) y[b + c * a.inner] = y[b + c * a.inner] / s;
    }
}

// The maximum over the classes of one position by a warp: each lane scans classes lane,
// lane + 32, ... (keeping its first value unless a later one is greater, std::max), then the
// lanes combine in a tree that keeps the lower lane's value unless the higher one is greater.
// That is the CPU's sequential maximum wherever it matters (with a NaN among the scores every
// output is NaN either way). Every lane gets the result.
__device__ __forceinline__ float warp_max(const float* v, u64 classes, u64 stride, unsigned lane) {
    int has = lane < classes;
    float m = has ? v[lane * stride] : 0.0f;
    for (u64 c = lane + 32; c < classes; c += 32) {
        float x = v[c * stride];
        if (m < x) m = x;
    }
    for (int off = 16; off > 0; off >>= 1) {
        float o = __shfl_down_sync(0xffffffffu, m, off);
        int oh = __shfl_down_sync(0xffffffffu, has, off);
        if (lane + off < 32 && oh && m < o) m = o;
    }
    return __shfl_sync(0xffffffffu, m, 0);
}

// Warps of the grid: the warp's index and the number of warps.
#define WARP_LOOP(p, n)                                                              \
    unsigned lane = threadIdx.x & 31;                                                \
    u64 warps = ((u64)gridDim.x * blockDim.x) >> 5;                                  \
    for (u64 p = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5; p < (n); p += warps)

// Softmax, one warp per position: exponentials in parallel, their sum by lane 0 in class order
// (the CPU's float sum), the divisions in parallel.
extern "C" __global__ void crema_softmax_forward_warp(Axis a, const float* x, float* y) {
    WARP_LOOP(p, a.outer * a.inner) {
        u64 b = base_of(a, p);
        float m = warp_max(x + b, a.classes, a.inner, lane);
        for (u64 c = lane; c < a.classes; c += 32) y[b + c * a.inner] = exp_f(x[b + c * a.inner] - m);
        __syncwarp();
        float s = 0.0f;
        if (lane == 0) {
            for (u64 c = 0; c < a.classes; ++c) s += y[b + c * a.inner];
        }
        s = __shfl_sync(0xffffffffu, s, 0);
        for (u64 c = lane; c < a.classes; c += 32) y[b + c * a.inner] = y[b + c * a.inner] / s;
        __syncwarp();
    }
}

// Softmax backward, one thread per position: dot = sum_c dy_c y_c in class order (float),
// dx = (dy - dot) * y.
extern "C" __global__ void crema_softmax_backward_thread(Axis a, const float* y, const float* dy, float* dx) {
    GRID_STRIDE(p, a.outer * a.inner) {
        u64 b = base_of(a, p);
        float dot = 0.0f;
        for (u64 c = 0; c < a.classes; ++c) dot += dy[b + c * a.inner] * y[b + c * a.inner];
        for (u64 c = 0; c < a.classes; ++c) {
            u64 k = b + c * a.inner;
            dx[k] = (dy[k] - dot) * y[k];
        }
    }
}

// Softmax backward, one warp per position (the dot product by lane 0, in class order).
extern "C" __global__ void crema_softmax_backward_warp(Axis a, const float* y, const float* dy, float* dx) {
    WARP_LOOP(p, a.outer * a.inner) {
        u64 b = base_of(a, p);
        float dot = 0.0f;
        if (lane == 0) {
            for (u64 c = 0; c < a.classes; ++c) dot += dy[b + c * a.inner] * y[b + c * a.inner];
        }
        dot = __shfl_sync(0xffffffffu, dot, 0);
        for (u64 c = lane; c < a.classes; c += 32) {
            u64 k = b + c * a.inner;
            dx[k] = (dy[k] - dot) * y[k];
        }
        __syncwarp();
    }
}

// Writes a block's loss and count sums (the first pass of every loss sum).
__device__ __forceinline__ void loss_block_out(double acc, double cnt, double* partial, double* counts) {
    double s = block_sum(acc);
    double c = block_sum(cnt);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = s;
        counts[blockIdx.x] = c;
    }
}

// SoftmaxWithLoss, first pass: -w[l] ln(max(prob[l], FLT_MIN)) over valid positions.
extern "C" __global__ void crema_softmax_loss_partial(Axis a, const float* prob, const float* label,
                                                      const float* weights, int weighted, double* partial,
                                                      double* counts, u64* bad) {
    double acc = 0.0, cnt = 0.0;
    GRID_STRIDE(p, a.outer * a.inner) {
        i64 l = label_kind(label[p], a);
        if (l == LABEL_IGNORED) continue;
        if (l == LABEL_BAD) {
            atomicMin(bad, p);
            continue;
        }
        float logp = log_f(fmaxf(prob[base_of(a, p) + (u64)l * a.inner], CREMA_FLT_MIN));
        float term = weighted ? -(logp * weights[l]) : -logp;
        acc += (double)term;
        cnt += 1.0;
    }
    loss_block_out(acc, cnt, partial, counts);
}

// InfogainLoss, first pass: -sum_c H[l, c] ln(max(prob[c], 1e-20)), each product in float,
// summed in class order in double.
extern "C" __global__ void crema_infogain_loss_partial(Axis a, const float* prob, const float* label, const float* h,
                                                       double* partial, double* counts, u64* bad) {
    double acc = 0.0, cnt = 0.0;
    GRID_STRIDE(p, a.outer * a.inner) {
        i64 l = label_kind(label[p], a);
        if (l == LABEL_IGNORED) continue;
        if (l == LABEL_BAD) {
            atomicMin(bad, p);
            continue;
        }
        u64 b = base_of(a, p);
        const float* row = h + (u64)l * a.classes;
        double term = 0.0;
        for (u64 c = 0; c < a.classes; ++c) term += (double)(-(row[c] * log_f(fmaxf(prob[b + c * a.inner], 1e-20f))));
        acc += term;
        cnt += 1.0;
    }
    loss_block_out(acc, cnt, partial, counts);
}

// SigmoidCrossEntropyLoss, first pass: Caffe's stable form over elements whose target is not
// the ignore label.
extern "C" __global__ void crema_sigmoid_xent_partial(u64 n, int has_ignore, int ignore, const float* x,
                                                      const float* target, double* partial, double* counts) {
    double acc = 0.0, cnt = 0.0;
    GRID_STRIDE(i, n) {
        float t = target[i];
        int l;
        if (has_ignore && label_class(t, &l) && l == ignore) continue;
        float v = x[i];
        float pos = v >= 0.0f ? 1.0f : 0.0f;
        float term = v * (t - pos) - log_f(1.0f + exp_f(v - 2.0f * v * pos));
        acc += (double)(-term);
        cnt += 1.0;
    }
    loss_block_out(acc, cnt, partial, counts);
}

// Second pass of every loss sum: one block adds the partials in a fixed order and writes
// result = [loss (double bits), valid count, first bad position, label value there (bits)].
extern "C" __global__ void crema_loss_final(u64 blocks, const double* partial, const double* counts, const u64* bad,
                                            const float* label, u64* result) {
    double acc = 0.0, cnt = 0.0;
    for (u64 i = threadIdx.x; i < blocks; i += blockDim.x) {
        acc += partial[i];
        cnt += counts[i];
    }
    double s = block_sum(acc);
    double c = block_sum(cnt);
    if (threadIdx.x == 0) {
        u64 b = *bad;
        result[0] = (u64)__double_as_longlong(s);
        result[1] = (u64)c;
        result[2] = b;
        result[3] = b != CREMA_NONE ? (u64)__float_as_uint(label[b]) : 0;
    }
}

// SoftmaxWithLoss backward: dx = ((prob - [c == l]) * w[l]) * scale at valid positions, 0 else.
extern "C" __global__ void crema_softmax_loss_backward(Axis a, const float* prob, const float* label,
                                                       const float* weights, int weighted, float scale, float* dx) {
    GRID_STRIDE(e, a.outer * a.classes * a.inner) {
        u64 r = e / a.inner, j = e - r * a.inner;
        u64 i = r / a.classes, c = r - i * a.classes;
        i64 l = label_kind(label[i * a.inner + j], a);
        float v = 0.0f;
        if (l >= 0) {
            float pr = prob[e];
            float g = (u64)l == c ? pr - 1.0f : pr;
            v = weighted ? g * weights[l] * scale : g * scale;
        }
        dx[e] = v;
    }
}

// The row sums of the infogain matrix, each in column order in float (the CPU's fold).
extern "C" __global__ void crema_infogain_row_sums(u64 classes, const float* h, float* sums) {
    GRID_STRIDE(l, classes) {
        float s = 0.0f;
        for (u64 c = 0; c < classes; ++c) s = s + h[l * classes + c];
        sums[l] = s;
    }
}

// InfogainLoss backward: dx = (prob * rowsum[l] - H[l, c]) * scale at valid positions, 0 else.
extern "C" __global__ void crema_infogain_loss_backward(Axis a, const float* prob, const float* label, const float* h,
                                                        const float* row_sums, float scale, float* dx) {
    GRID_STRIDE(e, a.outer * a.classes * a.inner) {
        u64 r = e / a.inner, j = e - r * a.inner;
        u64 i = r / a.classes, c = r - i * a.classes;
        i64 l = label_kind(label[i * a.inner + j], a);
        dx[e] = l >= 0 ? (prob[e] * row_sums[l] - h[(u64)l * a.classes + c]) * scale : 0.0f;
    }
}

// SigmoidCrossEntropyLoss backward: dx = (sigmoid(x) - t) * scale, 0 where the target is
// ignored.
extern "C" __global__ void crema_sigmoid_xent_backward(u64 n, int has_ignore, int ignore, const float* x,
                                                       const float* target, float scale, float* dx) {
    GRID_STRIDE(i, n) {
        float t = target[i];
        int l;
        dx[i] = (has_ignore && label_class(t, &l) && l == ignore) ? 0.0f : (sigmoid_d(x[i]) - t) * scale;
    }
}

// Classes whose Accuracy counters a block keeps in shared memory (more go straight to global
// atomics). Must match `ACCURACY_SHARED_CLASSES` in cuda/loss.rs.
#define ACCURACY_SHARED_CLASSES 1024

// Accuracy, counting: counts[l] (valid) and counts[classes + l] (correct) per class, integer
// atomics (exact, so the order does not matter); the first bad label to *bad.
extern "C" __global__ void crema_accuracy_count(Axis a, u64 top_k, const float* x, const float* label, u64* counts,
                                                u64* bad) {
    __shared__ u64 local[2 * ACCURACY_SHARED_CLASSES];
    bool shared = a.classes <= ACCURACY_SHARED_CLASSES;
    if (shared) {
        for (u64 k = threadIdx.x; k < 2 * a.classes; k += blockDim.x) local[k] = 0;
        __syncthreads();
    }
    u64* cnt = shared ? local : counts;
    GRID_STRIDE(p, a.outer * a.inner) {
        i64 l = label_kind(label[p], a);
        if (l == LABEL_IGNORED) continue;
        if (l == LABEL_BAD) {
            atomicMin(bad, p);
            continue;
        }
        u64 b = base_of(a, p);
        float truth = x[b + (u64)l * a.inner];
        u64 better = 0;
        for (u64 c = 0; c < a.classes; ++c) better += x[b + c * a.inner] >= truth ? 1 : 0;
        atomicAdd(&cnt[l], 1ull);
        if (better <= top_k) atomicAdd(&cnt[a.classes + l], 1ull);
    }
    if (shared) {
        __syncthreads();
        for (u64 k = threadIdx.x; k < 2 * a.classes; k += blockDim.x) {
            if (local[k]) atomicAdd(&counts[k], local[k]);
        }
    }
}

// Accuracy, results: accuracy[0] = correct / valid (0 with none valid), per_class (when not
// null) the same per class, and result = [-, -, first bad position, label value there].
extern "C" __global__ void crema_accuracy_final(u64 classes, const u64* counts, const u64* bad, const float* label,
                                                float* accuracy, float* per_class, u64* result) {
    if (per_class) {
        for (u64 c = threadIdx.x; c < classes; c += blockDim.x) {
            u64 v = counts[c], k = counts[classes + c];
            per_class[c] = v == 0 ? 0.0f : (float)k / (float)v;
        }
    }
    if (threadIdx.x == 0) {
        u64 v = 0, k = 0;
        for (u64 c = 0; c < classes; ++c) {
            v += counts[c];
            k += counts[classes + c];
        }
        accuracy[0] = v == 0 ? 0.0f : (float)k / (float)v;
        u64 b = *bad;
        result[2] = b;
        result[3] = b != CREMA_NONE ? (u64)__float_as_uint(label[b]) : 0;
    }
}

// f32::total_cmp's key: the bits as a signed integer, every bit but the sign flipped for
// negative values.
__device__ __forceinline__ int total_key(float v) {
    int i = __float_as_int(v);
    return i ^ (int)(((unsigned)(i >> 31)) >> 1);
}

// (key, index) pairs in Caffe's order (std::greater on (value, index)).
__device__ __forceinline__ bool pair_less(int ka, u64 ia, int kb, u64 ib) { return ka < kb || (ka == kb && ia < ib); }

#define ARGMAX_INDEX 0
#define ARGMAX_VALUE 1
#define ARGMAX_BOTH 2

// ArgMax, one thread per position: pick k is the greatest (value, index) pair below pick k-1.
extern "C" __global__ void crema_argmax(Axis a, u64 top_k, int output, const float* x, float* y) {
    GRID_STRIDE(p, a.outer * a.inner) {
        u64 i = p / a.inner, j = p - i * a.inner;
        u64 b = base_of(a, p);
        int pk = 0;
        u64 pi = 0;
        for (u64 k = 0; k < top_k; ++k) {
            bool have = false;
            int bk = 0;
            u64 bi = 0;
            for (u64 c = 0; c < a.classes; ++c) {
                int kc = total_key(x[b + c * a.inner]);
                if (k > 0 && !pair_less(kc, c, pk, pi)) continue;
                if (!have || pair_less(bk, bi, kc, c)) {
                    have = true;
                    bk = kc;
                    bi = c;
                }
            }
            float value = x[b + bi * a.inner];
            if (output == ARGMAX_INDEX) y[(i * top_k + k) * a.inner + j] = (float)bi;
            else if (output == ARGMAX_VALUE) y[(i * top_k + k) * a.inner + j] = value;
            else {
                y[2 * i * top_k + k] = (float)bi;
                y[(2 * i + 1) * top_k + k] = value;
            }
            pk = bk;
            pi = bi;
        }
    }
}
