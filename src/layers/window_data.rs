//! WindowData (BVLC Caffe; R-CNN's fine-tuning data layer): windows (boxes) of images, listed
//! in a window file, warped to `crop_size x crop_size`. Tops: data `(N, 3, crop_size,
//! crop_size)` and label `(N)`.
//!
//! The window file (`window_data_param.source`), read as tokens separated by C's whitespace as
//! Caffe reads it (Unicode spaces stay inside a token), repeats one block per image:
//!
//! ```text
//! # image_index
//! img_path
//! channels
//! height
//! width
//! num_windows
//! class_index overlap x1 y1 x2 y2     (num_windows lines, corners inclusive, 0-based)
//! ```
//!
//! A window whose `overlap >= fg_threshold` is foreground, labelled with its `class_index`
//! (which must be above 0, Caffe's check); one whose `overlap < bg_threshold` is background,
//! labelled 0; others are dropped. Image paths are `root_folder + img_path`, as text.
//!
//! Each batch, as Caffe's `WindowDataLayer::load_batch`:
//! - `num_fg = int(float(batch_size) * fg_fraction)` (truncated, not rounded) foreground windows
//!   and `batch_size - num_fg` background ones, background first, each drawn uniformly at random
//!   with replacement from its set, then a mirror flip with probability 1/2 when
//!   `transform_param.mirror` is set (in every phase);
//! - the image is read in colour (BGR, OpenCV's `IMREAD_COLOR`); with `context_pad > 0` or
//!   `crop_mode: "square"` the window is first grown about its centre by `crop / (crop - 2 *
//!   context_pad)` (and, for "square", to a square of its longer side), in `f32` and rounded as
//!   Caffe rounds; the part inside the image is warped (bilinear, `cv::resize` INTER_LINEAR: see
//!   `crate::data::resize::linear`) to the size that part would have in the warped whole, placed
//!   at the offset the part outside the image would take, and the rest stays 0 (the left pad
//!   becomes the right one's when mirrored; the warp shrinks where rounding would overflow the
//!   crop, as in Caffe);
//! - each written value is `(pixel - mean) * scale`, the mean from `transform_param.mean_value`
//!   (one, or one per channel) or `transform_param.mean_file` read at the crop's position in the
//!   output shifted by `(mean_width - crop_size) / 2` on both axes (Caffe's `mean_off`, computed
//!   from the width for both axes); the zero padding gets no mean. `scale` is
//!   `window_data_param.scale`: Caffe's WindowData reads its scale there and its crop size,
//!   mirror and mean from `transform_param`.
//! - `cache_images` is accepted: Caffe then keeps the encoded files in memory, which changes only
//!   the speed; crema reads the files each time.
//!
//! Draws are a pure function of the layer's seed and the forward pass (`Rng::stream` of a
//! seed derived from the layer's, per pass), so a resumed run sees the batches the unbroken run
//! saw; Caffe's own stream comes from its Boost RNG and cannot be reproduced, but the
//! distribution is Caffe's. Loading runs ahead in background threads (`crate::data::prefetch`).
//!
//! The window file is read and checked whole when the net is built (each window against its
//! image's size when drawn). Where crema refuses what Caffe would run into undefined behaviour
//! or silently misread: a malformed, truncated or non-numeric token, a block number that is not
//! its position in the file (Caffe indexes its images by it),
//! a negative `num_windows`, an inverted window (`x2 < x1` or `y2 < y1`) among those a batch may
//! draw, a window file that is not UTF-8 text, an image that does
//! not exist (checked for every image when the net is built; Caffe logs it only when a window
//! of it is drawn, and returns a partly filled batch), a window outside its image (OpenCV would
//! throw), a warp rounded to nothing, an empty foreground or background set that the batch
//! draws from (Caffe divides by zero), `fg_fraction` outside `0..=1`, `2 * context_pad >=
//! crop_size`, a `crop_mode` other than "warp" or "square" (Caffe warps), a last image block
//! whose `channels` is not 3 (Caffe shapes its data top from it but writes 3 channels; the
//! other blocks' channels and every block's height and width are read and, as in Caffe, not
//! used), a mean file too small for the crop, and a field Caffe's WindowData does not read that
//! disagrees with the one it does: `window_data_param.crop_size`, `mirror` or `mean_file` other
//! than `transform_param`'s (their pre-2014 place, which only the V1 upgrade moves), a
//! `transform_param.scale` other than `window_data_param.scale`, and `force_gray`.
//! Labels the loss cannot take are an error naming the window file line (see
//! `Layer::set_label_range`).

use super::image_data::{batch_size, resolver, FeedLayer, FeedSource};
use super::{Arity, Layer, LayerContext};
use crate::backend::Backend;
use crate::data::decode::{read_image, ColorMode, Image8};
use crate::data::labels::LabelRanges;
use crate::data::prefetch::{Batch, BatchLoader, Feed};
use crate::data::resize;
use crate::data::source::resolve_file;
use crate::data::transform::{Mean, Transformer};
use crate::proto::LayerParameter;
use crate::rng::Rng;
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Channels of every image: Caffe reads them with `IMREAD_COLOR`.
const CHANNELS: usize = 3;

/// One foreground or background window of the window file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    /// The image's position in the file (its block number).
    image: u32,
    /// The class (foreground) or 0 (background).
    label: i32,
    x1: i32,
    y1: i32,
    x2: i32,
    y2: i32,
    /// 1-based line of the window in the window file, for errors.
    line: u32,
}

/// One image block of the window file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ImageEntry {
    /// The path as written.
    name: String,
    /// 1-based line of the path.
    line: usize,
}

/// What a window file holds.
#[derive(Debug)]
struct WindowFile {
    images: Vec<ImageEntry>,
    fg: Vec<Window>,
    bg: Vec<Window>,
    /// The last block's `channels` and its line: what Caffe shapes the data top from.
    last_channels: (i64, usize),
}

fn bad_line(file: &Path, line: usize, msg: String) -> Error {
    Error::Decode { file: file.display().to_string(), msg: format!("line {line}: {msg}") }
}

/// The whitespace-separated tokens of a window file with their lines, and where the reader is
/// (for messages built only when something is wrong).
struct Tokens<'a> {
    it: Box<dyn Iterator<Item = (usize, &'a str)> + 'a>,
    file: &'a Path,
    /// Line of the last token read.
    line: usize,
    /// The block being read (0-based) and, inside it, the window (0-based) and count.
    block: usize,
    window: Option<(i64, i64)>,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str, file: &'a Path) -> Self {
        // C's whitespace, as Caffe's `>>` splits: not Unicode spaces, which file names may hold.
        let space = |c: char| matches!(c, ' ' | '\t' | '\x0B' | '\x0C' | '\r');
        let it = text.lines().enumerate().flat_map(move |(i, l)| l.split(space).filter(|t| !t.is_empty()).map(move |t| (i + 1, t)));
        Tokens { it: Box::new(it), file, line: 1, block: 0, window: None }
    }

    fn try_next(&mut self) -> Option<&'a str> {
        let (line, t) = self.it.next()?;
        self.line = line;
        Some(t)
    }

    fn place(&self) -> String {
        match self.window {
            Some((k, n)) => format!("window {} of {n} of image block {}", k + 1, self.block),
            None => format!("image block {}", self.block),
        }
    }

    fn next(&mut self, what: &str) -> Result<&'a str> {
        match self.try_next() {
            Some(t) => Ok(t),
            None => Err(bad_line(self.file, self.line, format!("the file ends where {what} of {} was expected", self.place()))),
        }
    }

    fn parse<T: std::str::FromStr>(&mut self, what: &str, kind: &str) -> Result<T> {
        let t = self.next(what)?;
        t.parse::<T>()
            .map_err(|_| bad_line(self.file, self.line, format!("{what} of {} is `{t}`, not {kind}", self.place())))
    }

    fn int<T: std::str::FromStr>(&mut self, what: &str) -> Result<T> {
        self.parse(what, "an integer")
    }
}

/// Reads a window file, sorting its windows into foreground (`overlap >= fg_threshold`) and
/// background (`overlap < bg_threshold`).
fn read_window_file(path: &Path, fg_threshold: f32, bg_threshold: f32) -> Result<WindowFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Error::Decode { file: path.display().to_string(), msg: format!("not UTF-8 text: {e}") })?;
    let mut tok = Tokens::new(&text, path);
    let Some(mut hash) = tok.try_next() else {
        return Err(Error::Decode { file: path.display().to_string(), msg: "the window file is empty".into() });
    };
    let (mut images, mut fg, mut bg) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_channels;
    loop {
        let block = images.len();
        tok.block = block;
        tok.window = None;
        if hash != "#" {
            return Err(bad_line(path, tok.line, format!("expected `#` opening image block {block}, found `{hash}`")));
        }
        let index: i64 = tok.int("the image index after `#`")?;
        if index != block as i64 {
            return Err(bad_line(
                path,
                tok.line,
                format!(
                    "image block {block} is numbered {index}: Caffe takes the number as the image's position in the \
                     file (from 0), so blocks must be numbered 0, 1, 2, ... in order"
                ),
            ));
        }
        let image = u32::try_from(block)
            .map_err(|_| bad_line(path, tok.line, "more images than crema can index (2^32)".into()))?;
        let name = tok.next("the image path")?;
        let name_line = tok.line;
        let channels: i64 = tok.int("the image's channels")?;
        last_channels = (channels, tok.line);
        let _height: i64 = tok.int("the image's height")?;
        let _width: i64 = tok.int("the image's width")?;
        let num_windows: i64 = tok.int("the number of windows")?;
        if num_windows < 0 {
            return Err(bad_line(path, tok.line, format!("image block {block} has a negative number of windows ({num_windows})")));
        }
        for k in 0..num_windows {
            tok.window = Some((k, num_windows));
            let label: i32 = tok.int("the class index")?;
            let line = tok.line;
            let overlap: f32 = tok.parse("the overlap", "a number")?;
            let x1: i32 = tok.int("x1")?;
            let y1: i32 = tok.int("y1")?;
            let x2: i32 = tok.int("x2")?;
            let y2: i32 = tok.int("y2")?;
            let here = |msg: String| bad_line(path, line, msg);
            if !overlap.is_finite() {
                return Err(here(format!("the overlap is {overlap}")));
            }
            // Only the windows a batch may draw are checked (Caffe never reads the others).
            let kept = overlap >= fg_threshold || overlap < bg_threshold;
            if kept && (x2 < x1 || y2 < y1) {
                return Err(here(format!(
                    "the window x1 {x1} y1 {y1} x2 {x2} y2 {y2} is empty (corners are inclusive: x1 <= x2, y1 <= y2)"
                )));
            }
            let line = u32::try_from(line).map_err(|_| here("too many lines (2^32)".into()))?;
            let w = Window { image, label, x1, y1, x2, y2, line };
            if overlap >= fg_threshold {
                if label <= 0 {
                    return Err(here(format!(
                        "a foreground window (overlap {overlap} >= fg_threshold {fg_threshold}) has class {label}; \
                         foreground classes start at 1 (0 is background; Caffe checks label > 0)"
                    )));
                }
                fg.push(w);
            } else if overlap < bg_threshold {
                bg.push(Window { label: 0, ..w });
            }
        }
        images.push(ImageEntry { name: name.to_string(), line: name_line });
        match tok.try_next() {
            Some(t) => hash = t,
            None => break,
        }
    }
    Ok(WindowFile { images, fg, bg, last_channels })
}

/// Where a window goes: the image region read (inclusive corners, inside the image), the size
/// it is warped to, and where that lands in the `crop x crop` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Warp {
    x1: usize,
    y1: usize,
    x2: usize,
    y2: usize,
    width: usize,
    height: usize,
    pad_w: usize,
    pad_h: usize,
}

/// Caffe's geometry for window `(x1, y1, x2, y2)` of an image of `cols x rows`: with
/// `context_pad > 0` or `square`, grown about its centre and clipped to the image (in `f32`,
/// rounded half away from zero, as Caffe computes in `Dtype` and rounds with `round`); else the
/// window itself, warped to the whole crop. An error (a message) where Caffe's OpenCV calls
/// would throw.
fn warp_geometry(
    (x1, y1, x2, y2): (i32, i32, i32, i32),
    cols: usize,
    rows: usize,
    crop: usize,
    context_pad: usize,
    square: bool,
    mirror: bool,
) -> std::result::Result<Warp, String> {
    let (cols, rows, crop_i) = (cols as i64, rows as i64, crop as i64);
    let (mut x1, mut y1, mut x2, mut y2) = (x1 as i64, y1 as i64, x2 as i64, y2 as i64);
    let (mut width, mut height, mut pad_w, mut pad_h) = (crop_i, crop_i, 0i64, 0i64);
    if context_pad > 0 || square {
        let round = |v: f32| v.round() as i64;
        let crop_f = crop as f32;
        let context_scale = crop_f / (crop_i - 2 * context_pad as i64) as f32;
        let mut half_height = (y2 - y1 + 1) as f32 / 2.0;
        let mut half_width = (x2 - x1 + 1) as f32 / 2.0;
        let center_x = x1 as f32 + half_width;
        let center_y = y1 as f32 + half_height;
        if square {
            if half_height > half_width {
                half_width = half_height;
            } else {
                half_height = half_width;
            }
        }
        x1 = round(center_x - half_width * context_scale);
        x2 = round(center_x + half_width * context_scale);
        y1 = round(center_y - half_height * context_scale);
        y2 = round(center_y + half_height * context_scale);
        let unclipped_height = y2 - y1 + 1;
        let unclipped_width = x2 - x1 + 1;
        let pad_x1 = 0.max(-x1);
        let pad_y1 = 0.max(-y1);
        let pad_x2 = 0.max(x2 - cols + 1);
        let pad_y2 = 0.max(y2 - rows + 1);
        x1 += pad_x1;
        x2 -= pad_x2;
        y1 += pad_y1;
        y2 -= pad_y2;
        if unclipped_width <= 0 || unclipped_height <= 0 || x2 < x1 || y2 < y1 {
            return Err(format!(
                "grown by the context to x1 {} y1 {} x2 {} y2 {}, it has nothing inside the image",
                x1 - pad_x1,
                y1 - pad_y1,
                x2 + pad_x2,
                y2 + pad_y2
            ));
        }
        let clipped_height = y2 - y1 + 1;
        let clipped_width = x2 - x1 + 1;
        let scale_x = crop_f / unclipped_width as f32;
        let scale_y = crop_f / unclipped_height as f32;
        width = round(clipped_width as f32 * scale_x);
        height = round(clipped_height as f32 * scale_y);
        let pad_x1 = round(pad_x1 as f32 * scale_x);
        let pad_x2 = round(pad_x2 as f32 * scale_x);
        pad_h = round(pad_y1 as f32 * scale_y);
        pad_w = if mirror { pad_x2 } else { pad_x1 };
        if pad_h + height > crop_i {
            height = crop_i - pad_h;
        }
        if pad_w + width > crop_i {
            width = crop_i - pad_w;
        }
        if width < 1 || height < 1 {
            return Err(format!(
                "its part inside the image (x1 {x1} y1 {y1} x2 {x2} y2 {y2}) warps to {width}x{height} pixels (Caffe's \
                 cv::resize would throw)"
            ));
        }
    } else if x1 < 0 || y1 < 0 || x2 >= cols || y2 >= rows {
        return Err("it is not inside the image".into());
    }
    Ok(Warp {
        x1: x1 as usize,
        y1: y1 as usize,
        x2: x2 as usize,
        y2: y2 as usize,
        width: width as usize,
        height: height as usize,
        pad_w: pad_w as usize,
        pad_h: pad_h as usize,
    })
}

/// The mean as WindowData subtracts it.
#[derive(Clone, Debug)]
enum WindowMean {
    None,
    /// Per channel (one value given is repeated).
    Values([f32; CHANNELS]),
    /// A mean image `CHANNELS x height x width`, read at the output position plus `off` on both
    /// axes.
    File { data: Vec<f32>, height: usize, width: usize, off: usize },
}

impl WindowMean {
    fn new(mean: &Mean, crop: usize) -> Result<Self> {
        Ok(match mean {
            Mean::None => WindowMean::None,
            Mean::Values(v) if v.len() == 1 => WindowMean::Values([v[0]; CHANNELS]),
            Mean::Values(v) if v.len() == CHANNELS => WindowMean::Values([v[0], v[1], v[2]]),
            Mean::Values(v) => {
                return Err(Error::Config(format!(
                    "transform_param: give 1 mean_value or one per channel ({CHANNELS}: WindowData reads images in colour), \
                     not {}",
                    v.len()
                )))
            }
            Mean::File { path, shape: [c, h, w], data } => {
                let off = w.saturating_sub(crop) / 2;
                if *c < CHANNELS || *w < crop || off + crop > *h {
                    return Err(Error::Shape(format!(
                        "mean file {path} is {c}x{h}x{w} (CxHxW); WindowData subtracts its {CHANNELS}-channel \
                         {crop}x{crop} (crop_size) window at offset (W - crop_size) / 2 on both axes, as Caffe does, so it \
                         needs at least {CHANNELS} channels, W >= {crop} and H >= {}",
                        off + crop
                    )));
                }
                WindowMean::File { data: data.clone(), height: *h, width: *w, off }
            }
        })
    }
}

struct WindowLoader {
    /// The window file, for errors.
    source: PathBuf,
    /// Each image's path, and its line in the window file.
    images: Vec<(PathBuf, usize)>,
    fg: Vec<Window>,
    bg: Vec<Window>,
    batch: usize,
    num_fg: usize,
    crop: usize,
    context_pad: usize,
    square: bool,
    mirror: bool,
    scale: f32,
    mean: WindowMean,
    seed: u64,
}

/// One item of a batch: its window and whether it is flipped.
type Pick<'a> = (&'a Window, bool);

impl WindowLoader {
    /// The windows of forward pass `pass`, in Caffe's order: background then foreground, each a
    /// uniform draw with replacement followed by its mirror draw.
    fn draws(&self, pass: u64) -> Vec<Pick<'_>> {
        let mut rng = Rng::stream(self.seed, pass);
        let mut out = Vec::with_capacity(self.batch);
        for (set, n) in [(&self.bg, self.batch - self.num_fg), (&self.fg, self.num_fg)] {
            for _ in 0..n {
                let w = &set[rng.below(set.len())];
                let mirror = self.mirror && rng.below(2) == 1;
                out.push((w, mirror));
            }
        }
        out
    }

    /// Writes window `w` (flipped when `mirror`) into `out` (`CHANNELS x crop x crop`, zeros).
    fn sample(&self, (w, mirror): Pick<'_>, out: &mut [f32]) -> Result<()> {
        let (file, list_line) = &self.images[w.image as usize];
        let img = read_image(file, ColorMode::Bgr).map_err(|e| match e {
            Error::Io { path, err } => Error::Io {
                path,
                err: std::io::Error::new(
                    err.kind(),
                    format!("{err}; listed at line {list_line} of window file {}", self.source.display()),
                ),
            },
            e => e,
        })?;
        let g = warp_geometry((w.x1, w.y1, w.x2, w.y2), img.width, img.height, self.crop, self.context_pad, self.square, mirror)
            .map_err(|why| {
                bad_line(
                    &self.source,
                    w.line as usize,
                    format!(
                        "the window x1 {} y1 {} x2 {} y2 {} of {} ({}x{}): {why}",
                        w.x1,
                        w.y1,
                        w.x2,
                        w.y2,
                        file.display(),
                        img.width,
                        img.height
                    ),
                )
            })?;
        let region = img.cropped(g.x1, g.y1, g.x2 - g.x1 + 1, g.y2 - g.y1 + 1);
        let mut warped = resize::linear(&region, g.width, g.height);
        if mirror {
            warped = warped.mirrored();
        }
        self.write(&warped, g.pad_h, g.pad_w, out);
        Ok(())
    }

    /// `(pixel - mean) * scale` of the warped window, at `(pad_h, pad_w)` of the crop.
    fn write(&self, img: &Image8, pad_h: usize, pad_w: usize, out: &mut [f32]) {
        let crop = self.crop;
        let ch = img.channels;
        for c in 0..ch.min(CHANNELS) {
            for h in 0..img.height {
                let y = h + pad_h;
                let row = &img.data[h * img.width * ch..(h + 1) * img.width * ch];
                let dst = &mut out[(c * crop + y) * crop + pad_w..(c * crop + y) * crop + pad_w + img.width];
                for (w, d) in dst.iter_mut().enumerate() {
                    let pixel = row[w * ch + c] as f32;
                    *d = match &self.mean {
                        WindowMean::None => pixel * self.scale,
                        WindowMean::Values(m) => (pixel - m[c]) * self.scale,
                        WindowMean::File { data, height, width, off } => {
                            (pixel - data[(c * height + y + off) * width + w + pad_w + off]) * self.scale
                        }
                    };
                }
            }
        }
    }

    fn top_shapes(&self) -> Vec<Vec<usize>> {
        vec![vec![self.batch, CHANNELS, self.crop, self.crop], vec![self.batch]]
    }
}

impl BatchLoader for WindowLoader {
    fn load(&self, pass: u64, pool: &rayon::ThreadPool) -> Result<Batch> {
        let picks = self.draws(pass);
        let per = CHANNELS * self.crop * self.crop;
        let mut data = vec![0f32; self.batch * per];
        let done: Vec<Result<()>> =
            pool.install(|| data.par_chunks_mut(per).zip(picks.par_iter()).map(|(out, &pick)| self.sample(pick, out)).collect());
        done.into_iter().collect::<Result<()>>()?;
        let label = picks.iter().map(|(w, _)| w.label as f32).collect();
        Ok(Batch { tops: self.top_shapes().into_iter().zip([data, label]).collect() })
    }
}

impl FeedSource for WindowLoader {
    const TYPE: &'static str = "WindowData";
    const TOPS: Arity = Arity::exactly(2);
    fn set_label_range(feed: &mut Feed<Self>, top: usize, classes: usize, ignore_label: Option<i32>) -> Result<()> {
        if top != 1 {
            return Ok(());
        }
        let mut ranges = LabelRanges::default();
        ranges.add(classes, ignore_label);
        let loader = feed.loader();
        let drawn = [(&loader.bg, loader.num_fg < loader.batch), (&loader.fg, loader.num_fg > 0)];
        for w in drawn.iter().filter(|(_, used)| *used).flat_map(|(set, _)| set.iter()) {
            if !ranges.accepts(w.label) {
                return Err(bad_line(
                    &loader.source,
                    w.line as usize,
                    format!("class {} is out of range: the loss takes {}", w.label, ranges.describe()),
                ));
            }
        }
        Ok(())
    }
}

/// `int(float(batch) * fg_fraction)`: Caffe's count of foreground windows per batch (never
/// more than the batch, which `f32` rounding of a batch above 2^24 could give).
fn foreground_count(batch: usize, fg_fraction: f32) -> usize {
    ((batch as f32 * fg_fraction) as usize).min(batch)
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.window_data_param.clone().unwrap_or_default();
    let source = p.source.clone().ok_or_else(|| Error::Config("window_data_param: missing `source` (the window file)".into()))?;
    let batch = batch_size(p.batch_size(), "window_data_param.batch_size")?;
    let t = lp.transform_param.clone().unwrap_or_default();
    let moved = |field: &str, old: String, new: String| {
        Error::Config(format!(
            "window_data_param.{field} is {old} but transform_param.{field} is {new}: Caffe's WindowData reads \
             transform_param.{field} and ignores window_data_param.{field} (its place before 2014, which only the \
             upgrade of a V1 net moves); set transform_param.{field}"
        ))
    };
    if let Some(c) = p.crop_size.filter(|&c| c != t.crop_size()) {
        return Err(moved("crop_size", c.to_string(), t.crop_size().to_string()));
    }
    if let Some(m) = p.mirror.filter(|&m| m != t.mirror()) {
        return Err(moved("mirror", m.to_string(), t.mirror().to_string()));
    }
    if let Some(m) = p.mean_file.as_ref().filter(|m| t.mean_file.as_ref() != Some(*m)) {
        return Err(moved("mean_file", format!("`{m}`"), t.mean_file.as_ref().map_or("unset".into(), |f| format!("`{f}`"))));
    }
    if t.scale.is_some_and(|s| s != p.scale()) {
        return Err(Error::Config(format!(
            "transform_param.scale is {} but window_data_param.scale is {}: Caffe's WindowData scales by \
             window_data_param.scale and ignores transform_param.scale; set window_data_param.scale",
            t.scale(),
            p.scale()
        )));
    }
    if t.force_gray() {
        return Err(Error::Config("WindowData reads every image in colour (as Caffe): remove transform_param.force_gray".into()));
    }
    let transformer = Transformer::from_param(lp.transform_param.as_ref(), cx.phase, cx.model_dir.as_deref())?;
    let crop = transformer.crop_size;
    if crop == 0 {
        return Err(Error::Config("WindowData needs transform_param.crop_size > 0: the side windows are warped to".into()));
    }
    let (fg_threshold, bg_threshold, fg_fraction) = (p.fg_threshold(), p.bg_threshold(), p.fg_fraction());
    if !(0.0..=1.0).contains(&fg_fraction) {
        return Err(Error::Config(format!("window_data_param.fg_fraction is {fg_fraction}; it must be in 0..=1")));
    }
    if !fg_threshold.is_finite() || !bg_threshold.is_finite() {
        return Err(Error::Config(format!(
            "window_data_param: fg_threshold ({fg_threshold}) and bg_threshold ({bg_threshold}) must be numbers"
        )));
    }
    let square = match p.crop_mode() {
        "warp" => false,
        "square" => true,
        m => return Err(Error::Config(format!("window_data_param.crop_mode is `{m}`; it must be \"warp\" or \"square\""))),
    };
    let context_pad = p.context_pad() as usize;
    if 2 * context_pad >= crop {
        return Err(Error::Config(format!(
            "window_data_param.context_pad {context_pad} leaves no room in the {crop}x{crop} crop (2 * context_pad must be \
             below crop_size)"
        )));
    }
    if (batch as u128) * (CHANNELS * crop) as u128 * crop as u128 > (isize::MAX as u128) / 4 {
        return Err(Error::Config(format!("WindowData batches of {batch}x{CHANNELS}x{crop}x{crop} are too large")));
    }
    let mean = WindowMean::new(&transformer.mean, crop)?;

    let path = resolve_file(&source, cx.model_dir.as_deref(), "window file")?;
    let file = read_window_file(&path, fg_threshold, bg_threshold)?;
    let (channels, line) = file.last_channels;
    if channels != CHANNELS as i64 {
        return Err(bad_line(
            &path,
            line,
            format!(
                "the last image's channels is {channels}: Caffe shapes the data top from it but reads every image in \
                 colour ({CHANNELS} channels), so it must be {CHANNELS}"
            ),
        ));
    }
    let num_fg = foreground_count(batch, fg_fraction);
    for (set, n, what, rule) in [
        (&file.fg, num_fg, "foreground", format!("overlap >= fg_threshold {fg_threshold}")),
        (&file.bg, batch - num_fg, "background", format!("overlap < bg_threshold {bg_threshold}")),
    ] {
        if n > 0 && set.is_empty() {
            return Err(Error::Decode {
                file: path.display().to_string(),
                msg: format!(
                    "no {what} windows ({rule}), but each batch draws {n} (batch_size {batch}, fg_fraction {fg_fraction})"
                ),
            });
        }
    }
    let resolver = resolver(p.root_folder(), &file.images[0].name, &path, cx)?;
    let mut images = Vec::with_capacity(file.images.len());
    for e in &file.images {
        let image = resolver.path(&e.name);
        if !image.exists() {
            return Err(Error::Io {
                path: image,
                err: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("image not found; listed at line {} of window file {}", e.line, path.display()),
                ),
            });
        }
        images.push((image, e.line));
    }
    let loader = WindowLoader {
        source: path,
        images,
        fg: file.fg,
        bg: file.bg,
        batch,
        num_fg,
        crop,
        context_pad,
        square,
        mirror: transformer.mirror,
        scale: p.scale(),
        mean,
        seed: Rng::stream(cx.seed, 6).next_u64(),
    };
    let probe = loader.top_shapes();
    Ok(Box::new(FeedLayer { feed: Feed::new(loader, probe), tops: lp.top.len() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err(text: &str) -> String {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "w.txt", text);
        read_window_file(&p, 0.5, 0.3).unwrap_err().to_string()
    }

    #[test]
    fn window_files_sort_windows_by_overlap() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "w.txt",
            "# 0\na.png\n3\n10\n20\n3\n2 0.9 0 1 5 6\n7 0.4 1 1 2 2\n5 0.1 3 4 5 6\n\
             # 1 b.png 3 8 8 2\n1 0.5 0 0 7 7\n3 0.29999 1 2 3 4\n",
        );
        let f = read_window_file(&p, 0.5, 0.3).unwrap();
        assert_eq!(f.images, [ImageEntry { name: "a.png".into(), line: 2 }, ImageEntry { name: "b.png".into(), line: 10 }]);
        let w = |image, label, x1, y1, x2, y2, line| Window { image, label, x1, y1, x2, y2, line };
        assert_eq!(f.fg, [w(0, 2, 0, 1, 5, 6, 7), w(1, 1, 0, 0, 7, 7, 11)]);
        // 0.4 is neither (dropped); background windows are labelled 0.
        assert_eq!(f.bg, [w(0, 0, 3, 4, 5, 6, 9), w(1, 0, 1, 2, 3, 4, 12)]);
        assert_eq!(f.last_channels, (3, 10));
        // Only C's whitespace separates tokens: an ideographic space (U+3000) stays in a file
        // name. An inverted window that no batch draws (overlap between the thresholds) is
        // never read, as in Caffe.
        let p = write(d.path(), "w2.txt", "# 0\x0Bx\u{3000}y.png\t3 4 4\x0C2\r\n1 0.9 0 0 3 3\n1 0.4 3 0 1 1\n");
        let f = read_window_file(&p, 0.5, 0.3).unwrap();
        assert_eq!(f.images[0].name, "x\u{3000}y.png");
        assert_eq!((f.fg.len(), f.bg.len()), (1, 0));
    }

    #[test]
    fn malformed_window_files_name_the_line() {
        assert!(err("\n \n").contains("w.txt: the window file is empty"));
        let e = err("#0 a.png 3 1 1 0\n");
        assert!(e.contains("line 1: expected `#` opening image block 0, found `#0`"), "{e}");
        let e = err("# 1\na.png 3 1 1 0\n");
        assert!(e.contains("line 1: image block 0 is numbered 1"), "{e}");
        let e = err("# 0\na.png 3 1 1 2\n1 0.9 0 0 1 1\n1 0.9 0 0\n");
        assert!(e.contains("line 4: the file ends where x2 of window 2 of 2 of image block 0 was expected"), "{e}");
        let e = err("# 0\na.png 3 1 1 1\n1 0.9 0 0 1.5 1\n");
        assert!(e.contains("line 3: x2 of window 1 of 1 of image block 0 is `1.5`, not an integer"), "{e}");
        let e = err("# 0\na.png 3 1 1 1\n1 high 0 0 1 1\n");
        assert!(e.contains("line 3: the overlap of window 1 of 1 of image block 0 is `high`, not a number"), "{e}");
        let e = err("# 0\na.png 3 1 1 -1\n");
        assert!(e.contains("line 2: image block 0 has a negative number of windows (-1)"), "{e}");
        let e = err("# 0\na.png 3 1 1 1\n0 0.7 0 0 1 1\n");
        assert!(e.contains("line 3: a foreground window (overlap 0.7 >= fg_threshold 0.5) has class 0"), "{e}");
        let e = err("# 0\na.png 3 1 1 1\n1 0.1 5 0 4 1\n");
        assert!(e.contains("line 3: the window x1 5 y1 0 x2 4 y2 1 is empty"), "{e}");
        let e = err("# 0\na.png 3 1 1 0\nextra\n");
        assert!(e.contains("line 3: expected `#` opening image block 1, found `extra`"), "{e}");
        let e = err("# 0\na.png 3 1 1 0\n# 1\nb.png three");
        assert!(e.contains("line 4: the image's channels of image block 1 is `three`, not an integer"), "{e}");
        // A huge window count is read window by window, not allocated up front.
        let e = err("# 0\na.png 3 1 1 9223372036854775807\n1 0.9 0 0 1 1\n");
        assert!(e.contains("the file ends where the class index of window 2 of 9223372036854775807"), "{e}");
        let e = err("# 0\na.png 3 1 1 99999999999999999999\n");
        assert!(e.contains("the number of windows of image block 0 is `99999999999999999999`, not an integer"), "{e}");
    }

    fn geometry(win: (i32, i32, i32, i32), size: (usize, usize), crop: usize, pad: usize, square: bool, mirror: bool) -> Warp {
        warp_geometry(win, size.0, size.1, crop, pad, square, mirror).unwrap()
    }

    #[test]
    fn warp_without_context_takes_the_window_itself() {
        let g = geometry((2, 1, 5, 4), (8, 6), 10, 0, false, false);
        assert_eq!(g, Warp { x1: 2, y1: 1, x2: 5, y2: 4, width: 10, height: 10, pad_w: 0, pad_h: 0 });
        let e = warp_geometry((2, 1, 8, 4), 8, 6, 10, 0, false, false).unwrap_err();
        assert!(e.contains("not inside the image"), "{e}");
        assert!(warp_geometry((-1, 1, 3, 4), 8, 6, 10, 0, false, false).is_err());
    }

    #[test]
    fn context_padding_grows_clips_and_pads_as_caffe() {
        // crop 8, pad 2: scale 8/4 = 2. Window 0..=3 (4 wide, centre 2): 2 -+ 4 -> -2..=6, 9 wide;
        // clipped to 0..=6 (7) in an 8x8 image; 7 * 8/9 = 6.22 -> 6, pad 2 * 8/9 = 1.78 -> 2.
        let g = geometry((0, 0, 3, 3), (8, 8), 8, 2, false, false);
        assert_eq!(g, Warp { x1: 0, y1: 0, x2: 6, y2: 6, width: 6, height: 6, pad_w: 2, pad_h: 2 });
        // Mirrored, the left pad is the right one's (0 here); the top pad stays.
        let g = geometry((0, 0, 3, 3), (8, 8), 8, 2, false, true);
        assert_eq!((g.pad_w, g.pad_h, g.width), (0, 2, 6));
        // Fully inside: 16 x 16 image, window 6..=9: centre 8, 8 -+ 4 -> 4..=12 (9): no clip, 8 wide.
        let g = geometry((6, 6, 9, 9), (16, 16), 8, 2, false, false);
        assert_eq!(g, Warp { x1: 4, y1: 4, x2: 12, y2: 12, width: 8, height: 8, pad_w: 0, pad_h: 0 });
        // Clipped on the right and bottom: the warp keeps its left/top place, shrunk.
        let g = geometry((4, 4, 7, 7), (8, 8), 8, 2, false, false);
        // centre 6: 2..=10 -> clipped 2..=7 (6 of 9): 6 * 8/9 = 5.33 -> 5; pad_x2 3 * 8/9 = 2.67 -> 3.
        assert_eq!(g, Warp { x1: 2, y1: 2, x2: 7, y2: 7, width: 5, height: 5, pad_w: 0, pad_h: 0 });
        let g = geometry((4, 4, 7, 7), (8, 8), 8, 2, false, true);
        assert_eq!((g.pad_w, g.pad_h, g.width, g.height), (3, 0, 5, 5));
        // A window entirely outside the image has nothing to warp.
        let e = warp_geometry((20, 0, 23, 3), 8, 8, 8, 2, false, false).unwrap_err();
        assert!(e.contains("nothing inside the image"), "{e}");
    }

    #[test]
    fn rounding_overflow_shrinks_the_warp() {
        // crop 5, pad 1 (scale 5/3): window 0..=1 wide (half 1, centre 1): 1 -+ 1.667 -> -1..=3 (5);
        // clipped 0..=2 (3): 3 * 5/5 = 3, pad 1; 1 + 3 <= 5. Rows: 0..=0 (half 0.5, centre 0.5):
        // 0.5 -+ 0.833 -> round(-0.333) = 0 ..= round(1.333) = 1 (2 rows), scale 5/2: 2 * 2.5 = 5.
        let g = geometry((0, 0, 1, 0), (3, 2), 5, 1, false, false);
        assert_eq!(g, Warp { x1: 0, y1: 0, x2: 2, y2: 1, width: 3, height: 5, pad_w: 1, pad_h: 0 });
        // Clipped on the right, mirrored (crop 6, pad 1, scale 1.5): 1..=2 (centre 2) -> round(0.5) = 1 ..=
        // round(3.5) = 4 (4 wide) in a 4-wide image: clipped 1..=3 (3), 3 * 6/4 = 4.5 -> 5, right pad
        // 1 * 1.5 -> 2, which the mirror puts on the left: 2 + 5 > 6, so Caffe trims the warp to 4.
        // Rows 0..=1: round(-0.5) = -1 ..= round(2.5) = 3 (5), clipped 0..=3: 4 * 1.2 -> 5, pad 1.2 -> 1.
        let g = geometry((1, 0, 2, 1), (4, 8), 6, 1, false, true);
        assert_eq!(g, Warp { x1: 1, y1: 0, x2: 3, y2: 3, width: 4, height: 5, pad_w: 2, pad_h: 1 });
        let g = geometry((1, 0, 2, 1), (4, 8), 6, 1, false, false);
        assert_eq!((g.width, g.pad_w), (5, 0));
    }

    #[test]
    fn square_mode_takes_the_longer_side() {
        // 2 wide x 4 tall at (6, 4): half 2 both ways about (7, 6) -> 5..=9 x 4..=8.
        let g = geometry((6, 4, 7, 7), (16, 16), 5, 0, true, false);
        assert_eq!(g, Warp { x1: 5, y1: 4, x2: 9, y2: 8, width: 5, height: 5, pad_w: 0, pad_h: 0 });
        // Wider than tall: the height grows instead.
        let g = geometry((2, 6, 9, 7), (16, 16), 8, 0, true, false);
        // half 4 about (6, 7): 2..=10 x 3..=11, 9 x 9, warped to 8.
        assert_eq!((g.x1, g.x2, g.y1, g.y2, g.width, g.height), (2, 10, 3, 11, 8, 8));
    }

    #[test]
    fn foreground_count_truncates_as_caffe() {
        assert_eq!(foreground_count(128, 0.25), 32);
        assert_eq!(foreground_count(10, 0.25), 2);
        assert_eq!(foreground_count(10, 0.29), 2);
        assert_eq!(foreground_count(3, 1.0), 3);
        assert_eq!(foreground_count(3, 0.0), 0);
        // 16777219 rounds up to 16777220 in f32: never more than the batch.
        assert_eq!(foreground_count(16_777_219, 1.0), 16_777_219);
    }

    fn loader(fg: usize, bg: usize, batch: usize, num_fg: usize, mirror: bool) -> WindowLoader {
        let w = |label, line| Window { image: 0, label, x1: 0, y1: 0, x2: 0, y2: 0, line };
        WindowLoader {
            source: "w.txt".into(),
            images: vec![],
            fg: (0..fg).map(|i| w(1 + i as i32, i as u32)).collect(),
            bg: (0..bg).map(|i| w(0, 1000 + i as u32)).collect(),
            batch,
            num_fg,
            crop: 1,
            context_pad: 0,
            square: false,
            mirror,
            scale: 1.0,
            mean: WindowMean::None,
            seed: 42,
        }
    }

    #[test]
    fn draws_are_background_then_foreground_uniform_with_replacement_and_seeded_by_pass() {
        let l = loader(4, 5, 10, 3, true);
        let lines = |pass| l.draws(pass).iter().map(|(w, m)| (w.line, *m)).collect::<Vec<_>>();
        assert_eq!(lines(3), lines(3), "a pure function of the pass");
        assert_ne!(lines(3), lines(4));
        let mut fg_hits = [0usize; 4];
        let mut bg_hits = [0usize; 5];
        let mut mirrored = 0;
        for pass in 0..2000 {
            let d = l.draws(pass);
            assert!(d[..7].iter().all(|(w, _)| w.label == 0) && d[7..].iter().all(|(w, _)| w.label > 0));
            for (w, m) in d {
                if w.label > 0 {
                    fg_hits[w.line as usize] += 1;
                } else {
                    bg_hits[w.line as usize - 1000] += 1;
                }
                mirrored += m as usize;
            }
        }
        // 6000 foreground draws over 4 windows, 14000 background over 5: about 1500 and 2800 each.
        assert!(fg_hits.iter().all(|&n| (1350..1650).contains(&n)), "{fg_hits:?}");
        assert!(bg_hits.iter().all(|&n| (2600..3000).contains(&n)), "{bg_hits:?}");
        assert!((9600..10400).contains(&mirrored), "{mirrored} of 20000 mirrored");
        let plain = loader(4, 5, 10, 3, false);
        assert!((0..50).all(|p| plain.draws(p).iter().all(|(_, m)| !m)));
    }

    #[test]
    fn mean_files_must_cover_the_crop() {
        let file = |shape: [usize; 3]| Mean::File { path: "m".into(), shape, data: vec![0.0; shape.iter().product()] };
        match WindowMean::new(&file([3, 7, 6]), 4).unwrap() {
            WindowMean::File { off, .. } => assert_eq!(off, 1),
            m => panic!("{m:?}"),
        }
        // The vertical offset is the horizontal one (Caffe's mean_off), so H >= off + crop.
        let e = WindowMean::new(&file([3, 4, 6]), 4).unwrap_err().to_string();
        assert!(e.contains("mean file m is 3x4x6") && e.contains("H >= 5"), "{e}");
        assert!(WindowMean::new(&file([3, 8, 3]), 4).is_err());
        assert!(WindowMean::new(&file([1, 8, 8]), 4).is_err());
        // More channels than three: Caffe reads the first three.
        assert!(WindowMean::new(&file([4, 7, 6]), 4).is_ok());
        assert!(WindowMean::new(&Mean::Values(vec![1.0, 2.0]), 4).unwrap_err().to_string().contains("not 2"));
    }
}
