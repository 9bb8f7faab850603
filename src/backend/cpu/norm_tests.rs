//! The CPU normalisation primitives against naive f64 loops, in place and not, with one thread
//! and several (the bits must agree).

use super::Cpu;
use crate::backend::{Activation, Activations, ChannelDims, EpsPlacement, Io, LrnSpec, NormAffine, NormGrad, Normalization};
use crate::rng::Rng;

fn random(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.uniform_range(lo, hi)).collect()
}

fn close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g as f64 - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: {g} vs {w}");
    }
}

fn at(d: ChannelDims, o: usize, c: usize, i: usize) -> usize {
    (o * d.channels + c) * d.inner + i
}

/// Naive per-channel mean and biased variance.
fn naive_moments(x: &[f32], d: ChannelDims) -> (Vec<f64>, Vec<f64>) {
    let m = d.per_channel() as f64;
    let mut mean = vec![0.0; d.channels];
    let mut var = vec![0.0; d.channels];
    for c in 0..d.channels {
        for o in 0..d.outer {
            for i in 0..d.inner {
                mean[c] += x[at(d, o, c, i)] as f64 / m;
            }
        }
        for o in 0..d.outer {
            for i in 0..d.inner {
                var[c] += (x[at(d, o, c, i)] as f64 - mean[c]).powi(2) / m;
            }
        }
    }
    (mean, var)
}

const DIMS: [ChannelDims; 4] = [
    ChannelDims { outer: 3, channels: 4, inner: 21 },
    ChannelDims { outer: 5, channels: 3, inner: 1 },
    ChannelDims { outer: 1, channels: 2, inner: 37 },
    ChannelDims { outer: 2, channels: 1, inner: 40_000 },
];

#[test]
fn moments_match_naive_even_far_from_zero() {
    let be = Cpu::new();
    for (k, d) in DIMS.iter().enumerate() {
        for offset in [0.0, 1e4] {
            let x: Vec<f32> = random(d.count(), -1.0, 1.0, k as u64).iter().map(|v| v + offset).collect();
            let (mut mean, mut var) = (vec![0.0; d.channels], vec![0.0; d.channels]);
            be.channel_moments(*d, &x, &mut mean, &mut var).unwrap();
            let (m, v) = naive_moments(&x, *d);
            close("mean", &mean, &m, 1e-6);
            close("var", &var, &v, 1e-5);
        }
    }
}

#[test]
fn norm_batch_matches_naive_in_place_and_not() {
    let be = Cpu::new();
    for (k, d) in DIMS.iter().enumerate() {
        let x = random(d.count(), -3.0, 2.0, 10 + k as u64);
        let (scale, shift) = (random(d.channels, 0.5, 2.0, 1), random(d.channels, -1.0, 1.0, 2));
        for (placement, eps) in [(EpsPlacement::InsideSqrt, 1e-3f32), (EpsPlacement::OutsideSqrt, 1e-2)] {
            for affine in [false, true] {
                let (m, v) = naive_moments(&x, *d);
                let sd: Vec<f64> = v
                    .iter()
                    .map(|&v| match placement {
                        EpsPlacement::InsideSqrt => (v + eps as f64).sqrt(),
                        EpsPlacement::OutsideSqrt => v.sqrt() + eps as f64,
                    })
                    .collect();
                let mut xhat = vec![0.0; d.count()];
                let mut want = vec![0.0; d.count()];
                for o in 0..d.outer {
                    for c in 0..d.channels {
                        for i in 0..d.inner {
                            let j = at(*d, o, c, i);
                            xhat[j] = (x[j] as f64 - m[c]) / sd[c];
                            want[j] = if affine { xhat[j] * scale[c] as f64 + shift[c] as f64 } else { xhat[j] };
                        }
                    }
                }
                let run = |in_place: bool, with_xn: bool| {
                    let (mut mean, mut var, mut std) =
                        (vec![0.0; d.channels], vec![0.0; d.channels], vec![0.0; d.channels]);
                    let mut xn = vec![0.0; d.count()];
                    let mut y = if in_place { x.clone() } else { vec![0.0; d.count()] };
                    let io = if in_place { Io::InPlace(&mut y) } else { Io::Pair(&x, &mut y) };
                    be.channel_norm_batch(
                        *d,
                        io,
                        eps,
                        placement,
                        &mut mean,
                        &mut var,
                        &mut std,
                        affine.then_some(NormAffine::new(&scale, &shift)),
                        with_xn.then_some(&mut xn),
                    )
                    .unwrap();
                    close("norm mean", &mean, &m, 1e-6);
                    close("norm var", &var, &v, 1e-5);
                    close("norm std", &std, &sd, 1e-5);
                    if with_xn {
                        close("x_norm", &xn, &xhat, 1e-5);
                    }
                    y
                };
                let y = run(false, true);
                close("y", &y, &want, 1e-5);
                assert_eq!(y, run(true, true), "in place differs");
                assert_eq!(y, run(true, false), "without x_norm differs");
                assert_eq!(y, run(false, false), "without x_norm differs");
            }
        }
    }
}

#[test]
fn normalize_and_std_with_given_statistics() {
    let be = Cpu::new();
    let d = ChannelDims::new(2, 3, 5);
    let x = random(d.count(), -1.0, 1.0, 3);
    let mean = vec![0.5, -0.25, 0.0];
    let var = vec![4.0, 0.25, 0.0];
    let mut std = vec![0.0; 3];
    be.channel_std(&var, 0.0, EpsPlacement::InsideSqrt, &mut std).unwrap();
    assert_eq!(std, vec![2.0, 0.5, 0.0]);
    be.channel_std(&var, 1.0, EpsPlacement::OutsideSqrt, &mut std).unwrap();
    assert_eq!(std, vec![3.0, 1.5, 1.0]);
    let mut y = vec![0.0; d.count()];
    be.channel_normalize(d, Io::Pair(&x, &mut y), &mean, &std).unwrap();
    for j in 0..d.count() {
        let c = (j / d.inner) % d.channels;
        assert_eq!(y[j], (x[j] - mean[c]) / std[c]);
    }
    let mut z = x.clone();
    be.channel_normalize(d, Io::InPlace(&mut z), &mean, &std).unwrap();
    assert_eq!(y, z);
}

#[test]
fn norm_backward_matches_naive_for_every_mode() {
    let be = Cpu::new();
    for (k, d) in DIMS.iter().enumerate() {
        let n = d.count();
        let (xn, dy) = (random(n, -2.0, 2.0, 20 + k as u64), random(n, -1.0, 1.0, 30 + k as u64));
        let std = random(d.channels, 0.5, 2.0, 4);
        let scale = random(d.channels, -2.0, 2.0, 5);
        let shift = random(d.channels, -1.0, 1.0, 6);
        let m = d.per_channel() as f64;
        for grad in [NormGrad::BatchStats, NormGrad::MeanOnly, NormGrad::Fixed] {
            for with_scale in [false, true] {
                let s = |c: usize| if with_scale { scale[c] as f64 } else { 1.0 };
                let (mut sum_dy, mut sum_dyx) = (vec![0.0f64; d.channels], vec![0.0f64; d.channels]);
                for j in 0..n {
                    let c = (j / d.inner) % d.channels;
                    sum_dy[c] += dy[j] as f64;
                    sum_dyx[c] += dy[j] as f64 * xn[j] as f64;
                }
                let want: Vec<f64> = (0..n)
                    .map(|j| {
                        let c = (j / d.inner) % d.channels;
                        let g = dy[j] as f64 * s(c);
                        let num = match grad {
                            NormGrad::Fixed => g,
                            NormGrad::MeanOnly => g - s(c) * sum_dy[c] / m,
                            NormGrad::BatchStats => g - s(c) * sum_dy[c] / m - xn[j] as f64 * s(c) * sum_dyx[c] / m,
                        };
                        num / std[c] as f64
                    })
                    .collect();
                let run = |in_place: bool| {
                    let (mut ds, mut db) = (vec![0.5f32; d.channels], vec![-0.5f32; d.channels]);
                    let mut dx = if in_place { dy.clone() } else { vec![7.0; n] };
                    let io = if in_place { Io::InPlace(&mut dx) } else { Io::Pair(&dy, &mut dx) };
                    be.channel_norm_backward(
                        *d,
                        grad,
                        Some(&xn),
                        io,
                        &std,
                        with_scale.then_some(NormAffine::new(&scale, &shift)),
                        Some(&mut ds),
                        Some(&mut db),
                        true,
                    )
                    .unwrap();
                    // Accumulated onto the 0.5 and -0.5 already there.
                    close("dscale", &ds, &sum_dyx.iter().map(|v| v + 0.5).collect::<Vec<_>>(), 1e-5);
                    close("dshift", &db, &sum_dy.iter().map(|v| v - 0.5).collect::<Vec<_>>(), 1e-5);
                    dx
                };
                let dx = run(false);
                close(&format!("dx {grad:?}"), &dx, &want, 1e-5);
                assert_eq!(dx, run(true), "in place differs");
            }
        }
        // Parameter gradients only: dx untouched.
        let mut dx = vec![7.0; n];
        let mut ds = vec![0.0; d.channels];
        be.channel_norm_backward(
            *d,
            NormGrad::BatchStats,
            Some(&xn),
            Io::Pair(&dy, &mut dx),
            &std,
            None,
            Some(&mut ds),
            None,
            false,
        )
        .unwrap();
        assert!(dx.iter().all(|&v| v == 7.0));
    }
}

#[test]
fn a_fused_relu_gives_the_bits_of_batch_norm_then_relu() {
    let be = Cpu::new();
    for (k, d) in DIMS.iter().enumerate() {
        let n = d.count();
        let k = k as u64;
        let x = random(n, -2.0, 2.0, 60 + k);
        let dr = random(n, -1.0, 1.0, 70 + k);
        let (scale, shift) = (random(d.channels, -2.0, 2.0, 80 + k), random(d.channels, -1.0, 1.0, 90 + k));
        // Negative slopes too: an in-place ReLU's backward reads its own output, not its input.
        for slope in [0.0, 0.25, -0.5] {
            let relu = Activation::ReLU { negative_slope: slope };
            let forward = |fused: Option<f32>| {
                let (mut mean, mut var, mut std) = (vec![0.0; d.channels], vec![0.0; d.channels], vec![0.0; d.channels]);
                let (mut y, mut xn) = (x.clone(), vec![0.0; n]);
                let affine = NormAffine { relu: fused, ..NormAffine::new(&scale, &shift) };
                let io = Io::InPlace(&mut y);
                be.channel_norm_batch(*d, io, 1e-9, EpsPlacement::InsideSqrt, &mut mean, &mut var, &mut std, Some(affine), Some(&mut xn))
                    .unwrap();
                (y, xn, std)
            };
            let (mut y, xn, std) = forward(None);
            be.activation_forward(relu, Io::InPlace(&mut y)).unwrap();
            let (fused_y, fused_xn, fused_std) = forward(Some(slope));
            assert_eq!(fused_y, y, "slope {slope}: forward");
            assert_eq!((&fused_xn, &fused_std), (&xn, &std));
            let backward = |fused: Option<f32>, in_place: bool, write_dx: bool| {
                let (mut ds, mut db) = (vec![0.5f32; d.channels], vec![-0.5f32; d.channels]);
                let affine = NormAffine { relu: fused, ..NormAffine::new(&scale, &shift) };
                let mut g = dr.clone();
                if fused.is_none() {
                    be.activation_backward(relu, &y, &y, Io::InPlace(&mut g)).unwrap();
                }
                let mut dx = vec![7.0; n];
                let io = if in_place { Io::InPlace(&mut g) } else { Io::Pair(&g, &mut dx) };
                be.channel_norm_backward(*d, NormGrad::BatchStats, Some(&xn), io, &std, Some(affine), Some(&mut ds), Some(&mut db), write_dx)
                    .unwrap();
                (if in_place { g } else { dx }, ds, db)
            };
            let want = backward(None, true, true);
            assert_eq!(backward(Some(slope), true, true), want, "slope {slope}: backward in place");
            assert_eq!(backward(Some(slope), false, true), want, "slope {slope}: backward");
            // Parameter gradients only: the same sums, and dx untouched (in place: the diff).
            let (dx, ds, db) = backward(Some(slope), false, false);
            assert_eq!((ds, db), (want.1.clone(), want.2.clone()));
            assert!(dx.iter().all(|&v| v == 7.0));
            let (diff, ds, db) = backward(Some(slope), true, false);
            assert_eq!((ds, db), (want.1, want.2));
            assert_eq!(diff, dr);
        }
    }
}

#[test]
fn affine_and_its_backward_match_naive() {
    let be = Cpu::new();
    for (k, d) in DIMS.iter().enumerate() {
        let n = d.count();
        let (x, dy) = (random(n, -2.0, 2.0, 40 + k as u64), random(n, -1.0, 1.0, 50 + k as u64));
        let (s, b) = (random(d.channels, -2.0, 2.0, 6), random(d.channels, -1.0, 1.0, 7));
        let ch = |j: usize| (j / d.inner) % d.channels;
        for (use_s, use_b) in [(true, true), (true, false), (false, true), (false, false)] {
            let mut y = vec![0.0; n];
            be.channel_affine(*d, Io::Pair(&x, &mut y), use_s.then_some(&s), use_b.then_some(&b)).unwrap();
            for j in 0..n {
                let mut v = x[j];
                if use_s {
                    v *= s[ch(j)];
                }
                if use_b {
                    v += b[ch(j)];
                }
                assert_eq!(y[j], v);
            }
            let mut z = x.clone();
            be.channel_affine(*d, Io::InPlace(&mut z), use_s.then_some(&s), use_b.then_some(&b)).unwrap();
            assert_eq!(y, z);

            let (mut ds, mut db) = (vec![1.0f32; d.channels], vec![2.0f32; d.channels]);
            let mut dx = vec![0.0; n];
            be.channel_affine_backward(
                *d,
                Some(&x),
                Io::Pair(&dy, &mut dx),
                use_s.then_some(&s),
                Some(&mut ds),
                Some(&mut db),
                true,
            )
            .unwrap();
            let (mut want_s, mut want_b) = (vec![1.0f64; d.channels], vec![2.0f64; d.channels]);
            for j in 0..n {
                want_s[ch(j)] += dy[j] as f64 * x[j] as f64;
                want_b[ch(j)] += dy[j] as f64;
                assert_eq!(dx[j], if use_s { dy[j] * s[ch(j)] } else { dy[j] });
            }
            close("dscale", &ds, &want_s, 1e-5);
            close("dbias", &db, &want_b, 1e-5);
            let mut dx2 = dy.clone();
            be.channel_affine_backward(*d, None, Io::InPlace(&mut dx2), use_s.then_some(&s), None, None, true).unwrap();
            assert_eq!(dx, dx2);
        }
    }
}

#[test]
fn reductions_give_the_same_bits_on_one_thread_and_several() {
    let d = ChannelDims::new(3, 5, 30_000);
    let x = random(d.count(), -1.0, 1.0, 8);
    let run = || {
        let be = Cpu::new();
        let (mut mean, mut var, mut std) = (vec![0.0; 5], vec![0.0; 5], vec![0.0; 5]);
        let mut y = vec![0.0; d.count()];
        let mut xn = vec![0.0; d.count()];
        be.channel_norm_batch(
            d,
            Io::Pair(&x, &mut y),
            1e-5,
            EpsPlacement::InsideSqrt,
            &mut mean,
            &mut var,
            &mut std,
            None,
            Some(&mut xn),
        )
        .unwrap();
        let mut ds = vec![0.0; 5];
        let mut dx = vec![0.0; d.count()];
        be.channel_norm_backward(
            d,
            NormGrad::BatchStats,
            Some(&xn),
            Io::Pair(&x, &mut dx),
            &std,
            None,
            Some(&mut ds),
            None,
            true,
        )
        .unwrap();
        (mean, var, y, ds, dx)
    };
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
    let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(run);
    assert!(one == three);
}

#[test]
fn wrong_buffer_lengths_are_errors() {
    let be = Cpu::new();
    let d = ChannelDims::new(2, 3, 4);
    let x = vec![0.0; 24];
    let (mut mean, mut var) = (vec![0.0; 2], vec![0.0; 3]);
    let e = be.channel_moments(d, &x, &mut mean, &mut var).unwrap_err().to_string();
    assert!(e.contains("channel_moments mean: buffer of 2 elements where 3 are expected"), "{e}");
    let mut y = vec![0.0; 23];
    let e = be.channel_affine(d, Io::Pair(&x, &mut y), None, None).unwrap_err().to_string();
    assert!(e.contains("channel_affine output: buffer of 23 elements"), "{e}");
    let mut dx = vec![0.0; 24];
    let std = vec![1.0; 3];
    let e = be
        .channel_norm_backward(d, NormGrad::BatchStats, None, Io::Pair(&x, &mut dx), &std, None, None, None, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x_norm is needed"), "{e}");
    let spec = LrnSpec {
        num: 1,
        channels: 2,
        height: 2,
        width: 2,
        size: 3,
        alpha: 1.0,
        beta: 0.75,
        k: 1.0,
        within_channel: false,
    };
    let (mut s, mut o) = (vec![0.0; 8], vec![0.0; 7]);
    let e = be.lrn_forward(&spec, &x[..8].to_vec(), &mut s, &mut o).unwrap_err().to_string();
    assert!(e.contains("LRN output: buffer of 7 elements where 8 are expected"), "{e}");
}

/// Naive LRN: the scale, the output and the gradient for top diff `dy`, in f64.
fn naive_lrn(spec: &LrnSpec, x: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (c_n, h_n, w_n) = (spec.channels, spec.height, spec.width);
    let pre = (spec.size - 1) / 2;
    let idx = |n: usize, c: usize, h: usize, w: usize| ((n * c_n + c) * h_n + h) * w_n + w;
    let (alpha, beta) = (spec.alpha as f64, spec.beta as f64);
    // The neighbourhood of an element (symmetric, so also the elements whose windows hold it).
    let window = |n: usize, c: usize, h: usize, w: usize| -> Vec<usize> {
        let mut v = Vec::new();
        let range = |i: usize, len: usize| i.saturating_sub(pre)..(i + pre + 1).min(len);
        if spec.within_channel {
            for hh in range(h, h_n) {
                for ww in range(w, w_n) {
                    v.push(idx(n, c, hh, ww));
                }
            }
        } else {
            for cc in range(c, c_n) {
                v.push(idx(n, cc, h, w));
            }
        }
        v
    };
    let (base, norm) =
        if spec.within_channel { (1.0, (spec.size * spec.size) as f64) } else { (spec.k as f64, spec.size as f64) };
    let count = spec.count();
    let (mut scale, mut y, mut dx) = (vec![0.0; count], vec![0.0; count], vec![0.0; count]);
    let mut wins = vec![Vec::new(); count];
    for n in 0..spec.num {
        for c in 0..c_n {
            for h in 0..h_n {
                for w in 0..w_n {
                    let i = idx(n, c, h, w);
                    wins[i] = window(n, c, h, w);
                    scale[i] = base + alpha / norm * wins[i].iter().map(|&j| (x[j] as f64).powi(2)).sum::<f64>();
                    y[i] = x[i] as f64 * scale[i].powf(-beta);
                }
            }
        }
    }
    for i in 0..count {
        let acc: f64 = wins[i].iter().map(|&j| dy[j] as f64 * y[j] / scale[j]).sum();
        dx[i] = dy[i] as f64 * scale[i].powf(-beta) - 2.0 * alpha * beta / norm * x[i] as f64 * acc;
    }
    (scale, y, dx)
}

#[test]
fn lrn_matches_naive_for_both_regions() {
    let be = Cpu::new();
    let shapes = [(2, 5, 3, 4, 3), (1, 3, 2, 5, 5), (1, 7, 33, 40, 5), (2, 2, 5, 7, 3), (1, 1, 4, 4, 7)];
    for (k, &(num, channels, height, width, size)) in shapes.iter().enumerate() {
        for within_channel in [false, true] {
            let spec = LrnSpec { num, channels, height, width, size, alpha: 1.5, beta: 0.75, k: 2.0, within_channel };
            let n = spec.count();
            let (x, dy) = (random(n, -2.0, 2.0, 60 + k as u64), random(n, -1.0, 1.0, 70 + k as u64));
            let (want_s, want_y, want_dx) = naive_lrn(&spec, &x, &dy);
            let (mut s, mut y, mut dx) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            be.lrn_forward(&spec, &x, &mut s, &mut y).unwrap();
            be.lrn_backward(&spec, &x, &y, &s, &dy, &mut dx).unwrap();
            close(&format!("scale {spec:?}"), &s, &want_s, 1e-5);
            close(&format!("y {spec:?}"), &y, &want_y, 1e-5);
            close(&format!("dx {spec:?}"), &dx, &want_dx, 1e-5);
        }
    }
}
