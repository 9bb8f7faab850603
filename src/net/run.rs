//! Running a built net: reshape, forward (returning the loss), backward.

use super::Net;
use crate::backend::Backend;
use crate::layers::{Ctx, Pass};
use crate::{Error, Result};

impl<B: Backend> Net<B> {
    /// Runs every layer forward (reshaping each first, so inputs of a new size flow through)
    /// and returns the total loss.
    pub fn forward(&mut self) -> Result<f32> {
        if let Some(pool) = &mut self.data_share {
            // A new pass: every value is written again.
            pool.reclaim_all(&mut self.blobs);
        }
        let mut loss = 0.0f32;
        for i in 0..self.layers.len() {
            loss += self.forward_layer(i)?;
        }
        Ok(loss)
    }

    /// Runs forward, checking after each layer that its tops are finite. Returns the loss, or
    /// the name of the first layer and top whose values are not finite. Slower than
    /// [`Net::forward`]: for diagnosis.
    pub fn forward_checked(&mut self) -> Result<std::result::Result<f32, (String, String)>> {
        let mut loss = 0.0f32;
        for i in 0..self.layers.len() {
            loss += self.forward_layer(i)?;
            for &t in &self.layers[i].tops {
                if !self.be.all_finite(&self.blobs[t].data)? {
                    return Ok(Err((self.layers[i].name().to_string(), self.blob_names[t].clone())));
                }
            }
        }
        Ok(Ok(loss))
    }

    /// Reshapes and runs layer `i` forward; returns the loss it contributes. A layer fused into
    /// the one before it (see [`super::NetOptions::fuse`]) does nothing here: that one ran it.
    pub fn forward_layer(&mut self, i: usize) -> Result<f32> {
        let entry = &self.layers[i];
        self.be.enter_layer(Some((entry.param.name(), entry.param.r#type())));
        let result = self.run_forward(i);
        self.be.enter_layer(None);
        if let Some(pool) = &mut self.data_share {
            pool.after_forward(i, &mut self.blobs);
        }
        result
    }

    fn run_forward(&mut self, i: usize) -> Result<f32> {
        let entry = &mut self.layers[i];
        if entry.fused_into.is_some() {
            return Ok(0.0);
        }
        let (name, kind) = (entry.param.name().to_string(), entry.param.r#type().to_string());
        let wrap = |e: Error| e.in_layer(&name, &kind);
        let bottoms: Vec<&crate::blob::Blob<B>> = entry.bottoms.iter().map(|&b| &self.blobs[b]).collect();
        entry.layer.read_bottom_values(&self.be, &bottoms).map_err(wrap)?;
        let shapes: Vec<Vec<usize>> = bottoms.iter().map(|b| b.shape().to_vec()).collect();
        let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        let top_shapes = entry.layer.reshape(&self.be, &refs).map_err(wrap)?;
        if !entry.layer.keeps_top_shapes() {
            for (&t, s) in entry.tops.iter().zip(&top_shapes) {
                self.blobs[t].reshape(&self.be, s).map_err(wrap)?;
            }
        }
        self.lend_data(i).map_err(wrap)?;
        let entry = &mut self.layers[i];
        let mut ctx = Ctx::new(
            &mut self.blobs,
            &mut self.params,
            &entry.bottoms,
            &entry.tops,
            &entry.params,
            &entry.param_propagate,
            self.phase,
        );
        entry.layer.forward(&self.be, &mut ctx).map_err(wrap)?;
        let mut loss = 0.0f32;
        for (j, &t) in entry.tops.iter().enumerate() {
            let w = entry.loss_weights[j];
            if w == 0.0 {
                continue;
            }
            let blob = &mut self.blobs[t];
            if blob.has_diff() {
                let n = blob.count();
                self.be.fill(&mut blob.diff, 0, n, w).map_err(wrap)?;
                self.diff_values[t] = self.unread[t].then_some(w);
            }
            let sum = match entry.layer.host_loss().filter(|_| j == 0 && blob.count() == 1) {
                Some(v) => v,
                None => blob.data_to_vec(&self.be).map_err(wrap)?.iter().sum::<f32>(),
            };
            loss += w * sum;
        }
        Ok(loss)
    }

    /// Runs every layer that needs it backward, from the last to the first.
    pub fn backward(&mut self) -> Result<()> {
        self.check_backward()?;
        if let Some(pool) = &mut self.share {
            pool.reclaim_all(&mut self.blobs);
        }
        for i in (0..self.layers.len()).rev() {
            self.backward_layer(i)?;
        }
        Ok(())
    }

    /// Runs layer `i` backward if it needs backward. With diff sharing, call it for the layers
    /// in reverse order, as [`Net::backward`] does: it lends the pooled diff buffers to the
    /// blobs whose gradients become live at this layer and takes back those that die here.
    pub fn backward_layer(&mut self, i: usize) -> Result<()> {
        self.check_backward()?;
        if let Some(pool) = &mut self.share {
            pool.lend(i, &self.be, &mut self.blobs)?;
        }
        let entry = &self.layers[i];
        self.be.enter_layer(Some((entry.param.name(), entry.param.r#type())));
        let result = self.run_backward(i);
        self.be.enter_layer(None);
        if let Some(pool) = &mut self.share {
            pool.reclaim(i, &mut self.blobs);
        }
        if let Some(pool) = &mut self.data_share {
            pool.after_backward(i, &mut self.blobs);
        }
        result
    }

    /// An error for a net made forward-only.
    fn check_backward(&self) -> Result<()> {
        if self.forward_only {
            return Err(Error::Config(format!("the net `{}` runs forward only (a test net): it has no backward pass", self.name)));
        }
        Ok(())
    }

    fn run_backward(&mut self, i: usize) -> Result<()> {
        let entry = &mut self.layers[i];
        if !entry.need_backward || entry.fused_into.is_some() {
            return Ok(());
        }
        let (name, kind) = (entry.param.name().to_string(), entry.param.r#type().to_string());
        let known: Vec<Option<f32>> = entry.tops.iter().map(|&t| self.diff_values[t]).collect();
        let mut ctx = Ctx::new(
            &mut self.blobs,
            &mut self.params,
            &entry.bottoms,
            &entry.tops,
            &entry.params,
            &entry.param_propagate,
            self.phase,
        )
        .with_top_diff_values(&known);
        entry
            .layer
            .backward(&self.be, &mut ctx, &entry.bottom_need_backward)
            .map_err(|e| e.in_layer(&name, &kind))
    }

    /// Tells every layer where the next forward pass stands (see [`Pass`]).
    pub fn set_pass(&mut self, pass: Pass) {
        for entry in &mut self.layers {
            entry.layer.set_pass(pass);
        }
    }

    /// Tells every layer that the caller is done running the net for now (see
    /// [`crate::layers::Layer::finish`]): layers that write files as the net runs (HDF5Output)
    /// write what they still hold. Every layer is told even when one fails; the first error is
    /// returned. The net may run again afterwards. Call it when a run ends; dropping the net
    /// does the same as a best effort, with only a warning when a write fails.
    pub fn finish(&mut self) -> Result<()> {
        let mut first = Ok(());
        for entry in &mut self.layers {
            let done = entry.layer.finish(&self.be).map_err(|e| e.in_layer(entry.param.name(), entry.param.r#type()));
            if first.is_ok() {
                first = done;
            }
        }
        first
    }

    /// Zeroes the diff of every learnable blob (before a new accumulation of gradients).
    pub fn clear_param_diffs(&mut self) -> Result<()> {
        for p in &mut self.params {
            if p.has_diff() {
                let n = p.count();
                self.be.fill(&mut p.diff, 0, n, 0.0)?;
            }
        }
        Ok(())
    }

    /// Reshapes every layer in order without computing (to learn the top shapes after an
    /// input changed size).
    pub fn reshape(&mut self) -> Result<()> {
        for entry in &mut self.layers {
            let shapes: Vec<Vec<usize>> = entry.bottoms.iter().map(|&b| self.blobs[b].shape().to_vec()).collect();
            let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
            let tops = entry.layer.reshape(&self.be, &refs).map_err(|e| e.in_layer(entry.param.name(), entry.param.r#type()))?;
            if entry.layer.keeps_top_shapes() {
                continue;
            }
            for (&t, s) in entry.tops.iter().zip(&tops) {
                self.blobs[t].reshape(&self.be, s)?;
            }
        }
        Ok(())
    }
}
