//! CPU softmax over one axis, forward and backward, as per-position kernels over
//! [`lanes`](super::lanes) tasks.

use super::lanes::{check_len, run, Kernel, Lanes};
use crate::backend::{ClassAxis, Io};
use crate::Result;

/// Softmax of every position of a task, in Caffe's order of operations (max, subtract, exp,
/// sum in class order, divide), after copying the input in when it is not in place.
struct Forward<'a> {
    classes: usize,
    x: Option<&'a [f32]>,
}

impl Kernel for Forward<'_> {
    fn apply<L: Lanes>(&self, lanes: &mut L) {
        if let Some(x) = self.x {
            lanes.fill_from(x);
        }
        let n = lanes.len();
        let mut max: Vec<f32> = (0..n).map(|k| lanes.get(0, k)).collect();
        for c in 1..self.classes {
            for (k, m) in max.iter_mut().enumerate() {
                let v = lanes.get(c, k);
                // std::max(m, v): keeps m unless m < v.
                if *m < v {
                    *m = v;
                }
            }
        }
        let mut sum = vec![0.0f32; n];
        for c in 0..self.classes {
            for (k, (s, &m)) in sum.iter_mut().zip(&max).enumerate() {
                let e = (lanes.get(c, k) - m).exp();
                lanes.set(c, k, e);
                *s += e;
            }
        }
        for c in 0..self.classes {
            for (k, &s) in sum.iter().enumerate() {
                let v = lanes.get(c, k) / s;
                lanes.set(c, k, v);
            }
        }
    }
}

/// `dx = (dy - sum_c dy_c y_c) y` for every position of a task (the lanes hold `dx`, filled
/// from `dy` first when not in place).
struct Backward<'a> {
    classes: usize,
    y: &'a [f32],
    dy: Option<&'a [f32]>,
}

impl Kernel for Backward<'_> {
    fn apply<L: Lanes>(&self, lanes: &mut L) {
        if let Some(dy) = self.dy {
            lanes.fill_from(dy);
        }
        let n = lanes.len();
        let mut dot = vec![0.0f32; n];
        for c in 0..self.classes {
            for (k, d) in dot.iter_mut().enumerate() {
                *d += lanes.get(c, k) * self.y[lanes.at(c, k)];
            }
        }
        for c in 0..self.classes {
            for (k, &d) in dot.iter().enumerate() {
                let v = (lanes.get(c, k) - d) * self.y[lanes.at(c, k)];
                lanes.set(c, k, v);
            }
        }
    }
}

/// `y = softmax(x)` over the classes of every position.
pub(crate) fn softmax_forward(axis: &ClassAxis, io: Io<'_, Vec<f32>>) -> Result<()> {
    let want = axis.count();
    let (x, y) = match io {
        Io::InPlace(y) => (None, y),
        Io::Pair(x, y) => {
            check_len("softmax_forward input", axis, x.len(), want)?;
            (Some(x.as_slice()), y)
        }
    };
    check_len("softmax_forward output", axis, y.len(), want)?;
    run(y, axis, &Forward { classes: axis.classes, x });
    Ok(())
}

/// `dx = (dy - sum_c dy_c y_c) y` over the classes of every position.
pub(crate) fn softmax_backward(axis: &ClassAxis, y: &[f32], diff: Io<'_, Vec<f32>>) -> Result<()> {
    let want = axis.count();
    check_len("softmax_backward top data", axis, y.len(), want)?;
    let (dy, dx) = match diff {
        Io::InPlace(d) => (None, d),
        Io::Pair(dy, dx) => {
            check_len("softmax_backward top diff", axis, dy.len(), want)?;
            (Some(dy.as_slice()), dx)
        }
    };
    check_len("softmax_backward bottom diff", axis, dx.len(), want)?;
    run(dx, axis, &Backward { classes: axis.classes, y, dy });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CHUNK;
    use crate::Error;

    fn axis(outer: usize, classes: usize, inner: usize) -> ClassAxis {
        ClassAxis { outer, classes, inner }
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2000) as f32 / 200.0 - 5.0).collect()
    }

    const AXES: [ClassAxis; 5] = [
        ClassAxis { outer: 2, classes: 5, inner: 12 },
        ClassAxis { outer: 3, classes: 4, inner: 1 },
        ClassAxis { outer: 1, classes: 3, inner: CHUNK + 17 },
        ClassAxis { outer: 2, classes: 1, inner: 6 },
        ClassAxis { outer: CHUNK / 8 + 3, classes: 10, inner: 1 },
    ];

    /// Softmax by the definition, in f64.
    fn naive_softmax(a: &ClassAxis, x: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for i in 0..a.outer {
            for j in 0..a.inner {
                let at = |c: usize| (i * a.classes + c) * a.inner + j;
                let m = (0..a.classes).map(|c| x[at(c)] as f64).fold(f64::MIN, f64::max);
                let s: f64 = (0..a.classes).map(|c| (x[at(c)] as f64 - m).exp()).sum();
                for c in 0..a.classes {
                    y[at(c)] = (x[at(c)] as f64 - m).exp() / s;
                }
            }
        }
        y
    }

    #[test]
    fn softmax_forward_matches_definition_in_place_and_not() {
        for a in AXES {
            let x = values(a.count(), 3);
            let want = naive_softmax(&a, &x);
            let mut y = vec![0.0; x.len()];
            softmax_forward(&a, Io::Pair(&x, &mut y)).unwrap();
            let mut z = x.clone();
            softmax_forward(&a, Io::InPlace(&mut z)).unwrap();
            assert_eq!(y, z);
            for (g, w) in y.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-6, "{a:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn softmax_is_stable_for_large_inputs() {
        let a = axis(1, 3, 1);
        let mut y = vec![1000.0f32, 1001.0, -1000.0];
        softmax_forward(&a, Io::InPlace(&mut y)).unwrap();
        assert!(y.iter().all(|v| v.is_finite()));
        assert!((y[1] - 0.7310586).abs() < 1e-6);
    }

    #[test]
    fn softmax_backward_matches_definition_in_place_and_not() {
        for a in AXES {
            let mut y = values(a.count(), 1);
            softmax_forward(&a, Io::InPlace(&mut y)).unwrap();
            let dy = values(a.count(), 9);
            let mut want = vec![0.0f64; dy.len()];
            for i in 0..a.outer {
                for j in 0..a.inner {
                    let at = |c: usize| (i * a.classes + c) * a.inner + j;
                    let dot: f64 = (0..a.classes).map(|c| dy[at(c)] as f64 * y[at(c)] as f64).sum();
                    for c in 0..a.classes {
                        want[at(c)] = (dy[at(c)] as f64 - dot) * y[at(c)] as f64;
                    }
                }
            }
            let mut dx = vec![0.0; dy.len()];
            softmax_backward(&a, &y, Io::Pair(&dy, &mut dx)).unwrap();
            let mut d2 = dy.clone();
            softmax_backward(&a, &y, Io::InPlace(&mut d2)).unwrap();
            assert_eq!(dx, d2);
            for (g, w) in dx.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-5, "{a:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn wrong_lengths_are_internal_errors() {
        let a = axis(2, 3, 4);
        let mut y = vec![0.0; 23];
        assert!(matches!(softmax_forward(&a, Io::InPlace(&mut y)), Err(Error::Internal(_))));
    }
}
