//! CPU solver primitives: the fused parameter update, element by element in parallel chunks
//! (each element is independent, so the result does not depend on the thread count).

use super::{Cpu, CHUNK};
use crate::backend::{ParamUpdate, Regularization, SolverOps, UpdateRule};
use crate::{Error, Result};
use rayon::prelude::*;

/// The gradient after normalisation and regularisation (Caffe's `Normalize` + `Regularize`).
#[inline(always)]
fn prepared_gradient(u: &ParamUpdate, g: f32, w: f32) -> f32 {
    let g = match u.normalize {
        Some(scale) => g * scale,
        None => g,
    };
    match u.regularization {
        Some(Regularization::L2(decay)) => g + decay * w,
        Some(Regularization::L1(decay)) => {
            // Caffe's caffe_cpu_sign: (0 < x) - (x < 0), so sign(0) = 0.
            let sign = (0.0 < w) as i32 - (w < 0.0) as i32;
            g + decay * sign as f32
        }
        None => g,
    }
}

/// The update value of one element; updates its history (`h`, and `h2` for two-buffer rules).
#[inline(always)]
fn update_value(rule: &UpdateRule, lr: f32, g: f32, h: &mut f32, h2: &mut f32) -> f32 {
    match *rule {
        UpdateRule::Sgd { momentum } => {
            *h = momentum * *h + lr * g;
            *h
        }
        UpdateRule::Nesterov { momentum } => {
            let old = *h;
            *h = momentum * *h + lr * g;
            (-momentum) * old + (1.0 + momentum) * *h
        }
        UpdateRule::AdaGrad { delta } => {
            *h += g * g;
            lr * (g / (h.sqrt() + delta))
        }
        UpdateRule::RmsProp { rms_decay, delta } => {
            *h = rms_decay * *h + (1.0 - rms_decay) * (g * g);
            lr * (g / (h.sqrt() + delta))
        }
        UpdateRule::AdaDelta { momentum, delta } => {
            *h = momentum * *h + (1.0 - momentum) * (g * g);
            let v = g * ((delta + *h2) / (delta + *h)).sqrt();
            *h2 = momentum * *h2 + (1.0 - momentum) * (v * v);
            lr * v
        }
        UpdateRule::Adam { beta1, beta2, eps, correction } => {
            *h = beta1 * *h + (1.0 - beta1) * g;
            *h2 = beta2 * *h2 + (1.0 - beta2) * (g * g);
            (lr * correction) * (*h / (h2.sqrt() + eps))
        }
    }
}

impl SolverOps for Cpu {
    fn update_param(
        &self,
        u: &ParamUpdate,
        data: &mut Vec<f32>,
        diff: &mut Vec<f32>,
        history: &mut Vec<f32>,
        history2: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        let n = data.len();
        if diff.len() != n || history.len() != n || history2.as_ref().is_some_and(|h| h.len() != n) {
            return Err(Error::Internal(format!(
                "update_param: data {n}, diff {}, history {}, history2 {:?} differ",
                diff.len(),
                history.len(),
                history2.as_ref().map(|h| h.len())
            )));
        }
        if history2.is_some() != (u.rule.history_len() == 2) {
            return Err(Error::Internal(format!("update_param: {:?} given the wrong number of history buffers", u.rule)));
        }
        let lr = u.local_rate;
        let element = |w: &mut f32, d: &mut f32, h: &mut f32, h2: &mut f32| {
            let g = prepared_gradient(u, *d, *w);
            let v = update_value(&u.rule, lr, g, h, h2);
            *d = v;
            *w -= v;
        };
        let chunks = data.par_chunks_mut(CHUNK).zip(diff.par_chunks_mut(CHUNK)).zip(history.par_chunks_mut(CHUNK));
        match history2 {
            Some(h2) => chunks.zip(h2.par_chunks_mut(CHUNK)).for_each(|(((w, d), h), h2)| {
                for i in 0..w.len() {
                    element(&mut w[i], &mut d[i], &mut h[i], &mut h2[i]);
                }
            }),
            None => chunks.for_each(|((w, d), h)| {
                let mut unused = 0.0f32;
                for i in 0..w.len() {
                    element(&mut w[i], &mut d[i], &mut h[i], &mut unused);
                }
            }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Caffe's separate passes, written out naively with one temporary per pass, as in
    /// sgd_solver.cpp and its siblings.
    #[allow(clippy::assign_op_pattern, clippy::neg_multiply)]
    fn caffe_reference(u: &ParamUpdate, w: &mut [f32], d: &mut [f32], h: &mut [f32], h2: &mut [f32]) {
        let n = w.len();
        if let Some(s) = u.normalize {
            d.iter_mut().for_each(|x| *x *= s);
        }
        match u.regularization {
            Some(Regularization::L2(decay)) => (0..n).for_each(|i| d[i] += decay * w[i]),
            Some(Regularization::L1(decay)) => (0..n).for_each(|i| {
                let s = if w[i] > 0.0 { 1.0 } else if w[i] < 0.0 { -1.0 } else { 0.0 };
                d[i] += decay * s
            }),
            None => {}
        }
        let lr = u.local_rate;
        match u.rule {
            UpdateRule::Sgd { momentum } => (0..n).for_each(|i| {
                h[i] *= momentum;
                h[i] += lr * d[i];
                d[i] = h[i];
            }),
            UpdateRule::Nesterov { momentum } => {
                let mut upd = h.to_vec();
                (0..n).for_each(|i| {
                    h[i] *= momentum;
                    h[i] += lr * d[i];
                });
                let one_plus = 1.0 + momentum;
                (0..n).for_each(|i| {
                    upd[i] *= -momentum;
                    upd[i] += one_plus * h[i];
                });
                d.copy_from_slice(&upd);
            }
            UpdateRule::AdaGrad { delta } => {
                let sq: Vec<f32> = d.iter().map(|x| x * x).collect();
                (0..n).for_each(|i| h[i] = sq[i] + h[i]);
                let mut upd: Vec<f32> = h.iter().map(|x| x.sqrt()).collect();
                upd.iter_mut().for_each(|x| *x += delta);
                (0..n).for_each(|i| upd[i] = d[i] / upd[i]);
                (0..n).for_each(|i| d[i] = lr * upd[i]);
            }
            UpdateRule::RmsProp { rms_decay, delta } => {
                let sq: Vec<f32> = d.iter().map(|x| x * x).collect();
                let a = 1.0 - rms_decay;
                (0..n).for_each(|i| {
                    h[i] *= rms_decay;
                    h[i] += a * sq[i];
                });
                let mut upd: Vec<f32> = h.iter().map(|x| x.sqrt()).collect();
                upd.iter_mut().for_each(|x| *x += delta);
                (0..n).for_each(|i| upd[i] = d[i] / upd[i]);
                (0..n).for_each(|i| d[i] = lr * upd[i]);
            }
            UpdateRule::AdaDelta { momentum, delta } => {
                let a = 1.0 - momentum;
                let sq: Vec<f32> = d.iter().map(|x| x * x).collect();
                (0..n).for_each(|i| {
                    h[i] *= momentum;
                    h[i] += a * sq[i];
                });
                let temp: Vec<f32> = vec![delta; n];
                let mut upd: Vec<f32> = (0..n).map(|i| temp[i] + h2[i]).collect();
                let temp: Vec<f32> = (0..n).map(|i| temp[i] + h[i]).collect();
                (0..n).for_each(|i| upd[i] /= temp[i]);
                upd.iter_mut().for_each(|x| *x = x.sqrt());
                (0..n).for_each(|i| d[i] *= upd[i]);
                let sq: Vec<f32> = d.iter().map(|x| x * x).collect();
                (0..n).for_each(|i| {
                    h2[i] *= momentum;
                    h2[i] += a * sq[i];
                });
                d.iter_mut().for_each(|x| *x *= lr);
            }
            UpdateRule::Adam { beta1, beta2, eps, correction } => {
                (0..n).for_each(|i| {
                    h[i] *= beta1;
                    h[i] += (1.0 - beta1) * d[i];
                });
                let sq: Vec<f32> = d.iter().map(|x| x * x).collect();
                (0..n).for_each(|i| {
                    h2[i] *= beta2;
                    h2[i] += (1.0 - beta2) * sq[i];
                });
                let mut t: Vec<f32> = h2.iter().map(|x| x.sqrt()).collect();
                t.iter_mut().for_each(|x| *x += eps);
                (0..n).for_each(|i| t[i] = h[i] / t[i]);
                let s = lr * correction;
                (0..n).for_each(|i| d[i] = s * t[i]);
            }
        }
        (0..n).for_each(|i| w[i] += -1.0 * d[i]);
    }

    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..n).map(|_| (r.gaussian() as f32) * scale).collect()
    }

    #[test]
    fn fused_update_matches_caffes_passes_bit_for_bit() {
        let rules = [
            UpdateRule::Sgd { momentum: 0.9 },
            UpdateRule::Nesterov { momentum: 0.95 },
            UpdateRule::AdaGrad { delta: 1e-6 },
            UpdateRule::RmsProp { rms_decay: 0.98, delta: 1e-6 },
            UpdateRule::AdaDelta { momentum: 0.95, delta: 1e-6 },
            UpdateRule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, correction: 0.316 },
        ];
        let regs = [None, Some(Regularization::L2(5e-3)), Some(Regularization::L1(1e-2))];
        // More than one chunk, with a ragged last one, and zeros for sign(0).
        let n = CHUNK * 2 + 37;
        for rule in rules {
            for reg in regs {
                for normalize in [None, Some(0.5f32)] {
                    let u = ParamUpdate { rule, normalize, regularization: reg, local_rate: 0.05 };
                    let mut w = values(n, 1, 1.0);
                    w[3] = 0.0;
                    let d = values(n, 2, 0.1);
                    let h = values(n, 3, 0.01).iter().map(|x| x.abs()).collect::<Vec<_>>();
                    let h2 = values(n, 4, 0.01).iter().map(|x| x.abs()).collect::<Vec<_>>();
                    let (mut rw, mut rd, mut rh, mut rh2) = (w.clone(), d.clone(), h.clone(), h2.clone());
                    caffe_reference(&u, &mut rw, &mut rd, &mut rh, &mut rh2);
                    let (mut cw, mut cd, mut ch, mut ch2) = (w, d, h, h2.clone());
                    let two = rule.history_len() == 2;
                    Cpu.update_param(&u, &mut cw, &mut cd, &mut ch, if two { Some(&mut ch2) } else { None }).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&cw), bits(&rw), "{u:?}: data");
                    assert_eq!(bits(&cd), bits(&rd), "{u:?}: diff");
                    assert_eq!(bits(&ch), bits(&rh), "{u:?}: history");
                    if two {
                        assert_eq!(bits(&ch2), bits(&rh2), "{u:?}: history2");
                    } else {
                        assert_eq!(bits(&ch2), bits(&h2), "{u:?}: history2 untouched");
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_buffers_are_errors() {
        let u = ParamUpdate { rule: UpdateRule::Sgd { momentum: 0.0 }, normalize: None, regularization: None, local_rate: 1.0 };
        let (mut w, mut d, mut h) = (vec![0.0; 3], vec![0.0; 2], vec![0.0; 3]);
        let e = Cpu.update_param(&u, &mut w, &mut d, &mut h, None).unwrap_err().to_string();
        assert!(e.contains("update_param: data 3, diff 2"), "{e}");
        let mut d = vec![0.0; 3];
        let mut h2 = vec![0.0; 3];
        let e = Cpu.update_param(&u, &mut w, &mut d, &mut h, Some(&mut h2)).unwrap_err().to_string();
        assert!(e.contains("wrong number of history buffers"), "{e}");
    }
}
