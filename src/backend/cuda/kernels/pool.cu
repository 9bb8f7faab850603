// Pooling family: max and average pooling with their gradients, and SegNet's Upsample, with
// the CPU backend's arithmetic and loop order (see backend/ops/pool.rs). Gradients gather
// instead of scattering: every input element adds, in row-major output order, the
// contributions of the windows that cover it: the CPU's sums, bit for bit, with no atomics.

// Kernels loop over planes (FOR_EACH_PLANE) and, within a plane, work in 32-bit integers: the
// host refuses a geometry whose in-plane values do not fit (PoolGeom::of in cuda/pool.rs), so a
// thread's row and column cost one 32-bit division, not 64-bit ones per element.

// Must match `PoolGeom` in cuda/pool.rs.
struct PoolGeom {
    u64 planes;
    int in_h, in_w, out_h, out_w;
    int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
};

// The range [lo, hi) of output indices along one axis whose windows cover input index `h`:
// start = o * stride - pad <= h < start + kernel.
__device__ __forceinline__ void covering(int h, int kernel, int stride, int pad, int out, int* lo, int* hi) {
    int hp = h + pad;
    *lo = hp < kernel ? 0 : (hp - kernel) / stride + 1;
    int e = hp / stride + 1;
    *hi = e < out ? e : out;
}

// The output windows covering element `e` of an input plane: rows [ph0, ph1), columns
// [pw0, pw1) (the gradient gathers' loops).
struct Cover {
    int ph0, ph1, pw0, pw1;
};

__device__ __forceinline__ Cover covering_cell(const PoolGeom& g, int e) {
    int h = e / g.in_w, w = e - h * g.in_w;
    Cover c;
    covering(h, g.kernel_h, g.stride_h, g.pad_h, g.out_h, &c.ph0, &c.ph1);
    covering(w, g.kernel_w, g.stride_w, g.pad_w, g.out_w, &c.pw0, &c.pw1);
    return c;
}

// The window of output cell q of a plane as max pooling clips it (PoolSpec::max_window on
// each axis): rows [h0, h1), columns [w0, w1), empty when it lies past the input.
struct Window {
    int h0, h1, w0, w1;
};

__device__ __forceinline__ Window max_window_of(const PoolGeom& g, u64 q) {
    int o = (int)q, ph = o / g.out_w, pw = o - ph * g.out_w;
    int hs = ph * g.stride_h - g.pad_h, ws = pw * g.stride_w - g.pad_w;
    Window win;
    win.h1 = hs + g.kernel_h < g.in_h ? hs + g.kernel_h : g.in_h;
    win.w1 = ws + g.kernel_w < g.in_w ? ws + g.kernel_w : g.in_w;
    win.h0 = hs < 0 ? 0 : hs;
    win.w0 = ws < 0 ? 0 : ws;
    return win;
}

// Max pooling: per output cell, the clipped window scanned row by row from -FLT_MAX / -1,
// an element winning only when strictly greater (PoolSpec::max_window).
extern "C" __global__ void crema_max_pool_forward(PoolGeom g, const float* x, float* y, float* mask) {
    int out_plane = g.out_h * g.out_w, in_plane = g.in_h * g.in_w;
    FOR_EACH_PLANE(p, g.planes) {
        const float* xp = x + p * in_plane;
        u64 ob = p * out_plane;
        FOR_IN_PLANE(q, out_plane) {
            Window win = max_window_of(g, q);
            float best = -CREMA_FLT_MAX;
            int arg = -1;
            for (int h = win.h0; h < win.h1; ++h) {
                for (int w = win.w0; w < win.w1; ++w) {
                    float v = xp[h * g.in_w + w];
                    if (v > best) {
                        best = v;
                        arg = h * g.in_w + w;
                    }
                }
            }
            y[ob + q] = best;
            mask[ob + q] = (float)arg;
        }
    }
}

// Stochastic pooling in training (Pooling::stochastic_pool_forward_train): the window summed
// from 0, t = u * sum for output i's uniform draw, then the first element at which the running
// sum reaches t, else the last; an empty window gives 0 and mask -1.
extern "C" __global__ void crema_stochastic_pool_train(PoolGeom g, u64 key, const float* x, float* y, float* mask) {
    int out_plane = g.out_h * g.out_w, in_plane = g.in_h * g.in_w;
    FOR_EACH_PLANE(p, g.planes) {
        const float* xp = x + p * in_plane;
        u64 ob = p * out_plane;
        FOR_IN_PLANE(q, out_plane) {
            Window win = max_window_of(g, q);
            float sum = 0.0f;
            for (int h = win.h0; h < win.h1; ++h) {
                for (int w = win.w0; w < win.w1; ++w) sum += xp[h * g.in_w + w];
            }
            // (random_bits >> 8) + 1 in (0, 2^24], times 2^-24: stochastic_uniform.
            float u = (float)((random_bits(key, ob + q) >> 8) + 1u) * 5.9604644775390625e-8f;
            float thres = u * sum, run = 0.0f;
            int pick = -1;
            bool found = false;
            for (int h = win.h0; h < win.h1 && !found; ++h) {
                for (int w = win.w0; w < win.w1; ++w) {
                    pick = h * g.in_w + w;
                    run += xp[pick];
                    if (run >= thres) {
                        found = true;
                        break;
                    }
                }
            }
            y[ob + q] = pick >= 0 ? xp[pick] : 0.0f;
            mask[ob + q] = (float)pick;
        }
    }
}

// Stochastic pooling at test time (Pooling::stochastic_pool_forward_test): the window's sum of
// squares (fused multiply-adds from 0) over its sum (from FLT_MIN).
extern "C" __global__ void crema_stochastic_pool_test(PoolGeom g, const float* x, float* y) {
    int out_plane = g.out_h * g.out_w, in_plane = g.in_h * g.in_w;
    FOR_EACH_PLANE(p, g.planes) {
        const float* xp = x + p * in_plane;
        u64 ob = p * out_plane;
        FOR_IN_PLANE(q, out_plane) {
            Window win = max_window_of(g, q);
            float sum = CREMA_FLT_MIN, squares = 0.0f;
            for (int h = win.h0; h < win.h1; ++h) {
                for (int w = win.w0; w < win.w1; ++w) {
                    float v = xp[h * g.in_w + w];
                    sum += v;
                    squares = fmaf(v, v, squares);
                }
            }
            y[ob + q] = squares / sum;
        }
    }
}

// Max pooling gradient as a gather: dx[h, w] = sum, over the windows covering (h, w) in
// row-major order, of dy where the window's mask names (h, w). The same launch checks every
// mask entry: *bad gets (atomic minimum, see finding()) the first output whose entry is NaN or
// not below in_plane (negative entries up to -1 are Caffe's empty windows and name nothing);
// *foreign is set when an entry names an element outside its own window (a mask from
// elsewhere), which the gather cannot see: crema_max_pool_backward_scatter, queued after this
// kernel, then redoes dx.
extern "C" __global__ void crema_max_pool_backward(PoolGeom g, const float* dy, const float* mask, float* dx,
                                                   u64* bad, u64* foreign) {
    int out_plane = g.out_h * g.out_w, in_plane = g.in_h * g.in_w;
    FOR_EACH_PLANE(p, g.planes) {
        const float* dyp = dy + p * out_plane;
        const float* mp = mask + p * out_plane;
        u64 ib = p * in_plane;
        FOR_IN_PLANE(q, in_plane) {
            int e = (int)q;
            Cover cv = covering_cell(g, e);
            float acc = 0.0f;
            for (int ph = cv.ph0; ph < cv.ph1; ++ph) {
                for (int pw = cv.pw0; pw < cv.pw1; ++pw) {
                    float m = mp[ph * g.out_w + pw];
                    if (m <= -1.0f) continue;
                    if (mask_index(m, in_plane) == e) acc += dyp[ph * g.out_w + pw];
                }
            }
            dx[ib + q] = acc;
        }
        FOR_IN_PLANE(q, out_plane) {
            float m = mp[q];
            if (m <= -1.0f) continue;
            i64 t = mask_index(m, in_plane);
            if (t < 0) {
                atomicMin(bad, finding(p * out_plane + q, m));
                continue;
            }
            int o = (int)q, ph = o / g.out_w, pw = o - ph * g.out_w;
            int h = (int)t / g.in_w, w = (int)t - h * g.in_w;
            int hs = ph * g.stride_h - g.pad_h, ws = pw * g.stride_w - g.pad_w;
            if (h < hs || h >= hs + g.kernel_h || w < ws || w >= ws + g.kernel_w) *foreign = 1;
        }
    }
}

// The CPU's scatter, for masks the gather cannot take (*foreign set by the gather; otherwise it
// returns at once): one thread per plane zeroes its dx and adds dy at each valid mask entry,
// outputs in row-major order. Slow; never needed with the masks max pooling writes.
extern "C" __global__ void crema_max_pool_backward_scatter(PoolGeom g, const float* dy, const float* mask, float* dx,
                                                           const u64* foreign) {
    if (*foreign == 0) return;
    u64 out_plane = (u64)g.out_h * g.out_w, in_plane = (u64)g.in_h * g.in_w;
    GRID_STRIDE(p, g.planes) {
        float* dxp = dx + p * in_plane;
        for (u64 e = 0; e < in_plane; ++e) dxp[e] = 0.0f;
        for (u64 o = 0; o < out_plane; ++o) {
            float m = mask[p * out_plane + o];
            if (m <= -1.0f) continue;
            i64 t = mask_index(m, in_plane);
            if (t >= 0) dxp[t] += dy[p * out_plane + o];
        }
    }
}

// The average window along one axis (PoolSpec::ave_window): clipped [lo, hi) and the extent
// the sum is divided by (padding inside the padded input counts).
__device__ __forceinline__ void ave_window(int o, int kernel, int stride, int pad, int in, int* lo, int* hi, int* size) {
    int start = o * stride - pad;
    int end = start + kernel < in + pad ? start + kernel : in + pad;
    *size = end - start;
    *lo = start > 0 ? start : 0;
    int h = end < in ? end : in;
    *hi = h > 0 ? h : 0;
}

// Average pooling: the clipped window summed in float row by row from 0, divided once.
extern "C" __global__ void crema_ave_pool_forward(PoolGeom g, const float* x, float* y) {
    int out_plane = g.out_h * g.out_w, in_plane = g.in_h * g.in_w;
    FOR_EACH_PLANE(p, g.planes) {
        const float* xp = x + p * in_plane;
        u64 ob = p * out_plane;
        FOR_IN_PLANE(q, out_plane) {
            int o = (int)q, ph = o / g.out_w, pw = o - ph * g.out_w;
            int h0, h1, sh, w0, w1, sw;
            ave_window(ph, g.kernel_h, g.stride_h, g.pad_h, g.in_h, &h0, &h1, &sh);
            ave_window(pw, g.kernel_w, g.stride_w, g.pad_w, g.in_w, &w0, &w1, &sw);
            float sum = 0.0f;
            if (w0 < w1) {
                for (int h = h0; h < h1; ++h) {
                    for (int w = w0; w < w1; ++w) sum += xp[h * g.in_w + w];
                }
            }
            y[ob + q] = sum / (float)(sh * sw);
        }
    }
}

// Average pooling gradient as a gather: dx[h, w] = sum, over the windows covering (h, w) in
// row-major order, of dy / pool_size (the CPU's per-window quotient).
extern "C" __global__ void crema_ave_pool_backward(PoolGeom g, const float* dy, float* dx) {
    int out_plane = g.out_h * g.out_w, in_plane = g.in_h * g.in_w;
    FOR_EACH_PLANE(p, g.planes) {
        const float* dyp = dy + p * out_plane;
        u64 ib = p * in_plane;
        FOR_IN_PLANE(q, in_plane) {
            int e = (int)q;
            Cover cv = covering_cell(g, e);
            float acc = 0.0f;
            for (int ph = cv.ph0; ph < cv.ph1; ++ph) {
                int lo, hi, sh;
                ave_window(ph, g.kernel_h, g.stride_h, g.pad_h, g.in_h, &lo, &hi, &sh);
                for (int pw = cv.pw0; pw < cv.pw1; ++pw) {
                    int wlo, whi, sw;
                    ave_window(pw, g.kernel_w, g.stride_w, g.pad_w, g.in_w, &wlo, &whi, &sw);
                    acc += dyp[ph * g.out_w + pw] / (float)(sh * sw);
                }
            }
            dx[ib + q] = acc;
        }
    }
}

// Upsample forward, first pass (y was set to all-ones bits, -1 as an int): every input element
// i of plane p records itself as the writer of output mask[i] with an integer atomic maximum,
// so the later entry wins whatever the scheduling. Bad entries go to *bad (atomic minimum, see
// finding()).
extern "C" __global__ void crema_upsample_claim(u64 planes, u64 in_plane, u64 out_plane, const float* mask, int* winner,
                                                u64* bad) {
    FOR_EACH_PLANE(p, planes) {
        FOR_IN_PLANE(i, in_plane) {
            u64 k = p * in_plane + i;
            i64 t = mask_index(mask[k], out_plane);
            if (t < 0) atomicMin(bad, finding(k, mask[k]));
            else atomicMax(&winner[p * out_plane + (u64)t], (int)i);
        }
    }
}

// Second pass, in place over the same buffer: each output takes its winner's value, or 0.
extern "C" __global__ void crema_upsample_fill(u64 planes, u64 in_plane, u64 out_plane, const float* x, float* y) {
    FOR_EACH_PLANE(p, planes) {
        const float* xp = x + p * in_plane;
        float* yp = y + p * out_plane;
        FOR_IN_PLANE(o, out_plane) {
            int w = __float_as_int(yp[o]);
            yp[o] = w >= 0 ? xp[w] : 0.0f;
        }
    }
}

// Upsample backward: dx[p][i] = dy[p][mask[p][i]], bad entries to *bad (atomic minimum, see
// finding()).
extern "C" __global__ void crema_upsample_backward(u64 planes, u64 in_plane, u64 out_plane, const float* dy,
                                                   const float* mask, float* dx, u64* bad) {
    FOR_EACH_PLANE(p, planes) {
        FOR_IN_PLANE(i, in_plane) {
            u64 k = p * in_plane + i;
            i64 t = mask_index(mask[k], out_plane);
            if (t < 0) atomicMin(bad, finding(k, mask[k]));
            else dx[k] = dy[p * out_plane + (u64)t];
        }
    }
}
