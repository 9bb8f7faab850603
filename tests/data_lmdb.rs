//! LMDB databases made by the real LMDB library (fixtures/lmdb, see tools/lmdb_fixtures.py):
//! the reader gives every record in key order, through branch pages, a three-level tree and
//! overflow pages; corrupt and truncated files give errors, never panics; the Data layer reads
//! raw and encoded Datums through transform_param, as Caffe's examples use it.

use crema::backend::cpu::Cpu;
use crema::io::lmdb::Lmdb;
use crema::net::{Net, NetOptions};
use crema::proto::{Datum, NetParameter, NetState, Phase};
use prost::Message;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lmdb").join(name)
}

fn datum(db: &Lmdb, i: usize) -> (String, Datum) {
    let (k, v) = db.get(i).unwrap();
    (String::from_utf8(k.to_vec()).unwrap(), Datum::decode(v).unwrap())
}

#[test]
fn records_come_in_key_order_through_branch_and_overflow_pages() {
    let db = Lmdb::open(&fixture("digits")).unwrap();
    assert_eq!(db.len(), 300);
    for i in 0..300 {
        let (key, d) = datum(&db, i);
        assert_eq!(key, format!("{i:08}_img{i}.png"));
        assert_eq!((d.channels(), d.height(), d.width(), d.label()), (1, 6, 5, (i % 10) as i32));
        assert!(d.data().iter().enumerate().all(|(j, &v)| v as usize == (7 * i + 3 * j) % 256), "record {i}");
    }
    assert!(db.get(300).is_none());

    // Three levels of pages; the data file may be named directly.
    let db = Lmdb::open(&fixture("deep").join("data.mdb")).unwrap();
    assert_eq!(db.len(), 150);
    for i in 0..150 {
        let (key, d) = datum(&db, i);
        assert!(key.starts_with(&format!("{i:08}_")) && key.len() == 400, "{key}");
        assert_eq!(d.label(), i as i32);
        assert_eq!(d.data(), [0, 1, 2, 3].map(|j| ((i + j) % 256) as u8));
    }

    // Values of 3,600 bytes live in overflow pages.
    let db = Lmdb::open(&fixture("color")).unwrap();
    assert_eq!(db.len(), 4);
    for i in 0..4 {
        let (_, d) = datum(&db, i);
        assert_eq!(d.data().len(), 3600);
        let want = (0..3).flat_map(|c| (0..40).flat_map(move |y| (0..30).map(move |x| ((50 * i + 80 * c + 3 * y + x) % 256) as u8)));
        assert!(d.data().iter().copied().eq(want), "record {i}");
    }
}

/// Every truncation and every single-byte corruption of a real database (at a stride) is
/// either read or refused with an error naming the file; nothing panics, and whatever is
/// read lies inside the file.
#[test]
fn corrupt_and_truncated_databases_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.mdb");
    for name in ["digits", "deep", "color"] {
        let good = std::fs::read(fixture(name).join("data.mdb")).unwrap();
        // Whether the bytes were refused.
        let refused = |bytes: &[u8], what: &str| match Lmdb::from_bytes(bytes.to_vec(), &path) {
            Ok(db) => {
                for i in 0..db.len() {
                    let (k, v) = db.get(i).unwrap();
                    let _ = (k.len(), Datum::decode(v).is_ok());
                }
                false
            }
            Err(e) => {
                assert!(e.to_string().contains("data.mdb"), "{name}, {what}: {e}");
                true
            }
        };
        let lengths: Vec<usize> = (0..good.len()).step_by(509).chain([1, 15, 151, 4095, 4097]).collect();
        assert!(lengths.iter().all(|&len| refused(&good[..len], &format!("truncated to {len}"))), "{name}: a truncation was read");
        let mut corrupt = 0;
        for at in (0..good.len()).step_by(13) {
            for v in [0x00, 0xff, good[at] ^ 0x01] {
                let mut bad = good.clone();
                bad[at] = v;
                corrupt += refused(&bad, &format!("byte {at} = {v:#x}")) as usize;
            }
        }
        // Most bytes are keys and pixels, which LMDB does not checksum; the structure is checked.
        assert!(corrupt > 10, "{name}: only {corrupt} corruptions refused");
    }
    // The first meta page destroyed: not an LMDB file.
    let mut bad = std::fs::read(fixture("digits").join("data.mdb")).unwrap();
    bad[16..20].copy_from_slice(&[0; 4]);
    std::fs::write(&path, &bad).unwrap();
    let e = Lmdb::open(&path).err().unwrap().to_string();
    assert!(e.contains("no LMDB meta page"), "{e}");
    let e = Lmdb::open(dir.path().join("nothing").as_path()).err().unwrap().to_string();
    assert!(e.contains("nothing"), "{e}");
    let e = Lmdb::open(&fixture("")).err().unwrap().to_string();
    assert!(e.contains("without data.mdb"), "{e}");
}

fn build(text: &str, phase: Phase) -> crema::Result<Net<Cpu>> {
    let mut param: NetParameter = crema::prototxt::parse(text, "test.prototxt")?;
    param.state = Some(NetState { phase: Some(phase as i32), ..Default::default() });
    let model_dir = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Net::with_options(Cpu::new(), &param, &NetOptions { seed: 1, model_dir, share_diffs: false, share_data: false, fuse: true })
}

/// A Data layer on fixture `name` (a path relative to the crate root, found through the
/// model's folder as Caffe's relative sources are).
fn data_net(name: &str, tops: &str, params: &str, transform: &str) -> String {
    format!(
        "name: 't'\nlayer {{ name: 'data' type: 'Data' {tops} data_param {{ source: 'fixtures/lmdb/{name}' {params} }} {transform} }}\n"
    )
}

fn blob(net: &Net<Cpu>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let b = net.blob(name).unwrap();
    (b.shape().to_vec(), b.data_to_vec(net.backend()).unwrap())
}

#[test]
fn data_layer_reads_records_in_order_and_wraps() {
    let text = data_net("digits", "top: 'data' top: 'label'", "batch_size: 7 backend: LMDB", "transform_param { scale: 0.5 }");
    let mut net = build(&text, Phase::Test).unwrap();
    assert_eq!(net.blob("data").unwrap().shape(), [7, 1, 6, 5]);
    for pass in 0..43 {
        net.forward().unwrap();
        let (_, data) = blob(&net, "data");
        let (shape, label) = blob(&net, "label");
        assert_eq!(shape, [7]);
        for b in 0..7 {
            // Pass 42 reads records 294..299 and wraps to record 0.
            let i = (pass * 7 + b) % 300;
            assert_eq!(label[b], (i % 10) as f32, "pass {pass}");
            assert!((0..30).all(|j| data[b * 30 + j] == ((7 * i + 3 * j) % 256) as f32 * 0.5), "pass {pass}, record {i}");
        }
    }
}

#[test]
fn data_layer_crops_and_subtracts_means_as_caffe_transforms_datums() {
    // TEST: the centre 4x4 of each 40x30 image, less each channel's mean value.
    let transform = "transform_param { crop_size: 4 mean_value: 10 mean_value: 20 mean_value: 30 }";
    let mut net = build(&data_net("color", "top: 'data'", "batch_size: 4 backend: LMDB", transform), Phase::Test).unwrap();
    net.forward().unwrap();
    let (shape, data) = blob(&net, "data");
    assert_eq!(shape, [4, 3, 4, 4]);
    let (h_off, w_off) = ((40 - 4) / 2, (30 - 4) / 2);
    for i in 0..4 {
        for c in 0..3 {
            for y in 0..4 {
                for x in 0..4 {
                    let raw = (50 * i + 80 * c + 3 * (y + h_off) + x + w_off) % 256;
                    let got = data[((i * 3 + c) * 4 + y) * 4 + x];
                    assert_eq!(got, raw as f32 - [10.0, 20.0, 30.0][c], "record {i} c{c} y{y} x{x}");
                }
            }
        }
    }
    // TRAIN: random crops and mirrors stay inside the image: every value is one of its pixels.
    let transform = "transform_param { crop_size: 4 mirror: true }";
    let mut net = build(&data_net("color", "top: 'data'", "batch_size: 4 backend: LMDB", transform), Phase::Train).unwrap();
    net.forward().unwrap();
    let (_, data) = blob(&net, "data");
    let mut saw_offsets = std::collections::HashSet::new();
    for i in 0..4 {
        let v = data[i * 48] as usize;
        // Channel 0, top-left value: 50 i + 3 y + x for some y < 37, x < 27 (mod 256).
        let off = (v + 256 - 50 * i % 256) % 256;
        assert!(off < 3 * 36 + 30, "record {i}: {v}");
        saw_offsets.insert(off);
    }
    assert!(saw_offsets.len() > 1, "four random crops all at one offset");
}

#[test]
fn encoded_datums_are_decoded_with_their_own_channels_unless_forced() {
    let text = data_net("encoded", "top: 'data' top: 'label'", "batch_size: 1 backend: LMDB", "");
    let mut net = build(&text, Phase::Test).unwrap();
    for r in 0..2 {
        net.forward().unwrap();
        let (shape, data) = blob(&net, "data");
        assert_eq!(shape, [1, 1, 6, 5], "a gray PNG gives one channel");
        assert!((0..30).all(|p| data[p] == (10 * (p / 5) + p % 5 + 100 * r) as f32));
        assert_eq!(blob(&net, "label").1, [r as f32]);
    }
    net.forward().unwrap();
    let (shape, data) = blob(&net, "data");
    assert_eq!(shape, [1, 3, 6, 5], "an RGB PNG gives B, G, R");
    assert!((0..30).all(|p| data[p] == 200.0 && data[30 + p] == 100.0 && data[60 + p] == (10 * (p / 5) + p % 5) as f32));

    let mut net = build(&data_net("encoded", "top: 'data'", "batch_size: 1 backend: LMDB", "transform_param { force_color: true }"), Phase::Test).unwrap();
    net.forward().unwrap();
    let (shape, data) = blob(&net, "data");
    assert_eq!(shape, [1, 3, 6, 5]);
    assert!((0..30).all(|p| data[p] == data[30 + p] && data[p] == data[60 + p] && data[p] == (10 * (p / 5) + p % 5) as f32));
}

#[test]
fn data_layer_errors_name_what_is_wrong() {
    let err = |text: String| build(&text, Phase::Test).err().expect("an error").to_string();
    // LevelDB, the field's default, on a folder that holds an LMDB.
    let e = err(data_net("digits", "top: 'data'", "batch_size: 2", ""));
    assert!(e.contains("LEVELDB (the default)") && e.contains("set `backend: LMDB`"), "{e}");
    let e = err(data_net("missing", "top: 'data'", "batch_size: 2 backend: LMDB", ""));
    assert!(e.contains("fixtures/lmdb/missing") && e.contains("not found"), "{e}");
    let e = err(data_net("digits", "top: 'data'", "backend: LMDB", ""));
    assert!(e.contains("batch_size must be positive"), "{e}");
    let e = err(data_net("digits", "top: 'a' top: 'b' top: 'c'", "batch_size: 2 backend: LMDB", ""));
    assert!(e.contains("layer `data` (type Data)") && e.contains("top"), "{e}");
    // A crop larger than the records.
    let e = err(data_net("digits", "top: 'data'", "batch_size: 2 backend: LMDB", "transform_param { crop_size: 8 }"));
    assert!(e.contains("key `00000000_img0.png`") && e.contains("smaller than crop_size 8"), "{e}");

    // Labels the loss cannot take are refused at the record that holds one.
    let text = data_net("digits", "top: 'data' top: 'label'", "batch_size: 10 backend: LMDB", "")
        + "layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip' inner_product_param { num_output: 5 } }\n\
           layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' top: 'loss' }\n";
    let mut net = build(&text, Phase::Train).unwrap();
    let e = net.forward().err().expect("label 5 with 5 classes").to_string();
    assert!(e.contains("key `00000005_img5.png`") && e.contains("label 5 is out of range"), "{e}");
}
