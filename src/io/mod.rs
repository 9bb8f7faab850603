//! Caffe's binary files and NumPy arrays: reading them from untrusted bytes, writing them as
//! Caffe (or NumPy) does.
//!
//! - [`weights`]: a lenient view of any `.caffemodel` (current, V1 and V0 layers, any fork's
//!   numbering for the parameters it does not read): each layer's name, type and blobs.
//! - [`blob`]: `BlobProto` and mean files (`.binaryproto`).
//! - [`caffemodel`]: writing a net's definition and parameters as Caffe's snapshots do.
//! - [`solverstate`]: `.solverstate` files.
//! - [`npy`]: NumPy `.npy` arrays.
//! - [`lmdb`], [`leveldb`], [`db`]: the databases of Caffe `Datum` records Data layers read,
//!   and `convert_imageset` and `extract_features` write (both kinds).
//! - [`hdf5`]: HDF5 files (HDF5Data's input; written too), and [`hdf5_snapshot`]: Caffe's
//!   `.caffemodel.h5` and `.solverstate.h5`.
//! - [`dicom`]: DICOM radiographs (read for display; every image reader takes them).
//!
//! Every reader checks each length and count against the bytes that remain before it
//! allocates, so a corrupt or hostile file gives an [`Error::Decode`],
//! never a panic or an outsized allocation. Every writer goes through [`atomic_write`].

pub mod blob;
pub mod caffemodel;
pub mod db;
pub mod dicom;
pub mod hdf5;
pub mod hdf5_snapshot;
pub mod leveldb;
pub mod lmdb;
pub mod npy;
pub mod solverstate;
pub mod weights;
pub(crate) mod wire;

pub use blob::{BlobData, BlobRef, read_binaryproto, write_binaryproto};
pub use caffemodel::{write_caffemodel, write_weights};
pub use npy::{NpyArray, NpyOptions, read_npy, read_npy_with, write_npy};
pub use solverstate::{SolverStateFile, read_solverstate, write_solverstate};
pub use weights::{LayerFormat, LayerWeights, WeightsFile, read_weights};

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// A whole file's bytes: memory-mapped where possible (no copy; the page cache is the only
/// buffer), read into memory otherwise.
pub(crate) enum FileBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl FileBytes {
    /// Maps (or, where mapping is not possible, reads) the file at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Ok(FileBytes::Read(Vec::new()));
        }
        // SAFETY: the map is read-only and lives no longer than this value. If another
        // process truncates the file while it is mapped, reading the lost pages raises SIGBUS;
        // like every tool that maps its inputs (and Caffe's own readers, which see a torn
        // file), we accept that for files under the user's control.
        match unsafe { memmap2::Mmap::map(&file) } {
            Ok(map) => Ok(FileBytes::Mapped(map)),
            Err(_) => std::fs::read(path)
                .map(FileBytes::Read)
                .map_err(|e| Error::io(path, e)),
        }
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Read(v) => v,
        }
    }
}

/// Writes `path` atomically: `write` fills a buffered temporary file in the same directory,
/// which is flushed, fsynced and renamed over `path`, and the directory is fsynced. A reader
/// sees the old file or the whole new one, never a part; on any error the temporary file is
/// removed and `path` is untouched.
pub fn atomic_write<F>(path: impl AsRef<Path>, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    let path = path.as_ref();
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let file = File::options().write(true).create_new(true).open(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        w.flush()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    sync_dir(path);
    Ok(())
}

/// A fresh temporary name beside `path`: `.<name>.<pid>.<n>.tmp`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Makes a rename durable by syncing its directory, where the platform allows it (best effort:
/// the file itself is already synced).
pub(crate) fn sync_dir(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_cleans_up_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        atomic_write(&p, |w| w.write_all(b"one")).unwrap();
        atomic_write(&p, |w| w.write_all(b"two")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let e = atomic_write(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/x.bin");
        assert!(matches!(
            atomic_write(&p, |w| w.write_all(b"x")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn empty_file_maps_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty");
        std::fs::write(&p, b"").unwrap();
        assert!(FileBytes::open(&p).unwrap().is_empty());
    }
}
