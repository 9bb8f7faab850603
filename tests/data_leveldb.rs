//! LevelDB databases made by the real LevelDB library (fixtures/leveldb, see
//! tools/db_fixtures.py): records only in the log (as Caffe's 256 MB write buffer leaves a
//! small database), in tables over several levels with overwrites and deletions in the log,
//! and in Snappy-compressed blocks; corruption is an error, never a panic; the Data layer reads
//! them with `backend: LEVELDB`. And the databases crema writes: read back record for record
//! (and, in CI, by the LevelDB library: tools/check_leveldb.py), made by `convert_imageset
//! -backend leveldb` and read by Caffe's examples.

mod common;

use common::examples::{bar_image, caffe_example, crema_in, lenet_tree, small_solver, train_lenet};
use crema::backend::cpu::Cpu;
use crema::io::leveldb::{write_leveldb, LevelDb};
use crema::net::{Net, NetOptions};
use crema::proto::{Datum, NetParameter, NetState, Phase};
use prost::Message;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/leveldb").join(name)
}

fn record(db: &LevelDb, i: usize) -> (String, Datum) {
    (String::from_utf8(db.key(i).unwrap().to_vec()).unwrap(), Datum::decode(&*db.value(i).unwrap()).unwrap())
}

/// Record `i` of the digits set: key, pixels and label.
fn digit(i: usize) -> (String, Vec<u8>, i32) {
    (format!("{i:08}_img{i}.png"), (0..30).map(|j| ((7 * i + 3 * j) % 256) as u8).collect(), (i % 10) as i32)
}

#[test]
fn records_in_the_log_come_in_key_order() {
    let db = LevelDb::open(&fixture("log")).unwrap();
    assert_eq!(db.len(), 300);
    for i in 0..300 {
        let (key, d) = record(&db, i);
        let (k, pixels, label) = digit(i);
        assert_eq!((key, d.data().to_vec(), d.label(), d.channels(), d.height(), d.width()), (k, pixels, label, 1, 6, 5));
    }
}

/// The newest write of a key wins, wherever it lies; deleted keys are gone.
#[test]
fn tables_and_log_merge_with_overwrites_and_deletions() {
    let db = LevelDb::open(&fixture("tables")).unwrap();
    let kept: Vec<usize> = (0..=300).filter(|i| i % 50 != 7).collect();
    assert_eq!(db.len(), kept.len());
    for (r, &i) in kept.iter().enumerate() {
        let (key, d) = record(&db, r);
        let (k, pixels, label) = digit(i);
        assert_eq!((key, d.data().to_vec()), (k, pixels), "record {r}");
        assert_eq!(d.label(), if i == 3 { 99 } else { label }, "record {r}");
    }
    let db = LevelDb::open(&fixture("snappy")).unwrap();
    assert_eq!(db.len(), 200);
    for i in 0..200 {
        let (key, d) = record(&db, i);
        assert_eq!(key, format!("{i:08}"));
        assert_eq!((d.data().to_vec(), d.label()), (vec![(i % 256) as u8; 100], (i % 7) as i32));
    }
}

/// Every truncation and a stride of single-byte corruptions of each file is read or refused
/// with an error naming the database; nothing panics.
#[test]
fn corrupt_and_truncated_databases_are_errors() {
    for name in ["log", "tables", "snappy"] {
        let files: Vec<PathBuf> = std::fs::read_dir(fixture(name)).unwrap().map(|e| e.unwrap().path()).collect();
        for file in &files {
            let good = std::fs::read(file).unwrap();
            let dir = tempfile::tempdir().unwrap();
            for f in &files {
                std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
            }
            let target = dir.path().join(file.file_name().unwrap());
            let mut refused = 0;
            let mut check = |bytes: &[u8]| {
                std::fs::write(&target, bytes).unwrap();
                match LevelDb::open(dir.path()) {
                    Ok(db) => {
                        for i in 0..db.len() {
                            let _ = db.value(i).map(|v| Datum::decode(&*v).is_ok());
                        }
                    }
                    Err(e) => {
                        refused += 1;
                        let text = e.to_string();
                        assert!(text.contains(&dir.path().display().to_string()), "{}: {text}", file.display());
                    }
                }
            };
            let step = (good.len() / 40).max(1);
            for len in (0..good.len()).step_by(step) {
                check(&good[..len]);
            }
            for at in (0..good.len()).step_by(step.min(7)) {
                let mut bad = good.clone();
                bad[at] ^= 0x21;
                check(&bad);
            }
            // Checksums catch a flipped byte anywhere in a log or a table.
            if !good.is_empty() && !file.ends_with("CURRENT") {
                assert!(refused > good.len() / step.min(7) / 2, "{}: only {refused} refused", file.display());
            }
        }
    }
    let e = LevelDb::open(&fixture("missing")).err().unwrap().to_string();
    assert!(e.contains("not a LevelDB database") && e.contains("missing"), "{e}");
}

fn build(text: &str) -> crema::Result<Net<Cpu>> {
    let mut param: NetParameter = crema::prototxt::parse(text, "test.prototxt")?;
    param.state = Some(NetState { phase: Some(Phase::Test as i32), ..Default::default() });
    let model_dir = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Net::with_options(Cpu::new(), &param, &NetOptions { seed: 1, model_dir, share_diffs: false, share_data: false, fuse: true })
}

/// LEVELDB is the field's default, as in Caffe's early examples; the same records give the
/// same batches from either database.
#[test]
fn data_layer_reads_leveldb_by_default() {
    let net = |source: &str, backend: &str| {
        format!("layer {{ name: 'd' type: 'Data' top: 'data' top: 'label' data_param {{ source: '{source}' batch_size: 10 {backend} }} transform_param {{ scale: 0.5 }} }}")
    };
    let mut a = build(&net("fixtures/leveldb/log", "")).unwrap();
    let mut b = build(&net("fixtures/lmdb/digits", "backend: LMDB")).unwrap();
    for _ in 0..31 {
        a.forward().unwrap();
        b.forward().unwrap();
        for blob in ["data", "label"] {
            let (x, y) = (a.blob(blob).unwrap(), b.blob(blob).unwrap());
            assert_eq!(x.data_to_vec(a.backend()).unwrap(), y.data_to_vec(b.backend()).unwrap());
        }
    }
    // An LMDB named with the default backend is refused with a hint.
    let e = build(&net("fixtures/lmdb/digits", "")).err().unwrap().to_string();
    assert!(e.contains("LEVELDB (the default)") && e.contains("set `backend: LMDB`"), "{e}");
    let e = build(&net("fixtures/leveldb/log", "backend: LMDB")).err().unwrap().to_string();
    assert!(e.contains("is a LevelDB database: set `backend: LEVELDB`"), "{e}");
}

/// Bytes `(31 i + j) mod 256` for `j < len`: the values of the interop sets, which
/// tools/check_leveldb.py makes the same way.
fn ramp(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((31 * i + j) % 256) as u8).collect()
}

/// The sizes of the values of the `big` set: empty, around a block, around a table, and
/// several MiB.
const BIG: [usize; 16] = [0, 1, 100, 4095, 4096, 4097, 65536, 1 << 20, (2 << 20) - 1, 2 << 20, (3 << 20) + 5, 0, 6 << 20, 17, (5 << 20) + 3, 1];

type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// The records of each interop set (tools/check_leveldb.py lists the same).
fn interop_sets() -> Vec<(&'static str, Records)> {
    let digits = LevelDb::open(&fixture("log")).unwrap();
    vec![
        ("empty", vec![]),
        ("one", vec![(b"a".to_vec(), b"b".to_vec())]),
        // Keys sharing long prefixes, as convert_imageset's `%08d_path`; values of 0 to 2,999
        // bytes, so blocks hold one to dozens of records.
        ("many", (0..5000).map(|i| (format!("{i:08}_n{:02}/img_{i}.jpg", i % 13).into_bytes(), ramp(i, (i * 977) % 3000))).collect()),
        // Keys far apart (blocks end between keys the index shortens), then binary keys of
        // 0xff bytes (which it cannot).
        ("sparse", (0..3000).map(|i| (format!("{:09}_{}", i * 7919, "x".repeat(i % 50)).into_bytes(), ramp(i, (i * 131) % 700))).chain((0..300u16).map(|i| ([&[0xff, 0xff][..], &i.to_be_bytes()].concat(), ramp(i.into(), 300)))).collect()),
        ("big", BIG.iter().enumerate().map(|(i, &len)| (format!("{i:08}_big").into_bytes(), ramp(i, len))).collect()),
        // The fixture made by the LevelDB library, written again by crema.
        ("digits", (0..digits.len()).map(|i| (digits.key(i).unwrap().to_vec(), digits.value(i).unwrap().into_owned())).collect()),
    ]
}

/// The names in a folder, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    n.sort();
    n
}

/// crema writes what its reader (checked against the LevelDB library's files above) reads back:
/// no record, one, thousands in many blocks and tables, values of 0 bytes to 6 MiB. The
/// databases stay in the test's target folder for tools/check_leveldb.py, which CI runs with
/// the LevelDB library.
#[test]
fn written_databases_read_back_record_for_record() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("leveldb-interop");
    let _ = std::fs::remove_dir_all(&out);
    for (name, records) in interop_sets() {
        let dir = out.join(name);
        let w = write_leveldb(&dir, records.iter().cloned().map(Ok)).unwrap();
        let db = LevelDb::open(&dir).unwrap();
        assert_eq!((db.len(), w.entries), (records.len(), records.len() as u64), "{name}");
        for (i, (k, v)) in records.iter().enumerate() {
            assert!(db.key(i) == Some(k.as_slice()) && *db.value(i).unwrap() == **v, "{name}: record {i}");
        }
        // CURRENT names the MANIFEST; the tables are numbered from 2; their sizes add up.
        let tables: Vec<String> = (0..w.tables).map(|t| format!("{:06}.ldb", t + 2)).collect();
        let mut want = [vec!["CURRENT".to_string(), "MANIFEST-000001".to_string()], tables.clone()].concat();
        want.sort();
        assert_eq!(names(&dir), want, "{name}");
        assert_eq!(std::fs::read_to_string(dir.join("CURRENT")).unwrap(), "MANIFEST-000001\n");
        let bytes: u64 = tables.iter().map(|t| std::fs::metadata(dir.join(t)).unwrap().len()).sum();
        assert_eq!(bytes, w.bytes, "{name}");
        println!("{name}: {w:?}");
        match name {
            "empty" => {
                assert_eq!((w.tables, w.level), (0, 0));
                let e = crema::io::db::Database::open(&dir, crema::io::db::DbKind::LevelDb).err().expect("nothing to read").to_string();
                assert!(e.contains("the database holds no records"), "{e}");
            }
            "one" => assert_eq!((w.tables, w.blocks, w.level), (1, 1, 1)),
            "many" => {
                // About 7.3 MB: tables of about 2 MiB, blocks of about 4 KiB, on level 1.
                assert!(w.tables == 4 && w.level == 1, "{w:?}");
                assert!((1200..2000).contains(&w.blocks), "{w:?}");
            }
            "big" => {
                // Over 10 MiB: level 2. A value of 6 MiB makes a table of its own.
                assert!(w.level == 2 && w.tables >= 6, "{w:?}");
                assert!(tables.iter().any(|t| std::fs::metadata(dir.join(t)).unwrap().len() > 6 << 20), "{w:?}");
            }
            _ => {}
        }
    }
    // Nothing else (no temporary folder) is left beside them.
    assert_eq!(names(&out), ["big", "digits", "empty", "many", "one", "sparse"]);
}

#[test]
fn writing_refuses_bad_keys_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let write = |records: Vec<crema::Result<(Vec<u8>, Vec<u8>)>>| write_leveldb(&db, records).err().map(|e| e.to_string());
    let e = write(vec![Ok((b"b".to_vec(), vec![])), Ok((b"a".to_vec(), vec![]))]).unwrap();
    assert!(e.contains("db: key `a` does not come after the one before it (`b`)"), "{e}");
    let e = write(vec![Ok((b"a".to_vec(), vec![])), Ok((b"a".to_vec(), vec![]))]).unwrap();
    assert!(e.contains("key `a` does not come after"), "{e}");
    // Out of order after whole tables were written.
    let e = write((0..3000).map(|i| Ok((format!("{:08}", i % 2999).into_bytes(), vec![7; 1000]))).collect()).unwrap();
    assert!(e.contains("key `00000000` does not come after the one before it (`00002998`)"), "{e}");
    let e = write(vec![Ok((b"a".to_vec(), vec![1; 3 << 20])), Err(crema::Error::Config("image 2 is broken".into()))]).unwrap();
    assert_eq!(e, "image 2 is broken");
    // A failed write leaves nothing, not even its temporary folder.
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));

    assert!(write(vec![Ok((b"a".to_vec(), b"x".to_vec()))]).is_none());
    let e = write(vec![Ok((b"b".to_vec(), b"y".to_vec()))]).unwrap();
    assert!(e.contains(&db.display().to_string()) && e.contains("the folder is not empty") && e.contains("choose another name"), "{e}");
    let back = LevelDb::open(&db).unwrap();
    assert_eq!((back.len(), back.key(0), &*back.value(0).unwrap()), (1, Some(b"a".as_slice()), b"x".as_slice()));
    assert_eq!(names(dir.path()), ["db"]);

    // Any file is refused; an empty folder is taken; missing parents are made.
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let e = write_leveldb(&dir.path().join("file"), vec![Ok((b"a".to_vec(), vec![]))]).unwrap_err().to_string();
    assert!(e.contains("file: a file is there"), "{e}");
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    write_leveldb(&dir.path().join("empty"), vec![Ok((b"a".to_vec(), vec![]))]).unwrap();
    assert_eq!(LevelDb::open(&dir.path().join("empty")).unwrap().len(), 1);
    write_leveldb(&dir.path().join("a/b/c"), vec![Ok((b"a".to_vec(), vec![]))]).unwrap();
    assert_eq!(LevelDb::open(&dir.path().join("a/b/c")).unwrap().len(), 1);
    assert_eq!(names(dir.path()), ["a", "db", "empty", "file"]);
}

/// Caffe's LeNet example (lenet_train_test.prototxt and lenet_solver.prototxt from BVLC Caffe)
/// on LevelDB databases `crema convert_imageset -backend leveldb` makes, its Data layers set to
/// `backend: LEVELDB` (as Caffe's first MNIST example read LevelDB): the records are those of
/// the LMDB made from the same list, byte for byte, and LeNet learns from them.
#[test]
fn caffes_lenet_example_trains_on_leveldb_databases_convert_imageset_makes() {
    let root = lenet_tree();
    let mnist = root.path().join("examples/mnist");
    let crema = |args: &[&str]| crema_in(root.path(), args);
    let err = crema(&["convert_imageset", "-gray", "-shuffle", "-backend", "leveldb", "data/bars/", "data/bars/train.txt", "examples/mnist/mnist_train_leveldb"]);
    assert!(err.contains("Processed 200 files: examples/mnist/mnist_train_leveldb (LevelDB: 1 table file on level 1, "), "{err}");
    crema(&["convert_imageset", "-gray", "--backend=LEVELDB", "data/bars/", "data/bars/test.txt", "examples/mnist/mnist_test_leveldb"]);
    let err = crema(&["convert_imageset", "-gray", "data/bars/", "data/bars/test.txt", "examples/mnist/mnist_test_lmdb"]);
    assert!(err.contains("(LMDB: "), "{err}");
    let ldb = LevelDb::open(&mnist.join("mnist_test_leveldb")).unwrap();
    let lmdb = crema::io::lmdb::Lmdb::open(&mnist.join("mnist_test_lmdb")).unwrap();
    assert_eq!((ldb.len(), lmdb.len()), (40, 40));
    for i in 0..40 {
        assert_eq!((ldb.key(i).unwrap(), &*ldb.value(i).unwrap()), lmdb.get(i).unwrap(), "record {i}");
    }
    let (key, d) = record(&ldb, 3);
    assert_eq!(key, "00000003_test.txt_3.png");
    assert_eq!((d.channels(), d.height(), d.width(), d.label(), d.data()), (1, 28, 28, 3, bar_image(3, 3).into_raw().as_slice()));
    // Neither kind overwrites a database.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["convert_imageset", "-backend", "leveldb", "data/bars/", "data/bars/test.txt", "examples/mnist/mnist_test_leveldb"])
        .current_dir(root.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("mnist_test_leveldb: the folder is not empty"), "{err}");

    let net = caffe_example("mnist_lenet_train_test.prototxt")
        .replace("batch_size: 64", "batch_size: 16")
        .replace("batch_size: 100", "batch_size: 20")
        .replace("_lmdb\"", "_leveldb\"")
        .replace("backend: LMDB", "backend: LEVELDB");
    assert_eq!(net.matches("backend: LEVELDB").count(), 2);
    train_lenet(root.path(), &net);

    // compute_image_mean reads it too.
    let err = crema(&["compute_image_mean", "-backend", "leveldb", "examples/mnist/mnist_train_leveldb", "examples/mnist/mean.binaryproto"]);
    assert!(err.contains("Number of channels: 1") && err.contains("the mean of 200 records"), "{err}");
}

/// Caffe's siamese example (examples/siamese/mnist_siamese_train_test.prototxt in the V1 format
/// and mnist_siamese_solver.prototxt from BVLC Caffe's history, in ../shared/conformance/prototxt):
/// two LeNet towers sharing their weights by name, a Slice of 2-channel pair Datums, and
/// ContrastiveLoss, trained from Caffe's root folder after the V1 upgrade. The pair databases
/// are made as Caffe's convert_mnist_siamese_data makes them (two images as the channels of one
/// Datum, label 1 for a pair of the same class), as LevelDB databases, which the example's Data
/// layers read by default (they name no backend); only the sizes change (batches of 16 and 20,
/// 120 iterations).
#[test]
fn caffes_siamese_example_trains_with_contrastive_loss() {
    let root = tempfile::tempdir().unwrap();
    let siamese = root.path().join("examples/siamese");
    std::fs::create_dir_all(&siamese).unwrap();
    for (name, pairs, offset) in [("mnist_siamese_train_leveldb", 400, 0), ("mnist_siamese_test_leveldb", 60, 1000)] {
        let records = (0..pairs).map(|p: usize| {
            let (i, j) = (p + offset, (p * 7 + 3 + offset) % 997);
            // Every other pair is of one class, so similar and dissimilar pairs are balanced.
            let (ki, kj) = (i % 10, if p.is_multiple_of(2) { i % 10 } else { (i + 1 + p % 9) % 10 });
            let mut data = bar_image(ki, i).into_raw();
            data.extend(bar_image(kj, j).into_raw());
            let d = Datum { channels: Some(2), height: Some(28), width: Some(28), data: Some(data), label: Some((ki == kj) as i32), ..Default::default() };
            Ok((format!("{p:08}").into_bytes(), d.encode_to_vec()))
        });
        crema::io::leveldb::write_leveldb(&siamese.join(name), records).unwrap();
    }
    let net = caffe_example("v1_siamese_mnist_siamese_train_test.prototxt")
        .replace("batch_size: 64", "batch_size: 16")
        .replace("batch_size: 100", "batch_size: 20");
    assert!(!net.contains("backend") && net.matches("_leveldb\"").count() == 2, "{net}");
    std::fs::write(siamese.join("mnist_siamese_train_test.prototxt"), net).unwrap();
    std::fs::write(siamese.join("mnist_siamese_solver.prototxt"), small_solver(&caffe_example("siamese_mnist_siamese_solver.prototxt"), "120", "60")).unwrap();
    let err = crema_in(root.path(), &["train", "-solver", "examples/siamese/mnist_siamese_solver.prototxt"]);
    let value = |line: &str| line.rsplit('=').next().unwrap().split_whitespace().next().unwrap().parse::<f32>().unwrap();
    let losses: Vec<f32> = err.lines().filter(|l| l.contains("Iteration") && l.contains("loss =")).map(value).collect();
    let tests: Vec<f32> = err.lines().filter(|l| l.contains("Test net output") && l.contains("loss =")).map(value).collect();
    assert!(losses.len() >= 10 && tests.len() >= 2, "{err}");
    println!("siamese: train losses {losses:?}, test losses {tests:?}");
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < first / 2.0, "the siamese net did not learn: {losses:?}\n{err}");
    assert!(tests.last().unwrap() < &tests[0], "test loss {tests:?}");
}
