//! Opening the CUDA libraries by full path.
//!
//! crema opens every library itself, with `RTLD_NOW | RTLD_GLOBAL`, from the folders
//! [`super::probe`] finds, companions first (cuDNN's sub-libraries, cuBLASLt, NVRTC's builtins),
//! so that the library's own later opens of them by name find these (the dynamic linker matches
//! a name against the `SONAME` of loaded objects). Whatever is missing is reported as an
//! [`Error::Cuda`] naming the library and every folder searched, never a panic. NVRTC, cuBLAS
//! and cuDNN are then called through tables resolved from these very files ([`super::ffi`]);
//! cudarc opens only the driver, by name (`libcuda.so` first), and crema checks that this
//! reaches the very driver it opened (not a toolkit's stub). The handles are kept for the life
//! of the process.

use super::probe::{self, Candidate, LibSpec, SearchEnv};
use crate::{Error, Result};
use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A CUDA library crema opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lib {
    /// `libcuda.so.1`.
    Driver,
    /// `libnvrtc.so`.
    Nvrtc,
    /// `libcublas.so` and `libcublasLt.so`.
    Cublas,
    /// `libcudnn.so.9` and its sub-libraries.
    Cudnn,
}

impl Lib {
    /// Every library the CUDA backend needs, in the order they are opened.
    pub const ALL: [Lib; 4] = [Lib::Driver, Lib::Nvrtc, Lib::Cublas, Lib::Cudnn];

    fn spec(self) -> &'static LibSpec {
        match self {
            Lib::Driver => &probe::DRIVER,
            Lib::Nvrtc => &probe::NVRTC,
            Lib::Cublas => &probe::CUBLAS,
            Lib::Cudnn => &probe::CUDNN,
        }
    }
}

/// One library as it was opened.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// What the library is.
    pub what: &'static str,
    /// The file opened, or the bare name when the dynamic linker found it by its own search.
    pub path: PathBuf,
    /// Companion libraries opened with it.
    pub companions: Vec<PathBuf>,
}

struct State {
    loaded: Vec<(Lib, Loaded)>,
    /// Never closed: the function tables (and cudarc, for the driver) use them until exit.
    handles: Vec<Library>,
}

static STATE: Mutex<State> = Mutex::new(State { loaded: Vec::new(), handles: Vec::new() });

impl State {
    fn get(&self, lib: Lib) -> Option<&Loaded> {
        self.loaded.iter().find(|(l, _)| *l == lib).map(|(_, v)| v)
    }
}

/// Opens `libs` (those not yet open), or explains which are missing and where crema looked.
/// A library that failed is searched for again on the next call.
pub fn ensure(libs: &[Lib]) -> Result<Vec<Loaded>> {
    let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let env = SearchEnv::from_process();
    let mut dirs: Option<Vec<PathBuf>> = None;
    let mut asked_python = false;
    let mut python_sites: Vec<PathBuf> = Vec::new();
    let mut failures = Vec::new();
    for &lib in libs {
        if state.get(lib).is_some() {
            continue;
        }
        let dirs = dirs.get_or_insert_with(|| probe::search_dirs(&env));
        let spec = lib.spec();
        let mut cands = probe::candidates(spec, dirs);
        if cands.is_empty() && !asked_python && lib != Lib::Driver {
            asked_python = true;
            python_sites = probe::python_site_packages();
            let extra: Vec<PathBuf> = python_sites.iter().flat_map(|sp| probe::wheel_dirs(sp)).collect();
            for d in extra {
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
            cands = probe::candidates(spec, dirs);
        }
        match open_first(spec, &cands, &mut state.handles).and_then(|loaded| {
            if lib == Lib::Driver {
                cudarc_reaches(&loaded.path)?;
            }
            Ok(loaded)
        }) {
            Ok(loaded) => {
                state.loaded.push((lib, loaded));
            }
            Err(why) => failures.push(format!("{}: {why}", spec.what)),
        }
    }
    if !failures.is_empty() {
        let list = |v: &[PathBuf]| -> String {
            if v.is_empty() { "  (none)".to_string() } else { v.iter().map(|d| format!("  {}", d.display())).collect::<Vec<_>>().join("\n") }
        };
        let mut sites = probe::site_packages(&env);
        sites.extend(python_sites.into_iter().filter(|p| p.is_dir()));
        let mut seen = std::collections::HashSet::new();
        sites.retain(|p| seen.insert(p.clone()));
        return Err(Error::Cuda {
            what: "loading the CUDA libraries".into(),
            detail: format!(
                "{}\ncrema looked in these folders (add others with CREMA_CUDA_LIB_PATH=dir1:dir2):\n{}\n  \
                 and the dynamic linker's own search path (LD_LIBRARY_PATH at start-up, /etc/ld.so.cache);\n\
                 for NVIDIA's pip wheels (nvidia/*/lib) in these Python site-packages folders:\n{}",
                failures.join("\n"),
                list(&dirs.unwrap_or_default()),
                list(&sites),
            ),
        });
    }
    Ok(libs.iter().filter_map(|&l| state.get(l).cloned()).collect())
}

/// What is open now (for `device_query`).
pub fn loaded() -> Vec<Loaded> {
    let state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    Lib::ALL.iter().filter_map(|&l| state.get(l).cloned()).collect()
}

/// Opens the first candidate that opens with all its required companions; with no candidate,
/// lets the dynamic linker search by name.
fn open_first(spec: &LibSpec, cands: &[Candidate], handles: &mut Vec<Library>) -> std::result::Result<Loaded, String> {
    let mut errors = Vec::new();
    for c in cands {
        if !c.missing.is_empty() {
            errors.push(format!("{} found, but not {} beside it or anywhere else", c.path.display(), c.missing.join(", ")));
            continue;
        }
        match open_candidate(c, handles) {
            Ok(companions) => return Ok(Loaded { what: spec.what, path: c.path.clone(), companions }),
            Err(e) => errors.push(e),
        }
    }
    if cands.is_empty() {
        // Not in any folder crema knows: the linker may still know it (LD_LIBRARY_PATH, cache).
        for name in spec.names {
            if let Ok(lib) = open(Path::new(name)) {
                handles.push(lib);
                return Ok(Loaded { what: spec.what, path: PathBuf::from(name), companions: Vec::new() });
            }
        }
        errors.push(format!("none of {} found", spec.names.join(", ")));
    }
    Err(errors.join("; "))
}

/// Checks that cudarc, which calls the driver through a handle of its own opened by name
/// (`libcuda.so` first, `libcuda.so.1` last), reaches the driver crema opened at `path`: a CUDA
/// toolkit's stub `libcuda.so` on the library path would otherwise take every driver call.
fn cudarc_reaches(path: &Path) -> std::result::Result<(), String> {
    type Init = unsafe extern "C" fn(u32) -> i32;
    let ours = open(path)?;
    // SAFETY: looking a symbol up runs nothing; the pointer is only compared.
    let mine = unsafe { ours.get::<Init>(b"cuInit\0").map(|f| *f as usize) };
    // cudarc panics where none of its names opens (the driver crema opened has another SONAME
    // than libcuda.so.1, say): asked first whether one does, then the call guarded, so that
    // this is an error, never an abort.
    let names = ["cuda", "nvcuda"].into_iter().flat_map(cudarc::get_lib_name_candidates);
    // SAFETY: opening a library by the name cudarc would open it by (cudarc's call below does
    // the same), closed again on drop.
    let reachable = names.into_iter().any(|n| unsafe { libloading::Library::new(n) }.is_ok());
    // SAFETY: as above.
    let theirs = reachable.then(|| std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::culib().get::<Init>(b"cuInit\0").map(|f| *f as usize) }));
    let theirs = match theirs {
        Some(Ok(found)) => found,
        _ => {
            return Err(format!(
                "crema opened {}, but cudarc, through which crema calls the driver, opens it by name (libcuda.so, libcuda.so.1 and \
                 others) and found none: make the driver reachable under one of those names (install NVIDIA's driver \
                 package, or add its folder to LD_LIBRARY_PATH)",
                path.display()
            ))
        }
    };
    match (mine, theirs) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Err(e), _) => Err(format!("{} has no cuInit ({e}): not a CUDA driver", path.display())),
        _ => Err(format!(
            "crema opened {}, but the driver calls would go to another file named libcuda.so that the dynamic \
             linker finds first (LD_LIBRARY_PATH, /etc/ld.so.cache): typically the CUDA toolkit's stub \
             (.../lib64/stubs/libcuda.so), which only answers that no driver is installed. Remove its folder from \
             LD_LIBRARY_PATH",
            path.display()
        )),
    }
}

/// Opens the companions (repeatedly, so that their order does not matter), then the library.
fn open_candidate(c: &Candidate, handles: &mut Vec<Library>) -> std::result::Result<Vec<PathBuf>, String> {
    let mut pending: Vec<&(PathBuf, bool)> = c.companions.iter().collect();
    let mut opened = Vec::new();
    let mut last_error: HashMap<&Path, String> = HashMap::new();
    loop {
        let before = pending.len();
        pending.retain(|(path, _)| match open(path) {
            Ok(lib) => {
                handles.push(lib);
                opened.push(path.clone());
                false
            }
            Err(e) => {
                last_error.insert(path, e);
                true
            }
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    if let Some((path, _)) = pending.iter().find(|(_, required)| *required) {
        let why = last_error.get(path.as_path()).cloned().unwrap_or_default();
        return Err(format!("{} could not be opened: {why}", path.display()));
    }
    let lib = open(&c.path).map_err(|e| format!("{} could not be opened: {e}", c.path.display()))?;
    handles.push(lib);
    Ok(opened)
}

fn open(path: &Path) -> std::result::Result<Library, String> {
    // SAFETY: opening a shared library runs its initialisers; these are NVIDIA's CUDA libraries
    // (or files of the same name the user pointed crema at), which cudarc would open anyway.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| e.to_string())
}
