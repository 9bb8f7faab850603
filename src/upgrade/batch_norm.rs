//! Step 5: BatchNorm layers written for the old BatchNorm, which asked for three `param`
//! entries with `lr_mult: 0` to keep the solver off its statistics. The current BatchNorm fixes
//! that itself; Caffe's `UpgradeNetBatchNorm` sets `lr_mult` and `decay_mult` to 0 on all three
//! entries of such a layer and leaves the rest (names, share modes) as they are.

use crate::proto::NetParameter;

fn is_old(layer: &crate::proto::LayerParameter) -> bool {
    layer.r#type() == "BatchNorm" && layer.param.len() == 3
}

/// Whether any BatchNorm layer declares exactly three param specs (Caffe's
/// `NetNeedsBatchNormUpgrade`).
pub fn needs(net: &NetParameter) -> bool {
    net.layer.iter().any(is_old)
}

/// Zeroes the learning-rate and decay multipliers of every such layer's param specs.
pub fn upgrade(net: &mut NetParameter) {
    for layer in net.layer.iter_mut().filter(|l| is_old(l)) {
        for spec in &mut layer.param {
            spec.lr_mult = Some(0.0);
            spec.decay_mult = Some(0.0);
        }
    }
}
