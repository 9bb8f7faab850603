//! Turning an image file into a net input the way the training data reached the net.
//!
//! The rules are those of crema's data layers and `crema dataset` (which follow Caffe/OpenCV):
//! - **Decoding** to 8 bits, gray or B, G, R: 16-bit samples keep their high byte (OpenCV's
//!   `imread`), colour to gray is OpenCV's `(4899 R + 9617 G + 1868 B + 8192) >> 14`, gray to
//!   colour repeats the value, alpha is dropped.
//! - **Resizing** to the net's input size ([`ResizeFilter`]): `Antialiased` (the default) is the
//!   filter `crema dataset` prepares training images with (bilinear, widened to the scale factor
//!   when shrinking, PIL's `BILINEAR`); `Linear` is OpenCV's `INTER_LINEAR`, what a
//!   DenseImageData layer with `new_height`/`new_width` applies to images it reads at another
//!   size. Both give 8-bit values (rounded), as the data layers do before their transform.
//! - **Transform**: each value becomes `(pixel - mean[c]) * scale`, Caffe's `DataTransformer`
//!   with `mean_value` and `scale`.

use crate::{Error, Result};
use image::DynamicImage;
use std::path::Path;

/// An 8-bit image: `height` rows of `width` pixels of `channels` interleaved samples (1: gray;
/// 3: B, G, R, as Caffe holds colour images).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image8 {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Samples per pixel: 1 or 3.
    pub channels: usize,
    /// `height * width * channels` bytes, row-major, channels interleaved.
    pub data: Vec<u8>,
}

impl Image8 {
    /// The image in gray (itself when it has one channel; OpenCV's BGR-to-gray otherwise).
    pub fn to_gray(&self) -> image::GrayImage {
        let px: Vec<u8> = if self.channels == 1 {
            self.data.clone()
        } else {
            self.data.chunks_exact(3).map(|p| opencv_gray(p[2], p[1], p[0])).collect()
        };
        image::GrayImage::from_raw(self.width as u32, self.height as u32, px).expect("one byte per pixel")
    }
}

/// OpenCV's RGB-to-gray in fixed point.
fn opencv_gray(r: u8, g: u8, b: u8) -> u8 {
    ((4899 * r as u32 + 9617 * g as u32 + 1868 * b as u32 + 8192) >> 14) as u8
}

/// Reads the image file at `path` with `channels` (1: gray, 3: B, G, R); errors name the file.
pub fn load_image(path: &Path, channels: usize) -> Result<Image8> {
    let img = crate::eval::mask::read_image_file(path)?;
    to_image8(img, channels).map_err(|msg| Error::Decode { file: path.display().to_string(), msg })
}

/// A decoded image as 8-bit gray or BGR (see the module doc for the rules).
pub fn to_image8(img: DynamicImage, channels: usize) -> std::result::Result<Image8, String> {
    if channels != 1 && channels != 3 {
        return Err(format!("a net input of {channels} channels cannot take an image (1 or 3 channels)"));
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    let color = img.color();
    let sixteen = color.bytes_per_pixel() / color.channel_count() > 1;
    let hi = |v: u16| (v >> 8) as u8;
    // Gray or RGB samples at 8 bits.
    let (gray, rgb): (Option<Vec<u8>>, Option<Vec<u8>>) = match (color.has_color(), sixteen) {
        (false, false) => (Some(img.to_luma8().into_raw()), None),
        (false, true) => (Some(img.to_luma16().into_raw().into_iter().map(hi).collect()), None),
        (true, false) => (None, Some(img.to_rgb8().into_raw())),
        (true, true) => (None, Some(img.to_rgb16().into_raw().into_iter().map(hi).collect())),
    };
    let data = match (gray, rgb, channels) {
        (Some(g), _, 1) => g,
        (Some(g), _, _) => g.iter().flat_map(|&v| [v, v, v]).collect(),
        (None, Some(rgb), 1) => rgb.chunks_exact(3).map(|p| opencv_gray(p[0], p[1], p[2])).collect(),
        (None, Some(rgb), _) => rgb.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect(),
        (None, None, _) => unreachable!("one of gray and rgb is set"),
    };
    Ok(Image8 { width: w, height: h, channels, data })
}

/// How an image is brought to the net's input size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResizeFilter {
    /// Bilinear, widened when shrinking (as `crema dataset` prepares training images).
    #[default]
    Antialiased,
    /// OpenCV's `INTER_LINEAR` (as DenseImageData's `new_height`/`new_width`).
    Linear,
}

/// Resizes `img` to `width x height` with `filter`; an image already of that size is returned
/// unchanged.
pub fn resize(img: &Image8, width: usize, height: usize, filter: ResizeFilter) -> Image8 {
    if (img.width, img.height) == (width, height) {
        return img.clone();
    }
    let (xs, ys) = match filter {
        ResizeFilter::Antialiased => (triangle_taps(img.width, width), triangle_taps(img.height, height)),
        ResizeFilter::Linear => (linear_taps(img.width, width), linear_taps(img.height, height)),
    };
    let ch = img.channels;
    // Horizontal pass into f32 rows, then vertical; rounded to nearest at the end.
    let mut tmp = vec![0f32; img.height * width * ch];
    for y in 0..img.height {
        let src = &img.data[y * img.width * ch..(y + 1) * img.width * ch];
        let dst = &mut tmp[y * width * ch..(y + 1) * width * ch];
        for (dx, (start, ws)) in xs.iter().enumerate() {
            for c in 0..ch {
                dst[dx * ch + c] = ws.iter().enumerate().map(|(k, w)| w * src[(start + k) * ch + c] as f32).sum();
            }
        }
    }
    let row = width * ch;
    let mut data = vec![0u8; height * row];
    for (dy, (start, ws)) in ys.iter().enumerate() {
        for i in 0..row {
            let v: f32 = ws.iter().enumerate().map(|(k, w)| w * tmp[(start + k) * row + i]).sum();
            data[dy * row + i] = (v + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
    Image8 { width, height, channels: ch, data }
}

/// Taps of a resize along one axis: for each destination index, the first source index and the
/// weights of the source indices from there.
type Taps = Vec<(usize, Vec<f32>)>;

/// OpenCV `INTER_LINEAR`: `f = (d + 0.5) * src / dst - 0.5`, two taps, clamped at the ends.
pub(crate) fn linear_taps(src: usize, dst: usize) -> Taps {
    // OpenCV's order of operations: the inverse of dst / src.
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut a = f - s as f32;
            if s < 0 {
                (s, a) = (0, 0.0);
            }
            if s >= src as i64 - 1 {
                (s, a) = (src as i64 - 1, 0.0);
            }
            if a == 0.0 { (s as usize, vec![1.0]) } else { (s as usize, vec![1.0 - a, a]) }
        })
        .collect()
}

/// The triangle filter of support `max(1, src/dst)` around each destination centre,
/// normalised (PIL's `BILINEAR`).
fn triangle_taps(src: usize, dst: usize) -> Taps {
    let scale = src as f64 / dst as f64;
    let support = scale.max(1.0);
    (0..dst)
        .map(|d| {
            let center = (d as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(src);
            let mut ws: Vec<f64> = (lo..hi).map(|s| (1.0 - ((s as f64 + 0.5 - center) / support).abs()).max(0.0)).collect();
            let total: f64 = ws.iter().sum();
            if total > 0.0 {
                ws.iter_mut().for_each(|w| *w /= total);
            }
            (lo, ws.into_iter().map(|w| w as f32).collect())
        })
        .collect()
}

/// Caffe's `DataTransformer` for a net input: `(pixel - mean) * scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    /// Multiplier after mean subtraction (`transform_param.scale`).
    pub scale: f32,
    /// `mean_value`: empty (none), one value for every channel, or one per channel.
    pub mean: Vec<f32>,
}

impl Transform {
    /// The values of `img` as a planar `C x H x W` array.
    pub fn apply(&self, img: &Image8) -> Result<Vec<f32>> {
        let ch = img.channels;
        let mean = match self.mean.len() {
            0 => vec![0.0; ch],
            1 => vec![self.mean[0]; ch],
            n if n == ch => self.mean.clone(),
            n => return Err(Error::Config(format!("{n} mean values for an input of {ch} channels (give 1 or {ch})"))),
        };
        let plane = img.width * img.height;
        let mut out = vec![0f32; plane * ch];
        for (i, px) in img.data.chunks_exact(ch).enumerate() {
            for c in 0..ch {
                out[c * plane + i] = (px[c] as f32 - mean[c]) * self.scale;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb};

    fn gray(width: usize, height: usize, data: Vec<u8>) -> Image8 {
        Image8 { width, height, channels: 1, data }
    }

    #[test]
    fn linear_is_opencv_geometry() {
        assert_eq!(resize(&gray(2, 1, vec![0, 100]), 4, 1, ResizeFilter::Linear).data, [0, 25, 75, 100]);
        assert_eq!(resize(&gray(4, 1, vec![0, 10, 20, 31]), 2, 1, ResizeFilter::Linear).data, [5, 26]);
        // 8 -> 2 samples pixels 1.5 and 5.5 (no averaging beyond the two taps).
        assert_eq!(resize(&gray(8, 1, vec![0, 0, 0, 0, 200, 200, 200, 200]), 2, 1, ResizeFilter::Linear).data, [0, 200]);
        let c = Image8 { width: 2, height: 2, channels: 3, data: vec![0, 0, 0, 40, 80, 120, 80, 0, 0, 120, 80, 120] };
        assert_eq!(resize(&c, 1, 1, ResizeFilter::Linear).data, [60, 40, 60]);
    }

    #[test]
    fn antialiased_averages_when_shrinking() {
        let out = resize(&gray(8, 1, vec![0, 0, 0, 0, 200, 200, 200, 200]), 2, 1, ResizeFilter::Antialiased);
        // Output 0: centre 2, support 4, weights over pixels 0..=5 ∝ 0.625 0.875 0.875 0.625 0.375 0.125.
        assert_eq!(out.data, [(200.0 * 0.5 / 3.5 + 0.5) as u8, 200 - (200.0 * 0.5 / 3.5 + 0.5) as u8]);
        assert_eq!(resize(&gray(8, 8, vec![77; 64]), 3, 5, ResizeFilter::Antialiased).data, vec![77; 15]);
        assert_eq!(resize(&gray(2, 1, vec![0, 100]), 4, 1, ResizeFilter::Antialiased).data, [0, 25, 75, 100]);
    }

    #[test]
    fn decoding_rules() {
        let g16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_raw(2, 1, vec![0x1234, 0xFF00]).unwrap();
        let img = to_image8(DynamicImage::ImageLuma16(g16), 1).unwrap();
        assert_eq!(img.data, [0x12, 0xFF]);
        let rgb: ImageBuffer<Rgb<u8>, Vec<u8>> = ImageBuffer::from_raw(1, 1, vec![10, 20, 30]).unwrap();
        let bgr = to_image8(DynamicImage::ImageRgb8(rgb.clone()), 3).unwrap();
        assert_eq!(bgr.data, [30, 20, 10]);
        let g = to_image8(DynamicImage::ImageRgb8(rgb), 1).unwrap();
        assert_eq!(g.data, [((4899 * 10 + 9617 * 20 + 1868 * 30 + 8192) >> 14) as u8]);
        assert_eq!(bgr.to_gray().into_raw(), g.data);
        let l: ImageBuffer<Luma<u8>, Vec<u8>> = ImageBuffer::from_raw(1, 1, vec![7]).unwrap();
        assert_eq!(to_image8(DynamicImage::ImageLuma8(l.clone()), 3).unwrap().data, [7, 7, 7]);
        assert!(to_image8(DynamicImage::ImageLuma8(l), 2).unwrap_err().contains("2 channels"));
    }

    #[test]
    fn transform_subtracts_and_scales_into_planes() {
        let img = Image8 { width: 2, height: 1, channels: 3, data: vec![10, 20, 30, 40, 50, 60] };
        let t = Transform { scale: 0.5, mean: vec![10.0, 0.0, 20.0] };
        assert_eq!(t.apply(&img).unwrap(), [0.0, 15.0, 10.0, 25.0, 5.0, 20.0]);
        let t = Transform { scale: 0.00390625, mean: vec![] };
        assert_eq!(t.apply(&gray(1, 1, vec![128])).unwrap(), [0.5]);
        let e = Transform { scale: 1.0, mean: vec![1.0, 2.0] }.apply(&img).unwrap_err().to_string();
        assert_eq!(e, "2 mean values for an input of 3 channels (give 1 or 3)");
    }
}
