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

    /// A binary file (caffemodel, binaryproto, solverstate, npy) is malformed: truncated,
    /// inconsistent, or not the format it should be. `msg` says what and, where it helps,
    /// at which byte and inside which layer and blob.
    #[error("{file}: {msg}")]
    Decode { file: String, msg: String },

    /// Data handed to a writer cannot be written as asked (for example a blob whose data
    /// length does not match its shape); nothing was written.
    #[error("{file}: {msg}")]
    Encode { file: String, msg: String },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
