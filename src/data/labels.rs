//! Which label values the net's losses can take, as the net tells a data layer after building
//! (see `Layer::set_label_range`): a value is valid when every consumer accepts it, i.e. it is
//! in `0..classes` or equals that consumer's `ignore_label`.

use super::decode::Image8;
use crate::{Error, Result};
use std::path::Path;

/// The constraints of every loss or accuracy layer that reads one label top.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelRanges {
    ranges: Vec<(usize, Option<i32>)>,
}

impl LabelRanges {
    /// Adds a consumer with `classes` classes and an optional ignore label.
    pub fn add(&mut self, classes: usize, ignore_label: Option<i32>) {
        if !self.ranges.contains(&(classes, ignore_label)) {
            self.ranges.push((classes, ignore_label));
        }
    }

    /// Whether nothing constrains the labels.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `v` is a label every consumer takes.
    pub fn accepts(&self, v: i32) -> bool {
        self.ranges.iter().all(|&(classes, ignore)| Some(v) == ignore || (v >= 0 && (v as usize) < classes))
    }

    /// What the consumers take, for messages: `0..=1 (2 classes)`, `, or the ignore_label 255`.
    pub fn describe(&self) -> String {
        let classes = self.ranges.iter().map(|r| r.0).min().unwrap_or(0);
        let mut ignores: Vec<i32> = self.ranges.iter().filter_map(|r| r.1).collect();
        ignores.dedup();
        let mut s = if classes == 0 {
            "no class at all (the loss has 0 classes)".to_string()
        } else {
            format!("0..={} ({classes} classes)", classes - 1)
        };
        match ignores.as_slice() {
            [] => {}
            [i] if self.ranges.iter().all(|r| r.1 == Some(*i)) => s.push_str(&format!(", or the ignore_label {i}")),
            _ => s.push_str(" (ignore_label differs between the layers that read it)"),
        }
        s
    }

    /// Checks every pixel of a label image; the error names `file`, the first bad pixel and
    /// value, and `resized` (the size it was resized to, if it was).
    pub fn check_image(&self, label: &Image8, file: &Path, resized: bool) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let mut ok = [false; 256];
        for (v, slot) in ok.iter_mut().enumerate() {
            *slot = self.accepts(v as i32);
        }
        if let Some(i) = label.data.iter().position(|&v| !ok[v as usize]) {
            let (x, y) = (i % label.width, i / label.width);
            let size = if resized { format!(" (after resizing to {}x{})", label.width, label.height) } else { String::new() };
            return Err(Error::Decode {
                file: file.display().to_string(),
                msg: format!(
                    "label value {} at pixel (x {x}, y {y}){size} is out of range: the loss takes {}{}",
                    label.data[i],
                    self.describe(),
                    if label.data[i] == 255 { "; masks saved as 0/255 need converting to 0/1 (`crema dataset` does it)" } else { "" }
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_describes() {
        let mut r = LabelRanges::default();
        assert!(r.accepts(1000));
        r.add(2, None);
        assert!(r.accepts(0) && r.accepts(1) && !r.accepts(2) && !r.accepts(-1));
        assert_eq!(r.describe(), "0..=1 (2 classes)");
        let mut s = LabelRanges::default();
        s.add(3, Some(255));
        assert!(s.accepts(255) && s.accepts(2) && !s.accepts(3));
        assert_eq!(s.describe(), "0..=2 (3 classes), or the ignore_label 255");
        s.add(3, None); // a second reader without ignore_label
        assert!(!s.accepts(255));
    }

    #[test]
    fn check_image_names_file_pixel_and_value() {
        let mut r = LabelRanges::default();
        r.add(2, None);
        let img = Image8 { width: 3, height: 2, channels: 1, data: vec![0, 1, 0, 1, 255, 0] };
        let e = r.check_image(&img, Path::new("labels/a.png"), true).unwrap_err().to_string();
        assert!(e.starts_with("labels/a.png: label value 255 at pixel (x 1, y 1) (after resizing to 3x2)"), "{e}");
        assert!(e.contains("0..=1 (2 classes)") && e.contains("0/255"), "{e}");
        let good = Image8 { width: 2, height: 1, channels: 1, data: vec![0, 1] };
        r.check_image(&good, Path::new("g.png"), false).unwrap();
    }
}
