//! Dropout. In TRAIN each forward keeps every unit with probability `1 - dropout_ratio` and
//! scales the kept ones by `1 / (1 - dropout_ratio)`; backward applies the same mask and scale.
//! In TEST it is the identity, unless SegNet's `sample_weights_test` asks for sampling there too
//! (Monte-Carlo dropout). In place or not.
//!
//! The mask is drawn on the backend by [`Activations::dropout_forward`] from a 64-bit key; the
//! layer draws a fresh key for every forward from its own seeded [`Rng`] stream
//! ([`LayerContext::seed`]), so a net built with the same seed drops the same units on every
//! backend, and nothing crosses between host and device. When the solver names the pass
//! ([`Layer::set_pass`]), the stream restarts from (seed, pass), so a run resumed from a
//! snapshot draws the masks the uninterrupted run would have drawn.
//!
//! [`Activations::dropout_forward`]: crate::backend::Activations::dropout_forward

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Backend, Io};
use crate::proto::{LayerParameter, Phase};
use crate::rng::Rng;
use crate::{Error, Result};

struct Dropout<B: Backend> {
    /// Whether forward samples a mask (TRAIN, or `sample_weights_test`).
    sample: bool,
    /// Units whose random bits fall below this are dropped (`floor(ratio * 2^32)`).
    threshold: u32,
    /// `1 / (1 - ratio)`, computed in double and rounded as Caffe's `scale_`.
    scale: f32,
    seed: u64,
    rng: Rng,
    /// The mask of the last forward (1.0 kept, 0.0 dropped).
    mask: Option<B::Buf>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.dropout_param.unwrap_or_default();
    let ratio = p.dropout_ratio();
    let sample = cx.phase == Phase::Train || p.sample_weights_test();
    // Caffe checks 0 < ratio < 1 only in debug builds, and its Bernoulli draw rejects a keep
    // probability outside [0, 1]; a ratio of 0 (keep everything) is accepted.
    if sample && !(0.0..1.0).contains(&ratio) {
        return Err(Error::Config(format!("dropout_ratio must be in [0, 1), given {ratio}")));
    }
    Ok(Box::new(Dropout::<B> {
        sample,
        threshold: (ratio as f64 * 4_294_967_296.0).floor() as u32,
        scale: (1.0 / (1.0 - ratio as f64)) as f32,
        seed: cx.seed,
        rng: Rng::new(cx.seed),
        mask: None,
    }))
}

impl<B: Backend> Layer<B> for Dropout<B> {
    fn type_name(&self) -> &'static str {
        "Dropout"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn set_pass(&mut self, pass: super::Pass) {
        self.rng = Rng::stream(self.seed, pass.index());
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn is_stochastic(&self) -> bool {
        self.sample
    }
    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let count: usize = bottoms[0].iter().product();
        if self.sample && self.mask.as_ref().map(|m| be.len(m)) != Some(count) {
            self.mask = Some(be.alloc(count)?);
        }
        Ok(vec![bottoms[0].to_vec()])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let u = ctx.unary()?;
        if !self.sample {
            return match u.data {
                Io::Pair(x, y) => be.copy(x, y),
                Io::InPlace(_) => Ok(()),
            };
        }
        let mask = self.mask.as_mut().ok_or_else(|| Error::Internal("Dropout forward before reshape".into()))?;
        be.dropout_forward(self.rng.next_u64(), self.threshold, self.scale, u.data, mask)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let u = ctx.unary_back()?;
        if !self.sample {
            return match u.diff {
                Io::Pair(dy, dx) => be.copy(dy, dx),
                Io::InPlace(_) => Ok(()),
            };
        }
        let mask = self.mask.as_ref().ok_or_else(|| Error::Internal("Dropout backward before forward".into()))?;
        be.dropout_backward(self.scale, mask, u.diff)
    }
}

#[cfg(test)]
mod tests {
    use super::super::activation::tests::{error, net};
    use crate::proto::Phase;

    #[test]
    fn ratio_is_checked_where_the_layer_samples() {
        let layer = |r: &str, extra: &str| {
            format!("layer {{ name: 'd' type: 'Dropout' bottom: 'x' top: 'x' dropout_param {{ dropout_ratio: {r} {extra} }} }}")
        };
        let e = error(&layer("1", ""), Phase::Train);
        assert!(e.contains("layer `d` (type Dropout): dropout_ratio must be in [0, 1), given 1"), "{e}");
        let e = error(&layer("-0.1", ""), Phase::Train);
        assert!(e.contains("given -0.1"), "{e}");
        let e = error(&layer("1.5", "sample_weights_test: true"), Phase::Test);
        assert!(e.contains("given 1.5"), "{e}");
        // In TEST without sampling the ratio is unused, as in Caffe.
        let text = format!("layer {{ name: 'x' type: 'Input' top: 'x' input_param {{ shape {{ dim: 2 }} }} }}\n{}", layer("1", ""));
        assert!(net(&text, Phase::Test).is_ok());
    }
}
