//! Writing caffemodels as Caffe's `Net::ToProto` + `WriteProtoToBinaryFile` do: a
//! `NetParameter` holding the net's name and, for every layer, its full `LayerParameter` with
//! the layer's blobs in place of whatever blobs the definition held.
//!
//! The output is streamed: each layer's parameters (without blobs) are encoded by prost, the
//! blobs are written straight from the caller's slices into a buffered file, and no second copy
//! of the weights is built. Fields come out in field-number order, as protobuf's C++ runtime
//! writes them (blobs, field 7, between `param` 6 and `include` 8), so a caffemodel read and
//! written back is byte-for-byte the file Caffe wrote.

use std::io::Write;
use std::path::Path;

use prost::Message;

use super::blob::{BlobRef, blob_body_len, write_blob_body};
use super::weights::WeightsFile;
use super::wire::{self, Reader};
use crate::proto::{LayerParameter, NetParameter};
use crate::{Error, Result};

const NET_NAME: u32 = 1;
const NET_LAYER: u32 = 100;
const LAYER_BLOBS: u32 = 7;

/// Writes a caffemodel atomically: `net`'s name and layers, where layer `i` carries the blobs
/// `blobs[i]` (shape and data, and diff when `write_diff` is set, as Caffe's `snapshot_diff`
/// does). `blobs` has one entry per layer of `net.layer`, empty for layers without parameters.
/// Blobs held in `net` itself are not written. Everything is checked before the file is
/// created: the number of entries, and each blob's data (and diff) against its shape.
pub fn write_caffemodel<'a, B: AsRef<[BlobRef<'a>]>>(
    path: impl AsRef<Path>,
    net: &NetParameter,
    blobs: &[B],
    write_diff: bool,
) -> Result<()> {
    let path = path.as_ref();
    let encode_err = |msg: String| Error::Encode {
        file: path.display().to_string(),
        msg,
    };
    if blobs.len() != net.layer.len() {
        return Err(encode_err(format!(
            "{} blob lists given for a net of {} layers",
            blobs.len(),
            net.layer.len()
        )));
    }
    for (i, (layer, layer_blobs)) in net.layer.iter().zip(blobs).enumerate() {
        for (j, b) in layer_blobs.as_ref().iter().enumerate() {
            b.check(write_diff).map_err(|msg| {
                encode_err(format!("layer {i} `{}` blob {j}: {msg}", layer.name()))
            })?;
        }
    }
    super::atomic_write(path, |w| {
        let name = net.name();
        wire::write_len_header(w, NET_NAME, name.len())?;
        w.write_all(name.as_bytes())?;
        for (layer, layer_blobs) in net.layer.iter().zip(blobs) {
            write_layer(w, layer, layer_blobs.as_ref(), write_diff)?;
        }
        Ok(())
    })
}

/// Writes the weights of `weights` as a caffemodel: each layer as a `LayerParameter` with only
/// its name, type and blobs (diffs too when any blob has one, and then every blob must). Turns
/// a fork's caffemodel into one that BVLC Caffe reads.
pub fn write_weights(path: impl AsRef<Path>, weights: &WeightsFile) -> Result<()> {
    let net = NetParameter {
        name: Some(weights.name.clone()),
        layer: weights
            .layers
            .iter()
            .map(|l| LayerParameter {
                name: Some(l.name.clone()),
                r#type: Some(l.type_name.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let blobs: Vec<Vec<BlobRef<'_>>> = weights
        .layers
        .iter()
        .map(|l| l.blobs.iter().map(BlobRef::of).collect())
        .collect();
    let write_diff = weights
        .layers
        .iter()
        .flat_map(|l| &l.blobs)
        .any(|b| !b.diff.is_empty());
    write_caffemodel(path, &net, &blobs, write_diff)
}

impl WeightsFile {
    /// Writes these weights with [`write_weights`].
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        write_weights(path, self)
    }
}

/// One `layer` entry: the encoded parameters up to field 7, the blobs, the rest.
fn write_layer(
    w: &mut impl Write,
    layer: &LayerParameter,
    blobs: &[BlobRef<'_>],
    write_diff: bool,
) -> std::io::Result<()> {
    let params = if layer.blobs.is_empty() {
        layer.encode_to_vec()
    } else {
        LayerParameter {
            blobs: Vec::new(),
            ..layer.clone()
        }
        .encode_to_vec()
    };
    let split = blobs_position(&params);
    let blob_lens: Vec<usize> = blobs
        .iter()
        .map(|b| {
            blob_body_len(
                b.shape,
                b.data.len(),
                if write_diff { b.diff.len() } else { 0 },
            )
        })
        .collect();
    let body_len = params.len()
        + blob_lens
            .iter()
            .map(|&n| wire::len_field_len(LAYER_BLOBS, n))
            .sum::<usize>();
    wire::write_len_header(w, NET_LAYER, body_len)?;
    w.write_all(&params[..split])?;
    for (b, &len) in blobs.iter().zip(&blob_lens) {
        wire::write_len_header(w, LAYER_BLOBS, len)?;
        write_blob_body(w, b.shape, b.data, write_diff.then_some(b.diff))?;
    }
    w.write_all(&params[split..])
}

/// Where blobs go in an encoded `LayerParameter`: before its first field numbered above 7
/// (prost, like protobuf's C++ runtime, writes fields in number order).
fn blobs_position(params: &[u8]) -> usize {
    let mut r = Reader::new(params, 0);
    loop {
        let at = r.offset();
        match r.next_field() {
            Ok(Some(f)) if f.number <= LAYER_BLOBS => continue,
            // prost's own output always parses; anything else ends the scan
            _ => return at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{BlobData, LayerFormat, read_weights};
    use crate::proto::{NetStateRule, ParamSpec};

    fn layer(name: &str, ty: &str) -> LayerParameter {
        LayerParameter {
            name: Some(name.into()),
            r#type: Some(ty.into()),
            ..Default::default()
        }
    }

    #[test]
    fn blobs_land_in_field_order_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.caffemodel");
        let mut conv = layer("conv1", "Convolution");
        conv.bottom = vec!["data".into()];
        conv.param = vec![ParamSpec {
            lr_mult: Some(1.0),
            ..Default::default()
        }];
        conv.include = vec![NetStateRule {
            phase: Some(0),
            ..Default::default()
        }];
        conv.phase = Some(0);
        let net = NetParameter {
            name: Some("n".into()),
            layer: vec![layer("data", "Input"), conv],
            ..Default::default()
        };
        let w = [1.0f32, 2.0, 3.0, 4.0];
        let d = [0.1f32, 0.2, 0.3, 0.4];
        let blobs = vec![
            vec![],
            vec![
                BlobRef {
                    shape: &[2, 2],
                    data: &w,
                    diff: &d,
                },
                BlobRef {
                    shape: &[1],
                    data: &[5.0],
                    diff: &[0.5],
                },
            ],
        ];
        write_caffemodel(&p, &net, &blobs, true).unwrap();

        let bytes = std::fs::read(&p).unwrap();
        let back = NetParameter::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.layer[1].blobs.len(), 2);
        assert_eq!(back.layer[1].blobs[0].data, w);
        assert_eq!(back.layer[1].blobs[0].diff, d);
        assert_eq!(back.layer[1].include, net.layer[1].include);
        // re-encoding what prost decoded gives the same bytes: fields are in number order
        assert_eq!(back.encode_to_vec(), bytes);

        let weights = read_weights(&p).unwrap();
        assert_eq!(
            weights.layers[1].blobs[0],
            BlobData {
                shape: vec![2, 2],
                legacy_4d: false,
                data: w.to_vec(),
                diff: d.to_vec()
            }
        );
        assert_eq!(weights.layers[1].format, LayerFormat::Current);
    }

    #[test]
    fn mismatches_are_refused_before_any_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.caffemodel");
        let net = NetParameter {
            layer: vec![layer("ip", "InnerProduct")],
            ..Default::default()
        };
        let none: Vec<Vec<BlobRef<'_>>> = vec![];
        assert!(
            write_caffemodel(&p, &net, &none, false)
                .unwrap_err()
                .to_string()
                .contains("0 blob lists")
        );
        let bad = vec![vec![BlobRef {
            shape: &[3],
            data: &[1.0],
            diff: &[],
        }]];
        let e = write_caffemodel(&p, &net, &bad, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("layer 0 `ip` blob 0: data holds 1 values but shape [3] holds 3"),
            "{e}"
        );
        let no_diff = vec![vec![BlobRef {
            shape: &[1],
            data: &[1.0],
            diff: &[],
        }]];
        assert!(
            write_caffemodel(&p, &net, &no_diff, true)
                .unwrap_err()
                .to_string()
                .contains("diff holds 0")
        );
        assert!(!p.exists());
    }

    #[test]
    fn blobs_in_the_definition_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.caffemodel");
        let mut l = layer("ip", "InnerProduct");
        l.blobs = vec![crate::proto::BlobProto {
            data: vec![9.0; 3],
            ..Default::default()
        }];
        let net = NetParameter {
            layer: vec![l],
            ..Default::default()
        };
        write_caffemodel(
            &p,
            &net,
            &[[BlobRef {
                shape: &[1],
                data: &[1.0],
                diff: &[],
            }]],
            false,
        )
        .unwrap();
        let w = read_weights(&p).unwrap();
        assert_eq!(w.layers[0].blobs, vec![BlobData::new(vec![1], vec![1.0])]);
    }
}
