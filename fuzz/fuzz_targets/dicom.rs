//! Arbitrary bytes as a DICOM file: decoded for display (every transfer syntax, every
//! codec: JPEG lossless, RLE, JPEG, JPEG 2000) or refused with an error; never a panic, and
//! never more pixels than the header and the file allow.
//!
//! Seed it with real files: `cargo +nightly fuzz run dicom fuzz/corpus/dicom` after copying
//! fixtures/dicom/*.dcm there.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.dcm");
    if let Ok(d) = crema::io::dicom::decode(data) {
        assert_eq!(d.data.len(), d.width * d.height * d.channels);
    }
    let _ = crema::io::dicom::decode_values(data);
    let _ = crema::data::decode::decode_image(data, path, crema::data::decode::ColorMode::Bgr);
});
