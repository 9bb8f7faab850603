//! Upsample (the SegNet fork's max-unpooling): bottoms (data, mask), where the mask is the mask
//! top of a MAX Pooling layer; the top is zero except at the masked positions, which receive
//! the data. Its gradient gathers the top's diff back through the mask; the mask gets none.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::proto::LayerParameter;
use crate::{Error, Result};

/// How the output size is found, as the fork's `LayerSetUp` decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutSize {
    /// `upsample_h` x `upsample_w`, whatever the input size.
    Fixed(usize, usize),
    /// `in * scale - pad_out` per axis (the fork's deprecated way).
    Scaled { scale_h: usize, scale_w: usize, pad_out_h: bool, pad_out_w: bool },
}

/// An Upsample layer.
struct Upsample {
    size: OutSize,
    /// (planes, in_plane, out_plane) of the last reshape.
    dims: Option<(usize, usize, usize)>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.upsample_param.unwrap_or_default();
    let (has_scale, has_sh, has_sw) = (p.scale.is_some(), p.scale_h.is_some(), p.scale_w.is_some());
    let fixed = p.upsample_h.is_some() && p.upsample_w.is_some();
    // The fork's one check of which fields go together; a lone upsample_h or upsample_w passes
    // it (with no scale_h/scale_w) and is ignored.
    let scale_pair = !has_scale && has_sh && has_sw;
    let no_scale_pair = !has_sh && !has_sw;
    if !fixed && !scale_pair && !no_scale_pair {
        return Err(Error::Config(
            "give upsample_h and upsample_w, or (deprecated) either `scale` or both `scale_h` and `scale_w`".into(),
        ));
    }
    let size = if fixed {
        let (h, w) = (p.upsample_h() as usize, p.upsample_w() as usize);
        if h <= 1 || w <= 1 {
            return Err(Error::Config(format!("upsample_h and upsample_w must be greater than 1, given {h} and {w}")));
        }
        OutSize::Fixed(h, w)
    } else {
        let (scale_h, scale_w) =
            if has_sh { (p.scale_h() as usize, p.scale_w() as usize) } else { (p.scale() as usize, p.scale() as usize) };
        if scale_h <= 1 || scale_w <= 1 {
            return Err(Error::Config(format!("the upsampling scale must be greater than 1, given {scale_h}x{scale_w}")));
        }
        let (pad_out_h, pad_out_w) = (p.pad_out_h(), p.pad_out_w());
        if (pad_out_h && scale_h != 2) || (pad_out_w && scale_w != 2) {
            return Err(Error::Config("pad_out_h/pad_out_w require a scale of 2 along their axis".into()));
        }
        OutSize::Scaled { scale_h, scale_w, pad_out_h, pad_out_w }
    };
    Ok(Box::new(Upsample { size, dims: None }))
}

impl<B: Backend> Layer<B> for Upsample {
    fn type_name(&self) -> &'static str {
        "Upsample"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(2)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom == 0
    }
    /// Backward gathers through the mask (bottom 1).
    fn backward_reads_bottom(&self, bottom: usize) -> bool {
        bottom == 1
    }
    fn backward_reads_top(&self, _top: usize) -> bool {
        false
    }

    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (x, m) = (bottoms[0], bottoms[1]);
        if x.len() != 4 || m.len() != 4 {
            return Err(Error::Shape(format!(
                "data and mask must have 4 axes (num, channels, height, width), they have shapes {x:?} and {m:?}"
            )));
        }
        if x != m {
            return Err(Error::Shape(format!("the mask's shape {m:?} differs from the data's {x:?}")));
        }
        // The fork fixes a scaled output size at the first reshape; it is recomputed here on
        // every reshape, so that inputs of a new size flow through.
        let (out_h, out_w) = match self.size {
            OutSize::Fixed(h, w) => (h, w),
            OutSize::Scaled { scale_h, scale_w, pad_out_h, pad_out_w } => {
                let h = (x[2] * scale_h).saturating_sub(pad_out_h as usize);
                let w = (x[3] * scale_w).saturating_sub(pad_out_w as usize);
                (h, w)
            }
        };
        let top = vec![x[0], x[1], out_h, out_w];
        crate::blob::checked_count(&top)?;
        self.dims = Some((x[0] * x[1], x[2] * x[3], out_h * out_w));
        Ok(vec![top])
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let (planes, in_plane, out_plane) = self.dims.ok_or_else(|| Error::Internal("forward before reshape".into()))?;
        let parts = ctx.parts()?;
        let (x, mask) = (&parts.bottoms[0].data, &parts.bottoms[1].data);
        let mut tops = parts.tops;
        be.upsample_forward(planes, in_plane, out_plane, x, mask, &mut tops[0].data)
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let (planes, in_plane, out_plane) = self.dims.ok_or_else(|| Error::Internal("backward before reshape".into()))?;
        let mut parts = ctx.parts_back()?;
        let (data, mask) = parts.bottoms.split_at_mut(1);
        be.upsample_backward(planes, in_plane, out_plane, &parts.tops[0].diff, &mask[0].data, &mut data[0].diff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;
    use crate::layers::tensor_testing::{config_msg, layer_from, shape_msg};

    fn layer(param: &str) -> Result<Box<dyn Layer<Cpu>>> {
        layer_from(&format!("name: \"u\" type: \"Upsample\" bottom: \"x\" bottom: \"m\" top: \"y\" {param}"))
    }

    fn config_err(param: &str) -> String {
        config_msg(layer(param), param)
    }

    fn top_shape(param: &str, shape: &[usize]) -> Result<Vec<usize>> {
        layer(param).unwrap().reshape(&Cpu, &[shape, shape]).map(|t| t[0].clone())
    }

    #[test]
    fn output_size_follows_the_fork() {
        assert_eq!(top_shape("", &[2, 3, 4, 5]).unwrap(), [2, 3, 8, 10]);
        assert_eq!(top_shape("upsample_param { scale: 3 }", &[1, 1, 4, 5]).unwrap(), [1, 1, 12, 15]);
        assert_eq!(top_shape("upsample_param { scale_h: 2 scale_w: 3 }", &[1, 1, 4, 5]).unwrap(), [1, 1, 8, 15]);
        assert_eq!(top_shape("upsample_param { pad_out_h: true }", &[1, 1, 4, 5]).unwrap(), [1, 1, 7, 10]);
        assert_eq!(top_shape("upsample_param { pad_out_w: true }", &[1, 1, 4, 5]).unwrap(), [1, 1, 8, 9]);
        // upsample_h/w override every scale field.
        assert_eq!(top_shape("upsample_param { scale: 2 upsample_h: 7 upsample_w: 9 }", &[2, 2, 4, 5]).unwrap(), [2, 2, 7, 9]);
        assert_eq!(
            top_shape("upsample_param { scale: 4 scale_h: 3 scale_w: 3 upsample_h: 5 upsample_w: 6 }", &[1, 1, 4, 5]).unwrap(),
            [1, 1, 5, 6]
        );
        // A lone upsample_h passes the fork's check and is ignored (scale 2 applies).
        assert_eq!(top_shape("upsample_param { upsample_h: 7 }", &[1, 1, 4, 5]).unwrap(), [1, 1, 8, 10]);
        // Recomputed when the input changes size.
        let mut l = layer("").unwrap();
        assert_eq!(l.reshape(&Cpu, &[&[1, 1, 2, 2], &[1, 1, 2, 2]]).unwrap()[0], [1, 1, 4, 4]);
        assert_eq!(l.reshape(&Cpu, &[&[1, 1, 3, 2], &[1, 1, 3, 2]]).unwrap()[0], [1, 1, 6, 4]);
    }

    #[test]
    fn bad_parameters_are_config_errors() {
        assert!(config_err("upsample_param { scale_h: 2 }").contains("either `scale` or both `scale_h` and `scale_w`"));
        assert!(config_err("upsample_param { scale: 2 scale_h: 2 scale_w: 2 }").contains("either `scale`"));
        assert!(config_err("upsample_param { scale: 1 }").contains("scale must be greater than 1, given 1x1"));
        assert!(config_err("upsample_param { scale_h: 2 scale_w: 1 }").contains("given 2x1"));
        assert!(config_err("upsample_param { upsample_h: 1 upsample_w: 4 }").contains("must be greater than 1"));
        assert!(config_err("upsample_param { scale: 3 pad_out_h: true }").contains("require a scale of 2"));
        assert!(config_err("upsample_param { scale_h: 2 scale_w: 3 pad_out_w: true }").contains("require a scale of 2"));
        assert!(layer("upsample_param { scale_h: 2 scale_w: 3 pad_out_h: true }").is_ok());
    }

    #[test]
    fn bad_shapes_are_shape_errors() {
        let mut l = layer("").unwrap();
        assert!(shape_msg(l.reshape(&Cpu, &[&[1, 2, 3], &[1, 2, 3]])).contains("must have 4 axes"));
        assert!(shape_msg(l.reshape(&Cpu, &[&[1, 2, 3, 4], &[1, 2, 3, 5]])).contains("differs from the data's"));
        let mut l = layer("upsample_param { scale: 4000000000 }").unwrap();
        assert!(shape_msg(l.reshape(&Cpu, &[&[1, 1, 3, 4], &[1, 1, 3, 4]])).contains("more than"));
    }

    #[test]
    fn no_gradient_to_the_mask() {
        let l = layer("").unwrap();
        assert!(l.allow_force_backward(0));
        assert!(!l.allow_force_backward(1));
    }
}
