//! Helpers shared by the prototxt tests: the test schema's pool and short ways to parse.

use crema::Error;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};
use std::sync::OnceLock;

/// The pool of the test schemas, compiled once.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
        let fds = protox::compile(["textformat_test.proto", "textformat_test3.proto"], [dir])
            .unwrap_or_else(|e| panic!("test schema does not compile: {e:?}"));
        DescriptorPool::from_file_descriptor_set(fds).expect("test schema builds a pool")
    })
}

/// A message type of the test schema.
pub fn desc(name: &str) -> MessageDescriptor {
    pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("no message {name}"))
}

/// Parses `text` as `tt.Top`.
pub fn top(text: &str) -> DynamicMessage {
    parse_as("tt.Top", text)
}

/// Parses `text` as message `name`, panicking with the error's text on failure.
pub fn parse_as(name: &str, text: &str) -> DynamicMessage {
    match crema::prototxt::parse_dynamic(text, "test.prototxt", &desc(name)) {
        Ok(m) => m,
        Err(e) => panic!("{text:?} does not parse:\n{e}"),
    }
}

/// Parses `text` as `tt.Scalars` and returns field `field`.
pub fn scalar(field: &str, text: &str) -> Value {
    let m = parse_as("tt.Scalars", text);
    assert!(m.has_field_by_name(field), "{text:?} does not set {field}");
    m.get_field_by_name(field)
        .map(|v| v.into_owned())
        .unwrap_or_else(|| panic!("no field {field}"))
}

/// The error parsing `text` as `name` gives: (line, col, msg).
pub fn error_as(name: &str, text: &str) -> (usize, usize, String) {
    match crema::prototxt::parse_dynamic(text, "test.prototxt", &desc(name)) {
        Ok(m) => panic!("{text:?} parsed as {m:?}"),
        Err(Error::Prototxt {
            file,
            line,
            col,
            msg,
            ..
        }) => {
            assert_eq!(file, "test.prototxt");
            (line, col, msg)
        }
        Err(e) => panic!("{text:?}: unexpected error kind {e:?}"),
    }
}

/// The message of the error parsing `text` as `tt.Top`.
pub fn error(text: &str) -> String {
    error_as("tt.Top", text).2
}

/// The message of the error parsing `text` as `tt.Scalars`.
pub fn scalar_error(text: &str) -> String {
    error_as("tt.Scalars", text).2
}

/// A small deterministic PRNG (xorshift64*), so that random tests are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}
