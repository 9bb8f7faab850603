//! `crema test`: Caffe's `caffe test` — runs a net in the TEST phase with trained weights for
//! some batches and reports the mean of each output (loss-weighted for losses). Per-batch
//! lines go to stderr, as Caffe logs them; the summary goes to stdout.

use super::device::{DeviceOpts, Opened};
use super::split_list;
use anyhow::{bail, Context};
use crema::backend::Backend;
use crema::net::{Net, NetOptions};
use crema::proto::{NetState, Phase};
use crema::solver::monitor::fmt_g;
use crema::solver::scores::{describe, evaluate};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The net definition (.prototxt).
    #[arg(long)]
    model: PathBuf,
    /// Trained weights, comma-separated files loaded in order.
    #[arg(long)]
    weights: Option<String>,
    /// Number of batches (forward passes) to average over.
    #[arg(long, default_value_t = 50)]
    iterations: u32,
    #[command(flatten)]
    device: DeviceOpts,
    /// NetState level.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    level: i32,
    /// NetState stages, comma-separated.
    #[arg(long, default_value = "")]
    stage: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let Some(weights) = &a.weights else {
        bail!("--weights is required: crema test scores a trained model (Caffe: \"Need model weights to score.\")");
    };
    if a.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    match a.device.open()? {
        Opened::Cpu(be) => score(be, &a, weights),
        Opened::Cuda(be) => score(be, &a, weights),
    }
}

fn score<B: Backend>(be: B, a: &Args, weights: &str) -> anyhow::Result<()> {
    let mut param = crema::upgrade::read_net(&a.model)?;
    let mut state = param.state.take().unwrap_or_default();
    state.phase = Some(Phase::Test as i32);
    state.level = Some(a.level);
    state.stage.extend(split_list(&a.stage));
    param.state = Some(NetState { ..state });
    let mut net = Net::with_options(be, &param, &NetOptions::for_file(&a.model, 0)).with_context(|| format!("building {}", a.model.display()))?;
    let files: Vec<PathBuf> = split_list(weights).into_iter().map(PathBuf::from).collect();
    net.load_weights_files(&files)?;
    // Scoring runs forward only and reads the outputs alone (as `caffe test`): no gradients,
    // nothing kept for backward, and each blob's memory lent only while its values are needed.
    net.make_forward_only()?;
    net.set_data_sharing(true, &[])?;
    eprintln!("Running for {} iterations.", a.iterations);
    let result = evaluate(&mut net, a.iterations, |i, scores| {
        for s in scores {
            eprintln!("Batch {i}, {} = {}", s.name, fmt_g(s.value as f64));
        }
    });
    // Output layers (HDF5Output) write what they hold, whether scoring ended well or not.
    let finished = net.finish();
    let result = result?;
    finished?;
    println!("Loss: {}", fmt_g(result.loss as f64));
    for s in &result.scores {
        println!("{}", describe(s));
    }
    Ok(())
}
