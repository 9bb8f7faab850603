//! Which vector instructions the CPU kernels may use, decided once per process.
//!
//! Every fast kernel has a portable twin; tests run both by passing an [`Isa`] explicitly, and
//! `CREMA_CPU_ISA=portable` forces the portable kernels for a whole process (to check a
//! machine without AVX-512, or to compare results).

use std::sync::OnceLock;

/// An instruction-set level for the CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust that the compiler vectorises for the baseline target.
    Portable,
    /// AVX-512F (with FMA): 16-lane kernels.
    Avx512,
}

impl Isa {
    /// The best level this CPU supports, unless `CREMA_CPU_ISA=portable` asks for the
    /// portable kernels. Detected once.
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            if std::env::var("CREMA_CPU_ISA").is_ok_and(|v| v.eq_ignore_ascii_case("portable")) {
                return Isa::Portable;
            }
            Isa::best_available()
        })
    }

    /// The best level this CPU supports, ignoring the environment.
    pub fn best_available() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
        }
        Isa::Portable
    }

    /// Every level this CPU can run, portable first (for tests).
    pub fn all_available() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        if Isa::best_available() != Isa::Portable {
            v.push(Isa::best_available());
        }
        v
    }
}
