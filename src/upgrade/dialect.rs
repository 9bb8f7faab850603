//! Binary nets written by the SegNet fork (alexgkendall/caffe-segnet), whose field numbers
//! collide with BVLC's in three places (see the table atop `proto/caffe.proto`):
//!
//! | message.field                          | SegNet | BVLC meaning of that number | crema |
//! |----------------------------------------|--------|-----------------------------|-------|
//! | LayerParameter.upsample_param          | 137    | embed_param                 | 1137  |
//! | LayerParameter.dense_image_data_param  | 138    | tile_param                  | 1138  |
//! | LossParameter.weight_by_label_freqs    | 3      | normalization               | 1003  |
//!
//! Text files name their fields, so only binary files need this. [`detect_dialect`] decides per
//! file: a SegNet file is one with a layer of type `BN`, `Upsample` or `DenseImageData`, a
//! `bn_param`, or a loss parameter with `class_weighting` (numbers BVLC never uses). Decoding a
//! SegNet file as BVLC would read `upsample_param` as `embed_param` and
//! `weight_by_label_freqs: true` as `normalization: VALID`, silently; [`segnet_to_crema`]
//! renumbers it first, at any depth.
//!
//! Within a SegNet file the renumbering is decided per layer by its type string: 137 and 138
//! move for every layer except one of type `Embed` (137) or `Tile` (138), the BVLC layers that
//! own those numbers and that the fork does not have. A SegNet `Upsample` or `DenseImageData`
//! layer therefore always gets its parameters, and a BVLC layer in a mixed file keeps its own.

use crate::io::wire::put_varint;
use crate::{Error, Result};
use prost_reflect::{Kind, MessageDescriptor};

/// Which numbering a binary net was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// BVLC Caffe's numbering, which is crema's.
    Bvlc,
    /// The SegNet fork's numbering: needs [`segnet_to_crema`] before decoding.
    SegNet,
}

const NET_LAYER: u64 = 100;
const NET_LAYERS_V1: u64 = 2;
const LAYER_TYPE: u64 = 2;
const LAYER_BN_PARAM: u64 = 45;
const LAYER_LOSS_PARAM: u64 = 101;
const V1_TYPE: u64 = 5;
const V1_LOSS_PARAM: u64 = 42;
const V1_TYPE_BN: u64 = 43;
const LOSS_CLASS_WEIGHTING: u64 = 4;
const SEGNET_LAYER_TYPES: [&[u8]; 3] = [b"BN", b"Upsample", b"DenseImageData"];

/// One field as it sits on the wire.
enum Value<'a> {
    Varint(u64),
    Fixed64(&'a [u8]),
    Fixed32(&'a [u8]),
    Bytes(&'a [u8]),
}

/// Reads fields off a protobuf message body, checking every length against what remains.
/// Not `io::wire::Reader`, the caffemodel walker's: that one skips groups, while a renumbering
/// must copy every field through (this one refuses groups; no Caffe file has any), and it
/// rejects and words malformed input differently (field number 0, varint overflow, offsets).
struct Fields<'a> {
    buf: &'a [u8],
}

fn take_varint(buf: &mut &[u8]) -> std::result::Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn take<'a>(buf: &mut &'a [u8], n: u64) -> std::result::Result<&'a [u8], String> {
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= buf.len())
        .ok_or_else(|| format!("a field claims {n} bytes where {} remain", buf.len()))?;
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

impl<'a> Iterator for Fields<'a> {
    type Item = std::result::Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let mut read = || -> std::result::Result<(u64, Value<'a>), String> {
            let key = take_varint(&mut self.buf)?;
            let value = match key & 7 {
                0 => Value::Varint(take_varint(&mut self.buf)?),
                1 => Value::Fixed64(take(&mut self.buf, 8)?),
                5 => Value::Fixed32(take(&mut self.buf, 4)?),
                2 => {
                    let len = take_varint(&mut self.buf)?;
                    Value::Bytes(take(&mut self.buf, len)?)
                }
                wire => return Err(format!("field {} has wire type {wire}, which Caffe's files never use", key >> 3)),
            };
            Ok((key >> 3, value))
        };
        let item = read();
        if item.is_err() {
            self.buf = &[];
        }
        Some(item)
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

/// Whether a loss parameter body sets `class_weighting` (field 4, free in BVLC).
fn loss_has_class_weighting(body: &[u8]) -> bool {
    fields(body).any(|f| matches!(f, Ok((LOSS_CLASS_WEIGHTING, _))))
}

fn layer_is_segnet(body: &[u8]) -> bool {
    fields(body).any(|f| match f {
        Ok((LAYER_TYPE, Value::Bytes(ty))) => SEGNET_LAYER_TYPES.contains(&ty),
        Ok((LAYER_BN_PARAM, _)) => true,
        Ok((LAYER_LOSS_PARAM, Value::Bytes(loss))) => loss_has_class_weighting(loss),
        _ => false,
    })
}

fn v1_layer_is_segnet(body: &[u8]) -> bool {
    fields(body).any(|f| match f {
        Ok((V1_TYPE, Value::Varint(V1_TYPE_BN))) => true,
        Ok((V1_LOSS_PARAM, Value::Bytes(loss))) => loss_has_class_weighting(loss),
        _ => false,
    })
}

/// Which numbering the binary `NetParameter` in `bytes` was written in. Malformed bytes count
/// as BVLC: the decoder that follows reports what is wrong with them.
pub fn detect_dialect(bytes: &[u8]) -> Dialect {
    let segnet = fields(bytes).any(|f| match f {
        Ok((NET_LAYER, Value::Bytes(layer))) => layer_is_segnet(layer),
        Ok((NET_LAYERS_V1, Value::Bytes(layer))) => v1_layer_is_segnet(layer),
        _ => false,
    });
    if segnet { Dialect::SegNet } else { Dialect::Bvlc }
}

/// The type string of a LayerParameter body, if it has one.
fn layer_type(body: &[u8]) -> Option<&[u8]> {
    fields(body).find_map(|f| match f {
        Ok((LAYER_TYPE, Value::Bytes(ty))) => Some(ty),
        _ => None,
    })
}

/// crema's number for field `number` of message `desc` in a SegNet file; `layer_type` is the
/// type string of the layer when `desc` is LayerParameter.
fn crema_number(desc: &MessageDescriptor, number: u64, layer_type: Option<&[u8]>) -> u64 {
    match (desc.full_name(), number) {
        ("caffe.LayerParameter", 137) if layer_type != Some(b"Embed") => 1137,
        ("caffe.LayerParameter", 138) if layer_type != Some(b"Tile") => 1138,
        ("caffe.LossParameter", 3) => 1003,
        _ => number,
    }
}

fn renumber(desc: &MessageDescriptor, body: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String> {
    let ty = if desc.full_name() == "caffe.LayerParameter" { layer_type(body) } else { None };
    for field in fields(body) {
        let (number, value) = field?;
        let number = crema_number(desc, number, ty);
        match value {
            Value::Varint(v) => {
                put_varint(out, number << 3);
                put_varint(out, v);
            }
            Value::Fixed64(b) => {
                put_varint(out, number << 3 | 1);
                out.extend_from_slice(b);
            }
            Value::Fixed32(b) => {
                put_varint(out, number << 3 | 5);
                out.extend_from_slice(b);
            }
            Value::Bytes(b) => {
                put_varint(out, number << 3 | 2);
                let sub = u32::try_from(number).ok().and_then(|n| desc.get_field(n)).and_then(|f| match f.kind() {
                    Kind::Message(sub) => Some(sub),
                    _ => None,
                });
                match sub {
                    Some(sub) => {
                        let mut inner = Vec::with_capacity(b.len());
                        renumber(&sub, b, &mut inner).map_err(|e| format!("in {}: {e}", sub.name()))?;
                        put_varint(out, inner.len() as u64);
                        out.extend_from_slice(&inner);
                    }
                    None => {
                        put_varint(out, b.len() as u64);
                        out.extend_from_slice(b);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Rewrites `bytes`, a binary `NetParameter` in the SegNet fork's numbering, into crema's
/// numbering, at any depth. `file` names the bytes in errors. The result may hold fields out of
/// number order, which decoders accept.
pub fn segnet_to_crema(bytes: &[u8], file: &str) -> Result<Vec<u8>> {
    let desc = crate::prototxt::descriptor_of::<crate::proto::NetParameter>()?;
    let mut out = Vec::with_capacity(bytes.len() + 64);
    renumber(&desc, bytes, &mut out)
        .map_err(|msg| Error::Decode { file: file.to_string(), msg: format!("renumbering SegNet fields: {msg}") })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{NetParameter, loss_parameter::NormalizationMode};
    use prost::Message;

    fn key(number: u64, wire: u64, out: &mut Vec<u8>) {
        put_varint(out, number << 3 | wire);
    }
    fn varint(number: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        key(number, 0, &mut out);
        put_varint(&mut out, v);
        out
    }
    fn bytes(number: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        key(number, 2, &mut out);
        put_varint(&mut out, body.len() as u64);
        out.extend_from_slice(body);
        out
    }
    fn float(number: u64, v: f32) -> Vec<u8> {
        let mut out = Vec::new();
        key(number, 5, &mut out);
        out.extend_from_slice(&v.to_le_bytes());
        out
    }
    fn layer(parts: &[Vec<u8>]) -> Vec<u8> {
        bytes(NET_LAYER, &parts.concat())
    }

    /// A net as the SegNet fork numbers it, plus a BVLC Embed layer that keeps its 137.
    fn segnet_net() -> Vec<u8> {
        [
            layer(&[bytes(1, b"up"), bytes(2, b"Upsample"), bytes(137, &[varint(1, 2), varint(6, 7)].concat())]),
            layer(&[bytes(2, b"DenseImageData"), bytes(138, &bytes(1, b"list.txt"))]),
            layer(&[bytes(2, b"SoftmaxWithLoss"), bytes(101, &[varint(1, 3), varint(3, 1), float(4, 0.5)].concat())]),
            layer(&[bytes(2, b"Embed"), bytes(137, &varint(1, 5))]),
        ]
        .concat()
    }

    #[test]
    fn segnet_files_are_detected_and_renumbered() {
        let raw = segnet_net();
        assert_eq!(detect_dialect(&raw), Dialect::SegNet);
        let net = NetParameter::decode(segnet_to_crema(&raw, "x.caffemodel").unwrap().as_slice()).unwrap();
        let up = net.layer[0].upsample_param.as_ref().expect("upsample_param");
        assert_eq!((up.scale(), up.upsample_h), (2, Some(7)));
        assert!(net.layer[0].embed_param.is_none());
        let dense = net.layer[1].dense_image_data_param.as_ref().expect("dense_image_data_param");
        assert_eq!(dense.source.as_deref(), Some("list.txt"));
        assert!(net.layer[1].tile_param.is_none());
        let loss = net.layer[2].loss_param.as_ref().unwrap();
        assert_eq!(
            (loss.weight_by_label_freqs, loss.normalization, &loss.class_weighting[..]),
            (Some(true), None, &[0.5][..])
        );
        assert_eq!(net.layer[3].embed_param.as_ref().and_then(|e| e.num_output), Some(5), "Embed keeps 137");
    }

    #[test]
    fn each_segnet_signal_alone_is_enough() {
        let with = |parts: &[Vec<u8>]| detect_dialect(&layer(parts));
        assert_eq!(with(&[bytes(2, b"BN")]), Dialect::SegNet);
        assert_eq!(with(&[bytes(45, &[])]), Dialect::SegNet);
        assert_eq!(with(&[bytes(101, &float(4, 1.0))]), Dialect::SegNet);
        assert_eq!(detect_dialect(&bytes(NET_LAYERS_V1, &varint(V1_TYPE, V1_TYPE_BN))), Dialect::SegNet);
    }

    #[test]
    fn bvlc_files_are_left_alone() {
        let raw = [
            layer(&[bytes(2, b"Embed"), bytes(137, &varint(1, 5))]),
            layer(&[bytes(2, b"SoftmaxWithLoss"), bytes(101, &varint(3, 1))]),
        ]
        .concat();
        assert_eq!(detect_dialect(&raw), Dialect::Bvlc);
        let net = NetParameter::decode(raw.as_slice()).unwrap();
        assert_eq!(net.layer[1].loss_param.as_ref().unwrap().normalization(), NormalizationMode::Valid);
    }

    #[test]
    fn malformed_bytes_error_without_panicking() {
        let mut raw = segnet_net();
        raw.truncate(raw.len() - 3);
        assert_eq!(detect_dialect(&raw), Dialect::SegNet, "detection reads what it can");
        let e = segnet_to_crema(&raw, "cut.caffemodel").unwrap_err().to_string();
        assert!(e.starts_with("cut.caffemodel: renumbering SegNet fields"), "{e}");
        for junk in [&[0xff_u8; 12][..], &[0x0b], &[0x0a, 0x80]] {
            let _ = detect_dialect(junk);
            assert!(segnet_to_crema(junk, "junk").is_err());
        }
    }
}
