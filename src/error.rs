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

    /// A protobuf text-format file (a `.prototxt`) is malformed or does not fit its schema.
    /// `line` and `col` are 1-based (`col` counts characters); `snippet` is the offending
    /// source line followed by a line with a caret under the column, ready to print.
    #[error("{file}:{line}:{col}: {msg}\n{snippet}")]
    Prototxt { file: String, line: usize, col: usize, msg: String, snippet: String },

    /// A message type is missing from a descriptor pool, or a message does not convert
    /// between its dynamic and its generated form (a mismatch between schema and code).
    #[error("schema: {msg}")]
    Schema { msg: String },
}
