//! Data (BVLC Caffe): `Datum` records read from a database, through `transform_param`.
//! Tops: data `(N, C, H, W)` and, optionally, label `(N)`.
//!
//! As Caffe: records are read in the database's key order, from the start again after the
//! last (a batch may span the wrap); `rand_skip` skips a random number of records at the start;
//! a record holds raw pixels (`channels x height x width` bytes, channel-major) or, with
//! `encoded`, an image file (PNG, JPEG, ...) decoded with its own channels unless
//! `force_color`/`force_gray` ask otherwise; each batch takes the shape of its first record.
//! Both of Caffe's databases are read: LMDB (`backend: LMDB`, what its later examples and
//! tools make) and LevelDB (the field's default, used by its early ones). Loading runs ahead in
//! background threads, as for the image-list layers.

use super::image_data::{batch_size, image_layer, order, ImageSource, Sample};
use super::{Arity, Layer, LayerContext};
use crate::backend::Backend;
use crate::data::datum::{datum_values, DatumValues};
use crate::data::decode::ColorMode;
use crate::data::labels::LabelRanges;
use crate::data::order::Order;
use crate::data::prefetch::Feed;
use crate::data::source::resolve_file;
use crate::data::transform::Transformer;
use crate::io::db::{Database, DbKind};
use crate::proto::{data_parameter::Db, LayerParameter};
use crate::{Error, Result};
use std::path::Path;

struct DataLoader {
    db: Database,
    order: Order,
    transformer: Transformer,
    ranges: LabelRanges,
}

impl DataLoader {
    /// Record `idx`'s values and label; `name` names it in errors.
    fn datum(&self, idx: usize, name: &Path) -> Result<(DatumValues, i32)> {
        let value = self.db.value(idx)?;
        let force = self.transformer.force_color.map(|c| if c { ColorMode::Bgr } else { ColorMode::Gray });
        datum_values(&value, name, force)
    }
}

impl ImageSource for DataLoader {
    const TYPE: &'static str = "Data";
    const TOPS: Arity = Arity::range(1, 2);
    fn order(&self) -> &Order {
        &self.order
    }
    fn sample(&self, pos: u64, idx: usize) -> Result<Sample> {
        let file = self.db.describe(idx);
        let (values, label) = self.datum(idx, &file)?;
        if !self.ranges.is_empty() && !self.ranges.accepts(label) {
            return Err(Error::Decode {
                file: file.display().to_string(),
                msg: format!("label {label} is out of range: the loss takes {}", self.ranges.describe()),
            });
        }
        let [c, h, w] = values.shape();
        let (oh, ow) = self.transformer.out_size(h, w, &file)?;
        let draw = self.transformer.draw(&mut self.order.augment_rng(pos), h, w);
        let mut data = vec![0.0; c * oh * ow];
        match &values {
            DatumValues::Pixels(img) => self.transformer.apply(img, draw, &mut data, false, &file)?,
            DatumValues::Floats { shape, data: v } => self.transformer.apply_chw(*shape, v, draw, &mut data, &file)?,
        }
        Ok(Sample { shape: [c, oh, ow], data, label: vec![label as f32], file })
    }
    fn label_shape(n: usize, _: usize, _: usize) -> Vec<usize> {
        vec![n]
    }
    fn set_label_range(feed: &mut Feed<Self>, classes: usize, ignore_label: Option<i32>) -> Result<()> {
        feed.loader_mut()?.ranges.add(classes, ignore_label);
        Ok(())
    }
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.data_param.clone().unwrap_or_default();
    let source = p.source.clone().ok_or_else(|| Error::Config("data_param: missing `source`".into()))?;
    let batch = batch_size(p.batch_size(), "data_param.batch_size")?;
    let path = resolve_file(&source, cx.model_dir.as_deref(), "data source")?;
    let transformer = Transformer::from_param(lp.transform_param.as_ref(), cx.phase, cx.model_dir.as_deref())?;
    let leveldb = p.backend() == Db::Leveldb;
    // Whether the folder plainly holds a LevelDB (its CURRENT) or an LMDB (its data.mdb).
    let holds_leveldb = match (path.join("CURRENT").exists(), path.join("data.mdb").exists()) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    };
    if holds_leveldb.is_some_and(|l| l != leveldb) {
        let (given, found, set) = if leveldb { ("LEVELDB", "an LMDB", "LMDB") } else { ("LMDB", "a LevelDB", "LEVELDB") };
        let default = if p.backend.is_none() { " (the default)" } else { "" };
        return Err(Error::Config(format!("data_param.backend is {given}{default}, but {} is {found} database: set `backend: {set}`", path.display())));
    }
    let db = Database::open(&path, DbKind::of_backend(p.backend()))?;
    let order = order(db.len(), batch, false, p.rand_skip(), cx, "records")?;
    image_layer(DataLoader { db, order, transformer, ranges: LabelRanges::default() }, batch, lp.top.len())
}
