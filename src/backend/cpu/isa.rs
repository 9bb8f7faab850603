//! Which vector instructions the CPU kernels may use, decided once per process.
//!
//! Every fast kernel has a portable twin; tests run every level the CPU has by passing an
//! [`Isa`] explicitly, and `CREMA_CPU_ISA=portable` (or `avx2`) caps the level for a whole
//! process (to check what a machine without AVX-512, or without AVX2, runs, or to compare
//! results).

use std::sync::OnceLock;

/// An instruction-set level for the CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust that the compiler vectorises for the baseline target.
    Portable,
    /// AVX2 with FMA (Haswell and Zen on): an 8-lane GEMM microkernel, and the portable
    /// kernels elsewhere compiled for these instructions.
    Avx2,
    /// AVX-512F (with FMA): 16-lane kernels.
    Avx512,
}

impl Isa {
    /// The best level this CPU supports, at most `CREMA_CPU_ISA` (`portable`, `avx2`,
    /// `avx512`) when that is set. Detected once.
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let cap = match std::env::var("CREMA_CPU_ISA").map(|v| v.to_ascii_lowercase()).as_deref() {
                Ok("portable") => Isa::Portable,
                Ok("avx2") => Isa::Avx2,
                _ => Isa::Avx512,
            };
            Isa::best_available().min(cap)
        })
    }

    /// The best level this CPU supports, ignoring the environment.
    pub fn best_available() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let fma = std::arch::is_x86_feature_detected!("fma");
            if std::arch::is_x86_feature_detected!("avx512f") && fma {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && fma {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Every level this CPU can run, portable first (for tests).
    pub fn all_available() -> Vec<Isa> {
        let best = Isa::best_available();
        [Isa::Portable, Isa::Avx2, Isa::Avx512].into_iter().filter(|&i| i <= best).collect()
    }
}
