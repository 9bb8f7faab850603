//! Scale (`y = x * s (+ b)`) and Bias (`y = x + b`), BVLC Caffe's broadcasting per-channel
//! maps. The operand (`s` or `b`) is a learnt blob or bottom 1; its shape must equal the
//! bottom's axes from `axis` on (a learnt operand takes `num_axes` of them, -1 for all the
//! rest), and it applies to every element of those axes: the bottom is viewed as
//! `(outer, operand count, inner)`. A scalar operand (no axes) applies to everything.
//! Scale's optional bias (`bias_term`) is a learnt blob laid out as Bias would lay it out.
//!
//! Both run in place; Scale then keeps a copy of its input for the gradient of the scale.

use super::{Arity, Ctx, Layer, LayerContext, ParamDef};
use crate::backend::{Backend, ChannelDims, Io};
use crate::blob::{canonical_axis, count_range};
use crate::proto::{FillerParameter, LayerParameter};
use crate::{Error, Result};

/// The shape of a learnt operand: the bottom's axes `axis .. axis + num_axes` (to the end for
/// -1), as Scale's and Bias's setup take it.
fn learnt_shape(bottom: &[usize], axis: i32, num_axes: i32, what: &str) -> Result<Vec<usize>> {
    let axis = canonical_axis(axis, bottom.len())?;
    if num_axes < -1 {
        return Err(Error::Config(format!(
            "num_axes must be non-negative, or -1 to extend to the end of the bottom; given {num_axes}"
        )));
    }
    let end = if num_axes == -1 { bottom.len() } else { axis + num_axes as usize };
    if end > bottom.len() {
        return Err(Error::Shape(format!(
            "the {what} blob's {num_axes} axes extend past the bottom's shape {bottom:?} when applied from axis {axis}"
        )));
    }
    Ok(bottom[axis..end].to_vec())
}

/// The `(outer, operand count, inner)` view of `bottom` for an operand of `operand` shape
/// (Caffe's Reshape: a scalar operand uses axis 0).
fn broadcast_dims(bottom: &[usize], operand: &[usize], axis: i32, what: &str) -> Result<ChannelDims> {
    let axis = if operand.is_empty() { 0 } else { canonical_axis(axis, bottom.len())? };
    if axis + operand.len() > bottom.len() || bottom[axis..axis + operand.len()] != *operand {
        return Err(Error::Shape(format!(
            "the {what} of shape {operand:?} does not match the bottom's shape {bottom:?} from axis {axis}"
        )));
    }
    Ok(ChannelDims::new(
        count_range(bottom, 0, axis),
        operand.iter().product(),
        count_range(bottom, axis + operand.len(), bottom.len()),
    ))
}

/// A learnt operand's default filler: Scale's is constant 1, Bias's Caffe's default (constant 0).
fn constant(value: f32) -> FillerParameter {
    FillerParameter { r#type: Some("constant".into()), value: Some(value), ..Default::default() }
}

/// Zeroes a bottom's diff before gradients are accumulated into it (Caffe overwrites the
/// gradient of a bottom operand, while it accumulates that of a learnt one).
fn zero_diff<B: Backend>(be: &B, diff: &mut B::Buf) -> Result<()> {
    let n = be.len(diff);
    be.fill(diff, 0, n, 0.0)
}

struct Scale<B: Backend> {
    axis: i32,
    num_axes: i32,
    filler: FillerParameter,
    bias_term: bool,
    bias_filler: FillerParameter,
    /// Shape of the learnt scale (one bottom).
    scale_shape: Vec<usize>,
    /// Shape of the learnt bias.
    bias_shape: Vec<usize>,
    dims: ChannelDims,
    /// The input of the last forward, kept when in place for the scale's gradient.
    input: Option<B::Buf>,
    kept_input: bool,
}

pub(super) fn create_scale<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.scale_param.clone().unwrap_or_default();
    Ok(Box::new(Scale::<B> {
        axis: p.axis(),
        num_axes: p.num_axes(),
        filler: p.filler.clone().unwrap_or_else(|| constant(1.0)),
        bias_term: p.bias_term(),
        bias_filler: p.bias_filler.clone().unwrap_or_default(),
        scale_shape: Vec::new(),
        bias_shape: Vec::new(),
        dims: ChannelDims::new(0, 0, 0),
        input: None,
        kept_input: false,
    }))
}

impl<B: Backend> Layer<B> for Scale<B> {
    fn type_name(&self) -> &'static str {
        "Scale"
    }
    fn bottoms(&self) -> Arity {
        Arity::range(1, 2)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }

    fn setup(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<ParamDef>> {
        let mut defs = Vec::new();
        if bottoms.len() == 1 {
            self.scale_shape = learnt_shape(bottoms[0], self.axis, self.num_axes, "scale")?;
            defs.push(ParamDef { shape: self.scale_shape.clone(), filler: Some(self.filler.clone()) });
        }
        if self.bias_term {
            let bias_axes = if bottoms.len() == 2 { bottoms[1].len() as i32 } else { self.num_axes };
            self.bias_shape = learnt_shape(bottoms[0], self.axis, bias_axes, "bias")?;
            defs.push(ParamDef { shape: self.bias_shape.clone(), filler: Some(self.bias_filler.clone()) });
        }
        Ok(defs)
    }

    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let operand = if bottoms.len() == 2 { bottoms[1] } else { &self.scale_shape[..] };
        self.dims = broadcast_dims(bottoms[0], operand, self.axis, "scale")?;
        if self.bias_term && broadcast_dims(bottoms[0], &self.bias_shape, self.axis, "bias")? != self.dims {
            return Err(Error::Internal("Scale: the bias does not broadcast as the scale does".into()));
        }
        Ok(vec![bottoms[0].to_vec()])
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let two = ctx.num_bottoms() == 2;
        let keep = ctx.in_place() && (two || ctx.param_propagate(0));
        let u = ctx.unary()?;
        if let (true, Io::InPlace(x)) = (keep, &u.data) {
            let n = be.len(x);
            let input = match self.input.take() {
                Some(buf) if be.len(&buf) == n => buf,
                _ => be.alloc(n)?,
            };
            let input = self.input.insert(input);
            be.copy(x, input)?;
        }
        self.kept_input = keep;
        let scale = if two { &u.other_bottoms[0].data } else { &u.params[0].data };
        let bias = self.bias_term.then(|| &u.params[u.params.len() - 1].data);
        be.channel_affine(self.dims, u.data, Some(scale), bias)
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let two = ctx.num_bottoms() == 2;
        let n_params = usize::from(!two) + usize::from(self.bias_term);
        let want_bias = self.bias_term && ctx.param_propagate(n_params - 1);
        let want_scale = if two { propagate_down[1] } else { ctx.param_propagate(0) };
        let want_x = propagate_down[0];
        if !(want_bias || want_scale || want_x) {
            return Ok(());
        }
        let mut u = ctx.unary_back()?;
        let x = match (want_scale, u.in_place) {
            (false, _) => None,
            (true, false) => Some(u.x),
            (true, true) => match (&self.input, self.kept_input) {
                (Some(buf), true) => Some(buf),
                _ => return Err(Error::Internal("Scale: the input was not kept for the scale gradient".into())),
            },
        };
        let (scale_blob, bias) = if two {
            (&mut *u.other_bottoms[0], u.params.first_mut())
        } else {
            let (s, b) = u.params.split_at_mut(1);
            (&mut *s[0], b.first_mut())
        };
        let (scale, dscale) = scale_blob.data_and_diff_mut();
        if two && want_scale {
            zero_diff(be, dscale)?;
        }
        let dbias = bias.filter(|_| want_bias).map(|b| &mut b.diff);
        be.channel_affine_backward(self.dims, x, u.diff, Some(scale), want_scale.then_some(dscale), dbias, want_x)
    }
}

struct Bias {
    axis: i32,
    num_axes: i32,
    filler: FillerParameter,
    bias_shape: Vec<usize>,
    dims: ChannelDims,
}

pub(super) fn create_bias<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.bias_param.clone().unwrap_or_default();
    Ok(Box::new(Bias {
        axis: p.axis(),
        num_axes: p.num_axes(),
        filler: p.filler.clone().unwrap_or_default(),
        bias_shape: Vec::new(),
        dims: ChannelDims::new(0, 0, 0),
    }))
}

impl<B: Backend> Layer<B> for Bias {
    fn type_name(&self) -> &'static str {
        "Bias"
    }
    fn bottoms(&self) -> Arity {
        Arity::range(1, 2)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }

    fn setup(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<ParamDef>> {
        if bottoms.len() == 2 {
            return Ok(Vec::new());
        }
        self.bias_shape = learnt_shape(bottoms[0], self.axis, self.num_axes, "bias")?;
        Ok(vec![ParamDef { shape: self.bias_shape.clone(), filler: Some(self.filler.clone()) }])
    }

    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let operand = if bottoms.len() == 2 { bottoms[1] } else { &self.bias_shape[..] };
        self.dims = broadcast_dims(bottoms[0], operand, self.axis, "bias")?;
        Ok(vec![bottoms[0].to_vec()])
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let two = ctx.num_bottoms() == 2;
        let u = ctx.unary()?;
        let bias = if two { &u.other_bottoms[0].data } else { &u.params[0].data };
        be.channel_affine(self.dims, u.data, None, Some(bias))
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let two = ctx.num_bottoms() == 2;
        let want_bias = if two { propagate_down[1] } else { ctx.param_propagate(0) };
        let want_x = propagate_down[0];
        if !(want_bias || want_x) {
            return Ok(());
        }
        let mut u = ctx.unary_back()?;
        let dbias = match (want_bias, two) {
            (false, _) => None,
            (true, true) => {
                let d = &mut u.other_bottoms[0].diff;
                zero_diff(be, d)?;
                Some(d)
            }
            (true, false) => Some(&mut u.params[0].diff),
        };
        be.channel_affine_backward(self.dims, None, u.diff, None, None, dbias, want_x)
    }
}
