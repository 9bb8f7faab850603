//! Compiling the kernels with NVRTC, and the disk cache of what it compiled.
//!
//! A family's `.cu` source is compiled once per device architecture, to a CUBIN for that exact
//! architecture when this NVRTC knows it (no JIT at load time), else to PTX for the newest
//! architecture it knows (the driver finishes the job). Images are cached in
//! `$CREMA_CACHE_DIR`, else `$XDG_CACHE_HOME/crema/kernels`, else `~/.cache/crema/kernels`,
//! under a name derived from a hash of the source, the architecture, the options and the NVRTC
//! version. Entries carry a checksum and are written atomically (temporary file, then rename);
//! an unreadable or damaged entry is compiled again, never fatal.

use super::ffi::{c_enum, library_api, status_name};
use super::loader::Lib;
use crate::{Error, Result};
use cudarc::nvrtc::sys as nvsys;
use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};

library_api! {
    /// NVRTC's entry points crema calls (see [`super::ffi`]).
    struct Api from Lib::Nvrtc;
    version = nvrtcVersion(*mut c_int, *mut c_int) -> NvrtcResult;
    num_supported_archs = nvrtcGetNumSupportedArchs(*mut c_int) -> NvrtcResult;
    supported_archs = nvrtcGetSupportedArchs(*mut c_int) -> NvrtcResult;
    create_program = nvrtcCreateProgram(*mut nvsys::nvrtcProgram, *const c_char, *const c_char, c_int, *const *const c_char, *const *const c_char) -> NvrtcResult;
    compile_program = nvrtcCompileProgram(nvsys::nvrtcProgram, c_int, *const *const c_char) -> NvrtcResult;
    log_size = nvrtcGetProgramLogSize(nvsys::nvrtcProgram, *mut usize) -> NvrtcResult;
    log = nvrtcGetProgramLog(nvsys::nvrtcProgram, *mut c_char) -> NvrtcResult;
    ptx_size = nvrtcGetPTXSize(nvsys::nvrtcProgram, *mut usize) -> NvrtcResult;
    ptx = nvrtcGetPTX(nvsys::nvrtcProgram, *mut c_char) -> NvrtcResult;
    cubin_size = nvrtcGetCUBINSize(nvsys::nvrtcProgram, *mut usize) -> NvrtcResult;
    cubin = nvrtcGetCUBIN(nvsys::nvrtcProgram, *mut c_char) -> NvrtcResult;
    destroy_program = nvrtcDestroyProgram(*mut nvsys::nvrtcProgram) -> NvrtcResult;
    error_string = nvrtcGetErrorString(u32) -> *const c_char;
}

c_enum! {
    /// An NVRTC result code (see [`c_enum!`]).
    NvrtcResult = nvsys::nvrtcResult
}

/// Options every kernel is compiled with. `--fmad=false` keeps `a * b + c` two roundings, as
/// on the CPU backend, so element-wise kernels give the CPU's bits.
pub const OPTIONS: &[&str] = &["--fmad=false", "--std=c++17"];

/// A GPU architecture (compute capability).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arch {
    /// Major version (9 for Hopper).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl Arch {
    /// The number NVRTC uses (`90` for 9.0).
    pub fn number(self) -> u32 {
        self.major * 10 + self.minor
    }
}

/// What NVRTC produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// Machine code for exactly this architecture (`sm_XY`).
    Cubin,
    /// PTX for this virtual architecture (`compute_XY`), NUL-terminated.
    Ptx,
}

/// Opens NVRTC (see [`loader`]) and returns its version.
pub fn version() -> Result<(i32, i32)> {
    let api = Api::get()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers.
    check(api, unsafe { (api.version)(&mut major, &mut minor) }).map_err(|e| nvrtc_err("nvrtcVersion", e))?;
    Ok((major, minor))
}

/// The architectures this NVRTC can compile for (as [`Arch::number`]s).
pub fn supported_archs() -> Result<Vec<u32>> {
    let api = Api::get()?;
    let mut n = 0;
    // SAFETY: a valid out-pointer.
    check(api, unsafe { (api.num_supported_archs)(&mut n) }).map_err(|e| nvrtc_err("nvrtcGetNumSupportedArchs", e))?;
    // NVRTC knows a few dozen architectures; a count beyond any plausible one is refused rather
    // than allocated.
    if !(0..=4096).contains(&n) {
        return Err(nvrtc_err("nvrtcGetNumSupportedArchs", format!("an implausible count of {n}")));
    }
    let mut v = vec![0i32; n as usize];
    // SAFETY: `v` holds the `n` entries NVRTC writes.
    check(api, unsafe { (api.supported_archs)(v.as_mut_ptr()) }).map_err(|e| nvrtc_err("nvrtcGetSupportedArchs", e))?;
    Ok(v.into_iter().map(|a| a.max(0) as u32).collect())
}

/// How to compile for a device of architecture `arch`: a CUBIN when NVRTC knows the
/// architecture, else PTX for the newest one it knows below it.
pub fn target_for(arch: Arch) -> Result<(Arch, Output)> {
    let supported = supported_archs()?;
    if supported.contains(&arch.number()) {
        return Ok((arch, Output::Cubin));
    }
    match supported.iter().copied().filter(|&a| a <= arch.number()).max() {
        Some(a) => Ok((Arch { major: a / 10, minor: a % 10 }, Output::Ptx)),
        None => Err(Error::Cuda {
            what: format!("choosing an architecture for an sm_{} device", arch.number()),
            detail: format!("this NVRTC compiles only for {supported:?}"),
        }),
    }
}

/// Per kernel of a PTX text, in order: its name and the number of `div`/`rem` instructions on
/// 64-bit integers in it (each a software routine of dozens of instructions on NVIDIA GPUs),
/// for tests and tools that watch the kernels' integer work without a GPU.
pub fn wide_divisions(ptx: &str) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for line in ptx.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix(".visible .entry ").or_else(|| line.strip_prefix(".entry ")) {
            out.push((rest.split('(').next().unwrap_or("").trim().to_string(), 0));
        } else if let Some(last) = out.last_mut().filter(|_| {
            (line.starts_with("div.") || line.starts_with("rem.")) && (line.contains(".u64") || line.contains(".s64"))
        }) {
            last.1 += 1;
        }
    }
    out
}

/// Compiles one source (no cache). `name` is the file name without `.cu`, for messages.
pub fn compile(name: &str, source: &str, arch: Arch, output: Output) -> Result<Vec<u8>> {
    let (major, minor) = version()?;
    let what = format!(
        "compiling kernels/{name}.cu for {} with NVRTC {major}.{minor}",
        match output {
            Output::Cubin => format!("sm_{}", arch.number()),
            Output::Ptx => format!("compute_{}", arch.number()),
        }
    );
    let src = CString::new(source).map_err(|_| Error::Cuda { what: what.clone(), detail: "the source contains a NUL byte".into() })?;
    let file = CString::new(format!("{name}.cu")).map_err(|_| Error::Internal("kernel name with a NUL byte".into()))?;
    let mut options: Vec<String> = OPTIONS.iter().map(|s| s.to_string()).collect();
    options.push(match output {
        Output::Cubin => format!("--gpu-architecture=sm_{}", arch.number()),
        Output::Ptx => format!("--gpu-architecture=compute_{}", arch.number()),
    });
    let api = Api::get()?;
    let opts: Vec<CString> = options.iter().map(|o| CString::new(o.as_str())).collect::<std::result::Result<_, _>>().map_err(|_| Error::Internal("an NVRTC option with a NUL byte".into()))?;
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
    let mut prog: nvsys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: valid strings and out-pointer; no headers.
    check(api, unsafe { (api.create_program)(&mut prog, src.as_ptr(), file.as_ptr(), 0, std::ptr::null(), std::ptr::null()) })
        .map_err(|e| Error::Cuda { what: what.clone(), detail: format!("nvrtcCreateProgram: {e}") })?;
    // SAFETY: `prog` is live until the destroy below; `opt_ptrs` holds that many live strings.
    let result = match check(api, unsafe { (api.compile_program)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr()) }) {
        Err(e) => {
            // SAFETY: `prog` is live.
            let log = unsafe { read(api, api.log_size, api.log, prog) }.map(|l| c_chars_to_string(&l)).unwrap_or_default();
            Err(Error::Cuda { what: what.clone(), detail: format!("{e}\n{log}") })
        }
        // SAFETY (both): `prog` compiled successfully and is live.
        Ok(()) => match output {
            Output::Ptx => unsafe { read(api, api.ptx_size, api.ptx, prog) },
            Output::Cubin => unsafe { read(api, api.cubin_size, api.cubin, prog) },
        }
        .map(|v| v.into_iter().map(|c| c as u8).collect())
        .map_err(|e| Error::Cuda { what: what.clone(), detail: format!("reading the compiled image: {e}") }),
    };
    // SAFETY: destroyed once, after its last use.
    let _ = unsafe { (api.destroy_program)(&mut prog) };
    result
}

type SizeFn = unsafe extern "C" fn(nvsys::nvrtcProgram, *mut usize) -> NvrtcResult;
type ReadFn = unsafe extern "C" fn(nvsys::nvrtcProgram, *mut c_char) -> NvrtcResult;

/// One of a program's outputs (log, PTX, CUBIN): its size, then its bytes.
///
/// # Safety
/// `prog` must be a live program for which `size` and `fetch` are valid queries.
unsafe fn read(api: &Api, size: SizeFn, fetch: ReadFn, prog: nvsys::nvrtcProgram) -> std::result::Result<Vec<c_char>, String> {
    let mut n = 0usize;
    // SAFETY: the caller guarantees `prog`; `n` is a valid out-pointer.
    check(api, unsafe { size(prog, &mut n) })?;
    let mut v = vec![0 as c_char; n];
    // SAFETY: `v` holds the `n` bytes NVRTC writes.
    check(api, unsafe { fetch(prog, v.as_mut_ptr()) })?;
    Ok(v)
}

/// `Err` with the result code and NVRTC's text for it unless NVRTC answered success.
fn check(api: &Api, r: NvrtcResult) -> std::result::Result<(), String> {
    if r == nvsys::nvrtcResult::NVRTC_SUCCESS.into() {
        return Ok(());
    }
    Err(status_name(Some(api.error_string), "nvrtcResult", r.0))
}

fn c_chars_to_string(v: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = v.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

fn nvrtc_err(call: &str, detail: String) -> Error {
    Error::Cuda { what: format!("calling {call}"), detail }
}

/// Runs `f`, turning a panic inside cudarc (a symbol missing from the library it loaded) into
/// an error.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::Cuda { what: what.to_string(), detail: format!("cudarc panicked: {msg}") })
    })
}

/// Compiled images on disk.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: Option<PathBuf>,
}

const MAGIC: &[u8; 8] = b"CREMAKC1";

impl Cache {
    /// The cache folder from the environment (see the module docs); none when no home is known.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = var("CREMA_CACHE_DIR")
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("crema/kernels")))
            .or_else(|| var("HOME").map(|d| d.join(".cache/crema/kernels")));
        Cache { dir }
    }

    /// A cache in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: Some(dir.into()) }
    }

    /// A cache that stores nothing.
    pub fn disabled() -> Self {
        Cache { dir: None }
    }

    /// The file name of an entry.
    pub fn key(name: &str, source: &str, arch: Arch, output: Output, nvrtc: (i32, i32)) -> String {
        let mut h = Fnv::new();
        for part in [MAGIC.as_slice(), name.as_bytes(), source.as_bytes(), OPTIONS.join(" ").as_bytes()] {
            h.write(part);
            h.write(&[0xff]);
        }
        h.write(format!("{}|{:?}|{}.{}", arch.number(), output, nvrtc.0, nvrtc.1).as_bytes());
        let ext = match output {
            Output::Cubin => "cubin",
            Output::Ptx => "ptx",
        };
        format!("{name}-{}{}-{:016x}.{ext}", if output == Output::Cubin { "sm" } else { "compute" }, arch.number(), h.finish())
    }

    /// The entry `key`, if present and intact.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.dir.as_ref()?.join(key)).ok()?;
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return None;
        }
        let len = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
        let sum = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
        let payload = &bytes[24..];
        (payload.len() == len && fnv(payload) == sum && len > 0).then(|| payload.to_vec())
    }

    /// Stores `payload` as `key`, atomically. Errors are the caller's to ignore.
    pub fn put(&self, key: &str, payload: &[u8]) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        std::fs::create_dir_all(dir)?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let tmp = dir.join(format!(".{key}.tmp-{}-{nanos}", std::process::id()));
        let mut data = Vec::with_capacity(payload.len() + 24);
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        data.extend_from_slice(&fnv(payload).to_le_bytes());
        data.extend_from_slice(payload);
        let written = std::fs::write(&tmp, &data).and_then(|_| std::fs::rename(&tmp, dir.join(key)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Removes the entry `key` (a damaged one), ignoring errors.
    pub fn remove(&self, key: &str) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(dir.join(key));
        }
    }

    /// The folder, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

/// Compiles through the cache: the cached image if intact, else a fresh compile (stored).
/// Returns the image and whether it came from the cache.
pub fn compile_cached(cache: &Cache, name: &str, source: &str, arch: Arch, output: Output) -> Result<(Vec<u8>, bool)> {
    let key = Cache::key(name, source, arch, output, version()?);
    if let Some(image) = cache.get(&key) {
        return Ok((image, true));
    }
    let image = compile(name, source, arch, output)?;
    // A cache that cannot be written only costs a compile next time.
    let _ = cache.put(&key, &image);
    Ok((image, false))
}

/// 64-bit FNV-1a: a stable hash (the standard library's is not stable across releases).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A90: Arch = Arch { major: 9, minor: 0 };

    #[test]
    fn keys_change_with_every_input() {
        let k = Cache::key("math", "src", A90, Output::Cubin, (13, 0));
        assert!(k.starts_with("math-sm90-") && k.ends_with(".cubin"), "{k}");
        assert_ne!(k, Cache::key("math", "src2", A90, Output::Cubin, (13, 0)));
        assert_ne!(k, Cache::key("math", "src", Arch { major: 8, minor: 0 }, Output::Cubin, (13, 0)));
        assert_ne!(k, Cache::key("math", "src", A90, Output::Cubin, (13, 1)));
        assert_ne!(k, Cache::key("math", "src", A90, Output::Ptx, (13, 0)));
        assert_eq!(k, Cache::key("math", "src", A90, Output::Cubin, (13, 0)));
    }

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("nested/kernels"));
        assert_eq!(cache.get("k"), None);
        cache.put("k", b"image bytes").unwrap();
        assert_eq!(cache.get("k").as_deref(), Some(&b"image bytes"[..]));
        let path = dir.path().join("nested/kernels/k");
        // A flipped payload byte, a truncated file and foreign bytes all read as absent.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.get("k"), None);
        std::fs::write(&path, &bytes[..20]).unwrap();
        assert_eq!(cache.get("k"), None);
        std::fs::write(&path, b"not a cache entry at all, but long enough").unwrap();
        assert_eq!(cache.get("k"), None);
        // Rewriting repairs it; no temporary files are left behind.
        cache.put("k", b"again").unwrap();
        assert_eq!(cache.get("k").as_deref(), Some(&b"again"[..]));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("nested/kernels")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("k")]);
        cache.remove("k");
        assert_eq!(cache.get("k"), None);
    }

    #[test]
    fn unwritable_cache_is_an_io_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        assert!(Cache::at(file.join("sub")).put("k", b"v").is_err());
        Cache::disabled().put("k", b"v").unwrap();
        assert_eq!(Cache::disabled().get("k"), None);
    }
}
