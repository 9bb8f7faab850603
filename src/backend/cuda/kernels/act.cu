// Activations family: element-wise functions and their gradients, the stateful activations
// (Swish, PReLU, Dropout) and the LSTM unit, each formula written as the CPU backend writes it (see
// backend/ops/act.rs): the same single-precision operations in the same order (compiled with
// --fmad=false, so they round as on the CPU), double where the CPU computes in double.
// In-place calls pass the same buffer as input and output; every thread reads its element
// before writing it.

// y = max(x, 0) + slope * min(x, 0), with C++'s std::max/std::min (a NaN stays NaN).
extern "C" __global__ void crema_relu_forward(u64 n, float slope, const float* x, float* y) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = relu_of(v, slope);
    }
}

// dx = dy * ((x > 0) + slope * (x <= 0))
extern "C" __global__ void crema_relu_backward(u64 n, float slope, const float* x, const float* dy, float* dx) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        dx[i] = relu_grad_of(dy[i], v, slope);
    }
}

// The other element-wise functions, selected by `op` (uniform over the grid), with up to four
// parameters. Must match `Forward` in cuda/act.rs.
#define ACT_SIGMOID 1
#define ACT_TANH 2
#define ACT_ABSVAL 3
#define ACT_BNLL 4
#define ACT_ELU 5
#define ACT_POWER 6
#define ACT_EXP 7
#define ACT_LOG 8
#define ACT_THRESHOLD 9
#define ACT_CLIP 10

// Caffe's Power/Log input: v = x; v *= scale unless scale == 1; v += shift unless shift == 0.
__device__ __forceinline__ float scale_shift(float x, float scale, float shift) {
    float v = x;
    if (scale != 1.0f) v = v * scale;
    if (shift != 0.0f) v = v + shift;
    return v;
}

__device__ __forceinline__ float act_forward(int op, float a, float b, float c, float x) {
    switch (op) {
    case ACT_SIGMOID: return sigmoid_d(x);
    case ACT_TANH: return tanh_f(x);
    case ACT_ABSVAL: return fabsf(x);
    case ACT_BNLL: {
        double xd = (double)x;
        return (float)(x > 0.0f ? xd + log(1.0 + exp(-xd)) : log(1.0 + exp(xd)));
    }
    case ACT_ELU: return cmax(x, 0.0f) + a * (exp_f(cmin(x, 0.0f)) - 1.0f);
    case ACT_POWER: {  // a = power, b = scale, c = shift (power * scale != 0)
        float v = scale_shift(x, b, c);
        return a != 1.0f ? pow_f(v, a) : v;
    }
    case ACT_EXP: {  // a = inner_scale, b = outer_scale
        float v = a != 1.0f ? a * x : x;
        float y = exp_f(v);
        return b != 1.0f ? y * b : y;
    }
    case ACT_LOG: {  // a = scale, b = shift, c = base_scale
        float y = log_f(scale_shift(x, a, b));
        return c != 1.0f ? y * c : y;
    }
    case ACT_THRESHOLD: return b2f(x > a);
    case ACT_CLIP: return cmax(a, cmin(x, b));  // a = min, b = max
    default: return __int_as_float(0x7fc00000);
    }
}

extern "C" __global__ void crema_act_forward(u64 n, int op, float a, float b, float c, const float* x, float* y) {
    GRID_STRIDE(i, n) y[i] = act_forward(op, a, b, c, x[i]);
}

// Gradients, selected by `op`. Must match `Backward` in cuda/act.rs.
#define GRAD_SIGMOID 1
#define GRAD_TANH 2
#define GRAD_ABSVAL 3
#define GRAD_BNLL 4
#define GRAD_ELU 5
#define GRAD_POWER_LINEAR 6   // power == 1: a = power * scale
#define GRAD_POWER_SQUARE 7   // power == 2: a = d * scale, b = d * shift, c = shift
#define GRAD_POWER_NO_SHIFT 8 // shift == 0: a = power
#define GRAD_POWER 9          // general: a = scale, b = shift, c = d
#define GRAD_EXP 10           // a = inner_scale
#define GRAD_LOG 11           // a = scale, b = shift, c = backward_num_scale
#define GRAD_CLIP 12          // a = min, b = max

__device__ __forceinline__ float act_backward(int op, float a, float b, float c, float x, float y, float dy) {
    switch (op) {
    case GRAD_SIGMOID: return (float)((double)(dy * y) * (1.0 - (double)y));
    case GRAD_TANH: return dy * (1.0f - y * y);
    case GRAD_ABSVAL: return (b2f(0.0f < x) - b2f(x < 0.0f)) * dy;
    case GRAD_BNLL: {
        float e = (float)exp((double)cmin(x, 50.0f));
        return (float)((double)(dy * e) / ((double)e + 1.0));
    }
    case GRAD_ELU: return dy * (b2f(x > 0.0f) + (a + y) * b2f(x <= 0.0f));
    case GRAD_POWER_LINEAR: return dy * a;
    case GRAD_POWER_SQUARE: {
        float g = a * x;
        return dy * (c != 0.0f ? g + b : g);
    }
    case GRAD_POWER_NO_SHIFT: return dy * ((y / x) * a);
    case GRAD_POWER: {
        float g = y / scale_shift(x, a, b);
        return dy * (c != 1.0f ? g * c : g);
    }
    case GRAD_EXP: {
        float g = y * dy;
        return a != 1.0f ? g * a : g;
    }
    case GRAD_LOG: {
        // powf(v, -1) of the CPU: the reciprocal, correctly rounded in double, then to float.
        float g = (float)(1.0 / (double)scale_shift(x, a, b));
        return dy * (c != 1.0f ? g * c : g);
    }
    case GRAD_CLIP: return dy * b2f(x >= a && x <= b);
    default: return __int_as_float(0x7fc00000);
    }
}

extern "C" __global__ void crema_act_backward(u64 n, int op, float a, float b, float c, const float* x, const float* y,
                                              const float* dy, float* dx) {
    GRID_STRIDE(i, n) dx[i] = act_backward(op, a, b, c, x[i], y[i], dy[i]);
}

// Swish: s = sigmoid(beta * x) (the product in float, the sigmoid in double), y = x * s.
extern "C" __global__ void crema_swish_forward(u64 n, float beta, const float* x, float* y, float* sig) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        float s = sigmoid_d(beta * v);
        sig[i] = s;
        y[i] = v * s;
    }
}

// dx = dy * (b + s * (1 - b)) in double, b = beta * y in float.
extern "C" __global__ void crema_swish_backward(u64 n, float beta, const float* y, const float* sig, const float* dy,
                                                float* dx) {
    GRID_STRIDE(i, n) {
        float b = beta * y[i];
        dx[i] = (float)((double)dy[i] * ((double)b + (double)sig[i] * (1.0 - (double)b)));
    }
}

// PReLU's slope index of element i: (i / dim) % channels, or 0 when shared.
__device__ __forceinline__ u64 prelu_channel(u64 i, u64 dim, u64 channels, int shared) {
    return shared ? 0 : (i / dim) % channels;
}

extern "C" __global__ void crema_prelu_forward(u64 n, u64 channels, u64 dim, int shared, const float* slope,
                                               const float* x, float* y) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = cmax(v, 0.0f) + slope[prelu_channel(i, dim, channels, shared)] * cmin(v, 0.0f);
    }
}

extern "C" __global__ void crema_prelu_backward_data(u64 n, u64 channels, u64 dim, int shared, const float* slope,
                                                     const float* x, const float* dy, float* dx) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        float s = slope[prelu_channel(i, dim, channels, shared)];
        dx[i] = dy[i] * (b2f(v > 0.0f) + s * b2f(v <= 0.0f));
    }
}

// PReLU slope gradient, first pass: block job j of planes * parts (grid-strided over jobs)
// sums part j % parts of plane j / parts of (dy * x) * (x <= 0) in double, into partial[j].
// The parts depend on the shape only, so the sums do not depend on the GPU.
extern "C" __global__ void crema_prelu_slope_partial(u64 planes, u64 dim, u64 parts, const float* x, const float* dy,
                                                     double* partial) {
    u64 chunk = (dim + parts - 1) / parts;
    for (u64 job = blockIdx.x; job < planes * parts; job += gridDim.x) {
        u64 plane = job / parts, part = job - plane * parts;
        u64 begin = part * chunk, end = begin + chunk < dim ? begin + chunk : dim;
        const float* xp = x + plane * dim;
        const float* dp = dy + plane * dim;
        double acc = 0.0;
        for (u64 k = begin + threadIdx.x; k < end; k += blockDim.x) {
            float v = xp[k];
            acc += (double)((dp[k] * v) * b2f(v <= 0.0f));
        }
        double s = block_sum(acc);
        if (threadIdx.x == 0) partial[job] = s;
    }
}

// Second pass: one thread per slope adds, plane by plane in order, the planes of its channel
// (every plane when shared), and adds the sum rounded to float to dslope.
extern "C" __global__ void crema_prelu_slope_final(u64 slopes, u64 planes, u64 channels, u64 parts,
                                                   const double* partial, float* dslope) {
    GRID_STRIDE(c, slopes) {
        double acc = 0.0;
        u64 step = slopes == 1 ? 1 : channels;
        for (u64 p = c; p < planes; p += step) {
            double plane = 0.0;
            for (u64 q = 0; q < parts; ++q) plane += partial[p * parts + q];
            acc += plane;
        }
        dslope[c] += (float)acc;
    }
}

// mask = bits >= threshold ? 1 : 0; y = (x * mask) * scale.
extern "C" __global__ void crema_dropout_forward(u64 n, u64 key, u64 threshold, float scale, const float* x, float* y,
                                                 float* mask) {
    GRID_STRIDE(i, n) {
        float m = random_bits(key, i) >= (unsigned)threshold ? 1.0f : 0.0f;
        mask[i] = m;
        y[i] = x[i] * m * scale;
    }
}

// dx = (dy * mask) * scale.
extern "C" __global__ void crema_dropout_backward(u64 n, float scale, const float* mask, const float* dy, float* dx) {
    GRID_STRIDE(i, n) dx[i] = dy[i] * mask[i] * scale;
}

// LSTM unit (Caffe's LSTMUnit; backend/ops/act.rs, cpu/lstm_unit.rs): `n = num * dim` cells,
// row = k / dim, cell d = k % dim; gate inputs x hold 4 * dim values per row (input, forget,
// output, candidate). Every element in double, each output rounded to float once, in the CPU's
// order of operations.

// The logistic function 0.5 * tanh(0.5 * v) + 0.5 (the CPU's `logistic`): no overflow.
__device__ __forceinline__ double lstm_logistic(double v) { return 0.5 * tanh(0.5 * v) + 0.5; }

// The gates of cell d of a row of gate inputs xn; the forget gate is 0 where cont == 0, whatever
// its input holds.
struct LstmGates {
    double i, f, o, g;
};
__device__ __forceinline__ LstmGates lstm_gates(const float* xn, u64 dim, u64 d, float cont) {
    LstmGates r;
    r.i = lstm_logistic((double)xn[d]);
    r.f = cont == 0.0f ? 0.0 : (double)cont * lstm_logistic((double)xn[dim + d]);
    r.o = lstm_logistic((double)xn[2 * dim + d]);
    r.g = tanh((double)xn[3 * dim + d]);
    return r;
}

// c = f * c_prev + i * g, h = o * tanh(c).
extern "C" __global__ void crema_lstm_unit_forward(u64 n, u64 dim, const float* c_prev, const float* x,
                                                   const float* cont, float* c, float* h) {
    GRID_STRIDE(k, n) {
        u64 row = k / dim, d = k - row * dim;
        LstmGates a = lstm_gates(x + row * 4 * dim, dim, d, cont[row]);
        double cv = a.f * (double)c_prev[k] + a.i * a.g;
        c[k] = (float)cv;
        h[k] = (float)(a.o * tanh(cv));
    }
}

// With t = tanh(c), e = dc + dh * o * (1 - t * t): dc_prev = e * f; gate-input diffs
// e * g * i * (1 - i), e * c_prev * f * (1 - f), dh * t * o * (1 - o), e * i * (1 - g * g).
// dc_prev and dx may be null (not asked for).
extern "C" __global__ void crema_lstm_unit_backward(u64 n, u64 dim, const float* c_prev, const float* x,
                                                    const float* cont, const float* c, const float* dc,
                                                    const float* dh, float* dc_prev, float* dx) {
    GRID_STRIDE(k, n) {
        u64 row = k / dim, d = k - row * dim;
        LstmGates a = lstm_gates(x + row * 4 * dim, dim, d, cont[row]);
        double t = tanh((double)c[k]);
        double dhv = (double)dh[k];
        double e = (double)dc[k] + dhv * a.o * (1.0 - t * t);
        if (dc_prev) dc_prev[k] = (float)(e * a.f);
        if (dx) {
            float* q = dx + row * 4 * dim + d;
            q[0] = (float)(e * a.g * a.i * (1.0 - a.i));
            q[dim] = (float)(e * (double)c_prev[k] * a.f * (1.0 - a.f));
            q[2 * dim] = (float)(dhv * t * a.o * (1.0 - a.o));
            q[3 * dim] = (float)(e * a.i * (1.0 - a.g * a.g));
        }
    }
}
