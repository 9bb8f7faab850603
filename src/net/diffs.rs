//! The net's switch for diff sharing ([`Net::set_diff_sharing`]) and its report of diff
//! memory ([`Net::diff_memory`]); the planning and lending live in `share`.

use super::share::{analyse, shared_floats, DiffPool, DiffUse};
use super::Net;
use crate::backend::Backend;
use crate::Result;

/// Bytes of blob gradients (diffs) at the blobs' current shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiffMemory {
    /// With every blob owning a diff as large as its data (Caffe's layout).
    pub owned: usize,
    /// With diff sharing: the diffs blobs keep (loss tops, Input tops, kept blobs) plus the
    /// pooled buffers the others take turns with.
    pub shared: usize,
}

impl<B: Backend> Net<B> {
    /// Turns diff sharing on or off (see [`super::NetOptions::share_diffs`]). With it on, the
    /// blobs named in `keep` keep diffs of their own, readable after backward, as do loss tops
    /// and the tops of Input layers; every other blob's diff exists only while its gradient is
    /// live in a backward pass. Turning it off gives every blob a zeroed diff of its own again.
    /// Fails when `keep` names a blob the net does not have.
    pub fn set_diff_sharing(&mut self, share: bool, keep: &[&str]) -> Result<()> {
        let own = self.named_blobs(keep, "diff")?;
        if let Some(mut pool) = self.share.take() {
            pool.reclaim_all(&mut self.blobs);
        }
        if !share {
            for b in &mut self.blobs {
                b.set_diff_shared(&self.be, false)?;
            }
            return Ok(());
        }
        let uses = analyse(&self.layers, &self.blobs, &self.kept_diffs(own));
        // Free the diffs that become shared before allocating those that become owned.
        for pass_frees in [true, false] {
            for (b, u) in self.blobs.iter_mut().zip(&uses) {
                if (*u != DiffUse::Own) == pass_frees {
                    b.set_diff_shared(&self.be, pass_frees)?;
                }
            }
        }
        self.share = Some(DiffPool::new(uses, self.layers.len()));
        Ok(())
    }

    /// Whether diffs are shared.
    pub fn shares_diffs(&self) -> bool {
        self.share.is_some()
    }

    /// Diff memory with every diff owned and with sharing, at the current blob shapes (whether
    /// or not this net shares its diffs).
    pub fn diff_memory(&self) -> DiffMemory {
        let counts: Vec<usize> = self.blobs.iter().map(|b| b.count()).collect();
        let with_diff: Vec<bool> = self.blobs.iter().map(|b| b.has_diff()).collect();
        let owned = counts.iter().zip(&with_diff).filter(|&(_, &d)| d).map(|(c, _)| c).sum::<usize>();
        let computed;
        let uses = match &self.share {
            Some(pool) => pool.uses(),
            None => {
                computed = analyse(&self.layers, &self.blobs, &self.kept_diffs(vec![false; self.blobs.len()]));
                &computed
            }
        };
        DiffMemory { owned: owned * 4, shared: shared_floats(uses, &with_diff, &counts) * 4 }
    }

    /// For tests: fills every lent diff buffer that is not zeroed with a huge value before the
    /// backward that writes it, so that a layer reading a diff before writing it shows.
    #[doc(hidden)]
    pub fn poison_shared_diffs(&mut self, on: bool) {
        if let Some(pool) = &mut self.share {
            pool.poison = on;
        }
    }

    /// `own` plus the blobs whose diffs are read outside backward: loss tops (set to the loss
    /// weight in forward) and the tops of Input layers (the net's inputs).
    fn kept_diffs(&self, mut own: Vec<bool>) -> Vec<bool> {
        for l in &self.layers {
            for (&t, &w) in l.tops.iter().zip(&l.loss_weights) {
                if w != 0.0 {
                    own[t] = true;
                }
            }
        }
        for &i in &self.inputs {
            own[i] = true;
        }
        own
    }
}
