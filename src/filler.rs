//! Caffe's fillers: how learnable blobs (and DummyData tops) are initialised.

use crate::proto::filler_parameter::VarianceNorm;
use crate::proto::FillerParameter;
use crate::rng::Rng;
use crate::{Error, Result};

/// The values of a blob of `shape` filled by `filler`, drawn from `rng`.
pub fn fill(filler: &FillerParameter, shape: &[usize], rng: &mut Rng) -> Result<Vec<f32>> {
    let count: usize = shape.iter().product();
    let kind = filler.r#type();
    if filler.sparse() >= 0 && kind != "gaussian" {
        return Err(Error::Config(format!("filler `{kind}` does not support `sparse`")));
    }
    let fans = || -> Result<(f64, f64)> {
        if shape.len() < 2 || shape[0] == 0 || shape[1] == 0 {
            return Err(Error::Config(format!("filler `{kind}` needs a blob of at least 2 axes, given {shape:?}")));
        }
        let fan_in = (count / shape[0]) as f64;
        let fan_out = (count / shape[1]) as f64;
        Ok(match filler.variance_norm() {
            VarianceNorm::FanIn => (fan_in, fan_in),
            VarianceNorm::FanOut => (fan_out, fan_out),
            VarianceNorm::Average => (fan_in, (fan_in + fan_out) / 2.0),
        })
    };
    let values = match kind {
        "constant" => vec![filler.value(); count],
        "uniform" => (0..count).map(|_| rng.uniform_range(filler.min(), filler.max())).collect(),
        "gaussian" => {
            let (mean, std) = (filler.mean() as f64, filler.std() as f64);
            let mut v: Vec<f32> = (0..count).map(|_| (mean + std * rng.gaussian()) as f32).collect();
            if filler.sparse() >= 0 {
                if shape.is_empty() || shape[0] == 0 {
                    return Err(Error::Config("a sparse gaussian filler needs a blob with a first axis".into()));
                }
                let p = filler.sparse() as f64 / shape[0] as f64;
                v.iter_mut().for_each(|x| {
                    if !rng.bernoulli(p) {
                        *x = 0.0
                    }
                });
            }
            v
        }
        "positive_unitball" => {
            if shape.is_empty() || shape[0] == 0 {
                return Err(Error::Config("positive_unitball needs a blob with a first axis".into()));
            }
            let dim = count / shape[0];
            let mut v: Vec<f32> = (0..count).map(|_| rng.uniform() as f32).collect();
            for row in v.chunks_mut(dim.max(1)) {
                let s: f32 = row.iter().sum();
                row.iter_mut().for_each(|x| *x /= s);
            }
            v
        }
        "xavier" => {
            let (_, n) = fans()?;
            let scale = (3.0 / n).sqrt() as f32;
            (0..count).map(|_| rng.uniform_range(-scale, scale)).collect()
        }
        "msra" => {
            let (_, n) = fans()?;
            let std = (2.0 / n).sqrt();
            (0..count).map(|_| (std * rng.gaussian()) as f32).collect()
        }
        "bilinear" => {
            if shape.len() != 4 || shape[2] != shape[3] {
                return Err(Error::Config(format!(
                    "the bilinear filler needs a 4-axis blob with a square kernel, given {shape:?}"
                )));
            }
            let k = shape[3];
            let f = (k as f32 / 2.0).ceil();
            let c = (2.0 * f - 1.0 - f % 2.0) / (2.0 * f);
            (0..count)
                .map(|i| {
                    let x = (i % k) as f32;
                    let y = ((i / k) % k) as f32;
                    (1.0 - (x / f - c).abs()) * (1.0 - (y / f - c).abs())
                })
                .collect()
        }
        other => {
            return Err(Error::Config(format!(
                "unknown filler type `{other}` (known: constant, uniform, gaussian, positive_unitball, xavier, msra, bilinear)"
            )))
        }
    };
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filler(kind: &str) -> FillerParameter {
        FillerParameter { r#type: Some(kind.into()), ..Default::default() }
    }

    #[test]
    fn constant_and_bilinear() {
        let mut rng = Rng::new(1);
        let mut f = filler("constant");
        f.value = Some(0.5);
        assert_eq!(fill(&f, &[2, 3], &mut rng).unwrap(), vec![0.5; 6]);
        let b = fill(&filler("bilinear"), &[1, 1, 4, 4], &mut rng).unwrap();
        // Kernel 4 (upsampling by 2): weights 0.25/0.75 per axis.
        assert_eq!(&b[..4], &[0.0625, 0.1875, 0.1875, 0.0625]);
        assert_eq!(b[5], 0.5625);
    }

    #[test]
    fn xavier_bounds_and_msra_spread() {
        let mut rng = Rng::new(2);
        let v = fill(&filler("xavier"), &[64, 32, 3, 3], &mut rng).unwrap();
        let bound = (3.0f32 / 288.0).sqrt();
        assert!(v.iter().all(|x| x.abs() <= bound));
        let m = fill(&filler("msra"), &[64, 32, 3, 3], &mut rng).unwrap();
        let var = m.iter().map(|x| (x * x) as f64).sum::<f64>() / m.len() as f64;
        assert!((var - 2.0 / 288.0).abs() < 0.001, "{var}");
    }

    #[test]
    fn positive_unitball_rows_sum_to_one() {
        let v = fill(&filler("positive_unitball"), &[3, 5], &mut Rng::new(3)).unwrap();
        for row in v.chunks(5) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn unknown_type_is_an_error() {
        assert!(fill(&filler("zeros"), &[2], &mut Rng::new(0)).is_err());
    }
}
