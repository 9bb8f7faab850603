//! Upgrades of old Caffe nets and solvers to the current format, as Caffe's
//! `upgrade_proto.cpp` does them, and the loaders that read a net or solver file (text or
//! binary, BVLC or SegNet numbering) and upgrade it.
//!
//! Caffe applies the net upgrades in this order, each only when its test says it is needed;
//! one file per step:
//! 1. [`v0`]: V0 layers (`layers { layer { type: "conv" } }`) to V1, padding layers folded in;
//! 2. [`data`]: old transformation fields of V1 data layers into `transform_param`;
//! 3. [`v1`]: V1 layers (`layers { type: CONVOLUTION }`) to current `layer`s;
//! 4. [`input`]: `input` / `input_dim` / `input_shape` to an Input layer;
//! 5. [`batch_norm`]: BatchNorm layers with three `param` entries get `lr_mult`/`decay_mult` 0.
//!
//! Solvers have one upgrade ([`solver`]): the `solver_type` enum to the `type` string.
//! [`dialect`] renumbers binary files written by the SegNet fork; [`load`] reads files and
//! [`write`](mod@write) writes the upgraded ones back.
//!
//! Where Caffe would abort or log an error and drop a setting, these functions return an
//! [`Error::Upgrade`] that says what and where; they never panic on a user's file.

pub mod batch_norm;
pub mod data;
pub mod dialect;
pub mod input;
pub mod load;
pub mod solver;
pub mod v0;
pub mod v1;
pub mod write;

pub use dialect::{Dialect, detect_dialect, segnet_to_crema};
pub use load::{FileFormat, Loaded, load_net, load_solver, read_net, read_solver};
pub use write::{Encoding, write_net, write_solver};

use crate::proto::{NetParameter, SolverParameter};
use crate::{Error, Result};

/// An [`Error::Upgrade`] that names no file yet (the loaders add it).
pub(crate) fn err(msg: impl Into<String>) -> Error {
    Error::Upgrade { file: String::new(), msg: msg.into() }
}

/// What each net upgrade step says it found, in the words of the stderr note
/// ("note: FILE uses NOTE; upgraded in memory").
pub mod notes {
    /// Step 1.
    pub const V0: &str = "the V0 layer format";
    /// Step 2.
    pub const DATA: &str = "data-transformation fields inside data_param/image_data_param/window_data_param";
    /// Step 3.
    pub const V1: &str = "the V1 layer format";
    /// Step 4.
    pub const INPUT: &str = "legacy net inputs (input/input_dim/input_shape)";
    /// Step 5.
    pub const BATCH_NORM: &str = "BatchNorm layers with the old three param entries (lr_mult/decay_mult now 0)";
    /// The solver upgrade.
    pub const SOLVER_TYPE: &str = "the old solver_type enum";
}

/// Whether any net upgrade step applies (Caffe's `NetNeedsUpgrade`, with every step counted).
pub fn net_needs_upgrade(net: &NetParameter) -> bool {
    v0::needs(net) || data::needs(net) || v1::needs(net) || input::needs(net) || batch_norm::needs(net)
}

/// Upgrades `net` to the current format, step by step in Caffe's order (Caffe's
/// `UpgradeNetAsNeeded`). Returns the upgraded net and one note (see [`notes`]) per step that
/// was applied; a current net comes back unchanged with no notes.
pub fn upgrade_net(net: NetParameter) -> Result<(NetParameter, Vec<String>)> {
    let mut net = net;
    let mut applied = Vec::new();
    if v0::needs(&net) {
        net = v0::upgrade(net)?;
        applied.push(notes::V0.to_string());
    }
    if data::needs(&net) {
        data::upgrade(&mut net);
        applied.push(notes::DATA.to_string());
    }
    if v1::needs(&net) {
        v1::upgrade(&mut net)?;
        applied.push(notes::V1.to_string());
    }
    if input::needs(&net) {
        input::upgrade(&mut net)?;
        applied.push(notes::INPUT.to_string());
    }
    if batch_norm::needs(&net) {
        batch_norm::upgrade(&mut net);
        applied.push(notes::BATCH_NORM.to_string());
    }
    Ok((net, applied))
}

/// Whether the solver needs an upgrade (Caffe's `SolverNeedsTypeUpgrade`).
pub fn solver_needs_upgrade(solver: &SolverParameter) -> bool {
    solver::needs(solver)
}

/// Upgrades `solver` to the current format (Caffe's `UpgradeSolverAsNeeded`); the notes say
/// which upgrades were applied.
pub fn upgrade_solver(solver: SolverParameter) -> Result<(SolverParameter, Vec<String>)> {
    let mut solver = solver;
    let mut applied = Vec::new();
    if solver::needs(&solver) {
        solver::upgrade(&mut solver)?;
        applied.push(notes::SOLVER_TYPE.to_string());
    }
    Ok((solver, applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> NetParameter {
        crate::prototxt::parse(text, "test.prototxt").expect("test net parses")
    }

    #[test]
    fn a_current_net_is_returned_unchanged() {
        let n = net(r#"name: "n" layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }"#);
        assert!(!net_needs_upgrade(&n));
        let (up, applied) = upgrade_net(n.clone()).unwrap();
        assert_eq!(up, n);
        assert!(applied.is_empty());
    }

    #[test]
    fn steps_run_in_caffes_order_and_are_noted() {
        let n = net(r#"input: "data" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
            layers { layer { name: "conv" type: "conv" num_output: 2 kernelsize: 3 } bottom: "data" top: "c" }"#);
        assert!(net_needs_upgrade(&n));
        let (up, applied) = upgrade_net(n).unwrap();
        assert_eq!(applied, [notes::V0, notes::V1, notes::INPUT]);
        let types: Vec<_> = up.layer.iter().map(|l| l.r#type()).collect();
        assert_eq!(types, ["Input", "Convolution"]);
        assert!(!net_needs_upgrade(&up));
    }

    #[test]
    fn errors_name_no_file_until_a_loader_adds_it() {
        let n = net(r#"layers { layer { name: "x" type: "nonsense" } }"#);
        let e = upgrade_net(n).unwrap_err();
        assert_eq!(e.to_string(), "layer `x`: unknown V0 layer type `nonsense`");
        assert_eq!(e.in_file("old.prototxt").to_string(), "old.prototxt: layer `x`: unknown V0 layer type `nonsense`");
    }

    #[test]
    fn solver_upgrade_notes() {
        let s = SolverParameter { solver_type: Some(5), ..Default::default() };
        assert!(solver_needs_upgrade(&s));
        let (up, applied) = upgrade_solver(s).unwrap();
        assert_eq!((up.r#type(), &applied[..]), ("Adam", &[notes::SOLVER_TYPE.to_string()][..]));
    }
}
