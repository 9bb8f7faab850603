//! Malformed and hostile input for every binary reader: each case must give an `Err` with a
//! message that says what is wrong (or, where the bytes are in fact a valid message, an `Ok`),
//! and never a panic, a stack overflow or an allocation the input does not pay for.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use crema::io::blob::decode_binaryproto;
use crema::io::npy::decode_npy;
use crema::io::solverstate::decode_solverstate;
use crema::io::weights::decode_weights;
use crema::io::{NpyOptions, read_binaryproto, read_npy, read_solverstate, read_weights};

fn conformance_dir() -> PathBuf {
    std::env::var_os("CREMA_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"))
}

/// Runs `f`, failing the test if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("panicked on {what}"))
}

/// The message of an error `f` must return.
fn err_of<T: std::fmt::Debug>(what: &str, f: impl FnOnce() -> crema::Result<T>) -> String {
    let e = no_panic(what, f).expect_err(what).to_string();
    assert!(e.len() > 10, "{what}: unhelpful message {e:?}");
    e
}

// ---- protobuf building blocks ----

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn tag(buf: &mut Vec<u8>, field: u32, wire: u8) {
    varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn len_field(buf: &mut Vec<u8>, field: u32, payload: &[u8]) {
    tag(buf, field, 2);
    varint(buf, payload.len() as u64);
    buf.extend_from_slice(payload);
}

fn net_with_layer(layer: &[u8]) -> Vec<u8> {
    let mut net = Vec::new();
    len_field(&mut net, 100, layer);
    net
}

fn layer_with_blob(blob: &[u8]) -> Vec<u8> {
    let mut layer = Vec::new();
    len_field(&mut layer, 1, b"conv1");
    len_field(&mut layer, 7, blob);
    layer
}

fn shape(dims: &[u64]) -> Vec<u8> {
    let mut packed = Vec::new();
    for &d in dims {
        varint(&mut packed, d);
    }
    let mut s = Vec::new();
    len_field(&mut s, 1, &packed);
    s
}

/// A deterministic xorshift64* generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---- cases ----

#[test]
fn every_prefix_of_a_real_caffemodel() {
    for case in [
        "layers/segnet_upsample/weights.caffemodel",
        "layers/lenet/weights.caffemodel",
    ] {
        let path = conformance_dir().join(case);
        let bytes = std::fs::read(&path).unwrap();
        let full = read_weights(&path).unwrap();
        // every prefix of the small one, a sample of ~2000 of the larger
        let step = (bytes.len() / 2000).max(1);
        let mut errors = 0;
        for cut in (0..bytes.len()).step_by(step) {
            let what = format!("{case} cut at {cut}");
            match no_panic(&what, || decode_weights(&bytes[..cut], "w.caffemodel")) {
                Err(e) => {
                    errors += 1;
                    let m = e.to_string();
                    assert!(m.starts_with("w.caffemodel: "), "{what}: {m}");
                    assert!(
                        m.contains("truncated")
                            || m.contains("empty file")
                            || m.contains("values but shape"),
                        "{what}: {m}"
                    );
                }
                // A cut at a boundary between top-level fields is a valid, shorter net: it must
                // hold a prefix of the layers, each whole.
                Ok(w) => {
                    assert!(
                        w.layers.len() < full.layers.len() || cut == bytes.len(),
                        "{what}"
                    );
                    assert_eq!(w.layers[..], full.layers[..w.layers.len()], "{what}");
                }
            }
        }
        assert!(errors > 0);
        let e = err_of("truncation message", || {
            decode_weights(&bytes[..bytes.len() - 1], "w.caffemodel")
        });
        assert!(e.contains("at byte") && e.contains("inside layer"), "{e}");
    }
}

#[test]
fn a_truncation_inside_a_blob_names_layer_and_blob() {
    let path = conformance_dir().join("layers/conv_basic/weights.caffemodel");
    let bytes = std::fs::read(&path).unwrap();
    // Cut in the middle of the first blob's packed floats, and patch the lengths of the
    // enclosing layer and blob so that only the blob's own data field runs past its end.
    let w = read_weights(&path).unwrap();
    assert!(!w.layers.iter().all(|l| l.blobs.is_empty()));
    let e = err_of("cut file", || {
        decode_weights(&bytes[..bytes.len() / 2], "weights.caffemodel")
    });
    assert!(e.starts_with("weights.caffemodel: truncated"), "{e}");

    let mut floats = Vec::new();
    tag(&mut floats, 5, 2);
    varint(&mut floats, 400); // claims 100 floats
    floats.extend([0u8; 40]); // holds 10
    let e = err_of("short data", || {
        decode_weights(
            &net_with_layer(&layer_with_blob(&floats)),
            "weights.caffemodel",
        )
    });
    assert_eq!(
        e,
        "weights.caffemodel: truncated: field 5 claims 400 bytes but only 40 remain at byte 13 inside layer 0 `conv1` blob 0"
    );
}

#[test]
fn wrong_wire_types() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "net layer as fixed32",
            {
                let mut b = Vec::new();
                tag(&mut b, 100, 5);
                b.extend([0; 4]);
                b
            },
            "field layer (100) has wire type fixed32",
        ),
        (
            "net name as varint",
            {
                let mut b = Vec::new();
                tag(&mut b, 1, 0);
                varint(&mut b, 7);
                b
            },
            "field name (1) has wire type varint",
        ),
        (
            "layer type as fixed64",
            net_with_layer(&{
                let mut b = Vec::new();
                tag(&mut b, 2, 1);
                b.extend([0; 8]);
                b
            }),
            "field type (2) has wire type fixed64",
        ),
        (
            "V1 type as string",
            {
                let mut v1 = Vec::new();
                len_field(&mut v1, 5, b"CONV");
                let mut b = Vec::new();
                len_field(&mut b, 2, &v1);
                b
            },
            "field type (5) has wire type length-delimited",
        ),
        (
            "blob data as varint",
            net_with_layer(&layer_with_blob(&{
                let mut b = Vec::new();
                tag(&mut b, 5, 0);
                varint(&mut b, 1);
                b
            })),
            "field data (5) has wire type varint",
        ),
        (
            "double_data as fixed32",
            net_with_layer(&layer_with_blob(&{
                let mut b = Vec::new();
                tag(&mut b, 8, 5);
                b.extend([0; 4]);
                b
            })),
            "field double_data (8) has wire type fixed32",
        ),
        (
            "shape dim as fixed64",
            net_with_layer(&layer_with_blob(&{
                let mut s = Vec::new();
                tag(&mut s, 1, 1);
                s.extend([0; 8]);
                let mut b = Vec::new();
                len_field(&mut b, 7, &s);
                b
            })),
            "field dim (1) has wire type fixed64",
        ),
        (
            "num as string",
            net_with_layer(&layer_with_blob(&{
                let mut b = Vec::new();
                len_field(&mut b, 1, b"x");
                b
            })),
            "field num (1) has wire type length-delimited",
        ),
        (
            "wire type 7",
            {
                let mut b = Vec::new();
                tag(&mut b, 3, 7);
                b
            },
            "invalid wire type 7",
        ),
    ];
    for (what, bytes, expected) in cases {
        let e = err_of(what, || decode_weights(&bytes, "w.caffemodel"));
        assert!(e.contains(expected), "{what}: {e}");
    }
    let mut s = Vec::new();
    tag(&mut s, 3, 0); // history as a varint
    varint(&mut s, 1);
    assert!(
        err_of("history", || decode_solverstate(&s, "s"))
            .contains("field history (3) has wire type varint")
    );
}

#[test]
fn a_blob_claiming_2_pow_40_elements() {
    // packed data whose length claims 2^40 floats in a file of a few bytes
    let mut blob = Vec::new();
    tag(&mut blob, 5, 2);
    varint(&mut blob, 4 << 40);
    let e = err_of("length 2^42", || {
        decode_weights(&net_with_layer(&layer_with_blob(&blob)), "w")
    });
    assert!(e.contains("claims 4398046511104 bytes"), "{e}");

    // a shape of 2^40 elements with three floats
    let mut blob = Vec::new();
    len_field(&mut blob, 7, &shape(&[1 << 20, 1 << 20]));
    tag(&mut blob, 5, 2);
    varint(&mut blob, 12);
    blob.extend([0; 12]);
    let e = err_of("shape 2^40", || {
        decode_weights(&net_with_layer(&layer_with_blob(&blob)), "w")
    });
    assert!(
        e.contains("data holds 3 values but shape [1048576, 1048576] holds 1099511627776"),
        "{e}"
    );

    // the same through the legacy 4-D fields, and in a mean file and a solverstate
    let mut legacy = Vec::new();
    for (f, v) in [(1u32, 1u64 << 40), (2, 1), (3, 1), (4, 1)] {
        tag(&mut legacy, f, 0);
        varint(&mut legacy, v);
    }
    tag(&mut legacy, 5, 5);
    legacy.extend([0; 4]);
    assert!(
        err_of("legacy", || decode_binaryproto(&legacy, "mean.binaryproto"))
            .contains("holds 1099511627776")
    );
    let mut state = Vec::new();
    len_field(&mut state, 3, &legacy);
    assert!(
        err_of("history", || decode_solverstate(&state, "s")).contains("inside history blob 0")
    );

    // dims whose product overflows
    let mut blob = Vec::new();
    len_field(&mut blob, 7, &shape(&[1 << 40, 1 << 40]));
    assert!(
        err_of("overflow", || decode_binaryproto(&blob, "m")).contains("more elements than fit")
    );
    // a negative dim (int64 -5)
    let mut blob = Vec::new();
    len_field(&mut blob, 7, &shape(&[(-5i64) as u64]));
    assert!(
        err_of("negative", || decode_binaryproto(&blob, "m")).contains("negative dimension -5")
    );
}

#[test]
fn zero_byte_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty");
    std::fs::write(&p, b"").unwrap();
    assert!(err_of("weights", || read_weights(&p)).contains("empty file"));
    assert!(err_of("solverstate", || read_solverstate(&p)).contains("empty file"));
    assert!(err_of("binaryproto", || read_binaryproto(&p)).contains("empty file"));
    assert!(err_of("npy", || read_npy(&p)).contains("empty file"));
    let missing = dir.path().join("missing.caffemodel");
    assert!(err_of("missing", || read_weights(&missing)).contains("missing.caffemodel"));
}

#[test]
fn nesting_10000_deep() {
    // 10,000 nested groups inside a layer: refused at protobuf's depth limit.
    let mut layer = Vec::new();
    for _ in 0..10_000 {
        tag(&mut layer, 900, 3);
    }
    let e = err_of("groups", || decode_weights(&net_with_layer(&layer), "w"));
    assert!(e.contains("groups nested deeper than 100 levels"), "{e}");

    // 10,000 nested messages, `layer { layer { ... } }`: below the first level field 100 is
    // a LayerParameter's transform_param, which the walker skips by its length without
    // descending, so depth costs nothing and the file is a net of one unnamed layer.
    let mut msg = Vec::new();
    for _ in 0..10_000 {
        let mut outer = Vec::new();
        len_field(&mut outer, 100, &msg);
        msg = outer;
    }
    let w = no_panic("nested messages", || decode_weights(&msg, "w")).unwrap();
    assert_eq!(w.layers.len(), 1);
    // Nested V1 -> V0 is one level by construction: a V0 layer's field 1 is its name.
    let mut v1 = Vec::new();
    len_field(&mut v1, 1, &msg[..msg.len().min(200)]);
    let mut net = Vec::new();
    len_field(&mut net, 2, &v1);
    no_panic("V0 nesting", || {
        let _ = decode_weights(&net, "w");
    });
}

#[test]
fn an_eleven_byte_varint() {
    let mut bytes = vec![0xff; 10];
    bytes.push(0x01);
    assert!(
        err_of("tag", || decode_weights(&bytes, "w"))
            .contains("varint longer than 10 bytes at byte 0")
    );
    let mut as_len = Vec::new();
    tag(&mut as_len, 100, 2);
    as_len.extend([0xff; 10]);
    as_len.push(0x01);
    assert!(
        err_of("length", || decode_weights(&as_len, "w"))
            .contains("varint longer than 10 bytes at byte 2")
    );
    let mut as_iter = vec![0x08];
    as_iter.extend([0x80; 10]);
    as_iter.push(0x00);
    assert!(
        err_of("iter", || decode_solverstate(&as_iter, "s"))
            .contains("varint longer than 10 bytes")
    );
}

#[test]
fn random_bytes_many_seeds() {
    let mut errs = 0usize;
    let mut oks = 0usize;
    for seed in 1..=3000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let len = rng.below(600);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let what = format!("random seed {seed}");
        for r in [
            no_panic(&what, || decode_weights(&bytes, "r").map(|_| ())),
            no_panic(&what, || decode_solverstate(&bytes, "r").map(|_| ())),
            no_panic(&what, || decode_binaryproto(&bytes, "r").map(|_| ())),
            no_panic(&what, || {
                decode_npy(&bytes, "r", NpyOptions { integers: true }).map(|_| ())
            }),
        ] {
            match r {
                Ok(()) => oks += 1,
                Err(e) => {
                    assert!(e.to_string().starts_with("r: "), "{e}");
                    errs += 1;
                }
            }
        }
    }
    println!("random bytes: {errs} errors, {oks} decoded as valid (unknown fields only)");
    assert!(errs > oks * 10);
}

#[test]
fn mutated_real_files_many_seeds() {
    let dir = conformance_dir();
    let sources: Vec<(Vec<u8>, u8)> = [
        ("layers/segnet_bn_learn/weights.caffemodel", 0u8),
        ("layers/conv_basic/weights.caffemodel", 0),
        ("solvers/resume_adam/snap_iter_5.solverstate", 1),
        ("layers/conv_basic/in_data.npy", 2),
    ]
    .iter()
    .map(|(p, k)| (std::fs::read(dir.join(p)).unwrap(), *k))
    .collect();
    for seed in 1..=2000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        let (src, kind) = &sources[rng.below(sources.len())];
        let mut bytes = src.clone();
        for _ in 0..1 + rng.below(8) {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        if rng.below(4) == 0 {
            bytes.truncate(rng.below(bytes.len() + 1));
        }
        let what = format!("mutation seed {seed}");
        no_panic(&what, || match kind {
            0 => drop(decode_weights(&bytes, "m")),
            1 => drop(decode_solverstate(&bytes, "m")),
            _ => drop(decode_npy(&bytes, "m", NpyOptions::default())),
        });
    }
}

#[test]
fn malformed_npy() {
    let path = conformance_dir().join("layers/conv_basic/in_data.npy");
    let bytes = std::fs::read(&path).unwrap();
    for cut in 0..bytes.len() {
        let e = err_of("npy prefix", || {
            decode_npy(&bytes[..cut], "in_data.npy", NpyOptions::default())
        });
        assert!(e.starts_with("in_data.npy: "), "{e}");
    }
    let mut wrong = bytes.clone();
    let at = wrong.windows(3).position(|w| w == b"<f4").unwrap();
    wrong[at + 1..at + 3].copy_from_slice(b"i4");
    assert!(
        err_of("dtype", || decode_npy(
            &wrong,
            "x.npy",
            NpyOptions::default()
        ))
        .contains("dtype '<i4' holds integers")
    );
    wrong[at + 1..at + 3].copy_from_slice(b"c8");
    assert!(
        err_of("complex", || decode_npy(
            &wrong,
            "x.npy",
            NpyOptions::default()
        ))
        .contains("unsupported dtype '<c8'")
    );
}
