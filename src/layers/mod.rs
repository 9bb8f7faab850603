//! Layers: one file per layer type or family, each written once against the backend
//! primitives, with Caffe's contract: construction checks the parameters, `setup` declares the
//! learnable blobs, `reshape` (before every forward) gives the top shapes, `forward` and
//! `backward` compute.
//!
//! Every layer type is one entry of `registry`; the net builds layers only through it.

mod ctx;
mod registry;

mod activation;
mod batch_norm;
mod bn;
mod conv;
mod data;
mod dense_image_data;
mod hdf5_data;
mod hdf5_output;
mod image_data;
mod window_data;
mod dropout;
mod prelu;
mod swish;
mod input;
mod inner_product;
mod euclidean_loss;
mod pooling;
mod upsample;

mod batch_reindex;
mod concat;
mod crop;
mod eltwise;
mod embed;
mod filter;
mod im2col;
mod parameter;
mod recurrent;
mod subnet;
mod reduction;
mod reshape;
mod split;
mod spp;
mod tile;
#[cfg(test)]
mod tensor_testing;
mod loss;
mod accuracy;
mod argmax;
mod infogain;
mod contrastive;
mod label_losses;
mod sigmoid_xent;
mod softmax;
mod softmax_loss;
mod lrn;
mod lstm_unit;
mod mvn;
mod scale_bias;
#[cfg(test)]
mod norm_tests;

pub use bn::BN_EPS;
pub use ctx::{Ctx, Parts, PartsBack, Unary, UnaryBack};
pub use registry::{create_layer, layer_types};

use crate::backend::Backend;
use crate::blob::Blob;
use crate::proto::{FillerParameter, ParamSpec, Phase};
use crate::{Error, Result};
use std::path::PathBuf;

/// How many bottoms or tops a layer takes: `min..=max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arity {
    /// Fewest allowed.
    pub min: usize,
    /// Most allowed.
    pub max: usize,
}

impl Arity {
    /// Exactly `n`.
    pub const fn exactly(n: usize) -> Self {
        Arity { min: n, max: n }
    }
    /// From `min` to `max`.
    pub const fn range(min: usize, max: usize) -> Self {
        Arity { min, max }
    }
    /// At least `min`.
    pub const fn at_least(min: usize) -> Self {
        Arity { min, max: usize::MAX }
    }
    /// Checks `n` against this arity; `what` is "bottom" or "top".
    pub fn check(&self, n: usize, what: &str) -> Result<()> {
        if n >= self.min && n <= self.max {
            return Ok(());
        }
        let want = if self.min == self.max {
            format!("exactly {}", self.min)
        } else if self.max == usize::MAX {
            format!("at least {}", self.min)
        } else {
            format!("{} to {}", self.min, self.max)
        };
        Err(Error::Config(format!("takes {want} {what} blob(s), given {n}")))
    }
}

/// A learnable blob a layer asks the net for: its shape and how to fill it.
#[derive(Clone, Debug)]
pub struct ParamDef {
    /// Shape of the blob.
    pub shape: Vec<usize>,
    /// How to initialise it (a constant 0 filler when `None`).
    pub filler: Option<FillerParameter>,
}

/// What a layer knows when it is built.
#[derive(Clone, Debug, Default)]
pub struct LayerContext {
    /// The phase the net runs in.
    pub phase: Phase,
    /// Seed for layers that draw random numbers as they run (Dropout, DummyData, data
    /// shuffling), mixed with the layer's position so that each layer has its own stream.
    pub seed: u64,
    /// The directory of the model file the net came from, when it came from a file: data
    /// layers look there for `source`, `root_folder` and mean files that are not found
    /// relative to the working directory.
    pub model_dir: Option<PathBuf>,
}

impl LayerContext {
    /// A context for `phase` and `seed`, with no model directory.
    pub fn new(phase: Phase, seed: u64) -> Self {
        LayerContext { phase, seed, model_dir: None }
    }
}

/// Where the next forward pass stands in training. Layers whose forward draws random numbers
/// (Dropout) or reads a stream of data should derive their draws and their position from this,
/// not from how many draws or reads came before: a run resumed from a snapshot then continues
/// bit for bit as if it had never stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// The solver's iteration (the number of updates made so far).
    pub iter: u64,
    /// Which of the iteration's passes this is: `0..iter_size` in training (gradients of
    /// `iter_size` passes are accumulated), `0..test_iter` in a test.
    pub sub: u32,
    /// Passes per iteration (`iter_size` in training, `test_iter` in a test).
    pub per_iter: u32,
}

impl Pass {
    /// A global count of passes: `iter * per_iter + sub` (a data layer's batch index).
    pub fn index(&self) -> u64 {
        self.iter.saturating_mul(self.per_iter as u64).saturating_add(self.sub as u64)
    }
}

/// One layer. The net checks bottom/top counts ([`Layer::bottoms`], [`Layer::tops`]), in-place
/// use ([`Layer::allows_in_place`]) and calls `setup` once, then `reshape` + `forward` on every
/// forward pass and `backward` on every backward pass.
pub trait Layer<B: Backend>: Send {
    /// Caffe's type string ("Convolution").
    fn type_name(&self) -> &'static str;
    /// Allowed number of bottoms.
    fn bottoms(&self) -> Arity;
    /// Allowed number of tops.
    fn tops(&self) -> Arity;
    /// Whether top 0 may be the same blob as bottom 0.
    fn allows_in_place(&self) -> bool {
        false
    }
    /// Whether the tops keep the shapes they were given (Input: the user reshapes them);
    /// the net then skips reshaping them on forward.
    fn keeps_top_shapes(&self) -> bool {
        false
    }
    /// Whether this is a loss layer: its first top gets loss weight 1 unless told otherwise.
    fn is_loss(&self) -> bool {
        false
    }
    /// The scalar the last forward wrote to top 0, where the layer computed it on the host (a
    /// loss): the net then need not read it back from a device.
    fn host_loss(&self) -> Option<f32> {
        None
    }
    /// For each bottom, whether a gradient can flow to it (Caffe's `AllowForceBackward`; false
    /// for labels).
    fn allow_force_backward(&self, _bottom: usize) -> bool {
        true
    }
    /// Whether backward, asked to propagate to bottom `bottom`, writes that bottom's whole diff
    /// without reading what it held (the net's diff sharing relies on it: a diff no layer
    /// writes is zeroed for the layers that read it, as Caffe's never-written diffs are zero).
    /// True for every bottom that takes a gradient; false where Caffe's layer leaves the diff
    /// untouched (Crop's reference bottom, Upsample's mask) or refuses to propagate (labels).
    fn writes_bottom_diff(&self, bottom: usize) -> bool {
        self.allow_force_backward(bottom)
    }
    /// Whether backward reads top `top`'s diff (true but for tops that carry no gradient,
    /// such as the pooling mask; the net's diff sharing then gives that diff no memory).
    fn reads_top_diff(&self, _top: usize) -> bool {
        true
    }
    /// Whether backward reads bottom `bottom`'s data (values). The net's data sharing lends a
    /// blob's values a pooled buffer only until the last forward or backward that reads them;
    /// answering true keeps them, so it is the default. False where backward works from what
    /// forward kept (a pooling mask, softmax probabilities, BN's normalized input) or from
    /// gradients alone.
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        true
    }
    /// Whether backward reads top `top`'s data (see [`Layer::backward_reads_bottom`]; for an
    /// in-place top, either answer true keeps the blob).
    fn backward_reads_top(&self, _top: usize) -> bool {
        true
    }
    /// `Some(negative_slope)` for a ReLU, which the net may run inside the layer before it
    /// (see `fuse_relu`); None for every other layer.
    fn relu_slope(&self) -> Option<f32> {
        None
    }
    /// `Some(negative_slope)`: asks the layer to run, from now on, the ReLU that runs in place
    /// on its top 0 right after it: forward then writes that ReLU's output, and backward takes
    /// the ReLU's top diff, as the pair would (the net then skips the ReLU; see
    /// `NetOptions::fuse`). Returns whether the layer took it; by default it does not. `None`:
    /// back to the layer alone.
    fn fuse_relu(&mut self, _negative_slope: Option<f32>) -> bool {
        false
    }
    /// Tells the layer that the net will never run its backward (a layer no loss depends on,
    /// or any layer of a solver's test net): it may stop keeping what only backward reads.
    /// Called after the build, possibly more than once. An error (an inner net that cannot
    /// re-plan its memory) fails the build or [`crate::net::Net::make_forward_only`].
    fn forward_only(&mut self) -> Result<()> {
        Ok(())
    }
    /// Whether backward can be skipped entirely (layers with no backward, such as Accuracy).
    fn has_backward(&self) -> bool {
        true
    }
    /// Whether forward draws random numbers, so that two forwards of the same input give
    /// different outputs (Dropout in TRAIN, or in TEST with SegNet's `sample_weights_test`:
    /// Monte-Carlo dropout).
    fn is_stochastic(&self) -> bool {
        false
    }
    /// The `ParamSpec` of learnable blob `index` when the layer's `param` list has no entry
    /// for it (None: Caffe's defaults, lr_mult 1 and decay_mult 1). BatchNorm answers lr_mult 0
    /// for its statistics, as Caffe's BatchNormLayer adds `param { lr_mult: 0 }` entries.
    fn default_param_spec(&self, _index: usize) -> Option<ParamSpec> {
        None
    }
    /// Called once with the first bottom shapes: checks them and declares the learnable blobs.
    fn setup(&mut self, _be: &B, _bottoms: &[&[usize]]) -> Result<Vec<ParamDef>> {
        Ok(Vec::new())
    }
    /// Called in every forward pass just before [`Layer::reshape`], with the bottoms (their
    /// values computed), for the rare layer whose top shapes depend on bottom values, not only
    /// on their shapes (Filter: how many items its selector keeps, which Caffe's Reshape reads
    /// from the selector's data): it reads them here, and the reshape that follows gives the
    /// shapes they imply. Not called before the reshape when the net is built, nor by
    /// `Net::reshape`, where values may not be computed yet: reshape then answers from what the
    /// layer read last, or an upper bound (Filter: every item, as Caffe's first reshape).
    /// Others ignore it.
    fn read_bottom_values(&mut self, _be: &B, _bottoms: &[&Blob<B>]) -> Result<()> {
        Ok(())
    }
    /// Called before every forward: checks bottom shapes, sizes internal buffers, and returns
    /// the top shapes.
    fn reshape(&mut self, be: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>>;
    /// Computes the tops from the bottoms.
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()>;
    /// Computes bottom diffs (where `propagate_down[i]`) and accumulates parameter diffs.
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()>;
    /// Called before each forward pass of a training run or test with where that pass stands
    /// (see [`Pass`]); layers without randomness or streamed data ignore it.
    fn set_pass(&mut self, _pass: Pass) {}
    /// Bytes of backend memory the layer holds for values and gradients of its own, beyond its
    /// tops and learnable blobs (the unrolled net of an LSTM or RNN, SPP's pyramid), for
    /// `crema inspect`.
    fn inner_bytes(&self) -> usize {
        0
    }
    /// Multiply-adds times two of one forward pass, for `crema inspect` and benchmarks.
    fn flops(&self, _bottoms: &[&[usize]], _tops: &[&[usize]]) -> u64 {
        0
    }
    /// Tells a data layer that its top `top` feeds a layer taking class labels in
    /// `0..classes`, or `ignore_label`; it then refuses other values with an error naming the
    /// file. Called by the net after building, once per such reader; others ignore it.
    fn set_label_range(&mut self, _top: usize, _classes: usize, _ignore_label: Option<i32>) -> Result<()> {
        Ok(())
    }
    /// Called when the caller is done running the net for now (the end of `crema test`,
    /// `crema forward` or training; see `Net::finish`): a layer that writes a file as the net
    /// runs (HDF5Output) writes what it still holds. The net may run again after it. Others
    /// ignore it.
    fn finish(&mut self, _be: &B) -> Result<()> {
        Ok(())
    }
}

/// The parameter message of a layer, or an error naming the field when it is required.
pub(crate) fn required<'a, T>(p: &'a Option<T>, field: &str) -> Result<&'a T> {
    p.as_ref().ok_or_else(|| Error::Config(format!("missing `{field}`")))
}
