//! Which sample goes where: the order of a data layer's samples as a pure function of its seed,
//! so that a run resumed at any forward pass sees exactly the batches an uninterrupted run
//! would have seen.
//!
//! With `n` samples, batch size `b` and a skip `s` (drawn once from the seed when `rand_skip`
//! is set, uniform in `0..rand_skip` as Caffe's `caffe_rng_rand() % rand_skip`):
//! - the run reads the **stream** of positions `s, s+1, s+2, ...`; forward pass `k` takes
//!   positions `s + k*b .. s + (k+1)*b`, wrapping into the next epoch mid-batch as Caffe does;
//! - position `p` is index `p % n` of epoch `e = p / n`; epoch `e` lists the samples in file
//!   order, or, with `shuffle`, in the order of a Fisher-Yates shuffle driven by
//!   `Rng::stream(order_seed, e)` (so every epoch is reshuffled, the first one included, as
//!   Caffe shuffles at setup and at every wrap);
//! - the random crop and mirror of position `p` come from `Rng::stream(augment_seed, p)`.
//!
//! Caffe's own order cannot be reproduced: it draws from its global Boost RNG, whose state
//! depends on everything else that used it. Runs of crema with the same seed give the same
//! order on every machine and thread count.

use crate::rng::Rng;

/// The order of a data layer's samples.
#[derive(Clone, Debug)]
pub struct Order {
    n: usize,
    batch: usize,
    skip: u64,
    shuffle: bool,
    order_seed: u64,
    augment_seed: u64,
}

impl Order {
    /// The order of `n` samples read `batch` at a time, from the layer's `seed`.
    /// `rand_skip > 0` skips a seeded `0..rand_skip` samples at the start.
    pub fn new(n: usize, batch: usize, shuffle: bool, rand_skip: u32, seed: u64) -> Self {
        let skip = if rand_skip > 0 { Rng::stream(seed, 2).below(rand_skip as usize) as u64 } else { 0 };
        Order {
            n,
            batch,
            skip,
            shuffle,
            order_seed: Rng::stream(seed, 1).next_u64(),
            augment_seed: Rng::stream(seed, 3).next_u64(),
        }
    }

    /// Number of samples in an epoch.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The samples skipped at the start (`rand_skip`).
    pub fn skip(&self) -> u64 {
        self.skip
    }

    /// The stream positions of forward pass `pass`.
    fn positions(&self, pass: u64) -> std::ops::Range<u64> {
        let start = self.skip + pass * self.batch as u64;
        start..start + self.batch as u64
    }

    /// The permutation of epoch `epoch` (identity without shuffle).
    pub fn epoch(&self, epoch: u64) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.n).collect();
        if self.shuffle {
            Rng::stream(self.order_seed, epoch).shuffle(&mut v);
        }
        v
    }

    /// The sample index at stream position `pos`, with `cache` holding the last epoch's
    /// permutation.
    fn sample(&self, pos: u64, cache: &mut Option<(u64, Vec<usize>)>) -> usize {
        let (e, k) = (pos / self.n as u64, (pos % self.n as u64) as usize);
        if !self.shuffle {
            return k;
        }
        if cache.as_ref().is_none_or(|(ce, _)| *ce != e) {
            *cache = Some((e, self.epoch(e)));
        }
        cache.as_ref().map(|(_, p)| p[k]).unwrap_or(k)
    }

    /// Forward pass `pass` as (stream position, sample index) pairs, in batch order.
    pub fn draws(&self, pass: u64) -> Vec<(u64, usize)> {
        let mut cache = None;
        self.positions(pass).map(|p| (p, self.sample(p, &mut cache))).collect()
    }

    /// The first sample of the run (position and index): what a data layer decodes at set-up
    /// to learn its tops' shapes.
    pub fn first(&self) -> (u64, usize) {
        let pos = self.positions(0).start;
        (pos, self.sample(pos, &mut None))
    }

    /// The random stream for the crop and mirror of stream position `pos`.
    pub fn augment_rng(&self, pos: u64) -> Rng {
        Rng::stream(self.augment_seed, pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(o: &Order, k: u64) -> Vec<usize> {
        o.draws(k).into_iter().map(|(_, i)| i).collect()
    }

    #[test]
    fn file_order_wraps_mid_batch() {
        let o = Order::new(5, 2, false, 0, 9);
        let got: Vec<Vec<usize>> = (0..4).map(|k| pass(&o, k)).collect();
        assert_eq!(got, [vec![0, 1], vec![2, 3], vec![4, 0], vec![1, 2]]);
    }

    #[test]
    fn shuffle_is_seeded_per_epoch() {
        let a = Order::new(10, 10, true, 0, 7);
        let b = Order::new(10, 10, true, 0, 7);
        let c = Order::new(10, 10, true, 0, 8);
        assert_eq!(pass(&a, 0), pass(&b, 0));
        assert_ne!(pass(&a, 0), pass(&c, 0));
        assert_ne!(pass(&a, 0), pass(&a, 1), "each epoch is reshuffled");
        let mut e0 = pass(&a, 0);
        e0.sort_unstable();
        assert_eq!(e0, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn rand_skip_offsets_the_stream() {
        let o = Order::new(100, 3, false, 50, 11);
        assert!(o.skip() < 50);
        let s = o.skip() as usize;
        assert_eq!(pass(&o, 0), [s, s + 1, s + 2]);
        let skips: std::collections::HashSet<u64> = (0..40).map(|seed| Order::new(100, 3, false, 50, seed).skip()).collect();
        assert!(skips.len() > 10, "skips vary with the seed");
    }
}
