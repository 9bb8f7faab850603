//! Parses arbitrary bytes as Caffe's NetParameter and SolverParameter text; when a parse
//! succeeds, the printed text must parse back to a message that prints the same.
//!
//! Run: `cargo +nightly fuzz run prototxt` from the crate root. Seed it with real files:
//! `cargo +nightly fuzz run prototxt fuzz/corpus/prototxt ../shared/conformance/prototxt`.

#![no_main]

use crema::prototxt::{caffe_pool, parse_dynamic, parse_dynamic_bytes, print_dynamic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pool) = caffe_pool() else { return };
    for name in ["caffe.NetParameter", "caffe.SolverParameter"] {
        let Some(desc) = pool.get_message_by_name(name) else {
            continue;
        };
        let Ok(message) = parse_dynamic_bytes(data, "fuzz", &desc) else {
            continue;
        };
        let text = print_dynamic(&message);
        let back = match parse_dynamic(&text, "printed", &desc) {
            Ok(back) => back,
            Err(e) => panic!("printed {name} does not parse back: {e}\n--- text ---\n{text}"),
        };
        // Texts, not messages, are compared: NaN != NaN, and the text is canonical.
        assert_eq!(
            print_dynamic(&back),
            text,
            "{name} changes on a second round trip"
        );
    }
});
