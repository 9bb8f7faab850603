//! Argument parsing and the subcommands, each a thin function over the library. Errors from
//! the library are printed as they are (they name the file, layer or blob) and map to exit
//! codes: 1 for a failure, 2 for a bad command line (clap's convention).

mod args;
mod bn_stats;
mod common;
mod convert;
mod curves;
mod dataset;
mod device;
mod evaluate;
mod extract;
mod forward;
mod inspect;
mod segment;
mod test;
mod time;
mod train;
mod upgrade;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// crema: runs Caffe models (prototxt, caffemodel, solver files) on the CPU and on NVIDIA GPUs.
#[derive(Parser)]
#[command(name = "crema", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upgrade a net or solver file to the current format (Caffe's upgrade_net_proto_text,
    /// upgrade_net_proto_binary and upgrade_solver_proto_text in one).
    Upgrade(upgrade::Args),
    /// Show a net layer by layer: shapes, parameters, FLOPs, memory, and how weights match.
    Inspect(inspect::Args),
    /// Run a net on .npy inputs and dump every blob (and gradient) as .npy.
    Forward(forward::Args),
    /// Time forward and backward, per layer and in total (Caffe's `caffe time`).
    Time(time::Args),
    /// Train a net with a solver file, or resume training from a snapshot (Caffe's
    /// `caffe train`).
    Train(train::Args),
    /// Score a trained net over some batches in the TEST phase (Caffe's `caffe test`).
    Test(test::Args),
    /// Prepare a segmentation dataset (images + masks) for DenseImageData: resized PNGs,
    /// 0/1 labels, train.txt/test.txt and median-frequency class weights.
    Dataset(dataset::Args),
    /// Segment images with an inference net: per image the mask, the class probability map
    /// and an overlay (prediction in red, the true mask's boundary in white).
    Segment(segment::Args),
    /// Score segmentations: Dice, IoU and pixel accuracy per image and their summary, from a
    /// net and an `image mask` list or from folders of predicted and true masks.
    Evaluate(evaluate::Args),
    /// Fold BN statistics over the training data into the weights, for the inference net
    /// (SegNet's compute_bn_statistics.py).
    #[command(name = "bn-stats")]
    BnStats(bn_stats::Args),
    /// Make an LMDB (or, with -backend leveldb, LevelDB) database of Datums from listed
    /// images, for the Data layer (Caffe's `convert_imageset`).
    #[command(name = "convert_imageset", alias = "convert-imageset")]
    ConvertImageset(convert::Args),
    /// The mean of an LMDB (or LevelDB) database's images as a mean file (.binaryproto), and
    /// each channel's mean value (Caffe's `compute_image_mean`).
    #[command(name = "compute_image_mean", alias = "compute-image-mean")]
    ComputeImageMean(convert::MeanArgs),
    /// Store blobs of a net's forward passes as Datums in LMDB or LevelDB databases, one per
    /// blob (Caffe's `extract_features`).
    #[command(name = "extract_features", alias = "extract-features")]
    ExtractFeatures(extract::Args),
    /// Describe a GPU and the CUDA libraries crema loads (Caffe's `caffe device_query`).
    #[command(name = "device_query", alias = "device-query")]
    DeviceQuery(device::QueryArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(args::normalize(std::env::args_os())) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let result = match cli.command {
        Command::Upgrade(a) => upgrade::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Forward(a) => forward::run(a),
        Command::Time(a) => time::run(a),
        Command::Train(a) => train::run(a),
        Command::Test(a) => test::run(a),
        Command::Dataset(a) => dataset::run(a),
        Command::Segment(a) => segment::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::BnStats(a) => bn_stats::run(a),
        Command::DeviceQuery(a) => device::query(a),
        Command::ConvertImageset(a) => convert::run(a),
        Command::ComputeImageMean(a) => convert::mean(a),
        Command::ExtractFeatures(a) => extract::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crema: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Parses a phase name as Caffe's flags give it.
pub(crate) fn parse_phase(s: &str) -> anyhow::Result<crema::proto::Phase> {
    match s.to_ascii_uppercase().as_str() {
        "TRAIN" => Ok(crema::proto::Phase::Train),
        "TEST" => Ok(crema::proto::Phase::Test),
        _ => anyhow::bail!("unknown phase `{s}` (TRAIN or TEST)"),
    }
}

/// Splits Caffe's comma-separated lists (`--weights a,b`, `--stage x,y`).
pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect()
}
