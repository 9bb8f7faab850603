//! Where the images and masks of an evaluation come from: a list file of `image mask` lines,
//! or two folders of masks matched by name.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Extensions of the image files looked at in folders (compared without case).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "pgm", "ppm", "pnm", "pbm", "dcm", "dicom", "dic"];

/// The suffix `crema segment` gives its mask files (`<name>_mask.png`).
pub const MASK_SUFFIX: &str = "_mask";

/// An image and its true mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The image's file stem.
    pub name: String,
    /// The image.
    pub image: PathBuf,
    /// Its true mask.
    pub mask: PathBuf,
}

/// Reads a list of `image mask` lines (DenseImageData's source format: two whitespace-separated
/// paths a line; blank lines skipped). Paths are relative to `root`, or when it is `None` to
/// the list file's folder; absolute paths stay as they are. An empty list, or a line without
/// exactly two fields, is an error naming the file and line.
pub fn read_list(path: &Path, root: Option<&Path>) -> Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let base = root.map(Path::to_path_buf).unwrap_or_else(|| path.parent().map(Path::to_path_buf).unwrap_or_default());
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [] => continue,
            [image, mask] => pairs.push(Pair { name: stem(Path::new(image)), image: base.join(image), mask: base.join(mask) }),
            _ => {
                return Err(Error::Decode {
                    file: path.display().to_string(),
                    msg: format!("line {}: expected `image mask` (two paths), found {} field(s)", i + 1, fields.len()),
                })
            }
        }
    }
    if pairs.is_empty() {
        return Err(Error::Decode { file: path.display().to_string(), msg: "no `image mask` lines: the list is empty".into() });
    }
    Ok(pairs)
}

/// A predicted mask and the true one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskPair {
    /// The name both files share.
    pub name: String,
    /// The predicted mask.
    pub pred: PathBuf,
    /// The true mask.
    pub truth: PathBuf,
}

/// Whether `p` is read as an image: by one of `extensions`, or as a DICOM file by its content
/// (PACS exports name files `IM000001`, or by UID, `1.2.840.113619.2.1`).
pub fn is_image_file(p: &Path, extensions: &[&str]) -> bool {
    p.extension().and_then(|x| x.to_str()).is_some_and(|x| extensions.iter().any(|k| k.eq_ignore_ascii_case(x)))
        || crate::io::dicom::is_dicom_file(p)
}

/// The image files of `dir` (by extension; DICOM files by content), sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for e in entries {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        if p.is_file() && is_image_file(&p, IMAGE_EXTENSIONS) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// The file stem of `p` as a string.
pub fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The image file of `dir` named `name` (any image extension, PNG first), if there is one.
pub fn find_image(dir: &Path, name: &str) -> Option<PathBuf> {
    IMAGE_EXTENSIONS.iter().map(|ext| dir.join(format!("{name}.{ext}"))).find(|p| p.is_file())
}

/// Matches the masks of `pred` with those of `truth` by name. When `pred` holds
/// `<name>_mask.*` files (a `crema segment` folder) only those count, named without the suffix;
/// otherwise every image file counts. Each prediction needs a truth of the same name (any image
/// extension, or with the `_mask` suffix): a missing one is an error naming it. Returns the
/// pairs (sorted by name) and how many truth files had no prediction.
pub fn pair_folders(pred: &Path, truth: &Path) -> Result<(Vec<MaskPair>, usize)> {
    let files = image_files(pred)?;
    let segment_style = files.iter().any(|p| stem(p).ends_with(MASK_SUFFIX));
    let mut pairs = Vec::new();
    for p in files {
        let s = stem(&p);
        let name = match (segment_style, s.strip_suffix(MASK_SUFFIX)) {
            (true, Some(n)) => n.to_string(),
            (true, None) => continue,
            (false, _) => s,
        };
        let t = find_image(truth, &name).or_else(|| find_image(truth, &format!("{name}{MASK_SUFFIX}"))).ok_or_else(|| Error::Config(format!(
            "{}: no true mask named `{name}` in {} (looked for {name}.png and other image extensions)",
            p.display(),
            truth.display()
        )))?;
        pairs.push(MaskPair { name, pred: p, truth: t });
    }
    if pairs.is_empty() {
        return Err(Error::Config(format!("{}: no mask images (PNG, JPEG, BMP, GIF, TIFF, PNM) to evaluate", pred.display())));
    }
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    let used: std::collections::HashSet<&PathBuf> = pairs.iter().map(|p| &p.truth).collect();
    let unmatched = image_files(truth)?.iter().filter(|t| !used.contains(t)).count();
    Ok((pairs, unmatched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("test.txt");
        std::fs::write(&list, "images/a.png masks/a.png\n\n  images/b.png\tmasks/b.png  \n/abs/c.png /abs/c_m.png\n").unwrap();
        let pairs = read_list(&list, None).unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0], Pair { name: "a".into(), image: dir.path().join("images/a.png"), mask: dir.path().join("masks/a.png") });
        assert_eq!(pairs[2].image, PathBuf::from("/abs/c.png"));
        let rooted = read_list(&list, Some(Path::new("/data"))).unwrap();
        assert_eq!(rooted[1].mask, PathBuf::from("/data/masks/b.png"));

        std::fs::write(&list, "a.png b.png\nc.png\n").unwrap();
        let e = read_list(&list, None).unwrap_err().to_string();
        assert!(e.contains("test.txt") && e.contains("line 2") && e.contains("1 field"), "{e}");
        std::fs::write(&list, "\n \n").unwrap();
        let e = read_list(&list, None).unwrap_err().to_string();
        assert!(e.contains("test.txt") && e.contains("empty"), "{e}");
        let e = read_list(&dir.path().join("none.txt"), None).unwrap_err().to_string();
        assert!(e.contains("none.txt"), "{e}");
    }

    #[test]
    fn folders_pair_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (pred, truth) = (dir.path().join("pred"), dir.path().join("truth"));
        std::fs::create_dir_all(&pred).unwrap();
        std::fs::create_dir_all(&truth).unwrap();
        for f in ["x_mask.png", "x_prob.png", "x_overlay.png", "y_mask.png", "notes.txt"] {
            std::fs::write(pred.join(f), b"").unwrap();
        }
        for f in ["x.png", "y.bmp", "z.png"] {
            std::fs::write(truth.join(f), b"").unwrap();
        }
        let (pairs, unmatched) = pair_folders(&pred, &truth).unwrap();
        assert_eq!(pairs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(pairs[1].truth, truth.join("y.bmp"));
        assert_eq!(unmatched, 1);
        std::fs::write(pred.join("w_mask.png"), b"").unwrap();
        let e = pair_folders(&pred, &truth).unwrap_err().to_string();
        assert!(e.contains("w_mask.png") && e.contains("`w`"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let e = pair_folders(&empty, &truth).unwrap_err().to_string();
        assert!(e.contains("empty") && e.contains("no mask images"), "{e}");
    }
}
