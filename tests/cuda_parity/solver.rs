//! The fused parameter update on the CPU and on CUDA: every rule, with and without gradient
//! normalisation and each regularisation, must give the CPU's bits (data, diff and history).

use super::*;
use crema::backend::{ParamUpdate, Regularization, SolverOps, UpdateRule};

#[test]
fn parameter_updates_give_the_cpus_bits() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(61);
    let n = 100_003;
    let rules = [
        UpdateRule::Sgd { momentum: 0.9 },
        UpdateRule::Nesterov { momentum: 0.95 },
        UpdateRule::AdaGrad { delta: 1e-8 },
        UpdateRule::RmsProp {
            rms_decay: 0.98,
            delta: 1e-8,
        },
        UpdateRule::AdaDelta {
            momentum: 0.95,
            delta: 1e-6,
        },
        UpdateRule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            correction: 0.3162,
        },
    ];
    for rule in rules {
        for normalize in [None, Some(0.5)] {
            for regularization in [None, Some(Regularization::L2(5e-4)), Some(Regularization::L1(1e-3))] {
                let u = ParamUpdate {
                    rule,
                    normalize,
                    regularization,
                    local_rate: 0.01,
                };
                let what = format!("{u:?}");
                let mut w = random(&mut rng, n);
                w[7] = 0.0; // sign(0) = 0
                let d = random(&mut rng, n);
                let h: Vec<f32> = (0..n).map(|_| rng.uniform_range(0.0, 1.0)).collect();
                let h2: Vec<f32> = (0..n).map(|_| rng.uniform_range(0.0, 1.0)).collect();
                let two = rule.history_len() == 2;
                let (mut cw, mut cd, mut ch, mut ch2) = (w.clone(), d.clone(), h.clone(), h2.clone());
                cpu.update_param(&u, &mut cw, &mut cd, &mut ch, two.then_some(&mut ch2))
                    .unwrap();
                let (mut gw, mut gd, mut gh, mut gh2) = (up(g, &w), up(g, &d), up(g, &h), up(g, &h2));
                // Two steps, so that the history written by the first is read by the second.
                g.update_param(&u, &mut gw, &mut gd, &mut gh, two.then_some(&mut gh2))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_bits(&format!("{what}: data"), &down(g, &gw), &cw);
                assert_bits(&format!("{what}: diff"), &down(g, &gd), &cd);
                assert_bits(&format!("{what}: history"), &down(g, &gh), &ch);
                if two {
                    assert_bits(&format!("{what}: history2"), &down(g, &gh2), &ch2);
                }
                let d2 = random(&mut rng, n);
                let mut cd2 = d2.clone();
                cpu.update_param(&u, &mut cw, &mut cd2, &mut ch, two.then_some(&mut ch2))
                    .unwrap();
                let mut gd2 = up(g, &d2);
                g.update_param(&u, &mut gw, &mut gd2, &mut gh, two.then_some(&mut gh2))
                    .unwrap();
                assert_bits(&format!("{what}: data after two steps"), &down(g, &gw), &cw);
                assert_bits(&format!("{what}: history after two steps"), &down(g, &gh), &ch);
            }
        }
    }
    let u = ParamUpdate {
        rule: UpdateRule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            correction: 1.0,
        },
        normalize: None,
        regularization: None,
        local_rate: 0.1,
    };
    let (mut a, mut b, mut c) = (g.alloc(4).unwrap(), g.alloc(4).unwrap(), g.alloc(4).unwrap());
    let err = g
        .update_param(&u, &mut a, &mut b, &mut c, None)
        .expect_err("Adam needs two history buffers");
    assert!(matches!(err, crema::Error::Internal(_)), "{err}");
}
