//! Arbitrary bytes as an LMDB data file: an error, or records whose keys and values lie in the
//! file; never a panic. Each record is also decoded as a Caffe Datum.
//!
//! Seed it with real databases: `cargo +nightly fuzz run lmdb fuzz/corpus/lmdb` after copying
//! fixtures/lmdb/*/data.mdb there.
#![no_main]

use crema::io::lmdb::Lmdb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(db) = Lmdb::from_bytes(data.to_vec(), std::path::Path::new("fuzz.mdb")) {
        for i in 0..db.len() {
            let (k, v) = db.get(i).expect("an indexed record");
            assert!(k.len() + v.len() <= data.len());
            let _ = crema::proto::Datum::decode(v);
        }
    }
});
