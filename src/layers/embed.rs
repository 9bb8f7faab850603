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
            defs.push(ParamDef { shape: vec![self.n], filler: Some(self.param.bias_filler.clone().unwrap_or_default()) });
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
