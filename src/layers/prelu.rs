//! PReLU: ReLU with learnable negative slopes, one per channel (axis 1) or one shared by all
//! (`channel_shared`, a 0-axis blob as in Caffe). In place, the bottom is copied before it is
//! overwritten, as Caffe does, so that backward sees the true input.

use super::{Arity, Ctx, Layer, LayerContext, ParamDef};
use crate::backend::{Backend, Io};
use crate::blob::count_range;
use crate::proto::{FillerParameter, LayerParameter};
use crate::{Error, Result};

struct PReLU<B: Backend> {
    shared: bool,
    filler: FillerParameter,
    /// Channels the slopes were made for (per-channel mode).
    channels: usize,
    /// Channels and inner size of the current bottom.
    cur_channels: usize,
    dim: usize,
    /// The bottom data before an in-place forward overwrote it.
    bottom_copy: Option<B::Buf>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.prelu_param.clone().unwrap_or_default();
    let filler = p.filler.clone().unwrap_or(FillerParameter {
        r#type: Some("constant".into()),
        value: Some(0.25),
        ..Default::default()
    });
    Ok(Box::new(PReLU::<B> {
        shared: p.channel_shared(),
        filler,
        channels: 0,
        cur_channels: 0,
        dim: 0,
        bottom_copy: None,
    }))
}

fn check_axes(shape: &[usize]) -> Result<()> {
    if shape.len() < 2 {
        return Err(Error::Shape(format!("the bottom must have at least 2 axes, given {shape:?}")));
    }
    Ok(())
}

impl<B: Backend> Layer<B> for PReLU<B> {
    fn type_name(&self) -> &'static str {
        "PReLU"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn setup(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<ParamDef>> {
        check_axes(bottoms[0])?;
        self.channels = bottoms[0][1];
        let shape = if self.shared { vec![] } else { vec![self.channels] };
        Ok(vec![ParamDef { shape, filler: Some(self.filler.clone()) }])
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        check_axes(shape)?;
        if !self.shared && shape[1] != self.channels {
            return Err(Error::Shape(format!(
                "the bottom {shape:?} has {} channels; the slopes are for {}",
                shape[1], self.channels
            )));
        }
        self.cur_channels = shape[1];
        self.dim = count_range(shape, 2, shape.len());
        Ok(vec![shape.to_vec()])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let u = ctx.unary()?;
        if let Io::InPlace(y) = &u.data {
            let n = be.len(y);
            if self.bottom_copy.as_ref().map(|c| be.len(c)) != Some(n) {
                self.bottom_copy = Some(be.alloc(n)?);
            }
            if let Some(c) = self.bottom_copy.as_mut() {
                be.copy(y, c)?;
            }
        }
        be.prelu_forward(self.cur_channels, self.dim, self.shared, &u.params[0].data, u.data)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let slope_grad = ctx.param_propagate(0);
        let mut u = ctx.unary_back()?;
        let x = if u.in_place {
            self.bottom_copy.as_ref().ok_or_else(|| Error::Internal("PReLU backward before forward".into()))?
        } else {
            u.x
        };
        let (c, dim, shared) = (self.cur_channels, self.dim, self.shared);
        // The slope gradient first: in place, the bottom diff overwrites the top diff.
        if slope_grad {
            let dy = match &u.diff {
                Io::InPlace(d) => &**d,
                Io::Pair(dy, _) => *dy,
            };
            be.prelu_backward_slope(c, dim, shared, x, dy, &mut u.params[0].diff)?;
        }
        if propagate_down[0] {
            be.prelu_backward_data(c, dim, shared, &u.params[0].data, x, u.diff)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::activation::tests::net;
    use crate::proto::Phase;

    const PRELU: &str = "layer { name: 'p' type: 'PReLU' bottom: 'x' top: 'y' }";

    #[test]
    fn bottom_needs_two_axes_and_its_channels_stay() {
        let text = format!("layer {{ name: 'x' type: 'Input' top: 'x' input_param {{ shape {{ dim: 5 }} }} }}\n{PRELU}");
        let e = net(&text, Phase::Train).err().expect("a 1-axis bottom was accepted");
        assert!(e.contains("layer `p` (type PReLU): the bottom must have at least 2 axes, given [5]"), "{e}");

        let text = format!("layer {{ name: 'x' type: 'Input' top: 'x' input_param {{ shape {{ dim: 2 dim: 3 dim: 4 }} }} }}\n{PRELU}");
        let mut n = net(&text, Phase::Train).unwrap();
        assert_eq!(n.layer_params(1)[0].shape(), &[3]);
        let be = n.backend().clone();
        n.blob_mut("x").unwrap().reshape(&be, &[2, 4, 3]).unwrap();
        let e = n.forward().unwrap_err().to_string();
        assert!(e.contains("layer `p` (type PReLU): the bottom [2, 4, 3] has 4 channels; the slopes are for 3"), "{e}");
    }

    #[test]
    fn shared_slope_is_a_scalar_blob_filled_with_a_quarter() {
        let text = "layer { name: 'x' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }
            layer { name: 'p' type: 'PReLU' bottom: 'x' top: 'y' prelu_param { channel_shared: true } }";
        let n = net(text, Phase::Train).unwrap();
        let slope = n.layer_params(1)[0];
        assert_eq!(slope.shape(), &[] as &[usize]);
        assert_eq!(slope.data_to_vec(n.backend()).unwrap(), vec![0.25]);
    }
}
