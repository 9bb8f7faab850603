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

impl<B: crate::backend::Backend> super::Net<B> {
    /// Copies trained weights into the layers of the same name, as Caffe's
    /// `CopyTrainedLayersFrom`: layers absent from the file keep their values, layers of the
    /// file absent from the net are ignored, and a blob count or shape that differs is an
    /// error naming the layer, the blob index and both shapes (legacy 4-d shapes compared as
    /// Caffe compares them). `file` names the source in messages.
    pub fn copy_trained_layers(&mut self, weights: &crate::io::WeightsFile, file: &str) -> Result<WeightsReport> {
        let mut report = WeightsReport::default();
        for source in &weights.layers {
            let Some(li) = self.layer_index(&source.name) else {
                report.ignored.push((source.name.clone(), file.to_string()));
                continue;
            };
            let entry = &self.layers[li];
            // An HDF5 file may have fewer blobs than the layer, and omit the ones it shares
            // (Caffe writes only the blobs a layer owns).
            let hdf5 = source.format == crate::io::LayerFormat::Hdf5;
            let fits = if hdf5 { source.blobs.len() <= entry.params.len() } else { source.blobs.len() == entry.params.len() };
            if !fits {
                return Err(Error::Weights {
                    file: file.to_string(),
                    msg: format!(
                        "layer `{}` has {} learnable blobs in the net but {} in the file",
                        source.name,
                        entry.params.len(),
                        source.blobs.len()
                    ),
                });
            }
            if hdf5 {
                for (j, &pid) in entry.params.iter().enumerate() {
                    let absent = source.blobs.get(j).is_none_or(|b| b.shape.is_empty() && b.data.is_empty());
                    let owner = &self.param_info[pid];
                    if absent && owner.layer == source.name && owner.index == j {
                        return Err(Error::Weights {
                            file: file.to_string(),
                            msg: format!("layer `{}` has no dataset `{j}` for its blob {j}, which it does not share", source.name),
                        });
                    }
                }
            }
            for (j, (blob, &pid)) in source.blobs.iter().zip(&entry.params).enumerate() {
                if hdf5 && blob.shape.is_empty() && blob.data.is_empty() {
                    continue;
                }
                let target = self.params[pid].shape().to_vec();
                let matches = if blob.legacy_4d { legacy_shape_equals(&blob.shape, &target) } else { blob.shape == target };
                if !matches {
                    return Err(Error::Weights {
                        file: file.to_string(),
                        msg: format!(
                            "cannot copy blob {j} of layer `{}`: shape mismatch; the file has {}, the net expects {}",
                            source.name,
                            crate::blob::shape_string(&blob.shape),
                            crate::blob::shape_string(&target)
                        ),
                    });
                }
                if blob.data.len() != self.params[pid].count() {
                    return Err(Error::Weights {
                        file: file.to_string(),
                        msg: format!("blob {j} of layer `{}` holds {} values for shape {:?}", source.name, blob.data.len(), target),
                    });
                }
                let be = self.be.clone();
                self.params[pid].set_data(&be, &blob.data)?;
            }
            report.copied.push((source.name.clone(), file.to_string()));
        }
        Ok(report)
    }

    /// Loads each of `paths` in order with [`Self::copy_trained_layers`] (later files win).
    pub fn load_weights_files(&mut self, paths: &[std::path::PathBuf]) -> Result<WeightsReport> {
        let mut report = WeightsReport::default();
        for path in paths {
            let weights = crate::io::read_weights(path)?;
            let r = self.copy_trained_layers(&weights, &path.display().to_string())?;
            report.copied.extend(r.copied);
            report.ignored.extend(r.ignored);
        }
        Ok(report)
    }

    /// The learnable blobs of every layer on the host, in layer order, as Caffe writes them
    /// into a caffemodel (shared blobs under each layer that uses them).
    pub fn layer_blobs_host(&self, with_diff: bool) -> Result<Vec<Vec<crate::io::BlobData>>> {
        self.layers
            .iter()
            .map(|l| {
                l.params
                    .iter()
                    .map(|&p| {
                        let b = &self.params[p];
                        let mut d = crate::io::BlobData::new(b.shape().to_vec(), b.data_to_vec(&self.be)?);
                        if with_diff && b.has_diff() {
                            d.diff = b.diff_to_vec(&self.be)?;
                        }
                        Ok(d)
                    })
                    .collect()
            })
            .collect()
    }

    /// Writes the net's learnable blobs as Caffe's `Net::ToHDF5` does (a `.caffemodel.h5`,
    /// atomically): every layer's group, holding the blobs it owns; `with_diff` adds the
    /// gradients.
    pub fn save_hdf5(&self, path: &std::path::Path, with_diff: bool) -> Result<()> {
        let blobs = self.layer_blobs_host(with_diff)?;
        let layers: Vec<crate::io::hdf5_snapshot::Hdf5Layer<'_>> = self
            .layers
            .iter()
            .zip(&blobs)
            .map(|(l, values)| crate::io::hdf5_snapshot::Hdf5Layer {
                name: l.name(),
                blobs: l
                    .params
                    .iter()
                    .zip(values)
                    .enumerate()
                    .map(|(j, (&pid, v))| {
                        let owner = &self.param_info[pid];
                        (v, owner.layer == l.name() && owner.index == j)
                    })
                    .collect(),
            })
            .collect();
        crate::io::hdf5_snapshot::write_weights_hdf5(path, &layers, with_diff)
    }

    /// Writes the net's layers and learnable blobs as a caffemodel (atomically), as Caffe's
    /// `Net::ToProto` + `WriteProtoToBinaryFile` do; `with_diff` adds the gradients.
    pub fn save_caffemodel(&self, path: &std::path::Path, with_diff: bool) -> Result<()> {
        let blobs = self.layer_blobs_host(with_diff)?;
        let refs: Vec<Vec<crate::io::BlobRef<'_>>> =
            blobs.iter().map(|l| l.iter().map(crate::io::BlobRef::of).collect()).collect();
        let param = crate::proto::NetParameter {
            name: Some(self.name.clone()),
            layer: self.layers.iter().map(|l| l.param.clone()).collect(),
            ..Default::default()
        };
        crate::io::write_caffemodel(path, &param, &refs, with_diff)
    }
}
