//! The CPU pooling primitives against naive transcriptions of Caffe's CPU loops (written
//! here without the `PoolSpec` window helpers), bit for bit, on many geometries.

use super::*;
use crate::rng::Rng;

/// Same bits, or both NaN.
fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Caffe's ceil-mode pooled extent with its padding clip (integers only, for the test).
fn pooled(input: usize, k: usize, s: usize, p: usize, any_pad: bool) -> usize {
    let num = input as i64 + 2 * p as i64 - k as i64;
    let mut o = if num >= 0 { (num + s as i64 - 1) / s as i64 } else { -((-num) / s as i64) } + 1;
    if any_pad && (o - 1) * s as i64 >= (input + p) as i64 {
        o -= 1;
    }
    o as usize
}

fn spec(planes: usize, (ih, iw): (usize, usize), (kh, kw): (usize, usize), (sh, sw): (usize, usize), (ph, pw): (usize, usize)) -> PoolSpec {
    let any = ph != 0 || pw != 0;
    PoolSpec {
        planes,
        in_h: ih,
        in_w: iw,
        out_h: pooled(ih, kh, sh, ph, any),
        out_w: pooled(iw, kw, sw, pw, any),
        kernel_h: kh,
        kernel_w: kw,
        stride_h: sh,
        stride_w: sw,
        pad_h: ph,
        pad_w: pw,
    }
}

/// Caffe's MAX forward.
fn ref_max(s: &PoolSpec, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut y, mut m) = (vec![-f32::MAX; s.out_len()], vec![-1.0; s.out_len()]);
    let (ih, iw, oh, ow) = (s.in_h as i64, s.in_w as i64, s.out_h as i64, s.out_w as i64);
    for p in 0..s.planes {
        let (xo, yo) = (p * s.in_plane(), p * s.out_plane());
        for ph in 0..oh {
            for pw in 0..ow {
                let hs = ph * s.stride_h as i64 - s.pad_h as i64;
                let ws = pw * s.stride_w as i64 - s.pad_w as i64;
                let he = (hs + s.kernel_h as i64).min(ih);
                let we = (ws + s.kernel_w as i64).min(iw);
                let o = yo + (ph * ow + pw) as usize;
                for h in hs.max(0)..he {
                    for w in ws.max(0)..we {
                        let i = (h * iw + w) as usize;
                        if x[xo + i] > y[o] {
                            y[o] = x[xo + i];
                            m[o] = i as f32;
                        }
                    }
                }
            }
        }
    }
    (y, m)
}

/// Caffe's AVE forward (and, with `dy`, backward).
fn ref_ave(s: &PoolSpec, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut y, mut dx) = (vec![0.0; s.out_len()], vec![0.0; s.in_len()]);
    let (ih, iw, oh, ow) = (s.in_h as i64, s.in_w as i64, s.out_h as i64, s.out_w as i64);
    for p in 0..s.planes {
        let (xo, yo) = (p * s.in_plane(), p * s.out_plane());
        for ph in 0..oh {
            for pw in 0..ow {
                let hs = ph * s.stride_h as i64 - s.pad_h as i64;
                let ws = pw * s.stride_w as i64 - s.pad_w as i64;
                let he = (hs + s.kernel_h as i64).min(ih + s.pad_h as i64);
                let we = (ws + s.kernel_w as i64).min(iw + s.pad_w as i64);
                let size = (he - hs) * (we - ws);
                let o = yo + (ph * ow + pw) as usize;
                for h in hs.max(0)..he.min(ih) {
                    for w in ws.max(0)..we.min(iw) {
                        let i = xo + (h * iw + w) as usize;
                        y[o] += x[i];
                        dx[i] += dy[o] / size as f32;
                    }
                }
                y[o] /= size as f32;
            }
        }
    }
    (y, dx)
}

/// Caffe's MAX backward.
fn ref_max_back(s: &PoolSpec, dy: &[f32], m: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0; s.in_len()];
    for p in 0..s.planes {
        for o in 0..s.out_plane() {
            let i = m[p * s.out_plane() + o] as i64;
            if i >= 0 {
                dx[p * s.in_plane() + i as usize] += dy[p * s.out_plane() + o];
            }
        }
    }
    dx
}

/// Values with ties (small integers), and sometimes infinities and NaN.
fn values(rng: &mut Rng, n: usize, specials: bool) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.below(if specials { 40 } else { 36 }) {
            36 => f32::NEG_INFINITY,
            37 => f32::INFINITY,
            38 => f32::NAN,
            39 => -f32::MAX,
            k if k < 12 => (k as f32 - 6.0) * 0.5,
            _ => rng.uniform_range(-3.0, 3.0),
        })
        .collect()
}

/// Geometries: the 2x2 fast path on odd and even sizes, overlapping windows, padding, global,
/// rectangular kernels, a stride past the kernel (empty windows), a kernel past the input.
fn geometries() -> Vec<PoolSpec> {
    vec![
        spec(6, (9, 11), (2, 2), (2, 2), (0, 0)),
        spec(6, (8, 10), (2, 2), (2, 2), (0, 0)),
        spec(5000, (3, 5), (2, 2), (2, 2), (0, 0)),
        spec(3, (1, 1), (2, 2), (2, 2), (0, 0)),
        spec(4, (7, 8), (3, 3), (2, 2), (0, 0)),
        spec(4, (7, 9), (3, 3), (2, 2), (1, 1)),
        spec(4, (6, 7), (3, 2), (1, 2), (2, 1)),
        spec(3, (5, 6), (5, 6), (1, 1), (0, 0)),
        spec(3, (5, 5), (2, 1), (3, 3), (1, 0)),
        spec(3, (4, 5), (1, 1), (2, 3), (0, 0)),
        spec(2, (2, 2), (3, 3), (2, 2), (0, 0)),
        spec(700, (13, 17), (4, 3), (3, 2), (2, 1)),
    ]
}

#[test]
fn max_pooling_matches_caffe_loops() {
    let mut rng = Rng::new(3);
    for s in geometries() {
        for specials in [false, true] {
            let x = values(&mut rng, s.in_len(), specials);
            let (mut y, mut m) = (vec![7.0; s.out_len()], vec![7.0; s.out_len()]);
            Cpu.max_pool_forward(&s, &x, &mut y, &mut m).unwrap();
            let (ry, rm) = ref_max(&s, &x);
            assert!(same(&y, &ry), "{s:?}: max values");
            assert!(same(&m, &rm), "{s:?}: argmax");
            let dy = values(&mut rng, s.out_len(), false);
            let mut dx = vec![7.0; s.in_len()];
            Cpu.max_pool_backward(&s, &dy, &m, &mut dx).unwrap();
            assert!(same(&dx, &ref_max_back(&s, &dy, &m)), "{s:?}: max backward");
        }
    }
}

#[test]
fn empty_windows_give_caffes_sentinels() {
    // Width 4, kernel 1, stride 2: windows at 0, 2 and 4, the last past the input.
    let s = spec(1, (1, 4), (1, 1), (1, 2), (0, 0));
    assert_eq!(s.out_w, 3);
    let x = [1.0, 2.0, 3.0, 4.0];
    let (mut y, mut m) = (vec![0.0; 3], vec![0.0; 3]);
    Cpu.max_pool_forward(&s, &x.to_vec(), &mut y, &mut m).unwrap();
    assert_eq!((y, m.clone()), (vec![1.0, 3.0, -f32::MAX], vec![0.0, 2.0, -1.0]));
    let mut dx = vec![9.0; 4];
    Cpu.max_pool_backward(&s, &vec![1.0, 2.0, 3.0], &m, &mut dx).unwrap();
    assert_eq!(dx, [1.0, 0.0, 2.0, 0.0]);
    // Average pooling divides by the window's size past the input: 0, so 0 / 0.
    let mut y = vec![0.0; 3];
    Cpu.ave_pool_forward(&s, &x.to_vec(), &mut y).unwrap();
    assert_eq!(&y[..2], [1.0, 3.0]);
    assert!(y[2].is_nan());
    // Only -inf and NaN in a window: nothing beats -FLT_MAX.
    let s = spec(1, (1, 2), (1, 2), (1, 1), (0, 0));
    let (mut y, mut m) = (vec![0.0; 1], vec![0.0; 1]);
    Cpu.max_pool_forward(&s, &vec![f32::NEG_INFINITY, f32::NAN], &mut y, &mut m).unwrap();
    assert_eq!((y[0], m[0]), (-f32::MAX, -1.0));
}

#[test]
fn average_pooling_matches_caffe_loops() {
    let mut rng = Rng::new(4);
    for s in geometries() {
        let x = values(&mut rng, s.in_len(), false);
        let dy = values(&mut rng, s.out_len(), false);
        let (ry, rdx) = ref_ave(&s, &x, &dy);
        let mut y = vec![7.0; s.out_len()];
        Cpu.ave_pool_forward(&s, &x, &mut y).unwrap();
        assert!(same(&y, &ry), "{s:?}: average");
        let mut dx = vec![7.0; s.in_len()];
        Cpu.ave_pool_backward(&s, &dy, &mut dx).unwrap();
        assert!(same(&dx, &rdx), "{s:?}: average backward");
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut rng = Rng::new(5);
    let s = spec(3000, (9, 7), (3, 3), (2, 2), (1, 1));
    let x = values(&mut rng, s.in_len(), false);
    let dy = values(&mut rng, s.out_len(), false);
    let run = || {
        let (mut y, mut m, mut a) = (vec![0.0; s.out_len()], vec![0.0; s.out_len()], vec![0.0; s.out_len()]);
        let (mut dx, mut da) = (vec![0.0; s.in_len()], vec![0.0; s.in_len()]);
        Cpu.max_pool_forward(&s, &x, &mut y, &mut m).unwrap();
        Cpu.max_pool_backward(&s, &dy, &m, &mut dx).unwrap();
        Cpu.ave_pool_forward(&s, &x, &mut a).unwrap();
        Cpu.ave_pool_backward(&s, &dy, &mut da).unwrap();
        [y, m, a, dx, da]
    };
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
    let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(run);
    for (a, b) in one.iter().zip(&three) {
        assert!(same(a, b));
    }
}

#[test]
fn upsample_scatters_and_gathers_by_the_mask() {
    let mut rng = Rng::new(6);
    // Pool 2x2 on 7x9 planes, then unpool to 7x9: the mask names each maximum's position.
    let s = spec(40, (7, 9), (2, 2), (2, 2), (0, 0));
    let x = values(&mut rng, s.in_len(), false);
    let (mut p, mut m) = (vec![0.0; s.out_len()], vec![0.0; s.out_len()]);
    Cpu.max_pool_forward(&s, &x, &mut p, &mut m).unwrap();
    let (planes, small, big) = (s.planes, s.out_plane(), s.in_plane());
    let mut y = vec![7.0; s.in_len()];
    Cpu.upsample_forward(planes, small, big, &p, &m, &mut y).unwrap();
    let mut want = vec![0.0; s.in_len()];
    for q in 0..planes {
        for i in 0..small {
            want[q * big + m[q * small + i] as usize] = p[q * small + i];
        }
    }
    assert!(same(&y, &want));
    let dy = values(&mut rng, s.in_len(), false);
    let mut dx = vec![7.0; s.out_len()];
    Cpu.upsample_backward(planes, small, big, &dy, &m, &mut dx).unwrap();
    let want: Vec<f32> = (0..s.out_len()).map(|i| dy[(i / small) * big + m[i] as usize]).collect();
    assert!(same(&dx, &want));
    // Duplicate indices: the later entry wins; fractional ones truncate.
    let mut y = vec![0.0; 4];
    Cpu.upsample_forward(1, 3, 4, &vec![1.0, 2.0, 3.0], &vec![3.0, 3.9, 0.5], &mut y).unwrap();
    assert_eq!(y, [3.0, 0.0, 0.0, 2.0]);
}

#[test]
fn bad_masks_are_errors_not_wild_writes() {
    let msg = |r: Result<()>| match r {
        Err(Error::Shape(m)) => m,
        other => panic!("not a shape error: {other:?}"),
    };
    let x = vec![1.0; 6];
    let mut y = vec![0.0; 8];
    // Plane 1 (of 2), index 2: 4 is outside a plane of 4; -1 and NaN are rejected too.
    let mask = vec![0.0, 1.0, 2.0, 3.0, 0.0, 4.0];
    let m = msg(Cpu.upsample_forward(2, 3, 4, &x, &mask, &mut y));
    assert!(m.contains("upsample: mask value 4 at index 2 of plane 1 is not an index into a plane of 4 elements"), "{m}");
    let m = msg(Cpu.upsample_forward(2, 3, 4, &x, &vec![0.0, -1.0, 2.0, 3.0, 0.0, 1.0], &mut y));
    assert!(m.contains("mask value -1 at index 1 of plane 0"), "{m}");
    let mut dx = vec![0.0; 6];
    let m = msg(Cpu.upsample_backward(2, 3, 4, &y, &vec![0.0, 1.0, f32::NAN, 3.0, 0.0, 1.0], &mut dx));
    assert!(m.contains("upsample backward: mask value NaN at index 2 of plane 0"), "{m}");
    // Max pooling backward: -1 is Caffe's empty window and skipped; past the plane is an error.
    let s = spec(1, (2, 2), (1, 1), (1, 1), (0, 0));
    let mut dx = vec![0.0; 4];
    let m = msg(Cpu.max_pool_backward(&s, &vec![1.0; 4], &vec![0.0, 1.0, 2.0, 4.0], &mut dx));
    assert!(m.contains("max pooling backward: mask value 4 at index 3 of plane 0"), "{m}");
    // Buffers too small are internal errors (a layer bug), not panics.
    assert!(matches!(Cpu.max_pool_forward(&s, &vec![0.0; 3], &mut vec![0.0; 4], &mut vec![0.0; 4]), Err(Error::Internal(_))));
    assert!(matches!(Cpu.upsample_forward(2, 3, 4, &x, &mask, &mut vec![0.0; 7]), Err(Error::Internal(_))));
}

/// Caffe's `StoPoolForwardTrain` (one output per index, windows without padding), with its
/// uniform numbers `u` given, and the pick made where Caffe leaves the output unset (no element
/// reaches the threshold) set as crema documents it: the window's last element, or 0 and -1
/// for an empty window.
fn ref_stochastic_train(s: &PoolSpec, x: &[f32], u: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut y, mut m) = (vec![0.0; s.out_len()], vec![-1.0; s.out_len()]);
    let (ih, iw) = (s.in_h, s.in_w);
    for index in 0..s.out_len() {
        let (pw, ph, p) = (index % s.out_w, (index / s.out_w) % s.out_h, index / s.out_plane());
        let (hstart, wstart) = (ph * s.stride_h, pw * s.stride_w);
        let (hend, wend) = ((hstart + s.kernel_h).min(ih), (wstart + s.kernel_w).min(iw));
        let xp = &x[p * s.in_plane()..];
        let mut cumsum = 0.0f32;
        for h in hstart..hend {
            for w in wstart..wend {
                cumsum += xp[h * iw + w];
            }
        }
        let thres = u[index] * cumsum;
        cumsum = 0.0;
        'scan: for h in hstart..hend {
            for w in wstart..wend {
                cumsum += xp[h * iw + w];
                (y[index], m[index]) = (xp[h * iw + w], (h * iw + w) as f32);
                if cumsum >= thres {
                    break 'scan;
                }
            }
        }
    }
    (y, m)
}

/// Caffe's `StoPoolForwardTest`, its `cumvalues += x * x` fused as nvcc compiles it.
fn ref_stochastic_test(s: &PoolSpec, x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; s.out_len()];
    for (index, yo) in y.iter_mut().enumerate() {
        let (pw, ph, p) = (index % s.out_w, (index / s.out_w) % s.out_h, index / s.out_plane());
        let (hstart, wstart) = (ph * s.stride_h, pw * s.stride_w);
        let (hend, wend) = ((hstart + s.kernel_h).min(s.in_h), (wstart + s.kernel_w).min(s.in_w));
        let xp = &x[p * s.in_plane()..];
        let (mut cumsum, mut cumvalues) = (f32::MIN_POSITIVE, 0.0f32);
        for h in hstart..hend {
            for w in wstart..wend {
                cumsum += xp[h * s.in_w + w];
                cumvalues = xp[h * s.in_w + w].mul_add(xp[h * s.in_w + w], cumvalues);
            }
        }
        *yo = cumvalues / cumsum;
    }
    y
}

#[test]
fn stochastic_pooling_matches_caffe_kernels() {
    let mut rng = Rng::new(5);
    // Stochastic pooling takes no padding.
    for s in geometries().into_iter().filter(|s| s.pad_h == 0 && s.pad_w == 0) {
        for (key, specials) in [(11u64, false), (12, true)] {
            // Nonnegative inputs (after a ReLU) as Caffe's use, then any values.
            let mut x = values(&mut rng, s.in_len(), specials);
            if !specials {
                x.iter_mut().for_each(|v| *v = v.abs());
            }
            let u: Vec<f32> = (0..s.out_len() as u64).map(|i| stochastic_uniform(key, i)).collect();
            let (mut y, mut m) = (vec![7.0; s.out_len()], vec![7.0; s.out_len()]);
            Cpu.stochastic_pool_forward_train(&s, key, &x, &mut y, &mut m).unwrap();
            let (ry, rm) = ref_stochastic_train(&s, &x, &u);
            assert!(same(&y, &ry), "{s:?}: stochastic values");
            assert!(same(&m, &rm), "{s:?}: stochastic picks");
            let mut y = vec![7.0; s.out_len()];
            Cpu.stochastic_pool_forward_test(&s, &x, &mut y).unwrap();
            assert!(same(&y, &ref_stochastic_test(&s, &x)), "{s:?}: stochastic test");
        }
    }
}

#[test]
fn stochastic_pooling_picks_in_proportion_to_the_values() {
    // One window of 1, 2, 3, 4 (and a zero, never picked), drawn 40,000 times.
    let s = spec(1, (1, 5), (1, 5), (1, 1), (0, 0));
    let x = vec![1.0, 0.0, 2.0, 3.0, 4.0];
    let mut counts = [0usize; 5];
    let (mut y, mut m) = (vec![0.0], vec![0.0]);
    for key in 0..40_000u64 {
        Cpu.stochastic_pool_forward_train(&s, key, &x, &mut y, &mut m).unwrap();
        let i = m[0] as usize;
        assert_eq!(y[0], x[i]);
        counts[i] += 1;
    }
    assert_eq!(counts[1], 0);
    for (i, want) in [(0, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)] {
        let f = counts[i] as f64 / 40_000.0;
        // Binomial standard deviation at most 0.0025: 0.01 is four of them.
        assert!((f - want).abs() < 0.01, "element {i} picked {f} of the time, expected {want}");
    }
    // The draws lie in (0, 1]: never 0, so an all-zero window picks its first element.
    assert!((0..100_000u64).map(|i| stochastic_uniform(3, i)).all(|u| u > 0.0 && u <= 1.0));
    let x = vec![0.0; 5];
    Cpu.stochastic_pool_forward_train(&s, 9, &x, &mut y, &mut m).unwrap();
    assert_eq!((y[0], m[0]), (0.0, 0.0));
    // Test time: (1 + 4 + 9 + 16) / (10 + FLT_MIN).
    Cpu.stochastic_pool_forward_test(&s, &vec![1.0, 0.0, 2.0, 3.0, 4.0], &mut y).unwrap();
    assert_eq!(y[0], 3.0);
    // A window past the input (width 4, kernel 1, stride 2): 0 and no pick, which backward skips.
    let s = spec(1, (1, 4), (1, 1), (1, 2), (0, 0));
    let (mut y, mut m) = (vec![5.0; 3], vec![5.0; 3]);
    Cpu.stochastic_pool_forward_train(&s, 1, &vec![1.0, 2.0, 3.0, 4.0], &mut y, &mut m).unwrap();
    assert_eq!((y, m.clone()), (vec![1.0, 3.0, 0.0], vec![0.0, 2.0, -1.0]));
    let mut dx = vec![9.0; 4];
    Cpu.max_pool_backward(&s, &vec![1.0, 2.0, 3.0], &m, &mut dx).unwrap();
    assert_eq!(dx, [1.0, 0.0, 2.0, 0.0]);
}
