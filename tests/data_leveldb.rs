//! LevelDB databases made by the real LevelDB library (fixtures/leveldb, see
//! tools/db_fixtures.py): records only in the log (as Caffe's 256 MB write buffer leaves a
//! small database), in tables over several levels with overwrites and deletions in the log,
//! and in Snappy-compressed blocks; corruption is an error, never a panic; the Data layer reads
//! them with `backend: LEVELDB`.

use crema::backend::cpu::Cpu;
use crema::io::leveldb::LevelDb;
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
