//! Preparing a segmentation dataset for DenseImageData (`crema dataset`): image/mask pairs
//! from folders, from the JSRT + SCR layout or from list files, resized to one size, written
//! as `images/NAME.png` and `labels/NAME.png` (class indices 0/1: foreground where any of the
//! pair's masks is > 127, so SCR's and Montgomery's separate left and right lung masks are
//! OR-ed), with `train.txt` / `test.txt` in DenseImageData's `image label` format and the
//! training labels' class frequencies and median-frequency weights.
//!
//! Images are resized with the antialiased bilinear filter ([`resize::antialiased`]) and
//! masks, after the OR, by centred nearest neighbour ([`resize::nearest_centered`]). Gray
//! sources are written as gray PNGs, colour ones as RGB PNGs; 16-bit samples keep their high
//! byte and JSRT `.IMG` files are mapped as [`crate::data::decode`] describes, so the written
//! pixels are what a data layer would have read from the originals, before resizing.

pub mod collect;
pub mod stats;

pub use collect::Case;
pub use stats::ClassStats;

use super::decode::{read_image, read_image_info, ColorMode, Image8};
use super::resize;
use crate::rng::Rng;
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Where the pairs come from.
#[derive(Clone, Debug)]
pub enum Input {
    /// Images in a folder; masks in one or more folders, matched by file stem (a mask named
    /// `NAME_mask.*` matches `NAME` too).
    Folders {
        /// The image folder.
        images: PathBuf,
        /// The mask folders.
        masks: Vec<PathBuf>,
    },
    /// JSRT `.IMG` files and SCR's `left lung` / `right lung` mask folders.
    JsrtScr {
        /// A folder holding the `.IMG` files (searched recursively).
        images: PathBuf,
        /// SCR's folder (searched recursively for `left lung` and `right lung`).
        scr: PathBuf,
    },
    /// List files of `image mask [mask...]` lines.
    Lists {
        /// The pairs for training (or all pairs, to split).
        train: PathBuf,
        /// The held-out pairs.
        test: Option<PathBuf>,
    },
}

/// How pairs are split between train.txt and test.txt.
#[derive(Clone, Debug)]
pub enum Split {
    /// This fraction of the pairs (after a shuffle seeded by `Options::seed`) for training.
    Fraction(f64),
    /// The names listed in each file (first field of each line, by file stem).
    Lists {
        /// Training names.
        train: PathBuf,
        /// Held-out names.
        test: PathBuf,
    },
}

/// Everything `crema dataset` is told.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the pairs come from.
    pub input: Input,
    /// The output folder.
    pub out: PathBuf,
    /// Output width.
    pub width: usize,
    /// Output height.
    pub height: usize,
    /// The split; `None` keeps the input's own (list files, SCR folds).
    pub split: Option<Split>,
    /// Seed of the `Fraction` split.
    pub seed: u64,
    /// Keep only pairs whose image path contains this text.
    pub matching: Option<String>,
    /// Keep at most this many training pairs (the first ones, in order).
    pub limit_train: Option<usize>,
    /// Keep at most this many held-out pairs.
    pub limit_test: Option<usize>,
}

/// What `prepare` wrote.
#[derive(Clone, Debug)]
pub struct Report {
    /// Names of the training pairs, in train.txt's order.
    pub train: Vec<String>,
    /// Names of the held-out pairs.
    pub test: Vec<String>,
    /// How the split was made.
    pub split: String,
    /// Class statistics of the training labels.
    pub stats: ClassStats,
    /// Things the user should know (pairs left out, suspicious images).
    pub notes: Vec<String>,
}

/// Finds the pairs, splits them, and writes the dataset.
pub fn prepare(opts: &Options) -> Result<Report> {
    if opts.width == 0 || opts.height == 0 {
        return Err(Error::Config("the output size must be positive".into()));
    }
    let mut notes = Vec::new();
    let mut cases = match &opts.input {
        Input::Folders { images, masks } => collect::from_folders(images, masks, &mut notes)?,
        Input::JsrtScr { images, scr } => collect::from_jsrt_scr(images, scr, &mut notes)?,
        Input::Lists { train, test } => {
            let mut c = collect::from_list(train, "train")?;
            if let Some(t) = test {
                c.extend(collect::from_list(t, "test")?);
            }
            c
        }
    };
    if let Some(m) = &opts.matching {
        cases.retain(|c| c.image.to_string_lossy().contains(m.as_str()));
        if cases.is_empty() {
            return Err(Error::Config(format!("no image path contains `{m}`")));
        }
    }
    let mut seen = HashMap::new();
    for c in &cases {
        if let Some(other) = seen.insert(c.name.clone(), c.image.clone()) {
            return Err(Error::Config(format!(
                "two images would both be written as {}.png: {} and {}",
                c.name,
                other.display(),
                c.image.display()
            )));
        }
    }
    let (mut train, mut test, split) = split(cases, opts, &mut notes)?;
    if let Some(n) = opts.limit_train {
        train.truncate(n);
    }
    if let Some(n) = opts.limit_test {
        test.truncate(n);
    }
    if train.is_empty() {
        return Err(Error::Config("no training pairs left".into()));
    }

    let out = &opts.out;
    for sub in ["images", "labels"] {
        std::fs::create_dir_all(out.join(sub)).map_err(|e| Error::io(out.join(sub), e))?;
    }
    let results: Vec<Result<(Vec<u8>, Option<String>)>> =
        train.par_iter().chain(test.par_iter()).map(|c| write_pair(c, opts.width, opts.height, out)).collect();
    let mut labels = Vec::with_capacity(train.len());
    for (i, r) in results.into_iter().enumerate() {
        let (label, note) = r?;
        notes.extend(note);
        if i < train.len() {
            labels.push(label);
        }
    }
    write_list(&out.join("train.txt"), &train)?;
    let test_list = out.join("test.txt");
    if test.is_empty() {
        if test_list.exists() {
            std::fs::remove_file(&test_list).map_err(|e| Error::io(&test_list, e))?;
        }
    } else {
        write_list(&test_list, &test)?;
    }
    let stats = ClassStats::count(labels.iter().map(|l| l.as_slice()), 2);
    let weights = out.join("class_weights.txt");
    std::fs::write(&weights, stats.report()).map_err(|e| Error::io(&weights, e))?;
    Ok(Report {
        train: train.into_iter().map(|c| c.name).collect(),
        test: test.into_iter().map(|c| c.name).collect(),
        split,
        stats,
        notes,
    })
}

/// Splits `cases` into training and held-out pairs as `opts` says.
fn split(cases: Vec<Case>, opts: &Options, notes: &mut Vec<String>) -> Result<(Vec<Case>, Vec<Case>, String)> {
    let from_lists_with_test = matches!(&opts.input, Input::Lists { test: Some(_), .. });
    match &opts.split {
        Some(_) if from_lists_with_test => Err(Error::Config(
            "the held-out list already splits the pairs: give --split/--train-list only with a single list".into(),
        )),
        Some(Split::Fraction(f)) => {
            if !(*f > 0.0 && *f <= 1.0) {
                return Err(Error::Config(format!("--split {f}: give the training fraction, in (0, 1]")));
            }
            let mut cases = cases;
            cases.sort_by(|a, b| a.name.cmp(&b.name));
            Rng::new(opts.seed).shuffle(&mut cases);
            let n_train = ((cases.len() as f64 * f).round() as usize).clamp(1, cases.len());
            let mut test = cases.split_off(n_train);
            let mut train = cases;
            train.sort_by(|a, b| a.name.cmp(&b.name));
            test.sort_by(|a, b| a.name.cmp(&b.name));
            let how = format!("a seeded shuffle (seed {}) split {} / {}", opts.seed, train.len(), test.len());
            Ok((train, test, how))
        }
        Some(Split::Lists { train: tl, test: sl }) => {
            let (tn, sn) = (collect::names_in(tl)?, collect::names_in(sl)?);
            let mut by_name: HashMap<String, Case> = cases.into_iter().map(|c| (c.name.clone(), c)).collect();
            let mut take = |names: &[String], list: &Path| -> Result<Vec<Case>> {
                names
                    .iter()
                    .map(|n| {
                        by_name.remove(n).ok_or_else(|| {
                            Error::Config(format!("{} names `{n}`, which is not among the pairs found (or is listed twice)", list.display()))
                        })
                    })
                    .collect()
            };
            let train = take(&tn, tl)?;
            let test = take(&sn, sl)?;
            if !by_name.is_empty() {
                notes.push(format!("{} pair(s) are in neither list and were left out", by_name.len()));
            }
            Ok((train, test, format!("the lists {} and {}", tl.display(), sl.display())))
        }
        None => match &opts.input {
            Input::Lists { .. } => {
                let (train, test): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|c| c.group.as_deref() == Some("train"));
                Ok((train, test, "the given lists".into()))
            }
            Input::JsrtScr { .. } => {
                let groups: BTreeSet<String> = cases.iter().filter_map(|c| c.group.clone()).collect();
                if groups.len() < 2 || cases.iter().any(|c| c.group.is_none()) {
                    return Err(Error::Config(
                        "SCR's folds were not found for every image: give --split FRACTION or --train-list/--test-list".into(),
                    ));
                }
                let first = groups.iter().next().cloned().unwrap_or_default();
                let (train, test): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|c| c.group.as_deref() == Some(&first));
                Ok((train, test, format!("SCR's folds ({first} for training, the other for testing)")))
            }
            Input::Folders { .. } => Err(Error::Config("give --split FRACTION or --train-list and --test-list".into())),
        },
    }
}

/// Reads, resizes and writes one pair; returns its label (0/1 per pixel) and a note.
fn write_pair(case: &Case, width: usize, height: usize, out: &Path) -> Result<(Vec<u8>, Option<String>)> {
    let (img, info) = read_image_info(&case.image, ColorMode::Bgr)?;
    let img = if info.color { img } else { Image8 { channels: 1, data: img.data.iter().step_by(3).copied().collect(), ..img } };
    let mut note = None;
    if info.bits == 16 && img.data.iter().all(|&v| v < 16) {
        note = Some(format!(
            "{}: 16-bit samples whose high bytes are all below 16 (12-bit data?); keeping the high byte, as Caffe \
             does, leaves it nearly black",
            case.image.display()
        ));
    }
    let mut union: Option<Image8> = None;
    for m in &case.masks {
        let mask = read_image(m, ColorMode::Gray)?;
        match &mut union {
            None => union = Some(Image8 { data: mask.data.iter().map(|&v| (v > 127) as u8).collect(), ..mask }),
            Some(u) => {
                if (u.width, u.height) != (mask.width, mask.height) {
                    return Err(Error::Shape(format!(
                        "{}: the mask is {}x{} but {} is {}x{}",
                        m.display(),
                        mask.width,
                        mask.height,
                        case.masks[0].display(),
                        u.width,
                        u.height
                    )));
                }
                u.data.iter_mut().zip(&mask.data).for_each(|(a, &v)| *a |= (v > 127) as u8);
            }
        }
    }
    let union = union.ok_or_else(|| Error::Internal(format!("{} has no mask", case.image.display())))?;
    let (ia, ma) = (img.width as f64 / img.height as f64, union.width as f64 / union.height as f64);
    if (ia / ma - 1.0).abs() > 0.01 {
        return Err(Error::Shape(format!(
            "{}: the image is {}x{} but its mask {} is {}x{}, another shape",
            case.image.display(),
            img.width,
            img.height,
            case.masks[0].display(),
            union.width,
            union.height
        )));
    }
    let img = resize::antialiased(&img, width, height);
    let label = resize::nearest_centered(&union, width, height);
    write_png(&out.join("images").join(format!("{}.png", case.name)), &img)?;
    write_png(&out.join("labels").join(format!("{}.png", case.name)), &label)?;
    Ok((label.data, note))
}

/// Writes an [`Image8`] as a PNG (gray, or RGB from its BGR samples), compressed hard.
pub fn write_png(path: &Path, img: &Image8) -> Result<()> {
    use image::ImageEncoder;
    let (data, color) = match img.channels {
        1 => (img.data.clone(), image::ExtendedColorType::L8),
        3 => (img.data.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect(), image::ExtendedColorType::Rgb8),
        n => return Err(Error::Internal(format!("cannot write a {n}-channel image"))),
    };
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        std::io::BufWriter::new(file),
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::Adaptive,
    );
    encoder
        .write_image(&data, img.width as u32, img.height as u32, color)
        .map_err(|e| Error::Encode { file: path.display().to_string(), msg: e.to_string() })
}

fn write_list(path: &Path, cases: &[Case]) -> Result<()> {
    let text: String = cases.iter().map(|c| format!("images/{0}.png labels/{0}.png\n", c.name)).collect();
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
