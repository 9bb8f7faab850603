//! CUDA softmax, loss and evaluation primitives: kernels from `kernels/loss.cu`.
//!
//! Softmax picks its kernel by layout: one thread per position when positions are contiguous
//! along the inner axis (segmentation scores), one warp per position when the classes are many
//! and the inner extent is small (classifiers). Loss sums use the fixed two-pass reduction of
//! [`REDUCE_BLOCKS`] blocks; each forward reads back one small result (the sum, the valid count
//! and the first bad label with its value), the only host synchronisation of a loss.

use super::device::{Device, REDUCE_BLOCKS, scratch};
use super::launch::{BLOCK, Family, Kernel, KernelStruct, Launch};
use super::{Cuda, CudaBuf};
use crate::backend::{ArgMaxOutput, BadLabel, ClassAxis, Io, LossSum, Losses};
use crate::{Error, Result};

const SOFTMAX_FORWARD_THREAD: Kernel = Kernel::new(Family::Losses, "crema_softmax_forward_thread");
const SOFTMAX_FORWARD_WARP: Kernel = Kernel::new(Family::Losses, "crema_softmax_forward_warp");
const SOFTMAX_BACKWARD_THREAD: Kernel = Kernel::new(Family::Losses, "crema_softmax_backward_thread");
const SOFTMAX_BACKWARD_WARP: Kernel = Kernel::new(Family::Losses, "crema_softmax_backward_warp");
const SOFTMAX_LOSS_PARTIAL: Kernel = Kernel::new(Family::Losses, "crema_softmax_loss_partial");
const INFOGAIN_LOSS_PARTIAL: Kernel = Kernel::new(Family::Losses, "crema_infogain_loss_partial");
const SIGMOID_XENT_PARTIAL: Kernel = Kernel::new(Family::Losses, "crema_sigmoid_xent_partial");
const LOSS_FINAL: Kernel = Kernel::new(Family::Losses, "crema_loss_final");
const SOFTMAX_LOSS_BACKWARD: Kernel = Kernel::new(Family::Losses, "crema_softmax_loss_backward");
const INFOGAIN_ROW_SUMS: Kernel = Kernel::new(Family::Losses, "crema_infogain_row_sums");
const INFOGAIN_LOSS_BACKWARD: Kernel = Kernel::new(Family::Losses, "crema_infogain_loss_backward");
const SIGMOID_XENT_BACKWARD: Kernel = Kernel::new(Family::Losses, "crema_sigmoid_xent_backward");
const ACCURACY_COUNT: Kernel = Kernel::new(Family::Losses, "crema_accuracy_count");
const ACCURACY_FINAL: Kernel = Kernel::new(Family::Losses, "crema_accuracy_final");
const ARGMAX: Kernel = Kernel::new(Family::Losses, "crema_argmax");

/// Every kernel this file launches (checked against the sources by a unit test).
#[cfg(test)]
pub(super) const KERNELS: &[Kernel] = &[
    SOFTMAX_FORWARD_THREAD,
    SOFTMAX_FORWARD_WARP,
    SOFTMAX_BACKWARD_THREAD,
    SOFTMAX_BACKWARD_WARP,
    SOFTMAX_LOSS_PARTIAL,
    INFOGAIN_LOSS_PARTIAL,
    SIGMOID_XENT_PARTIAL,
    LOSS_FINAL,
    SOFTMAX_LOSS_BACKWARD,
    INFOGAIN_ROW_SUMS,
    INFOGAIN_LOSS_BACKWARD,
    SIGMOID_XENT_BACKWARD,
    ACCURACY_COUNT,
    ACCURACY_FINAL,
    ARGMAX,
];

/// Blocks of the accuracy counting pass (integer counts: any grid gives the same result).
const ACCURACY_BLOCKS: usize = 256;

/// Mirrors `Axis` in kernels/loss.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct AxisGeom {
    outer: u64,
    classes: u64,
    inner: u64,
    has_ignore: i32,
    ignore: i32,
}

// SAFETY: repr(C), three u64 then two i32 (32 bytes, no padding), laid out as the .cu struct.
unsafe impl KernelStruct for AxisGeom {}

impl AxisGeom {
    fn of(axis: &ClassAxis, ignore_label: Option<i32>) -> Self {
        AxisGeom {
            outer: axis.outer as u64,
            classes: axis.classes as u64,
            inner: axis.inner as u64,
            has_ignore: ignore_label.is_some() as i32,
            ignore: ignore_label.unwrap_or(0),
        }
    }
}

/// Checks that a buffer of `len` values has the `want` values `axis` calls for.
fn check_len(what: &str, axis: &ClassAxis, len: usize, want: usize) -> Result<()> {
    if len == want {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "{what}: buffer of {len} values for {axis:?} (want {want})"
        )))
    }
}

/// Whether a softmax over `axis` runs one warp per position (many classes, few contiguous
/// positions) rather than one thread per position.
fn warp_per_position(axis: &ClassAxis) -> bool {
    axis.inner < 32 && axis.classes >= 32
}

/// A launch of a softmax kernel over `axis`'s positions: `warp`, one warp per position (8
/// warps a block), where [`warp_per_position`] says so, else `thread`, one thread per position.
fn softmax_launch<'a>(dev: &'a Device, axis: &ClassAxis, warp: Kernel, thread: Kernel) -> Launch<'a> {
    let positions = axis.positions();
    if !warp_per_position(axis) {
        return Launch::new(dev, thread).elems(positions);
    }
    let warps_per_block = BLOCK as usize / 32;
    let blocks = positions.div_ceil(warps_per_block).clamp(1, dev.max_blocks() as usize);
    Launch::new(dev, warp).dims((blocks as u32, 1, 1), (BLOCK, 1, 1))
}

impl Cuda {
    /// Runs a loss sum's first pass (`partial`, a launch with every argument but the last
    /// three: partial sums, counts, first bad position) on the fixed reduction grid, then the
    /// second pass, and reads back the [`LossSum`]. `label` is where a bad position's value is
    /// read (None when nothing can be bad).
    fn loss_sum(&self, dev: &Device, partial: Launch<'_>, label: Option<&CudaBuf>) -> Result<LossSum> {
        let scratch = dev.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let base = scratch.ptr;
        let (sums, counts, bad, result) = (
            scratch::at(base, scratch::PARTIAL),
            scratch::at(base, scratch::COUNTS),
            scratch::at(base, scratch::BAD),
            scratch::at(base, scratch::RESULT),
        );
        dev.memset(bad, 0xff, 8)?;
        let mut launch = partial
            .dims((REDUCE_BLOCKS as u32, 1, 1), (BLOCK, 1, 1))
            .raw("partial", sums, REDUCE_BLOCKS)
            .raw("counts", counts, REDUCE_BLOCKS);
        if label.is_some() {
            launch = launch.raw("bad", bad, 1);
        }
        launch.run()?;
        Launch::new(dev, LOSS_FINAL)
            .dims((1, 1, 1), (BLOCK, 1, 1))
            .u64("blocks", REDUCE_BLOCKS)
            .raw("partial", sums, REDUCE_BLOCKS)
            .raw("counts", counts, REDUCE_BLOCKS)
            .raw("bad", bad, 1)
            .opt_buf("label", label)
            .raw("result", result, 4)
            .run()?;
        let mut r = [0u64; 4];
        dev.read_back(result, &mut r, "reading a loss sum")?;
        Ok(LossSum {
            loss: f64::from_bits(r[0]),
            valid: r[1] as usize,
            bad: (r[2] != u64::MAX).then(|| BadLabel {
                position: r[2] as usize,
                value: f32::from_bits(r[3] as u32),
            }),
        })
    }

    /// Checks the buffers of a label loss: scores or probabilities, labels and an optional
    /// table of `want` values.
    fn check_label_loss(
        &self,
        what: &str,
        axis: &ClassAxis,
        prob: &CudaBuf,
        label: &CudaBuf,
        table: Option<(&CudaBuf, usize)>,
    ) -> Result<()> {
        self.own(&[prob, label])?;
        check_len(what, axis, prob.len, axis.count())?;
        check_len(what, axis, label.len, axis.positions())?;
        if let Some((t, want)) = table {
            self.own(&[t])?;
            check_len(what, axis, t.len, want)?;
        }
        Ok(())
    }
}

impl Losses for Cuda {
    fn softmax_forward(&self, axis: &ClassAxis, mut io: Io<'_, CudaBuf>) -> Result<()> {
        let (x, y) = super::act::io_bufs(&mut io);
        self.own(&[x, y])?;
        check_len("softmax_forward input", axis, x.len, axis.count())?;
        check_len("softmax_forward output", axis, y.len, axis.count())?;
        if axis.count() == 0 {
            return Ok(());
        }
        softmax_launch(&self.dev, axis, SOFTMAX_FORWARD_WARP, SOFTMAX_FORWARD_THREAD)
            .value("axis", &AxisGeom::of(axis, None))
            .buf("x", x)
            .buf("y", y)
            .run()
    }

    fn softmax_backward(&self, axis: &ClassAxis, y: &CudaBuf, mut diff: Io<'_, CudaBuf>) -> Result<()> {
        let (dy, dx) = super::act::io_bufs(&mut diff);
        self.own(&[y, dy, dx])?;
        check_len("softmax_backward top data", axis, y.len, axis.count())?;
        check_len("softmax_backward top diff", axis, dy.len, axis.count())?;
        check_len("softmax_backward bottom diff", axis, dx.len, axis.count())?;
        if axis.count() == 0 {
            return Ok(());
        }
        softmax_launch(&self.dev, axis, SOFTMAX_BACKWARD_WARP, SOFTMAX_BACKWARD_THREAD)
            .value("axis", &AxisGeom::of(axis, None))
            .buf("y", y)
            .buf("dy", dy)
            .buf("dx", dx)
            .run()
    }

    fn softmax_loss_forward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &CudaBuf,
        label: &CudaBuf,
        class_weights: Option<&CudaBuf>,
    ) -> Result<LossSum> {
        self.check_label_loss(
            "softmax_loss_forward",
            axis,
            prob,
            label,
            class_weights.map(|w| (w, axis.classes)),
        )?;
        if axis.positions() == 0 {
            return Ok(LossSum {
                loss: 0.0,
                valid: 0,
                bad: None,
            });
        }
        let dev = &*self.dev;
        let partial = Launch::new(dev, SOFTMAX_LOSS_PARTIAL)
            .value("axis", &AxisGeom::of(axis, ignore_label))
            .buf("prob", prob)
            .buf("label", label)
            .opt_buf("weights", class_weights)
            .i32("weighted", class_weights.is_some() as i32);
        self.loss_sum(dev, partial, Some(label))
    }

    fn softmax_loss_backward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &CudaBuf,
        label: &CudaBuf,
        class_weights: Option<&CudaBuf>,
        scale: f32,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        self.check_label_loss(
            "softmax_loss_backward",
            axis,
            prob,
            label,
            class_weights.map(|w| (w, axis.classes)),
        )?;
        self.own(&[dx])?;
        check_len("softmax_loss_backward", axis, dx.len, axis.count())?;
        Launch::new(&self.dev, SOFTMAX_LOSS_BACKWARD)
            .elems(axis.count())
            .value("axis", &AxisGeom::of(axis, ignore_label))
            .buf("prob", prob)
            .buf("label", label)
            .opt_buf("weights", class_weights)
            .i32("weighted", class_weights.is_some() as i32)
            .f32("scale", scale)
            .buf("dx", dx)
            .run()
    }

    fn infogain_loss_forward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &CudaBuf,
        label: &CudaBuf,
        h: &CudaBuf,
    ) -> Result<LossSum> {
        self.check_label_loss(
            "infogain_loss_forward",
            axis,
            prob,
            label,
            Some((h, axis.classes * axis.classes)),
        )?;
        if axis.positions() == 0 {
            return Ok(LossSum {
                loss: 0.0,
                valid: 0,
                bad: None,
            });
        }
        let dev = &*self.dev;
        let partial = Launch::new(dev, INFOGAIN_LOSS_PARTIAL)
            .value("axis", &AxisGeom::of(axis, ignore_label))
            .buf("prob", prob)
            .buf("label", label)
            .buf("h", h);
        self.loss_sum(dev, partial, Some(label))
    }

    fn infogain_loss_backward(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        prob: &CudaBuf,
        label: &CudaBuf,
        h: &CudaBuf,
        scale: f32,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        let classes = axis.classes;
        self.check_label_loss(
            "infogain_loss_backward",
            axis,
            prob,
            label,
            Some((h, classes * classes)),
        )?;
        self.own(&[dx])?;
        check_len("infogain_loss_backward", axis, dx.len, axis.count())?;
        if axis.count() == 0 {
            return Ok(());
        }
        let dev = &*self.dev;
        let mut ws = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
        let sums = ws.get(dev, classes * 4)?;
        Launch::new(dev, INFOGAIN_ROW_SUMS)
            .elems(classes)
            .u64("classes", classes)
            .buf("h", h)
            .raw("sums", sums, classes)
            .run()?;
        Launch::new(dev, INFOGAIN_LOSS_BACKWARD)
            .elems(axis.count())
            .value("axis", &AxisGeom::of(axis, ignore_label))
            .buf("prob", prob)
            .buf("label", label)
            .buf("h", h)
            .raw("row_sums", sums, classes)
            .f32("scale", scale)
            .buf("dx", dx)
            .run()
    }

    fn sigmoid_xent_forward(&self, x: &CudaBuf, target: &CudaBuf, ignore_label: Option<i32>) -> Result<LossSum> {
        self.own(&[x, target])?;
        let axis = ClassAxis {
            outer: 1,
            classes: 1,
            inner: x.len,
        };
        check_len("sigmoid_xent_forward", &axis, target.len, x.len)?;
        if x.len == 0 {
            return Ok(LossSum {
                loss: 0.0,
                valid: 0,
                bad: None,
            });
        }
        let dev = &*self.dev;
        let partial = Launch::new(dev, SIGMOID_XENT_PARTIAL)
            .u64("n", x.len)
            .i32("has_ignore", ignore_label.is_some() as i32)
            .i32("ignore", ignore_label.unwrap_or(0))
            .buf("x", x)
            .buf("target", target);
        self.loss_sum(dev, partial, None)
    }

    fn sigmoid_xent_backward(
        &self,
        x: &CudaBuf,
        target: &CudaBuf,
        ignore_label: Option<i32>,
        scale: f32,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        self.own(&[x, target, dx])?;
        let axis = ClassAxis {
            outer: 1,
            classes: 1,
            inner: x.len,
        };
        check_len("sigmoid_xent_backward", &axis, target.len, x.len)?;
        check_len("sigmoid_xent_backward", &axis, dx.len, x.len)?;
        Launch::new(&self.dev, SIGMOID_XENT_BACKWARD)
            .elems(x.len)
            .u64("n", x.len)
            .i32("has_ignore", ignore_label.is_some() as i32)
            .i32("ignore", ignore_label.unwrap_or(0))
            .buf("x", x)
            .buf("target", target)
            .f32("scale", scale)
            .buf("dx", dx)
            .run()
    }

    fn accuracy(
        &self,
        axis: &ClassAxis,
        ignore_label: Option<i32>,
        top_k: usize,
        x: &CudaBuf,
        label: &CudaBuf,
        accuracy: &mut CudaBuf,
        per_class: Option<&mut CudaBuf>,
    ) -> Result<Option<BadLabel>> {
        self.own(&[x, label, accuracy])?;
        check_len("accuracy scores", axis, x.len, axis.count())?;
        check_len("accuracy labels", axis, label.len, axis.positions())?;
        check_len("accuracy output", axis, accuracy.len, 1)?;
        if let Some(pc) = per_class.as_deref() {
            self.own(&[pc])?;
            check_len("accuracy per-class output", axis, pc.len, axis.classes)?;
        }
        let classes = axis.classes;
        let dev = &*self.dev;
        let scratch = dev.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let (bad, result) = (
            scratch::at(scratch.ptr, scratch::BAD),
            scratch::at(scratch.ptr, scratch::RESULT),
        );
        let mut ws = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
        let counts = ws.get(dev, (2 * classes).max(1) * 8)?;
        dev.memset(counts, 0, 2 * classes * 8)?;
        dev.memset(bad, 0xff, 8)?;
        let blocks = axis.positions().div_ceil(BLOCK as usize).clamp(1, ACCURACY_BLOCKS);
        Launch::new(dev, ACCURACY_COUNT)
            .dims((blocks as u32, 1, 1), (BLOCK, 1, 1))
            .value("axis", &AxisGeom::of(axis, ignore_label))
            .u64("top_k", top_k)
            .buf("x", x)
            .buf("label", label)
            .raw("counts", counts, 2 * classes)
            .raw("bad", bad, 1)
            .run()?;
        Launch::new(dev, ACCURACY_FINAL)
            .dims((1, 1, 1), (BLOCK, 1, 1))
            .u64("classes", classes)
            .raw("counts", counts, 2 * classes)
            .raw("bad", bad, 1)
            .buf("label", label)
            .buf("accuracy", accuracy)
            .opt_buf("per_class", per_class.as_deref())
            .raw("result", result, 4)
            .run()?;
        drop(ws);
        let mut r = [0u64; 2];
        dev.read_back(
            scratch::at(scratch.ptr, scratch::RESULT + 2),
            &mut r,
            "reading an accuracy check",
        )?;
        Ok((r[0] != u64::MAX).then(|| BadLabel {
            position: r[0] as usize,
            value: f32::from_bits(r[1] as u32),
        }))
    }

    fn argmax(&self, axis: &ClassAxis, top_k: usize, output: ArgMaxOutput, x: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        self.own(&[x, y])?;
        let (classes, inner) = (axis.classes, axis.inner);
        check_len("argmax input", axis, x.len, axis.count())?;
        if top_k == 0 || top_k > classes {
            return Err(Error::Internal(format!("argmax: top_k {top_k} for {classes} classes")));
        }
        let (per_item, code) = match output {
            ArgMaxOutput::IndexAndValue if inner != 1 => {
                return Err(Error::Internal(
                    "argmax: indices and values together need inner == 1".into(),
                ));
            }
            ArgMaxOutput::IndexAndValue => (2 * top_k, 2),
            ArgMaxOutput::Index => (top_k * inner, 0),
            ArgMaxOutput::Value => (top_k * inner, 1),
        };
        check_len("argmax output", axis, y.len, axis.outer * per_item)?;
        Launch::new(&self.dev, ARGMAX)
            .elems(axis.positions())
            .value("axis", &AxisGeom::of(axis, None))
            .u64("top_k", top_k)
            .i32("output", code)
            .buf("x", x)
            .buf("y", y)
            .run()
    }
}
