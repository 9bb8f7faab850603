// Solver family: the fused parameter update (backend/ops/solver.rs), one thread per element,
// each operation the CPU's, in its order (+, *, / and sqrt are IEEE in both, with no FMA
// contraction): the CPU's bits.

// Must match `UpdateArgs` in cuda/solver.rs.
struct UpdateArgs {
    int rule;            // RULE_*
    int normalize;       // g *= scale first
    float scale;
    int regularization;  // 0 none, 1 L2, 2 L1
    float decay;
    float lr;            // the local rate
    float a, b, c, d;    // the rule's scalars, in the order UpdateRule lists them
};

#define RULE_SGD 0
#define RULE_NESTEROV 1
#define RULE_ADAGRAD 2
#define RULE_RMSPROP 3
#define RULE_ADADELTA 4
#define RULE_ADAM 5

// g = diff (normalised, regularised); u = the rule's update (history updated); diff = u;
// data -= u. `h2` is null for one-buffer rules.
extern "C" __global__ void crema_update_param(u64 n, UpdateArgs u, float* data, float* diff, float* h, float* h2) {
    GRID_STRIDE(i, n) {
        float w = data[i];
        float g = diff[i];
        if (u.normalize) g = g * u.scale;
        if (u.regularization == 1) g = g + u.decay * w;
        else if (u.regularization == 2) g = g + u.decay * (float)((0.0f < w) - (w < 0.0f));
        float hv = h[i];
        float h2v = h2 ? h2[i] : 0.0f;
        float v;
        switch (u.rule) {
        case RULE_SGD:  // a = momentum
            hv = u.a * hv + u.lr * g;
            v = hv;
            break;
        case RULE_NESTEROV: {  // a = momentum
            float old = hv;
            hv = u.a * hv + u.lr * g;
            v = (-u.a) * old + (1.0f + u.a) * hv;
            break;
        }
        case RULE_ADAGRAD:  // a = delta
            hv = hv + g * g;
            v = u.lr * (g / (sqrtf(hv) + u.a));
            break;
        case RULE_RMSPROP:  // a = rms_decay, b = delta
            hv = u.a * hv + (1.0f - u.a) * (g * g);
            v = u.lr * (g / (sqrtf(hv) + u.b));
            break;
        case RULE_ADADELTA: {  // a = momentum, b = delta
            hv = u.a * hv + (1.0f - u.a) * (g * g);
            float s = g * sqrtf((u.b + h2v) / (u.b + hv));
            h2v = u.a * h2v + (1.0f - u.a) * (s * s);
            v = u.lr * s;
            break;
        }
        default:  // RULE_ADAM: a = beta1, b = beta2, c = eps, d = correction
            hv = u.a * hv + (1.0f - u.a) * g;
            h2v = u.b * h2v + (1.0f - u.b) * (g * g);
            v = (u.lr * u.d) * (hv / (sqrtf(h2v) + u.c));
            break;
        }
        h[i] = hv;
        if (h2) h2[i] = h2v;
        diff[i] = v;
        data[i] = w - v;
    }
}
