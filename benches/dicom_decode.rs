//! Reads full-size DICOM radiographs in every transfer syntax crema decodes, and, for scale,
//! the same X-ray as a 16-bit PNG (what a converted dataset holds), through the reader the
//! data layers and `crema segment` use.
//!
//! Make the files first (`/tmp/dcmpy/bin/python tools/dicom_bench_files.py`, see its header),
//! then `cargo bench --bench dicom_decode` (`CREMA_BENCH_DICOM` for another folder). Prints the
//! median of 7 reads of each; passes or fails on nothing but errors.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crema::data::decode::{ColorMode, decode_image};

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

fn main() -> crema::Result<()> {
    let dir = std::env::var_os("CREMA_BENCH_DICOM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dicom-bench"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| crema::Error::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    files.sort();
    if files.is_empty() {
        eprintln!("no .dcm files in {}: run tools/dicom_bench_files.py first", dir.display());
        std::process::exit(2);
    }
    println!("{:<22} {:>10} {:>10} {:>9}", "file", "bytes", "ms", "MP/s");
    let mut png16 = None;
    for path in &files {
        let bytes = std::fs::read(path).map_err(|e| crema::Error::io(path, e))?;
        let (img, _) = decode_image(&bytes, path, ColorMode::Gray)?;
        let ms = median_ms(7, || {
            decode_image(&bytes, path, ColorMode::Gray).unwrap();
        });
        let mp = (img.width * img.height) as f64 / 1e6;
        println!("{:<22} {:>10} {:>10.1} {:>9.1}", path.file_name().unwrap().to_string_lossy(), bytes.len(), ms, mp / ms * 1e3);
        if path.file_stem().is_some_and(|s| s == "native") {
            let v = crema::io::dicom::decode_values(&bytes).map_err(|msg| crema::Error::Decode { file: path.display().to_string(), msg })?;
            let raw: Vec<u16> = v.values.iter().map(|&x| x as u16).collect();
            let buf = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(v.width as u32, v.height as u32, raw).unwrap();
            let mut out = Vec::new();
            image::DynamicImage::ImageLuma16(buf).write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
            png16 = Some((out, mp));
        }
    }
    if let Some((png, mp)) = png16 {
        let p = Path::new("same.png");
        let ms = median_ms(7, || {
            decode_image(&png, p, ColorMode::Gray).unwrap();
        });
        println!("{:<22} {:>10} {:>10.1} {:>9.1}", "(16-bit PNG, same)", png.len(), ms, mp / ms * 1e3);
    }
    Ok(())
}
