//! HDF5Output (BVLC Caffe): writes its two bottoms, data and label, to the HDF5 file
//! `hdf5_output_param.file_name` as the float32 datasets `data` and `label` at the root. No
//! tops, and no gradient: backward does nothing, as in Caffe.
//!
//! As Caffe:
//! - a relative name is taken from the working directory, and the folder must exist when the
//!   net is built;
//! - each dataset has Caffe's 4-axis shape (num, channels, height, width): a bottom of fewer
//!   axes is padded with 1s as Caffe's legacy accessors pad it (a label of shape `(N)` is
//!   stored as `(N, 1, 1, 1)`, data of shape `(N, C)` as `(N, C, 1, 1)`);
//! - both bottoms must have the same num (first axis).
//!
//! Unlike Caffe, which creates (empties) the file when the net is built, crema writes it first
//! after the first forward pass: a net that is built and never run (`crema inspect`, a model
//! loaded to look at) leaves the file of an earlier run as it was.
//!
//! Beyond Caffe, whose second forward pass aborts (its datasets already exist), every forward
//! pass appends its rows along the first axis: after k passes of batch N the file holds
//! `(k*N, ...)` rows in pass order, what `crema test --iterations k` is expected to give. The
//! rows wait on disk, in two unnamed temporary files in the output's folder (made when the net is
//! built, gone when the layer is), not in memory: memory holds one pass's rows, however long
//! the run. The whole file is rewritten atomically from them (a temporary file renamed over it:
//! the file is always a whole HDF5 file, which h5py, Caffe's HDF5Data or crema's reader can
//! open) after the first pass and whenever the rows have doubled since the last write, so k
//! passes cost O(k) writing in all; [`Layer::finish`] (`Net::finish`, which the CLI calls when
//! a run ends) writes the rows still unwritten, and dropping the layer writes them as a best
//! effort (a warning on stderr if it fails). The folder needs room for about three times the
//! file: the rows waiting, the file, and its replacement while it is written. Every forward
//! pass the net runs counts, a solver's extra display pass after the last iteration included
//! (in a training net every iteration's rows are kept; in a solver's test net every test's).
//!
//! The rows of later passes must keep the first pass's shape beyond the first axis (the
//! batch size may change); a pass that does not is refused with an error naming the file. A
//! bottom with more than 4 axes (Caffe aborts) is written with its own shape. Two HDF5Output
//! layers alive in one process may not write one file (in Caffe the second `H5Fcreate` of an
//! open file fails): a solver's train and test nets that both hold the layer need
//! `include { phase: ... }` or different file names.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::io::hdf5::{write_hdf5, Group};
use crate::proto::LayerParameter;
use crate::{Error, Result};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The dataset bottom 0 is written to (Caffe's `HDF5_DATA_DATASET_NAME`).
const DATA: &str = "data";
/// The dataset bottom 1 is written to (Caffe's `HDF5_DATA_LABEL_NAME`).
const LABEL: &str = "label";

/// The files that live HDF5Output layers of this process write (their canonical paths).
static OPEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn open_files() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    // The set stays consistent whatever a panicking holder did: take it as it is.
    OPEN.lock().unwrap_or_else(|e| e.into_inner())
}

struct Hdf5Output {
    /// The file, as `file_name` gives it.
    path: PathBuf,
    /// The file's canonical path, while this layer holds it in [`OPEN`].
    held: Option<PathBuf>,
    /// The shape of one row of `data` and of `label` (Caffe's shape without its first axis),
    /// set by the first forward pass.
    row_shapes: Option<[Vec<usize>; 2]>,
    /// The rows of every pass so far, data's then label's, as little-endian f32 one after
    /// another: unnamed temporary files in the output's folder, made with the claim.
    spill: Option<[Arc<File>; 2]>,
    /// Rows held, and rows the file holds.
    rows: usize,
    written: usize,
    /// Whether the file lacks rows held.
    dirty: bool,
    /// Forward passes run.
    passes: u64,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let file = lp.hdf5_output_param.as_ref().and_then(|p| p.file_name.clone()).unwrap_or_default();
    if file.is_empty() {
        return Err(Error::Config("hdf5_output_param: missing `file_name` (the HDF5 file to write)".into()));
    }
    Ok(Box::new(Hdf5Output {
        path: PathBuf::from(file),
        held: None,
        row_shapes: None,
        spill: None,
        rows: 0,
        written: 0,
        dirty: false,
        passes: 0,
    }))
}

/// The shape Caffe writes for a bottom of shape `s`: (num, channels, height, width), the axes
/// it lacks counted as 1 (Caffe's `LegacyShape`); a bottom of more than 4 axes keeps its shape.
fn caffe_shape(s: &[usize]) -> Vec<usize> {
    if s.len() > 4 {
        return s.to_vec();
    }
    let mut v = s.to_vec();
    v.resize(4, 1);
    v
}

impl Hdf5Output {
    fn file(&self) -> String {
        self.path.display().to_string()
    }

    /// The row shapes of `data` and `label` for bottoms of `shapes`, checked: the two agree in
    /// num, and the rows keep the shape of the first pass's.
    fn rows_of(&self, shapes: &[&[usize]]) -> Result<(usize, [Vec<usize>; 2])> {
        let (d, l) = (caffe_shape(shapes[0]), caffe_shape(shapes[1]));
        if d[0] != l[0] {
            return Err(Error::Shape(format!(
                "data (bottom 0, shape {:?}) has {} items but label (bottom 1, shape {:?}) has {}: HDF5Output needs as many of each",
                shapes[0], d[0], shapes[1], l[0]
            )));
        }
        let rows = [d[1..].to_vec(), l[1..].to_vec()];
        if let Some(first) = &self.row_shapes {
            for (k, name) in [DATA, LABEL].into_iter().enumerate() {
                if rows[k] != first[k] {
                    return Err(Error::Encode {
                        file: self.file(),
                        msg: format!(
                            "dataset `{name}` holds rows of shape {:?} from the first pass, but bottom {k} (shape {:?}) now gives rows of \
                             shape {:?}: HDF5Output appends every pass to the same datasets, so only the first axis (the batch) may change",
                            first[k], shapes[k], rows[k]
                        ),
                    });
                }
            }
        }
        Ok((d[0], rows))
    }

    /// Writes every row held to the file (atomically), when the file lacks some.
    fn flush(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let (Some([d, l]), Some([data, label])) = (&self.row_shapes, &self.spill) else { return Ok(()) };
        let shape = |row: &[usize]| -> Vec<usize> { std::iter::once(self.rows).chain(row.iter().copied()).collect() };
        let mut root = Group::new();
        root.floats_in_file(DATA, &shape(d), data.clone());
        root.floats_in_file(LABEL, &shape(l), label.clone());
        write_hdf5(&self.path, &root)?;
        self.written = self.rows;
        self.dirty = false;
        Ok(())
    }

    /// Appends one pass's `rows` rows, of `shapes` (checked by [`Self::rows_of`]), to the rows
    /// held: data's values `d` and label's `l`. Both or neither: a failure leaves the rows held,
    /// and the row shapes a first pass sets, as they were.
    fn keep(&mut self, rows: usize, shapes: [Vec<usize>; 2], d: &[f32], l: &[f32]) -> Result<()> {
        let Some(files) = &self.spill else {
            return Err(Error::Config(format!("{}: HDF5Output ran before its setup", self.file())));
        };
        let per_row = |row: &[usize]| 4 * row.iter().product::<usize>() as u64;
        let ends = [self.rows as u64 * per_row(&shapes[0]), self.rows as u64 * per_row(&shapes[1])];
        let appended = (|| -> std::io::Result<()> {
            for ((file, &end), values) in files.iter().zip(&ends).zip([d, l]) {
                let mut f: &File = file;
                f.seek(SeekFrom::Start(end))?;
                crate::io::wire::write_le(&mut f, values, f32::to_le_bytes)?;
            }
            Ok(())
        })();
        if let Err(e) = appended {
            for (file, &end) in files.iter().zip(&ends) {
                let _ = file.set_len(end);
            }
            let why = format!("could not keep a pass's rows in the temporary file beside it: {e}");
            return Err(Error::io(&self.path, std::io::Error::new(e.kind(), why)));
        }
        self.row_shapes.get_or_insert(shapes);
        self.rows += rows;
        Ok(())
    }

    /// Claims the file for this layer: refused when another live HDF5Output layer writes it.
    /// The folder must exist (the error names the file).
    fn claim(&mut self) -> Result<()> {
        if self.held.is_some() {
            return Ok(());
        }
        let Some(name) = self.path.file_name() else {
            return Err(Error::Config(format!("hdf5_output_param.file_name `{}` names no file", self.file())));
        };
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(&self.path, e))?;
        let key = dir.join(name);
        // Held from the check to the insert: two nets built at once may not both take the file.
        let mut open = open_files();
        if open.contains(&key) {
            return Err(Error::Config(format!(
                "{}: another HDF5Output layer of this process writes this file already (a train and a test net that both \
                 hold the layer need `include {{ phase: ... }}` or different file names)",
                self.file()
            )));
        }
        // Made now, while the folder is known to exist: a pass's rows can be kept even if the
        // folder goes away before they are written.
        let spill = || tempfile::tempfile_in(&dir).map(Arc::new);
        let files = spill().and_then(|d| Ok([d, spill()?])).map_err(|e| {
            let why = format!("could not make the temporary files its rows wait in, in {}: {e}", dir.display());
            Error::io(&self.path, std::io::Error::new(e.kind(), why))
        })?;
        open.insert(key.clone());
        self.spill = Some(files);
        self.held = Some(key);
        Ok(())
    }
}

impl<B: Backend> Layer<B> for Hdf5Output {
    fn type_name(&self) -> &'static str {
        "HDF5Output"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(2)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(0)
    }
    /// No gradient flows back (Caffe's backward does nothing).
    fn allow_force_backward(&self, _bottom: usize) -> bool {
        false
    }
    fn has_backward(&self) -> bool {
        false
    }
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        false
    }
    /// Claims the file (its folder must exist), without writing it yet.
    fn setup(&mut self, _: &B, _: &[&[usize]]) -> Result<Vec<super::ParamDef>> {
        self.claim()?;
        Ok(Vec::new())
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        self.rows_of(bottoms)?;
        Ok(Vec::new())
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let (data, label) = (ctx.bottom(0), ctx.bottom(1));
        let (n, rows) = self.rows_of(&[data.shape(), label.shape()])?;
        // Both read before either is kept: a failed read leaves the rows as they were.
        let (d, l) = (data.data_to_vec(be)?, label.data_to_vec(be)?);
        self.keep(n, rows, &d, &l)?;
        self.passes += 1;
        self.dirty = true;
        // After the first pass, then each time the rows have doubled: O(rows) written in all.
        if self.passes == 1 || self.rows >= 2 * self.written {
            self.flush()?;
        }
        Ok(())
    }
    fn backward(&mut self, _: &B, _: &mut Ctx<'_, B>, _: &[bool]) -> Result<()> {
        Ok(())
    }
    fn finish(&mut self, _: &B) -> Result<()> {
        self.flush()
    }
}

impl Drop for Hdf5Output {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            eprintln!("warning: HDF5Output could not write its last {} row(s): {e}", self.rows - self.written);
        }
        if let Some(key) = self.held.take() {
            open_files().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::caffe_shape;
    use crate::io::hdf5::Hdf5;
    use crate::layers::tensor_testing::{assert_contains, build_error, input, layer_from, net};
    use crate::backend::cpu::Cpu;
    use std::path::Path;

    /// Inputs `x` of `xs` and `y` of `ys` into an HDF5Output writing `file`.
    fn body(xs: &[usize], ys: &[usize], file: &Path) -> String {
        format!(
            r#"{} {} layer {{ name: "out" type: "HDF5Output" bottom: "x" bottom: "y" hdf5_output_param {{ file_name: "{}" }} }}"#,
            input("x", xs),
            input("y", ys),
            file.display()
        )
    }

    fn read(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
        let f = Hdf5::open(path).unwrap();
        let ds = f.dataset(name).unwrap();
        (ds.shape.clone(), f.read_f32(&ds).unwrap())
    }

    #[test]
    fn caffe_pads_shapes_to_four_axes() {
        assert_eq!(caffe_shape(&[5]), [5, 1, 1, 1]);
        assert_eq!(caffe_shape(&[5, 3]), [5, 3, 1, 1]);
        assert_eq!(caffe_shape(&[5, 3, 2, 4]), [5, 3, 2, 4]);
        assert_eq!(caffe_shape(&[]), [1, 1, 1, 1]);
        assert_eq!(caffe_shape(&[5, 3, 2, 4, 6]), [5, 3, 2, 4, 6]);
    }

    #[test]
    fn declares_no_tops_and_no_backward() {
        let l = layer_from(r#"name: "o" type: "HDF5Output" hdf5_output_param { file_name: "x.h5" }"#).unwrap();
        assert_eq!(l.type_name(), "HDF5Output");
        assert_eq!((l.bottoms().min, l.bottoms().max, l.tops().max), (2, 2, 0));
        assert!(!l.has_backward() && !l.allow_force_backward(0) && !l.allow_force_backward(1));
        let e = layer_from(r#"name: "o" type: "HDF5Output""#).err().expect("refused");
        assert_contains(&e.to_string(), "missing `file_name`");
    }

    #[test]
    fn the_file_is_replaced_by_the_first_pass_then_rows_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.h5");
        std::fs::write(&path, b"old contents").unwrap();
        let mut n = net(&body(&[2, 3], &[2], &path)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"old contents", "building the net leaves the file alone");
        let be = n.backend().clone();
        for pass in 0..5 {
            let x: Vec<f32> = (0..6).map(|i| (pass * 10 + i) as f32).collect();
            n.blob_mut("x").unwrap().set_data(&be, &x).unwrap();
            n.blob_mut("y").unwrap().set_data(&be, &[pass as f32, -(pass as f32)]).unwrap();
            n.forward().unwrap();
        }
        // Written after passes 1, 2 (4 rows: twice 2) and 4 (8 rows); pass 5's rows wait for finish.
        assert_eq!(read(&path, "data").0, [8, 3, 1, 1]);
        n.finish().unwrap();
        let (shape, data) = read(&path, "data");
        assert_eq!(shape, [10, 3, 1, 1]);
        let want: Vec<f32> = (0..5).flat_map(|p| (0..6).map(move |i| (p * 10 + i) as f32)).collect();
        assert_eq!(data, want);
        let (shape, label) = read(&path, "label");
        assert_eq!(shape, [10, 1, 1, 1]);
        assert_eq!(label, [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 4.0, -4.0]);
        // finish again: nothing to do; the layer may run on after it.
        n.finish().unwrap();
        n.forward().unwrap();
        drop(n);
        assert_eq!(read(&path, "label").0, [12, 1, 1, 1], "dropping the net writes the rows finish did not");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }

    #[test]
    fn batch_size_may_change_but_not_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.h5");
        let mut n = net(&body(&[2, 3], &[2], &path)).unwrap();
        let be = Cpu::new();
        n.forward().unwrap();
        n.blob_mut("x").unwrap().reshape(&be, &[1, 3]).unwrap();
        n.blob_mut("y").unwrap().reshape(&be, &[1]).unwrap();
        n.forward().unwrap();
        n.finish().unwrap();
        assert_eq!(read(&path, "data").0, [3, 3, 1, 1]);
        n.blob_mut("x").unwrap().reshape(&be, &[1, 4]).unwrap();
        let e = n.forward().unwrap_err().to_string();
        assert_contains(&e, &path.display().to_string());
        assert_contains(&e, "dataset `data` holds rows of shape [3, 1, 1] from the first pass");
        // Nothing of the refused pass was kept.
        n.blob_mut("x").unwrap().reshape(&be, &[1, 3]).unwrap();
        n.forward().unwrap();
        n.finish().unwrap();
        assert_eq!(read(&path, "label").0, [4, 1, 1, 1]);
    }

    #[test]
    fn a_shape_before_the_first_pass_is_not_binding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.h5");
        let mut n = net(&body(&[2, 3], &[2], &path)).unwrap();
        let be = Cpu::new();
        // Reshaped (as `crema forward --input` does) before any forward: the first pass decides.
        n.blob_mut("x").unwrap().reshape(&be, &[2, 5]).unwrap();
        n.forward().unwrap();
        assert_eq!(read(&path, "data").0, [2, 5, 1, 1]);
    }

    #[test]
    fn errors_are_typed_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/folder/o.h5");
        let e = build_error(&body(&[2, 3], &[2], &missing));
        assert_contains(&e, "layer `out` (type HDF5Output)");
        assert_contains(&e, &missing.display().to_string());
        let e = build_error(&body(&[2, 3], &[3], &dir.path().join("o.h5")));
        assert_contains(&e, "has 2 items but label (bottom 1, shape [3]) has 3");
        let one = format!(
            r#"{} layer {{ name: "out" type: "HDF5Output" bottom: "x" hdf5_output_param {{ file_name: "{}" }} }}"#,
            input("x", &[2]),
            dir.path().join("p.h5").display()
        );
        assert_contains(&build_error(&one), "takes exactly 2 bottom blob(s), given 1");
    }

    #[test]
    fn two_live_layers_may_not_write_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.h5");
        let first = net(&body(&[2, 3], &[2], &path)).unwrap();
        // The same file by another name.
        let other = dir.path().join(".").join("o.h5");
        assert_contains(&build_error(&body(&[2, 3], &[2], &other)), "another HDF5Output layer of this process writes this file");
        drop(first);
        net(&body(&[2, 3], &[2], &other)).unwrap();
    }

    #[test]
    fn a_failed_write_is_an_error_and_the_rows_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("o.h5");
        let mut n = net(&body(&[2, 3], &[2], &path)).unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        let e = n.forward().unwrap_err().to_string();
        assert_contains(&e, &path.display().to_string());
        std::fs::create_dir(&sub).unwrap();
        n.finish().unwrap();
        assert_eq!(read(&path, "data").0, [2, 3, 1, 1]);
    }
}
