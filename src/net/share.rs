//! Diff sharing: blobs whose gradients are never live at the same time take turns with a few
//! pooled buffers, instead of each owning a diff as large as its data (as Caffe's blobs do).
//!
//! In a backward pass (layers in reverse order) a blob's diff is first touched by the backward
//! of its last consumer, which writes it, and last by the backward of its producer, which reads
//! it; in-place layers in between read and write it. Outside that interval nothing reads it,
//! so the net lends the blob a pooled buffer just before the backward of the first layer that
//! touches it and takes the buffer back just after the backward of the last one. Blobs whose
//! intervals do not overlap share a buffer, assigned by greedy interval colouring (largest
//! blob first, each buffer as large as its largest blob).
//!
//! What keeps the numbers unchanged:
//! - A layer's backward writes every element of a bottom's diff it propagates to without
//!   reading what was there (Caffe's contract; a layer that read or accumulated would already
//!   differ from Caffe on the second iteration, when an owned diff holds the last iteration's
//!   gradient). A lent buffer holds another blob's garbage, which that write replaces.
//! - Where the first layer to touch a diff in backward reads it instead (a producer or an
//!   in-place layer whose consumer does not propagate to the blob, a top no layer reads), an
//!   owned diff would hold zeros (never written); the lent buffer is zeroed for it.
//! - Bottoms a layer leaves untouched (labels, pooling masks, Crop's reference:
//!   [`crate::layers::Layer::writes_bottom_diff`] false) are not counted as written, tops
//!   whose diff it never reads (the pooling mask: [`crate::layers::Layer::reads_top_diff`])
//!   as read; a diff neither written nor read gets no memory.
//! - Diffs read outside backward keep their own memory: loss tops (the net sets them to the
//!   loss weight in forward), the tops of Input layers, and blobs the caller names.

use super::LayerEntry;
use crate::backend::Backend;
use crate::blob::Blob;
use crate::{Error, Result};

/// What a backward pass does with one blob's diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DiffUse {
    /// The blob keeps a diff of its own (or has none: the net does not run backward).
    Own,
    /// No layer's backward reads or writes it: it gets no memory.
    Unused,
    /// Lent from the backward of layer `last` down to that of layer `first` (layer indices);
    /// `zero`: the lent buffer is zeroed because layer `last` reads it before anyone writes.
    Lent { first: usize, last: usize, zero: bool },
}

/// How a layer's backward touches a blob's diff.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Touch {
    /// Written whole as a bottom (not in place).
    Write,
    /// Read (a top, or in place).
    Read,
}

/// Which blobs can be lent a buffer, and when. `own[b]` forces blob `b` to keep its diff.
pub(super) fn analyse<B: Backend>(layers: &[LayerEntry<B>], blobs: &[Blob<B>], own: &[bool]) -> Vec<DiffUse> {
    // Per blob: (first layer, last layer, how the last layer touches it).
    let mut span: Vec<Option<(usize, usize, Touch)>> = vec![None; blobs.len()];
    for (i, l) in layers.iter().enumerate() {
        if !l.need_backward {
            continue;
        }
        let written = l.bottoms.iter().enumerate().filter(|&(k, _)| {
            l.bottom_need_backward.get(k).copied().unwrap_or(false) && l.layer.writes_bottom_diff(k)
        });
        // An in-place top is bottom 0, whose diff the layer reads whatever it declares.
        let read = l.tops.iter().enumerate().filter(|&(j, &t)| l.layer.reads_top_diff(j) || l.bottoms.first() == Some(&t));
        let touches = written.map(|(_, &b)| (b, Touch::Write)).chain(read.map(|(_, &t)| (t, Touch::Read)));
        for (b, touch) in touches {
            span[b] = Some(match span[b] {
                None => (i, i, touch),
                // Layers come in increasing order: `i` is the last so far. Read wins over Write
                // for an in-place layer, which reads its top's diff.
                Some((first, last, prev)) if last == i => (first, i, if prev == Touch::Read { prev } else { touch }),
                Some((first, _, _)) => (first, i, touch),
            });
        }
    }
    blobs
        .iter()
        .enumerate()
        .map(|(b, blob)| match span[b] {
            _ if !blob.has_diff() || own[b] => DiffUse::Own,
            None => DiffUse::Unused,
            Some((first, last, touch)) => DiffUse::Lent { first, last, zero: touch == Touch::Read },
        })
        .collect()
}

/// Which buffer each lent blob uses and how large each buffer is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// Per blob: its buffer (None when not lent).
    pub slot_of: Vec<Option<usize>>,
    /// Per buffer: elements (the count of its largest blob).
    pub sizes: Vec<usize>,
}

/// Interval colouring of the lent diffs (see [`colour_spans`]). Backward meets a diff's
/// interval at its last layer, so on the time line of the backward pass the interval of layers
/// `first..=last` runs from `-last` to `-first`.
pub(super) fn colour(uses: &[DiffUse], counts: &[usize]) -> Plan {
    let spans: Vec<Span> = (0..uses.len())
        .filter_map(|b| match uses[b] {
            DiffUse::Lent { first, last, .. } => Some(Span { blob: b, start: usize::MAX - last, end: usize::MAX - first }),
            _ => None,
        })
        .collect();
    colour_spans(&spans, uses.len(), counts)
}

/// A blob that needs a buffer from time `start` to time `end`, both included.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    pub blob: usize,
    pub start: usize,
    pub end: usize,
}

/// Interval colouring: each blob goes into the first buffer whose blobs' spans are all
/// disjoint from its own (closed: at one layer's backward a top's diff is read while a
/// bottom's is written; at one layer's forward a bottom is read while a top is written), else
/// into a new buffer; a buffer is as large as its largest blob. Two greedy orders are tried
/// and the smaller total kept: by decreasing size (large blobs share first), and by start
/// (optimal in the number of buffers, which suits a chain whose neighbours alternate between
/// two buffers). `blobs` is the number of blobs in the net.
pub(super) fn colour_spans(spans: &[Span], blobs: usize, counts: &[usize]) -> Plan {
    let mut by_size = spans.to_vec();
    by_size.sort_by(|a, b| counts[b.blob].cmp(&counts[a.blob]).then(a.blob.cmp(&b.blob)));
    let mut by_start = spans.to_vec();
    by_start.sort_by(|a, b| a.start.cmp(&b.start).then(a.end.cmp(&b.end)).then(a.blob.cmp(&b.blob)));
    let a = first_fit(&by_size, blobs, counts);
    let b = first_fit(&by_start, blobs, counts);
    if b.sizes.iter().sum::<usize>() < a.sizes.iter().sum::<usize>() { b } else { a }
}

/// Places the spans in order, each into the first buffer it fits in.
fn first_fit(order: &[Span], blobs: usize, counts: &[usize]) -> Plan {
    let mut taken: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut plan = Plan { slot_of: vec![None; blobs], sizes: Vec::new() };
    for s in order {
        let fits = |t: &Vec<(usize, usize)>| t.iter().all(|&(start, end)| s.end < start || end < s.start);
        let slot = match taken.iter().position(fits) {
            Some(k) => k,
            None => {
                taken.push(Vec::new());
                plan.sizes.push(0);
                taken.len() - 1
            }
        };
        taken[slot].push((s.start, s.end));
        plan.sizes[slot] = plan.sizes[slot].max(counts[s.blob]);
        plan.slot_of[s.blob] = Some(slot);
    }
    plan
}

/// Elements of diff memory under `uses`: owned diffs plus the pooled buffers.
pub(super) fn shared_floats(uses: &[DiffUse], blobs_with_diff: &[bool], counts: &[usize]) -> usize {
    let owned: usize = (0..uses.len()).filter(|&b| uses[b] == DiffUse::Own && blobs_with_diff[b]).map(|b| counts[b]).sum();
    owned + colour(uses, counts).sizes.iter().sum::<usize>()
}

/// A pooled buffer and the blob it is lent to, in the diff pool and the data pool alike.
pub(super) struct Slot<B: Backend> {
    buf: B::Buf,
    /// Elements allocated.
    pub cap: usize,
    /// The blob holding the buffer now.
    pub holder: Option<usize>,
}

impl<B: Backend> Slot<B> {
    /// A buffer of `n` elements, lent to no blob.
    pub fn new(be: &B, n: usize) -> Result<Self> {
        Ok(Slot { buf: be.alloc(n)?, cap: n, holder: None })
    }

    /// Reallocates the buffer (not lent) to `n` elements, freeing the old one before allocating
    /// its replacement.
    pub fn realloc(&mut self, be: &B, n: usize) -> Result<()> {
        self.buf = be.alloc(0)?;
        self.buf = be.alloc(n)?;
        self.cap = n;
        Ok(())
    }

    /// Lends the buffer to blob `b` as `part` (its diff or its data, empty now), sized to its
    /// `n` elements.
    pub fn lend_to(&mut self, be: &B, b: usize, part: &mut B::Buf, n: usize) -> Result<()> {
        std::mem::swap(part, &mut self.buf);
        self.holder = Some(b);
        be.set_len(part, n)
    }

    /// Takes the buffer back from its holder's `part`, which is left empty.
    pub fn take_back(&mut self, part: &mut B::Buf) {
        std::mem::swap(part, &mut self.buf);
        self.holder = None;
    }
}

/// A finite value far from any gradient, written into lent buffers in place of the previous
/// holder's values when poisoning is on (for tests: a layer that read a diff before writing
/// it would carry it into the weights).
pub(super) const POISON: f32 = 1.0e30;

/// The net's pooled diff buffers and when each blob holds one.
pub(super) struct DiffPool<B: Backend> {
    uses: Vec<DiffUse>,
    /// Per layer: blobs lent a buffer just before its backward.
    lend: Vec<Vec<usize>>,
    /// Per layer: blobs whose buffer is taken back just after its backward.
    reclaim: Vec<Vec<usize>>,
    plan: Plan,
    /// Element counts of the blobs when the plan was made (the plan is remade when they change).
    planned_counts: Vec<usize>,
    slots: Vec<Slot<B>>,
    /// Fill lent buffers that are not zeroed with [`POISON`].
    pub poison: bool,
}

impl<B: Backend> DiffPool<B> {
    /// A pool for `uses` in a net of `layers` layers; buffers are allocated at the first lending.
    pub fn new(uses: Vec<DiffUse>, layers: usize) -> Self {
        let (mut lend, mut reclaim) = (vec![Vec::new(); layers], vec![Vec::new(); layers]);
        for (b, u) in uses.iter().enumerate() {
            if let DiffUse::Lent { first, last, .. } = *u {
                lend[last].push(b);
                reclaim[first].push(b);
            }
        }
        DiffPool { uses, lend, reclaim, plan: Plan::default(), planned_counts: Vec::new(), slots: Vec::new(), poison: false }
    }

    /// How each blob's diff is handled.
    pub fn uses(&self) -> &[DiffUse] {
        &self.uses
    }

    /// Remakes the plan and resizes the buffers when blob sizes changed since the last plan.
    /// Only between passes (no buffer lent); a no-op otherwise.
    fn refresh(&mut self, be: &B, blobs: &[Blob<B>]) -> Result<()> {
        if self.slots.iter().any(|s| s.holder.is_some()) {
            return Ok(());
        }
        let unchanged = self.planned_counts.len() == blobs.len()
            && blobs.iter().zip(&self.planned_counts).zip(&self.uses).all(|((b, &c), u)| !matches!(u, DiffUse::Lent { .. }) || b.count() == c);
        if unchanged {
            return Ok(());
        }
        self.planned_counts = blobs.iter().map(|b| b.count()).collect();
        self.plan = colour(&self.uses, &self.planned_counts);
        self.slots.truncate(self.plan.sizes.len());
        for (j, &size) in self.plan.sizes.iter().enumerate() {
            match self.slots.get_mut(j) {
                Some(s) if s.cap == size => {}
                Some(s) => s.realloc(be, size)?,
                None => self.slots.push(Slot::new(be, size)?),
            }
        }
        Ok(())
    }

    /// Lends buffers to the blobs whose gradient becomes live at layer `i`'s backward.
    pub fn lend(&mut self, i: usize, be: &B, blobs: &mut [Blob<B>]) -> Result<()> {
        if self.lend[i].is_empty() {
            return Ok(());
        }
        self.refresh(be, blobs)?;
        for &b in &self.lend[i] {
            let DiffUse::Lent { zero, .. } = self.uses[b] else { continue };
            let slot_index = self.plan.slot_of[b].ok_or_else(|| Error::Internal("a lent blob has no buffer".into()))?;
            let slot = &mut self.slots[slot_index];
            match slot.holder {
                Some(h) if h == b => continue,
                Some(_) => {
                    return Err(Error::Internal(
                        "a shared diff buffer is still lent to another blob: with diff sharing, run layers backward \
                         in reverse order (Net::backward)"
                            .into(),
                    ))
                }
                None => {}
            }
            let blob = &mut blobs[b];
            let n = blob.count();
            slot.lend_to(be, b, &mut blob.diff, n)?;
            if zero || self.poison {
                be.fill(&mut blob.diff, 0, n, if zero { 0.0 } else { POISON })?;
            }
        }
        Ok(())
    }

    /// Takes the buffers back from the blobs whose gradient is dead after layer `i`'s backward.
    pub fn reclaim(&mut self, i: usize, blobs: &mut [Blob<B>]) {
        for &b in &self.reclaim[i] {
            let slot = self.plan.slot_of.get(b).copied().flatten().and_then(|s| self.slots.get_mut(s));
            if let Some(slot) = slot.filter(|s| s.holder == Some(b)) {
                slot.take_back(&mut blobs[b].diff);
            }
        }
    }

    /// Takes every lent buffer back (after a backward pass that stopped early).
    pub fn reclaim_all(&mut self, blobs: &mut [Blob<B>]) {
        for slot in &mut self.slots {
            if let Some(b) = slot.holder {
                slot.take_back(&mut blobs[b].diff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lent(first: usize, last: usize) -> DiffUse {
        DiffUse::Lent { first, last, zero: false }
    }

    #[test]
    fn colouring_shares_buffers_between_disjoint_intervals_only() {
        // Intervals touching at one layer conflict (a top read while a bottom is written).
        let uses = [lent(0, 2), lent(2, 4), lent(4, 6), DiffUse::Own, lent(7, 8), DiffUse::Unused];
        let counts = [10, 30, 20, 99, 25, 99];
        let plan = colour(&uses, &counts);
        // By size: blob 1 (30) opens buffer 0; blob 4 (25) fits beside it; blob 2 (20)
        // overlaps blob 1 and opens buffer 1; blob 0 (10) overlaps blob 1, fits in buffer 1.
        assert_eq!(plan.slot_of, vec![Some(1), Some(0), Some(1), None, Some(0), None]);
        assert_eq!(plan.sizes, vec![30, 20]);
        assert_eq!(shared_floats(&uses, &[true; 6], &counts), 30 + 20 + 99);
    }

    #[test]
    fn a_chain_alternates_between_two_buffers() {
        // SegNet's encoder: conv, conv, pool, conv, conv. By size, the two large blobs take two
        // buffers, the next two join them, and the pooled blob between fits in neither (a
        // third buffer); by interval, the five alternate between two.
        let uses = [lent(2, 5), lent(5, 8), lent(8, 9), lent(9, 12), lent(12, 15)];
        let counts = [64, 64, 16, 32, 32];
        let plan = colour(&uses, &counts);
        assert_eq!(plan.sizes, vec![64, 64]);
        assert_eq!(plan.slot_of, vec![Some(0), Some(1), Some(0), Some(1), Some(0)]);
    }

    #[test]
    fn colouring_of_nested_intervals_needs_one_buffer_each() {
        let uses = [lent(0, 9), lent(1, 8), lent(2, 7)];
        let plan = colour(&uses, &[1, 2, 3]);
        assert_eq!(plan.sizes, vec![3, 2, 1]);
    }
}
