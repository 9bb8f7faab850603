//! Caffe's LSTM and RNN layers on the CPU against a PyTorch float64 reference of Caffe's
//! formulas (`fixtures/recurrent`, see `tests/common/recurrent.rs`): outputs of two consecutive
//! passes (the carried state), gradients of the inputs and of every learnable blob, and the
//! learnable blobs' shapes, which are Caffe's.

mod common;

use crema::backend::cpu::Cpu;

fn run(name: &str) {
    let failures = common::recurrent::run_case(name, Cpu::new());
    assert!(failures.is_empty(), "{name}:\n  {}", failures.join("\n  "));
}

#[test]
fn lstm() {
    run("lstm");
}

#[test]
fn lstm_with_a_static_input() {
    run("lstm_static");
}

#[test]
fn lstm_with_exposed_hidden_state() {
    run("lstm_expose");
}

#[test]
fn rnn() {
    run("rnn");
}

#[test]
fn rnn_with_a_static_input() {
    run("rnn_static");
}

/// Every fixture folder has a test above.
#[test]
fn every_case_is_run() {
    let mut names: Vec<String> = std::fs::read_dir(common::recurrent::case_dir(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["lstm", "lstm_expose", "lstm_static", "rnn", "rnn_static"]);
}

use crema::backend::Storage;
use crema::net::Net;
use crema::proto::NetParameter;

/// A net of one Input layer (tops `inputs`, shapes `shapes`) and the layer `layer`.
fn net_of(inputs: &[(&str, &[usize])], layer: &str) -> crema::Result<Net<Cpu>> {
    net_with(inputs, layer, true)
}

fn net_with(inputs: &[(&str, &[usize])], layer: &str, force_backward: bool) -> crema::Result<Net<Cpu>> {
    let mut text = format!("force_backward: {force_backward}\nlayer {{ name: 'input' type: 'Input'");
    for (n, _) in inputs {
        text += &format!(" top: '{n}'");
    }
    text += " input_param {";
    for (_, s) in inputs {
        text += " shape {";
        for d in *s {
            text += &format!(" dim: {d}");
        }
        text += " }";
    }
    text += &format!(" }} }}\n{layer}\n");
    let param: NetParameter = crema::prototxt::parse(&text, "recurrent.prototxt")?;
    Net::new(Cpu::new(), &param, 1)
}

fn lstm_layer(bottoms: &str, tops: &str, param: &str) -> String {
    format!("layer {{ name: 'rec' type: 'LSTM' {bottoms} {tops} recurrent_param {{ {param} }} }}")
}

/// Input tops and their shapes.
type Inputs<'a> = Vec<(&'a str, &'a [usize])>;

fn error_of(inputs: &[(&str, &[usize])], layer: &str) -> String {
    match net_of(inputs, layer) {
        Ok(_) => panic!("built: {layer}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_shapes_and_parameters_are_errors_naming_the_layer() {
    let xc = "bottom: 'x' bottom: 'c'";
    let cases: Vec<(Inputs, String, &str)> = vec![
        (vec![("x", &[3, 2]), ("c", &[3, 2])], lstm_layer(xc, "top: 'h'", "num_output: 4"), "at least 3 axes"),
        (vec![("x", &[3, 2, 5]), ("c", &[3, 3])], lstm_layer(xc, "top: 'h'", "num_output: 4"), "cont (bottom 1) must have shape 3 2 (6)"),
        (vec![("x", &[3, 2, 5]), ("c", &[3, 2])], lstm_layer(xc, "top: 'h'", "num_output: 0"), "num_output must be positive"),
        (vec![("x", &[3, 2, 5]), ("c", &[3, 2])], "layer { name: 'rec' type: 'RNN' bottom: 'x' bottom: 'c' top: 'h' }".into(), "recurrent_param"),
        (vec![("x", &[3, 2, 5]), ("c", &[3, 2]), ("s", &[3, 4])],lstm_layer("bottom: 'x' bottom: 'c' bottom: 's'", "top: 'h'", "num_output: 4"), "static input (bottom 2) must have 2 items"),
        (vec![("x", &[3, 2, 5]), ("c", &[3, 2])], lstm_layer(xc, "top: 'h' top: 'hT' top: 'cT'", "num_output: 4 expose_hidden: true"), "bottom"),
        (
            vec![("x", &[3, 2, 5]), ("c", &[3, 2]), ("h0", &[1, 2, 4]), ("c0", &[1, 2, 3])],
           lstm_layer("bottom: 'x' bottom: 'c' bottom: 'h0' bottom: 'c0'", "top: 'h' top: 'hT' top: 'cT'", "num_output: 4 expose_hidden: true"),
            "the initial state c_0 (bottom 3) must have shape 1 2 4 (8), given 1 2 3 (6)",
        ),
        (vec![("x", &[0, 2, 5]), ("c", &[0, 2])], lstm_layer(xc, "top: 'h'", "num_output: 4"), "no timesteps"),
    ];
    for (inputs, layer, want) in cases {
        let e = error_of(&inputs, &layer);
        assert!(e.contains("rec") && e.contains(want), "{layer}: {e}");
    }
}

#[test]
fn a_change_in_the_number_of_timesteps_is_an_error() {
    let mut net = net_of(&[("x", &[3, 2, 5]), ("c", &[3, 2])], &lstm_layer("bottom: 'x' bottom: 'c'", "top: 'h'", "num_output: 4")).unwrap();
    net.forward().unwrap();
    let be = net.backend().clone();
    net.blob_mut("x").unwrap().reshape(&be, &[4, 2, 5]).unwrap();
    net.blob_mut("c").unwrap().reshape(&be, &[4, 2]).unwrap();
    let e = net.forward().unwrap_err().to_string();
    assert!(e.contains("rec") && e.contains("number of timesteps changed"), "{e}");
}

/// One timestep (Slice and Concat of one blob) gives the first timestep of the longer run
/// from the same zero state.
#[test]
fn a_single_timestep_matches_the_first_of_a_longer_run() {
    let dir = common::recurrent::case_dir("lstm");
    let x = common::npy(&dir, "p1_x.npy");
    let cont = common::npy(&dir, "p1_cont.npy");
    let want = common::npy(&dir, "p1_top0.npy");
    let step: usize = x.shape[1..].iter().product();
    let mut net = net_of(&[("x", &[1, 2, 3, 2]), ("c", &[1, 2])], &lstm_layer("bottom: 'x' bottom: 'c'", "top: 'h'", "num_output: 4")).unwrap();
    let be = net.backend().clone();
    for i in 0..3 {
        let p = common::npy(&dir, &format!("param_{i}.npy"));
        net.params_mut()[i].set_data(&be, &p.data).unwrap();
    }
    net.blob_mut("x").unwrap().set_data(&be, &x.data[..step]).unwrap();
    net.blob_mut("c").unwrap().set_data(&be, &cont.data[..2]).unwrap();
    net.forward().unwrap();
    let got = net.blob("h").unwrap().data_to_vec(&be).unwrap();
    for (a, e) in got.iter().zip(&want.data[..8]) {
        assert!((a - e).abs() <= 1e-5 + 1e-4 * e.abs(), "{got:?} vs {:?}", &want.data[..8]);
    }
    net.backward().unwrap();
}

/// The learnable blobs are saved under the layer's name, as Caffe's three (LSTM) blobs, and
/// load back into a new net, which then computes the same outputs; a forward-only net (a
/// solver's test net) runs too.
#[test]
fn weights_round_trip_through_a_caffemodel_and_a_forward_only_net_runs() {
    let layer =lstm_layer("bottom: 'x' bottom: 'c'", "top: 'h'", "num_output: 4 weight_filler { type: 'uniform' min: -0.5 max: 0.5 } bias_filler { type: 'constant' value: 0.25 }");
    let inputs: [(&str, &[usize]); 2] = [("x", &[3, 2, 5]), ("c", &[3, 2])];
    let mut a = net_of(&inputs, &layer).unwrap();
    let be = a.backend().clone();
    let shapes: Vec<Vec<usize>> = a.params().iter().map(|p| p.shape().to_vec()).collect();
    assert_eq!(shapes, [vec![16, 5], vec![16], vec![16, 4]]);
    assert!(a.params()[1].data_to_vec(&be).unwrap().iter().all(|&v| v == 0.25));
    let x: Vec<f32> = (0..30).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
    let c = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0];
    let run = |net: &mut Net<Cpu>| {
        net.blob_mut("x").unwrap().set_data(&be, &x).unwrap();
        net.blob_mut("c").unwrap().set_data(&be, &c).unwrap();
        net.forward().unwrap();
        net.blob("h").unwrap().data_to_vec(&be).unwrap()
    };
    let want = run(&mut a);
    let dir = std::env::temp_dir().join(format!("crema-recurrent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lstm.caffemodel");
    a.save_caffemodel(&path, false).unwrap();
    let mut b = net_of(&inputs, &layer.replace("'uniform' min: -0.5 max: 0.5", "'constant' value: 0")).unwrap();
    let report = b.load_weights_files(std::slice::from_ref(&path)).unwrap();
    assert!(format!("{report:?}").contains("rec"), "{report:?}");
    b.make_forward_only().unwrap();
    assert_eq!(run(&mut b), want);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(be.len(&b.params()[0].diff) == 0 || !b.params()[0].has_diff());
}

/// A net whose LSTM no loss depends on (a deploy net) never runs its backward: the unrolled
/// net inside keeps no gradients, and computes what it computes with them.
#[test]
fn an_lstm_no_loss_depends_on_keeps_no_gradients() {
    let layer = lstm_layer("bottom: 'x' bottom: 'c'", "top: 'h'", "num_output: 8 weight_filler { type: 'uniform' min: -0.5 max: 0.5 }");
    let inputs: [(&str, &[usize]); 2] = [("x", &[6, 3, 5]), ("c", &[6, 3])];
    let x: Vec<f32> = (0..90).map(|i| ((i * 5 % 13) as f32 - 6.0) / 6.0).collect();
    let run = |mut net: Net<Cpu>| {
        let be = net.backend().clone();
        net.blob_mut("x").unwrap().set_data(&be, &x).unwrap();
        net.blob_mut("c").unwrap().set_data(&be, &[1.0; 18]).unwrap();
        net.forward().unwrap();
        let inner = net.layers()[1].layer.inner_bytes();
        (net.blob("h").unwrap().data_to_vec(&be).unwrap(), inner)
    };
    let (want, with_gradients) = run(net_with(&inputs, &layer, true).unwrap());
    let (got, without) = run(net_with(&inputs, &layer, false).unwrap());
    assert_eq!(got, want);
    assert!(without * 3 < with_gradients * 2, "inside the layer: {without} bytes forward only, {with_gradients} with gradients");
}

/// A solver trains an LSTM (training net with its diff and data sharing on) to echo its
/// input one timestep late, which needs the carried cell: the loss falls tenfold.
#[test]
fn sgd_trains_an_lstm_to_remember_the_last_input() {
    let text = "
        layer { name: 'input' type: 'Input' top: 'x' top: 'cont' top: 'target'
                input_param { shape { dim: 8 dim: 4 dim: 1 } shape { dim: 8 dim: 4 } shape { dim: 8 dim: 4 dim: 1 } } }
        layer { name: 'lstm' type: 'LSTM' bottom: 'x' bottom: 'cont' top: 'h'
                recurrent_param { num_output: 12 weight_filler { type: 'uniform' min: -0.3 max: 0.3 } } }
        layer { name: 'out' type: 'InnerProduct' bottom: 'h' top: 'y'
                inner_product_param { num_output: 1 axis: 2 weight_filler { type: 'xavier' } } }
        layer { name: 'loss' type: 'EuclideanLoss' bottom: 'y' bottom: 'target' top: 'loss' }";
    let net: NetParameter = crema::prototxt::parse(text, "echo.prototxt").unwrap();
    let mut param = common::sgd_param(net, 0.3, 1);
    param.max_iter = Some(400);
    let mut s = crema::solver::Solver::new(Cpu::new(), param).unwrap_or_else(|e| panic!("{e}"));
    let be = s.backend().clone();
    let x: Vec<f32> = (0..32).map(|i| if (i * 13 + i / 3) % 5 < 2 { 1.0 } else { -1.0 }).collect();
    let cont: Vec<f32> = (0..32).map(|i| if i < 4 { 0.0 } else { 1.0 }).collect();
    let target: Vec<f32> = (0..32).map(|i| if i < 4 { 0.0 } else { x[i - 4] }).collect();
    let net = s.net_mut();
    for (name, v) in [("x", &x), ("cont", &cont), ("target", &target)] {
        net.blob_mut(name).unwrap().set_data(&be, v).unwrap();
    }
    s.step(1).unwrap();
    let first = s.smoothed_loss();
    s.step(399).unwrap();
    let last = s.net_mut().forward().unwrap();
    assert!(first > 0.2 && last < first / 10.0, "loss {first} -> {last}");
}

/// BVLC's LRCN captioning net (`fixtures/models`, legacy inputs, two LSTMs, the second with
/// a static input) builds with Caffe's blob shapes and generates word by word, as its
/// captioner drives it: one timestep per pass, cont 0 for the first word and 1 after, the state
/// carried between passes.
#[test]
fn bvlcs_lrcn_captioning_net_runs_word_by_word() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/lrcn_word_to_preds.deploy.prototxt");
    let param = crema::upgrade::load_net(&path).unwrap_or_else(|e| panic!("{e}")).message;
    let mut net = Net::new(Cpu::new(), &param, 1).unwrap_or_else(|e| panic!("{e}"));
    let be = net.backend().clone();
    let shapes: Vec<(String, Vec<usize>)> = net
        .param_info()
        .iter()
        .zip(net.params())
        .map(|(info, p)| (format!("{} {}", info.layer, info.index), p.shape().to_vec()))
        .collect();
    let want: [(&str, &[usize]); 10] = [
        ("embedding 0", &[8801, 1000]),
        ("lstm1 0", &[4000, 1000]),
        ("lstm1 1", &[4000]),
        ("lstm1 2", &[4000, 1000]),
        ("lstm2 0", &[4000, 1000]),
        ("lstm2 1", &[4000]),
        ("lstm2 2", &[4000, 1000]),
        ("lstm2 3", &[4000, 1000]),
        ("predict 0", &[8801, 1000]),
        ("predict 1", &[8801]),
    ];
    assert_eq!(shapes.len(), want.len(), "{shapes:?}");
    for ((got, shape), (name, dims)) in shapes.iter().zip(want) {
        assert_eq!((got.as_str(), shape.as_slice()), (name, dims));
    }
    // Small random weights, three captions at once.
    let mut rng = crema::rng::Rng::new(5);
    for p in net.params_mut() {
        let v: Vec<f32> = (0..p.count()).map(|_| rng.uniform_range(-0.05, 0.05)).collect();
        p.set_data(&be, &v).unwrap();
    }
    let features: Vec<f32> = (0..3000).map(|_| rng.uniform_range(0.0, 1.0)).collect();
    let mut words = vec![0.0f32; 3];
    let mut last = Vec::new();
    for step in 0..3 {
        let cont = if step == 0 { 0.0 } else { 1.0 };
        for (name, shape, values) in
            [("cont_sentence", vec![1, 3], vec![cont; 3]), ("input_sentence", vec![1, 3], words.clone()), ("image_features", vec![3, 1000], features.clone())]
        {
            let b = net.blob_mut(name).unwrap();
            b.reshape(&be, &shape).unwrap();
            b.set_data(&be, &values).unwrap();
        }
        net.forward().unwrap();
        let probs = net.blob("probs").unwrap();
        assert_eq!(probs.shape(), [1, 3, 8801]);
        let p = probs.data_to_vec(&be).unwrap();
        for row in p.chunks(8801) {
            let sum: f64 = row.iter().map(|&v| v as f64).sum();
            assert!((sum - 1.0).abs() < 1e-4, "step {step}: probabilities sum to {sum}");
        }
        // The next word: the most probable.
        words = p.chunks(8801).map(|row| row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b }) as f32).collect();
        assert_ne!(p, last, "step {step} gave the previous step's probabilities");
        last = p;
    }
}
