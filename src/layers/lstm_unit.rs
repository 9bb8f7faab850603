//! LSTMUnit (Caffe's): one time step of an LSTM's cells for `N` sequences of `D` cells. Bottoms:
//! the previous cell state `c_prev` (1 x N x D), the gate inputs `x` (1 x N x 4D: input, forget,
//! output and candidate gates, `D` each) and the sequence continuation indicators `cont`
//! (1 x N; 0 starts a new sequence, which zeroes the forget gate). Tops: the cell state `c` and
//! the hidden state `h`, both 1 x N x D. No parameters; `cont` takes no gradient (asking for one
//! is an error, as Caffe's CHECK). The LSTM layer's unrolled net runs one per time step.
//! Formulas: `Activations::lstm_unit_forward` and `lstm_unit_backward`.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct LstmUnit {
    /// Sequences (axis 1 of every bottom).
    num: usize,
    /// Cells per sequence (axis 2 of `c_prev`).
    dim: usize,
}

pub(super) fn create<B: Backend>(_: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(LstmUnit { num: 0, dim: 0 }))
}

/// What each bottom is, for error messages, and its number of axes.
const BOTTOMS: [(&str, usize, &str); 3] = [
    ("the previous cell state", 3, "1 x N x D"),
    ("the gate inputs", 3, "1 x N x 4D"),
    ("the continuation indicators", 2, "1 x N"),
];

/// Checks the bottoms as Caffe's LSTMUnitLayer::Reshape does; returns `(N, D)`.
fn check_shapes(bottoms: &[&[usize]]) -> Result<(usize, usize)> {
    let mut num = 0;
    for (b, (&shape, (what, axes, form))) in bottoms.iter().zip(BOTTOMS).enumerate() {
        if shape.len() != axes {
            return Err(Error::Shape(format!(
                "bottom {b} ({what}) must have {axes} axes ({form}), given {shape:?}"
            )));
        }
        if shape[0] != 1 {
            return Err(Error::Shape(format!(
                "bottom {b} ({what}) must have 1 on axis 0 (one time step: {form}), given {shape:?}"
            )));
        }
        if b == 0 {
            num = shape[1];
        } else if shape[1] != num {
            return Err(Error::Shape(format!(
                "bottom {b} ({what}) has {} sequences on axis 1, bottom 0 has {num}; given {shape:?}",
                shape[1]
            )));
        }
    }
    let dim = bottoms[0][2];
    let gates = bottoms[1][2];
    if !gates.is_multiple_of(4) || gates / 4 != dim {
        return Err(Error::Shape(format!(
            "bottom 1 (the gate inputs) must have 4 x {dim} values on axis 2 (four gates of the {dim} cells of bottom 0), \
             given {:?}",
            bottoms[1]
        )));
    }
    Ok((num, dim))
}

impl<B: Backend> Layer<B> for LstmUnit {
    fn type_name(&self) -> &'static str {
        "LSTMUnit"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(3)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(2)
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 2
    }
    /// Backward reads `c` (top 0), not `h`.
    fn backward_reads_top(&self, top: usize) -> bool {
        top == 0
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        (self.num, self.dim) = check_shapes(bottoms)?;
        Ok(vec![bottoms[0].to_vec(), bottoms[0].to_vec()])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut p = ctx.parts()?;
        let (c, h) = p.tops.split_at_mut(1);
        let b = &p.bottoms;
        be.lstm_unit_forward(self.num, self.dim, &b[0].data, &b[1].data, &b[2].data, &mut c[0].data, &mut h[0].data)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if propagate_down.get(2).copied().unwrap_or(false) {
            return Err(Error::Config("LSTMUnit cannot backpropagate to the continuation indicators (bottom 2)".into()));
        }
        let (to_c_prev, to_x) = (propagate_down[0], propagate_down[1]);
        if !to_c_prev && !to_x {
            return Ok(());
        }
        let mut p = ctx.parts_back()?;
        let [b0, b1, b2] = &mut p.bottoms[..] else {
            return Err(Error::Internal("LSTMUnit backward without its three bottoms".into()));
        };
        let (c_prev, dc_prev) = b0.data_and_diff_mut();
        let (x, dx) = b1.data_and_diff_mut();
        let (c, h) = (p.tops[0], p.tops[1]);
        be.lstm_unit_backward(
            self.num,
            self.dim,
            c_prev,
            x,
            &b2.data,
            &c.data,
            &c.diff,
            &h.diff,
            to_c_prev.then_some(dc_prev),
            to_x.then_some(dx),
        )
    }
    fn flops(&self, _: &[&[usize]], _: &[&[usize]]) -> u64 {
        // Per cell: c = f * c_prev + i * g and h = o * tanh(c), plus the gate scalings.
        (self.num * self.dim * 8) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::super::activation::tests::net;
    use crate::backend::cpu::Cpu;
    use crate::net::Net;
    use crate::proto::Phase;

    fn sig(v: f64) -> f64 {
        1.0 / (1.0 + (-v).exp())
    }

    /// A net of Input layers `c_prev`, `x`, `cont` of the given shapes and an LSTMUnit on them.
    fn lstm_net(c_prev: &[usize], x: &[usize], cont: &[usize], extra: &str) -> Result<Net<Cpu>, String> {
        let input = |name: &str, shape: &[usize]| {
            let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
            format!("layer {{ name: '{name}' type: 'Input' top: '{name}' input_param {{ shape {{ {dims}}} }} }}\n")
        };
        let text = format!(
            "{extra}{}{}{}layer {{ name: 'lstm' type: 'LSTMUnit' bottom: 'c_prev' bottom: 'x' bottom: 'cont' top: 'c' top: 'h' }}",
            input("c_prev", c_prev),
            input("x", x),
            input("cont", cont)
        );
        net(&text, Phase::Train)
    }

    fn build_error(c_prev: &[usize], x: &[usize], cont: &[usize]) -> String {
        match lstm_net(c_prev, x, cont, "") {
            Ok(_) => panic!("LSTMUnit on {c_prev:?}, {x:?}, {cont:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn lstm_unit_forward_through_a_net_matches_the_formulas() {
        let mut n = lstm_net(&[1, 2, 1], &[1, 2, 4], &[1, 2], "").unwrap();
        let be = n.backend().clone();
        // Row 0 continues (cont 1), row 1 starts a sequence (cont 0), with saturating inputs.
        let c_prev = [0.5f32, -3.0];
        let x = [0.2f32, -0.7, 1.1, 0.4, 60.0, 1e30, -80.0, 1e30];
        n.blob_mut("c_prev").unwrap().set_data(&be, &c_prev).unwrap();
        n.blob_mut("x").unwrap().set_data(&be, &x).unwrap();
        n.blob_mut("cont").unwrap().set_data(&be, &[1.0, 0.0]).unwrap();
        n.forward().unwrap();
        let c = n.blob("c").unwrap().data_to_vec(&be).unwrap();
        let h = n.blob("h").unwrap().data_to_vec(&be).unwrap();
        assert_eq!(n.blob("c").unwrap().shape(), &[1, 2, 1]);
        assert_eq!(n.blob("h").unwrap().shape(), &[1, 2, 1]);
        let c0 = sig(-0.7) * 0.5 + sig(0.2) * 0.4f64.tanh();
        let h0 = sig(1.1) * c0.tanh();
        // Row 1: i = 1, f = 0 (cont 0, although its input saturates to 1), o = 0, g = 1: c = 1, h = 0.
        let want = [(c0, h0), (1.0, 0.0)];
        for (r, (wc, wh)) in want.iter().enumerate() {
            assert!((c[r] as f64 - wc).abs() < 1e-6, "c[{r}] = {}, want {wc}", c[r]);
            assert!((h[r] as f64 - wh).abs() < 1e-6, "h[{r}] = {}, want {wh}", h[r]);
        }
    }

    #[test]
    fn lstm_unit_refuses_bad_shapes() {
        let e = build_error(&[2, 3], &[1, 2, 12], &[1, 2]);
        assert!(e.contains("layer `lstm` (type LSTMUnit): bottom 0 (the previous cell state) must have 3 axes (1 x N x D), given [2, 3]"), "{e}");
        let e = build_error(&[2, 2, 3], &[1, 2, 12], &[1, 2]);
        assert!(e.contains("bottom 0 (the previous cell state) must have 1 on axis 0 (one time step: 1 x N x D), given [2, 2, 3]"), "{e}");
        let e = build_error(&[1, 2, 3], &[1, 2, 12, 1], &[1, 2]);
        assert!(e.contains("bottom 1 (the gate inputs) must have 3 axes (1 x N x 4D), given [1, 2, 12, 1]"), "{e}");
        let e = build_error(&[1, 2, 3], &[2, 2, 12], &[1, 2]);
        assert!(e.contains("bottom 1 (the gate inputs) must have 1 on axis 0"), "{e}");
        let e = build_error(&[1, 2, 3], &[1, 3, 12], &[1, 2]);
        assert!(e.contains("bottom 1 (the gate inputs) has 3 sequences on axis 1, bottom 0 has 2; given [1, 3, 12]"), "{e}");
        let e = build_error(&[1, 2, 3], &[1, 2, 9], &[1, 2]);
        assert!(e.contains("bottom 1 (the gate inputs) must have 4 x 3 values on axis 2 (four gates of the 3 cells of bottom 0), given [1, 2, 9]"), "{e}");
        let e = build_error(&[1, 2, 3], &[1, 2, 13], &[1, 2]);
        assert!(e.contains("must have 4 x 3 values on axis 2"), "{e}");
        let e = build_error(&[1, 2, 3], &[1, 2, 12], &[1, 2, 1]);
        assert!(e.contains("bottom 2 (the continuation indicators) must have 2 axes (1 x N), given [1, 2, 1]"), "{e}");
        let e = build_error(&[1, 2, 3], &[1, 2, 12], &[2]);
        assert!(e.contains("bottom 2 (the continuation indicators) must have 2 axes (1 x N), given [2]"), "{e}");
        let e = build_error(&[1, 2, 3], &[1, 2, 12], &[2, 2]);
        assert!(e.contains("bottom 2 (the continuation indicators) must have 1 on axis 0"), "{e}");
        let e = build_error(&[1, 2, 3], &[1, 2, 12], &[1, 4]);
        assert!(e.contains("bottom 2 (the continuation indicators) has 4 sequences on axis 1, bottom 0 has 2; given [1, 4]"), "{e}");
        // A wrong number of bottoms or tops.
        let text = "layer { name: 'a' type: 'Input' top: 'a' input_param { shape { dim: 1 dim: 2 dim: 3 } } }
            layer { name: 'lstm' type: 'LSTMUnit' bottom: 'a' bottom: 'a' top: 'c' top: 'h' }";
        let e = net(text, Phase::Train).err().expect("two bottoms were accepted");
        assert!(e.contains("takes exactly 3 bottom blob(s), given 2"), "{e}");
    }

    #[test]
    fn lstm_unit_shapes_are_checked_again_on_reshape() {
        let mut n = lstm_net(&[1, 2, 3], &[1, 2, 12], &[1, 2], "").unwrap();
        let be = n.backend().clone();
        n.blob_mut("x").unwrap().reshape(&be, &[1, 2, 8]).unwrap();
        let e = n.forward().unwrap_err().to_string();
        assert!(e.contains("layer `lstm` (type LSTMUnit): bottom 1 (the gate inputs) must have 4 x 3 values"), "{e}");
        // A new N on every bottom is fine.
        n.blob_mut("x").unwrap().reshape(&be, &[1, 5, 12]).unwrap();
        n.blob_mut("c_prev").unwrap().reshape(&be, &[1, 5, 3]).unwrap();
        n.blob_mut("cont").unwrap().reshape(&be, &[1, 5]).unwrap();
        n.forward().unwrap();
        assert_eq!(n.blob("h").unwrap().shape(), &[1, 5, 3]);
    }

    #[test]
    fn lstm_unit_gives_no_gradient_to_cont_under_force_backward() {
        let mut n = lstm_net(&[1, 2, 3], &[1, 2, 12], &[1, 2], "force_backward: true\n").unwrap();
        let be = n.backend().clone();
        n.blob_mut("cont").unwrap().set_data(&be, &[1.0, 0.0]).unwrap();
        n.forward().unwrap();
        n.backward().unwrap();
        let l = n.layers().iter().find(|l| l.layer.type_name() == "LSTMUnit").unwrap();
        assert_eq!(l.bottom_need_backward, vec![true, true, false]);
    }
}
