//! Resizing 8-bit images.
//!
//! The data layers resize as Caffe does, through OpenCV's `cv::resize`:
//! - [`linear`] (`INTER_LINEAR`, images): pixel centres aligned,
//!   `fx = (dx + 0.5) * (src / dst) - 0.5`, two taps per axis, indices clamped at the borders.
//!   OpenCV computes in 11-bit fixed point; crema computes the same weights in `f32` and rounds
//!   to nearest, so a value may differ from OpenCV's by 1.
//! - [`nearest`] (`INTER_NEAREST`, labels): `sx = floor(dx * (1 / (dst / src)))`, clamped,
//!   exactly OpenCV's (not centre-aligned: it keeps the top-left source pixel of each cell).
//!
//! `crema dataset` prepares data once and favours fidelity instead:
//! - [`antialiased`]: bilinear with the triangle filter widened to the scale factor when
//!   shrinking (PIL's `BILINEAR`), so that a 2048-pixel radiograph brought to 256 averages
//!   every source pixel rather than sampling one in eight.
//! - [`nearest_centered`]: the source pixel under each destination pixel's centre.

use super::decode::Image8;

/// OpenCV's `INTER_LINEAR` resize to `width x height`.
pub fn linear(img: &Image8, width: usize, height: usize) -> Image8 {
    if (img.width, img.height) == (width, height) {
        return img.clone();
    }
    let xs = linear_taps(img.width, width);
    let ys = linear_taps(img.height, height);
    let ch = img.channels;
    let mut out = Image8::new(width, height, ch);
    let src_row = img.width * ch;
    for (dy, &(y0, y1, b)) in ys.iter().enumerate() {
        let r0 = &img.data[y0 * src_row..(y0 + 1) * src_row];
        let r1 = &img.data[y1 * src_row..(y1 + 1) * src_row];
        let dst = &mut out.data[dy * width * ch..(dy + 1) * width * ch];
        for (dx, &(x0, x1, a)) in xs.iter().enumerate() {
            for c in 0..ch {
                let top = r0[x0 * ch + c] as f32 * (1.0 - a) + r0[x1 * ch + c] as f32 * a;
                let bottom = r1[x0 * ch + c] as f32 * (1.0 - a) + r1[x1 * ch + c] as f32 * a;
                let v = top * (1.0 - b) + bottom * b;
                dst[dx * ch + c] = (v + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// For each destination index: the two source indices and the weight of the second.
fn linear_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut a = f - s as f32;
            if s < 0 {
                s = 0;
                a = 0.0;
            }
            if s >= src as i64 - 1 {
                s = src as i64 - 1;
                a = 0.0;
            }
            let s = s as usize;
            (s, (s + 1).min(src - 1), a)
        })
        .collect()
}

/// OpenCV's `INTER_NEAREST` resize to `width x height`.
pub fn nearest(img: &Image8, width: usize, height: usize) -> Image8 {
    let map = |src: usize, dst: usize| -> Vec<usize> {
        let inv = 1.0 / (dst as f64 / src as f64);
        (0..dst).map(|d| ((d as f64 * inv).floor() as usize).min(src - 1)).collect()
    };
    pick(img, &map(img.width, width), &map(img.height, height))
}

/// Nearest neighbour by pixel centres: source pixel `floor((d + 0.5) * src / dst)`.
pub fn nearest_centered(img: &Image8, width: usize, height: usize) -> Image8 {
    let map = |src: usize, dst: usize| -> Vec<usize> {
        (0..dst).map(|d| (((2 * d + 1) * src) / (2 * dst)).min(src - 1)).collect()
    };
    pick(img, &map(img.width, width), &map(img.height, height))
}

fn pick(img: &Image8, xs: &[usize], ys: &[usize]) -> Image8 {
    let ch = img.channels;
    let mut out = Image8::new(xs.len(), ys.len(), ch);
    let mut o = 0;
    for &y in ys {
        for &x in xs {
            let i = (y * img.width + x) * ch;
            out.data[o..o + ch].copy_from_slice(&img.data[i..i + ch]);
            o += ch;
        }
    }
    out
}

/// Bilinear resize with the filter widened when shrinking (PIL's `BILINEAR`): each destination
/// pixel is the triangle-weighted mean of the source pixels within `max(1, src/dst)` of its
/// centre.
pub fn antialiased(img: &Image8, width: usize, height: usize) -> Image8 {
    if (img.width, img.height) == (width, height) {
        return img.clone();
    }
    let ch = img.channels;
    let xs = triangle_weights(img.width, width);
    let ys = triangle_weights(img.height, height);
    // Horizontal pass into f32 rows, then vertical.
    let mut tmp = vec![0f32; img.height * width * ch];
    for y in 0..img.height {
        let src = &img.data[y * img.width * ch..(y + 1) * img.width * ch];
        let dst = &mut tmp[y * width * ch..(y + 1) * width * ch];
        for (dx, (start, ws)) in xs.iter().enumerate() {
            for c in 0..ch {
                dst[dx * ch + c] = ws.iter().enumerate().map(|(k, w)| w * src[(start + k) * ch + c] as f32).sum();
            }
        }
    }
    let mut out = Image8::new(width, height, ch);
    let row = width * ch;
    for (dy, (start, ws)) in ys.iter().enumerate() {
        for i in 0..row {
            let v: f32 = ws.iter().enumerate().map(|(k, w)| w * tmp[(start + k) * row + i]).sum();
            out.data[dy * row + i] = (v + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// For each destination index: the first source index and the normalised weights from there.
fn triangle_weights(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = src as f64 / dst as f64;
    let support = scale.max(1.0);
    (0..dst)
        .map(|d| {
            let center = (d as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(src);
            let mut ws: Vec<f64> =
                (lo..hi).map(|s| (1.0 - ((s as f64 + 0.5 - center) / support).abs()).max(0.0)).collect();
            let total: f64 = ws.iter().sum();
            if total > 0.0 {
                ws.iter_mut().for_each(|w| *w /= total);
            }
            (lo, ws.into_iter().map(|w| w as f32).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(width: usize, height: usize, data: Vec<u8>) -> Image8 {
        Image8 { width, height, channels: 1, data }
    }

    #[test]
    fn linear_matches_opencv_geometry() {
        // 2 -> 4: fx = (d + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped at both ends.
        let img = gray(2, 1, vec![0, 100]);
        assert_eq!(linear(&img, 4, 1).data, [0, 25, 75, 100]);
        // 4 -> 2 (exact halving): the mean of each pair.
        let img = gray(4, 1, vec![0, 10, 20, 31]);
        assert_eq!(linear(&img, 2, 1).data, [5, 26]);
        // Both axes, colour: each channel on its own.
        let img = Image8 { width: 2, height: 2, channels: 3, data: vec![0, 0, 0, 40, 80, 120, 80, 0, 0, 120, 80, 120] };
        let out = linear(&img, 1, 1);
        assert_eq!(out.data, [60, 40, 60]);
    }

    #[test]
    fn nearest_is_opencv_floor_mapping() {
        let img = gray(4, 1, vec![1, 2, 3, 4]);
        assert_eq!(nearest(&img, 2, 1).data, [1, 3]);
        assert_eq!(nearest(&img, 8, 1).data, [1, 1, 2, 2, 3, 3, 4, 4]);
        assert_eq!(nearest(&img, 3, 1).data, [1, 2, 3]); // floor(0, 1.33, 2.67)
        assert_eq!(nearest_centered(&img, 2, 1).data, [2, 4]);
        assert_eq!(nearest_centered(&img, 3, 1).data, [1, 3, 4]); // floor(0.67, 2, 3.33)
    }

    #[test]
    fn antialiased_averages_when_shrinking_and_interpolates_when_growing() {
        // 8 -> 2: each output is a triangle-weighted mean over its 4 pixels and their neighbours.
        let img = gray(8, 1, vec![0, 0, 0, 0, 200, 200, 200, 200]);
        let out = antialiased(&img, 2, 1);
        assert!(out.data[0] < 40 && out.data[1] > 160, "{:?}", out.data);
        let flat = gray(8, 8, vec![77; 64]);
        assert_eq!(antialiased(&flat, 3, 5).data, vec![77; 15]);
        // Growing is plain bilinear with clamped ends (same as `linear`).
        let img = gray(2, 1, vec![0, 100]);
        assert_eq!(antialiased(&img, 4, 1).data, [0, 25, 75, 100]);
    }
}
