//! Integration tests of `crema::prototxt`: the grammar and the errors on a small test schema
//! (`tests/data/textformat_test*.proto`, compiled here with protox), print/parse round trips
//! (also of random messages), malformed input, and Caffe's own files from the conformance
//! folder.

#[path = "prototxt/common.rs"]
mod common;
#[path = "prototxt/conformance.rs"]
mod conformance;
#[path = "prototxt/errors.rs"]
mod errors;
#[path = "prototxt/literals.rs"]
mod literals;
#[path = "prototxt/malformed.rs"]
mod malformed;
#[path = "prototxt/printing.rs"]
mod printing;
#[path = "prototxt/roundtrip.rs"]
mod roundtrip;
