//! Writing an upgraded net or solver back to a file, for `crema upgrade` (Caffe's
//! `upgrade_net_proto_text`, `upgrade_net_proto_binary` and `upgrade_solver_proto_text`).
//!
//! Text is written in the canonical form Caffe's own tools write (byte for byte, on the
//! conformance files); binary in field-number order, in BVLC's numbering (crema's), also for a
//! net that was read in the SegNet fork's numbering. Writes are atomic ([`crate::io::atomic_write`]):
//! the old file stays whole until the new one is complete.

use super::load::FileFormat;
use crate::Result;
use crate::proto::{NetParameter, SolverParameter};
use prost::Message;
use std::io::Write;
use std::path::Path;

/// How to write a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Protobuf text format, as Caffe prints it.
    Text,
    /// Binary protobuf.
    Binary,
}

impl From<FileFormat> for Encoding {
    /// The encoding a file was read in, to write its upgrade the same way.
    fn from(format: FileFormat) -> Self {
        match format {
            FileFormat::Text => Encoding::Text,
            FileFormat::Binary(_) => Encoding::Binary,
        }
    }
}

fn write<M: Message + prost::Name>(path: &Path, m: &M, encoding: Encoding) -> Result<()> {
    let bytes = match encoding {
        Encoding::Text => crate::prototxt::print(m)?.into_bytes(),
        Encoding::Binary => m.encode_to_vec(),
    };
    crate::io::atomic_write(path, |w| w.write_all(&bytes))
}

/// Writes `net` to `path` in `encoding`.
pub fn write_net(path: impl AsRef<Path>, net: &NetParameter, encoding: Encoding) -> Result<()> {
    write(path.as_ref(), net, encoding)
}

/// Writes `solver` to `path` in `encoding`.
pub fn write_solver(path: impl AsRef<Path>, solver: &SolverParameter, encoding: Encoding) -> Result<()> {
    write(path.as_ref(), solver, encoding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::load_net;

    #[test]
    fn upgraded_nets_round_trip_in_both_encodings() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.prototxt");
        std::fs::write(&old, br#"name: "n" input: "x" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2 layers { name: "r" type: RELU bottom: "x" top: "y" }"#).unwrap();
        let loaded = load_net(&old).unwrap();
        assert_eq!(loaded.notes.len(), 2);
        for (name, encoding) in [("new.prototxt", Encoding::Text), ("new.caffemodel", Encoding::Binary)] {
            let path = dir.path().join(name);
            write_net(&path, &loaded.message, encoding).unwrap();
            let again = load_net(&path).unwrap();
            assert_eq!(Encoding::from(again.format), encoding);
            assert!(again.notes.is_empty(), "{name}: {:?}", again.notes);
            assert_eq!(again.message, loaded.message);
        }
        let text = std::fs::read_to_string(dir.path().join("new.prototxt")).unwrap();
        assert!(text.starts_with("name: \"n\"\nlayer {\n  name: \"input\"\n  type: \"Input\"\n"), "{text}");
    }
}
