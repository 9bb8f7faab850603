//! Source files (the lists that data layers read) and where their paths lead.
//!
//! Caffe opens `source` relative to the working directory and reads each image at
//! `root_folder + name`, a plain string concatenation (so `root_folder: "data"` with
//! `x.png` gives `datax.png`; write `"data/"`). crema does the same first, and only where that
//! finds nothing tries again relative to the directory of the model file that names them (so a
//! model runs from any directory) and, for the images, relative to the source file's own
//! directory. A working Caffe setup resolves exactly as in Caffe.

use crate::{Error, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One line of a DenseImageData source: an image and its label image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The image, as written in the file.
    pub image: String,
    /// The label image, as written in the file.
    pub label: String,
    /// 1-based line number, for errors.
    pub line: usize,
}

/// One line of an ImageData source: an image path and an integer label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labeled {
    /// The image, as written in the file.
    pub image: String,
    /// The class label.
    pub label: i32,
    /// 1-based line number, for errors.
    pub line: usize,
}

/// Reads `path` as a list of `image label-image` lines (whitespace-separated, exactly two
/// fields; blank lines skipped). An empty list is an error.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.len() {
            0 => continue,
            2 => out.push(Pair { image: fields[0].to_string(), label: fields[1].to_string(), line: i + 1 }),
            n => {
                return Err(Error::Decode {
                    file: path.display().to_string(),
                    msg: format!("line {}: expected 2 fields `image label_image`, found {n}: `{}`", i + 1, line.trim()),
                })
            }
        }
    }
    non_empty(path, out)
}

/// Reads `path` as a list of `image label` lines: the label is the integer after the last
/// space, the path is everything before it (so it may contain spaces, as in Caffe's
/// ImageData). An empty list is an error.
pub fn read_labeled(path: &Path) -> Result<Vec<Labeled>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| Error::Decode { file: path.display().to_string(), msg: format!("line {}: {msg}", i + 1) };
        let Some((image, label)) = line.rsplit_once([' ', '\t']) else {
            return Err(bad(format!("expected `image label`, found 1 field: `{line}`")));
        };
        let label = label.parse::<i32>().map_err(|_| bad(format!("the label `{label}` is not an integer")))?;
        out.push(Labeled { image: image.trim().to_string(), label, line: i + 1 });
    }
    non_empty(path, out)
}

fn non_empty<T>(path: &Path, v: Vec<T>) -> Result<Vec<T>> {
    if v.is_empty() {
        return Err(Error::Decode { file: path.display().to_string(), msg: "the source file lists no images".into() });
    }
    Ok(v)
}

/// `path` as given if it exists (relative to the working directory), else `dir/path` when that
/// exists and `path` is relative; otherwise an error naming every place tried.
pub fn resolve_file(path: &str, dir: Option<&Path>, what: &str) -> Result<PathBuf> {
    let given = PathBuf::from(path);
    if given.exists() {
        return Ok(given);
    }
    let mut tried = vec![given.clone()];
    if let Some(d) = dir.filter(|_| given.is_relative()) {
        let p = d.join(&given);
        if p.exists() {
            return Ok(p);
        }
        tried.push(p);
    }
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(Error::Io {
        path: given,
        err: std::io::Error::new(std::io::ErrorKind::NotFound, format!("{what} not found (looked at {})", tried.join(", "))),
    })
}

/// Turns the names in a source file into paths: `prefix + name`, with the prefix chosen once
/// (see [`Resolver::new`]).
#[derive(Clone, Debug)]
pub struct Resolver {
    prefix: OsString,
}

impl Resolver {
    /// Chooses where names resolve from: the first of `root`, `model_dir/root`,
    /// `source_dir/root` under which `first` (the first name of the list) exists. When none
    /// has it, the error names the places tried.
    pub fn new(root: &str, first: &str, model_dir: Option<&Path>, source_dir: Option<&Path>) -> Result<Self> {
        let mut prefixes: Vec<OsString> = vec![OsString::from(root)];
        let relative = Path::new(root).is_relative() && Path::new(first).is_relative();
        if relative {
            for dir in [model_dir, source_dir].into_iter().flatten() {
                let mut p = dir.as_os_str().to_owned();
                if !p.is_empty() {
                    p.push("/");
                }
                p.push(root);
                if !prefixes.contains(&p) {
                    prefixes.push(p);
                }
            }
        }
        for p in &prefixes {
            let mut candidate = p.clone();
            candidate.push(first);
            if Path::new(&candidate).exists() {
                return Ok(Resolver { prefix: p.clone() });
            }
        }
        let tried: Vec<String> = prefixes
            .iter()
            .map(|p| {
                let mut c = p.clone();
                c.push(first);
                PathBuf::from(c).display().to_string()
            })
            .collect();
        let hint = if !root.is_empty() && !root.ends_with('/') {
            format!(" (root_folder `{root}` is joined to each name as text, as in Caffe: end it with `/`)")
        } else {
            String::new()
        };
        Err(Error::Io {
            path: PathBuf::from(tried[0].clone()),
            err: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the first image of the source is not found (looked at {}){hint}", tried.join(", ")),
            ),
        })
    }

    /// A resolver that uses `prefix` as it is.
    pub fn with_prefix(prefix: impl Into<OsString>) -> Self {
        Resolver { prefix: prefix.into() }
    }

    /// The path of `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        let mut p = self.prefix.clone();
        p.push(name);
        PathBuf::from(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn pairs_and_their_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "ok.txt", "a.png  la.png\n\n  b.png\tlb.png  \n");
        let pairs = read_pairs(&p).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!((pairs[1].image.as_str(), pairs[1].label.as_str(), pairs[1].line), ("b.png", "lb.png", 3));
        let p = write(d.path(), "three.txt", "a.png la.png\nb.png lb.png extra\n");
        let e = read_pairs(&p).unwrap_err().to_string();
        assert!(e.contains("three.txt: line 2: expected 2 fields") && e.contains("found 3"), "{e}");
        let p = write(d.path(), "empty.txt", "\n  \n");
        let e = read_pairs(&p).unwrap_err().to_string();
        assert!(e.contains("empty.txt: the source file lists no images"), "{e}");
        let e = read_pairs(&d.path().join("missing.txt")).unwrap_err().to_string();
        assert!(e.contains("missing.txt"), "{e}");
    }

    #[test]
    fn labeled_lines_split_at_the_last_space() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "l.txt", "dir/my image.jpg 3\r\nb.png 0\n");
        let l = read_labeled(&p).unwrap();
        assert_eq!((l[0].image.as_str(), l[0].label), ("dir/my image.jpg", 3));
        assert_eq!((l[1].image.as_str(), l[1].label, l[1].line), ("b.png", 0, 2));
        let p = write(d.path(), "bad.txt", "a.png x\n");
        assert!(read_labeled(&p).unwrap_err().to_string().contains("bad.txt: line 1: the label `x` is not an integer"));
        let p = write(d.path(), "one.txt", "a.png\n");
        assert!(read_labeled(&p).unwrap_err().to_string().contains("found 1 field"));
    }

    #[test]
    fn resolver_tries_cwd_then_model_then_source_dir() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("model");
        let data = d.path().join("data");
        std::fs::create_dir_all(model.join("imgs")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(model.join("imgs/a.png"), b"x").unwrap();
        std::fs::write(data.join("b.png"), b"x").unwrap();
        let r = Resolver::new("imgs/", "a.png", Some(&model), Some(&data)).unwrap();
        assert_eq!(r.path("a.png"), model.join("imgs/a.png"));
        let r = Resolver::new("", "b.png", Some(&model), Some(&data)).unwrap();
        assert_eq!(r.path("b.png"), data.join("b.png"));
        let e = Resolver::new("imgs", "a.png", Some(&model), None).unwrap_err().to_string();
        assert!(e.contains("imgsa.png") && e.contains("end it with `/`"), "{e}");
        let abs = model.join("imgs/").display().to_string();
        assert_eq!(Resolver::new(&abs, "a.png", None, None).unwrap().path("a.png"), model.join("imgs/a.png"));
    }
}
