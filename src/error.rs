//! crema's one error type. Every variant names what it concerns (a file, a layer, a blob),
//! so that a message can be printed to a user as it is.

use std::path::PathBuf;

/// Result with crema's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, #[source] source: std::io::Error },
    /// A buffer could not be allocated.
    #[error("out of memory: {bytes} bytes could not be allocated on the {device}")]
    OutOfMemory { bytes: usize, device: String },
    /// A broken invariant inside crema: a bug, reported rather than panicking.
    #[error("internal error (a bug in crema): {0}")]
    Internal(String),
}
