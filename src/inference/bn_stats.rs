//! Batch-normalisation statistics for inference: what the SegNet fork's
//! `compute_bn_statistics.py` does, without its crashes.
//!
//! A SegNet BN layer in LEARN mode normalises with the statistics of each batch; in INFERENCE
//! mode it computes `scale * x + shift` only. To turn a trained net into an inference net the
//! training net is run over N batches of its data, and for each BN layer:
//! 1. the per-channel mean and **biased** variance of its input over (N, H, W) are taken in
//!    every batch; each variance is made unbiased by `m / (m - 1)`, `m = N * H * W`;
//! 2. both are averaged over the batches;
//! 3. they are folded into the layer's parameters:
//!    `scale' = scale / sqrt(var + eps)`, `shift' = shift - scale * mean / sqrt(var + eps)`,
//!    with the fork's `eps = 1e-9`.
//!
//! (The script averages the biased variances and applies `m / (m - 1)` once; with a fixed batch
//! shape that is the same number.)
//!
//! The statistics are read from each BN layer's **input before the layer runs** (SegNet runs
//! BN in place, so its input is overwritten): the net is run layer by layer, and before each BN
//! layer its bottom is copied to the host and reduced there in `f64`, channels in parallel,
//! each channel's sum in a fixed order (deterministic whatever the thread count). Nothing here
//! depends on how the BN layer itself computes.

use crate::backend::Backend;
use crate::io::BlobData;
use crate::net::Net;
use crate::proto::bn_parameter::BnMode;
use crate::proto::NetParameter;
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::Path;

/// The fork's `var_eps_`, added to the variance before the square root.
pub const BN_EPS: f64 = 1e-9;

/// The layer type whose statistics are collected (SegNet's BN).
pub const BN_TYPE: &str = "BN";

/// Per-channel moments of a blob over (N, H, W).
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    /// Mean of each channel.
    pub mean: Vec<f64>,
    /// Biased variance (divisor `count`) of each channel.
    pub var: Vec<f64>,
    /// Values per channel: N * H * W.
    pub count: usize,
}

/// `(N, C, H*W)` of a blob of 1 to 4 axes, read as the fork's BN layer reads it.
fn bn_dims(shape: &[usize]) -> Result<(usize, usize, usize)> {
    if shape.is_empty() || shape.len() > 4 {
        return Err(Error::Shape(format!("BN needs a blob of 1 to 4 axes (N, C, H, W), given shape {shape:?}")));
    }
    let at = |i: usize| shape.get(i).copied().unwrap_or(1);
    Ok((at(0), at(1), at(2) * at(3)))
}

/// The per-channel mean and biased variance of `data` (shape `shape`, 1 to 4 axes, channels on
/// axis 1) over all other axes. Two passes in `f64` (mean, then squared deviations).
pub fn channel_moments(shape: &[usize], data: &[f32]) -> Result<Moments> {
    let (n, c, plane) = bn_dims(shape)?;
    if data.len() != n * c * plane {
        return Err(Error::Internal(format!("{} values for shape {shape:?}", data.len())));
    }
    let count = n * plane;
    if count == 0 {
        return Err(Error::Shape(format!("a blob of shape {shape:?} has no values to take statistics of")));
    }
    let per_channel: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let slices = || (0..n).map(move |i| &data[(i * c + ch) * plane..(i * c + ch + 1) * plane]);
            let mean = slices().map(|s| s.iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>() / count as f64;
            let ss = slices().map(|s| s.iter().map(|&v| (v as f64 - mean) * (v as f64 - mean)).sum::<f64>()).sum::<f64>();
            (mean, ss / count as f64)
        })
        .collect();
    let (mean, var) = per_channel.into_iter().unzip();
    Ok(Moments { mean, var, count })
}

/// Folds statistics into a BN layer's scale and shift:
/// `scale' = scale / sqrt(var + eps)`, `shift' = shift - scale * mean / sqrt(var + eps)`,
/// computed in `f64` and rounded to `f32` once.
pub fn fold(scale: &[f32], shift: &[f32], mean: &[f64], var: &[f64], eps: f64) -> Result<(Vec<f32>, Vec<f32>)> {
    let c = scale.len();
    if shift.len() != c || mean.len() != c || var.len() != c {
        return Err(Error::Shape(format!(
            "BN folding: {c} scales, {} shifts, {} means, {} variances",
            shift.len(),
            mean.len(),
            var.len()
        )));
    }
    let mut s2 = Vec::with_capacity(c);
    let mut b2 = Vec::with_capacity(c);
    for i in 0..c {
        let inv = 1.0 / (var[i] + eps).sqrt();
        s2.push((scale[i] as f64 * inv) as f32);
        b2.push((shift[i] as f64 - scale[i] as f64 * mean[i] * inv) as f32);
    }
    Ok((s2, b2))
}

/// The statistics of one BN layer over the batches run.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStatistics {
    /// The layer's name.
    pub layer: String,
    /// Its index in the net.
    pub index: usize,
    /// Mean of each channel, averaged over the batches.
    pub mean: Vec<f64>,
    /// Unbiased variance of each channel (each batch's times `m / (m - 1)`), averaged over
    /// the batches.
    pub var: Vec<f64>,
    /// Batches averaged.
    pub batches: usize,
    /// Values per channel in the last batch (N * H * W).
    pub per_batch: usize,
}

/// The indices of the net's BN layers, after checking they are in LEARN mode and own their
/// scale and shift (not shared with another layer).
pub fn bn_layers<B: Backend>(net: &Net<B>) -> Result<Vec<usize>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, l) in net.layers().iter().enumerate() {
        if l.type_name() != BN_TYPE {
            continue;
        }
        let mode = l.param.bn_param.as_ref().map(|p| p.bn_mode()).unwrap_or(BnMode::Learn);
        if mode != BnMode::Learn {
            return Err(Error::Config(format!(
                "layer `{}` is a BN layer in INFERENCE mode: statistics come from the training net, whose BN layers are in LEARN mode",
                l.name()
            )));
        }
        if l.params.len() != 2 {
            return Err(Error::Internal(format!("BN layer `{}` has {} parameter blobs, not 2", l.name(), l.params.len())));
        }
        for &p in &l.params {
            if !seen.insert(p) {
                return Err(Error::Config(format!("BN layer `{}` shares its scale or shift with another BN layer; cannot fold twice", l.name())));
            }
        }
        out.push(i);
    }
    if out.is_empty() {
        return Err(Error::Config(format!("the net has no layer of type {BN_TYPE}")));
    }
    Ok(out)
}

/// Runs `net` forward `iterations` times, layer by layer, collecting the moments of every BN
/// layer's input just before the layer runs. `before_batch(net, i)` is called before batch `i`
/// (to set inputs where the net has no data layer; a no-op otherwise); `progress(i)` after it.
pub fn collect<B: Backend>(
    net: &mut Net<B>,
    iterations: usize,
    mut before_batch: impl FnMut(&mut Net<B>, usize) -> Result<()>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<LayerStatistics>> {
    if iterations == 0 {
        return Err(Error::Config("bn statistics need at least one batch".into()));
    }
    let bns = bn_layers(net)?;
    let mut stats: Vec<LayerStatistics> = bns
        .iter()
        .map(|&i| LayerStatistics { layer: net.layers()[i].name().to_string(), index: i, mean: Vec::new(), var: Vec::new(), batches: 0, per_batch: 0 })
        .collect();
    for it in 0..iterations {
        before_batch(net, it)?;
        let mut next = 0;
        for i in 0..net.layers().len() {
            if next < bns.len() && bns[next] == i {
                let entry = &net.layers()[i];
                let blob = &net.blobs()[entry.bottoms[0]];
                // The layer's reshape comes first in forward_layer; the bottom is final here.
                let m = channel_moments(blob.shape(), &blob.data_to_vec(net.backend())?)
                    .map_err(|e| e.in_layer(entry.name(), entry.type_name()))?;
                if m.count < 2 {
                    return Err(Error::Shape(format!(
                        "layer `{}`: {} value per channel in a batch; an unbiased variance needs at least 2",
                        entry.name(),
                        m.count
                    )));
                }
                let s = &mut stats[next];
                let unbias = m.count as f64 / (m.count as f64 - 1.0);
                if s.batches == 0 {
                    s.mean = vec![0.0; m.mean.len()];
                    s.var = vec![0.0; m.mean.len()];
                }
                for (acc, v) in s.mean.iter_mut().zip(&m.mean) {
                    *acc += v;
                }
                for (acc, v) in s.var.iter_mut().zip(&m.var) {
                    *acc += v * unbias;
                }
                s.batches += 1;
                s.per_batch = m.count;
                next += 1;
            }
            net.forward_layer(i)?;
        }
        progress(it);
    }
    for s in &mut stats {
        let n = s.batches as f64;
        s.mean.iter_mut().for_each(|v| *v /= n);
        s.var.iter_mut().for_each(|v| *v /= n);
    }
    Ok(stats)
}

/// Folds `stats` into the scale and shift of their BN layers in `net` (see [`fold`]).
pub fn apply<B: Backend>(net: &mut Net<B>, stats: &[LayerStatistics], eps: f64) -> Result<()> {
    let be = net.backend().clone();
    for s in stats {
        let entry = net.layers().get(s.index).filter(|l| l.name() == s.layer).ok_or_else(|| Error::Internal(format!("no BN layer `{}` at {}", s.layer, s.index)))?;
        let (ps, pb) = (entry.params[0], entry.params[1]);
        let scale = net.params()[ps].data_to_vec(&be)?;
        let shift = net.params()[pb].data_to_vec(&be)?;
        let (s2, b2) = fold(&scale, &shift, &s.mean, &s.var, eps).map_err(|e| e.in_layer(&s.layer, BN_TYPE))?;
        net.params_mut()[ps].set_data(&be, &s2)?;
        net.params_mut()[pb].set_data(&be, &b2)?;
    }
    Ok(())
}

/// The net's definition and parameters as weights for its inference version: every layer with
/// its blobs, BN layers switched to INFERENCE mode with only their first top (as the script
/// leaves them).
pub fn inference_weights<B: Backend>(net: &Net<B>) -> Result<(NetParameter, Vec<Vec<BlobData>>)> {
    let blobs = net.layer_blobs_host(false)?;
    let layer = net
        .layers()
        .iter()
        .map(|l| {
            let mut p = l.param.clone();
            if l.type_name() == BN_TYPE {
                p.bn_param.get_or_insert_with(Default::default).set_bn_mode(BnMode::Inference);
                p.top.truncate(1);
            }
            p
        })
        .collect();
    Ok((NetParameter { name: Some(net.name().to_string()), layer, ..Default::default() }, blobs))
}

/// Writes [`inference_weights`] as a caffemodel at `path` (atomically).
pub fn write_inference_weights<B: Backend>(net: &Net<B>, path: &Path) -> Result<()> {
    let (param, blobs) = inference_weights(net)?;
    let refs: Vec<Vec<crate::io::BlobRef<'_>>> = blobs.iter().map(|l| l.iter().map(crate::io::BlobRef::of).collect()).collect();
    crate::io::write_caffemodel(path, &param, &refs, false)
}

/// One pass over the training data: for each data layer that reads a list file (DenseImageData,
/// ImageData), a database (Data) or HDF5 files (HDF5Data), the number of lines, records or
/// rows of its source divided by its batch size, rounded up; the largest over such layers. `None` when the net has none or a
/// source cannot be read. The source is found as the data layers find it: as given (relative to the working directory),
/// else relative to `model_dir`.
pub fn epoch_iterations(param: &NetParameter, model_dir: Option<&Path>) -> Option<usize> {
    let mut best: Option<usize> = None;
    for l in &param.layer {
        // For a Data layer, its database's kind.
        let (source, batch, database) = match l.r#type() {
            "DenseImageData" => {
                let p = l.dense_image_data_param.as_ref()?;
                (p.source().to_string(), p.batch_size() as usize, None)
            }
            "ImageData" => {
                let p = l.image_data_param.as_ref()?;
                (p.source().to_string(), p.batch_size() as usize, None)
            }
            "Data" => {
                let p = l.data_param.as_ref()?;
                (p.source().to_string(), p.batch_size() as usize, Some(crate::io::db::DbKind::of_backend(p.backend())))
            }
            "HDF5Data" => {
                let p = l.hdf5_data_param.as_ref()?;
                let rows = hdf5_rows(p.source(), l.top.first()?, model_dir)?;
                let batch = p.batch_size() as usize;
                if batch == 0 || rows == 0 {
                    return None;
                }
                best = Some(best.unwrap_or(0).max(rows.div_ceil(batch)));
                continue;
            }
            _ => continue,
        };
        let direct = Path::new(&source).to_path_buf();
        let path = if direct.exists() { direct } else { model_dir?.join(&source) };
        let lines = if let Some(kind) = database {
            crate::io::db::Database::open(&path, kind).ok()?.len()
        } else {
            let text = std::fs::read_to_string(path).ok()?;
            text.lines().filter(|l| !l.trim().is_empty()).count()
        };
        if batch == 0 || lines == 0 {
            return None;
        }
        best = Some(best.unwrap_or(0).max(lines.div_ceil(batch)));
    }
    best
}

/// The rows of an HDF5Data source: the first dimension of dataset `top` summed over the files
/// it lists (each found as given, else beside the model, else beside the list).
fn hdf5_rows(source: &str, top: &str, model_dir: Option<&Path>) -> Option<usize> {
    let find = |p: &str, near: Option<&Path>| -> Option<std::path::PathBuf> {
        let direct = Path::new(p).to_path_buf();
        if direct.exists() {
            return Some(direct);
        }
        [model_dir, near].into_iter().flatten().map(|d| d.join(p)).find(|c| c.exists())
    };
    let list = find(source, None)?;
    let text = std::fs::read_to_string(&list).ok()?;
    let mut rows = 0;
    for name in text.split_whitespace() {
        let f = crate::io::hdf5::Hdf5::open(&find(name, list.parent())?).ok()?;
        rows += *f.dataset(top).ok()?.shape.first()?;
    }
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_over_batch_and_space() {
        // N=2, C=2, H*W=2: channel 0 holds 1,2 | 3,4; channel 1 holds 10,10 | 10,14.
        let data = [1.0, 2.0, 10.0, 10.0, 3.0, 4.0, 10.0, 14.0];
        let m = channel_moments(&[2, 2, 1, 2], &data).unwrap();
        assert_eq!(m.count, 4);
        assert_eq!(m.mean, [2.5, 11.0]);
        assert_eq!(m.var, [1.25, 3.0]);
        // Fewer axes read as (N, C, 1, 1).
        let m = channel_moments(&[3, 1], &[1.0, 2.0, 6.0]).unwrap();
        assert_eq!((m.mean[0], m.var[0], m.count), (3.0, 14.0 / 3.0, 3));
        assert!(channel_moments(&[1, 1, 1, 1, 1], &[0.0]).unwrap_err().to_string().contains("1 to 4 axes"));
        assert!(channel_moments(&[0, 2], &[]).unwrap_err().to_string().contains("no values"));
    }

    #[test]
    fn folding_matches_the_formula() {
        let (s, b) = fold(&[2.0, 1.0], &[0.5, -1.0], &[3.0, 0.0], &[4.0, 0.25], 0.0).unwrap();
        assert_eq!(s, [1.0, 2.0]);
        assert_eq!(b, [0.5 - 2.0 * 3.0 / 2.0, -1.0]);
        // Folded, the affine map equals normalisation then scale and shift.
        let (scale, shift, mean, var) = (1.7f32, 0.3f32, -0.4f64, 2.5f64);
        let (s, b) = fold(&[scale], &[shift], &[mean], &[var], BN_EPS).unwrap();
        for x in [-3.0f64, 0.0, 1.25, 8.0] {
            let direct = scale as f64 * (x - mean) / (var + BN_EPS).sqrt() + shift as f64;
            assert!((s[0] as f64 * x + b[0] as f64 - direct).abs() < 1e-5, "x={x}");
        }
        assert!(fold(&[1.0], &[1.0, 2.0], &[0.0], &[1.0], 0.0).is_err());
    }
}
