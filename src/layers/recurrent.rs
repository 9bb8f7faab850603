//! Caffe's recurrent layers, LSTM and RNN: each runs a net of ordinary layers unrolled over
//! the input's timesteps, as Caffe's `RecurrentLayer` does.
//!
//! Bottoms: `x` of shape (T, N, ...), T timesteps of N independent streams; `cont` of shape
//! (T, N), 0 where a stream's sequence starts anew (its hidden state is then dropped) and 1
//! elsewhere; optionally a static input of shape (N, ...) added at every timestep; and with
//! `expose_hidden`, the initial hidden state (h_0, and c_0 for LSTM, each (1, N, num_output)).
//! Tops: the output (T, N, num_output) (LSTM's h, RNN's o), and with `expose_hidden` the final
//! state. Without `expose_hidden` the layer carries its final state over to the next forward
//! pass, as Caffe does (zero before the first; zero again when the number of streams changes).
//!
//! The unrolled net is the one Caffe's `FillUnrolledNet` writes (InnerProduct, Slice, Scale,
//! Eltwise, LSTMUnit or TanH, Concat), with the same parameter sharing, so the layer's learnable
//! blobs, their order and shapes are Caffe's and its weights load from and save to a
//! `.caffemodel` unchanged:
//! - LSTM: W_xc (4H, D), b_c (4H), [W_xc_static (4H, S)], W_hc (4H, H);
//! - RNN: W_xh (H, D), b_h (H), [W_xh_static (H, S)], W_hh (H, H), W_ho (H, H), b_o (H);
//!
//! where D is the size of one timestep of x and S of the static input. Gradients reach x, the
//! static input and the parameters; as in Caffe, never `cont`, nor an exposed initial state,
//! and the exposed final state's diff is ignored.
//!
//! The unrolled net lives inside the layer and runs on the same backend; the layer's learnable
//! blobs are lent to it (swapped in, not copied) for each pass.

use super::{Arity, Ctx, Layer, LayerContext, ParamDef};
use crate::backend::Backend;
use super::subnet::{blob_shape, layer, SubNet};
use crate::blob::shape_string;
use crate::proto::eltwise_parameter::EltwiseOp;
use crate::proto::{
    BlobShape, ConcatParameter, EltwiseParameter, FillerParameter, InnerProductParameter, InputParameter, LayerParameter,
    NetParameter, NetState, ParamSpec, Phase, ReshapeParameter, ScaleParameter, SliceParameter,
};
use crate::{Error, Result};

/// Which recurrent net.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Lstm,
    Rnn,
}

impl Kind {
    /// Caffe's type string.
    fn type_name(self) -> &'static str {
        match self {
            Kind::Lstm => "LSTM",
            Kind::Rnn => "RNN",
        }
    }
    /// Names of the recurrent inputs in the unrolled net, in Caffe's order (the order of the
    /// exposed bottoms).
    fn recurrent_inputs(self) -> &'static [&'static str] {
        match self {
            Kind::Lstm => &["h_0", "c_0"],
            Kind::Rnn => &["h_0"],
        }
    }
    /// Names of the recurrent outputs paired with [`Kind::recurrent_inputs`], for T timesteps.
    fn recurrent_outputs(self, steps: usize) -> Vec<String> {
        match self {
            Kind::Lstm => vec![format!("h_{steps}"), "c_T".into()],
            Kind::Rnn => vec![format!("h_{steps}")],
        }
    }
    /// Name of the output (top 0) in the unrolled net.
    fn output(self) -> &'static str {
        match self {
            Kind::Lstm => "h",
            Kind::Rnn => "o",
        }
    }
    /// Width of the gate input per unit: LSTM's four gates, RNN's one.
    fn gates(self) -> u32 {
        match self {
            Kind::Lstm => 4,
            Kind::Rnn => 1,
        }
    }
}

/// An LSTM or RNN layer.
struct Recurrent<B: Backend> {
    kind: Kind,
    name: String,
    hidden: u32,
    weight_filler: Option<FillerParameter>,
    bias_filler: Option<FillerParameter>,
    expose_hidden: bool,
    phase: Phase,
    seed: u64,
    unrolled: Option<Unrolled<B>>,
}

/// The unrolled net and what the layer knows of it.
struct Unrolled<B: Backend> {
    sub: SubNet<B>,
    steps: usize,
    streams: usize,
    static_input: bool,
    recur_outputs: Vec<String>,
}

pub(super) fn create_lstm<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    create(Kind::Lstm, lp, cx)
}

pub(super) fn create_rnn<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    create(Kind::Rnn, lp, cx)
}

fn create<B: Backend>(kind: Kind, lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = super::required(&lp.recurrent_param, "recurrent_param")?;
    let hidden = p.num_output();
    if hidden == 0 {
        return Err(Error::Config("recurrent_param.num_output must be positive".into()));
    }
    Ok(Box::new(Recurrent::<B> {
        kind,
        name: lp.name().to_string(),
        hidden,
        weight_filler: p.weight_filler.clone(),
        bias_filler: p.bias_filler.clone(),
        expose_hidden: p.expose_hidden(),
        phase: cx.phase,
        seed: cx.seed,
        unrolled: None,
    }))
}

fn named_params(names: &[&str]) -> Vec<ParamSpec> {
    names.iter().map(|n| ParamSpec { name: Some(n.to_string()), ..Default::default() }).collect()
}

/// The bottoms' roles and shapes, checked.
struct Inputs<'a> {
    x: &'a [usize],
    cont: &'a [usize],
    x_static: Option<&'a [usize]>,
}

impl<B: Backend> Recurrent<B> {
    fn recurrent_count(&self) -> usize {
        self.kind.recurrent_inputs().len()
    }

    /// Sorts the bottoms into their roles and checks their shapes against each other.
    fn inputs<'a>(&self, bottoms: &'a [&'a [usize]]) -> Result<Inputs<'a>> {
        let exposed = if self.expose_hidden { self.recurrent_count() } else { 0 };
        if bottoms.len() != 2 + exposed && bottoms.len() != 3 + exposed {
            return Err(Error::Config(format!(
                "takes {} or {} bottoms (x, cont, [static input]{}), given {}",
                2 + exposed,
                3 + exposed,
                if self.expose_hidden { format!(", {}", self.kind.recurrent_inputs().join(", ")) } else { String::new() },
                bottoms.len()
            )));
        }
        let static_input = bottoms.len() == 3 + exposed;
        let (x, cont) = (bottoms[0], bottoms[1]);
        if x.len() < 3 {
            return Err(Error::Shape(format!(
                "x (bottom 0) must have at least 3 axes (timesteps, streams, values), given {}",
                shape_string(x)
            )));
        }
        let (t, n) = (x[0], x[1]);
        if cont.len() != 2 || cont[0] != t || cont[1] != n {
            return Err(Error::Shape(format!(
                "cont (bottom 1) must have shape {} (the timesteps and streams of x {}), given {}",
                shape_string(&[t, n]),
                shape_string(x),
                shape_string(cont)
            )));
        }
        let x_static = static_input.then(|| bottoms[2]);
        if let Some(s) = x_static.filter(|s| s.first() != Some(&n)) {
            return Err(Error::Shape(format!(
                "the static input (bottom 2) must have {n} items (the streams of x {}) on its first axis, given {}",
                shape_string(x),
                shape_string(s)
            )));
        }
        let state = [1, n, self.hidden as usize];
        for (i, h) in bottoms[2 + static_input as usize..].iter().enumerate() {
            if **h != state {
                return Err(Error::Shape(format!(
                    "the initial state {} (bottom {}) must have shape {}, given {}",
                    self.kind.recurrent_inputs()[i],
                    2 + static_input as usize + i,
                    shape_string(&state),
                    shape_string(h)
                )));
            }
        }
        Ok(Inputs { x, cont, x_static })
    }

    /// The unrolled net's definition, as Caffe's `RecurrentLayer::LayerSetUp` and the layers'
    /// `FillUnrolledNet` write it: inputs, the timesteps, then one pseudo-loss on the output.
    fn unrolled_param(&self, inputs: &Inputs<'_>) -> NetParameter {
        let (steps, streams) = (inputs.x[0], inputs.x[1]);
        let mut layers = Vec::new();
        let mut input = layer("input", "Input", &[], &["x", "cont"]);
        let mut shapes = vec![blob_shape(inputs.x), blob_shape(inputs.cont)];
        if let Some(s) = inputs.x_static {
            input.top.push("x_static".into());
            shapes.push(blob_shape(s));
        }
        input.input_param = Some(InputParameter { shape: shapes });
        layers.push(input);
        match self.kind {
            Kind::Lstm => self.fill_lstm(&mut layers, steps, streams, inputs.x_static.is_some()),
            Kind::Rnn => self.fill_rnn(&mut layers, steps, streams, inputs.x_static.is_some()),
        }
        for l in &mut layers {
            l.name = Some(format!("{}_{}", self.name, l.name()));
        }
        let output = self.kind.output();
        let mut loss = layer(&format!("{output}_pseudoloss"), "Reduction", &[output], &[&format!("{output}_pseudoloss")]);
        loss.loss_weight = vec![1.0];
        layers.push(loss);
        NetParameter {
            name: Some(format!("{} (unrolled)", self.name)),
            layer: layers,
            state: Some(NetState { phase: Some(self.phase as i32), ..Default::default() }),
            ..Default::default()
        }
    }

    /// An InnerProduct of `num_output` on `axis`, with a bias filled by `bias_filler` when
    /// `bias`.
    fn inner_product(&self, num_output: u32, axis: i32, bias: bool) -> InnerProductParameter {
        InnerProductParameter {
            num_output: Some(num_output),
            bias_term: Some(bias),
            weight_filler: self.weight_filler.clone(),
            bias_filler: if bias { self.bias_filler.clone() } else { None },
            axis: Some(axis),
            ..Default::default()
        }
    }

    /// The layers before the timesteps common to LSTM and RNN: the recurrent inputs, the
    /// slicing of cont, the transform of x (and of the static input) and its slicing. `w`/`b`
    /// name the parameters (W_xc/b_c or W_xh/b_h), `wx` the transformed x.
    fn fill_head(&self, layers: &mut Vec<LayerParameter>, steps: usize, streams: usize, static_input: bool, names: [&str; 3]) {
        let [w, b, wx] = names;
        let width = self.hidden * self.kind.gates();
        let state = blob_shape(&[1, streams, self.hidden as usize]);
        // Caffe's LSTM declares c_0 before h_0; the order of an Input layer's tops is
        // immaterial to the numbers.
        let recur = self.kind.recurrent_inputs();
        let mut input = layer("recurrent_input", "Input", &[], recur);
        input.input_param = Some(InputParameter { shape: vec![state; recur.len()] });
        layers.push(input);

        let mut cont = layer("cont_slice", "Slice", &["cont"], &[]);
        cont.slice_param = Some(SliceParameter { axis: Some(0), ..Default::default() });
        cont.top = (1..=steps).map(|t| format!("cont_{t}")).collect();
        layers.push(cont);

        let mut x = layer("x_transform", "InnerProduct", &["x"], &[wx]);
        x.inner_product_param = Some(self.inner_product(width, 2, true));
        x.param = named_params(&[w, b]);
        x.propagate_down = vec![true];
        layers.push(x);

        if static_input {
            let (name, param) = (format!("{wx}_static"), format!("{w}_static"));
            let mut s = layer(&name, "InnerProduct", &["x_static"], &[&format!("{wx}_static_preshape")]);
            s.inner_product_param = Some(self.inner_product(width, 1, false));
            s.param = named_params(&[&param]);
            s.propagate_down = vec![true];
            layers.push(s);
            let mut r = layer(&format!("{wx}_static_reshape"), "Reshape", &[&format!("{wx}_static_preshape")], &[&name]);
            r.reshape_param = Some(ReshapeParameter { shape: Some(BlobShape { dim: vec![1, -1, width as i64] }), ..Default::default() });
            layers.push(r);
        }

        let mut slice = layer(&format!("{wx}_slice"), "Slice", &[wx], &[]);
        slice.slice_param = Some(SliceParameter { axis: Some(0), ..Default::default() });
        slice.top = (1..=steps).map(|t| format!("{wx}_{t}")).collect();
        layers.push(slice);
    }

    /// `h_conted_{t-1} = cont_t * h_{t-1}` (Scale on axis 0) and `{w}_h_{t-1} = W h_conted_{t-1}`
    /// (the layer named `transform_name`).
    fn fill_recurrence(&self, layers: &mut Vec<LayerParameter>, t: usize, w: &str, out: &str, transform_name: &str) {
        let prev = t - 1;
        let conted = format!("h_conted_{prev}");
        let mut scale = layer(&conted, "Scale", &[&format!("h_{prev}"), &format!("cont_{t}")], &[&conted]);
        scale.scale_param = Some(ScaleParameter { axis: Some(0), ..Default::default() });
        layers.push(scale);
        let mut ip = layer(transform_name, "InnerProduct", &[&conted], &[out]);
        ip.inner_product_param = Some(self.inner_product(self.hidden * self.kind.gates(), 2, false));
        ip.param = named_params(&[w]);
        layers.push(ip);
    }

    /// Eltwise SUM of `bottoms` and the static input's transform when there is one.
    fn sum(name: &str, bottoms: &[&str], static_name: Option<&str>, top: &str) -> LayerParameter {
        let mut sum = layer(name, "Eltwise", bottoms, &[top]);
        if let Some(s) = static_name {
            sum.bottom.push(s.to_string());
        }
        sum.eltwise_param = Some(EltwiseParameter { operation: Some(EltwiseOp::Sum as i32), ..Default::default() });
        sum
    }

    fn concat(name: &str, bottoms: Vec<String>, top: &str) -> LayerParameter {
        let mut c = layer(name, "Concat", &[], &[top]);
        c.bottom = bottoms;
        c.concat_param = Some(ConcatParameter { axis: Some(0), ..Default::default() });
        c
    }

    fn fill_lstm(&self, layers: &mut Vec<LayerParameter>, steps: usize, streams: usize, static_input: bool) {
        self.fill_head(layers, steps, streams, static_input, ["W_xc", "b_c", "W_xc_x"]);
        let static_name = static_input.then_some("W_xc_x_static");
        for t in 1..=steps {
            let prev = t - 1;
            let wh = format!("W_hc_h_{prev}");
            self.fill_recurrence(layers, t, "W_hc", &wh, &format!("transform_{t}"));
            let gate = format!("gate_input_{t}");
            layers.push(Self::sum(&gate, &[&wh, &format!("W_xc_x_{t}")], static_name, &gate));
            layers.push(layer(
                &format!("unit_{t}"),
                "LSTMUnit",
                &[&format!("c_{prev}"), &gate, &format!("cont_{t}")],
                &[&format!("c_{t}"), &format!("h_{t}")],
            ));
        }
        layers.push(layer("c_T_copy", "Split", &[&format!("c_{steps}")], &["c_T"]));
        layers.push(Self::concat("h_concat", (1..=steps).map(|t| format!("h_{t}")).collect(), "h"));
    }

    fn fill_rnn(&self, layers: &mut Vec<LayerParameter>, steps: usize, streams: usize, static_input: bool) {
        self.fill_head(layers, steps, streams, static_input, ["W_xh", "b_h", "W_xh_x"]);
        let static_name = static_input.then_some("W_xh_x_static");
        for t in 1..=steps {
            let prev = t - 1;
            let wh = format!("W_hh_h_{prev}");
            self.fill_recurrence(layers, t, "W_hh", &wh, &wh);
            let input = format!("h_neuron_input_{t}");
            layers.push(Self::sum(&format!("h_input_sum_{t}"), &[&wh, &format!("W_xh_x_{t}")], static_name, &input));
            layers.push(layer(&format!("h_neuron_{t}"), "TanH", &[&input], &[&format!("h_{t}")]));
            let who = format!("W_ho_h_{t}");
            let mut out = layer(&who, "InnerProduct", &[&format!("h_{t}")], &[&who]);
            out.inner_product_param = Some(self.inner_product(self.hidden, 2, true));
            out.param = named_params(&["W_ho", "b_o"]);
            layers.push(out);
            layers.push(layer(&format!("o_neuron_{t}"), "TanH", &[&who], &[&format!("o_{t}")]));
        }
        layers.push(Self::concat("o_concat", (1..=steps).map(|t| format!("o_{t}")).collect(), "o"));
    }

    fn unrolled(&mut self) -> Result<&mut Unrolled<B>> {
        self.unrolled.as_mut().ok_or_else(|| Error::Internal("recurrent layer used before setup".into()))
    }
}

impl<B: Backend> Layer<B> for Recurrent<B> {
    fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
    fn bottoms(&self) -> Arity {
        let exposed = if self.expose_hidden { self.recurrent_count() } else { 0 };
        Arity::range(2 + exposed, 3 + exposed)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1 + if self.expose_hidden { self.recurrent_count() } else { 0 })
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    fn writes_bottom_diff(&self, bottom: usize) -> bool {
        // x and the static input; never cont or an exposed initial state, whose diffs Caffe
        // leaves as they are.
        let static_input = self.unrolled.as_ref().is_some_and(|u| u.static_input);
        bottom == 0 || (static_input && bottom == 2)
    }
    fn reads_top_diff(&self, top: usize) -> bool {
        top == 0
    }
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        // The unrolled net keeps its own copies of what backward needs.
        false
    }
    fn backward_reads_top(&self, _top: usize) -> bool {
        false
    }
    fn forward_only(&mut self) -> Result<()> {
        match &mut self.unrolled {
            Some(u) => u.sub.forward_only(),
            None => Ok(()),
        }
    }

    fn setup(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<ParamDef>> {
        let inputs = self.inputs(bottoms)?;
        let (steps, streams, static_input) = (inputs.x[0], inputs.x[1], inputs.x_static.is_some());
        if steps == 0 {
            return Err(Error::Shape("x (bottom 0) has no timesteps (its first axis is 0)".into()));
        }
        let param = self.unrolled_param(&inputs);
        let sub = SubNet::build(be, &param, self.seed, 1, (&self.name, self.kind.type_name()))?;
        // The layer's learnable blobs are the unrolled net's, each once, in the order Caffe
        // gives them (the order of first use).
        let net = sub.net();
        let defs = net
            .param_info()
            .iter()
            .zip(net.params())
            .map(|(info, p)| {
                let filler = if info.name.starts_with("b_") { self.bias_filler.clone() } else { self.weight_filler.clone() };
                ParamDef { shape: p.shape().to_vec(), filler }
            })
            .collect();
        self.unrolled = Some(Unrolled { sub, steps, streams, static_input, recur_outputs: self.kind.recurrent_outputs(steps) });
        Ok(defs)
    }

    fn reshape(&mut self, _be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let inputs = self.inputs(bottoms)?;
        let hidden = self.hidden as usize;
        let exposed = if self.expose_hidden { self.recurrent_count() } else { 0 };
        let u = self.unrolled()?;
        if inputs.x[0] != u.steps {
            return Err(Error::Shape(format!(
                "the number of timesteps changed: the layer was set up for {} (x's first axis), given x {}",
                u.steps,
                shape_string(inputs.x)
            )));
        }
        if u.static_input != inputs.x_static.is_some() {
            return Err(Error::Config("the number of bottoms changed since setup".into()));
        }
        let streams = inputs.x[1];
        let mut tops = vec![vec![u.steps, streams, hidden]];
        tops.extend((0..exposed).map(|_| vec![1, streams, hidden]));
        Ok(tops)
    }

    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let kind = self.kind;
        let (expose, hidden) = (self.expose_hidden, self.hidden as usize);
        let u = self.unrolled()?;
        let mut parts = ctx.parts()?;
        let streams = parts.bottoms[0].shape()[1];
        u.sub.set_input(be, "x", parts.bottoms[0])?;
        u.sub.set_input(be, "cont", parts.bottoms[1])?;
        if u.static_input {
            u.sub.set_input(be, "x_static", parts.bottoms[2])?;
        }
        let hidden_at = 2 + u.static_input as usize;
        let state = [1, streams, hidden];
        for (i, name) in kind.recurrent_inputs().iter().enumerate() {
            if expose {
                u.sub.set_input(be, name, parts.bottoms[hidden_at + i])?;
                continue;
            }
            // Caffe's carried state: the last timestep of the previous pass becomes the
            // initial state of this one (zero at first, and after the streams change). The
            // buffers are swapped, not copied: this pass writes the last timestep anew.
            let out = &u.recur_outputs[i];
            let last = std::mem::replace(&mut u.sub.blob_mut(out)?.data, be.alloc(0)?);
            let h0 = u.sub.blob_mut(name)?;
            h0.reshape(be, &state)?;
            let first = std::mem::replace(&mut h0.data, last);
            if u.streams != streams || be.len(&h0.data) != h0.count() {
                let n = h0.count();
                h0.data = be.alloc(n)?;
            }
            u.sub.blob_mut(out)?.data = first;
        }
        u.streams = streams;
        u.sub.forward(be, &mut parts.params)?;
        u.sub.get(be, kind.output(), false, parts.tops[0])?;
        if expose {
            for (j, name) in u.recur_outputs.iter().enumerate() {
                u.sub.get(be, name, false, parts.tops[1 + j])?;
            }
        }
        Ok(())
    }

    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let kind = self.kind;
        let u = self.unrolled()?;
        let mut parts = ctx.parts_back()?;
        u.sub.set_diff(be, kind.output(), parts.tops[0])?;
        u.sub.backward(be, &mut parts.params)?;
        if propagate_down.first() == Some(&true) {
            u.sub.get(be, "x", true, parts.bottoms[0])?;
        }
        if u.static_input && propagate_down.get(2) == Some(&true) {
            u.sub.get(be, "x_static", true, parts.bottoms[2])?;
        }
        Ok(())
    }

    fn inner_bytes(&self) -> usize {
        self.unrolled.as_ref().map_or(0, |u| u.sub.bytes())
    }
    fn flops(&self, _bottoms: &[&[usize]], _tops: &[&[usize]]) -> u64 {
        self.unrolled.as_ref().map_or(0, |u| u.sub.flops())
    }
}
