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

#[cfg(test)]
mod tests {
    use super::super::loss::testing::{build, build_error};
    use crate::backend::cpu::Cpu;

    fn net(param: &str) -> String {
        format!(
            r#"layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 dim: 2 }} }} }}
            layer {{ name: "am" type: "ArgMax" bottom: "x" top: "y" argmax_param {{ {param} }} }}"#
        )
    }

    #[test]
    fn parameter_errors() {
        assert_eq!(build_error(&net("top_k: 0")), "layer `am` (type ArgMax): argmax_param.top_k must be at least 1");
        assert_eq!(
            build_error(&net("top_k: 4 axis: 1")),
            "layer `am` (type ArgMax): argmax_param.top_k (4) must be at most the dimension of axis 1 (3)"
        );
        assert_eq!(
            build_error(&net("top_k: 7")),
            "layer `am` (type ArgMax): argmax_param.top_k (7) must be at most the number of values per item (6)"
        );
    }

    #[test]
    fn both_layouts() {
        let be = Cpu::new();
        let x = [0.0, 5.0, 2.0, 1.0, 3.0, 4.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0];
        let run = |param: &str| {
            let mut n = build(&net(param)).unwrap();
            n.blob_mut("x").unwrap().set_data(&be, &x).unwrap();
            n.forward().unwrap();
            let y = n.blob("y").unwrap();
            (y.shape().to_vec(), y.data_to_vec(&be).unwrap())
        };
        assert_eq!(run(""), (vec![2, 1, 1], vec![1.0, 0.0]));
        assert_eq!(run("out_max_val: true top_k: 2"), (vec![2, 2, 2], vec![1.0, 5.0, 5.0, 4.0, 0.0, 1.0, 9.0, 8.0]));
        assert_eq!(run("axis: 1"), (vec![2, 1, 2], vec![2.0, 0.0, 0.0, 0.0]));
        assert_eq!(run("axis: -1 out_max_val: true"), (vec![2, 3, 1], vec![5.0, 2.0, 4.0, 9.0, 7.0, 5.0]));
    }
}
