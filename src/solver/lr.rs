//! Learning-rate policies (Caffe's `SGDSolver::GetLearningRate`) and the solver settings that
//! are checked once, when the solver is built.
//!
//! The arithmetic follows the C++ overloads Caffe's expressions resolve to: `pow(float, int)`
//! is computed in double precision (step, exp, multistep), `pow(float, float)` and
//! `exp(float)` in single precision (inv, poly, sigmoid); the product with `base_lr` is then
//! rounded to `f32`.

use crate::proto::SolverParameter;
use crate::{Error, Result};

/// A learning-rate policy with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum LrPolicy {
    /// `base_lr`.
    Fixed,
    /// `base_lr * gamma ^ floor(iter / stepsize)`.
    Step {
        /// Decay factor.
        gamma: f32,
        /// Iterations per step (> 0).
        stepsize: u64,
    },
    /// `base_lr * gamma ^ iter`.
    Exp {
        /// Decay factor.
        gamma: f32,
    },
    /// `base_lr * (1 + gamma * iter) ^ (-power)`.
    Inv {
        /// Scale of the iteration.
        gamma: f32,
        /// Exponent.
        power: f32,
    },
    /// `base_lr * gamma ^ step`, where `step` advances by one at the first iteration that
    /// reaches the next `stepvalue` (one step per iteration at most, as in Caffe).
    MultiStep {
        /// Decay factor.
        gamma: f32,
        /// Iterations at which the rate steps down.
        stepvalues: Vec<i64>,
    },
    /// `base_lr * (1 - iter / max_iter) ^ power`.
    Poly {
        /// Exponent.
        power: f32,
        /// The iteration where the rate reaches 0.
        max_iter: i64,
    },
    /// `base_lr / (1 + exp(-gamma * (iter - stepsize)))`.
    Sigmoid {
        /// Steepness (negative for a decay).
        gamma: f32,
        /// The iteration at the midpoint.
        stepsize: i64,
    },
}

/// The policies Caffe knows, for messages.
const POLICIES: &str = "fixed, step, exp, inv, multistep, poly, sigmoid";

impl LrPolicy {
    /// Reads `lr_policy` and its parameters, checking what Caffe would reject later (or crash
    /// on: a step policy without a positive `stepsize` divides by zero).
    pub fn from_param(p: &SolverParameter) -> Result<Self> {
        let name = p.lr_policy.as_deref().ok_or_else(|| {
            Error::Config(format!("the solver has no lr_policy (one of {POLICIES})"))
        })?;
        Ok(match name {
            "fixed" => LrPolicy::Fixed,
            "step" => {
                if p.stepsize() <= 0 {
                    return Err(Error::Config(format!(
                        "lr_policy \"step\" needs a positive stepsize (given {})",
                        if p.stepsize.is_some() { p.stepsize().to_string() } else { "none".into() }
                    )));
                }
                LrPolicy::Step { gamma: p.gamma(), stepsize: p.stepsize() as u64 }
            }
            "exp" => LrPolicy::Exp { gamma: p.gamma() },
            "inv" => LrPolicy::Inv { gamma: p.gamma(), power: p.power() },
            "multistep" => LrPolicy::MultiStep {
                gamma: p.gamma(),
                stepvalues: p.stepvalue.iter().map(|&v| v as i64).collect(),
            },
            "poly" => LrPolicy::Poly { power: p.power(), max_iter: p.max_iter() as i64 },
            "sigmoid" => LrPolicy::Sigmoid { gamma: p.gamma(), stepsize: p.stepsize() as i64 },
            other => {
                return Err(Error::Config(format!("unknown lr_policy \"{other}\" (crema knows {POLICIES})")));
            }
        })
    }

    /// Caffe's name of the policy.
    pub fn name(&self) -> &'static str {
        match self {
            LrPolicy::Fixed => "fixed",
            LrPolicy::Step { .. } => "step",
            LrPolicy::Exp { .. } => "exp",
            LrPolicy::Inv { .. } => "inv",
            LrPolicy::MultiStep { .. } => "multistep",
            LrPolicy::Poly { .. } => "poly",
            LrPolicy::Sigmoid { .. } => "sigmoid",
        }
    }

    /// The rate at iteration `iter`. Updates `current_step` as Caffe does (step: set to
    /// `iter / stepsize`; multistep: advanced by at most one) and returns the line Caffe logs
    /// when a multistep advances.
    pub fn rate(&self, base_lr: f32, iter: u64, current_step: &mut i64) -> (f32, Option<String>) {
        let mut note = None;
        let rate = match self {
            LrPolicy::Fixed => base_lr,
            LrPolicy::Step { gamma, stepsize } => {
                *current_step = (iter / stepsize) as i64;
                (base_lr as f64 * (*gamma as f64).powf(*current_step as f64)) as f32
            }
            LrPolicy::Exp { gamma } => (base_lr as f64 * (*gamma as f64).powf(iter as f64)) as f32,
            LrPolicy::Inv { gamma, power } => base_lr * (1.0f32 + gamma * iter as f32).powf(-power),
            LrPolicy::MultiStep { gamma, stepvalues } => {
                let next = usize::try_from(*current_step).ok().and_then(|s| stepvalues.get(s));
                if next.is_some_and(|&next| iter as i64 >= next) {
                    *current_step += 1;
                    note = Some(format!("MultiStep Status: Iteration {iter}, step = {current_step}"));
                }
                (base_lr as f64 * (*gamma as f64).powf(*current_step as f64)) as f32
            }
            LrPolicy::Poly { power, max_iter } => base_lr * (1.0f32 - iter as f32 / *max_iter as f32).powf(*power),
            LrPolicy::Sigmoid { gamma, stepsize } => {
                base_lr * (1.0f32 / (1.0f32 + (-gamma * (iter as f32 - *stepsize as f32)).exp()))
            }
        };
        (rate, note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solver(text: &str) -> SolverParameter {
        crate::prototxt::parse(text, "solver.prototxt").unwrap()
    }

    fn rates(text: &str, n: u64) -> Vec<f32> {
        let p = solver(text);
        let policy = LrPolicy::from_param(&p).unwrap();
        let mut step = 0;
        (0..n).map(|i| policy.rate(p.base_lr(), i, &mut step).0).collect()
    }

    #[test]
    fn policies_follow_caffes_formulas() {
        assert_eq!(rates(r#"base_lr: 0.1 lr_policy: "fixed""#, 3), [0.1, 0.1, 0.1]);
        assert_eq!(
            rates(r#"base_lr: 1 lr_policy: "step" gamma: 0.5 stepsize: 2"#, 5),
            [1.0, 1.0, 0.5, 0.5, 0.25]
        );
        assert_eq!(rates(r#"base_lr: 1 lr_policy: "exp" gamma: 0.5"#, 3), [1.0, 0.5, 0.25]);
        let inv = rates(r#"base_lr: 1 lr_policy: "inv" gamma: 1 power: 1"#, 3);
        assert_eq!(inv, [1.0, 0.5, 1.0 / 3.0]);
        let poly = rates(r#"base_lr: 1 lr_policy: "poly" power: 2 max_iter: 4"#, 5);
        assert_eq!(poly, [1.0, 0.5625, 0.25, 0.0625, 0.0]);
        let sig = rates(r#"base_lr: 2 lr_policy: "sigmoid" gamma: 1 stepsize: 1"#, 2);
        assert_eq!(sig[1], 1.0);
        // Multistep advances once per iteration, even past two stepvalues at once.
        let p = solver(r#"base_lr: 1 lr_policy: "multistep" gamma: 0.1 stepvalue: 1 stepvalue: 1"#);
        let policy = LrPolicy::from_param(&p).unwrap();
        let mut step = 0;
        assert_eq!(policy.rate(1.0, 0, &mut step), (1.0, None));
        let (r, note) = policy.rate(1.0, 1, &mut step);
        assert_eq!((r, step), (0.1, 1));
        assert_eq!(note.as_deref(), Some("MultiStep Status: Iteration 1, step = 1"));
        let (r, _) = policy.rate(1.0, 2, &mut step);
        assert!((r as f64 - 0.01).abs() < 1e-9);
        assert_eq!(step, 2);
        assert_eq!(policy.rate(1.0, 3, &mut step).1, None);
    }

    #[test]
    fn bad_policies_are_clear_errors() {
        let err = |t: &str| LrPolicy::from_param(&solver(t)).unwrap_err().to_string();
        assert_eq!(err("base_lr: 1"), "the solver has no lr_policy (one of fixed, step, exp, inv, multistep, poly, sigmoid)");
        assert_eq!(err(r#"lr_policy: "cosine""#), "unknown lr_policy \"cosine\" (crema knows fixed, step, exp, inv, multistep, poly, sigmoid)");
        assert_eq!(err(r#"lr_policy: "step" gamma: 0.1"#), "lr_policy \"step\" needs a positive stepsize (given none)");
        assert_eq!(err(r#"lr_policy: "step" stepsize: 0"#), "lr_policy \"step\" needs a positive stepsize (given 0)");
    }
}
