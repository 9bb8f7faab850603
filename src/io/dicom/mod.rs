//! DICOM radiographs, read as a viewer displays them, without a DICOM library.
//!
//! Chest X-rays leave a hospital as DICOM files. crema reads their first frame into 8-bit
//! pixels, so that `crema segment`, `crema evaluate`, `crema dataset` and the image data layers
//! take them where they take a PNG.
//!
//! **Files.** Part-10 files (preamble, "DICM", file meta group) and bare data sets (no
//! preamble, as ACR-NEMA-era files). Transfer syntaxes: implicit and explicit VR little endian,
//! explicit VR big endian, deflated explicit VR little endian, RLE Lossless, JPEG lossless
//! (process 14, any predictor, and SV1), JPEG baseline 8-bit, JPEG 2000 (lossless and lossy),
//! JPEG-LS (lossless and near-lossless), 12-bit JPEG (Extended, gray). High-Throughput JPEG
//! 2000, 12-bit colour JPEG and video are refused with a message naming a converter. Gray (MONOCHROME1, MONOCHROME2) of 8 to 32 bits allocated, signed or not, and
//! 8-bit colour (RGB, YBR_FULL, and YBR_FULL_422 in JPEG); palette colour is refused.
//!
//! **From stored values to 8 bits** (DICOM's grayscale pipeline, PS3.3 C.11, then PS3.4's
//! display mapping to 0..255), in this order:
//! 1. the stored value: Bits Stored bits below High Bit, sign-extended when Pixel
//!    Representation is 1;
//! 2. the modality transform: the Modality LUT Sequence's first LUT if there is one, else
//!    `v * RescaleSlope + RescaleIntercept` if either is present, else `v`;
//! 3. the VOI transform to 0..255: the VOI LUT Sequence's first LUT if there is one (its
//!    output scaled from its bits to 8); else the first Window Center and Width, by the VOI LUT
//!    Function (LINEAR, the default, LINEAR_EXACT or SIGMOID, PS3.3 C.11.2.1.2); else, for 8-bit
//!    unsigned data without rescale, the values themselves; else the frame's own minimum and
//!    maximum stretched to 0 and 255 (as viewers' automatic window does);
//! 4. rounding to the nearest integer, clamped to 0..255; MONOCHROME1 is then inverted, so that
//!    air is dark and bone bright, as in the PNG radiographs of public datasets.
//!
//! Colour is not windowed; YBR_FULL becomes RGB by PS3.3 C.7.6.3.1.2.
//!
//! Every length, offset and count is checked against the file; an image's size is checked
//! against its pixel data before anything is allocated for it, and a JPEG 2000 or JPEG
//! stream must agree with the header's rows, columns and samples.

mod parse;
mod jpeg_common;
mod rle;
pub mod jpeg_lossless;
pub mod jpeg_ls;
pub mod jpeg12;

pub use parse::Syntax;
use parse::{Header, Lut, PixelData, Res};

/// A decoded DICOM image, ready for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Displayed {
    /// Columns and rows.
    pub width: usize,
    pub height: usize,
    /// 1 (gray) or 3 (colour, **R, G, B** interleaved).
    pub channels: usize,
    /// `height * width * channels` bytes.
    pub data: Vec<u8>,
    /// Bits stored per sample in the file.
    pub bits: u8,
}

/// Whether `bytes` are a DICOM file: "DICM" after the preamble, or, for a file named `.dcm`,
/// `.dicom` or `.dic`, or with no extension, a bare data set starting with a group-0008
/// element.
pub fn is_dicom(bytes: &[u8], path: &std::path::Path) -> bool {
    if parse::has_preamble(bytes) {
        return true;
    }
    let named = match path.extension().and_then(|e| e.to_str()) {
        None => true,
        Some(e) => ["dcm", "dicom", "dic"].iter().any(|d| e.eq_ignore_ascii_case(d)),
    };
    named && parse::looks_bare(bytes)
}

/// Whether the file at `path` is a Part-10 DICOM file by its first 132 bytes (a DICOMDIR
/// index, which holds no image, is not). False when it cannot be read.
pub fn is_dicom_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    if path.file_name().is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR")) {
        return false;
    }
    let mut head = [0u8; 132];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && parse::has_preamble(&head)
}

/// Decodes the first frame of a DICOM file for display (see the module doc). Errors say what
/// is wrong; the caller names the file.
pub fn decode(bytes: &[u8]) -> Res<Displayed> {
    let parsed = parse::parse(bytes)?;
    let h = &parsed.header;
    let frame = first_frame(h, &parsed.bytes)?;
    let data = match frame {
        Samples::Gray(values) => gray_to_8bit(h, &values)?,
        Samples::Rgb(rgb) => rgb,
    };
    let channels = if h.samples == 3 { 3 } else { 1 };
    Ok(Displayed { width: h.cols, height: h.rows, channels, data, bits: h.bits_stored.min(255) as u8 })
}

/// Frame 0 of a DICOM image before any display transform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Values {
    /// Columns and rows.
    pub width: usize,
    pub height: usize,
    /// 1 (gray) or 3 (colour, **R, G, B** interleaved).
    pub channels: usize,
    /// Gray: the stored values (sign-extended); colour: 0..255 after YBR_FULL to RGB.
    pub values: Vec<i32>,
}

/// Decodes the first frame of a DICOM file to its stored values, without the modality and VOI
/// transforms (for analysis, and to check decoders value for value).
pub fn decode_values(bytes: &[u8]) -> Res<Values> {
    let parsed = parse::parse(bytes)?;
    let h = &parsed.header;
    let values = match first_frame(h, &parsed.bytes)? {
        Samples::Gray(v) => v,
        Samples::Rgb(rgb) => rgb.into_iter().map(i32::from).collect(),
    };
    Ok(Values { width: h.cols, height: h.rows, channels: h.samples, values })
}

/// Frame 0's samples: gray stored values, or 8-bit RGB.
enum Samples {
    Gray(Vec<i32>),
    Rgb(Vec<u8>),
}

fn first_frame(h: &Header, bytes: &[u8]) -> Res<Samples> {
    let pixels = h.rows.checked_mul(h.cols).ok_or("image size overflows")?;
    if h.samples == 3 {
        if h.bits_allocated != 8 {
            return Err(format!("{}-bit colour (8-bit colour can be read)", h.bits_allocated));
        }
        match h.photometric.as_str() {
            "RGB" | "YBR_FULL" => {}
            "YBR_FULL_422" if h.syntax == Syntax::JpegBaseline => {}
            // JPEG 2000's colour transforms, which its decoder undoes.
            "YBR_RCT" | "YBR_ICT" if h.syntax == Syntax::Jpeg2000 => {}
            p => return Err(format!("colour photometric interpretation {p} (RGB and YBR_FULL can be read)")),
        }
    } else {
        match h.photometric.as_str() {
            "MONOCHROME1" | "MONOCHROME2" => {}
            "PALETTE COLOR" => return Err("palette colour images are not radiographs crema reads; convert to RGB".into()),
            p => return Err(format!("photometric interpretation {p} with one sample per pixel")),
        }
        if h.bits_stored > 31 && !h.signed {
            return Err(format!("{}-bit unsigned samples (at most 31 bits can be read)", h.bits_stored));
        }
    }
    let count = pixels.checked_mul(h.samples).ok_or("image size overflows")?;
    match &h.pixels {
        PixelData::Native { range, ow } => {
            let bps = h.bits_allocated as usize / 8;
            let need = count.checked_mul(bps).ok_or("image size overflows")?;
            if range.len() < need {
                return Err(format!(
                    "pixel data holds {} bytes; one frame of {} x {} x {} samples of {} bits needs {need}",
                    range.len(),
                    h.rows,
                    h.cols,
                    h.samples,
                    h.bits_allocated
                ));
            }
            let be = h.syntax == Syntax::ExplicitBe;
            let mut raw = std::borrow::Cow::Borrowed(&bytes[range.start..range.start + need]);
            if be && *ow && bps == 1 {
                // 8-bit samples in OW words: a big-endian file swaps each pair.
                let mut swapped = raw.into_owned();
                swapped.chunks_exact_mut(2).for_each(|p| p.swap(0, 1));
                raw = std::borrow::Cow::Owned(swapped);
            }
            let word = |c: &[u8]| -> u32 {
                match (c.len(), be) {
                    (1, _) => c[0] as u32,
                    (2, false) => u16::from_le_bytes([c[0], c[1]]) as u32,
                    (2, true) => u16::from_be_bytes([c[0], c[1]]) as u32,
                    (_, false) => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    (_, true) => u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                }
            };
            if h.samples == 3 {
                return Ok(Samples::Rgb(interleave(&raw, pixels, h.planar == 1, &h.photometric)));
            }
            Ok(Samples::Gray(raw.chunks_exact(bps).map(|c| stored(h, word(c))).collect()))
        }
        PixelData::Fragments { offsets, fragments } => {
            let data = frame_zero(h, bytes, offsets, fragments)?;
            encapsulated(h, &data, pixels, count)
        }
    }
}

/// The stored value of a native (or RLE) sample: Bits Stored bits ending at High Bit,
/// sign-extended for signed data.
fn stored(h: &Header, raw: u32) -> i32 {
    codec(h, ((raw as u64) >> (h.high_bit + 1 - h.bits_stored)) as u32)
}

/// The stored value of a sample a JPEG decoder gave (codecs align samples at bit 0): its low
/// Bits Stored bits, sign-extended for signed data.
fn codec(h: &Header, v: u32) -> i32 {
    let v = v as u64 & ((1u64 << h.bits_stored) - 1);
    if h.signed && v >> (h.bits_stored - 1) & 1 == 1 { (v as i64 - (1i64 << h.bits_stored)) as i32 } else { v as i32 }
}

/// 8-bit colour samples as interleaved RGB (YBR_FULL converted).
fn interleave(raw: &[u8], pixels: usize, planar: bool, photometric: &str) -> Vec<u8> {
    let mut rgb: Vec<u8> = if planar {
        (0..pixels).flat_map(|i| [raw[i], raw[pixels + i], raw[2 * pixels + i]]).collect()
    } else {
        raw[..3 * pixels].to_vec()
    };
    if photometric == "YBR_FULL" {
        for p in rgb.chunks_exact_mut(3) {
            let (y, cb, cr) = (p[0] as f64, p[1] as f64 - 128.0, p[2] as f64 - 128.0);
            let q = |x: f64| (x + 0.5).floor().clamp(0.0, 255.0) as u8;
            p[0] = q(y + 1.402 * cr);
            p[1] = q(y - 0.344136 * cb - 0.714136 * cr);
            p[2] = q(y + 1.772 * cb);
        }
    }
    rgb
}

/// The bytes of frame 0 of encapsulated pixel data.
fn frame_zero(h: &Header, bytes: &[u8], offsets: &[u32], fragments: &[std::ops::Range<usize>]) -> Res<Vec<u8>> {
    if fragments.is_empty() {
        return Err("encapsulated pixel data without fragments".into());
    }
    let take: usize = if h.frames == 1 {
        fragments.len()
    } else if offsets.len() >= 2 {
        // Fragments whose item starts before frame 1's offset (measured from the first
        // fragment's item tag) belong to frame 0.
        let mut at = 0u64;
        let mut n = 0;
        for f in fragments {
            if at >= offsets[1] as u64 {
                break;
            }
            at += 8 + f.len() as u64;
            n += 1;
        }
        n.max(1)
    } else if fragments.len() == h.frames || h.syntax == Syntax::Rle {
        1
    } else {
        // No offset table: a JPEG frame ends at its EOI marker.
        let mut n = 0;
        for f in fragments {
            n += 1;
            let tail = &bytes[f.clone()];
            let tail = tail.strip_suffix(&[0]).unwrap_or(tail);
            if tail.ends_with(&[0xFF, 0xD9]) {
                break;
            }
        }
        n
    };
    let total: usize = fragments[..take].iter().map(|f| f.len()).sum();
    let mut out = Vec::with_capacity(total);
    for f in &fragments[..take] {
        out.extend_from_slice(&bytes[f.clone()]);
    }
    Ok(out)
}

/// Decodes a compressed frame.
fn encapsulated(h: &Header, data: &[u8], pixels: usize, count: usize) -> Res<Samples> {
    // `native`: the samples are laid out as native ones (RLE), not aligned at bit 0.
    let gray_or_rgb = |values: Vec<u32>, native: bool| -> Samples {
        if h.samples == 3 {
            let rgb: Vec<u8> = values.iter().map(|&v| v.min(255) as u8).collect();
            Samples::Rgb(if h.photometric == "YBR_FULL" { interleave(&rgb, pixels, false, "YBR_FULL") } else { rgb })
        } else {
            Samples::Gray(values.into_iter().map(|v| if native { stored(h, v) } else { codec(h, v) }).collect())
        }
    };
    let mismatch = |what: &str, w: usize, ht: usize, c: usize| {
        format!("the {what} stream holds {w} x {ht} pixels of {c} samples; the header says {} x {} of {}", h.cols, h.rows, h.samples)
    };
    match h.syntax {
        Syntax::Rle => {
            let bps = h.bits_allocated as usize / 8;
            let planes = rle::decode(data, pixels, h.samples * bps)?;
            let mut values = vec![0u32; count];
            for s in 0..h.samples {
                for b in 0..bps {
                    let plane = &planes[s * bps + b];
                    let shift = 8 * (bps - 1 - b);
                    for (i, &byte) in plane.iter().enumerate() {
                        values[i * h.samples + s] |= (byte as u32) << shift;
                    }
                }
            }
            Ok(gray_or_rgb(values, true))
        }
        Syntax::JpegLossless => {
            // Every sample takes at least one bit of Huffman code.
            let f = jpeg_lossless::decode(data, count.min(data.len().saturating_mul(8)))?;
            if (f.width, f.height, f.components) != (h.cols, h.rows, h.samples) {
                return Err(mismatch("JPEG lossless", f.width, f.height, f.components));
            }
            Ok(gray_or_rgb(f.samples.into_iter().map(u32::from).collect(), false))
        }
        Syntax::JpegLs => {
            // Runs code up to 32768 samples a bit, so the data's length bounds little: the
            // frame is bounded absolutely, as JPEG 2000's is.
            let f = jpeg_ls::decode(data, count.min(MAX_JPEG_LS_SAMPLES))?;
            if (f.width, f.height, f.components) != (h.cols, h.rows, h.samples) {
                return Err(mismatch("JPEG-LS", f.width, f.height, f.components));
            }
            Ok(gray_or_rgb(f.samples.into_iter().map(u32::from).collect(), false))
        }
        // 12-bit JPEG (Extended, process 4), which the `image` crate does not decode.
        Syntax::JpegBaseline if jpeg12::precision(data) == Some(12) => {
            if h.samples != 1 {
                return Err("12-bit colour JPEG is not supported; convert the file with `gdcmconv --raw`".into());
            }
            // Every 8x8 block takes at least 2 bits of Huffman code: 256 samples a byte. (Not
            // bounded by the header's size, so that a frame of another size is named as such.)
            let f = jpeg12::decode(data, data.len().saturating_mul(256).min(count.max(MAX_JPEG2000_SAMPLES)))?;
            if (f.width, f.height, f.components) != (h.cols, h.rows, h.samples) {
                return Err(mismatch("12-bit JPEG", f.width, f.height, f.components));
            }
            Ok(gray_or_rgb(f.samples.into_iter().map(u32::from).collect(), false))
        }
        Syntax::JpegBaseline => {
            let fail = |e: image::ImageError| format!("JPEG pixel data does not decode: {e}");
            let reader = || image::ImageReader::with_format(std::io::Cursor::new(data), image::ImageFormat::Jpeg);
            // The stream's size must be the header's before anything is decoded, and decoding
            // may then take no more memory than that size needs.
            let (w, ht) = reader().into_dimensions().map_err(fail)?;
            if (w as usize, ht as usize) != (h.cols, h.rows) {
                return Err(mismatch("JPEG", w as usize, ht as usize, h.samples));
            }
            let mut r = reader();
            let mut limits = image::Limits::default();
            limits.max_alloc = Some(count as u64 * 4 + (1 << 20));
            r.limits(limits);
            let img = r.decode().map_err(fail)?;
            let (w, ht) = (img.width() as usize, img.height() as usize);
            let c = img.color().channel_count() as usize;
            let values: Vec<u8> = if h.samples == 3 { img.into_rgb8().into_raw() } else { img.into_luma8().into_raw() };
            if (w, ht) != (h.cols, h.rows) || (c >= 3) != (h.samples == 3) {
                return Err(mismatch("JPEG", w, ht, c));
            }
            Ok(match h.samples {
                3 => Samples::Rgb(values),
                _ => Samples::Gray(values.into_iter().map(|v| codec(h, v as u32)).collect()),
            })
        }
        Syntax::Jpeg2000 => jpeg2000(h, data, count, &mismatch),
        _ => Err("native pixel data in fragments".into()),
    }
}

/// The most samples of a JPEG 2000 frame crema decodes (and of a 12-bit JPEG frame whose size
/// is not the header's, which is then named in the error).
const MAX_JPEG2000_SAMPLES: usize = 1 << 25;

/// The most samples of a JPEG-LS frame crema decodes (above any radiograph, as for JPEG 2000;
/// the decoder needs 2 bytes a sample, and the values 4 more).
const MAX_JPEG_LS_SAMPLES: usize = 1 << 25;

fn jpeg2000(h: &Header, data: &[u8], count: usize, mismatch: &dyn Fn(&str, usize, usize, usize) -> String) -> Res<Samples> {
    use hayro_jpeg2000::{DecodeSettings, DecoderContext, Image};
    let settings = DecodeSettings { resolve_palette_indices: false, strict: false, target_resolution: None };
    let img = Image::new(data, &settings).map_err(|e| format!("JPEG 2000 pixel data does not decode: {e}"))?;
    let (w, ht) = (img.width() as usize, img.height() as usize);
    if (w, ht) != (h.cols, h.rows) {
        return Err(mismatch("JPEG 2000", w, ht, h.samples));
    }
    // JPEG 2000 has no bound on how far a stream expands (a blank image takes a few bytes), so
    // frames are bounded absolutely, above any radiograph (a 43 cm detector at 0.1 mm is 18.5
    // megapixels); the decoder needs about 16 bytes a sample.
    if count > MAX_JPEG2000_SAMPLES {
        return Err(format!("a JPEG 2000 frame of {w} x {ht} x {} samples, more than the {MAX_JPEG2000_SAMPLES} crema decodes", h.samples));
    }
    let mut ctx = DecoderContext::default();
    let decoded = img.decode(&mut ctx).map_err(|e| format!("JPEG 2000 pixel data does not decode: {e}"))?;
    let comps = decoded.components();
    if comps.len() != h.samples || comps.iter().any(|c| c.samples().len() != count / h.samples) {
        let n = comps.first().map_or(0, |c| c.samples().len());
        return Err(format!("the JPEG 2000 stream holds {} components of {n} samples; the header says {} of {}", comps.len(), h.samples, count / h.samples));
    }
    if h.samples == 3 {
        let mut rgb = vec![0u8; count];
        for (k, c) in comps.iter().enumerate() {
            let top = ((1u64 << c.bit_depth().min(32)) - 1) as f32;
            for (i, &v) in c.samples().iter().enumerate() {
                // Components of other depths are scaled to 8 bits.
                rgb[i * 3 + k] = ((v.clamp(0.0, top) * 255.0 / top) + 0.5).floor() as u8;
            }
        }
        return Ok(Samples::Rgb(if h.photometric == "YBR_FULL" { interleave(&rgb, count / 3, false, "YBR_FULL") } else { rgb }));
    }
    let c = &comps[0];
    let depth = c.bit_depth().clamp(1, 31) as u32;
    let top = ((1u64 << depth) - 1) as f32;
    // The decoder adds the DC level shift of unsigned data to every component, signed or not;
    // a component the codestream marks signed comes back by taking it away again. The header's
    // Pixel Representation then decides how the bits read (as pydicom corrects files whose two
    // disagree).
    let shift = if j2k_first_signed(data) { 1i64 << (depth - 1) } else { 0 };
    Ok(Samples::Gray(c.samples().iter().map(|&v| codec(h, ((v.clamp(0.0, top) + 0.5).floor() as i64 - shift) as u32)).collect()))
}

/// Whether the first component of a JPEG 2000 codestream (bare, or inside a JP2 file) is
/// signed, by its SIZ marker's Ssiz byte.
fn j2k_first_signed(data: &[u8]) -> bool {
    let start = data.windows(4).take(4096).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51]);
    start.and_then(|s| data.get(s + 42)).is_some_and(|ssiz| ssiz & 0x80 != 0)
}

/// Gray stored values to display bytes by the modality and VOI transforms.
fn gray_to_8bit(h: &Header, values: &[i32]) -> Res<Vec<u8>> {
    let (Some(&lo), Some(&hi)) = (values.iter().min(), values.iter().max()) else {
        return Ok(Vec::new());
    };
    let modality = |v: i32| -> f64 {
        match (&h.modality_lut, h.rescale) {
            (Some(lut), _) => lut_value(lut, v as f64) as f64,
            (None, Some((slope, intercept))) => v as f64 * slope + intercept,
            (None, None) => v as f64,
        }
    };
    // The range of the modality values (a modality LUT need not be monotonic), padding (the
    // stored values Pixel Padding Value marks as outside the image) left out.
    let padded = |v: i32| h.padding.is_some_and(|(a, b)| (a..=b).contains(&(v as i64)));
    let (m_lo, m_hi) = if h.modality_lut.is_some() || h.padding.is_some() {
        values.iter().filter(|&&v| !padded(v)).map(|&v| modality(v)).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), m| (a.min(m), b.max(m)))
    } else {
        let (a, b) = (modality(lo), modality(hi));
        (a.min(b), a.max(b))
    };
    let identity = h.bits_stored == 8 && !h.signed && h.rescale.is_none() && h.modality_lut.is_none();
    let voi: Box<dyn Fn(f64) -> f64> = if let Some(lut) = &h.voi_lut {
        let top = ((1u64 << lut.bits) - 1) as f64;
        let lut = lut.clone();
        Box::new(move |m| lut_value(&lut, m) as f64 * 255.0 / top)
    } else if let Some((c, w)) = h.window {
        match h.voi_function.as_str() {
            "" | "LINEAR" => {
                Box::new(move |m| {
                    if m <= c - 0.5 - (w - 1.0) / 2.0 {
                        0.0
                    } else if m > c - 0.5 + (w - 1.0) / 2.0 {
                        // (A width of 1 leaves nothing between: a threshold.)
                        255.0
                    } else {
                        ((m - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
                    }
                })
            }
            "LINEAR_EXACT" => Box::new(move |m| {
                if m <= c - w / 2.0 {
                    0.0
                } else if m > c + w / 2.0 {
                    255.0
                } else {
                    ((m - c) / w + 0.5) * 255.0
                }
            }),
            "SIGMOID" => Box::new(move |m| 255.0 / (1.0 + (-4.0 * (m - c) / w).exp())),
            f => return Err(format!("VOI LUT Function {f} (LINEAR, LINEAR_EXACT and SIGMOID can be read)")),
        }
    } else if identity {
        Box::new(|m| m)
    } else if m_hi > m_lo {
        // (Padding outside the range clamps to 0 or 255.)
        Box::new(move |m| (m - m_lo) / (m_hi - m_lo) * 255.0)
    } else {
        Box::new(|_| 0.0)
    };
    // MONOCHROME1, or a Presentation LUT Shape of INVERSE (which accompanies MONOCHROME1 in DX
    // files, one inversion, not two).
    let invert = h.photometric == "MONOCHROME1" || h.presentation_inverse;
    let out = |v: i32| -> u8 {
        let y = (voi(modality(v)) + 0.5).floor().clamp(0.0, 255.0) as u8;
        if invert { 255 - y } else { y }
    };
    // One evaluation per distinct stored value where the range is narrower than the image.
    let span = (hi as i64 - lo as i64) as usize;
    if span < values.len() {
        let table: Vec<u8> = (0..=span).map(|d| out((lo as i64 + d as i64) as i32)).collect();
        Ok(values.iter().map(|&v| table[(v as i64 - lo as i64) as usize]).collect())
    } else {
        Ok(values.iter().map(|&v| out(v)).collect())
    }
}

/// A LUT's output for input `m`: the first entry below its range, the last above.
fn lut_value(lut: &Lut, m: f64) -> u32 {
    let i = (m.floor() - lut.first as f64).clamp(0.0, (lut.data.len() - 1) as f64) as usize;
    lut.data[i]
}

#[cfg(test)]
mod tests;
