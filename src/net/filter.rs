//! NetState filtering: which layers of a NetParameter exist in a given phase, level and set of
//! stages (Caffe's `Net::FilterNet` and `StateMeetsRule`).

use crate::proto::{LayerParameter, NetParameter, NetState, NetStateRule};
use crate::{Error, Result};

/// Whether `state` satisfies every condition of `rule`.
pub fn state_meets_rule(state: &NetState, rule: &NetStateRule) -> bool {
    if rule.phase.is_some() && rule.phase() != state.phase() {
        return false;
    }
    if rule.min_level.is_some() && state.level() < rule.min_level() {
        return false;
    }
    if rule.max_level.is_some() && state.level() > rule.max_level() {
        return false;
    }
    if !rule.stage.iter().all(|s| state.stage.contains(s)) {
        return false;
    }
    !rule.not_stage.iter().any(|s| state.stage.contains(s))
}

/// Whether a layer is part of the net in `state`: with include rules, when one of them is met;
/// otherwise unless one of its exclude rules is met.
pub fn layer_included(state: &NetState, layer: &LayerParameter) -> Result<bool> {
    if !layer.include.is_empty() && !layer.exclude.is_empty() {
        return Err(Error::Config(format!(
            "layer `{}` specifies both include and exclude rules; give one or the other",
            layer.name()
        )));
    }
    let mut included = layer.include.is_empty();
    if layer.exclude.iter().any(|r| state_meets_rule(state, r)) {
        included = false;
    }
    if layer.include.iter().any(|r| state_meets_rule(state, r)) {
        included = true;
    }
    Ok(included)
}

/// The net with only the layers included in its `state`.
pub fn filter_net(param: &NetParameter) -> Result<NetParameter> {
    let state = param.state.clone().unwrap_or_default();
    let mut out = param.clone();
    out.layer.clear();
    for layer in &param.layer {
        if layer_included(&state, layer)? {
            out.layer.push(layer.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Phase;

    fn state(phase: Phase, level: i32, stages: &[&str]) -> NetState {
        NetState { phase: Some(phase as i32), level: Some(level), stage: stages.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn rules_follow_caffe() {
        let train = state(Phase::Train, 0, &[]);
        let mut rule = NetStateRule { phase: Some(Phase::Test as i32), ..Default::default() };
        assert!(!state_meets_rule(&train, &rule));
        rule.phase = Some(Phase::Train as i32);
        assert!(state_meets_rule(&train, &rule));
        rule.min_level = Some(1);
        assert!(!state_meets_rule(&train, &rule));
        assert!(state_meets_rule(&state(Phase::Train, 2, &[]), &rule));
        rule.max_level = Some(1);
        assert!(!state_meets_rule(&state(Phase::Train, 2, &[]), &rule));
        let staged = NetStateRule { stage: vec!["a".into(), "b".into()], ..Default::default() };
        assert!(!state_meets_rule(&state(Phase::Train, 0, &["a"]), &staged));
        assert!(state_meets_rule(&state(Phase::Train, 0, &["b", "a", "c"]), &staged));
        let not = NetStateRule { not_stage: vec!["deploy".into()], ..Default::default() };
        assert!(!state_meets_rule(&state(Phase::Test, 0, &["deploy"]), &not));
        assert!(state_meets_rule(&state(Phase::Test, 0, &[]), &not));
    }

    #[test]
    fn include_and_exclude() {
        let test = state(Phase::Test, 0, &[]);
        let mut layer = LayerParameter::default();
        assert!(layer_included(&test, &layer).unwrap());
        layer.exclude.push(NetStateRule { phase: Some(Phase::Test as i32), ..Default::default() });
        assert!(!layer_included(&test, &layer).unwrap());
        layer.include.push(NetStateRule::default());
        assert!(layer_included(&test, &layer).is_err());
        layer.exclude.clear();
        layer.include[0].phase = Some(Phase::Train as i32);
        assert!(!layer_included(&test, &layer).unwrap());
    }
}
