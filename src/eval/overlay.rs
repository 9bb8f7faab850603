//! Overlay pictures as the original report drew them: the X-ray in grey, the predicted mask in
//! translucent red, the true mask's boundary as a white line.

use super::mask::Mask;
use crate::{Error, Result};
use image::{GrayImage, Rgb, RgbImage};

/// How an overlay is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Style {
    /// Opacity of the prediction's colour over the X-ray, in [0, 1].
    pub alpha: f32,
    /// The prediction's colour.
    pub fill: Rgb<u8>,
    /// The colour of the truth's boundary.
    pub line: Rgb<u8>,
    /// Width of the boundary line in pixels; `None`: 1 below 384 pixels on the longer side,
    /// 2 from there (see [`line_width`]).
    pub line_width: Option<usize>,
}

impl Default for Style {
    fn default() -> Self {
        Style { alpha: 0.4, fill: Rgb([255, 0, 0]), line: Rgb([255, 255, 255]), line_width: None }
    }
}

/// The boundary width used for an image of `width x height` when the style leaves it open: 1
/// pixel below 384 pixels on the longer side, 2 from there, so the line stays visible when a
/// 512-pixel overlay is shown at half size.
pub fn line_width(width: usize, height: usize) -> usize {
    if width.max(height) >= 384 { 2 } else { 1 }
}

/// Draws the overlay of `xray` with the prediction `pred` filled and the boundary of `truth`
/// (its pixels with a 4-neighbour outside it, [`Mask::boundary`]) as a line. Either mask may be
/// absent; each present one must have the X-ray's size.
///
/// A predicted pixel of grey value g becomes `round((1 - alpha) g + alpha fill)` in each
/// channel; a boundary pixel becomes the line colour, over everything.
pub fn overlay(xray: &GrayImage, pred: Option<&Mask>, truth: Option<&Mask>, style: &Style) -> Result<RgbImage> {
    let (w, h) = (xray.width() as usize, xray.height() as usize);
    for (what, m) in [("prediction", pred), ("truth", truth)] {
        if let Some(m) = m.filter(|m| (m.width(), m.height()) != (w, h)) {
            return Err(Error::Shape(format!("the {what} is {}x{} but the image is {w}x{h}", m.width(), m.height())));
        }
    }
    let a = style.alpha.clamp(0.0, 1.0);
    let mut out = RgbImage::new(w as u32, h as u32);
    for (i, (px, &g)) in out.pixels_mut().zip(xray.as_raw()).enumerate() {
        *px = if pred.is_some_and(|m| m.as_slice()[i]) {
            let blend = |c: u8| ((1.0 - a) * g as f32 + a * c as f32).round().clamp(0.0, 255.0) as u8;
            Rgb([blend(style.fill[0]), blend(style.fill[1]), blend(style.fill[2])])
        } else {
            Rgb([g, g, g])
        };
    }
    if let Some(t) = truth {
        let edge = t.boundary(style.line_width.unwrap_or_else(|| line_width(w, h)));
        for (px, &on) in out.pixels_mut().zip(edge.as_slice()) {
            if on {
                *px = style.line;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn red_where_predicted_white_on_the_truth_edge() {
        let xray = GrayImage::from_fn(8, 8, |x, _| image::Luma([(x * 20) as u8]));
        let pred = Mask::from_fn(8, 8, |x, _| x < 4);
        let truth = Mask::from_fn(8, 8, |x, y| (2..6).contains(&x) && (2..6).contains(&y));
        let img = overlay(&xray, Some(&pred), Some(&truth), &Style::default()).unwrap();
        // Predicted, not on the edge: grey 20 at x=1 → (0.6*20 + 0.4*255, 0.6*20, 0.6*20).
        assert_eq!(*img.get_pixel(1, 0), Rgb([114, 12, 12]));
        // Not predicted, not on the edge: grey.
        assert_eq!(*img.get_pixel(7, 7), Rgb([140, 140, 140]));
        // Truth edge (inner boundary), predicted or not: white.
        assert_eq!(*img.get_pixel(2, 2), Rgb([255, 255, 255]));
        assert_eq!(*img.get_pixel(5, 3), Rgb([255, 255, 255]));
        // Truth interior, predicted: red-tinted, not white.
        assert_eq!(*img.get_pixel(3, 3), Rgb([138, 36, 36]));
        // Interior, not predicted: grey 80.
        assert_eq!(*img.get_pixel(4, 4), Rgb([80, 80, 80]));
        // Outside the truth, just beyond its edge: not white.
        assert_eq!(*img.get_pixel(6, 3), Rgb([120, 120, 120]));
    }

    #[test]
    fn line_width_and_sizes() {
        assert_eq!(line_width(128, 128), 1);
        assert_eq!(line_width(512, 300), 2);
        let xray = GrayImage::new(4, 4);
        let full = Mask::from_fn(4, 4, |_, _| true);
        let img = overlay(&xray, None, Some(&full), &Style { line_width: Some(2), ..Style::default() }).unwrap();
        assert!(img.pixels().all(|p| *p == Rgb([255, 255, 255])));
        let e = overlay(&xray, Some(&Mask::new(3, 4)), None, &Style::default()).unwrap_err().to_string();
        assert_eq!(e, "the prediction is 3x4 but the image is 4x4");
    }
}
