//! ImageData (BVLC Caffe): images listed with an integer class label (`path label` lines),
//! resized to `new_height x new_width` when given (bilinear), through `transform_param`.
//! Tops: data `(N, C, H, W)` and label `(N)`.
//!
//! As Caffe: `source` lines split at their last space; `root_folder` is prefixed as text;
//! `shuffle` reshuffles every epoch; `rand_skip` skips a random number of samples at the start;
//! each batch takes the shape of its first image (so `batch_size: 1` runs images of any size),
//! and the others must match it. Loading runs ahead in background threads (see
//! `crate::data::prefetch`); the order is a function of the seed (see `crate::data::order`).

use super::{Arity, Ctx, Layer, LayerContext, Pass};
use crate::backend::Backend;
use crate::data::decode::{read_image, ColorMode};
use crate::data::labels::LabelRanges;
use crate::data::order::Order;
use crate::data::prefetch::{Batch, BatchLoader, Feed};
use crate::data::resize;
use crate::data::source::{read_labeled, resolve_file, Labeled, Resolver};
use crate::data::transform::Transformer;
use crate::proto::LayerParameter;
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// One transformed sample: `(channels, height, width)` and its values.
pub(super) struct Sample {
    pub shape: [usize; 3],
    pub data: Vec<f32>,
    pub label: Vec<f32>,
    pub file: PathBuf,
}

/// Stacks samples into a batch: data `(N, C, H, W)` and the label top shaped by
/// `label_shape(n, h, w)`. Every sample must have the first one's shape.
fn stack(samples: Vec<Sample>, label_shape: impl Fn(usize, usize, usize) -> Vec<usize>, hint: &str) -> Result<Batch> {
    let first = samples.first().ok_or_else(|| Error::Internal("empty batch".into()))?;
    let [c, h, w] = first.shape;
    let first_file = first.file.clone();
    let n = samples.len();
    let mut data = Vec::with_capacity(n * c * h * w);
    let mut label = Vec::new();
    for s in samples {
        if s.shape != [c, h, w] {
            return Err(Error::Shape(format!(
                "{}: gives a {}x{}x{} (CxHxW) input, but {} (first of its batch) gives {c}x{h}x{w}; {hint}",
                s.file.display(),
                s.shape[0],
                s.shape[1],
                s.shape[2],
                first_file.display()
            )));
        }
        data.extend_from_slice(&s.data);
        label.extend_from_slice(&s.label);
    }
    Ok(Batch { tops: vec![(vec![n, c, h, w], data), (label_shape(n, h, w), label)] })
}

/// Copies a batch into the layer's tops, reshaping them if its shapes differ.
fn upload<B: Backend>(be: &B, ctx: &mut Ctx<'_, B>, batch: &Batch) -> Result<()> {
    for (i, (shape, values)) in batch.tops.iter().enumerate().take(ctx.num_tops()) {
        let top = ctx.top_mut(i);
        if top.shape() != shape.as_slice() {
            top.reshape(be, shape)?;
        }
        top.set_data(be, values)?;
    }
    Ok(())
}

/// The number of samples a `batch_size` field gives, refusing 0.
pub(super) fn batch_size(v: u32, field: &str) -> Result<usize> {
    if v == 0 {
        return Err(Error::Config(format!("{field} must be positive")));
    }
    Ok(v as usize)
}

/// `(height, width)` from a pair of fields that must be set together.
pub(super) fn both(h: u32, w: u32, what: &str) -> Result<Option<(usize, usize)>> {
    match (h, w) {
        (0, 0) => Ok(None),
        (h, w) if h > 0 && w > 0 => Ok(Some((h as usize, w as usize))),
        _ => Err(Error::Config(format!("{what} must be set together (both positive, or neither)"))),
    }
}

/// The colour mode from `is_color` and `force_color`/`force_gray`.
pub(super) fn color_mode(is_color: bool, t: &Transformer) -> ColorMode {
    match t.force_color.unwrap_or(is_color) {
        true => ColorMode::Bgr,
        false => ColorMode::Gray,
    }
}

/// Chooses where the names of source file `source` resolve (see `crate::data::source`) from
/// its first name.
pub(super) fn resolver(root: &str, first: &str, source: &Path, cx: &LayerContext) -> Result<Resolver> {
    Resolver::new(root, first, cx.model_dir.as_deref(), source.parent()).map_err(|e| match e {
        Error::Io { path, err } => Error::Io {
            path,
            err: std::io::Error::new(err.kind(), format!("{err}; listed in {}", source.display())),
        },
        e => e,
    })
}

/// What an image-list data layer (ImageData, DenseImageData) decides for itself; loading a
/// batch in parallel, stacking it, and the layer around the loader are shared.
pub(super) trait ImageSource: Send + Sync + Sized + 'static {
    /// Caffe's type string.
    const TYPE: &'static str;
    /// The tops the layer takes: data and label (the label top may be optional).
    const TOPS: Arity = Arity::exactly(2);
    /// The order the source's samples are drawn in.
    fn order(&self) -> &Order;
    /// Sample `idx` of the source, drawn at position `pos` of the run.
    fn sample(&self, pos: u64, idx: usize) -> Result<Sample>;
    /// The label top's shape for `n` samples of `h x w`.
    fn label_shape(n: usize, h: usize, w: usize) -> Vec<usize>;
    /// Takes the labels the loss reading the label top accepts (see `Layer::set_label_range`).
    fn set_label_range(feed: &mut Feed<Self>, classes: usize, ignore_label: Option<i32>) -> Result<()>;
}

impl<S: ImageSource> BatchLoader for S {
    fn load(&self, pass: u64, pool: &rayon::ThreadPool) -> Result<Batch> {
        let jobs = self.order().draws(pass);
        let samples: Vec<Result<Sample>> = pool.install(|| jobs.par_iter().map(|&(p, i)| self.sample(p, i)).collect());
        let samples = samples.into_iter().collect::<Result<Vec<_>>>()?;
        stack(samples, S::label_shape, "set new_height and new_width to batch images of different sizes")
    }
}

/// The sample order of a source listing `n` `items` ("images", "pairs"), refusing a
/// `rand_skip` draw that passes its end.
pub(super) fn order(n: usize, batch: usize, shuffle: bool, rand_skip: u32, cx: &LayerContext, items: &str) -> Result<Order> {
    let order = Order::new(n, batch, shuffle, rand_skip, cx.seed);
    if order.skip() as usize >= n {
        return Err(Error::Config(format!(
            "rand_skip drew {} but the source lists only {n} {items} (Caffe: not enough points to skip)",
            order.skip()
        )));
    }
    Ok(order)
}

/// The layer reading `loader`'s batches of `batch` samples into its `tops` tops (data, then
/// label where there are two); the top shapes it reports before the first batch come from the
/// first sample, read here.
pub(super) fn image_layer<B: Backend, S: ImageSource>(loader: S, batch: usize, tops: usize) -> Result<Box<dyn Layer<B>>> {
    let (pos, idx) = loader.order().first();
    let [c, h, w] = loader.sample(pos, idx)?.shape;
    let probe = vec![vec![batch, c, h, w], S::label_shape(batch, h, w)];
    Ok(Box::new(FeedLayer { feed: Feed::new(loader, probe), tops }))
}

/// What a data layer fed by a [`Feed`] says of itself: its type, its tops, and how it takes
/// the class count of the loss that reads one of its tops.
pub(super) trait FeedSource: BatchLoader + Sized {
    const TYPE: &'static str;
    const TOPS: Arity;
    fn set_label_range(feed: &mut Feed<Self>, top: usize, classes: usize, ignore_label: Option<i32>) -> Result<()>;
}

impl<S: ImageSource> FeedSource for S {
    const TYPE: &'static str = <S as ImageSource>::TYPE;
    const TOPS: Arity = <S as ImageSource>::TOPS;
    fn set_label_range(feed: &mut Feed<Self>, top: usize, classes: usize, ignore_label: Option<i32>) -> Result<()> {
        if top != 1 {
            return Ok(());
        }
        <S as ImageSource>::set_label_range(feed, classes, ignore_label)
    }
}

/// A data layer whose batches come from a [`Feed`] (loaded ahead in background threads), the
/// first `tops` of each batch's arrays going to its tops.
pub(super) struct FeedLayer<S: FeedSource> {
    pub feed: Feed<S>,
    pub tops: usize,
}

impl<B: Backend, S: FeedSource> Layer<B> for FeedLayer<S> {
    fn type_name(&self) -> &'static str {
        S::TYPE
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(0)
    }
    fn tops(&self) -> Arity {
        S::TOPS
    }
    fn has_backward(&self) -> bool {
        false
    }
    fn reshape(&mut self, _: &B, _: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let mut shapes = self.feed.shapes()?;
        shapes.truncate(self.tops);
        Ok(shapes)
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let batch = self.feed.take()?;
        upload(be, ctx, &batch)
    }
    fn backward(&mut self, _: &B, _: &mut Ctx<'_, B>, _: &[bool]) -> Result<()> {
        Ok(())
    }
    fn set_pass(&mut self, pass: Pass) {
        self.feed.seek(pass.index());
    }
    fn set_label_range(&mut self, top: usize, classes: usize, ignore_label: Option<i32>) -> Result<()> {
        S::set_label_range(&mut self.feed, top, classes, ignore_label)
    }
}

struct ImageLoader {
    entries: Vec<Labeled>,
    source: PathBuf,
    resolver: Resolver,
    order: Order,
    new_size: Option<(usize, usize)>,
    color: ColorMode,
    transformer: Transformer,
}

impl ImageSource for ImageLoader {
    const TYPE: &'static str = "ImageData";
    fn order(&self) -> &Order {
        &self.order
    }
    fn sample(&self, pos: u64, idx: usize) -> Result<Sample> {
        let e = &self.entries[idx];
        let file = self.resolver.path(&e.image);
        let mut img = read_image(&file, self.color)?;
        if let Some((h, w)) = self.new_size {
            img = resize::linear(&img, w, h);
        }
        let (oh, ow) = self.transformer.out_size(img.height, img.width, &file)?;
        let draw = self.transformer.draw(&mut self.order.augment_rng(pos), img.height, img.width);
        let mut data = vec![0.0; img.channels * oh * ow];
        self.transformer.apply(&img, draw, &mut data, false, &file)?;
        Ok(Sample { shape: [img.channels, oh, ow], data, label: vec![e.label as f32], file })
    }
    fn label_shape(n: usize, _: usize, _: usize) -> Vec<usize> {
        vec![n]
    }
    fn set_label_range(feed: &mut Feed<Self>, classes: usize, ignore_label: Option<i32>) -> Result<()> {
        let mut ranges = LabelRanges::default();
        ranges.add(classes, ignore_label);
        let loader = feed.loader();
        if let Some(e) = loader.entries.iter().find(|e| !ranges.accepts(e.label)) {
            return Err(Error::Decode {
                file: loader.source.display().to_string(),
                msg: format!("line {}: label {} is out of range: the loss takes {}", e.line, e.label, ranges.describe()),
            });
        }
        Ok(())
    }
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.image_data_param.clone().unwrap_or_default();
    let source = p.source.clone().ok_or_else(|| Error::Config("image_data_param: missing `source`".into()))?;
    let batch = batch_size(p.batch_size(), "image_data_param.batch_size")?;
    let new_size = both(p.new_height(), p.new_width(), "image_data_param.new_height and new_width")?;
    let transformer = Transformer::from_param(lp.transform_param.as_ref(), cx.phase, cx.model_dir.as_deref())?;
    let path = resolve_file(&source, cx.model_dir.as_deref(), "source file")?;
    let entries = read_labeled(&path)?;
    let resolver = resolver(p.root_folder(), &entries[0].image, &path, cx)?;
    let order = order(entries.len(), batch, p.shuffle(), p.rand_skip(), cx, "images")?;
    let loader = ImageLoader {
        entries,
        source: path,
        resolver,
        order,
        new_size,
        color: color_mode(p.is_color(), &transformer),
        transformer,
    };
    image_layer(loader, batch, lp.top.len())
}
