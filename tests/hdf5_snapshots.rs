//! Caffe's HDF5 snapshots (`snapshot_format: HDF5`): a snapshot laid out as Caffe writes one
//! (fixtures/hdf5/snapshot, made through the HDF5 library by tools/hdf5_fixtures.py) restores,
//! shared blobs and all; crema's own HDF5 snapshots hold Caffe's layout and load as weights; a
//! file that lacks a blob the layer does not share is refused. The files crema writes here stay
//! in target/tmp/hdf5-interop, with their expected values, for tools/check_hdf5.py, which CI
//! runs with the HDF5 library (h5py).

use crema::backend::cpu::Cpu;
use crema::io::hdf5::Hdf5;
use crema::solver::Solver;
use std::path::{Path, PathBuf};

/// data (2, 3) -> ip1 (weights "shared_w", bias) -> relu; ip2 shares "shared_w", owns its
/// bias; EuclideanLoss between the two.
const NET: &str = r#"name: "shared"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "h" param { name: "shared_w" } param { }
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "h" top: "h" }
layer { name: "ip2" type: "InnerProduct" bottom: "data" top: "h2" param { name: "shared_w" } param { }
  inner_product_param { num_output: 2 bias_filler { type: "constant" value: -0.3 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "h" bottom: "h2" top: "loss" }
"#;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hdf5/snapshot").join(name)
}

/// A folder with the net and an SGD solver writing HDF5 snapshots under `snap/`.
fn setup(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("net.prototxt"), NET).unwrap();
    std::fs::create_dir_all(dir.join("snap")).unwrap();
    let solver = dir.join("solver.prototxt");
    std::fs::write(
        &solver,
        "net: \"net.prototxt\"\nbase_lr: 0.1\nlr_policy: \"fixed\"\nmomentum: 0.9\nmax_iter: 10\nrandom_seed: 3\n\
         snapshot_after_train: false\nsnapshot_prefix: \"snap/net\"\nsnapshot_format: HDF5\nsolver_mode: CPU\n",
    )
    .unwrap();
    solver
}

fn solver(path: &Path) -> Solver<Cpu> {
    let mut s = Solver::from_file(Cpu::new(), path).unwrap();
    let be = Cpu::new();
    s.net_mut().blob_mut("data").unwrap().set_data(&be, &[1.0, -2.0, 0.5, 3.0, 0.25, -1.0]).unwrap();
    s
}

fn params(s: &Solver<Cpu>) -> Vec<Vec<f32>> {
    s.net().params().iter().map(|p| p.data_to_vec(&Cpu::new()).unwrap()).collect()
}

#[test]
fn a_snapshot_caffe_wrote_in_hdf5_restores() {
    let dir = tempfile::tempdir().unwrap();
    let solver_file = setup(dir.path());
    for f in ["net_iter_3.caffemodel.h5", "net_iter_3.solverstate.h5"] {
        std::fs::copy(fixture(f), dir.path().join(f)).unwrap();
    }
    let mut s = solver(&solver_file);
    s.restore(dir.path().join("net_iter_3.solverstate.h5")).unwrap();
    assert_eq!((s.iter(), s.current_step()), (3, 0));
    // ip1's weights (shared with ip2), ip1's bias, ip2's bias: in the net's order of learnable blobs.
    assert_eq!(params(&s), [vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6], vec![1.0, 2.0], vec![-1.0, -2.0]]);
    let history: Vec<Vec<f32>> = s.history().iter().map(|h| h.data_to_vec(&Cpu::new()).unwrap()).collect();
    assert_eq!(history, [(0..6).map(|k| 0.01 * k as f32).collect::<Vec<_>>(), vec![0.5, 0.25], vec![-0.5, 0.125]]);
    s.step(2).unwrap();
    assert_eq!(s.iter(), 5);
}

/// Trains 4 iterations with HDF5 snapshots, and checks them against the net: Caffe's groups
/// (one per layer; ip2 without the weights it shares), and the values. Leaves the files and a
/// JSON of what they must hold for tools/check_hdf5.py.
#[test]
fn crema_writes_caffes_hdf5_snapshots() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hdf5-interop");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let solver_file = setup(&out);
    let mut s = solver(&solver_file);
    s.step(4).unwrap();
    let files = s.snapshot().unwrap();
    assert_eq!(files.model, out.join("snap/net_iter_4.caffemodel.h5"));
    assert_eq!(files.state, out.join("snap/net_iter_4.solverstate.h5"));

    let model = Hdf5::open(&files.model).unwrap();
    assert_eq!(model.names().unwrap(), ["data"]);
    // Every layer of the net, the Split it inserted for `data` included, as in Caffe.
    assert_eq!(model.members_of("data").unwrap(), ["data", "data_data_0_split", "ip1", "ip2", "loss", "relu"]);
    assert_eq!(model.members_of("data/ip1").unwrap(), ["0", "1"]);
    assert_eq!(model.members_of("data/ip2").unwrap(), ["1"], "ip2 shares its weights: Caffe writes only its bias");
    assert!(model.members_of("data/relu").unwrap().is_empty());
    let p = params(&s);
    let read = |f: &Hdf5, name: &str| f.read_f32(&f.dataset(name).unwrap()).unwrap();
    assert_eq!(model.dataset("data/ip1/0").unwrap().shape, [2, 3]);
    assert_eq!([read(&model, "data/ip1/0"), read(&model, "data/ip1/1"), read(&model, "data/ip2/1")], [p[0].clone(), p[1].clone(), p[2].clone()]);
    let state = Hdf5::open(&files.state).unwrap();
    assert_eq!(state.names().unwrap(), ["current_step", "history", "iter", "learned_net"]);
    assert_eq!(state.read_ints(&state.dataset("iter").unwrap()).unwrap(), [4]);
    assert_eq!(state.read_text(&state.dataset("learned_net").unwrap()).unwrap(), files.model.to_string_lossy());
    let history: Vec<Vec<f32>> = s.history().iter().map(|h| h.data_to_vec(&Cpu::new()).unwrap()).collect();
    for (i, h) in history.iter().enumerate() {
        assert_eq!(&read(&state, &format!("history/{i}")), h);
    }
    // What the HDF5 library must find in them (tools/check_hdf5.py).
    let json = serde_json::json!({
        "net_iter_4.caffemodel.h5": {
            "groups": ["data", "data/data", "data/data_data_0_split", "data/ip1", "data/ip2", "data/loss", "data/relu"],
            "float32": { "data/ip1/0": p[0], "data/ip1/1": p[1], "data/ip2/1": p[2] },
            "shapes": { "data/ip1/0": [2, 3], "data/ip1/1": [2], "data/ip2/1": [2] },
        },
        "net_iter_4.solverstate.h5": {
            "groups": ["history"],
            "int32": { "iter": [4], "current_step": [0] },
            "string": { "learned_net": files.model.to_string_lossy() },
            "float32": { "history/0": history[0], "history/1": history[1], "history/2": history[2] },
            "shapes": { "history/0": [2, 3], "history/1": [2], "history/2": [2] },
        },
    });
    std::fs::write(out.join("snap/expected.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();

    // The weights load into a fresh net as `--weights` files do, shared blobs included.
    let mut fresh = solver(&solver_file);
    fresh.net_mut().load_weights_files(std::slice::from_ref(&files.model)).unwrap();
    assert_eq!(params(&fresh), p);
}

/// With gradients (`snapshot_diff`), Caffe writes `diff/<layer>/<j>` for every blob, shared
/// ones included, while `data` holds only the owners' values.
#[test]
fn gradients_are_written_for_shared_blobs_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = solver(&setup(dir.path()));
    s.net_mut().forward().unwrap();
    s.net_mut().backward().unwrap();
    let path = dir.path().join("g.caffemodel.h5");
    s.net().save_hdf5(&path, true).unwrap();
    let f = Hdf5::open(&path).unwrap();
    assert_eq!(f.members_of("data/ip2").unwrap(), ["1"]);
    assert_eq!(f.members_of("diff/ip2").unwrap(), ["0", "1"]);
    let shared = s.net().params()[0].diff_to_vec(&Cpu::new()).unwrap();
    assert_eq!(f.read_f32(&f.dataset("diff/ip2/0").unwrap()).unwrap(), shared);
    assert_eq!(f.read_f32(&f.dataset("diff/ip1/0").unwrap()).unwrap(), shared);
}

#[test]
fn a_missing_blob_the_layer_owns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let solver_file = setup(dir.path());
    let mut root = crema::io::hdf5::Group::new();
    // ip1 without its bias: unlike ip2's weights, ip1 owns it.
    root.group("data/ip1").floats("0", &[2, 3], vec![0.0; 6]);
    let path = dir.path().join("w.caffemodel.h5");
    crema::io::hdf5::write_hdf5(&path, &root).unwrap();
    let mut s = solver(&solver_file);
    let e = s.net_mut().load_weights_files(&[path]).unwrap_err().to_string();
    assert!(e.contains("w.caffemodel.h5") && e.contains("layer `ip1` has no dataset `1`"), "{e}");
    // A binary caffemodel named .h5 is read as HDF5, as Caffe decides by the name.
    let renamed = dir.path().join("binary.caffemodel.h5");
    std::fs::write(&renamed, b"\x0a\x01x").unwrap();
    let e = s.net_mut().load_weights_files(&[renamed]).unwrap_err().to_string();
    assert!(e.contains("binary.caffemodel.h5") && e.contains("not an HDF5 file"), "{e}");
}
