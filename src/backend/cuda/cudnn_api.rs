//! The cuDNN functions crema calls (see [`super::ffi`] for why crema resolves them itself).

use super::ffi::library_api;
use super::loader::Lib;
use cudarc::cudnn::sys as d;
use std::ffi::{c_char, c_int, c_void};

library_api! {
    /// cuDNN's entry points.
    struct Api from Lib::Cudnn;
    create = cudnnCreate(*mut d::cudnnHandle_t) -> d::cudnnStatus_t;
    destroy = cudnnDestroy(d::cudnnHandle_t) -> d::cudnnStatus_t;
    set_stream = cudnnSetStream(d::cudnnHandle_t, d::cudaStream_t) -> d::cudnnStatus_t;
    get_version = cudnnGetVersion() -> usize;
    get_cudart_version = cudnnGetCudartVersion() -> usize;
    get_error_string = cudnnGetErrorString(d::cudnnStatus_t) -> *const c_char;
    create_tensor = cudnnCreateTensorDescriptor(*mut d::cudnnTensorDescriptor_t) -> d::cudnnStatus_t;
    destroy_tensor = cudnnDestroyTensorDescriptor(d::cudnnTensorDescriptor_t) -> d::cudnnStatus_t;
    set_tensor_nd = cudnnSetTensorNdDescriptor(d::cudnnTensorDescriptor_t, d::cudnnDataType_t, c_int, *const c_int, *const c_int) -> d::cudnnStatus_t;
    create_filter = cudnnCreateFilterDescriptor(*mut d::cudnnFilterDescriptor_t) -> d::cudnnStatus_t;
    destroy_filter = cudnnDestroyFilterDescriptor(d::cudnnFilterDescriptor_t) -> d::cudnnStatus_t;
    set_filter_nd = cudnnSetFilterNdDescriptor(d::cudnnFilterDescriptor_t, d::cudnnDataType_t, d::cudnnTensorFormat_t, c_int, *const c_int) -> d::cudnnStatus_t;
    create_conv = cudnnCreateConvolutionDescriptor(*mut d::cudnnConvolutionDescriptor_t) -> d::cudnnStatus_t;
    destroy_conv = cudnnDestroyConvolutionDescriptor(d::cudnnConvolutionDescriptor_t) -> d::cudnnStatus_t;
    set_conv_nd = cudnnSetConvolutionNdDescriptor(d::cudnnConvolutionDescriptor_t, c_int, *const c_int, *const c_int, *const c_int, d::cudnnConvolutionMode_t, d::cudnnDataType_t) -> d::cudnnStatus_t;
    set_group_count = cudnnSetConvolutionGroupCount(d::cudnnConvolutionDescriptor_t, c_int) -> d::cudnnStatus_t;
    set_math_type = cudnnSetConvolutionMathType(d::cudnnConvolutionDescriptor_t, d::cudnnMathType_t) -> d::cudnnStatus_t;
    forward_output_dim = cudnnGetConvolutionNdForwardOutputDim(d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnFilterDescriptor_t, c_int, *mut c_int) -> d::cudnnStatus_t;
    heuristics_forward = cudnnGetConvolutionForwardAlgorithm_v7(d::cudnnHandle_t, d::cudnnTensorDescriptor_t, d::cudnnFilterDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, c_int, *mut c_int, *mut d::cudnnConvolutionFwdAlgoPerf_t) -> d::cudnnStatus_t;
    heuristics_backward_data = cudnnGetConvolutionBackwardDataAlgorithm_v7(d::cudnnHandle_t, d::cudnnFilterDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, c_int, *mut c_int, *mut d::cudnnConvolutionBwdDataAlgoPerf_t) -> d::cudnnStatus_t;
    heuristics_backward_filter = cudnnGetConvolutionBackwardFilterAlgorithm_v7(d::cudnnHandle_t, d::cudnnTensorDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnFilterDescriptor_t, c_int, *mut c_int, *mut d::cudnnConvolutionBwdFilterAlgoPerf_t) -> d::cudnnStatus_t;
    workspace_forward = cudnnGetConvolutionForwardWorkspaceSize(d::cudnnHandle_t, d::cudnnTensorDescriptor_t, d::cudnnFilterDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionFwdAlgo_t, *mut usize) -> d::cudnnStatus_t;
    workspace_backward_data = cudnnGetConvolutionBackwardDataWorkspaceSize(d::cudnnHandle_t, d::cudnnFilterDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionBwdDataAlgo_t, *mut usize) -> d::cudnnStatus_t;
    workspace_backward_filter = cudnnGetConvolutionBackwardFilterWorkspaceSize(d::cudnnHandle_t, d::cudnnTensorDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnFilterDescriptor_t, d::cudnnConvolutionBwdFilterAlgo_t, *mut usize) -> d::cudnnStatus_t;
    forward = cudnnConvolutionForward(d::cudnnHandle_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnFilterDescriptor_t, *const c_void, d::cudnnConvolutionDescriptor_t, d::cudnnConvolutionFwdAlgo_t, *mut c_void, usize, *const c_void, d::cudnnTensorDescriptor_t, *mut c_void) -> d::cudnnStatus_t;
    backward_data = cudnnConvolutionBackwardData(d::cudnnHandle_t, *const c_void, d::cudnnFilterDescriptor_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnConvolutionDescriptor_t, d::cudnnConvolutionBwdDataAlgo_t, *mut c_void, usize, *const c_void, d::cudnnTensorDescriptor_t, *mut c_void) -> d::cudnnStatus_t;
    backward_filter = cudnnConvolutionBackwardFilter(d::cudnnHandle_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnConvolutionDescriptor_t, d::cudnnConvolutionBwdFilterAlgo_t, *mut c_void, usize, *const c_void, d::cudnnFilterDescriptor_t, *mut c_void) -> d::cudnnStatus_t;
    @optional {
        // What went wrong, in cuDNN's words (cuDNN 9 and later).
        last_error = cudnnGetLastErrorString(*mut c_char, usize);
    }
}

/// `CUDNN_STATUS_X (cuDNN's text for it; what cuDNN last said)`, as far as the table is open.
pub(crate) fn status_text(status: d::cudnnStatus_t) -> String {
    let Ok(api) = Api::get() else { return format!("{status:?}") };
    let text = |p: *const c_char| -> String {
        // SAFETY: a NUL-terminated string owned by cuDNN (or null).
        if p.is_null() { String::new() } else { unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().trim().to_string() }
    };
    // SAFETY: cudnnGetErrorString takes any status value and returns a static string.
    let mut out = format!("{status:?} ({}", text(unsafe { (api.get_error_string)(status) }));
    if let Some(last) = api.last_error {
        let mut buf = vec![0 as c_char; 1024];
        // SAFETY: the buffer holds `buf.len()` bytes; cuDNN writes a NUL-terminated string into it.
        unsafe { last(buf.as_mut_ptr(), buf.len()) };
        buf[1023] = 0;
        let said = text(buf.as_ptr());
        if !said.is_empty() {
            out.push_str("; cuDNN says: ");
            out.push_str(&said);
        }
    }
    out.push(')');
    out
}
