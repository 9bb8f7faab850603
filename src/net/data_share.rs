//! Data sharing: blobs whose values are never needed at the same time take turns with pooled
//! buffers, instead of each keeping its values for the whole step (as Caffe's blobs do).
//!
//! One training pass is a time line: the forward of layer `i` at time `i`, then the backward
//! of layer `i` at time `2n - 1 - i` (`n` layers). A blob's values are needed from the forward
//! of the layer that writes it to the last forward that reads it (in place or as a bottom) or
//! the last backward that reads them ([`crate::layers::Layer::backward_reads_bottom`] and
//! `backward_reads_top`). Most blobs are read by the backward of the layer they feed, so
//! their spans reach into the backward pass; those that are not (SegNet's blobs that feed only
//! a max pooling or an upsampling's data input, whose backwards go through the mask) die
//! during the forward pass, and their buffers serve blobs made later in it (the decoder's
//! blobs of the same size). Spans that do not overlap share a buffer, assigned by the
//! colouring diff sharing uses; a blob alone in its buffer keeps its data. In a net that runs
//! no backward ([`Net::make_forward_only`]) every span ends in forward.
//!
//! What keeps the numbers unchanged:
//! - A layer's forward writes every element of its tops that are not in place without reading
//!   them (Caffe's contract), so a lent buffer's previous values are never seen. Layers with no
//!   bottoms (data layers, Input, DummyData, Parameter) may fill their tops once and keep
//!   them: their tops keep their own data.
//! - Values read outside a pass keep their own memory: the net's outputs (tops no layer reads),
//!   loss tops, the tops of Input layers, and blobs the caller names.
//! - The plan follows the layers the net runs: fused layers, which it skips, read nothing; it is
//!   remade when fusion is turned on or off.

use super::share::{colour_spans, Slot, Span};
use super::{LayerEntry, Net};
use crate::backend::Backend;
use crate::blob::Blob;
use crate::{Error, Result};

/// The spans of the blobs whose data may be lent (`own[b]`: blob `b` keeps its data), over a
/// forward pass and, where `backward`, the backward of the layers that need it.
fn spans<B: Backend>(layers: &[LayerEntry<B>], own: &[bool], backward: bool) -> Vec<Span> {
    let n = layers.len();
    let mut span: Vec<Option<(usize, usize)>> = vec![None; own.len()];
    let mut touch = |b: usize, t: usize| {
        span[b] = Some(match span[b] {
            None => (t, t),
            Some((s, e)) => (s.min(t), e.max(t)),
        });
    };
    for (i, l) in layers.iter().enumerate() {
        if l.fused_into.is_some() {
            continue;
        }
        l.bottoms.iter().chain(&l.tops).for_each(|&b| touch(b, i));
        if backward && l.need_backward {
            let back = 2 * n - 1 - i;
            let bottoms = l.bottoms.iter().enumerate().filter(|&(k, _)| l.layer.backward_reads_bottom(k));
            let tops = l.tops.iter().enumerate().filter(|&(j, _)| l.layer.backward_reads_top(j));
            bottoms.chain(tops).for_each(|(_, &b)| touch(b, back));
        }
    }
    (0..own.len())
        .filter(|&b| !own[b])
        .filter_map(|b| span[b].map(|(start, end)| Span { blob: b, start, end }))
        .collect()
}

/// Per blob, the pooled buffer it is lent (None: it keeps its data): the colouring of `spans`
/// without the buffers that would serve one blob only.
fn slots_of(spans: &[Span], blobs: usize, counts: &[usize]) -> (Vec<Option<usize>>, usize) {
    let plan = colour_spans(spans, blobs, counts);
    let mut members = vec![0usize; plan.sizes.len()];
    plan.slot_of.iter().flatten().for_each(|&k| members[k] += 1);
    // Renumber the buffers that are shared.
    let mut renumber = vec![None; members.len()];
    let mut next = 0;
    for (k, &m) in members.iter().enumerate() {
        if m > 1 {
            renumber[k] = Some(next);
            next += 1;
        }
    }
    (plan.slot_of.iter().map(|s| s.and_then(|k| renumber[k])).collect(), next)
}

/// Elements of data memory when each blob of `slot_of` uses its buffer: the blobs that keep
/// their data plus each buffer as large as its largest blob.
fn shared_floats(slot_of: &[Option<usize>], buffers: usize, counts: &[usize]) -> usize {
    let mut sizes = vec![0usize; buffers];
    let mut owned = 0;
    for (b, s) in slot_of.iter().enumerate() {
        match *s {
            Some(k) => sizes[k] = sizes[k].max(counts[b]),
            None => owned += counts[b],
        }
    }
    owned + sizes.iter().sum::<usize>()
}

/// The net's pooled data buffers and when each blob holds one.
pub(super) struct DataPool<B: Backend> {
    slot_of: Vec<Option<usize>>,
    /// Per layer: blobs lent a buffer before its forward (after it sized its tops).
    lend: Vec<Vec<usize>>,
    /// Per layer: blobs whose buffer is taken back after its forward.
    after_forward: Vec<Vec<usize>>,
    /// Per layer: blobs whose buffer is taken back after its backward.
    after_backward: Vec<Vec<usize>>,
    /// The buffers, each grown to the largest blob lent it so far.
    slots: Vec<Slot<B>>,
    /// The blobs the caller asked to keep (the plan is remade when fusion changes).
    keep: Vec<String>,
    /// Fill lent buffers with [`super::share::POISON`] (for tests: a layer that read a top
    /// before writing it would carry it into the results).
    pub poison: bool,
}

impl<B: Backend> DataPool<B> {
    /// Takes back the buffer of blob `b` when it holds one.
    fn take_back(&mut self, b: usize, blobs: &mut [Blob<B>]) {
        if let Some(slot) = self.slot_of[b].map(|k| &mut self.slots[k]).filter(|s| s.holder == Some(b)) {
            slot.take_back(&mut blobs[b].data);
        }
    }

    /// Lends buffers to the blobs that layer `i`'s forward writes first. A buffer still held
    /// from an earlier pass (one whose backward did not run) is taken back first.
    pub fn lend(&mut self, i: usize, be: &B, blobs: &mut [Blob<B>]) -> Result<()> {
        for j in 0..self.lend[i].len() {
            let b = self.lend[i][j];
            let k = self.slot_of[b].ok_or_else(|| Error::Internal("a lent blob has no buffer".into()))?;
            if let Some(h) = self.slots[k].holder {
                self.take_back(h, blobs);
            }
            let slot = &mut self.slots[k];
            let n = blobs[b].count();
            if n > slot.cap {
                slot.realloc(be, n)?;
            }
            slot.lend_to(be, b, &mut blobs[b].data, n)?;
            if self.poison {
                be.fill(&mut blobs[b].data, 0, n, super::share::POISON)?;
            }
        }
        Ok(())
    }

    /// Takes back the buffers of the blobs whose values are dead after layer `i`'s forward.
    pub fn after_forward(&mut self, i: usize, blobs: &mut [Blob<B>]) {
        for j in 0..self.after_forward[i].len() {
            self.take_back(self.after_forward[i][j], blobs);
        }
    }

    /// Takes back the buffers of the blobs whose values are dead after layer `i`'s backward.
    pub fn after_backward(&mut self, i: usize, blobs: &mut [Blob<B>]) {
        for j in 0..self.after_backward[i].len() {
            self.take_back(self.after_backward[i][j], blobs);
        }
    }

    /// Takes every lent buffer back.
    pub fn reclaim_all(&mut self, blobs: &mut [Blob<B>]) {
        for slot in &mut self.slots {
            if let Some(b) = slot.holder {
                slot.take_back(&mut blobs[b].data);
            }
        }
    }
}

/// Bytes of blob data (values) at the blobs' current shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataMemory {
    /// With every blob keeping its values (Caffe's layout).
    pub owned: usize,
    /// With data sharing in a training pass: the blobs that keep their data plus the pooled
    /// buffers the others take turns with.
    pub shared: usize,
    /// With data sharing in a net made forward-only (a test net, segmenting).
    pub forward_only: usize,
}

impl<B: Backend> Net<B> {
    /// Turns data sharing on or off (see the `share_data` option of [`super::NetOptions`]).
    /// With it on, a blob whose values are needed only for part of a forward and backward pass
    /// may hold them only then, in a buffer it shares with blobs needed at other times; its
    /// data cannot be read after the pass. The blobs named in `keep`, the net's outputs, loss
    /// tops and the tops of layers with no bottoms keep their own. Turning it off gives every
    /// blob zeroed data of its own again. Call it between passes. Fails when `keep` names a
    /// blob the net does not have.
    pub fn set_data_sharing(&mut self, share: bool, keep: &[&str]) -> Result<()> {
        let own = self.kept_data(keep)?;
        if let Some(mut pool) = self.data_share.take() {
            pool.reclaim_all(&mut self.blobs);
        }
        if !share {
            for b in &mut self.blobs {
                b.set_data_shared(&self.be, false)?;
            }
            return Ok(());
        }
        let counts: Vec<usize> = self.blobs.iter().map(|b| b.count()).collect();
        let spans = spans(&self.layers, &own, true);
        let (slot_of, buffers) = slots_of(&spans, self.blobs.len(), &counts);
        let n = self.layers.len();
        let (mut lend, mut after_forward, mut after_backward) = (vec![Vec::new(); n], vec![Vec::new(); n], vec![Vec::new(); n]);
        for s in spans.iter().filter(|s| slot_of[s.blob].is_some()) {
            lend[s.start].push(s.blob);
            if s.end < n {
                after_forward[s.end].push(s.blob);
            } else {
                after_backward[2 * n - 1 - s.end].push(s.blob);
            }
        }
        // Free the data that becomes shared before allocating what becomes owned.
        for pass_frees in [true, false] {
            for (b, s) in self.blobs.iter_mut().zip(&slot_of) {
                if s.is_some() == pass_frees {
                    b.set_data_shared(&self.be, pass_frees)?;
                }
            }
        }
        let slots = (0..buffers).map(|_| Slot::new(&self.be, 0)).collect::<Result<_>>()?;
        let keep = keep.iter().map(|k| k.to_string()).collect();
        self.data_share = Some(DataPool { slot_of, lend, after_forward, after_backward, slots, keep, poison: false });
        Ok(())
    }

    /// Whether blob data is shared.
    pub fn shares_data(&self) -> bool {
        self.data_share.is_some()
    }

    /// Data memory with every blob keeping its values, with data sharing, and with data sharing
    /// forward-only, at the current blob shapes (whether or not this net shares its data).
    /// `shared` follows the layers that run backward (in a forward-only net, as many as
    /// `forward_only`).
    pub fn data_memory(&self) -> DataMemory {
        let counts: Vec<usize> = self.blobs.iter().map(|b| b.count()).collect();
        let owned = counts.iter().sum::<usize>();
        let own = self.kept_data(&[]).unwrap_or_else(|_| vec![true; counts.len()]);
        let plan = |backward| {
            let (slot_of, buffers) = slots_of(&spans(&self.layers, &own, backward), counts.len(), &counts);
            shared_floats(&slot_of, buffers, &counts) * 4
        };
        let shared = match &self.data_share {
            Some(pool) => shared_floats(&pool.slot_of, pool.slots.len(), &counts) * 4,
            None => plan(true),
        };
        DataMemory { owned: owned * 4, shared, forward_only: plan(false) }
    }

    /// For tests: fills every lent data buffer with a huge value before the forward that
    /// writes it, so that a layer reading a top before writing it shows.
    #[doc(hidden)]
    pub fn poison_shared_data(&mut self, on: bool) {
        if let Some(pool) = &mut self.data_share {
            pool.poison = on;
        }
    }

    /// Remakes the data plan (after the layers the net runs changed) with the same kept blobs.
    pub(super) fn replan_data_sharing(&mut self) -> Result<()> {
        let Some(pool) = &self.data_share else { return Ok(()) };
        let keep = pool.keep.clone();
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        self.set_data_sharing(true, &keep)
    }

    /// Lends data buffers before layer `i`'s forward (its tops sized).
    pub(super) fn lend_data(&mut self, i: usize) -> Result<()> {
        match &mut self.data_share {
            Some(pool) => pool.lend(i, &self.be, &mut self.blobs),
            None => Ok(()),
        }
    }

    /// Which blobs keep their data: `keep`, the outputs, loss tops and tops of layers with no
    /// bottoms (they may fill them once).
    fn kept_data(&self, keep: &[&str]) -> Result<Vec<bool>> {
        let mut own = self.named_blobs(keep, "data")?;
        for l in &self.layers {
            for (&t, &w) in l.tops.iter().zip(&l.loss_weights) {
                if w != 0.0 || l.bottoms.is_empty() {
                    own[t] = true;
                }
            }
        }
        for &b in &self.outputs {
            own[b] = true;
        }
        Ok(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(blob: usize, start: usize, end: usize) -> Span {
        Span { blob, start, end }
    }

    #[test]
    fn a_buffer_serving_one_blob_stays_that_blobs_own() {
        // Blob 0 lives through the pass; blob 1 dies at time 3 and blob 2 is made at time 4:
        // they share. Blob 3 overlaps all three: alone in a buffer, it keeps its data, as does
        // blob 4, which no span names (kept by the caller).
        let spans = [span(0, 0, 19), span(1, 1, 3), span(2, 4, 15), span(3, 2, 12)];
        let counts = [8, 6, 10, 4, 99];
        let (slot_of, buffers) = slots_of(&spans, 5, &counts);
        assert_eq!(buffers, 1);
        assert_eq!(slot_of, vec![None, Some(0), Some(0), None, None]);
        // The shared buffer is as large as blob 2; the others keep their own.
        assert_eq!(shared_floats(&slot_of, buffers, &counts), 8 + 10 + 4 + 99);
    }
}
