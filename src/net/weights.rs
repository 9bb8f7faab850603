//! Learnable blobs in and out of the net: Caffe's `CopyTrainedLayersFrom` (by layer name,
//! several files in order, shape-checked) and the blobs Caffe writes back.

use crate::proto::BlobProto;
use crate::{Error, Result};

/// The values and shape of a BlobProto, with `legacy_4d` set when the shape came from the
/// old num/channels/height/width fields.
pub(crate) struct ProtoBlob {
    pub shape: Vec<usize>,
    pub legacy_4d: bool,
    pub data: Vec<f32>,
}

/// Reads a prost BlobProto (inline `blobs` of a layer in a prototxt).
pub(crate) fn blob_from_proto(p: &BlobProto) -> Result<ProtoBlob> {
    let (shape, legacy_4d) = match &p.shape {
        Some(s) => (
            s.dim.iter().map(|&d| usize::try_from(d).map_err(|_| Error::Shape(format!("negative dimension {d}")))).collect::<Result<Vec<_>>>()?,
            false,
        ),
        None => {
            let dims = [p.num(), p.channels(), p.height(), p.width()];
            (
                dims.iter().map(|&d| usize::try_from(d).map_err(|_| Error::Shape(format!("negative dimension {d}")))).collect::<Result<Vec<_>>>()?,
                true,
            )
        }
    };
    let data: Vec<f32> = if p.data.is_empty() { p.double_data.iter().map(|&d| d as f32).collect() } else { p.data.clone() };
    let count = crate::blob::checked_count(&shape)?;
    if data.len() != count {
        return Err(Error::Shape(format!("{} values for shape {shape:?}", data.len())));
    }
    Ok(ProtoBlob { shape, legacy_4d, data })
}

/// Caffe's comparison of a legacy 4-d (num, channels, height, width) shape with a blob's
/// shape: the blob has at most 4 axes and, right-aligned and padded with 1s, equals it.
pub fn legacy_shape_equals(legacy: &[usize], shape: &[usize]) -> bool {
    if legacy.len() != 4 || shape.len() > 4 {
        return false;
    }
    let mut padded = vec![1usize; 4 - shape.len()];
    padded.extend_from_slice(shape);
    padded == legacy
}

/// What loading weights did, for `crema inspect` and logs.
#[derive(Clone, Debug, Default)]
pub struct WeightsReport {
    /// Layers of the net that got weights, with the file they came from.
    pub copied: Vec<(String, String)>,
    /// Layers of the files that the net does not have (ignored, as in Caffe).
    pub ignored: Vec<(String, String)>,
}
