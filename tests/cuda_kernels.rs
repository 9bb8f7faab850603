//! Compiles every CUDA kernel source with NVRTC, for Hopper (sm_90, the GPU machines) and for
//! Turing (compute_75, an older target), wherever libnvrtc can be found: no GPU or driver is
//! needed. Where it cannot, the test says SKIPPED and why, and passes.
//!
//! To run it on a machine without CUDA: `python3 -m pip install --user nvidia-cuda-nvrtc`
//! (the CUDA 13 wheel; `nvidia-cuda-nvrtc-cu12` works too), which crema finds by itself.

use crema::backend::cuda::nvrtc::{self, Arch, Output};
use crema::backend::cuda::kernel_sources;
use crema::Error;

/// NVRTC's version, or `None` after printing why the test is skipped. Failing to open a
/// library that was found is an error, not a skip.
fn nvrtc_or_skip() -> Option<(i32, i32)> {
    match nvrtc::version() {
        Ok(v) => Some(v),
        Err(Error::Cuda { what, detail }) if what.starts_with("loading") && detail.contains("none of") => {
            println!("SKIPPED: libnvrtc not found ({detail})");
            None
        }
        Err(e) => panic!("NVRTC was found but could not be used: {e}"),
    }
}

/// The names of the `extern "C"` kernels defined in a source.
fn kernel_names(src: &str) -> Vec<String> {
    src.split("extern \"C\" __global__ void ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn every_kernel_source_compiles_with_nvrtc() {
    let Some((major, minor)) = nvrtc_or_skip() else { return };
    let hopper = Arch { major: 9, minor: 0 };
    let turing = Arch { major: 7, minor: 5 };
    let mut compiled = 0;
    for (name, src) in kernel_sources() {
        for (arch, output) in [(hopper, Output::Cubin), (hopper, Output::Ptx), (turing, Output::Ptx)] {
            let image = nvrtc::compile(name, &src, arch, output).unwrap_or_else(|e| panic!("{e}"));
            assert!(!image.is_empty(), "{name}: empty image for {arch:?} {output:?}");
            if output == Output::Ptx {
                let ptx = String::from_utf8_lossy(&image);
                assert!(ptx.contains(&format!(".target sm_{}", arch.number())), "{name}: wrong PTX target");
                for k in kernel_names(&src) {
                    assert!(ptx.contains(&format!(".entry {k}(")), "{name}: kernel {k} missing from the PTX (not extern \"C\"?)");
                }
            }
            compiled += 1;
        }
    }
    println!("compiled {compiled} images ({} kernel sources x sm_90 CUBIN, compute_90 and compute_75 PTX) with NVRTC {major}.{minor}", kernel_sources().len());
}

/// The pooling family's per-element kernels (SegNet runs them over every activation) work out
/// rows and columns in 32 bits within a plane: a 64-bit division creeping back into one of
/// them fails here, on any machine with NVRTC, instead of going unnoticed until a GPU profile.
#[test]
fn pooling_kernels_do_no_64_bit_division() {
    if nvrtc_or_skip().is_none() {
        return;
    }
    let (name, src) = kernel_sources().into_iter().find(|(n, _)| *n == "pool").expect("the pooling family");
    let ptx = nvrtc::compile(name, &src, Arch { major: 9, minor: 0 }, Output::Ptx).unwrap_or_else(|e| panic!("{e}"));
    let counts = nvrtc::wide_divisions(&String::from_utf8_lossy(&ptx));
    let hot = ["crema_max_pool_forward", "crema_max_pool_backward", "crema_ave_pool_forward", "crema_ave_pool_backward",
               "crema_upsample_claim", "crema_upsample_fill", "crema_upsample_backward"];
    for k in hot {
        let n = counts.iter().find(|(name, _)| name == k).unwrap_or_else(|| panic!("{k} missing from the PTX")).1;
        assert_eq!(n, 0, "{k}: {n} 64-bit divisions or remainders in its PTX");
    }
    // The count itself sees them: the 64-bit generic strided copy has some.
    let (name, src) = kernel_sources().into_iter().find(|(n, _)| *n == "math").expect("the math family");
    let ptx = nvrtc::compile(name, &src, Arch { major: 9, minor: 0 }, Output::Ptx).unwrap_or_else(|e| panic!("{e}"));
    let strided = nvrtc::wide_divisions(&String::from_utf8_lossy(&ptx)).into_iter().find(|(n, _)| n == "crema_copy_strided").map(|c| c.1);
    assert!(strided.is_some_and(|n| n > 0), "{strided:?}");
}

#[test]
fn compile_errors_carry_the_nvrtc_log_and_the_file_name() {
    let Some(_) = nvrtc_or_skip() else { return };
    let bad = "extern \"C\" __global__ void broken(float* y) { y[0] = undefined_name; }";
    let err = nvrtc::compile("broken", bad, Arch { major: 9, minor: 0 }, Output::Cubin).expect_err("must not compile");
    let msg = err.to_string();
    assert!(msg.contains("kernels/broken.cu"), "{msg}");
    assert!(msg.contains("undefined_name"), "the NVRTC log is missing: {msg}");
}

#[test]
fn compiled_images_are_cached_and_reused() {
    let Some(_) = nvrtc_or_skip() else { return };
    let dir = tempfile::tempdir().expect("temporary folder");
    let cache = nvrtc::Cache::at(dir.path());
    let (name, src) = kernel_sources().into_iter().find(|(n, _)| *n == "act").expect("act.cu");
    let arch = Arch { major: 9, minor: 0 };
    let (first, from_cache) = nvrtc::compile_cached(&cache, name, &src, arch, Output::Cubin).unwrap_or_else(|e| panic!("{e}"));
    assert!(!from_cache);
    let (second, from_cache) = nvrtc::compile_cached(&cache, name, &src, arch, Output::Cubin).unwrap_or_else(|e| panic!("{e}"));
    assert!(from_cache);
    assert_eq!(first, second);
    // A damaged entry is compiled again, not trusted and not fatal.
    for entry in std::fs::read_dir(dir.path()).expect("cache folder").flatten() {
        std::fs::write(entry.path(), b"garbage").expect("overwrite");
    }
    let (third, from_cache) = nvrtc::compile_cached(&cache, name, &src, arch, Output::Cubin).unwrap_or_else(|e| panic!("{e}"));
    assert!(!from_cache);
    assert_eq!(first.len(), third.len());
}
