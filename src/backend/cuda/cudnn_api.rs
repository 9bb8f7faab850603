//! The cuDNN functions crema calls, taken from the very file [`super::loader`] opened.
//!
//! cudarc's cuDNN bindings open their own library by bare name on first use, `libcudnn.so`
//! first. Where a machine has two cuDNN installations (the system's, with its `libcudnn.so`
//! link, and NVIDIA's pip wheel that PyTorch uses, say), that name can find another copy than the
//! one crema chose, preloaded with its sub-libraries and reported by `device_query`; the front
//! library of one copy then meets the sub-libraries of the other, and cuDNN refuses the first
//! convolution with `CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH` (seen on an H200 with PyTorch's
//! cuDNN 9.14 wheel). So crema calls cuDNN only through this table, resolved from its own handle
//! on the library it opened; cudarc supplies the C types alone.

use super::loader::{self, Lib};
use crate::{Error, Result};
use cudarc::cudnn::sys as d;
use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

/// Declares the table and its resolution: one field per C function, with cuDNN 9's signature.
macro_rules! cudnn_functions {
    ($($field:ident = $sym:ident ($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// cuDNN's entry points, resolved from one open library.
        pub(crate) struct Api {
            $(pub $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
            /// `cudnnGetLastErrorString` (cuDNN 9 and later): what went wrong, in cuDNN's words.
            pub last_error: Option<unsafe extern "C" fn(*mut c_char, usize)>,
            /// Kept open for the life of the table (the loader never closes it either).
            _lib: Library,
        }

        fn resolve(lib: Library) -> std::result::Result<Api, String> {
            // SAFETY: each symbol is the cuDNN function of that name, whose C signature (cudnn.h
            // of cuDNN 9, as cudarc's bindings declare it) is the field's type.
            unsafe {
                Ok(Api {
                    $($field: *lib
                        .get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(concat!(stringify!($sym), "\0").as_bytes())
                        .map_err(|e| format!("{}: {e}", stringify!($sym)))?,)*
                    last_error: lib.get::<unsafe extern "C" fn(*mut c_char, usize)>(b"cudnnGetLastErrorString\0").ok().map(|s| *s),
                    _lib: lib,
                })
            }
        }
    };
}

cudnn_functions! {
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
    find_forward = cudnnFindConvolutionForwardAlgorithm(d::cudnnHandle_t, d::cudnnTensorDescriptor_t, d::cudnnFilterDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, c_int, *mut c_int, *mut d::cudnnConvolutionFwdAlgoPerf_t) -> d::cudnnStatus_t;
    find_backward_data = cudnnFindConvolutionBackwardDataAlgorithm(d::cudnnHandle_t, d::cudnnFilterDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnTensorDescriptor_t, c_int, *mut c_int, *mut d::cudnnConvolutionBwdDataAlgoPerf_t) -> d::cudnnStatus_t;
    find_backward_filter = cudnnFindConvolutionBackwardFilterAlgorithm(d::cudnnHandle_t, d::cudnnTensorDescriptor_t, d::cudnnTensorDescriptor_t, d::cudnnConvolutionDescriptor_t, d::cudnnFilterDescriptor_t, c_int, *mut c_int, *mut d::cudnnConvolutionBwdFilterAlgoPerf_t) -> d::cudnnStatus_t;
    forward = cudnnConvolutionForward(d::cudnnHandle_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnFilterDescriptor_t, *const c_void, d::cudnnConvolutionDescriptor_t, d::cudnnConvolutionFwdAlgo_t, *mut c_void, usize, *const c_void, d::cudnnTensorDescriptor_t, *mut c_void) -> d::cudnnStatus_t;
    backward_data = cudnnConvolutionBackwardData(d::cudnnHandle_t, *const c_void, d::cudnnFilterDescriptor_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnConvolutionDescriptor_t, d::cudnnConvolutionBwdDataAlgo_t, *mut c_void, usize, *const c_void, d::cudnnTensorDescriptor_t, *mut c_void) -> d::cudnnStatus_t;
    backward_filter = cudnnConvolutionBackwardFilter(d::cudnnHandle_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnTensorDescriptor_t, *const c_void, d::cudnnConvolutionDescriptor_t, d::cudnnConvolutionBwdFilterAlgo_t, *mut c_void, usize, *const c_void, d::cudnnFilterDescriptor_t, *mut c_void) -> d::cudnnStatus_t;
}

static API: OnceLock<Api> = OnceLock::new();

/// The table, resolved on first use from the cuDNN library the loader opens (or has opened).
/// A failure is reported, and tried again on the next call, as the loader's are.
pub(crate) fn api() -> Result<&'static Api> {
    if let Some(api) = API.get() {
        return Ok(api);
    }
    let loaded = loader::ensure(&[Lib::Cudnn])?;
    let path = loaded.first().map(|l| l.path.clone()).ok_or_else(|| Error::Internal("the loader returned no cuDNN".into()))?;
    let what = || format!("reading cuDNN's functions from {}", path.display());
    // SAFETY: the loader has this very file open already, so this only takes another reference
    // to it (its initialisers have run); a bare name resolves to the object the loader opened.
    let lib = unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| Error::Cuda { what: what(), detail: e.to_string() })?;
    let api = resolve(lib).map_err(|detail| Error::Cuda { what: what(), detail: format!("a function is missing: {detail}") })?;
    Ok(API.get_or_init(|| api))
}

/// `CUDNN_STATUS_X (cuDNN's text for it; what cuDNN last said)`, as far as the table is open.
pub(crate) fn status_text(status: d::cudnnStatus_t) -> String {
    let Some(api) = API.get() else { return format!("{status:?}") };
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
