//! CUDA tensor primitives: kernels from `kernels/tensor.cu`.
//!
//! Row reductions sum in double through a fixed tree (one block per long row, one thread per
//! short row), independent of the grid. Eltwise chains process up to [`MAX_INPUTS`] inputs per
//! launch, later launches continuing from the output, so the arithmetic is the CPU's sequence
//! whatever the number of inputs. Row gathers check their indices first (one read-back of an
//! atomic-minimum word) so that a bad index writes nothing; the scatter-add groups its sources
//! by row (integer counts, a scan, per-row buckets sorted by index) and adds each row's sources
//! in index order, with no float atomics.

use super::device::{Device, scratch};
use super::launch::{BLOCK, Family, Kernel, KernelStruct, Launch};
use super::{Cuda, CudaBuf};
use crate::backend::{ReduceOp, Storage, TensorOps};
use crate::{Error, Result};

const REDUCE_ROWS_BLOCK: Kernel = Kernel::new(Family::Tensor, "crema_reduce_rows_block");
const REDUCE_ROWS_THREAD: Kernel = Kernel::new(Family::Tensor, "crema_reduce_rows_thread");
const REDUCE_BACKWARD: Kernel = Kernel::new(Family::Tensor, "crema_reduce_backward");
const ELTWISE_SUM: Kernel = Kernel::new(Family::Tensor, "crema_eltwise_sum");
const ELTWISE_PROD: Kernel = Kernel::new(Family::Tensor, "crema_eltwise_prod");
const ELTWISE_PROD_QUOTIENT: Kernel = Kernel::new(Family::Tensor, "crema_eltwise_prod_quotient");
const ELTWISE_MAX: Kernel = Kernel::new(Family::Tensor, "crema_eltwise_max");
const ELTWISE_MAX_BACKWARD: Kernel = Kernel::new(Family::Tensor, "crema_eltwise_max_backward");
const CHECK_ROWS: Kernel = Kernel::new(Family::Tensor, "crema_check_rows");
const GATHER_ROWS: Kernel = Kernel::new(Family::Tensor, "crema_gather_rows");
const SCATTER_COUNT: Kernel = Kernel::new(Family::Tensor, "crema_scatter_count");
const SCATTER_STARTS: Kernel = Kernel::new(Family::Tensor, "crema_scatter_starts");
const SCATTER_PLACE: Kernel = Kernel::new(Family::Tensor, "crema_scatter_place");
const SCATTER_SORT: Kernel = Kernel::new(Family::Tensor, "crema_scatter_sort");
const SCATTER_ADD: Kernel = Kernel::new(Family::Tensor, "crema_scatter_add");

/// Every kernel this file launches (checked against the sources by a unit test).
#[cfg(test)]
pub(super) const KERNELS: &[Kernel] = &[
    REDUCE_ROWS_BLOCK,
    REDUCE_ROWS_THREAD,
    REDUCE_BACKWARD,
    ELTWISE_SUM,
    ELTWISE_PROD,
    ELTWISE_PROD_QUOTIENT,
    ELTWISE_MAX,
    ELTWISE_MAX_BACKWARD,
    CHECK_ROWS,
    GATHER_ROWS,
    SCATTER_COUNT,
    SCATTER_STARTS,
    SCATTER_PLACE,
    SCATTER_SORT,
    SCATTER_ADD,
];

/// Inputs of one Eltwise launch (`CREMA_MAX_INPUTS`).
const MAX_INPUTS: usize = 8;

/// Rows at least this long are summed by a block each, shorter ones by a thread each.
const BLOCK_ROW: usize = 256;

/// Mirrors `Chain` in kernels/tensor.cu.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Chain {
    x: [u64; MAX_INPUTS],
    coeff: [f32; MAX_INPUTS],
    count: i32,
    first: i32,
    base: i32,
    unused: i32,
}

// SAFETY: repr(C): eight u64, eight f32, four i32 (112 bytes, no padding), as the .cu struct.
unsafe impl KernelStruct for Chain {}

/// The launches of a chain over `xs` (with coefficients, 1 without), at most [`MAX_INPUTS`]
/// inputs each, the first one starting the chain.
fn chains(xs: &[&CudaBuf], coeffs: Option<&[f32]>) -> Vec<Chain> {
    xs.chunks(MAX_INPUTS)
        .enumerate()
        .map(|(g, group)| {
            let mut c = Chain {
                count: group.len() as i32,
                first: (g == 0) as i32,
                base: (g * MAX_INPUTS) as i32,
                ..Chain::default()
            };
            for (k, x) in group.iter().enumerate() {
                c.x[k] = x.ptr;
                c.coeff[k] = coeffs.map_or(1.0, |cs| cs[g * MAX_INPUTS + k]);
            }
            c
        })
        .collect()
}

fn expect_len(what: &str, len: usize, want: usize) -> Result<()> {
    if len == want {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "{what}: a buffer of {len} elements where {want} are expected"
        )))
    }
}

/// Checks that every input has length `len` (and that there are at least `min` of them).
fn same_lens(what: &str, xs: &[&CudaBuf], min: usize, len: usize) -> Result<()> {
    if xs.len() < min {
        return Err(Error::Internal(format!(
            "{what}: {} inputs, at least {min} needed",
            xs.len()
        )));
    }
    xs.iter().try_for_each(|x| expect_len(what, x.len, len))
}

fn op_code(op: ReduceOp) -> i32 {
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Asum => 1,
        ReduceOp::Sumsq => 2,
    }
}

impl Cuda {
    /// The CPU's error for the bad row index at position `i` of `index`.
    fn bad_row(&self, index: &CudaBuf, rows: usize, i: usize) -> Result<Error> {
        let mut v = [0f32; 1];
        self.download(index, i, &mut v)?;
        Ok(Error::Shape(format!(
            "index {} at position {i} is outside the valid range [0, {rows})",
            v[0]
        )))
    }

    /// Runs `crema_check_rows` over `index` and returns the first bad position.
    fn first_bad_row(&self, dev: &Device, index: &CudaBuf, rows: usize) -> Result<Option<usize>> {
        let scratch = dev.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let bad = scratch::at(scratch.ptr, scratch::BAD);
        dev.memset(bad, 0xff, 8)?;
        Launch::new(dev, CHECK_ROWS)
            .elems(index.len)
            .u64("n", index.len)
            .f32("rows", rows as f32)
            .buf("index", index)
            .raw("bad", bad, 1)
            .run()?;
        let mut w = [0u64; 1];
        dev.read_back(bad, &mut w, "reading an index check")?;
        Ok((w[0] != u64::MAX).then_some(w[0] as usize))
    }
}

impl TensorOps for Cuda {
    fn reduce_forward(
        &self,
        op: ReduceOp,
        num: usize,
        dim: usize,
        coeff: f32,
        x: &CudaBuf,
        y: &mut CudaBuf,
    ) -> Result<()> {
        self.own(&[x, y])?;
        expect_len("reduce_forward x", x.len, num * dim)?;
        expect_len("reduce_forward y", y.len, num)?;
        let dev = &*self.dev;
        let launch = if dim >= BLOCK_ROW {
            Launch::new(dev, REDUCE_ROWS_BLOCK).dims((num.clamp(1, 1 << 16) as u32, 1, 1), (BLOCK, 1, 1))
        } else {
            Launch::new(dev, REDUCE_ROWS_THREAD).elems(num)
        };
        if num == 0 {
            return Ok(());
        }
        launch
            .u64("num", num)
            .u64("dim", dim)
            .i32("op", op_code(op))
            .f32("coeff", coeff)
            .buf("x", x)
            .buf("y", y)
            .run()
    }

    fn reduce_backward(
        &self,
        op: ReduceOp,
        num: usize,
        dim: usize,
        coeff: f32,
        x: &CudaBuf,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        self.own(&[x, dy, dx])?;
        expect_len("reduce_backward x", x.len, num * dim)?;
        expect_len("reduce_backward dy", dy.len, num)?;
        expect_len("reduce_backward dx", dx.len, num * dim)?;
        Launch::new(&self.dev, REDUCE_BACKWARD)
            .elems(dx.len)
            .u64("n", dx.len)
            .u64("dim", dim)
            .i32("op", op_code(op))
            .f32("coeff", coeff)
            .buf("x", x)
            .buf("dy", dy)
            .buf("dx", dx)
            .run()
    }

    fn eltwise_sum(&self, xs: &[&CudaBuf], coeffs: &[f32], y: &mut CudaBuf) -> Result<()> {
        self.own(xs)?;
        self.own(&[y])?;
        same_lens("eltwise_sum", xs, 1, y.len)?;
        if coeffs.len() != xs.len() {
            return Err(Error::Internal(format!(
                "eltwise_sum: {} coefficients for {} inputs",
                coeffs.len(),
                xs.len()
            )));
        }
        for c in chains(xs, Some(coeffs)) {
            Launch::new(&self.dev, ELTWISE_SUM)
                .elems(y.len)
                .u64("n", y.len)
                .value("chain", &c)
                .buf("y", y)
                .run()?;
        }
        Ok(())
    }

    fn eltwise_prod(&self, xs: &[&CudaBuf], y: &mut CudaBuf) -> Result<()> {
        self.own(xs)?;
        self.own(&[y])?;
        same_lens("eltwise_prod", xs, 1, y.len)?;
        for c in chains(xs, None) {
            Launch::new(&self.dev, ELTWISE_PROD)
                .elems(y.len)
                .u64("n", y.len)
                .value("chain", &c)
                .raw("dy", 0, 0)
                .buf("y", y)
                .run()?;
        }
        Ok(())
    }

    fn eltwise_prod_backward(
        &self,
        xs: &[&CudaBuf],
        index: usize,
        y: &CudaBuf,
        dy: &CudaBuf,
        stable: bool,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        self.own(xs)?;
        self.own(&[y, dy, dx])?;
        let len = dx.len;
        same_lens("eltwise_prod_backward", xs, 2, len)?;
        expect_len("eltwise_prod_backward y", y.len, len)?;
        expect_len("eltwise_prod_backward dy", dy.len, len)?;
        if index >= xs.len() {
            return Err(Error::Internal(format!(
                "eltwise_prod_backward: input {index} of {}",
                xs.len()
            )));
        }
        let dev = &*self.dev;
        if !stable {
            return Launch::new(dev, ELTWISE_PROD_QUOTIENT)
                .elems(len)
                .u64("n", len)
                .buf("y", y)
                .buf("x", xs[index])
                .buf("dy", dy)
                .buf("dx", dx)
                .run();
        }
        let others: Vec<&CudaBuf> = xs
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != index)
            .map(|(_, x)| *x)
            .collect();
        let groups = chains(&others, None);
        let last = groups.len() - 1;
        for (g, c) in groups.iter().enumerate() {
            Launch::new(dev, ELTWISE_PROD)
                .elems(len)
                .u64("n", len)
                .value("chain", c)
                .opt_buf("dy", (g == last).then_some(dy))
                .buf("y", dx)
                .run()?;
        }
        Ok(())
    }

    fn eltwise_max(&self, xs: &[&CudaBuf], y: &mut CudaBuf, argmax: &mut CudaBuf) -> Result<()> {
        self.own(xs)?;
        self.own(&[y, argmax])?;
        let len = y.len;
        same_lens("eltwise_max", xs, 2, len)?;
        expect_len("eltwise_max argmax", argmax.len, len)?;
        for c in chains(xs, None) {
            Launch::new(&self.dev, ELTWISE_MAX)
                .elems(len)
                .u64("n", len)
                .value("chain", &c)
                .buf("y", y)
                .buf("argmax", argmax)
                .run()?;
        }
        Ok(())
    }

    fn eltwise_max_backward(&self, argmax: &CudaBuf, index: usize, dy: &CudaBuf, dx: &mut CudaBuf) -> Result<()> {
        self.own(&[argmax, dy, dx])?;
        expect_len("eltwise_max_backward argmax", argmax.len, dx.len)?;
        expect_len("eltwise_max_backward dy", dy.len, dx.len)?;
        Launch::new(&self.dev, ELTWISE_MAX_BACKWARD)
            .elems(dx.len)
            .u64("n", dx.len)
            .f32("index", index as f32)
            .buf("argmax", argmax)
            .buf("dy", dy)
            .buf("dx", dx)
            .run()
    }

    fn gather_rows(
        &self,
        index: &CudaBuf,
        rows: usize,
        row_len: usize,
        table: &CudaBuf,
        out: &mut CudaBuf,
    ) -> Result<()> {
        self.own(&[index, table, out])?;
        expect_len("gather_rows table", table.len, rows * row_len)?;
        expect_len("gather_rows out", out.len, index.len * row_len)?;
        if index.len == 0 {
            return Ok(());
        }
        let dev = &*self.dev;
        if let Some(i) = self.first_bad_row(dev, index, rows)? {
            return Err(self.bad_row(index, rows, i)?);
        }
        Launch::new(dev, GATHER_ROWS)
            .elems(out.len)
            .u64("n", index.len)
            .u64("row_len", row_len)
            .buf("index", index)
            .buf("table", table)
            .buf("out", out)
            .run()
    }

    fn scatter_add_rows(
        &self,
        index: &CudaBuf,
        rows: usize,
        row_len: usize,
        src: &CudaBuf,
        table: &mut CudaBuf,
    ) -> Result<()> {
        self.own(&[index, src, table])?;
        expect_len("scatter_add_rows table", table.len, rows * row_len)?;
        expect_len("scatter_add_rows src", src.len, index.len * row_len)?;
        let n = index.len;
        if n == 0 {
            return Ok(());
        }
        if n >= u32::MAX as usize || rows >= u32::MAX as usize {
            return Err(Error::Internal(format!(
                "scatter_add_rows: {n} indices into {rows} rows exceed 32-bit counters"
            )));
        }
        let dev = &*self.dev;
        let scratch = dev.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let bad = scratch::at(scratch.ptr, scratch::BAD);
        let mut ws = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
        // counts (rows), starts (rows + 1), fill (rows), order (n): u32 each.
        let words = 3 * rows + 1 + n;
        let base = ws.get(dev, words * 4)?;
        let (counts, starts) = (base, base + 4 * rows as u64);
        let fill = starts + 4 * (rows as u64 + 1);
        let order = fill + 4 * rows as u64;
        dev.memset(base, 0, words * 4)?;
        dev.memset(bad, 0xff, 8)?;
        Launch::new(dev, SCATTER_COUNT)
            .elems(n)
            .u64("n", n)
            .f32("rows", rows as f32)
            .buf("index", index)
            .raw("counts", counts, rows)
            .raw("bad", bad, 1)
            .run()?;
        let mut w = [0u64; 1];
        dev.read_back(bad, &mut w, "reading an index check")?;
        drop(scratch);
        if w[0] != u64::MAX {
            drop(ws);
            return Err(self.bad_row(index, rows, w[0] as usize)?);
        }
        if row_len == 0 {
            return Ok(());
        }
        Launch::new(dev, SCATTER_STARTS)
            .dims((1, 1, 1), (BLOCK, 1, 1))
            .u64("rows", rows)
            .raw("counts", counts, rows)
            .raw("starts", starts, rows + 1)
            .run()?;
        Launch::new(dev, SCATTER_PLACE)
            .elems(n)
            .u64("n", n)
            .buf("index", index)
            .raw("starts", starts, rows + 1)
            .raw("fill", fill, rows)
            .raw("order", order, n)
            .run()?;
        Launch::new(dev, SCATTER_SORT)
            .elems(rows)
            .u64("rows", rows)
            .raw("starts", starts, rows + 1)
            .raw("order", order, n)
            .run()?;
        Launch::new(dev, SCATTER_ADD)
            .elems(table.len)
            .u64("rows", rows)
            .u64("row_len", row_len)
            .raw("starts", starts, rows + 1)
            .raw("order", order, n)
            .buf("src", src)
            .buf("table", table)
            .run()
    }
}
