//! The HDF5Data layer on files the HDF5 library wrote (fixtures/hdf5, see
//! tools/hdf5_fixtures.py): rows in order across files and around the end, shuffled rounds that
//! cover every row once and resume exactly, errors that name the file and what is wrong, and
//! Caffe's hdf5_classification example trained from its own prototxt.

use crema::backend::cpu::Cpu;
use crema::layers::Pass;
use crema::net::{Net, NetOptions};
use crema::proto::{NetParameter, NetState, Phase};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A net of one HDF5Data layer (sources relative to `dir`, as a model's folder) and `rest`.
fn build_in(dir: &Path, layer: &str, rest: &str, seed: u64) -> crema::Result<Net<Cpu>> {
    let text = format!("name: 't'\nlayer {{ name: 'data' type: 'HDF5Data' {layer} }}\n{rest}");
    let mut param: NetParameter = crema::prototxt::parse(&text, "test.prototxt")?;
    param.state = Some(NetState { phase: Some(Phase::Train as i32), ..Default::default() });
    let options = NetOptions { seed, model_dir: Some(dir.to_path_buf()), share_diffs: false, share_data: false, fuse: true };
    Net::with_options(Cpu::new(), &param, &options)
}

/// A source list in `dir` naming `files` (fixtures, by path relative to the crate root).
fn source(dir: &Path, files: &[&str]) -> PathBuf {
    let list = dir.join("list.txt");
    let text: Vec<String> = files.iter().map(|f| root().join("fixtures/hdf5").join(f).display().to_string()).collect();
    std::fs::write(&list, text.join("\n") + "\n").unwrap();
    list
}

fn blob(net: &Net<Cpu>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let b = net.blob(name).unwrap();
    (b.shape().to_vec(), b.data_to_vec(net.backend()).unwrap())
}

/// Row `r` of the 16 rows of classify.h5 then classify2.h5: its data and label.
fn classify_row(r: usize) -> ([f32; 4], f32) {
    if r < 10 {
        ([0, 1, 2, 3].map(|j| (10 * r + j) as f32), (r % 2) as f32)
    } else {
        let i = r - 10;
        ([0, 1, 2, 3].map(|j| (100 + 10 * i + j) as f32), ((i + 1) % 2) as f32)
    }
}

#[test]
fn rows_come_in_order_across_files_and_around_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let list = source(dir.path(), &["classify.h5", "classify2.h5"]);
    let layer = format!("top: 'data' top: 'label' hdf5_data_param {{ source: '{}' batch_size: 7 }}", list.display());
    let mut net = build_in(dir.path(), &layer, "", 1).unwrap();
    assert_eq!(net.blob("data").unwrap().shape(), [7, 4]);
    assert_eq!(net.blob("label").unwrap().shape(), [7]);
    for pass in 0..10 {
        net.forward().unwrap();
        let (_, data) = blob(&net, "data");
        let (_, label) = blob(&net, "label");
        for b in 0..7 {
            let (want, want_label) = classify_row((pass * 7 + b) % 16);
            assert_eq!(data[4 * b..4 * b + 4], want, "pass {pass}, item {b}");
            assert_eq!(label[b], want_label, "pass {pass}, item {b}");
        }
    }
}

#[test]
fn every_stored_type_and_rank_reaches_the_tops() {
    let dir = tempfile::tempdir().unwrap();
    // float64 (50, 3, 2, 2) in gzip+shuffle chunks and int64 labels.
    let list = source(dir.path(), &["chunked.h5"]);
    let layer = format!("top: 'data' top: 'label' hdf5_data_param {{ source: '{}' batch_size: 4 }}", list.display());
    let mut net = build_in(dir.path(), &layer, "", 1).unwrap();
    net.forward().unwrap();
    let (shape, data) = blob(&net, "data");
    assert_eq!(shape, [4, 3, 2, 2]);
    assert_eq!(data[12 + 5], (1.0 + 1.0 / 10.0 + 0.0 / 100.0 + 1.0 / 1000.0) as f32);
    assert_eq!(blob(&net, "label").1, [-7.0, -4.0, -1.0, 2.0]);
    // LZF-compressed big-endian floats, uint8 labels of shape (9, 1), and one top only.
    let list = source(dir.path(), &["filters.h5"]);
    let layer = format!("top: 'label' hdf5_data_param {{ source: '{}' batch_size: 3 }}", list.display());
    let mut net = build_in(dir.path(), &layer, "", 1).unwrap();
    net.forward().unwrap();
    net.forward().unwrap();
    assert_eq!(blob(&net, "label"), (vec![3, 1], vec![253.0, 254.0, 255.0]));
}

/// With `shuffle`, each round visits every row once; the order depends on the seed, and a net
/// moved to pass k (as a resumed run is) gives the batches the unbroken run gave.
#[test]
fn shuffled_rounds_cover_every_row_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let list = source(dir.path(), &["classify.h5", "classify2.h5"]);
    let layer = format!("top: 'data' top: 'label' hdf5_data_param {{ source: '{}' batch_size: 4 shuffle: true }}", list.display());
    let rows = |seed: u64, passes: u64, from: u64| -> Vec<usize> {
        let mut net = build_in(dir.path(), &layer, "", seed).unwrap();
        let mut out = Vec::new();
        for pass in from..from + passes {
            net.set_pass(Pass { iter: pass, sub: 0, per_iter: 1 });
            net.forward().unwrap();
            let (_, data) = blob(&net, "data");
            for b in 0..4 {
                let r = (0..16).find(|&r| classify_row(r).0 == data[4 * b..4 * b + 4]).expect("a row of the files");
                assert_eq!(blob(&net, "label").1[b], classify_row(r).1);
                out.push(r);
            }
        }
        out
    };
    let run = rows(5, 8, 0);
    for round in run.chunks(16) {
        let mut sorted = round.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..16).collect::<Vec<_>>(), "a round reads every row once: {round:?}");
    }
    assert_ne!(run[..16], run[16..], "each round is reshuffled");
    assert_ne!(run[..16], (0..16).collect::<Vec<_>>());
    assert_ne!(rows(6, 4, 0), run[..16], "the order follows the seed");
    assert_eq!(rows(5, 3, 5), run[20..32], "resuming at pass 5 gives what the unbroken run gave");
}

#[test]
fn errors_name_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let err = |files: &[&str], tops: &str, extra: &str, rest: &str| -> String {
        let list = source(p, files);
        let layer = format!("{tops} hdf5_data_param {{ source: '{}' batch_size: 2 }} {extra}", list.display());
        build_in(p, &layer, rest, 1).err().expect("an error").to_string()
    };
    let e = err(&["classify.h5"], "top: 'data' top: 'labels'", "", "");
    assert!(e.contains("classify.h5") && e.contains("no dataset `labels`") && e.contains("`data`, `label`"), "{e}");
    let e = err(&["classify.h5", "chunked.h5"], "top: 'data' top: 'label'", "", "");
    assert!(e.contains("chunked.h5") && e.contains("rows of shape [3, 2, 2]") && e.contains("classify.h5"), "{e}");
    let e = err(&["latest.h5"], "top: 'data' top: 'chunked'", "", "");
    assert!(e.contains("latest.h5") && e.contains("dataset `chunked` has 40 rows but `data` has 7"), "{e}");
    let e = err(&["classify.h5"], "top: 'data'", "transform_param { scale: 2 }", "");
    assert!(e.contains("does not transform data"), "{e}");
    let e = err(&["nowhere.h5"], "top: 'data'", "", "");
    assert!(e.contains("nowhere.h5") && e.contains("list.txt"), "{e}");
    std::fs::write(p.join("empty.txt"), " \n").unwrap();
    let layer = format!("top: 'data' hdf5_data_param {{ source: '{}' batch_size: 2 }}", p.join("empty.txt").display());
    let e = build_in(p, &layer, "", 1).err().unwrap().to_string();
    assert!(e.contains("empty.txt") && e.contains("lists no HDF5 files"), "{e}");
    // Labels of 250..255 fed to a two-class loss.
    let rest = "layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip' inner_product_param { num_output: 2 } }\n\
                layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' top: 'loss' }";
    let list = source(p, &["filters.h5"]);
    let layer = format!("top: 'data' top: 'label' hdf5_data_param {{ source: '{}' batch_size: 2 }}", list.display());
    let mut net = build_in(p, &layer, rest, 1).unwrap();
    let e = net.forward().unwrap_err().to_string();
    assert!(e.contains("filters.h5") && e.contains("dataset `label` row 0: label 250 is out of range"), "{e}");
}

/// Caffe's hdf5_classification example (examples/hdf5_classification/train_val.prototxt and
/// nonlinear_auto_train/test.prototxt from BVLC Caffe, in ../shared/conformance/prototxt), with
/// the files its notebook writes (data float64 with 4 features, gzip-compressed for training),
/// trains from Caffe's root folder with the notebook's solver settings, on fewer iterations.
#[test]
fn caffes_hdf5_classification_example_trains() {
    let conformance = std::env::var_os("CREMA_CONFORMANCE").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/conformance"));
    let example = |name: &str| std::fs::read_to_string(conformance.join("prototxt").join(name)).expect("the conformance cases beside the checkout");
    let caffe = tempfile::tempdir().unwrap();
    let ex = caffe.path().join("examples/hdf5_classification");
    std::fs::create_dir_all(ex.join("data")).unwrap();
    for name in ["train", "test"] {
        std::fs::copy(root().join(format!("fixtures/hdf5/{name}.h5")), ex.join(format!("data/{name}.h5"))).unwrap();
        std::fs::write(ex.join(format!("data/{name}.txt")), format!("examples/hdf5_classification/data/{name}.h5\n")).unwrap();
    }
    std::fs::write(ex.join("train_val.prototxt"), example("hdf5_classification_train_val.prototxt")).unwrap();
    std::fs::write(ex.join("nonlinear_auto_train.prototxt"), example("hdf5_classification_nonlinear_auto_train.prototxt")).unwrap();
    std::fs::write(ex.join("nonlinear_auto_test.prototxt"), example("hdf5_classification_nonlinear_auto_test.prototxt")).unwrap();
    // The notebook's solver, at 300 iterations.
    let solver = |net: &str| {
        format!(
            "{net}\ntest_iter: 4\ntest_interval: 150\nbase_lr: 0.1\nlr_policy: \"step\"\ngamma: 0.1\nstepsize: 5000\n\
             momentum: 0.9\nweight_decay: 0.0005\nmax_iter: 300\ndisplay: 50\nsnapshot: 0\nsolver_mode: CPU\nrandom_seed: 1\n"
        )
    };
    std::fs::write(ex.join("solver.prototxt"), solver("net: \"examples/hdf5_classification/train_val.prototxt\"")).unwrap();
    std::fs::write(
        ex.join("nonlinear_solver.prototxt"),
        solver("train_net: \"examples/hdf5_classification/nonlinear_auto_train.prototxt\"\ntest_net: \"examples/hdf5_classification/nonlinear_auto_test.prototxt\""),
    )
    .unwrap();
    for solver in ["solver.prototxt", "nonlinear_solver.prototxt"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crema"))
            .args(["train", "-solver", &format!("examples/hdf5_classification/{solver}")])
            .current_dir(caffe.path())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{solver}: {log}");
        let value = |line: &str| line.rsplit('=').next().unwrap().split_whitespace().next().unwrap().parse::<f32>().unwrap();
        let pick = |a: &str, b: &str| -> Vec<f32> { log.lines().filter(|l| l.contains(a) && l.contains(b)).map(value).collect() };
        let (losses, accuracy) = (pick("Iteration", "loss ="), pick("Test net output", "accuracy ="));
        assert!(losses.len() >= 6 && accuracy.len() >= 2, "{solver}: {log}");
        assert!(losses[0] > 0.5 && *losses.last().unwrap() < 0.3, "{solver}: did not learn: {losses:?}\n{log}");
        assert!(*accuracy.last().unwrap() >= 0.9, "{solver}: test accuracy {accuracy:?}");
    }
}

/// `crema bn-stats` runs one pass over the training data by default: for HDF5Data, the rows of
/// every listed file over the batch size.
#[test]
fn an_epoch_of_hdf5_data_is_its_rows_over_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let list = source(dir.path(), &["classify.h5", "classify2.h5"]);
    let text = format!("name: 't'\nlayer {{ name: 'd' type: 'HDF5Data' top: 'data' top: 'label' hdf5_data_param {{ source: '{}' batch_size: 5 }} }}\n", list.display());
    let param: NetParameter = crema::prototxt::parse(&text, "t").unwrap();
    assert_eq!(crema::inference::bn_stats::epoch_iterations(&param, Some(dir.path())), Some(16usize.div_ceil(5)));
}
