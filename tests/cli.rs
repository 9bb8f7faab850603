//! The real `crema` binary: subcommands, Caffe-style flags, errors and exit codes.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn crema(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crema")).args(args).output().expect("run crema");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("crema-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn forward_dumps_match_caffe() {
    let case = conformance_dir().join("layers/conv_basic");
    let dump = tmpdir("forward");
    let p = |f: &str| case.join(f).display().to_string();
    let (code, _, err) = crema(&[
        "forward", "-model", &p("net.prototxt"), "-weights", &p("weights.caffemodel"),
        "--input", &format!("data={}", p("in_data.npy")),
        "--top-diff", &format!("out={}", p("topdiff_out.npy")),
        "--backward", "--dump", &dump.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let tol = Tolerance { abs: 1e-5, rel: 1e-4 };
    let check = |got: &Path, want: &str| {
        let g = crema::io::read_npy(got).unwrap();
        if let Some(msg) = compare(want, &g.data, &g.shape, &npy(&case, want), tol) {
            panic!("{msg}");
        }
    };
    check(&dump.join("data/out.npy"), "fwd_out.npy");
    check(&dump.join("diff/data.npy"), "grad_data.npy");
    check(&dump.join("param_diff/conv/0.npy"), "pgrad_conv_0.npy");
    check(&dump.join("param_diff/conv/1.npy"), "pgrad_conv_1.npy");
}

#[test]
fn forward_rejects_a_top_diff_of_the_wrong_shape() {
    let case = conformance_dir().join("layers/conv_basic");
    let p = |f: &str| case.join(f).display().to_string();
    let dump = tmpdir("badshape");
    let (code, _, err) = crema(&[
        "forward", "--model", &p("net.prototxt"), "--input", &format!("data={}", p("in_data.npy")),
        "--top-diff", &format!("out={}", p("in_data.npy")), "--backward", "--dump", &dump.display().to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("in_data.npy") && err.contains("shape"), "{err}");
}

#[test]
fn inspect_reports_shapes_and_weight_matches() {
    let case = conformance_dir().join("layers/conv_basic");
    let (code, out, err) = crema(&[
        "inspect", "-model", &case.join("net.prototxt").display().to_string(),
        "-weights", &case.join("weights.caffemodel").display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[2, 4, 7, 9]"), "{out}");
    assert!(out.contains("blob 0: matched 4 3 3 3 (108)"), "{out}");
}

#[test]
fn upgrade_writes_what_caffe_wrote() {
    let dir = conformance_dir().join("prototxt");
    let out = tmpdir("upgrade").join("lenet.prototxt");
    let (code, _, err) = crema(&["upgrade", &dir.join("v1_mnist_lenet_train_test.prototxt").display().to_string(), &out.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let got = std::fs::read_to_string(&out).unwrap();
    let want = std::fs::read_to_string(dir.join("v1_mnist_lenet_train_test.expected.prototxt")).unwrap();
    assert_eq!(got, want);
}

#[test]
fn errors_name_the_file_and_exit_1() {
    let (code, _, err) = crema(&["inspect", "--model", "/no/such/net.prototxt"]);
    assert_eq!(code, 1);
    assert!(err.contains("/no/such/net.prototxt"), "{err}");
    let dir = tmpdir("badproto");
    let f = dir.join("bad.prototxt");
    std::fs::write(&f, "layer { name: \"c\" type: \"Convolution\" convolution_param { kernal_size: 3 } }").unwrap();
    let (code, _, err) = crema(&["inspect", "--model", &f.display().to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `kernel_size`"), "{err}");
    let (code, _, _) = crema(&["inspect"]);
    assert_eq!(code, 2);
}

#[test]
fn unknown_layer_type_lists_known_ones() {
    let dir = tmpdir("unknown");
    let f = dir.join("net.prototxt");
    std::fs::write(&f, "layer { name: \"x\" type: \"Input\" top: \"x\" input_param { shape { dim: 1 } } }\nlayer { name: \"w\" type: \"Wobble\" bottom: \"x\" top: \"y\" }").unwrap();
    let (code, _, err) = crema(&["inspect", "--model", &f.display().to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown layer type `Wobble`") && err.contains("Convolution"), "{err}");
}

/// A v1.0 .npy holding int32 values.
fn int_npy(path: &Path, shape: &[usize], values: &[i32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!("{{'descr': '<i4', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn forward_rejects_a_top_diff_of_the_wrong_dtype() {
    let case = conformance_dir().join("layers/conv_basic");
    let p = |f: &str| case.join(f).display().to_string();
    let dir = tmpdir("dtype");
    let bad = dir.join("ints.npy");
    int_npy(&bad, &[2, 4, 7, 9], &vec![1; 2 * 4 * 7 * 9]);
    let (code, _, err) = crema(&[
        "forward", "--model", &p("net.prototxt"), "--input", &format!("data={}", p("in_data.npy")),
        "--top-diff", &format!("out={}", bad.display()), "--backward", "--dump", &dir.display().to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("ints.npy") && err.contains("<i4"), "{err}");
}

#[test]
fn time_and_inspect_show_which_relus_run_fused() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/lung_segnet_lite/bench.prototxt");
    let run = |cmd: &[&str], fuse: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_crema")).args(cmd).env("CREMA_FUSE", fuse).output().expect("run crema");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let time = ["time", "--model", model, "--iterations", "1"];
    let inspect = ["inspect", "--model", model, "--phase", "TRAIN"];
    // All 25 of SegNet's conv-BN-ReLU triples fuse.
    let out = run(&time, "1");
    assert_eq!(out.lines().filter(|l| l.starts_with("conv1_1_relu") && l.ends_with("runs in conv1_1_bn")).count(), 1, "{out}");
    assert!(out.contains("25 in-place ReLUs run inside the layer before them"), "{out}");
    let out = run(&inspect, "1");
    assert_eq!(out.matches("(fused; CREMA_FUSE=0 runs it on its own)").count(), 25, "{out}");
    assert!(out.contains("runs inside conv5_3_D_bn"), "{out}");
    // CREMA_FUSE=0: every layer on its own, timed apart.
    let out = run(&time, "0");
    assert!(!out.contains("runs in") && out.lines().any(|l| l.starts_with("conv1_1_relu ")), "{out}");
    assert!(!run(&inspect, "0").contains("fused"));
}
