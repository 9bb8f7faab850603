//! `crema segment`: runs an inference net over images and writes, per image, the predicted mask,
//! the class probability map and an overlay (prediction in red, the truth's boundary in white
//! where a true mask is given).

use super::common::NetOpts;
use super::device::{DeviceOpts, Opened};
use anyhow::{bail, Context};
use crema::backend::Backend;
use crema::eval::{self, mask::write_png, sources, Mask, Threshold};
use crema::inference::{gray_image, load_image, transformer, Mean, Options, ResizeFilter, Segmenter, Transformer, DEFAULT_SCALE};
use crema::proto::Phase;
use image::DynamicImage;
use std::path::{Path, PathBuf};

/// `--resize`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ResizeArg {
    /// Bilinear widened when shrinking: how `crema dataset` prepares training images.
    Antialiased,
    /// OpenCV's INTER_LINEAR: how DenseImageData's new_height/new_width resize images.
    Linear,
}

/// The inference net and how images are prepared for it (shared with `crema evaluate`).
#[derive(clap::Args, Debug)]
pub struct ModelOpts {
    /// The inference net (.prototxt): an Input layer in, class probabilities out (e.g.
    /// models/lung_segnet_lite/inference.prototxt).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Weights for the inference net (.caffemodel; for SegNet, the output of `crema bn-stats`).
    #[arg(long)]
    pub weights: Option<String>,
    #[command(flatten)]
    pub device: DeviceOpts,
    /// Multiplier applied to each pixel after the mean is subtracted (transform_param.scale of
    /// the training data layer). Default: the scale of the model's Input layer transform_param
    /// when it has one, else 0.00390625 (1/256, what the lung models train with).
    #[arg(long)]
    pub scale: Option<f32>,
    /// Mean subtracted from each pixel before scaling (transform_param.mean_value): one value,
    /// or one per channel, comma-separated. Default: the Input layer's mean_value, else none.
    #[arg(long, allow_negative_numbers = true)]
    pub mean: Option<String>,
    /// How images are resized to the net's input size.
    #[arg(long, value_enum, default_value = "antialiased")]
    pub resize: ResizeArg,
    /// The class that forms the mask (1: lung in the 2-class lung models).
    #[arg(long, default_value_t = 1)]
    pub class: usize,
    /// The output blob holding class probabilities (default: the net's only output).
    #[arg(long)]
    pub output: Option<String>,
    /// Run the net at this input size instead of its Input layer's: N or HxW (SegNet takes
    /// multiples of 32), e.g. 256 for a lite net trained on 256x256 images.
    #[arg(long)]
    pub size: Option<String>,
    /// Forward passes averaged per image, for a net that samples at test time (Bayesian
    /// SegNet: Dropout with sample_weights_test): the mask and probabilities come from the
    /// samples' mean, and segment also writes <name>_uncertainty.png. Default: the batch size of
    /// the model's input for such a net (as SegNet's Bayesian test script), else 1.
    #[arg(long)]
    pub samples: Option<usize>,
}

impl ModelOpts {
    /// Checks that --model and --weights are given, then opens the backend --gpu names.
    pub fn open(&self) -> anyhow::Result<Opened> {
        if self.model.is_none() {
            bail!("--model is required");
        }
        if self.weights.is_none() {
            bail!("--weights is required (an untrained net segments nothing)");
        }
        self.device.open()
    }

    /// Builds the net on `be` and wraps it in a segmenter; logs the preprocessing.
    pub fn segmenter<B: Backend>(&self, be: B) -> anyhow::Result<Segmenter<B>> {
        let Some(model) = &self.model else { bail!("--model is required") };
        let Some(weights) = &self.weights else { bail!("--weights is required (an untrained net segments nothing)") };
        let opts = NetOpts { model: model.clone(), weights: Some(weights.clone()), level: 0, stage: String::new() };
        let net = opts.build(be, Phase::Test, |_| {})?;
        // The Input layer's transform_param, where the model carries one (Caffe ignores it on
        // Input layers; crema reads it as the preprocessing the net expects).
        let input_param = net
            .inputs()
            .first()
            .and_then(|&b| net.layers().iter().find(|l| l.tops.contains(&b)))
            .and_then(|l| l.param.transform_param.clone());
        let mut transform = match &input_param {
            Some(tp) => Transformer::from_param(Some(tp), Phase::Test, model.parent()).with_context(|| model.display().to_string())?,
            None => transformer(DEFAULT_SCALE, Mean::None),
        };
        let scale_from = match (self.scale, input_param.as_ref().and_then(|t| t.scale)) {
            (Some(s), _) => {
                transform.scale = s;
                "--scale"
            }
            (None, Some(_)) => "the model's Input transform_param",
            (None, None) => {
                transform.scale = DEFAULT_SCALE;
                "default"
            }
        };
        if let Some(m) = &self.mean {
            transform.mean = Mean::Values(parse_mean(m)?);
        }
        let filter = match self.resize {
            ResizeArg::Antialiased => ResizeFilter::Antialiased,
            ResizeArg::Linear => ResizeFilter::Linear,
        };
        let size = self.size.as_deref().map(parse_size).transpose()?;
        let (scale, mean_text) = (transform.scale, match &transform.mean {
            Mean::None => "none".to_string(),
            Mean::Values(v) => format!("{v:?}"),
            Mean::File { path, .. } => path.clone(),
        });
        let options = Options { input: None, output: self.output.clone(), class: self.class, transform, filter, size, samples: self.samples };
        let seg = Segmenter::new(net, options).with_context(|| model.display().to_string())?;
        let [c, h, w] = seg.input_shape();
        eprintln!(
            "input {c}x{h}x{w} ({}); images resized {:?}, pixel = (value - mean) * scale with scale {scale} ({scale_from}), mean {mean_text}",
            if c == 1 { "gray" } else { "BGR" },
            self.resize
        );
        if seg.samples() > 1 {
            eprintln!("the net samples at test time: each image's output is the mean of {} forward passes (--samples)", seg.samples());
        }
        Ok(seg)
    }
}

/// `--size`: `N` (square) or `HxW`.
fn parse_size(s: &str) -> anyhow::Result<(usize, usize)> {
    let num = |v: &str| v.trim().parse::<usize>().with_context(|| format!("--size {s}: give N or HxW (e.g. 256 or 256x320)"));
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok((num(h)?, num(w)?)),
        None => num(s).map(|n| (n, n)),
    }
}

fn parse_mean(s: &str) -> anyhow::Result<Vec<f32>> {
    super::split_list(s).iter().map(|v| v.parse::<f32>().with_context(|| format!("--mean: `{v}` is not a number"))).collect()
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelOpts,
    /// Images to segment, or folders of images.
    #[arg(required = true, value_name = "IMAGES")]
    images: Vec<PathBuf>,
    /// Folder to write <name>_mask.png, <name>_prob.png and <name>_overlay.png into (and
    /// <name>_uncertainty.png when several samples are averaged).
    #[arg(long)]
    out: PathBuf,
    /// Folder of true masks (<name>.png; lung where nonzero in a 0/1 or 0/255 mask, see
    /// --threshold) to outline in the overlays and score.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// A true mask's pixel is lung when its value is above this; default: 0/1 masks are label
    /// maps, others are cut at half their range (> 127 for 8-bit).
    #[arg(long)]
    threshold: Option<u16>,
}

/// `--threshold` as a [`Threshold`].
pub fn threshold(t: Option<u16>) -> Threshold {
    t.map_or(Threshold::Auto, Threshold::Above)
}

/// The image files named on the command line, folders expanded; duplicate names refused (their
/// outputs would overwrite each other).
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let found = sources::image_files(p)?;
            if found.is_empty() {
                bail!("{}: no images (PNG, JPEG, BMP, GIF, TIFF, PNM) in this folder", p.display());
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let mut seen = std::collections::HashMap::new();
    for f in &files {
        if let Some(other) = seen.insert(sources::stem(f), f) {
            bail!("{} and {} have the same name; their outputs would overwrite each other", other.display(), f.display());
        }
    }
    Ok(files)
}

/// Reads the true mask of `image` named `name` in `dir`, checking it has `size`.
pub fn truth_for(dir: &Path, name: &str, size: (usize, usize), image: &Path, t: Threshold) -> anyhow::Result<Option<Mask>> {
    let Some(path) = sources::find_image(dir, name) else { return Ok(None) };
    let m = eval::read_mask(&path, t)?;
    check_same_size(&m, size, &path, image)?;
    Ok(Some(m))
}

/// An error naming both files when `mask` is not `size`.
pub fn check_same_size(mask: &Mask, size: (usize, usize), mask_path: &Path, other: &Path) -> anyhow::Result<()> {
    if (mask.width(), mask.height()) != size {
        bail!(
            "{} is {}x{} but {} is {}x{}: a mask must have its image's size",
            mask_path.display(),
            mask.width(),
            mask.height(),
            other.display(),
            size.0,
            size.1
        );
    }
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let files = expand(&a.images)?;
    match a.model.open()? {
        Opened::Cpu(be) => go(be, &a, &files),
        Opened::Cuda(be) => go(be, &a, &files),
    }
}

fn go<B: Backend>(be: B, a: &Args, files: &[PathBuf]) -> anyhow::Result<()> {
    let mut seg = a.model.segmenter(be)?;
    let channels = seg.input_shape()[0];
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let style = eval::Style::default();
    for (i, file) in files.iter().enumerate() {
        let name = sources::stem(file);
        let img = load_image(file, channels)?;
        let result = seg.segment(&img).with_context(|| file.display().to_string())?;
        let truth = match &a.truth {
            Some(dir) => truth_for(dir, &name, (img.width, img.height), file, threshold(a.threshold))?,
            None => None,
        };
        let overlay = eval::overlay(&gray_image(&img), Some(&result.mask), truth.as_ref(), &style)?;
        write_png(&a.out.join(format!("{name}_mask.png")), &DynamicImage::ImageLuma8(result.mask.to_image()))?;
        write_png(&a.out.join(format!("{name}_prob.png")), &DynamicImage::ImageLuma8(result.prob_image()))?;
        write_png(&a.out.join(format!("{name}_overlay.png")), &DynamicImage::ImageRgb8(overlay))?;
        if let Some(u) = result.uncertainty_image() {
            write_png(&a.out.join(format!("{name}_uncertainty.png")), &DynamicImage::ImageLuma8(u))?;
        }
        let mut line = format!("[{}/{}] {name} {}x{}", i + 1, files.len(), img.width, img.height);
        if let Some(t) = &truth {
            line += &format!(" dice={:.4}", eval::score(&result.mask, t)?.dice);
        }
        if let Some(u) = result.mean_uncertainty() {
            line += &format!(" uncertainty={u:.5}");
        }
        eprintln!("{line}");
    }
    let maps = if seg.samples() > 1 { "probability and uncertainty maps" } else { "probability maps" };
    eprintln!("wrote {} images' masks, {maps} and overlays to {}", files.len(), a.out.display());
    Ok(())
}
