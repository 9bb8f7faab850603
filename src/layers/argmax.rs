//! ArgMax: the indices (or values, or both) of the `top_k` largest values. With
//! `argmax_param.axis`, along that axis: the top has the bottom's shape with that axis set to
//! `top_k`, holding indices, or values when `out_max_val`. Without it, over everything after
//! the first axis: the top is `(N, 1, top_k)` of indices, or `(N, 2, top_k)` of indices then
//! values when `out_max_val`, padded with 1s to the bottom's number of axes. Ties go to the
//! larger index (Caffe's order). No backward.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{ArgMaxOutput, Backend, ClassAxis};
use crate::blob::canonical_axis;
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct ArgMax {
    out_max_val: bool,
    top_k: usize,
    axis_param: Option<i32>,
    axis: ClassAxis,
    output: ArgMaxOutput,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.argmax_param.unwrap_or_default();
    if p.top_k() < 1 {
        return Err(Error::Config("argmax_param.top_k must be at least 1".into()));
    }
    Ok(Box::new(ArgMax {
        out_max_val: p.out_max_val(),
        top_k: p.top_k() as usize,
        axis_param: p.axis,
        axis: ClassAxis { outer: 0, classes: 0, inner: 0 },
        output: ArgMaxOutput::Index,
    }))
}

impl<B: Backend> Layer<B> for ArgMax {
    fn type_name(&self) -> &'static str {
        "ArgMax"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn allow_force_backward(&self, _: usize) -> bool {
        false
    }
    fn has_backward(&self) -> bool {
        false
    }

    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        match self.axis_param {
            Some(a) => {
                let axis = canonical_axis(a, shape.len())?;
                self.axis = ClassAxis::of(shape, axis);
                if self.top_k > self.axis.classes {
                    return Err(Error::Config(format!(
                        "argmax_param.top_k ({}) must be at most the dimension of axis {axis} ({})",
                        self.top_k, self.axis.classes
                    )));
                }
                self.output = if self.out_max_val { ArgMaxOutput::Value } else { ArgMaxOutput::Index };
                let mut top = shape.to_vec();
                top[axis] = self.top_k;
                Ok(vec![top])
            }
            None => {
                let Some(&num) = shape.first() else {
                    return Err(Error::Shape("ArgMax needs a bottom with at least one axis".into()));
                };
                self.axis = ClassAxis { outer: num, classes: shape[1..].iter().product(), inner: 1 };
                if self.top_k > self.axis.classes {
                    return Err(Error::Config(format!(
                        "argmax_param.top_k ({}) must be at most the number of values per item ({})",
                        self.top_k, self.axis.classes
                    )));
                }
                self.output = if self.out_max_val { ArgMaxOutput::IndexAndValue } else { ArgMaxOutput::Index };
                let mut top = vec![1; shape.len().max(3)];
                top[0] = num;
                top[1] = if self.out_max_val { 2 } else { 1 };
                top[2] = self.top_k;
                Ok(vec![top])
            }
        }
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        be.argmax(&self.axis, self.top_k, self.output, &parts.bottoms[0].data, &mut parts.tops[0].data)
    }

    fn backward(&mut self, _: &B, _: &mut Ctx<'_, B>, _: &[bool]) -> Result<()> {
        Ok(())
    }
}
