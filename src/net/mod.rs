//! The net: layers wired by blob name, as Caffe's `Net` wires them.
//!
//! The net owns every blob in one arena (`blobs`) and every learnable blob in another
//! (`params`); layers hold indices. An in-place layer's top is the same index as its bottom; a
//! shared parameter is one index used by several layers.

mod build;
mod data_share;
pub mod filter;
mod labels;
mod run;
mod share;
mod diffs;
pub mod split;
mod weights;

pub use build::{fusion_by_default, NetOptions};
pub use data_share::DataMemory;
pub use diffs::DiffMemory;
pub use weights::{legacy_shape_equals, WeightsReport};

use crate::backend::Backend;
use crate::blob::Blob;
use crate::layers::Layer;
use crate::proto::{LayerParameter, Phase};

/// A learnable blob of the net, with the multipliers the solver applies to it.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// Name of the layer that owns it (the first layer that used it).
    pub layer: String,
    /// Its index among that layer's blobs.
    pub index: usize,
    /// Its sharing name (ParamSpec.name), empty when unshared.
    pub name: String,
    /// Learning-rate multiplier.
    pub lr_mult: f32,
    /// Weight-decay multiplier.
    pub decay_mult: f32,
}

/// One layer of a built net.
pub struct LayerEntry<B: Backend> {
    /// The layer's parameters as the net was built from them (after upgrades, state filtering
    /// and split insertion).
    pub param: LayerParameter,
    /// The layer's computation.
    pub layer: Box<dyn Layer<B>>,
    /// Blob indices of the bottoms.
    pub bottoms: Vec<usize>,
    /// Blob indices of the tops.
    pub tops: Vec<usize>,
    /// Param-arena indices of the learnable blobs.
    pub params: Vec<usize>,
    /// Whether each learnable blob gets a gradient (`lr_mult != 0`, or force_backward).
    pub param_propagate: Vec<bool>,
    /// Loss weight of each top (0 when the top is not a loss).
    pub loss_weights: Vec<f32>,
    /// Whether backward runs for this layer.
    pub need_backward: bool,
    /// Whether each bottom receives a gradient.
    pub bottom_need_backward: Vec<bool>,
    /// The layer this one runs inside of, when the net fused it there (see
    /// [`NetOptions::fuse`]); the net then skips it.
    pub fused_into: Option<usize>,
}

impl<B: Backend> LayerEntry<B> {
    /// The layer's name.
    pub fn name(&self) -> &str {
        self.param.name()
    }
    /// The layer's type string.
    pub fn type_name(&self) -> &str {
        self.param.r#type()
    }
}

/// A built net on backend `B`.
pub struct Net<B: Backend> {
    be: B,
    name: String,
    phase: Phase,
    layers: Vec<LayerEntry<B>>,
    blobs: Vec<Blob<B>>,
    blob_names: Vec<String>,
    params: Vec<Blob<B>>,
    param_info: Vec<ParamInfo>,
    outputs: Vec<usize>,
    inputs: Vec<usize>,
    /// The pooled diff buffers, when diffs are shared (see [`NetOptions::share_diffs`]).
    share: Option<share::DiffPool<B>>,
    /// The pooled data buffers, when data is shared (see [`NetOptions::share_data`]).
    data_share: Option<data_share::DataPool<B>>,
    /// The net runs forward only ([`Net::make_forward_only`]).
    forward_only: bool,
    /// Per blob: whether no layer reads it (a loss top's diff is then written by the net
    /// alone).
    unread: Vec<bool>,
    /// Per blob: the value every element of its diff holds, where the net wrote it (a loss
    /// weight, at forward) and nothing may have changed it since: loss layers take it from here
    /// instead of reading it back from a device.
    diff_values: Vec<Option<f32>>,
}

impl<B: Backend> Net<B> {
    /// The backend the net runs on.
    pub fn backend(&self) -> &B {
        &self.be
    }
    /// The net's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The phase it was built in.
    pub fn phase(&self) -> Phase {
        self.phase
    }
    /// Its layers in order.
    pub fn layers(&self) -> &[LayerEntry<B>] {
        &self.layers
    }
    /// Every blob, in the order they were created.
    pub fn blobs(&self) -> &[Blob<B>] {
        &self.blobs
    }
    /// Every blob, writable. For tests and tools that set values by index; the net's wiring
    /// does not change.
    #[doc(hidden)]
    pub fn blobs_mut_for_tests(&mut self) -> &mut [Blob<B>] {
        self.diff_values.iter_mut().for_each(|v| *v = None);
        &mut self.blobs
    }
    /// The name of blob `i`.
    pub fn blob_name(&self, i: usize) -> &str {
        &self.blob_names[i]
    }
    /// The index of the blob called `name`.
    pub fn blob_index(&self, name: &str) -> Option<usize> {
        self.blob_names.iter().position(|n| n == name)
    }
    /// The blob called `name`.
    pub fn blob(&self, name: &str) -> Option<&Blob<B>> {
        self.blob_index(name).map(|i| &self.blobs[i])
    }
    /// The blob called `name`, writable (to set inputs or top diffs).
    pub fn blob_mut(&mut self, name: &str) -> Option<&mut Blob<B>> {
        let i = self.blob_index(name)?;
        // The caller may set the diff: the net no longer knows it.
        self.diff_values[i] = None;
        Some(&mut self.blobs[i])
    }
    /// The learnable blobs (each shared blob once).
    pub fn params(&self) -> &[Blob<B>] {
        &self.params
    }
    /// The learnable blobs, writable (for the solver).
    pub fn params_mut(&mut self) -> &mut [Blob<B>] {
        &mut self.params
    }
    /// What the solver needs to know of each learnable blob.
    pub fn param_info(&self) -> &[ParamInfo] {
        &self.param_info
    }
    /// Blob indices of the net's outputs: tops that no layer reads.
    pub fn outputs(&self) -> &[usize] {
        &self.outputs
    }
    /// Blob indices of the tops of Input layers.
    pub fn inputs(&self) -> &[usize] {
        &self.inputs
    }
    /// The index of the layer called `name`.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.name() == name)
    }
    /// Per blob, whether `names` names it; an error naming the first name the net lacks, as a
    /// blob whose `what` ("data" or "diff") was to be kept.
    fn named_blobs(&self, names: &[&str], what: &str) -> crate::Result<Vec<bool>> {
        let mut named = vec![false; self.blobs.len()];
        for name in names {
            let i = self.blob_index(name).ok_or_else(|| {
                crate::Error::Config(format!("cannot keep the {what} of `{name}`: the net `{}` has no blob of that name", self.name))
            })?;
            named[i] = true;
        }
        Ok(named)
    }
    /// The learnable blobs of layer `i`, as the layer sees them (shared ones included).
    pub fn layer_params(&self, i: usize) -> Vec<&Blob<B>> {
        self.layers[i].params.iter().map(|&p| &self.params[p]).collect()
    }
}
