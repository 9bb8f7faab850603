// Pooling family: max and average pooling with their gradients, and SegNet's Upsample, with
// the CPU backend's arithmetic and loop order (see backend/ops/pool.rs). Gradients gather
// instead of scattering: every input element adds, in row-major output order, the
// contributions of the windows that cover it: the CPU's sums, bit for bit, with no atomics.

// Must match `PoolGeom` in cuda/pool.rs.
struct PoolGeom {
    u64 planes;
    i64 in_h, in_w, out_h, out_w;
    i64 kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
};

// The range [lo, hi) of output indices along one axis whose windows cover input index `h`:
// start = o * stride - pad <= h < start + kernel.
__device__ __forceinline__ void covering(i64 h, i64 kernel, i64 stride, i64 pad, i64 out, i64* lo, i64* hi) {
    i64 hp = h + pad;
    *lo = hp < kernel ? 0 : (hp - kernel) / stride + 1;
    i64 e = hp / stride + 1;
    *hi = e < out ? e : out;
}

// Max pooling: per output cell, the clipped window scanned row by row from -FLT_MAX / -1,
// an element winning only when strictly greater (PoolSpec::max_window).
extern "C" __global__ void crema_max_pool_forward(PoolGeom g, const float* x, float* y, float* mask) {
    u64 out_plane = (u64)(g.out_h * g.out_w), in_plane = (u64)(g.in_h * g.in_w);
    GRID_STRIDE(i, g.planes * out_plane) {
        u64 p = i / out_plane;
        i64 o = (i64)(i - p * out_plane);
        i64 ph = o / g.out_w, pw = o - ph * g.out_w;
        i64 hs = ph * g.stride_h - g.pad_h, ws = pw * g.stride_w - g.pad_w;
        i64 he = hs + g.kernel_h < g.in_h ? hs + g.kernel_h : g.in_h;
        i64 we = ws + g.kernel_w < g.in_w ? ws + g.kernel_w : g.in_w;
        if (hs < 0) hs = 0;
        if (ws < 0) ws = 0;
        const float* xp = x + p * in_plane;
        float best = -CREMA_FLT_MAX;
        i64 arg = -1;
        for (i64 h = hs; h < he; ++h) {
            for (i64 w = ws; w < we; ++w) {
                float v = xp[h * g.in_w + w];
                if (v > best) {
                    best = v;
                    arg = h * g.in_w + w;
                }
            }
        }
        y[i] = best;
        mask[i] = (float)arg;
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
    u64 out_plane = (u64)(g.out_h * g.out_w), in_plane = (u64)(g.in_h * g.in_w);
    GRID_STRIDE(i, g.planes * in_plane) {
        u64 p = i / in_plane;
        i64 e = (i64)(i - p * in_plane);
        i64 h = e / g.in_w, w = e - h * g.in_w;
        i64 ph0, ph1, pw0, pw1;
        covering(h, g.kernel_h, g.stride_h, g.pad_h, g.out_h, &ph0, &ph1);
        covering(w, g.kernel_w, g.stride_w, g.pad_w, g.out_w, &pw0, &pw1);
        const float* dyp = dy + p * out_plane;
        const float* mp = mask + p * out_plane;
        float acc = 0.0f;
        for (i64 ph = ph0; ph < ph1; ++ph) {
            for (i64 pw = pw0; pw < pw1; ++pw) {
                float m = mp[ph * g.out_w + pw];
                if (m <= -1.0f) continue;
                if (mask_index(m, in_plane) == e) acc += dyp[ph * g.out_w + pw];
            }
        }
        dx[i] = acc;
    }
    GRID_STRIDE(o, g.planes * out_plane) {
        float m = mask[o];
        if (m <= -1.0f) continue;
        i64 t = mask_index(m, in_plane);
        if (t < 0) {
            atomicMin(bad, finding(o, m));
            continue;
        }
        i64 q = (i64)(o % out_plane);
        i64 ph = q / g.out_w, pw = q - ph * g.out_w;
        i64 h = t / g.in_w, w = t - h * g.in_w;
        i64 hs = ph * g.stride_h - g.pad_h, ws = pw * g.stride_w - g.pad_w;
        if (h < hs || h >= hs + g.kernel_h || w < ws || w >= ws + g.kernel_w) *foreign = 1;
    }
}

// The CPU's scatter, for masks the gather cannot take (*foreign set by the gather; otherwise it
// returns at once): one thread per plane zeroes its dx and adds dy at each valid mask entry,
// outputs in row-major order. Slow; never needed with the masks max pooling writes.
extern "C" __global__ void crema_max_pool_backward_scatter(PoolGeom g, const float* dy, const float* mask, float* dx,
                                                           const u64* foreign) {
    if (*foreign == 0) return;
    u64 out_plane = (u64)(g.out_h * g.out_w), in_plane = (u64)(g.in_h * g.in_w);
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
__device__ __forceinline__ void ave_window(i64 o, i64 kernel, i64 stride, i64 pad, i64 in, i64* lo, i64* hi, i64* size) {
    i64 start = o * stride - pad;
    i64 end = start + kernel < in + pad ? start + kernel : in + pad;
    *size = end - start;
    *lo = start > 0 ? start : 0;
    i64 h = end < in ? end : in;
    *hi = h > 0 ? h : 0;
}

// Average pooling: the clipped window summed in float row by row from 0, divided once.
extern "C" __global__ void crema_ave_pool_forward(PoolGeom g, const float* x, float* y) {
    u64 out_plane = (u64)(g.out_h * g.out_w), in_plane = (u64)(g.in_h * g.in_w);
    GRID_STRIDE(i, g.planes * out_plane) {
        u64 p = i / out_plane;
        i64 o = (i64)(i - p * out_plane);
        i64 ph = o / g.out_w, pw = o - ph * g.out_w;
        i64 h0, h1, sh, w0, w1, sw;
        ave_window(ph, g.kernel_h, g.stride_h, g.pad_h, g.in_h, &h0, &h1, &sh);
        ave_window(pw, g.kernel_w, g.stride_w, g.pad_w, g.in_w, &w0, &w1, &sw);
        const float* xp = x + p * in_plane;
        float sum = 0.0f;
        if (w0 < w1) {
            for (i64 h = h0; h < h1; ++h) {
                for (i64 w = w0; w < w1; ++w) sum += xp[h * g.in_w + w];
            }
        }
        y[i] = sum / (float)(sh * sw);
    }
}

// Average pooling gradient as a gather: dx[h, w] = sum, over the windows covering (h, w) in
// row-major order, of dy / pool_size (the CPU's per-window quotient).
extern "C" __global__ void crema_ave_pool_backward(PoolGeom g, const float* dy, float* dx) {
    u64 out_plane = (u64)(g.out_h * g.out_w), in_plane = (u64)(g.in_h * g.in_w);
    GRID_STRIDE(i, g.planes * in_plane) {
        u64 p = i / in_plane;
        i64 e = (i64)(i - p * in_plane);
        i64 h = e / g.in_w, w = e - h * g.in_w;
        i64 ph0, ph1, pw0, pw1;
        covering(h, g.kernel_h, g.stride_h, g.pad_h, g.out_h, &ph0, &ph1);
        covering(w, g.kernel_w, g.stride_w, g.pad_w, g.out_w, &pw0, &pw1);
        const float* dyp = dy + p * out_plane;
        float acc = 0.0f;
        for (i64 ph = ph0; ph < ph1; ++ph) {
            i64 lo, hi, sh;
            ave_window(ph, g.kernel_h, g.stride_h, g.pad_h, g.in_h, &lo, &hi, &sh);
            for (i64 pw = pw0; pw < pw1; ++pw) {
                i64 wlo, whi, sw;
                ave_window(pw, g.kernel_w, g.stride_w, g.pad_w, g.in_w, &wlo, &whi, &sw);
                acc += dyp[ph * g.out_w + pw] / (float)(sh * sw);
            }
        }
        dx[i] = acc;
    }
}

// Upsample forward, first pass (y was set to all-ones bits, -1 as an int): every input element
// i of plane p records itself as the writer of output mask[i] with an integer atomic maximum,
// so the later entry wins whatever the scheduling. Bad entries go to *bad (atomic minimum, see
// finding()).
extern "C" __global__ void crema_upsample_claim(u64 planes, u64 in_plane, u64 out_plane, const float* mask, int* winner,
                                                u64* bad) {
    GRID_STRIDE(i, planes * in_plane) {
        u64 p = i / in_plane;
        i64 t = mask_index(mask[i], out_plane);
        if (t < 0) atomicMin(bad, finding(i, mask[i]));
        else atomicMax(&winner[p * out_plane + (u64)t], (int)(i - p * in_plane));
    }
}

// Second pass, in place over the same buffer: each output takes its winner's value, or 0.
extern "C" __global__ void crema_upsample_fill(u64 planes, u64 in_plane, u64 out_plane, const float* x, float* y) {
    GRID_STRIDE(o, planes * out_plane) {
        int w = __float_as_int(y[o]);
        y[o] = w >= 0 ? x[(o / out_plane) * in_plane + (u64)w] : 0.0f;
    }
}

// Upsample backward: dx[p][i] = dy[p][mask[p][i]], bad entries to *bad (atomic minimum, see
// finding()).
extern "C" __global__ void crema_upsample_backward(u64 planes, u64 in_plane, u64 out_plane, const float* dy,
                                                   const float* mask, float* dx, u64* bad) {
    GRID_STRIDE(i, planes * in_plane) {
        i64 t = mask_index(mask[i], out_plane);
        if (t < 0) atomicMin(bad, finding(i, mask[i]));
        else dx[i] = dy[(i / in_plane) * out_plane + (u64)t];
    }
}
