//! Every convolution path against a naive float64 convolution: forward, backward-data (the
//! naive adjoint) and backward-filter (with its accumulation), on small random geometries.

use super::conv::{applicable, backward_data, backward_filter, forward, Op, Path};
use super::isa::Isa;
use crate::backend::ConvSpec;

pub(crate) fn rand_vec(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A spec with output shape computed the way Caffe does.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spec(num: usize, c: usize, k: usize, group: usize, in_shape: &[usize], kernel: &[usize], stride: &[usize], pad: &[usize], dilation: &[usize]) -> ConvSpec {
    let out_shape = (0..in_shape.len())
        .map(|a| ConvSpec::output_extent(in_shape[a], kernel[a], stride[a], pad[a], dilation[a]).unwrap())
        .collect();
    ConvSpec {
        num,
        channels: c,
        out_channels: k,
        group,
        in_shape: in_shape.to_vec(),
        out_shape,
        kernel: kernel.to_vec(),
        stride: stride.to_vec(),
        pad: pad.to_vec(),
        dilation: dilation.to_vec(),
    }
}

/// Naive float64 forward, backward-data and backward-filter (without accumulation).
pub(crate) fn naive(s: &ConvSpec, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let nd = s.kernel.len();
    let (cg, mg) = (s.channels / s.group, s.out_channels / s.group);
    let (isp, osp, kl) = (s.in_spatial(), s.out_spatial(), s.kernel_len());
    let mut y = vec![0.0f64; s.num * s.out_image_len()];
    let mut dx = vec![0.0f64; s.num * s.in_image_len()];
    let mut dw = vec![0.0f64; s.weight_len()];
    let (mut oi, mut ki) = (vec![0; nd], vec![0; nd]);
    for o in 0..osp {
        super::im2col::unravel(o, &s.out_shape, &mut oi);
        for kk in 0..kl {
            super::im2col::unravel(kk, &s.kernel, &mut ki);
            let mut idx = Some(0usize);
            for a in 0..nd {
                let p = (oi[a] * s.stride[a] + ki[a] * s.dilation[a]) as isize - s.pad[a] as isize;
                if p < 0 || p >= s.in_shape[a] as isize {
                    idx = None;
                    break;
                }
                idx = idx.map(|i| i * s.in_shape[a] + p as usize);
            }
            let Some(i) = idx else { continue };
            for n in 0..s.num {
                for g in 0..s.group {
                    for m in 0..mg {
                        let k = g * mg + m;
                        let yi = (n * s.out_channels + k) * osp + o;
                        for cc in 0..cg {
                            let c = g * cg + cc;
                            let xi = (n * s.channels + c) * isp + i;
                            let wi = (k * cg + cc) * kl + kk;
                            y[yi] += w[wi] as f64 * x[xi] as f64;
                            dx[xi] += w[wi] as f64 * dy[yi] as f64;
                            dw[wi] += dy[yi] as f64 * x[xi] as f64;
                        }
                    }
                }
            }
        }
    }
    (y, dx, dw)
}

/// Checks `got` against `want`: `|g - w| <= abs + 1e-4 |w|`, where `abs` is Caffe's
/// conformance `1e-5`, or for a path that rounds more (Winograd) `norm_rel · max |w|`.
pub(crate) fn close(what: &str, got: &[f32], want: &[f64], norm_rel: Option<f64>) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let max = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let abs = norm_rel.map_or(1e-5, |r| r * max.max(1e-3));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = abs + 1e-4 * w.abs();
        assert!(((g as f64) - w).abs() <= tol, "{what}[{i}]: {g} vs {w} (max |want| {max})");
    }
}

/// Runs every applicable path (and every ISA) of every primitive on `s` against the naive
/// convolution.
pub(crate) fn check_spec(s: &ConvSpec, seed: u64) {
    let x = rand_vec(seed, s.num * s.in_image_len());
    let w = rand_vec(seed + 1, s.weight_len());
    let dy = rand_vec(seed + 2, s.num * s.out_image_len());
    let dw0 = rand_vec(seed + 3, s.weight_len());
    let (y_ref, dx_ref, dw_ref) = naive(s, &x, &w, &dy);
    let dw_acc: Vec<f64> = dw_ref.iter().zip(&dw0).map(|(a, b)| a + *b as f64).collect();
    for isa in Isa::all_available() {
        for path in applicable(s, Op::Forward) {
            let mut y = vec![f32::NAN; y_ref.len()];
            forward(isa, path, s, &x, &w, &mut y);
            close(&format!("forward {path:?} {isa:?} {s:?}"), &y, &y_ref, tolerance(path));
        }
        for path in applicable(s, Op::BackwardData) {
            let mut dx = vec![f32::NAN; dx_ref.len()];
            backward_data(isa, path, s, &dy, &w, &mut dx);
            close(&format!("backward-data {path:?} {isa:?} {s:?}"), &dx, &dx_ref, tolerance(path));
        }
        for path in applicable(s, Op::BackwardFilter) {
            let mut dw = dw0.clone();
            backward_filter(isa, path, s, &x, &dy, &mut dw);
            close(&format!("backward-filter {path:?} {isa:?} {s:?}"), &dw, &dw_acc, tolerance(path));
        }
    }
}

/// The norm-relative tolerance of a path, if it needs one (Winograd's transforms round more
/// than a direct sum; the SegNet-shape errors are measured in the benchmark).
fn tolerance(path: Path) -> Option<f64> {
    match path {
        Path::Gemm | Path::Direct => None,
        Path::Winograd => Some(2e-5),
    }
}

#[test]
fn two_d_geometries() {
    type Case = (usize, usize, usize, usize, [usize; 2], [usize; 2], [usize; 2], [usize; 2], [usize; 2]);
    let cases: &[Case] = &[
        // num, c, k, group, in, kernel, stride, pad, dilation
        (1, 3, 5, 1, [7, 9], [3, 3], [1, 1], [1, 1], [1, 1]),
        (2, 4, 6, 2, [8, 7], [3, 2], [2, 1], [1, 0], [1, 1]),
        (1, 6, 3, 3, [9, 10], [2, 3], [1, 2], [0, 2], [2, 1]),
        (3, 2, 4, 1, [5, 5], [1, 1], [1, 1], [0, 0], [1, 1]),
        (1, 5, 7, 1, [6, 11], [5, 3], [3, 2], [2, 1], [1, 2]),
        (2, 8, 8, 4, [12, 5], [3, 3], [1, 1], [2, 2], [1, 1]),
        (1, 1, 16, 1, [20, 37], [3, 3], [1, 1], [1, 1], [1, 1]),
        (1, 16, 2, 1, [19, 33], [3, 3], [1, 1], [1, 1], [1, 1]),
        (1, 3, 4, 1, [4, 4], [3, 3], [1, 1], [3, 0], [1, 1]),
        // 3x3 stride 1: the Winograd path, with ragged tile rows, pads 0..2, groups, batches.
        (3, 5, 7, 1, [13, 22], [3, 3], [1, 1], [1, 1], [1, 1]),
        (2, 6, 4, 2, [9, 41], [3, 3], [1, 1], [0, 2], [1, 1]),
        (1, 17, 30, 1, [35, 70], [3, 3], [1, 1], [1, 1], [1, 1]),
        (5, 3, 3, 1, [3, 3], [3, 3], [1, 1], [1, 1], [1, 1]),
        (1, 2, 3, 1, [6, 130], [3, 3], [1, 1], [2, 1], [1, 1]),
        // Stride 1, other kernels: the direct path (more than 9 taps: two tap chunks).
        (2, 3, 5, 1, [9, 13], [2, 5], [1, 1], [1, 2], [1, 1]),
        (1, 2, 3, 1, [7, 40], [3, 4], [1, 1], [0, 1], [1, 1]),
    ];
    for (i, &(n, c, k, g, is, ks, st, pd, dl)) in cases.iter().enumerate() {
        check_spec(&spec(n, c, k, g, &is, &ks, &st, &pd, &dl), 100 + 10 * i as u64);
    }
}

#[test]
fn one_d_and_three_d_geometries() {
    check_spec(&spec(2, 3, 4, 1, &[17], &[3], &[1], &[1], &[1]), 1);
    check_spec(&spec(1, 4, 4, 2, &[20], &[5], &[3], &[2], &[2]), 2);
    check_spec(&spec(2, 2, 3, 1, &[4, 5, 6], &[3, 3, 3], &[1, 1, 1], &[1, 1, 1], &[1, 1, 1]), 3);
    check_spec(&spec(1, 4, 2, 2, &[5, 4, 7], &[2, 1, 3], &[2, 1, 2], &[0, 1, 1], &[1, 2, 1]), 4);
}

#[test]
fn larger_products_split_across_threads() {
    // Big enough that the GEMMs block over K and split between threads.
    check_spec(&spec(1, 40, 48, 1, &[24, 40], &[3, 3], &[1, 1], &[1, 1], &[1, 1]), 9);
}

#[test]
fn same_bits_twice() {
    let s = spec(2, 24, 40, 1, &[20, 36], &[3, 3], &[1, 1], &[1, 1], &[1, 1]);
    let x = rand_vec(1, s.num * s.in_image_len());
    let w = rand_vec(2, s.weight_len());
    let dy = rand_vec(3, s.num * s.out_image_len());
    let isa = Isa::detect();
    let run = || {
        let mut y = vec![0.0; dy.len()];
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.5; w.len()];
        for p in applicable(&s, Op::Forward) {
            forward(isa, p, &s, &x, &w, &mut y);
        }
        for p in applicable(&s, Op::BackwardData) {
            backward_data(isa, p, &s, &dy, &w, &mut dx);
        }
        for p in applicable(&s, Op::BackwardFilter) {
            backward_filter(isa, p, &s, &x, &dy, &mut dw);
        }
        (y, dx, dw)
    };
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let (a, b) = (run(), run());
    assert_eq!(bits(&a.0), bits(&b.0));
    assert_eq!(bits(&a.1), bits(&b.1));
    assert_eq!(bits(&a.2), bits(&b.2));
}

/// The Winograd paths with scratch budgets so small (or large) that every blocking case
/// runs: shared V with output-channel units, shared U in several blocks; backward-filter
/// with all tiles at once, or with several tile blocks and output-channel ranges.
#[test]
fn winograd_blocking_cases() {
    use super::conv_winograd::{forward_with, Budgets, Problem, Weights};
    use super::conv_winograd_filter::backward_filter_with;
    let tiny = Budgets { shared: 40 << 10, unit: 8 << 10, m: 4 << 10, du: 20 << 10, zv: 16 << 10, zv_all: 0 };
    let huge = Budgets { shared: 1 << 30, unit: 1 << 30, m: 1 << 30, du: 1 << 30, zv: 1 << 30, zv_all: 1 << 30 };
    // (num, c, k, h, w): few tiles + many channels, many tiles + few channels, both.
    for (i, &(num, c, k, h, w)) in [(1, 40, 45, 8, 12), (2, 5, 6, 30, 70), (2, 20, 33, 17, 35)].iter().enumerate() {
        let s = spec(num, c, k, 1, &[h, w], &[3, 3], &[1, 1], &[1, 1], &[1, 1]);
        let seed = 500 + 10 * i as u64;
        let x = rand_vec(seed, s.num * s.in_image_len());
        let wv = rand_vec(seed + 1, s.weight_len());
        let dy = rand_vec(seed + 2, s.num * s.out_image_len());
        let (y_ref, _, dw_ref) = naive(&s, &x, &wv, &dy);
        let p = Problem { num, c, k, h, w, oh: h, ow: w, ph: 1, pw: 1, x_img: s.in_image_len(), y_img: s.out_image_len() };
        for isa in Isa::all_available() {
            for b in [tiny, huge] {
                let mut y = vec![f32::NAN; y_ref.len()];
                forward_with(isa, &p, &x, &Weights { w: &wv, ks: c * 9, cs: 9, flip: false }, &mut y, &b);
                close(&format!("winograd forward {isa:?} {b:?} {s:?}"), &y, &y_ref, Some(2e-5));
                let mut dw = vec![0.0; wv.len()];
                backward_filter_with(isa, &p, &x, &dy, &mut dw, c * 9, 9, &b);
                close(&format!("winograd backward-filter {isa:?} {b:?} {s:?}"), &dw, &dw_ref, Some(2e-5));
            }
        }
    }
}

/// The same bits whatever the thread count, for every path (each sum has one fixed order).
#[test]
fn same_bits_for_any_thread_count() {
    let s = spec(2, 20, 24, 1, &[18, 40], &[3, 3], &[1, 1], &[1, 1], &[1, 1]);
    let x = rand_vec(11, s.num * s.in_image_len());
    let w = rand_vec(12, s.weight_len());
    let dy = rand_vec(13, s.num * s.out_image_len());
    let isa = Isa::detect();
    let run = || {
        let mut out = Vec::new();
        for p in applicable(&s, Op::Forward) {
            let mut y = vec![0.0; dy.len()];
            forward(isa, p, &s, &x, &w, &mut y);
            out.push(y);
        }
        for p in applicable(&s, Op::BackwardData) {
            let mut dx = vec![0.0; x.len()];
            backward_data(isa, p, &s, &dy, &w, &mut dx);
            out.push(dx);
        }
        for p in applicable(&s, Op::BackwardFilter) {
            let mut dw = vec![0.25; w.len()];
            backward_filter(isa, p, &s, &x, &dy, &mut dw);
            out.push(dw);
        }
        out.into_iter().flatten().map(f32::to_bits).collect::<Vec<_>>()
    };
    let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
    let one = pool(1).install(run);
    assert_eq!(one, pool(2).install(run));
    assert_eq!(one, pool(3).install(run));
}

#[test]
fn bias_forward_adds_and_bias_backward_accumulates() {
    use crate::backend::cpu::Cpu;
    use crate::backend::Convolution;
    let (num, ch, sp) = (3, 5, 7);
    let bias = rand_vec(1, ch);
    let y0 = rand_vec(2, num * ch * sp);
    let mut y = y0.clone();
    Cpu::new().bias_forward(num, ch, sp, &bias, &mut y).unwrap();
    for (i, (a, b)) in y.iter().zip(&y0).enumerate() {
        assert_eq!(*a, b + bias[(i / sp) % ch]);
    }
    let dy = rand_vec(3, num * ch * sp);
    let mut db = vec![1.0f32; ch];
    Cpu::new().bias_backward(num, ch, sp, &dy, &mut db).unwrap();
    for c in 0..ch {
        let want: f64 = 1.0 + (0..num).flat_map(|n| (0..sp).map(move |s| (n, s))).map(|(n, s)| dy[(n * ch + c) * sp + s] as f64).sum::<f64>();
        assert!((db[c] as f64 - want).abs() < 1e-5, "{c}: {} vs {want}", db[c]);
    }
}
