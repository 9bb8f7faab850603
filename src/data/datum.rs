//! Caffe's `Datum` records (what Data layers read from a database) as images: raw records hold
//! `channels x height x width` bytes, channel-major; encoded ones an image file.

use super::decode::{decode_image, ColorMode, Image8};
use crate::proto::Datum;
use crate::{Error, Result};
use prost::Message;
use std::path::Path;

/// A Datum's values: 8-bit pixels (raw, or decoded from an encoded image), or the floats of
/// `float_data` (what pycaffe's `array_to_datum` writes for any array not of uint8),
/// channel-major.
#[derive(Clone, Debug, PartialEq)]
pub enum DatumValues {
    /// 8-bit pixels.
    Pixels(Image8),
    /// `channels x height x width` floats, channel-major.
    Floats { shape: [usize; 3], data: Vec<f32> },
}

impl DatumValues {
    /// Channels, height, width.
    pub fn shape(&self) -> [usize; 3] {
        match self {
            DatumValues::Pixels(img) => [img.channels, img.height, img.width],
            DatumValues::Floats { shape, .. } => *shape,
        }
    }

    /// The values as f32, channel-major.
    pub fn chw(&self) -> Vec<f32> {
        match self {
            DatumValues::Pixels(img) => channel_major(img).into_iter().map(f32::from).collect(),
            DatumValues::Floats { data, .. } => data.clone(),
        }
    }
}

/// The values and label of the serialized Datum `bytes`; `name` names the record in errors.
/// An encoded record is decoded as `force` asks, else with its own channels (OpenCV's native
/// decoding: a gray file stays one channel), as Caffe's DataTransformer does. A raw record's
/// 8-bit `data` is used when present, else its `float_data`, as Caffe's DataTransformer does.
pub fn datum_values(bytes: &[u8], name: &Path, force: Option<ColorMode>) -> Result<(DatumValues, i32)> {
    let bad = |msg: String| Error::Decode { file: name.display().to_string(), msg };
    let d = Datum::decode(bytes).map_err(|e| bad(format!("not a Caffe Datum: {e}")))?;
    if d.encoded() {
        let (img, info) = decode_image(d.data(), name, force.unwrap_or(ColorMode::Bgr))?;
        let img = match force {
            None if !info.color => Image8 { channels: 1, data: img.data.iter().step_by(3).copied().collect(), ..img },
            _ => img,
        };
        return Ok((DatumValues::Pixels(img), d.label()));
    }
    let dims = [d.channels(), d.height(), d.width()];
    if dims.iter().any(|&v| v <= 0) {
        return Err(bad(format!("a Datum of {}x{}x{} (channels x height x width)", dims[0], dims[1], dims[2])));
    }
    let [c, h, w] = dims.map(|v| v as usize);
    let count = c.checked_mul(h).and_then(|v| v.checked_mul(w));
    if d.data().is_empty() && !d.float_data.is_empty() {
        if count != Some(d.float_data.len()) {
            return Err(bad(format!("a {c}x{h}x{w} Datum holds {} values of float_data", d.float_data.len())));
        }
        let label = d.label();
        return Ok((DatumValues::Floats { shape: [c, h, w], data: d.float_data }, label));
    }
    if count != Some(d.data().len()) {
        return Err(bad(format!("a {c}x{h}x{w} Datum holds {} bytes of data", d.data().len())));
    }
    let mut img = Image8::new(w, h, c);
    for (ch, plane) in d.data().chunks_exact(h * w).enumerate() {
        for (px, &v) in plane.iter().enumerate() {
            img.data[px * c + ch] = v;
        }
    }
    Ok((DatumValues::Pixels(img), d.label()))
}

/// The pixels of `img` channel-major, as a raw Datum holds them.
pub fn channel_major(img: &Image8) -> Vec<u8> {
    let (c, hw) = (img.channels, img.height * img.width);
    let mut data = vec![0u8; c * hw];
    for (px, pixel) in img.data.chunks_exact(c).enumerate() {
        for (ch, &v) in pixel.iter().enumerate() {
            data[ch * hw + px] = v;
        }
    }
    data
}

/// The raw Datum of `img` and `label`, serialized as Caffe's `CVMatToDatum` and protobuf give
/// it: channels, height, width, data, label, and `encoded` set to false.
pub fn raw_datum(img: &Image8, label: i32) -> Vec<u8> {
    Datum {
        channels: Some(img.channels as i32),
        height: Some(img.height as i32),
        width: Some(img.width as i32),
        data: Some(channel_major(img)),
        label: Some(label),
        encoded: Some(false),
        ..Default::default()
    }
    .encode_to_vec()
}
