//! Options shared by the commands that build a net from a model file and weights.

use anyhow::Context;
use crema::backend::Backend;
use crema::net::{Net, NetOptions};
use crema::proto::{NetParameter, NetState, Phase};
use std::path::PathBuf;

/// `--model`, `--weights`, `--level`, `--stage`.
#[derive(clap::Args)]
pub struct NetOpts {
    /// The net definition (.prototxt).
    #[arg(long)]
    pub model: PathBuf,
    /// Trained weights (.caffemodel); several comma-separated files are loaded in order.
    #[arg(long)]
    pub weights: Option<String>,
    /// NetState level.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub level: i32,
    /// NetState stages, comma-separated.
    #[arg(long, default_value = "")]
    pub stage: String,
}

impl NetOpts {
    /// Reads and upgrades the model, sets the state and lets `edit` adjust it.
    pub fn param(&self, phase: Phase, edit: impl FnOnce(&mut NetParameter)) -> anyhow::Result<NetParameter> {
        let mut param = crema::upgrade::read_net(&self.model)?;
        let mut state: NetState = param.state.clone().unwrap_or_default();
        state.phase = Some(phase as i32);
        state.level = Some(self.level);
        state.stage.extend(super::split_list(&self.stage));
        param.state = Some(state);
        edit(&mut param);
        Ok(param)
    }

    /// [`NetOpts::param`], built on `be`, with the weights loaded.
    pub fn build<B: Backend>(&self, be: B, phase: Phase, edit: impl FnOnce(&mut NetParameter)) -> anyhow::Result<Net<B>> {
        let param = self.param(phase, edit)?;
        let opts = NetOptions::for_file(&self.model, 0);
        let mut net = Net::with_options(be, &param, &opts).with_context(|| format!("building {}", self.model.display()))?;
        self.load_weights(&mut net)?;
        Ok(net)
    }

    /// Loads `--weights` (when given) into `net`.
    pub fn load_weights<B: Backend>(&self, net: &mut Net<B>) -> anyhow::Result<()> {
        if let Some(w) = &self.weights {
            let files: Vec<PathBuf> = super::split_list(w).into_iter().map(PathBuf::from).collect();
            net.load_weights_files(&files)?;
        }
        Ok(())
    }
}
