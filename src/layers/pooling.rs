//! Pooling (2-d, as Caffe's `PoolingLayer`): MAX with an optional mask top, AVE, global
//! pooling, Caffe's output-size rounding, and STOCHASTIC pooling as Caffe's GPU kernels compute
//! it (its CPU build has none): in TRAIN each window picks one element with probability
//! proportional to its value and backward routes the gradient to it; in TEST each window gives
//! the average of its values weighted by themselves. Backward in TEST is an error: Caffe's reads
//! picks it never drew (an unset buffer), so it has no gradient to reproduce. SPP's poolings
//! run in TRAIN in any net, as Caffe's (see `spp.rs`).
//!
//! Stochastic pooling draws its uniform numbers on the backend from a 64-bit key per forward
//! (see [`Pooling::stochastic_pool_forward_train`]), taken from the layer's own seeded stream
//! as Dropout takes its keys, so every backend picks the same elements for the same seed and a
//! resumed run picks what the unbroken run picked. The picks are not Caffe's: Caffe's come from
//! cuRAND.
//!
//! [`Pooling::stochastic_pool_forward_train`]: crate::backend::Pooling::stochastic_pool_forward_train

use super::{Arity, Ctx, Layer, LayerContext, Pass};
use crate::backend::{Backend, PoolSpec};
use crate::proto::pooling_parameter::{PoolMethod, RoundMode};
use crate::proto::{LayerParameter, Phase, PoolingParameter};
use crate::rng::Rng;
use crate::{Error, Result};

/// Largest plane whose flat indices `f32` holds exactly (2^24): the argmax mask is `f32`.
const MAX_MASK_PLANE: usize = 1 << 24;

/// Kernel, stride and padding as `(h, w)` pairs, checked as Caffe's `LayerSetUp` checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    /// None for global pooling: the kernel is the input size, known at reshape.
    kernel: Option<(usize, usize)>,
    stride: (usize, usize),
    pad: (usize, usize),
}

/// Reads `name` or `name_h` + `name_w` as Caffe does: the pair must be complete and exclusive
/// of `name`; absent everywhere gives `default`.
fn pair(single: Option<u32>, h: Option<u32>, w: Option<u32>, default: u32, name: &str) -> Result<(usize, usize)> {
    match (single, h, w) {
        (None, Some(h), Some(w)) => Ok((h as usize, w as usize)),
        (s, None, None) => {
            let v = s.unwrap_or(default) as usize;
            Ok((v, v))
        }
        _ => Err(Error::Config(format!("give either `{name}` or both `{name}_h` and `{name}_w`"))),
    }
}

fn geometry(p: &PoolingParameter, method: PoolMethod) -> Result<Geometry> {
    let kernel = if p.global_pooling() {
        if p.kernel_size.is_some() || p.kernel_h.is_some() || p.kernel_w.is_some() {
            return Err(Error::Config("with global_pooling the kernel size cannot be given".into()));
        }
        None
    } else {
        let hw = p.kernel_h.is_some() && p.kernel_w.is_some();
        // Caffe's checks: kernel_size XOR (kernel_h and kernel_w); a lone kernel_h or
        // kernel_w beside kernel_size passes them and is ignored.
        let k = match (p.kernel_size, hw) {
            (Some(_), true) => {
                return Err(Error::Config("give either `kernel_size` or `kernel_h` and `kernel_w`, not both".into()))
            }
            (Some(k), false) => (k as usize, k as usize),
            (None, true) => (p.kernel_h() as usize, p.kernel_w() as usize),
            (None, false) => {
                return Err(Error::Config("`kernel_size` (or both `kernel_h` and `kernel_w`) is required".into()))
            }
        };
        if k.0 == 0 || k.1 == 0 {
            return Err(Error::Config("the kernel size must be positive".into()));
        }
        Some(k)
    };
    let pad = pair(p.pad, p.pad_h, p.pad_w, 0, "pad")?;
    let stride = pair(p.stride, p.stride_h, p.stride_w, 1, "stride")?;
    if stride.0 == 0 || stride.1 == 0 {
        return Err(Error::Config("the stride must be positive".into()));
    }
    if kernel.is_none() && (pad != (0, 0) || stride != (1, 1)) {
        return Err(Error::Config("with global_pooling only pad 0 and stride 1 are allowed".into()));
    }
    if pad != (0, 0) {
        if method == PoolMethod::Stochastic {
            return Err(Error::Config("padding is implemented only for MAX and AVE pooling".into()));
        }
        if let Some(k) = kernel
            && (pad.0 >= k.0 || pad.1 >= k.1)
        {
            return Err(Error::Config(format!(
                "the padding ({}, {}) must be smaller than the kernel ({}, {})",
                pad.0, pad.1, k.0, k.1
            )));
        }
    }
    Ok(Geometry { kernel, stride, pad })
}

/// Caffe's pooled extent along one axis: `round((in + 2 pad - kernel) / stride) + 1` with the
/// division in `f32` and `round` ceil or floor; then, with padding on either axis, one less
/// when the last window would start in the padding past the input. None when no window fits.
fn pooled_extent(input: usize, kernel: usize, stride: usize, pad: usize, any_pad: bool, floor: bool) -> Option<usize> {
    let q = (input as i64 + 2 * pad as i64 - kernel as i64) as f32 / stride as f32;
    let mut pooled = if floor { q.floor() } else { q.ceil() } as i64 + 1;
    if any_pad && (pooled - 1) * stride as i64 >= (input + pad) as i64 {
        pooled -= 1;
    }
    if pooled < 1 || (any_pad && (pooled - 1) * stride as i64 >= (input + pad) as i64) {
        return None;
    }
    Some(pooled as usize)
}

/// A Pooling layer.
struct Pooling<B: Backend> {
    method: PoolMethod,
    floor: bool,
    geometry: Geometry,
    /// Whether the layer has a second top (MAX pooling's mask).
    mask_top: bool,
    spec: Option<PoolSpec>,
    /// The argmax of MAX pooling when there is no mask top (Caffe's `max_idx_`), or the
    /// elements STOCHASTIC pooling picked in TRAIN (Caffe's `rand_idx_`).
    mask: Option<B::Buf>,
    /// STOCHASTIC pooling in TRAIN: forward samples (Caffe's phase test).
    sample: bool,
    seed: u64,
    rng: Rng,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.pooling_param.unwrap_or_default();
    let method = PoolMethod::try_from(p.pool.unwrap_or(0))
        .map_err(|_| Error::Config(format!("unknown pooling method {}", p.pool.unwrap_or(0))))?;
    let round = RoundMode::try_from(p.round_mode.unwrap_or(0))
        .map_err(|_| Error::Config(format!("unknown round_mode {}", p.round_mode.unwrap_or(0))))?;
    let geometry = geometry(&p, method)?;
    Ok(Box::new(Pooling::<B> {
        method,
        floor: round == RoundMode::Floor,
        geometry,
        mask_top: lp.top.len() > 1,
        spec: None,
        mask: None,
        sample: method == PoolMethod::Stochastic && cx.phase == Phase::Train,
        seed: cx.seed,
        rng: Rng::new(cx.seed),
    }))
}

impl<B: Backend> Pooling<B> {
    /// Whether forward writes a mask of picked elements (MAX, and STOCHASTIC in TRAIN).
    fn keeps_mask(&self) -> bool {
        self.method == PoolMethod::Max || self.sample
    }

    fn spec_for(&self, shape: &[usize]) -> Result<PoolSpec> {
        if shape.len() != 4 {
            return Err(Error::Shape(format!(
                "the bottom must have 4 axes (num, channels, height, width), it has shape {shape:?}"
            )));
        }
        let (in_h, in_w) = (shape[2], shape[3]);
        let (kernel_h, kernel_w) = self.geometry.kernel.unwrap_or((in_h, in_w));
        let (stride_h, stride_w) = self.geometry.stride;
        let (pad_h, pad_w) = self.geometry.pad;
        let any_pad = pad_h != 0 || pad_w != 0;
        let out_h = pooled_extent(in_h, kernel_h, stride_h, pad_h, any_pad, self.floor);
        let out_w = pooled_extent(in_w, kernel_w, stride_w, pad_w, any_pad, self.floor);
        let (Some(out_h), Some(out_w)) = (out_h, out_w) else {
            return Err(Error::Shape(format!(
                "an input of {in_h}x{in_w} is too small for kernel {kernel_h}x{kernel_w} (stride {stride_h}x{stride_w}, pad {pad_h}x{pad_w})"
            )));
        };
        if self.keeps_mask() && in_h * in_w > MAX_MASK_PLANE {
            let what = if self.sample { "STOCHASTIC pooling in TRAIN" } else { "MAX pooling" };
            return Err(Error::Shape(format!(
                "{what} of {in_h}x{in_w} planes is not supported: its mask holds f32 indices, exact up to 2^24 per plane"
            )));
        }
        Ok(PoolSpec {
            planes: shape[0] * shape[1],
            in_h,
            in_w,
            out_h,
            out_w,
            kernel_h,
            kernel_w,
            stride_h,
            stride_w,
            pad_h,
            pad_w,
        })
    }
}

impl<B: Backend> Layer<B> for Pooling<B> {
    fn type_name(&self) -> &'static str {
        "Pooling"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        // Only MAX pooling has the mask top.
        if self.method == PoolMethod::Max { Arity::range(1, 2) } else { Arity::exactly(1) }
    }
    /// The mask top carries no gradient: backward reads its data only.
    fn reads_top_diff(&self, top: usize) -> bool {
        top == 0
    }
    /// MAX and STOCHASTIC backward scatter through the mask; AVE needs shapes only.
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        false
    }
    fn backward_reads_top(&self, top: usize) -> bool {
        top == 1
    }
    fn is_stochastic(&self) -> bool {
        self.sample
    }
    fn set_pass(&mut self, pass: Pass) {
        self.rng = Rng::stream(self.seed, pass.index());
    }

    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let spec = self.spec_for(bottoms[0])?;
        let top = vec![bottoms[0][0], bottoms[0][1], spec.out_h, spec.out_w];
        if self.keeps_mask() && !self.mask_top {
            let len = spec.out_len();
            if self.mask.as_ref().map(|m| be.len(m)) != Some(len) {
                self.mask = Some(be.alloc(len)?);
            }
        }
        self.spec = Some(spec);
        Ok(if self.mask_top { vec![top.clone(), top] } else { vec![top] })
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let spec = self.spec.as_ref().ok_or_else(|| Error::Internal("forward before reshape".into()))?;
        let parts = ctx.parts()?;
        let x = &parts.bottoms[0].data;
        let mut tops = parts.tops.into_iter();
        let y = &mut tops.next().ok_or_else(|| Error::Internal("pooling without a top".into()))?.data;
        match self.method {
            PoolMethod::Max => {
                let mask = match tops.next() {
                    Some(t) => &mut t.data,
                    None => self.mask.as_mut().ok_or_else(|| Error::Internal("max pooling mask missing".into()))?,
                };
                be.max_pool_forward(spec, x, y, mask)
            }
            PoolMethod::Ave => be.ave_pool_forward(spec, x, y),
            PoolMethod::Stochastic if self.sample => {
                let mask = self.mask.as_mut().ok_or_else(|| Error::Internal("stochastic pooling mask missing".into()))?;
                be.stochastic_pool_forward_train(spec, self.rng.next_u64(), x, y, mask)
            }
            PoolMethod::Stochastic => be.stochastic_pool_forward_test(spec, x, y),
        }
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let spec = self.spec.as_ref().ok_or_else(|| Error::Internal("backward before reshape".into()))?;
        let mut parts = ctx.parts_back()?;
        let dy = &parts.tops[0].diff;
        let dx = &mut parts.bottoms[0].diff;
        match self.method {
            PoolMethod::Max => {
                // The mask top carries no gradient; its data is the argmax.
                let mask = match parts.tops.get(1) {
                    Some(t) => &t.data,
                    None => self.mask.as_ref().ok_or_else(|| Error::Internal("max pooling mask missing".into()))?,
                };
                be.max_pool_backward(spec, dy, mask, dx)
            }
            PoolMethod::Ave => be.ave_pool_backward(spec, dy, dx),
            // The gradient goes to the element each window picked, as MAX pooling's to its
            // argmax.
            PoolMethod::Stochastic if self.sample => {
                let mask = self.mask.as_ref().ok_or_else(|| Error::Internal("stochastic pooling mask missing".into()))?;
                be.max_pool_backward(spec, dy, mask, dx)
            }
            PoolMethod::Stochastic => Err(Error::Config(
                "STOCHASTIC pooling has no gradient in the TEST phase: its weighted average is not what TRAIN \
                 differentiates, and Caffe's backward there reads picks it never drew"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;
    use crate::layers::tensor_testing::{config_msg, input, layer_from, net, shape_msg};

    fn layer(param: &str) -> Result<Box<dyn Layer<Cpu>>> {
        layer_from(&format!("name: \"p\" type: \"Pooling\" bottom: \"x\" top: \"y\" {param}"))
    }

    fn config_err(param: &str) -> String {
        config_msg(layer(param), param)
    }

    fn top_shape(param: &str, shape: &[usize]) -> Result<Vec<usize>> {
        let mut l = layer(param).unwrap();
        l.reshape(&Cpu, &[shape]).map(|t| t[0].clone())
    }

    #[test]
    fn bad_parameters_are_config_errors() {
        assert!(config_err("").contains("`kernel_size` (or both `kernel_h` and `kernel_w`) is required"));
        assert!(config_err("pooling_param { kernel_h: 2 }").contains("is required"));
        assert!(config_err("pooling_param { kernel_size: 2 kernel_h: 2 kernel_w: 3 }").contains("not both"));
        assert!(config_err("pooling_param { kernel_size: 0 }").contains("must be positive"));
        assert!(config_err("pooling_param { kernel_size: 2 stride: 0 }").contains("stride must be positive"));
        assert!(config_err("pooling_param { kernel_size: 2 pad_h: 1 }").contains("`pad` or both `pad_h` and `pad_w`"));
        assert!(config_err("pooling_param { kernel_size: 2 pad: 1 pad_h: 1 pad_w: 1 }").contains("`pad` or both"));
        assert!(config_err("pooling_param { kernel_size: 2 stride: 1 stride_w: 1 }").contains("`stride` or both"));
        assert!(config_err("pooling_param { kernel_size: 3 pad: 3 }").contains("must be smaller than the kernel"));
        assert!(config_err("pooling_param { kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 2 }").contains("smaller than the kernel"));
        assert!(config_err("pooling_param { global_pooling: true kernel_size: 2 }").contains("cannot be given"));
        assert!(config_err("pooling_param { global_pooling: true stride: 2 }").contains("only pad 0 and stride 1"));
        assert!(config_err("pooling_param { global_pooling: true pad: 1 }").contains("only pad 0 and stride 1"));
        assert!(config_err("pooling_param { pool: STOCHASTIC kernel_size: 2 pad: 1 }").contains("padding is implemented only for MAX and AVE"));
        // Caffe's checks let a lone kernel_h beside kernel_size through, and ignore it.
        assert_eq!(top_shape("pooling_param { kernel_size: 2 stride: 2 kernel_h: 5 }", &[1, 1, 4, 4]).unwrap(), [1, 1, 2, 2]);
    }


    /// A net of `phase` pooling a 2x3x7x9 input stochastically with kernel 3 stride 2, forward
    /// gradients on.
    fn stochastic_net(phase: &str) -> crate::net::Net<Cpu> {
        let body = format!(
            "state {{ phase: {phase} }} force_backward: true {} \
             layer {{ name: \"p\" type: \"Pooling\" bottom: \"x\" top: \"y\" pooling_param {{ pool: STOCHASTIC kernel_size: 3 stride: 2 }} }}",
            input("x", &[2, 3, 7, 9])
        );
        net(&body).unwrap()
    }

    /// Distinct positive values, so a picked value names its element.
    fn distinct_positive(n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n).map(|i| 0.25 + i as f32 * 0.01).collect();
        crate::rng::Rng::new(4).shuffle(&mut v);
        v
    }

    #[test]
    fn stochastic_pooling_trains_on_the_picked_elements() {
        let mut net = stochastic_net("TRAIN");
        let be = Cpu;
        let x = distinct_positive(2 * 3 * 7 * 9);
        net.blob_mut("x").unwrap().set_data(&be, &x).unwrap();
        assert!(net.layers()[1].layer.is_stochastic());
        net.set_pass(Pass { iter: 3, sub: 0, per_iter: 1 });
        net.forward().unwrap();
        let y = net.blob("y").unwrap().data_to_vec(&be).unwrap();
        assert_eq!(net.blob("y").unwrap().shape(), [2, 3, 3, 4]);
        // Every output is an element of its own window; the gradient goes there only.
        let dy: Vec<f32> = (0..y.len()).map(|i| 1.0 + i as f32).collect();
        let mut want = vec![0.0f32; x.len()];
        for (o, &v) in y.iter().enumerate() {
            let (plane, ph, pw) = (o / 12, (o % 12) / 4, o % 4);
            let i = x.iter().position(|&e| e == v).expect("a picked value");
            let (h, w) = ((i % 63) / 9, i % 9);
            assert_eq!(i / 63, plane, "output {o} picked from another plane");
            assert!((2 * ph..2 * ph + 3).contains(&h) && (2 * pw..2 * pw + 3).contains(&w), "output {o} picked ({h}, {w})");
            want[i] += dy[o];
        }
        net.blob_mut("y").unwrap().set_diff(&be, &dy).unwrap();
        net.backward().unwrap();
        assert_eq!(net.blob("x").unwrap().diff_to_vec(&be).unwrap(), want);
        // The same pass draws the same picks; other passes draw others.
        net.set_pass(Pass { iter: 3, sub: 0, per_iter: 1 });
        net.forward().unwrap();
        assert_eq!(net.blob("y").unwrap().data_to_vec(&be).unwrap(), y);
        net.set_pass(Pass { iter: 4, sub: 0, per_iter: 1 });
        net.forward().unwrap();
        assert_ne!(net.blob("y").unwrap().data_to_vec(&be).unwrap(), y);
    }

    #[test]
    fn stochastic_pooling_tests_with_the_weighted_average() {
        let mut net = stochastic_net("TEST");
        let be = Cpu;
        let x = distinct_positive(2 * 3 * 7 * 9);
        net.blob_mut("x").unwrap().set_data(&be, &x).unwrap();
        assert!(!net.layers()[1].layer.is_stochastic());
        net.forward().unwrap();
        let y = net.blob("y").unwrap().data_to_vec(&be).unwrap();
        for (o, &v) in y.iter().enumerate() {
            let (plane, ph, pw) = (o / 12, (o % 12) / 4, o % 4);
            let (mut sum, mut squares) = (0.0f64, 0.0f64);
            for h in 2 * ph..(2 * ph + 3).min(7) {
                for w in 2 * pw..(2 * pw + 3).min(9) {
                    let e = x[plane * 63 + h * 9 + w] as f64;
                    sum += e;
                    squares += e * e;
                }
            }
            assert!((v as f64 - squares / sum).abs() < 1e-6, "output {o}: {v}, expected {}", squares / sum);
        }
        // No gradient in TEST, where Caffe's backward reads picks it never drew.
        let e = net.backward().unwrap_err().to_string();
        assert!(e.contains("layer `p` (type Pooling)") && e.contains("no gradient in the TEST phase"), "{e}");
    }

    #[test]
    fn only_max_pooling_has_a_mask_top() {
        assert_eq!(layer("pooling_param { kernel_size: 2 }").unwrap().tops(), Arity::range(1, 2));
        assert_eq!(layer("pooling_param { pool: AVE kernel_size: 2 }").unwrap().tops(), Arity::exactly(1));
    }

    #[test]
    fn output_size_follows_caffe() {
        // Ceil rounding: 7 with kernel 3 stride 2 gives 3 windows; 8 gives ceil(5/2) + 1 = 4.
        assert_eq!(top_shape("pooling_param { kernel_size: 3 stride: 2 }", &[2, 3, 7, 8]).unwrap(), [2, 3, 3, 4]);
        // Floor rounding.
        assert_eq!(top_shape("pooling_param { kernel_size: 3 stride: 2 round_mode: FLOOR }", &[2, 3, 7, 8]).unwrap(), [2, 3, 3, 3]);
        // 2x2 stride 2 on odd sizes rounds up.
        assert_eq!(top_shape("pooling_param { kernel_size: 2 stride: 2 }", &[1, 1, 9, 11]).unwrap(), [1, 1, 5, 6]);
        // With padding, a last window that would start in the padding is dropped:
        // ceil((6 + 2 - 2) / 3) + 1 = 3, but (3 - 1) * 3 = 6 >= 6 + 1 is false: kept; for 5:
        // ceil((5 + 2 - 2) / 4) + 1 = 3 and (3 - 1) * 4 = 8 >= 5 + 1: dropped to 2.
        assert_eq!(top_shape("pooling_param { kernel_size: 2 stride: 3 pad: 1 }", &[1, 1, 6, 6]).unwrap(), [1, 1, 3, 3]);
        assert_eq!(top_shape("pooling_param { kernel_size: 2 stride: 4 pad: 1 }", &[1, 1, 5, 5]).unwrap(), [1, 1, 2, 2]);
        // The padding rule applies to both axes when either is padded: unpadded, width 5 with
        // kernel 1 stride 3 gives 3 windows, the last one past the input (empty).
        assert_eq!(top_shape("pooling_param { kernel_h: 2 kernel_w: 1 stride: 3 }", &[1, 1, 5, 5]).unwrap(), [1, 1, 2, 3]);
        assert_eq!(
            top_shape("pooling_param { kernel_h: 2 kernel_w: 1 stride: 3 pad_h: 1 pad_w: 0 }", &[1, 1, 5, 5]).unwrap(),
            [1, 1, 2, 2]
        );
        // Global pooling takes the kernel from the input, whatever its size.
        assert_eq!(top_shape("pooling_param { global_pooling: true }", &[2, 4, 5, 6]).unwrap(), [2, 4, 1, 1]);
        assert_eq!(top_shape("pooling_param { pool: AVE global_pooling: true }", &[2, 4, 3, 2]).unwrap(), [2, 4, 1, 1]);
        // A kernel larger than the input by less than the stride still gives one window (ceil).
        assert_eq!(top_shape("pooling_param { kernel_size: 3 stride: 2 }", &[1, 1, 2, 2]).unwrap(), [1, 1, 1, 1]);
        // Mask top shaped like the output.
        let mut l = layer("top: \"mask\" pooling_param { kernel_size: 2 }").unwrap();
        let tops = l.reshape(&Cpu, &[&[1, 2, 3, 3]]).unwrap();
        assert_eq!(tops, [[1, 2, 2, 2], [1, 2, 2, 2]]);
    }

    #[test]
    fn bad_shapes_are_shape_errors() {
        assert!(shape_msg(top_shape("pooling_param { kernel_size: 2 }", &[2, 3, 4])).contains("must have 4 axes"));
        assert!(shape_msg(top_shape("pooling_param { kernel_size: 5 }", &[1, 1, 3, 8])).contains("3x8 is too small for kernel 5x5"));
        assert!(shape_msg(top_shape("pooling_param { kernel_size: 3 stride: 2 round_mode: FLOOR }", &[1, 1, 2, 2])).contains("too small"));
        assert!(shape_msg(top_shape("pooling_param { global_pooling: true }", &[1, 1, 4097, 4096])).contains("2^24"));
    }
}
