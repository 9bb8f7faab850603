//! Convolution and Deconvolution (N-d, grouped, dilated, strided, padded), on the backend's
//! fused convolution primitive.

use super::{Arity, Ctx, Layer, LayerContext, ParamDef};
use crate::backend::{Backend, ConvSpec};
use crate::blob::{canonical_axis, count_range};
use crate::proto::{ConvolutionParameter, LayerParameter};
use crate::{Error, Result};

/// Parses a per-axis setting given either as `name_h`/`name_w` or as a repeated field with 0
/// (default), 1 (all axes) or one value per spatial axis (Convolution's and Im2col's rules).
fn per_axis(
    hw: (Option<u32>, Option<u32>),
    list: &[u32],
    axes: usize,
    default: Option<u32>,
    name: &str,
) -> Result<Vec<usize>> {
    if hw.0.is_some() || hw.1.is_some() {
        // The per-axis fields: kernel_h for kernel_size, stride_h for stride.
        let hw_name = name.strip_suffix("_size").unwrap_or(name);
        if axes != 2 {
            return Err(Error::Config(format!("{hw_name}_h and {hw_name}_w can only be used for 2-d convolution")));
        }
        if !list.is_empty() {
            return Err(Error::Config(format!("give either {name} or {hw_name}_h/{hw_name}_w, not both")));
        }
        let (Some(h), Some(w)) = hw else {
            return Err(Error::Config(format!("{hw_name}_h and {hw_name}_w must be given together")));
        };
        return Ok(vec![h as usize, w as usize]);
    }
    match (list.len(), default) {
        (0, Some(d)) => Ok(vec![d as usize; axes]),
        (0, None) => Err(Error::Config(format!("`{name}` is required"))),
        (1, _) => Ok(vec![list[0] as usize; axes]),
        (n, _) if n == axes => Ok(list.iter().map(|&v| v as usize).collect()),
        (n, _) => Err(Error::Config(format!("`{name}` is given {n} times for {axes} spatial axes (give 1 or {axes})"))),
    }
}

/// A convolution's geometry as Convolution, Deconvolution and Im2col read it from their
/// `convolution_param` at setup (Caffe's `BaseConvolutionLayer` and `Im2colLayer`): the
/// bottom's number of axes, its channel axis and, per spatial axis, kernel, stride, pad and
/// dilation. Empty until [`ConvGeometry::read`].
#[derive(Default)]
pub(super) struct ConvGeometry {
    pub num_axes: usize,
    pub channel_axis: usize,
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub pad: Vec<usize>,
    pub dilation: Vec<usize>,
}

impl ConvGeometry {
    /// Reads `p` for a bottom of `shape`; with `needs_spatial`, the bottom must have a spatial
    /// axis after the channel axis (Im2col's check; a convolution takes none).
    pub(super) fn read(p: &ConvolutionParameter, shape: &[usize], needs_spatial: bool) -> Result<Self> {
        let channel_axis = canonical_axis(p.axis(), shape.len())?;
        let axes = shape.len() - channel_axis - 1;
        if needs_spatial && axes == 0 {
            return Err(Error::Shape(format!(
                "needs at least one spatial axis after the channel axis {channel_axis}, given a bottom of shape {shape:?}"
            )));
        }
        let g = ConvGeometry {
            num_axes: shape.len(),
            channel_axis,
            kernel: per_axis((p.kernel_h, p.kernel_w), &p.kernel_size, axes, None, "kernel_size")?,
            stride: per_axis((p.stride_h, p.stride_w), &p.stride, axes, Some(1), "stride")?,
            pad: per_axis((p.pad_h, p.pad_w), &p.pad, axes, Some(0), "pad")?,
            dilation: per_axis((None, None), &p.dilation, axes, Some(1), "dilation")?,
        };
        if g.kernel.contains(&0) || g.stride.contains(&0) || g.dilation.contains(&0) {
            return Err(Error::Config("kernel, stride and dilation must be positive".into()));
        }
        Ok(g)
    }

    /// The spatial extents of a bottom of `shape`, which must have the axes setup saw.
    pub(super) fn spatial<'s>(&self, shape: &'s [usize]) -> Result<&'s [usize]> {
        if shape.len() != self.num_axes {
            return Err(Error::Shape(format!("bottom has {} axes, the layer was set up for {}", shape.len(), self.num_axes)));
        }
        Ok(&shape[self.channel_axis + 1..])
    }

    /// The output extent of each spatial axis of `input`: the convolution's, or with `deconv`
    /// the extent whose convolution gives `input`; an error where it would not be positive.
    pub(super) fn output(&self, input: &[usize], deconv: bool) -> Result<Vec<usize>> {
        let mut output = Vec::with_capacity(input.len());
        for (a, &size) in input.iter().enumerate() {
            let o = if deconv {
                let extent = self.dilation[a] * (self.kernel[a] - 1) + 1;
                (self.stride[a] * size.saturating_sub(1) + extent).checked_sub(2 * self.pad[a])
            } else {
                ConvSpec::output_extent(size, self.kernel[a], self.stride[a], self.pad[a], self.dilation[a])
            };
            match o {
                Some(o) if o > 0 => output.push(o),
                _ => {
                    return Err(Error::Shape(format!(
                        "spatial axis {a} of size {} is too small for kernel {} (pad {}, stride {}, dilation {})",
                        size, self.kernel[a], self.pad[a], self.stride[a], self.dilation[a]
                    )))
                }
            }
        }
        Ok(output)
    }

    /// The [`ConvSpec`] of this geometry between images of `in_shape` and `out_shape`.
    pub(super) fn spec(&self, num: usize, channels: (usize, usize), group: usize, in_shape: Vec<usize>, out_shape: Vec<usize>) -> ConvSpec {
        ConvSpec {
            num,
            channels: channels.0,
            out_channels: channels.1,
            group,
            in_shape,
            out_shape,
            kernel: self.kernel.clone(),
            stride: self.stride.clone(),
            pad: self.pad.clone(),
            dilation: self.dilation.clone(),
        }
    }
}

/// A Convolution or Deconvolution layer.
struct Conv {
    param: ConvolutionParameter,
    deconv: bool,
    num_output: usize,
    group: usize,
    bias: bool,
    geom: ConvGeometry,
    channels: usize,
    spec: Option<ConvSpec>,
}

pub(super) fn create_convolution<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    create(lp, false)
}

pub(super) fn create_deconvolution<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    create(lp, true)
}

fn create<B: Backend>(lp: &LayerParameter, deconv: bool) -> Result<Box<dyn Layer<B>>> {
    let param = super::required(&lp.convolution_param, "convolution_param")?.clone();
    if param.num_output() == 0 {
        return Err(Error::Config("convolution_param.num_output must be positive".into()));
    }
    if param.group() == 0 {
        return Err(Error::Config("convolution_param.group must be positive".into()));
    }
    Ok(Box::new(Conv {
        num_output: param.num_output() as usize,
        group: param.group() as usize,
        bias: param.bias_term(),
        deconv,
        param,
        geom: ConvGeometry::default(),
        channels: 0,
        spec: None,
    }))
}

impl Conv {
    fn type_str(&self) -> &'static str {
        if self.deconv { "Deconvolution" } else { "Convolution" }
    }

    /// The convolution this layer computes on a bottom of `shape` (for Deconvolution, the
    /// convolution whose backward-data is its forward).
    fn spec_for(&self, shape: &[usize]) -> Result<(ConvSpec, Vec<usize>)> {
        let input = self.geom.spatial(shape)?;
        let ca = self.geom.channel_axis;
        if shape[ca] != self.channels {
            return Err(Error::Shape(format!("bottom has {} channels, the layer was set up for {}", shape[ca], self.channels)));
        }
        let output = self.geom.output(input, self.deconv)?;
        let num = count_range(shape, 0, ca);
        let spec = if self.deconv {
            self.geom.spec(num, (self.num_output, self.channels), self.group, output.clone(), input.to_vec())
        } else {
            self.geom.spec(num, (self.channels, self.num_output), self.group, input.to_vec(), output.clone())
        };
        let mut top = shape[..ca].to_vec();
        top.push(self.num_output);
        top.extend(output);
        Ok((spec, top))
    }
}

impl<B: Backend> Layer<B> for Conv {
    fn type_name(&self) -> &'static str {
        self.type_str()
    }
    fn bottoms(&self) -> Arity {
        Arity::at_least(1)
    }
    fn tops(&self) -> Arity {
        Arity::at_least(1)
    }
    /// Backward needs the input for the filter gradient, never the output.
    fn backward_reads_top(&self, _top: usize) -> bool {
        false
    }

    fn setup(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<ParamDef>> {
        let shape = bottoms[0];
        self.geom = ConvGeometry::read(&self.param, shape, false)?;
        let p = &self.param;
        self.channels = shape[self.geom.channel_axis];
        if !self.channels.is_multiple_of(self.group) {
            return Err(Error::Config(format!("{} input channels are not divisible by group {}", self.channels, self.group)));
        }
        if !self.num_output.is_multiple_of(self.group) {
            return Err(Error::Config(format!("num_output {} is not divisible by group {}", self.num_output, self.group)));
        }
        let (out_c, in_c) = if self.deconv { (self.channels, self.num_output) } else { (self.num_output, self.channels) };
        let mut wshape = vec![out_c, in_c / self.group];
        wshape.extend(&self.geom.kernel);
        let mut defs = vec![ParamDef { shape: wshape, filler: Some(p.weight_filler.clone().unwrap_or_default()) }];
        if self.bias {
            defs.push(ParamDef { shape: vec![self.num_output], filler: Some(p.bias_filler.clone().unwrap_or_default()) });
        }
        Ok(defs)
    }

    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        if let Some(i) = bottoms.iter().position(|b| *b != bottoms[0]) {
            return Err(Error::Shape(format!("bottom {i} has shape {:?}, bottom 0 has {:?}; all must agree", bottoms[i], bottoms[0])));
        }
        let (spec, top) = self.spec_for(bottoms[0])?;
        self.spec = Some(spec);
        Ok(vec![top; bottoms.len()])
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let spec = self.spec.as_ref().ok_or_else(|| Error::Internal("forward before reshape".into()))?;
        let parts = ctx.parts()?;
        let w = &parts.params[0].data;
        for (x, y) in parts.bottoms.iter().zip(parts.tops) {
            let (channels, spatial) = if self.deconv {
                be.conv_backward_data(spec, &x.data, w, &mut y.data)?;
                (spec.channels, spec.in_spatial())
            } else {
                be.conv_forward(spec, &x.data, w, &mut y.data)?;
                (spec.out_channels, spec.out_spatial())
            };
            if self.bias {
                be.bias_forward(spec.num, channels, spatial, &parts.params[1].data, &mut y.data)?;
            }
        }
        Ok(())
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let spec = self.spec.clone().ok_or_else(|| Error::Internal("backward before reshape".into()))?;
        let (w_prop, b_prop) = (ctx.param_propagate(0), self.bias && ctx.param_propagate(1));
        let mut parts = ctx.parts_back()?;
        for (i, x) in parts.bottoms.iter_mut().enumerate() {
            let dy = &parts.tops[i].diff;
            if b_prop {
                let (channels, spatial) =
                    if self.deconv { (spec.channels, spec.in_spatial()) } else { (spec.out_channels, spec.out_spatial()) };
                be.bias_backward(spec.num, channels, spatial, dy, &mut parts.params[1].diff)?;
            }
            let (xd, dx) = x.data_and_diff_mut();
            if w_prop {
                let dw = &mut parts.params[0].diff;
                if self.deconv {
                    be.conv_backward_filter(&spec, dy, xd, dw)?;
                } else {
                    be.conv_backward_filter(&spec, xd, dy, dw)?;
                }
            }
            if propagate_down[i] {
                let w = &parts.params[0].data;
                if self.deconv {
                    be.conv_forward(&spec, dy, w, dx)?;
                } else {
                    be.conv_backward_data(&spec, dy, w, dx)?;
                }
            }
        }
        Ok(())
    }

    fn flops(&self, bottoms: &[&[usize]], _: &[&[usize]]) -> u64 {
        self.spec.as_ref().map(|s| s.forward_flops() * bottoms.len() as u64).unwrap_or(0)
    }
}
