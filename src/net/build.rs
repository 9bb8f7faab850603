//! Building a net from a NetParameter: state filtering, split insertion, layer creation,
//! wiring by blob name, parameter creation and sharing, loss weights and the analysis of which
//! layers need backward (Caffe's `Net::Init`).

use super::filter::filter_net;
use super::split::insert_splits;
use super::{LayerEntry, Net, ParamInfo};
use crate::backend::Backend;
use crate::blob::{checked_count, Blob};
use crate::filler::fill;
use crate::layers::{create_layer, LayerContext, ParamDef};
use crate::proto::param_spec::DimCheckMode;
use crate::proto::{NetParameter, ParamSpec, Phase};
use crate::rng::Rng;
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Shared-parameter bookkeeping while layers are added.
struct Sharing {
    by_name: HashMap<String, usize>,
    lr_set: Vec<bool>,
    decay_set: Vec<bool>,
}

/// How to build a net beyond its definition.
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    /// Seed of every random stream: fillers, and the layers that draw as they run (data
    /// order, crops and mirrors, Dropout).
    pub seed: u64,
    /// The directory of the model file, where data layers look for files (sources, image
    /// folders, mean files) not found relative to the working directory. `None` when the
    /// net did not come from a file.
    pub model_dir: Option<PathBuf>,
    /// Share diff memory between blobs whose gradients are never live at the same time in a
    /// backward pass (see [`Net::set_diff_sharing`]): a training net then holds a few diffs'
    /// worth of gradient memory instead of one diff per blob, and computes the same numbers,
    /// but blob diffs (other than loss tops and Input tops) cannot be read after backward.
    /// The solver turns it on for its training net.
    pub share_diffs: bool,
    /// Share data memory between blobs whose values are never needed at the same time in a
    /// forward and backward pass (see [`Net::set_data_sharing`]): in SegNet, the blobs that
    /// feed only a max pooling or an upsampling's data input lend their memory to the decoder's
    /// blobs. The same numbers, but those blobs' data cannot be read after the pass. The solver
    /// turns it on for its nets.
    pub share_data: bool,
    /// Run an in-place ReLU inside the in-place layer before it where that layer can (SegNet's
    /// BN in LEARN mode; see [`crate::layers::Layer::fuse_relu`]): the same numbers as running
    /// the two, with fewer passes over memory. A whole forward or backward is unchanged; stepping
    /// with [`Net::forward_layer`] shows the ReLU's output as the fused layer's. On by default
    /// ([`fusion_by_default`]).
    pub fuse: bool,
}

/// Whether nets fuse layers (see [`NetOptions::fuse`]): yes, unless the environment says
/// `CREMA_FUSE=0`, to time or debug the layers one by one.
pub fn fusion_by_default() -> bool {
    std::env::var_os("CREMA_FUSE").is_none_or(|v| v != "0")
}

impl NetOptions {
    /// Options for a net read from `model` (a .prototxt path), with `seed`.
    pub fn for_file(model: &Path, seed: u64) -> Self {
        let dir = model.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d });
        NetOptions { seed, model_dir: dir.map(Path::to_path_buf), share_diffs: false, share_data: false, fuse: fusion_by_default() }
    }
}

impl<B: Backend> Net<B> {
    /// Builds the net `param` (already upgraded to the current format; its `state` says the
    /// phase, level and stages) on `be`, filling learnable blobs from their fillers with
    /// random streams of `seed`. Data layers resolve their files relative to the working
    /// directory only; [`Net::with_options`] also gives them the model's directory.
    pub fn new(be: B, param: &NetParameter, seed: u64) -> Result<Self> {
        Self::with_options(be, param, &NetOptions { seed, model_dir: None, share_diffs: false, share_data: false, fuse: fusion_by_default() })
    }

    /// Builds the net `param` on `be` with `opts` (see [`Net::new`]).
    pub fn with_options(be: B, param: &NetParameter, opts: &NetOptions) -> Result<Self> {
        let seed = opts.seed;
        let filtered = filter_net(param)?;
        let param = insert_splits(&filtered);
        let phase = param.state.as_ref().map(|s| s.phase()).unwrap_or(Phase::Test);
        let mut net = Net {
            be,
            name: param.name().to_string(),
            phase,
            layers: Vec::new(),
            blobs: Vec::new(),
            blob_names: Vec::new(),
            params: Vec::new(),
            param_info: Vec::new(),
            outputs: Vec::new(),
            inputs: Vec::new(),
            share: None,
            data_share: None,
            forward_only: false,
            unread: Vec::new(),
            diff_values: Vec::new(),
        };
        let mut available: Vec<usize> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        let mut blob_need_backward: Vec<bool> = Vec::new();
        let mut sharing = Sharing { by_name: HashMap::new(), lr_set: Vec::new(), decay_set: Vec::new() };

        for lp in &param.layer {
            let (name, kind) = (lp.name().to_string(), lp.r#type().to_string());
            let wrap = |e: Error| e.in_layer(&name, &kind);
            if lp.name.is_none() {
                return Err(Error::Config(format!("a layer of type `{kind}` has no name")));
            }
            let cx = LayerContext {
                phase,
                seed: crate::rng::Rng::stream(seed, 1_000_000 + net.layers.len() as u64).next_u64(),
                model_dir: opts.model_dir.clone(),
            };
            let layer = create_layer::<B>(lp, &cx).map_err(wrap)?;
            layer.bottoms().check(lp.bottom.len(), "bottom").map_err(wrap)?;
            // Caffe's AutoTopBlobs: a loss layer written without its top gets an anonymous one,
            // which counts towards the loss but no other layer can read.
            let auto_tops = if layer.is_loss() { layer.tops().min.saturating_sub(lp.top.len()) } else { 0 };
            layer.tops().check(lp.top.len() + auto_tops, "top").map_err(wrap)?;
            if !lp.propagate_down.is_empty() && lp.propagate_down.len() != lp.bottom.len() {
                return Err(wrap(Error::Config(format!(
                    "propagate_down is given {} times for {} bottoms",
                    lp.propagate_down.len(),
                    lp.bottom.len()
                ))));
            }

            // Bottoms: each consumes an available blob.
            let mut bottoms = Vec::new();
            let mut bottom_need = Vec::new();
            let mut need_backward = false;
            for (i, b) in lp.bottom.iter().enumerate() {
                let id = *index_of.get(b).ok_or_else(|| {
                    wrap(Error::Config(format!("bottom {i} `{b}` is not produced by any earlier layer")))
                })?;
                let Some(pos) = available.iter().position(|&a| a == id) else {
                    return Err(wrap(Error::Config(format!(
                        "bottom {i} `{b}` was already consumed (a blob is read by one layer unless split)"
                    ))));
                };
                available.remove(pos);
                let mut need = blob_need_backward[id];
                if !lp.propagate_down.is_empty() {
                    need = lp.propagate_down[i];
                }
                need_backward |= blob_need_backward[id];
                bottoms.push(id);
                bottom_need.push(need);
            }

            // Tops: in place when top i names bottom i, otherwise a new blob.
            let mut tops = Vec::new();
            for (j, t) in lp.top.iter().enumerate() {
                if lp.bottom.get(j) == Some(t) {
                    if j != 0 || !layer.allows_in_place() {
                        return Err(wrap(Error::Config(format!(
                            "cannot run in place (top {j} `{t}` is also bottom {j}); give the top another name"
                        ))));
                    }
                    tops.push(bottoms[j]);
                } else if index_of.contains_key(t) {
                    return Err(wrap(Error::Config(format!("top `{t}` is produced by more than one layer"))));
                } else {
                    let id = net.blobs.len();
                    net.blobs.push(Blob::new(&net.be, &[], false)?);
                    net.blob_names.push(t.clone());
                    blob_need_backward.push(false);
                    index_of.insert(t.clone(), id);
                    tops.push(id);
                }
                available.push(*tops.last().expect("pushed above"));
            }
            for _ in 0..auto_tops {
                tops.push(net.blobs.len());
                net.blobs.push(Blob::new(&net.be, &[], false)?);
                net.blob_names.push(format!("({name} automatic top)"));
                blob_need_backward.push(false);
            }
            if kind == "Input" || kind == "MemoryData" {
                net.inputs.extend(&tops);
            }

            // Setup, parameters and the first reshape.
            let mut layer = layer;
            let bottom_shapes: Vec<Vec<usize>> = bottoms.iter().map(|&b| net.blobs[b].shape().to_vec()).collect();
            let shape_refs: Vec<&[usize]> = bottom_shapes.iter().map(|s| s.as_slice()).collect();
            let defs = layer.setup(&net.be, &shape_refs).map_err(wrap)?;
            let mut param_ids = Vec::new();
            let mut param_propagate = Vec::new();
            for (p, def) in defs.iter().enumerate() {
                let default_spec = layer.default_param_spec(p).unwrap_or_default();
                let spec = lp.param.get(p).unwrap_or(&default_spec);
                let id = net.add_param(&mut sharing, &name, p, def, spec, lp.blobs.get(p), seed).map_err(wrap)?;
                param_ids.push(id);
                let propagate = spec.lr_mult() != 0.0;
                need_backward |= propagate;
                param_propagate.push(propagate);
            }
            if lp.param.len() > defs.len() {
                return Err(wrap(Error::Config(format!(
                    "{} `param` entries given for a layer with {} learnable blobs",
                    lp.param.len(),
                    defs.len()
                ))));
            }
            let top_shapes = layer.reshape(&net.be, &shape_refs).map_err(wrap)?;
            if top_shapes.len() != tops.len() {
                return Err(wrap(Error::Internal(format!("reshape gave {} shapes for {} tops", top_shapes.len(), tops.len()))));
            }
            for (&t, s) in tops.iter().zip(&top_shapes) {
                net.blobs[t].reshape(&net.be, s).map_err(wrap)?;
            }

            // Loss weights.
            let mut loss_weights = vec![0.0f32; tops.len()];
            if !lp.loss_weight.is_empty() {
                if lp.loss_weight.len() != tops.len() {
                    return Err(wrap(Error::Config(format!(
                        "loss_weight is given {} times for {} tops (give it once per top, or not at all)",
                        lp.loss_weight.len(),
                        tops.len()
                    ))));
                }
                loss_weights.copy_from_slice(&lp.loss_weight);
            } else if layer.is_loss() && !tops.is_empty() {
                loss_weights[0] = 1.0;
            }
            for &t in &tops {
                blob_need_backward[t] = need_backward;
            }
            net.layers.push(LayerEntry {
                param: lp.clone(),
                layer,
                bottoms,
                tops,
                params: param_ids,
                param_propagate,
                loss_weights,
                need_backward,
                bottom_need_backward: bottom_need,
                fused_into: None,
            });
        }
        net.unread = vec![true; net.blobs.len()];
        net.diff_values = vec![None; net.blobs.len()];
        for &b in net.layers.iter().flat_map(|l| &l.bottoms) {
            net.unread[b] = false;
        }
        net.outputs = available;
        net.tell_label_ranges()?;
        net.prune_backward(param.force_backward())?;
        net.set_fusion(opts.fuse)?;
        let with_diff = net.layers.iter().any(|l| l.need_backward);
        for p in &mut net.params {
            p.set_with_diff(&net.be, with_diff)?;
        }
        for b in &mut net.blobs {
            // Diffs about to be shared are not allocated first (they would set the peak).
            b.set_diff_mode(&net.be, with_diff, opts.share_diffs)?;
        }
        if opts.share_diffs {
            net.set_diff_sharing(true, &[])?;
        }
        if opts.share_data {
            net.set_data_sharing(true, &[])?;
        }
        Ok(net)
    }

    /// Adds learnable blob `index` of layer `layer`: a new blob filled from `def` (or from the
    /// layer's inline `blobs`), or the blob another layer shares under the same name.
    #[allow(clippy::too_many_arguments)]
    fn add_param(
        &mut self,
        sharing: &mut Sharing,
        layer: &str,
        index: usize,
        def: &ParamDef,
        spec: &ParamSpec,
        inline: Option<&crate::proto::BlobProto>,
        seed: u64,
    ) -> Result<usize> {
        let name = spec.name().to_string();
        if !name.is_empty()
            && let Some(&owner) = sharing.by_name.get(&name)
        {
            let have = self.params[owner].shape().to_vec();
            let ok = match spec.share_mode() {
                DimCheckMode::Strict => have == def.shape,
                DimCheckMode::Permissive => have.iter().product::<usize>() == def.shape.iter().product::<usize>(),
            };
            if !ok {
                return Err(Error::Shape(format!(
                    "shared parameter `{name}` has shape {:?} in layer `{}` but {:?} here ({} share mode)",
                    have,
                    self.param_info[owner].layer,
                    def.shape,
                    if spec.share_mode() == DimCheckMode::Strict { "STRICT" } else { "PERMISSIVE" }
                )));
            }
            let info = &mut self.param_info[owner];
            if spec.lr_mult.is_some() {
                if sharing.lr_set[owner] && info.lr_mult != spec.lr_mult() {
                    return Err(Error::Config(format!("shared parameter `{name}` has mismatched lr_mult")));
                }
                info.lr_mult = spec.lr_mult();
                sharing.lr_set[owner] = true;
            }
            if spec.decay_mult.is_some() {
                if sharing.decay_set[owner] && info.decay_mult != spec.decay_mult() {
                    return Err(Error::Config(format!("shared parameter `{name}` has mismatched decay_mult")));
                }
                info.decay_mult = spec.decay_mult();
                sharing.decay_set[owner] = true;
            }
            return Ok(owner);
        }
        let id = self.params.len();
        checked_count(&def.shape)?;
        let values = match inline {
            Some(proto) => {
                let blob = super::weights::blob_from_proto(proto)
                    .map_err(|e| Error::Config(format!("inline blob {index}: {e}")))?;
                if blob.shape != def.shape && !(blob.legacy_4d && super::weights::legacy_shape_equals(&blob.shape, &def.shape)) {
                    return Err(Error::Shape(format!(
                        "inline blob {index} has shape {:?}, the layer expects {:?}",
                        blob.shape, def.shape
                    )));
                }
                blob.data
            }
            None => match &def.filler {
                Some(f) => fill(f, &def.shape, &mut Rng::stream(seed, id as u64))?,
                None => vec![0.0; def.shape.iter().product()],
            },
        };
        self.params.push(Blob::from_host(&self.be, &def.shape, &values)?);
        self.param_info.push(ParamInfo {
            layer: layer.to_string(),
            index,
            name: name.clone(),
            lr_mult: spec.lr_mult(),
            decay_mult: spec.decay_mult(),
        });
        sharing.lr_set.push(spec.lr_mult.is_some());
        sharing.decay_set.push(spec.decay_mult.is_some());
        if !name.is_empty() {
            sharing.by_name.insert(name, id);
        }
        Ok(id)
    }

    /// Makes the net run forward only, for good (a solver's test net, which Caffe never runs
    /// backward): no layer needs backward any more, so no blob or learnable blob keeps a
    /// gradient, layers stop keeping what only backward reads (BN's normalised input), and data
    /// sharing, where on, lends each blob's values only until its last reader ran forward.
    /// [`Net::backward`] then fails.
    pub fn make_forward_only(&mut self) -> Result<()> {
        self.forward_only = true;
        if let Some(mut pool) = self.share.take() {
            pool.reclaim_all(&mut self.blobs);
        }
        for l in &mut self.layers {
            l.need_backward = false;
            l.bottom_need_backward.iter_mut().for_each(|b| *b = false);
            l.layer.forward_only().map_err(|e| e.in_layer(l.param.name(), l.param.r#type()))?;
        }
        for b in self.blobs.iter_mut().chain(&mut self.params) {
            b.set_with_diff(&self.be, false)?;
        }
        self.diff_values.iter_mut().for_each(|v| *v = None);
        self.replan_data_sharing()
    }

    /// Whether the net runs forward only ([`Net::make_forward_only`]).
    pub fn is_forward_only(&self) -> bool {
        self.forward_only
    }

    /// Turns layer fusion on or off (see [`NetOptions::fuse`]) between passes (not between a
    /// forward and its backward). What a whole forward and backward compute does not change.
    pub fn set_fusion(&mut self, on: bool) -> Result<()> {
        for j in 0..self.layers.len() {
            if let Some(i) = self.layers[j].fused_into.take() {
                self.layers[i].layer.fuse_relu(None);
            }
        }
        if on {
            self.fuse_relus();
        }
        // Fused layers read nothing: the data plan follows.
        self.replan_data_sharing()
    }

    /// Hands each ReLU that runs in place on the blob of the layer just before it, itself in
    /// place, to that layer, where the layer takes it ([`crate::layers::Layer::fuse_relu`]).
    /// Every value a reader could see stays Caffe's:
    /// - nothing between the two could read the ReLU's input, and neither top is a loss;
    /// - the first layer runs in place, so its backward overwrites the diff the ReLU would have
    ///   left (the ReLU's bottom diff is never seen);
    /// - no later layer writes the blob: Caffe's in-place ReLU computes its gradient from what
    ///   the blob holds when its backward runs, which is its own output only if nothing
    ///   overwrote it (an in-place BN or Dropout after it would have), and the fused layer
    ///   recomputes the ReLU's output.
    ///
    /// The ReLU entry stays (for its name, its blobs and diff planning) and is skipped when the
    /// net runs.
    fn fuse_relus(&mut self) {
        let mut last_writer = vec![0; self.blobs.len()];
        for (k, l) in self.layers.iter().enumerate() {
            l.tops.iter().for_each(|&t| last_writer[t] = k);
        }
        for j in 1..self.layers.len() {
            let (head, tail) = self.layers.split_at_mut(j);
            let (prev, relu) = (&mut head[j - 1], &mut tail[0]);
            let (Some(slope), &[b]) = (relu.layer.relu_slope(), relu.bottoms.as_slice()) else { continue };
            let fusable = relu.tops == [b]
                && prev.bottoms.first() == Some(&b)
                && prev.tops.first() == Some(&b)
                && last_writer[b] == j
                && prev.loss_weights[0] == 0.0
                && relu.loss_weights[0] == 0.0
                && relu.need_backward == prev.need_backward;
            if fusable && prev.layer.fuse_relu(Some(slope)) {
                relu.fused_into = Some(j - 1);
            }
        }
    }

    /// Caffe's second pass: layers whose tops reach no loss skip backward, bottoms whose
    /// gradients nobody needs are not computed; then `force_backward` turns everything on
    /// where the layer allows it.
    fn prune_backward(&mut self, force_backward: bool) -> Result<()> {
        let mut under_loss: HashSet<usize> = HashSet::new();
        let mut skip: HashSet<usize> = HashSet::new();
        for entry in self.layers.iter_mut().rev() {
            let mut contributes = false;
            let mut skip_propagate = true;
            for (j, t) in entry.tops.iter().enumerate() {
                if entry.loss_weights[j] != 0.0 || under_loss.contains(t) {
                    contributes = true;
                }
                if !skip.contains(t) {
                    skip_propagate = false;
                }
            }
            if entry.need_backward && skip_propagate {
                entry.need_backward = false;
                entry.bottom_need_backward.iter_mut().for_each(|b| *b = false);
            }
            if !contributes {
                entry.need_backward = false;
            }
            for (i, &b) in entry.bottoms.iter().enumerate() {
                if contributes {
                    under_loss.insert(b);
                } else {
                    entry.bottom_need_backward[i] = false;
                }
                if !entry.bottom_need_backward[i] {
                    skip.insert(b);
                }
            }
        }
        if force_backward {
            for entry in &mut self.layers {
                entry.need_backward = true;
                for (i, need) in entry.bottom_need_backward.iter_mut().enumerate() {
                    *need = *need || entry.layer.allow_force_backward(i);
                }
                entry.param_propagate.iter_mut().for_each(|p| *p = true);
            }
        }
        for entry in &mut self.layers {
            if !entry.layer.has_backward() {
                entry.need_backward = false;
            }
            // Its backward never runs (nothing sets `need_backward` again): it need not keep
            // what only backward reads (BN's saved statistics, an unrolled net's gradients).
            if !entry.need_backward {
                entry.layer.forward_only().map_err(|e| e.in_layer(entry.param.name(), entry.param.r#type()))?;
            }
        }
        Ok(())
    }
}
