// Normalization family: per-channel statistics and batch normalisation, per-channel affine
// maps, LRN (backend/ops/norm.rs). Data are `(outer, channels, inner)`: channel c's m = outer *
// inner elements are `outer` runs of `inner`.
//
// Per-channel sums run on a (channels x parts) grid whose parts depend on the shape only: block
// (c, p) sums part p of channel c in double through block_sum's fixed tree, and a second pass
// adds the parts in order. The sums are deterministic and at least as accurate as the CPU's (f32
// within blocks, f64 across), so statistics agree with the CPU's to rounding; everything
// element-wise is the CPU's formula, in its order. A batch normalisation reads its input twice
// (statistics, then normalisation) and its gradient twice (sums, then dx); a ReLU fused into it
// costs no pass of its own.

// Must match `Dims` in cuda/norm.rs.
struct Dims {
    u64 outer, channels, inner;
};

#define SUM_MOMENTS 0   // s1 = sum(a - k), s2 = sum((a - k)^2) in double, k = channel c's first
                        // element (a shift that keeps the variance from cancelling)
#define SUM_AND_DOT 1   // s1 = sum(a), s2 = sum(a * b) (0 when b is null)
#define SUM_AND_DOT_RELU 2  // SUM_AND_DOT of g = relu_grad(a, relu(b * scale[c] + shift[c])): a
                            // fused ReLU's bottom diff from its top diff `a` and x_hat `b`

// First pass: partial[c * parts + p] (s1) and partial[(channels + c) * parts + p] (s2).
// `scale`, `shift` and `slope` are read in SUM_AND_DOT_RELU only.
extern "C" __global__ void crema_channel_sums(Dims d, u64 parts, int mode, const float* a, const float* b,
                                              const float* scale, const float* shift, float slope,
                                              double* partial) {
    u64 c = blockIdx.x, p = blockIdx.y;
    u64 m = d.outer * d.inner;
    u64 chunk = (m + parts - 1) / parts;
    u64 begin = p * chunk, end = begin + chunk < m ? begin + chunk : m;
    double k = mode == SUM_MOMENTS ? (double)a[c * d.inner] : 0.0;
    int relu = mode == SUM_AND_DOT_RELU;
    float sc = relu ? scale[c] : 0.0f, sh = relu ? shift[c] : 0.0f;
    double s1 = 0.0, s2 = 0.0;
    u64 j = begin + threadIdx.x;
    u64 o = j / d.inner, i = j - o * d.inner;
    for (; j < end; j += blockDim.x) {
        u64 at = (o * d.channels + c) * d.inner + i;
        float v = a[at];
        if (mode == SUM_MOMENTS) {
            double e = (double)v - k;
            s1 += e;
            s2 += e * e;
        } else if (relu) {
            float xh = b[at];
            float g = relu_grad_of(v, relu_of(xh * sc + sh, slope), slope);
            s1 += (double)g;
            s2 += (double)(g * xh);
        } else {
            s1 += (double)v;
            if (mode == SUM_AND_DOT && b) s2 += (double)(v * b[at]);
        }
        i += blockDim.x;
        if (i >= d.inner) {
            o += i / d.inner;
            i %= d.inner;
        }
    }
    double t1 = block_sum(s1);
    double t2 = block_sum(s2);
    if (threadIdx.x == 0) {
        partial[c * parts + p] = t1;
        partial[(d.channels + c) * parts + p] = t2;
    }
}

// The parts of sum `k` (0: s1, 1: s2) of channel c, added in order.
__device__ __forceinline__ double channel_total(const double* partial, u64 channels, u64 parts, u64 c, int k) {
    double t = 0.0;
    for (u64 p = 0; p < parts; ++p) t += partial[(k * channels + c) * parts + p];
    return t;
}

// std from var: sqrt(var + eps) (inside) or sqrt(var) + eps, in float.
__device__ __forceinline__ float std_of(float var, float eps, int inside) { return inside ? sqrtf(var + eps) : sqrtf(var) + eps; }

// From SUM_MOMENTS' sums about k = x[c * inner]: mean[c] = k + s1 / m and the biased variance
// var[c] = s2 / m - (s1 / m)^2 (at least 0), in double, each rounded to float once; std[c] from
// var when `std` is not null. One pass over the data where the CPU makes two: in double, the
// shift leaves a cancellation of (mean - k)^2 / var, a few units for data spread as conv outputs
// are, so both agree with the CPU's to rounding.
extern "C" __global__ void crema_channel_moments(Dims d, u64 parts, const float* x, const double* partial, float eps,
                                                 int inside, float* mean, float* var, float* std) {
    double m = (double)(d.outer * d.inner);
    GRID_STRIDE(c, d.channels) {
        double d1 = channel_total(partial, d.channels, parts, c, 0) / m;
        double d2 = channel_total(partial, d.channels, parts, c, 1) / m;
        double v = d2 - d1 * d1;
        float vf = (float)(v > 0.0 ? v : 0.0);
        mean[c] = (float)((double)x[c * d.inner] + d1);
        var[c] = vf;
        if (std) std[c] = std_of(vf, eps, inside);
    }
}

extern "C" __global__ void crema_channel_std(u64 channels, float eps, int inside, const float* var, float* std) {
    GRID_STRIDE(c, channels) std[c] = std_of(var[c], eps, inside);
}

// The element loops below go plane by plane (FOR_EACH_PLANE in common.cuh; a plane: one o and
// one c, `inner` consecutive elements), working out the channel once per plane.

// x_hat = (x - mean[c]) / std[c]; x_norm = x_hat when not null; y = x_hat * scale[c] + shift[c]
// when `scale` is not null (then its ReLU when `relu`), else x_hat.
extern "C" __global__ void crema_channel_normalize(Dims d, const float* x, const float* mean, const float* std,
                                                   const float* scale, const float* shift, int relu, float slope,
                                                   float* x_norm, float* y) {
    FOR_EACH_PLANE(p, d.outer * d.channels) {
        u64 base = p * d.inner, c = p % d.channels;
        float m = mean[c], s = std[c], sc = scale ? scale[c] : 0.0f, sh = scale ? shift[c] : 0.0f;
        FOR_IN_PLANE(i, d.inner) {
            u64 k = base + i;
            float xh = (x[k] - m) / s;
            if (x_norm) x_norm[k] = xh;
            float v = scale ? xh * sc + sh : xh;
            y[k] = relu ? relu_of(v, slope) : v;
        }
    }
}

// The backward's per-channel results: dscale[c] += s2 and dshift[c] += s1 (when not null), and
// the dx factors mg[c] = s * s1 / m, mgx[c] = s * s2 / m (in double, rounded to float).
extern "C" __global__ void crema_channel_grad_sums(u64 channels, u64 parts, double m, const double* partial,
                                                   const float* scale, float* dscale, float* dshift, float* mg,
                                                   float* mgx) {
    GRID_STRIDE(c, channels) {
        double s1 = channel_total(partial, channels, parts, c, 0), s2 = channel_total(partial, channels, parts, c, 1);
        if (dscale) dscale[c] += (float)s2;
        if (dshift) dshift[c] += (float)s1;
        if (mg) {
            double s = scale ? (double)scale[c] : 1.0;
            mg[c] = (float)(s * s1 / m);
            mgx[c] = (float)(s * s2 / m);
        }
    }
}

#define GRAD_BATCH_STATS 0
#define GRAD_MEAN_ONLY 1
#define GRAD_FIXED 2

// dx from g = dy * scale[c] (scale 1 when null): Fixed g / std; MeanOnly (g - mg) / std;
// BatchStats (g - (x_hat * mgx + mg)) / std. With `relu`, the diff given is a fused ReLU's top
// diff and dy its bottom diff, relu_grad(diff, relu(x_hat * scale[c] + shift[c])).
extern "C" __global__ void crema_channel_norm_dx(Dims d, int grad, const float* x_norm, const float* dy,
                                                 const float* std, const float* scale, const float* shift,
                                                 int relu, float slope, const float* mg, const float* mgx,
                                                 float* dx) {
    FOR_EACH_PLANE(p, d.outer * d.channels) {
        u64 base = p * d.inner, c = p % d.channels;
        float sc = scale ? scale[c] : 1.0f, sh = relu ? shift[c] : 0.0f, s = std[c];
        float a = grad == GRAD_FIXED ? 0.0f : mg[c], b = grad == GRAD_BATCH_STATS ? mgx[c] : 0.0f;
        FOR_IN_PLANE(i, d.inner) {
            u64 k = base + i;
            float dyv = dy[k];
            if (relu) dyv = relu_grad_of(dyv, relu_of(x_norm[k] * sc + sh, slope), slope);
            float g = dyv * sc;
            float v;
            if (grad == GRAD_FIXED) v = g / s;
            else if (grad == GRAD_MEAN_ONLY) v = (g - a) / s;
            else v = (g - (x_norm[k] * b + a)) / s;
            dx[k] = v;
        }
    }
}

// y = x * scale[c] + bias[c], either part optional (the product rounded before the sum).
extern "C" __global__ void crema_channel_affine(Dims d, const float* x, const float* scale, const float* bias, float* y) {
    FOR_EACH_PLANE(p, d.outer * d.channels) {
        u64 base = p * d.inner, c = p % d.channels;
        float sc = scale ? scale[c] : 0.0f, bc = bias ? bias[c] : 0.0f;
        FOR_IN_PLANE(i, d.inner) {
            u64 k = base + i;
            float v = x[k];
            if (scale) v = v * sc;
            if (bias) v = v + bc;
            y[k] = v;
        }
    }
}

// The affine backward's sums: dscale[c] += s2 (sum dy * x), dbias[c] += s1 (sum dy).
extern "C" __global__ void crema_channel_affine_sums(u64 channels, u64 parts, const double* partial, float* dscale,
                                                     float* dbias) {
    GRID_STRIDE(c, channels) {
        if (dscale) dscale[c] += (float)channel_total(partial, channels, parts, c, 1);
        if (dbias) dbias[c] += (float)channel_total(partial, channels, parts, c, 0);
    }
}

// Must match `LrnGeom` in cuda/norm.rs.
struct LrnGeom {
    u64 num, channels, height, width, size;
    float alpha, beta, k;
    float a;           // alpha / size, in float (across channels)
    float crv;         // 2 alpha beta / size in double, rounded (across-channel backward)
    float diff_scale;  // -beta * alpha in float (within-channel backward)
};

// LRN across channels, one thread per pixel of an image, sliding the window along the channels
// as Caffe (and the CPU) do: scale = k + a * (head of the window), then each channel adds the
// entering square and subtracts the leaving one; y = scale^-beta * x.
extern "C" __global__ void crema_lrn_across_forward(LrnGeom g, const float* x, float* scale, float* y) {
    u64 plane = g.height * g.width, cn = g.channels, pre = (g.size - 1) / 2;
    GRID_STRIDE(t, g.num * plane) {
        u64 n = t / plane, p = t - n * plane;
        u64 base = n * cn * plane + p;
        const float* xb = x + base;
        float* sb = scale + base;
        float s = g.k;
        for (u64 j = 0; j < g.size; ++j) {
            if (j >= pre && j - pre < cn) {
                float v = xb[(j - pre) * plane];
                s += g.a * (v * v);
            }
        }
        sb[0] = s;
        for (u64 c = 1; c < cn; ++c) {
            if (c + pre < cn) {
                float v = xb[(c + pre) * plane];
                s += g.a * (v * v);
            }
            if (c > pre) {
                float v = xb[(c - 1 - pre) * plane];
                s += (-g.a) * (v * v);
            }
            sb[c * plane] = s;
        }
        for (u64 c = 0; c < cn; ++c) y[base + c * plane] = pow_f(sb[c * plane], -g.beta) * xb[c * plane];
    }
}

// Its backward, one thread per pixel: dx = dy * scale^-beta - crv * x * (sliding sum of
// dy * y / scale over the window), the sums added and removed in Caffe's order.
extern "C" __global__ void crema_lrn_across_backward(LrnGeom g, const float* x, const float* y, const float* scale,
                                                     const float* dy, float* dx) {
    u64 plane = g.height * g.width, cn = g.channels, pre = (g.size - 1) / 2;
    GRID_STRIDE(t, g.num * plane) {
        u64 n = t / plane, p = t - n * plane;
        u64 base = n * cn * plane + p;
#define RATIO(c) (dy[base + (c) * plane] * y[base + (c) * plane] / scale[base + (c) * plane])
        float acc = 0.0f;
        for (u64 j = 0; j + 1 < g.size; ++j) {
            if (j >= pre && j - pre < cn) acc += RATIO(j - pre);
        }
        for (u64 c = 0; c < cn; ++c) {
            u64 k = base + c * plane;
            if (c + pre < cn) acc += RATIO(c + pre);
            float d = dy[k] * pow_f(scale[k], -g.beta);
            dx[k] = d + (-g.crv) * (x[k] * acc);
            if (c >= pre) acc -= RATIO(c - pre);
        }
#undef RATIO
    }
}

// Caffe's average-pooling window of output o along an axis of `len` (stride 1, pad `pre`,
// kernel `size`): the clipped [lo, hi) and the divisor counted before clipping.
__device__ __forceinline__ void lrn_window(i64 o, i64 len, i64 pre, i64 size, i64* lo, i64* hi, i64* count) {
    i64 start = o - pre;
    i64 end = start + size < len + pre ? start + size : len + pre;
    *count = end - start;
    *lo = start > 0 ? start : 0;
    *hi = end < len ? end : len;
}

// LRN within a channel: scale = alpha * (sum of squares over the clipped square, in row-major
// order, divided by the unclipped count) + 1; y = x * scale^-beta.
extern "C" __global__ void crema_lrn_within_forward(LrnGeom g, const float* x, float* scale, float* y) {
    i64 H = (i64)g.height, W = (i64)g.width, pre = (i64)(g.size - 1) / 2, size = (i64)g.size;
    u64 plane = g.height * g.width;
    GRID_STRIDE(t, g.num * g.channels * plane) {
        u64 pl = t / plane;
        i64 q = (i64)(t - pl * plane), h = q / W, w = q - h * W;
        const float* xp = x + pl * plane;
        i64 h0, h1, hc, w0, w1, wc;
        lrn_window(h, H, pre, size, &h0, &h1, &hc);
        lrn_window(w, W, pre, size, &w0, &w1, &wc);
        float sum = 0.0f;
        for (i64 hh = h0; hh < h1; ++hh) {
            for (i64 ww = w0; ww < w1; ++ww) {
                float v = xp[hh * W + ww];
                sum += v * v;
            }
        }
        float avg = sum / (float)(hc * wc);
        float s = g.alpha * avg + 1.0f;
        scale[t] = s;
        y[t] = x[t] * pow_f(s, -g.beta);
    }
}

// Its backward, first pass: the gradient reaching the pooled sum,
// pooled = (dy * x) * (diff_scale * (scale^-beta / scale)).
extern "C" __global__ void crema_lrn_within_pooled(u64 n, float beta, float diff_scale, const float* x,
                                                   const float* scale, const float* dy, float* pooled) {
    GRID_STRIDE(t, n) {
        float s = scale[t];
        pooled[t] = (dy[t] * x[t]) * (diff_scale * (pow_f(s, -beta) / s));
    }
}

// Second pass, a gather: d_sq sums pooled / count over the windows covering the pixel, in
// row-major order; dx = scale^-beta * dy + d_sq * (2 x).
extern "C" __global__ void crema_lrn_within_backward(LrnGeom g, const float* x, const float* scale, const float* dy,
                                                     const float* pooled, float* dx) {
    i64 H = (i64)g.height, W = (i64)g.width, pre = (i64)(g.size - 1) / 2, size = (i64)g.size;
    u64 plane = g.height * g.width;
    GRID_STRIDE(t, g.num * g.channels * plane) {
        u64 pl = t / plane;
        i64 q = (i64)(t - pl * plane), h = q / W, w = q - h * W;
        const float* pp = pooled + pl * plane;
        i64 oh0 = h > pre ? h - pre : 0, oh1 = h + pre + 1 < H ? h + pre + 1 : H;
        i64 ow0 = w > pre ? w - pre : 0, ow1 = w + pre + 1 < W ? w + pre + 1 : W;
        float d_sq = 0.0f;
        for (i64 oh = oh0; oh < oh1; ++oh) {
            i64 lo, hi, hc;
            lrn_window(oh, H, pre, size, &lo, &hi, &hc);
            for (i64 ow = ow0; ow < ow1; ++ow) {
                i64 wlo, whi, wc;
                lrn_window(ow, W, pre, size, &wlo, &whi, &wc);
                d_sq += pp[oh * W + ow] / (float)(hc * wc);
            }
        }
        float d_prod = pow_f(scale[t], -g.beta) * dy[t];
        dx[t] = d_prod + d_sq * (2.0f * x[t]);
    }
}
