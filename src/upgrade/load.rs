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
fn decode<M>(bytes: &[u8], file: &str, binary: impl FnOnce(&[u8]) -> Result<(M, Dialect)>) -> Result<(M, FileFormat)>
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn text_v1_net_is_upgraded_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "old.prototxt", br#"name: "n" layers { name: "r" type: RELU bottom: "x" top: "x" }"#);
        let loaded = load_net(&path).unwrap();
        assert_eq!(loaded.format, FileFormat::Text);
        assert_eq!(loaded.message.layer[0].r#type(), "ReLU");
        let note = loaded.note("old.prototxt").unwrap();
        assert_eq!(
            note,
            "note: old.prototxt uses the V1 layer format; upgraded in memory \u{2014} `crema upgrade` writes the upgraded file"
        );
        assert_eq!(read_net(&path).unwrap(), loaded.message);
    }

    #[test]
    fn binary_nets_are_decoded_and_current_ones_need_no_note() {
        let dir = tempfile::tempdir().unwrap();
        let net = NetParameter {
            name: Some("bin".into()),
            layer: vec![crate::proto::LayerParameter { name: Some("x".into()), ..Default::default() }],
            ..Default::default()
        };
        let path = write(&dir, "net.caffemodel", &net.encode_to_vec());
        let loaded = load_net(&path).unwrap();
        assert_eq!(loaded.format, FileFormat::Binary(Dialect::Bvlc));
        assert_eq!(loaded.message, net);
        assert!(loaded.note("net.caffemodel").is_none());
    }

    #[test]
    fn notes_are_joined_in_order() {
        let notes = ["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(join_notes(&notes), "a, b and c");
        assert_eq!(join_notes(&notes[..2]), "a and b");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let typo = write(&dir, "typo.prototxt", b"name: \"n\"\nlayer { nme: \"x\" }\n");
        let e = load_net(&typo).unwrap_err();
        assert!(matches!(e, Error::Prototxt { .. }), "a text file gets the text parser's error: {e}");
        assert!(e.to_string().starts_with(&format!("{}:2:", typo.display())), "{e}");

        let junk = write(&dir, "junk.caffemodel", &[0xff, 0xfe, 0x0b, 0x00]);
        let e = load_net(&junk).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }), "{e}");
        assert!(
            e.to_string().starts_with(&format!("{}: neither a text-format nor a binary NetParameter", junk.display())),
            "{e}"
        );

        let old = write(&dir, "v0.prototxt", br#"layers { layer { name: "x" type: "nonsense" } }"#);
        let e = load_net(&old).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: layer `x`: unknown V0 layer type `nonsense`", old.display()));

        let solver = write(&dir, "solver.prototxt", br#"type: "SGD" solver_type: SGD"#);
        let e = load_solver(&solver).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{}: the solver sets both", solver.display())), "{e}");

        let missing = dir.path().join("missing.prototxt");
        assert!(matches!(load_net(&missing), Err(Error::Io { .. })));
    }

    #[test]
    fn binary_v0_nets_keep_their_weights() {
        use crate::proto::{BlobProto, V0LayerParameter, V1LayerParameter};
        let blob = BlobProto { data: vec![1.0, 2.0], ..Default::default() };
        let v0 = V0LayerParameter {
            name: Some("ip".into()),
            r#type: Some("innerproduct".into()),
            num_output: Some(2),
            blobs: vec![blob.clone()],
            ..Default::default()
        };
        let old = NetParameter {
            input: vec!["x".into()],
            layers: vec![V1LayerParameter { bottom: vec!["x".into()], layer: Some(v0), ..Default::default() }],
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "v0.caffemodel", &old.encode_to_vec());
        let loaded = load_net(&path).unwrap();
        assert_eq!(loaded.format, FileFormat::Binary(Dialect::Bvlc));
        let ip = &loaded.message.layer[0];
        assert_eq!((ip.r#type(), &ip.blobs[..]), ("InnerProduct", &[blob][..]));
        assert!(loaded.message.input.is_empty(), "an input without dims is dropped, as in Caffe");
    }

    #[test]
    fn solvers_are_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "solver.prototxt", b"base_lr: 0.1\nsolver_type: ADAGRAD\n");
        let loaded = load_solver(&path).unwrap();
        assert_eq!((loaded.message.r#type(), loaded.message.solver_type), ("AdaGrad", None));
        assert_eq!(loaded.notes, [super::super::notes::SOLVER_TYPE]);
        assert_eq!(read_solver(&path).unwrap(), loaded.message);
    }
}
