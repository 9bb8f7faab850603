//! Softmax and the loss and evaluation primitives on the CPU and on CUDA, for the
//! segmentation layout (two classes over 256x256 positions: one thread per position) and the
//! classifier layout (many classes, one position per item: one warp per position), in place
//! and not; bad labels reported as the CPU reports them; loss sums deterministic.

use super::*;
use crema::backend::{ArgMaxOutput, BadLabel, ClassAxis, LossSum, Losses};

fn axis(outer: usize, classes: usize, inner: usize) -> ClassAxis {
    ClassAxis { outer, classes, inner }
}

/// Layouts: thread per position (inner >= 32 or few classes) and warp per position.
fn layouts() -> Vec<(&'static str, ClassAxis)> {
    vec![
        ("segmentation 2 classes x 256x256", axis(2, 2, 65536)),
        ("classifier 1000 classes", axis(64, 1000, 1)),
        ("40 classes, inner 5 (warp)", axis(3, 40, 5)),
        ("33 classes, inner 1 (warp)", axis(300, 33, 1)),
        ("64 classes, inner 40 (thread)", axis(2, 64, 40)),
        ("small", axis(4, 5, 7)),
        ("one long row", axis(1, 3, 100_003)),
        ("one class", axis(5, 1, 9)),
    ]
}

/// Scores in [-10, 10), a few large ones (the maximum must be subtracted).
fn logits(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            if rng.below(100) == 0 {
                rng.uniform_range(500.0, 1000.0)
            } else {
                rng.uniform_range(-10.0, 10.0)
            }
        })
        .collect()
}

/// Labels: classes (some fractional, truncated), and the ignore label at about one position
/// in ten.
fn labels(rng: &mut Rng, a: &ClassAxis, ignore: i32) -> Vec<f32> {
    (0..a.positions())
        .map(|_| match rng.below(10) {
            0 => ignore as f32,
            1 => rng.below(a.classes) as f32 + 0.7,
            _ => rng.below(a.classes) as f32,
        })
        .collect()
}

fn softmax_cpu(a: &ClassAxis, x: &[f32]) -> Vec<f32> {
    let mut y = x.to_vec();
    Cpu::new().softmax_forward(a, Io::InPlace(&mut y)).unwrap();
    y
}

/// Loss sums: close (the terms' logarithms may differ by an ulp), the same count and bad label.
fn assert_loss(what: &str, got: LossSum, want: LossSum) {
    assert_eq!(got.valid, want.valid, "{what}: valid positions");
    let (g, w) = (
        got.bad.map(|b| (b.position, b.value.to_bits())),
        want.bad.map(|b| (b.position, b.value.to_bits())),
    );
    assert_eq!(g, w, "{what}: first bad label");
    let err = (got.loss - want.loss).abs() / want.loss.abs().max(f64::MIN_POSITIVE);
    assert!(
        err <= 1e-6,
        "{what}: loss {} against the CPU's {} (relative error {err:e})",
        got.loss,
        want.loss
    );
    println!(
        "{what}: loss {} (relative error {err:.1e}), {} valid",
        got.loss, got.valid
    );
}

#[test]
fn softmax_matches_the_cpu_in_both_layouts() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(31);
    for (name, a) in layouts() {
        let x = logits(&mut rng, a.count());
        let mut y = vec![0f32; a.count()];
        cpu.softmax_forward(&a, Io::Pair(&x, &mut y)).unwrap();
        let gx = up(g, &x);
        let mut gy = g.alloc(a.count()).unwrap();
        g.softmax_forward(&a, Io::Pair(&gx, &mut gy))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Each exponential may differ by an ulp from libm's expf; the quotient by a few.
        let got = down(g, &gy);
        assert_ulps(&format!("softmax {name}"), &got, &y, 4, 0.0);
        let mut gin = up(g, &x);
        g.softmax_forward(&a, Io::InPlace(&mut gin)).unwrap();
        assert_bits(&format!("softmax {name} in place"), &down(g, &gin), &got);

        // Backward from the CPU's probabilities: plain arithmetic, the CPU's bits.
        let dy = random(&mut rng, a.count());
        let mut dx = vec![0f32; a.count()];
        cpu.softmax_backward(&a, &y, Io::Pair(&dy, &mut dx)).unwrap();
        let (gyc, gdy) = (up(g, &y), up(g, &dy));
        let mut gdx = g.alloc(a.count()).unwrap();
        g.softmax_backward(&a, &gyc, Io::Pair(&gdy, &mut gdx)).unwrap();
        assert_same(&format!("softmax backward {name}"), &down(g, &gdx), &dx);
        let mut gd = up(g, &dy);
        g.softmax_backward(&a, &gyc, Io::InPlace(&mut gd)).unwrap();
        assert_same(&format!("softmax backward {name} in place"), &down(g, &gd), &dx);
    }
    let mut short = g.alloc(5).unwrap();
    assert!(g.softmax_forward(&axis(2, 3, 1), Io::InPlace(&mut short)).is_err());
}

#[test]
fn softmax_loss_matches_the_cpu_and_repeats_bit_for_bit() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(32);
    for (name, a) in [
        ("segmentation", axis(2, 2, 65536)),
        ("classifier", axis(64, 1000, 1)),
        ("middle", axis(3, 5, 700)),
    ] {
        let prob = softmax_cpu(&a, &logits(&mut rng, a.count()));
        let label = labels(&mut rng, &a, 255);
        let weights: Vec<f32> = (0..a.classes).map(|c| 0.5 + (c % 7) as f32 * 0.3).collect();
        let (gp, gl, gw) = (up(g, &prob), up(g, &label), up(g, &weights));
        for (wname, w, gwo) in [("unweighted", None, None), ("weighted", Some(&weights), Some(&gw))] {
            let what = format!("softmax loss {name} {wname}");
            let want = cpu.softmax_loss_forward(&a, Some(255), &prob, &label, w).unwrap();
            let got = g
                .softmax_loss_forward(&a, Some(255), &gp, &gl, gwo)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_loss(&what, got, want);
            let again = g.softmax_loss_forward(&a, Some(255), &gp, &gl, gwo).unwrap();
            assert_eq!(again.loss.to_bits(), got.loss.to_bits(), "{what}: repeated");

            let mut dx = vec![0f32; a.count()];
            cpu.softmax_loss_backward(&a, Some(255), &prob, &label, w, 0.25, &mut dx)
                .unwrap();
            let mut gdx = up(g, &random(&mut rng, a.count()));
            g.softmax_loss_backward(&a, Some(255), &gp, &gl, gwo, 0.25, &mut gdx)
                .unwrap();
            assert_bits(&format!("{what} backward"), &down(g, &gdx), &dx);
        }
        // Without an ignore label, 255 is a bad label; NaN and negative ones too. The first is
        // reported, with its value; the backward pass writes 0 there.
        let mut bad = label.clone();
        let last = bad.len() - 1;
        bad[1000.min(last)] = 7e3;
        bad[20] = -2.0;
        bad[50] = f32::NAN;
        for ignore in [None, Some(255)] {
            let want = cpu.softmax_loss_forward(&a, ignore, &prob, &bad, None).unwrap();
            assert!(want.bad.is_some());
            let got = g.softmax_loss_forward(&a, ignore, &gp, &up(g, &bad), None).unwrap();
            assert_loss(&format!("softmax loss {name} bad labels, ignore {ignore:?}"), got, want);
            let mut dx = vec![0f32; a.count()];
            cpu.softmax_loss_backward(&a, ignore, &prob, &bad, None, 1.0, &mut dx)
                .unwrap();
            let mut gdx = g.alloc(a.count()).unwrap();
            g.softmax_loss_backward(&a, ignore, &gp, &up(g, &bad), None, 1.0, &mut gdx)
                .unwrap();
            assert_bits(&format!("softmax loss {name} bad labels backward"), &down(g, &gdx), &dx);
        }
    }
    // A zero probability is floored at FLT_MIN, as on the CPU.
    let a = axis(1, 2, 3);
    let (prob, label) = (vec![0.0, 1.0, 0.5, 1.0, 0.0, 0.5], vec![0.0, 1.0, 1.0]);
    let want = cpu.softmax_loss_forward(&a, None, &prob, &label, None).unwrap();
    let got = g
        .softmax_loss_forward(&a, None, &up(g, &prob), &up(g, &label), None)
        .unwrap();
    assert_loss("softmax loss of zero probabilities", got, want);
}

#[test]
fn infogain_loss_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(33);
    for (name, a) in [
        ("segmentation", axis(2, 3, 20000)),
        ("classifier", axis(32, 40, 1)),
        ("small", axis(2, 4, 6)),
    ] {
        let prob = softmax_cpu(&a, &logits(&mut rng, a.count()));
        let mut label = labels(&mut rng, &a, -1);
        let h: Vec<f32> = (0..a.classes * a.classes)
            .map(|_| rng.uniform_range(0.0, 2.0))
            .collect();
        let (gp, gh) = (up(g, &prob), up(g, &h));
        let want = cpu.infogain_loss_forward(&a, Some(-1), &prob, &label, &h).unwrap();
        let got = g.infogain_loss_forward(&a, Some(-1), &gp, &up(g, &label), &gh).unwrap();
        assert_loss(&format!("infogain {name}"), got, want);
        let mut dx = vec![0f32; a.count()];
        cpu.infogain_loss_backward(&a, Some(-1), &prob, &label, &h, 0.5, &mut dx)
            .unwrap();
        let mut gdx = g.alloc(a.count()).unwrap();
        g.infogain_loss_backward(&a, Some(-1), &gp, &up(g, &label), &gh, 0.5, &mut gdx)
            .unwrap();
        assert_bits(&format!("infogain {name} backward"), &down(g, &gdx), &dx);
        label[3] = a.classes as f32;
        let want = cpu.infogain_loss_forward(&a, Some(-1), &prob, &label, &h).unwrap();
        let got = g.infogain_loss_forward(&a, Some(-1), &gp, &up(g, &label), &gh).unwrap();
        assert_eq!(got.bad.map(|b| b.position), Some(3));
        assert_loss(&format!("infogain {name} bad label"), got, want);
    }
}

#[test]
fn sigmoid_cross_entropy_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(34);
    let n = 100_003;
    let x: Vec<f32> = (0..n).map(|_| rng.uniform_range(-12.0, 12.0)).collect();
    let t: Vec<f32> = (0..n)
        .map(|i| if i % 9 == 0 { -1.0 } else { rng.uniform_range(0.0, 1.0) })
        .collect();
    let (gx, gt) = (up(g, &x), up(g, &t));
    for ignore in [None, Some(-1)] {
        let want = cpu.sigmoid_xent_forward(&x, &t, ignore).unwrap();
        let got = g.sigmoid_xent_forward(&gx, &gt, ignore).unwrap();
        assert_loss(&format!("sigmoid cross-entropy, ignore {ignore:?}"), got, want);
        let mut dx = vec![0f32; n];
        cpu.sigmoid_xent_backward(&x, &t, ignore, 0.3, &mut dx).unwrap();
        let mut gdx = g.alloc(n).unwrap();
        g.sigmoid_xent_backward(&gx, &gt, ignore, 0.3, &mut gdx).unwrap();
        // sigmoid(x) - t cancels: an ulp of the sigmoid, times the scale.
        assert_ulps(
            &format!("sigmoid cross-entropy backward, ignore {ignore:?}"),
            &down(g, &gdx),
            &dx,
            1,
            0.3 * f32::EPSILON,
        );
    }
}

#[test]
fn accuracy_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(35);
    for (a, k, ignore) in [
        (axis(4, 5, 9), 1, Some(1)),
        (axis(3, 6, 1), 2, None),
        (axis(2, 3, 16384 + 9), 2, Some(0)),
        (axis(64, 1000, 1), 5, None),
        (axis(2, 2000, 1), 3, Some(7)),
    ] {
        let what = format!("accuracy {a:?} top {k}");
        // Few distinct scores, so that ties count against.
        let x: Vec<f32> = (0..a.count()).map(|_| rng.below(7) as f32).collect();
        let label: Vec<f32> = (0..a.positions()).map(|_| rng.below(a.classes) as f32).collect();
        let (mut acc, mut pc) = (vec![0f32; 1], vec![0f32; a.classes]);
        let want = cpu
            .accuracy(&a, ignore, k, &x, &label, &mut acc, Some(&mut pc))
            .unwrap();
        let (gx, gl) = (up(g, &x), up(g, &label));
        let (mut gacc, mut gpc) = (g.alloc(1).unwrap(), g.alloc(a.classes).unwrap());
        let got = g
            .accuracy(&a, ignore, k, &gx, &gl, &mut gacc, Some(&mut gpc))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, want, "{what}: bad label");
        assert_bits(&what, &down(g, &gacc), &acc);
        assert_bits(&format!("{what} per class"), &down(g, &gpc), &pc);
        let mut gacc2 = g.alloc(1).unwrap();
        g.accuracy(&a, ignore, k, &gx, &gl, &mut gacc2, None).unwrap();
        assert_bits(&format!("{what} without per-class output"), &down(g, &gacc2), &acc);
        // A bad label is reported (the outputs are then unspecified).
        let mut bad = label.clone();
        bad[a.positions() - 1] = a.classes as f32;
        bad[a.positions() / 2] = -3.0;
        let want = cpu.accuracy(&a, None, k, &x, &bad, &mut acc, None).unwrap();
        let got = g.accuracy(&a, None, k, &gx, &up(g, &bad), &mut gacc, None).unwrap();
        assert_eq!(got, want, "{what}: bad label");
        assert_eq!(got.map(|b| b.position), Some(a.positions() / 2));
    }
    // Every position ignored: 0.
    let a = axis(2, 3, 2);
    let mut gacc = up(g, &[1.0]);
    let r = g
        .accuracy(&a, Some(2), 1, &up(g, &[0.0; 12]), &up(g, &[2.0; 4]), &mut gacc, None)
        .unwrap();
    assert_eq!((r, down(g, &gacc)), (None::<BadLabel>, vec![0.0]));
}

#[test]
fn argmax_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(36);
    for (a, outputs) in [
        (axis(2, 5, 3), vec![ArgMaxOutput::Index, ArgMaxOutput::Value]),
        (
            axis(3, 15, 1),
            vec![ArgMaxOutput::Index, ArgMaxOutput::Value, ArgMaxOutput::IndexAndValue],
        ),
        (axis(4, 1000, 1), vec![ArgMaxOutput::IndexAndValue]),
        (axis(2, 2, 65536), vec![ArgMaxOutput::Index]),
    ] {
        // Ties, and NaNs of both signs (ranked by IEEE total order).
        let x: Vec<f32> = (0..a.count())
            .map(|_| match rng.below(40) {
                0 => f32::NAN,
                1 => -f32::NAN,
                2 => -0.0,
                _ => rng.below(7) as f32 - 3.0,
            })
            .collect();
        let gx = up(g, &x);
        for &out in &outputs {
            for k in [1, 2, a.classes] {
                let len = match out {
                    ArgMaxOutput::IndexAndValue => a.outer * 2 * k,
                    _ => a.outer * k * a.inner,
                };
                let mut y = vec![0f32; len];
                cpu.argmax(&a, k, out, &x, &mut y).unwrap();
                let mut gy = g.alloc(len).unwrap();
                g.argmax(&a, k, out, &gx, &mut gy).unwrap();
                assert_bits(&format!("argmax {a:?} top {k} {out:?}"), &down(g, &gy), &y);
            }
        }
    }
    assert!(
        g.argmax(
            &axis(1, 3, 1),
            4,
            ArgMaxOutput::Index,
            &g.alloc(3).unwrap(),
            &mut g.alloc(4).unwrap()
        )
        .is_err()
    );
}
