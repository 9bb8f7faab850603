//! Montages: rows of labelled pictures on one canvas (the best and worst cases side by side).

use super::font::{draw_text, fit, CELL_H, CELL_W};
use image::imageops::{resize, FilterType};
use image::{Rgb, RgbImage};

/// One picture of a montage with the lines of text drawn above it.
#[derive(Clone, Debug)]
pub struct Tile {
    /// The picture (scaled to fit the tile, aspect kept).
    pub image: RgbImage,
    /// Label lines, top to bottom (shortened with ".." when too long for the tile).
    pub label: Vec<String>,
}

const GAP: u32 = 6;
const BACKGROUND: Rgb<u8> = Rgb([24, 24, 24]);
const TEXT: Rgb<u8> = Rgb([255, 255, 255]);

/// The font scale for labels on a tile `tile` pixels wide: 2 from 200 pixels, else 1.
pub fn label_scale(tile: u32) -> u32 {
    if tile >= 200 { 2 } else { 1 }
}

/// Lays `rows` out on a dark canvas: every picture scaled (triangle filter) to fit a
/// `tile x tile` square and centred in it, its label above it, `GAP` pixels between tiles and
/// around the edge. Rows may have different lengths; the canvas is as wide as the longest.
pub fn montage(rows: &[Vec<Tile>], tile: u32) -> RgbImage {
    let tile = tile.max(8);
    let scale = label_scale(tile);
    let line_h = CELL_H * scale + 2;
    let lines = rows.iter().flatten().map(|t| t.label.len()).max().unwrap_or(0) as u32;
    let label_h = if lines == 0 { 0 } else { lines * line_h + 2 };
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let width = GAP + cols * (tile + GAP);
    let height = GAP + rows.len() as u32 * (label_h + tile + GAP);
    let mut canvas = RgbImage::from_pixel(width.max(1), height.max(1), BACKGROUND);
    let max_chars = (tile / (CELL_W * scale)) as usize;
    for (r, row) in rows.iter().enumerate() {
        let y0 = GAP + r as u32 * (label_h + tile + GAP);
        for (c, t) in row.iter().enumerate() {
            let x0 = GAP + c as u32 * (tile + GAP);
            for (k, line) in t.label.iter().enumerate() {
                let y = y0 + k as u32 * line_h + 1;
                draw_text(&mut canvas, x0 as i64, y as i64, &fit(line, max_chars), scale, TEXT);
            }
            let (w, h) = (t.image.width().max(1), t.image.height().max(1));
            let f = (tile as f64 / w as f64).min(tile as f64 / h as f64);
            let (sw, sh) = (((w as f64 * f).round() as u32).clamp(1, tile), ((h as f64 * f).round() as u32).clamp(1, tile));
            let scaled = if (sw, sh) == (t.image.width(), t.image.height()) {
                t.image.clone()
            } else {
                resize(&t.image, sw, sh, FilterType::Triangle)
            };
            let (ox, oy) = (x0 + (tile - sw) / 2, y0 + label_h + (tile - sh) / 2);
            image::imageops::replace(&mut canvas, &scaled, ox as i64, oy as i64);
        }
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_rows_with_labels() {
        let red = RgbImage::from_pixel(40, 20, Rgb([200, 0, 0]));
        let blue = RgbImage::from_pixel(10, 10, Rgb([0, 0, 200]));
        let rows = vec![
            vec![Tile { image: red.clone(), label: vec!["best".into()] }, Tile { image: blue.clone(), label: vec![] }],
            vec![Tile { image: blue, label: vec!["worst: a_very_long_name".into()] }],
        ];
        let m = montage(&rows, 40);
        let label_h = CELL_H + 2 + 2;
        assert_eq!(m.width(), GAP + 2 * (40 + GAP));
        assert_eq!(m.height(), GAP + 2 * (label_h + 40 + GAP));
        // The red picture fills 40x20 centred vertically in the first tile.
        let y_img = GAP + label_h;
        assert_eq!(*m.get_pixel(GAP, y_img + 10), Rgb([200, 0, 0]));
        assert_eq!(*m.get_pixel(GAP + 39, y_img + 29), Rgb([200, 0, 0]));
        assert_eq!(*m.get_pixel(GAP, y_img + 5), BACKGROUND);
        // The blue 10x10 picture is scaled up to 40x40.
        assert_eq!(*m.get_pixel(GAP + 40 + GAP + 20, y_img + 20), Rgb([0, 0, 200]));
        // Some white text in the first label band, none in the empty one.
        let band = |x0: u32| (x0..x0 + 40).flat_map(|x| (GAP..GAP + label_h).map(move |y| (x, y))).filter(|&(x, y)| *m.get_pixel(x, y) == TEXT).count();
        assert!(band(GAP) > 10);
        assert_eq!(band(GAP + 40 + GAP), 0);
    }
}
