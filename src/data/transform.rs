//! Caffe's `DataTransformer` on an 8-bit image: crop, mirror, mean subtraction and scale, from
//! interleaved HWC bytes to a planar CHW `f32` image.
//!
//! Its rules, kept exactly:
//! - `mirror: true` flips left to right with probability 1/2 **in every phase** (Caffe draws
//!   `Rand(2)` whenever `mirror` is set, TEST included).
//! - `crop_size: k` takes a random `k x k` window in TRAIN and the centre one
//!   (`(H - k) / 2`, `(W - k) / 2`) otherwise.
//! - The mirror draw comes before the crop draws.
//! - Each value is `(pixel - mean) * scale`, with the mean from `mean_file` (a blob of the
//!   *uncropped* image's `C x H x W`, indexed at the uncropped position) or `mean_value` (one
//!   value, or one per channel); `pixel * scale` without a mean. `mean_file` and `mean_value`
//!   together are an error.
//! - A label image (`preserve_pixel_vals`, the SegNet fork's `Transform(.., true)`) gets the
//!   crop and mirror but no mean and a scale of 1.
//!
//! `force_color` / `force_gray` only act on encoded Datums in Caffe; crema's image layers read
//! files, so there they override `is_color` (both set is an error, as in Caffe).

use super::decode::Image8;
use super::source::resolve_file;
use crate::proto::{Phase, TransformationParameter};
use crate::rng::Rng;
use crate::{Error, Result};
use std::path::Path;

/// The mean subtracted from each pixel.
#[derive(Clone, Debug)]
pub enum Mean {
    /// No mean.
    None,
    /// `mean_value`: one value for every channel, or one per channel.
    Values(Vec<f32>),
    /// A mean image of `channels x height x width`, from the named file.
    File {
        /// Where it came from, for errors.
        path: String,
        /// Channels, height, width.
        shape: [usize; 3],
        /// The values, CHW.
        data: Vec<f32>,
    },
}

/// One sample's random choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Draw {
    /// Flip left to right.
    pub mirror: bool,
    /// Top of the crop window.
    pub h_off: usize,
    /// Left of the crop window.
    pub w_off: usize,
}

/// A `transform_param` ready to apply.
#[derive(Clone, Debug)]
pub struct Transformer {
    /// Multiplier after mean subtraction.
    pub scale: f32,
    /// Random left-right flips.
    pub mirror: bool,
    /// Square crop side, 0 for none.
    pub crop_size: usize,
    /// The mean.
    pub mean: Mean,
    /// TRAIN crops at random, other phases in the centre.
    pub phase: Phase,
    /// `Some(true)` for force_color, `Some(false)` for force_gray.
    pub force_color: Option<bool>,
}

impl Transformer {
    /// A transformer that does nothing (scale 1, no mean, no crop, no mirror).
    pub fn identity(phase: Phase) -> Self {
        Transformer { scale: 1.0, mirror: false, crop_size: 0, mean: Mean::None, phase, force_color: None }
    }

    /// Reads `p` (and its mean file, found relative to the working directory or else to
    /// `model_dir`).
    pub fn from_param(p: Option<&TransformationParameter>, phase: Phase, model_dir: Option<&Path>) -> Result<Self> {
        let Some(p) = p else { return Ok(Self::identity(phase)) };
        if p.force_color() && p.force_gray() {
            return Err(Error::Config("transform_param: cannot set both force_color and force_gray".into()));
        }
        let mean = match (&p.mean_file, p.mean_value.is_empty()) {
            (Some(_), false) => {
                return Err(Error::Config("transform_param: cannot specify mean_file and mean_value at the same time".into()))
            }
            (Some(file), true) => read_mean(file, model_dir)?,
            (None, false) => Mean::Values(p.mean_value.clone()),
            (None, true) => Mean::None,
        };
        Ok(Transformer {
            scale: p.scale(),
            mirror: p.mirror(),
            crop_size: p.crop_size() as usize,
            mean,
            phase,
            force_color: if p.force_color() {
                Some(true)
            } else if p.force_gray() {
                Some(false)
            } else {
                None
            },
        })
    }

    /// Output height and width for an image of `height x width`; `file` names it in errors.
    pub fn out_size(&self, height: usize, width: usize, file: &Path) -> Result<(usize, usize)> {
        if self.crop_size == 0 {
            return Ok((height, width));
        }
        if height < self.crop_size || width < self.crop_size {
            return Err(Error::Shape(format!(
                "{}: the image is {width}x{height}, smaller than crop_size {}",
                file.display(),
                self.crop_size
            )));
        }
        Ok((self.crop_size, self.crop_size))
    }

    /// Draws the mirror flag and crop offsets for an image of `height x width`, in Caffe's
    /// order.
    pub fn draw(&self, rng: &mut Rng, height: usize, width: usize) -> Draw {
        let mirror = self.mirror && rng.below(2) == 1;
        let (mut h_off, mut w_off) = (0, 0);
        if self.crop_size > 0 && height >= self.crop_size && width >= self.crop_size {
            if self.phase == Phase::Train {
                h_off = rng.below(height - self.crop_size + 1);
                w_off = rng.below(width - self.crop_size + 1);
            } else {
                h_off = (height - self.crop_size) / 2;
                w_off = (width - self.crop_size) / 2;
            }
        }
        Draw { mirror, h_off, w_off }
    }

    /// Writes `img` transformed into `out` (`channels * oh * ow` values, CHW). A label
    /// (`preserve_pixel_vals`) gets no mean and scale 1. `file` names the image in errors.
    pub fn apply(&self, img: &Image8, d: Draw, out: &mut [f32], preserve_pixel_vals: bool, file: &Path) -> Result<()> {
        let (w, ch) = (img.width, img.channels);
        let px = |c: usize, y: usize, x: usize| img.data[(y * w + x) * ch + c] as f32;
        self.transform([ch, img.height, w], px, d, out, preserve_pixel_vals, file)
    }

    /// [`Transformer::apply`] for float values stored channel-major (`channels x height x
    /// width`), as a Datum's `float_data` holds them.
    pub fn apply_chw(&self, shape: [usize; 3], data: &[f32], d: Draw, out: &mut [f32], file: &Path) -> Result<()> {
        let [_, h, w] = shape;
        self.transform(shape, |c, y, x| data[(c * h + y) * w + x], d, out, false, file)
    }

    /// Caffe's transformation of the `channels x height x width` values `px(c, y, x)`: crop,
    /// mirror, then `(value - mean) * scale`.
    fn transform(
        &self,
        [ch, height, width]: [usize; 3],
        px: impl Fn(usize, usize, usize) -> f32,
        d: Draw,
        out: &mut [f32],
        preserve_pixel_vals: bool,
        file: &Path,
    ) -> Result<()> {
        let (oh, ow) = self.out_size(height, width, file)?;
        if out.len() != ch * oh * ow {
            return Err(Error::Internal(format!("transform output of {} values for a {ch}x{oh}x{ow} image", out.len())));
        }
        let scale = if preserve_pixel_vals { 1.0 } else { self.scale };
        let mean = if preserve_pixel_vals { &Mean::None } else { &self.mean };
        let values: Vec<f32>;
        let per_channel: Option<&[f32]> = match mean {
            Mean::Values(v) if v.len() == 1 => {
                values = vec![v[0]; ch];
                Some(&values)
            }
            Mean::Values(v) if v.len() == ch => Some(v),
            Mean::Values(v) => {
                return Err(Error::Config(format!(
                    "transform_param: give 1 mean_value or one per channel ({ch}), not {}",
                    v.len()
                )))
            }
            _ => None,
        };
        let mean_image = match mean {
            Mean::File { path, shape, data } => {
                if *shape != [ch, height, width] {
                    return Err(Error::Shape(format!(
                        "mean file {path} is {}x{}x{} (CxHxW) but image {} is {ch}x{height}x{width}",
                        shape[0],
                        shape[1],
                        shape[2],
                        file.display(),
                    )));
                }
                Some(data.as_slice())
            }
            _ => None,
        };
        for h in 0..oh {
            let y = d.h_off + h;
            for w in 0..ow {
                let (tw, x) = (if d.mirror { ow - 1 - w } else { w }, d.w_off + w);
                for c in 0..ch {
                    let pixel = px(c, y, x);
                    let v = if let Some(m) = mean_image {
                        (pixel - m[(c * height + y) * width + x]) * scale
                    } else if let Some(m) = per_channel {
                        (pixel - m[c]) * scale
                    } else {
                        pixel * scale
                    };
                    out[(c * oh + h) * ow + tw] = v;
                }
            }
        }
        Ok(())
    }
}

/// Reads a mean `.binaryproto` (a blob of shape `(1, C, H, W)` or `(C, H, W)`).
pub fn read_mean(file: &str, model_dir: Option<&Path>) -> Result<Mean> {
    let path = resolve_file(file, model_dir, "mean file")?;
    let blob = crate::io::read_binaryproto(&path)?;
    let shape: [usize; 3] = match blob.shape.as_slice() {
        [1, c, h, w] | [c, h, w] => [*c, *h, *w],
        s => {
            return Err(Error::Shape(format!(
                "mean file {}: a blob of shape {s:?}; a mean image is (1, C, H, W)",
                path.display()
            )))
        }
    };
    if blob.data.len() != shape.iter().product::<usize>() {
        return Err(Error::Decode {
            file: path.display().to_string(),
            msg: format!("the mean blob holds {} values for shape {:?}", blob.data.len(), blob.shape),
        });
    }
    Ok(Mean::File { path: path.display().to_string(), shape, data: blob.data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(width: usize, height: usize, channels: usize) -> Image8 {
        let data = (0..width * height * channels).map(|i| i as u8).collect();
        Image8 { width, height, channels, data }
    }

    #[test]
    fn planar_output_with_scale_and_mean_values() {
        let t = Transformer { scale: 0.5, mean: Mean::Values(vec![1.0, 2.0]), ..Transformer::identity(Phase::Test) };
        let im = img(2, 1, 2); // pixels (0,1) (2,3)
        let mut out = vec![0.0; 4];
        t.apply(&im, Draw::default(), &mut out, false, Path::new("x")).unwrap();
        assert_eq!(out, [(0.0 - 1.0) * 0.5, (2.0 - 1.0) * 0.5, (1.0 - 2.0) * 0.5, (3.0 - 2.0) * 0.5]);
        // A label keeps its values.
        t.apply(&im, Draw::default(), &mut out, true, Path::new("x")).unwrap();
        assert_eq!(out, [0.0, 2.0, 1.0, 3.0]);
        let bad = Transformer { mean: Mean::Values(vec![1.0, 2.0, 3.0]), ..t };
        let e = bad.apply(&im, Draw::default(), &mut out, false, Path::new("x")).unwrap_err().to_string();
        assert!(e.contains("one per channel (2), not 3"), "{e}");
    }

    #[test]
    fn crop_mirror_and_mean_file_at_the_uncropped_position() {
        let im = img(4, 3, 1); // values 0..12, row-major
        let mean: Vec<f32> = (0..12).map(|i| i as f32 * 0.25).collect();
        let t = Transformer {
            crop_size: 2,
            mean: Mean::File { path: "m".into(), shape: [1, 3, 4], data: mean },
            ..Transformer::identity(Phase::Test)
        };
        let d = t.draw(&mut Rng::new(1), 3, 4);
        assert_eq!(d, Draw { mirror: false, h_off: 0, w_off: 1 }); // centre: (3-2)/2, (4-2)/2
        let mut out = vec![0.0; 4];
        t.apply(&im, Draw { mirror: true, ..d }, &mut out, false, Path::new("x")).unwrap();
        // Window rows 0..2, cols 1..3: [1 2; 5 6], minus 0.75 of each, mirrored.
        assert_eq!(out, [2.0 * 0.75, 1.0 * 0.75, 6.0 * 0.75, 5.0 * 0.75]);
        let e = t.apply(&img(5, 3, 1), d, &mut out, false, Path::new("y.png")).unwrap_err().to_string();
        assert!(e.contains("mean file m is 1x3x4") && e.contains("y.png is 1x3x5"), "{e}");
        let e = t.out_size(1, 5, Path::new("small.png")).unwrap_err().to_string();
        assert!(e.contains("small.png: the image is 5x1, smaller than crop_size 2"), "{e}");
    }

    #[test]
    fn train_crops_at_random_and_mirror_draws_in_every_phase() {
        let t = Transformer { crop_size: 2, mirror: true, ..Transformer::identity(Phase::Train) };
        let mut rng = Rng::new(3);
        let draws: Vec<Draw> = (0..200).map(|_| t.draw(&mut rng, 5, 5)).collect();
        assert!(draws.iter().any(|d| d.mirror) && draws.iter().any(|d| !d.mirror));
        assert!(draws.iter().all(|d| d.h_off <= 3 && d.w_off <= 3));
        assert!(draws.iter().any(|d| d.h_off == 3) && draws.iter().any(|d| d.w_off == 0));
        let test = Transformer { phase: Phase::Test, ..t };
        let draws: Vec<Draw> = (0..50).map(|_| test.draw(&mut rng, 5, 5)).collect();
        assert!(draws.iter().all(|d| (d.h_off, d.w_off) == (1, 1)));
        assert!(draws.iter().any(|d| d.mirror));
    }

    #[test]
    fn parameter_errors() {
        let p = TransformationParameter { force_color: Some(true), force_gray: Some(true), ..Default::default() };
        let e = Transformer::from_param(Some(&p), Phase::Train, None).unwrap_err().to_string();
        assert!(e.contains("both force_color and force_gray"), "{e}");
        let p = TransformationParameter { mean_file: Some("m.binaryproto".into()), mean_value: vec![1.0], ..Default::default() };
        let e = Transformer::from_param(Some(&p), Phase::Train, None).unwrap_err().to_string();
        assert!(e.contains("mean_file and mean_value"), "{e}");
        let p = TransformationParameter { mean_file: Some("/nonexistent/m.binaryproto".into()), ..Default::default() };
        let e = Transformer::from_param(Some(&p), Phase::Train, None).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/m.binaryproto") && e.contains("mean file not found"), "{e}");
    }
}
