//! `crema bn-stats`: turns trained SegNet weights into inference weights by folding each BN
//! layer's data statistics into its scale and shift (SegNet's `compute_bn_statistics.py`).
//!
//! As the script does, the training net's layers (those of the TRAIN phase, so the training data
//! layer) run in the TEST phase (dropout off, centre crops), forward only.

use super::device::{DeviceOpts, Opened};
use anyhow::{bail, Context};
use crema::backend::Backend;
use crema::inference::bn_stats;
use crema::net::Net;
use crema::proto::Phase;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The training net (.prototxt): data layers feeding it, BN layers in LEARN mode.
    #[arg(long)]
    model: PathBuf,
    /// Trained weights (.caffemodel), e.g. a snapshot of `crema train`.
    #[arg(long)]
    weights: String,
    /// Where to write the weights for the inference net (.caffemodel).
    #[arg(long)]
    out: PathBuf,
    /// Batches to average over. Default: one pass over the data layer's source list.
    #[arg(long)]
    iterations: Option<usize>,
    #[command(flatten)]
    device: DeviceOpts,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    match a.device.open()? {
        Opened::Cpu(be) => go(be, &a),
        Opened::Cuda(be) => go(be, &a),
    }
}

fn go<B: Backend>(be: B, a: &Args) -> anyhow::Result<()> {
    let mut param = crema::upgrade::read_net(&a.model)?;
    let mut state = param.state.clone().unwrap_or_default();
    state.phase = Some(Phase::Train as i32);
    param.state = Some(state.clone());
    let mut net_param = crema::net::filter::filter_net(&param).with_context(|| a.model.display().to_string())?;
    for l in &mut net_param.layer {
        l.include.clear();
        l.exclude.clear();
    }
    state.phase = Some(Phase::Test as i32);
    net_param.state = Some(state);
    let model_dir = a.model.parent().map(|p| p.to_path_buf());
    let iterations = match a.iterations {
        Some(n) => n,
        None => bn_stats::epoch_iterations(&net_param, model_dir.as_deref()).with_context(|| {
            format!("{}: cannot tell how many batches make one pass over the data; give --iterations", a.model.display())
        })?,
    };
    let opts = crema::net::NetOptions::for_file(&a.model, 0);
    let mut net = Net::with_options(be, &net_param, &opts).with_context(|| format!("building {}", a.model.display()))?;
    if let Some(&i) = net.inputs().first() {
        bail!(
            "{}: `{}` is an Input blob; bn-stats runs the training net over its own data (a data layer such as DenseImageData)",
            a.model.display(),
            net.blob_name(i)
        );
    }
    let files: Vec<PathBuf> = super::split_list(&a.weights).into_iter().map(PathBuf::from).collect();
    net.load_weights_files(&files)?;
    let layers = bn_stats::bn_layers(&net)?.len();
    eprintln!("{layers} BN layers; averaging their input statistics over {iterations} batches");
    let step = (iterations / 10).max(1);
    let stats = bn_stats::collect(&mut net, iterations, |_, _| Ok(()), |i| {
        if (i + 1) % step == 0 || i + 1 == iterations {
            eprintln!("batch {}/{iterations}", i + 1);
        }
    })?;
    bn_stats::apply(&mut net, &stats, bn_stats::BN_EPS)?;
    bn_stats::write_inference_weights(&net, &a.out)?;
    let per_batch = stats.first().map_or(0, |s| s.per_batch);
    println!(
        "folded the statistics of {layers} BN layers ({iterations} batches; {per_batch} values per channel per batch in the first) into {}",
        a.out.display()
    );
    Ok(())
}
