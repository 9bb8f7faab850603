//! `crema dataset`: prepares a segmentation dataset for DenseImageData (see
//! `crema::data::dataset`), from folders of images and masks, from JSRT + SCR, or from list
//! files, and prints SegNet's median-frequency class weights.

use anyhow::{bail, Context};
use crema::data::dataset::{self, Input, Options, Split};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder: images/, labels/, train.txt, test.txt, class_weights.txt.
    #[arg(long)]
    out: PathBuf,
    /// Output size: N for N x N, or WIDTHxHEIGHT.
    #[arg(long)]
    size: String,
    /// Folder of images (with --masks).
    #[arg(long, requires = "masks", conflicts_with_all = ["jsrt", "from_list"])]
    images: Option<PathBuf>,
    /// Folder of masks matched to the images by file stem (NAME.* or NAME_mask.*); repeat
    /// for several, e.g. left and right lungs: a pixel is foreground where any mask is > 127.
    #[arg(long, action = clap::ArgAction::Append)]
    masks: Vec<PathBuf>,
    /// Folder of JSRT .IMG files (with --scr).
    #[arg(long, requires = "scr", conflicts_with_all = ["from_list", "masks"])]
    jsrt: Option<PathBuf>,
    /// SCR's folder (searched for `left lung` and `right lung` folders; its fold1/fold2 are
    /// the default split).
    #[arg(long, requires = "jsrt")]
    scr: Option<PathBuf>,
    /// A list of `image mask [mask...]` lines (paths relative to the working directory or to
    /// the list), e.g. ../shared/data/cxr-lungs/train.txt.
    #[arg(long)]
    from_list: Option<PathBuf>,
    /// A second list of held-out pairs: the first list is then the training set.
    #[arg(long, requires = "from_list")]
    from_list_test: Option<PathBuf>,
    /// Fraction of the pairs for training, after a shuffle seeded by --seed.
    #[arg(long, conflicts_with = "train_list")]
    split: Option<f64>,
    /// Seed of --split.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Names of the training images, one per line (first field, by file stem).
    #[arg(long, requires = "test_list")]
    train_list: Option<PathBuf>,
    /// Names of the held-out images.
    #[arg(long, requires = "train_list")]
    test_list: Option<PathBuf>,
    /// Keep only pairs whose image path contains this text (e.g. montgomery).
    #[arg(long = "match")]
    matching: Option<String>,
    /// Keep at most this many training pairs (the first ones, in order).
    #[arg(long)]
    limit_train: Option<usize>,
    /// Keep at most this many held-out pairs.
    #[arg(long)]
    limit_test: Option<usize>,
}

/// `N` or `WxH` to (width, height).
fn parse_size(s: &str) -> anyhow::Result<(usize, usize)> {
    let num = |t: &str| t.trim().parse::<usize>().ok().filter(|&v| v > 0);
    let parsed = match s.split_once(['x', 'X']) {
        Some((w, h)) => num(w).zip(num(h)),
        None => num(s).map(|n| (n, n)),
    };
    parsed.with_context(|| format!("--size {s}: give N or WIDTHxHEIGHT (positive)"))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (width, height) = parse_size(&a.size)?;
    let input = match (a.images, a.jsrt, a.from_list) {
        (Some(images), None, None) => Input::Folders { images, masks: a.masks },
        (None, Some(images), None) => Input::JsrtScr { images, scr: a.scr.context("--jsrt needs --scr")? },
        (None, None, Some(train)) => Input::Lists { train, test: a.from_list_test },
        _ => bail!("give one input: --images with --masks, --jsrt with --scr, or --from-list"),
    };
    let split = match (a.split, a.train_list, a.test_list) {
        (Some(f), _, _) => Some(Split::Fraction(f)),
        (None, Some(train), Some(test)) => Some(Split::Lists { train, test }),
        _ => None,
    };
    let opts = Options {
        input,
        out: a.out.clone(),
        width,
        height,
        split,
        seed: a.seed,
        matching: a.matching,
        limit_train: a.limit_train,
        limit_test: a.limit_test,
    };
    let report = dataset::prepare(&opts)?;
    println!(
        "wrote {} training and {} held-out pairs of {width}x{height} to {} (split by {})",
        report.train.len(),
        report.test.len(),
        a.out.display(),
        report.split
    );
    println!(
        "  images/, labels/ (0 = background, 1 = foreground), train.txt{}, class_weights.txt",
        if report.test.is_empty() { "" } else { ", test.txt" }
    );
    for n in &report.notes {
        println!("note: {n}");
    }
    print!("{}", report.stats.report());
    Ok(())
}
