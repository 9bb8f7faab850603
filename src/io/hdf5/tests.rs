//! The reader against files the HDF5 library wrote (fixtures/hdf5, made by
//! tools/hdf5_fixtures.py, whose header gives each value's formula).

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hdf5").join(name)
}

fn read(file: &str, name: &str) -> (Vec<usize>, Dtype, Vec<f32>) {
    let f = Hdf5::open(&fixture(file)).unwrap();
    let ds = f.dataset(name).unwrap_or_else(|e| panic!("{file}/{name}: {e}"));
    let v = f.read_f32(&ds).unwrap_or_else(|e| panic!("{file}/{name}: {e}"));
    (ds.shape, ds.dtype, v)
}

/// `f` at every index of `shape`, in C order.
fn expected(shape: &[usize], f: impl Fn(&[usize]) -> f64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|mut i| {
            let mut idx = vec![0; shape.len()];
            for d in (0..shape.len()).rev() {
                idx[d] = i % shape[d];
                i /= shape[d];
            }
            f(&idx) as f32
        })
        .collect()
}

const F32: Dtype = Dtype::Float { size: 4, big_endian: false };

#[test]
fn contiguous_float32_as_caffes_example_writes() {
    let (shape, dtype, v) = read("classify.h5", "data");
    assert_eq!((shape.as_slice(), dtype), (&[10, 4][..], F32));
    assert_eq!(v, expected(&shape, |i| (10 * i[0] + i[1]) as f64));
    let (shape, _, v) = read("classify.h5", "label");
    assert_eq!(shape, [10]);
    assert_eq!(v, expected(&shape, |i| (i[0] % 2) as f64));
    assert_eq!(Hdf5::open(&fixture("classify.h5")).unwrap().names().unwrap(), ["data", "label"]);
}

#[test]
fn gzip_and_shuffle_chunks_through_a_deep_btree() {
    let (shape, dtype, v) = read("chunked.h5", "data");
    assert_eq!(shape, [50, 3, 2, 2]);
    assert_eq!(dtype, Dtype::Float { size: 8, big_endian: false });
    let want = expected(&shape, |i| i[0] as f64 + i[1] as f64 / 10.0 + i[2] as f64 / 100.0 + i[3] as f64 / 1000.0);
    assert_eq!(v, want, "float64 rounds to the nearest f32");
    let (shape, dtype, v) = read("chunked.h5", "label");
    assert_eq!((shape.as_slice(), dtype), (&[50][..], Dtype::Int { size: 8, signed: true, big_endian: false }));
    assert_eq!(v, expected(&shape, |i| 3.0 * i[0] as f64 - 7.0));
}

#[test]
fn lzf_fletcher32_big_endian_and_fill_values() {
    let (shape, dtype, v) = read("filters.h5", "data");
    assert_eq!((shape.as_slice(), dtype), (&[9, 5][..], Dtype::Float { size: 4, big_endian: true }));
    assert_eq!(v, expected(&shape, |i| i[0] as f64 - i[1] as f64 / 4.0));
    let (shape, dtype, v) = read("filters.h5", "label");
    assert_eq!((shape.as_slice(), dtype), (&[9, 1][..], Dtype::Int { size: 1, signed: false, big_endian: false }));
    assert_eq!(v, expected(&shape, |i| 250.0 + (i[0] % 6) as f64));
    let (shape, _, v) = read("filters.h5", "pixels");
    assert_eq!(v, expected(&shape, |i| if i[0] < 5 { -1000.0 * i[0] as f64 + i[1] as f64 } else { -5.0 }));
}

#[test]
fn the_newer_format_compact_fixed_array_single_chunk_and_links() {
    let (shape, _, v) = read("latest.h5", "data");
    assert_eq!(v, expected(&shape, |i| (i[0] * i[1]) as f64));
    let (shape, _, v) = read("latest.h5", "label");
    assert_eq!(v, expected(&shape, |i| 2.0 * i[0] as f64));
    let (shape, _, v) = read("latest.h5", "chunked");
    assert_eq!(shape, [40, 2]);
    assert_eq!(v, expected(&shape, |i| i[0] as f64 + i[1] as f64 / 2.0));
    let (shape, _, v) = read("latest.h5", "single");
    assert_eq!(v, expected(&shape, |i| -(i[0] as f64)));
    let (shape, _, v) = read("latest.h5", "gzipped");
    assert_eq!(v, expected(&shape, |i| i[0] as f64 - i[1] as f64));
    let (shape, dtype, v) = read("latest.h5", "early");
    assert_eq!((shape.as_slice(), dtype), (&[12, 3][..], Dtype::Int { size: 4, signed: true, big_endian: false }));
    assert_eq!(v, expected(&shape, |i| (3 * i[0] + i[1]) as f64));
    assert_eq!(read("latest.h5", "group/inner").2, [1.0, 2.0]);
    assert_eq!(read("latest.h5", "/group/inner").2, [1.0, 2.0]);
}

/// A fixed array numbers chunks over the grid of the maximum shape (4 x 8 here: 4 chunks to a
/// row of chunks, of which the dataset's 4 x 4 uses 2).
#[test]
fn chunk_indexes_follow_the_maximum_shape() {
    let (shape, _, v) = read("maxshape.h5", "data");
    assert_eq!(shape, [4, 4]);
    assert_eq!(v, expected(&shape, |i| (10 * i[0] + i[1]) as f64));
}

#[test]
fn a_user_block_and_a_group_of_many_members() {
    let (shape, _, v) = read("userblock.h5", "data");
    assert_eq!(v, expected(&shape, |i| (i[0] + i[1]) as f64));
    let f = Hdf5::open(&fixture("many.h5")).unwrap();
    assert_eq!(f.names().unwrap().len(), 42);
    for k in [0, 17, 39] {
        assert_eq!(read("many.h5", &format!("d{k:02}")).2, [k as f32, -(k as f32)]);
    }
    assert_eq!(read("many.h5", "label").2, [5.0, 6.0]);
}

#[test]
fn missing_datasets_groups_and_other_files_are_named() {
    let f = Hdf5::open(&fixture("classify.h5")).unwrap();
    let e = f.dataset("labels").unwrap_err().to_string();
    assert!(e.contains("classify.h5") && e.contains("no dataset `labels`") && e.contains("`data`, `label`"), "{e}");
    let e = Hdf5::open(&fixture("latest.h5")).unwrap().dataset("group").unwrap_err().to_string();
    assert!(e.contains("is a group, not a dataset"), "{e}");
    let e = Hdf5::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).err().unwrap().to_string();
    assert!(e.contains("Cargo.toml") && e.contains("not an HDF5 file"), "{e}");
}

#[test]
fn half_floats_convert() {
    assert_eq!(half(0x3c00), 1.0);
    assert_eq!(half(0xc000), -2.0);
    assert_eq!(half(0x0001), 2f32.powi(-24));
    assert_eq!(half(0x7c00), f32::INFINITY);
    assert!(half(0x7e00).is_nan());
    assert_eq!(half(0x3555), 0.333_251_95);
}

/// Every dataset of every fixture, read from `bytes`: each read succeeds or fails with an
/// error naming the file; none panics.
fn read_all(bytes: Vec<u8>) -> usize {
    let path = Path::new("mutant.h5");
    let Ok(f) = Hdf5::from_bytes(bytes, path) else { return 0 };
    let mut ok = 0;
    for name in ["data", "label", "pixels", "chunked", "single", "gzipped", "early", "group/inner", "d07"] {
        match f.dataset(name).and_then(|ds| f.read_f32(&ds)) {
            Ok(_) => ok += 1,
            Err(e) => assert!(e.to_string().contains("mutant.h5"), "{e}"),
        }
    }
    let _ = f.names();
    ok
}

#[test]
fn truncated_and_corrupted_files_are_refused_not_panicked_on() {
    for file in ["classify.h5", "chunked.h5", "filters.h5", "latest.h5", "many.h5", "maxshape.h5"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        assert!(read_all(bytes.clone()) >= 1, "{file} reads whole");
        for cut in (0..bytes.len()).step_by(97) {
            read_all(bytes[..cut].to_vec());
        }
        for at in (0..bytes.len()).step_by(13) {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[at] ^= flip;
                read_all(b);
            }
        }
    }
}

/// A tree of every kind of member crema writes: nested and empty groups, float32 and int32
/// datasets of several ranks, an empty dataset, a string, and a group wide enough to need
/// several symbol-table nodes.
pub(crate) fn sample_tree() -> Group<'static> {
    let mut root = Group::new();
    root.ints("iter", &[1], vec![1234]);
    root.text("learned_net", "snapshots/net_iter_1234.caffemodel.h5");
    let data = root.group("data");
    for k in 0..300 {
        let layer = data.group(&format!("layer{k:03}"));
        if k % 3 != 0 {
            layer.floats("0", &[2, k % 5 + 1], (0..2 * (k % 5 + 1)).map(|i| i as f32 * 0.5 - k as f32).collect::<Vec<f32>>());
            layer.floats("1", &[2], vec![k as f32, -0.25]);
        }
    }
    data.group("inception_3a/1x1").floats("0", &[1, 1, 1, 1], vec![3.5]);
    root.floats("empty", &[0, 4], Vec::new());
    root.ints("negative", &[2, 2], vec![-1, 2, i32::MIN, i32::MAX]);
    root
}

#[test]
fn written_files_read_back_member_for_member() {
    let bytes = write::encode(&sample_tree()).unwrap();
    let f = Hdf5::from_bytes(bytes, Path::new("written.h5")).unwrap();
    assert_eq!(f.names().unwrap(), ["data", "empty", "iter", "learned_net", "negative"]);
    assert_eq!(f.read_ints(&f.dataset("iter").unwrap()).unwrap(), [1234]);
    assert_eq!(f.read_text(&f.dataset("learned_net").unwrap()).unwrap(), "snapshots/net_iter_1234.caffemodel.h5");
    assert_eq!(f.read_ints(&f.dataset("negative").unwrap()).unwrap(), [-1, 2, i32::MIN as i64, i32::MAX as i64]);
    let layers = f.members_of("data").unwrap();
    assert_eq!(layers.len(), 301);
    assert_eq!(f.members_of("data/layer000").unwrap(), Vec::<String>::new());
    for k in [1, 2, 149, 299] {
        let w = f.dataset(&format!("data/layer{k:03}/0")).unwrap();
        assert_eq!(w.shape, [2, k % 5 + 1]);
        assert_eq!(f.read_f32(&w).unwrap(), (0..2 * (k % 5 + 1)).map(|i| i as f32 * 0.5 - k as f32).collect::<Vec<_>>());
        assert_eq!(f.read_f32(&f.dataset(&format!("data/layer{k:03}/1")).unwrap()).unwrap(), [k as f32, -0.25]);
    }
    assert_eq!(f.read_f32(&f.dataset("data/inception_3a/1x1/0").unwrap()).unwrap(), [3.5]);
    let empty = f.dataset("empty").unwrap();
    assert_eq!((empty.shape.as_slice(), f.read_f32(&empty).unwrap().len()), (&[0, 4][..], 0));
    assert!(f.exists("data/layer007/1").unwrap() && !f.exists("data/layer007/2").unwrap() && !f.exists("nothing").unwrap());
    assert!(f.read_f32(&f.dataset("learned_net").unwrap()).unwrap_err().to_string().contains("holds strings"));
}

#[test]
fn a_dataset_streams_from_a_file_and_a_short_file_fails_the_write() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<f32> = (0..3 * 5).map(|i| i as f32 * 0.25 - 1.0).collect();
    let mut spill = tempfile::tempfile_in(dir.path()).unwrap();
    spill.write_all(&rows.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    // Bytes beyond the dataset are not read.
    spill.write_all(&[7; 12]).unwrap();
    let spill = std::sync::Arc::new(spill);
    let path = dir.path().join("o.h5");
    let mut root = Group::new();
    root.floats_in_file("data", &[3, 5], spill.clone());
    root.floats("label", &[3], vec![1.0, 2.0, 3.0]);
    root.group("g").floats_in_file("none", &[0, 5], spill.clone());
    write_hdf5(&path, &root).unwrap();
    let f = Hdf5::open(&path).unwrap();
    let ds = f.dataset("data").unwrap();
    assert_eq!((ds.shape.as_slice(), f.read_f32(&ds).unwrap()), (&[3, 5][..], rows.clone()));
    assert_eq!(f.read_f32(&f.dataset("label").unwrap()).unwrap(), [1.0, 2.0, 3.0]);
    assert_eq!(f.dataset("g/none").unwrap().shape, [0, 5]);
    // The same bytes as a dataset held in memory.
    let mut held = Group::new();
    held.floats("data", &[3, 5], rows);
    held.floats("label", &[3], vec![1.0, 2.0, 3.0]);
    held.group("g").floats("none", &[0, 5], Vec::new());
    assert_eq!(std::fs::read(&path).unwrap(), write::encode(&held).unwrap());
    // A file that holds fewer bytes than the dataset: an error naming the file, which is kept.
    let before = std::fs::read(&path).unwrap();
    let mut short = Group::new();
    short.floats_in_file("data", &[4, 5], spill);
    let e = write_hdf5(&path, &short).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("80 bytes were to come from a file that holds 72"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
}
