//! ContrastiveLoss (BVLC Caffe, the loss of its siamese example): for features `a`, `b` of
//! shape `(N, C)` (or `(N, C, 1, 1)`) and a similarity `y` per pair,
//! `1/(2N) sum_i [y_i d_i^2 + (1 - y_i) max(margin - d_i, 0)^2]` with `d_i = ||a_i - b_i||`;
//! with `legacy_version`, a dissimilar pair costs `max(margin - d_i^2, 0)` instead. A pair is
//! similar when `y_i`, truncated to an integer, is not 0, as Caffe reads it.
//!
//! The distances are computed on the backend; the per-pair terms, a handful of numbers, on the
//! host in Caffe's order. The gradient is Caffe's: `±w/N (a_i - b_i)` for a similar pair, and
//! `∓w/N (margin - d_i) / (d_i + 1e-4) (a_i - b_i)` for a dissimilar one inside the margin (the
//! legacy form: `∓w/N (a_i - b_i)`), zero outside it. No gradient flows to `y`.

use super::loss::loss_weight;
use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Backend, ChannelDims, Gemm, Io};
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct ContrastiveLoss<B: Backend> {
    margin: f32,
    legacy: bool,
    num: usize,
    channels: usize,
    /// `a - b`, its square, a vector of ones, the squared distances, the gradient coefficients.
    diff: Option<B::Buf>,
    square: Option<B::Buf>,
    ones: Option<B::Buf>,
    dist_sq: Option<B::Buf>,
    coef: Option<B::Buf>,
    /// The last forward's squared distances and similarities, on the host.
    host_dist_sq: Vec<f32>,
    similar: Vec<bool>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.contrastive_loss_param.unwrap_or_default();
    Ok(Box::new(ContrastiveLoss::<B> {
        margin: p.margin(),
        legacy: p.legacy_version(),
        num: 0,
        channels: 0,
        diff: None,
        square: None,
        ones: None,
        dist_sq: None,
        coef: None,
        host_dist_sq: Vec::new(),
        similar: Vec::new(),
    }))
}

/// Caffe's legacy `(channels, height, width)` of a blob of up to 4 axes (missing axes are 1).
fn legacy_chw(shape: &[usize], which: &str) -> Result<(usize, usize, usize)> {
    if shape.is_empty() || shape.len() > 4 {
        return Err(Error::Shape(format!("the {which} must have 1 to 4 axes, given shape {shape:?}")));
    }
    let axis = |i: usize| shape.get(i).copied().unwrap_or(1);
    Ok((axis(1), axis(2), axis(3)))
}

fn ensure<B: Backend>(be: &B, buf: &mut Option<B::Buf>, len: usize) -> Result<()> {
    if buf.as_ref().map(|b| be.len(b)) != Some(len) {
        *buf = Some(be.alloc(len)?);
    }
    Ok(())
}

fn get<T>(buf: &Option<T>) -> Result<&T> {
    buf.as_ref().ok_or_else(|| Error::Internal("ContrastiveLoss used before reshape".into()))
}

fn get_mut<T>(buf: &mut Option<T>) -> Result<&mut T> {
    buf.as_mut().ok_or_else(|| Error::Internal("ContrastiveLoss used before reshape".into()))
}

impl<B: Backend> Layer<B> for ContrastiveLoss<B> {
    fn type_name(&self) -> &'static str {
        "ContrastiveLoss"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(3)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 2
    }
    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (a, b, y) = (bottoms[0], bottoms[1], bottoms[2]);
        let (ca, ha, wa) = legacy_chw(a, "first feature bottom")?;
        let (cb, hb, wb) = legacy_chw(b, "second feature bottom")?;
        let (cy, hy, wy) = legacy_chw(y, "similarity bottom")?;
        if a[0] != b[0] || ca != cb || (ha, wa, hb, wb) != (1, 1, 1, 1) {
            return Err(Error::Shape(format!(
                "the two feature bottoms must both be (N, C) or (N, C, 1, 1) of the same N and C, given {a:?} and {b:?}"
            )));
        }
        if (cy, hy, wy) != (1, 1, 1) || y[0] != a[0] {
            return Err(Error::Shape(format!("the similarity bottom must hold one value per pair ({} pairs), given shape {y:?}", a[0])));
        }
        (self.num, self.channels) = (a[0], ca);
        let n = self.num * self.channels;
        ensure(be, &mut self.diff, n)?;
        ensure(be, &mut self.square, n)?;
        ensure(be, &mut self.dist_sq, self.num)?;
        ensure(be, &mut self.coef, self.num)?;
        if self.ones.as_ref().map(|b| be.len(b)) != Some(self.channels) {
            self.ones = Some(be.alloc_from(&vec![1.0; self.channels])?);
        }
        Ok(vec![vec![]])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let diff = get_mut(&mut self.diff)?;
        be.copy(&parts.bottoms[0].data, diff)?;
        be.axpby(-1.0, &parts.bottoms[1].data, 1.0, diff)?;
        let square = get_mut(&mut self.square)?;
        be.mul(diff, diff, square)?;
        let dist_sq = get_mut(&mut self.dist_sq)?;
        be.gemm(&Gemm::new(false, false, self.num, 1, self.channels), square, get(&self.ones)?, dist_sq)?;
        self.host_dist_sq.resize(self.num, 0.0);
        be.download(dist_sq, 0, &mut self.host_dist_sq)?;
        let mut y = vec![0.0; self.num];
        be.download(&parts.bottoms[2].data, 0, &mut y)?;
        self.similar = y.iter().map(|&v| v as i32 != 0).collect();
        let mut loss = 0.0f32;
        for (&d2, &similar) in self.host_dist_sq.iter().zip(&self.similar) {
            loss += if similar {
                d2
            } else if self.legacy {
                (self.margin - d2).max(0.0)
            } else {
                let m = (self.margin - d2.sqrt()).max(0.0);
                m * m
            };
        }
        be.upload(&[loss / self.num as f32 / 2.0], &mut parts.tops[0].data, 0)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[2] {
            return Err(Error::Config("ContrastiveLoss cannot backpropagate to the similarity labels (bottom 2)".into()));
        }
        let known = ctx.top_diff_value(0);
        let mut parts = ctx.parts_back()?;
        let weight = loss_weight(be, known, &parts.tops[0].diff)?;
        let diff = get(&self.diff)?;
        for (i, bottom) in parts.bottoms.iter_mut().enumerate().take(2) {
            if !propagate_down[i] {
                continue;
            }
            let alpha = if i == 0 { 1.0 } else { -1.0 } * weight / self.num as f32;
            let coef: Vec<f32> = self
                .host_dist_sq
                .iter()
                .zip(&self.similar)
                .map(|(&d2, &similar)| {
                    if similar {
                        return alpha;
                    }
                    let (mdist, beta) = if self.legacy {
                        (self.margin - d2, -alpha)
                    } else {
                        let dist = d2.sqrt();
                        let mdist = self.margin - dist;
                        (mdist, -alpha * mdist / (dist + 1e-4))
                    };
                    if mdist > 0.0 { beta } else { 0.0 }
                })
                .collect();
            let c = get_mut(&mut self.coef)?;
            be.upload(&coef, c, 0)?;
            be.channel_affine(ChannelDims::new(1, self.num, self.channels), Io::Pair(diff, &mut bottom.diff), Some(c), None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::loss::testing::{build, build_error};
    use crate::backend::cpu::Cpu;

    fn net(param: &str, y_shape: &str) -> String {
        format!(
            r#"
            layer {{ name: "a" type: "Input" top: "a" input_param {{ shape {{ dim: 2 dim: 2 }} }} }}
            layer {{ name: "b" type: "Input" top: "b" input_param {{ shape {{ dim: 2 dim: 2 }} }} }}
            layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ {y_shape} }} }} }}
            layer {{ name: "loss" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "y" top: "loss" {param} }}"#
        )
    }

    /// Pair 0 at distance 5, pair 1 at 0.5; `y` truncates to an integer as in Caffe.
    fn loss(param: &str, y: [f32; 2]) -> f32 {
        let mut n = build(&net(param, "dim: 2")).unwrap();
        let be = Cpu::new();
        n.blob_mut("a").unwrap().set_data(&be, &[0.0, 0.0, 1.0, 0.0]).unwrap();
        n.blob_mut("b").unwrap().set_data(&be, &[3.0, 4.0, 1.0, 0.5]).unwrap();
        n.blob_mut("y").unwrap().set_data(&be, &y).unwrap();
        n.forward().unwrap()
    }

    #[test]
    fn losses_follow_caffes_formulas() {
        // Similar: d^2 = 25. Dissimilar inside margin 1: (1 - 0.5)^2, legacy 1 - 0.25. Over 2N.
        assert_eq!(loss("", [1.0, 0.0]), (25.0 + 0.25) / 4.0);
        assert_eq!(loss("contrastive_loss_param { legacy_version: true }", [2.7, 0.6]), (25.0 + 0.75) / 4.0);
        // Both dissimilar, margin 6: (6 - 5)^2 + (6 - 0.5)^2; pair 0 outside margin 4 costs 0.
        assert_eq!(loss("contrastive_loss_param { margin: 6 }", [0.0, 0.0]), (1.0 + 30.25) / 4.0);
        assert_eq!(loss("contrastive_loss_param { margin: 4 }", [0.0, 1.0]), 0.25 / 4.0);
    }

    #[test]
    fn shapes_are_checked() {
        let e = build_error(&net("", "dim: 3"));
        assert!(e.contains("one value per pair (2 pairs)"), "{e}");
        let e = build_error(&net("", "dim: 2 dim: 2"));
        assert!(e.contains("one value per pair"), "{e}");
        let text = net("", "dim: 2").replace("input_param { shape { dim: 2 dim: 2 } } }\n            layer { name: \"y\"", "input_param { shape { dim: 2 dim: 2 dim: 2 } } }\n            layer { name: \"y\"");
        let e = build_error(&text);
        assert!(e.contains("(N, C) or (N, C, 1, 1)"), "{e}");
    }
}
