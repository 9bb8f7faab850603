//! Tensor operations on the CPU and on CUDA: row reductions (close, deterministic), Eltwise
//! chains with few and many inputs (bit for bit), row gathers and scatter-adds (bit for bit,
//! repeated rows summed in index order), and bad row indices reported as on the CPU.

use super::*;
use crema::backend::{ReduceOp, TensorOps};

#[test]
fn row_reductions_match_and_repeat() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(41);
    for (num, dim) in [
        (3usize, 40_000usize),
        (50, 7),
        (1, 1),
        (4, 0),
        (0, 5),
        (1000, 300),
        (7, 255),
        (70_000, 2),
    ] {
        let x = random(&mut rng, num * dim);
        let gx = up(g, &x);
        for op in [ReduceOp::Sum, ReduceOp::Asum, ReduceOp::Sumsq] {
            let what = format!("reduce {op:?} {num}x{dim}");
            let mut y = vec![0f32; num];
            cpu.reduce_forward(op, num, dim, -0.5, &x, &mut y).unwrap();
            let mut gy = g.alloc(num).unwrap();
            g.reduce_forward(op, num, dim, -0.5, &gx, &mut gy)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let got = down(g, &gy);
            let mut scale = vec![0f32; num];
            cpu.reduce_forward(
                if op == ReduceOp::Sumsq { op } else { ReduceOp::Asum },
                num,
                dim,
                0.5,
                &x,
                &mut scale,
            )
            .unwrap();
            assert_close(&what, &got, &y, Some(&scale), 1e-6);
            let mut again = g.alloc(num).unwrap();
            g.reduce_forward(op, num, dim, -0.5, &gx, &mut again).unwrap();
            assert_bits(&format!("{what} repeated"), &down(g, &again), &got);

            let dy = random(&mut rng, num);
            let mut dx = vec![0f32; num * dim];
            let mut xz = x.clone();
            if let Some(v) = xz.get_mut(1) {
                *v = 0.0; // sign(0) = 0
            }
            cpu.reduce_backward(op, num, dim, 1.5, &xz, &dy, &mut dx).unwrap();
            let mut gdx = g.alloc(num * dim).unwrap();
            g.reduce_backward(op, num, dim, 1.5, &up(g, &xz), &up(g, &dy), &mut gdx)
                .unwrap();
            assert_bits(&format!("{what} backward"), &down(g, &gdx), &dx);
        }
    }
}

#[test]
fn eltwise_chains_give_the_cpus_bits() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(42);
    let n = 2 * 16384 + 5;
    for inputs in [1usize, 2, 3, 8, 9, 17] {
        let mut xs: Vec<Vec<f32>> = (0..inputs).map(|_| random(&mut rng, n)).collect();
        // Zeros (the unstable product gradient divides by them) and ties (Eltwise MAX).
        for (k, x) in xs.iter_mut().enumerate() {
            x[k] = 0.0;
            x[100] = 0.5;
        }
        let refs: Vec<&Vec<f32>> = xs.iter().collect();
        let gxs: Vec<_> = xs.iter().map(|x| up(g, x)).collect();
        let grefs: Vec<_> = gxs.iter().collect();
        let coeffs: Vec<f32> = (0..inputs).map(|k| 0.5 - 0.25 * k as f32).collect();
        let what = |op: &str| format!("eltwise {op}, {inputs} inputs");

        let mut y = vec![0f32; n];
        cpu.eltwise_sum(&refs, &coeffs, &mut y).unwrap();
        let mut gy = up(g, &random(&mut rng, n));
        g.eltwise_sum(&grefs, &coeffs, &mut gy).unwrap();
        assert_bits(&what("sum"), &down(g, &gy), &y);

        cpu.eltwise_prod(&refs, &mut y).unwrap();
        g.eltwise_prod(&grefs, &mut gy).unwrap();
        assert_bits(&what("prod"), &down(g, &gy), &y);
        if inputs >= 2 {
            let dy = random(&mut rng, n);
            let gdy = up(g, &dy);
            for index in [0, inputs / 2, inputs - 1] {
                for stable in [true, false] {
                    let mut dx = vec![0f32; n];
                    cpu.eltwise_prod_backward(&refs, index, &y, &dy, stable, &mut dx)
                        .unwrap();
                    let mut gdx = g.alloc(n).unwrap();
                    g.eltwise_prod_backward(&grefs, index, &gy, &gdy, stable, &mut gdx)
                        .unwrap();
                    assert_same(
                        &what(&format!("prod backward, input {index}, stable {stable}")),
                        &down(g, &gdx),
                        &dx,
                    );
                }
            }

            let mut arg = vec![0f32; n];
            cpu.eltwise_max(&refs, &mut y, &mut arg).unwrap();
            let mut garg = g.alloc(n).unwrap();
            g.eltwise_max(&grefs, &mut gy, &mut garg).unwrap();
            assert_bits(&what("max"), &down(g, &gy), &y);
            assert_bits(&what("max argmax"), &down(g, &garg), &arg);
            for index in [0, 1, inputs - 1] {
                let mut dx = vec![0f32; n];
                cpu.eltwise_max_backward(&arg, index, &dy, &mut dx).unwrap();
                let mut gdx = g.alloc(n).unwrap();
                g.eltwise_max_backward(&garg, index, &gdy, &mut gdx).unwrap();
                assert_bits(&what(&format!("max backward, input {index}")), &down(g, &gdx), &dx);
            }
        }
    }
    let (a, b) = (g.alloc(3).unwrap(), g.alloc(4).unwrap());
    assert!(g.eltwise_sum(&[&a, &b], &[1.0, 1.0], &mut g.alloc(3).unwrap()).is_err());
    assert!(
        g.eltwise_max(&[&a], &mut g.alloc(3).unwrap(), &mut g.alloc(3).unwrap())
            .is_err()
    );
}

#[test]
fn row_gathers_and_scatters_give_the_cpus_bits() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng::new(43);
    for (rows, row_len, n) in [(4, 3, 4), (1000, 64, 5000), (7, 1, 300), (3, 0, 5), (50, 33, 1)] {
        let table = random(&mut rng, rows * row_len);
        // Repeated rows (one row named by many positions) and fractions (truncated).
        let index: Vec<f32> = (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    1.0
                } else {
                    rng.below(rows) as f32 + if i % 5 == 0 { 0.9 } else { 0.0 }
                }
            })
            .collect();
        let (gi, gt) = (up(g, &index), up(g, &table));
        let mut out = vec![0f32; n * row_len];
        cpu.gather_rows(&index, rows, row_len, &table, &mut out).unwrap();
        let mut gout = g.alloc(n * row_len).unwrap();
        g.gather_rows(&gi, rows, row_len, &gt, &mut gout).unwrap();
        assert_bits(&format!("gather {rows}x{row_len} by {n}"), &down(g, &gout), &out);

        let src = random(&mut rng, n * row_len);
        let mut acc = table.clone();
        cpu.scatter_add_rows(&index, rows, row_len, &src, &mut acc).unwrap();
        let mut gacc = up(g, &table);
        g.scatter_add_rows(&gi, rows, row_len, &up(g, &src), &mut gacc).unwrap();
        assert_bits(&format!("scatter-add {rows}x{row_len} by {n}"), &down(g, &gacc), &acc);
    }
    let table = vec![0f32; 6];
    for bad in [3.0, -0.5, f32::NAN, f32::INFINITY] {
        let index = vec![1.0, bad, 7.0];
        let mut out = vec![0f32; 6];
        let want = cpu
            .gather_rows(&index, 3, 2, &table, &mut out)
            .expect_err("bad index")
            .to_string();
        // Nothing is written: the output keeps what it held.
        let held = random(&mut rng, 6);
        let mut gout = up(g, &held);
        let got = g
            .gather_rows(&up(g, &index), 3, 2, &up(g, &table), &mut gout)
            .expect_err("bad index");
        assert!(matches!(got, crema::Error::Shape(_)), "{got}");
        assert_eq!(got.to_string(), want);
        assert_bits("gather with a bad index writes nothing", &down(g, &gout), &held);

        let src = vec![1f32; 6];
        let want = cpu
            .scatter_add_rows(&index, 3, 2, &src, &mut table.clone())
            .expect_err("bad index")
            .to_string();
        let mut gacc = up(g, &held);
        let got = g
            .scatter_add_rows(&up(g, &index), 3, 2, &up(g, &src), &mut gacc)
            .expect_err("bad index");
        assert_eq!(got.to_string(), want);
        assert_bits("scatter-add with a bad index writes nothing", &down(g, &gacc), &held);
    }
}
