//! Finding the image/mask pairs of a dataset: in folders (masks matched to images by file
//! stem), in the JSRT + SCR layout, or in `image mask...` list files.

use crate::data::source::resolve_file;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One image and the masks whose union is its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The output name (the image's file stem).
    pub name: String,
    /// The image file.
    pub image: PathBuf,
    /// Its mask files (a pixel is foreground where any of them is > 127).
    pub masks: Vec<PathBuf>,
    /// Where the layout puts it: an SCR fold (`fold1`), or `train`/`test` for list files.
    pub group: Option<String>,
}

/// File extensions read as images (JSRT's `.IMG` and DICOM's `.dcm` included).
const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "pgm", "ppm", "pnm", "pbm", "img", "dcm", "dicom", "dic"];

fn is_image(p: &Path) -> bool {
    crate::eval::sources::is_image_file(p, IMAGE_EXTENSIONS)
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The stem a mask file is matched by: its own, less a `_mask` suffix (Shenzhen's masks are
/// `CHNCXR_0001_0_mask.png`).
fn mask_key(p: &Path) -> String {
    let s = stem(p);
    s.strip_suffix("_mask").map(str::to_string).unwrap_or(s)
}

/// The image files directly in `dir`, sorted.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(|err| Error::io(dir, err))?;
        let p = e.path();
        if p.is_file() && is_image(&p) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Every file under `dir` (recursively, sorted), and every directory.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, dirs: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
        .collect::<Result<_>>()?;
    entries.sort();
    for p in entries {
        let meta = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if meta.is_dir() {
            dirs.push(p.clone());
            walk(&p, files, dirs)?;
        } else if p.is_file() {
            files.push(p);
        }
    }
    Ok(())
}

/// A map from name to file, refusing two files of one name.
fn by_key(files: Vec<PathBuf>, key: impl Fn(&Path) -> String, what: &str) -> Result<BTreeMap<String, PathBuf>> {
    let mut map = BTreeMap::new();
    for f in files {
        let k = key(&f);
        if let Some(old) = map.insert(k.clone(), f.clone()) {
            return Err(Error::Config(format!(
                "two {what} files are both named `{k}`: {} and {}",
                old.display(),
                f.display()
            )));
        }
    }
    Ok(map)
}

/// Images in `images`, each with the file of the same stem in every folder of `masks`.
/// Images with no mask anywhere are left out (reported in `notes`); an image with masks in
/// some folders but not all is an error.
pub fn from_folders(images: &Path, masks: &[PathBuf], notes: &mut Vec<String>) -> Result<Vec<Case>> {
    if masks.is_empty() {
        return Err(Error::Config("give at least one mask folder".into()));
    }
    let imgs = by_key(image_files(images)?, stem, "image")?;
    if imgs.is_empty() {
        return Err(Error::Config(format!("no image files in {}", images.display())));
    }
    let folders: Vec<BTreeMap<String, PathBuf>> =
        masks.iter().map(|m| by_key(image_files(m)?, mask_key, "mask")).collect::<Result<_>>()?;
    let mut cases = Vec::new();
    let mut unmatched = 0;
    for (name, image) in &imgs {
        let found: Vec<Option<&PathBuf>> = folders.iter().map(|f| f.get(name)).collect();
        if found.iter().all(Option::is_none) {
            unmatched += 1;
            continue;
        }
        if let Some(i) = found.iter().position(Option::is_none) {
            return Err(Error::Config(format!(
                "{} has masks in some mask folders but none in {}",
                image.display(),
                masks[i].display()
            )));
        }
        cases.push(Case { name: name.clone(), image: image.clone(), masks: found.into_iter().flatten().cloned().collect(), group: None });
    }
    if unmatched > 0 {
        notes.push(format!("{unmatched} image(s) in {} have no mask and were left out", images.display()));
    }
    let orphans: usize = folders.iter().map(|f| f.keys().filter(|k| !imgs.contains_key(*k)).count()).sum();
    if orphans > 0 {
        notes.push(format!("{orphans} mask file(s) have no image and were ignored"));
    }
    if cases.is_empty() {
        return Err(Error::Config(format!("no image in {} has a mask", images.display())));
    }
    Ok(cases)
}

/// JSRT's `.IMG` files under `images` with SCR's lung masks under `scr`: every folder named
/// `left lung` and `right lung` (as in `scratch/fold1/masks/left lung/JPCLN001.gif`), the fold
/// taken from the nearest enclosing folder named `fold...`.
pub fn from_jsrt_scr(images: &Path, scr: &Path, notes: &mut Vec<String>) -> Result<Vec<Case>> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    walk(images, &mut files, &mut dirs)?;
    let imgs = by_key(
        files.into_iter().filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("img"))).collect(),
        stem,
        "JSRT image",
    )?;
    if imgs.is_empty() {
        return Err(Error::Config(format!("no JSRT .IMG files under {}", images.display())));
    }
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    walk(scr, &mut files, &mut dirs)?;
    let side = |name: &str| -> Result<BTreeMap<String, PathBuf>> {
        let masks: Vec<PathBuf> = files
            .iter()
            .filter(|f| is_image(f) && f.parent().and_then(|d| d.file_name()).is_some_and(|d| d.eq_ignore_ascii_case(name)))
            .cloned()
            .collect();
        by_key(masks, mask_key, name)
    };
    let (left, right) = (side("left lung")?, side("right lung")?);
    if left.is_empty() || right.is_empty() {
        return Err(Error::Config(format!(
            "no SCR lung masks under {} (expected folders `left lung` and `right lung`, as in scratch/fold1/masks/left lung/JPCLN001.gif)",
            scr.display()
        )));
    }
    let fold = |p: &Path| -> Option<String> {
        p.ancestors()
            .filter_map(|a| a.file_name()?.to_str())
            .find(|n| n.to_ascii_lowercase().starts_with("fold"))
            .map(str::to_string)
    };
    let mut cases = Vec::new();
    let mut missing = 0;
    for (name, image) in &imgs {
        match (left.get(name), right.get(name)) {
            (Some(l), Some(r)) => cases.push(Case {
                name: name.clone(),
                image: image.clone(),
                masks: vec![l.clone(), r.clone()],
                group: fold(l),
            }),
            (None, None) => missing += 1,
            _ => return Err(Error::Config(format!("{} has only one of its two SCR lung masks", image.display()))),
        }
    }
    if missing > 0 {
        notes.push(format!("{missing} JSRT image(s) have no SCR masks and were left out"));
    }
    if cases.is_empty() {
        return Err(Error::Config("no JSRT image has SCR lung masks".into()));
    }
    Ok(cases)
}

/// The pairs of a list file: `image mask [mask...]` lines, paths relative to the working
/// directory or else to the list's folder.
pub fn from_list(list: &Path, group: &str) -> Result<Vec<Case>> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    let dir = list.parent();
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() < 2 {
            return Err(Error::Decode {
                file: list.display().to_string(),
                msg: format!("line {}: expected `image mask [mask...]`, found 1 field", i + 1),
            });
        }
        let find = |f: &str| {
            resolve_file(f, dir, "file").map_err(|e| Error::Decode {
                file: list.display().to_string(),
                msg: format!("line {}: {e}", i + 1),
            })
        };
        let image = find(fields[0])?;
        let masks = fields[1..].iter().map(|f| find(f)).collect::<Result<Vec<_>>>()?;
        cases.push(Case { name: stem(&image), image, masks, group: Some(group.to_string()) });
    }
    if cases.is_empty() {
        return Err(Error::Decode { file: list.display().to_string(), msg: "the list names no images".into() });
    }
    Ok(cases)
}

/// The names (file stems of the first field of each line) in a `--train-list`/`--test-list`.
pub fn names_in(list: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    Ok(text.lines().filter_map(|l| l.split_whitespace().next()).map(|f| stem(Path::new(f))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn folders_match_by_stem_and_mask_suffix() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for n in ["a", "b", "c"] {
            touch(&r.join(format!("img/{n}.png")));
        }
        touch(&r.join("left/a.png"));
        touch(&r.join("left/b.png"));
        touch(&r.join("right/a_mask.png"));
        touch(&r.join("right/b_mask.png"));
        touch(&r.join("right/z.png"));
        let mut notes = Vec::new();
        let cases = from_folders(&r.join("img"), &[r.join("left"), r.join("right")], &mut notes).unwrap();
        assert_eq!(cases.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(cases[0].masks, [r.join("left/a.png"), r.join("right/a_mask.png")]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        std::fs::remove_file(r.join("right/b_mask.png")).unwrap();
        let e = from_folders(&r.join("img"), &[r.join("left"), r.join("right")], &mut notes).unwrap_err().to_string();
        assert!(e.contains("b.png has masks in some mask folders but none in"), "{e}");
    }

    #[test]
    fn jsrt_and_scr_layout() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        touch(&r.join("All247images/JPCLN001.IMG"));
        touch(&r.join("All247images/JPCNN002.IMG"));
        touch(&r.join("All247images/JPCLN003.IMG"));
        for (fold, n) in [("fold1", "JPCLN001"), ("fold2", "JPCNN002")] {
            for side in ["left lung", "right lung", "heart"] {
                touch(&r.join(format!("scratch/{fold}/masks/{side}/{n}.gif")));
            }
        }
        let mut notes = Vec::new();
        let cases = from_jsrt_scr(&r.join("All247images"), &r.join("scratch"), &mut notes).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].group.as_deref(), Some("fold1"));
        assert_eq!(cases[1].group.as_deref(), Some("fold2"));
        assert!(cases[1].masks[0].ends_with("scratch/fold2/masks/left lung/JPCNN002.gif"));
        assert!(cases[1].masks[1].ends_with("right lung/JPCNN002.gif"));
        assert_eq!(notes, ["1 JSRT image(s) have no SCR masks and were left out"]);
    }
}
