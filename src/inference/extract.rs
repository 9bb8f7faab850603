//! Caffe's `extract_features`: runs a net forward for some batches and stores, for each named
//! blob, every item's values as a Datum of `float_data` in a database of its own, as Caffe's
//! tool does: keys `%010d` counting items from 0, `channels`, `height` and `width` the blob's
//! (legacy) axes 1 to 3, no label. The databases are LMDB or LevelDB, as asked; a Data layer
//! (or pycaffe's `datum_to_array`) reads them back.
//!
//! Each database is written by its own thread as the batches come, so memory holds a batch, not
//! the features of the whole run; a failure leaves no database behind.

use crate::backend::Backend;
use crate::io::db::{DbKind, Written};
use crate::net::Net;
use crate::proto::Datum;
use crate::{Error, Result};
use prost::Message;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender};

/// Records queued per database before the net waits for its writer.
const QUEUE: usize = 4096;

type Record = Result<(Vec<u8>, Vec<u8>)>;

/// The `(channels, height, width)` Caffe's legacy accessors give a blob of `shape`.
fn legacy_chw(name: &str, shape: &[usize]) -> Result<[usize; 3]> {
    if shape.is_empty() || shape.len() > 4 {
        return Err(Error::Shape(format!(
            "blob `{name}` has shape {shape:?}; a feature blob needs 1 to 4 axes (N, C, H, W), as Caffe's Datum holds"
        )));
    }
    let axis = |i: usize| shape.get(i).copied().unwrap_or(1);
    Ok([axis(1), axis(2), axis(3)])
}

/// Checks a request before anything runs: one database per blob, every blob in the net with
/// at most 4 axes, no database of kind `kind` already there (for LevelDB, no file at all) or
/// named twice.
pub fn check<B: Backend>(net: &Net<B>, blobs: &[&str], dbs: &[PathBuf], kind: DbKind) -> Result<()> {
    if blobs.len() != dbs.len() {
        return Err(Error::Config(format!(
            "{} feature blobs but {} databases: name one database per blob",
            blobs.len(),
            dbs.len()
        )));
    }
    for name in blobs {
        let Some(b) = net.blob(name) else {
            let names: Vec<&str> = (0..net.blobs().len()).map(|i| net.blob_name(i)).collect();
            return Err(Error::Config(format!("the net has no blob `{name}` (its blobs: {})", names.join(", "))));
        };
        legacy_chw(name, b.shape())?;
    }
    for (i, db) in dbs.iter().enumerate() {
        if kind.occupied(db) || dbs[..i].contains(db) {
            return Err(Error::Config(format!("{}: a database is already there (or named twice); remove it or choose another name", db.display())));
        }
    }
    Ok(())
}

/// Runs `batches` forward passes of `net` and writes blob `blobs[i]` of every item to the
/// database `dbs[i]`, of kind `kind`; `progress(blob, items)` hears every 1,000 items of each
/// blob and its last count. Returns what each database holds.
pub fn extract_features<B: Backend>(
    net: &mut Net<B>,
    blobs: &[&str],
    dbs: &[PathBuf],
    kind: DbKind,
    batches: usize,
    mut progress: impl FnMut(&str, u64),
) -> Result<Vec<Written>> {
    check(net, blobs, dbs, kind)?;
    std::thread::scope(|scope| {
        let mut senders: Vec<SyncSender<Record>> = Vec::new();
        let mut writers = Vec::new();
        for db in dbs {
            let (tx, rx) = sync_channel::<Record>(QUEUE);
            senders.push(tx);
            writers.push(scope.spawn(move || crate::io::db::write(kind, db, rx)));
        }
        // Ok(false): a writer stopped (its error says why).
        let run = (|| -> Result<bool> {
            let mut counts = vec![0u64; blobs.len()];
            for _ in 0..batches {
                net.forward()?;
                for (i, name) in blobs.iter().enumerate() {
                    let blob = net.blob(name).ok_or_else(|| Error::Internal(format!("blob `{name}` vanished")))?;
                    let [c, h, w] = legacy_chw(name, blob.shape())?;
                    let values = blob.data_to_vec(net.backend())?;
                    for item in values.chunks_exact((c * h * w).max(1)) {
                        let datum = Datum {
                            channels: Some(c as i32),
                            height: Some(h as i32),
                            width: Some(w as i32),
                            float_data: item.to_vec(),
                            ..Default::default()
                        };
                        let key = format!("{:010}", counts[i]).into_bytes();
                        if senders[i].send(Ok((key, datum.encode_to_vec()))).is_err() {
                            return Ok(false);
                        }
                        counts[i] += 1;
                        if counts[i].is_multiple_of(1000) {
                            progress(name, counts[i]);
                        }
                    }
                }
            }
            for (name, &n) in blobs.iter().zip(&counts) {
                if !n.is_multiple_of(1000) {
                    progress(name, n);
                }
            }
            Ok(true)
        })();
        if !matches!(run, Ok(true)) {
            // Records that end in an error make each writer remove what it wrote.
            for tx in &senders {
                let _ = tx.send(Err(Error::Config(STOPPED.into())));
            }
        }
        drop(senders);
        let written: Vec<Result<Written>> =
            writers.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("a database writer panicked".into())))).collect();
        run?;
        // A writer's own error first, then the others' (which only echo the stop).
        let echo = |e: &Error| matches!(e, Error::Config(m) if m == STOPPED);
        if let Some(e) = written.iter().position(|w| w.as_ref().is_err_and(|e| !echo(e))) {
            return Err(written.into_iter().nth(e).and_then(|w| w.err()).unwrap_or_else(|| Error::Internal(STOPPED.into())));
        }
        written.into_iter().collect()
    })
}

/// What the writers hear when extraction stops early.
const STOPPED: &str = "feature extraction stopped before its end";
