//! Overlap scores of a predicted mask S against a true mask T, per image, and their summaries.
//!
//! - Dice `2|S∩T| / (|S| + |T|)`, IoU (Jaccard) `|S∩T| / |S∪T|`, pixel accuracy
//!   `(TP + TN) / pixels`.
//! - **Empty masks**: when S and T are both empty, Dice and IoU are 1.0 (the prediction is
//!   exactly right); when only one is empty they are 0.0 (the formulas give it).
//! - Counts are integers and scores are `f64`, so the scores of an image are exact to the last
//!   bit of an `f64` and independent of the order pixels are visited in.
//! - [`Stats`]: mean, **sample** standard deviation (divisor n - 1, as a report of "std over
//!   the test images" means it; `None` for a single image), min and max.

use super::mask::Mask;
use crate::{Error, Result};

/// The confusion counts of a binary prediction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Confusion {
    /// Predicted and true.
    pub tp: u64,
    /// Predicted, not true.
    pub fp: u64,
    /// True, not predicted.
    pub fn_: u64,
    /// Neither.
    pub tn: u64,
}

impl Confusion {
    /// Counts `pred` against `truth`; they must have the same size.
    pub fn of(pred: &Mask, truth: &Mask) -> Result<Self> {
        if (pred.width(), pred.height()) != (truth.width(), truth.height()) {
            return Err(Error::Shape(format!(
                "the prediction is {}x{} but the truth is {}x{}",
                pred.width(),
                pred.height(),
                truth.width(),
                truth.height()
            )));
        }
        let mut c = Confusion::default();
        for (&p, &t) in pred.as_slice().iter().zip(truth.as_slice()) {
            match (p, t) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        Ok(c)
    }

    /// `2 TP / (2 TP + FP + FN)`; 1.0 when both masks are empty.
    pub fn dice(&self) -> f64 {
        let denom = 2 * self.tp + self.fp + self.fn_;
        if denom == 0 { 1.0 } else { (2 * self.tp) as f64 / denom as f64 }
    }

    /// `TP / (TP + FP + FN)`; 1.0 when both masks are empty.
    pub fn iou(&self) -> f64 {
        let denom = self.tp + self.fp + self.fn_;
        if denom == 0 { 1.0 } else { self.tp as f64 / denom as f64 }
    }

    /// `(TP + TN) / pixels`; 1.0 for a mask of no pixels.
    pub fn accuracy(&self) -> f64 {
        let n = self.tp + self.fp + self.fn_ + self.tn;
        if n == 0 { 1.0 } else { (self.tp + self.tn) as f64 / n as f64 }
    }

    /// The three scores.
    pub fn scores(&self) -> Scores {
        Scores { dice: self.dice(), iou: self.iou(), accuracy: self.accuracy() }
    }
}

/// The scores of one image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    /// Dice coefficient (F1).
    pub dice: f64,
    /// Intersection over union (Jaccard index).
    pub iou: f64,
    /// Pixel accuracy.
    pub accuracy: f64,
}

/// Scores `pred` against `truth` (same size).
pub fn score(pred: &Mask, truth: &Mask) -> Result<Scores> {
    Confusion::of(pred, truth).map(|c| c.scores())
}

/// A summary of one score over images.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (divisor n - 1); `None` (JSON null) for one image.
    pub std: Option<f64>,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Stats {
    /// The summary of `values`, or `None` when there are none. Sums run in order, in `f64`.
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.len() > 1).then(|| (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt());
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Stats { mean, std, min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(w: usize, h: usize, on: &[(usize, usize)]) -> Mask {
        Mask::from_fn(w, h, |x, y| on.contains(&(x, y)))
    }

    #[test]
    fn known_overlaps() {
        // S = 3 pixels, T = 2 pixels, one shared, in 4x4 = 16 pixels.
        let s = mask(4, 4, &[(0, 0), (1, 0), (2, 0)]);
        let t = mask(4, 4, &[(2, 0), (3, 3)]);
        let c = Confusion::of(&s, &t).unwrap();
        assert_eq!(c, Confusion { tp: 1, fp: 2, fn_: 1, tn: 12 });
        assert_eq!(c.dice(), 2.0 / 5.0);
        assert_eq!(c.iou(), 1.0 / 4.0);
        assert_eq!(c.accuracy(), 13.0 / 16.0);
        // Identical masks.
        assert_eq!(score(&s, &s).unwrap(), Scores { dice: 1.0, iou: 1.0, accuracy: 1.0 });
        // Disjoint masks.
        let d = score(&mask(2, 1, &[(0, 0)]), &mask(2, 1, &[(1, 0)])).unwrap();
        assert_eq!(d, Scores { dice: 0.0, iou: 0.0, accuracy: 0.0 });
        // Dice and IoU are tied by D = 2J / (1 + J).
        let j = c.iou();
        assert!((c.dice() - 2.0 * j / (1.0 + j)).abs() < 1e-15);
    }

    #[test]
    fn empty_masks() {
        let e = Mask::new(3, 2);
        assert_eq!(score(&e, &e).unwrap(), Scores { dice: 1.0, iou: 1.0, accuracy: 1.0 });
        let one = mask(3, 2, &[(1, 1)]);
        assert_eq!(score(&e, &one).unwrap(), Scores { dice: 0.0, iou: 0.0, accuracy: 5.0 / 6.0 });
        assert_eq!(score(&one, &e).unwrap(), Scores { dice: 0.0, iou: 0.0, accuracy: 5.0 / 6.0 });
        assert_eq!(score(&Mask::new(0, 0), &Mask::new(0, 0)).unwrap().accuracy, 1.0);
    }

    #[test]
    fn size_mismatch_is_an_error() {
        let e = score(&Mask::new(3, 2), &Mask::new(2, 3)).unwrap_err().to_string();
        assert_eq!(e, "the prediction is 3x2 but the truth is 2x3");
    }

    #[test]
    fn stats_use_the_sample_deviation() {
        let s = Stats::of(&[0.9, 0.95, 1.0]).unwrap();
        assert!((s.mean - 0.95).abs() < 1e-15);
        assert!((s.std.unwrap() - 0.05).abs() < 1e-15, "{s:?}");
        assert_eq!((s.min, s.max), (0.9, 1.0));
        let one = Stats::of(&[0.5]).unwrap();
        assert_eq!(one, Stats { mean: 0.5, std: None, min: 0.5, max: 0.5 });
        assert!(Stats::of(&[]).is_none());
    }
}
