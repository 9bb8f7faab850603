//! The cuDNN functions crema calls (see [`super::ffi`] for why crema resolves them itself).

use super::ffi::{c_enum, library_api, status_name};
use super::loader::Lib;
use cudarc::cudnn::sys as d;
use std::ffi::{c_char, c_int, c_void};

library_api! {
    /// cuDNN's entry points.
    struct Api from Lib::Cudnn;
    create = cudnnCreate(*mut d::cudnnHandle_t) -> Status;
    destroy = cudnnDestroy(d::cudnnHandle_t) -> Status;
    set_stream = cudnnSetStream(d::cudnnHandle_t, d::cudaStream_t) -> Status;
    get_version = cudnnGetVersion() -> usize;
    get_cudart_version = cudnnGetCudartVersion() -> usize;
    get_error_string = cudnnGetErrorString(u32) -> *const c_char;
    create_tensor = cudnnCreateTensorDescriptor(*mut d::cudnnTensorDescriptor_t) -> Status;
    destroy_tensor = cudnnDestroyTensorDescriptor(d::cudnnTensorDescriptor_t) -> Status;
    set_tensor_nd = cudnnSetTensorNdDescriptor(d::cudnnTensorDescriptor_t, d::cudnnDataType_t, c_int, *const c_int, *const c_int) -> Status;
    create_filter = cudnnCreateFilterDescriptor(*mut d::cudnnFilterDescriptor_t) -> Status;
    destroy_filter = cudnnDestroyFilterDescriptor(d::cudnnFilterDescriptor_t) -> Status;
    set_filter_nd = cudnnSetFilterNdDescriptor(d::cudnnFilterDescriptor_t, d::cudnnDataType_t, d::cudnnTensorFormat_t, c_int, *const c_int) -> Status;
    create_conv = cudnnCreateConvolutionDescriptor(*mut d::cudnnConvolutionDescriptor_t) -> Status;
    destroy_conv = cudnnDestroyConvolutionDescriptor(d::cudnnConvolutionDescriptor_t) -> Status;
    set_conv_nd = cudnnSetConvolutionNdDescriptor(d::cudnnConvolutionDescriptor_t, c_int, *const c_int, *const c_int, *const c_int, d::cudnnConvolutionMode_t, d::cudnnDataType_t) -> Status;
    set_group_count = cudnnSetConvolutionGroupCount(d::cudnnConvolutionDescriptor_t, c_int) -> Status;
    set_math_type = cudnnSetConvolutionMathType(d::cudnnConvolutionDescriptor_t, Math) -> Status;
    forward_output_dim = cudnnGetConvolutionNdForwardOutputDim(d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnFilterDescriptor_t, c_int, *mut c_int) -> Status;
    heuristics_forward = cudnnGetConvolutionForwardAlgorithm_v7(d::cudnnHandle_t, d::cudnnTensorDescriptor_t, d::cudnnFilterDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, c_int, *mut c_int, *mut AlgoPerf<FwdAlgo>) -> Status;
    heuristics_backward_data = cudnnGetConvolutionBackwardDataAlgorithm_v7(d::cudnnHandle_t, d::cudnnFilterDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, c_int, *mut c_int, *mut AlgoPerf<DataAlgo>) -> Status;
    heuristics_backward_filter = cudnnGetConvolutionBackwardFilterAlgorithm_v7(d::cudnnHandle_t, d::cudnnTensorDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnFilterDescriptor_t, c_int, *mut c_int, *mut AlgoPerf<FilterAlgo>) -> Status;
    workspace_forward = cudnnGetConvolutionForwardWorkspaceSize(d::cudnnHandle_t, d::cudnnTensorDescriptor_t, d::cudnnFilterDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, FwdAlgo, *mut usize) -> Status;
    workspace_backward_data = cudnnGetConvolutionBackwardDataWorkspaceSize(d::cudnnHandle_t, d::cudnnFilterDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, DataAlgo, *mut usize) -> Status;
    workspace_backward_filter = cudnnGetConvolutionBackwardFilterWorkspaceSize(d::cudnnHandle_t, d::cudnnTensorDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnFilterDescriptor_t, FilterAlgo, *mut usize) -> Status;
    forward = cudnnConvolutionForward(d::cudnnHandle_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnFilterDescriptor_t, *const c_void, d::cudnnConvolutionDescriptor_t, FwdAlgo, *mut c_void, usize, *const c_void, d::cudnnTensorDescriptor_t, *mut c_void) -> Status;
    backward_data = cudnnConvolutionBackwardData(d::cudnnHandle_t, *const c_void, d::cudnnFilterDescriptor_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnConvolutionDescriptor_t, DataAlgo, *mut c_void, usize, *const c_void, d::cudnnTensorDescriptor_t, *mut c_void) -> Status;
    backward_filter = cudnnConvolutionBackwardFilter(d::cudnnHandle_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnConvolutionDescriptor_t, FilterAlgo, *mut c_void, usize, *const c_void, d::cudnnFilterDescriptor_t, *mut c_void) -> Status;
    @optional {
        // What went wrong, in cuDNN's words (cuDNN 9 and later).
        last_error = cudnnGetLastErrorString(*mut c_char, usize);
        // How many results the heuristics may list per pass.
        max_count_forward = cudnnGetConvolutionForwardAlgorithmMaxCount(d::cudnnHandle_t, *mut c_int) -> Status;
        max_count_backward_data = cudnnGetConvolutionBackwardDataAlgorithmMaxCount(d::cudnnHandle_t, *mut c_int) -> Status;
        max_count_backward_filter = cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(d::cudnnHandle_t, *mut c_int) -> Status;
    }
}

c_enum! {
    /// A cuDNN status (see [`c_enum!`]); `Debug` gives cuDNN's name for it where the table is
    /// open.
    Status = d::cudnnStatus_t
}

impl Status {
    pub const SUCCESS: Status = Status(0);

    /// cuDNN 9's class of the status, the thousands of its value: each class has sub-codes,
    /// e.g. CUDNN_STATUS_NOT_SUPPORTED_SHAPE = 3002 is of class [`Status::NOT_SUPPORTED`].
    pub fn class(self) -> u32 {
        self.0 / 1000
    }
    pub const NOT_SUPPORTED: u32 = 3;
    pub const INTERNAL_ERROR: u32 = 4;
    pub const EXECUTION_FAILED: u32 = 5;
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&status_name(Api::loaded().map(|a| a.get_error_string), "cudnnStatus", self.0))
    }
}

c_enum! {
    /// A forward convolution algorithm, as cuDNN's heuristics list it.
    FwdAlgo = d::cudnnConvolutionFwdAlgo_t {
        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
    }
}

c_enum! {
    /// A backward-data convolution algorithm.
    DataAlgo = d::cudnnConvolutionBwdDataAlgo_t {
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
    }
}

c_enum! {
    /// A backward-filter convolution algorithm.
    FilterAlgo = d::cudnnConvolutionBwdFilterAlgo_t {
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
    }
}

c_enum! {
    /// A convolution's math type.
    Math = d::cudnnMathType_t { CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, CUDNN_FMA_MATH }
}

c_enum! {
    /// Whether an algorithm is deterministic.
    Determinism = d::cudnnDeterminism_t { CUDNN_NON_DETERMINISTIC, CUDNN_DETERMINISTIC }
}

/// One result of cuDNN's heuristics, laid out as `cudnnConvolution*AlgoPerf_t` (the three are
/// alike but for the algorithm's type), with every enum held as its integer.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct AlgoPerf<A> {
    pub algo: A,
    pub status: Status,
    pub time: f32,
    pub memory: usize,
    pub determinism: Determinism,
    pub math: Math,
    pub reserved: [c_int; 3],
}

// The layouts cuDNN writes into.
const _: () = {
    use std::mem::{align_of, size_of};
    assert!(size_of::<AlgoPerf<FwdAlgo>>() == size_of::<d::cudnnConvolutionFwdAlgoPerf_t>());
    assert!(size_of::<AlgoPerf<DataAlgo>>() == size_of::<d::cudnnConvolutionBwdDataAlgoPerf_t>());
    assert!(size_of::<AlgoPerf<FilterAlgo>>() == size_of::<d::cudnnConvolutionBwdFilterAlgoPerf_t>());
    assert!(align_of::<AlgoPerf<FwdAlgo>>() == align_of::<d::cudnnConvolutionFwdAlgoPerf_t>());
    assert!(std::mem::offset_of!(AlgoPerf<FwdAlgo>, memory) == std::mem::offset_of!(d::cudnnConvolutionFwdAlgoPerf_t, memory));
    assert!(std::mem::offset_of!(AlgoPerf<FwdAlgo>, math) == std::mem::offset_of!(d::cudnnConvolutionFwdAlgoPerf_t, mathType));
};

impl<A: Copy> AlgoPerf<A> {
    /// A result to be filled in (all zeros, which is how cuDNN's own headers clear one).
    pub fn empty(algo: A) -> AlgoPerf<A> {
        AlgoPerf { algo, status: Status::SUCCESS, time: 0.0, memory: 0, determinism: Determinism(0), math: Math(0), reserved: [0; 3] }
    }

    /// The same result without its algorithm (which the caller keeps, typed).
    pub fn untyped(&self) -> AlgoPerf<()> {
        AlgoPerf { algo: (), status: self.status, time: self.time, memory: self.memory, determinism: self.determinism, math: self.math, reserved: self.reserved }
    }
}

/// `CUDNN_STATUS_X (value; what cuDNN last said)`, as far as the table is open.
pub(crate) fn status_text(status: Status) -> String {
    let Some(api) = Api::loaded() else { return format!("{status:?}") };
    let mut out = format!("{status:?}");
    if let Some(last) = api.last_error {
        let mut buf = vec![0 as c_char; 1024];
        // SAFETY: the buffer holds `buf.len()` bytes; cuDNN writes a NUL-terminated string into it.
        unsafe { last(buf.as_mut_ptr(), buf.len()) };
        buf[1023] = 0;
        // SAFETY: NUL-terminated (the last byte is NUL whatever cuDNN wrote).
        let said = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().trim().to_string();
        if !said.is_empty() {
            out.push_str(" (cuDNN says: ");
            out.push_str(&said);
            out.push(')');
        }
    }
    out
}
