//! The CUDA backend: buffers live on one NVIDIA GPU, every primitive is queued on one stream.
//!
//! - Libraries are found and opened by crema itself ([`probe`], [`loader`]): a machine without
//!   CUDA gets an [`Error::Cuda`] naming what is missing and where crema looked, never a panic.
//!   NVRTC, cuBLAS and cuDNN are called through tables read from the files crema opened
//!   (`ffi`), never through a second copy that cudarc would find by name.
//! - Every primitive of every family but GEMM and cuDNN's convolutions is a hand-written CUDA C
//!   kernel in `kernels/*.cu` (one file per family), compiled by NVRTC for the GPU's
//!   architecture on first use and cached on disk ([`nvrtc`]). Element-wise kernels write the
//!   CPU backend's formulas in its order of operations (no FMA contraction), so they give its
//!   bits wherever its arithmetic is plain IEEE (single-precision transcendental functions are
//!   evaluated in double and rounded once: within an ulp or two of the CPU's libm). Gradients of
//!   pooling gather rather than scatter, in the CPU's order. Reductions use a grid fixed by the
//!   shape and a second pass in a fixed order, with no float atomics (integer atomics only where
//!   the result is order-free: counts, minima, maxima): the same inputs give the same bits on
//!   every run and every GPU, within rounding of the CPU's sums.
//! - Bad indices in data (pooling masks, labels, row indices) are found on the device (an
//!   atomic minimum of the first bad position), so that they fail as on the CPU. Labels and
//!   row indices are read back at once; pooling and upsampling masks are checked into slots
//!   read at the host's next wait (the loss read, a download, `synchronize`), and their errors
//!   name the layer that ran the check. A training step of the lung SegNet waits for the GPU
//!   once, where it reads the loss sum ([`Cuda::activity`] counts it).
//! - `tools/cuda_emu` runs this backend on a machine without a GPU (its kernels on the CPU),
//!   for testing.
//! - GEMM is cuBLAS; convolutions are cuDNN with algorithms chosen per shape by measurement and
//!   one workspace shared by all layers, with an im2col + cuBLAS path for more than three
//!   spatial axes (or by request, [`ConvEngine::Im2col`]).
//! - [`Precision::Tf32`] (the default) lets cuBLAS and cuDNN use TF32 tensor cores;
//!   [`Precision::Fp32`] forbids them, for comparisons with the CPU backend.

mod act;
mod blas;
mod conv;
mod conv_gemm;
mod ffi;
mod device;
mod cudnn_api;
mod dnn;
mod launch;
pub mod loader;
mod loss;
mod math;
mod norm;
pub mod nvrtc;
mod pool;
pub mod probe;
mod query;
mod solver;
mod tensor;

pub use launch::{kernel_sources, Family};
pub use query::{device_count, device_query, DeviceInfo};

use crate::backend::{Activity, Storage};
use crate::{Error, Result};
use device::Device;
use std::sync::Arc;

/// Arithmetic allowed in cuBLAS GEMMs and cuDNN convolutions (hand-written kernels are always
/// plain FP32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// TF32 tensor cores allowed (10-bit mantissa products, FP32 sums): the fast default, as in
    /// PyTorch with `allow_tf32`.
    #[default]
    Tf32,
    /// FP32 FMA arithmetic only, for bit-level comparisons with the CPU backend.
    Fp32,
}

/// How convolutions run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvEngine {
    /// cuDNN where it takes the shape (1 to 3 spatial axes), else im2col + cuBLAS.
    #[default]
    Cudnn,
    /// Always im2col + cuBLAS (slower; for testing that path).
    Im2col,
}

impl ConvEngine {
    /// The engine `CREMA_CONV_ENGINE` names (`cudnn` or `im2col`, any case), or None where it is
    /// unset or empty: how the CLI and the CUDA tests let a user or a test pick the engine.
    pub fn from_env() -> Result<Option<ConvEngine>> {
        let bad = |v: String| Error::Config(format!("CREMA_CONV_ENGINE={v}: expected cudnn (the default) or im2col"));
        match std::env::var("CREMA_CONV_ENGINE") {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(v)) => Err(bad(format!("{v:?}"))),
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "cudnn" => Ok(Some(ConvEngine::Cudnn)),
                "im2col" => Ok(Some(ConvEngine::Im2col)),
                _ => Err(bad(v)),
            },
        }
    }
}

/// Which of the cuDNN convolution algorithms timed for a shape crema runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvAlgorithms {
    /// The fastest deterministic one (the same gradients on every run); a pass for which cuDNN
    /// has none runs as im2col + GEMM, deterministic too.
    #[default]
    Deterministic,
    /// The fastest, deterministic or not (as PyTorch's cudnn.benchmark and Caffe's cuDNN
    /// layers choose): backward passes may then add in a different order on each run.
    Fastest,
}

/// Options of [`Cuda::with_options`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CudaOptions {
    /// GEMM and convolution arithmetic.
    pub precision: Precision,
    /// Convolution implementation.
    pub conv: ConvEngine,
    /// cuDNN's algorithm choice.
    pub algorithms: ConvAlgorithms,
    /// The most workspace, in bytes, a cuDNN convolution algorithm may use (None: up to half
    /// the free device memory). Caps the shared workspace's cuDNN part, trading speed for
    /// memory: algorithms needing none always exist.
    pub workspace_limit: Option<usize>,
}

/// The CUDA backend on one GPU. Cheap to clone (clones share the GPU, stream and caches).
#[derive(Clone)]
pub struct Cuda {
    dev: Arc<Device>,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cuda({})", self.dev.describe())
    }
}

impl Cuda {
    /// The backend on GPU `device` (numbered from 0), TF32 allowed. Fails with
    /// [`Error::Cuda`] when a CUDA library is missing or the GPU cannot be opened.
    pub fn new(device: usize) -> Result<Cuda> {
        Self::with_options(device, CudaOptions::default())
    }

    /// The backend on GPU `device` with the given GEMM/convolution precision.
    pub fn with_precision(device: usize, precision: Precision) -> Result<Cuda> {
        Self::with_options(device, CudaOptions { precision, ..CudaOptions::default() })
    }

    /// The backend on GPU `device` with all options.
    pub fn with_options(device: usize, options: CudaOptions) -> Result<Cuda> {
        Ok(Cuda { dev: Device::open(device, options)? })
    }

    /// The GPU's number.
    pub fn ordinal(&self) -> usize {
        self.dev.ordinal
    }

    /// The options the backend was opened with.
    pub fn options(&self) -> CudaOptions {
        self.dev.options
    }

    /// Bytes of device memory crema holds now: every buffer, the shared workspace and the
    /// scratch buffer (not cuBLAS's, cuDNN's or the driver's own).
    pub fn allocated(&self) -> usize {
        self.dev.memory_usage().0
    }

    /// The most bytes [`Cuda::allocated`] has reached since the GPU was opened (or since
    /// [`Cuda::reset_peak`]): crema's high-water mark, the cuDNN workspace included.
    pub fn peak_allocated(&self) -> usize {
        self.dev.memory_usage().1
    }

    /// Starts a new high-water mark at what is allocated now.
    pub fn reset_peak(&self) {
        self.dev.reset_peak();
    }

    /// Work queued, waits and copies since the GPU was opened (take two and subtract with
    /// [`Activity::since`] for a span).
    pub fn activity(&self) -> Activity {
        let mut a = self.dev.activity();
        a.library_calls = self.dev.blas.lock().map(|b| b.calls()).unwrap_or(0)
            + self.dev.dnn.lock().map(|d| d.calls()).unwrap_or(0);
        a
    }

    /// Per pass (forward, backward data, backward filter), the measured times in ms of the
    /// algorithms chosen so far, summed over the convolution shapes seen once each, and the
    /// same with the fastest usable algorithm of each shape, deterministic or not.
    pub fn conv_measured_times(&self) -> [(f64, f64); 3] {
        self.dev.dnn.lock().map(|d| d.measured_times()).unwrap_or_default()
    }

    /// cuDNN algorithm searches made so far (one per convolution shape and pass), and the wall
    /// time they took, in seconds.
    pub fn conv_searches(&self) -> (u64, f64) {
        self.dev.dnn.lock().map(|d| d.searches()).unwrap_or_default()
    }

    /// The cuDNN algorithms chosen so far, one line per convolution shape and pass.
    pub fn conv_algorithms(&self) -> Vec<String> {
        self.dev.dnn.lock().map(|d| d.describe_choices()).unwrap_or_default()
    }

    /// Checks that every buffer was allocated by this backend (clones included).
    fn own(&self, bufs: &[&CudaBuf]) -> Result<()> {
        match bufs.iter().all(|b| Arc::ptr_eq(&b.dev, &self.dev)) {
            true => Ok(()),
            false => Err(Error::Internal("a buffer of another CUDA backend was passed to this one".into())),
        }
    }
}

/// A buffer of `f32` in GPU memory. Freed (in stream order) when dropped.
pub struct CudaBuf {
    ptr: u64,
    len: usize,
    /// Elements allocated (at least `len`; more after [`Storage::set_len`] shrank it).
    cap: usize,
    dev: Arc<Device>,
}

impl std::fmt::Debug for CudaBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBuf({} floats on GPU {})", self.len, self.dev.ordinal)
    }
}

impl CudaBuf {
    /// The device address of element `offset`.
    fn at(&self, offset: usize) -> u64 {
        self.ptr + 4 * offset as u64
    }
}

impl Drop for CudaBuf {
    fn drop(&mut self) {
        self.dev.free(device::DevMem { ptr: self.ptr, bytes: self.cap * 4 });
    }
}

/// `offset..offset + len` inside a buffer of `buf_len`, or an error naming `what`.
pub(crate) fn range_check(what: &str, offset: usize, len: usize, buf_len: usize) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= buf_len => Ok(()),
        _ => Err(Error::Internal(format!("{what}: range {offset}..{offset}+{len} outside a buffer of {buf_len}"))),
    }
}

/// Equal lengths, or an error naming `what`.
pub(crate) fn same_len(what: &str, a: usize, b: usize) -> Result<()> {
    if a == b { Ok(()) } else { Err(Error::Internal(format!("{what}: lengths {a} and {b} differ"))) }
}

impl Storage for Cuda {
    type Buf = CudaBuf;

    fn describe(&self) -> String {
        self.dev.describe()
    }

    fn alloc(&self, len: usize) -> Result<CudaBuf> {
        let bytes = len.checked_mul(4).ok_or(Error::OutOfMemory { bytes: usize::MAX, device: self.describe() })?;
        let mem = self.dev.alloc_raw(bytes)?;
        Ok(CudaBuf { ptr: mem.ptr, len, cap: len, dev: self.dev.clone() })
    }

    fn len(&self, buf: &CudaBuf) -> usize {
        buf.len
    }

    fn set_len(&self, buf: &mut CudaBuf, len: usize) -> Result<()> {
        self.own(&[buf])?;
        if len <= buf.cap {
            buf.len = len;
        } else {
            *buf = self.alloc(len)?;
        }
        Ok(())
    }

    fn upload(&self, src: &[f32], dst: &mut CudaBuf, offset: usize) -> Result<()> {
        self.own(&[dst])?;
        range_check("upload", offset, src.len(), dst.len)?;
        self.dev.upload_raw(src, dst.at(offset), &format!("uploading {} floats", src.len()))
    }

    fn download(&self, src: &CudaBuf, offset: usize, dst: &mut [f32]) -> Result<()> {
        self.own(&[src])?;
        range_check("download", offset, dst.len(), src.len)?;
        self.dev.read_back(src.at(offset), dst, &format!("downloading {} floats", dst.len()))
    }

    fn synchronize(&self) -> Result<()> {
        self.dev.sync()
    }

    fn memory_usage(&self) -> Option<(usize, usize)> {
        Some(self.dev.memory_usage())
    }

    fn reset_memory_peak(&self) {
        self.dev.reset_peak();
    }

    fn workspace_bytes(&self) -> Option<usize> {
        Some(self.dev.workspace.lock().unwrap_or_else(|p| p.into_inner()).capacity())
    }

    fn enter_layer(&self, layer: Option<(&str, &str)>) {
        device::set_layer(layer);
    }

    fn activity(&self) -> Option<Activity> {
        Some(Cuda::activity(self))
    }
}
