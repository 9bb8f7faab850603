//! A net of ordinary layers run inside one layer, as Caffe's RecurrentLayer (its unrolled
//! net) and SPPLayer (its split, poolings, flattens and concat) do: the inner layers' own code
//! computes, on the outer net's backend.
//!
//! The outer layer copies its bottoms into the inner net's inputs, lends it its learnable blobs
//! for the pass (a swap of buffers, no copy), runs the inner layers up to the last one it
//! needs, and copies the inner outputs to its tops; backward runs the other way. Layers after
//! `last` are pseudo-losses: run never, they only make the inner net's analysis propagate
//! gradients down to the outputs, as in Caffe.

use crate::backend::Backend;
use crate::blob::Blob;
use crate::net::{Net, NetOptions};
use crate::proto::{BlobShape, LayerParameter, NetParameter};
use crate::{Error, Result};

/// The inner net and the outer layer it runs for.
pub(super) struct SubNet<B: Backend> {
    net: Net<B>,
    /// The last layer to run.
    last: usize,
    /// The outer layer's name and type, to name it again to the backend after the inner
    /// layers ran (for a GPU's error attribution and timing).
    outer: (String, &'static str),
}

impl<B: Backend> SubNet<B> {
    /// Builds `param` on `be`. Its last `pseudo_losses` layers are not run.
    pub fn build(be: &B, param: &NetParameter, seed: u64, pseudo_losses: usize, outer: (&str, &'static str)) -> Result<Self> {
        let opts = NetOptions { seed, model_dir: None, share_diffs: false, share_data: false, fuse: false };
        let mut net = Net::with_options(be.clone(), param, &opts)?;
        // The outer layer's learnable blobs are lent for every pass: the inner net's own would
        // be memory never used.
        for p in net.params_mut() {
            p.data = be.alloc(0)?;
            p.diff = be.alloc(0)?;
        }
        let last = net
            .layers()
            .len()
            .checked_sub(pseudo_losses + 1)
            .ok_or_else(|| Error::Internal("the inner net has no layer to run".into()))?;
        Ok(SubNet { net, last, outer: (outer.0.to_string(), outer.1) })
    }

    /// The inner net.
    pub fn net(&self) -> &Net<B> {
        &self.net
    }

    /// The inner blob `name`.
    pub fn blob(&self, name: &str) -> Result<&Blob<B>> {
        self.net.blob(name).ok_or_else(|| Error::Internal(format!("the inner net has no blob `{name}`")))
    }

    /// The inner blob `name`, writable.
    pub fn blob_mut(&mut self, name: &str) -> Result<&mut Blob<B>> {
        self.net.blob_mut(name).ok_or_else(|| Error::Internal(format!("the inner net has no blob `{name}`")))
    }

    /// Sets the inner input `name` to `src`'s shape and values.
    pub fn set_input(&mut self, be: &B, name: &str, src: &Blob<B>) -> Result<()> {
        let dst = self.blob_mut(name)?;
        dst.reshape(be, src.shape())?;
        be.copy(&src.data, &mut dst.data)
    }

    /// Gives the inner input `name` the shape `shape` and reshapes the inner layers (to learn
    /// the output shapes before a pass).
    pub fn reshape(&mut self, be: &B, name: &str, shape: &[usize]) -> Result<()> {
        self.blob_mut(name)?.reshape(be, shape)?;
        self.net.reshape()
    }

    /// Copies inner blob `name`'s values (diff, when `diff`) into `dst`'s values (diff),
    /// which must have its size.
    pub fn get(&self, be: &B, name: &str, diff: bool, dst: &mut Blob<B>) -> Result<()> {
        let src = self.blob(name)?;
        if src.count() != dst.count() {
            return Err(Error::Internal(format!("inner blob `{name}` has {} values for {}", src.count(), dst.count())));
        }
        if diff {
            be.copy(&src.diff, &mut dst.diff)
        } else {
            be.copy(&src.data, &mut dst.data)
        }
    }

    /// Sets inner blob `name`'s diff to `src`'s diff.
    pub fn set_diff(&mut self, be: &B, name: &str, src: &Blob<B>) -> Result<()> {
        let dst = self.blob_mut(name)?;
        if src.count() != dst.count() {
            return Err(Error::Internal(format!("inner blob `{name}` has {} values for {}", dst.count(), src.count())));
        }
        be.copy(&src.diff, &mut dst.diff)
    }

    /// Tells the inner layers where the next pass stands (see `Layer::set_pass`).
    pub fn set_pass(&mut self, pass: super::Pass) {
        self.net.set_pass(pass);
    }

    /// The inner net runs forward only from now on (see `Layer::forward_only`).
    pub fn forward_only(&mut self) -> Result<()> {
        self.net.make_forward_only()
    }

    /// Runs the inner layers forward with `params` lent to the inner net's learnable blobs
    /// (in the order of the inner net's own).
    pub fn forward(&mut self, be: &B, params: &mut [&mut Blob<B>]) -> Result<()> {
        self.with_params(be, params, false, |net, last| (0..=last).try_for_each(|i| net.forward_layer(i).map(|_| ())))
    }

    /// Runs the inner layers backward (the outputs' diffs set), accumulating into the diffs of
    /// `params`.
    pub fn backward(&mut self, be: &B, params: &mut [&mut Blob<B>]) -> Result<()> {
        self.with_params(be, params, true, |net, last| (0..=last).rev().try_for_each(|i| net.backward_layer(i)))
    }

    fn with_params(
        &mut self,
        be: &B,
        params: &mut [&mut Blob<B>],
        diffs: bool,
        run: impl FnOnce(&mut Net<B>, usize) -> Result<()>,
    ) -> Result<()> {
        if params.len() != self.net.params().len() {
            return Err(Error::Internal(format!("{} blobs lent to an inner net of {}", params.len(), self.net.params().len())));
        }
        self.swap(params, diffs);
        let result = run(&mut self.net, self.last);
        self.swap(params, diffs);
        be.enter_layer(Some((&self.outer.0, self.outer.1)));
        result
    }

    /// Lends `outer` to the inner net's learnable blobs, or takes them back (the same swap):
    /// their data and, when `diffs`, their diffs.
    fn swap(&mut self, outer: &mut [&mut Blob<B>], diffs: bool) {
        for (o, i) in outer.iter_mut().zip(self.net.params_mut()) {
            std::mem::swap(&mut o.data, &mut i.data);
            if diffs {
                std::mem::swap(&mut o.diff, &mut i.diff);
            }
        }
    }

    /// Bytes the inner blobs hold, values and gradients (the inner net's learnable blobs are
    /// the outer layer's, counted there).
    pub fn bytes(&self) -> usize {
        self.net.blobs().iter().map(|b| b.count() * if b.has_diff() { 2 } else { 1 } * 4).sum()
    }

    /// Multiply-adds times two of one forward pass of the inner layers that run.
    pub fn flops(&self) -> u64 {
        let blobs = self.net.blobs();
        self.net.layers()[..=self.last]
            .iter()
            .map(|l| {
                let b: Vec<&[usize]> = l.bottoms.iter().map(|&i| blobs[i].shape()).collect();
                let t: Vec<&[usize]> = l.tops.iter().map(|&i| blobs[i].shape()).collect();
                l.layer.flops(&b, &t)
            })
            .sum()
    }
}

/// A layer of an inner net: `kind` named `name`, from `bottoms` to `tops`.
pub(super) fn layer(name: &str, kind: &str, bottoms: &[&str], tops: &[&str]) -> LayerParameter {
    LayerParameter {
        name: Some(name.to_string()),
        r#type: Some(kind.to_string()),
        bottom: bottoms.iter().map(|s| s.to_string()).collect(),
        top: tops.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A shape for an inner Input layer.
pub(super) fn blob_shape(dims: &[usize]) -> BlobShape {
    BlobShape { dim: dims.iter().map(|&d| d as i64).collect() }
}
