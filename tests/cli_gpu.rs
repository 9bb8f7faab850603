//! `--gpu`, `--precision` and `device_query` through the real binary.
//!
//! - Without CUDA (no CREMA_CUDA_LIB_PATH and no CUDA driver on the machine): every command
//!   given `--gpu 0` fails with exit code 1 and a message naming the missing library and where
//!   crema looked. Says SKIPPED on a machine where crema finds a CUDA driver by itself.
//! - Bad `--gpu` and `--precision` values fail the same way everywhere.
//! - Under the CUDA emulator (`tools/cuda_emu/build.sh target/cuda-emu`; NVRTC installed):
//!   `device_query` names it, and `forward`, `train` and `test` on a tiny net give the CPU's
//!   numbers with `--precision fp32` (on the engine the test run's CREMA_CONV_ENGINE names: cuDNN
//!   by default); `time
//!   --train` and `inspect` report device memory; on a nearly full device (the emulator's
//!   `EMU_CUDA_ALLOC_LIMIT`) cuDNN still gets the algorithms that fit. Says SKIPPED where the
//!   emulator or NVRTC is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

const CREMA: &str = env!("CARGO_BIN_EXE_crema");

/// Where crema may run: the machine as it is, but never pointed at the emulator; or the emulator.
#[derive(Clone, Copy)]
enum Env<'a> {
    NoEmulator,
    Emulator(&'a Path),
    /// The emulator with convolutions on cuDNN, where every device allocation over this many
    /// bytes fails as out of memory.
    NearlyFull(&'a Path, usize),
}

fn crema(dir: &Path, env: Env, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(CREMA);
    cmd.args(args).current_dir(dir).env_remove("RUST_BACKTRACE");
    match env {
        Env::NoEmulator => {
            cmd.env_remove("CREMA_CUDA_LIB_PATH").env_remove("CREMA_CONV_ENGINE");
        }
        // The engine the test run names (tools/cuda_emu/check.sh runs both), else cuDNN.
        Env::Emulator(lib) => {
            cmd.env("CREMA_CUDA_LIB_PATH", lib);
        }
        Env::NearlyFull(lib, bytes) => {
            cmd.env("CREMA_CUDA_LIB_PATH", lib).env("CREMA_CONV_ENGINE", "cudnn").env("EMU_CUDA_ALLOC_LIMIT", bytes.to_string());
        }
    }
    let out = cmd.output().expect("run crema");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// conv, ReLU, max pooling, inner product and softmax loss on `data` and `label`, either from
/// Input layers (for `forward`) or from DummyData (for `train`, `test` and `time`).
fn net(dummy: bool) -> String {
    let inputs = if dummy {
        r#"layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 2 dim: 8 dim: 8 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "uniform" min: 0 max: 2.99 } } }"#
    } else {
        r#"layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 2 dim: 8 dim: 8 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 4 } } }"#
    };
    format!(
        r#"name: "tiny"
{inputs}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 weight_filler {{ type: "gaussian" std: 0.3 }} bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "conv" top: "conv" }}
layer {{ name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"#
    )
}

/// A folder with net.prototxt (DummyData), input.prototxt (Input layers) and solver.prototxt
/// (3 iterations of SGD with momentum and weight decay, snapshot at the end).
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("net.prototxt"), net(true)).unwrap();
    std::fs::write(dir.path().join("input.prototxt"), net(false)).unwrap();
    std::fs::write(
        dir.path().join("solver.prototxt"),
        "net: \"net.prototxt\"\ndisplay: 1\nmax_iter: 3\nrandom_seed: 7\nbase_lr: 0.05\nlr_policy: \"fixed\"\n\
         momentum: 0.9\nweight_decay: 0.0005\nsnapshot_prefix: \"snap\"\n",
    )
    .unwrap();
    dir
}

/// The emulator's folder, or None (with SKIPPED and how to get it) where it is not built or
/// NVRTC cannot be loaded.
fn emulator() -> Option<PathBuf> {
    let bin = Path::new(CREMA);
    let mut dirs: Vec<PathBuf> = bin.ancestors().nth(2).map(|t| vec![t.join("cuda-emu")]).unwrap_or_default();
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cuda-emu"));
    let Some(dir) = dirs.into_iter().find(|d| d.join("libcuda.so.1").is_file()) else {
        println!("SKIPPED: the CUDA emulator is not built (tools/cuda_emu/build.sh target/cuda-emu)");
        return None;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = crema(tmp.path(), Env::Emulator(&dir), &["device_query"]);
    if code != 0 && err.contains("NVRTC") {
        println!("SKIPPED: NVRTC cannot be loaded (python3 -m pip install --user nvidia-cuda-nvrtc): {err}");
        return None;
    }
    assert_eq!(code, 0, "device_query under the emulator failed:\n{out}{err}");
    Some(dir)
}

/// Whether crema finds a real CUDA driver without being told where: then "no CUDA" cannot be
/// tested here.
fn machine_has_cuda() -> bool {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, _) = crema(tmp.path(), Env::NoEmulator, &["device_query"]);
    if code == 0 {
        println!("SKIPPED: this machine has CUDA ({}), so the no-CUDA errors cannot be checked", out.lines().nth(1).unwrap_or(""));
    }
    code == 0
}

/// Every command that takes --gpu, as run in `folder()` (files that the command would read
/// only after opening the GPU need not exist).
fn gpu_commands(gpu: &str) -> Vec<Vec<String>> {
    let cmds: Vec<Vec<&str>> = vec![
        vec!["train", "--solver", "solver.prototxt"],
        vec!["test", "--model", "net.prototxt", "--weights", "w.caffemodel", "--iterations", "1"],
        vec!["time", "--model", "net.prototxt", "--iterations", "1"],
        vec!["time", "--model", "net.prototxt", "--iterations", "1", "--train"],
        vec!["forward", "--model", "input.prototxt", "--dump", "dump"],
        vec!["inspect", "--model", "net.prototxt"],
        vec!["segment", "--model", "input.prototxt", "--weights", "w.caffemodel", "image.png", "--out", "seg"],
        vec!["evaluate", "--model", "input.prototxt", "--weights", "w.caffemodel", "--source", "list.txt", "--out", "eval"],
        vec!["bn-stats", "--model", "net.prototxt", "--weights", "w.caffemodel", "--out", "o.caffemodel", "--iterations", "1"],
    ];
    cmds.into_iter()
        .map(|c| c.into_iter().map(String::from).chain(["--gpu".to_string(), gpu.to_string()]).collect())
        .collect()
}

fn run_all(dir: &Path, env: Env, cmd: &[String]) -> (i32, String, String) {
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    crema(dir, env, &args)
}

#[test]
fn without_cuda_gpu_commands_fail_naming_the_missing_library() {
    if machine_has_cuda() {
        return;
    }
    let dir = folder();
    let d = dir.path();
    std::fs::write(d.join("list.txt"), "image.png mask.png\n").unwrap();
    let missing = |err: &str, what: &str| {
        assert!(err.contains("libcuda.so.1"), "{what}: the message does not name the driver library:\n{err}");
        assert!(err.contains("CREMA_CUDA_LIB_PATH") && err.contains("crema looked in"), "{what}: the message does not say where crema looked:\n{err}");
        assert!(!err.contains("panicked"), "{what}: panicked:\n{err}");
    };
    for cmd in gpu_commands("0") {
        let (code, _, err) = run_all(d, Env::NoEmulator, &cmd);
        assert_eq!(code, 1, "{cmd:?}: {err}");
        missing(&err, &cmd.join(" "));
    }
    for args in [&["device_query"][..], &["device_query", "--gpu", "1"], &["device_query", "--gpu", "all"]] {
        let (code, _, err) = crema(d, Env::NoEmulator, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        missing(&err, &args.join(" "));
    }
    // solver_mode: GPU selects the GPU without --gpu (Caffe's rule), and says so when it fails.
    let text = std::fs::read_to_string(d.join("solver.prototxt")).unwrap();
    std::fs::write(d.join("gpu_solver.prototxt"), format!("{text}solver_mode: GPU\ndevice_id: 0\n")).unwrap();
    let (code, _, err) = crema(d, Env::NoEmulator, &["train", "--solver", "gpu_solver.prototxt"]);
    assert_eq!(code, 1, "{err}");
    missing(&err, "train with solver_mode: GPU");
    assert!(err.contains("solver_mode: GPU") && err.contains("solver_mode: CPU"), "{err}");
    // Training on the CPU still works there, and says how long it took and how much memory.
    let (code, _, err) = crema(d, Env::NoEmulator, &["train", "--solver", "solver.prototxt"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Trained 3 iterations in ") && err.contains(" ms/iter)"), "{err}");
    assert!(err.contains("Peak resident memory: ") && !err.contains("Peak device memory"), "{err}");
}

#[test]
fn several_gpus_bad_ids_and_bad_precisions_are_refused() {
    let dir = folder();
    let d = dir.path();
    std::fs::write(d.join("list.txt"), "image.png mask.png\n").unwrap();
    for cmd in gpu_commands("0,1") {
        let (code, _, err) = run_all(d, Env::NoEmulator, &cmd);
        assert_eq!(code, 1, "{cmd:?}: {err}");
        assert!(err.contains("--gpu 0,1 names 2 GPUs") && err.contains("multi-GPU training is not supported") && err.contains("name one id"), "{cmd:?}: {err}");
    }
    let (code, _, err) = crema(d, Env::NoEmulator, &["time", "--model", "net.prototxt", "--gpu", "first"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`first` is not a GPU id"), "{err}");
    let (code, _, err) = crema(d, Env::NoEmulator, &["forward", "--model", "input.prototxt", "--dump", "x", "--gpu", "0", "--precision", "bogus"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value 'bogus'") && err.contains("--precision") && err.contains("tf32") && err.contains("fp32"), "{err}");
    let (code, _, err) = crema(d, Env::NoEmulator, &["train", "--solver", "solver.prototxt", "--precision", "fp16"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value 'fp16'"), "{err}");
    let (code, _, err) = crema(d, Env::NoEmulator, &["time", "--model", "net.prototxt", "--gpu", "0", "--conv-algorithms", "random"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value 'random'") && err.contains("deterministic") && err.contains("fastest"), "{err}");
    let mut cmd = Command::new(CREMA);
    let out = cmd
        .args(["inspect", "--model", "net.prototxt", "--gpu", "0"])
        .current_dir(d)
        .env("CREMA_CONV_ENGINE", "winograd")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CREMA_CONV_ENGINE=winograd") && err.contains("im2col"), "{err}");
}

#[test]
fn device_query_names_the_emulator() {
    let Some(emu) = emulator() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = crema(dir.path(), Env::Emulator(&emu), &["device_query", "--gpu", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("Name:") && l.ends_with("crema CUDA emulator")), "{out}");
    for field in ["Compute capability:        9.0", "Total global memory:", "Multiprocessors:", "CUDA driver version:", "NVRTC version:", "cuBLAS version:", "cuDNN version:"] {
        assert!(out.contains(field), "no `{field}` in:\n{out}");
    }
    assert!(out.contains(&emu.join("libcuda.so.1").display().to_string()), "the driver's file is not listed:\n{out}");
    let (code, _, err) = crema(dir.path(), Env::Emulator(&emu), &["device_query", "--gpu", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the driver sees 1 GPU"), "{err}");
}

/// Relative difference, with a floor for values near zero.
fn close(a: f32, b: f32, rel: f32) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-3)
}

/// The loss column of a training-curves CSV.
fn losses(csv: &Path) -> Vec<f32> {
    let text = std::fs::read_to_string(csv).unwrap_or_else(|e| panic!("{}: {e}", csv.display()));
    text.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect()
}

#[test]
fn training_on_the_gpu_gives_the_cpus_loss_curve() {
    let Some(emu) = emulator() else { return };
    let (cpu_dir, gpu_dir) = (folder(), folder());
    let (code, _, cpu_err) = crema(cpu_dir.path(), Env::NoEmulator, &["train", "--solver", "solver.prototxt"]);
    assert_eq!(code, 0, "{cpu_err}");
    let (code, _, gpu_err) =
        crema(gpu_dir.path(), Env::Emulator(&emu), &["train", "--solver", "solver.prototxt", "--gpu", "0", "--precision", "fp32"]);
    assert_eq!(code, 0, "{gpu_err}");
    assert!(gpu_err.contains("Using crema CUDA emulator (GPU 0") && gpu_err.contains("strict FP32"), "{gpu_err}");
    assert!(gpu_err.contains("Trained 3 iterations in ") && gpu_err.contains(" ms/iter)"), "{gpu_err}");
    assert!(gpu_err.lines().any(|l| l.starts_with("Peak device memory: ") && l.ends_with(" MiB")), "{gpu_err}");
    assert!(gpu_err.lines().any(|l| l.starts_with("Device workspace: ") && l.contains(" MiB of it")), "{gpu_err}");
    assert!(!cpu_err.contains("Device workspace"), "{cpu_err}");

    let (cpu, gpu) = (losses(&cpu_dir.path().join("snap_train.csv")), losses(&gpu_dir.path().join("snap_train.csv")));
    assert_eq!(cpu.len(), 3, "{cpu:?}");
    assert_eq!(gpu.len(), cpu.len(), "GPU {gpu:?} vs CPU {cpu:?}");
    for (i, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        assert!(close(*c, *g, 1e-4), "iteration {i}: GPU loss {g} vs CPU loss {c} (GPU {gpu:?}, CPU {cpu:?})");
    }
    // Not a flat curve that would agree by accident.
    assert!(cpu.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-3), "{cpu:?}");

    // `crema test` with the trained weights: the same loss on both.
    let weights = cpu_dir.path().join("snap_iter_3.caffemodel").display().to_string();
    let args = ["test", "--model", "net.prototxt", "--weights", weights.as_str(), "--iterations", "1"];
    let (code, cpu_out, err) = crema(cpu_dir.path(), Env::NoEmulator, &args);
    assert_eq!(code, 0, "{err}");
    // (and the algorithm policy reaches the backend: fastest adds no error here)
    let gpu_args: Vec<&str> = args.iter().copied().chain(["--gpu", "0", "--precision", "fp32", "--conv-algorithms", "fastest"]).collect();
    let (code, gpu_out, err) = crema(cpu_dir.path(), Env::Emulator(&emu), &gpu_args);
    assert_eq!(code, 0, "{err}");
    let loss = |out: &str| -> f32 {
        let line = out.lines().find(|l| l.starts_with("Loss: ")).unwrap_or_else(|| panic!("no loss in {out}"));
        line["Loss: ".len()..].trim().parse().unwrap()
    };
    assert!(close(loss(&cpu_out), loss(&gpu_out), 1e-4), "test: CPU {cpu_out} vs GPU {gpu_out}");
}

#[test]
fn forward_on_the_gpu_dumps_the_cpus_blobs_and_gradients() {
    let Some(emu) = emulator() else { return };
    let dir = folder();
    let d = dir.path();
    let mut rng = crema::rng::Rng::new(3);
    let data: Vec<f32> = (0..4 * 2 * 8 * 8).map(|_| rng.uniform_range(-1.0, 1.0)).collect();
    crema::io::write_npy(d.join("data.npy"), &[4, 2, 8, 8], &data).unwrap();
    crema::io::write_npy(d.join("label.npy"), &[4], &[0.0, 2.0, 1.0, 2.0]).unwrap();
    let run = |env: Env, dump: &str, extra: &[&str]| {
        let mut args = vec!["forward", "--model", "input.prototxt", "--input", "data=data.npy", "--input", "label=label.npy", "--backward", "--dump", dump];
        args.extend_from_slice(extra);
        let (code, _, err) = crema(d, env, &args);
        assert_eq!(code, 0, "{args:?}: {err}");
    };
    run(Env::NoEmulator, "cpu", &[]);
    run(Env::Emulator(&emu), "gpu", &["--gpu", "0", "--precision", "fp32"]);
    let files = [
        "data/loss.npy",
        "data/ip.npy",
        "data/pool.npy",
        "diff/data.npy",
        "diff/conv.npy",
        "param_diff/conv/0.npy",
        "param_diff/conv/1.npy",
        "param_diff/ip/0.npy",
    ];
    for f in files {
        let cpu = crema::io::read_npy(d.join("cpu").join(f)).unwrap();
        let gpu = crema::io::read_npy(d.join("gpu").join(f)).unwrap();
        assert_eq!(cpu.shape, gpu.shape, "{f}");
        let scale = cpu.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (c, g)) in cpu.data.iter().zip(&gpu.data).enumerate() {
            assert!((c - g).abs() <= 1e-4 * c.abs().max(1e-2 * scale), "{f}[{i}]: GPU {g} vs CPU {c}");
        }
    }
    let loss = crema::io::read_npy(d.join("cpu/data/loss.npy")).unwrap().data[0];
    assert!(loss.is_finite() && loss > 0.1, "{loss}");
}

/// `crema device_query` with the CUDA libraries of `lib_path` and `LD_LIBRARY_PATH` set to
/// `ld_path` (unset for `None`): asserts that it failed with exit code 1, returns its stderr.
fn failed_device_query(lib_path: &Path, ld_path: Option<&str>) -> String {
    let dir = folder();
    let mut cmd = Command::new(CREMA);
    cmd.args(["device_query"]).current_dir(dir.path()).env("CREMA_CUDA_LIB_PATH", lib_path);
    match ld_path {
        Some(p) => cmd.env("LD_LIBRARY_PATH", p),
        None => cmd.env_remove("LD_LIBRARY_PATH"),
    };
    let out = cmd.output().expect("run crema");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

#[test]
fn a_stub_driver_ahead_on_the_library_path_is_named_not_called() {
    let Some(emu) = emulator() else { return };
    let stub = emu.join("stub");
    assert!(stub.join("libcuda.so").is_file(), "tools/cuda_emu/build.sh builds a stub libcuda.so in {}", stub.display());
    let path = std::env::var_os("LD_LIBRARY_PATH").map(|p| format!("{}:{}", stub.display(), p.to_string_lossy())).unwrap_or_else(|| stub.display().to_string());
    let err = failed_device_query(&emu, Some(&path));
    // crema opened the emulator's driver; cudarc, by name, would have reached the stub.
    assert!(err.contains(&emu.join("libcuda.so.1").display().to_string()) && err.contains("stub") && err.contains("LD_LIBRARY_PATH"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_driver_cudarc_cannot_open_by_name_is_an_error_not_an_abort() {
    let Some(emu) = emulator() else { return };
    let renamed = emu.join("renamed");
    assert!(renamed.join("libcuda.so.1").is_file(), "tools/cuda_emu/build.sh builds a renamed driver in {}", renamed.display());
    let err = failed_device_query(&renamed, None);
    // crema opened the driver by its path; cudarc, by name, finds none (or, on a machine with a
    // driver installed, another file): either way an error naming the file, never a panic.
    assert!(err.contains(&renamed.join("libcuda.so.1").display().to_string()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn time_train_and_inspect_report_device_memory() {
    let Some(emu) = emulator() else { return };
    let dir = folder();
    let d = dir.path();
    let (code, out, err) = crema(d, Env::Emulator(&emu), &["time", "--model", "net.prototxt", "--gpu", "0", "--train", "--iterations", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Training steps (2 iterations, crema CUDA emulator"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("Average training step: ") && l.contains(" ms (median ")), "{out}");
    assert!(out.contains("Peak resident memory: "), "{out}");
    let mib_after = |prefix: &str| -> f64 {
        let line = out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in {out}"));
        line.split(" MiB").next().unwrap_or_else(|| panic!("{line}")).parse().unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let (peak, steady) = (mib_after("Peak device memory: "), mib_after("Peak device memory after the first step: "));
    // The first step also times the convolution algorithms, in memory of its own: the peak
    // counts it, the steady state does not.
    assert!(steady > 0.0 && peak >= steady, "{out}");
    // One search per convolution shape and pass: the net's one convolution, forward and
    // backward filter (its input takes no gradient).
    assert!(out.lines().any(|l| l.starts_with("cuDNN algorithm searches: 2 (")), "{out}");

    let (code, out, err) = crema(d, Env::NoEmulator, &["time", "--model", "net.prototxt", "--train", "--iterations", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Average training step: ") && !out.contains("Peak device memory"), "{out}");

    let (code, out, err) = crema(d, Env::Emulator(&emu), &["inspect", "--model", "net.prototxt", "--phase", "TRAIN", "--gpu", "0"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("device memory:")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("MiB once built;") && line.contains("MiB after one forward/backward (peak "), "{line}");
}

#[test]
fn a_nearly_full_gpu_still_gets_the_algorithms_that_fit() {
    let Some(emu) = emulator() else { return };
    let dir = folder();
    let d = dir.path();
    let lines = |env| -> Vec<String> {
        let (code, out, err) = crema(d, env, &["time", "--model", "net.prototxt", "--gpu", "0", "--train", "--iterations", "1", "--algorithms"]);
        assert_eq!(code, 0, "{err}");
        let mut v: Vec<String> = out.lines().chain(err.lines()).filter(|l| l.contains(", group 1 ")).map(|l| l.split(", group 1 ").nth(1).unwrap().to_string()).collect();
        v.sort();
        v
    };
    // Allocations over 16 KiB fail: the emulator's FFT and Winograd candidates for this net
    // (32 and 36 KiB of workspace) cannot be timed, and the shared workspace cannot take its
    // usual 1 MiB rounding. The search times the candidates that fit, and the choice is the
    // one made with room to spare (it needs 5,632 and 1,312 bytes); the passes run in a
    // workspace of the exact size.
    let roomy = lines(Env::NearlyFull(&emu, usize::MAX));
    assert_eq!(roomy.len(), 2, "{roomy:?}");
    assert!(roomy.iter().all(|l| !l.contains("no cuDNN algorithm") && !l.contains(" 0 bytes of workspace")), "{roomy:?}");
    assert_eq!(lines(Env::NearlyFull(&emu, 16 << 10)), roomy);
}

#[test]
fn a_workspace_limit_keeps_cudnn_to_algorithms_within_it() {
    let Some(emu) = emulator() else { return };
    let dir = folder();
    let d = dir.path();
    // The workspace of each algorithm chosen, as `time --algorithms` lists them, and the passes
    // that cuDNN did not run (their lines).
    let chosen = |extra: &[&str]| -> (Vec<u64>, Vec<String>) {
        let args: Vec<&str> = ["time", "--model", "net.prototxt", "--gpu", "0", "--train", "--iterations", "1", "--algorithms"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let (code, out, err) = crema(d, Env::Emulator(&emu), &args);
        assert_eq!(code, 0, "{err}");
        let lines: Vec<&str> = out.lines().chain(err.lines()).filter(|l| l.contains(", group 1 ")).collect();
        let refused: Vec<String> = lines.iter().filter(|l| l.contains("no cuDNN algorithm")).map(|l| l.to_string()).collect();
        let sizes: Vec<u64> = lines
            .iter()
            .filter(|l| !l.contains("no cuDNN algorithm"))
            .filter_map(|l| l.split(", ").find_map(|f| f.strip_suffix(" bytes of workspace")))
            .map(|b| b.parse().unwrap())
            .collect();
        // Forward and backward filter (the data takes no gradient).
        assert_eq!(sizes.len() + refused.len(), 2, "one line per pass:\n{out}{err}");
        (sizes, refused)
    };
    // Without a limit some pass takes an algorithm that needs workspace (as the emulator's lists
    // offer), so the limit below has something to change.
    let (sizes, refused) = chosen(&[]);
    assert!(sizes.iter().any(|&b| b > 0) && refused.is_empty(), "{sizes:?} {refused:?}");
    assert_eq!(chosen(&["--workspace-limit", "0", "--conv-algorithms", "fastest"]), (vec![0, 0], vec![]));
    // The emulator's only backward-filter algorithm needing no workspace is non-deterministic:
    // by default that pass runs as im2col + GEMM rather than give up reproducible gradients.
    let (sizes, refused) = chosen(&["--workspace-limit", "0"]);
    assert_eq!(sizes, [0]);
    assert!(
        refused.len() == 1
            && refused[0].contains("BackwardFilter: no cuDNN algorithm")
            && refused[0].contains("ALGO_0): non-deterministic (`--conv-algorithms fastest` would take it)")
            && refused[0].contains("ALGO_1): needs 5632 bytes of workspace, over the limit of 0")
            && refused[0].ends_with("im2col + GEMM"),
        "{refused:?}"
    );
    let (code, _, err) = crema(d, Env::NoEmulator, &["time", "--model", "net.prototxt", "--iterations", "1", "--workspace-limit", "64"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("note: --workspace-limit applies to GPUs only"), "{err}");
}
