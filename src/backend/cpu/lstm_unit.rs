//! CPU kernels of the LSTM unit (Caffe's LSTMUnit): one time step of an LSTM's cells, forward
//! and backward, formulas as documented in `backend/ops/act.rs` (every element in f64, each
//! output rounded to f32 once). Rows (sequences) run in parallel.

use crate::backend::spec::lstm_unit_cells;
use crate::Result;
use rayon::prelude::*;

/// The logistic function in f64, `0.5 * tanh(0.5 * v) + 0.5`: `1 / (1 + e^-v)` without the
/// overflow of `e^-v` for large negative `v`.
#[inline]
pub(super) fn logistic(v: f64) -> f64 {
    0.5 * (0.5 * v).tanh() + 0.5
}

/// The gates `(i, f, o, g)` of cell `d` of a row of gate inputs `xn` (`4 * dim` values) whose
/// continuation indicator is `cont`. The forget gate is 0 where `cont == 0`, whatever its
/// input holds (NaN included), as in Caffe.
#[inline]
fn gates(xn: &[f32], dim: usize, d: usize, cont: f32) -> (f64, f64, f64, f64) {
    let i = logistic(xn[d] as f64);
    let f = if cont == 0.0 { 0.0 } else { cont as f64 * logistic(xn[dim + d] as f64) };
    let o = logistic(xn[2 * dim + d] as f64);
    let g = (xn[3 * dim + d] as f64).tanh();
    (i, f, o, g)
}

pub(super) fn forward(
    num: usize,
    dim: usize,
    c_prev: &[f32],
    x: &[f32],
    cont: &[f32],
    c: &mut [f32],
    h: &mut [f32],
) -> Result<()> {
    lstm_unit_cells("lstm_unit_forward", num, dim, &[c_prev.len(), c.len(), h.len()], &[x.len()], cont.len())?;
    if num == 0 || dim == 0 {
        return Ok(());
    }
    c.par_chunks_mut(dim).zip(h.par_chunks_mut(dim)).enumerate().for_each(|(n, (cr, hr))| {
        let (xn, cp, k) = (&x[n * 4 * dim..(n + 1) * 4 * dim], &c_prev[n * dim..(n + 1) * dim], cont[n]);
        for d in 0..dim {
            let (i, f, o, g) = gates(xn, dim, d, k);
            let cv = f * cp[d] as f64 + i * g;
            cr[d] = cv as f32;
            hr[d] = (o * cv.tanh()) as f32;
        }
    });
    Ok(())
}

/// The gradients of cell `d` of row `n`: `(dc_prev, [di, df, do, dg])` (gate-input diffs).
#[allow(clippy::too_many_arguments)]
#[inline]
fn grads(n: usize, d: usize, dim: usize, c_prev: &[f32], x: &[f32], cont: &[f32], c: &[f32], dc: &[f32], dh: &[f32]) -> (f32, [f32; 4]) {
    let k = n * dim + d;
    let (i, f, o, g) = gates(&x[n * 4 * dim..(n + 1) * 4 * dim], dim, d, cont[n]);
    let t = (c[k] as f64).tanh();
    let dhv = dh[k] as f64;
    let e = dc[k] as f64 + dhv * o * (1.0 - t * t);
    let dx = [
        (e * g * i * (1.0 - i)) as f32,
        (e * c_prev[k] as f64 * f * (1.0 - f)) as f32,
        (dhv * t * o * (1.0 - o)) as f32,
        (e * i * (1.0 - g * g)) as f32,
    ];
    ((e * f) as f32, dx)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    num: usize,
    dim: usize,
    c_prev: &[f32],
    x: &[f32],
    cont: &[f32],
    c: &[f32],
    dc: &[f32],
    dh: &[f32],
    dc_prev: Option<&mut Vec<f32>>,
    dx: Option<&mut Vec<f32>>,
) -> Result<()> {
    let what = "lstm_unit_backward";
    lstm_unit_cells(what, num, dim, &[c_prev.len(), c.len(), dc.len(), dh.len()], &[x.len()], cont.len())?;
    if let Some(p) = &dc_prev {
        lstm_unit_cells(what, num, dim, &[p.len()], &[x.len()], cont.len())?;
    }
    if let Some(q) = &dx {
        lstm_unit_cells(what, num, dim, &[c.len()], &[q.len()], cont.len())?;
    }
    if num == 0 || dim == 0 {
        return Ok(());
    }
    let grad = |n: usize, d: usize| grads(n, d, dim, c_prev, x, cont, c, dc, dh);
    let put = |q: &mut [f32], d: usize, g: [f32; 4]| {
        for (gate, v) in g.into_iter().enumerate() {
            q[gate * dim + d] = v;
        }
    };
    match (dc_prev, dx) {
        (Some(p), Some(q)) => p.par_chunks_mut(dim).zip(q.par_chunks_mut(4 * dim)).enumerate().for_each(|(n, (pr, qr))| {
            for (d, v) in pr.iter_mut().enumerate() {
                let (a, g) = grad(n, d);
                *v = a;
                put(qr, d, g);
            }
        }),
        (Some(p), None) => p.par_chunks_mut(dim).enumerate().for_each(|(n, pr)| {
            for (d, v) in pr.iter_mut().enumerate() {
                *v = grad(n, d).0;
            }
        }),
        (None, Some(q)) => q.par_chunks_mut(4 * dim).enumerate().for_each(|(n, qr)| {
            for d in 0..dim {
                put(qr, d, grad(n, d).1);
            }
        }),
        (None, None) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::backend::cpu::Cpu;
    use crate::backend::Activations;

    /// The logistic function as Caffe writes it, `1 / (1 + e^-v)`.
    fn sig(v: f64) -> f64 {
        1.0 / (1.0 + (-v).exp())
    }

    fn close(what: &str, got: f32, want: f64) {
        assert!((got as f64 - want).abs() <= 1e-6 * want.abs().max(1.0), "{what}: {got} vs {want}");
    }

    /// Two rows of two cells; row 1 starts a new sequence (cont 0), so its forget gate is 0.
    #[test]
    fn lstm_unit_forward_matches_hand_computed_values() {
        let (num, dim) = (2, 2);
        let c_prev = vec![0.5, -1.0, 2.0, 3.0];
        #[rustfmt::skip]
        let x = vec![
            // row 0: i, i | f, f | o, o | g, g
            0.0, 1.0,   2.0, -1.0,   0.5, -0.5,   0.3, -2.0,
            // row 1
            -1.0, 0.0,  5.0, 5.0,    0.0, 1.0,    1.0, 0.0,
        ];
        let cont = vec![1.0, 0.0];
        let (mut c, mut h) = (vec![9.0; 4], vec![9.0; 4]);
        Cpu.lstm_unit_forward(num, dim, &c_prev, &x, &cont, &mut c, &mut h).unwrap();
        // Row 0, cell 0: i = 0.5, f = sig(2), o = sig(0.5), g = tanh(0.3).
        let c00 = sig(2.0) * 0.5 + 0.5 * 0.3f64.tanh();
        close("c[0,0]", c[0], c00);
        close("h[0,0]", h[0], sig(0.5) * c00.tanh());
        let c01 = -sig(-1.0) + sig(1.0) * (-2.0f64).tanh();
        close("c[0,1]", c[1], c01);
        close("h[0,1]", h[1], sig(-0.5) * c01.tanh());
        // Row 1: no forget term, whatever c_prev holds.
        let c10 = sig(-1.0) * 1.0f64.tanh();
        close("c[1,0]", c[2], c10);
        close("h[1,0]", h[2], 0.5 * c10.tanh());
        close("c[1,1]", c[3], 0.0);
        close("h[1,1]", h[3], 0.0);
    }

    #[test]
    fn lstm_unit_saturates_without_overflow_and_cont_zero_ignores_the_forget_input() {
        // Large |x| everywhere: the gates saturate to 0 or 1, with no NaN.
        let c_prev = vec![1.5, -2.0];
        let x = vec![1e4, -1e4, -1e30, 1e30, 100.0, -100.0, 1e38, -1e38];
        let (mut c, mut h) = (vec![0.0; 2], vec![0.0; 2]);
        Cpu.lstm_unit_forward(1, 2, &c_prev, &x, &vec![1.0], &mut c, &mut h).unwrap();
        // Cell 0: i = 1, f = 0, o = 1, g = 1 -> c = 1, h = tanh(1).
        // Cell 1: i = 0, f = 1, o = 0, g = -1 -> c = c_prev = -2, h = 0 * tanh(-2).
        assert_eq!(c, vec![1.0, -2.0]);
        close("h[0]", h[0], 1.0f64.tanh());
        assert_eq!(h[1].abs(), 0.0);
        let mut dcp = vec![0.0; 2];
        let mut dx = vec![0.0; 8];
        Cpu.lstm_unit_backward(1, 2, &c_prev, &x, &vec![1.0], &c, &vec![1.0, 1.0], &vec![1.0, 1.0], Some(&mut dcp), Some(&mut dx)).unwrap();
        assert!(dcp.iter().chain(&dx).all(|v| v.is_finite()), "{dcp:?} {dx:?}");
        // cont = 0 with a NaN forget input: the forget gate is still exactly 0.
        let x = vec![0.0, f32::NAN, 0.0, 0.0];
        let (mut c1, mut h1) = (vec![1.0], vec![1.0]);
        Cpu.lstm_unit_forward(1, 1, &vec![7.0], &x, &vec![0.0], &mut c1, &mut h1).unwrap();
        assert_eq!((c1[0], h1[0]), (0.0, 0.0));
    }

    #[test]
    fn lstm_unit_backward_matches_its_formulas_and_writes_only_what_is_asked() {
        let (num, dim) = (2, 3);
        let c_prev: Vec<f32> = (0..6).map(|k| 0.3 * k as f32 - 0.8).collect();
        let x: Vec<f32> = (0..24).map(|k| ((k * 7) % 11) as f32 * 0.25 - 1.2).collect();
        let cont = vec![1.0, 0.0];
        let (mut c, mut h) = (vec![0.0; 6], vec![0.0; 6]);
        Cpu.lstm_unit_forward(num, dim, &c_prev, &x, &cont, &mut c, &mut h).unwrap();
        let dc: Vec<f32> = (0..6).map(|k| 0.1 * k as f32 - 0.2).collect();
        let dh: Vec<f32> = (0..6).map(|k| 0.5 - 0.15 * k as f32).collect();
        let (mut dcp, mut dx) = (vec![f32::NAN; 6], vec![f32::NAN; 24]);
        Cpu.lstm_unit_backward(num, dim, &c_prev, &x, &cont, &c, &dc, &dh, Some(&mut dcp), Some(&mut dx)).unwrap();
        for n in 0..num {
            for d in 0..dim {
                let k = n * dim + d;
                let xg = |gate: usize| x[n * 4 * dim + gate * dim + d] as f64;
                let (i, o, g) = (sig(xg(0)), sig(xg(2)), xg(3).tanh());
                let f = if cont[n] == 0.0 { 0.0 } else { sig(xg(1)) };
                let t = (c[k] as f64).tanh();
                let e = dc[k] as f64 + dh[k] as f64 * o * (1.0 - t * t);
                close("dc_prev", dcp[k], e * f);
                close("di", dx[n * 4 * dim + d], e * g * i * (1.0 - i));
                close("df", dx[n * 4 * dim + dim + d], e * c_prev[k] as f64 * f * (1.0 - f));
                close("do", dx[n * 4 * dim + 2 * dim + d], dh[k] as f64 * t * o * (1.0 - o));
                close("dg", dx[n * 4 * dim + 3 * dim + d], e * i * (1.0 - g * g));
            }
        }
        // Only one of the two: the same values, the other buffer untouched.
        let mut only = vec![f32::NAN; 24];
        Cpu.lstm_unit_backward(num, dim, &c_prev, &x, &cont, &c, &dc, &dh, None, Some(&mut only)).unwrap();
        assert_eq!(only, dx);
        let mut only = vec![f32::NAN; 6];
        Cpu.lstm_unit_backward(num, dim, &c_prev, &x, &cont, &c, &dc, &dh, Some(&mut only), None).unwrap();
        assert_eq!(only, dcp);
    }

    #[test]
    fn lstm_unit_lengths_are_checked() {
        let (mut c, mut h) = (vec![0.0; 4], vec![0.0; 4]);
        let e = Cpu.lstm_unit_forward(2, 2, &vec![0.0; 4], &vec![0.0; 15], &vec![1.0; 2], &mut c, &mut h).unwrap_err();
        assert!(e.to_string().contains("lstm_unit_forward: 2 rows of 2 cells do not fit"), "{e}");
        assert!(Cpu.lstm_unit_forward(2, 2, &vec![0.0; 4], &vec![0.0; 16], &vec![1.0; 3], &mut c, &mut h).is_err());
        let mut dx = vec![0.0; 12];
        let e = Cpu
            .lstm_unit_backward(2, 2, &vec![0.0; 4], &vec![0.0; 16], &vec![1.0; 2], &c, &c, &h, None, Some(&mut dx))
            .unwrap_err();
        assert!(e.to_string().contains("lstm_unit_backward"), "{e}");
        // Nothing to do for empty shapes.
        Cpu.lstm_unit_forward(0, 3, &vec![], &vec![], &vec![], &mut vec![], &mut vec![]).unwrap();
        Cpu.lstm_unit_forward(2, 0, &vec![], &vec![], &vec![1.0; 2], &mut vec![], &mut vec![]).unwrap();
    }
}
