//! `crema evaluate`: Dice, IoU and pixel accuracy per image, their summary as a table,
//! metrics.csv, summary.json and a montage of the best and worst cases — from an inference net
//! and a list of `image mask` pairs, or from folders of predicted and true masks.

use super::device::Opened;
use super::segment::{check_same_size, threshold, ModelOpts};
use anyhow::{bail, Context};
use crema::backend::Backend;
use crema::eval::{self, sources, ImageScore, Mask};
use crema::inference::{gray_image, load_image};
use image::{GrayImage, RgbImage};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelOpts,
    /// List of `image mask` lines (DenseImageData's source format) to segment and score.
    #[arg(long)]
    source: Option<PathBuf>,
    /// Folder the list's paths are relative to (default: the list file's folder).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Folder of predicted masks (as `crema segment` writes them, or <name>.png) to score
    /// against --truth without a net.
    #[arg(long, conflicts_with_all = ["source", "model", "weights", "gpu", "precision"])]
    pred: Option<PathBuf>,
    /// Folder of true masks of the same names as the predictions.
    #[arg(long, requires = "pred")]
    truth: Option<PathBuf>,
    /// With --pred: folder of the X-rays (<name>.png) to draw the montage's overlays on
    /// (without it they are drawn on black).
    #[arg(long, requires = "pred")]
    images: Option<PathBuf>,
    /// Folder to write metrics.csv, summary.json and best_worst.png into.
    #[arg(long)]
    out: PathBuf,
    /// A mask pixel is lung when its value is above this; default: 0/1 masks are label maps,
    /// others are cut at half their range (> 127 for 8-bit).
    #[arg(long)]
    threshold: Option<u16>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let summary = match (&a.source, &a.pred) {
        (Some(source), _) => {
            let pairs = sources::read_list(source, a.root.as_deref())?;
            match a.model.open()? {
                Opened::Cpu(be) => with_model(be, &a, &pairs)?,
                Opened::Cuda(be) => with_model(be, &a, &pairs)?,
            }
        }
        (None, Some(_)) => with_masks(&a)?,
        (None, None) => bail!("give --model, --weights and --source, or --pred and --truth"),
    };
    print!("{}", eval::report::table(&summary));
    eprintln!("wrote {0}/metrics.csv, {0}/summary.json and {0}/best_worst.png", a.out.display());
    Ok(())
}

/// Segments each image of the list and scores it against its mask at the mask's resolution.
fn with_model<B: Backend>(be: B, a: &Args, pairs: &[sources::Pair]) -> anyhow::Result<eval::Summary> {
    let mut seg = a.model.segmenter(be)?;
    let channels = seg.input_shape()[0];
    let t = threshold(a.threshold);
    let mut case = |p: &sources::Pair| -> anyhow::Result<(GrayImage, Mask, Mask)> {
        let img = load_image(&p.image, channels)?;
        let truth = eval::read_mask(&p.mask, t)?;
        check_same_size(&truth, (img.width, img.height), &p.mask, &p.image)?;
        let result = seg.segment(&img).with_context(|| p.image.display().to_string())?;
        Ok((gray_image(&img), result.mask, truth))
    };
    let mut rows = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        let (_, pred, truth) = case(p)?;
        let scores = eval::score(&pred, &truth)?;
        eprintln!("[{}/{}] {} dice={:.4} iou={:.4} accuracy={:.4}", i + 1, pairs.len(), p.name, scores.dice, scores.iou, scores.accuracy);
        rows.push(ImageScore { name: p.name.clone(), scores });
    }
    let summary = eval::write_results(&a.out, &rows, |i| {
        let (xray, pred, truth) = case(&pairs[i])?;
        Ok::<_, anyhow::Error>(eval::overlay(&xray, Some(&pred), Some(&truth), &eval::Style::default())?)
    })?;
    Ok(summary)
}

/// Scores the masks of --pred against those of the same name in --truth.
fn with_masks(a: &Args) -> anyhow::Result<eval::Summary> {
    let pred_dir = a.pred.as_ref().expect("checked by run");
    let Some(truth_dir) = &a.truth else { bail!("--pred needs --truth, the folder of true masks") };
    let (pairs, unmatched) = sources::pair_folders(pred_dir, truth_dir)?;
    if unmatched > 0 {
        eprintln!("note: {unmatched} true mask(s) in {} have no prediction and are not scored", truth_dir.display());
    }
    let t = threshold(a.threshold);
    let load = |p: &sources::MaskPair| -> anyhow::Result<(Mask, Mask)> {
        let pred = eval::read_mask(&p.pred, t)?;
        let truth = eval::read_mask(&p.truth, t)?;
        check_same_size(&pred, (truth.width(), truth.height()), &p.pred, &p.truth)?;
        Ok((pred, truth))
    };
    let mut rows = Vec::with_capacity(pairs.len());
    for p in &pairs {
        let (pred, truth) = load(p)?;
        rows.push(ImageScore { name: p.name.clone(), scores: eval::score(&pred, &truth)? });
    }
    let summary = eval::write_results(&a.out, &rows, |i| -> anyhow::Result<RgbImage> {
        let (pred, truth) = load(&pairs[i])?;
        let xray = match a.images.as_ref().and_then(|d| sources::find_image(d, &pairs[i].name)) {
            Some(path) => {
                let g = gray_image(&load_image(&path, 1)?);
                if (g.width() as usize, g.height() as usize) != (truth.width(), truth.height()) {
                    bail!(
                        "{} is {}x{} but its mask {} is {}x{}",
                        path.display(),
                        g.width(),
                        g.height(),
                        pairs[i].truth.display(),
                        truth.width(),
                        truth.height()
                    );
                }
                g
            }
            None => GrayImage::new(truth.width() as u32, truth.height() as u32),
        };
        Ok(eval::overlay(&xray, Some(&pred), Some(&truth), &eval::Style::default())?)
    })?;
    Ok(summary)
}
