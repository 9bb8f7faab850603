//! Running Caffe's own examples (their prototxt files from ../shared/conformance/prototxt) as
//! Caffe runs them, from its root folder, on small stand-ins for their data: shared by the
//! tests of the databases (`data_lmdb.rs`, `data_leveldb.rs`).

use std::path::Path;

/// A file of Caffe's examples, from ../shared/conformance/prototxt.
pub fn caffe_example(name: &str) -> String {
    std::fs::read_to_string(super::conformance_dir().join("prototxt").join(name)).expect("the conformance cases beside the checkout")
}

/// Runs the crema binary in `dir` (as Caffe's examples run from Caffe's root), returning its
/// log; fails the test if it fails.
pub fn crema_in(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crema")).args(args).current_dir(dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "crema {args:?}: {err}");
    err
}

/// The training losses and test accuracies a `crema train` log shows.
pub fn losses_and_accuracies(log: &str) -> (Vec<f32>, Vec<f32>) {
    let value = |line: &str| line.rsplit('=').next().unwrap().split_whitespace().next().unwrap().parse::<f32>().unwrap();
    let pick = |a: &str, b: &str| log.lines().filter(|l| l.contains(a) && l.contains(b)).map(value).collect();
    (pick("Iteration", "loss ="), pick("Test net output", "accuracy ="))
}

/// A solver of Caffe's examples cut down for a test: `test_iter` 2, `max_iter` and
/// `test_interval` as given, display every 10, no snapshot, the CPU, a fixed seed.
pub fn small_solver(text: &str, max_iter: &str, test_interval: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        let key = line.split(':').next().unwrap_or("").trim();
        out.push(match key {
            "test_iter" => "test_iter: 2".to_string(),
            "test_interval" => format!("test_interval: {test_interval}"),
            "display" => "display: 10".to_string(),
            "max_iter" => format!("max_iter: {max_iter}"),
            "snapshot" => "snapshot: 0".to_string(),
            "solver_mode" => "solver_mode: CPU".to_string(),
            _ => line.to_string(),
        });
    }
    out.join("\n") + "\nrandom_seed: 1\n"
}

/// A 28x28 gray "digit" of class `k`: a bright bar over rows `2k + 4 .. 2k + 6` on a textured
/// background that varies with `i`.
pub fn bar_image(k: usize, i: usize) -> image::GrayImage {
    image::GrayImage::from_fn(28, 28, |x, y| {
        let on = (2 * k as u32 + 4..2 * k as u32 + 6).contains(&y);
        image::Luma([if on { 220 } else { ((x * 7 + y * 13 + i as u32 * 31) % 60) as u8 }])
    })
}


/// A Caffe-like root folder for the LeNet example: `examples/mnist/` (empty) and `data/bars/`
/// holding 200 training and 40 test bar images with their `path label` lists (`train.txt`,
/// `test.txt`), for `convert_imageset`.
pub fn lenet_tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let images = root.path().join("data/bars");
    std::fs::create_dir_all(root.path().join("examples/mnist")).unwrap();
    std::fs::create_dir_all(&images).unwrap();
    for (list, n) in [("train.txt", 200), ("test.txt", 40)] {
        let mut text = String::new();
        for i in 0..n {
            let (k, name) = (i % 10, format!("{list}_{i}.png"));
            bar_image(k, i).save(images.join(&name)).unwrap();
            text += &format!("{name} {k}\n");
        }
        std::fs::write(images.join(list), text).unwrap();
    }
    root
}

/// Writes `net` as Caffe's LeNet train/test prototxt beside its solver (60 iterations, testing
/// every 30) under `root/examples/mnist/`, trains it from `root` as Caffe's example does, and
/// checks that it learns the bars: the first loss above 2, the last below 0.5, the last test
/// accuracy above 0.9.
pub fn train_lenet(root: &Path, net: &str) {
    let mnist = root.join("examples/mnist");
    std::fs::write(mnist.join("lenet_train_test.prototxt"), net).unwrap();
    std::fs::write(mnist.join("lenet_solver.prototxt"), small_solver(&caffe_example("mnist_lenet_solver.prototxt"), "60", "30")).unwrap();
    let err = crema_in(root, &["train", "-solver", "examples/mnist/lenet_solver.prototxt"]);
    let (losses, accuracy) = losses_and_accuracies(&err);
    assert!(losses.len() >= 6 && accuracy.len() >= 2, "{err}");
    assert!(losses[0] > 2.0 && *losses.last().unwrap() < 0.5, "LeNet did not learn the bars: {losses:?}\n{err}");
    assert!(*accuracy.last().unwrap() > 0.9, "test accuracy {accuracy:?}");
}
