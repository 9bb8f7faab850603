//! Reading image files into 8-bit pixels the way Caffe's `ReadImageToCVMat` (OpenCV's
//! `imread` with `IMREAD_COLOR` or `IMREAD_GRAYSCALE`) gives them: colour as **BGR**,
//! interleaved, one byte a sample.
//!
//! Formats: PNG (1-16 bit, palette, alpha), JPEG, BMP, GIF (first frame), TIFF, PGM/PPM/PNM,
//! through the `image` crate, detected by content as OpenCV does; JSRT's headerless `.IMG`;
//! and DICOM radiographs (first frame, windowed for display as [`crate::io::dicom`] says),
//! which OpenCV cannot read.
//!
//! How samples become bytes (OpenCV's rules where it has one):
//! - **16-bit samples keep their high byte** (`v >> 8`): OpenCV's PNG decoder asks libpng to
//!   `png_set_strip_16` whenever the Mat is 8-bit, which is what `IMREAD_COLOR` and
//!   `IMREAD_GRAYSCALE` ask for. crema applies the same rule to 16-bit TIFF and PNM. An image
//!   that holds 12-bit data in 16-bit samples therefore comes out dark (0..15), as in Caffe.
//! - **Colour to gray**: for PNG, libpng's `png_set_rgb_to_gray(.., 0.299, 0.587)` in its fixed
//!   point, `(9797 R + 19234 G + 3737 B) >> 15` (truncated); for other formats OpenCV's
//!   `(4899 R + 9617 G + 1868 B + 8192) >> 14`. Gray pixels (R = G = B) stay exact either way.
//!   16-bit colour sources are stripped to 8 bits before the conversion (libpng converts first):
//!   a result may differ by 1 there.
//! - **Gray to colour** repeats the value in B, G and R. **Alpha** is dropped, not composited
//!   (libpng's `png_set_strip_alpha`). EXIF orientation is not applied (OpenCV 2.4, which the
//!   SegNet fork used, did not either).
//! - JPEG decoders differ in their IDCT: pixels of a JPEG may differ by a few levels from
//!   libjpeg's, and a colour JPEG read as gray is converted from RGB rather than taken from Y.
//!
//! **JSRT `.IMG`** (Japanese Society of Radiological Technology database): a file named `*.IMG`
//! (any case) of exactly 8,388,608 bytes is 2048 x 2048 big-endian 16-bit samples holding 12-bit
//! values, stored inverted with respect to the usual radiograph display (0 is the brightest,
//! 4095 the darkest: air in the lungs has high values). crema maps it to 8 bits as
//! `(4095 - min(v, 4095)) >> 4`, so that lungs are dark and bone bright as in the PNG
//! radiographs of Montgomery, Shenzhen and SCR's own figures. OpenCV cannot read these files;
//! Caffe users converted them first.

use crate::{Error, Result};
use std::path::Path;

/// An 8-bit image: `height` rows of `width` pixels of `channels` interleaved samples (1: gray;
/// 3: **B, G, R**), as an OpenCV `CV_8UC1`/`CV_8UC3` Mat holds it.
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
    /// A zero image.
    pub fn new(width: usize, height: usize, channels: usize) -> Self {
        Image8 { width, height, channels, data: vec![0; width * height * channels] }
    }
    /// Sample `c` of pixel (`x`, `y`).
    pub fn at(&self, x: usize, y: usize, c: usize) -> u8 {
        self.data[(y * self.width + x) * self.channels + c]
    }
    /// The image flipped left to right (OpenCV's `flip(img, img, 1)`).
    pub fn mirrored(&self) -> Image8 {
        let mut out = self.clone();
        let (w, ch) = (self.width, self.channels);
        for (src, dst) in self.data.chunks_exact(w * ch).zip(out.data.chunks_exact_mut(w * ch)) {
            for x in 0..w {
                dst[x * ch..(x + 1) * ch].copy_from_slice(&src[(w - 1 - x) * ch..(w - x) * ch]);
            }
        }
        out
    }
    /// The `width x height` region whose top-left corner is (`x0`, `y0`); the caller keeps it
    /// inside the image.
    pub fn cropped(&self, x0: usize, y0: usize, width: usize, height: usize) -> Image8 {
        let ch = self.channels;
        let mut data = Vec::with_capacity(width * height * ch);
        for y in y0..y0 + height {
            let row = (y * self.width + x0) * ch;
            data.extend_from_slice(&self.data[row..row + width * ch]);
        }
        Image8 { width, height, channels: ch, data }
    }
}

/// How to read an image: OpenCV's `IMREAD_GRAYSCALE` or `IMREAD_COLOR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    /// One channel.
    Gray,
    /// Three channels, B, G, R.
    Bgr,
}

/// Side and size of a JSRT `.IMG` file.
pub const JSRT_SIDE: usize = 2048;
/// Bytes of a JSRT `.IMG` file (2048 x 2048 x 2).
pub const JSRT_BYTES: usize = JSRT_SIDE * JSRT_SIDE * 2;

/// What the decoded file held, before conversion to [`Image8`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    /// Bits per sample in the file (8 or 16; 12 for JSRT; Bits Stored for DICOM).
    pub bits: u8,
    /// Whether the file had colour (not gray) pixels by its colour type.
    pub color: bool,
}

/// Reads the image at `path` as `mode` gives it (see the module doc for the rules).
pub fn read_image(path: &Path, mode: ColorMode) -> Result<Image8> {
    read_image_info(path, mode).map(|(img, _)| img)
}

/// [`read_image`], also saying what the file held.
pub fn read_image_info(path: &Path, mode: ColorMode) -> Result<(Image8, SourceInfo)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image(&bytes, path, mode)
}

/// Reads a label image: gray, 8-bit. A 16-bit label image is refused, because reading it as
/// Caffe does (keeping the high byte) would turn small class indices into 0 silently.
pub fn read_label_image(path: &Path) -> Result<Image8> {
    let (img, info) = read_image_info(path, ColorMode::Gray)?;
    if info.bits > 8 {
        return Err(Error::Decode {
            file: path.display().to_string(),
            msg: format!(
                "a {}-bit label image: reducing it to 8 bits (Caffe, through OpenCV, keeps the high byte; DICOM is \
                 windowed) would change its class indices; save labels as 8-bit images",
                info.bits
            ),
        });
    }
    Ok(img)
}

/// Whether `path` and `len` are those of a JSRT `.IMG` file.
pub fn is_jsrt(path: &Path, len: usize) -> bool {
    len == JSRT_BYTES && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("img"))
}

/// Decodes the contents of an image file; `path` names it in errors and tells a JSRT `.IMG`
/// by its extension.
pub fn decode_image(bytes: &[u8], path: &Path, mode: ColorMode) -> Result<(Image8, SourceInfo)> {
    if is_jsrt(path, bytes.len()) {
        let gray = decode_jsrt(bytes);
        let img = Image8 { width: JSRT_SIDE, height: JSRT_SIDE, channels: 1, data: gray };
        return Ok((to_mode(img, mode), SourceInfo { bits: 12, color: false }));
    }
    let file = || path.display().to_string();
    if crate::io::dicom::is_dicom(bytes, path) {
        let d = crate::io::dicom::decode(bytes).map_err(|msg| Error::Decode { file: file(), msg: format!("DICOM: {msg}") })?;
        let info = SourceInfo { bits: d.bits, color: d.channels == 3 };
        let img = if d.channels == 1 {
            to_mode(Image8 { width: d.width, height: d.height, channels: 1, data: d.data }, mode)
        } else {
            rgb_in_mode(d.width, d.height, d.data, mode, false)
        };
        return Ok((img, info));
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Decode { file: file(), msg: format!("cannot read: {e}") })?;
    let Some(format) = reader.format() else {
        let hint = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("img")) {
            format!(" (a JSRT .IMG file has exactly {JSRT_BYTES} bytes; this one has {})", bytes.len())
        } else {
            String::new()
        };
        return Err(Error::Decode { file: file(), msg: format!("not an image crema can read (PNG, JPEG, BMP, GIF, TIFF, PNM, DICOM){hint}") });
    };
    let png = format == image::ImageFormat::Png;
    let decoded = reader.decode().map_err(|e| Error::Decode { file: file(), msg: format!("corrupt or unsupported {format:?} image: {e}") })?;
    let color_type = decoded.color();
    let info = SourceInfo { bits: (color_type.bits_per_pixel() / color_type.channel_count() as u16) as u8, color: color_type.has_color() };
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let px = samples8(decoded).ok_or_else(|| Error::Decode {
        file: file(),
        msg: format!("{color_type:?} images are not supported (8- or 16-bit gray or colour only)"),
    })?;
    let img = match (px, mode) {
        (Px::Gray(g), _) => to_mode(Image8 { width: w, height: h, channels: 1, data: g }, mode),
        (Px::Rgb(rgb), _) => rgb_in_mode(w, h, rgb, mode, png),
    };
    Ok((img, info))
}

/// Interleaved RGB pixels as `mode` gives them: BGR, or gray by libpng's formula (`png`) or
/// OpenCV's.
fn rgb_in_mode(width: usize, height: usize, rgb: Vec<u8>, mode: ColorMode, png: bool) -> Image8 {
    match mode {
        ColorMode::Bgr => {
            let mut data = rgb;
            data.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
            Image8 { width, height, channels: 3, data }
        }
        ColorMode::Gray => {
            let data = rgb.chunks_exact(3).map(|p| if png { gray_libpng(p[0], p[1], p[2]) } else { gray_opencv(p[0], p[1], p[2]) }).collect();
            Image8 { width, height, channels: 1, data }
        }
    }
}

/// JSRT samples (big-endian, 12-bit, inverted) to display-convention 8-bit gray.
fn decode_jsrt(bytes: &[u8]) -> Vec<u8> {
    bytes.chunks_exact(2).map(|b| ((4095 - u16::from_be_bytes([b[0], b[1]]).min(4095)) >> 4) as u8).collect()
}

/// Gray or RGB samples, 8-bit, alpha dropped.
enum Px {
    Gray(Vec<u8>),
    Rgb(Vec<u8>),
}

fn samples8(img: image::DynamicImage) -> Option<Px> {
    use image::DynamicImage as D;
    let hi = |v: u16| (v >> 8) as u8;
    Some(match img {
        D::ImageLuma8(b) => Px::Gray(b.into_raw()),
        D::ImageLumaA8(b) => Px::Gray(b.into_raw().chunks_exact(2).map(|p| p[0]).collect()),
        D::ImageRgb8(b) => Px::Rgb(b.into_raw()),
        D::ImageRgba8(b) => Px::Rgb(b.into_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect()),
        D::ImageLuma16(b) => Px::Gray(b.into_raw().into_iter().map(hi).collect()),
        D::ImageLumaA16(b) => Px::Gray(b.into_raw().chunks_exact(2).map(|p| hi(p[0])).collect()),
        D::ImageRgb16(b) => Px::Rgb(b.into_raw().into_iter().map(hi).collect()),
        D::ImageRgba16(b) => Px::Rgb(b.into_raw().chunks_exact(4).flat_map(|p| [hi(p[0]), hi(p[1]), hi(p[2])]).collect()),
        _ => return None,
    })
}

/// A gray image in `mode`.
fn to_mode(gray: Image8, mode: ColorMode) -> Image8 {
    match mode {
        ColorMode::Gray => gray,
        ColorMode::Bgr => Image8 {
            width: gray.width,
            height: gray.height,
            channels: 3,
            data: gray.data.iter().flat_map(|&v| [v, v, v]).collect(),
        },
    }
}

/// libpng's `png_set_rgb_to_gray(png, 1, 0.299, 0.587)` on 8-bit samples: coefficients
/// 29900 * 32768 / 100000 = 9797 and 58700 * 32768 / 100000 = 19234 (truncated), blue the rest
/// of 32768; the sum is truncated.
pub fn gray_libpng(r: u8, g: u8, b: u8) -> u8 {
    ((9797 * r as u32 + 19234 * g as u32 + 3737 * b as u32) >> 15) as u8
}

/// OpenCV's RGB-to-gray for 8-bit images (`cvtColor` and the non-PNG decoders): 14-bit fixed
/// point, rounded.
pub fn gray_opencv(r: u8, g: u8, b: u8) -> u8 {
    ((4899 * r as u32 + 9617 * g as u32 + 1868 * b as u32 + 8192) >> 14) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: image::DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn colour_png_comes_out_bgr_and_gray_by_libpng() {
        let rgb = image::RgbImage::from_raw(2, 1, vec![10, 20, 30, 200, 100, 50]).unwrap();
        let bytes = png(image::DynamicImage::ImageRgb8(rgb));
        let p = Path::new("x.png");
        let (bgr, info) = decode_image(&bytes, p, ColorMode::Bgr).unwrap();
        assert_eq!(bgr.data, [30, 20, 10, 50, 100, 200]);
        assert_eq!(info, SourceInfo { bits: 8, color: true });
        let (gray, _) = decode_image(&bytes, p, ColorMode::Gray).unwrap();
        assert_eq!(gray.data, [gray_libpng(10, 20, 30), gray_libpng(200, 100, 50)]);
        // 0.299*10 + 0.587*20 + 0.114*30 = 18.2; 0.299*200 + 0.587*100 + 0.114*50 = 124.2
        assert_eq!(gray.data, [18, 124]);
    }

    #[test]
    fn gray_formulas_keep_gray_pixels_exact() {
        for v in 0..=255u8 {
            assert_eq!(gray_libpng(v, v, v), v);
            assert_eq!(gray_opencv(v, v, v), v);
        }
    }

    #[test]
    fn sixteen_bit_keeps_the_high_byte() {
        let g = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 1, vec![0x0000u16, 0x12ff, 0xff00]).unwrap();
        let bytes = png(image::DynamicImage::ImageLuma16(g));
        let (img, info) = decode_image(&bytes, Path::new("a.png"), ColorMode::Gray).unwrap();
        assert_eq!(img.data, [0x00, 0x12, 0xff]);
        assert_eq!(info.bits, 16);
        let (img, _) = decode_image(&bytes, Path::new("a.png"), ColorMode::Bgr).unwrap();
        assert_eq!(img.data, [0, 0, 0, 0x12, 0x12, 0x12, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn jsrt_is_read_inverted_from_twelve_bits() {
        let mut bytes = vec![0u8; JSRT_BYTES];
        let put = |b: &mut [u8], i: usize, v: u16| b[2 * i..2 * i + 2].copy_from_slice(&v.to_be_bytes());
        put(&mut bytes, 0, 0);
        put(&mut bytes, 1, 4095);
        put(&mut bytes, 2, 2048);
        put(&mut bytes, JSRT_SIDE, 16); // first pixel of the second row
        put(&mut bytes, 3, 60000); // out of 12-bit range: clamps
        let (img, info) = decode_image(&bytes, Path::new("JPCLN001.IMG"), ColorMode::Gray).unwrap();
        assert_eq!((img.width, img.height, info.bits), (2048, 2048, 12));
        assert_eq!(&img.data[..4], [255, 0, 127, 0]);
        assert_eq!(img.data[JSRT_SIDE], 254);
        // Lower-case extension too; any other size is not JSRT.
        assert!(decode_image(&bytes, Path::new("x.img"), ColorMode::Gray).is_ok());
        let err = decode_image(&bytes[..100], Path::new("x.IMG"), ColorMode::Gray).unwrap_err().to_string();
        assert!(err.contains("x.IMG") && err.contains("8388608"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let err = decode_image(b"not an image at all", Path::new("dir/bad.png"), ColorMode::Gray).unwrap_err().to_string();
        assert!(err.starts_with("dir/bad.png: "), "{err}");
        let mut truncated = png(image::DynamicImage::ImageLuma8(image::GrayImage::new(64, 64)));
        truncated.truncate(truncated.len() / 2);
        let err = decode_image(&truncated, Path::new("cut.png"), ColorMode::Gray).unwrap_err().to_string();
        assert!(err.starts_with("cut.png: corrupt"), "{err}");
    }

    #[test]
    fn every_format_decodes_by_content() {
        let rgb = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 100]));
        let img = image::DynamicImage::ImageRgb8(rgb.clone());
        for (format, lossy) in [
            (image::ImageFormat::Bmp, false),
            (image::ImageFormat::Tiff, false),
            (image::ImageFormat::Pnm, false),
            (image::ImageFormat::Gif, true),
            (image::ImageFormat::Jpeg, true),
        ] {
            let mut bytes = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut bytes), format).unwrap();
            // The extension is wrong on purpose: formats are told by content, as OpenCV does.
            let (bgr, info) = decode_image(&bytes, Path::new("x.png"), ColorMode::Bgr).unwrap();
            assert_eq!((bgr.width, bgr.height, bgr.channels, info.color), (8, 8, 3, true), "{format:?}");
            let want: Vec<u8> = rgb.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect();
            let worst = bgr.data.iter().zip(&want).map(|(&a, &b)| (a as i32 - b as i32).abs()).max().unwrap();
            assert!(if lossy { worst <= 40 } else { worst == 0 }, "{format:?}: off by {worst}");
            // Gray from colour by OpenCV's formula for formats other than PNG.
            let (gray, _) = decode_image(&bytes, Path::new("x"), ColorMode::Gray).unwrap();
            if !lossy {
                assert_eq!(gray.data[9], gray_opencv(30, 30, 100), "{format:?}");
            }
        }
    }

    #[test]
    fn mirror_and_crop() {
        let img = Image8 { width: 3, height: 2, channels: 1, data: vec![1, 2, 3, 4, 5, 6] };
        assert_eq!(img.mirrored().data, [3, 2, 1, 6, 5, 4]);
        assert_eq!(img.cropped(1, 1, 2, 1).data, [5, 6]);
        let c = Image8 { width: 2, height: 1, channels: 3, data: vec![1, 2, 3, 4, 5, 6] };
        assert_eq!(c.mirrored().data, [4, 5, 6, 1, 2, 3]);
    }
}
