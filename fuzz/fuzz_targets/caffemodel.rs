//! Arbitrary bytes as a caffemodel (weights view) and as a mean file: an error or a result
//! whose blobs are consistent, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(w) = crema::io::weights::decode_weights(data, "fuzz.caffemodel") {
        for layer in &w.layers {
            for b in &layer.blobs {
                assert!(b.data.is_empty() || b.data.len() == b.count());
                assert!(b.diff.is_empty() || b.diff.len() == b.count());
            }
        }
    }
    if let Ok(b) = crema::io::blob::decode_binaryproto(data, "fuzz.binaryproto") {
        assert!(b.data.is_empty() || b.data.len() == b.count());
    }
});
