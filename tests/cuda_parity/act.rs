//! Activations on the CPU and on CUDA: every element-wise function (in place and not, forward
//! and backward), Swish, PReLU, Dropout and the LSTM unit, on random inputs with NaN,
//! infinities, zeros of both signs and subnormals among them.

use super::*;
use crema::backend::random_bits;

/// How close the GPU must be to the CPU.
#[derive(Clone, Copy, Debug)]
enum Tol {
    /// The same bits (NaN matching NaN).
    Exact,
    /// Within this many ulps, or this absolute difference (see [`assert_ulps`]).
    Ulps(u32, f32),
}

fn check(what: &str, got: &[f32], want: &[f32], tol: Tol) {
    match tol {
        Tol::Exact => assert_same(what, got, want),
        Tol::Ulps(u, a) => assert_ulps(what, got, want, u, a),
    }
}

/// `n` values uniform in `[lo, hi)`, then the special values.
fn inputs(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|_| rng.uniform_range(lo, hi)).collect();
    v.extend([
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-40,
        -1e-40,
        1.0,
        -1.0,
        60.0,
        -60.0,
        1e30,
        -1e30,
    ]);
    v
}

/// One function: forward on both backends (in place and not), then backward from the CPU's
/// top data (so that only the gradient's arithmetic is compared), in place and not.
fn check_activation(g: &Cuda, f: Activation, x: &[f32], fwd: Tol, bwd: Tol) {
    let cpu = Cpu::new();
    let n = x.len();
    let mut y = vec![0f32; n];
    cpu.activation_forward(f, Io::Pair(&x.to_vec(), &mut y)).unwrap();
    let gx = up(g, x);
    let mut gy = g.alloc(n).unwrap();
    g.activation_forward(f, Io::Pair(&gx, &mut gy))
        .unwrap_or_else(|e| panic!("{f:?}: {e}"));
    check(&format!("{f:?} forward"), &down(g, &gy), &y, fwd);
    let mut gin = up(g, x);
    g.activation_forward(f, Io::InPlace(&mut gin)).unwrap();
    check(&format!("{f:?} forward in place"), &down(g, &gin), &y, fwd);
    if let Activation::Threshold { .. } = f {
        let mut gd = up(g, x);
        let err = g
            .activation_backward(f, &gx, &gx, Io::InPlace(&mut gd))
            .expect_err("Threshold has no backward");
        assert!(err.to_string().contains("Threshold has no backward"), "{err}");
        return;
    }
    let dy = random(&mut Rng::new(n as u64), n);
    let mut dx = vec![0f32; n];
    cpu.activation_backward(f, &x.to_vec(), &y, Io::Pair(&dy, &mut dx))
        .unwrap();
    let (gyc, gdy) = (up(g, &y), up(g, &dy));
    let mut gdx = g.alloc(n).unwrap();
    g.activation_backward(f, &gx, &gyc, Io::Pair(&gdy, &mut gdx)).unwrap();
    check(&format!("{f:?} backward"), &down(g, &gdx), &dx, bwd);
    // In place, as a layer that ran in place calls it: bottom and top data are one buffer.
    let mut d = dy.clone();
    cpu.activation_backward(f, &y, &y, Io::InPlace(&mut d)).unwrap();
    let mut gd = up(g, &dy);
    g.activation_backward(f, &gyc, &gyc, Io::InPlace(&mut gd)).unwrap();
    check(&format!("{f:?} backward in place"), &down(g, &gd), &d, bwd);
}

#[test]
fn element_wise_activations_match_the_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(11);
    let n = 100_003;
    let ln10 = 10f32.ln();
    // (function, input range, forward tolerance, backward tolerance). Single-precision
    // transcendental forwards may differ by an ulp or two (libm's expf, logf, tanhf, powf are
    // within 0.8 to 2 ulps of the exact value, the GPU's double functions rounded once within
    // half an ulp; measured: at most 2 apart, 3 allowed); functions the CPU computes in double
    // agree but for double-rounding ties; every gradient is plain arithmetic on the same inputs
    // (BNLL's and Log's go through exp and a reciprocal).
    #[rustfmt::skip]
    let cases = [
        (Activation::ReLU { negative_slope: 0.0 }, -3.0, 3.0, Tol::Exact, Tol::Exact),
        (Activation::ReLU { negative_slope: 0.1 }, -3.0, 3.0, Tol::Exact, Tol::Exact),
        (Activation::Sigmoid, -10.0, 10.0, Tol::Ulps(1, 0.0), Tol::Exact),
        (Activation::TanH, -5.0, 5.0, Tol::Ulps(3, 0.0), Tol::Exact),
        (Activation::AbsVal, -3.0, 3.0, Tol::Exact, Tol::Exact),
        (Activation::BNLL, -60.0, 60.0, Tol::Ulps(1, 0.0), Tol::Ulps(2, 0.0)),
        // alpha * (exp(x) - 1) cancels near 0: an ulp of exp's result, times alpha.
        (Activation::ELU { alpha: 0.7 }, -4.0, 4.0, Tol::Ulps(3, 1.5e-7), Tol::Exact),
        (Activation::Power { power: 2.0, scale: 0.5, shift: 1.0 }, -3.0, 3.0, Tol::Ulps(3, 0.0), Tol::Exact),
        (Activation::Power { power: 1.0, scale: 2.0, shift: -0.5 }, -3.0, 3.0, Tol::Exact, Tol::Exact),
        (Activation::Power { power: 0.5, scale: 1.0, shift: 0.0 }, 0.1, 3.0, Tol::Ulps(3, 0.0), Tol::Exact),
        (Activation::Power { power: 3.0, scale: 0.7, shift: 0.2 }, 0.1, 3.0, Tol::Ulps(3, 0.0), Tol::Exact),
        (Activation::Power { power: -1.5, scale: 2.0, shift: 1.0 }, 0.1, 3.0, Tol::Ulps(3, 0.0), Tol::Exact),
        (Activation::Power { power: 0.0, scale: 2.0, shift: 3.0 }, -3.0, 3.0, Tol::Exact, Tol::Exact),
        (Activation::Power { power: 2.0, scale: 0.0, shift: 3.0 }, -3.0, 3.0, Tol::Exact, Tol::Exact),
        (Activation::Exp { inner_scale: 2f32.ln() * 0.5, outer_scale: 2f32.powf(0.1) }, -8.0, 8.0, Tol::Ulps(3, 0.0), Tol::Exact),
        (Activation::Exp { inner_scale: 1.0, outer_scale: 1.0 }, -8.0, 8.0, Tol::Ulps(3, 0.0), Tol::Exact),
        (Activation::Log { scale: 0.5, shift: 0.3, base_scale: 1.0 / ln10, backward_num_scale: 0.5 / ln10 }, 0.05, 5.0, Tol::Ulps(3, 0.0), Tol::Ulps(2, 0.0)),
        (Activation::Log { scale: 1.0, shift: 0.0, base_scale: 1.0, backward_num_scale: 1.0 }, 0.05, 5.0, Tol::Ulps(3, 0.0), Tol::Ulps(2, 0.0)),
        (Activation::Threshold { threshold: 0.2 }, -1.0, 1.0, Tol::Exact, Tol::Exact),
        (Activation::Clip { min: -1.0, max: 2.0 }, -3.0, 3.0, Tol::Exact, Tol::Exact),
    ];
    for (f, lo, hi, fwd, bwd) in cases {
        let x = inputs(&mut rng, n, lo, hi);
        check_activation(g, f, &x, fwd, bwd);
    }
    // Lengths are checked.
    let mut short = g.alloc(3).unwrap();
    assert!(
        g.activation_forward(Activation::TanH, Io::Pair(&g.alloc(4).unwrap(), &mut short))
            .is_err()
    );
}

#[test]
fn swish_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(12);
    let x = inputs(&mut rng, 70_001, -6.0, 6.0);
    let n = x.len();
    let dy = random(&mut rng, n);
    for beta in [1.0f32, 0.5, 2.0] {
        let (mut y, mut sig) = (vec![0f32; n], vec![0f32; n]);
        cpu.swish_forward(beta, Io::Pair(&x, &mut y), &mut sig).unwrap();
        let (gx, mut gy, mut gsig) = (up(g, &x), g.alloc(n).unwrap(), g.alloc(n).unwrap());
        g.swish_forward(beta, Io::Pair(&gx, &mut gy), &mut gsig).unwrap();
        // The sigmoid is computed in double on both: equal save double-rounding ties.
        assert_ulps(&format!("swish sigmoid beta={beta}"), &down(g, &gsig), &sig, 1, 0.0);
        assert_ulps(&format!("swish forward beta={beta}"), &down(g, &gy), &y, 1, 0.0);
        let (mut gin, mut gsig2) = (up(g, &x), g.alloc(n).unwrap());
        g.swish_forward(beta, Io::InPlace(&mut gin), &mut gsig2).unwrap();
        assert_bits("swish forward in place", &down(g, &gin), &down(g, &gy));

        let mut dx = vec![0f32; n];
        cpu.swish_backward(beta, &y, &sig, Io::Pair(&dy, &mut dx)).unwrap();
        let (gyc, gsc, gdy) = (up(g, &y), up(g, &sig), up(g, &dy));
        let mut gdx = g.alloc(n).unwrap();
        g.swish_backward(beta, &gyc, &gsc, Io::Pair(&gdy, &mut gdx)).unwrap();
        assert_same(&format!("swish backward beta={beta}"), &down(g, &gdx), &dx);
        let mut gd = up(g, &dy);
        g.swish_backward(beta, &gyc, &gsc, Io::InPlace(&mut gd)).unwrap();
        assert_same("swish backward in place", &down(g, &gd), &dx);
    }
}

#[test]
fn prelu_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(13);
    for (num, channels, dim) in [(2, 3, 7), (3, 2, 70_000), (1, 4, 1), (6, 64, 4096)] {
        for shared in [false, true] {
            let what = format!("prelu {num}x{channels}x{dim} shared={shared}");
            let count = num * channels * dim;
            let (x, dy) = (random(&mut rng, count), random(&mut rng, count));
            let slope = if shared { vec![0.3] } else { random(&mut rng, channels) };
            let (gx, gdy, gslope) = (up(g, &x), up(g, &dy), up(g, &slope));
            let mut y = vec![0f32; count];
            cpu.prelu_forward(channels, dim, shared, &slope, Io::Pair(&x, &mut y))
                .unwrap();
            let mut gy = g.alloc(count).unwrap();
            g.prelu_forward(channels, dim, shared, &gslope, Io::Pair(&gx, &mut gy))
                .unwrap();
            assert_bits(&format!("{what} forward"), &down(g, &gy), &y);
            let mut gin = up(g, &x);
            g.prelu_forward(channels, dim, shared, &gslope, Io::InPlace(&mut gin))
                .unwrap();
            assert_bits(&format!("{what} forward in place"), &down(g, &gin), &y);

            let mut dx = vec![0f32; count];
            cpu.prelu_backward_data(channels, dim, shared, &slope, &x, Io::Pair(&dy, &mut dx))
                .unwrap();
            let mut gdx = g.alloc(count).unwrap();
            g.prelu_backward_data(channels, dim, shared, &gslope, &gx, Io::Pair(&gdy, &mut gdx))
                .unwrap();
            assert_bits(&format!("{what} backward data"), &down(g, &gdx), &dx);
            let mut gd = up(g, &dy);
            g.prelu_backward_data(channels, dim, shared, &gslope, &gx, Io::InPlace(&mut gd))
                .unwrap();
            assert_bits(&format!("{what} backward data in place"), &down(g, &gd), &dx);

            // The slope gradient accumulates a sum: close to the CPU's, and the same bits again.
            let ds0 = random(&mut rng, slope.len());
            let mut ds = ds0.clone();
            cpu.prelu_backward_slope(channels, dim, shared, &x, &dy, &mut ds)
                .unwrap();
            let mut scale = abs(&ds0);
            let neg: Vec<f32> = x.iter().map(|&v| if v <= 0.0 { v.abs() } else { 0.0 }).collect();
            cpu.prelu_backward_slope(channels, dim, shared, &neg, &abs(&dy), &mut scale)
                .unwrap();
            let mut gds = up(g, &ds0);
            g.prelu_backward_slope(channels, dim, shared, &gx, &gdy, &mut gds)
                .unwrap();
            let got = down(g, &gds);
            assert_close(&format!("{what} backward slope"), &got, &ds, Some(&scale), 1e-6);
            let mut again = up(g, &ds0);
            g.prelu_backward_slope(channels, dim, shared, &gx, &gdy, &mut again)
                .unwrap();
            assert_bits(&format!("{what} backward slope repeated"), &down(g, &again), &got);
        }
    }
    let (x, mut y) = (g.alloc(12).unwrap(), g.alloc(12).unwrap());
    let err = g
        .prelu_forward(5, 2, false, &g.alloc(5).unwrap(), Io::Pair(&x, &mut y))
        .expect_err("12 is not a multiple of 5 x 2");
    assert!(matches!(err, crema::Error::Internal(_)), "{err}");
}

#[test]
fn dropout_draws_the_cpus_mask() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(14);
    let n = 3 * 16384 + 101;
    let x = random(&mut rng, n);
    for (key, ratio) in [(42u64, 0.3f32), (u64::MAX - 5, 0.5), (7, 0.0), (9, 0.9)] {
        let threshold = (ratio as f64 * 4_294_967_296.0).floor() as u32;
        let scale = (1.0 / (1.0 - ratio as f64)) as f32;
        let (mut y, mut mask) = (vec![0f32; n], vec![0f32; n]);
        cpu.dropout_forward(key, threshold, scale, Io::Pair(&x, &mut y), &mut mask)
            .unwrap();
        let (gx, mut gy, mut gm) = (up(g, &x), g.alloc(n).unwrap(), g.alloc(n).unwrap());
        g.dropout_forward(key, threshold, scale, Io::Pair(&gx, &mut gy), &mut gm)
            .unwrap();
        let gmask = down(g, &gm);
        assert_bits(&format!("dropout mask key={key}"), &gmask, &mask);
        assert!(
            gmask
                .iter()
                .enumerate()
                .all(|(i, &m)| (m == 1.0) == (random_bits(key, i as u64) >= threshold))
        );
        assert_bits(&format!("dropout forward key={key}"), &down(g, &gy), &y);
        let (mut gin, mut gm2) = (up(g, &x), g.alloc(n).unwrap());
        g.dropout_forward(key, threshold, scale, Io::InPlace(&mut gin), &mut gm2)
            .unwrap();
        assert_bits("dropout forward in place", &down(g, &gin), &y);
        assert_bits("dropout mask in place", &down(g, &gm2), &mask);

        let dy = random(&mut rng, n);
        let mut dx = vec![0f32; n];
        cpu.dropout_backward(scale, &mask, Io::Pair(&dy, &mut dx)).unwrap();
        let mut gdx = g.alloc(n).unwrap();
        g.dropout_backward(scale, &gm, Io::Pair(&up(g, &dy), &mut gdx)).unwrap();
        assert_bits("dropout backward", &down(g, &gdx), &dx);
        let mut gd = up(g, &dy);
        g.dropout_backward(scale, &gm, Io::InPlace(&mut gd)).unwrap();
        assert_bits("dropout backward in place", &down(g, &gd), &dx);
    }
}

/// LSTMUnit's forward and backward (both diffs, and each alone) on random gate inputs with
/// saturating and special values among them, continuation indicators 1, 0, -0 and 0.5 (Caffe
/// multiplies the forget gate by any non-zero `cont`). Both backends compute each element in
/// double and round once; the only libm call is double `tanh`, so the results are the CPU's
/// bits save double-rounding ties (the emulator, on the host's libm, gives the same bits), or an
/// absolute 1e-12 where a gate's `1 - s` cancels.
#[test]
fn lstm_unit_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(15);
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-40, 40.0, -40.0, 1e30, -1e30];
    let tol = |what: &str, got: &[f32], want: &[f32]| assert_ulps(what, got, want, 1, 1e-12);
    for (num, dim) in [(1, 1), (3, 7), (64, 300), (300, 129), (5, 0), (0, 4)] {
        let what = |pass: &str| format!("lstm unit {num}x{dim} {pass}");
        let (cells, gates) = (num * dim, 4 * num * dim);
        let mut x: Vec<f32> = (0..gates).map(|_| rng.uniform_range(-8.0, 8.0)).collect();
        for (k, v) in x.iter_mut().enumerate().filter(|(k, _)| k % 37 == 5) {
            *v = specials[(k / 37) % specials.len()];
        }
        let mut c_prev: Vec<f32> = (0..cells).map(|_| rng.uniform_range(-3.0, 3.0)).collect();
        for (k, v) in c_prev.iter_mut().enumerate().filter(|(k, _)| k % 53 == 11) {
            *v = [f32::NAN, f32::INFINITY, -0.0][(k / 53) % 3];
        }
        let cont: Vec<f32> = (0..num).map(|k| [1.0, 0.0, 1.0, -0.0, 0.5][k % 5]).collect();
        let (dc, dh) = (random(&mut rng, cells), random(&mut rng, cells));

        let (mut c, mut h) = (vec![0f32; cells], vec![0f32; cells]);
        cpu.lstm_unit_forward(num, dim, &c_prev, &x, &cont, &mut c, &mut h).unwrap();
        let (gcp, gx, gcont) = (up(g, &c_prev), up(g, &x), up(g, &cont));
        let (mut gc, mut gh) = (up(g, &random(&mut rng, cells)), up(g, &random(&mut rng, cells)));
        g.lstm_unit_forward(num, dim, &gcp, &gx, &gcont, &mut gc, &mut gh)
            .unwrap_or_else(|e| panic!("{}: {e}", what("forward")));
        tol(&what("forward c"), &down(g, &gc), &c);
        tol(&what("forward h"), &down(g, &gh), &h);

        // Backward from the CPU's c, so that only the gradient's arithmetic is compared.
        let (mut dcp, mut dx) = (vec![0f32; cells], vec![0f32; gates]);
        cpu.lstm_unit_backward(num, dim, &c_prev, &x, &cont, &c, &dc, &dh, Some(&mut dcp), Some(&mut dx))
            .unwrap();
        let (gcc, gdc, gdh) = (up(g, &c), up(g, &dc), up(g, &dh));
        let (dcp0, dx0) = (random(&mut rng, cells), random(&mut rng, gates));
        let (mut gdcp, mut gdx) = (up(g, &dcp0), up(g, &dx0));
        g.lstm_unit_backward(num, dim, &gcp, &gx, &gcont, &gcc, &gdc, &gdh, Some(&mut gdcp), Some(&mut gdx))
            .unwrap_or_else(|e| panic!("{}: {e}", what("backward")));
        tol(&what("backward c_prev"), &down(g, &gdcp), &dcp);
        tol(&what("backward x"), &down(g, &gdx), &dx);
        // Each diff alone (the kernel given a null pointer for the other) gives the same values.
        let (mut only_dcp, mut only_dx) = (up(g, &dcp0), up(g, &dx0));
        g.lstm_unit_backward(num, dim, &gcp, &gx, &gcont, &gcc, &gdc, &gdh, Some(&mut only_dcp), None).unwrap();
        assert_bits(&what("backward c_prev alone"), &down(g, &only_dcp), &down(g, &gdcp));
        g.lstm_unit_backward(num, dim, &gcp, &gx, &gcont, &gcc, &gdc, &gdh, None, Some(&mut only_dx)).unwrap();
        assert_bits(&what("backward x alone"), &down(g, &only_dx), &down(g, &gdx));
        g.lstm_unit_backward(num, dim, &gcp, &gx, &gcont, &gcc, &gdc, &gdh, None, None).unwrap();
    }
    // Lengths that do not fit are an error, not a fault.
    let (cp, x, cont) = (g.alloc(6).unwrap(), g.alloc(23).unwrap(), g.alloc(2).unwrap());
    let (mut c, mut h) = (g.alloc(6).unwrap(), g.alloc(6).unwrap());
    let err = g.lstm_unit_forward(2, 3, &cp, &x, &cont, &mut c, &mut h).expect_err("23 gate inputs for 2 x 3 cells");
    assert!(matches!(err, crema::Error::Internal(_)), "{err}");
    let mut dx = g.alloc(20).unwrap();
    let x = g.alloc(24).unwrap();
    let err = g
        .lstm_unit_backward(2, 3, &cp, &x, &cont, &c, &c, &h, None, Some(&mut dx))
        .expect_err("a gate diff of 20 for 2 x 3 cells");
    assert!(matches!(err, crema::Error::Internal(_)), "{err}");
}
