//! SPP (Caffe's spatial pyramid pooling) against a direct computation of Caffe's formulas
//! (each level's kernel, stride and padding, Caffe's pooling output size, MAX and AVE with
//! Caffe's divisor), finite-difference gradients, shapes, errors, and a change of input size.

mod common;

use common::gradcheck::{check, GradCheck, Input};
use crema::backend::cpu::Cpu;
use crema::net::Net;
use crema::proto::NetParameter;
use crema::rng::Rng;

fn net_text(shape: &[usize], spp_param: &str) -> String {
    let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
    format!(
        "force_backward: true
        layer {{ name: 'x' type: 'Input' top: 'x' input_param {{ shape {{ {dims} }} }} }}
        layer {{ name: 'spp' type: 'SPP' bottom: 'x' top: 'y' spp_param {{ {spp_param} }} }}"
    )
}

fn build(shape: &[usize], spp_param: &str) -> crema::Result<Net<Cpu>> {
    let param: NetParameter = crema::prototxt::parse(&net_text(shape, spp_param), "spp.prototxt")?;
    Net::new(Cpu::new(), &param, 1)
}

/// Caffe's SPP output for `x` (N, C, H, W), computed directly: for each level, pooling with
/// kernel ceil(H / 2^l), stride = kernel, pad ceil((kernel * 2^l - H) / 2), Caffe's output
/// size (ceil, then clipped so the last window starts inside the input or its top/left
/// padding), MAX over the window clipped to the input, AVE over it divided by the window
/// clipped to the padded input; levels flattened per item and concatenated.
fn reference(x: &[f32], shape: &[usize], levels: u32, ave: bool) -> Vec<f32> {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let geometry = |l: u32, size: usize| {
        let bins = 1usize << l;
        let k = size.div_ceil(bins);
        let pad = (k * bins - size).div_ceil(2);
        let mut out = (size + 2 * pad - k).div_ceil(k) + 1;
        if (out - 1) * k >= size + pad {
            out -= 1;
        }
        (k, pad, out)
    };
    let mut per_item: Vec<Vec<f32>> = vec![Vec::new(); n];
    for l in 0..levels {
        let ((kh, ph, oh), (kw, pw, ow)) = (geometry(l, h), geometry(l, w));
        for (i, item) in per_item.iter_mut().enumerate() {
            for ch in 0..c {
                let plane = &x[(i * c + ch) * h * w..][..h * w];
                for py in 0..oh {
                    for px in 0..ow {
                        let (y0, x0) = ((py * kh) as isize - ph as isize, (px * kw) as isize - pw as isize);
                        let (y1, x1) = ((y0 + kh as isize).min((h + ph) as isize), (x0 + kw as isize).min((w + pw) as isize));
                        let size = ((y1 - y0) * (x1 - x0)) as f32;
                        let (ya, yb, xa, xb) = (y0.max(0) as usize, y1.min(h as isize) as usize, x0.max(0) as usize, x1.min(w as isize) as usize);
                        let window = (ya..yb).flat_map(|y| (xa..xb).map(move |xx| plane[y * w + xx]));
                        item.push(if ave { window.sum::<f32>() / size } else { window.fold(f32::NEG_INFINITY, f32::max) });
                    }
                }
            }
        }
    }
    per_item.concat()
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.uniform_range(-1.0, 1.0)).collect()
}

fn forward(net: &mut Net<Cpu>, shape: &[usize], x: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let be = net.backend().clone();
    let b = net.blob_mut("x").unwrap();
    b.reshape(&be, shape).unwrap();
    b.set_data(&be, x).unwrap();
    net.forward().unwrap();
    let y = net.blob("y").unwrap();
    (y.shape().to_vec(), y.data_to_vec(&be).unwrap())
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, e)) in got.iter().zip(want).enumerate() {
        assert!((a - e).abs() <= 1e-6 * (1.0 + e.abs()), "{what}: [{i}] {a} vs {e}");
    }
}

#[test]
fn max_and_average_pyramids_match_caffes_formulas() {
    for (shape, levels) in [([2, 3, 13, 10], 3), ([1, 2, 8, 8], 2), ([2, 1, 5, 7], 2), ([1, 2, 16, 15], 4)] {
        let x = random(shape.iter().product(), 3);
        for ave in [false, true] {
            let param = format!("pyramid_height: {levels} pool: {}", if ave { "AVE" } else { "MAX" });
            let mut net = build(&shape, &param).unwrap_or_else(|e| panic!("{shape:?} {param}: {e}"));
            let (top, y) = forward(&mut net, &shape, &x);
            let bins: usize = (0..levels).map(|l| 1usize << (2 * l)).sum();
            assert_eq!(top, [shape[0], shape[1] * bins], "{shape:?} {param}");
            assert_close(&y, &reference(&x, &shape, levels, ave), &format!("{shape:?} {param}"));
        }
    }
}

#[test]
fn one_level_is_the_pooling_itself() {
    let shape = [2, 3, 6, 5];
    let x = random(60 * 3, 5);
    let mut net = build(&shape, "pyramid_height: 1").unwrap();
    let (top, y) = forward(&mut net, &shape, &x);
    assert_eq!(top, [2, 3, 1, 1]);
    assert_close(&y, &reference(&x, &shape, 1, false), "one level");
}

/// A new spatial size rebuilds the pyramid; a new batch size reuses it.
#[test]
fn the_input_may_change_size_between_passes() {
    let mut net = build(&[1, 2, 8, 8], "pyramid_height: 3").unwrap();
    for shape in [[1, 2, 8, 8], [3, 2, 8, 8], [2, 2, 13, 10], [1, 2, 8, 8]] {
        let x = random(shape.iter().product(), 9);
        let (top, y) = forward(&mut net, &shape, &x);
        assert_eq!(top, [shape[0], 2 * 21]);
        assert_close(&y, &reference(&x, &shape, 3, false), &format!("{shape:?}"));
    }
    net.backward().unwrap();
}

#[test]
fn gradients_match_finite_differences() {
    // Distinct values, far apart against the step: max pooling is differentiable there.
    let shape = [2, 2, 7, 6];
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
    Rng::new(11).shuffle(&mut v);
    check(&net_text(&shape, "pyramid_height: 3"), &[Input::given("x", &shape, v)], &["x"], &GradCheck::default());
    check(&net_text(&shape, "pyramid_height: 2 pool: AVE"), &[Input::uniform("x", &shape, -1.0, 1.0)], &["x"], &GradCheck::default());
}

#[test]
fn bad_parameters_and_inputs_are_errors_naming_the_layer() {
    let cases = [
        ([1, 2, 8, 8].as_slice(), "pyramid_height: 0", "pyramid_height must be positive"),
        (&[1, 2, 8], "pyramid_height: 2", "4 axes"),
        // A level that needs padding cannot pool stochastically, as in Caffe.
        (&[1, 1, 7, 7], "pyramid_height: 2 pool: STOCHASTIC", "padding is implemented only for MAX and AVE"),
        (&[1, 2, 3, 3], "pyramid_height: 3", "pad"),
        (&[1, 2, 0, 4], "pyramid_height: 2", "cannot be zero"),
    ];
    for (shape, param, want) in cases {
        let e = build(shape, param).err().unwrap_or_else(|| panic!("{shape:?} {param} built")).to_string();
        assert!(e.contains("spp") && e.contains(want), "{shape:?} {param}: {e}");
    }
    let e = crema::prototxt::parse::<NetParameter>(
        "layer { name: 'x' type: 'Input' top: 'x' input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
         layer { name: 'spp' type: 'SPP' bottom: 'x' top: 'y' }",
        "spp.prototxt",
    )
    .and_then(|p| Net::new(Cpu::new(), &p, 1))
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("spp_param"), "{e}");
}

/// STOCHASTIC pyramids (levels without padding: sides divisible by 2^(levels - 1)) pick one of
/// each bin's values, drawn per pass, in a TEST net as in a TRAIN one: Caffe builds SPP's
/// poolings with a phase of their own, TRAIN.
#[test]
fn stochastic_pyramids_pick_in_either_phase() {
    let shape = [2, 3, 8, 8];
    let x: Vec<f32> = random(2 * 3 * 64, 13).iter().map(|v| v.abs() + 0.1).collect();
    for phase in ["TRAIN", "TEST"] {
        let text = net_text(&shape, "pyramid_height: 3 pool: STOCHASTIC")
            .replace("force_backward: true", &format!("force_backward: true state {{ phase: {phase} }}"));
        let param: NetParameter = crema::prototxt::parse(&text, "spp.prototxt").unwrap();
        let mut net = Net::new(Cpu::new(), &param, 1).unwrap();
        assert!(net.layers()[1].layer.is_stochastic(), "{phase}");
        let pass = |iter| crema::layers::Pass { iter, sub: 0, per_iter: 1 };
        net.set_pass(pass(0));
        let (top, first) = forward(&mut net, &shape, &x);
        assert_eq!(top, [2, 3 * 21]);
        for (i, v) in first.iter().enumerate() {
            assert!(x.contains(v), "{phase} bin {i}: {v} is none of the input's values");
        }
        net.set_pass(pass(0));
        assert_eq!(forward(&mut net, &shape, &x).1, first, "{phase}: the same pass draws the same picks");
        net.set_pass(pass(1));
        assert_ne!(forward(&mut net, &shape, &x).1, first, "{phase}: another pass draws others");
        net.backward().unwrap();
    }
}
