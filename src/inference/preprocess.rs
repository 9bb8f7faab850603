//! Turning an image file into a net input the way the training data reached the net, with the
//! data layers' own pieces ([`crate::data`]):
//! - **decoding** as Caffe/OpenCV read images (gray or B, G, R; 16-bit keeps the high byte; JSRT
//!   `.IMG` read too): [`crate::data::decode`];
//! - **resizing** to the net's input size ([`ResizeFilter`]): `Antialiased` (the default) is the
//!   filter `crema dataset` prepares training images with, so an original-size image given to
//!   `crema segment` becomes the same pixels the net was trained on; `Linear` is OpenCV's
//!   `INTER_LINEAR`, what DenseImageData's `new_height`/`new_width` apply: [`crate::data::resize`];
//! - the **transform** `(pixel - mean) * scale` of Caffe's `DataTransformer`, without crop or
//!   mirror: [`crate::data::transform::Transformer`].

pub use crate::data::decode::{ColorMode, Image8};
pub use crate::data::transform::{Mean, Transformer};

use crate::data::{decode, resize as rs};
use crate::proto::Phase;
use crate::{Error, Result};
use std::path::Path;

/// Reads the image at `path` with `channels` (1: gray, 3: B, G, R) as the data layers do.
pub fn load_image(path: &Path, channels: usize) -> Result<Image8> {
    let mode = match channels {
        1 => ColorMode::Gray,
        3 => ColorMode::Bgr,
        c => return Err(Error::Shape(format!("a net input of {c} channels cannot take an image (1 or 3 channels)"))),
    };
    decode::read_image(path, mode)
}

/// The image in gray, for pictures: itself with one channel, OpenCV's BGR-to-gray with three.
pub fn gray_image(img: &Image8) -> image::GrayImage {
    let px: Vec<u8> = if img.channels == 1 {
        img.data.clone()
    } else {
        img.data.chunks_exact(img.channels).map(|p| decode::gray_opencv(p[2], p[1], p[0])).collect()
    };
    image::GrayImage::from_raw(img.width as u32, img.height as u32, px).expect("one byte per pixel")
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

/// `img` at `width x height` with `filter` (unchanged when it has that size already).
pub fn resize(img: &Image8, width: usize, height: usize, filter: ResizeFilter) -> Image8 {
    match filter {
        ResizeFilter::Antialiased => rs::antialiased(img, width, height),
        ResizeFilter::Linear => rs::linear(img, width, height),
    }
}

/// A transformer applying `(pixel - mean) * scale` and nothing else (no crop, no mirror).
pub fn transformer(scale: f32, mean: Mean) -> Transformer {
    Transformer { scale, mean, ..Transformer::identity(Phase::Test) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::transform::Draw;

    #[test]
    fn colour_files_read_as_bgr_and_drawn_in_gray() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.png");
        image::RgbImage::from_raw(1, 1, vec![10, 20, 30]).unwrap().save(&p).unwrap();
        let bgr = load_image(&p, 3).unwrap();
        assert_eq!(bgr.data, [30, 20, 10]);
        assert_eq!(gray_image(&bgr).into_raw(), [decode::gray_opencv(10, 20, 30)]);
        assert_eq!(load_image(&p, 1).unwrap().channels, 1);
        assert!(load_image(&p, 2).unwrap_err().to_string().contains("2 channels"));
    }

    #[test]
    fn the_transform_only_subtracts_and_scales() {
        let t = transformer(0.5, Mean::Values(vec![10.0]));
        let img = Image8 { width: 2, height: 1, channels: 1, data: vec![30, 50] };
        let mut out = vec![0.0; 2];
        t.apply(&img, Draw::default(), &mut out, false, Path::new("x")).unwrap();
        assert_eq!(out, [10.0, 20.0]);
        let big = Image8 { width: 4, height: 1, channels: 1, data: vec![0, 0, 200, 200] };
        assert_eq!(resize(&big, 2, 1, ResizeFilter::Linear).data, [0, 200]);
        assert_eq!(resize(&big, 4, 1, ResizeFilter::Antialiased), big);
    }
}
