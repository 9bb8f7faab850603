//! Caffe's `Datum` records (what Data layers read from a database) as images: raw records hold
//! `channels x height x width` bytes, channel-major; encoded ones an image file.

use super::decode::{decode_image, ColorMode, Image8};
use crate::proto::Datum;
use crate::{Error, Result};
use prost::Message;
use std::path::Path;

/// The image and label of the serialized Datum `bytes`; `name` names the record in errors.
/// An encoded record is decoded as `force` asks, else with its own channels (OpenCV's native
/// decoding: a gray file stays one channel), as Caffe's DataTransformer does.
pub fn datum_image(bytes: &[u8], name: &Path, force: Option<ColorMode>) -> Result<(Image8, i32)> {
    let bad = |msg: String| Error::Decode { file: name.display().to_string(), msg };
    let d = Datum::decode(bytes).map_err(|e| bad(format!("not a Caffe Datum: {e}")))?;
    if d.encoded() {
        let (img, info) = decode_image(d.data(), name, force.unwrap_or(ColorMode::Bgr))?;
        let img = match force {
            None if !info.color => Image8 { channels: 1, data: img.data.iter().step_by(3).copied().collect(), ..img },
            _ => img,
        };
        return Ok((img, d.label()));
    }
    if !d.float_data.is_empty() && d.data().is_empty() {
        return Err(bad("a Datum of float_data: crema reads Datums of 8-bit pixels (data) only".into()));
    }
    let dims = [d.channels(), d.height(), d.width()];
    if dims.iter().any(|&v| v <= 0) {
        return Err(bad(format!("a Datum of {}x{}x{} (channels x height x width)", dims[0], dims[1], dims[2])));
    }
    let [c, h, w] = dims.map(|v| v as usize);
    if c.checked_mul(h).and_then(|v| v.checked_mul(w)) != Some(d.data().len()) {
        return Err(bad(format!("a {c}x{h}x{w} Datum holds {} bytes of data", d.data().len())));
    }
    let mut img = Image8::new(w, h, c);
    for (ch, plane) in d.data().chunks_exact(h * w).enumerate() {
        for (px, &v) in plane.iter().enumerate() {
            img.data[px * c + ch] = v;
        }
    }
    Ok((img, d.label()))
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
