//! crema's one error type. Every variant names what it concerns (a file, a layer, a blob),
//! so that a message can be printed to a user as it is.

use std::path::PathBuf;

/// Result with crema's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps this error with the layer it happened in (unless it already names one).
    pub fn in_layer(self, layer: &str, kind: &str) -> Error {
        match self {
            e @ Error::Layer { .. } => e,
            e => Error::Layer { layer: layer.to_string(), kind: kind.to_string(), inner: Box::new(e) },
        }
    }
}

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    // The cause is part of the message, not a `source()`: printing a chain would repeat it.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// A buffer could not be allocated.
    #[error("out of memory: {bytes} bytes could not be allocated on the {device}")]
    OutOfMemory { bytes: usize, device: String },
    /// Shapes that do not fit together (a layer's bottoms, a reshape, an input file).
    #[error("{0}")]
    Shape(String),
    /// A layer or net parameter that Caffe would reject, or that crema cannot honour.
    #[error("{0}")]
    Config(String),
    /// Trained weights that do not fit the net.
    #[error("{file}: {msg}")]
    Weights { file: String, msg: String },
    /// An error inside one layer of a net.
    #[error("layer `{layer}` (type {kind}): {inner}")]
    Layer { layer: String, kind: String, inner: Box<Error> },
    /// Training stopped because the loss became NaN or infinite. `msg` says which layer was
    /// the first to output a non-finite value; snapshots written before are left in place.
    #[error("training diverged at iteration {iter}: {msg}")]
    Diverged { iter: u64, msg: String },
    /// A broken invariant inside crema: a bug, reported rather than panicking.
    #[error("internal error (a bug in crema): {0}")]
    Internal(String),

    /// A protobuf text-format file (a `.prototxt`) is malformed or does not fit its schema.
    /// `line` and `col` are 1-based (`col` counts characters); `snippet` is the offending
    /// source line followed by a line with a caret under the column, ready to print.
    #[error("{file}:{line}:{col}: {msg}\n{snippet}")]
    Prototxt { file: String, line: usize, col: usize, msg: String, snippet: String },

    /// A message type is missing from a descriptor pool, or a message does not convert
    /// between its dynamic and its generated form (a mismatch between schema and code).
    #[error("schema: {msg}")]
    Schema { msg: String },

    /// A binary file (caffemodel, binaryproto, solverstate, npy) is malformed: truncated,
    /// inconsistent, or not the format it should be. `msg` says what and, where it helps,
    /// at which byte and inside which layer and blob.
    #[error("{file}: {msg}")]
    Decode { file: String, msg: String },

    /// Data handed to a writer cannot be written as asked (for example a blob whose data
    /// length does not match its shape); nothing was written.
    #[error("{file}: {msg}")]
    Encode { file: String, msg: String },

    /// A net or solver in an old format that cannot be upgraded to the current one without
    /// losing or inventing meaning (Caffe would abort, or drop the setting with a log line).
    /// `file` is empty when the message came from memory rather than from a file.
    #[error("{}{msg}", if file.is_empty() { String::new() } else { format!("{file}: ") })]
    Upgrade { file: String, msg: String },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }

    /// Names `file` in an [`Error::Upgrade`] that does not name one yet; other errors pass.
    pub fn in_file(self, file: &str) -> Error {
        match self {
            Error::Upgrade { file: f, msg } if f.is_empty() => Error::Upgrade { file: file.to_string(), msg },
            e => e,
        }
    }
}
