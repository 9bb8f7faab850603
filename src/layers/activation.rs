//! The element-wise activation layers without state of their own (ReLU, Sigmoid, TanH, AbsVal,
//! BNLL, ELU, Power, Exp, Log, Threshold, Clip): each maps one bottom to one top, in place or
//! not, through the backend's [`Activation`] primitive. Constants Caffe derives at setup are
//! derived here, with Caffe's checks.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Activation, Backend, Io};
use crate::proto::LayerParameter;
use crate::{Error, Result};

/// A layer computing one [`Activation`].
struct ActivationLayer {
    name: &'static str,
    f: Activation,
}

fn layer<B: Backend>(name: &'static str, f: Activation) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(ActivationLayer { name, f }))
}

pub(super) fn create_relu<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let negative_slope = lp.relu_param.as_ref().map(|p| p.negative_slope()).unwrap_or(0.0);
    layer("ReLU", Activation::ReLU { negative_slope })
}

pub(super) fn create_sigmoid<B: Backend>(_: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    layer("Sigmoid", Activation::Sigmoid)
}

pub(super) fn create_tanh<B: Backend>(_: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    layer("TanH", Activation::TanH)
}

pub(super) fn create_absval<B: Backend>(_: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    layer("AbsVal", Activation::AbsVal)
}

pub(super) fn create_bnll<B: Backend>(_: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    layer("BNLL", Activation::BNLL)
}

pub(super) fn create_elu<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let alpha = lp.elu_param.as_ref().map(|p| p.alpha()).unwrap_or(1.0);
    layer("ELU", Activation::ELU { alpha })
}

pub(super) fn create_power<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.power_param.unwrap_or_default();
    layer("Power", Activation::Power { power: p.power(), scale: p.scale(), shift: p.shift() })
}

/// `ln(base)` as Caffe's Exp and Log layers compute it (1 for base -1, meaning e), with their
/// checks.
fn log_base(base: f32) -> Result<f32> {
    if base != -1.0 && (base <= 0.0 || base.is_nan()) {
        return Err(Error::Config(format!("base must be strictly positive (or -1 for e), given {base}")));
    }
    let log_base = if base == -1.0 { 1.0 } else { base.ln() };
    if !log_base.is_finite() {
        return Err(Error::Config(format!("log(base) = log({base}) = {log_base} is not finite")));
    }
    Ok(log_base)
}

pub(super) fn create_exp<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.exp_param.unwrap_or_default();
    let (base, scale, shift) = (p.base(), p.scale(), p.shift());
    let inner_scale = log_base(base)? * scale;
    let outer_scale = if shift == 0.0 {
        1.0
    } else if base != -1.0 {
        base.powf(shift)
    } else {
        shift.exp()
    };
    layer("Exp", Activation::Exp { inner_scale, outer_scale })
}

pub(super) fn create_log<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.log_param.unwrap_or_default();
    let (base, scale, shift) = (p.base(), p.scale(), p.shift());
    let log_base = log_base(base)?;
    let base_scale = 1.0 / log_base;
    if !base_scale.is_finite() {
        return Err(Error::Config(format!("1/log(base) = 1/log({base}) = {base_scale} is not finite")));
    }
    layer("Log", Activation::Log { scale, shift, base_scale, backward_num_scale: scale / log_base })
}

pub(super) fn create_threshold<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let threshold = lp.threshold_param.as_ref().map(|p| p.threshold()).unwrap_or(0.0);
    layer("Threshold", Activation::Threshold { threshold })
}

pub(super) fn create_clip<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = super::required(&lp.clip_param, "clip_param")?;
    layer("Clip", Activation::Clip { min: p.min, max: p.max })
}

impl<B: Backend> Layer<B> for ActivationLayer {
    fn type_name(&self) -> &'static str {
        self.name
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    /// Every one of Caffe's neuron layers may run in place except AbsVal, which refuses.
    fn allows_in_place(&self) -> bool {
        !matches!(self.f, Activation::AbsVal)
    }
    fn has_backward(&self) -> bool {
        !matches!(self.f, Activation::Threshold { .. })
    }
    fn relu_slope(&self) -> Option<f32> {
        match self.f {
            Activation::ReLU { negative_slope } => Some(negative_slope),
            _ => None,
        }
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok(vec![bottoms[0].to_vec()])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let u = ctx.unary()?;
        be.activation_forward(self.f, u.data)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let u = ctx.unary_back()?;
        match u.diff {
            // Caffe quirk: in place, Power and Log write the derivative g into the shared diff
            // buffer before multiplying it by the top diff, which by then is g itself: the
            // bottom diff is g * g and the top diff is lost. Reproduced as 1 -> g -> g * g.
            Io::InPlace(d) if matches!(self.f, Activation::Power { .. } | Activation::Log { .. }) => {
                let n = be.len(d);
                be.fill(d, 0, n, 1.0)?;
                be.activation_backward(self.f, u.x, u.y, Io::InPlace(d))?;
                be.activation_backward(self.f, u.x, u.y, Io::InPlace(d))
            }
            diff => be.activation_backward(self.f, u.x, u.y, diff),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use crate::backend::cpu::Cpu;
    use crate::net::Net;
    use crate::proto::{NetParameter, NetState, Phase};

    /// Builds a net from prototxt text in `phase`; the error message when it fails.
    pub(in crate::layers) fn net(text: &str, phase: Phase) -> Result<Net<Cpu>, String> {
        let mut param: NetParameter = crate::prototxt::parse(text, "test").map_err(|e| e.to_string())?;
        param.state = Some(NetState { phase: Some(phase as i32), ..Default::default() });
        Net::new(Cpu::new(), &param, 1).map_err(|e| e.to_string())
    }

    /// The error building a net of one `layer` on a 2x3x4 input.
    pub(in crate::layers) fn error(layer: &str, phase: Phase) -> String {
        let text = format!(
            "layer {{ name: 'x' type: 'Input' top: 'x' input_param {{ shape {{ dim: 2 dim: 3 dim: 4 }} }} }}\n{layer}"
        );
        match net(&text, phase) {
            Ok(_) => panic!("`{layer}` was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn exp_and_log_reject_bad_bases() {
        let e = error("layer { name: 'e' type: 'Exp' bottom: 'x' top: 'y' exp_param { base: 0 } }", Phase::Train);
        assert!(e.contains("layer `e` (type Exp): base must be strictly positive (or -1 for e), given 0"), "{e}");
        let e = error("layer { name: 'e' type: 'Exp' bottom: 'x' top: 'y' exp_param { base: -2 } }", Phase::Train);
        assert!(e.contains("given -2"), "{e}");
        let e = error("layer { name: 'l' type: 'Log' bottom: 'x' top: 'y' log_param { base: 1 } }", Phase::Train);
        assert!(e.contains("layer `l` (type Log): 1/log(base) = 1/log(1) = inf is not finite"), "{e}");
        let e = error("layer { name: 'l' type: 'Log' bottom: 'x' top: 'y' log_param { base: -0.5 } }", Phase::Train);
        assert!(e.contains("base must be strictly positive"), "{e}");
    }

    #[test]
    fn clip_needs_its_bounds_and_absval_refuses_in_place() {
        let e = error("layer { name: 'c' type: 'Clip' bottom: 'x' top: 'y' }", Phase::Train);
        assert!(e.contains("layer `c` (type Clip): missing `clip_param`"), "{e}");
        let e = error("layer { name: 'a' type: 'AbsVal' bottom: 'x' top: 'x' }", Phase::Train);
        assert!(e.contains("layer `a` (type AbsVal): cannot run in place"), "{e}");
        let e = error("layer { name: 's' type: 'Sigmoid' bottom: 'x' top: 'y' top: 'z' }", Phase::Train);
        assert!(e.contains("takes exactly 1 top blob(s), given 2"), "{e}");
    }
}
