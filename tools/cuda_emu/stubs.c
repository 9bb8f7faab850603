// cuBLAS for the CUDA emulator: handles can be created (the CUDA backend opens one with every
// device); SGEMM is a plain loop (summing in double: the emulator checks crema's own kernels, not
// cuBLAS's rounding). cuDNN is emu_cudnn.c; the sub-libraries cuDNN needs are built from empty.c.
#include <stdio.h>
#include <string.h>

static int handle_token;
#define NOT_SUPPORTED_BLAS 15 /* CUBLAS_STATUS_NOT_SUPPORTED */

#ifdef EMU_CUBLAS
int cublasCreate_v2(void** h) { *h = &handle_token; return 0; }
int cublasDestroy_v2(void* h) { (void)h; return 0; }
int cublasSetStream_v2(void* h, void* s) { (void)h; (void)s; return 0; }
int cublasSetMathMode(void* h, int m) { (void)h; (void)m; return 0; }
int cublasGetProperty(int type, int* value) { *value = type == 0 ? 13 : 0; return 0; }
int cublasGetVersion_v2(void* h, int* v) { (void)h; *v = 130000; return 0; }
/* Column-major C = alpha op(A) op(B) + beta C; op 0 is N, 1 is T (2, C, is T for reals). */
int cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                   const float* b, int ldb, const float* beta, float* c, int ldc) {
    (void)h;
    for (int j = 0; j < n; ++j) {
        for (int i = 0; i < m; ++i) {
            double acc = 0.0;
            for (int p = 0; p < k; ++p) {
                float av = ta ? a[p + (long)i * lda] : a[i + (long)p * lda];
                float bv = tb ? b[j + (long)p * ldb] : b[p + (long)j * ldb];
                acc += (double)av * (double)bv;
            }
            float* cv = &c[i + (long)j * ldc];
            *cv = (float)((double)*alpha * acc + (*beta == 0.0f ? 0.0 : (double)*beta * (double)*cv));
        }
    }
    return 0;
}
int cublasGemmEx(void) { return NOT_SUPPORTED_BLAS; }
#endif
