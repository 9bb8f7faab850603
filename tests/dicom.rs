//! DICOM radiographs written by real DICOM libraries (fixtures/dicom, made by pydicom, GDCM,
//! OpenJPEG and libjpeg through tools/dicom_fixtures.py): every transfer syntax crema reads
//! decodes to the values pydicom's decoders give, and displays as the DICOM grayscale pipeline
//! says (computed independently by the script); what crema cannot read is refused with a way
//! out; corrupt files are errors, never panics.

use crema::data::decode::{ColorMode, read_image, read_image_info};
use crema::io::dicom;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/dicom")
}

struct Case {
    file: String,
    samples: usize,
    lossy: bool,
    read: bool,
}

fn manifest() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            file: c["file"].as_str().unwrap().to_string(),
            samples: c["samples"].as_u64().unwrap() as usize,
            lossy: c["lossy"].as_bool().unwrap(),
            read: c["expect"].as_str().unwrap() == "read",
        })
        .collect()
}

fn stem(file: &str) -> &str {
    file.strip_suffix(".dcm").unwrap()
}

/// The largest difference between two equally long sequences, and the mean one.
fn worst(a: impl IntoIterator<Item = i32>, b: impl IntoIterator<Item = i32>) -> (i32, f64) {
    let d: Vec<i32> = a.into_iter().zip(b).map(|(x, y)| (x - y).abs()).collect();
    (d.iter().copied().max().unwrap_or(0), d.iter().map(|&x| x as f64).sum::<f64>() / d.len().max(1) as f64)
}

/// How far a lossy file's decoded samples may be from the libraries' (GDCM's decoder):
/// crema's decoders (zune-jpeg, hayro) round their inverse transforms differently. Colour JPEG
/// differs most, by its chroma upsampling: libjpeg and GDCM themselves disagree by up to 7
/// levels on `jpeg_baseline_rgb.dcm`. `None`: lossless, exact.
fn tolerance(c: &Case) -> Option<(i32, f64)> {
    match (c.lossy, c.samples) {
        (false, _) => None,
        (true, 3) => Some((8, 0.5)),
        (true, _) => Some((2, 0.1)),
    }
}

fn check(c: &Case, what: &str, (max, mean): (i32, f64)) {
    let (allowed, allowed_mean) = tolerance(c).unwrap_or((0, 0.0));
    assert!(max <= allowed && mean <= allowed_mean, "{}: {what} differ by up to {max} (mean {mean:.3})", c.file);
}

#[test]
fn every_readable_fixture_decodes_to_the_libraries_values() {
    let cases = manifest();
    assert!(cases.iter().filter(|c| c.read).count() >= 25);
    for c in cases.iter().filter(|c| c.read) {
        let bytes = std::fs::read(fixtures().join(&c.file)).unwrap();
        let got = dicom::decode_values(&bytes).unwrap_or_else(|e| panic!("{}: {e}", c.file));
        let want = crema::io::read_npy_with(
            fixtures().join("expected").join(format!("{}.values.npy", stem(&c.file))),
            crema::io::NpyOptions { integers: true },
        )
        .unwrap();
        let shape: Vec<usize> = want.shape.clone();
        assert_eq!((got.height, got.width), (shape[0], shape[1]), "{}", c.file);
        assert_eq!(got.channels, c.samples, "{}", c.file);
        check(c, "stored values", worst(got.values.iter().copied(), want.data.iter().map(|&v| v as i32)));
    }
}

#[test]
fn every_readable_fixture_displays_as_the_grayscale_pipeline_says() {
    for c in manifest().iter().filter(|c| c.read) {
        let path = fixtures().join(&c.file);
        let want = image::open(fixtures().join("expected").join(format!("{}.display.png", stem(&c.file)))).unwrap();
        let (got, info) = read_image_info(&path, if c.samples == 3 { ColorMode::Bgr } else { ColorMode::Gray }).unwrap();
        assert_eq!(info.color, c.samples == 3, "{}", c.file);
        assert_eq!((got.width as u32, got.height as u32), (want.width(), want.height()), "{}", c.file);
        let diff = if c.samples == 3 {
            // crema gives colour as BGR, as OpenCV does.
            let rgb: Vec<i32> = got.data.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).map(i32::from).collect();
            worst(rgb, want.to_rgb8().into_raw().into_iter().map(i32::from))
        } else {
            worst(got.data.iter().map(|&v| v as i32), want.to_luma8().into_raw().into_iter().map(i32::from))
        };
        check(c, "displayed pixels", diff);
    }
}

#[test]
fn refused_syntaxes_name_the_file_and_a_converter() {
    for c in manifest().iter().filter(|c| !c.read) {
        let path = fixtures().join(&c.file);
        let err = read_image(&path, ColorMode::Gray).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("does not decode") && err.contains("gdcmconv"), "{err}");
    }
    // Every fixture reads now, so one is made refusable: GDCM's JPEG-LS file relabelled as
    // JPEG 2000 Part 2 multi-component (1.2.840.10008.1.2.4.92, a UID of the same length).
    let bytes = std::fs::read(fixtures().join("jpeg_ls.dcm")).unwrap();
    let (from, to) = (b"1.2.840.10008.1.2.4.80", b"1.2.840.10008.1.2.4.92");
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the JPEG-LS transfer syntax UID");
    let mut relabelled = bytes.clone();
    relabelled[at..at + to.len()].copy_from_slice(to);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part2.dcm");
    std::fs::write(&path, &relabelled).unwrap();
    let err = read_image(&path, ColorMode::Gray).unwrap_err().to_string();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    assert!(err.contains("JPEG 2000 Part 2") && err.contains("gdcmconv"), "{err}");
}

#[test]
fn a_radiograph_reads_the_same_from_dicom_as_from_png() {
    let png = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cxr-lite/images/MCUCXR_0001_0.png");
    let dcm = fixtures().join("cxr_MCUCXR_0001_0.dcm");
    for mode in [ColorMode::Gray, ColorMode::Bgr] {
        assert_eq!(read_image(&dcm, mode).unwrap(), read_image(&png, mode).unwrap());
    }
}

/// Reads `bytes` as a file named `name`; must not panic.
fn try_read(bytes: &[u8], name: &Path) -> bool {
    crema::data::decode::decode_image(bytes, name, ColorMode::Gray).is_ok()
}

#[test]
fn truncated_and_corrupted_fixtures_are_errors_not_panics() {
    let name = Path::new("x.dcm");
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for c in manifest() {
        let bytes = std::fs::read(fixtures().join(&c.file)).unwrap();
        for n in (0..bytes.len()).step_by(7) {
            // A cut inside the pixel data of an encapsulated file may still leave a decodable
            // frame (trailing fragments); a cut anywhere before it cannot.
            let _ = try_read(&bytes[..n], name);
        }
        assert!(!try_read(&bytes[..bytes.len() / 4], name), "{}: a quarter of the file read", c.file);
        for i in (0..bytes.len()).step_by(11) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = bytes.clone();
            bad[i] ^= (seed as u8) | 1;
            let _ = try_read(&bad, name);
        }
    }
}
