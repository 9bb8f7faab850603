//! The results of an evaluation: per-image scores, their summary, and the files and table they
//! are written as.
//!
//! - `metrics.csv`: `name,dice,iou,accuracy`, one row per image in evaluation order, scores with
//!   6 decimals; a name holding a comma, quote or line break is quoted as RFC 4180 says.
//! - `summary.json`: `{"images": n, "dice": {"mean", "std", "min", "max"}, "iou": {...},
//!   "accuracy": {...}}`; `std` is the sample standard deviation, `null` for one image.
//! - The table: one line per score with mean, std, min and max to 4 decimals.

use super::metrics::{Scores, Stats};
use crate::io::atomic_write;
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// The scores of one named image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageScore {
    /// The image's name (its file stem).
    pub name: String,
    /// Its scores.
    pub scores: Scores,
}

/// The summary written as summary.json.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Number of images.
    pub images: usize,
    /// Dice over the images.
    pub dice: Stats,
    /// IoU over the images.
    pub iou: Stats,
    /// Pixel accuracy over the images.
    pub accuracy: Stats,
}

/// Summarises `rows`; an error when there are none.
pub fn summarize(rows: &[ImageScore]) -> Result<Summary> {
    let of = |f: fn(&Scores) -> f64| Stats::of(&rows.iter().map(|r| f(&r.scores)).collect::<Vec<_>>());
    match (of(|s| s.dice), of(|s| s.iou), of(|s| s.accuracy)) {
        (Some(dice), Some(iou), Some(accuracy)) => Ok(Summary { images: rows.len(), dice, iou, accuracy }),
        _ => Err(Error::Config("no images were evaluated".into())),
    }
}

/// metrics.csv's text.
pub fn metrics_csv(rows: &[ImageScore]) -> String {
    let mut s = String::from("name,dice,iou,accuracy\n");
    for r in rows {
        s.push_str(&format!("{},{:.6},{:.6},{:.6}\n", csv_field(&r.name), r.scores.dice, r.scores.iou, r.scores.accuracy));
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Writes metrics.csv at `path` (atomically).
pub fn write_metrics_csv(path: &Path, rows: &[ImageScore]) -> Result<()> {
    let text = metrics_csv(rows);
    atomic_write(path, |w| w.write_all(text.as_bytes()))
}

/// summary.json's text (pretty-printed, with a final newline).
pub fn summary_json(summary: &Summary) -> String {
    let mut s = serde_json::to_string_pretty(summary).expect("a summary always serialises");
    s.push('\n');
    s
}

/// Writes summary.json at `path` (atomically).
pub fn write_summary_json(path: &Path, summary: &Summary) -> Result<()> {
    let text = summary_json(summary);
    atomic_write(path, |w| w.write_all(text.as_bytes()))
}

/// The summary as a table for a terminal.
pub fn table(summary: &Summary) -> String {
    let mut s = format!(
        "{} image{} (std: sample standard deviation)\n{:<10}{:>10}{:>10}{:>10}{:>10}\n",
        summary.images,
        if summary.images == 1 { "" } else { "s" },
        "",
        "mean",
        "std",
        "min",
        "max"
    );
    for (name, st) in [("dice", &summary.dice), ("iou", &summary.iou), ("accuracy", &summary.accuracy)] {
        let std = st.std.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
        s.push_str(&format!("{name:<10}{:>10.4}{std:>10}{:>10.4}{:>10.4}\n", st.mean, st.min, st.max));
    }
    s
}

/// Indices of the best `k` rows by Dice (highest first) and the worst `k` (lowest first), ties
/// broken by name. With fewer than `2k` rows the two lists share none: the best take the upper
/// half (rounded up), the worst the rest.
pub fn best_and_worst(rows: &[ImageScore], k: usize) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| rows[b].scores.dice.total_cmp(&rows[a].scores.dice).then_with(|| rows[a].name.cmp(&rows[b].name)));
    let nb = k.min(rows.len().div_ceil(2));
    let nw = k.min(rows.len() - nb);
    let best = order[..nb].to_vec();
    let worst = order.iter().rev().take(nw).copied().collect();
    (best, worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, dice: f64) -> ImageScore {
        ImageScore { name: name.into(), scores: Scores { dice, iou: dice / (2.0 - dice), accuracy: 0.5 + dice / 2.0 } }
    }

    #[test]
    fn csv_and_json_contents() {
        let rows = vec![row("a", 1.0), row("b,c", 0.5)];
        assert_eq!(metrics_csv(&rows), "name,dice,iou,accuracy\na,1.000000,1.000000,1.000000\n\"b,c\",0.500000,0.333333,0.750000\n");
        let s = summarize(&rows).unwrap();
        let v: serde_json::Value = serde_json::from_str(&summary_json(&s)).unwrap();
        assert_eq!(v["images"], 2);
        assert_eq!(v["dice"]["mean"], 0.75);
        assert_eq!(v["dice"]["min"], 0.5);
        assert_eq!(v["dice"]["max"], 1.0);
        assert!((v["dice"]["std"].as_f64().unwrap() - 0.125f64.sqrt()).abs() < 1e-12);
        assert_eq!(v["accuracy"]["mean"], 0.875);
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4);
        let one = summarize(&rows[..1]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&summary_json(&one)).unwrap();
        assert!(v["iou"]["std"].is_null());
        assert!(table(&one).contains("dice          1.0000         -    1.0000    1.0000"), "{}", table(&one));
        assert_eq!(summarize(&[]).unwrap_err().to_string(), "no images were evaluated");
    }

    #[test]
    fn table_layout() {
        let t = table(&summarize(&[row("a", 0.974), row("b", 0.926), row("c", 0.962)]).unwrap());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "3 images (std: sample standard deviation)");
        assert_eq!(lines[1], "                mean       std       min       max");
        assert_eq!(lines[2], "dice          0.9540    0.0250    0.9260    0.9740");
    }

    #[test]
    fn best_and_worst_do_not_overlap() {
        let rows: Vec<ImageScore> = [("a", 0.9), ("b", 0.95), ("c", 0.8), ("d", 0.95), ("e", 0.7)].iter().map(|&(n, d)| row(n, d)).collect();
        assert_eq!(best_and_worst(&rows, 2), (vec![1, 3], vec![4, 2]));
        assert_eq!(best_and_worst(&rows, 3), (vec![1, 3, 0], vec![4, 2]));
        assert_eq!(best_and_worst(&rows[..1], 3), (vec![0], vec![]));
        assert_eq!(best_and_worst(&[], 3), (vec![], vec![]));
    }
}
