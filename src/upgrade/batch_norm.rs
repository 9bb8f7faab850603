//! Step 5: BatchNorm layers written for the old BatchNorm, which asked for three `param`
//! entries with `lr_mult: 0` to keep the solver off its statistics. The current BatchNorm fixes
//! that itself; Caffe's `UpgradeNetBatchNorm` sets `lr_mult` and `decay_mult` to 0 on all three
//! entries of such a layer and leaves the rest (names, share modes) as they are.
//!
//! Caffe counts every such layer as needing the upgrade, even one already upgraded, so a
//! current ResNet-style file would be reported as old every time it is read. crema counts only
//! layers the upgrade would change (a multiplier not already set to 0); the result is the same.

use crate::proto::NetParameter;

fn is_old(layer: &crate::proto::LayerParameter) -> bool {
    layer.r#type() == "BatchNorm" && layer.param.len() == 3
}

/// Whether any BatchNorm layer declares exactly three param specs (Caffe's
/// `NetNeedsBatchNormUpgrade`) with a multiplier not yet set to 0.
pub fn needs(net: &NetParameter) -> bool {
    net.layer
        .iter()
        .filter(|l| is_old(l))
        .flat_map(|l| &l.param)
        .any(|p| p.lr_mult != Some(0.0) || p.decay_mult != Some(0.0))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> NetParameter {
        crate::prototxt::parse(text, "test.prototxt").expect("test net parses")
    }

    #[test]
    fn three_param_specs_get_zero_multipliers() {
        let mut n = net(
            r#"layer { name: "bn" type: "BatchNorm" param { name: "m" lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 1 decay_mult: 1 } }
            layer { name: "bn2" type: "BatchNorm" param { lr_mult: 1 } }
            layer { name: "s" type: "Scale" param {} param {} param {} }"#,
        );
        assert!(needs(&n));
        upgrade(&mut n);
        assert!(!needs(&n), "an upgraded net is current");
        for p in &n.layer[0].param {
            assert_eq!((p.lr_mult, p.decay_mult), (Some(0.0), Some(0.0)));
        }
        assert_eq!(n.layer[0].param[0].name.as_deref(), Some("m"));
        assert_eq!(n.layer[1].param[0].lr_mult, Some(1.0), "one spec: left alone");
        assert_eq!(n.layer[2].param[0].lr_mult, None, "not a BatchNorm layer");
    }
}
