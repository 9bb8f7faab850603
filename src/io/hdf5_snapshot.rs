//! Caffe's HDF5 snapshots (`snapshot_format: HDF5`): `.caffemodel.h5` weights and
//! `.solverstate.h5` solver states, read and written in Caffe's layout.
//!
//! - Weights (`Net::ToHDF5`): a group `data` holding a group per layer, named as the layer,
//!   holding one float32 dataset per learnable blob the layer owns, named `0`, `1`, ... in
//!   order, of the blob's shape; `diff` likewise with the gradients when `snapshot_diff`. A
//!   layer with no blobs of its own has an empty group. Caffe reads a file by extension: any
//!   weights path ending in `.h5` is one of these.
//! - Solver state (`SGDSolver::SnapshotSolverStateToHDF5`): int32 datasets `iter` and
//!   `current_step` (one value each), the string `learned_net`, and a group `history` of
//!   float32 datasets `0`, `1`, ... in the solver's order.
//!
//! Caffe cannot write a layer whose name holds `/` (HDF5 reads it as a path and refuses); crema
//! writes such a name as nested groups, which HDF5 paths then find.

use super::hdf5::{write_hdf5, Group, Hdf5};
use super::{BlobData, LayerFormat, LayerWeights, SolverStateFile, WeightsFile};
use crate::{Error, Result};
use std::path::Path;

/// Whether `path` names an HDF5 snapshot, as Caffe decides it: by the `.h5` ending.
pub fn is_hdf5(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".h5")
}

/// One layer's entry for [`write_weights_hdf5`]: its name, and each blob with whether the
/// layer owns it (a blob it shares from an earlier layer has no value dataset here, as in
/// Caffe, but has its gradient).
pub struct Hdf5Layer<'a> {
    /// The layer's name.
    pub name: &'a str,
    /// Values (and, when writing gradients, diffs) of each blob, and whether the layer owns it.
    pub blobs: Vec<(&'a BlobData, bool)>,
}

/// Writes weights as Caffe's `Net::ToHDF5` does (atomically): `data/<layer>/<j>` for each blob
/// the layer owns and, with `with_diff`, `diff/<layer>/<j>` for every blob. A layer name with
/// an empty part, or one that would land on another layer's blob, is refused.
pub fn write_weights_hdf5(path: &Path, layers: &[Hdf5Layer<'_>], with_diff: bool) -> Result<()> {
    let bad = |msg: String| Error::Encode { file: path.display().to_string(), msg };
    for l in layers {
        if l.name.split('/').any(str::is_empty) {
            return Err(bad(format!("layer name `{}` cannot name an HDF5 group (an empty part)", l.name)));
        }
        if let Some((parent, last)) = l.name.rsplit_once('/')
            && last.parse::<usize>().is_ok()
            && layers.iter().any(|o| o.name == parent && !o.blobs.is_empty())
        {
            return Err(bad(format!("layer name `{}` would land on blob {last} of layer `{parent}`", l.name)));
        }
    }
    let mut root = Group::new();
    let data = root.group("data");
    for l in layers {
        let g = data.group(l.name);
        for (j, (b, owned)) in l.blobs.iter().enumerate() {
            if *owned {
                g.floats(&j.to_string(), &b.shape, b.data.as_slice());
            }
        }
    }
    if with_diff {
        let diff = root.group("diff");
        for l in layers {
            let g = diff.group(l.name);
            for (j, (b, _)) in l.blobs.iter().enumerate() {
                if b.diff.len() != b.data.len() {
                    return Err(bad(format!("layer `{}` blob {j} has no gradient to write", l.name)));
                }
                g.floats(&j.to_string(), &b.shape, b.diff.as_slice());
            }
        }
    }
    write_hdf5(path, &root)
}

/// Reads a `.caffemodel.h5`. Each layer's blobs are its datasets `0`, `1`, ...; a missing index
/// (a blob the layer shares) is an empty [`BlobData`] (no shape, no values), which
/// [`crate::net::Net::copy_trained_layers`] accepts only for a shared blob, as Caffe does.
pub fn read_weights_hdf5(path: &Path) -> Result<WeightsFile> {
    let f = Hdf5::open(path)?;
    if !f.exists("data")? {
        return Err(Error::Weights { file: path.display().to_string(), msg: "no `data` group: not weights Caffe wrote".into() });
    }
    let mut layers = Vec::new();
    collect_layers(&f, "data", "", &mut layers)?;
    Ok(WeightsFile { name: String::new(), layers })
}

/// The layers under group `at`: a group is a layer when it holds datasets (or nothing); one
/// that holds only groups is a path prefix of layer names (see the module note).
fn collect_layers(f: &Hdf5, at: &str, prefix: &str, out: &mut Vec<LayerWeights>) -> Result<()> {
    for name in f.members_of(at)? {
        let path = format!("{at}/{name}");
        let layer = format!("{prefix}{name}");
        // A dataset directly under `data` is no layer of Caffe's; Caffe never looks at it.
        let members = match f.members_of(&path) {
            Err(Error::Decode { msg, .. }) if msg.ends_with("is a dataset, not a group") => continue,
            m => m?,
        };
        let indices: Vec<usize> = members.iter().filter_map(|m| m.parse::<usize>().ok().filter(|i| i.to_string() == *m)).collect();
        if indices.is_empty() && !members.is_empty() {
            collect_layers(f, &path, &format!("{layer}/"), out)?;
            continue;
        }
        let count = indices.iter().max().map_or(0, |m| m + 1);
        if count > 4096 {
            return Err(Error::Weights { file: f.path().display().to_string(), msg: format!("layer `{layer}` names blob {}", count - 1) });
        }
        let mut blobs = vec![BlobData::new(Vec::new(), Vec::new()); count];
        for i in indices {
            let ds = f.dataset(&format!("{path}/{i}"))?;
            let data = f.read_f32(&ds)?;
            blobs[i] = BlobData::new(ds.shape.clone(), data);
        }
        out.push(LayerWeights { name: layer, type_name: String::new(), format: LayerFormat::Hdf5, blobs });
    }
    Ok(())
}

/// Writes a solver state as Caffe's `SnapshotSolverStateToHDF5` does (atomically).
pub fn write_solverstate_hdf5(path: &Path, iter: i64, learned_net: &str, history: &[BlobData], current_step: i64) -> Result<()> {
    let int = |v: i64, what: &str| {
        i32::try_from(v).map_err(|_| Error::Encode { file: path.display().to_string(), msg: format!("{what} {v} does not fit Caffe's int") })
    };
    let mut root = Group::new();
    root.ints("iter", &[1], vec![int(iter, "iter")?]);
    root.text("learned_net", learned_net);
    root.ints("current_step", &[1], vec![int(current_step, "current_step")?]);
    let h = root.group("history");
    for (i, b) in history.iter().enumerate() {
        h.floats(&i.to_string(), &b.shape, b.data.as_slice());
    }
    write_hdf5(path, &root)
}

/// Reads a `.solverstate.h5`.
pub fn read_solverstate_hdf5(path: &Path) -> Result<SolverStateFile> {
    let f = Hdf5::open(path)?;
    let bad = |msg: String| Error::Weights { file: path.display().to_string(), msg };
    let int = |name: &str| -> Result<i64> {
        let v = f.read_ints(&f.dataset(name)?)?;
        v.first().copied().ok_or_else(|| bad(format!("`{name}` holds no value")))
    };
    let iter = int("iter")?;
    let current_step = int("current_step")?;
    let learned_net = if f.exists("learned_net")? { f.read_text(&f.dataset("learned_net")?)? } else { String::new() };
    let names = f.members_of("history")?;
    let mut history = Vec::with_capacity(names.len());
    for i in 0..names.len() {
        let ds = f.dataset(&format!("history/{i}")).map_err(|_| bad(format!("the history group lacks dataset `{i}` (it holds {})", names.join(", "))))?;
        let data = f.read_f32(&ds)?;
        history.push(BlobData::new(ds.shape.clone(), data));
    }
    Ok(SolverStateFile { iter, learned_net, history, current_step })
}
