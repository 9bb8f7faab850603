//! Running the recurrent-layer fixtures (`fixtures/recurrent/<case>`) on any backend: an LSTM or
//! RNN layer fed two consecutive forward passes (so the state carried between them counts),
//! then one backward pass, compared with a PyTorch float64 reference of Caffe's formulas
//! (`tools/make_recurrent_fixtures.py`; BVLC Caffe's recurrent layers are not in the
//! conformance cases).

use super::{Tolerance, compare, npy, set_input};
use crema::backend::Backend;
use crema::net::Net;
use crema::proto::NetParameter;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The folder of fixture case `name`.
pub fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/recurrent").join(name)
}

/// The bottoms of the layer in Caffe's order, by the role names `case.json` uses.
fn bottoms(kind: &str, expose: bool, with_static: bool) -> Vec<&'static str> {
    let mut b = vec!["x", "cont"];
    if with_static {
        b.push("x_static");
    }
    if expose {
        b.push("h_0");
        if kind == "LSTM" {
            b.push("c_0");
        }
    }
    b
}

/// The net: one Input layer for the bottoms, shaped as pass 1's inputs, and the layer.
fn net_param(case: &Value, dir: &Path) -> NetParameter {
    let kind = case["type"].as_str().unwrap();
    let expose = case["expose_hidden"].as_bool().unwrap();
    let with_static = case["static"].as_bool().unwrap();
    let inputs = &case["passes"][0]["inputs"];
    let names = bottoms(kind, expose, with_static);
    let mut text = String::from("name: \"recurrent_case\"\nforce_backward: true\nlayer { name: \"input\" type: \"Input\"");
    for n in &names {
        text += &format!(" top: \"{n}\"");
    }
    text += " input_param {";
    for n in &names {
        let a = npy(dir, inputs[*n].as_str().unwrap());
        text += " shape {";
        for d in &a.shape {
            text += &format!(" dim: {d}");
        }
        text += " }";
    }
    text += " } }\n";
    text += &format!("layer {{ name: \"rec\" type: \"{kind}\"");
    for n in &names {
        text += &format!(" bottom: \"{n}\"");
    }
    text += " top: \"out\"";
    if expose {
        text += " top: \"h_T\"";
        if kind == "LSTM" {
            text += " top: \"c_T\"";
        }
    }
    text += &format!(
        " recurrent_param {{ num_output: {} expose_hidden: {expose} weight_filler {{ type: \"gaussian\" std: 0.1 }} }} }}\n",
        case["num_output"]
    );
    crema::prototxt::parse::<NetParameter>(&text, "recurrent_case.prototxt").unwrap_or_else(|e| panic!("{e}"))
}

/// Runs case `name` on `be`: the mismatches with the reference.
pub fn run_case<B: Backend>(name: &str, be: B) -> Vec<String> {
    let dir = case_dir(name);
    let case: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let tol = Tolerance::from_json(&case["tolerance"]);
    let mut net = Net::new(be, &net_param(&case, &dir), 1).unwrap_or_else(|e| panic!("{name}: {e}"));
    let be = net.backend().clone();
    let mut failures = Vec::new();
    let param_files = case["params"].as_array().unwrap();
    assert_eq!(net.params().len(), param_files.len(), "{name}: number of learnable blobs");
    for (i, f) in param_files.iter().enumerate() {
        let a = npy(&dir, f.as_str().unwrap());
        let p = &mut net.params_mut()[i];
        if p.shape() != a.shape.as_slice() {
            failures.push(format!("param {i}: shape {:?}, Caffe's is {:?}", p.shape(), a.shape));
            continue;
        }
        p.set_data(&be, &a.data).unwrap();
    }
    for (k, pass) in case["passes"].as_array().unwrap().iter().enumerate() {
        for (blob, file) in pass["inputs"].as_object().unwrap() {
            set_input(&mut net, blob, &npy(&dir, file.as_str().unwrap()));
        }
        net.forward().unwrap_or_else(|e| panic!("{name}: forward {}: {e}", k + 1));
        for (role, file) in pass["outputs"].as_object().unwrap() {
            let blob = if role == "top0" { "out" } else { role.as_str() };
            let b = net.blob(blob).unwrap();
            let got = b.data_to_vec(&be).unwrap();
            if let Some(f) = compare(&format!("pass {} {blob}", k + 1), &got, b.shape(), &npy(&dir, file.as_str().unwrap()), tol) {
                failures.push(f);
            }
        }
    }
    let back = &case["backward"];
    let top_diff = npy(&dir, back["top_diff"].as_str().unwrap());
    net.blob_mut("out").unwrap().set_diff(&be, &top_diff.data).unwrap();
    net.backward().unwrap_or_else(|e| panic!("{name}: backward: {e}"));
    for (blob, file) in back["input_grads"].as_object().unwrap() {
        let b = net.blob(blob).unwrap();
        let got = b.diff_to_vec(&be).unwrap();
        if let Some(f) = compare(&format!("diff of {blob}"), &got, b.shape(), &npy(&dir, file.as_str().unwrap()), tol) {
            failures.push(f);
        }
    }
    for (i, f) in back["param_grads"].as_array().unwrap().iter().enumerate() {
        let p = &net.params()[i];
        let got = p.diff_to_vec(&be).unwrap();
        if let Some(f) = compare(&format!("param {i} diff"), &got, p.shape(), &npy(&dir, f.as_str().unwrap()), tol) {
            failures.push(f);
        }
    }
    failures
}
