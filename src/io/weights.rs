//! The weights view of a `.caffemodel`: each layer's name, type and blobs, read from a file of
//! any dialect without decoding the layer parameters Caffe does not need to load weights.
//!
//! A strict protobuf decode fails on forks' caffemodels: the SegNet fork writes
//! `upsample_param` as LayerParameter field 137 and `dense_image_data_param` as 138, where
//! BVLC has `embed_param` and `tile_param` with other wire types. Only these fields are walked
//! (numbers from BVLC `caffe.proto`); every other field is skipped by its wire type:
//!
//! - `NetParameter`: `name` 1, `layer` 100 (`LayerParameter`), `layers` 2 (`V1LayerParameter`).
//! - `LayerParameter`: `name` 1, `type` 2 (string), `blobs` 7.
//! - `V1LayerParameter`: `name` 4, `type` 5 (enum), `blobs` 6, `layer` 1 (`V0LayerParameter`).
//! - `V0LayerParameter`: `name` 1, `type` 2 (string), `blobs` 50.
//!
//! V1 and V0 types are mapped to today's type strings as Caffe's upgrade does
//! (`UpgradeV1LayerType`, `UpgradeV0LayerType`), so `CONVOLUTION` and `"conv"` both read as
//! `"Convolution"`.

use std::path::Path;

use super::blob::{BlobData, decode_blob};
use super::wire::{DecodeError, DecodeResult, Reader, expect_len, expect_string, expect_varint};
use crate::Result;

/// A caffemodel's weights: the net's name and its layers in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WeightsFile {
    /// `NetParameter.name`, empty if absent.
    pub name: String,
    /// Every layer in the file, with or without blobs, in file order.
    pub layers: Vec<LayerWeights>,
}

/// One layer's entry in a caffemodel.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    /// The layer's name (what Caffe matches when it copies trained weights).
    pub name: String,
    /// The type string as today's Caffe names it (`"Convolution"`), upgraded from V1/V0.
    pub type_name: String,
    /// Which generation of the format the layer was stored in.
    pub format: LayerFormat,
    /// The parameter blobs in order (weights, bias, ...).
    pub blobs: Vec<BlobData>,
}

/// The generation of Caffe's format a layer was stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerFormat {
    /// `NetParameter.layer` (field 100): `LayerParameter`.
    Current,
    /// `NetParameter.layers` (field 2): `V1LayerParameter`, type as an enum.
    V1,
    /// `V1LayerParameter.layer` (field 1): `V0LayerParameter`, type as a lower-case string.
    V0,
    /// A group of a `.caffemodel.h5` (Caffe's HDF5 snapshot): no type; a blob the layer shares
    /// is absent, an empty [`BlobData`].
    Hdf5,
}

impl WeightsFile {
    /// The first layer called `name`, if any.
    pub fn layer(&self, name: &str) -> Option<&LayerWeights> {
        self.layers.iter().find(|l| l.name == name)
    }
}

/// Reads the weights of the caffemodel at `path` (memory-mapped; the floats are decoded
/// straight into each blob's vector).
pub fn read_weights(path: impl AsRef<Path>) -> Result<WeightsFile> {
    let path = path.as_ref();
    if super::hdf5_snapshot::is_hdf5(path) {
        return super::hdf5_snapshot::read_weights_hdf5(path);
    }
    let bytes = super::FileBytes::open(path)?;
    decode_weights(&bytes, &path.display().to_string())
}

/// Decodes a serialized `NetParameter`; `file` names it in errors.
pub fn decode_weights(bytes: &[u8], file: &str) -> Result<WeightsFile> {
    decode_net(bytes).map_err(|e| e.into_error(file))
}

const NET_NAME: u32 = 1;
const NET_LAYERS_V1: u32 = 2;
const NET_LAYER: u32 = 100;

fn decode_net(bytes: &[u8]) -> DecodeResult<WeightsFile> {
    if bytes.is_empty() {
        return Err(DecodeError::new(
            "empty file: a caffemodel holds at least one layer",
        ));
    }
    let mut out = WeightsFile::default();
    let mut r = Reader::new(bytes, 0);
    while let Some(f) = r.next_field().map_err(|e| match e.truncated_field {
        Some(NET_LAYER | NET_LAYERS_V1) => e.inside(format!("layer {}", out.layers.len())),
        _ => e,
    })? {
        match f.number {
            NET_NAME => out.name = expect_string(&f, "name")?,
            NET_LAYER | NET_LAYERS_V1 => {
                let index = out.layers.len();
                let (what, format) = if f.number == NET_LAYER {
                    ("layer", LayerFormat::Current)
                } else {
                    ("layers", LayerFormat::V1)
                };
                let (b, at) =
                    expect_len(&f, what).map_err(|e| e.inside(format!("layer {index}")))?;
                out.layers.push(decode_layer(b, at, format, index)?);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The fields a layer message is read for, per format: name, type, blobs.
struct LayerFields {
    name: u32,
    type_: u32,
    blobs: u32,
}

const CURRENT: LayerFields = LayerFields {
    name: 1,
    type_: 2,
    blobs: 7,
};
const V1: LayerFields = LayerFields {
    name: 4,
    type_: 5,
    blobs: 6,
};
const V0: LayerFields = LayerFields {
    name: 1,
    type_: 2,
    blobs: 50,
};
const V1_V0_LAYER: u32 = 1;

/// Decodes one layer message. Blob payloads are collected first and decoded after the walk,
/// so that errors inside them can name the layer even when its name follows its blobs.
fn decode_layer(
    bytes: &[u8],
    base: usize,
    format: LayerFormat,
    index: usize,
) -> DecodeResult<LayerWeights> {
    let ctx = |name: &str| {
        if name.is_empty() {
            format!("layer {index}")
        } else {
            format!("layer {index} `{name}`")
        }
    };
    let fields = match format {
        LayerFormat::Current | LayerFormat::Hdf5 => CURRENT,
        LayerFormat::V1 => V1,
        LayerFormat::V0 => V0,
    };
    let mut name = String::new();
    let mut type_name = String::new();
    let mut blobs = Vec::new();
    let mut v0 = None;
    let mut r = Reader::new(bytes, base);
    let walk = (|| -> DecodeResult<()> {
        while let Some(f) = r.next_field().map_err(|e| match e.truncated_field {
            Some(n) if n == fields.blobs => e.inside(format!("blob {}", blobs.len())),
            _ => e,
        })? {
            if f.number == fields.name {
                name = expect_string(&f, "name")?;
            } else if f.number == fields.type_ {
                type_name = match format {
                    LayerFormat::V1 => v1_type_name(expect_varint(&f, "type")?),
                    LayerFormat::V0 => v0_type_name(&expect_string(&f, "type")?),
                    LayerFormat::Current | LayerFormat::Hdf5 => expect_string(&f, "type")?,
                };
            } else if f.number == fields.blobs {
                blobs.push(expect_len(&f, "blobs")?);
            } else if format == LayerFormat::V1 && f.number == V1_V0_LAYER {
                v0 = Some(expect_len(&f, "layer")?);
            }
        }
        Ok(())
    })();
    walk.map_err(|e| e.inside(ctx(&name)))?;

    // A V1 entry that wraps a V0 layer is that V0 layer: Caffe's UpgradeV0LayerParameter takes
    // name, type and blobs from it alone.
    if let Some((b, at)) = v0 {
        return decode_layer(b, at, LayerFormat::V0, index);
    }
    let blobs = blobs
        .into_iter()
        .enumerate()
        .map(|(j, (b, at))| {
            decode_blob(b, at).map_err(|e| e.inside(format!("blob {j}")).inside(ctx(&name)))
        })
        .collect::<DecodeResult<Vec<_>>>()?;
    Ok(LayerWeights {
        name,
        type_name,
        format,
        blobs,
    })
}

/// `V1LayerParameter.LayerType` to today's type string (Caffe's `UpgradeV1LayerType`). A value
/// Caffe does not know (some forks added their own) reads as `V1LayerType(<n>)`: weights are
/// matched by layer name, so the view keeps going where Caffe would abort.
fn v1_type_name(value: u64) -> String {
    let s = match value {
        0 => "",
        35 => "AbsVal",
        1 => "Accuracy",
        30 => "ArgMax",
        2 => "BNLL",
        3 => "Concat",
        37 => "ContrastiveLoss",
        4 => "Convolution",
        39 => "Deconvolution",
        5 => "Data",
        6 => "Dropout",
        32 => "DummyData",
        7 => "EuclideanLoss",
        25 => "Eltwise",
        38 => "Exp",
        8 => "Flatten",
        9 => "HDF5Data",
        10 => "HDF5Output",
        28 => "HingeLoss",
        11 => "Im2col",
        12 => "ImageData",
        13 => "InfogainLoss",
        14 => "InnerProduct",
        15 => "LRN",
        29 => "MemoryData",
        16 => "MultinomialLogisticLoss",
        34 => "MVN",
        17 => "Pooling",
        26 => "Power",
        18 => "ReLU",
        19 => "Sigmoid",
        27 => "SigmoidCrossEntropyLoss",
        36 => "Silence",
        20 => "Softmax",
        21 => "SoftmaxWithLoss",
        22 => "Split",
        33 => "Slice",
        23 => "TanH",
        24 => "WindowData",
        31 => "Threshold",
        other => return format!("V1LayerType({other})"),
    };
    s.to_string()
}

/// A V0 type string to today's (Caffe's `UpgradeV0LayerType` followed by
/// `UpgradeV1LayerType`). Unknown strings (V0's `"padding"`, which Caffe folds into the next
/// convolution, or a fork's own) are kept as they are.
fn v0_type_name(v0: &str) -> String {
    let s = match v0 {
        "accuracy" => "Accuracy",
        "bnll" => "BNLL",
        "concat" => "Concat",
        "conv" => "Convolution",
        "data" => "Data",
        "dropout" => "Dropout",
        "euclidean_loss" => "EuclideanLoss",
        "flatten" => "Flatten",
        "hdf5_data" => "HDF5Data",
        "hdf5_output" => "HDF5Output",
        "im2col" => "Im2col",
        "images" => "ImageData",
        "infogain_loss" => "InfogainLoss",
        "innerproduct" => "InnerProduct",
        "lrn" => "LRN",
        "multinomial_logistic_loss" => "MultinomialLogisticLoss",
        "pool" => "Pooling",
        "relu" => "ReLU",
        "sigmoid" => "Sigmoid",
        "softmax" => "Softmax",
        "softmax_loss" => "SoftmaxWithLoss",
        "split" => "Split",
        "tanh" => "TanH",
        "window_data" => "WindowData",
        other => other,
    };
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::blob::write_blob_body;
    use crate::io::wire::{WT_FIXED32, WT_LEN, WT_VARINT, put_tag, put_varint};

    fn len_field(buf: &mut Vec<u8>, number: u32, payload: &[u8]) {
        put_tag(buf, number, WT_LEN);
        put_varint(buf, payload.len() as u64);
        buf.extend_from_slice(payload);
    }

    fn blob(shape: &[usize], data: &[f32]) -> Vec<u8> {
        let mut b = Vec::new();
        write_blob_body(&mut b, shape, data, None).unwrap();
        b
    }

    #[test]
    fn current_layers_with_a_forks_unknown_fields() {
        let mut layer = Vec::new();
        len_field(&mut layer, 1, b"up");
        len_field(&mut layer, 2, b"Upsample");
        // SegNet's upsample_param at 137 (a message where BVLC's embed_param is) and
        // dense_image_data_param at 138, plus a fixed32 and a group of unknown numbers.
        len_field(&mut layer, 137, &[0x08, 0x02]);
        len_field(&mut layer, 138, &[0x0a, 0x01, b'x']);
        put_tag(&mut layer, 999, WT_FIXED32);
        layer.extend([1, 2, 3, 4]);
        put_tag(&mut layer, 998, 3);
        put_tag(&mut layer, 998, 4);
        len_field(&mut layer, 7, &blob(&[2], &[1.0, 2.0]));
        let mut net = Vec::new();
        len_field(&mut net, 1, b"net");
        put_tag(&mut net, 5, WT_VARINT);
        put_varint(&mut net, 1);
        len_field(&mut net, 100, &layer);
        let w = decode_weights(&net, "m.caffemodel").unwrap();
        assert_eq!(w.name, "net");
        assert_eq!(w.layers.len(), 1);
        let l = w.layer("up").unwrap();
        assert_eq!(
            (l.type_name.as_str(), l.format),
            ("Upsample", LayerFormat::Current)
        );
        assert_eq!(l.blobs[0].data, vec![1.0, 2.0]);
    }

    #[test]
    fn v1_and_v0_layers_get_todays_type_names() {
        let mut v1 = Vec::new();
        len_field(&mut v1, 4, b"conv1");
        put_tag(&mut v1, 5, WT_VARINT);
        put_varint(&mut v1, 4);
        len_field(&mut v1, 6, &blob(&[1], &[3.0]));
        let mut v0 = Vec::new();
        len_field(&mut v0, 1, b"fc");
        len_field(&mut v0, 2, b"innerproduct");
        len_field(&mut v0, 50, &blob(&[1], &[4.0]));
        let mut v1_wrapping_v0 = Vec::new();
        len_field(&mut v1_wrapping_v0, 2, b"bottom");
        len_field(&mut v1_wrapping_v0, 1, &v0);
        let mut net = Vec::new();
        len_field(&mut net, 2, &v1);
        len_field(&mut net, 2, &v1_wrapping_v0);
        let w = decode_weights(&net, "old.caffemodel").unwrap();
        assert_eq!(w.layers[0].name, "conv1");
        assert_eq!(w.layers[0].type_name, "Convolution");
        assert_eq!(w.layers[0].format, LayerFormat::V1);
        assert_eq!(w.layers[0].blobs[0].data, vec![3.0]);
        assert_eq!(w.layers[1].name, "fc");
        assert_eq!(w.layers[1].type_name, "InnerProduct");
        assert_eq!(w.layers[1].format, LayerFormat::V0);
        assert_eq!(w.layers[1].blobs[0].data, vec![4.0]);
        assert_eq!(v1_type_name(21), "SoftmaxWithLoss");
        assert_eq!(v1_type_name(77), "V1LayerType(77)");
        assert_eq!(v0_type_name("padding"), "padding");
    }

    #[test]
    fn errors_name_the_layer_and_blob() {
        let mut layer = Vec::new();
        len_field(&mut layer, 1, b"conv1");
        len_field(&mut layer, 7, &blob(&[2], &[1.0, 2.0]));
        len_field(&mut layer, 7, &blob(&[3], &[1.0, 2.0]));
        let mut net = Vec::new();
        len_field(&mut net, 100, &layer);
        let e = decode_weights(&net, "w.caffemodel")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "w.caffemodel: data holds 2 values but shape [3] holds 3 inside layer 0 `conv1` blob 1"
        );

        let truncated = &net[..net.len() - 3];
        let e = decode_weights(truncated, "w.caffemodel")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("w.caffemodel: truncated: field 100 claims"),
            "{e}"
        );

        let mut layer = Vec::new();
        put_tag(&mut layer, 1, WT_VARINT);
        put_varint(&mut layer, 3);
        let mut net = Vec::new();
        len_field(&mut net, 100, &layer);
        let e = decode_weights(&net, "w.caffemodel")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "w.caffemodel: field name (1) has wire type varint, expected length-delimited at byte 3 inside layer 0"
        );
    }

    #[test]
    fn empty_input_is_an_error() {
        let e = decode_weights(&[], "e.caffemodel").unwrap_err().to_string();
        assert_eq!(
            e,
            "e.caffemodel: empty file: a caffemodel holds at least one layer"
        );
    }
}
