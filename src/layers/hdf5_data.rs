//! HDF5Data (BVLC Caffe): rows of the HDF5 datasets named by the tops, read from the files a
//! source list names.
//!
//! As Caffe: `hdf5_data_param.source` lists HDF5 files (separated by any whitespace); in each,
//! top `t` reads the dataset named `t` at the root, whose first dimension counts rows and whose
//! other dimensions give the top's shape after the batch (a label dataset of shape `(N)` gives
//! tops of shape `(batch)`). Values of any integer or float type become f32 as Caffe's
//! `H5LTread_dataset_float` converts them. Batches take rows in order, file after file, from the
//! first file again after the last (a batch may span files and the wrap); with `shuffle`, the
//! files are visited in a shuffled order and each file's rows are shuffled, anew every time
//! round. One file is held in memory at a time. `transform_param` is refused, as in Caffe.
//!
//! Beyond Caffe: every file's datasets are checked when the net is built (that they exist,
//! agree in row count, and have the same row shape in every file), so a bad file is named
//! before training starts rather than misread in the middle of it; a label top that feeds a
//! loss is checked against its classes as each file loads; and the order is a pure function
//! of the seed and the forward pass (see `data::order`), so a resumed run sees the batches the
//! unbroken one would have (Caffe shuffles with `std::random_shuffle`, which no seed governs).

use super::image_data::{batch_size, resolver, FeedLayer, FeedSource};
use super::{Arity, Layer, LayerContext};
use crate::backend::Backend;
use crate::data::labels::LabelRanges;
use crate::data::order::Order;
use crate::data::prefetch::{Batch, BatchLoader, Feed};
use crate::data::source::resolve_file;
use crate::io::hdf5::Hdf5;
use crate::proto::LayerParameter;
use crate::rng::Rng;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One listed file and its row count.
struct File {
    path: PathBuf,
    rows: usize,
}

/// One file's values: per top, its rows one after another.
type Loaded = Arc<Vec<Vec<f32>>>;

struct Hdf5Loader {
    files: Vec<File>,
    /// Dataset (top) names.
    names: Vec<String>,
    /// Per top, the shape of one row.
    row_shapes: Vec<Vec<usize>>,
    /// Rows over all files.
    total: u64,
    batch: usize,
    shuffle: bool,
    /// The order of the files in each round (shuffled when `shuffle`).
    file_order: Order,
    row_seed: u64,
    /// Per top, the labels a loss accepts (empty when no loss reads the top).
    ranges: Vec<LabelRanges>,
    /// The file last loaded.
    cache: Mutex<Option<(usize, Loaded)>>,
}

/// Where a stream position leads: round, slot in that round's file order, row within the file.
struct Place {
    round: u64,
    slot: usize,
    file: usize,
    row: usize,
}

impl Hdf5Loader {
    fn place(&self, pos: u64, order: &mut Option<(u64, Vec<usize>)>) -> Place {
        let (round, mut r) = (pos / self.total, (pos % self.total) as usize);
        if order.as_ref().is_none_or(|(e, _)| *e != round) {
            *order = Some((round, self.file_order.epoch(round)));
        }
        let perm = order.as_ref().map(|(_, p)| p.as_slice()).unwrap_or_default();
        for (slot, &file) in perm.iter().enumerate() {
            if r < self.files[file].rows {
                return Place { round, slot, file, row: r };
            }
            r -= self.files[file].rows;
        }
        // Unreachable: the rows of a round sum to `total`.
        Place { round, slot: 0, file: 0, row: 0 }
    }

    /// The rows of file `file` in the order of slot `slot` of round `round`.
    fn rows(&self, round: u64, slot: usize, file: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.files[file].rows).collect();
        if self.shuffle {
            let n = self.files.len() as u64;
            Rng::stream(self.row_seed, round.wrapping_mul(n).wrapping_add(slot as u64)).shuffle(&mut v);
        }
        v
    }

    /// File `i`'s values, read and checked (from the cache when it was the last one read).
    fn load(&self, i: usize) -> Result<Loaded> {
        let mut cache = self.cache.lock().map_err(|_| Error::Internal("HDF5 cache poisoned".into()))?;
        if let Some((j, v)) = cache.as_ref().filter(|(j, _)| *j == i) {
            debug_assert_eq!(*j, i);
            return Ok(v.clone());
        }
        let file = &self.files[i];
        let h5 = Hdf5::open(&file.path)?;
        let mut tops = Vec::with_capacity(self.names.len());
        for (t, name) in self.names.iter().enumerate() {
            let ds = h5.dataset(name)?;
            let want: Vec<usize> = std::iter::once(file.rows).chain(self.row_shapes[t].iter().copied()).collect();
            if ds.shape != want {
                return Err(Error::Decode {
                    file: file.path.display().to_string(),
                    msg: format!("dataset `{name}` changed shape to {:?} since the net was built ({want:?})", ds.shape),
                });
            }
            let values = h5.read_f32(&ds)?;
            self.check_labels(t, &values, &file.path)?;
            tops.push(values);
        }
        let loaded: Loaded = Arc::new(tops);
        *cache = Some((i, loaded.clone()));
        Ok(loaded)
    }

    /// Checks top `t`'s values against the classes of the loss that reads them.
    fn check_labels(&self, t: usize, values: &[f32], path: &Path) -> Result<()> {
        let ranges = &self.ranges[t];
        if ranges.is_empty() {
            return Ok(());
        }
        let per_row = self.row_shapes[t].iter().product::<usize>().max(1);
        match values.iter().position(|&v| !ranges.accepts(v as i32)) {
            None => Ok(()),
            Some(k) => Err(Error::Decode {
                file: path.display().to_string(),
                msg: format!(
                    "dataset `{}` row {}: label {} is out of range: the loss takes {}",
                    self.names[t],
                    k / per_row,
                    values[k],
                    ranges.describe()
                ),
            }),
        }
    }

    fn top_shapes(&self) -> Vec<Vec<usize>> {
        self.row_shapes.iter().map(|s| std::iter::once(self.batch).chain(s.iter().copied()).collect()).collect()
    }
}

impl BatchLoader for Hdf5Loader {
    fn load(&self, pass: u64, _: &rayon::ThreadPool) -> Result<Batch> {
        let shapes = self.top_shapes();
        let mut tops: Vec<Vec<f32>> = shapes.iter().map(|s| Vec::with_capacity(s.iter().product())).collect();
        let mut order = None;
        // The current file and its row order, kept while consecutive positions stay in it.
        let mut current: Option<(u64, usize, Vec<usize>, Loaded)> = None;
        let start = pass * self.batch as u64;
        for pos in start..start + self.batch as u64 {
            let p = self.place(pos, &mut order);
            if current.as_ref().is_none_or(|(r, s, _, _)| (*r, *s) != (p.round, p.slot)) {
                current = Some((p.round, p.slot, self.rows(p.round, p.slot, p.file), self.load(p.file)?));
            }
            let (_, _, rows, data) = current.as_ref().expect("set above");
            let row = rows[p.row];
            for (t, shape) in self.row_shapes.iter().enumerate() {
                let n: usize = shape.iter().product();
                tops[t].extend_from_slice(&data[t][row * n..(row + 1) * n]);
            }
        }
        Ok(Batch { tops: shapes.into_iter().zip(tops).collect() })
    }
}

impl FeedSource for Hdf5Loader {
    const TYPE: &'static str = "HDF5Data";
    const TOPS: Arity = Arity::at_least(1);
    fn set_label_range(feed: &mut Feed<Self>, top: usize, classes: usize, ignore_label: Option<i32>) -> Result<()> {
        let loader = feed.loader_mut()?;
        if let Some(r) = loader.ranges.get_mut(top) {
            r.add(classes, ignore_label);
        }
        if let Ok(mut cache) = loader.cache.lock() {
            *cache = None; // check the labels of the file already read too
        }
        Ok(())
    }
}

/// The files `source` lists: whitespace-separated names, as Caffe reads them.
fn list_files(source: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(source).map_err(|e| Error::io(source, e))?;
    let names: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if names.is_empty() {
        return Err(Error::Decode { file: source.display().to_string(), msg: "the source file lists no HDF5 files".into() });
    }
    Ok(names)
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.hdf5_data_param.clone().unwrap_or_default();
    if lp.transform_param.is_some() {
        return Err(Error::Config("HDF5Data does not transform data: remove transform_param (Caffe refuses it too)".into()));
    }
    let source = p.source.clone().ok_or_else(|| Error::Config("hdf5_data_param: missing `source`".into()))?;
    let batch = batch_size(p.batch_size(), "hdf5_data_param.batch_size")?;
    let source = resolve_file(&source, cx.model_dir.as_deref(), "HDF5 source file")?;
    let names = list_files(&source)?;
    let resolver = resolver("", &names[0], &source, cx)?;
    let tops = lp.top.clone();
    let mut files = Vec::with_capacity(names.len());
    let mut row_shapes: Option<(Vec<Vec<usize>>, PathBuf)> = None;
    for name in &names {
        let path = resolver.path(name);
        let h5 = Hdf5::open(&path)?;
        let bad = |msg: String| Error::Decode { file: path.display().to_string(), msg };
        let mut rows = None;
        let mut shapes = Vec::with_capacity(tops.len());
        for top in &tops {
            let ds = h5.dataset(top)?;
            if !ds.dtype.is_numeric() {
                return Err(bad(format!("dataset `{top}` holds {}; HDF5Data reads integers and IEEE floats", ds.dtype.describe())));
            }
            let Some((&n, rest)) = ds.shape.split_first() else {
                return Err(bad(format!("dataset `{top}` is a single value; HDF5Data reads datasets of rows (rank 1 or more)")));
            };
            match rows {
                None => rows = Some((n, top)),
                Some((m, first)) if m != n => {
                    return Err(bad(format!("dataset `{top}` has {n} rows but `{first}` has {m}: every top's dataset needs the same number")));
                }
                Some(_) => {}
            }
            shapes.push(rest.to_vec());
        }
        let rows = rows.map_or(0, |(n, _)| n);
        if rows == 0 {
            return Err(bad("its datasets hold no rows".into()));
        }
        match &row_shapes {
            None => row_shapes = Some((shapes, path.clone())),
            Some((first, first_path)) => {
                if let Some(t) = (0..tops.len()).find(|&t| first[t] != shapes[t]) {
                    return Err(bad(format!(
                        "dataset `{}` has rows of shape {:?}, but in {} they are {:?}: every file's rows must have one shape",
                        tops[t],
                        shapes[t],
                        first_path.display(),
                        first[t]
                    )));
                }
            }
        }
        files.push(File { path, rows });
    }
    let row_shapes = row_shapes.map(|(s, _)| s).unwrap_or_default();
    let total = files.iter().map(|f| f.rows as u64).sum();
    let shuffle = p.shuffle();
    let loader = Hdf5Loader {
        file_order: Order::new(files.len(), 1, shuffle, 0, cx.seed),
        row_seed: Rng::stream(cx.seed, 4).next_u64(),
        ranges: vec![LabelRanges::default(); tops.len()],
        files,
        names: tops,
        row_shapes,
        total,
        batch,
        shuffle,
        cache: Mutex::new(None),
    };
    let probe = loader.top_shapes();
    let tops = probe.len();
    Ok(Box::new(FeedLayer { feed: Feed::new(loader, probe), tops }))
}
