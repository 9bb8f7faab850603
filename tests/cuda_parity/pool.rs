//! Pooling and SegNet's upsampling on the CPU and on CUDA: every output, mask and gradient
//! bit for bit (the GPU's gradients gather in the CPU's order), and bad masks reported with
//! the CPU's error.

use super::*;
use crema::backend::{PoolSpec, Pooling};

/// Caffe's pooled extent along one axis (ceil rounding, the last window starting inside the
/// padded input).
fn pooled(input: usize, kernel: usize, stride: usize, pad: usize) -> usize {
    let mut out = (input + 2 * pad - kernel).div_ceil(stride) + 1;
    if pad > 0 && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn spec(
    planes: usize,
    in_h: usize,
    in_w: usize,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    extra: usize,
) -> PoolSpec {
    PoolSpec {
        planes,
        in_h,
        in_w,
        out_h: pooled(in_h, k.0, s.0, p.0) + extra,
        out_w: pooled(in_w, k.1, s.1, p.1) + extra,
        kernel_h: k.0,
        kernel_w: k.1,
        stride_h: s.0,
        stride_w: s.1,
        pad_h: p.0,
        pad_w: p.1,
    }
}

/// Geometries: SegNet's 2x2/2 (even, odd, large), overlapping 3x3/2 windows with padding,
/// rectangular ones, a stride above the kernel, global pooling, and windows wholly past the
/// input (an output extent one larger than Caffe's).
fn specs() -> Vec<(&'static str, PoolSpec)> {
    vec![
        ("2x2/2 even", spec(6, 16, 16, (2, 2), (2, 2), (0, 0), 0)),
        (
            "2x2/2 odd (clipped last row and column)",
            spec(5, 9, 11, (2, 2), (2, 2), (0, 0), 0),
        ),
        ("2x2/2 SegNet-sized", spec(2 * 64, 128, 128, (2, 2), (2, 2), (0, 0), 0)),
        ("3x3/2 pad 1 (overlapping)", spec(4, 13, 10, (3, 3), (2, 2), (1, 1), 0)),
        (
            "3x2/1x2 pad 1x0 (rectangular)",
            spec(3, 7, 9, (3, 2), (1, 2), (1, 0), 0),
        ),
        ("2x2/3 (gaps)", spec(3, 10, 11, (2, 2), (3, 3), (0, 0), 0)),
        ("global", spec(7, 6, 5, (6, 5), (1, 1), (0, 0), 0)),
        ("windows past the input", spec(2, 5, 6, (2, 2), (3, 3), (0, 0), 1)),
        (
            "padded, windows past the padded input",
            spec(2, 5, 5, (3, 3), (2, 2), (1, 1), 1),
        ),
    ]
}

/// Values on a coarse grid (ties in most windows), with -inf, NaN and -FLT_MAX among them.
fn scores(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.below(50) {
            0 => f32::NEG_INFINITY,
            1 => f32::NAN,
            2 => -f32::MAX,
            _ => (rng.below(9) as f32 - 4.0) * 0.25,
        })
        .collect()
}

#[test]
fn max_pooling_forward_and_backward_give_the_cpus_bits() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(21);
    for (name, s) in specs() {
        let x = scores(&mut rng, s.in_len());
        let (mut y, mut mask) = (vec![0f32; s.out_len()], vec![0f32; s.out_len()]);
        cpu.max_pool_forward(&s, &x, &mut y, &mut mask).unwrap();
        let (gx, mut gy, mut gm) = (up(g, &x), g.alloc(s.out_len()).unwrap(), g.alloc(s.out_len()).unwrap());
        g.max_pool_forward(&s, &gx, &mut gy, &mut gm)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_bits(&format!("max pool {name}: top"), &down(g, &gy), &y);
        assert_bits(&format!("max pool {name}: mask"), &down(g, &gm), &mask);

        let dy = random(&mut rng, s.out_len());
        let mut dx = vec![0f32; s.in_len()];
        cpu.max_pool_backward(&s, &dy, &mask, &mut dx).unwrap();
        let mut gdx = up(g, &random(&mut rng, s.in_len()));
        g.max_pool_backward(&s, &up(g, &dy), &gm, &mut gdx)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_bits(&format!("max pool {name}: backward"), &down(g, &gdx), &dx);
    }
}

#[test]
fn max_pooling_backward_takes_any_mask_the_cpu_takes() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(22);
    let s = spec(3, 8, 9, (3, 3), (2, 2), (1, 1), 0);
    let (ip, op) = (s.in_plane(), s.out_plane());
    // Entries anywhere in the plane (mostly outside their window), Caffe's -1, values in
    // (-1, 0) (index 0) and fractions (truncated).
    let mask: Vec<f32> = (0..s.out_len())
        .map(|_| match rng.below(6) {
            0 => -1.0,
            1 => -0.5,
            2 => rng.below(ip) as f32 + 0.75,
            _ => rng.below(ip) as f32,
        })
        .collect();
    let dy = random(&mut rng, s.out_len());
    let mut dx = vec![0f32; s.in_len()];
    cpu.max_pool_backward(&s, &dy, &mask, &mut dx).unwrap();
    let mut gdx = g.alloc(s.in_len()).unwrap();
    g.max_pool_backward(&s, &up(g, &dy), &up(g, &mask), &mut gdx).unwrap();
    assert_bits("max pool backward, foreign mask", &down(g, &gdx), &dx);

    // Bad entries: the CPU's error, naming the first one.
    for (at, value) in [(op + 5, ip as f32), (2 * op - 1, f32::NAN), (4, 1e9)] {
        let mut bad = mask.clone();
        bad[at] = value;
        if at != 4 {
            bad[s.out_len() - 1] = -7.0e9; // later, and ignorable (< -1): not the one named
        }
        let want = cpu
            .max_pool_backward(&s, &dy, &bad, &mut dx)
            .expect_err("a bad mask")
            .to_string();
        let got = g
            .max_pool_backward(&s, &up(g, &dy), &up(g, &bad), &mut gdx)
            .and_then(|_| g.synchronize())
            .expect_err("a bad mask")
            .to_string();
        assert_eq!(got, want);
    }
}

#[test]
fn stochastic_pooling_gives_the_cpus_bits() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(25);
    // Stochastic pooling takes no padding.
    for (name, s) in specs().into_iter().filter(|(_, s)| s.pad_h == 0 && s.pad_w == 0) {
        for (key, values) in [(31u64, "nonnegative"), (32, "any")] {
            let mut x = scores(&mut rng, s.in_len());
            if values == "nonnegative" {
                x = random(&mut rng, s.in_len()).iter().map(|v| v.abs()).collect();
            }
            let (mut y, mut mask) = (vec![0f32; s.out_len()], vec![0f32; s.out_len()]);
            cpu.stochastic_pool_forward_train(&s, key, &x, &mut y, &mut mask).unwrap();
            let (gx, mut gy, mut gm) = (up(g, &x), g.alloc(s.out_len()).unwrap(), g.alloc(s.out_len()).unwrap());
            g.stochastic_pool_forward_train(&s, key, &gx, &mut gy, &mut gm)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_same(&format!("stochastic pool {name} ({values}): top"), &down(g, &gy), &y);
            assert_bits(&format!("stochastic pool {name} ({values}): picks"), &down(g, &gm), &mask);

            let mut y = vec![0f32; s.out_len()];
            cpu.stochastic_pool_forward_test(&s, &x, &mut y).unwrap();
            g.stochastic_pool_forward_test(&s, &gx, &mut gy)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_same(&format!("stochastic pool {name} ({values}): test top"), &down(g, &gy), &y);
        }
    }
}

#[test]
fn average_pooling_forward_and_backward_give_the_cpus_bits() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(23);
    for (name, s) in specs() {
        let x = random(&mut rng, s.in_len());
        let mut y = vec![0f32; s.out_len()];
        cpu.ave_pool_forward(&s, &x, &mut y).unwrap();
        let mut gy = g.alloc(s.out_len()).unwrap();
        g.ave_pool_forward(&s, &up(g, &x), &mut gy)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Windows wholly past the padded input divide 0 by 0: NaN on both, of other signs.
        assert_same(&format!("ave pool {name}: top"), &down(g, &gy), &y);

        let dy = random(&mut rng, s.out_len());
        let mut dx = vec![0f32; s.in_len()];
        cpu.ave_pool_backward(&s, &dy, &mut dx).unwrap();
        let mut gdx = up(g, &random(&mut rng, s.in_len()));
        g.ave_pool_backward(&s, &up(g, &dy), &mut gdx)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_bits(&format!("ave pool {name}: backward"), &down(g, &gdx), &dx);
    }
}

#[test]
fn upsampling_gives_the_cpus_bits_and_later_entries_win() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(24);
    // Masks from max pooling (SegNet's, without duplicates; overlapping windows, with them),
    // and random masks with many duplicates, fractions and values in (-1, 0).
    let mut cases: Vec<(String, usize, usize, usize, Vec<f32>)> = Vec::new();
    for (name, s) in [specs()[0].clone(), specs()[2].clone(), specs()[3].clone()] {
        // Finite inputs: a window of only -inf or NaN would give -1, which upsampling refuses.
        let x = random(&mut rng, s.in_len());
        let (mut y, mut mask) = (vec![0f32; s.out_len()], vec![0f32; s.out_len()]);
        cpu.max_pool_forward(&s, &x, &mut y, &mut mask).unwrap();
        assert!(mask.iter().all(|&m| m >= 0.0), "{name}");
        cases.push((format!("pool mask {name}"), s.planes, s.out_plane(), s.in_plane(), mask));
    }
    let (planes, in_plane, out_plane) = (5, 40, 23);
    let random_mask: Vec<f32> = (0..planes * in_plane)
        .map(|_| match rng.below(5) {
            0 => -0.5,
            1 => rng.below(out_plane) as f32 + 0.5,
            _ => rng.below(out_plane) as f32,
        })
        .collect();
    cases.push((
        "random mask with duplicates".into(),
        planes,
        in_plane,
        out_plane,
        random_mask,
    ));
    for (name, planes, in_plane, out_plane, mask) in cases {
        let x = random(&mut rng, planes * in_plane);
        let mut y = vec![0f32; planes * out_plane];
        cpu.upsample_forward(planes, in_plane, out_plane, &x, &mask, &mut y)
            .unwrap();
        let (gx, gm) = (up(g, &x), up(g, &mask));
        let mut gy = up(g, &random(&mut rng, planes * out_plane));
        g.upsample_forward(planes, in_plane, out_plane, &gx, &gm, &mut gy)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_bits(&format!("upsample {name}: forward"), &down(g, &gy), &y);

        let dy = random(&mut rng, planes * out_plane);
        let mut dx = vec![0f32; planes * in_plane];
        cpu.upsample_backward(planes, in_plane, out_plane, &dy, &mask, &mut dx)
            .unwrap();
        let mut gdx = g.alloc(planes * in_plane).unwrap();
        g.upsample_backward(planes, in_plane, out_plane, &up(g, &dy), &gm, &mut gdx)
            .unwrap();
        assert_bits(&format!("upsample {name}: backward"), &down(g, &gdx), &dx);
    }
}

#[test]
fn bad_upsampling_masks_fail_as_on_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let (planes, in_plane, out_plane) = (3, 10, 16);
    let x: Vec<f32> = (0..planes * in_plane).map(|i| i as f32).collect();
    let good: Vec<f32> = (0..planes * in_plane).map(|i| (i % in_plane) as f32).collect();
    for (at, value) in [(14, 16.0), (25, -1.0), (3, f32::NAN), (29, 1e20), (10, -3.5)] {
        let mut mask = good.clone();
        mask[at] = value;
        mask[planes * in_plane - 1] = 99.0; // a later bad entry: not the one named
        let mut y = vec![0f32; planes * out_plane];
        let want = cpu
            .upsample_forward(planes, in_plane, out_plane, &x, &mask, &mut y)
            .expect_err("bad mask")
            .to_string();
        let mut gy = g.alloc(planes * out_plane).unwrap();
        // Found on the device, reported by the next wait.
        let got = g
            .upsample_forward(planes, in_plane, out_plane, &up(g, &x), &up(g, &mask), &mut gy)
            .and_then(|_| g.synchronize())
            .expect_err("bad mask");
        assert!(matches!(got, crema::Error::Shape(_)), "{got}");
        assert_eq!(got.to_string(), want);

        let mut dx = vec![0f32; planes * in_plane];
        let dy = vec![1f32; planes * out_plane];
        let want = cpu
            .upsample_backward(planes, in_plane, out_plane, &dy, &mask, &mut dx)
            .expect_err("bad mask")
            .to_string();
        let mut gdx = g.alloc(planes * in_plane).unwrap();
        let got = g
            .upsample_backward(planes, in_plane, out_plane, &up(g, &dy), &up(g, &mask), &mut gdx)
            .and_then(|_| g.synchronize())
            .expect_err("bad mask");
        assert_eq!(got.to_string(), want);
    }
    // An output plane of no elements: every entry is bad, the first is named.
    let mut y: Vec<f32> = Vec::new();
    let want = cpu
        .upsample_forward(planes, in_plane, 0, &x, &good, &mut y)
        .expect_err("empty plane")
        .to_string();
    let got = g
        .upsample_forward(planes, in_plane, 0, &up(g, &x), &up(g, &good), &mut g.alloc(0).unwrap())
        .and_then(|_| g.synchronize())
        .expect_err("empty plane");
    assert_eq!(got.to_string(), want);
}

/// A net whose Upsample takes its mask from an input: the bad entry is found on the device,
/// reported at the net's next wait (here the read of the loss, two layers later), and the error
/// names the Upsample layer and says what the CPU says.
#[test]
fn a_bad_mask_in_a_net_names_its_layer() {
    let Some(g) = gpu() else { return };
    let text = r#"
        layer { name: "in" type: "Input" top: "x" top: "mask"
                input_param { shape { dim: 1 dim: 2 dim: 2 dim: 2 } shape { dim: 1 dim: 2 dim: 2 dim: 2 } } }
        layer { name: "unpool" type: "Upsample" bottom: "x" bottom: "mask" top: "y" upsample_param { scale: 2 } }
        layer { name: "act" type: "ReLU" bottom: "y" top: "z" }
        layer { name: "loss" type: "Reduction" bottom: "z" top: "loss" loss_weight: 1 }
    "#;
    let param: crema::proto::NetParameter = crema::prototxt::parse(text, "bad_mask.prototxt").unwrap();
    let x: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let mut mask = vec![0f32, 5.0, 10.0, 15.0, 0.0, 5.0, 10.0, 15.0];
    mask[6] = 16.0; // plane 1, entry 2: not an index into a 4x4 plane
    fn forward<B: crema::backend::Backend>(be: B, p: &crema::proto::NetParameter, x: &[f32], m: &[f32]) -> String {
        let mut net = crema::net::Net::new(be.clone(), p, 1).unwrap();
        net.blob_mut("x").unwrap().set_data(&be, x).unwrap();
        net.blob_mut("mask").unwrap().set_data(&be, m).unwrap();
        net.forward().expect_err("a bad mask").to_string()
    }
    let want = forward(Cpu::new(), &param, &x, &mask);
    let got = forward(g.clone(), &param, &x, &mask);
    assert!(got.contains("unpool") && got.contains("Upsample"), "{got}");
    assert_eq!(got, want);
}

/// Threads share a device: a bad mask found for one thread is reported to that thread's wait,
/// not to another thread waiting in between.
#[test]
fn a_bad_mask_is_reported_to_the_thread_that_queued_it() {
    let Some(g) = gpu() else { return };
    let (planes, in_plane, out_plane) = (2, 4, 16);
    let x: Vec<f32> = (0..planes * in_plane).map(|i| i as f32).collect();
    let mut mask: Vec<f32> = (0..planes * in_plane).map(|i| (i % in_plane) as f32).collect();
    mask[5] = 40.0;
    let (queued_tx, queued_rx) = std::sync::mpsc::channel();
    let (waited_tx, waited_rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let mut y = g.alloc(planes * out_plane).unwrap();
        g.upsample_forward(planes, in_plane, out_plane, &up(g, &x), &up(g, &mask), &mut y).unwrap();
        queued_tx.send(()).unwrap();
        waited_rx.recv().unwrap();
        g.synchronize().expect_err("this thread's bad mask").to_string()
    });
    queued_rx.recv().unwrap();
    // This thread queued nothing wrong: its wait succeeds, though it reads the other's check.
    g.synchronize().unwrap();
    waited_tx.send(()).unwrap();
    let got = other.join().unwrap();
    assert!(got.contains("mask value 40 at index 1 of plane 1"), "{got}");
}
