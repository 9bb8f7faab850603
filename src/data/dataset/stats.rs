//! Class frequencies and SegNet's median-frequency class weights (Eigen and Fergus' median
//! frequency balancing, as the SegNet tutorial computes `class_weighting`):
//! `freq(c) = pixels of class c / total pixels of the images in which c appears`,
//! `weight(c) = median over classes of freq / freq(c)`.

/// Pixel counts per class over a set of label images, and the weights derived from them.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassStats {
    /// Label images counted.
    pub images: usize,
    /// Pixels of each class.
    pub pixels: Vec<u64>,
    /// Total pixels of the images in which each class appears.
    pub present_pixels: Vec<u64>,
}

impl ClassStats {
    /// Counts the labels of `images` (each a slice of class indices); classes run from 0 to
    /// the largest label seen, or to `classes - 1` if that is larger.
    pub fn count<'a>(images: impl IntoIterator<Item = &'a [u8]>, classes: usize) -> Self {
        let mut s = ClassStats { images: 0, pixels: vec![0; classes], present_pixels: vec![0; classes] };
        for labels in images {
            let mut hist = [0u64; 256];
            labels.iter().for_each(|&v| hist[v as usize] += 1);
            let top = hist.iter().rposition(|&h| h > 0).map_or(0, |i| i + 1);
            if top > s.pixels.len() {
                s.pixels.resize(top, 0);
                s.present_pixels.resize(top, 0);
            }
            for (c, &h) in hist[..top].iter().enumerate() {
                s.pixels[c] += h;
                if h > 0 {
                    s.present_pixels[c] += labels.len() as u64;
                }
            }
            s.images += 1;
        }
        s
    }

    /// `freq(c)`; 0 for a class that never appears.
    pub fn frequencies(&self) -> Vec<f64> {
        self.pixels
            .iter()
            .zip(&self.present_pixels)
            .map(|(&p, &t)| if t == 0 { 0.0 } else { p as f64 / t as f64 })
            .collect()
    }

    /// The median of the frequencies of the classes that appear (the mean of the middle two
    /// for an even count).
    pub fn median_frequency(&self) -> f64 {
        let mut f: Vec<f64> = self.frequencies().into_iter().filter(|&v| v > 0.0).collect();
        if f.is_empty() {
            return 0.0;
        }
        f.sort_by(f64::total_cmp);
        let n = f.len();
        if n % 2 == 1 {
            f[n / 2]
        } else {
            (f[n / 2 - 1] + f[n / 2]) / 2.0
        }
    }

    /// `median / freq(c)` per class; 0 for a class that never appears.
    pub fn weights(&self) -> Vec<f64> {
        let median = self.median_frequency();
        self.frequencies().into_iter().map(|f| if f > 0.0 { median / f } else { 0.0 }).collect()
    }

    /// The table and the `class_weighting:` lines, ready to print.
    pub fn report(&self) -> String {
        let freqs = self.frequencies();
        let weights = self.weights();
        let mut s = format!(
            "class frequencies over {} training label images (SegNet's median frequency balancing):\n\
             {:>5}  {:>14}  {:>14}  {:>10}  {:>10}\n",
            self.images, "class", "pixels", "image pixels", "freq", "weight"
        );
        for c in 0..self.pixels.len() {
            s.push_str(&format!(
                "{c:>5}  {:>14}  {:>14}  {:>10.6}  {:>10.6}\n",
                self.pixels[c], self.present_pixels[c], freqs[c], weights[c]
            ));
        }
        s.push_str("for the loss layer's loss_param (weight_by_label_freqs: true):\n");
        s.push_str(&self.class_weighting_lines());
        s
    }

    /// One `class_weighting: w` line per class, indented for a `loss_param` block.
    pub fn class_weighting_lines(&self) -> String {
        self.weights().iter().map(|w| format!("    class_weighting: {w:.4}\n")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_frequency_weights() {
        // Image A (4 px): 3 of class 0, 1 of class 1. Image B (4 px): all class 0.
        // Image C (2 px): class 2 only.
        let a = [0u8, 0, 0, 1];
        let b = [0u8; 4];
        let c = [2u8, 2];
        let s = ClassStats::count([&a[..], &b[..], &c[..]], 2);
        assert_eq!(s.pixels, [7, 1, 2]);
        assert_eq!(s.present_pixels, [8, 4, 2]);
        assert_eq!(s.frequencies(), [7.0 / 8.0, 0.25, 1.0]);
        assert_eq!(s.median_frequency(), 7.0 / 8.0);
        assert_eq!(s.weights(), [1.0, 3.5, 7.0 / 8.0]);
        // Two classes: the median is their mean.
        let s = ClassStats::count([&a[..]], 2);
        assert_eq!(s.median_frequency(), (0.75 + 0.25) / 2.0);
        assert_eq!(s.weights(), [0.5 / 0.75, 2.0]);
        // A class that never appears weighs 0.
        let s = ClassStats::count([&b[..]], 2);
        assert_eq!(s.weights(), [1.0, 0.0]);
        assert!(s.class_weighting_lines().contains("class_weighting: 0.0000"));
    }
}
