//! EuclideanLoss: `sum((a - b)^2) / (2 N)`.

use super::loss::loss_weight;
use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::blob::count_range;
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct EuclideanLoss<B: Backend> {
    diff: Option<B::Buf>,
    num: usize,
}

pub(super) fn create<B: Backend>(_: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(EuclideanLoss::<B> { diff: None, num: 0 }))
}

impl<B: Backend> Layer<B> for EuclideanLoss<B> {
    fn type_name(&self) -> &'static str {
        "EuclideanLoss"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(2)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (a, b) = (bottoms[0], bottoms[1]);
        if a.is_empty() || b.is_empty() || count_range(a, 1, a.len()) != count_range(b, 1, b.len()) || a[0] != b[0] {
            return Err(Error::Shape(format!("the two bottoms must have the same dimensions, given {a:?} and {b:?}")));
        }
        let count: usize = a.iter().product();
        if self.diff.as_ref().map(|d| be.len(d)) != Some(count) {
            self.diff = Some(be.alloc(count)?);
        }
        self.num = a[0];
        Ok(vec![vec![]])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let diff = self.diff.as_mut().ok_or_else(|| Error::Internal("forward before reshape".into()))?;
        let mut parts = ctx.parts()?;
        be.copy(&parts.bottoms[0].data, diff)?;
        be.axpby(-1.0, &parts.bottoms[1].data, 1.0, diff)?;
        let n = be.len(diff);
        let dot = be.dot(n, diff, 0, diff, 0)?;
        let loss = dot / self.num as f32 / 2.0;
        be.upload(&[loss], &mut parts.tops[0].data, 0)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let diff = self.diff.as_ref().ok_or_else(|| Error::Internal("backward before reshape".into()))?;
        let known = ctx.top_diff_value(0);
        let mut parts = ctx.parts_back()?;
        let weight = loss_weight(be, known, &parts.tops[0].diff)?;
        for (i, b) in parts.bottoms.iter_mut().enumerate() {
            if propagate_down[i] {
                let sign = if i == 0 { 1.0 } else { -1.0 };
                be.axpby(sign * weight / self.num as f32, diff, 0.0, &mut b.diff)?;
            }
        }
        Ok(())
    }
}
