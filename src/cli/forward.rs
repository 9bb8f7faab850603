//! `crema forward`: runs a net on inputs from .npy files and dumps every blob (and, with
//! `--backward`, every gradient) as .npy — the way to check crema against numpy, pycaffe or
//! anything else.

use super::device::{DeviceOpts, Opened};
use super::{common::NetOpts, parse_phase};
use anyhow::{bail, Context};
use crema::backend::Backend;
use crema::net::Net;
use crema::io::{read_npy_with, write_npy, NpyOptions};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    net: NetOpts,
    #[command(flatten)]
    device: DeviceOpts,
    /// Phase to build the net in.
    #[arg(long, default_value = "TEST")]
    phase: String,
    /// Sets an input blob: NAME=FILE.npy (the blob takes the array's shape). Repeatable.
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<String>,
    /// Sets the diff of an output blob before backward: NAME=FILE.npy (same shape). Repeatable.
    #[arg(long = "top-diff", alias = "top_diff", value_name = "NAME=FILE")]
    top_diffs: Vec<String>,
    /// Also run backward (as if force_backward were set) and dump the gradients.
    #[arg(long)]
    backward: bool,
    /// Folder to write data/<blob>.npy, diff/<blob>.npy and param_diff/<layer>/<i>.npy into.
    #[arg(long)]
    dump: PathBuf,
}

fn pair(s: &str) -> anyhow::Result<(String, PathBuf)> {
    match s.split_once('=') {
        Some((n, f)) if !n.is_empty() && !f.is_empty() => Ok((n.to_string(), PathBuf::from(f))),
        _ => bail!("expected NAME=FILE.npy, got `{s}`"),
    }
}

/// A blob or layer name as a file name: '/' becomes "__".
fn file_name(name: &str) -> String {
    name.replace('/', "__")
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let phase = parse_phase(&a.phase)?;
    match a.device.open()? {
        Opened::Cpu(be) => go(be, &a, phase),
        Opened::Cuda(be) => go(be, &a, phase),
    }
}

fn go<B: Backend>(be: B, a: &Args, phase: crema::proto::Phase) -> anyhow::Result<()> {
    let mut net = a.net.build(be, phase, |p| {
        if a.backward {
            p.force_backward = Some(true);
        }
    })?;
    let be = net.backend().clone();
    for spec in &a.inputs {
        let (name, file) = pair(spec)?;
        let arr = read_npy_with(&file, NpyOptions { integers: true })?;
        let Some(i) = net.blob_index(&name) else { bail!("--input {name}: the net has no blob `{name}`") };
        if !net.inputs().contains(&i) {
            bail!("--input {name}: `{name}` is not an input of the net (inputs: {})", names(&net, net.inputs()));
        }
        let blob = net.blob_mut(&name).expect("index found above");
        blob.reshape(&be, &arr.shape).with_context(|| format!("{}", file.display()))?;
        blob.set_data(&be, &arr.data)?;
    }
    let ran = net.forward();
    // Output layers (HDF5Output) write what they hold, whether the pass ended well or not.
    let finished = net.finish();
    ran?;
    finished?;
    let data_dir = a.dump.join("data");
    create(&data_dir)?;
    for (i, b) in net.blobs().iter().enumerate() {
        write_npy(data_dir.join(format!("{}.npy", file_name(net.blob_name(i)))), b.shape(), &b.data_to_vec(&be)?)?;
    }
    if !a.backward {
        if !a.top_diffs.is_empty() {
            bail!("--top-diff needs --backward");
        }
        return Ok(());
    }
    for spec in &a.top_diffs {
        let (name, file) = pair(spec)?;
        let arr = read_npy_with(&file, NpyOptions::default())?;
        let Some(blob) = net.blob_mut(&name) else { bail!("--top-diff {name}: the net has no blob `{name}`") };
        if arr.shape != blob.shape() {
            bail!("{}: shape {:?}, but blob `{name}` has shape {:?}", file.display(), arr.shape, blob.shape());
        }
        blob.set_diff(&be, &arr.data)?;
    }
    net.clear_param_diffs()?;
    net.backward()?;
    let diff_dir = a.dump.join("diff");
    create(&diff_dir)?;
    for (i, b) in net.blobs().iter().enumerate() {
        if b.has_diff() {
            write_npy(diff_dir.join(format!("{}.npy", file_name(net.blob_name(i)))), b.shape(), &b.diff_to_vec(&be)?)?;
        }
    }
    for (li, l) in net.layers().iter().enumerate() {
        let params = net.layer_params(li);
        if params.is_empty() {
            continue;
        }
        let dir = a.dump.join("param_diff").join(file_name(l.name()));
        create(&dir)?;
        for (k, p) in params.iter().enumerate() {
            write_npy(dir.join(format!("{k}.npy")), p.shape(), &p.diff_to_vec(&be)?)?;
        }
    }
    Ok(())
}

fn names<B: Backend>(net: &Net<B>, ids: &[usize]) -> String {
    ids.iter().map(|&i| net.blob_name(i)).collect::<Vec<_>>().join(", ")
}

fn create(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
