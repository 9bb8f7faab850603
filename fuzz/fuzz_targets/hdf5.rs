//! Arbitrary bytes as an HDF5 file: every dataset HDF5Data or a snapshot might ask for is read
//! or refused with an error; never a panic, never more values than the file could hold.
//!
//! Seed it with real files: `cargo +nightly fuzz run hdf5 fuzz/corpus/hdf5` after copying
//! fixtures/hdf5/*.h5 and fixtures/hdf5/snapshot/*.h5 there.
#![no_main]

use crema::io::hdf5::Hdf5;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Hdf5::from_bytes(data.to_vec(), std::path::Path::new("fuzz.h5")) {
        let _ = f.names();
        let _ = f.members_of("data");
        let _ = f.members_of("history");
        for name in ["data", "label", "pixels", "chunked", "single", "gzipped", "early", "group/inner", "d07", "data/ip1/0", "history/0"] {
            if let Ok(ds) = f.dataset(name) {
                if let Ok(v) = f.read_f32(&ds) {
                    assert!(v.len() as u64 <= 1100 * data.len() as u64 + (1 << 20));
                }
            }
        }
        for name in ["iter", "current_step", "learned_net"] {
            if let Ok(ds) = f.dataset(name) {
                let _ = f.read_ints(&ds);
                let _ = f.read_text(&ds);
            }
        }
    }
});
