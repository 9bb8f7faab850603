//! Input (tops set from outside the net) and DummyData (tops filled by fillers).

use super::{Arity, Ctx, Layer, LayerContext, Pass};
use crate::backend::Backend;
use crate::filler::fill;
use crate::proto::{BlobShape, FillerParameter, LayerParameter};
use crate::rng::Rng;
use crate::{Error, Result};

/// Converts a BlobShape to dimensions, rejecting negative ones.
pub(crate) fn dims(shape: &BlobShape) -> Result<Vec<usize>> {
    let d: Vec<usize> = shape
        .dim
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| Error::Shape(format!("negative dimension {d} in shape {:?}", shape.dim))))
        .collect::<Result<_>>()?;
    crate::blob::checked_count(&d)?;
    Ok(d)
}

/// The Input layer: its tops are the net's inputs, shaped by `input_param.shape` and then by
/// whoever sets them.
struct Input {
    shapes: Vec<Vec<usize>>,
    /// "Input", or "MemoryData" (Caffe's layer fed by pycaffe's `set_input_arrays`; here by
    /// whoever sets its tops, as an Input's).
    kind: &'static str,
}

pub(super) fn create_input<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let shapes = match &lp.input_param {
        Some(p) => p.shape.iter().map(dims).collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let tops = lp.top.len();
    let shapes = match shapes.len() {
        0 => vec![Vec::new(); tops],
        1 => vec![shapes[0].clone(); tops],
        n if n == tops => shapes,
        n => return Err(Error::Config(format!("input_param gives {n} shapes for {tops} tops (give 1 or one per top)"))),
    };
    Ok(Box::new(Input { shapes, kind: "Input" }))
}

/// MemoryData: tops `data` (batch_size, channels, height, width) and `label` (batch_size), as
/// Caffe shapes them, set from outside like an Input's (Caffe's `Reset` from pycaffe does not
/// transform them either).
pub(super) fn create_memory_data<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = super::required(&lp.memory_data_param, "memory_data_param")?;
    let data = [p.batch_size(), p.channels(), p.height(), p.width()].map(|d| d as usize);
    if data.contains(&0) {
        return Err(Error::Config(format!(
            "memory_data_param: batch_size, channels, height and width must be given and positive, given {} {} {} {}",
            data[0], data[1], data[2], data[3]
        )));
    }
    crate::blob::checked_count(&data)?;
    Ok(Box::new(Input { shapes: vec![data.to_vec(), vec![data[0]]], kind: "MemoryData" }))
}

impl<B: Backend> Layer<B> for Input {
    fn type_name(&self) -> &'static str {
        self.kind
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(0)
    }
    fn tops(&self) -> Arity {
        if self.kind == "MemoryData" {
            Arity::exactly(2)
        } else {
            Arity::at_least(1)
        }
    }
    fn keeps_top_shapes(&self) -> bool {
        true
    }
    fn reshape(&mut self, _: &B, _: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok(self.shapes.clone())
    }
    fn forward(&mut self, _: &B, _: &mut Ctx<'_, B>) -> Result<()> {
        Ok(())
    }
    fn backward(&mut self, _: &B, _: &mut Ctx<'_, B>, _: &[bool]) -> Result<()> {
        Ok(())
    }
}

/// DummyData: tops of fixed shapes filled by fillers (once when every filler is constant,
/// else on every forward). In training, the draws of each forward pass come from a stream of
/// (seed, pass) (see [`Layer::set_pass`]), so a resumed run draws what the unbroken run drew.
struct DummyData {
    shapes: Vec<Vec<usize>>,
    fillers: Vec<FillerParameter>,
    refill: bool,
    filled: bool,
    seed: u64,
    rng: Rng,
}

pub(super) fn create_dummy_data<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.dummy_data_param.clone().unwrap_or_default();
    let tops = lp.top.len();
    let legacy = !p.num.is_empty() || !p.channels.is_empty() || !p.height.is_empty() || !p.width.is_empty();
    let shapes: Vec<Vec<usize>> = if legacy {
        if !p.shape.is_empty() {
            return Err(Error::Config("dummy_data_param gives both `shape` and num/channels/height/width".into()));
        }
        let pick = |v: &[u32], i: usize, what: &str| -> Result<usize> {
            match v.len() {
                1 => Ok(v[0] as usize),
                n if n == tops => Ok(v[i] as usize),
                n => Err(Error::Config(format!("dummy_data_param gives `{what}` {n} times for {tops} tops"))),
            }
        };
        (0..tops)
            .map(|i| {
                Ok(vec![
                    pick(&p.num, i, "num")?,
                    pick(&p.channels, i, "channels")?,
                    pick(&p.height, i, "height")?,
                    pick(&p.width, i, "width")?,
                ])
            })
            .collect::<Result<_>>()?
    } else {
        match p.shape.len() {
            1 => vec![dims(&p.shape[0])?; tops],
            n if n == tops => p.shape.iter().map(dims).collect::<Result<_>>()?,
            n => return Err(Error::Config(format!("dummy_data_param gives {n} shapes for {tops} tops"))),
        }
    };
    let constant0 = FillerParameter { r#type: Some("constant".into()), value: Some(0.0), ..Default::default() };
    let fillers = match p.data_filler.len() {
        0 => vec![constant0; tops],
        1 => vec![p.data_filler[0].clone(); tops],
        n if n == tops => p.data_filler.clone(),
        n => return Err(Error::Config(format!("dummy_data_param gives {n} data_fillers for {tops} tops"))),
    };
    let refill = fillers.iter().any(|f| f.r#type() != "constant");
    Ok(Box::new(DummyData { shapes, fillers, refill, filled: false, seed: cx.seed, rng: Rng::new(cx.seed) }))
}

impl<B: Backend> Layer<B> for DummyData {
    fn type_name(&self) -> &'static str {
        "DummyData"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(0)
    }
    fn tops(&self) -> Arity {
        Arity::at_least(1)
    }
    fn reshape(&mut self, _: &B, _: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok(self.shapes.clone())
    }
    fn set_pass(&mut self, pass: Pass) {
        self.rng = Rng::stream(self.seed, pass.index());
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        if self.filled && !self.refill {
            return Ok(());
        }
        for i in 0..ctx.num_tops() {
            let values = fill(&self.fillers[i], &self.shapes[i], &mut self.rng)?;
            ctx.top_mut(i).set_data(be, &values)?;
        }
        self.filled = true;
        Ok(())
    }
    fn backward(&mut self, _: &B, _: &mut Ctx<'_, B>, _: &[bool]) -> Result<()> {
        Ok(())
    }
}
