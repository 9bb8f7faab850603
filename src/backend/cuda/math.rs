//! CUDA fills, copies and BLAS-level arithmetic: kernels from `kernels/math.cu`, GEMM on
//! cuBLAS. Reductions are crema's own (double accumulation, fixed grid, two passes) rather than
//! cuBLAS's: deterministic, and within rounding of the CPU backend's f64 sums.

use super::device::{scratch, Device, REDUCE_BLOCKS};
use super::launch::{Family, Kernel, KernelStruct, Launch};
use super::{range_check, same_len, Cuda, CudaBuf};
use crate::backend::{Gemm, Math, StridedCopy};
use crate::{Error, Result};
use cudarc::driver::result as drv;

const FILL: Kernel = Kernel::new(Family::Math, "crema_fill");
const AXPBY: Kernel = Kernel::new(Family::Math, "crema_axpby");
const SCAL: Kernel = Kernel::new(Family::Math, "crema_scal");
const MUL: Kernel = Kernel::new(Family::Math, "crema_mul");
const ADD_SCALAR: Kernel = Kernel::new(Family::Math, "crema_add_scalar");
const ALL_FINITE: Kernel = Kernel::new(Family::Math, "crema_all_finite");
const REDUCE_PARTIAL: Kernel = Kernel::new(Family::Math, "crema_reduce_partial");
const REDUCE_FINAL: Kernel = Kernel::new(Family::Math, "crema_reduce_final");
const COPY_STRIDED: Kernel = Kernel::new(Family::Math, "crema_copy_strided");

/// Every kernel this file launches (checked against the sources by a unit test).
#[cfg(test)]
pub(super) const KERNELS: &[Kernel] = &[FILL, AXPBY, SCAL, MUL, ADD_SCALAR, ALL_FINITE, REDUCE_PARTIAL, REDUCE_FINAL, COPY_STRIDED];

/// The reductions of `crema_reduce_partial`.
#[derive(Clone, Copy)]
enum Reduce {
    Dot = 0,
    Asum = 1,
    Sumsq = 2,
}

/// Most axes of each kind a strided copy may keep after merging (`CREMA_MAX_AXES`).
const MAX_AXES: usize = 8;

/// Mirrors `StridedGeom` in kernels/math.cu.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct StridedGeom {
    count: u64,
    serial: u64,
    src_off: u64,
    dst_off: u64,
    pshape: [u64; MAX_AXES],
    psrc: [u64; MAX_AXES],
    pdst: [u64; MAX_AXES],
    sshape: [u64; MAX_AXES],
    ssrc: [u64; MAX_AXES],
    sdst: [u64; MAX_AXES],
    np: i32,
    ns: i32,
    accumulate: i32,
    unused: i32,
}

// SAFETY: repr(C), plain integers, laid out as the .cu struct (u64s first, then four ints).
unsafe impl KernelStruct for StridedGeom {}

/// Splits a copy into parallel axes (every index reaches a distinct destination) and serial
/// axes (walked in order by each thread), after dropping unit axes and merging axes that are
/// contiguous in both buffers. `None` when more than [`MAX_AXES`] of a kind remain.
fn strided_geom(c: &StridedCopy, accumulate: bool) -> Option<StridedGeom> {
    // (extent, src stride, dst stride), outermost first, unit axes dropped.
    let mut axes: Vec<(u64, u64, u64)> = Vec::new();
    for i in 0..c.shape.len() {
        if c.shape[i] == 1 {
            continue;
        }
        let a = (c.shape[i] as u64, c.src_strides[i] as u64, c.dst_strides[i] as u64);
        match axes.last_mut() {
            Some(last) if last.1 == a.0 * a.1 && last.2 == a.0 * a.2 => *last = (last.0 * a.0, a.1, a.2),
            _ => axes.push(a),
        }
    }
    // Parallel: axes with a non-zero destination stride, if together they never reach one
    // destination twice (checked by sorted strides: each exceeds the span of those below it).
    let mut parallel: Vec<usize> = (0..axes.len()).filter(|&i| axes[i].2 != 0).collect();
    let mut by_stride = parallel.clone();
    by_stride.sort_by_key(|&i| axes[i].2);
    let mut span = 0u64;
    for &i in &by_stride {
        if axes[i].2 <= span {
            parallel.clear();
            break;
        }
        span += (axes[i].0 - 1) * axes[i].2;
    }
    let serial: Vec<usize> = (0..axes.len()).filter(|i| !parallel.contains(i)).collect();
    if parallel.len() > MAX_AXES || serial.len() > MAX_AXES {
        return None;
    }
    let mut g = StridedGeom {
        count: 1,
        serial: 1,
        src_off: c.src_offset as u64,
        dst_off: c.dst_offset as u64,
        np: parallel.len() as i32,
        ns: serial.len() as i32,
        accumulate: accumulate as i32,
        ..StridedGeom::default()
    };
    for (k, &i) in parallel.iter().enumerate() {
        (g.pshape[k], g.psrc[k], g.pdst[k]) = axes[i];
        g.count *= axes[i].0;
    }
    for (k, &i) in serial.iter().enumerate() {
        (g.sshape[k], g.ssrc[k], g.sdst[k]) = axes[i];
        g.serial *= axes[i].0;
    }
    Some(g)
}

/// The largest index (exclusive) that a strided copy touches on one side.
fn extent(shape: &[usize], offset: usize, strides: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(offset);
    }
    shape.iter().zip(strides).try_fold(offset.checked_add(1)?, |acc, (&n, &s)| acc.checked_add((n - 1).checked_mul(s)?))
}

impl Cuda {
    fn dev(&self) -> &Device {
        &self.dev
    }

    /// Runs a two-pass reduction and returns the double sum.
    fn reduce(&self, op: Reduce, n: usize, x: &CudaBuf, x_off: usize, y: &CudaBuf, y_off: usize) -> Result<f64> {
        if n == 0 {
            return Ok(0.0);
        }
        let dev = self.dev();
        let scratch = dev.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let (partial, out) = (scratch::at(scratch.ptr, scratch::PARTIAL), scratch::at(scratch.ptr, scratch::OUT));
        let threads = super::launch::BLOCK;
        Launch::new(dev, REDUCE_PARTIAL)
            .dims((REDUCE_BLOCKS as u32, 1, 1), (threads, 1, 1))
            .u64("n", n)
            .i32("op", op as i32)
            .buf_at("x", x, x_off)
            .buf_at("y", y, y_off)
            .raw("partial", partial, REDUCE_BLOCKS)
            .run()?;
        Launch::new(dev, REDUCE_FINAL)
            .dims((1, 1, 1), (threads, 1, 1))
            .u64("count", REDUCE_BLOCKS)
            .raw("partial", partial, REDUCE_BLOCKS)
            .raw("out", out, 1)
            .run()?;
        let mut result = [0f64; 1];
        // `out` is one double of the scratch buffer, held under its lock.
        dev.read_back(out, &mut result, "reading a reduction's result")?;
        Ok(result[0])
    }
}

impl Math for Cuda {
    fn fill(&self, buf: &mut CudaBuf, offset: usize, len: usize, value: f32) -> Result<()> {
        self.own(&[buf])?;
        range_check("fill", offset, len, buf.len)?;
        Launch::new(self.dev(), FILL).elems(len).u64("n", len).f32("value", value).buf_at("y", buf, offset).run()
    }

    fn copy(&self, src: &CudaBuf, dst: &mut CudaBuf) -> Result<()> {
        self.own(&[src, dst])?;
        same_len("copy", src.len, dst.len)?;
        if src.len == 0 {
            return Ok(());
        }
        self.dev().bind()?;
        // SAFETY: two distinct live allocations of `len` floats each (Rust's borrows forbid
        // `src` and `dst` being the same buffer).
        unsafe { drv::memcpy_dtod_async(dst.ptr, src.ptr, src.len * 4, self.dev().cu_stream()) }
            .map_err(|e| self.dev().driver_error(&format!("copying {} floats", src.len), e))
    }

    fn copy_strided(&self, src: &CudaBuf, dst: &mut CudaBuf, c: &StridedCopy, accumulate: bool) -> Result<()> {
        self.own(&[src, dst])?;
        if c.src_strides.len() != c.shape.len() || c.dst_strides.len() != c.shape.len() {
            return Err(Error::Internal("copy_strided: strides do not match the shape".into()));
        }
        let overflow = || Error::Internal("copy_strided: extent overflows".into());
        range_check("copy_strided source", 0, extent(&c.shape, c.src_offset, &c.src_strides).ok_or_else(overflow)?, src.len)?;
        range_check("copy_strided destination", 0, extent(&c.shape, c.dst_offset, &c.dst_strides).ok_or_else(overflow)?, dst.len)?;
        if c.count() == 0 {
            return Ok(());
        }
        let g = strided_geom(c, accumulate)
            .ok_or_else(|| Error::Internal(format!("copy_strided: more than {MAX_AXES} independent axes in {c:?}")))?;
        Launch::new(self.dev(), COPY_STRIDED).elems(g.count as usize).value("geom", &g).buf("src", src).buf("dst", dst).run()
    }

    fn axpby(&self, alpha: f32, x: &CudaBuf, beta: f32, y: &mut CudaBuf) -> Result<()> {
        self.own(&[x, y])?;
        same_len("axpby", x.len, y.len)?;
        Launch::new(self.dev(), AXPBY).elems(y.len).u64("n", y.len).f32("alpha", alpha).buf("x", x).f32("beta", beta).buf("y", y).run()
    }

    fn scal(&self, alpha: f32, x: &mut CudaBuf) -> Result<()> {
        self.own(&[x])?;
        Launch::new(self.dev(), SCAL).elems(x.len).u64("n", x.len).f32("alpha", alpha).buf("x", x).run()
    }

    fn mul(&self, a: &CudaBuf, b: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        self.own(&[a, b, y])?;
        same_len("mul", a.len, y.len)?;
        same_len("mul", b.len, y.len)?;
        Launch::new(self.dev(), MUL).elems(y.len).u64("n", y.len).buf("a", a).buf("b", b).buf("y", y).run()
    }

    fn add_scalar(&self, x: &mut CudaBuf, value: f32) -> Result<()> {
        self.own(&[x])?;
        Launch::new(self.dev(), ADD_SCALAR).elems(x.len).u64("n", x.len).f32("value", value).buf("x", x).run()
    }

    fn dot(&self, n: usize, x: &CudaBuf, x_off: usize, y: &CudaBuf, y_off: usize) -> Result<f32> {
        self.own(&[x, y])?;
        range_check("dot", x_off, n, x.len)?;
        range_check("dot", y_off, n, y.len)?;
        Ok(self.reduce(Reduce::Dot, n, x, x_off, y, y_off)? as f32)
    }

    fn asum(&self, x: &CudaBuf) -> Result<f32> {
        self.own(&[x])?;
        Ok(self.reduce(Reduce::Asum, x.len, x, 0, x, 0)? as f32)
    }

    fn sumsq(&self, x: &CudaBuf) -> Result<f32> {
        self.own(&[x])?;
        Ok(self.reduce(Reduce::Sumsq, x.len, x, 0, x, 0)? as f32)
    }

    fn gemm(&self, g: &Gemm, a: &CudaBuf, b: &CudaBuf, c: &mut CudaBuf) -> Result<()> {
        self.own(&[a, b, c])?;
        let need = |off: usize, rows: usize, cols: usize| rows.checked_mul(cols).and_then(|n| n.checked_add(off));
        let (ar, ac) = if g.trans_a { (g.k, g.m) } else { (g.m, g.k) };
        let (br, bc) = if g.trans_b { (g.n, g.k) } else { (g.k, g.n) };
        let overflow = || Error::Internal("gemm: sizes overflow".into());
        range_check("gemm A", 0, need(g.a_offset, ar, ac).ok_or_else(overflow)?, a.len)?;
        range_check("gemm B", 0, need(g.b_offset, br, bc).ok_or_else(overflow)?, b.len)?;
        range_check("gemm C", 0, need(g.c_offset, g.m, g.n).ok_or_else(overflow)?, c.len)?;
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        self.dev().bind()?;
        let blas = self.dev().blas.lock().unwrap_or_else(|p| p.into_inner());
        blas.sgemm(g, a.at(g.a_offset), b.at(g.b_offset), c.at(g.c_offset))
    }

    fn all_finite(&self, x: &CudaBuf) -> Result<bool> {
        self.own(&[x])?;
        if x.len == 0 {
            return Ok(true);
        }
        let dev = self.dev();
        let scratch = dev.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let flag = scratch::at(scratch.ptr, scratch::FLAG);
        dev.bind()?;
        // `flag` is a word of the scratch buffer, held under its lock.
        dev.memset(flag, 0, 4)?;
        Launch::new(dev, ALL_FINITE).elems(x.len).u64("n", x.len).buf("x", x).raw("flag", flag, 1).run()?;
        let mut result = [0i32; 1];
        dev.read_back(flag, &mut result, "reading a flag")?;
        Ok(result[0] == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(shape: &[usize], src: &[usize], dst: &[usize]) -> StridedCopy {
        StridedCopy { shape: shape.to_vec(), src_offset: 0, src_strides: src.to_vec(), dst_offset: 0, dst_strides: dst.to_vec() }
    }

    #[test]
    fn contiguous_axes_merge_into_one() {
        let g = strided_geom(&copy(&[2, 3, 4], &[12, 4, 1], &[12, 4, 1]), false).unwrap();
        assert_eq!((g.np, g.ns, g.count, g.serial), (1, 0, 24, 1));
        assert_eq!((g.pshape[0], g.psrc[0], g.pdst[0]), (24, 1, 1));
    }

    #[test]
    fn concat_block_keeps_two_axes() {
        let c = StridedCopy::block(3, 5, 5, 0, 9, 4);
        let g = strided_geom(&c, false).unwrap();
        assert_eq!((g.np, g.ns, g.count), (2, 0, 15));
        assert_eq!((g.dst_off, g.pdst[0], g.pdst[1]), (4, 9, 1));
    }

    #[test]
    fn zero_destination_stride_is_serial() {
        // Tile's gradient: 4 tiles of 6 summed into one destination of 6.
        let g = strided_geom(&copy(&[4, 6], &[6, 1], &[0, 1]), true).unwrap();
        assert_eq!((g.np, g.ns, g.count, g.serial, g.accumulate), (1, 1, 6, 4, 1));
        assert_eq!((g.sshape[0], g.ssrc[0], g.sdst[0]), (4, 6, 0));
    }

    #[test]
    fn overlapping_destinations_run_on_one_thread() {
        // dst index i + j: destinations repeat, so every axis is walked serially, in order.
        let g = strided_geom(&copy(&[3, 3], &[3, 1], &[1, 1]), true).unwrap();
        assert_eq!((g.np, g.ns, g.count, g.serial), (0, 2, 1, 9));
    }

    #[test]
    fn unit_axes_vanish_and_too_many_axes_are_refused() {
        let g = strided_geom(&copy(&[1, 5, 1], &[99, 2, 7], &[0, 1, 3]), false).unwrap();
        assert_eq!((g.np, g.count, g.psrc[0], g.pdst[0]), (1, 5, 2, 1));
        // Ten axes of extent 2, each strided so that none merge.
        let shape = vec![2; 10];
        let src: Vec<usize> = (0..10).map(|i| 3usize.pow(10 - i as u32)).collect();
        assert!(strided_geom(&copy(&shape, &src, &src), false).is_none());
    }

    #[test]
    fn extents_overflow_safely() {
        assert_eq!(extent(&[2, 3], 1, &[3, 1]), Some(7));
        assert_eq!(extent(&[0, 3], 5, &[3, 1]), Some(5));
        assert_eq!(extent(&[usize::MAX, 2], 0, &[2, 1]), None);
    }
}
