//! cuBLAS: the one handle of a device, bound to its stream, and row-major GEMM on it.

use super::ffi::{c_enum, library_api, status_name};
use super::loader::Lib;
use super::Precision;
use crate::backend::Gemm;
use crate::{Error, Result};
use cudarc::cublas::sys as cbsys;
use cudarc::driver::sys::CUstream;
use std::ffi::{c_char, c_int};

library_api! {
    /// cuBLAS's entry points crema calls (see [`super::ffi`]).
    struct Api from Lib::Cublas;
    create = cublasCreate_v2(*mut cbsys::cublasHandle_t) -> Status;
    destroy = cublasDestroy_v2(cbsys::cublasHandle_t) -> Status;
    set_stream = cublasSetStream_v2(cbsys::cublasHandle_t, cbsys::cudaStream_t) -> Status;
    set_math_mode = cublasSetMathMode(cbsys::cublasHandle_t, cbsys::cublasMath_t) -> Status;
    sgemm = cublasSgemm_v2(cbsys::cublasHandle_t, cbsys::cublasOperation_t, cbsys::cublasOperation_t, c_int, c_int, c_int, *const f32, *const f32, c_int, *const f32, c_int, *const f32, *mut f32, c_int) -> Status;
    get_property = cublasGetProperty(cbsys::libraryPropertyType, *mut c_int) -> Status;
    @optional {
        status_string = cublasGetStatusString(u32) -> *const c_char;
        status_name = cublasGetStatusName(u32) -> *const c_char;
    }
}

c_enum! {
    /// A cuBLAS status (see [`c_enum!`]); `Debug` gives cuBLAS's name for it where it can.
    Status = cbsys::cublasStatus_t
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&status_name(Api::loaded().and_then(|a| a.status_name), "cublasStatus", self.0))
    }
}

/// A cuBLAS handle (used under the device's lock: handles are not thread-safe).
pub(crate) struct Blas {
    api: &'static Api,
    handle: cbsys::cublasHandle_t,
    /// GEMMs queued (for [`super::Activity`]).
    calls: std::cell::Cell<u64>,
}

// SAFETY: the handle is used by one thread at a time (under a Mutex) with the context bound.
unsafe impl Send for Blas {}

impl Blas {
    /// A handle on `stream`: TF32 tensor cores allowed for `Precision::Tf32`, plain FP32 FMA
    /// arithmetic for `Precision::Fp32`.
    pub fn new(stream: CUstream, precision: Precision) -> Result<Blas> {
        let api = Api::get()?;
        let mut handle: cbsys::cublasHandle_t = std::ptr::null_mut();
        let created = {
            let _one_at_a_time = super::device::handles_lock();
            // SAFETY: a valid out-pointer.
            unsafe { (api.create)(&mut handle) }
        };
        check(api, created).map_err(|e| blas_err("cublasCreate", e))?;
        let blas = Blas { api, handle, calls: std::cell::Cell::new(0) };
        // SAFETY: a live handle and our live stream (the two stream types are the same C type).
        check(api, unsafe { (api.set_stream)(handle, stream as cbsys::cudaStream_t) }).map_err(|e| blas_err("cublasSetStream", e))?;
        let mode = match precision {
            Precision::Tf32 => cbsys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH,
            Precision::Fp32 => cbsys::cublasMath_t::CUBLAS_DEFAULT_MATH,
        };
        // SAFETY: a live handle.
        check(api, unsafe { (api.set_math_mode)(handle, mode) }).map_err(|e| blas_err("cublasSetMathMode", e))?;
        Ok(blas)
    }

    /// `C = alpha op(A) op(B) + beta C` on row-major matrices at device addresses `a`, `b`, `c`
    /// (offsets already applied; the caller has checked the extents).
    ///
    /// cuBLAS is column-major: a row-major `C (m x n)` is a column-major `C^T (n x m)`, and
    /// `C^T = op(B)^T op(A)^T`, so the operands are swapped and the leading dimensions are the
    /// row lengths as stored.
    pub fn sgemm(&self, g: &Gemm, a: u64, b: u64, c: u64) -> Result<()> {
        let dim = |v: usize, what: &str| -> Result<i32> {
            i32::try_from(v).map_err(|_| Error::Cuda { what: "cuBLAS GEMM".into(), detail: format!("{what} = {v} exceeds cuBLAS's 32-bit sizes") })
        };
        let (m, n, k) = (dim(g.m, "m")?, dim(g.n, "n")?, dim(g.k, "k")?);
        let (lda, ldb, ldc) = (dim(g.lda().max(1), "lda")?, dim(g.ldb().max(1), "ldb")?, dim(g.n.max(1), "ldc")?);
        let op = |t: bool| if t { cbsys::cublasOperation_t::CUBLAS_OP_T } else { cbsys::cublasOperation_t::CUBLAS_OP_N };
        // SAFETY: device pointers to matrices of the extents the caller checked; alpha and beta
        // are host scalars (the default pointer mode).
        let status = unsafe {
            (self.api.sgemm)(
                self.handle,
                op(g.trans_b),
                op(g.trans_a),
                n,
                m,
                k,
                &g.alpha,
                b as *const f32,
                ldb,
                a as *const f32,
                lda,
                &g.beta,
                c as *mut f32,
                ldc,
            )
        };
        check(self.api, status).map_err(|e| Error::Cuda {
            what: format!(
                "cuBLAS SGEMM (m={}, n={}, k={}, trans_a={}, trans_b={}, alpha={}, beta={})",
                g.m, g.n, g.k, g.trans_a, g.trans_b, g.alpha, g.beta
            ),
            detail: e,
        })?;
        self.calls.set(self.calls.get() + 1);
        Ok(())
    }

    /// GEMMs queued so far.
    pub fn calls(&self) -> u64 {
        self.calls.get()
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        let _one_at_a_time = super::device::handles_lock();
        // SAFETY: created once, destroyed once.
        let _ = unsafe { (self.api.destroy)(self.handle) };
    }
}

/// cuBLAS's version as `major * 10000 + minor * 100 + patch`.
pub(crate) fn version() -> Result<i32> {
    let api = Api::get()?;
    let mut parts = [0i32; 3];
    for (i, p) in [
        cbsys::libraryPropertyType::MAJOR_VERSION,
        cbsys::libraryPropertyType::MINOR_VERSION,
        cbsys::libraryPropertyType::PATCH_LEVEL,
    ]
    .into_iter()
    .enumerate()
    {
        // SAFETY: a valid out-pointer.
        check(api, unsafe { (api.get_property)(p, &mut parts[i]) }).map_err(|e| blas_err("cublasGetProperty", e))?;
    }
    Ok(parts[0] * 10000 + parts[1] * 100 + parts[2])
}

/// `Err` with the status and cuBLAS's text for it unless cuBLAS answered success.
fn check(api: &Api, status: Status) -> std::result::Result<(), String> {
    if status == cbsys::cublasStatus_t::CUBLAS_STATUS_SUCCESS.into() {
        return Ok(());
    }
    // SAFETY: cublasGetStatusString takes any status and returns a static string (or null).
    let text = api.status_string.map(|f| unsafe { f(status.0) }).filter(|p| !p.is_null());
    // SAFETY: a NUL-terminated static string.
    Err(match text.map(|p| unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()) {
        Some(t) => format!("{status:?}: {t}"),
        None => format!("{status:?}"),
    })
}

fn blas_err(call: &str, detail: String) -> Error {
    Error::Cuda { what: format!("calling {call}"), detail }
}
