//! Paths named inside files: a solver's `net`, `train_net`, `test_net`, `weights` and
//! `snapshot_prefix`, and a solverstate's `learned_net`.
//!
//! Caffe opens them relative to the working directory. crema does the same and, when that
//! finds nothing, tries them relative to the folder of the file that names them, so a solver
//! can be run from anywhere.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// `path` as Caffe would open it (relative to the working directory) when something is
/// there, else relative to the folder of `named_in` when something is there; otherwise
/// `path` as given (opening it then gives the error).
pub fn resolve(path: &str, named_in: Option<&Path>) -> PathBuf {
    let given = PathBuf::from(path);
    if given.exists() || given.is_absolute() {
        return given;
    }
    match named_in.and_then(Path::parent) {
        Some(dir) if dir.join(&given).exists() => dir.join(&given),
        _ => given,
    }
}

/// The folder a prefix's files go to (`.` for a bare name).
fn prefix_dir(prefix: &Path) -> &Path {
    match prefix.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Caffe's `UpgradeSnapshotPrefixProperty` and crema's path rule: the snapshot prefix of a
/// solver read from `solver_file`.
///
/// - no `snapshot_prefix`: the solver file's path without its extension;
/// - a prefix that is a directory (relative to the working directory, else to the solver
///   file's folder): that directory joined with the solver file's stem;
/// - otherwise the prefix as given, when its folder exists relative to the working
///   directory (a bare name: the working directory, as in Caffe), else relative to the
///   solver file's folder when that exists there.
///
/// Without a solver file, the prefix is taken as given (`None` when there is none).
pub fn snapshot_prefix(prefix: Option<&str>, solver_file: Option<&Path>) -> Option<String> {
    let stem = solver_file.and_then(Path::file_stem);
    let Some(prefix) = prefix else {
        return solver_file.map(|f| f.with_extension("").to_string_lossy().into_owned());
    };
    let as_dir = |dir: PathBuf| match stem {
        Some(stem) => dir.join(stem).to_string_lossy().into_owned(),
        None => prefix.to_string(),
    };
    let given = Path::new(prefix);
    let near = solver_file.and_then(Path::parent).filter(|_| given.is_relative()).map(|dir| dir.join(given));
    if given.is_dir() {
        return Some(as_dir(given.to_path_buf()));
    }
    if let Some(near) = near.as_ref().filter(|n| n.is_dir()) {
        return Some(as_dir(near.clone()));
    }
    if prefix_dir(given).is_dir() || given.is_absolute() {
        return Some(prefix.to_string());
    }
    match near.filter(|n| prefix_dir(n).is_dir()) {
        Some(near) => Some(near.to_string_lossy().into_owned()),
        None => Some(prefix.to_string()),
    }
}

/// The snapshot file `<prefix>_iter_<iter><extension>` (Caffe's `SnapshotFilename`).
pub fn snapshot_file(prefix: &str, iter: u64, extension: &str) -> PathBuf {
    PathBuf::from(format!("{prefix}_iter_{iter}{extension}"))
}

/// Caffe's `CheckSnapshotWritePermissions`: creates and removes a probe file beside where the
/// snapshots will go, so that a prefix in a missing or read-only folder fails before training
/// rather than at the first snapshot.
pub fn check_writable(prefix: &str, iter: u64) -> Result<()> {
    let probe = snapshot_file(prefix, iter, ".tempfile");
    let fail = |e: std::io::Error| {
        Error::Config(format!(
            "cannot write snapshots with snapshot_prefix \"{prefix}\" ({}: {e}); make sure that the folder exists and is writable",
            probe.display()
        ))
    };
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(f) => {
            drop(f);
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        // A probe left by another run: writable if it can be opened for writing.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::OpenOptions::new().append(true).open(&probe).map(drop).map_err(fail)
        }
        Err(e) => Err(fail(e)),
    }
}

/// A solverstate's `learned_net` (a caffemodel path as the writing solver named it): as given
/// when it exists, else beside the solverstate (its path joined to the solverstate's folder,
/// then its file name alone there, for snapshots that were moved).
pub fn learned_net(learned: &str, state_file: &Path) -> Result<PathBuf> {
    let given = resolve(learned, Some(state_file));
    if given.exists() {
        return Ok(given);
    }
    if let (Some(dir), Some(name)) = (state_file.parent(), Path::new(learned).file_name())
        && dir.join(name).exists()
    {
        return Ok(dir.join(name));
    }
    Err(Error::Config(format!(
        "{}: its weights file \"{learned}\" was not found (tried the working directory and {})",
        state_file.display(),
        prefix_dir(state_file).display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rules() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("snaps")).unwrap();
        let solver = d.join("lenet_solver.prototxt");
        let s = |x: &Path| x.to_string_lossy().into_owned();
        // No prefix: the solver file without its extension.
        assert_eq!(snapshot_prefix(None, Some(&solver)), Some(s(&d.join("lenet_solver"))));
        assert_eq!(snapshot_prefix(None, None), None);
        // A directory: the solver's stem inside it.
        let snaps = s(&d.join("snaps"));
        assert_eq!(snapshot_prefix(Some(&snaps), Some(&solver)), Some(s(&d.join("snaps/lenet_solver"))));
        // A prefix in an existing folder: as given.
        let p = s(&d.join("snaps/run1"));
        assert_eq!(snapshot_prefix(Some(&p), Some(&solver)), Some(p.clone()));
        // Relative prefixes that only make sense beside the solver file.
        assert_eq!(snapshot_prefix(Some("snaps/run1"), Some(&solver)), Some(s(&d.join("snaps/run1"))));
        assert_eq!(snapshot_prefix(Some("snaps"), Some(&solver)), Some(s(&d.join("snaps/lenet_solver"))));
        // Nowhere to be found: as given (the writability check then names it).
        assert_eq!(snapshot_prefix(Some("no/such/x"), Some(&solver)), Some("no/such/x".into()));
        assert_eq!(snapshot_file("a/b", 20, ".caffemodel"), PathBuf::from("a/b_iter_20.caffemodel"));
    }

    #[test]
    fn writability_is_probed() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("x").to_string_lossy().into_owned();
        check_writable(&prefix, 0).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe is removed");
        let missing = dir.path().join("missing/x").to_string_lossy().into_owned();
        let e = check_writable(&missing, 0).unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot write snapshots with snapshot_prefix \"{missing}\"")), "{e}");
        assert!(e.ends_with("make sure that the folder exists and is writable"), "{e}");
    }

    #[test]
    fn paths_fall_back_to_the_naming_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.prototxt"), "").unwrap();
        let solver = dir.path().join("solver.prototxt");
        assert_eq!(resolve("net.prototxt", Some(&solver)), dir.path().join("net.prototxt"));
        assert_eq!(resolve("other.prototxt", Some(&solver)), PathBuf::from("other.prototxt"));
        std::fs::create_dir(dir.path().join("snaps")).unwrap();
        std::fs::write(dir.path().join("snaps/x_iter_5.caffemodel"), "").unwrap();
        let state = dir.path().join("snaps/x_iter_5.solverstate");
        // Written as "snaps/x_iter_5.caffemodel" by a run in dir, read from elsewhere.
        assert_eq!(learned_net("snaps/x_iter_5.caffemodel", &state).unwrap(), dir.path().join("snaps/x_iter_5.caffemodel"));
        let e = learned_net("gone.caffemodel", &state).unwrap_err().to_string();
        assert!(e.contains("its weights file \"gone.caffemodel\" was not found"), "{e}");
    }
}
