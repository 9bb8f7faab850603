//! Caffe's solver snapshots (`.solverstate`, a serialized `SolverState`): reading them through
//! the bounds-checked wire reader (history blobs can be as large as the net's parameters, so
//! they are decoded straight into their vectors) and writing them as Caffe's
//! `SGDSolver::SnapshotSolverStateToBinaryProto` does.
//!
//! Field numbers (BVLC `caffe.proto`): `iter` 1, `learned_net` 2, `history` 3 (`BlobProto`),
//! `current_step` 4. Fields that forks added (an `iter_last_event`, a `minimum_loss`) are
//! skipped.

use std::io::Write as _;
use std::path::Path;

use super::blob::{BlobData, BlobRef, blob_body_len, decode_blob, write_blob_body};
use super::wire::{
    self, DecodeError, DecodeResult, Reader, expect_len, expect_string, expect_varint,
};
use crate::{Error, Result};

const F_ITER: u32 = 1;
const F_LEARNED_NET: u32 = 2;
const F_HISTORY: u32 = 3;
const F_CURRENT_STEP: u32 = 4;

/// A solver snapshot as read from a file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SolverStateFile {
    /// The iteration the snapshot was taken after.
    pub iter: i64,
    /// The caffemodel written with it (a path as the solver was given it).
    pub learned_net: String,
    /// The solver's history blobs (momentum, squared gradients, ...), one or more per
    /// learnable parameter in the order the solver keeps them.
    pub history: Vec<BlobData>,
    /// The current step of the `multistep` learning-rate policy.
    pub current_step: i64,
}

/// Reads the solver snapshot at `path`.
pub fn read_solverstate(path: impl AsRef<Path>) -> Result<SolverStateFile> {
    let path = path.as_ref();
    if super::hdf5_snapshot::is_hdf5(path) {
        return super::hdf5_snapshot::read_solverstate_hdf5(path);
    }
    let bytes = super::FileBytes::open(path)?;
    decode_solverstate(&bytes, &path.display().to_string())
}

/// Decodes a serialized `SolverState`; `file` names it in errors.
pub fn decode_solverstate(bytes: &[u8], file: &str) -> Result<SolverStateFile> {
    decode(bytes).map_err(|e| e.into_error(file))
}

fn decode(bytes: &[u8]) -> DecodeResult<SolverStateFile> {
    if bytes.is_empty() {
        return Err(DecodeError::new("empty file: expected a SolverState"));
    }
    let mut out = SolverStateFile::default();
    let mut r = Reader::new(bytes, 0);
    while let Some(f) = r.next_field().map_err(|e| match e.truncated_field {
        Some(F_HISTORY) => e.inside(format!("history blob {}", out.history.len())),
        _ => e,
    })? {
        match f.number {
            // int32 in BVLC, int64 in some forks: a varint either way, negative values
            // sign-extended to ten bytes.
            F_ITER => out.iter = expect_varint(&f, "iter")? as i64,
            F_CURRENT_STEP => out.current_step = expect_varint(&f, "current_step")? as i64,
            F_LEARNED_NET => out.learned_net = expect_string(&f, "learned_net")?,
            F_HISTORY => {
                let index = out.history.len();
                let blob = expect_len(&f, "history")
                    .and_then(|(b, at)| decode_blob(b, at))
                    .map_err(|e| e.inside(format!("history blob {index}")))?;
                out.history.push(blob);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Writes a solver snapshot atomically, as Caffe does: `iter`, `learned_net`, each history
/// blob (shape and data), `current_step`. Every history blob is checked against its shape
/// before anything is written.
pub fn write_solverstate(
    path: impl AsRef<Path>,
    iter: i64,
    learned_net: &str,
    history: &[BlobRef<'_>],
    current_step: i64,
) -> Result<()> {
    let path = path.as_ref();
    for (i, h) in history.iter().enumerate() {
        h.check(false).map_err(|msg| Error::Encode {
            file: path.display().to_string(),
            msg: format!("history blob {i}: {msg}"),
        })?;
    }
    super::atomic_write(path, |w| {
        let mut head = Vec::new();
        wire::put_tag(&mut head, F_ITER, wire::WT_VARINT);
        wire::put_varint(&mut head, iter as u64);
        wire::put_tag(&mut head, F_LEARNED_NET, wire::WT_LEN);
        wire::put_varint(&mut head, learned_net.len() as u64);
        head.extend_from_slice(learned_net.as_bytes());
        w.write_all(&head)?;
        for h in history {
            wire::write_len_header(w, F_HISTORY, blob_body_len(h.shape, h.data.len(), 0))?;
            write_blob_body(w, h.shape, h.data, None)?;
        }
        let mut tail = Vec::new();
        wire::put_tag(&mut tail, F_CURRENT_STEP, wire::WT_VARINT);
        wire::put_varint(&mut tail, current_step as u64);
        w.write_all(&tail)
    })
}

impl SolverStateFile {
    /// Writes this snapshot to `path` with [`write_solverstate`].
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let history: Vec<BlobRef<'_>> = self.history.iter().map(BlobRef::of).collect();
        write_solverstate(
            path,
            self.iter,
            &self.learned_net,
            &history,
            self.current_step,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.solverstate");
        let state = SolverStateFile {
            iter: 5,
            learned_net: "snap_iter_5.caffemodel".into(),
            history: vec![
                BlobData::new(vec![2, 2], vec![1., 2., 3., 4.]),
                BlobData::new(vec![2], vec![0.5, -0.5]),
            ],
            current_step: 2,
        };
        state.write(&p).unwrap();
        assert_eq!(read_solverstate(&p).unwrap(), state);
    }

    #[test]
    fn negative_int32_iter_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.solverstate");
        write_solverstate(&p, -1, "", &[], 0).unwrap();
        assert_eq!(read_solverstate(&p).unwrap().iter, -1);
    }

    #[test]
    fn mismatched_history_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.solverstate");
        let h = [BlobRef {
            shape: &[3],
            data: &[1.0],
            diff: &[],
        }];
        let e = write_solverstate(&p, 1, "m", &h, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("history blob 0: data holds 1 values but shape [3] holds 3"),
            "{e}"
        );
        assert!(!p.exists());
    }

    #[test]
    fn errors_name_the_history_blob() {
        let mut b = Vec::new();
        wire::put_tag(&mut b, F_HISTORY, wire::WT_LEN);
        wire::put_varint(&mut b, 2);
        b.extend([0x28, 0x01]); // data as a varint
        let e = decode_solverstate(&b, "s").unwrap_err().to_string();
        assert_eq!(
            e,
            "s: field data (5) has wire type varint, expected fixed32 or packed at byte 2 inside history blob 0"
        );
        assert!(
            decode_solverstate(&[], "s")
                .unwrap_err()
                .to_string()
                .contains("empty file")
        );
    }
}
