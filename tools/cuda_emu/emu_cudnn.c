// cuDNN for the CUDA emulator: the part of the cuDNN 9 legacy API crema calls, written from the
// cuDNN API reference (not from crema's use of it), computing on the CPU.
//
// - Tensor (4d and Nd), filter (Nd) and convolution (Nd) descriptors, validated as the
//   reference says when they are set; a descriptor that was destroyed or never set is refused.
// - cudnnGetConvolutionNdForwardOutputDim, cudnnFindConvolution{Forward,BackwardData,
//   BackwardFilter}Algorithm and the _v7 heuristics, cudnnConvolution{Forward,BackwardData,
//   BackwardFilter}, and the workspace-size and max-count queries. The problem is checked as
//   the reference lists for BAD_PARAM / NOT_SUPPORTED (dimension counts, channels vs filter and
//   groups, the output's extents, data and compute types, negative strides, null pointers), and
//   also an output tensor whose strides make two elements share memory is refused.
// - Arithmetic: every output element summed in double and rounded once, then
//   y = alpha * result + beta * y, y not read where beta is 0 (as cuDNN: NaN there is ignored).
//   Groups, pad, stride, dilation, CUDNN_CONVOLUTION (flipped filter) and CROSS_CORRELATION,
//   2-d and 3-d (4- and 5-dim tensors), any positive strides, NCHW and NHWC filters.
// - Algorithms: Find returns a list that depends only on the shape and the descriptor's math
//   type: tensor-op (TF32) variants first where the math type allows them, faster Winograd/FFT
//   ones needing much workspace where the shape allows them, non-deterministic ones (which here
//   really add partial sums in an order that changes from call to call), and NOT_SUPPORTED
//   entries (time -1) last. What runs is chosen by the algorithm and the descriptor's math type
//   at the call (CUDNN_FMA_MATH: the FMA variant; otherwise the tensor-op one where the algorithm
//   has one): a tensor-op variant rounds its operands to TF32 (10 mantissa bits, to nearest even).
//   A call whose workSpaceSizeInBytes is below what that variant needs is BAD_PARAM, and every
//   byte of the given workspace is written (the emulator's guard pages catch a short buffer).
//   The _v7 heuristics give Find's list with times -1; each computation moves the emulated
//   driver's timing clock by the time the list gives its variant.
//
// No CUDA headers here: the types and enum values are declared below (cuDNN 9 numbering).
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef int Status;
enum {
    SUCCESS = 0,
    NOT_INITIALIZED = 1001,
    BAD_PARAM = 2000,
    BAD_PARAM_NULL_POINTER = 2002,
    NOT_SUPPORTED = 3000,
    INTERNAL_ERROR = 4000,
    EXECUTION_FAILED = 5000,
};
enum { DATA_FLOAT = 0, DATA_DOUBLE = 1, DATA_HALF = 2, DATA_BFLOAT16 = 9 };
enum { FMT_NCHW = 0, FMT_NHWC = 1, FMT_NCHW_VECT_C = 2 };
enum { MODE_CONVOLUTION = 0, MODE_CROSS_CORRELATION = 1 };
enum { MATH_DEFAULT = 0, MATH_TENSOR_OP = 1, MATH_TENSOR_OP_ALLOW_CONVERSION = 2, MATH_FMA = 3 };
enum { NON_DETERMINISTIC = 0, DETERMINISTIC = 1 };
#define DIM_MAX 8
enum { FWD_COUNT = 8, BWD_DATA_COUNT = 6, BWD_FILTER_COUNT = 7 };

/* cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t: all three have this layout. */
typedef struct {
    int algo;
    int status;
    float time;
    size_t memory;
    int determinism;
    int mathType;
    int reserved[3];
} Perf;

// ---- objects ------------------------------------------------------------------------------

#define MAGIC_HANDLE 0x484e444cu
#define MAGIC_TENSOR 0x54454e53u
#define MAGIC_FILTER 0x46494c54u
#define MAGIC_CONV 0x434f4e56u
#define MAGIC_DEAD 0xdeadbeefu

typedef struct {
    unsigned magic;
    void* stream;
} Handle;
typedef struct {
    unsigned magic;
    int set, dtype, nb;
    int dim[DIM_MAX], stride[DIM_MAX];
} Tensor;
typedef struct {
    unsigned magic;
    int set, dtype, format, nb;
    int dim[DIM_MAX];
} Filter;
typedef struct {
    unsigned magic;
    int set, nb, mode, ctype, groups, math;
    int pad[DIM_MAX - 2], stride[DIM_MAX - 2], dil[DIM_MAX - 2];
} Conv;

// Destroyed objects are kept (marked dead) for a while, so that a use after destroy is caught
// rather than reading whatever reused the memory.
#define QUARANTINE 4096
// (Under a lock: threads destroy their objects concurrently.)
static void* quarantine[QUARANTINE];
static unsigned quarantine_next;
static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;
static void retire(void* p, unsigned* magic) {
    *magic = MAGIC_DEAD;
    pthread_mutex_lock(&quarantine_lock);
    void* oldest = quarantine[quarantine_next % QUARANTINE];
    quarantine[quarantine_next % QUARANTINE] = p;
    quarantine_next++;
    pthread_mutex_unlock(&quarantine_lock);
    free(oldest);
}

// A memory fault while a cuDNN call runs names the call, then goes on to the emulator's handler.
// (Per thread: the fault is delivered to the thread whose call faulted.)
static _Thread_local const char* volatile running;
static struct sigaction previous_segv, previous_bus;
static void on_fault(int sig, siginfo_t* info, void* ctx) {
    if (running) {
        const char msg[] = "cuda emulator: memory fault in cuDNN's ";
        (void)!write(2, msg, sizeof msg - 1);
        (void)!write(2, running, strlen(running));
        (void)!write(2, " (a device buffer shorter than its descriptor or workspace size says)\n", 71);
    }
    struct sigaction* prev = sig == SIGBUS ? &previous_bus : &previous_segv;
    if (prev->sa_flags & SA_SIGINFO) {
        prev->sa_sigaction(sig, info, ctx);
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
    } else {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}
__attribute__((constructor)) static void install_fault_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, &previous_segv);
    sigaction(SIGBUS, &sa, &previous_bus);
}

// CUDNN_LOGERR_DBG-like: EMU_CUDNN_LOG=1 says why a call failed, on stderr.
static Status fail(Status s, const char* fn, const char* why) {
    static int log = -1;
    if (log < 0) log = getenv("EMU_CUDNN_LOG") && *getenv("EMU_CUDNN_LOG") == '1';
    if (log) fprintf(stderr, "emu cuDNN: %s: %s -> %d\n", fn, why, s);
    return s;
}
#define FAIL(s, why) return fail(s, __func__, why)

static int valid_dtype(int t) { return t >= 0 && t <= 21; }

// ---- version, handle ----------------------------------------------------------------------

EXPORT size_t cudnnGetVersion(void) { return 91400; }
EXPORT size_t cudnnGetCudartVersion(void) { return 13000; }
EXPORT Status cudnnGetProperty(int type, int* value) {
    if (!value) return BAD_PARAM;
    *value = type == 0 ? 9 : type == 1 ? 14 : 0;
    return SUCCESS;
}
EXPORT const char* cudnnGetErrorString(Status s) {
    switch (s) {
    case SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    default: return "CUDNN_STATUS_UNKNOWN (CUDA emulator)";
    }
}
EXPORT Status cudnnCreate(void** handle) {
    if (!handle) FAIL(BAD_PARAM, "handle is NULL");
    Handle* h = calloc(1, sizeof *h);
    h->magic = MAGIC_HANDLE;
    *handle = h;
    return SUCCESS;
}
static int is_handle(const void* h) { return h && ((const Handle*)h)->magic == MAGIC_HANDLE; }
EXPORT Status cudnnDestroy(void* handle) {
    if (!is_handle(handle)) FAIL(BAD_PARAM, "not a live handle");
    retire(handle, &((Handle*)handle)->magic);
    return SUCCESS;
}
EXPORT Status cudnnSetStream(void* handle, void* stream) {
    if (!is_handle(handle)) FAIL(BAD_PARAM, "not a live handle");
    ((Handle*)handle)->stream = stream;
    return SUCCESS;
}
EXPORT Status cudnnGetStream(void* handle, void** stream) {
    if (!is_handle(handle) || !stream) FAIL(BAD_PARAM, "not a live handle");
    *stream = ((Handle*)handle)->stream;
    return SUCCESS;
}

// ---- tensor descriptors -------------------------------------------------------------------

EXPORT Status cudnnCreateTensorDescriptor(void** desc) {
    if (!desc) FAIL(BAD_PARAM, "desc is NULL");
    Tensor* t = calloc(1, sizeof *t);
    t->magic = MAGIC_TENSOR;
    *desc = t;
    return SUCCESS;
}
static Tensor* as_tensor(void* d) { return d && ((Tensor*)d)->magic == MAGIC_TENSOR ? d : NULL; }
EXPORT Status cudnnDestroyTensorDescriptor(void* desc) {
    if (!desc) return SUCCESS;
    Tensor* t = as_tensor(desc);
    if (!t) FAIL(BAD_PARAM, "not a live tensor descriptor");
    retire(t, &t->magic);
    return SUCCESS;
}

// The reference: BAD_PARAM where an element of dimA is negative or zero or dataType is invalid;
// NOT_SUPPORTED where nbDims is past CUDNN_DIM_MAX or the tensor exceeds 2 Giga-elements. (It
// asks for at least 3 dimensions, "for historical reasons".)
EXPORT Status cudnnSetTensorNdDescriptor(void* desc, int dtype, int nb, const int* dim, const int* stride) {
    Tensor* t = as_tensor(desc);
    if (!t) FAIL(BAD_PARAM, "not a live tensor descriptor");
    if (!dim || !stride) FAIL(BAD_PARAM, "dimA or strideA is NULL");
    if (!valid_dtype(dtype)) FAIL(BAD_PARAM, "invalid dataType");
    if (nb > DIM_MAX) FAIL(NOT_SUPPORTED, "nbDims > CUDNN_DIM_MAX");
    if (nb < 3) FAIL(BAD_PARAM, "nbDims < 3");
    long long last = 0;
    for (int i = 0; i < nb; ++i) {
        if (dim[i] <= 0) FAIL(BAD_PARAM, "an element of dimA is negative or zero");
        last += (long long)(dim[i] - 1) * (stride[i] < 0 ? -(long long)stride[i] : stride[i]);
    }
    if (last + 1 > INT_MAX) FAIL(NOT_SUPPORTED, "more than 2 Giga-elements");
    t->dtype = dtype;
    t->nb = nb;
    memcpy(t->dim, dim, nb * sizeof(int));
    memcpy(t->stride, stride, nb * sizeof(int));
    t->set = 1;
    return SUCCESS;
}
EXPORT Status cudnnSetTensor4dDescriptorEx(void* desc, int dtype, int n, int c, int h, int w, int ns, int cs, int hs,
                                           int ws) {
    int dim[4] = {n, c, h, w}, stride[4] = {ns, cs, hs, ws};
    if (!as_tensor(desc)) FAIL(BAD_PARAM, "not a live tensor descriptor");
    for (int i = 0; i < 4; ++i)
        if (dim[i] <= 0) FAIL(BAD_PARAM, "a dimension is negative or zero");
    return cudnnSetTensorNdDescriptor(desc, dtype, 4, dim, stride);
}
EXPORT Status cudnnSetTensor4dDescriptor(void* desc, int format, int dtype, int n, int c, int h, int w) {
    if (format == FMT_NCHW) return cudnnSetTensor4dDescriptorEx(desc, dtype, n, c, h, w, c * h * w, h * w, w, 1);
    if (format == FMT_NHWC) return cudnnSetTensor4dDescriptorEx(desc, dtype, n, c, h, w, h * w * c, 1, w * c, c);
    if (format == FMT_NCHW_VECT_C) FAIL(NOT_SUPPORTED, "NCHW_VECT_C is not emulated");
    FAIL(BAD_PARAM, "invalid format");
}
EXPORT Status cudnnGetTensorNdDescriptor(void* desc, int req, int* dtype, int* nb, int* dim, int* stride) {
    Tensor* t = as_tensor(desc);
    if (!t || !t->set || !dtype || !nb || req < 0) FAIL(BAD_PARAM, "bad arguments");
    *dtype = t->dtype;
    *nb = t->nb;
    for (int i = 0; i < req && i < t->nb; ++i) {
        if (dim) dim[i] = t->dim[i];
        if (stride) stride[i] = t->stride[i];
    }
    return SUCCESS;
}

// ---- filter descriptors -------------------------------------------------------------------

EXPORT Status cudnnCreateFilterDescriptor(void** desc) {
    if (!desc) FAIL(BAD_PARAM, "desc is NULL");
    Filter* f = calloc(1, sizeof *f);
    f->magic = MAGIC_FILTER;
    *desc = f;
    return SUCCESS;
}
static Filter* as_filter(void* d) { return d && ((Filter*)d)->magic == MAGIC_FILTER ? d : NULL; }
EXPORT Status cudnnDestroyFilterDescriptor(void* desc) {
    if (!desc) return SUCCESS;
    Filter* f = as_filter(desc);
    if (!f) FAIL(BAD_PARAM, "not a live filter descriptor");
    retire(f, &f->magic);
    return SUCCESS;
}
// The reference: BAD_PARAM where an element of filterDimA is negative or dataType or format is
// invalid; NOT_SUPPORTED where nbDims exceeds CUDNN_DIM_MAX; at least 3 dimensions. The format
// says where the input channels are: NCHW is K, C, spatial...; NHWC is K, spatial..., C.
EXPORT Status cudnnSetFilterNdDescriptor(void* desc, int dtype, int format, int nb, const int* dim) {
    Filter* f = as_filter(desc);
    if (!f) FAIL(BAD_PARAM, "not a live filter descriptor");
    if (!dim) FAIL(BAD_PARAM, "filterDimA is NULL");
    if (!valid_dtype(dtype)) FAIL(BAD_PARAM, "invalid dataType");
    if (format < FMT_NCHW || format > FMT_NCHW_VECT_C) FAIL(BAD_PARAM, "invalid format");
    if (nb > DIM_MAX) FAIL(NOT_SUPPORTED, "nbDims > CUDNN_DIM_MAX");
    if (nb < 3) FAIL(BAD_PARAM, "nbDims < 3");
    for (int i = 0; i < nb; ++i)
        if (dim[i] < 0) FAIL(BAD_PARAM, "an element of filterDimA is negative");
    f->dtype = dtype;
    f->format = format;
    f->nb = nb;
    memcpy(f->dim, dim, nb * sizeof(int));
    f->set = 1;
    return SUCCESS;
}
EXPORT Status cudnnSetFilter4dDescriptor(void* desc, int dtype, int format, int k, int c, int h, int w) {
    int dim[4] = {k, c, h, w};
    return cudnnSetFilterNdDescriptor(desc, dtype, format, 4, dim);
}

// ---- convolution descriptors --------------------------------------------------------------

EXPORT Status cudnnCreateConvolutionDescriptor(void** desc) {
    if (!desc) FAIL(BAD_PARAM, "desc is NULL");
    Conv* c = calloc(1, sizeof *c);
    c->magic = MAGIC_CONV;
    c->groups = 1;
    c->math = MATH_DEFAULT;
    *desc = c;
    return SUCCESS;
}
static Conv* as_conv(void* d) { return d && ((Conv*)d)->magic == MAGIC_CONV ? d : NULL; }
EXPORT Status cudnnDestroyConvolutionDescriptor(void* desc) {
    if (!desc) return SUCCESS;
    Conv* c = as_conv(desc);
    if (!c) FAIL(BAD_PARAM, "not a live convolution descriptor");
    retire(c, &c->magic);
    return SUCCESS;
}
// The reference: BAD_PARAM where convDesc is nil, arrayLength is negative, mode or dataType is
// invalid, an element of padA is negative, or one of filterStrideA or dilationA is negative or
// zero; NOT_SUPPORTED where arrayLength is greater than CUDNN_DIM_MAX - 2.
EXPORT Status cudnnSetConvolutionNdDescriptor(void* desc, int len, const int* pad, const int* stride, const int* dil,
                                              int mode, int ctype) {
    Conv* c = as_conv(desc);
    if (!c) FAIL(BAD_PARAM, "not a live convolution descriptor");
    if (len < 0) FAIL(BAD_PARAM, "arrayLength < 0");
    if (len > DIM_MAX - 2) FAIL(NOT_SUPPORTED, "arrayLength > CUDNN_DIM_MAX - 2");
    if (mode != MODE_CONVOLUTION && mode != MODE_CROSS_CORRELATION) FAIL(BAD_PARAM, "invalid mode");
    if (!valid_dtype(ctype)) FAIL(BAD_PARAM, "invalid dataType");
    if (len > 0 && (!pad || !stride || !dil)) FAIL(BAD_PARAM, "padA, filterStrideA or dilationA is NULL");
    for (int i = 0; i < len; ++i) {
        if (pad[i] < 0) FAIL(BAD_PARAM, "negative padding");
        if (stride[i] <= 0) FAIL(BAD_PARAM, "stride negative or zero");
        if (dil[i] <= 0) FAIL(BAD_PARAM, "dilation negative or zero");
    }
    c->nb = len;
    c->mode = mode;
    c->ctype = ctype;
    for (int i = 0; i < len; ++i) {
        c->pad[i] = pad[i];
        c->stride[i] = stride[i];
        c->dil[i] = dil[i];
    }
    c->set = 1;
    return SUCCESS;
}
EXPORT Status cudnnSetConvolution2dDescriptor(void* desc, int ph, int pw, int sh, int sw, int dh, int dw, int mode,
                                              int ctype) {
    int pad[2] = {ph, pw}, stride[2] = {sh, sw}, dil[2] = {dh, dw};
    return cudnnSetConvolutionNdDescriptor(desc, 2, pad, stride, dil, mode, ctype);
}
EXPORT Status cudnnSetConvolutionGroupCount(void* desc, int groups) {
    Conv* c = as_conv(desc);
    if (!c) FAIL(BAD_PARAM, "not a live convolution descriptor");
    if (groups < 1) FAIL(BAD_PARAM, "groupCount < 1");
    c->groups = groups;
    return SUCCESS;
}
EXPORT Status cudnnGetConvolutionGroupCount(void* desc, int* groups) {
    Conv* c = as_conv(desc);
    if (!c || !groups) FAIL(BAD_PARAM, "bad arguments");
    *groups = c->groups;
    return SUCCESS;
}
EXPORT Status cudnnSetConvolutionMathType(void* desc, int math) {
    Conv* c = as_conv(desc);
    if (!c) FAIL(BAD_PARAM, "not a live convolution descriptor");
    if (math < MATH_DEFAULT || math > MATH_FMA) FAIL(BAD_PARAM, "invalid mathType");
    c->math = math;
    return SUCCESS;
}
EXPORT Status cudnnGetConvolutionMathType(void* desc, int* math) {
    Conv* c = as_conv(desc);
    if (!c || !math) FAIL(BAD_PARAM, "bad arguments");
    *math = c->math;
    return SUCCESS;
}

// ---- the problem ---------------------------------------------------------------------------

// A convolution with 3 spatial axes (a 2-d one has depth 1), in element strides.
typedef struct {
    int dtype, flip, groups, nsp;
    long n, c, k;                     // images, input channels, output channels
    long in[3], out[3], ker[3], pad[3], str[3], dil[3];
    long xs[5], ys[5], ws[5];         // strides of x / y (n, c, d, h, w), w (k, c, d, h, w)
} Prob;

static long prod3(const long* v) { return v[0] * v[1] * v[2]; }

// Output extent along one axis, as cudnnGetConvolutionNdForwardOutputDim defines it.
static long out_extent(long in, long pad, long ker, long dil, long str) {
    long span = (ker - 1) * dil + 1;
    if (in + 2 * pad < span) return 0;
    return 1 + (in + 2 * pad - span) / str;
}

// Whether a tensor's strides let two of its elements share memory (or are zero).
static int overlaps(const Tensor* t) {
    int idx[DIM_MAX], n = 0;
    for (int i = 0; i < t->nb; ++i)
        if (t->dim[i] > 1) idx[n++] = i;
    for (int i = 1; i < n; ++i)
        for (int j = i; j > 0 && t->stride[idx[j]] < t->stride[idx[j - 1]]; --j) {
            int s = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = s;
        }
    long long need = 1;
    for (int i = 0; i < n; ++i) {
        if (t->stride[idx[i]] < need) return 1;
        need = (long long)t->stride[idx[i]] * t->dim[idx[i]];
    }
    return 0;
}

// Checks the descriptors of a convolution as cudnnConvolutionForward / BackwardData /
// BackwardFilter list (x the input, w the filter, y the output of the forward convolution) and
// fills p. `out` names which of x, w, y the call writes (0, 1, 2), for the overlap check.
static Status problem(const char* fn, void* xd, void* wd, void* cd, void* yd, int out, Prob* p) {
    Tensor *x = as_tensor(xd), *y = as_tensor(yd);
    Filter* w = as_filter(wd);
    Conv* c = as_conv(cd);
    if (!x || !y || !w || !c) return fail(BAD_PARAM, fn, "a descriptor is NULL or not live");
    if (!x->set || !y->set || !w->set || !c->set) return fail(BAD_PARAM, fn, "a descriptor was never set");
    if (x->nb != y->nb) return fail(BAD_PARAM, fn, "x and y have different numbers of dimensions");
    if (x->nb != w->nb) return fail(BAD_PARAM, fn, "x and w have different numbers of dimensions");
    if (x->nb < 3) return fail(BAD_PARAM, fn, "fewer than 3 dimensions");
    if (x->nb != c->nb + 2) return fail(BAD_PARAM, fn, "convolution arrayLength is not nbDims - 2");
    if (x->dtype != y->dtype || x->dtype != w->dtype) return fail(BAD_PARAM, fn, "x, w and y data types differ");
    int nsp = x->nb - 2;
    long wc = w->format == FMT_NHWC ? w->dim[w->nb - 1] : w->dim[1];
    if (wc <= 0 || w->dim[0] <= 0) return fail(BAD_PARAM, fn, "a filter dimension is zero");
    if (x->dim[1] != wc * c->groups)
        return fail(BAD_PARAM, fn, "x's feature maps are not the filter's input channels times groupCount");
    if (w->dim[0] % c->groups != 0) return fail(BAD_PARAM, fn, "the filter's output channels are not a multiple of groupCount");
    if (y->dim[1] != w->dim[0]) return fail(BAD_PARAM, fn, "y's feature maps are not the filter's output channels");
    if (y->dim[0] != x->dim[0]) return fail(BAD_PARAM, fn, "x and y have different numbers of images");
    for (int i = 0; i < nsp; ++i) {
        long ker = w->format == FMT_NHWC ? w->dim[1 + i] : w->dim[2 + i];
        if (ker <= 0) return fail(BAD_PARAM, fn, "a filter dimension is zero");
        if ((ker - 1) * c->dil[i] + 1 > x->dim[2 + i] + 2L * c->pad[i])
            return fail(BAD_PARAM, fn, "the dilated filter is larger than the padded input");
    }
    if (x->nb != 4 && x->nb != 5) return fail(NOT_SUPPORTED, fn, "tensors must have 4 or 5 dimensions");
    for (int i = 0; i < x->nb; ++i)
        if (x->stride[i] < 0 || y->stride[i] < 0) return fail(NOT_SUPPORTED, fn, "negative tensor striding");
    for (int i = 0; i < nsp; ++i) {
        long ker = w->format == FMT_NHWC ? w->dim[1 + i] : w->dim[2 + i];
        if (y->dim[2 + i] != out_extent(x->dim[2 + i], c->pad[i], ker, c->dil[i], c->stride[i]))
            return fail(BAD_PARAM, fn, "y's spatial extents are not those cudnnGetConvolutionNdForwardOutputDim gives");
    }
    if (x->dtype == DATA_FLOAT) {
        if (c->ctype != DATA_FLOAT) return fail(NOT_SUPPORTED, fn, "FLOAT data needs FLOAT compute type");
    } else if (x->dtype == DATA_DOUBLE) {
        if (c->ctype != DATA_DOUBLE) return fail(NOT_SUPPORTED, fn, "DOUBLE data needs DOUBLE compute type");
    } else {
        return fail(NOT_SUPPORTED, fn, "only FLOAT and DOUBLE data are emulated");
    }
    if (w->format == FMT_NCHW_VECT_C) return fail(NOT_SUPPORTED, fn, "NCHW_VECT_C filters are not emulated");
    if (out == 0 && overlaps(x)) return fail(BAD_PARAM, fn, "the output (dx) has overlapping or zero strides");
    if (out == 2 && overlaps(y)) return fail(BAD_PARAM, fn, "the output (y) has overlapping or zero strides");

    memset(p, 0, sizeof *p);
    p->dtype = x->dtype;
    p->flip = c->mode == MODE_CONVOLUTION;
    p->groups = c->groups;
    p->nsp = nsp;
    p->n = x->dim[0];
    p->c = x->dim[1];
    p->k = w->dim[0];
    p->xs[0] = x->stride[0]; p->xs[1] = x->stride[1];
    p->ys[0] = y->stride[0]; p->ys[1] = y->stride[1];
    // The filter is packed: strides from its dims in its format.
    long wdim[5] = {w->dim[0], wc, 1, 1, 1};
    for (int a = 0; a < 3; ++a) {
        int i = a - (3 - nsp);  // the axis in the descriptors, or < 0 for a padding axis
        if (i < 0) {
            p->in[a] = p->out[a] = p->ker[a] = p->str[a] = p->dil[a] = 1;
            p->pad[a] = 0;
            p->xs[2 + a] = p->ys[2 + a] = 0;
            continue;
        }
        p->in[a] = x->dim[2 + i];
        p->out[a] = y->dim[2 + i];
        p->ker[a] = w->format == FMT_NHWC ? w->dim[1 + i] : w->dim[2 + i];
        p->pad[a] = c->pad[i];
        p->str[a] = c->stride[i];
        p->dil[a] = c->dil[i];
        p->xs[2 + a] = x->stride[2 + i];
        p->ys[2 + a] = y->stride[2 + i];
        wdim[2 + a] = p->ker[a];
    }
    if (w->format == FMT_NHWC) {  // k, d, h, w, c
        p->ws[1] = 1;
        p->ws[4] = wc;
        p->ws[3] = wc * wdim[4];
        p->ws[2] = p->ws[3] * wdim[3];
        p->ws[0] = p->ws[2] * wdim[2];
    } else {  // k, c, d, h, w
        p->ws[4] = 1;
        p->ws[3] = wdim[4];
        p->ws[2] = wdim[3] * wdim[4];
        p->ws[1] = p->ws[2] * wdim[2];
        p->ws[0] = p->ws[1] * wc;
    }
    return SUCCESS;
}

EXPORT Status cudnnGetConvolutionNdForwardOutputDim(void* cd, void* xd, void* wd, int nb, int* out) {
    Conv* c = as_conv(cd);
    Tensor* x = as_tensor(xd);
    Filter* w = as_filter(wd);
    if (!c || !x || !w || !c->set || !x->set || !w->set) FAIL(BAD_PARAM, "a descriptor is nil, not live or not set");
    if (!out) FAIL(BAD_PARAM, "tensorOuputDimA is NULL");
    if (w->nb != x->nb) FAIL(BAD_PARAM, "the filter's dimension differs from the input's");
    if (c->nb != x->nb - 2) FAIL(BAD_PARAM, "the convolution's dimension is not the input's - 2");
    long wc = w->format == FMT_NHWC ? w->dim[w->nb - 1] : w->dim[1];
    if (x->dim[1] != wc * c->groups) FAIL(BAD_PARAM, "the filter's feature maps differ from the input's");
    if (nb < 0 || nb > x->nb) FAIL(BAD_PARAM, "nbDims is negative or greater than the input's");
    long dims[DIM_MAX];
    dims[0] = x->dim[0];
    dims[1] = w->dim[0];
    for (int i = 0; i < c->nb; ++i) {
        long ker = w->format == FMT_NHWC ? w->dim[1 + i] : w->dim[2 + i];
        long o = out_extent(x->dim[2 + i], c->pad[i], ker, c->dil[i], c->stride[i]);
        if (o <= 0) FAIL(BAD_PARAM, "the dilated filter is larger than the padded input");
        dims[2 + i] = o;
    }
    for (int i = 0; i < nb; ++i) out[i] = (int)dims[i];
    return SUCCESS;
}

// ---- algorithms ----------------------------------------------------------------------------

enum { FWD = 0, BWD_DATA = 1, BWD_FILTER = 2 };

// One way to run an algorithm: its math (FMA or tensor op), workspace and speed.
typedef struct {
    int ok;            // the shape is supported
    int det;           // deterministic
    size_t fma_mem;    // workspace of the FMA variant
    int has_tc;        // has a tensor-op (TF32) variant
    size_t tc_mem;     // its workspace
    double fma_speed, tc_speed;  // time factors (smaller is faster)
} Algo;

static int algo_count(int dir) { return dir == FWD ? FWD_COUNT : dir == BWD_DATA ? BWD_DATA_COUNT : BWD_FILTER_COUNT; }

// What each algorithm takes and needs, from the shape alone (numbers are made up, but of the
// kinds cuDNN's are: GEMM-based ones need an im2col-sized buffer, FFT ones a lot, implicit GEMM
// none; Winograd only 3x3 unit-stride 2-d; FFT only unit stride and no groups).
static Algo describe(int dir, const Prob* p, int algo) {
    Algo a;
    memset(&a, 0, sizeof a);
    size_t es = p->dtype == DATA_DOUBLE ? 8 : 4;
    size_t kr = prod3(p->ker), outsz = prod3(p->out), cg = p->c / p->groups;
    size_t col = cg * kr * outsz * es;                // one image's im2col buffer (one group)
    size_t filt = p->k * cg * kr * es;
    int unit = p->str[0] == 1 && p->str[1] == 1 && p->str[2] == 1 && p->dil[0] == 1 && p->dil[1] == 1 && p->dil[2] == 1;
    int w3x3 = p->nsp == 2 && p->ker[1] == 3 && p->ker[2] == 3 && unit && p->groups == 1;
    int fft = p->nsp == 2 && unit && p->groups == 1 && p->ker[1] <= 32 && p->ker[2] <= 32;
    size_t ph = 1, pw = 1;
    while (ph < (size_t)(p->in[1] + 2 * p->pad[1])) ph *= 2;
    while (pw < (size_t)(p->in[2] + 2 * p->pad[2])) pw *= 2;
    size_t fftmem = (p->n * p->c + p->k * cg + p->n * p->k) * ph * (pw / 2 + 1) * 2 * es;
    size_t tiles = ((p->out[1] + 1) / 2) * ((p->out[2] + 1) / 2);
    size_t winomem = (p->n * p->c + p->k * cg + p->n * p->k) * 16 * tiles * es;
    int tc = p->dtype == DATA_FLOAT;
    a.det = 1;
    a.fma_speed = 1.0;
    if (dir == FWD) {
        switch (algo) {
        case 0: a.ok = 1; a.fma_speed = 1.0; break;                                   // IMPLICIT_GEMM
        case 1: a.ok = 1; a.fma_mem = 256 + 4 * kr * (p->nsp + 1); a.fma_speed = 0.7;  // IMPLICIT_PRECOMP_GEMM
                a.has_tc = tc; a.tc_mem = filt + 1024; a.tc_speed = 0.25; break;
        case 2: a.ok = 1; a.fma_mem = col; a.fma_speed = 0.9; break;                  // GEMM
        case 3: a.ok = 0; break;                                                      // DIRECT
        case 4: a.ok = fft; a.fma_mem = fftmem; a.fma_speed = 0.5; break;             // FFT
        case 5: a.ok = fft; a.fma_mem = fftmem / 4 + 1024; a.fma_speed = 0.55; break; // FFT_TILING
        case 6: a.ok = w3x3; a.fma_speed = 0.45; break;                               // WINOGRAD
        case 7: a.ok = w3x3; a.fma_mem = winomem; a.fma_speed = 0.4; break;           // WINOGRAD_NONFUSED
        }
    } else if (dir == BWD_DATA) {
        switch (algo) {
        case 0: a.ok = 1; a.det = 0; a.fma_speed = 0.6; break;                        // ALGO_0
        case 1: a.ok = 1; a.fma_mem = 256 + 4 * kr; a.fma_speed = 1.0;                // ALGO_1
                a.has_tc = tc; a.tc_mem = filt + 2048; a.tc_speed = 0.3; break;
        case 2: a.ok = fft; a.fma_mem = fftmem; a.fma_speed = 0.5; break;             // FFT
        case 3: a.ok = fft; a.fma_mem = fftmem / 4 + 1024; a.fma_speed = 0.55; break; // FFT_TILING
        case 4: a.ok = w3x3; a.fma_speed = 0.45; break;                               // WINOGRAD
        case 5: a.ok = w3x3; a.fma_mem = winomem; a.fma_speed = 0.4; break;           // WINOGRAD_NONFUSED
        }
    } else {
        switch (algo) {
        case 0: a.ok = 1; a.det = 0; a.fma_speed = 0.6; break;                        // ALGO_0
        case 1: a.ok = 1; a.fma_mem = 256 + 4 * kr; a.fma_speed = 1.0;                // ALGO_1
                a.has_tc = tc; a.tc_mem = col + 1024; a.tc_speed = 0.3; break;
        case 2: a.ok = fft; a.fma_mem = fftmem; a.fma_speed = 0.5; break;             // FFT
        case 3: a.ok = 1; a.det = 0; a.fma_mem = filt * 4; a.fma_speed = 0.35; break; // ALGO_3
        case 4: a.ok = 0; break;                                                      // WINOGRAD
        case 5: a.ok = w3x3; a.fma_mem = winomem; a.fma_speed = 0.45; break;          // WINOGRAD_NONFUSED
        case 6: a.ok = fft; a.fma_mem = fftmem / 4 + 1024; a.fma_speed = 0.55; break; // FFT_TILING
        }
    }
    return a;
}

// The variant a call runs: CUDNN_FMA_MATH restricts to FMA kernels; the other math types
// permit tensor cores (TF32 for FLOAT data on sm_80 and later).
static int runs_tc(const Algo* a, int math) { return a->has_tc && math != MATH_FMA; }

// The time, in ms, a variant takes in this model (made up: proportional to the arithmetic).
static double modeled_ms(const Prob* p, const Algo* a, int tc) {
    double flops = 2.0 * p->n * p->k * (p->c / p->groups) * prod3(p->ker) * prod3(p->out);
    return (flops / 5e9 + 0.005) * (tc ? a->tc_speed : a->fma_speed);
}

// Advances the timing clock of the emulated driver (cuEmuClockAdvance in libcuda.so.1, which
// events read) by the modeled time of a computation that ran: the emulator's GPU takes exactly
// the time its heuristics predict, so timed choices are the same on every run.
static void (*clock_advance)(double);
static void look_up_clock(void) {
    void* cuda = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
    clock_advance = (void (*)(double))dlsym(cuda ? cuda : RTLD_DEFAULT, "cuEmuClockAdvance");
}
static void advance_clock(double ms) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, look_up_clock);
    if (clock_advance) clock_advance(ms);
}

static int perf_order(const void* l, const void* r) {
    const Perf *a = l, *b = r;
    if ((a->status == SUCCESS) != (b->status == SUCCESS)) return a->status == SUCCESS ? -1 : 1;
    if (a->status != SUCCESS) return a->algo - b->algo;
    if (a->time != b->time) return a->time < b->time ? -1 : 1;
    return a->algo - b->algo;
}

// Find (measured: times) and the _v7 heuristics (the same order, times -1: nothing is run).
static Status find(const char* fn, int dir, void* handle, void* xd, void* wd, void* cd, void* yd, int requested,
                   int* returned, Perf* results, int measured) {
    if (!is_handle(handle)) return fail(BAD_PARAM, fn, "handle is not allocated properly");
    if (!returned || !results) return fail(BAD_PARAM, fn, "returnedAlgoCount or perfResults is NULL");
    if (requested < 1) return fail(BAD_PARAM, fn, "requestedAlgoCount < 1");
    Prob p;
    Status s = problem(fn, xd, wd, cd, yd, -1, &p);
    if (s) return s;
    int math = ((Conv*)cd)->math;
    Perf all[2 * FWD_COUNT];
    int n = 0;
    for (int algo = 0; algo < algo_count(dir); ++algo) {
        Algo a = describe(dir, &p, algo);
        Perf e;
        memset(&e, 0, sizeof e);
        e.algo = algo;
        e.determinism = a.det ? DETERMINISTIC : NON_DETERMINISTIC;
        if (!a.ok) {
            e.status = NOT_SUPPORTED;
            e.time = -1.0f;
            e.mathType = math;
            all[n++] = e;
            continue;
        }
        e.status = SUCCESS;
        if (runs_tc(&a, math)) {
            Perf t = e;
            t.mathType = MATH_TENSOR_OP;
            t.memory = a.tc_mem;
            t.time = (float)modeled_ms(&p, &a, 1);
            all[n++] = t;
        }
        // The FMA variant: labelled FMA_MATH where the same algorithm also has a tensor-op
        // variant the descriptor's math type would pick instead.
        e.mathType = a.has_tc && math != MATH_FMA ? MATH_FMA : math;
        e.memory = a.fma_mem;
        e.time = (float)modeled_ms(&p, &a, 0);
        all[n++] = e;
    }
    qsort(all, n, sizeof all[0], perf_order);
    // The reference: at most cudnnGet...AlgorithmMaxCount results (the algorithm count).
    int count = n < requested ? n : requested;
    if (count > algo_count(dir)) count = algo_count(dir);
    if (!measured)
        for (int i = 0; i < count; ++i) all[i].time = -1.0f;
    memcpy(results, all, count * sizeof all[0]);
    *returned = count;
    return SUCCESS;
}

EXPORT Status cudnnFindConvolutionForwardAlgorithm(void* h, void* xd, void* wd, void* cd, void* yd, int req, int* ret,
                                                   Perf* perf) {
    return find(__func__, FWD, h, xd, wd, cd, yd, req, ret, perf, 1);
}
EXPORT Status cudnnGetConvolutionForwardAlgorithm_v7(void* h, void* xd, void* wd, void* cd, void* yd, int req,
                                                     int* ret, Perf* perf) {
    return find(__func__, FWD, h, xd, wd, cd, yd, req, ret, perf, 0);
}
EXPORT Status cudnnFindConvolutionBackwardDataAlgorithm(void* h, void* wd, void* dyd, void* cd, void* dxd, int req,
                                                        int* ret, Perf* perf) {
    return find(__func__, BWD_DATA, h, dxd, wd, cd, dyd, req, ret, perf, 1);
}
EXPORT Status cudnnGetConvolutionBackwardDataAlgorithm_v7(void* h, void* wd, void* dyd, void* cd, void* dxd, int req,
                                                          int* ret, Perf* perf) {
    return find(__func__, BWD_DATA, h, dxd, wd, cd, dyd, req, ret, perf, 0);
}
EXPORT Status cudnnFindConvolutionBackwardFilterAlgorithm(void* h, void* xd, void* dyd, void* cd, void* dwd, int req,
                                                          int* ret, Perf* perf) {
    return find(__func__, BWD_FILTER, h, xd, dwd, cd, dyd, req, ret, perf, 1);
}
EXPORT Status cudnnGetConvolutionBackwardFilterAlgorithm_v7(void* h, void* xd, void* dyd, void* cd, void* dwd,
                                                            int req, int* ret, Perf* perf) {
    return find(__func__, BWD_FILTER, h, xd, dwd, cd, dyd, req, ret, perf, 0);
}
EXPORT Status cudnnGetConvolutionForwardAlgorithmMaxCount(void* h, int* count) {
    if (!is_handle(h) || !count) FAIL(BAD_PARAM, "bad arguments");
    *count = FWD_COUNT;
    return SUCCESS;
}
EXPORT Status cudnnGetConvolutionBackwardDataAlgorithmMaxCount(void* h, int* count) {
    if (!is_handle(h) || !count) FAIL(BAD_PARAM, "bad arguments");
    *count = BWD_DATA_COUNT;
    return SUCCESS;
}
EXPORT Status cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(void* h, int* count) {
    if (!is_handle(h) || !count) FAIL(BAD_PARAM, "bad arguments");
    *count = BWD_FILTER_COUNT;
    return SUCCESS;
}

// The workspace the algorithm needs with the descriptor's math type, or an error.
static Status needs(const char* fn, int dir, const Prob* p, void* cd, int algo, size_t* mem, int* tc) {
    if (algo < 0 || algo >= algo_count(dir)) return fail(BAD_PARAM, fn, "invalid algo");
    Algo a = describe(dir, p, algo);
    if (!a.ok) return fail(NOT_SUPPORTED, fn, "the algorithm does not support this convolution");
    *tc = runs_tc(&a, ((Conv*)cd)->math);
    *mem = *tc ? a.tc_mem : a.fma_mem;
    return SUCCESS;
}
static Status workspace_size(const char* fn, int dir, void* h, void* xd, void* wd, void* cd, void* yd, int algo,
                             size_t* size) {
    if (!is_handle(h) || !size) return fail(BAD_PARAM, fn, "bad arguments");
    Prob p;
    Status s = problem(fn, xd, wd, cd, yd, -1, &p);
    int tc;
    if (!s) s = needs(fn, dir, &p, cd, algo, size, &tc);
    return s;
}
EXPORT Status cudnnGetConvolutionForwardWorkspaceSize(void* h, void* xd, void* wd, void* cd, void* yd, int algo,
                                                      size_t* size) {
    return workspace_size(__func__, FWD, h, xd, wd, cd, yd, algo, size);
}
EXPORT Status cudnnGetConvolutionBackwardDataWorkspaceSize(void* h, void* wd, void* dyd, void* cd, void* dxd, int algo,
                                                           size_t* size) {
    return workspace_size(__func__, BWD_DATA, h, dxd, wd, cd, dyd, algo, size);
}
EXPORT Status cudnnGetConvolutionBackwardFilterWorkspaceSize(void* h, void* xd, void* dyd, void* cd, void* dwd,
                                                             int algo, size_t* size) {
    return workspace_size(__func__, BWD_FILTER, h, xd, dwd, cd, dyd, algo, size);
}

// ---- arithmetic ----------------------------------------------------------------------------

// TF32: the 10-bit mantissa a tensor core multiplies, rounded to nearest even.
static double tf32(double v) {
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) {
        u += 0xfffu + ((u >> 13) & 1u);
        u &= 0xffffe000u;
    }
    memcpy(&f, &u, 4);
    return f;
}

typedef struct {
    const void* base;
    int dbl, round;
} In;
static double get(In a, long i) {
    double v = a.dbl ? ((const double*)a.base)[i] : ((const float*)a.base)[i];
    return a.round ? tf32(v) : v;
}
static void put(void* base, int dbl, long i, double alpha, double beta, double v) {
    if (dbl) {
        double* d = (double*)base + i;
        *d = alpha * v + (beta == 0.0 ? 0.0 : beta * *d);
    } else {
        float* f = (float*)base + i;
        // The sum rounds to float once, then the scaling (as a kernel's epilogue would).
        double r = (double)(float)v;
        *f = (float)(alpha * r + (beta == 0.0 ? 0.0 : beta * (double)*f));
    }
}

// Non-deterministic algorithms add their partial sums (rounded to the data type) in an order
// that changes from call to call, as atomics from many blocks would.
static _Atomic unsigned long long calls;
static unsigned long long mix(unsigned long long z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double add_partials(double* parts, long n, int dbl, unsigned long long seed) {
    for (long i = n - 1; i > 0; --i) {
        long j = (long)(mix(seed + (unsigned long long)i) % (unsigned long long)(i + 1));
        double t = parts[i]; parts[i] = parts[j]; parts[j] = t;
    }
    if (dbl) {
        double s = 0.0;
        for (long i = 0; i < n; ++i) s += parts[i];
        return s;
    }
    float s = 0.0f;
    for (long i = 0; i < n; ++i) s += (float)parts[i];
    return s;
}

// The filter index that meets input offset `r` (taps in input order): flipped for CONVOLUTION.
static long tap(const Prob* p, int axis, long r) { return p->flip ? p->ker[axis] - 1 - r : r; }

static void forward(const Prob* p, In x, In w, void* y, double alpha, double beta) {
    long kg = p->k / p->groups, cg = p->c / p->groups;
    for (long n = 0; n < p->n; ++n)
        for (long k = 0; k < p->k; ++k) {
            long g = k / kg;
            for (long od = 0; od < p->out[0]; ++od)
                for (long oh = 0; oh < p->out[1]; ++oh)
                    for (long ow = 0; ow < p->out[2]; ++ow) {
                        double acc = 0.0;
                        for (long c = 0; c < cg; ++c)
                            for (long rd = 0; rd < p->ker[0]; ++rd) {
                                long id = od * p->str[0] - p->pad[0] + rd * p->dil[0];
                                if (id < 0 || id >= p->in[0]) continue;
                                for (long rh = 0; rh < p->ker[1]; ++rh) {
                                    long ih = oh * p->str[1] - p->pad[1] + rh * p->dil[1];
                                    if (ih < 0 || ih >= p->in[1]) continue;
                                    for (long rw = 0; rw < p->ker[2]; ++rw) {
                                        long iw = ow * p->str[2] - p->pad[2] + rw * p->dil[2];
                                        if (iw < 0 || iw >= p->in[2]) continue;
                                        long xi = n * p->xs[0] + (g * cg + c) * p->xs[1] + id * p->xs[2] +
                                                  ih * p->xs[3] + iw * p->xs[4];
                                        long wi = k * p->ws[0] + c * p->ws[1] + tap(p, 0, rd) * p->ws[2] +
                                                  tap(p, 1, rh) * p->ws[3] + tap(p, 2, rw) * p->ws[4];
                                        acc += get(x, xi) * get(w, wi);
                                    }
                                }
                            }
                        long yi = n * p->ys[0] + k * p->ys[1] + od * p->ys[2] + oh * p->ys[3] + ow * p->ys[4];
                        put(y, p->dtype == DATA_DOUBLE, yi, alpha, beta, acc);
                    }
        }
}

// The output position that input offset i meets through tap r along an axis, or -1.
static long meets(const Prob* p, int axis, long i, long r) {
    long t = i + p->pad[axis] - r * p->dil[axis];
    if (t < 0 || t % p->str[axis]) return -1;
    t /= p->str[axis];
    return t < p->out[axis] ? t : -1;
}

static void backward_data(const Prob* p, In w, In dy, void* dx, double alpha, double beta, int det,
                          unsigned long long seed) {
    long kg = p->k / p->groups, cg = p->c / p->groups;
    double* parts = malloc(sizeof(double) * (kg > 0 ? kg : 1));
    for (long n = 0; n < p->n; ++n)
        for (long c = 0; c < p->c; ++c) {
            long g = c / cg, ci = c % cg;
            for (long id = 0; id < p->in[0]; ++id)
                for (long ih = 0; ih < p->in[1]; ++ih)
                    for (long iw = 0; iw < p->in[2]; ++iw) {
                        double acc = 0.0;
                        for (long kk = 0; kk < kg; ++kk) {
                            long k = g * kg + kk;
                            double part = 0.0;
                            for (long rd = 0; rd < p->ker[0]; ++rd) {
                                long od = meets(p, 0, id, rd);
                                if (od < 0) continue;
                                for (long rh = 0; rh < p->ker[1]; ++rh) {
                                    long oh = meets(p, 1, ih, rh);
                                    if (oh < 0) continue;
                                    for (long rw = 0; rw < p->ker[2]; ++rw) {
                                        long ow = meets(p, 2, iw, rw);
                                        if (ow < 0) continue;
                                        long yi = n * p->ys[0] + k * p->ys[1] + od * p->ys[2] + oh * p->ys[3] +
                                                  ow * p->ys[4];
                                        long wi = k * p->ws[0] + ci * p->ws[1] + tap(p, 0, rd) * p->ws[2] +
                                                  tap(p, 1, rh) * p->ws[3] + tap(p, 2, rw) * p->ws[4];
                                        part += get(dy, yi) * get(w, wi);
                                    }
                                }
                            }
                            if (det) acc += part;
                            else parts[kk] = p->dtype == DATA_DOUBLE ? part : (double)(float)part;
                        }
                        long xi = n * p->xs[0] + c * p->xs[1] + id * p->xs[2] + ih * p->xs[3] + iw * p->xs[4];
                        if (!det) acc = add_partials(parts, kg, p->dtype == DATA_DOUBLE, seed ^ (unsigned long long)xi);
                        put(dx, p->dtype == DATA_DOUBLE, xi, alpha, beta, acc);
                    }
        }
    free(parts);
}

static void backward_filter(const Prob* p, In x, In dy, void* dw, double alpha, double beta, int det,
                            unsigned long long seed) {
    long kg = p->k / p->groups, cg = p->c / p->groups;
    long rows = p->n * p->out[0] * p->out[1];  // partial sums: one per image and output row
    double* parts = malloc(sizeof(double) * (rows > 0 ? rows : 1));
    for (long k = 0; k < p->k; ++k) {
        long g = k / kg;
        for (long ci = 0; ci < cg; ++ci)
            for (long td = 0; td < p->ker[0]; ++td)
                for (long th = 0; th < p->ker[1]; ++th)
                    for (long tw = 0; tw < p->ker[2]; ++tw) {
                        // Filter element (td, th, tw) meets input offset r = tap(t) (tap is its own inverse).
                        long rd = tap(p, 0, td), rh = tap(p, 1, th), rw = tap(p, 2, tw);
                        double acc = 0.0;
                        long row = 0;
                        for (long n = 0; n < p->n; ++n)
                            for (long od = 0; od < p->out[0]; ++od)
                                for (long oh = 0; oh < p->out[1]; ++oh, ++row) {
                                    double part = 0.0;
                                    long id = od * p->str[0] - p->pad[0] + rd * p->dil[0];
                                    long ih = oh * p->str[1] - p->pad[1] + rh * p->dil[1];
                                    if (id >= 0 && id < p->in[0] && ih >= 0 && ih < p->in[1])
                                        for (long ow = 0; ow < p->out[2]; ++ow) {
                                            long iw = ow * p->str[2] - p->pad[2] + rw * p->dil[2];
                                            if (iw < 0 || iw >= p->in[2]) continue;
                                            long xi = n * p->xs[0] + (g * cg + ci) * p->xs[1] + id * p->xs[2] +
                                                      ih * p->xs[3] + iw * p->xs[4];
                                            long yi = n * p->ys[0] + k * p->ys[1] + od * p->ys[2] +
                                                      oh * p->ys[3] + ow * p->ys[4];
                                            part += get(x, xi) * get(dy, yi);
                                        }
                                    if (det) acc += part;
                                    else parts[row] = p->dtype == DATA_DOUBLE ? part : (double)(float)part;
                                }
                        long wi = k * p->ws[0] + ci * p->ws[1] + td * p->ws[2] + th * p->ws[3] + tw * p->ws[4];
                        if (!det) acc = add_partials(parts, rows, p->dtype == DATA_DOUBLE, seed ^ (unsigned long long)wi);
                        put(dw, p->dtype == DATA_DOUBLE, wi, alpha, beta, acc);
                    }
    }
    free(parts);
}

// The checks common to the three computations, then the workspace: refused where smaller than
// the variant needs, and every byte of it written.
static Status prepare(const char* fn, int dir, void* h, const void* alpha, const void* beta, const void* a,
                      const void* b, void* out, void* cd, int algo, void* ws, size_t wsize, const Prob* p, int* tc,
                      int* det) {
    if (!is_handle(h)) return fail(BAD_PARAM, fn, "handle is not allocated properly");
    if (!alpha || !beta) return fail(BAD_PARAM, fn, "alpha or beta is NULL");
    if (!a || !b || !out) return fail(BAD_PARAM, fn, "a data pointer is NULL");
    size_t need;
    Status s = needs(fn, dir, p, cd, algo, &need, tc);
    if (s) return s;
    if (wsize < need) return fail(BAD_PARAM, fn, "workSpaceSizeInBytes is less than the algorithm needs");
    if (wsize > 0 && !ws) return fail(BAD_PARAM, fn, "workSpace is NULL with a non-zero size");
    if (wsize > 0) {
        running = "workspace";
        memset(ws, 0xa5, wsize);
        running = NULL;
    }
    *det = describe(dir, p, algo).det;
    return SUCCESS;
}

static double scalar(const void* v, int dbl) { return dbl ? *(const double*)v : (double)*(const float*)v; }

EXPORT Status cudnnConvolutionForward(void* h, const void* alpha, void* xd, const void* x, void* wd, const void* w,
                                      void* cd, int algo, void* ws, size_t wsize, const void* beta, void* yd, void* y) {
    Prob p;
    int tc, det;
    Status s = problem(__func__, xd, wd, cd, yd, 2, &p);
    if (!s) s = prepare(__func__, FWD, h, alpha, beta, x, w, y, cd, algo, ws, wsize, &p, &tc, &det);
    if (s) return s;
    int dbl = p.dtype == DATA_DOUBLE;
    In xi = {x, dbl, tc}, wi = {w, dbl, tc};
    running = __func__;
    forward(&p, xi, wi, y, scalar(alpha, dbl), scalar(beta, dbl));
    running = NULL;
    Algo a = describe(FWD, &p, algo);
    advance_clock(modeled_ms(&p, &a, tc));
    return SUCCESS;
}

EXPORT Status cudnnConvolutionBackwardData(void* h, const void* alpha, void* wd, const void* w, void* dyd,
                                           const void* dy, void* cd, int algo, void* ws, size_t wsize,
                                           const void* beta, void* dxd, void* dx) {
    Prob p;
    int tc, det;
    Status s = problem(__func__, dxd, wd, cd, dyd, 0, &p);
    if (!s) s = prepare(__func__, BWD_DATA, h, alpha, beta, w, dy, dx, cd, algo, ws, wsize, &p, &tc, &det);
    if (s) return s;
    int dbl = p.dtype == DATA_DOUBLE;
    In wi = {w, dbl, tc}, dyi = {dy, dbl, tc};
    running = __func__;
    backward_data(&p, wi, dyi, dx, scalar(alpha, dbl), scalar(beta, dbl), det, mix(++calls));
    running = NULL;
    Algo a = describe(BWD_DATA, &p, algo);
    advance_clock(modeled_ms(&p, &a, tc));
    return SUCCESS;
}

EXPORT Status cudnnConvolutionBackwardFilter(void* h, const void* alpha, void* xd, const void* x, void* dyd,
                                             const void* dy, void* cd, int algo, void* ws, size_t wsize,
                                             const void* beta, void* dwd, void* dw) {
    Prob p;
    int tc, det;
    Status s = problem(__func__, xd, dwd, cd, dyd, 1, &p);
    if (!s) s = prepare(__func__, BWD_FILTER, h, alpha, beta, x, dy, dw, cd, algo, ws, wsize, &p, &tc, &det);
    if (s) return s;
    int dbl = p.dtype == DATA_DOUBLE;
    In xi = {x, dbl, tc}, dyi = {dy, dbl, tc};
    running = __func__;
    backward_filter(&p, xi, dyi, dw, scalar(alpha, dbl), scalar(beta, dbl), det, mix(++calls));
    running = NULL;
    Algo a = describe(BWD_FILTER, &p, algo);
    advance_clock(modeled_ms(&p, &a, tc));
    return SUCCESS;
}
