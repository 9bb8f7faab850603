//! The CPU backend: buffers are `Vec<f32>`, kernels are plain Rust over slices, parallel with
//! rayon. Every reduction splits its input into fixed-size chunks whatever the thread count,
//! so results are the same bits run to run.

mod act;
mod act_state;
mod conv;
mod conv_direct;
mod conv_gemm;
#[cfg(test)]
mod conv_tests;
mod conv_winograd;
mod conv_winograd_filter;
mod eval;
mod gemm_kernel;
mod im2col;
mod lanes;
mod winograd;
pub mod gemm;
pub mod isa;
mod loss;
mod lrn;
mod lstm_unit;
mod math;
mod pack;
mod norm;
#[cfg(test)]
mod norm_tests;
mod pool;
mod softmax;
mod solver;
mod tensor;

pub use conv::conv_paths;

use crate::backend::Storage;
use crate::{Error, Result};

/// Elements per task in parallel element-wise loops and reductions.
pub(crate) const CHUNK: usize = 1 << 14;

/// The CPU backend. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Cpu;

impl Cpu {
    /// The CPU backend on rayon's global thread pool.
    pub fn new() -> Self {
        Cpu
    }
}

fn range_check(what: &str, offset: usize, len: usize, buf_len: usize) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= buf_len => Ok(()),
        _ => Err(Error::Internal(format!(
            "{what}: range {offset}..{offset}+{len} outside a buffer of {buf_len}"
        ))),
    }
}

impl Storage for Cpu {
    type Buf = Vec<f32>;

    fn describe(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }
    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        let mut v = Vec::new();
        v.try_reserve_exact(len)
            .map_err(|_| Error::OutOfMemory { bytes: len.saturating_mul(4), device: "host".into() })?;
        v.resize(len, 0.0);
        Ok(v)
    }
    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }
    fn set_len(&self, buf: &mut Vec<f32>, len: usize) -> Result<()> {
        // Within its capacity a Vec shrinks for free and grows by zero-filling the new part.
        if len <= buf.capacity() {
            buf.resize(len, 0.0);
        } else {
            *buf = self.alloc(len)?;
        }
        Ok(())
    }
    fn upload(&self, src: &[f32], dst: &mut Vec<f32>, offset: usize) -> Result<()> {
        range_check("upload", offset, src.len(), dst.len())?;
        dst[offset..offset + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn download(&self, src: &Vec<f32>, offset: usize, dst: &mut [f32]) -> Result<()> {
        range_check("download", offset, dst.len(), src.len())?;
        dst.copy_from_slice(&src[offset..offset + dst.len()]);
        Ok(())
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn to_vec(&self, src: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(src.clone())
    }
}

/// `y[i] = f(x[i])` over an [`Io`](crate::backend::Io), in parallel chunks.
pub(crate) fn map_io(io: crate::backend::Io<'_, Vec<f32>>, f: impl Fn(f32) -> f32 + Sync) {
    use rayon::prelude::*;
    match io {
        crate::backend::Io::InPlace(y) => y.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|v| *v = f(*v))),
        crate::backend::Io::Pair(x, y) => y
            .par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(yc, xc)| yc.iter_mut().zip(xc).for_each(|(v, &a)| *v = f(a))),
    }
}

/// `dx[i] = g(dy[i], i)` over an [`Io`](crate::backend::Io) of diffs, where `g` may read other
/// buffers at index `i`.
#[allow(dead_code)] // the activations no longer need it; kept for other element-wise kernels
pub(crate) fn map_io_indexed(io: crate::backend::Io<'_, Vec<f32>>, g: impl Fn(f32, usize) -> f32 + Sync) {
    use rayon::prelude::*;
    match io {
        crate::backend::Io::InPlace(y) => y.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, c)| {
            c.iter_mut().enumerate().for_each(|(j, v)| *v = g(*v, ci * CHUNK + j))
        }),
        crate::backend::Io::Pair(x, y) => y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(
            |(ci, (yc, xc))| yc.iter_mut().zip(xc).enumerate().for_each(|(j, (v, &a))| *v = g(a, ci * CHUNK + j)),
        ),
    }
}

/// A deterministic parallel sum of `f(i)` over `0..n`: fixed chunks summed in f64, then the
/// chunk sums in order.
pub(crate) fn det_sum(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    use rayon::prelude::*;
    let chunks = n.div_ceil(CHUNK);
    let partial: Vec<f64> = (0..chunks)
        .into_par_iter()
        .map(|c| (c * CHUNK..((c + 1) * CHUNK).min(n)).map(&f).sum())
        .collect();
    partial.iter().sum()
}
