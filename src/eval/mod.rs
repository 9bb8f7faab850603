//! Evaluation of segmentations: Dice, IoU and pixel accuracy per image and their summaries
//! ([`metrics`], [`report`]), masks read from files ([`mask`]), lists and folders of cases
//! ([`sources`]), and the pictures of the original report: the X-ray with the prediction in
//! translucent red and the truth's boundary as a white line ([`overlay`](mod@overlay)), best and worst cases
//! side by side ([`montage`](mod@montage)) with labels in a built-in bitmap font ([`font`]).
//!
//! [`write_results`] writes an evaluation's files: `metrics.csv`, `summary.json` and
//! `best_worst.png`.

pub mod font;
pub mod mask;
pub mod metrics;
pub mod montage;
pub mod overlay;
pub mod report;
pub mod sources;

pub use mask::{read_mask, Mask, Threshold};
pub use metrics::{score, Confusion, Scores, Stats};
pub use montage::{montage, Tile};
pub use overlay::{overlay, Style};
pub use report::{best_and_worst, summarize, ImageScore, Summary};

use crate::Error;
use image::RgbImage;
use std::path::Path;

/// How many best and how many worst cases the montage shows.
pub const MONTAGE_CASES: usize = 3;
/// Side of a montage tile in pixels.
pub const MONTAGE_TILE: u32 = 256;

/// The label lines of a montage tile: `"best: NAME"` and `"dice=0.974"`.
pub fn case_label(kind: &str, row: &ImageScore) -> Vec<String> {
    vec![format!("{kind}: {}", row.name), format!("dice={:.3}", row.scores.dice)]
}

/// Writes `out/metrics.csv`, `out/summary.json` and `out/best_worst.png` (creating `out`):
/// the montage has the best [`MONTAGE_CASES`] images by Dice in its first row and the worst in
/// its second, each drawn by `render(index into rows)` (an overlay) and labelled with
/// [`case_label`]. Returns the summary.
pub fn write_results<E: From<Error>>(
    out: &Path,
    rows: &[ImageScore],
    mut render: impl FnMut(usize) -> std::result::Result<RgbImage, E>,
) -> std::result::Result<Summary, E> {
    let summary = summarize(rows)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    report::write_metrics_csv(&out.join("metrics.csv"), rows)?;
    report::write_summary_json(&out.join("summary.json"), &summary)?;
    let (best, worst) = best_and_worst(rows, MONTAGE_CASES);
    let mut grid = Vec::new();
    for (kind, ids) in [("best", best), ("worst", worst)] {
        if ids.is_empty() {
            continue;
        }
        let tiles = ids
            .iter()
            .map(|&i| Ok(Tile { image: render(i)?, label: case_label(kind, &rows[i]) }))
            .collect::<std::result::Result<Vec<_>, E>>()?;
        grid.push(tiles);
    }
    let picture = montage(&grid, MONTAGE_TILE);
    mask::write_png(&out.join("best_worst.png"), &image::DynamicImage::ImageRgb8(picture))?;
    Ok(summary)
}
