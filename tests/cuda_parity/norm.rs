//! Normalisation on the CPU and on CUDA: per-channel statistics (close to the CPU's sums, the
//! same bits on every run), everything element-wise bit for bit from the same statistics,
//! batch-norm gradients close where they go through sums, and LRN (its scale bit for bit,
//! its power within ulps).

use super::*;
use crema::backend::{ChannelDims, EpsPlacement, LrnSpec, NormAffine, NormGrad, Normalization};

/// The affine parts a batch normalisation is tested with: none; scale and shift; and those
/// followed by a fused ReLU, of slope 0 and of a negative slope.
const AFFINES: [Option<Option<f32>>; 4] = [None, Some(None), Some(Some(0.0)), Some(Some(-0.3))];

/// Shapes: SegNet-like (images x channels x pixels), one long channel, rows (MVN), tiny ones.
fn dims() -> Vec<ChannelDims> {
    vec![
        ChannelDims::new(6, 64, 4096),
        ChannelDims::new(2, 3, 70_000),
        ChannelDims::new(1, 300, 7),
        ChannelDims::new(300, 7, 1),
        ChannelDims::new(3, 5, 1),
        ChannelDims::new(1, 1, 1),
    ]
}

/// Values with a per-channel offset (so that the mean matters) plus noise.
fn data(rng: &mut Rng, d: ChannelDims) -> Vec<f32> {
    let offsets: Vec<f32> = (0..d.channels).map(|c| (c % 5) as f32 * 3.0 - 4.0).collect();
    (0..d.count())
        .map(|k| offsets[(k / d.inner) % d.channels] + rng.uniform_range(-1.0, 1.0))
        .collect()
}

/// Per channel: the mean of |v| (the scale of a mean's rounding).
fn channel_abs_mean(d: ChannelDims, v: &[f32]) -> Vec<f32> {
    let mut s = vec![0f64; d.channels];
    for (k, &x) in v.iter().enumerate() {
        s[(k / d.inner) % d.channels] += x.abs() as f64;
    }
    s.iter().map(|&t| (t / d.per_channel().max(1) as f64) as f32).collect()
}

#[test]
fn channel_statistics_are_close_and_repeat() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(51);
    for d in dims() {
        let x = data(&mut rng, d);
        let (mut mean, mut var) = (vec![0f32; d.channels], vec![0f32; d.channels]);
        cpu.channel_moments(d, &x, &mut mean, &mut var).unwrap();
        let gx = up(g, &x);
        let (mut gm, mut gv) = (g.alloc(d.channels).unwrap(), g.alloc(d.channels).unwrap());
        g.channel_moments(d, &gx, &mut gm, &mut gv)
            .unwrap_or_else(|e| panic!("{d:?}: {e}"));
        let (gmean, gvar) = (down(g, &gm), down(g, &gv));
        assert_close(
            &format!("moments {d:?}: mean"),
            &gmean,
            &mean,
            Some(&channel_abs_mean(d, &x)),
            1e-6,
        );
        assert_close(&format!("moments {d:?}: var"), &gvar, &var, None, 1e-5);
        g.channel_moments(d, &gx, &mut gm, &mut gv).unwrap();
        assert_bits(&format!("moments {d:?} repeated"), &down(g, &gm), &gmean);
        assert_bits(&format!("moments {d:?} repeated"), &down(g, &gv), &gvar);
        for placement in [EpsPlacement::InsideSqrt, EpsPlacement::OutsideSqrt] {
            let mut std = vec![0f32; d.channels];
            cpu.channel_std(&var, 1e-5, placement, &mut std).unwrap();
            let mut gs = g.alloc(d.channels).unwrap();
            g.channel_std(&up(g, &var), 1e-5, placement, &mut gs).unwrap();
            assert_bits(&format!("std {placement:?}"), &down(g, &gs), &std);
        }
    }
    // No elements: zero statistics, as on the CPU.
    let d = ChannelDims::new(0, 4, 3);
    let (mut gm, mut gv) = (up(g, &[1.0; 4]), up(g, &[1.0; 4]));
    g.channel_moments(d, &g.alloc(0).unwrap(), &mut gm, &mut gv).unwrap();
    assert_eq!((down(g, &gm), down(g, &gv)), (vec![0.0; 4], vec![0.0; 4]));
}

#[test]
fn statistics_of_data_far_from_zero_do_not_cancel() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(54);
    // A mean 10^5 times the spread: one-pass sums of x and x^2 would lose the variance.
    let d = ChannelDims::new(4, 3, 5000);
    let x: Vec<f32> = (0..d.count()).map(|k| 1000.0 * (1 + (k / d.inner) % d.channels) as f32 + rng.uniform_range(-0.01, 0.01)).collect();
    let (mut gm, mut gv) = (g.alloc(d.channels).unwrap(), g.alloc(d.channels).unwrap());
    g.channel_moments(d, &up(g, &x), &mut gm, &mut gv).unwrap();
    let (gmean, gvar) = (down(g, &gm), down(g, &gv));
    for c in 0..d.channels {
        let vals: Vec<f64> = (0..d.count()).filter(|k| (k / d.inner) % d.channels == c).map(|k| x[k] as f64).collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!(((gmean[c] as f64 - mean) / mean).abs() < 1e-7, "channel {c}: mean {} vs {mean}", gmean[c]);
        assert!(((gvar[c] as f64 - var) / var).abs() < 1e-6, "channel {c}: var {} vs {var}", gvar[c]);
    }
}

#[test]
fn batch_normalisation_forward_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(52);
    for d in dims() {
        let x = data(&mut rng, d);
        let (scale, shift) = (random(&mut rng, d.channels), random(&mut rng, d.channels));
        let (gscale, gshift) = (up(g, &scale), up(g, &shift));
        for relu in AFFINES {
            let affine = relu.is_some();
            for keep in [false, true] {
                for in_place in [false, true] {
                    let what = format!("norm batch {d:?} affine {relu:?} x_norm {keep} in place {in_place}");
                    let c = d.channels;
                    let (mut mean, mut var, mut std) = (vec![0f32; c], vec![0f32; c], vec![0f32; c]);
                    let (mut y, mut xn) = (x.clone(), vec![0f32; d.count()]);
                    let aff = relu.map(|relu| NormAffine { relu, ..NormAffine::new(&scale, &shift) });
                    cpu.channel_norm_batch(
                        d,
                        Io::InPlace(&mut y),
                        1e-9,
                        EpsPlacement::InsideSqrt,
                        &mut mean,
                        &mut var,
                        &mut std,
                        aff,
                        keep.then_some(&mut xn),
                    )
                    .unwrap();
                    let (mut gm, mut gv, mut gs) = (g.alloc(c).unwrap(), g.alloc(c).unwrap(), g.alloc(c).unwrap());
                    let mut gxn = g.alloc(d.count()).unwrap();
                    let gx = up(g, &x);
                    let mut gy = if in_place {
                        up(g, &x)
                    } else {
                        g.alloc(d.count()).unwrap()
                    };
                    let io = if in_place {
                        Io::InPlace(&mut gy)
                    } else {
                        Io::Pair(&gx, &mut gy)
                    };
                    let gaff = relu.map(|relu| NormAffine { relu, ..NormAffine::new(&gscale, &gshift) });
                    g.channel_norm_batch(
                        d,
                        io,
                        1e-9,
                        EpsPlacement::InsideSqrt,
                        &mut gm,
                        &mut gv,
                        &mut gs,
                        gaff,
                        keep.then_some(&mut gxn),
                    )
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_close(
                        &format!("{what}: mean"),
                        &down(g, &gm),
                        &mean,
                        Some(&channel_abs_mean(d, &x)),
                        1e-6,
                    );
                    assert_close(&format!("{what}: std"), &down(g, &gs), &std, None, 1e-5);
                    // x_hat = (x - mean) / std from statistics a few ulps apart.
                    let xhat_scale: Vec<f32> = (0..d.count())
                        .map(|k| 1.0 + ((x[k] - mean[(k / d.inner) % c]) / std[(k / d.inner) % c]).abs())
                        .collect();
                    if keep {
                        assert_close(&format!("{what}: x_norm"), &down(g, &gxn), &xn, Some(&xhat_scale), 2e-5);
                    }
                    let yscale: Vec<f32> = (0..d.count())
                        .map(|k| {
                            xhat_scale[k]
                                * if affine {
                                    scale[(k / d.inner) % c].abs() + shift[(k / d.inner) % c].abs()
                                } else {
                                    1.0
                                }
                        })
                        .collect();
                    assert_close(&format!("{what}: y"), &down(g, &gy), &y, Some(&yscale), 2e-5);
                }
            }
        }
        // With the CPU's statistics, normalising is plain arithmetic: the CPU's bits.
        let (mut mean, mut var, mut std) = (vec![0f32; d.channels], vec![0f32; d.channels], vec![0f32; d.channels]);
        cpu.channel_moments(d, &x, &mut mean, &mut var).unwrap();
        cpu.channel_std(&var, 1e-5, EpsPlacement::OutsideSqrt, &mut std)
            .unwrap();
        let mut y = vec![0f32; d.count()];
        cpu.channel_normalize(d, Io::Pair(&x, &mut y), &mean, &std).unwrap();
        let (gmean, gstd) = (up(g, &mean), up(g, &std));
        let mut gy = g.alloc(d.count()).unwrap();
        g.channel_normalize(d, Io::Pair(&up(g, &x), &mut gy), &gmean, &gstd)
            .unwrap();
        assert_bits(&format!("normalize {d:?}"), &down(g, &gy), &y);
        let mut gin = up(g, &x);
        g.channel_normalize(d, Io::InPlace(&mut gin), &gmean, &gstd).unwrap();
        assert_bits(&format!("normalize {d:?} in place"), &down(g, &gin), &y);
    }
}

#[test]
fn batch_normalisation_backward_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(53);
    for d in dims() {
        let c = d.channels;
        let (xn, dy) = (random(&mut rng, d.count()), random(&mut rng, d.count()));
        let std: Vec<f32> = (0..c).map(|_| rng.uniform_range(0.5, 2.0)).collect();
        let (scale, shift) = (random(&mut rng, c), random(&mut rng, c));
        let (ds0, db0) = (random(&mut rng, c), random(&mut rng, c));
        let (gxn, gdy, gstd, gscale, gshift) = (up(g, &xn), up(g, &dy), up(g, &std), up(g, &scale), up(g, &shift));
        // The size of the terms of each dx: |g| + |x_hat| |mgx| + |mg|, over std.
        let m = d.per_channel() as f64;
        let (mut a, mut b) = (vec![0f64; c], vec![0f64; c]);
        for k in 0..d.count() {
            a[(k / d.inner) % c] += (dy[k] as f64).abs() / m;
            b[(k / d.inner) % c] += (dy[k] as f64 * xn[k] as f64).abs() / m;
        }
        for grad in [NormGrad::BatchStats, NormGrad::MeanOnly, NormGrad::Fixed] {
            for relu in AFFINES {
                let with_scale = relu.is_some();
                for in_place in [false, true] {
                    let what = format!("norm backward {d:?} {grad:?} affine {relu:?} in place {in_place}");
                    let sc = relu.map(|relu| NormAffine { relu, ..NormAffine::new(&scale, &shift) });
                    let (mut dx, mut ds, mut db) = (dy.clone(), ds0.clone(), db0.clone());
                    let diff = if in_place {
                        Io::InPlace(&mut dx)
                    } else {
                        Io::Pair(&dy, &mut dx)
                    };
                    cpu.channel_norm_backward(d, grad, Some(&xn), diff, &std, sc, Some(&mut ds), Some(&mut db), true)
                        .unwrap();
                    let (mut gdx, mut gds, mut gdb) = (up(g, &dy), up(g, &ds0), up(g, &db0));
                    let gdiff = if in_place {
                        Io::InPlace(&mut gdx)
                    } else {
                        Io::Pair(&gdy, &mut gdx)
                    };
                    g.channel_norm_backward(
                        d,
                        grad,
                        Some(&gxn),
                        gdiff,
                        &gstd,
                        relu.map(|relu| NormAffine { relu, ..NormAffine::new(&gscale, &gshift) }),
                        Some(&mut gds),
                        Some(&mut gdb),
                        true,
                    )
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                    let s = |k: usize| {
                        if with_scale {
                            scale[(k / d.inner) % c].abs()
                        } else {
                            1.0
                        }
                    };
                    let dxs: Vec<f32> = (0..d.count())
                        .map(|k| {
                            let ch = (k / d.inner) % c;
                            ((dy[k].abs() * s(k)) as f64 + s(k) as f64 * (xn[k].abs() as f64 * b[ch] + a[ch])) as f32
                                / std[ch]
                        })
                        .collect();
                    let got = down(g, &gdx);
                    if grad == NormGrad::Fixed {
                        assert_bits(&format!("{what}: dx"), &got, &dx);
                    } else {
                        assert_close(&format!("{what}: dx"), &got, &dx, Some(&dxs), 1e-6);
                    }
                    let ss: Vec<f32> = (0..c).map(|ch| ds0[ch].abs() + (b[ch] * m) as f32).collect();
                    let bs: Vec<f32> = (0..c).map(|ch| db0[ch].abs() + (a[ch] * m) as f32).collect();
                    assert_close(&format!("{what}: dscale"), &down(g, &gds), &ds, Some(&ss), 1e-6);
                    assert_close(&format!("{what}: dshift"), &down(g, &gdb), &db, Some(&bs), 1e-6);
                }
            }
        }
        // Only the parameter gradients: dx untouched, with a fused ReLU too.
        for relu in [None, Some(Some(0.0))] {
            let mut gdx = up(g, &dy);
            let mut gds = up(g, &ds0);
            g.channel_norm_backward(
                d,
                NormGrad::BatchStats,
                Some(&gxn),
                Io::InPlace(&mut gdx),
                &gstd,
                relu.map(|relu| NormAffine { relu, ..NormAffine::new(&gscale, &gshift) }),
                Some(&mut gds),
                None,
                false,
            )
            .unwrap();
            assert_bits("norm backward without dx leaves dx", &down(g, &gdx), &dy);
        }
    }
    let d = ChannelDims::new(2, 3, 4);
    let err = g
        .channel_norm_backward(
            d,
            NormGrad::BatchStats,
            None,
            Io::InPlace(&mut g.alloc(24).unwrap()),
            &g.alloc(3).unwrap(),
            None,
            None,
            None,
            true,
        )
        .expect_err("x_norm is needed");
    assert!(err.to_string().contains("x_norm is needed"), "{err}");
}

#[test]
fn channel_affine_maps_match_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(54);
    for d in dims() {
        let c = d.channels;
        let (x, dy) = (random(&mut rng, d.count()), random(&mut rng, d.count()));
        let (scale, bias) = (random(&mut rng, c), random(&mut rng, c));
        let (gx, gdy, gscale, gbias) = (up(g, &x), up(g, &dy), up(g, &scale), up(g, &bias));
        for (s, b) in [(true, true), (true, false), (false, true), (false, false)] {
            let what = format!("affine {d:?} scale {s} bias {b}");
            let mut y = vec![0f32; d.count()];
            cpu.channel_affine(d, Io::Pair(&x, &mut y), s.then_some(&scale), b.then_some(&bias))
                .unwrap();
            let mut gy = g.alloc(d.count()).unwrap();
            g.channel_affine(d, Io::Pair(&gx, &mut gy), s.then_some(&gscale), b.then_some(&gbias))
                .unwrap();
            assert_bits(&what, &down(g, &gy), &y);
            let mut gin = up(g, &x);
            g.channel_affine(d, Io::InPlace(&mut gin), s.then_some(&gscale), b.then_some(&gbias))
                .unwrap();
            assert_bits(&format!("{what} in place"), &down(g, &gin), &y);

            for in_place in [false, true] {
                let (ds0, db0) = (random(&mut rng, c), random(&mut rng, c));
                let (mut dx, mut ds, mut db) = (dy.clone(), ds0.clone(), db0.clone());
                let diff = if in_place {
                    Io::InPlace(&mut dx)
                } else {
                    Io::Pair(&dy, &mut dx)
                };
                cpu.channel_affine_backward(
                    d,
                    Some(&x),
                    diff,
                    s.then_some(&scale),
                    Some(&mut ds),
                    b.then_some(&mut db),
                    true,
                )
                .unwrap();
                let (mut gdx, mut gds, mut gdb) = (
                    if in_place {
                        up(g, &dy)
                    } else {
                        g.alloc(d.count()).unwrap()
                    },
                    up(g, &ds0),
                    up(g, &db0),
                );
                let gdiff = if in_place {
                    Io::InPlace(&mut gdx)
                } else {
                    Io::Pair(&gdy, &mut gdx)
                };
                g.channel_affine_backward(
                    d,
                    Some(&gx),
                    gdiff,
                    s.then_some(&gscale),
                    Some(&mut gds),
                    b.then_some(&mut gdb),
                    true,
                )
                .unwrap();
                assert_bits(&format!("{what} backward dx, in place {in_place}"), &down(g, &gdx), &dx);
                let mut sabs = abs(&ds0);
                let mut babs = abs(&db0);
                cpu.channel_affine_backward(
                    d,
                    Some(&abs(&x)),
                    Io::Pair(&abs(&dy), &mut vec![0f32; d.count()]),
                    None,
                    Some(&mut sabs),
                    Some(&mut babs),
                    false,
                )
                .unwrap();
                assert_close(
                    &format!("{what} backward dscale"),
                    &down(g, &gds),
                    &ds,
                    Some(&sabs),
                    1e-6,
                );
                if b {
                    assert_close(
                        &format!("{what} backward dbias"),
                        &down(g, &gdb),
                        &db,
                        Some(&babs),
                        1e-6,
                    );
                } else {
                    assert_bits(&format!("{what} backward dbias untouched"), &down(g, &gdb), &db0);
                }
            }
        }
    }
}

#[test]
fn lrn_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(55);
    let specs = [
        LrnSpec {
            num: 2,
            channels: 7,
            height: 5,
            width: 6,
            size: 5,
            alpha: 1e-2,
            beta: 0.75,
            k: 2.0,
            within_channel: false,
        },
        LrnSpec {
            num: 3,
            channels: 16,
            height: 9,
            width: 9,
            size: 3,
            alpha: 0.5,
            beta: 0.6,
            k: 1.0,
            within_channel: false,
        },
        LrnSpec {
            num: 1,
            channels: 2,
            height: 4,
            width: 3,
            size: 7,
            alpha: 1.0,
            beta: 0.75,
            k: 1.0,
            within_channel: false,
        },
        LrnSpec {
            num: 2,
            channels: 3,
            height: 7,
            width: 8,
            size: 3,
            alpha: 0.1,
            beta: 0.75,
            k: 1.0,
            within_channel: true,
        },
        LrnSpec {
            num: 1,
            channels: 2,
            height: 5,
            width: 4,
            size: 5,
            alpha: 1.0,
            beta: 0.5,
            k: 1.0,
            within_channel: true,
        },
    ];
    for spec in specs {
        let n = spec.count();
        let x: Vec<f32> = (0..n).map(|_| rng.uniform_range(-3.0, 3.0)).collect();
        let (mut scale, mut y) = (vec![0f32; n], vec![0f32; n]);
        cpu.lrn_forward(&spec, &x, &mut scale, &mut y).unwrap();
        let gx = up(g, &x);
        let (mut gs, mut gy) = (g.alloc(n).unwrap(), g.alloc(n).unwrap());
        g.lrn_forward(&spec, &gx, &mut gs, &mut gy)
            .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        assert_bits(&format!("LRN {spec:?}: scale"), &down(g, &gs), &scale);
        assert_ulps(&format!("LRN {spec:?}: y"), &down(g, &gy), &y, 3, 0.0);

        // Backward from the CPU's forward, so that only its own arithmetic is compared.
        let dy = random(&mut rng, n);
        let mut dx = vec![0f32; n];
        cpu.lrn_backward(&spec, &x, &y, &scale, &dy, &mut dx).unwrap();
        let mut gdx = g.alloc(n).unwrap();
        g.lrn_backward(&spec, &gx, &up(g, &y), &up(g, &scale), &up(g, &dy), &mut gdx)
            .unwrap();
        let big = dx.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_close(
            &format!("LRN {spec:?}: dx"),
            &down(g, &gdx),
            &dx,
            Some(&vec![big; n]),
            1e-5,
        );
    }
    let even = LrnSpec {
        num: 1,
        channels: 2,
        height: 2,
        width: 2,
        size: 4,
        alpha: 1.0,
        beta: 0.75,
        k: 1.0,
        within_channel: false,
    };
    let b = g.alloc(8).unwrap();
    assert!(
        g.lrn_forward(&even, &b, &mut g.alloc(8).unwrap(), &mut g.alloc(8).unwrap())
            .is_err()
    );
}
