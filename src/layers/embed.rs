//! Embed: each input id (a float holding an integer in `[0, input_dim)`) selects a row of the
//! `input_dim x num_output` weight matrix, plus an optional bias; a lookup table.

use super::{Arity, Ctx, Layer, LayerContext, ParamDef};
use crate::backend::Backend;
use crate::proto::{EmbedParameter, LayerParameter};
use crate::{Error, Result};

struct Embed {
    param: EmbedParameter,
    /// `num_output`: the length of one embedding.
    n: usize,
    /// `input_dim`: the number of ids.
    k: usize,
    /// The number of ids in the bottom.
    m: usize,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let param = lp.embed_param.clone().unwrap_or_default();
    if param.num_output() == 0 {
        return Err(Error::Config("embed_param.num_output must be positive".into()));
    }
    if param.input_dim() == 0 {
        return Err(Error::Config("embed_param.input_dim must be positive".into()));
    }
    let (n, k) = (param.num_output() as usize, param.input_dim() as usize);
    Ok(Box::new(Embed { param, n, k, m: 0 }))
}

impl<B: Backend> Layer<B> for Embed {
    fn type_name(&self) -> &'static str {
        "Embed"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    /// The ids get no gradient (Caffe refuses to compute one).
    fn allow_force_backward(&self, _: usize) -> bool {
        false
    }
    fn setup(&mut self, _: &B, _: &[&[usize]]) -> Result<Vec<ParamDef>> {
        let mut defs = vec![ParamDef {
            shape: vec![self.k, self.n],
            filler: Some(self.param.weight_filler.clone().unwrap_or_default()),
        }];
        if self.param.bias_term() {
            defs.push(ParamDef {
                shape: vec![self.n],
                filler: Some(self.param.bias_filler.clone().unwrap_or_default()),
            });
        }
        Ok(defs)
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let mut top = bottoms[0].to_vec();
        self.m = top.iter().product();
        top.push(self.n);
        crate::blob::checked_count(&top)?;
        Ok(vec![top])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let y = &mut parts.tops[0].data;
        be.gather_rows(&parts.bottoms[0].data, self.k, self.n, &parts.params[0].data, y)?;
        if self.param.bias_term() {
            be.bias_forward(self.m, self.n, 1, &parts.params[1].data, y)?;
        }
        Ok(())
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[0] {
            return Err(Error::Config("cannot backpropagate to the input ids".into()));
        }
        let (w_prop, b_prop) = (ctx.param_propagate(0), self.param.bias_term() && ctx.param_propagate(1));
        let mut parts = ctx.parts_back()?;
        let dy = &parts.tops[0].diff;
        if w_prop {
            be.scatter_add_rows(&parts.bottoms[0].data, self.k, self.n, dy, &mut parts.params[0].diff)?;
        }
        if b_prop {
            be.bias_backward(self.m, self.n, 1, dy, &mut parts.params[1].diff)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, forward_error, input, net};

    fn embed(param: &str) -> String {
        format!(
            r#"force_backward: true {} layer {{ name: "e" type: "Embed" bottom: "ids" top: "y" embed_param {{ {param} }} }}"#,
            input("ids", &[2, 2])
        )
    }

    #[test]
    fn embed_looks_up_rows_and_accumulates_their_gradients() {
        let body = embed(
            r#"num_output: 2 input_dim: 3 weight_filler { type: "constant" value: 0 } bias_filler { type: "constant" value: 0.5 }"#,
        );
        let mut net = net(&body).unwrap();
        let be = net.backend().clone();
        net.params_mut()[0].set_data(&be, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        net.blob_mut("ids").unwrap().set_data(&be, &[2.0, 0.0, 2.0, 1.0]).unwrap();
        net.forward().unwrap();
        assert_eq!(net.blob("y").unwrap().shape(), [2, 2, 2]);
        assert_eq!(net.blob("y").unwrap().data_to_vec(&be).unwrap(), [5.5, 6.5, 1.5, 2.5, 5.5, 6.5, 3.5, 4.5]);
        net.blob_mut("y").unwrap().set_diff(&be, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        net.clear_param_diffs().unwrap();
        net.backward().unwrap();
        assert_eq!(net.params()[0].diff_to_vec(&be).unwrap(), [3.0, 4.0, 7.0, 8.0, 6.0, 8.0]);
        assert_eq!(net.params()[1].diff_to_vec(&be).unwrap(), [16.0, 20.0]);
    }

    #[test]
    fn embed_errors() {
        assert_contains(&build_error(&embed("input_dim: 3")), "embed_param.num_output must be positive");
        assert_contains(&build_error(&embed("num_output: 3")), "embed_param.input_dim must be positive");
        let e = forward_error(&embed("num_output: 2 input_dim: 3"), &[("ids", &[0.0, 1.0, 3.0, 0.0])]);
        assert_contains(&e, "index 3 at position 2 is outside the valid range [0, 3)");
    }
}
