//! Caffe's `convert_imageset`: images listed with their labels, made into an LMDB or LevelDB
//! database of `Datum` records for the Data layer (`-backend`); and its `compute_image_mean`
//! over such a database.
//!
//! As Caffe: the list holds `path label` lines (split at the last space); each image is read
//! from `root + path` (plain concatenation) in colour (B, G, R) or gray, resized with OpenCV's
//! bilinear filter when both `resize_height` and `resize_width` are set, and stored as a raw
//! Datum (channels, height, width, channel-major pixels, label, `encoded: false`, the bytes
//! Caffe's protobuf writes) or, with `encoded`, as the image file's own bytes. The record of
//! line `i` (after shuffling) has the key `format!("{i:08}_{path}")`. Caffe shuffles with its
//! global random generator, which cannot be reproduced; crema's shuffle is a function of the
//! seed.

use super::datum::{datum_values, raw_datum};
use super::decode::{read_image, ColorMode};
use super::resize;
use super::source::read_labeled;
use crate::io::db::{Database, DbKind, Written};
use crate::io::BlobData;
use crate::proto::Datum;
use crate::rng::Rng;
use crate::{Error, Result};
use prost::Message;
use rayon::prelude::*;
use std::path::Path;

/// How the images become records.
#[derive(Clone, Debug, Default)]
pub struct ImagesetOptions {
    /// Read images as one gray channel instead of B, G, R (`-gray`).
    pub gray: bool,
    /// Shuffle the lines with this seed before writing (`-shuffle`).
    pub shuffle: Option<u64>,
    /// Resize every image to `(height, width)` (`-resize_height`, `-resize_width`).
    pub resize: Option<(usize, usize)>,
    /// Refuse images whose size differs from the first one's (`-check_size`).
    pub check_size: bool,
    /// Store the image files' bytes instead of pixels (`-encoded`); only without resizing,
    /// where the file is stored as it is.
    pub encoded: bool,
    /// The kind of database to write (`-backend`; LMDB by default, as Caffe's tool).
    pub backend: DbKind,
}

/// Images converted per parallel step (they are written in order).
const CHUNK: usize = 256;

/// Converts the images `list` names (relative to `root`, prefixed as text) into the database
/// `out`, of the kind `opts.backend` names; `progress` hears the number of images done after
/// each step.
pub fn convert_imageset(root: &str, list: &Path, out: &Path, opts: &ImagesetOptions, mut progress: impl FnMut(usize)) -> Result<Written> {
    if opts.encoded && opts.resize.is_some() {
        return Err(Error::Config(
            "encoded records keep each image file as it is, so they cannot be resized: resize the images first, or store raw pixels"
                .into(),
        ));
    }
    let mut lines = read_labeled(list)?;
    if let Some(seed) = opts.shuffle {
        Rng::new(seed).shuffle(&mut lines);
    }
    let mode = if opts.gray { ColorMode::Gray } else { ColorMode::Bgr };
    let first_size = std::sync::OnceLock::new();
    let record = |i: usize| -> Result<(Vec<u8>, Vec<u8>)> {
        let e = &lines[i];
        let path = format!("{root}{}", e.image);
        let file = Path::new(&path);
        let datum = if opts.encoded {
            // Checked to be an image the Data layer can decode.
            read_image(file, mode)?;
            let bytes = std::fs::read(file).map_err(|err| Error::io(file, err))?;
            Datum { data: Some(bytes), label: Some(e.label), encoded: Some(true), ..Default::default() }.encode_to_vec()
        } else {
            let mut img = read_image(file, mode)?;
            if let Some((h, w)) = opts.resize {
                img = resize::linear(&img, w, h);
            }
            if opts.check_size {
                let first = *first_size.get_or_init(|| (img.height, img.width));
                if (img.height, img.width) != first {
                    return Err(Error::Shape(format!(
                        "{path} (line {}) is {}x{}, not {}x{} as the first image (check_size)",
                        e.line, img.width, img.height, first.1, first.0
                    )));
                }
            }
            raw_datum(&img, e.label)
        };
        Ok((format!("{i:08}_{}", e.image).into_bytes(), datum))
    };
    // The first image fixes the size check's reference before any runs in parallel.
    if opts.check_size && !opts.encoded {
        record(0)?;
    }
    let n = lines.len();
    let records = (0..n.div_ceil(CHUNK)).flat_map(|c| {
        let range = c * CHUNK..((c + 1) * CHUNK).min(n);
        let done = range.end;
        let chunk: Vec<Result<(Vec<u8>, Vec<u8>)>> = range.into_par_iter().map(record).collect();
        progress(done);
        chunk
    });
    crate::io::db::write(opts.backend, out, records)
}

/// Caffe's `compute_image_mean`: the mean of every record of `db` (decoded as the Data layer
/// does without `force_color`/`force_gray`), value by value, as a `1 x C x H x W` mean file
/// blob, summed and divided in `f32` in key order as Caffe does. Every record must have the
/// first one's size.
pub fn compute_image_mean(db: &Database) -> Result<BlobData> {
    let name = |i: usize| db.describe(i);
    let mut sum: Vec<f32> = Vec::new();
    let mut shape = [0; 3];
    for i in 0..db.len() {
        let (values, _) = datum_values(&db.value(i)?, &name(i), None)?;
        let dims = values.shape();
        if i == 0 {
            (shape, sum) = (dims, vec![0.0; dims.iter().product()]);
        } else if dims != shape {
            return Err(Error::Shape(format!(
                "{}: {}x{}x{} (channels x height x width), but the first record is {}x{}x{}; a mean needs one size",
                name(i).display(),
                dims[0],
                dims[1],
                dims[2],
                shape[0],
                shape[1],
                shape[2]
            )));
        }
        for (s, v) in sum.iter_mut().zip(values.chw()) {
            *s += v;
        }
    }
    let count = db.len() as f32;
    let data = sum.into_iter().map(|s| s / count).collect();
    Ok(BlobData { shape: vec![1, shape[0], shape[1], shape[2]], legacy_4d: true, data, diff: Vec::new() })
}

/// Each channel's mean over the pixels of a `1 x C x H x W` mean blob (what Caffe's
/// `compute_image_mean` prints as `mean_value` lines), summed in `f32` as Caffe does.
pub fn channel_means(mean: &BlobData) -> Vec<f32> {
    let c = mean.shape.get(1).copied().unwrap_or(1).max(1);
    let dim = mean.data.len() / c;
    mean.data.chunks(dim.max(1)).map(|ch| ch.iter().fold(0f32, |a, &v| a + v) / dim as f32).collect()
}
