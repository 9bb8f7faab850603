//! LMDB databases made by the real LMDB library (fixtures/lmdb, see tools/db_fixtures.py):
//! the reader gives every record in key order, through branch pages, a three-level tree and
//! overflow pages; corrupt and truncated files give errors, never panics; the Data layer reads
//! raw and encoded Datums through transform_param, as Caffe's examples use it.

mod common;

use common::examples::{bar_image, caffe_example, crema_in, lenet_tree, losses_and_accuracies, small_solver, train_lenet};
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
    let e = net.forward().expect_err("label 5 with 5 classes").to_string();
    assert!(e.contains("key `00000005_img5.png`") && e.contains("label 5 is out of range"), "{e}");
}

/// Record `i` of the interop set: keys of 9 to 308 bytes (so branch pages hold few and the tree
/// grows deep), values of 0 to 4,999 bytes (across LMDB's overflow limit). tools/check_lmdb.py
/// makes the same records to check the LMDB library's reading of crema's file.
fn interop_record(i: usize) -> (Vec<u8>, Vec<u8>) {
    let key = format!("{i:08}_{}", "k".repeat(i % 300)).into_bytes();
    let len = (i * 977) % 5000;
    (key, (0..len).map(|j| ((i * 31 + j) % 256) as u8).collect())
}

/// crema writes what its reader (checked against the LMDB library's files above) reads back,
/// through every tree shape: empty, one leaf, overflow values, and a deep tree. The databases
/// stay in the test's target folder for tools/check_lmdb.py, which CI runs with the LMDB
/// library.
#[test]
fn written_databases_read_back_record_for_record() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lmdb-interop");
    let _ = std::fs::remove_dir_all(&out);
    let write = |name: &str, records: Vec<(Vec<u8>, Vec<u8>)>| {
        let w = crema::io::lmdb::write_lmdb(&out.join(name), records.clone().into_iter().map(Ok)).unwrap();
        let db = Lmdb::open(&out.join(name)).unwrap();
        assert_eq!((db.len(), w.entries), (records.len(), records.len() as u64));
        for (i, (k, v)) in records.iter().enumerate() {
            assert_eq!(db.get(i).unwrap(), (k.as_slice(), v.as_slice()), "{name}: record {i}");
        }
        let size = std::fs::metadata(out.join(name).join("data.mdb")).unwrap().len();
        assert_eq!(size, w.pages * crema::io::lmdb::PAGE_SIZE as u64);
        w
    };
    assert_eq!(write("empty", vec![]).depth, 0);
    let e = crema::io::db::Database::open(&out.join("empty"), crema::io::db::DbKind::Lmdb).err().expect("nothing to read").to_string();
    assert!(e.contains("the database holds no records"), "{e}");
    assert_eq!(write("one", vec![(b"a".to_vec(), b"b".to_vec())]).depth, 1);
    let many = write("many", (0..3000).map(interop_record).collect());
    assert!(many.depth >= 3, "depth {}", many.depth);
    // The fixture made by the LMDB library, written again by crema: the same records.
    let digits = Lmdb::open(&fixture("digits")).unwrap();
    write("digits", (0..digits.len()).map(|i| digits.get(i).map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect());
}

#[test]
fn writing_refuses_bad_keys_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let write = |records: Vec<crema::Result<(Vec<u8>, Vec<u8>)>>| crema::io::lmdb::write_lmdb(&db, records).err().map(|e| e.to_string());
    let e = write(vec![Ok((b"b".to_vec(), vec![])), Ok((b"a".to_vec(), vec![]))]).unwrap();
    assert!(e.contains("key `a` does not come after"), "{e}");
    let e = write(vec![Ok((b"a".to_vec(), vec![])), Ok((b"a".to_vec(), vec![]))]).unwrap();
    assert!(e.contains("key `a` does not come after"), "{e}");
    let e = write(vec![Ok((vec![b'k'; 512], vec![]))]).unwrap();
    assert!(e.contains("a key of 512 bytes"), "{e}");
    let e = write(vec![Ok((b"a".to_vec(), vec![1; 10_000])), Err(crema::Error::Config("image 2 is broken".into()))]).unwrap();
    assert_eq!(e, "image 2 is broken");
    assert!(!db.exists(), "a failed write leaves nothing");
    assert!(write(vec![Ok((b"a".to_vec(), b"x".to_vec()))]).is_none());
    let e = write(vec![Ok((b"b".to_vec(), b"y".to_vec()))]).unwrap();
    assert!(e.contains("already there"), "{e}");
    assert_eq!(Lmdb::open(&db).unwrap().get(0).unwrap(), (b"a".as_slice(), b"x".as_slice()));
}

/// Caffe's own LeNet example (examples/mnist/lenet_train_test.prototxt and lenet_solver.prototxt
/// from BVLC Caffe, in ../shared/conformance/prototxt) runs as Caffe runs it, from Caffe's root
/// folder, on databases `crema convert_imageset` makes: only the sizes change (batches of 16
/// and 20, 60 iterations, testing every 30, the CPU, a fixed seed).
#[test]
fn caffes_lenet_example_trains_on_databases_convert_imageset_makes() {
    let root = lenet_tree();
    let mnist = root.path().join("examples/mnist");
    let crema = |args: &[&str]| crema_in(root.path(), args);
    // Caffe's create_mnist.sh makes these two databases (with convert_mnist_data).
    let err = crema(&["convert_imageset", "-gray", "-shuffle", "data/bars/", "data/bars/train.txt", "examples/mnist/mnist_train_lmdb"]);
    assert!(err.contains("Processed 200 files"), "{err}");
    crema(&["convert_imageset", "-gray", "data/bars/", "data/bars/test.txt", "examples/mnist/mnist_test_lmdb"]);
    let db = Lmdb::open(&mnist.join("mnist_test_lmdb")).unwrap();
    let (key, d) = datum(&db, 3);
    assert_eq!(key, "00000003_test.txt_3.png");
    assert_eq!((d.channels(), d.height(), d.width(), d.label(), d.encoded()), (1, 28, 28, 3, false));
    assert_eq!(d.data(), bar_image(3, 3).into_raw());
    // The bytes Caffe's CVMatToDatum and protobuf write: channels, height, width, data (784
    // bytes), label, and `encoded` set to false.
    let bytes = db.get(3).unwrap().1;
    assert_eq!(bytes[..9], [0x08, 1, 0x10, 28, 0x18, 28, 0x22, 0x90, 0x06]);
    assert_eq!(bytes[9 + 784..], [0x28, 3, 0x38, 0]);

    let net = caffe_example("mnist_lenet_train_test.prototxt").replace("batch_size: 64", "batch_size: 16").replace("batch_size: 100", "batch_size: 20");
    train_lenet(root.path(), &net);
}

/// `crema bn-stats` runs one pass over the training data by default: for a Data layer, its
/// database's records over the batch size.
#[test]
fn an_epoch_of_a_data_layer_is_its_records_over_the_batch() {
    let text = data_net("digits", "top: 'data'", "batch_size: 7 backend: LMDB", "");
    let param: NetParameter = crema::prototxt::parse(&text, "t").unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(crema::inference::bn_stats::epoch_iterations(&param, Some(dir)), Some(300usize.div_ceil(7)));
}

/// Raw and encoded databases of the same images feed a Data layer the same values; resizing
/// is Caffe's bilinear one, and a size check refuses a differing image.
#[test]
fn convert_imageset_raw_and_encoded_give_the_same_batches() {
    use crema::data::imageset::{convert_imageset, ImagesetOptions};
    let dir = tempfile::tempdir().unwrap();
    let mut list = String::new();
    for i in 0..5 {
        let img = image::RgbImage::from_fn(9, 7, |x, y| image::Rgb([(x * 20 + i) as u8, (y * 30) as u8, (x * y + 5 * i) as u8]));
        img.save(dir.path().join(format!("c{i}.png"))).unwrap();
        list += &format!("c{i}.png {i}\n");
    }
    std::fs::write(dir.path().join("list.txt"), list).unwrap();
    let root = format!("{}/", dir.path().display());
    let convert = |name: &str, opts: ImagesetOptions| convert_imageset(&root, &dir.path().join("list.txt"), &dir.path().join(name), &opts, |_| {});
    convert("raw", ImagesetOptions::default()).unwrap();
    convert("enc", ImagesetOptions { encoded: true, ..Default::default() }).unwrap();
    let enc = Lmdb::open(&dir.path().join("enc")).unwrap();
    assert_eq!(datum(&enc, 2).1.data(), std::fs::read(dir.path().join("c2.png")).unwrap());
    let batch = |name: &str| {
        let text = format!("layer {{ name: 'd' type: 'Data' top: 'data' top: 'label' data_param {{ source: '{}' batch_size: 5 backend: LMDB }} }}", dir.path().join(name).display());
        let mut net = build(&text, Phase::Test).unwrap();
        net.forward().unwrap();
        (blob(&net, "data"), blob(&net, "label"))
    };
    let (raw, enc) = (batch("raw"), batch("enc"));
    assert_eq!(raw.0 .0, [5, 3, 7, 9]);
    assert_eq!(raw, enc);
    // B, G, R planes: the first pixel of image 1 is (R, G, B) = (1, 0, 5).
    assert_eq!([raw.0 .1[63 * 3], raw.0 .1[63 * 4], raw.0 .1[63 * 5]], [5.0, 0.0, 1.0]);

    convert("small", ImagesetOptions { resize: Some((4, 6)), gray: true, ..Default::default() }).unwrap();
    let (_, d) = datum(&Lmdb::open(&dir.path().join("small")).unwrap(), 0);
    assert_eq!((d.channels(), d.height(), d.width()), (1, 4, 6));
    let e = convert("bad", ImagesetOptions { resize: Some((4, 6)), encoded: true, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("cannot be resized"), "{e}");
    image::RgbImage::new(3, 3).save(dir.path().join("c4.png")).unwrap();
    let e = convert("checked", ImagesetOptions { check_size: true, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("c4.png (line 5) is 3x3, not 9x7"), "{e}");
    assert!(!dir.path().join("checked").exists(), "a failed conversion leaves no database");
}

/// `crema compute_image_mean` averages every record value by value (in f32, key order, as
/// Caffe), writes a mean file the Data layer's `mean_file` takes, and prints channel means.
#[test]
fn compute_image_mean_gives_caffes_mean_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mean.binaryproto");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["compute_image_mean", "-backend", "lmdb"])
        .arg(fixture("color"))
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    let mean = crema::io::read_binaryproto(&out).unwrap();
    assert_eq!(mean.shape, [1, 3, 40, 30]);
    assert!(mean.legacy_4d, "Caffe writes num, channels, height, width");
    let pixel = |i: usize, v: usize| ((50 * i + 80 * (v / 1200) + 3 * (v % 1200 / 30) + v % 30) % 256) as f32;
    for v in 0..3600 {
        let want = (0..4).fold(0f32, |s, i| s + pixel(i, v)) / 4.0;
        assert_eq!(mean.data[v], want, "value {v}");
    }
    let channel0 = mean.data[..1200].iter().fold(0f32, |a, &v| a + v) / 1200.0;
    assert!(err.contains("Number of channels: 3") && err.contains(&format!("mean_value channel [0]: {channel0}")), "{err}");

    // The Data layer subtracts it value by value.
    let text = data_net("color", "top: 'data'", "batch_size: 4 backend: LMDB", &format!("transform_param {{ mean_file: '{}' }}", out.display()));
    let mut net = build(&text, Phase::Test).unwrap();
    net.forward().unwrap();
    let (_, data) = blob(&net, "data");
    assert!((0..4 * 3600).all(|k| data[k] == pixel(k / 3600, k % 3600) - mean.data[k % 3600]));

    // Records of different sizes have no mean.
    let encoded = crema::io::db::Database::Lmdb(Lmdb::open(&fixture("encoded")).unwrap());
    let e = crema::data::imageset::compute_image_mean(&encoded).unwrap_err().to_string();
    assert!(e.contains("key `00000002`") && e.contains("a mean needs one size"), "{e}");
}

/// A 32x32 colour image of class `k`: an 8x8 block of colour `k` at a place of its own, on a
/// background varying with `i`.
fn block_image(k: usize, i: usize) -> image::RgbImage {
    let (bx, by) = ((k % 4) as u32 * 8, (k / 4) as u32 * 8);
    image::RgbImage::from_fn(32, 32, |x, y| {
        if (bx..bx + 8).contains(&x) && (by..by + 8).contains(&y) {
            image::Rgb([(40 * k) as u8, 255 - (20 * k) as u8, 200])
        } else {
            let v = ((x * 5 + y * 3 + i as u32 * 17) % 50) as u8;
            image::Rgb([v, v / 2, 60 - v])
        }
    })
}

/// Caffe's CIFAR-10 example (cifar10_quick_solver.prototxt and its net) from its own files:
/// colour databases from `convert_imageset` and the mean file from `compute_image_mean`, as
/// Caffe's create_cifar10.sh makes them; only the sizes change.
#[test]
fn caffes_cifar10_example_trains_with_the_mean_compute_image_mean_makes() {
    let root = tempfile::tempdir().unwrap();
    let (cifar, images) = (root.path().join("examples/cifar10"), root.path().join("data/blocks"));
    std::fs::create_dir_all(&cifar).unwrap();
    std::fs::create_dir_all(&images).unwrap();
    for (list, n) in [("train.txt", 200), ("test.txt", 40)] {
        let mut text = String::new();
        for i in 0..n {
            let name = format!("{list}_{i}.png");
            block_image(i % 10, i).save(images.join(&name)).unwrap();
            text += &format!("{name} {}\n", i % 10);
        }
        std::fs::write(images.join(list), text).unwrap();
    }
    let crema = |args: &[&str]| crema_in(root.path(), args);
    crema(&["convert_imageset", "-shuffle", "data/blocks/", "data/blocks/train.txt", "examples/cifar10/cifar10_train_lmdb"]);
    crema(&["convert_imageset", "data/blocks/", "data/blocks/test.txt", "examples/cifar10/cifar10_test_lmdb"]);
    let err = crema(&["compute_image_mean", "examples/cifar10/cifar10_train_lmdb", "examples/cifar10/mean.binaryproto"]);
    assert!(err.contains("Number of channels: 3"), "{err}");
    let net = caffe_example("cifar10_cifar10_quick_train_test.prototxt").replace("batch_size: 100", "batch_size: 20");
    std::fs::write(cifar.join("cifar10_quick_train_test.prototxt"), net).unwrap();
    std::fs::write(cifar.join("cifar10_quick_solver.prototxt"), small_solver(&caffe_example("cifar10_cifar10_quick_solver.prototxt"), "40", "40")).unwrap();
    let err = crema(&["train", "-solver", "examples/cifar10/cifar10_quick_solver.prototxt"]);
    let (losses, accuracy) = losses_and_accuracies(&err);
    assert!(losses.len() >= 4 && accuracy.len() >= 2, "{err}");
    assert!(*losses.last().unwrap() < losses[0] * 0.5, "CIFAR-10 quick did not learn the blocks: {losses:?}");
    assert!(*accuracy.last().unwrap() > 0.5, "test accuracy {accuracy:?}");
}

/// Datums of `float_data` (what pycaffe's `array_to_datum` writes for an array not of uint8:
/// features, regression targets, normalised images) feed the Data layer through crop, mirror,
/// mean and scale as Caffe's DataTransformer takes them, and have a mean; a count that does not
/// fit the shape is an error naming the record.
#[test]
fn float_data_datums_are_read_and_transformed() {
    let dir = tempfile::tempdir().unwrap();
    let value = |i: usize, c: usize, y: usize, x: usize| (i as f32) * 0.5 - (c * 100 + y * 10 + x) as f32 * 0.01;
    let records = (0..5).map(|i| {
        let data: Vec<f32> = (0..2 * 3 * 4).map(|k| value(i, k / 12, k % 12 / 4, k % 4)).collect();
        let d = Datum { channels: Some(2), height: Some(3), width: Some(4), float_data: data, label: Some(i as i32), ..Default::default() };
        Ok((format!("{i:08}").into_bytes(), d.encode_to_vec()))
    });
    let db = dir.path().join("floats");
    crema::io::lmdb::write_lmdb(&db, records).unwrap();
    // TEST phase: the centre 2x2 crop (rows 0..2, columns 1..3), mean values per channel, scale.
    let text = format!(
        "name: 't'\nlayer {{ name: 'data' type: 'Data' top: 'data' top: 'label' data_param {{ source: '{}' batch_size: 3 backend: LMDB }} \
         transform_param {{ crop_size: 2 mean_value: 1 mean_value: -1 scale: 2 }} }}\n",
        db.display()
    );
    let mut net = build(&text, Phase::Test).unwrap();
    net.forward().unwrap();
    let (shape, data) = blob(&net, "data");
    assert_eq!(shape, [3, 2, 2, 2]);
    for i in 0..3 {
        for c in 0..2 {
            for y in 0..2 {
                for x in 0..2 {
                    let want = (value(i, c, y, x + 1) - [1.0, -1.0][c]) * 2.0;
                    assert_eq!(data[((i * 2 + c) * 2 + y) * 2 + x], want, "record {i} at ({c}, {y}, {x})");
                }
            }
        }
    }
    assert_eq!(blob(&net, "label").1, [0.0, 1.0, 2.0]);
    let mean = crema::data::imageset::compute_image_mean(&crema::io::db::Database::Lmdb(Lmdb::open(&db).unwrap())).unwrap();
    assert_eq!(mean.shape, [1, 2, 3, 4]);
    assert_eq!(mean.data[5], (0..5).fold(0f32, |s, i| s + value(i, 0, 1, 1)) / 5.0);

    let bad = dir.path().join("bad");
    let d = Datum { channels: Some(2), height: Some(3), width: Some(4), float_data: vec![0.5; 23], ..Default::default() };
    crema::io::lmdb::write_lmdb(&bad, std::iter::once(Ok((b"00000000_x".to_vec(), d.encode_to_vec())))).unwrap();
    let text = format!("name: 't'\nlayer {{ name: 'data' type: 'Data' top: 'data' data_param {{ source: '{}' batch_size: 1 backend: LMDB }} }}\n", bad.display());
    let e = build(&text, Phase::Test).err().expect("refused").to_string();
    assert!(e.contains("00000000_x") && e.contains("a 2x3x4 Datum holds 23 values of float_data"), "{e}");
}

/// `crema extract_features`, with Caffe's arguments: the blobs of every item of N batches as
/// Datums of float_data, keys `%010d`, one LMDB (or LevelDB) per blob, the byte layout Caffe's
/// tool writes (channels, height, width, then unpacked float_data); the Data layer reads them
/// back. A blob the net lacks, or a database already there, is refused before anything is
/// written.
#[test]
fn extract_features_stores_blobs_as_caffes_tool_does() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("extract.prototxt");
    std::fs::write(
        &model,
        format!(
            "name: 'x'\nlayer {{ name: 'data' type: 'Data' top: 'data' top: 'label' data_param {{ source: '{}' batch_size: 7 backend: LMDB }} \
             transform_param {{ scale: 0.01 }} }}\n\
             layer {{ name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip' inner_product_param {{ num_output: 2 }} }}\n\
             layer {{ name: 'pool' type: 'Pooling' bottom: 'data' top: 'pool' pooling_param {{ pool: MAX kernel_h: 2 kernel_w: 5 stride: 2 }} }}\n",
            fixture("digits").display()
        ),
    )
    .unwrap();
    // ip: unit 0 sums the pixels, unit 1 takes pixel 3 minus 1.
    let mut w = vec![1.0; 30];
    w.extend((0..30).map(|j| if j == 3 { 1.0 } else { 0.0 }));
    let weights = crema::io::WeightsFile {
        name: "x".into(),
        layers: vec![crema::io::LayerWeights {
            name: "ip".into(),
            type_name: "InnerProduct".into(),
            format: crema::io::LayerFormat::Current,
            blobs: vec![crema::io::BlobData::new(vec![2, 30], w), crema::io::BlobData::new(vec![2], vec![0.0, -1.0])],
        }],
    };
    let caffemodel = dir.path().join("x.caffemodel");
    crema::io::write_weights(&caffemodel, &weights).unwrap();
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_crema")).arg("extract_features").args(args).current_dir(dir.path()).output().unwrap();
    let out = run(&["x.caffemodel", "extract.prototxt", "ip,pool", "ip_db,pool_db", "3", "lmdb", "CPU"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Extracted features of 21 query images for feature blob pool") && err.contains("Successfully extracted"), "{err}");
    let pixel = |i: usize, j: usize| ((7 * i + 3 * j) % 256) as f32 * 0.01;
    let ip = Lmdb::open(&dir.path().join("ip_db")).unwrap();
    assert_eq!(ip.len(), 21);
    for i in 0..21 {
        let (key, d) = datum(&ip, i);
        assert_eq!(key, format!("{i:010}"));
        assert_eq!((d.channels(), d.height(), d.width(), d.data(), d.label, d.encoded), (2, 1, 1, &[][..], None, None));
        let sum = (0..30).fold(0f32, |s, j| s + pixel(i, j));
        assert!((d.float_data[0] - sum).abs() < 1e-4 && d.float_data[1] == pixel(i, 3) - 1.0, "item {i}: {:?}", d.float_data);
    }
    // Caffe's bytes: channels, height, width, then each float as its own field 6 (not packed).
    let bytes = ip.get(0).unwrap().1;
    assert_eq!(bytes[..6], [0x08, 2, 0x10, 1, 0x18, 1]);
    assert_eq!((bytes[6], bytes[11], bytes.len()), (0x35, 0x35, 16));
    let pool = Lmdb::open(&dir.path().join("pool_db")).unwrap();
    let (_, d) = datum(&pool, 4);
    assert_eq!((d.channels(), d.height(), d.width()), (1, 3, 1));
    let want: Vec<f32> = (0..3).map(|r| (0..2).flat_map(|dy| (0..5).map(move |x| (2 * r + dy) * 5 + x)).map(|j| pixel(4, j)).fold(f32::MIN, f32::max)).collect();
    assert_eq!(d.float_data, want);
    // The Data layer reads the features back.
    let text = format!("name: 'r'\nlayer {{ name: 'd' type: 'Data' top: 'f' data_param {{ source: '{}' batch_size: 21 backend: LMDB }} }}\n", dir.path().join("pool_db").display());
    let mut back = build(&text, Phase::Test).unwrap();
    back.forward().unwrap();
    assert_eq!(blob(&back, "f").0, [21, 1, 3, 1]);
    assert_eq!(blob(&back, "f").1[12..15], want);

    let e = String::from_utf8_lossy(&run(&["x.caffemodel", "extract.prototxt", "fc7", "fc7_db", "1", "lmdb"]).stderr).into_owned();
    assert!(e.contains("no blob `fc7`") && e.contains("ip, pool"), "{e}");
    assert!(!dir.path().join("fc7_db").exists());
    let e = String::from_utf8_lossy(&run(&["x.caffemodel", "extract.prototxt", "ip", "ip_db", "1", "lmdb"]).stderr).into_owned();
    assert!(e.contains("ip_db: a database is already there"), "{e}");
    // LevelDB (Caffe's other db_type): the same records, byte for byte.
    let out = run(&["x.caffemodel", "extract.prototxt", "ip", "ip_leveldb", "3", "leveldb", "CPU"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("ip_leveldb: 21 records of blob ip (LevelDB: 1 table file"), "{err}");
    let ldb = crema::io::leveldb::LevelDb::open(&dir.path().join("ip_leveldb")).unwrap();
    assert_eq!(ldb.len(), 21);
    for i in 0..21 {
        assert_eq!((ldb.key(i).unwrap(), &*ldb.value(i).unwrap()), ip.get(i).unwrap(), "record {i}");
    }
    let e = String::from_utf8_lossy(&run(&["x.caffemodel", "extract.prototxt", "ip", "ip_leveldb", "1", "leveldb"]).stderr).into_owned();
    assert!(e.contains("ip_leveldb: a database is already there"), "{e}");
    let e = String::from_utf8_lossy(&run(&["x.caffemodel", "extract.prototxt", "ip", "new_db", "1", "rocksdb"]).stderr).into_owned();
    assert!(e.contains("database kind `rocksdb`: lmdb or leveldb"), "{e}");
    assert!(!dir.path().join("new_db").exists());
    // A net that fails in its third batch (a colour record after two gray ones) leaves no
    // database behind.
    let text = std::fs::read_to_string(&model).unwrap().replace(&fixture("digits").display().to_string(), &fixture("encoded").display().to_string());
    std::fs::write(&model, text.replace("batch_size: 7", "batch_size: 1")).unwrap();
    let e = String::from_utf8_lossy(&run(&["x.caffemodel", "extract.prototxt", "data,ip", "d_db,i_db", "3", "lmdb"]).stderr).into_owned();
    assert!(e.contains("ip"), "{e}");
    assert!(!dir.path().join("d_db").exists() && !dir.path().join("i_db").exists(), "{e}");
}
