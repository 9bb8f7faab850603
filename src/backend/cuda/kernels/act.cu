// Activations family: element-wise functions and their gradients, as the CPU backend computes
// them. In-place calls pass the same buffer as input and output.

// y = max(x, 0) + slope * min(x, 0)
extern "C" __global__ void crema_relu_forward(u64 n, float slope, const float* x, float* y) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = fmaxf(v, 0.0f) + slope * fminf(v, 0.0f);
    }
}

// dx = dy * (x > 0 ? 1 : slope)
extern "C" __global__ void crema_relu_backward(u64 n, float slope, const float* x, const float* dy, float* dx) {
    GRID_STRIDE(i, n) dx[i] = dy[i] * (x[i] > 0.0f ? 1.0f : slope);
}
