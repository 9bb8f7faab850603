//! SPP (Caffe's SPPLayer): spatial pyramid pooling. Level `l` of `pyramid_height` pools the
//! whole (N, C, H, W) input into about 2^l x 2^l bins, with Caffe's kernel, stride and padding
//! for the level: kernel `ceil(H / 2^l)`, stride the kernel, padding `(kernel * 2^l - H + 1) / 2`
//! (likewise for W), then Caffe's pooling output size. The levels are flattened and
//! concatenated into (N, C * bins); with one level, the top is that level's pooling output
//! (N, C, 1, 1) itself, as in Caffe.
//!
//! As Caffe's layer does, it runs a net of its own (Split, Pooling, Flatten, Concat), rebuilt
//! when the input's channels or spatial size change. Its poolings run in TRAIN whatever the
//! net's phase, as Caffe's (built from a LayerParameter of its own, whose phase defaults to
//! TRAIN): with `pool: STOCHASTIC` they sample in a TEST net too.

use super::subnet::{blob_shape, layer, SubNet};
use super::{Arity, Ctx, Layer, LayerContext, Pass};
use crate::backend::Backend;
use crate::blob::shape_string;
use crate::proto::pooling_parameter::PoolMethod;
use crate::proto::spp_parameter::PoolMethod as SppMethod;
use crate::proto::{ConcatParameter, FlattenParameter, InputParameter, LayerParameter, NetParameter, NetState, Phase, PoolingParameter};
use crate::{Error, Result};

struct Spp<B: Backend> {
    name: String,
    levels: u32,
    method: PoolMethod,
    seed: u64,
    /// The inner net and the (C, H, W) it was built for.
    sub: Option<(SubNet<B>, [usize; 3])>,
    forward_only: bool,
    /// The input shape of the last reshape and the top shape it gave: the inner net reshapes
    /// (to learn the top shape) only when the input's shape changed, since each pass reshapes
    /// its layers again anyway.
    shapes: Option<(Vec<usize>, Vec<usize>)>,
    /// The last pass the net announced, for an inner net built after it (STOCHASTIC pooling
    /// draws from it).
    pass: Option<Pass>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = super::required(&lp.spp_param, "spp_param")?;
    let levels = p.pyramid_height();
    if levels == 0 {
        return Err(Error::Config("spp_param.pyramid_height must be positive".into()));
    }
    // 2^levels bins must fit the pooling geometry's integers.
    if levels > 16 {
        return Err(Error::Config(format!("spp_param.pyramid_height {levels} is too large (at most 16)")));
    }
    let method = match p.pool() {
        SppMethod::Max => PoolMethod::Max,
        SppMethod::Ave => PoolMethod::Ave,
        SppMethod::Stochastic => PoolMethod::Stochastic,
    };
    Ok(Box::new(Spp::<B> { name: lp.name().to_string(), levels, method, seed: cx.seed, sub: None, forward_only: false, shapes: None, pass: None }))
}

/// Caffe's kernel and padding of level `level` along an axis of `size` (stride = kernel).
fn level_geometry(level: u32, size: usize) -> (usize, usize) {
    let bins = 1usize << level;
    let kernel = size.div_ceil(bins);
    let pad = (kernel * bins - size).div_ceil(2);
    (kernel, pad)
}

impl<B: Backend> Spp<B> {
    /// The inner net for inputs of `shape`: Input `x`, per level a Pooling (and, with more
    /// than one level, a Flatten), a Concat; output `out`.
    fn inner_param(&self, shape: &[usize]) -> NetParameter {
        let (h, w) = (shape[2], shape[3]);
        let mut input = layer("input", "Input", &[], &["x"]);
        input.input_param = Some(InputParameter { shape: vec![blob_shape(shape)] });
        let mut layers = vec![input];
        let mut concat = layer("concat", "Concat", &[], &["out"]);
        concat.concat_param = Some(ConcatParameter { axis: Some(1), ..Default::default() });
        for l in 0..self.levels {
            let ((kh, ph), (kw, pw)) = (level_geometry(l, h), level_geometry(l, w));
            let top = if self.levels == 1 { "out".to_string() } else { format!("pool{l}") };
            let mut pool = layer(&format!("pool{l}"), "Pooling", &["x"], &[&top]);
            pool.pooling_param = Some(PoolingParameter {
                pool: Some(self.method as i32),
                kernel_h: Some(kh as u32),
                kernel_w: Some(kw as u32),
                stride_h: Some(kh as u32),
                stride_w: Some(kw as u32),
                pad_h: Some(ph as u32),
                pad_w: Some(pw as u32),
                ..Default::default()
            });
            layers.push(pool);
            if self.levels > 1 {
                let flat = format!("flatten{l}");
                let mut f = layer(&flat, "Flatten", &[&top], &[&flat]);
                f.flatten_param = Some(FlattenParameter::default());
                layers.push(f);
                concat.bottom.push(flat);
            }
        }
        if self.levels > 1 {
            layers.push(concat);
        }
        for l in &mut layers {
            l.name = Some(format!("{}_{}", self.name, l.name()));
        }
        NetParameter {
            name: Some(format!("{} (pyramid)", self.name)),
            layer: layers,
            // Every layer takes its gradient: the input's comes from no learnable blob.
            force_backward: Some(true),
            // Caffe builds each level's pooling from a fresh LayerParameter, whose phase is
            // TRAIN whatever the net's: STOCHASTIC levels sample in a TEST net too.
            state: Some(NetState { phase: Some(Phase::Train as i32), ..Default::default() }),
            ..Default::default()
        }
    }

    /// Checks the input `shape` and builds the inner net for it, anew when channels or spatial
    /// size changed.
    fn build_for(&mut self, be: &B, shape: &[usize]) -> Result<()> {
        if shape.len() != 4 {
            return Err(Error::Shape(format!("the input must have 4 axes (num, channels, height, width), given {}", shape_string(shape))));
        }
        if shape[2] == 0 || shape[3] == 0 {
            return Err(Error::Shape(format!("the input's height and width cannot be zero, given {}", shape_string(shape))));
        }
        let key = [shape[1], shape[2], shape[3]];
        if self.sub.as_ref().is_none_or(|(_, k)| *k != key) {
            let mut sub = SubNet::build(be, &self.inner_param(shape), self.seed, 0, (&self.name, "SPP"))?;
            if self.forward_only {
                sub.forward_only()?;
            }
            if let Some(pass) = self.pass {
                sub.set_pass(pass);
            }
            self.sub = Some((sub, key));
        }
        Ok(())
    }

    /// The inner net (built by the reshape before every pass).
    fn sub(&mut self) -> Result<&mut SubNet<B>> {
        self.sub.as_mut().map(|(s, _)| s).ok_or_else(|| Error::Internal("SPP run before its reshape".into()))
    }
}

impl<B: Backend> Layer<B> for Spp<B> {
    fn type_name(&self) -> &'static str {
        "SPP"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        // The inner net keeps what its poolings need.
        false
    }
    fn backward_reads_top(&self, _top: usize) -> bool {
        false
    }
    fn is_stochastic(&self) -> bool {
        self.method == PoolMethod::Stochastic
    }
    fn set_pass(&mut self, pass: Pass) {
        self.pass = Some(pass);
        if let Some((sub, _)) = &mut self.sub {
            sub.set_pass(pass);
        }
    }
    fn forward_only(&mut self) -> Result<()> {
        self.forward_only = true;
        match &mut self.sub {
            Some((sub, _)) => sub.forward_only(),
            None => Ok(()),
        }
    }
    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        self.build_for(be, shape)?;
        let sub = self.sub.as_mut().map(|(s, _)| s).ok_or_else(|| Error::Internal("SPP inner net not built".into()))?;
        if let Some((_, top)) = self.shapes.as_ref().filter(|(input, _)| input.as_slice() == shape) {
            return Ok(vec![top.clone()]);
        }
        sub.reshape(be, "x", shape)?;
        let top = sub.blob("out")?.shape().to_vec();
        self.shapes = Some((shape.to_vec(), top.clone()));
        Ok(vec![top])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let sub = self.sub()?;
        sub.set_input(be, "x", parts.bottoms[0])?;
        sub.forward(be, &mut [])?;
        sub.get(be, "out", false, parts.tops[0])
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let mut parts = ctx.parts_back()?;
        let sub = self.sub()?;
        sub.set_diff(be, "out", parts.tops[0])?;
        sub.backward(be, &mut [])?;
        sub.get(be, "x", true, parts.bottoms[0])
    }
    fn inner_bytes(&self) -> usize {
        self.sub.as_ref().map_or(0, |(s, _)| s.bytes())
    }
    fn flops(&self, _bottoms: &[&[usize]], _tops: &[&[usize]]) -> u64 {
        self.sub.as_ref().map_or(0, |(s, _)| s.flops())
    }
}

#[cfg(test)]
mod tests {
    use super::level_geometry;

    #[test]
    fn levels_cover_the_input_as_caffe_computes_them() {
        // (level, size) -> (kernel, pad), from Caffe's formulas.
        assert_eq!(level_geometry(0, 13), (13, 0));
        assert_eq!(level_geometry(1, 13), (7, 1));
        assert_eq!(level_geometry(2, 13), (4, 2));
        assert_eq!(level_geometry(2, 16), (4, 0));
        assert_eq!(level_geometry(1, 5), (3, 1));
        assert_eq!(level_geometry(2, 3), (1, 1));
    }
}
