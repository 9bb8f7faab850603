//! Reading a net or solver file whatever its age and encoding (Caffe's
//! `ReadNetParamsFromTextFileOrDie` / `ReadNetParamsFromBinaryFileOrDie` /
//! `ReadSolverParamsFromTextFileOrDie`, with the format found rather than told).
//!
//! A file is text when its bytes are UTF-8 and parse as the text format. Otherwise it is read
//! as binary protobuf (a `.caffemodel`, a `.binaryproto` net), renumbered first when it is in
//! the SegNet fork's numbering ([`super::dialect`]). A file that looks like text (UTF-8 without
//! control characters) but does not parse gets the text parser's error, never a binary guess.
//! The message is then upgraded; errors name the file.

use super::dialect::{self, Dialect};
use crate::io::FileBytes;
use crate::proto::{NetParameter, SolverParameter};
use crate::{Error, Result};
use prost::Message;
use std::path::Path;

/// How a file was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// Protobuf text format (`.prototxt`).
    Text,
    /// Binary protobuf, in the given numbering.
    Binary(Dialect),
}

/// A message read from a file and upgraded.
#[derive(Clone, Debug)]
pub struct Loaded<M> {
    /// The upgraded message.
    pub message: M,
    /// How the file was encoded.
    pub format: FileFormat,
    /// One note per upgrade step applied (see [`super::notes`]); empty for a current file.
    pub notes: Vec<String>,
}

impl<M> Loaded<M> {
    /// The stderr line that tells a user their file was upgraded in memory, if it was.
    pub fn note(&self, file: &str) -> Option<String> {
        if self.notes.is_empty() {
            return None;
        }
        Some(format!(
            "note: {file} uses {}; upgraded in memory \u{2014} `crema upgrade` writes the upgraded file",
            join_notes(&self.notes)
        ))
    }
}

/// "a", "a and b", "a, b and c".
fn join_notes(notes: &[String]) -> String {
    match notes {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Whether `bytes` read as text: UTF-8 with no control characters but whitespace.
fn looks_like_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .is_ok_and(|s| !s.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0b' | '\x0c')))
}

/// Parses `bytes` as text if they are, else decodes them with `binary`.
fn decode<M>(
    bytes: &[u8],
    file: &str,
    binary: impl FnOnce(&[u8]) -> Result<(M, Dialect)>,
) -> Result<(M, FileFormat)>
where
    M: Message + prost::Name + Default,
{
    if let Ok(text) = std::str::from_utf8(bytes) {
        match crate::prototxt::parse::<M>(text, file) {
            Ok(m) => return Ok((m, FileFormat::Text)),
            Err(e) if looks_like_text(bytes) => return Err(e),
            Err(_) => {}
        }
    }
    let (m, dialect) = binary(bytes)?;
    Ok((m, FileFormat::Binary(dialect)))
}

fn binary_error(file: &str, what: &str, e: prost::DecodeError) -> Error {
    Error::Decode { file: file.to_string(), msg: format!("neither a text-format nor a binary {what}: {e}") }
}

/// Decodes a binary `NetParameter`, renumbering a SegNet-dialect one first.
pub fn decode_binary_net(bytes: &[u8], file: &str) -> Result<(NetParameter, Dialect)> {
    let dialect = dialect::detect_dialect(bytes);
    let net = match dialect {
        Dialect::Bvlc => NetParameter::decode(bytes),
        Dialect::SegNet => NetParameter::decode(dialect::segnet_to_crema(bytes, file)?.as_slice()),
    }
    .map_err(|e| binary_error(file, "NetParameter", e))?;
    Ok((net, dialect))
}

/// Reads a net from `bytes` (text or binary) and upgrades it; `file` names it in errors.
pub fn decode_net(bytes: &[u8], file: &str) -> Result<Loaded<NetParameter>> {
    let (net, format) = decode(bytes, file, |b| decode_binary_net(b, file))?;
    let (message, notes) = super::upgrade_net(net).map_err(|e| e.in_file(file))?;
    Ok(Loaded { message, format, notes })
}

/// Reads a solver from `bytes` (text or binary) and upgrades it; `file` names it in errors.
pub fn decode_solver(bytes: &[u8], file: &str) -> Result<Loaded<SolverParameter>> {
    let (solver, format) = decode(bytes, file, |b| {
        SolverParameter::decode(b).map(|s| (s, Dialect::Bvlc)).map_err(|e| binary_error(file, "SolverParameter", e))
    })?;
    let (message, notes) = super::upgrade_solver(solver).map_err(|e| e.in_file(file))?;
    Ok(Loaded { message, format, notes })
}

/// Reads and upgrades the net at `path` (a `.prototxt` or a binary net such as a
/// `.caffemodel`), without printing anything.
pub fn load_net(path: impl AsRef<Path>) -> Result<Loaded<NetParameter>> {
    let path = path.as_ref();
    decode_net(&FileBytes::open(path)?, &path.display().to_string())
}

/// Reads and upgrades the solver at `path`, without printing anything.
pub fn load_solver(path: impl AsRef<Path>) -> Result<Loaded<SolverParameter>> {
    let path = path.as_ref();
    decode_solver(&FileBytes::open(path)?, &path.display().to_string())
}

/// Reads and upgrades the net at `path`; when it was upgraded, says so on stderr.
pub fn read_net(path: impl AsRef<Path>) -> Result<NetParameter> {
    let path = path.as_ref();
    let loaded = load_net(path)?;
    if let Some(note) = loaded.note(&path.display().to_string()) {
        eprintln!("{note}");
    }
    Ok(loaded.message)
}

/// Reads and upgrades the solver at `path`; when it was upgraded, says so on stderr.
pub fn read_solver(path: impl AsRef<Path>) -> Result<SolverParameter> {
    let path = path.as_ref();
    let loaded = load_solver(path)?;
    if let Some(note) = loaded.note(&path.display().to_string()) {
        eprintln!("{note}");
    }
    Ok(loaded.message)
}
