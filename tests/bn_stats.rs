//! BN statistics for inference (`crema bn-stats`): the statistics taken from each BN input
//! before the layer runs, checked against the BN layer's own statistics tops accumulated as
//! SegNet's compute_bn_statistics.py accumulates them, the folded inference net checked against
//! a direct computation, and the command run end to end.

use crema::backend::cpu::Cpu;
use crema::inference::bn_stats;
use crema::net::Net;
use crema::proto::NetParameter;
use std::path::Path;
use std::process::Command;

const CREMA: &str = env!("CARGO_BIN_EXE_crema");

/// A training net fed by DummyData (new uniform data every batch): conv, BN (in place), ReLU,
/// conv, BN. `stats_tops` adds the BN layers' batch mean and variance tops.
fn train_net(stats_tops: bool) -> String {
    let tops = |b: &str| if stats_tops { format!(r#"top: "{b}_mean" top: "{b}_var""#) } else { String::new() };
    format!(
        r#"name: "bn_train"
layer {{ name: "data" type: "DummyData" top: "data"
  dummy_data_param {{ shape {{ dim: 4 dim: 3 dim: 5 dim: 6 }} data_filler {{ type: "uniform" min: -1 max: 3 }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 3 pad: 1
    weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "constant" value: 0.2 }} }} }}
layer {{ name: "conv1_bn" type: "BN" bottom: "conv1" top: "conv1" {}
  bn_param {{ scale_filler {{ type: "uniform" min: 0.5 max: 1.5 }} shift_filler {{ type: "uniform" min: -0.5 max: 0.5 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param {{ num_output: 2 kernel_size: 3 pad: 1 weight_filler {{ type: "gaussian" std: 0.5 }} }} }}
layer {{ name: "conv2_bn" type: "BN" bottom: "conv2" top: "conv2" {}
  bn_param {{ scale_filler {{ type: "uniform" min: 0.5 max: 1.5 }} shift_filler {{ type: "uniform" min: -0.5 max: 0.5 }} }} }}
"#,
        tops("conv1"),
        tops("conv2")
    )
}

fn parse(dir: &Path, name: &str, text: &str) -> NetParameter {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    crema::upgrade::read_net(&p).unwrap()
}

fn layer_blob(net: &Net<Cpu>, layer: &str, i: usize) -> Vec<f32> {
    let li = net.layer_index(layer).unwrap();
    net.layer_params(li)[i].data_to_vec(net.backend()).unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn statistics_match_the_bn_layers_own_tops_accumulated_as_segnet_does() {
    let dir = tempfile::tempdir().unwrap();
    const BATCHES: usize = 5;
    // crema's way: moments of each BN input before the layer runs, folded.
    let mut net = Net::new(Cpu::new(), &parse(dir.path(), "a.prototxt", &train_net(false)), 7).unwrap();
    let weights = dir.path().join("trained.caffemodel");
    net.save_caffemodel(&weights, false).unwrap();
    let mut seen = Vec::new();
    let stats = bn_stats::collect(&mut net, BATCHES, |_, _| Ok(()), |i| seen.push(i)).unwrap();
    assert_eq!(seen, (0..BATCHES).collect::<Vec<_>>());
    assert_eq!(stats.iter().map(|s| s.layer.as_str()).collect::<Vec<_>>(), ["conv1_bn", "conv2_bn"]);
    assert!(stats.iter().all(|s| s.batches == BATCHES && s.per_batch == 4 * 5 * 6));
    bn_stats::apply(&mut net, &stats, bn_stats::BN_EPS).unwrap();

    // The script's way: the BN layers' mean and variance tops, summed over the batches,
    // averaged, the variance times m / (m - 1), folded with numpy's formula.
    let mut reference = Net::new(Cpu::new(), &parse(dir.path(), "b.prototxt", &train_net(true)), 7).unwrap();
    reference.load_weights_files(&[weights]).unwrap();
    let be = reference.backend().clone();
    let mut sums: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![0.0; 4], vec![0.0; 4]), (vec![0.0; 2], vec![0.0; 2])];
    for _ in 0..BATCHES {
        reference.forward().unwrap();
        for (k, b) in ["conv1", "conv2"].iter().enumerate() {
            let mean = reference.blob(&format!("{b}_mean")).unwrap().data_to_vec(&be).unwrap();
            let var = reference.blob(&format!("{b}_var")).unwrap().data_to_vec(&be).unwrap();
            sums[k].0.iter_mut().zip(&mean).for_each(|(s, v)| *s += *v as f64);
            sums[k].1.iter_mut().zip(&var).for_each(|(s, v)| *s += *v as f64);
        }
    }
    let m = (4 * 5 * 6) as f64;
    for (k, (layer, s)) in ["conv1_bn", "conv2_bn"].iter().zip(&stats).enumerate() {
        let mean: Vec<f64> = sums[k].0.iter().map(|v| v / BATCHES as f64).collect();
        let var: Vec<f64> = sums[k].1.iter().map(|v| v / BATCHES as f64 * m / (m - 1.0)).collect();
        let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        close(&to32(&s.mean), &to32(&mean), 1e-5, &format!("{layer} mean"));
        close(&to32(&s.var), &to32(&var), 1e-5, &format!("{layer} var"));
        let (gamma, beta) = (layer_blob(&reference, layer, 0), layer_blob(&reference, layer, 1));
        let new_gamma: Vec<f32> = (0..gamma.len()).map(|c| (gamma[c] as f64 / (var[c] + 1e-9).sqrt()) as f32).collect();
        let new_beta: Vec<f32> =
            (0..gamma.len()).map(|c| (beta[c] as f64 - gamma[c] as f64 * mean[c] / (var[c] + 1e-9).sqrt()) as f32).collect();
        close(&layer_blob(&net, layer, 0), &new_gamma, 1e-5, &format!("{layer} scale"));
        close(&layer_blob(&net, layer, 1), &new_beta, 1e-5, &format!("{layer} shift"));
    }
    // The convolutions are untouched.
    assert_eq!(layer_blob(&net, "conv1", 0), layer_blob(&reference, "conv1", 0));
}

#[test]
fn the_folded_inference_net_computes_the_normalisation_with_the_unbiased_variance() {
    let dir = tempfile::tempdir().unwrap();
    let bn = |mode: &str| {
        format!(
            r#"name: "one_bn"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 2 dim: 3 dim: 4 dim: 5 }} }} }}
layer {{ name: "bn" type: "BN" bottom: "data" top: "y"
  bn_param {{ bn_mode: {mode} scale_filler {{ type: "uniform" min: 0.5 max: 2 }} shift_filler {{ type: "uniform" min: -1 max: 1 }} }} }}
"#
        )
    };
    let x: Vec<f32> = (0..120).map(|i| ((i * 37 % 23) as f32 - 7.0) * 0.3 + (i / 40) as f32).collect();
    let mut learn = Net::new(Cpu::new(), &parse(dir.path(), "learn.prototxt", &bn("LEARN")), 3).unwrap();
    let be = learn.backend().clone();
    let (scale, shift) = (layer_blob(&learn, "bn", 0), layer_blob(&learn, "bn", 1));
    let set = |net: &mut Net<Cpu>, _: usize| net.blob_mut("data").unwrap().set_data(&be, &x);
    let stats = bn_stats::collect(&mut learn, 1, set, |_| {}).unwrap();
    bn_stats::apply(&mut learn, &stats, bn_stats::BN_EPS).unwrap();
    let folded = dir.path().join("inference.caffemodel");
    bn_stats::write_inference_weights(&learn, &folded).unwrap();

    let mut inference = Net::new(Cpu::new(), &parse(dir.path(), "inf.prototxt", &bn("INFERENCE")), 99).unwrap();
    inference.load_weights_files(std::slice::from_ref(&folded)).unwrap();
    inference.blob_mut("data").unwrap().set_data(&be, &x).unwrap();
    inference.forward().unwrap();
    let y = inference.blob("y").unwrap().data_to_vec(&be).unwrap();

    // Direct: per channel over (N, H, W), y = scale (x - mean) / sqrt(var m/(m-1) + eps) + shift.
    let (n, c, hw) = (2, 3, 20);
    let m = (n * hw) as f64;
    for ch in 0..c {
        let vals: Vec<f64> = (0..n).flat_map(|i| (0..hw).map(move |k| (i, k))).map(|(i, k)| x[(i * c + ch) * hw + k] as f64).collect();
        let mean = vals.iter().sum::<f64>() / m;
        let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / m * m / (m - 1.0);
        for i in 0..n {
            for k in 0..hw {
                let j = (i * c + ch) * hw + k;
                let want = scale[ch] as f64 * (x[j] as f64 - mean) / (var + 1e-9).sqrt() + shift[ch] as f64;
                assert!((y[j] as f64 - want).abs() < 1e-5, "channel {ch} element {j}: {} vs {want}", y[j]);
            }
        }
    }
    // The written file names the BN layer; its blobs are (1, C, 1, 1).
    let w = crema::io::read_weights(&folded).unwrap();
    let l = w.layer("bn").unwrap();
    assert_eq!(l.blobs[0].shape, [1, 3, 1, 1]);
}

fn crema(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(CREMA).args(args).current_dir(dir).output().expect("run crema");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bn_stats_command_writes_what_the_library_computes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let param = parse(d, "train.prototxt", &train_net(false));
    let trained = Net::new(Cpu::new(), &param, 11).unwrap();
    trained.save_caffemodel(&d.join("trained.caffemodel"), false).unwrap();
    let (code, stdout, err) = crema(d, &["bn-stats", "--model", "train.prototxt", "--weights", "trained.caffemodel", "--out", "inf.caffemodel", "--iterations", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("2 BN layers") && stdout.contains("3 batches"), "{stdout}");

    // The command builds the TRAIN layers in the TEST phase with seed 0.
    let mut p = param.clone();
    p.state = Some(crema::proto::NetState { phase: Some(crema::proto::Phase::Test as i32), ..Default::default() });
    let mut net = Net::new(Cpu::new(), &p, 0).unwrap();
    net.load_weights_files(&[d.join("trained.caffemodel")]).unwrap();
    let stats = bn_stats::collect(&mut net, 3, |_, _| Ok(()), |_| {}).unwrap();
    bn_stats::apply(&mut net, &stats, bn_stats::BN_EPS).unwrap();
    let written = crema::io::read_weights(d.join("inf.caffemodel")).unwrap();
    for layer in ["conv1_bn", "conv2_bn", "conv1"] {
        let l = written.layer(layer).unwrap();
        for (i, b) in l.blobs.iter().enumerate() {
            assert_eq!(b.data, layer_blob(&net, layer, i), "{layer} blob {i}");
        }
    }
    // ...and an inference version of the net loads them.
    let inference = train_net(false).replace("bn_param {", "bn_param { bn_mode: INFERENCE").replace(
        r#"layer { name: "data" type: "DummyData" top: "data"
  dummy_data_param { shape { dim: 4 dim: 3 dim: 5 dim: 6 } data_filler { type: "uniform" min: -1 max: 3 } } }"#,
        r#"layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 5 dim: 6 } } }"#,
    );
    assert!(inference.contains("Input") && !inference.contains("DummyData") && inference.contains("bn_mode: INFERENCE"));
    let mut inf = Net::new(Cpu::new(), &parse(d, "inf.prototxt", &inference), 0).unwrap();
    let report = inf.load_weights_files(&[d.join("inf.caffemodel")]).unwrap();
    for layer in ["conv1", "conv1_bn", "conv2", "conv2_bn"] {
        assert!(report.copied.iter().any(|(l, _)| l == layer), "{layer}: {report:?}");
    }
    inf.forward().unwrap();
}

#[test]
fn bn_stats_command_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let param = parse(d, "train.prototxt", &train_net(false));
    Net::new(Cpu::new(), &param, 0).unwrap().save_caffemodel(&d.join("w.caffemodel"), false).unwrap();
    // No list file to count batches from.
    let (code, _, err) = crema(d, &["bn-stats", "--model", "train.prototxt", "--weights", "w.caffemodel", "--out", "o.caffemodel"]);
    assert_eq!(code, 1);
    assert!(err.contains("train.prototxt") && err.contains("--iterations"), "{err}");
    // A net without data layers.
    let with_input = train_net(false).replace(
        r#"type: "DummyData" top: "data"
  dummy_data_param { shape { dim: 4 dim: 3 dim: 5 dim: 6 } data_filler { type: "uniform" min: -1 max: 3 } }"#,
        r#"type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 5 dim: 6 } }"#,
    );
    assert!(!with_input.contains("DummyData"));
    std::fs::write(d.join("input.prototxt"), with_input).unwrap();
    let (code, _, err) = crema(d, &["bn-stats", "--model", "input.prototxt", "--weights", "w.caffemodel", "--out", "o.caffemodel", "--iterations", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("input.prototxt") && err.contains("Input blob"), "{err}");
    // BN layers already in INFERENCE mode.
    std::fs::write(d.join("inf.prototxt"), train_net(false).replace("bn_param {", "bn_param { bn_mode: INFERENCE")).unwrap();
    let (code, _, err) = crema(d, &["bn-stats", "--model", "inf.prototxt", "--weights", "w.caffemodel", "--out", "o.caffemodel", "--iterations", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("conv1_bn") && err.contains("INFERENCE"), "{err}");
    // Missing weights.
    let (code, _, err) = crema(d, &["bn-stats", "--model", "train.prototxt", "--weights", "nope.caffemodel", "--out", "o.caffemodel", "--iterations", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("nope.caffemodel"), "{err}");
    assert!(!d.join("o.caffemodel").exists());
}
