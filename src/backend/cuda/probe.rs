//! Where the CUDA libraries might be: the folders crema searches, in order, and the libraries
//! it looks for in them. Pure file-system logic, no `dlopen`: [`super::loader`] opens what this
//! finds.
//!
//! The order of the search: `$CREMA_CUDA_LIB_PATH`, `$LD_LIBRARY_PATH`, the folders of the
//! dynamic linker's configuration (`/etc/ld.so.conf` and its includes), the usual system and
//! toolkit folders, then NVIDIA's pip wheels (`site-packages/nvidia/*/lib`) of every Python
//! installation crema can find without running Python, and last (only when something is still
//! missing) the site-packages folders that `python3` itself reports.

use std::path::{Path, PathBuf};

/// A library crema needs, with the companions it loads from the same folder.
#[derive(Debug)]
pub struct LibSpec {
    /// What the library is, for messages ("the CUDA driver").
    pub what: &'static str,
    /// Accepted file names, most preferred first (newest major version first).
    pub names: &'static [&'static str],
    /// Libraries loaded before this one, from the same folder where possible. `{v}` stands for
    /// the version suffix of the file found (`13` in `libcublas.so.13`). A companion whose name
    /// ends in `*` matches every file with that prefix.
    pub companions: &'static [Companion],
}

/// A library that must (or may) be loaded together with another.
#[derive(Debug)]
pub struct Companion {
    /// File name, with `{v}` for the main library's version suffix and an optional final `*`.
    pub pattern: &'static str,
    /// Whether the main library is unusable without it.
    pub required: bool,
}

const fn req(pattern: &'static str) -> Companion {
    Companion { pattern, required: true }
}
const fn opt(pattern: &'static str) -> Companion {
    Companion { pattern, required: false }
}

/// The CUDA driver (from the NVIDIA driver package, never from the toolkit).
pub const DRIVER: LibSpec = LibSpec { what: "the CUDA driver", names: &["libcuda.so.1", "libcuda.so"], companions: &[] };

/// NVRTC, the run-time CUDA C++ compiler, and the builtins library it opens itself.
pub const NVRTC: LibSpec = LibSpec {
    what: "NVRTC (the CUDA run-time compiler)",
    names: &["libnvrtc.so.13", "libnvrtc.so.12"],
    companions: &[req("libnvrtc-builtins.so.{v}*")],
};

/// cuBLAS and cuBLASLt, which it links to.
pub const CUBLAS: LibSpec = LibSpec {
    what: "cuBLAS",
    names: &["libcublas.so.13", "libcublas.so.12"],
    companions: &[req("libcublasLt.so.{v}")],
};

/// cuDNN 9: the front library and the sub-libraries it opens by name at run time.
pub const CUDNN: LibSpec = LibSpec {
    what: "cuDNN 9",
    names: &["libcudnn.so.9"],
    companions: &[
        req("libcudnn_graph.so.{v}"),
        req("libcudnn_ops.so.{v}"),
        req("libcudnn_cnn.so.{v}"),
        req("libcudnn_engines_precompiled.so.{v}"),
        opt("libcudnn_engines_runtime_compiled.so.{v}"),
        opt("libcudnn_heuristic.so.{v}"),
        opt("libcudnn_adv.so.{v}"),
    ],
};

/// The environment the search reads, gathered in one place so that tests can fake it.
#[derive(Clone, Debug, Default)]
pub struct SearchEnv {
    /// Prefix of every absolute system path (`/` normally; a temporary folder in tests).
    pub root: PathBuf,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$CREMA_CUDA_LIB_PATH`: folders searched first, `:`-separated.
    pub crema_lib_path: Option<String>,
    /// `$LD_LIBRARY_PATH`.
    pub ld_library_path: Option<String>,
    /// `$PATH`, to find the Python installations (virtualenvs) on it.
    pub path: Option<String>,
    /// `$VIRTUAL_ENV`.
    pub virtual_env: Option<PathBuf>,
    /// `$CONDA_PREFIX`.
    pub conda_prefix: Option<PathBuf>,
}

impl SearchEnv {
    /// The environment of this process.
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        SearchEnv {
            root: PathBuf::from("/"),
            home: var("HOME").map(PathBuf::from),
            crema_lib_path: var("CREMA_CUDA_LIB_PATH"),
            ld_library_path: var("LD_LIBRARY_PATH"),
            path: var("PATH"),
            virtual_env: var("VIRTUAL_ENV").map(PathBuf::from),
            conda_prefix: var("CONDA_PREFIX").map(PathBuf::from),
        }
    }

    fn sys(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
}

/// The folders to search, in order, without duplicates; only folders that exist.
pub fn search_dirs(env: &SearchEnv) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let split = |v: &Option<String>| -> Vec<PathBuf> {
        v.as_deref().unwrap_or("").split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect()
    };
    dirs.extend(split(&env.crema_lib_path));
    dirs.extend(split(&env.ld_library_path));
    dirs.extend(ld_so_conf_dirs(env));
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/lib64",
        "/usr/lib",
        "/usr/lib/wsl/lib",
        "/usr/local/cuda/lib64",
        "/usr/local/cuda/targets/x86_64-linux/lib",
        "/usr/local/cuda-*/lib64",
        "/usr/local/cuda-*/targets/x86_64-linux/lib",
        "/opt/cuda/lib64",
        "/usr/local/lib",
    ] {
        dirs.extend(glob(&env.sys(d)));
    }
    for sp in site_packages(env) {
        dirs.extend(wheel_dirs(&sp));
    }
    dedup_existing(dirs)
}

/// The library folders of NVIDIA's wheels (and PyTorch's) inside one site-packages folder.
pub fn wheel_dirs(site_packages: &Path) -> Vec<PathBuf> {
    let mut v = glob(&site_packages.join("nvidia/*/lib"));
    v.extend(glob(&site_packages.join("nvidia/*/lib64")));
    v.extend(glob(&site_packages.join("torch/lib")));
    v
}

/// Every site-packages folder findable without running Python: system, user and virtualenv
/// installations, and those of the Python interpreters on `$PATH`.
pub fn site_packages(env: &SearchEnv) -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = Vec::new();
    prefixes.extend(env.virtual_env.clone());
    prefixes.extend(env.conda_prefix.clone());
    for dir in env.path.as_deref().unwrap_or("").split(':').filter(|s| !s.is_empty()) {
        let dir = Path::new(dir);
        if let Some(prefix) = dir.parent().filter(|_| dir.join("python3").exists() || dir.join("python").exists()) {
            prefixes.push(prefix.to_path_buf());
        }
    }
    for pattern in ["/usr", "/usr/local", "/opt/*", "/opt/*/.venv", "/opt/*/venv", "/opt/conda", "/root/.venv", "/venv"] {
        prefixes.extend(glob(&env.sys(pattern)));
    }
    if let Some(home) = &env.home {
        prefixes.push(home.join(".local"));
        prefixes.extend(glob(&home.join(".venv")));
        prefixes.extend(glob(&home.join("*/.venv")));
        prefixes.extend(glob(&home.join(".pyenv/versions/*")));
        prefixes.extend(glob(&home.join("miniconda3")));
        prefixes.extend(glob(&home.join("anaconda3")));
    }
    let mut out = Vec::new();
    for p in dedup_existing(prefixes) {
        for sub in ["lib/python3*/site-packages", "lib/python3*/dist-packages", "lib/python3/dist-packages", "lib64/python3*/site-packages"] {
            out.extend(glob(&p.join(sub)));
        }
    }
    dedup_existing(out)
}

/// The folders named by the dynamic linker's configuration (`/etc/ld.so.conf`, following
/// `include` lines).
pub fn ld_so_conf_dirs(env: &SearchEnv) -> Vec<PathBuf> {
    let mut out = Vec::new();
    read_ld_conf(env, &env.sys("/etc/ld.so.conf"), 0, &mut out);
    out
}

fn read_ld_conf(env: &SearchEnv, file: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 8 {
        return;
    }
    let Ok(text) = std::fs::read_to_string(file) else { return };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(pattern) = line.strip_prefix("include").filter(|r| r.starts_with([' ', '\t'])) {
            for pat in pattern.split_whitespace() {
                let abs = if pat.starts_with('/') { env.sys(pat) } else { env.sys("/etc").join(pat) };
                for f in glob(&abs) {
                    read_ld_conf(env, &f, depth + 1, out);
                }
            }
        } else {
            for dir in line.split([' ', '\t', ',', ':']).filter(|s| !s.is_empty()) {
                // `dir=TYPE` is an old ldconfig syntax; the type is irrelevant here.
                let dir = dir.split('=').next().unwrap_or(dir);
                if dir.starts_with('/') {
                    out.push(env.sys(dir));
                }
            }
        }
    }
}

/// A library file found for a [`LibSpec`], with the companions found beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The library itself.
    pub path: PathBuf,
    /// Companions found: `(path, required)`, in the spec's order.
    pub companions: Vec<(PathBuf, bool)>,
    /// Required companions that were found nowhere.
    pub missing: Vec<String>,
}

/// Every file that could serve `spec`, most preferred first: each accepted name in each folder.
pub fn candidates(spec: &LibSpec, dirs: &[PathBuf]) -> Vec<Candidate> {
    let mut out = Vec::new();
    for name in spec.names {
        for dir in dirs {
            let path = dir.join(name);
            if path.is_file() {
                out.push(with_companions(spec, path, dirs));
            }
        }
    }
    out
}

fn with_companions(spec: &LibSpec, path: PathBuf, dirs: &[PathBuf]) -> Candidate {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let version = file.split_once(".so.").map(|(_, v)| v.to_string()).unwrap_or_default();
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut companions = Vec::new();
    let mut missing = Vec::new();
    for c in spec.companions {
        let pattern = c.pattern.replace("{v}", &version);
        // Beside the library first, then anywhere else.
        let found = std::iter::once(&dir).chain(dirs.iter()).find_map(|d| match_in(d, &pattern));
        match found {
            Some(files) => companions.extend(files.into_iter().map(|f| (f, c.required))),
            None if c.required => missing.push(pattern.trim_end_matches('*').to_string()),
            None => {}
        }
    }
    Candidate { path, companions, missing }
}

/// Files in `dir` named `pattern` (or, if it ends in `*`, starting with it).
fn match_in(dir: &Path, pattern: &str) -> Option<Vec<PathBuf>> {
    let files = match pattern.strip_suffix('*') {
        None => {
            let p = dir.join(pattern);
            if p.is_file() { vec![p] } else { vec![] }
        }
        Some(prefix) => {
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            v
        }
    };
    (!files.is_empty()).then_some(files)
}

/// Expands `*` in any component of an absolute path (`*` matches any run of characters within
/// one component). Matches of one component come newest version first (natural order, reversed).
pub fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::new()];
    for comp in pattern.components() {
        let s = comp.as_os_str().to_string_lossy();
        if !s.contains('*') {
            current.iter_mut().for_each(|p| p.push(comp.as_os_str()));
            continue;
        }
        let mut next = Vec::new();
        for base in &current {
            let mut names: Vec<String> = std::fs::read_dir(base)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| wildcard(&s, n))
                .collect();
            names.sort_by(|a, b| natural_cmp(b, a));
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        current = next;
    }
    current.into_iter().filter(|p| p.exists()).collect()
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Compares with runs of digits as numbers ("python3.12" after "python3.9").
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(s: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut chars = s.chars().peekable();
        while chars.peek().is_some() {
            let text: String = std::iter::from_fn(|| chars.next_if(|c| !c.is_ascii_digit())).collect();
            let digits: String = std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_digit())).collect();
            out.push((text, digits.parse().unwrap_or(0)));
        }
        out
    }
    key(a).cmp(&key(b))
}

fn dedup_existing(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    dirs.into_iter()
        .filter(|d| d.is_dir())
        .filter(|d| seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())))
        .collect()
}

/// The site-packages folders that `python3` reports (`site.getsitepackages()` and the user's),
/// for installations the static search misses (pyenv, custom prefixes). Empty when there is no
/// `python3` or it fails.
pub fn python_site_packages() -> Vec<PathBuf> {
    let script = "import site\ntry:\n    p = site.getsitepackages()\nexcept Exception:\n    p = []\ntry:\n    p.append(site.getusersitepackages())\nexcept Exception:\n    pass\nprint('\\n'.join(p))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            String::from_utf8_lossy(&o.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(PathBuf::from).collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
