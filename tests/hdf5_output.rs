//! HDF5Output (Caffe's layer, appending every pass): files read back with crema's own HDF5
//! reader, through the library and the CLI (`crema test`, `forward`, `train`), and the errors.
//! The files of `crema_test_appends_every_iteration` stay in target/tmp/hdf5-output-interop,
//! with their expected values, for tools/check_hdf5.py, which CI runs with the HDF5 library
//! (h5py).

use crema::backend::cpu::Cpu;
use crema::io::hdf5::Hdf5;
use crema::layers::Pass;
use crema::net::{Net, NetOptions};
use crema::proto::NetParameter;
use std::path::Path;
use std::process::Command;

const CREMA: &str = env!("CARGO_BIN_EXE_crema");

/// Inputs `x` (2, 3) and `y` (2) into an HDF5Output writing `file`.
fn input_net(file: &Path) -> String {
    format!(
        r#"name: "out"
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 2 }} }} }}
layer {{ name: "out" type: "HDF5Output" bottom: "x" bottom: "y" hdf5_output_param {{ file_name: "{}" }} }}
"#,
        file.display()
    )
}

/// DummyData (new uniform values every pass) through an InnerProduct, written with the
/// labels to `file`.
fn dummy_net(file: &str) -> String {
    format!(
        r#"name: "dummy"
layer {{ name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param {{ shape {{ dim: 4 dim: 3 }} shape {{ dim: 4 }}
    data_filler {{ type: "uniform" min: -1 max: 1 }} data_filler {{ type: "uniform" min: 0 max: 5 }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "constant" value: 0.25 }} }} }}
layer {{ name: "out" type: "HDF5Output" bottom: "ip" bottom: "label" hdf5_output_param {{ file_name: "{file}" }} }}
"#
    )
}

fn parse(text: &str) -> NetParameter {
    crema::prototxt::parse(text, "test").unwrap()
}

fn build(text: &str) -> crema::Result<Net<Cpu>> {
    Net::new(Cpu::new(), &parse(text), 1)
}

/// A dataset's shape and values.
fn read(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let f = Hdf5::open(path).unwrap_or_else(|e| panic!("{e}"));
    let ds = f.dataset(name).unwrap_or_else(|e| panic!("{e}"));
    (ds.shape.clone(), f.read_f32(&ds).unwrap())
}

fn temp_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".tmp")).collect()
}

/// Three passes with different values: the file holds them in pass order, every value as
/// given, in Caffe's 4-axis shapes; it is a whole file after the first pass, before `finish`.
#[test]
fn three_passes_append_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.h5");
    let mut net = build(&input_net(&path)).unwrap();
    let be = net.backend().clone();
    assert!(!path.exists(), "no file before the first pass");
    let x = |p: usize| -> Vec<f32> { (0..6).map(|i| p as f32 * 100.0 + i as f32 * 0.5 - 1.0).collect() };
    let y = |p: usize| -> Vec<f32> { vec![p as f32, 10.0 + p as f32] };
    for p in 0..3 {
        net.blob_mut("x").unwrap().set_data(&be, &x(p)).unwrap();
        net.blob_mut("y").unwrap().set_data(&be, &y(p)).unwrap();
        net.forward().unwrap();
        if p == 0 {
            // Without finish: the first pass is on disk, whole.
            assert_eq!(read(&path, "data"), (vec![2, 3, 1, 1], x(0)));
            assert_eq!(read(&path, "label"), (vec![2, 1, 1, 1], y(0)));
        }
    }
    net.finish().unwrap();
    let f = Hdf5::open(&path).unwrap();
    assert_eq!(f.names().unwrap(), ["data", "label"]);
    assert_eq!(read(&path, "data"), (vec![6, 3, 1, 1], (0..3).flat_map(x).collect::<Vec<_>>()));
    assert_eq!(read(&path, "label"), (vec![6, 1, 1, 1], (0..3).flat_map(y).collect::<Vec<_>>()));
    assert!(temp_names(dir.path()).is_empty());
}

/// A net dropped without `finish` still writes its rows (best effort).
#[test]
fn dropping_the_net_writes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.h5");
    let mut net = build(&dummy_net(&path.display().to_string())).unwrap();
    let be = net.backend().clone();
    let mut want = (Vec::new(), Vec::new());
    for p in 0..3 {
        net.set_pass(Pass { iter: 0, sub: p, per_iter: 3 });
        net.forward().unwrap();
        want.0.extend(net.blob("ip").unwrap().data_to_vec(&be).unwrap());
        want.1.extend(net.blob("label").unwrap().data_to_vec(&be).unwrap());
    }
    // Passes 1 and 2 are written; pass 3 waits.
    assert_eq!(read(&path, "data").0, [8, 2, 1, 1]);
    drop(net);
    assert_eq!(read(&path, "data"), (vec![12, 2, 1, 1], want.0.clone()));
    assert_eq!(read(&path, "label"), (vec![12, 1, 1, 1], want.1.clone()));
    assert_ne!(want.0[..8], want.0[8..16], "the passes drew different values");
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist.
    let missing = dir.path().join("nowhere/out.h5");
    let e = build(&input_net(&missing)).err().expect("refused").to_string();
    assert!(e.contains("layer `out` (type HDF5Output)") && e.contains(&missing.display().to_string()), "{e}");

    // Rows of another shape in a later pass.
    let path = dir.path().join("out.h5");
    let mut net = build(&input_net(&path)).unwrap();
    let be = net.backend().clone();
    net.forward().unwrap();
    net.blob_mut("y").unwrap().reshape(&be, &[2, 2]).unwrap();
    let e = net.forward().unwrap_err();
    assert!(matches!(&e, crema::Error::Layer { inner, .. } if matches!(**inner, crema::Error::Encode { .. })), "{e:?}");
    let e = e.to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("dataset `label` holds rows of shape [1, 1, 1]"), "{e}");
    // The file still holds the first pass, whole.
    assert_eq!(read(&path, "label").0, [2, 1, 1, 1]);
    drop(net);

    // Data and label of different batch sizes.
    let text = input_net(&path).replace("shape { dim: 2 } }", "shape { dim: 3 } }");
    let e = build(&text).err().expect("refused").to_string();
    assert!(e.contains("has 2 items but label (bottom 1, shape [3]) has 3"), "{e}");

    // Not two bottoms.
    for bottoms in [r#"bottom: "x""#, r#"bottom: "x" bottom: "y" bottom: "z""#] {
        let text = format!(
            r#"layer {{ name: "x" type: "Input" top: "x" top: "y" top: "z" input_param {{ shape {{ dim: 2 }} }} }}
               layer {{ name: "out" type: "HDF5Output" {bottoms} hdf5_output_param {{ file_name: "{}" }} }}"#,
            path.display()
        );
        let e = build(&text).err().expect("refused").to_string();
        assert!(e.contains("HDF5Output") && e.contains("takes exactly 2 bottom blob(s), given"), "{e}");
    }

    // No file name.
    let e = build(&input_net(&path).replace(&format!(r#"file_name: "{}""#, path.display()), "")).err().expect("refused").to_string();
    assert!(e.contains("missing `file_name`"), "{e}");
}

fn crema(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(CREMA).args(args).current_dir(dir).output().expect("run crema");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "crema {args:?} failed:\n{err}");
    err
}

/// `crema test --iterations 3` writes the three batches, in order, to a file named relative to
/// the working directory: the values the library computes for those passes. Leaves the file
/// and a JSON of what it holds in target/tmp/hdf5-output-interop for tools/check_hdf5.py.
#[test]
fn crema_test_appends_every_iteration() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hdf5-output-interop");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("net.prototxt"), dummy_net("test_out.h5")).unwrap();

    // The library, as `crema test` runs it: the same seed, model folder and passes, writing
    // elsewhere; its weights for the CLI.
    let lib = tempfile::tempdir().unwrap();
    let lib_file = lib.path().join("lib.h5");
    let opts = NetOptions::for_file(&out.join("net.prototxt"), 0);
    let mut param = parse(&dummy_net(&lib_file.display().to_string()));
    param.state = Some(crema::proto::NetState { phase: Some(crema::proto::Phase::Test as i32), ..Default::default() });
    let mut net = Net::with_options(Cpu::new(), &param, &opts).unwrap();
    net.save_caffemodel(&out.join("w.caffemodel"), false).unwrap();
    for i in 0..3 {
        net.set_pass(Pass { iter: 0, sub: i, per_iter: 3 });
        net.forward().unwrap();
    }
    net.finish().unwrap();
    drop(net);

    crema(&out, &["test", "--model", "net.prototxt", "--weights", "w.caffemodel", "--iterations", "3"]);
    let file = out.join("test_out.h5");
    let (data, label) = (read(&file, "data"), read(&file, "label"));
    assert_eq!(data.0, [12, 2, 1, 1]);
    assert_eq!(label.0, [12, 1, 1, 1]);
    assert_eq!((read(&lib_file, "data"), read(&lib_file, "label")), (data.clone(), label.clone()));
    assert_ne!(label.1[..4], label.1[4..8]);
    assert!(temp_names(&out).is_empty());

    // A net built and never run writes nothing (Caffe would leave an empty file): the output of
    // an earlier run stays.
    drop(build(&input_net(&file)).unwrap());
    assert_eq!((read(&file, "data"), read(&file, "label")), (data.clone(), label.clone()));

    // Passes of no rows (a Filter that keeps nothing) give datasets of no rows.
    let zero = out.join("zero_rows.h5");
    let mut net = build(&input_net(&zero).replace("dim: 2", "dim: 0")).unwrap();
    net.forward().unwrap();
    net.forward().unwrap();
    net.finish().unwrap();
    drop(net);
    assert_eq!((read(&zero, "data"), read(&zero, "label")), ((vec![0, 3, 1, 1], vec![]), (vec![0, 1, 1, 1], vec![])));

    // What the HDF5 library must find (tools/check_hdf5.py).
    let json = serde_json::json!({
        "test_out.h5": {
            "float32": { "data": data.1, "label": label.1 },
            "shapes": { "data": data.0, "label": label.0 },
        },
        "zero_rows.h5": {
            "float32": { "data": [], "label": [] },
            "shapes": { "data": [0, 3, 1, 1], "label": [0, 1, 1, 1] },
        },
    });
    std::fs::write(out.join("expected.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

/// `crema forward` writes its one pass.
#[test]
fn crema_forward_writes_its_pass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("net.prototxt"), dummy_net("fwd.h5")).unwrap();
    crema(dir.path(), &["forward", "--model", "net.prototxt", "--dump", "dump"]);
    let (shape, values) = read(&dir.path().join("fwd.h5"), "data");
    assert_eq!(shape, [4, 2, 1, 1]);
    let ip = crema::io::read_npy(dir.path().join("dump/data/ip.npy")).unwrap();
    assert_eq!(values, ip.data);
}

/// `crema train`: every training pass (3 iterations of `iter_size` 2) appended; training and
/// the file end together.
#[test]
fn crema_train_writes_every_pass() {
    let dir = tempfile::tempdir().unwrap();
    let net = dummy_net("train.h5").replace(
        r#"layer { name: "out""#,
        r#"layer { name: "target" type: "DummyData" top: "target" dummy_data_param { shape { dim: 4 dim: 2 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
layer { name: "out""#,
    );
    std::fs::write(dir.path().join("net.prototxt"), net).unwrap();
    std::fs::write(
        dir.path().join("solver.prototxt"),
        "net: \"net.prototxt\"\nrandom_seed: 3\nbase_lr: 0.1\nlr_policy: \"fixed\"\nmax_iter: 3\niter_size: 2\ndisplay: 0\nsnapshot_after_train: false\n",
    )
    .unwrap();
    crema(dir.path(), &["train", "--solver", "solver.prototxt"]);
    let (shape, values) = read(&dir.path().join("train.h5"), "data");
    assert_eq!(shape, [24, 2, 1, 1]);
    assert_eq!(read(&dir.path().join("train.h5"), "label").0, [24, 1, 1, 1]);
    // The weights change between iterations: no two passes gave the same outputs.
    for a in 0..6 {
        for b in a + 1..6 {
            assert_ne!(values[a * 8..(a + 1) * 8], values[b * 8..(b + 1) * 8], "passes {a} and {b}");
        }
    }
}
