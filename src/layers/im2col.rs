//! Im2col: the im2col matrix of a convolution, stored as the top (Caffe's Im2colLayer). A
//! bottom `(N..., C, spatial...)` (channels on `convolution_param.axis`, one or more spatial
//! axes after it) gives `(N..., C * kernel_len, out...)`: row `c * kernel_len + k` holds, at
//! each output position, the input value kernel tap `k` of channel `c` meets there (zero in the
//! padding), `out` as Convolution computes it. Backward is col2im: overlapping placements add.
//!
//! The kernel, stride, pad, dilation and axis are `convolution_param`'s, parsed as Convolution
//! parses them; `num_output`, `group`, `bias_term`, the fillers and `force_nd_im2col` change
//! nothing (Caffe's 2-d and N-d im2col give the same layout).

use super::conv::ConvGeometry;
use super::{Arity, Ctx, Layer, LayerContext, ParamDef};
use crate::backend::{Backend, ConvSpec};
use crate::blob::{checked_count, count_range};
use crate::proto::{ConvolutionParameter, LayerParameter};
use crate::{Error, Result};

struct Im2col {
    param: ConvolutionParameter,
    geom: ConvGeometry,
    spec: Option<ConvSpec>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let param = super::required(&lp.convolution_param, "convolution_param")?.clone();
    Ok(Box::new(Im2col {
        param,
        geom: ConvGeometry::default(),
        spec: None,
    }))
}

impl<B: Backend> Layer<B> for Im2col {
    fn type_name(&self) -> &'static str {
        "Im2col"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    /// col2im needs only the top's diff.
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        false
    }
    fn backward_reads_top(&self, _top: usize) -> bool {
        false
    }

    fn setup(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<ParamDef>> {
        self.geom = ConvGeometry::read(&self.param, bottoms[0], true)?;
        Ok(Vec::new())
    }

    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        let input = self.geom.spatial(shape)?;
        let output = self.geom.output(input, false)?;
        let ca = self.geom.channel_axis;
        let channels = shape[ca];
        let kernel_len = self.geom.kernel.iter().try_fold(1usize, |acc, &k| acc.checked_mul(k));
        let rows = kernel_len
            .and_then(|k| k.checked_mul(channels))
            .ok_or_else(|| Error::Shape(format!("{channels} channels times a kernel of {:?} overflow", self.geom.kernel)))?;
        let mut top = shape[..ca].to_vec();
        top.push(rows);
        top.extend(&output);
        checked_count(&top)?;
        self.spec = Some(self.geom.spec(count_range(shape, 0, ca), (channels, channels), 1, input.to_vec(), output));
        Ok(vec![top])
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let spec = self.spec.as_ref().ok_or_else(|| Error::Internal("forward before reshape".into()))?;
        let mut parts = ctx.parts()?;
        be.im2col(spec, &parts.bottoms[0].data, &mut parts.tops[0].data)
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let spec = self.spec.as_ref().ok_or_else(|| Error::Internal("backward before reshape".into()))?;
        let mut parts = ctx.parts_back()?;
        be.col2im(spec, &parts.tops[0].diff, &mut parts.bottoms[0].diff)
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, forwarded, input, net, on_input};

    fn im2col(shape: &[usize], param: &str) -> String {
        format!("force_backward: true {}", on_input(shape, "Im2col", "convolution_param", param))
    }

    /// Runs `body` forward from `x` and backward from a top diff `dy`: the top's shape and
    /// values, and the bottom's diff.
    fn run(body: &str, x: &[f32], dy: &[f32]) -> (Vec<usize>, Vec<f32>, Vec<f32>) {
        let mut net = forwarded(body, &[("x", x)]);
        let be = net.backend().clone();
        let y = net.blob("y").unwrap();
        let (shape, values) = (y.shape().to_vec(), y.data_to_vec(&be).unwrap());
        net.blob_mut("y").unwrap().set_diff(&be, dy).unwrap();
        net.backward().unwrap();
        (shape, values, net.blob("x").unwrap().diff_to_vec(&be).unwrap())
    }

    fn iota(n: usize) -> Vec<f32> {
        (1..=n).map(|v| v as f32).collect()
    }

    #[test]
    fn im2col_of_a_3x3_image_and_its_overlapping_col2im() {
        let (shape, y, dx) = run(&im2col(&[1, 1, 3, 3], "kernel_size: 2"), &iota(9), &[1.0; 16]);
        assert_eq!(shape, [1, 4, 2, 2]);
        // Rows are kernel taps (0,0), (0,1), (1,0), (1,1); columns the four placements.
        assert_eq!(y, [1.0, 2.0, 4.0, 5.0, 2.0, 3.0, 5.0, 6.0, 4.0, 5.0, 7.0, 8.0, 5.0, 6.0, 8.0, 9.0]);
        // Each input gets one per placement covering it.
        assert_eq!(dx, [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
    }

    #[test]
    fn im2col_with_rectangular_kernel_padding_and_stride() {
        let param = "kernel_h: 2 kernel_w: 2 pad_h: 0 pad_w: 1 stride_h: 1 stride_w: 2";
        let (shape, y, dx) = run(&im2col(&[1, 1, 2, 3], param), &iota(6), &iota(8));
        assert_eq!(shape, [1, 4, 1, 2]);
        assert_eq!(y, [0.0, 2.0, 1.0, 3.0, 0.0, 5.0, 4.0, 6.0]);
        assert_eq!(dx, [3.0, 2.0, 4.0, 7.0, 6.0, 8.0]);
    }

    #[test]
    fn im2col_with_dilation_and_two_images_of_two_channels() {
        // Per image: channel 0 is 1..5, channel 1 is 6..10 (a 1x5 row each).
        let param = "kernel_h: 1 kernel_w: 2 dilation: 2";
        let (shape, y, dx) = run(&im2col(&[2, 2, 1, 5], param), &iota(20), &[1.0; 24]);
        assert_eq!(shape, [2, 4, 1, 3]);
        let want: Vec<f32> = [[1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 8.0, 9.0, 10.0]]
            .iter()
            .flat_map(|img| img.iter().copied().chain(img.iter().map(|v| v + 10.0)))
            .collect();
        assert_eq!(y, want);
        assert_eq!(dx, [1.0, 1.0, 2.0, 1.0, 1.0].repeat(4));
    }

    /// A naive N-d im2col: the value kernel tap `k` of channel `c` meets at output `o`.
    fn naive(shape: &[usize], ca: usize, kernel: &[usize], stride: &[usize], pad: &[usize], dil: &[usize], x: &[f32]) -> (Vec<usize>, Vec<f32>) {
        let sp = &shape[ca + 1..];
        let out: Vec<usize> = (0..sp.len()).map(|a| (sp[a] + 2 * pad[a] - (dil[a] * (kernel[a] - 1) + 1)) / stride[a] + 1).collect();
        let (num, c) = (shape[..ca].iter().product::<usize>(), shape[ca]);
        let (isp, osp, kl) = (sp.iter().product::<usize>(), out.iter().product::<usize>(), kernel.iter().product::<usize>());
        let unravel = |mut i: usize, dims: &[usize]| {
            let mut v = vec![0; dims.len()];
            for a in (0..dims.len()).rev() {
                v[a] = i % dims[a];
                i /= dims[a];
            }
            v
        };
        let mut y = Vec::new();
        for n in 0..num {
            for ch in 0..c {
                for k in 0..kl {
                    let kk = unravel(k, kernel);
                    for o in 0..osp {
                        let oo = unravel(o, &out);
                        let mut idx = Some(0usize);
                        for a in 0..sp.len() {
                            let p = (oo[a] * stride[a] + kk[a] * dil[a]) as isize - pad[a] as isize;
                            idx = idx.filter(|_| p >= 0 && (p as usize) < sp[a]).map(|i| i * sp[a] + p as usize);
                        }
                        y.push(idx.map_or(0.0, |i| x[(n * c + ch) * isp + i]));
                    }
                }
            }
        }
        let mut top = shape[..ca].to_vec();
        top.push(c * kl);
        top.extend(out);
        (top, y)
    }

    #[test]
    fn im2col_matches_a_naive_reference_in_1d_3d_and_on_other_axes() {
        // Bottom shape, parameters, channel axis, then kernel, stride, pad, dilation per axis.
        type Case<'a> = (&'a [usize], &'a str, usize, &'a [usize], &'a [usize], &'a [usize], &'a [usize]);
        let cases: [Case; 4] = [
            (&[2, 3, 5], "kernel_size: 2", 1, &[2], &[1], &[0], &[1]),
            (
                &[2, 2, 3, 4, 3],
                "kernel_size: 2 kernel_size: 3 kernel_size: 2 stride: 2 stride: 1 stride: 1 pad: 1 pad: 0 pad: 1 dilation: 1 dilation: 1 dilation: 2 force_nd_im2col: true",
                1,
                &[2, 3, 2],
                &[2, 1, 1],
                &[1, 0, 1],
                &[1, 1, 2],
            ),
            (&[2, 3, 1, 4, 4], "axis: 2 kernel_size: 3 pad: 1 stride: 2", 2, &[3, 3], &[2, 2], &[1, 1], &[1, 1]),
            (&[3, 5, 4], "axis: -3 kernel_size: 2 stride: 3", 0, &[2, 2], &[3, 3], &[0, 0], &[1, 1]),
        ];
        for (shape, param, ca, kernel, stride, pad, dil) in cases {
            let count: usize = shape.iter().product();
            let x: Vec<f32> = (0..count).map(|i| (i * 7 % 11) as f32 - 5.0).collect();
            let (want_shape, want) = naive(shape, ca, kernel, stride, pad, dil, &x);
            let net = forwarded(&im2col(shape, param), &[("x", &x)]);
            let y = net.blob("y").unwrap();
            assert_eq!(y.shape(), want_shape, "{param}");
            assert_eq!(y.data_to_vec(net.backend()).unwrap(), want, "{param}");
        }
    }

    #[test]
    fn im2col_errors() {
        let shape = [1, 2, 4, 4];
        let err = |param: &str| build_error(&im2col(&shape, param));
        assert_contains(&err("kernel_size: 2 stride: 0"), "kernel, stride and dilation must be positive");
        assert_contains(&err("kernel_size: 0"), "kernel, stride and dilation must be positive");
        assert_contains(&err("pad: 1"), "`kernel_size` is required");
        assert_contains(&err("kernel_h: 2"), "kernel_h and kernel_w must be given together");
        assert_contains(&err("kernel_size: 2 kernel_h: 2 kernel_w: 2"), "give either kernel_size or kernel_h/kernel_w, not both");
        assert_contains(&err("kernel_size: 2 kernel_size: 2 kernel_size: 2"), "`kernel_size` is given 3 times for 2 spatial axes");
        assert_contains(&err("kernel_size: 6"), "layer `l` (type Im2col): spatial axis 0 of size 4 is too small for kernel 6");
        assert_contains(&err("kernel_size: 2 axis: 3"), "needs at least one spatial axis after the channel axis 3, given a bottom of shape [1, 2, 4, 4]");
        assert_contains(&err("kernel_size: 2 axis: 4"), "axis 4 out of range for a blob of 4 axes");
        assert_contains(
            &build_error(&im2col(&[1, 2, 3, 4, 4], "kernel_h: 2 kernel_w: 2")),
            "kernel_h and kernel_w can only be used for 2-d convolution",
        );
        let no_param = format!(r#"{} layer {{ name: "l" type: "Im2col" bottom: "x" top: "y" }}"#, input("x", &shape));
        assert_contains(&build_error(&no_param), "missing `convolution_param`");
        // A bottom reshaped after the net was built.
        let mut n = net(&im2col(&shape, "kernel_size: 3")).unwrap();
        let be = n.backend().clone();
        n.blob_mut("x").unwrap().reshape(&be, &[1, 2, 2, 4]).unwrap();
        assert_contains(&n.forward().unwrap_err().to_string(), "spatial axis 0 of size 2 is too small for kernel 3");
        n.blob_mut("x").unwrap().reshape(&be, &[2, 4, 4]).unwrap();
        assert_contains(&n.forward().unwrap_err().to_string(), "bottom has 3 axes, the layer was set up for 4");
    }
}
