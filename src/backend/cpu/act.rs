//! CPU activations: the element-wise functions of [`Activation`] (this file), the stateful
//! ones, Swish, PReLU and Dropout (`act_state.rs`), and the LSTM unit (`lstm_unit.rs`). The
//! reference implementation of every formula documented in `backend/ops/act.rs`.

use super::act_state;
use super::{Cpu, CHUNK};
use crate::backend::{Activation, Activations, Io};
use crate::{Error, Result};
use rayon::prelude::*;

/// C++'s `std::min`: `b < a ? b : a` (keeps a NaN `a`).
#[inline]
pub(super) fn cmin(a: f32, b: f32) -> f32 {
    if b < a { b } else { a }
}

/// C++'s `std::max`: `a < b ? b : a` (keeps a NaN `a`).
#[inline]
pub(super) fn cmax(a: f32, b: f32) -> f32 {
    if a < b { b } else { a }
}

/// Caffe's sigmoid, `0.5 * tanh(0.5 * x) + 0.5` evaluated in double.
#[inline]
pub(super) fn sigmoid(x: f32) -> f32 {
    (0.5 * (0.5 * x as f64).tanh() + 0.5) as f32
}

/// 1.0 for true, 0.0 for false (C++'s bool-to-float conversion).
#[inline]
fn b2f(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

/// Caffe's ReLU, `max(x, 0) + slope * min(x, 0)` (a NaN stays NaN).
#[inline]
pub(super) fn relu(x: f32, negative_slope: f32) -> f32 {
    cmax(x, 0.0) + negative_slope * cmin(x, 0.0)
}

/// Caffe's ReLU backward, `dy * ((x > 0) + slope * (x <= 0))` for bottom data `x`.
#[inline]
pub(super) fn relu_grad(dy: f32, x: f32, negative_slope: f32) -> f32 {
    dy * (b2f(x > 0.0) + negative_slope * b2f(x <= 0.0))
}

pub(super) fn same_len(what: &str, lens: &[usize]) -> Result<()> {
    if lens.windows(2).all(|w| w[0] == w[1]) {
        Ok(())
    } else {
        Err(Error::Internal(format!("{what}: buffer lengths {lens:?} differ")))
    }
}

/// `y[i] = f(x[i])` over an [`Io`], lengths checked.
fn forward(what: &str, io: Io<'_, Vec<f32>>, f: impl Fn(f32) -> f32 + Sync) -> Result<()> {
    if let Io::Pair(x, y) = &io {
        same_len(what, &[x.len(), y.len()])?;
    }
    super::map_io(io, f);
    Ok(())
}

/// `dx[i] = g(dy[i], a[i], b[i])` over an [`Io`] of diffs, lengths checked.
pub(super) fn map_diff2(
    what: &str,
    a: &[f32],
    b: &[f32],
    diff: Io<'_, Vec<f32>>,
    g: impl Fn(f32, f32, f32) -> f32 + Sync,
) -> Result<()> {
    match diff {
        Io::InPlace(d) => {
            same_len(what, &[a.len(), b.len(), d.len()])?;
            d.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(dc, (ac, bc))| {
                dc.iter_mut().zip(ac.iter().zip(bc)).for_each(|(d, (&a, &b))| *d = g(*d, a, b))
            });
        }
        Io::Pair(dy, dx) => {
            same_len(what, &[a.len(), b.len(), dy.len(), dx.len()])?;
            dx.par_chunks_mut(CHUNK)
                .zip(dy.par_chunks(CHUNK))
                .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                .for_each(|((xc, yc), (ac, bc))| {
                    xc.iter_mut().zip(yc).zip(ac.iter().zip(bc)).for_each(|((dx, &dy), (&a, &b))| *dx = g(dy, a, b))
                });
        }
    }
    Ok(())
}

/// Caffe's Power forward for one element (see [`Activation::Power`]).
#[inline]
fn power_forward(x: f32, power: f32, scale: f32, shift: f32) -> f32 {
    let mut v = x;
    if scale != 1.0 {
        v *= scale;
    }
    if shift != 0.0 {
        v += shift;
    }
    if power != 1.0 { v.powf(power) } else { v }
}

/// Caffe's Log input `v = scale * x + shift`, each step skipped when it is the identity.
#[inline]
fn log_input(x: f32, scale: f32, shift: f32) -> f32 {
    let mut v = x;
    if scale != 1.0 {
        v *= scale;
    }
    if shift != 0.0 {
        v += shift;
    }
    v
}

impl Activations for Cpu {
    fn activation_forward(&self, f: Activation, io: Io<'_, Vec<f32>>) -> Result<()> {
        let what = "activation_forward";
        match f {
            Activation::ReLU { negative_slope } => {
                forward(what, io, |x| relu(x, negative_slope))
            }
            Activation::Sigmoid => forward(what, io, sigmoid),
            Activation::TanH => forward(what, io, f32::tanh),
            Activation::AbsVal => forward(what, io, f32::abs),
            Activation::BNLL => forward(what, io, |x| {
                let xd = x as f64;
                (if x > 0.0 { xd + (1.0 + (-xd).exp()).ln() } else { (1.0 + xd.exp()).ln() }) as f32
            }),
            Activation::ELU { alpha } => forward(what, io, |x| cmax(x, 0.0) + alpha * (cmin(x, 0.0).exp() - 1.0)),
            Activation::Power { power, scale, shift } => {
                if power * scale == 0.0 {
                    let value = if power == 0.0 { 1.0 } else { shift.powf(power) };
                    forward(what, io, |_| value)
                } else {
                    forward(what, io, |x| power_forward(x, power, scale, shift))
                }
            }
            Activation::Exp { inner_scale, outer_scale } => forward(what, io, |x| {
                let v = if inner_scale != 1.0 { inner_scale * x } else { x };
                let y = v.exp();
                if outer_scale != 1.0 { y * outer_scale } else { y }
            }),
            Activation::Log { scale, shift, base_scale, .. } => forward(what, io, |x| {
                let y = log_input(x, scale, shift).ln();
                if base_scale != 1.0 { y * base_scale } else { y }
            }),
            Activation::Threshold { threshold } => forward(what, io, |x| b2f(x > threshold)),
            Activation::Clip { min, max } => forward(what, io, |x| cmax(min, cmin(x, max))),
        }
    }

    fn activation_backward(&self, f: Activation, x: &Vec<f32>, y: &Vec<f32>, diff: Io<'_, Vec<f32>>) -> Result<()> {
        let what = "activation_backward";
        match f {
            Activation::ReLU { negative_slope } => {
                map_diff2(what, x, y, diff, |dy, x, _| relu_grad(dy, x, negative_slope))
            }
            Activation::Sigmoid => {
                map_diff2(what, x, y, diff, |dy, _, y| ((dy * y) as f64 * (1.0 - y as f64)) as f32)
            }
            Activation::TanH => map_diff2(what, x, y, diff, |dy, _, y| dy * (1.0 - y * y)),
            Activation::AbsVal => map_diff2(what, x, y, diff, |dy, x, _| (b2f(0.0 < x) - b2f(x < 0.0)) * dy),
            Activation::BNLL => map_diff2(what, x, y, diff, |dy, x, _| {
                let e = (cmin(x, 50.0) as f64).exp() as f32;
                ((dy * e) as f64 / (e as f64 + 1.0)) as f32
            }),
            Activation::ELU { alpha } => {
                map_diff2(what, x, y, diff, |dy, x, y| dy * (b2f(x > 0.0) + (alpha + y) * b2f(x <= 0.0)))
            }
            Activation::Power { power, scale, shift } => {
                let d = power * scale;
                if d == 0.0 {
                    map_diff2(what, x, y, diff, |_, _, _| 0.0)
                } else if power == 1.0 {
                    map_diff2(what, x, y, diff, |dy, _, _| dy * d)
                } else if power == 2.0 {
                    let (a, b) = (d * scale, d * shift);
                    map_diff2(what, x, y, diff, |dy, x, _| {
                        let g = a * x;
                        dy * if shift != 0.0 { g + b } else { g }
                    })
                } else if shift == 0.0 {
                    map_diff2(what, x, y, diff, |dy, x, y| dy * ((y / x) * power))
                } else {
                    map_diff2(what, x, y, diff, |dy, x, y| {
                        let g = y / log_input(x, scale, shift);
                        dy * if d != 1.0 { g * d } else { g }
                    })
                }
            }
            Activation::Exp { inner_scale, .. } => map_diff2(what, x, y, diff, |dy, _, y| {
                let g = y * dy;
                if inner_scale != 1.0 { g * inner_scale } else { g }
            }),
            Activation::Log { scale, shift, backward_num_scale, .. } => map_diff2(what, x, y, diff, |dy, x, _| {
                let g = log_input(x, scale, shift).powf(-1.0);
                dy * if backward_num_scale != 1.0 { g * backward_num_scale } else { g }
            }),
            Activation::Threshold { .. } => Err(Error::Internal("Threshold has no backward".into())),
            Activation::Clip { min, max } => map_diff2(what, x, y, diff, |dy, x, _| dy * b2f(x >= min && x <= max)),
        }
    }

    fn swish_forward(&self, beta: f32, io: Io<'_, Vec<f32>>, sig: &mut Vec<f32>) -> Result<()> {
        act_state::swish_forward(beta, io, sig)
    }

    fn swish_backward(&self, beta: f32, y: &Vec<f32>, sig: &Vec<f32>, diff: Io<'_, Vec<f32>>) -> Result<()> {
        map_diff2("swish_backward", y, sig, diff, |dy, y, s| {
            let b = beta * y;
            (dy as f64 * (b as f64 + s as f64 * (1.0 - b as f64))) as f32
        })
    }

    fn prelu_forward(&self, channels: usize, dim: usize, shared: bool, slope: &Vec<f32>, io: Io<'_, Vec<f32>>) -> Result<()> {
        act_state::prelu_forward(channels, dim, shared, slope, io)
    }

    fn prelu_backward_slope(
        &self,
        channels: usize,
        dim: usize,
        shared: bool,
        x: &Vec<f32>,
        dy: &Vec<f32>,
        dslope: &mut Vec<f32>,
    ) -> Result<()> {
        act_state::prelu_backward_slope(channels, dim, shared, x, dy, dslope)
    }

    fn prelu_backward_data(
        &self,
        channels: usize,
        dim: usize,
        shared: bool,
        slope: &Vec<f32>,
        x: &Vec<f32>,
        diff: Io<'_, Vec<f32>>,
    ) -> Result<()> {
        act_state::prelu_backward_data(channels, dim, shared, slope, x, diff)
    }

    fn dropout_forward(&self, key: u64, threshold: u32, scale: f32, io: Io<'_, Vec<f32>>, mask: &mut Vec<f32>) -> Result<()> {
        act_state::dropout_forward(key, threshold, scale, io, mask)
    }

    fn dropout_backward(&self, scale: f32, mask: &Vec<f32>, diff: Io<'_, Vec<f32>>) -> Result<()> {
        map_diff2("dropout_backward", mask, mask, diff, |dy, m, _| dy * m * scale)
    }

    fn lstm_unit_forward(
        &self,
        num: usize,
        dim: usize,
        c_prev: &Vec<f32>,
        x: &Vec<f32>,
        cont: &Vec<f32>,
        c: &mut Vec<f32>,
        h: &mut Vec<f32>,
    ) -> Result<()> {
        super::lstm_unit::forward(num, dim, c_prev, x, cont, c, h)
    }

    fn lstm_unit_backward(
        &self,
        num: usize,
        dim: usize,
        c_prev: &Vec<f32>,
        x: &Vec<f32>,
        cont: &Vec<f32>,
        c: &Vec<f32>,
        dc: &Vec<f32>,
        dh: &Vec<f32>,
        dc_prev: Option<&mut Vec<f32>>,
        dx: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        super::lstm_unit::backward(num, dim, c_prev, x, cont, c, dc, dh, dc_prev, dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// More than two parallel chunks, and not a multiple of the chunk size.
    const N: usize = 2 * CHUNK + 37;

    fn uniform(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.uniform_range(lo, hi)).collect()
    }

    fn close(what: &str, got: &[f32], want: impl Fn(usize) -> f64) {
        for (i, &g) in got.iter().enumerate() {
            let w = want(i);
            assert!((g as f64 - w).abs() <= 1e-5 * w.abs().max(1.0), "{what}[{i}]: {g} vs {w}");
        }
    }

    /// Checks `f` against a naive loop over the formula `y(x)` and its derivative, not in
    /// place and in place (which must give the same bits).
    fn check(f: Activation, xs: &[f32], y: impl Fn(f64) -> f64, dydx: impl Fn(f64) -> f64) {
        let be = Cpu;
        let mut out = vec![0.0; xs.len()];
        be.activation_forward(f, Io::Pair(&xs.to_vec(), &mut out)).unwrap();
        close(&format!("{f:?} forward"), &out, |i| y(xs[i] as f64));
        let mut inplace = xs.to_vec();
        be.activation_forward(f, Io::InPlace(&mut inplace)).unwrap();
        assert_eq!(inplace, out, "{f:?}: in place differs");

        let dy = uniform(xs.len(), -1.0, 1.0, 9);
        let mut dx = vec![0.0; xs.len()];
        be.activation_backward(f, &xs.to_vec(), &out, Io::Pair(&dy, &mut dx)).unwrap();
        close(&format!("{f:?} backward"), &dx, |i| dy[i] as f64 * dydx(xs[i] as f64));
        let mut d = dy.clone();
        be.activation_backward(f, &xs.to_vec(), &out, Io::InPlace(&mut d)).unwrap();
        assert_eq!(d, dx, "{f:?}: in-place backward differs");
    }

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn elementwise_functions_match_their_formulas() {
        let xs = uniform(N, -3.0, 3.0, 1);
        let (s, sd) = (0.1f32, 0.1f32 as f64);
        check(Activation::ReLU { negative_slope: s }, &xs, |x| if x > 0.0 { x } else { sd * x }, |x| if x > 0.0 { 1.0 } else { sd });
        check(Activation::Sigmoid, &xs, sig, |x| sig(x) * (1.0 - sig(x)));
        check(Activation::TanH, &xs, f64::tanh, |x| 1.0 - x.tanh() * x.tanh());
        check(Activation::AbsVal, &xs, f64::abs, f64::signum);
        check(Activation::BNLL, &xs, |x| x.exp().ln_1p(), sig);
        let (a, ad) = (0.7f32, 0.7f32 as f64);
        check(Activation::ELU { alpha: a }, &xs, |x| if x > 0.0 { x } else { ad * (x.exp() - 1.0) }, |x| if x > 0.0 { 1.0 } else { ad * x.exp() });
        check(Activation::Clip { min: -1.0, max: 2.0 }, &xs, |x| x.clamp(-1.0, 2.0), |x| if (-1.0..=2.0).contains(&x) { 1.0 } else { 0.0 });
        let mut y = vec![0.0; N];
        Cpu.activation_forward(Activation::Threshold { threshold: 0.2 }, Io::Pair(&xs, &mut y)).unwrap();
        close("threshold", &y, |i| if xs[i] > 0.2 { 1.0 } else { 0.0 });
    }

    #[test]
    fn power_every_branch() {
        let pos = uniform(N, 0.1, 3.0, 2);
        let any = uniform(N, -3.0, 3.0, 3);
        for (p, a, b, xs) in [
            (2.0f32, 0.5f32, 1.0f32, &any), // power 2 with shift
            (2.0, 1.5, 0.0, &any),          // power 2 without shift
            (1.0, 2.0, -0.5, &any),         // power 1: constant derivative
            (0.5, 1.0, 0.0, &pos),          // shift 0: power * y / x
            (3.0, 0.7, 0.2, &pos),          // general
            (-1.5, 2.0, 1.0, &pos),         // general, negative power
        ] {
            let (pd, ad, bd) = (p as f64, a as f64, b as f64);
            check(
                Activation::Power { power: p, scale: a, shift: b },
                xs,
                |x| (bd + ad * x).powf(pd),
                |x| pd * ad * (bd + ad * x).powf(pd - 1.0),
            );
        }
        // power * scale == 0: the output ignores the input and the gradient is 0, whatever dy.
        check(Activation::Power { power: 0.0, scale: 2.0, shift: 3.0 }, &any, |_| 1.0, |_| 0.0);
        check(Activation::Power { power: 2.0, scale: 0.0, shift: 3.0 }, &any, |_| 9.0, |_| 0.0);
        let mut dx = vec![0.0; 3];
        let f = Activation::Power { power: 2.0, scale: 0.0, shift: 3.0 };
        Cpu.activation_backward(f, &vec![1.0; 3], &vec![9.0; 3], Io::Pair(&vec![f32::NAN; 3], &mut dx)).unwrap();
        assert_eq!(dx, vec![0.0; 3]);
    }

    #[test]
    fn exp_and_log_with_bases_and_shifts() {
        let xs = uniform(N, -2.0, 2.0, 4);
        for (base, scale, shift) in [(-1.0f32, 0.5f32, 0.1f32), (2.0, 1.0, 0.0), (3.0, -0.7, 1.2)] {
            let ln_base = if base == -1.0 { 1.0f32 } else { base.ln() };
            let outer = if shift == 0.0 { 1.0 } else if base == -1.0 { shift.exp() } else { base.powf(shift) };
            let (l, a, b) = (ln_base as f64, scale as f64, shift as f64);
            check(
                Activation::Exp { inner_scale: ln_base * scale, outer_scale: outer },
                &xs,
                |x| (l * (b + a * x)).exp(),
                |x| l * a * (l * (b + a * x)).exp(),
            );
        }
        let pos = uniform(N, 0.2, 3.0, 5);
        for (base, scale, shift) in [(-1.0f32, 1.0f32, 0.0f32), (2.0, 1.0, 0.0), (10.0, 0.5, 0.3)] {
            let ln_base = if base == -1.0 { 1.0f32 } else { base.ln() };
            let (l, a, b) = (ln_base as f64, scale as f64, shift as f64);
            check(
                Activation::Log { scale, shift, base_scale: 1.0 / ln_base, backward_num_scale: scale / ln_base },
                &pos,
                |x| (b + a * x).ln() / l,
                |x| a / ((b + a * x) * l),
            );
        }
    }

    #[test]
    fn nan_propagates_as_in_caffe() {
        let mut y = vec![0.0; 2];
        Cpu.activation_forward(Activation::ReLU { negative_slope: 0.0 }, Io::Pair(&vec![f32::NAN, -1.0], &mut y)).unwrap();
        assert!(y[0].is_nan() && y[1] == 0.0);
        Cpu.activation_forward(Activation::Clip { min: 0.0, max: 1.0 }, Io::Pair(&vec![f32::NAN, 5.0], &mut y)).unwrap();
        assert_eq!(y, vec![0.0, 1.0], "std::max(min, std::min(NaN, max)) is min");
    }

    #[test]
    fn threshold_has_no_backward_and_lengths_are_checked() {
        let (x, mut d) = (vec![0.0; 4], vec![0.0; 4]);
        let e = Cpu.activation_backward(Activation::Threshold { threshold: 0.0 }, &x, &x, Io::InPlace(&mut d));
        assert!(e.unwrap_err().to_string().contains("Threshold has no backward"));
        let mut short = vec![0.0; 3];
        let e = Cpu.activation_forward(Activation::TanH, Io::Pair(&x, &mut short)).unwrap_err();
        assert!(e.to_string().contains("activation_forward: buffer lengths [4, 3] differ"), "{e}");
        let e = Cpu.activation_backward(Activation::TanH, &x, &x, Io::Pair(&x, &mut short)).unwrap_err();
        assert!(e.to_string().contains("buffer lengths"), "{e}");
    }
}
