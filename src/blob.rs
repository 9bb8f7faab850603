//! A blob is Caffe's: an N-d shape with data and (when the net runs backward) a diff of the
//! same size, both stored by the backend.
//!
//! A blob's diff is either its own, or (when the net shares diff memory, see
//! [`crate::net::NetOptions::share_diffs`]) lent to it by the net only while its gradient is live
//! in a backward pass: the rest of the time such a blob holds an empty diff. Likewise its data
//! may be lent (see [`crate::net::Net::set_data_sharing`]) from the forward of the layer that
//! writes it to the last forward or backward that reads it.

use crate::backend::Storage;
use crate::{Error, Result};

/// Caffe's limit on the number of axes of a blob.
pub const MAX_AXES: usize = 32;

/// An N-d array of `f32` data and its gradient, living in backend memory.
pub struct Blob<B: Storage> {
    shape: Vec<usize>,
    /// The values.
    pub data: B::Buf,
    /// The gradient of the loss with respect to the values (empty when the blob has no diff).
    pub diff: B::Buf,
    with_diff: bool,
    /// The diff is lent by the net during backward, not owned (empty between lendings).
    shared_diff: bool,
    /// The data is lent by the net while its values are live, not owned (empty between
    /// lendings).
    shared_data: bool,
}

impl<B: Storage> Blob<B> {
    /// A zero blob of `shape`, with a diff when `with_diff`.
    pub fn new(be: &B, shape: &[usize], with_diff: bool) -> Result<Self> {
        let count = checked_count(shape)?;
        Ok(Blob {
            shape: shape.to_vec(),
            data: be.alloc(count)?,
            diff: be.alloc(if with_diff { count } else { 0 })?,
            with_diff,
            shared_diff: false,
            shared_data: false,
        })
    }

    /// A blob holding host `values` (no diff).
    pub fn from_host(be: &B, shape: &[usize], values: &[f32]) -> Result<Self> {
        let count = checked_count(shape)?;
        if count != values.len() {
            return Err(Error::Internal(format!("blob of shape {shape:?} given {} values", values.len())));
        }
        Ok(Blob { shape: shape.to_vec(), data: be.alloc_from(values)?, diff: be.alloc(0)?, with_diff: false, shared_diff: false, shared_data: false })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements.
    pub fn count(&self) -> usize {
        self.shape.iter().product()
    }

    /// The number of axes.
    pub fn num_axes(&self) -> usize {
        self.shape.len()
    }

    /// The data to read and the diff to write, borrowed together.
    pub fn data_and_diff_mut(&mut self) -> (&B::Buf, &mut B::Buf) {
        (&self.data, &mut self.diff)
    }

    /// Whether the blob carries a diff.
    pub fn has_diff(&self) -> bool {
        self.with_diff
    }

    /// Whether the diff is lent by the net during backward rather than owned: outside a
    /// backward pass it is then empty, and its values are not kept after one.
    pub fn diff_is_shared(&self) -> bool {
        self.shared_diff
    }

    /// Makes the diff lent (`shared`: the own diff is freed) or owned again (zeroed).
    pub(crate) fn set_diff_shared(&mut self, be: &B, shared: bool) -> Result<()> {
        self.set_diff_mode(be, self.with_diff, shared)
    }

    /// Gives the blob a diff, its own (zeroed) or lent by the net during backward (`shared`:
    /// nothing is allocated), or takes it away.
    pub(crate) fn set_diff_mode(&mut self, be: &B, with_diff: bool, shared: bool) -> Result<()> {
        let shared = with_diff && shared;
        if with_diff != self.with_diff || shared != self.shared_diff {
            self.with_diff = with_diff;
            self.shared_diff = shared;
            self.diff = be.alloc(if with_diff && !shared { self.count() } else { 0 })?;
        }
        Ok(())
    }

    /// Whether the data is lent by the net while its values are live rather than owned:
    /// outside that span it is empty.
    pub fn data_is_shared(&self) -> bool {
        self.shared_data
    }

    /// Makes the data lent (`shared`: the own data is freed) or owned again (zeroed).
    pub(crate) fn set_data_shared(&mut self, be: &B, shared: bool) -> Result<()> {
        if shared != self.shared_data {
            self.shared_data = shared;
            self.data = be.alloc(if shared { 0 } else { self.count() })?;
        }
        Ok(())
    }

    /// Changes the shape, reallocating (zeroed) storage when the element count changes. Lent
    /// storage is left alone: the net sizes it when it lends it.
    pub fn reshape(&mut self, be: &B, shape: &[usize]) -> Result<()> {
        let count = checked_count(shape)?;
        if !self.shared_data && count != be.len(&self.data) {
            self.data = be.alloc(count)?;
            if self.with_diff && !self.shared_diff {
                self.diff = be.alloc(count)?;
            }
        }
        self.shape.clear();
        self.shape.extend_from_slice(shape);
        Ok(())
    }

    /// Gives the blob a diff (zeroed) or takes it away.
    pub fn set_with_diff(&mut self, be: &B, with_diff: bool) -> Result<()> {
        self.set_diff_mode(be, with_diff, false)
    }

    /// The data on the host. Fails for a blob whose shared data is not lent to it now (its
    /// values were not kept).
    pub fn data_to_vec(&self, be: &B) -> Result<Vec<f32>> {
        self.check_held(be, &self.data, "data", self.shared_data)?;
        be.to_vec(&self.data)
    }

    /// The diff on the host. Fails for a blob whose shared diff is not lent to it now (its
    /// values were not kept).
    pub fn diff_to_vec(&self, be: &B) -> Result<Vec<f32>> {
        self.check_held(be, &self.diff, "diff", self.shared_diff)?;
        be.to_vec(&self.diff)
    }

    /// An error when `buf`, the blob's `what` ("data" or "diff"), is `shared` and not lent to
    /// this blob now.
    fn check_held(&self, be: &B, buf: &B::Buf, what: &str, shared: bool) -> Result<()> {
        if shared && be.len(buf) != self.count() {
            let when = if what == "diff" { "during backward" } else { "while its values are needed" };
            return Err(Error::Internal(format!(
                "the {what} of a blob of shape {:?} is shared with other blobs and held only {when} \
                 (build the net without {what} sharing, or keep this blob's {what}, to read or set it)",
                self.shape
            )));
        }
        Ok(())
    }

    /// Replaces the data with host `values` of the same count.
    pub fn set_data(&mut self, be: &B, values: &[f32]) -> Result<()> {
        if values.len() != self.count() {
            return Err(Error::Internal(format!("{} values for a blob of shape {:?}", values.len(), self.shape)));
        }
        self.check_held(be, &self.data, "data", self.shared_data)?;
        be.upload(values, &mut self.data, 0)
    }

    /// Replaces the diff with host `values` of the same count.
    pub fn set_diff(&mut self, be: &B, values: &[f32]) -> Result<()> {
        self.check_held(be, &self.diff, "diff", self.shared_diff)?;
        if !self.with_diff || values.len() != self.count() {
            return Err(Error::Internal(format!("cannot set {} diff values on a blob of shape {:?}", values.len(), self.shape)));
        }
        be.upload(values, &mut self.diff, 0)
    }
}

/// The element count of `shape`, or an error when it overflows or has too many axes.
pub fn checked_count(shape: &[usize]) -> Result<usize> {
    if shape.len() > MAX_AXES {
        return Err(Error::Shape(format!("{} axes is more than the {MAX_AXES} a blob may have", shape.len())));
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&c| c <= i32::MAX as usize)
        .ok_or_else(|| Error::Shape(format!("shape {shape:?} has more than {} elements", i32::MAX)))
}

/// Resolves a possibly negative axis index against `num_axes`, as Caffe's `CanonicalAxisIndex`.
pub fn canonical_axis(axis: i32, num_axes: usize) -> Result<usize> {
    let n = num_axes as i64;
    let a = axis as i64;
    if a < -n || a >= n {
        return Err(Error::Shape(format!("axis {axis} out of range for a blob of {num_axes} axes")));
    }
    Ok(if a < 0 { (a + n) as usize } else { a as usize })
}

/// The product of `shape[start..end]` (Caffe's `count(start, end)`).
pub fn count_range(shape: &[usize], start: usize, end: usize) -> usize {
    shape[start.min(shape.len())..end.min(shape.len())].iter().product()
}

/// A shape as Caffe prints it: `2 3 4 5 (120)`.
pub fn shape_string(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("{} ({})", dims.join(" "), shape.iter().product::<usize>())
}
