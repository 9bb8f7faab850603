//! DenseImageData (the SegNet fork, alexgkendall/caffe-segnet): pairs of an image and a label
//! image (`image label` lines). Tops: data `(N, C, H, W)` and label `(N, 1, H, W)`.
//!
//! The fork's behaviour, kept:
//! - images are resized to `new_height x new_width` bilinearly, labels by nearest neighbour,
//!   labels read as gray;
//! - `dense_image_data_param.mirror` flips image and label together with probability 1/2, and
//!   `crop_height`/`crop_width` take one random window of both, **in every phase** (the fork
//!   has no centre crop); the mirror is drawn before the crop;
//! - `transform_param` gives the image its mean and scale, never the label; its `mirror` and
//!   `crop_size` are refused (the fork aborts on them, since they would transform image and
//!   label differently);
//! - `shuffle` reshuffles every epoch, `rand_skip` skips a random number of samples, a batch of
//!   1 without resize or crop takes each image's own size.
//!
//! Where crema goes further: every pair's image and label sizes are checked (the fork checks
//! the first pair only); label values the net's loss cannot take are an error naming the file
//! and pixel (see `Layer::set_label_range`); `dense_image_data_param.mean_file`, which the fork
//! declares but never reads, is applied like `transform_param.mean_file` (giving both is an
//! error); each batch takes the shape of its first sample and the others must match it.

use super::image_data::{batch_size, both, color_mode, image_layer, order, resolver, ImageSource, Sample};
use super::{Layer, LayerContext};
use crate::backend::Backend;
use crate::data::decode::{read_image, read_label_image, ColorMode};
use crate::data::labels::LabelRanges;
use crate::data::order::Order;
use crate::data::prefetch::Feed;
use crate::data::resize;
use crate::data::source::{read_pairs, resolve_file, Pair, Resolver};
use crate::data::transform::{read_mean, Draw, Transformer};
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct DenseLoader {
    pairs: Vec<Pair>,
    resolver: Resolver,
    order: Order,
    new_size: Option<(usize, usize)>,
    crop: Option<(usize, usize)>,
    mirror: bool,
    color: ColorMode,
    transformer: Transformer,
    ranges: LabelRanges,
}

impl ImageSource for DenseLoader {
    const TYPE: &'static str = "DenseImageData";
    fn order(&self) -> &Order {
        &self.order
    }
    fn sample(&self, pos: u64, idx: usize) -> Result<Sample> {
        let pair = &self.pairs[idx];
        let file = self.resolver.path(&pair.image);
        let label_file = self.resolver.path(&pair.label);
        let mut img = read_image(&file, self.color)?;
        let mut lab = read_label_image(&label_file)?;
        if let Some((h, w)) = self.new_size {
            img = resize::linear(&img, w, h);
            lab = resize::nearest(&lab, w, h);
        }
        if (img.width, img.height) != (lab.width, lab.height) {
            return Err(Error::Shape(format!(
                "{}: the image is {}x{} but its label {} is {}x{}{}",
                file.display(),
                img.width,
                img.height,
                label_file.display(),
                lab.width,
                lab.height,
                if self.new_size.is_some() { " after resizing" } else { " (WxH)" }
            )));
        }
        self.ranges.check_image(&lab, &label_file, self.new_size.is_some())?;
        let mut rng = self.order.augment_rng(pos);
        if self.mirror && rng.below(2) == 1 {
            img = img.mirrored();
            lab = lab.mirrored();
        }
        if let Some((ch, cw)) = self.crop {
            if img.height < ch || img.width < cw {
                return Err(Error::Shape(format!(
                    "{}: the image is {}x{}, smaller than the crop of {cw}x{ch} (crop_width x crop_height)",
                    file.display(),
                    img.width,
                    img.height
                )));
            }
            let h_off = rng.below(img.height - ch + 1);
            let w_off = rng.below(img.width - cw + 1);
            img = img.cropped(w_off, h_off, cw, ch);
            lab = lab.cropped(w_off, h_off, cw, ch);
        }
        let (h, w) = (img.height, img.width);
        let mut data = vec![0.0; img.channels * h * w];
        self.transformer.apply(&img, Draw::default(), &mut data, false, &file)?;
        let mut label = vec![0.0; h * w];
        self.transformer.apply(&lab, Draw::default(), &mut label, true, &label_file)?;
        Ok(Sample { shape: [img.channels, h, w], data, label, file })
    }
    fn label_shape(n: usize, h: usize, w: usize) -> Vec<usize> {
        vec![n, 1, h, w]
    }
    fn set_label_range(feed: &mut Feed<Self>, classes: usize, ignore_label: Option<i32>) -> Result<()> {
        feed.loader_mut()?.ranges.add(classes, ignore_label);
        Ok(())
    }
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.dense_image_data_param.clone().unwrap_or_default();
    let source = p.source.clone().ok_or_else(|| Error::Config("dense_image_data_param: missing `source`".into()))?;
    let batch = batch_size(p.batch_size(), "dense_image_data_param.batch_size")?;
    let new_size = both(p.new_height(), p.new_width(), "dense_image_data_param.new_height and new_width")?;
    let crop = both(p.crop_height(), p.crop_width(), "dense_image_data_param.crop_height and crop_width")?;
    if lp.transform_param.as_ref().is_some_and(|t| t.mirror() || t.crop_size() > 0) {
        return Err(Error::Config(
            "DenseImageData takes no transform_param.mirror or crop_size (they would transform image and label \
             differently; the SegNet fork aborts on them): use dense_image_data_param's mirror, crop_height and crop_width"
                .into(),
        ));
    }
    let mut transformer = Transformer::from_param(lp.transform_param.as_ref(), cx.phase, cx.model_dir.as_deref())?;
    if let Some(m) = &p.mean_file {
        if lp.transform_param.as_ref().is_some_and(|t| t.mean_file.is_some() || !t.mean_value.is_empty()) {
            return Err(Error::Config(
                "both dense_image_data_param.mean_file and a transform_param mean are given: keep one".into(),
            ));
        }
        transformer.mean = read_mean(m, cx.model_dir.as_deref())?;
    }
    let path = resolve_file(&source, cx.model_dir.as_deref(), "source file")?;
    let pairs = read_pairs(&path)?;
    let resolver = resolver(p.root_folder(), &pairs[0].image, &path, cx)?;
    let order = order(pairs.len(), batch, p.shuffle(), p.rand_skip(), cx, "pairs")?;
    let loader = DenseLoader {
        pairs,
        resolver,
        order,
        new_size,
        crop,
        mirror: p.mirror(),
        color: color_mode(p.is_color(), &transformer),
        transformer,
        ranges: LabelRanges::default(),
    };
    image_layer(loader, batch, lp.top.len())
}
