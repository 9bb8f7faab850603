//! The stored im2col matrix and its adjoint (the Im2col layer's primitives) on the CPU and on
//! CUDA, bit for bit (col2im adds in kernel-tap order on both), and the Im2col and Filter
//! layers in a net: values, gradients and Filter's data-dependent shapes as on the CPU.

use super::*;

fn im2col_specs() -> Vec<(&'static str, ConvSpec)> {
    vec![
        ("2-d 3x3 pad 1", conv_spec(2, 3, 3, 1, &[5, 6], &[3, 3], &[1, 1], &[1, 1], &[1, 1])),
        ("2-d rect, stride, dilation", conv_spec(3, 2, 2, 1, &[7, 9], &[2, 3], &[2, 1], &[0, 2], &[2, 2])),
        ("overlapping stride-1 placements", conv_spec(1, 4, 4, 1, &[6, 6], &[4, 4], &[1, 1], &[2, 2], &[1, 1])),
        ("input smaller than the kernel, padded", conv_spec(2, 1, 1, 1, &[1, 2], &[3, 3], &[1, 2], &[1, 1], &[1, 1])),
        ("1-d", conv_spec(4, 3, 3, 1, &[11], &[3], &[2], &[1], &[1])),
        ("3-d", conv_spec(2, 2, 2, 1, &[4, 3, 5], &[2, 2, 3], &[1, 2, 1], &[1, 0, 1], &[1, 1, 2])),
        ("6-d", conv_spec(1, 2, 2, 1, &[3, 2, 3, 2, 2, 3], &[2, 1, 2, 2, 1, 2], &[1; 6], &[0, 1, 0, 1, 0, 1], &[1; 6])),
        ("no images", conv_spec(0, 3, 3, 1, &[4, 4], &[2, 2], &[1, 1], &[0, 0], &[1, 1])),
    ]
}

#[test]
fn im2col_and_col2im_give_the_cpus_bits() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(61);
    for (name, spec) in im2col_specs() {
        let (x_len, col_len) = spec.im2col_lens().unwrap();
        let x = random(&mut rng, x_len);
        let mut want = vec![f32::NAN; col_len];
        cpu.im2col(&spec, &x, &mut want).unwrap();
        let mut got = up(g, &vec![f32::NAN; col_len]);
        g.im2col(&spec, &up(g, &x), &mut got).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_bits(&format!("im2col {name}"), &down(g, &got), &want);

        let col = random(&mut rng, col_len);
        let mut want = vec![f32::NAN; x_len];
        cpu.col2im(&spec, &col, &mut want).unwrap();
        let mut got = up(g, &vec![f32::NAN; x_len]);
        g.col2im(&spec, &up(g, &col), &mut got).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_bits(&format!("col2im {name}"), &down(g, &got), &want);
    }
}

#[test]
fn im2col_refuses_bad_geometry_and_short_buffers_as_the_cpu_does() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let spec = conv_spec(2, 3, 3, 1, &[5, 6], &[3, 3], &[1, 1], &[1, 1], &[1, 1]);
    let (x_len, col_len) = spec.im2col_lens().unwrap();
    let short = |n: usize| vec![0f32; n - 1];
    let cpu_err = cpu.im2col(&spec, &short(x_len), &mut vec![0.0; col_len]).unwrap_err().to_string();
    let gpu_err = g.im2col(&spec, &up(g, &short(x_len)), &mut g.alloc(col_len).unwrap()).unwrap_err().to_string();
    assert_eq!(gpu_err, cpu_err);
    let cpu_err = cpu.col2im(&spec, &vec![0.0; col_len], &mut short(x_len)).unwrap_err().to_string();
    let gpu_err = g.col2im(&spec, &g.alloc(col_len).unwrap(), &mut up(g, &short(x_len))).unwrap_err().to_string();
    assert_eq!(gpu_err, cpu_err);
    // An output extent that does not follow from the rest.
    let bad = ConvSpec { out_shape: vec![5, 7], ..spec.clone() };
    let cpu_err = cpu.im2col(&bad, &vec![0.0; x_len], &mut vec![0.0; 2 * col_len]).unwrap_err().to_string();
    let gpu_err = g.im2col(&bad, &g.alloc(x_len).unwrap(), &mut g.alloc(2 * col_len).unwrap()).unwrap_err().to_string();
    assert_eq!(gpu_err, cpu_err);
    assert!(cpu_err.contains("output extent of axis 1"), "{cpu_err}");
    // Seven spatial axes: the CPU takes them, the CUDA kernels stop at six.
    let seven = conv_spec(1, 1, 1, 1, &[2; 7], &[1; 7], &[1; 7], &[0; 7], &[1; 7]);
    let e = g.im2col(&seven, &g.alloc(128).unwrap(), &mut g.alloc(128).unwrap()).unwrap_err().to_string();
    assert!(e.contains("at most 6 spatial axes"), "{e}");
    cpu.im2col(&seven, &vec![1.0; 128], &mut vec![0.0; 128]).unwrap();
}

/// A blob's shape, values and diff.
type BlobState = (Vec<usize>, Vec<f32>, Vec<f32>);

/// Runs a net with Filter and Im2col layers forward and backward on `be` for each selector in
/// `selectors`: per pass, the state of each blob.
fn filter_im2col_passes<B: crema::backend::Backend>(be: B, selectors: &[[f32; 4]]) -> Vec<Vec<BlobState>> {
    let text = r#"
        force_backward: true
        layer { name: "in" type: "Input" top: "x" top: "v" top: "s"
                input_param { shape { dim: 4 dim: 2 dim: 5 dim: 6 } shape { dim: 4 dim: 3 } shape { dim: 4 dim: 1 } } }
        layer { name: "filter" type: "Filter" bottom: "x" bottom: "v" bottom: "s" top: "fx" top: "fv" }
        layer { name: "cols" type: "Im2col" bottom: "fx" top: "c"
                convolution_param { kernel_h: 3 kernel_w: 2 pad: 1 stride_h: 1 stride_w: 2 dilation: 2 } }
        layer { name: "lc" type: "Reduction" bottom: "c" top: "lc" reduction_param { operation: SUMSQ } loss_weight: 0.5 }
        layer { name: "lv" type: "Reduction" bottom: "fv" top: "lv" reduction_param { operation: SUMSQ } loss_weight: 1 }
    "#;
    let param: crema::proto::NetParameter = crema::prototxt::parse(text, "filter_im2col.prototxt").unwrap();
    let mut net = crema::net::Net::new(be.clone(), &param, 1).unwrap();
    let mut rng = Rng::new(62);
    let (x, v) = (random(&mut rng, 4 * 2 * 5 * 6), random(&mut rng, 12));
    net.blob_mut("x").unwrap().set_data(&be, &x).unwrap();
    net.blob_mut("v").unwrap().set_data(&be, &v).unwrap();
    let mut passes = Vec::new();
    for s in selectors {
        net.blob_mut("s").unwrap().set_data(&be, s).unwrap();
        net.forward().unwrap();
        net.backward().unwrap();
        let blobs = ["x", "v", "fx", "fv", "c", "lc", "lv"]
            .iter()
            .map(|name| {
                let b = net.blob(name).unwrap();
                (b.shape().to_vec(), b.data_to_vec(&be).unwrap(), b.diff_to_vec(&be).unwrap())
            })
            .collect();
        passes.push(blobs);
    }
    passes
}

#[test]
fn filter_and_im2col_layers_match_the_cpu() {
    let Some(g) = gpu() else { return };
    let selectors = [[1.0, 0.0, 2.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [1.0; 4]];
    let want = filter_im2col_passes(Cpu::new(), &selectors);
    let got = filter_im2col_passes(g.clone(), &selectors);
    let names = ["x", "v", "fx", "fv", "c", "lc", "lv"];
    for (p, (gp, wp)) in got.iter().zip(&want).enumerate() {
        for (k, ((gs, gd, gdiff), (ws, wd, wdiff))) in gp.iter().zip(wp).enumerate() {
            assert_eq!(gs, ws, "pass {p}: shape of {}", names[k]);
            if k >= 5 {
                // The losses: sums of squares, within rounding.
                assert_close(&format!("pass {p}: {} data", names[k]), gd, wd, None, 1e-5);
            } else {
                assert_bits(&format!("pass {p}: {} data", names[k]), gd, wd);
            }
            assert_bits(&format!("pass {p}: {} diff", names[k]), gdiff, wdiff);
        }
    }
    // The kept counts: 3, none, 1, all.
    let kept: Vec<usize> = want.iter().map(|pass| pass[2].0[0]).collect();
    assert_eq!(kept, [3, 0, 1, 4]);
}
