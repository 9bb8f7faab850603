// Convolution family: the im2col/col2im pair of the GEMM path (used for convolutions of more
// than three spatial axes, and where cuDNN has no algorithm for a shape). Biases go through
// norm.cu's per-channel affine kernels.

// Geometry of an N-d convolution over one image. Must match `ConvGeom` in cuda/conv_gemm.rs.
#define CREMA_MAX_SPATIAL 6
struct ConvGeom {
    i64 channels, in_spatial, out_spatial, kernel_len;
    i64 in_shape[CREMA_MAX_SPATIAL], out_shape[CREMA_MAX_SPATIAL], kernel[CREMA_MAX_SPATIAL];
    i64 stride[CREMA_MAX_SPATIAL], pad[CREMA_MAX_SPATIAL], dilation[CREMA_MAX_SPATIAL];
    int nd, unused;
};

// col[(c * kernel_len + k) * out_spatial + o] = x[c, position of output o under kernel tap k],
// zero in the padding.
extern "C" __global__ void crema_im2col(ConvGeom g, const float* x, float* col) {
    u64 count = (u64)(g.channels * g.kernel_len * g.out_spatial);
    GRID_STRIDE(i, count) {
        i64 o = (i64)(i % g.out_spatial);
        i64 r = (i64)(i / g.out_spatial);
        i64 k = r % g.kernel_len, c = r / g.kernel_len;
        i64 index = 0, stride_in = 1;
        bool inside = true;
        for (int a = g.nd - 1; a >= 0; --a) {
            i64 oa = o % g.out_shape[a];
            o /= g.out_shape[a];
            i64 ka = k % g.kernel[a];
            k /= g.kernel[a];
            i64 pos = oa * g.stride[a] + ka * g.dilation[a] - g.pad[a];
            if (pos < 0 || pos >= g.in_shape[a]) inside = false;
            index += pos * stride_in;
            stride_in *= g.in_shape[a];
        }
        col[i] = inside ? x[c * g.in_spatial + index] : 0.0f;
    }
}

// The transpose of im2col, as a gather: every input element sums, in kernel-tap order, the
// columns that read it (the CPU's order, and no atomics). dx is overwritten.
extern "C" __global__ void crema_col2im(ConvGeom g, const float* col, float* dx) {
    u64 count = (u64)(g.channels * g.in_spatial);
    GRID_STRIDE(i, count) {
        i64 c = (i64)(i / g.in_spatial), p = (i64)(i % g.in_spatial);
        i64 pos[CREMA_MAX_SPATIAL];
        for (int a = g.nd - 1; a >= 0; --a) {
            pos[a] = p % g.in_shape[a];
            p /= g.in_shape[a];
        }
        float acc = 0.0f;
        for (i64 k = 0; k < g.kernel_len; ++k) {
            i64 rest = k, o = 0, o_stride = 1;
            bool hit = true;
            for (int a = g.nd - 1; a >= 0; --a) {
                i64 ka = rest % g.kernel[a];
                rest /= g.kernel[a];
                i64 t = pos[a] + g.pad[a] - ka * g.dilation[a];
                if (t < 0 || t % g.stride[a] != 0 || t / g.stride[a] >= g.out_shape[a]) {
                    hit = false;
                    break;
                }
                o += (t / g.stride[a]) * o_stride;
                o_stride *= g.out_shape[a];
            }
            if (hit) acc += col[(c * g.kernel_len + k) * g.out_spatial + o];
        }
        dx[i] = acc;
    }
}
