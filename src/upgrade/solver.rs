//! The solver upgrade: the old `solver_type` enum becomes the `type` string (Caffe's
//! `UpgradeSolverType`, the only solver upgrade Caffe has). Nets embedded in the solver
//! (`net_param`, `train_net_param`, `test_net_param`) are left as they are, as in Caffe, which
//! upgrades only the nets it reads from files.

use super::err;
use crate::Result;
use crate::proto::{SolverParameter, solver_parameter::SolverType};

/// Whether the solver sets the old `solver_type` field (Caffe's `SolverNeedsTypeUpgrade`).
pub fn needs(solver: &SolverParameter) -> bool {
    solver.solver_type.is_some()
}

/// The `type` string of an old `solver_type` value.
pub fn type_name(ty: SolverType) -> &'static str {
    match ty {
        SolverType::Sgd => "SGD",
        SolverType::Nesterov => "Nesterov",
        SolverType::Adagrad => "AdaGrad",
        SolverType::Rmsprop => "RMSProp",
        SolverType::Adadelta => "AdaDelta",
        SolverType::Adam => "Adam",
    }
}

/// Replaces `solver_type` by `type`. Both set at once is an error, as in Caffe.
pub fn upgrade(solver: &mut SolverParameter) -> Result<()> {
    let Some(raw) = solver.solver_type else {
        return Ok(());
    };
    if let Some(ty) = &solver.r#type {
        return Err(err(format!(
            "the solver sets both the old `solver_type` field and the new `type` (\"{ty}\"); keep only `type`"
        )));
    }
    let ty = SolverType::try_from(raw).map_err(|_| err(format!("unknown solver_type {raw}")))?;
    solver.r#type = Some(type_name(ty).to_string());
    solver.solver_type = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solver(text: &str) -> SolverParameter {
        crate::prototxt::parse(text, "solver.prototxt").expect("test solver parses")
    }

    #[test]
    fn solver_type_becomes_type() {
        let mut s = solver("base_lr: 0.01 solver_type: NESTEROV");
        assert!(needs(&s));
        upgrade(&mut s).unwrap();
        assert_eq!((s.r#type.as_deref(), s.solver_type), (Some("Nesterov"), None));
        assert!(!needs(&s));
        assert_eq!(type_name(SolverType::Adagrad), "AdaGrad");
        assert_eq!(type_name(SolverType::Rmsprop), "RMSProp");
        assert_eq!(type_name(SolverType::Adadelta), "AdaDelta");
    }

    #[test]
    fn explicit_default_is_still_upgraded() {
        let mut s = solver("solver_type: SGD");
        upgrade(&mut s).unwrap();
        assert_eq!(s.r#type.as_deref(), Some("SGD"));
    }

    #[test]
    fn both_fields_or_an_unknown_value_are_errors() {
        let mut s = solver(r#"type: "Adam" solver_type: ADAM"#);
        let e = upgrade(&mut s).unwrap_err().to_string();
        assert!(e.contains("both the old `solver_type` field and the new `type` (\"Adam\")"), "{e}");
        let mut s = SolverParameter { solver_type: Some(42), ..Default::default() };
        assert!(upgrade(&mut s).unwrap_err().to_string().contains("unknown solver_type 42"));
    }
}
