//! Binary masks (lung / not lung): reading them from image files, resizing, boundaries, and
//! writing PNGs.
//!
//! **Which pixels of a mask file are lung** ([`Threshold`]):
//! - [`Threshold::Auto`] (the default): a file whose samples are all 0 or 1 is a label map,
//!   1 = lung; any other file is lung where a sample is above half the sample range (> 127 for
//!   8-bit, > 32767 for 16-bit). On binary files (0/1 labels, 0/255 masks, the masks `crema
//!   segment` writes) this is "any nonzero pixel is lung"; on masks with anti-aliased edges
//!   (0/255 resized, as the shared chest X-ray masks are) it is the > 127 rule that `crema
//!   dataset` used to make the training labels, so predictions are scored against the same
//!   lung fields the net was taught.
//! - [`Threshold::Above`]`(t)`: lung where a sample is > `t` (0: any nonzero pixel).
//!
//! A colour file is read by the largest of its R, G, B samples; alpha is ignored.

use crate::io::atomic_write;
use crate::{Error, Result};
use image::{DynamicImage, GrayImage};
use std::path::Path;

/// A binary image: `true` where the object (lung) is. Row-major, `width * height` values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    width: usize,
    height: usize,
    data: Vec<bool>,
}

/// How a mask file's samples become lung / not lung (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Threshold {
    /// 0/1 files are label maps; others are thresholded at half their sample range.
    #[default]
    Auto,
    /// Lung where a sample is greater than this value.
    Above(u16),
}

impl Mask {
    /// An empty (all false) mask.
    pub fn new(width: usize, height: usize) -> Self {
        Mask { width, height, data: vec![false; width * height] }
    }

    /// A mask from row-major values; their number must be `width * height`.
    pub fn from_vec(width: usize, height: usize, data: Vec<bool>) -> Result<Self> {
        if data.len() != width * height {
            return Err(Error::Shape(format!("{} mask values for a {width}x{height} mask", data.len())));
        }
        Ok(Mask { width, height, data })
    }

    /// A mask whose pixel (x, y) is `f(x, y)`.
    pub fn from_fn(width: usize, height: usize, mut f: impl FnMut(usize, usize) -> bool) -> Self {
        let data = (0..height).flat_map(|y| (0..width).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect();
        Mask { width, height, data }
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }
    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }
    /// The values, row-major.
    pub fn as_slice(&self) -> &[bool] {
        &self.data
    }
    /// Pixel (x, y).
    pub fn get(&self, x: usize, y: usize) -> bool {
        self.data[y * self.width + x]
    }
    /// Sets pixel (x, y).
    pub fn set(&mut self, x: usize, y: usize, v: bool) {
        self.data[y * self.width + x] = v;
    }
    /// Number of `true` pixels.
    pub fn count(&self) -> u64 {
        self.data.iter().filter(|&&v| v).count() as u64
    }

    /// The mask as an 8-bit image: 255 where true, 0 elsewhere.
    pub fn to_image(&self) -> GrayImage {
        let px = self.data.iter().map(|&v| if v { 255 } else { 0 }).collect();
        GrayImage::from_raw(self.width as u32, self.height as u32, px).expect("one byte per pixel")
    }

    /// The mask resized to `width x height` by nearest neighbour on pixel centres: output pixel
    /// d takes source pixel `floor((d + 0.5) * src / dst)`, so integer up-scaling repeats each
    /// pixel exactly and the result stays aligned with a centre-aligned bilinear resize.
    pub fn resize_nearest(&self, width: usize, height: usize) -> Mask {
        let xs = nearest_map(self.width, width);
        let ys = nearest_map(self.height, height);
        let mut out = Mask::new(width, height);
        for (dy, &sy) in ys.iter().enumerate() {
            for (dx, &sx) in xs.iter().enumerate() {
                out.data[dy * width + dx] = self.data[sy * self.width + sx];
            }
        }
        out
    }

    /// The mask's inner boundary, `thickness` pixels wide: the pixels of the mask within
    /// `thickness` steps (4-neighbour moves) of a pixel outside it. Pixels beyond the image
    /// edge count as outside, so an object touching the edge is outlined along it. With
    /// `thickness` 1: the mask pixels that have a non-mask 4-neighbour.
    pub fn boundary(&self, thickness: usize) -> Mask {
        let mut inner = self.clone();
        for _ in 0..thickness {
            inner = inner.eroded();
        }
        let data = self.data.iter().zip(&inner.data).map(|(&m, &i)| m && !i).collect();
        Mask { width: self.width, height: self.height, data }
    }

    /// One step of erosion with the 4-neighbourhood (outside the image is background).
    fn eroded(&self) -> Mask {
        let (w, h) = (self.width, self.height);
        Mask::from_fn(w, h, |x, y| {
            self.get(x, y)
                && x > 0
                && y > 0
                && x + 1 < w
                && y + 1 < h
                && self.get(x - 1, y)
                && self.get(x + 1, y)
                && self.get(x, y - 1)
                && self.get(x, y + 1)
        })
    }
}

/// For each of `dst` indices, the source index whose centre is nearest.
pub(crate) fn nearest_map(src: usize, dst: usize) -> Vec<usize> {
    (0..dst).map(|d| (((2 * d + 1) * src) / (2 * dst)).min(src.saturating_sub(1))).collect()
}

/// The mask a decoded image holds, read with `threshold` (see the module doc).
pub fn mask_from_image(img: &DynamicImage, threshold: Threshold) -> Mask {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let sixteen = img.color().bytes_per_pixel() / img.color().channel_count() > 1;
    // The largest colour sample of each pixel, at the file's depth.
    let values: Vec<u16> = if sixteen {
        let rgb = img.to_rgb16();
        rgb.pixels().map(|p| p.0[0].max(p.0[1]).max(p.0[2])).collect()
    } else if img.color().has_color() {
        img.to_rgb8().pixels().map(|p| p.0[0].max(p.0[1]).max(p.0[2]) as u16).collect()
    } else {
        img.to_luma8().into_raw().into_iter().map(u16::from).collect()
    };
    let t = match threshold {
        Threshold::Above(t) => t,
        Threshold::Auto if values.iter().all(|&v| v <= 1) => 0,
        Threshold::Auto if sixteen => 32767,
        Threshold::Auto => 127,
    };
    Mask { width: w, height: h, data: values.into_iter().map(|v| v > t).collect() }
}

/// Reads the mask file at `path` (any format the `image` crate reads here) with `threshold`.
pub fn read_mask(path: &Path, threshold: Threshold) -> Result<Mask> {
    read_image_file(path).map(|img| mask_from_image(&img, threshold))
}

/// Decodes the image file at `path`; errors name the file.
pub fn read_image_file(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| Error::Decode { file: path.display().to_string(), msg: format!("cannot read: {e}") })?;
    if reader.format().is_none() {
        return Err(Error::Decode {
            file: path.display().to_string(),
            msg: "not an image crema can read (PNG, JPEG, BMP, GIF, TIFF, PNM)".into(),
        });
    }
    reader
        .decode()
        .map_err(|e| Error::Decode { file: path.display().to_string(), msg: format!("corrupt or unsupported image: {e}") })
}

/// Writes `img` as a PNG at `path`, atomically.
pub fn write_png(path: &Path, img: &DynamicImage) -> Result<()> {
    atomic_write(path, |w| img.write_to(w, image::ImageFormat::Png).map_err(std::io::Error::other))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb, RgbImage};

    fn gray(w: u32, h: u32, v: &[u8]) -> DynamicImage {
        DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, v.to_vec()).unwrap())
    }

    #[test]
    fn auto_threshold_reads_labels_binary_and_antialiased_masks() {
        let labels = gray(4, 1, &[0, 1, 1, 0]);
        let binary = gray(4, 1, &[0, 255, 255, 0]);
        let aa = gray(4, 1, &[3, 128, 255, 127]);
        let want = [false, true, true, false];
        assert_eq!(mask_from_image(&labels, Threshold::Auto).as_slice(), want);
        assert_eq!(mask_from_image(&binary, Threshold::Auto).as_slice(), want);
        assert_eq!(mask_from_image(&aa, Threshold::Auto).as_slice(), want);
        assert_eq!(mask_from_image(&aa, Threshold::Above(0)).as_slice(), [true; 4]);
        assert_eq!(mask_from_image(&labels, Threshold::Above(1)).as_slice(), [false; 4]);
    }

    #[test]
    fn sixteen_bit_and_colour_masks() {
        let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_raw(3, 1, vec![0, 1, 40000]).unwrap();
        let m = mask_from_image(&DynamicImage::ImageLuma16(img.clone()), Threshold::Auto);
        assert_eq!(m.as_slice(), [false, false, true]);
        let m = mask_from_image(&DynamicImage::ImageLuma16(img), Threshold::Above(0));
        assert_eq!(m.as_slice(), [false, true, true]);
        let rgb = RgbImage::from_raw(2, 1, vec![0, 0, 200, 0, 0, 0]).unwrap();
        assert_eq!(mask_from_image(&DynamicImage::ImageRgb8(rgb), Threshold::Auto).as_slice(), [true, false]);
        let _ = Rgb([0u8; 3]);
    }

    #[test]
    fn boundary_of_a_square() {
        // A 4x4 square at (1,1) in 6x6: its 12 edge pixels with thickness 1, all 16 with 2.
        let m = Mask::from_fn(6, 6, |x, y| (1..5).contains(&x) && (1..5).contains(&y));
        let b = m.boundary(1);
        assert_eq!(b.count(), 12);
        assert!(b.get(1, 1) && b.get(4, 2) && !b.get(2, 2) && !b.get(0, 0));
        assert_eq!(m.boundary(2).count(), 16);
        // Touching the image edge: the edge row is boundary too.
        let full = Mask::from_fn(3, 3, |_, _| true);
        assert_eq!(full.boundary(1).count(), 8);
        assert!(!full.boundary(1).get(1, 1));
        assert_eq!(Mask::new(3, 3).boundary(1).count(), 0);
    }

    #[test]
    fn nearest_resize_repeats_pixels_on_integer_factors() {
        let m = Mask::from_vec(2, 1, vec![true, false]).unwrap();
        let r = m.resize_nearest(4, 2);
        assert_eq!(r.as_slice(), [true, true, false, false, true, true, false, false]);
        let down = r.resize_nearest(2, 1);
        assert_eq!(down, m);
        assert_eq!(nearest_map(3, 2), [0, 2]);
    }

    #[test]
    fn png_round_trip_and_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mask::from_fn(5, 3, |x, y| x > y);
        let p = dir.path().join("m.png");
        write_png(&p, &DynamicImage::ImageLuma8(m.to_image())).unwrap();
        assert_eq!(read_mask(&p, Threshold::Auto).unwrap(), m);
        let e = read_mask(&dir.path().join("missing.png"), Threshold::Auto).unwrap_err().to_string();
        assert!(e.contains("missing.png"), "{e}");
        let junk = dir.path().join("junk.png");
        std::fs::write(&junk, b"not an image at all").unwrap();
        let e = read_mask(&junk, Threshold::Auto).unwrap_err().to_string();
        assert!(e.contains("junk.png") && e.contains("not an image"), "{e}");
        let bad = dir.path().join("bad.png");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(30);
        std::fs::write(&bad, bytes).unwrap();
        let e = read_mask(&bad, Threshold::Auto).unwrap_err().to_string();
        assert!(e.contains("bad.png") && e.contains("corrupt"), "{e}");
        assert!(Mask::from_vec(2, 2, vec![true]).is_err());
    }
}
