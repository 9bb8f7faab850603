//! The backend seam: the primitives every layer is written against.
//!
//! A backend owns memory (`Buf`) and computes on it. Layers hold no data of their own beyond
//! caches kept in `Buf`s, and never copy between host and device themselves: data crosses only
//! through [`Storage::upload`] and [`Storage::download`], which the net calls for inputs,
//! displayed losses and snapshots.
//!
//! The primitives come in families, one trait each (one file each in `ops/`, and one file each
//! in every backend): [`Storage`], [`Math`], [`Activations`], [`Convolution`], ... A family is
//! the unit a layer needs; where a layer is faster as one fused primitive (convolution on
//! cuDNN, batch normalisation) that primitive is the family's unit, not GEMM.
//!
//! [`Backend`] is the sum of the families. Everything above this module is generic over it, so
//! adding a backend adds an implementation of these traits and nothing else.

pub mod cpu;
pub mod cuda;
pub mod ops;
pub mod spec;

pub use ops::*;
pub use spec::{strides_of, ConvSpec, PoolSpec, StridedCopy};

use crate::Result;

/// The operand of an element-wise primitive: distinct input and output buffers, or one buffer
/// updated in place (Caffe's `top == bottom`).
pub enum Io<'a, T> {
    /// Read and write the same buffer.
    InPlace(&'a mut T),
    /// Read the first, write the second.
    Pair(&'a T, &'a mut T),
}

impl<'a, T> Io<'a, T> {
    /// The output buffer.
    pub fn output(&mut self) -> &mut T {
        match self {
            Io::InPlace(y) => y,
            Io::Pair(_, y) => y,
        }
    }
}

/// What a device backend (CUDA) has been asked to do since it was opened: calls queued, waits
/// for the device and copies between host and device. `crema time --gpu` reports it per
/// training step; the CUDA tests hold a training step to it (no allocations, no copies but the
/// data layers' inputs and the loss).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// crema's own kernels launched.
    pub kernels: u64,
    /// cuBLAS GEMMs and cuDNN convolution passes queued.
    pub library_calls: u64,
    /// Times the host waited for the stream (every read of a result waits).
    pub syncs: u64,
    /// Copies from host to device, and their bytes.
    pub uploads: u64,
    /// Bytes of [`Activity::uploads`].
    pub upload_bytes: u64,
    /// Copies from device to host (read-backs of results included), and their bytes.
    pub downloads: u64,
    /// Bytes of [`Activity::downloads`].
    pub download_bytes: u64,
    /// Device allocations (buffers, workspace growth).
    pub allocations: u64,
}

impl Activity {
    /// What happened between `earlier` and `self` (counts taken from the same device).
    pub fn since(&self, earlier: &Activity) -> Activity {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        Activity {
            kernels: d(self.kernels, earlier.kernels),
            library_calls: d(self.library_calls, earlier.library_calls),
            syncs: d(self.syncs, earlier.syncs),
            uploads: d(self.uploads, earlier.uploads),
            upload_bytes: d(self.upload_bytes, earlier.upload_bytes),
            downloads: d(self.downloads, earlier.downloads),
            download_bytes: d(self.download_bytes, earlier.download_bytes),
            allocations: d(self.allocations, earlier.allocations),
        }
    }
}

/// Memory: allocation and the only crossings between host and backend.
pub trait Storage: Clone + Send + Sync + 'static {
    /// A buffer of `f32` owned by this backend.
    type Buf: Send + Sync + 'static;

    /// A short description of the device, for logs ("CPU (2 threads)", "NVIDIA H100 ...").
    fn describe(&self) -> String;
    /// A zero-filled buffer of `len` elements.
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// Number of elements in `buf`.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// Makes `buf` hold `len` elements. Where the backend can, memory the buffer already holds
    /// is reused when `len` fits in it (the contents are then unspecified: whatever was there,
    /// or zeros); otherwise a new zero-filled buffer replaces it. For pooled buffers that are
    /// lent to blobs of different sizes (see the net's diff sharing).
    fn set_len(&self, buf: &mut Self::Buf, len: usize) -> Result<()>;
    /// Copies host `src` into `dst[offset..offset + src.len()]`.
    fn upload(&self, src: &[f32], dst: &mut Self::Buf, offset: usize) -> Result<()>;
    /// Copies `src[offset..offset + dst.len()]` to the host.
    fn download(&self, src: &Self::Buf, offset: usize, dst: &mut [f32]) -> Result<()>;
    /// Waits until all queued work has finished (a no-op where work is synchronous).
    fn synchronize(&self) -> Result<()>;
    /// Bytes of backend memory in use now and at most so far, where the backend tracks them.
    fn memory_usage(&self) -> Option<(usize, usize)> {
        None
    }
    /// Starts a new high-water mark of [`Storage::memory_usage`] at what is in use now, where the
    /// backend tracks it.
    fn reset_memory_peak(&self) {}
    /// Of [`Storage::memory_usage`], the bytes held now as scratch shared by every layer (a
    /// GPU's convolution workspace), where the backend has one.
    fn workspace_bytes(&self) -> Option<usize> {
        None
    }
    /// Names the layer (name, type) whose calls follow, or none: a backend that reports some
    /// errors later than the call that caused them (a GPU's checks of data, read at the next
    /// wait) names that layer in them.
    fn enter_layer(&self, _layer: Option<(&str, &str)>) {}
    /// What the device was asked to do so far, where the backend runs on one (not the CPU).
    fn activity(&self) -> Option<Activity> {
        None
    }

    /// The whole buffer on the host.
    fn to_vec(&self, src: &Self::Buf) -> Result<Vec<f32>> {
        let mut v = vec![0.0; self.len(src)];
        self.download(src, 0, &mut v)?;
        Ok(v)
    }
    /// A new buffer holding host `src`.
    fn alloc_from(&self, src: &[f32]) -> Result<Self::Buf> {
        let mut b = self.alloc(src.len())?;
        self.upload(src, &mut b, 0)?;
        Ok(b)
    }
}

/// Every primitive family: what a layer may call.
pub trait Backend:
    Storage + Math + Activations + Convolution + Pooling + Normalization + Losses + SolverOps + TensorOps
{
}

impl<T> Backend for T where
    T: Storage + Math + Activations + Convolution + Pooling + Normalization + Losses + SolverOps + TensorOps
{
}
