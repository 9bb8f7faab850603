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
