//! Protobuf text format (`.prototxt`): parsing into messages and printing them back.
//!
//! Text goes through nom-based [`lexer`] and [`grammar`] into a syntax tree ([`ast`]) that
//! keeps every position, then through a message descriptor into a [`DynamicMessage`]
//! ([`build`]), and from there, for the typed API, into a prost-generated type by encoding
//! and decoding. [`print`](fn@print) writes the canonical form protobuf's C++ library (and so
//! Caffe) writes. The module knows nothing of Caffe beyond the descriptor pool it is given;
//! the typed functions use the pool of `proto/caffe.proto`.

pub mod ast;
pub mod build;
pub mod diag;
pub mod grammar;
pub mod lexer;
pub mod print;

use crate::{Error, Result};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use std::path::Path;
use std::sync::OnceLock;

/// The descriptor pool of the Caffe schema, decoded once from
/// [`crate::proto::DESCRIPTOR_SET`].
pub fn caffe_pool() -> Result<&'static DescriptorPool> {
    static POOL: OnceLock<std::result::Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::proto::DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::Schema {
        msg: format!("the compiled caffe.proto descriptor does not decode: {e}"),
    })
}

/// The descriptor of a generated type, from the Caffe pool.
pub fn descriptor_of<M: prost::Name>() -> Result<MessageDescriptor> {
    let name = M::full_name();
    caffe_pool()?
        .get_message_by_name(&name)
        .ok_or_else(|| Error::Schema {
            msg: format!("message `{name}` is not in the caffe schema"),
        })
}

/// Parses `text` as a message of type `desc` (from any pool). `file` names the text in errors.
pub fn parse_dynamic(text: &str, file: &str, desc: &MessageDescriptor) -> Result<DynamicMessage> {
    let doc = grammar::document(text).map_err(|d| diag::to_error(text, file, d))?;
    build::build(text, desc, &doc).map_err(|d| diag::to_error(text, file, d))
}

/// Like [`parse_dynamic`], for bytes that should be UTF-8 text.
pub fn parse_dynamic_bytes(
    bytes: &[u8],
    file: &str,
    desc: &MessageDescriptor,
) -> Result<DynamicMessage> {
    let text = std::str::from_utf8(bytes).map_err(|e| diag::utf8_error(bytes, file, e))?;
    parse_dynamic(text, file, desc)
}

/// Parses `text` as a message of the Caffe schema, e.g. `parse::<NetParameter>(text, "net.prototxt")`.
pub fn parse<M: prost::Message + prost::Name + Default>(text: &str, file: &str) -> Result<M> {
    let dynamic = parse_dynamic(text, file, &descriptor_of::<M>()?)?;
    into_typed(&dynamic)
}

/// Like [`parse`], for bytes that should be UTF-8 text.
pub fn parse_bytes<M: prost::Message + prost::Name + Default>(
    bytes: &[u8],
    file: &str,
) -> Result<M> {
    let dynamic = parse_dynamic_bytes(bytes, file, &descriptor_of::<M>()?)?;
    into_typed(&dynamic)
}

/// Reads and parses a text file of the Caffe schema; errors name `path`.
pub fn read_file<M: prost::Message + prost::Name + Default>(path: &Path) -> Result<M> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_bytes(&bytes, &path.display().to_string())
}

/// Reads and parses a text file as a message of type `desc`; errors name `path`.
pub fn read_file_dynamic(path: &Path, desc: &MessageDescriptor) -> Result<DynamicMessage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_dynamic_bytes(&bytes, &path.display().to_string(), desc)
}

/// The canonical text form of a message of the Caffe schema, as Caffe writes it.
///
/// Fails only when `M` is not a type of the Caffe schema.
pub fn print<M: prost::Message + prost::Name>(m: &M) -> Result<String> {
    let desc = descriptor_of::<M>()?;
    let dynamic =
        DynamicMessage::decode(desc, m.encode_to_vec().as_slice()).map_err(|e| Error::Schema {
            msg: format!(
                "`{}` does not decode as its own descriptor: {e}",
                M::full_name()
            ),
        })?;
    Ok(print::print_message(&dynamic))
}

/// The canonical text form of a message of any pool.
pub fn print_dynamic(m: &DynamicMessage) -> String {
    print::print_message(m)
}

/// Converts a dynamic message into its generated type through the binary encoding.
fn into_typed<M: prost::Message + prost::Name + Default>(m: &DynamicMessage) -> Result<M> {
    M::decode(m.encode_to_vec().as_slice()).map_err(|e| Error::Schema {
        msg: format!(
            "`{}` does not decode into its generated type: {e}",
            M::full_name()
        ),
    })
}
