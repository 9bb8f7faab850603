//! Arbitrary bytes as a solverstate: an error or consistent history blobs, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = crema::io::solverstate::decode_solverstate(data, "fuzz.solverstate") {
        for b in &s.history {
            assert!(b.data.is_empty() || b.data.len() == b.count());
        }
    }
});
