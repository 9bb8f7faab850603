//! `crema extract_features WEIGHTS NET BLOBS DBS BATCHES DB_TYPE [CPU|GPU] [DEVICE_ID]`:
//! Caffe's `extract_features` tool, with its arguments: the named blobs of every item of
//! `BATCHES` forward passes (TEST phase, trained weights) as Datums of `float_data` in LMDB or
//! LevelDB databases (`DB_TYPE`), one per blob.

use super::device::{DeviceOpts, Opened};
use super::split_list;
use anyhow::{bail, Context};
use crema::backend::Backend;
use crema::io::db::DbKind;
use crema::net::{Net, NetOptions};
use crema::proto::{NetState, Phase};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Trained weights (.caffemodel).
    weights: PathBuf,
    /// The net whose data layer feeds the extraction (.prototxt), built in the TEST phase.
    model: PathBuf,
    /// Blobs to extract, comma-separated.
    blobs: String,
    /// One database folder per blob, comma-separated (none may exist yet).
    dbs: String,
    /// Forward passes to run: each stores its batch's items.
    num_mini_batches: usize,
    /// Database kind: lmdb or leveldb (read them back with `backend: LMDB` or `backend:
    /// LEVELDB`).
    #[arg(value_parser = |s: &str| DbKind::parse(s).map_err(|e| e.to_string()))]
    db_type: DbKind,
    /// CPU or GPU, as Caffe's tool takes it (or give --gpu N).
    mode: Option<String>,
    /// The GPU with mode GPU (default 0).
    device_id: Option<usize>,
    #[command(flatten)]
    device: DeviceOpts,
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    match a.mode.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("CPU") => {
            if a.device_id.is_some() && a.device.gpu.is_none() {
                bail!("a device id was given for the CPU; give GPU before it");
            }
        }
        Some("GPU") => {
            let id = a.device_id.unwrap_or(0).to_string();
            if a.device.gpu.as_ref().is_some_and(|g| *g != id) {
                bail!("GPU {id} and --gpu {} disagree", a.device.gpu.as_deref().unwrap_or(""));
            }
            a.device.gpu = Some(id);
        }
        Some(other) => bail!("mode `{other}`: CPU or GPU"),
    }
    match a.device.open()? {
        Opened::Cpu(be) => extract(be, &a),
        Opened::Cuda(be) => extract(be, &a),
    }
}

fn extract<B: Backend>(be: B, a: &Args) -> anyhow::Result<()> {
    let mut param = crema::upgrade::read_net(&a.model)?;
    let state = param.state.take().unwrap_or_default();
    param.state = Some(NetState { phase: Some(Phase::Test as i32), ..state });
    let mut net = Net::with_options(be, &param, &NetOptions::for_file(&a.model, 0)).with_context(|| format!("building {}", a.model.display()))?;
    net.load_weights_files(std::slice::from_ref(&a.weights))?;
    let blobs = split_list(&a.blobs);
    let dbs: Vec<PathBuf> = split_list(&a.dbs).into_iter().map(PathBuf::from).collect();
    let names: Vec<&str> = blobs.iter().map(String::as_str).collect();
    crema::inference::extract::check(&net, &names, &dbs, a.db_type)?;
    // Forward only, each blob's memory lent while its values are needed, the features kept.
    net.make_forward_only()?;
    net.set_data_sharing(true, &names)?;
    eprintln!("Extracting Features");
    let written = crema::inference::extract::extract_features(&mut net, &names, &dbs, a.db_type, a.num_mini_batches, |blob, n| {
        eprintln!("Extracted features of {n} query images for feature blob {blob}");
    });
    // Output layers (HDF5Output) write what they hold, whether extraction ended well or not.
    let finished = net.finish();
    let written = written?;
    finished?;
    for ((name, db), w) in names.iter().zip(&dbs).zip(&written) {
        eprintln!("{}: {} records of blob {name} ({w})", db.display(), w.entries());
    }
    eprintln!("Successfully extracted the features!");
    Ok(())
}
