//! Where a command runs: `--gpu`, `--precision`, `--conv-algorithms` and `--workspace-limit`
//! (shared by every command that builds a net), `CREMA_CONV_ENGINE`, and `crema device_query`.
//!
//! A command opens its backend with [`DeviceOpts::open`] and hands it to one generic body:
//!
//! ```ignore
//! match a.device.open()? {
//!     Opened::Cpu(be) => go(be, &a),
//!     Opened::Cuda(be) => go(be, &a),
//! }
//! ```

use anyhow::{bail, Context};
use crema::backend::cpu::Cpu;
use crema::backend::cuda::{self, ConvAlgorithms, ConvEngine, Cuda, CudaOptions, Precision};
use crema::backend::Storage;

/// `--precision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// TF32 tensor cores allowed in cuBLAS and cuDNN (fast; 10-bit mantissa products).
    Tf32,
    /// Strict FP32 arithmetic, for comparisons with the CPU.
    Fp32,
}

/// `--conv-algorithms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvAlgorithmsArg {
    /// The fastest deterministic cuDNN algorithm for each shape (the same gradients on
    /// every run); where cuDNN has none, im2col + GEMM (deterministic too).
    Deterministic,
    /// The fastest, deterministic or not (as PyTorch's cudnn.benchmark and Caffe's cuDNN layers
    /// choose): gradients may differ in their last bits from run to run.
    Fastest,
}

/// `--gpu`, `--precision`, `--conv-algorithms` and `--workspace-limit`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DeviceOpts {
    /// Run on the CUDA backend, on GPU N (numbered from 0). One GPU only: Caffe's `0,1` and
    /// `all` are taken when they name a single device.
    #[arg(long, value_name = "N")]
    pub gpu: Option<String>,
    /// GEMM and convolution arithmetic on the GPU: tf32 (default) or fp32 (no TF32, to compare
    /// with the CPU).
    #[arg(long, value_enum, value_name = "tf32|fp32")]
    pub precision: Option<PrecisionArg>,
    /// cuDNN convolution algorithms on the GPU: deterministic (default; reproducible gradients)
    /// or fastest (deterministic or not), as crema times them once per shape.
    #[arg(long, value_enum, value_name = "deterministic|fastest")]
    pub conv_algorithms: Option<ConvAlgorithmsArg>,
    /// The most workspace a cuDNN convolution algorithm may use on the GPU, in MiB (default: up
    /// to half the free memory). Lower it to fit a bigger net or batch, at some cost in speed;
    /// 0 allows only the algorithms that need none.
    #[arg(long, value_name = "MiB")]
    pub workspace_limit: Option<u32>,
}

/// A backend, opened.
pub enum Opened {
    Cpu(Cpu),
    Cuda(Cuda),
}

impl DeviceOpts {
    /// The precision asked for (TF32 when not given).
    pub fn precision(&self) -> Precision {
        match self.precision {
            Some(PrecisionArg::Fp32) => Precision::Fp32,
            Some(PrecisionArg::Tf32) | None => Precision::Tf32,
        }
    }

    /// The options of the CUDA backend these flags (and `CREMA_CONV_ENGINE`) ask for.
    pub fn cuda_options(&self) -> anyhow::Result<CudaOptions> {
        Ok(CudaOptions {
            precision: self.precision(),
            conv: ConvEngine::from_env()?.unwrap_or_default(),
            algorithms: match self.conv_algorithms {
                Some(ConvAlgorithmsArg::Fastest) => ConvAlgorithms::Fastest,
                Some(ConvAlgorithmsArg::Deterministic) | None => ConvAlgorithms::Deterministic,
            },
            workspace_limit: self.workspace_limit.map(|mib| mib as usize * (1 << 20)),
        })
    }

    /// The CPU without `--gpu`; with it, the CUDA backend on that GPU.
    pub fn open(&self) -> anyhow::Result<Opened> {
        match &self.gpu {
            None => {
                let flags = [
                    (self.precision.is_some(), "--precision"),
                    (self.conv_algorithms.is_some(), "--conv-algorithms"),
                    (self.workspace_limit.is_some(), "--workspace-limit"),
                ];
                for (given, flag) in flags {
                    if given {
                        eprintln!("note: {flag} applies to GPUs only; running on the CPU (give --gpu N to use one)");
                    }
                }
                Ok(Opened::Cpu(Cpu::new()))
            }
            Some(spec) => {
                let id = single_gpu(spec)?;
                let be = Cuda::with_options(id, self.cuda_options()?).with_context(|| format!("GPU {id}"))?;
                Ok(Opened::Cuda(be))
            }
        }
    }
}

/// The GPU ids of a `--gpu` value: `N`, `N,M,...` or `all` (every GPU the driver sees).
pub fn gpu_ids(spec: &str) -> anyhow::Result<Vec<usize>> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("all") {
        let count = cuda::device_count().context("--gpu all")?;
        if count == 0 {
            bail!("--gpu all: the CUDA driver sees no GPU");
        }
        return Ok((0..count).collect());
    }
    let mut ids = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let id = part.parse::<usize>().map_err(|_| {
            anyhow::anyhow!("--gpu {spec}: `{part}` is not a GPU id (give a number such as 0, a comma-separated list, or all)")
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The one GPU a `--gpu` value names, or an error: crema trains and runs on one GPU.
pub fn single_gpu(spec: &str) -> anyhow::Result<usize> {
    let ids = gpu_ids(spec)?;
    match ids.as_slice() {
        [id] => Ok(*id),
        _ => bail!(
            "--gpu {spec} names {} GPUs ({}): crema runs on one GPU (multi-GPU training is not supported); name one id, e.g. --gpu {}",
            ids.len(),
            ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
            ids.first().copied().unwrap_or(0)
        ),
    }
}

/// Bytes as MiB.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// `Peak device memory: X MiB`, for backends that count their memory (the GPU's), and the
/// part of it the shared workspace holds (it only grows, so its size now is its peak). With
/// `first_step`, the peak of a first step after which the high-water mark was reset
/// ([`Storage::reset_memory_peak`]): the peak is the larger, and the one since is shown too.
pub fn print_peak_device_memory<S: Storage>(be: &S, to_stderr: bool, first_step: Option<usize>) {
    let Some((_, peak)) = be.memory_usage() else { return };
    let mut lines = vec![format!("Peak device memory: {:.1} MiB", mib(peak.max(first_step.unwrap_or(0))))];
    if first_step.is_some() {
        lines.push(format!(
            "Peak device memory after the first step: {:.1} MiB (the first step also times the convolution algorithms)",
            mib(peak)
        ));
    }
    if let Some(ws) = be.workspace_bytes() {
        lines.push(format!(
            "Device workspace: {:.1} MiB of it (cuDNN's convolution workspace and the kernels' scratch, shared by all layers)",
            mib(ws)
        ));
    }
    for line in lines {
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

/// Peak resident memory of this process, from /proc (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `crema device_query`.
#[derive(clap::Args)]
pub struct QueryArgs {
    /// GPU(s) to describe: N, a comma-separated list, or all.
    #[arg(long, default_value = "0", value_name = "N")]
    gpu: String,
}

/// Caffe's `caffe device_query`: the GPU, the driver, and the CUDA libraries crema loaded.
pub fn query(a: QueryArgs) -> anyhow::Result<()> {
    let ids = gpu_ids(&a.gpu)?;
    for (k, &id) in ids.iter().enumerate() {
        if k > 0 {
            println!();
        }
        let info = cuda::device_query(id).with_context(|| format!("querying GPU {id}"))?;
        print!("{info}");
    }
    Ok(())
}
