//! Snapshots (Caffe's `Solver::Snapshot`: the caffemodel, then the solverstate) and restoring
//! from a solverstate written by Caffe or by crema.
//!
//! Both files are written atomically (a temporary file, then a rename), the caffemodel first:
//! a crash at any moment leaves every earlier snapshot whole.

use super::monitor::SnapshotFiles;
use super::{paths, Solver};
use crate::backend::Backend;
use crate::io::{self, BlobRef};
use crate::proto::solver_parameter::SnapshotFormat;
use crate::{Error, Result};
use std::path::Path;

impl<B: Backend> Solver<B> {
    /// Writes `<prefix>_iter_<N>.caffemodel` (with gradients when `snapshot_diff`) and
    /// `<prefix>_iter_<N>.solverstate` (iteration, the caffemodel's path, history, current
    /// step); with `snapshot_format: HDF5`, `.caffemodel.h5` and `.solverstate.h5` in Caffe's
    /// HDF5 layout (see [`io::hdf5_snapshot`]).
    pub fn snapshot(&mut self) -> Result<SnapshotFiles> {
        let prefix = self.prefix.clone().ok_or_else(|| {
            Error::Config("cannot snapshot: the solver has no snapshot_prefix (and came from no file)".into())
        })?;
        let hdf5 = self.param.snapshot_format() == SnapshotFormat::Hdf5;
        let (ext, kind) = if hdf5 { (".h5", "HDF5 file") } else { ("", "binary proto file") };
        let model = paths::snapshot_file(&prefix, self.iter, &format!(".caffemodel{ext}"));
        self.monitor.log(&format!("Snapshotting to {kind} {}", model.display()));
        if hdf5 {
            self.net.save_hdf5(&model, self.param.snapshot_diff())?;
        } else {
            self.net.save_caffemodel(&model, self.param.snapshot_diff())?;
        }

        let state = paths::snapshot_file(&prefix, self.iter, &format!(".solverstate{ext}"));
        self.monitor.log(&format!("Snapshotting solver state to {kind} {}", state.display()));
        let host = self
            .history
            .iter()
            .map(|h| Ok(io::BlobData::new(h.shape().to_vec(), h.data_to_vec(&self.be)?)))
            .collect::<Result<Vec<_>>>()?;
        let learned_net = model.to_string_lossy();
        if hdf5 {
            io::hdf5_snapshot::write_solverstate_hdf5(&state, self.iter as i64, &learned_net, &host, self.current_step)?;
        } else {
            let refs: Vec<BlobRef<'_>> = host.iter().map(BlobRef::of).collect();
            io::write_solverstate(&state, self.iter as i64, &learned_net, &refs, self.current_step)?;
        }
        let files = SnapshotFiles { iter: self.iter, model, state };
        self.monitor.snapshotted(&files);
        Ok(files)
    }

    /// Restores the solver from a solverstate (Caffe's `Restore`; a path ending in `.h5` is an
    /// HDF5 one, whatever this solver's `snapshot_format`): the iteration, the weights
    /// of its `learned_net`, the learning-rate step and the history. Everything is checked
    /// before anything changes: the history must have as many blobs as this solver keeps for
    /// this net, each of the shape of its learnable blob.
    pub fn restore(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let state = io::read_solverstate(path)?;
        let bad = |msg: String| Error::Weights { file: file.clone(), msg };
        if state.iter < 0 || state.current_step < 0 {
            return Err(bad(format!("negative iter ({}) or current_step ({})", state.iter, state.current_step)));
        }
        self.check_history(&state.history).map_err(bad)?;
        let weights = if state.learned_net.is_empty() {
            None
        } else {
            let p = paths::learned_net(&state.learned_net, path)?;
            Some((io::read_weights(&p)?, p))
        };
        if let Some((w, p)) = weights {
            self.net.copy_trained_layers(&w, &p.display().to_string())?;
        }
        for (h, saved) in self.history.iter_mut().zip(&state.history) {
            h.set_data(&self.be, &saved.data)?;
        }
        self.iter = state.iter as u64;
        self.current_step = state.current_step;
        self.monitor.log(&format!("Restored solver state from {file} at iteration {}", self.iter));
        Ok(())
    }

    /// Checks saved history blobs against this solver's: count, then each shape.
    fn check_history(&self, saved: &[io::BlobData]) -> std::result::Result<(), String> {
        let n = self.net.params().len();
        let per = self.kind.history_per_param();
        if saved.len() != self.history.len() {
            return Err(format!(
                "holds {} history blobs, but the {} solver keeps {} for this net ({n} learnable blobs x {per}); \
                 was it written for another net or another solver type?",
                saved.len(),
                self.kind.name(),
                self.history.len()
            ));
        }
        for (i, (mine, theirs)) in self.history.iter().zip(saved).enumerate() {
            let ok = if theirs.legacy_4d {
                crate::net::legacy_shape_equals(&theirs.shape, mine.shape())
            } else {
                theirs.shape == mine.shape()
            };
            if !ok || theirs.data.len() != mine.count() {
                let info = &self.net.param_info()[i % n];
                return Err(format!(
                    "history blob {i} has shape {:?} but belongs to blob {} of layer `{}`, of shape {:?}; \
                     was it written for another net?",
                    theirs.shape,
                    info.index,
                    info.layer,
                    mine.shape()
                ));
            }
        }
        Ok(())
    }
}
