//! Arbitrary bytes as a .npy file, floats only and with integer conversion: an error or an
//! array whose data fills its shape, never a panic.
#![no_main]

use crema::io::NpyOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for integers in [false, true] {
        if let Ok(a) = crema::io::npy::decode_npy(data, "fuzz.npy", NpyOptions { integers }) {
            assert_eq!(a.data.len(), a.shape.iter().product::<usize>());
        }
    }
});
