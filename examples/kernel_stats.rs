//! Static statistics of crema's CUDA kernels, for kernel work on a machine without a GPU: per
//! kernel, the SASS instructions and registers of its sm_90 image (NVRTC's CUBIN) and the 64-bit
//! integer divisions and remainders in its PTX (each a software routine on NVIDIA GPUs).
//!
//!     cargo run --release --example kernel_stats [FILTER]
//!
//! Needs libnvrtc (see tests/cuda_kernels.rs for where crema finds it); no GPU or driver.

use crema::backend::cuda::kernel_sources;
use crema::backend::cuda::nvrtc::{self, Arch, Output};
use std::collections::BTreeMap;

/// Per kernel of an ELF64 CUBIN: (SASS bytes of `.text.<kernel>`, registers from the
/// EIATTR_REGCOUNT attributes of the `.nv.info` sections).
fn kernel_images(elf: &[u8]) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let bad = || "not an ELF64 image".to_string();
    let get = |o: usize, n: usize| elf.get(o..o + n).ok_or_else(bad);
    let uint = |o: usize, n: usize| -> Result<u64, String> { Ok(get(o, n)?.iter().rev().fold(0, |a, &b| (a << 8) | b as u64)) };
    if elf.get(..5) != Some(b"\x7fELF\x02") {
        return Err(bad());
    }
    let (shoff, shentsize, shnum, shstrndx) = (uint(0x28, 8)? as usize, uint(0x3a, 2)? as usize, uint(0x3c, 2)? as usize, uint(0x3e, 2)? as usize);
    // (name, type, offset, size, link) of every section.
    let mut sections = Vec::new();
    for i in 0..shnum {
        let h = shoff + i * shentsize;
        sections.push((uint(h, 4)? as usize, uint(h + 4, 4)?, uint(h + 0x18, 8)? as usize, uint(h + 0x20, 8)? as usize, uint(h + 0x28, 4)? as usize));
    }
    let cstr = |o: usize| -> String { elf.get(o..).unwrap_or(&[]).iter().take_while(|&&b| b != 0).map(|&b| b as char).collect() };
    let strtab = sections.get(shstrndx).ok_or_else(bad)?.2;
    let name = |s: &(usize, u64, usize, usize, usize)| cstr(strtab + s.0);
    // Symbol names by index (SHT_SYMTAB = 2; entries of 24 bytes, name offset first).
    let mut symbols = Vec::new();
    if let Some(sym) = sections.iter().find(|s| s.1 == 2) {
        let names = sections.get(sym.4).ok_or_else(bad)?.2;
        for k in 0..sym.3 / 24 {
            symbols.push(cstr(names + uint(sym.2 + k * 24, 4)? as usize));
        }
    }
    let mut out = BTreeMap::new();
    for s in &sections {
        if let Some(kernel) = name(s).strip_prefix(".text.") {
            out.insert(kernel.to_string(), (s.3 as u64, 0));
        }
    }
    for s in sections.iter().filter(|s| name(s).starts_with(".nv.info")) {
        let (mut o, end) = (s.2, s.2 + s.3);
        while o + 2 <= end {
            let (format, attr) = (get(o, 1)?[0], get(o + 1, 1)?[0]);
            o += 2;
            let size = match format {
                1 => 0,
                2 => 1,
                3 => 2,
                4 => {
                    let n = uint(o, 2)? as usize;
                    o += 2;
                    n
                }
                _ => break,
            };
            if attr == 0x2f && size == 8 {
                let (sym, regs) = (uint(o, 4)? as usize, uint(o + 4, 4)?);
                if let Some(entry) = symbols.get(sym).and_then(|k| out.get_mut(k)) {
                    entry.1 = regs;
                }
            }
            o += size;
        }
    }
    Ok(out)
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    if let Ok(dir) = std::env::var("KERNEL_STATS_PTX") {
        for (name, src) in kernel_sources() {
            let ptx = nvrtc::compile(name, &src, Arch { major: 9, minor: 0 }, Output::Ptx).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(format!("{dir}/{name}.ptx"), ptx).unwrap();
        }
    }
    let hopper = Arch { major: 9, minor: 0 };
    println!("{:<44} {:>6} {:>5} {:>7}", "kernel (sm_90)", "SASS", "regs", "div64");
    for (name, src) in kernel_sources() {
        let cubin = nvrtc::compile(name, &src, hopper, Output::Cubin).unwrap_or_else(|e| panic!("{e}"));
        let ptx = nvrtc::compile(name, &src, hopper, Output::Ptx).unwrap_or_else(|e| panic!("{e}"));
        let divs: BTreeMap<String, usize> = nvrtc::wide_divisions(&String::from_utf8_lossy(&ptx)).into_iter().collect();
        for (kernel, (bytes, regs)) in kernel_images(&cubin).unwrap_or_else(|e| panic!("{name}: {e}")) {
            if kernel.contains(&filter) {
                println!("{kernel:<44} {:>6} {regs:>5} {:>7}", bytes / 16, divs.get(&kernel).copied().unwrap_or(0));
            }
        }
    }
}
