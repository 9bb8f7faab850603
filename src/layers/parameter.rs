//! Parameter: a learnable blob of `parameter_param.shape` exposed as the layer's top. Caffe
//! shares the blob's data and diff with the top; here the data is copied forward and the top's
//! gradient added to the blob's backward.

use super::{Arity, Ctx, Layer, LayerContext, ParamDef};
use crate::Result;
use crate::backend::Backend;
use crate::proto::LayerParameter;

struct Parameter {
    shape: Vec<usize>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.parameter_param.clone().unwrap_or_default();
    Ok(Box::new(Parameter { shape: super::input::dims(&p.shape.unwrap_or_default())? }))
}

impl<B: Backend> Layer<B> for Parameter {
    fn type_name(&self) -> &'static str {
        "Parameter"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(0)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    /// One blob, zero-filled as Caffe allocates it (trained values come from weights files).
    fn setup(&mut self, _: &B, _: &[&[usize]]) -> Result<Vec<ParamDef>> {
        Ok(vec![ParamDef { shape: self.shape.clone(), filler: None }])
    }
    fn reshape(&mut self, _: &B, _: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok(vec![self.shape.clone()])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        be.copy(&parts.params[0].data, &mut parts.tops[0].data)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, _: &[bool]) -> Result<()> {
        if !ctx.param_propagate(0) {
            return Ok(());
        }
        let mut parts = ctx.parts_back()?;
        be.axpby(1.0, &parts.tops[0].diff, 1.0, &mut parts.params[0].diff)
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, shape_of};

    #[test]
    fn parameter_shape() {
        let body = r#"layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 5 } } }"#;
        assert_eq!(shape_of(body, "p"), [2, 5]);
        let e = build_error(r#"layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: -2 } } }"#);
        assert_contains(&e, "negative dimension -2");
    }
}
