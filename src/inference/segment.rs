//! Segmenting images with an inference net: an image in, the lung mask and probability map out
//! at the image's own size.
//!
//! A net whose forward samples at test time (Bayesian SegNet: Dropout with
//! `sample_weights_test`) is run several times per image, Monte-Carlo style, as SegNet's
//! Bayesian test script does by filling the input batch with copies of the image: the mask and
//! the probability map come from the mean of the samples' outputs, and the spread of the
//! samples gives an uncertainty map.

use super::preprocess::{resize, Image8, ResizeFilter, Transformer};
use crate::data::transform::Draw;
use crate::backend::Backend;
use crate::eval::mask::Mask;
use crate::net::Net;
use crate::{Error, Result};

/// The scale applied to pixels when neither the command line nor the model says: 1/256, the
/// `transform_param { scale: 0.00390625 }` the lung models are trained with.
pub const DEFAULT_SCALE: f32 = 0.00390625;

/// What a [`Segmenter`] needs besides the net.
#[derive(Clone, Debug)]
pub struct Options {
    /// The input blob; `None`: the net's only input.
    pub input: Option<String>,
    /// The output blob (class probabilities or scores, `1 x K x H x W`); `None`: the net's only
    /// output.
    pub output: Option<String>,
    /// The class whose pixels form the mask and whose probability is mapped (1: lung).
    pub class: usize,
    /// Mean and scale applied to the resized pixels (its crop and mirror are not used).
    pub transform: Transformer,
    /// How images are brought to the input size.
    pub filter: ResizeFilter,
    /// Height and width to give the input instead of the model's (a fully convolutional net
    /// such as SegNet runs at any size its pooling allows).
    pub size: Option<(usize, usize)>,
    /// Forward passes averaged per image. `None`: for a net that samples at test time, the
    /// batch size of its input in the model (SegNet's Bayesian script samples one batch of
    /// copies of the image); otherwise 1. More than 1 is refused for a net whose forward is
    /// deterministic, since every sample would be the same.
    pub samples: Option<usize>,
}

/// One image's result, at the image's size.
#[derive(Clone, Debug)]
pub struct Segmentation {
    /// Pixels whose most probable class is the chosen one (decided at the net's resolution and
    /// resized by nearest neighbour).
    pub mask: Mask,
    /// The chosen class's output value (the mean over the samples), resized bilinearly;
    /// row-major.
    pub prob: Vec<f32>,
    /// With several samples: per pixel, the variance of the samples' outputs (population
    /// variance, as numpy's `var`), averaged over the classes; resized bilinearly, row-major.
    pub uncertainty: Option<Vec<f32>>,
    /// The number of classes of the output.
    pub classes: usize,
}

impl Segmentation {
    /// The probability map as 8 bits: `round(255 p)`, clamped to [0, 255].
    pub fn prob_image(&self) -> image::GrayImage {
        let px = self.prob.iter().map(|&p| (p * 255.0).round().clamp(0.0, 255.0) as u8).collect();
        image::GrayImage::from_raw(self.mask.width() as u32, self.mask.height() as u32, px).expect("one value per pixel")
    }

    /// The uncertainty map as 8 bits, where 255 is the largest value it can take for this many
    /// classes of probabilities, `(1 - 1/K) / K` (0.25 for two classes): samples split evenly
    /// between certain answers of every class. `None` for a single sample.
    pub fn uncertainty_image(&self) -> Option<image::GrayImage> {
        let u = self.uncertainty.as_ref()?;
        let k = self.classes.max(2) as f32;
        let full = (1.0 - 1.0 / k) / k;
        let px = u.iter().map(|&v| (v / full * 255.0).round().clamp(0.0, 255.0) as u8).collect();
        image::GrayImage::from_raw(self.mask.width() as u32, self.mask.height() as u32, px)
    }

    /// The mean of the uncertainty map (`None` for a single sample).
    pub fn mean_uncertainty(&self) -> Option<f64> {
        let u = self.uncertainty.as_ref()?;
        Some(u.iter().map(|&v| v as f64).sum::<f64>() / u.len().max(1) as f64)
    }
}

/// An inference net ready to segment images one at a time.
pub struct Segmenter<B: Backend> {
    net: Net<B>,
    input: String,
    output: usize,
    class: usize,
    transform: Transformer,
    filter: ResizeFilter,
    /// Channels, height, width of the input.
    shape: [usize; 3],
    /// Forward passes averaged per image.
    samples: usize,
    /// Copies of the image in one forward: the samples, at most the model's batch size.
    batch: usize,
}

/// The one blob of `ids`, or the one named `name`; `what` names the role in errors.
fn pick<B: Backend>(net: &Net<B>, ids: &[usize], name: Option<&str>, what: &str) -> Result<usize> {
    let list = || ids.iter().map(|&i| net.blob_name(i)).collect::<Vec<_>>().join(", ");
    match name {
        Some(n) => net.blob_index(n).ok_or_else(|| Error::Config(format!("the net has no blob `{n}` (its {what}s: {})", list()))),
        None if ids.len() == 1 => Ok(ids[0]),
        None if ids.is_empty() => Err(Error::Config(format!("the net has no {what}"))),
        None => Err(Error::Config(format!("the net has several {what}s ({}); name one", list()))),
    }
}

impl<B: Backend> Segmenter<B> {
    /// Wraps `net`; checks that its input is `N x C x H x W` with C 1 or 3, and that the class
    /// is named. The net is made forward-only and shares its blobs' memory: of its blobs, only
    /// the input and the output can be read after a segmentation.
    pub fn new(mut net: Net<B>, opts: Options) -> Result<Self> {
        let inputs = net.inputs().to_vec();
        let input = pick(&net, &inputs, opts.input.as_deref(), "input")?;
        let outputs = net.outputs().to_vec();
        let output = pick(&net, &outputs, opts.output.as_deref(), "output")?;
        // Segmenting runs forward only and reads the output alone: no gradients, nothing kept
        // for backward, and each other blob's memory lent only while its values are needed.
        let output_name = net.blob_name(output).to_string();
        net.make_forward_only()?;
        net.set_data_sharing(true, &[&output_name])?;
        let name = net.blob_name(input).to_string();
        let shape = net.blobs()[input].shape().to_vec();
        let [model_batch, c, mut h, mut w] = shape[..] else {
            return Err(Error::Shape(format!("input `{name}` has shape {shape:?}; an image input needs N x C x H x W")));
        };
        if c != 1 && c != 3 {
            return Err(Error::Shape(format!("input `{name}` has {c} channels; an image gives 1 (gray) or 3 (BGR)")));
        }
        if let Some((sh, sw)) = opts.size {
            (h, w) = (sh, sw);
        }
        if h == 0 || w == 0 {
            return Err(Error::Shape(format!("input `{name}` would be {h}x{w}")));
        }
        let samples = sample_count(&net, opts.samples, model_batch)?;
        let batch = samples.min(model_batch.max(1));
        let be = net.backend().clone();
        let blob = net.blob_mut(&name).ok_or_else(|| Error::Internal(format!("blob `{name}` vanished")))?;
        blob.reshape(&be, &[batch, c, h, w])?;
        // Every layer takes the new size now, so a size the net cannot run at fails here.
        net.reshape()?;
        let transform = Transformer { crop_size: 0, mirror: false, ..opts.transform };
        Ok(Segmenter { net, input: name, output, class: opts.class, transform, filter: opts.filter, shape: [c, h, w], samples, batch })
    }

    /// Forward passes averaged per image.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Channels, height and width the net takes.
    pub fn input_shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The net.
    pub fn net(&self) -> &Net<B> {
        &self.net
    }

    /// Segments `img` (with as many channels as the input): resize, transform, forward (once
    /// per sample, a batch of copies at a time), argmax of the samples' mean and the class's
    /// mean at the net's resolution, all brought back to the image's size.
    pub fn segment(&mut self, img: &Image8) -> Result<Segmentation> {
        let [c, h, w] = self.shape;
        if img.channels != c {
            return Err(Error::Shape(format!("a {}-channel image for an input of {c} channels", img.channels)));
        }
        if img.width == 0 || img.height == 0 {
            return Err(Error::Shape("an empty image".into()));
        }
        let mut values = vec![0f32; c * h * w];
        self.transform.apply(&resize(img, w, h, self.filter), Draw::default(), &mut values, false, std::path::Path::new("the image"))?;
        let be = self.net.backend().clone();
        let mut moments = Moments::default();
        while moments.samples < self.samples {
            let n = (self.samples - moments.samples).min(self.batch);
            let blob = self.net.blob_mut(&self.input).ok_or_else(|| Error::Internal("input blob vanished".into()))?;
            blob.reshape(&be, &[n, c, h, w])?;
            blob.set_data(&be, &values.repeat(n))?;
            self.net.forward()?;
            let out = &self.net.blobs()[self.output];
            let shape = out.shape().to_vec();
            let name = self.net.blob_name(self.output);
            let (k, oh, ow) = match shape[..] {
                [m, k, oh, ow] if m == n => (k, oh, ow),
                [m, k, len] if m == n => (k, len, 1),
                _ => {
                    let want = if n == 1 { "1".to_string() } else { format!("{n} (one per sample)") };
                    return Err(Error::Shape(format!("output `{name}` has shape {shape:?}; expected {want} x K x H x W class scores")));
                }
            };
            if self.class >= k {
                return Err(Error::Config(format!("class {} asked of output `{name}`, which has {k} classes", self.class)));
            }
            moments.add(&out.data_to_vec(&be)?, n, [k, oh, ow])?;
        }
        let [k, oh, ow] = moments.shape;
        let plane = oh * ow;
        let mean = moments.mean();
        let mut mask = Mask::new(ow, oh);
        for i in 0..plane {
            // Caffe's ArgMax order: the highest value, the lowest class among equals.
            let mut best = 0;
            for j in 1..k {
                if mean[j * plane + i] > mean[best * plane + i] {
                    best = j;
                }
            }
            mask.set(i % ow, i / ow, best == self.class);
        }
        let prob = &mean[self.class * plane..(self.class + 1) * plane];
        let uncertainty = moments.uncertainty().map(|u| resize_plane(&u, ow, oh, img.width, img.height));
        Ok(Segmentation {
            mask: mask.resize_nearest(img.width, img.height),
            prob: resize_plane(prob, ow, oh, img.width, img.height),
            uncertainty,
            classes: k,
        })
    }
}

/// How many samples to average: see [`Options::samples`].
fn sample_count<B: Backend>(net: &Net<B>, asked: Option<usize>, model_batch: usize) -> Result<usize> {
    let stochastic: Vec<&str> = net.layers().iter().filter(|l| l.layer.is_stochastic()).map(|l| l.param.name()).collect();
    match asked {
        Some(0) => Err(Error::Config("0 samples asked; at least 1 is needed".into())),
        Some(n) if n > 1 && stochastic.is_empty() => Err(Error::Config(format!(
            "{n} samples asked, but no layer of the net samples at test time, so every sample would be the same; \
             Monte-Carlo sampling needs a Dropout layer with `sample_weights_test: true` (Bayesian SegNet)"
        ))),
        Some(n) => Ok(n),
        None if stochastic.is_empty() => Ok(1),
        None => Ok(model_batch.max(1)),
    }
}

/// Running sums of the samples' outputs, per class and pixel.
#[derive(Default)]
struct Moments {
    samples: usize,
    /// Classes, height, width of one sample's output.
    shape: [usize; 3],
    sum: Vec<f64>,
    squares: Vec<f64>,
}

impl Moments {
    /// Adds `n` samples' outputs (`n x K x H x W`, row-major).
    fn add(&mut self, out: &[f32], n: usize, shape: [usize; 3]) -> Result<()> {
        let len: usize = shape.iter().product();
        if self.samples == 0 {
            (self.shape, self.sum, self.squares) = (shape, vec![0.0; len], vec![0.0; len]);
        } else if shape != self.shape {
            return Err(Error::Shape(format!("the output changed from {:?} to {shape:?} between samples", self.shape)));
        }
        for sample in out.chunks_exact(len).take(n) {
            for ((s, q), &v) in self.sum.iter_mut().zip(&mut self.squares).zip(sample) {
                *s += v as f64;
                *q += v as f64 * v as f64;
            }
        }
        self.samples += n;
        Ok(())
    }

    /// The mean of each value over the samples (exactly the output for one sample).
    fn mean(&self) -> Vec<f32> {
        let n = self.samples as f64;
        self.sum.iter().map(|&s| (s / n) as f32).collect()
    }

    /// Per pixel, the population variance over the samples averaged over the classes; `None`
    /// for one sample.
    fn uncertainty(&self) -> Option<Vec<f32>> {
        if self.samples < 2 {
            return None;
        }
        let ([k, oh, ow], n) = (self.shape, self.samples as f64);
        let plane = oh * ow;
        Some(
            (0..plane)
                .map(|i| {
                    let var = |j: usize| {
                        let m = self.sum[j * plane + i] / n;
                        (self.squares[j * plane + i] / n - m * m).max(0.0)
                    };
                    ((0..k).map(var).sum::<f64>() / k as f64) as f32
                })
                .collect(),
        )
    }
}

/// OpenCV `INTER_LINEAR` taps along one axis: for each destination index the first source
/// index and the weights from there (`f = (d + 0.5) src / dst - 0.5`, ends clamped).
fn linear_taps(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor() as i64;
            if s < 0 {
                (0, vec![1.0])
            } else if s >= src as i64 - 1 {
                (src - 1, vec![1.0])
            } else {
                let a = f - s as f32;
                (s as usize, vec![1.0 - a, a])
            }
        })
        .collect()
}

/// Bilinear resize of one `f32` plane with OpenCV's `INTER_LINEAR` geometry (centres aligned,
/// ends clamped).
pub fn resize_plane(src: &[f32], w: usize, h: usize, dw: usize, dh: usize) -> Vec<f32> {
    if (w, h) == (dw, dh) {
        return src.to_vec();
    }
    let xs = linear_taps(w, dw);
    let ys = linear_taps(h, dh);
    let mut tmp = vec![0f32; h * dw];
    for y in 0..h {
        for (dx, (s, ws)) in xs.iter().enumerate() {
            tmp[y * dw + dx] = ws.iter().enumerate().map(|(k, wt)| wt * src[y * w + s + k]).sum();
        }
    }
    let mut out = vec![0f32; dh * dw];
    for (dy, (s, ws)) in ys.iter().enumerate() {
        for dx in 0..dw {
            out[dy * dw + dx] = ws.iter().enumerate().map(|(k, wt)| wt * tmp[(s + k) * dw + dx]).sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plane_resize_interpolates_between_centres() {
        assert_eq!(resize_plane(&[0.0, 1.0], 2, 1, 4, 1), [0.0, 0.25, 0.75, 1.0]);
        assert_eq!(resize_plane(&[0.0, 1.0, 1.0, 0.0], 2, 2, 2, 2), [0.0, 1.0, 1.0, 0.0]);
        let up = resize_plane(&[0.0, 1.0, 1.0, 0.0], 2, 2, 4, 4);
        assert_eq!(up[0], 0.0);
        assert_eq!(up[5], 0.375);
    }
}
