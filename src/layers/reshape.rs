//! Flatten and Reshape: the same values under a new shape. Caffe shares the bottom's data and
//! diff with the top; the net gives every top its own storage, so both are copied (and neither
//! runs in place, which Caffe forbids too).

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::blob::{canonical_axis, checked_count, count_range};
use crate::proto::LayerParameter;
use crate::{Error, Result};

/// Copies bottom 0's data to top 0's.
fn copy_forward<B: Backend>(be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
    let mut parts = ctx.parts()?;
    be.copy(&parts.bottoms[0].data, &mut parts.tops[0].data)
}

/// Copies top 0's diff to bottom 0's.
fn copy_backward<B: Backend>(be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
    if !propagate_down[0] {
        return Ok(());
    }
    let mut parts = ctx.parts_back()?;
    be.copy(&parts.tops[0].diff, &mut parts.bottoms[0].diff)
}

/// Flatten: axes `axis..=end_axis` become one.
struct Flatten {
    axis: i32,
    end_axis: i32,
}

pub(super) fn create_flatten<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.flatten_param.unwrap_or_default();
    Ok(Box::new(Flatten { axis: p.axis(), end_axis: p.end_axis() }))
}

impl<B: Backend> Layer<B> for Flatten {
    fn type_name(&self) -> &'static str {
        "Flatten"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        let start = canonical_axis(self.axis, shape.len())?;
        let end = canonical_axis(self.end_axis, shape.len())?;
        // `end == start - 1` is accepted, as Caffe does: it inserts an axis of size 1.
        if end + 1 < start {
            return Err(Error::Shape(format!(
                "end_axis {} (axis {end}) comes before axis {} (axis {start}) of a {}-axis input",
                self.end_axis,
                self.axis,
                shape.len()
            )));
        }
        let mut top = shape[..start].to_vec();
        top.push(count_range(shape, start, end + 1));
        top.extend_from_slice(&shape[end + 1..]);
        Ok(vec![top])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        copy_forward(be, ctx)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        copy_backward(be, ctx, propagate_down)
    }
}

/// Reshape: the axes `axis..axis + num_axes` are replaced by `shape`, where a 0 copies the
/// bottom's dimension at that position and one -1 is inferred from the count.
struct Reshape {
    dims: Vec<usize>,
    copy_axes: Vec<usize>,
    inferred: Option<usize>,
    /// The product of the explicit (positive) dimensions.
    constant: usize,
    axis: i32,
    num_axes: i32,
}

pub(super) fn create_reshape<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.reshape_param.clone().unwrap_or_default();
    let given = p.shape.clone().unwrap_or_default().dim;
    let (mut copy_axes, mut inferred, mut constant) = (Vec::new(), None, 1usize);
    let mut dims = Vec::with_capacity(given.len());
    for (i, &d) in given.iter().enumerate() {
        match d {
            0 => copy_axes.push(i),
            -1 if inferred.is_some() => {
                return Err(Error::Config(format!(
                    "reshape_param.shape {given:?} contains more than one -1 (at most one dimension can be inferred)"
                )));
            }
            -1 => inferred = Some(i),
            d if d > 0 => {
                constant = usize::try_from(d)
                    .ok()
                    .and_then(|d| constant.checked_mul(d))
                    .ok_or_else(|| Error::Config(format!("reshape_param.shape {given:?} is too large")))?;
            }
            d => {
                return Err(Error::Config(format!(
                    "reshape_param.shape {given:?} has dimension {d}: use a positive size, 0 to copy or -1 to infer"
                )));
            }
        }
        dims.push(usize::try_from(d).unwrap_or(0));
    }
    if p.num_axes() < -1 {
        return Err(Error::Config(format!("reshape_param.num_axes is {}: use >= 0, or -1 for all", p.num_axes())));
    }
    Ok(Box::new(Reshape { dims, copy_axes, inferred, constant, axis: p.axis(), num_axes: p.num_axes() }))
}

impl Reshape {
    fn top_shape(&self, bottom: &[usize]) -> Result<Vec<usize>> {
        let n = bottom.len() as i64;
        let start = if self.axis >= 0 { self.axis as i64 } else { n + self.axis as i64 + 1 };
        if start < 0 || start > n {
            return Err(Error::Shape(format!("axis {} out of range for a {n}-axis input", self.axis)));
        }
        let end = if self.num_axes == -1 { n } else { start + self.num_axes as i64 };
        if end > n {
            return Err(Error::Shape(format!(
                "axis {} + num_axes {} is beyond the {n} axes of the input",
                self.axis, self.num_axes
            )));
        }
        let (start, end) = (start as usize, end as usize);
        let mut top = bottom[..start].to_vec();
        top.extend_from_slice(&self.dims);
        top.extend_from_slice(&bottom[end..]);
        for &c in &self.copy_axes {
            if start + c >= bottom.len() {
                return Err(Error::Shape(format!(
                    "the new shape has a 0 at position {c}, but the {n}-axis input has no axis {} to copy",
                    start + c
                )));
            }
            top[start + c] = bottom[start + c];
        }
        let count = count_range(bottom, 0, bottom.len());
        if let Some(inf) = self.inferred {
            let explicit = self
                .copy_axes
                .iter()
                .map(|&c| top[start + c])
                .chain([count_range(bottom, 0, start), count_range(bottom, end, bottom.len())])
                .fold(self.constant, usize::saturating_mul);
            if explicit == 0 || !count.is_multiple_of(explicit) {
                return Err(Error::Shape(format!(
                    "the input's count ({count}) must be divisible by the product of the specified dimensions ({explicit})"
                )));
            }
            top[start + inf] = count / explicit;
        }
        checked_count(&top)?;
        if count_range(&top, 0, top.len()) != count {
            return Err(Error::Shape(format!(
                "the output shape {top:?} must have as many elements as the input {bottom:?} ({count})"
            )));
        }
        Ok(top)
    }
}

impl<B: Backend> Layer<B> for Reshape {
    fn type_name(&self) -> &'static str {
        "Reshape"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok(vec![self.top_shape(bottoms[0])?])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        copy_forward(be, ctx)
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        copy_backward(be, ctx, propagate_down)
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, input, shape_of};

    fn flatten(shape: &[usize], param: &str) -> String {
        format!(
            r#"{} layer {{ name: "f" type: "Flatten" bottom: "x" top: "y" flatten_param {{ {param} }} }}"#,
            input("x", shape)
        )
    }

    fn reshape(shape: &[usize], param: &str) -> String {
        format!(
            r#"{} layer {{ name: "r" type: "Reshape" bottom: "x" top: "y" reshape_param {{ {param} }} }}"#,
            input("x", shape)
        )
    }

    #[test]
    fn flatten_shapes() {
        assert_eq!(shape_of(&flatten(&[2, 3, 4, 5], ""), "y"), [2, 60]);
        assert_eq!(shape_of(&flatten(&[2, 3, 4, 5], "axis: 1 end_axis: 2"), "y"), [2, 12, 5]);
        assert_eq!(shape_of(&flatten(&[2, 3, 4, 5], "axis: -2"), "y"), [2, 3, 20]);
        // Caffe's quirk: end_axis just before axis inserts an axis of size 1.
        assert_eq!(shape_of(&flatten(&[2, 3], "axis: 1 end_axis: 0"), "y"), [2, 1, 3]);
    }

    #[test]
    fn flatten_errors() {
        assert_contains(
            &build_error(&flatten(&[2, 3, 4], "axis: 2 end_axis: 0")),
            "end_axis 0 (axis 0) comes before axis 2",
        );
        assert_contains(&build_error(&flatten(&[2, 3], "axis: 2")), "axis 2 out of range for a blob of 2 axes");
        let e = build_error(&format!(
            r#"{} layer {{ name: "f" type: "Flatten" bottom: "x" top: "x" }}"#,
            input("x", &[2, 3])
        ));
        assert_contains(&e, "cannot run in place");
    }

    #[test]
    fn reshape_shapes() {
        assert_eq!(shape_of(&reshape(&[2, 3, 4], "shape { dim: 0 dim: -1 }"), "y"), [2, 12]);
        assert_eq!(shape_of(&reshape(&[2, 3, 4], "shape { dim: -1 dim: 0 dim: 2 }"), "y"), [4, 3, 2]);
        assert_eq!(shape_of(&reshape(&[2, 3, 4], "shape { dim: 2 dim: 2 } axis: 2"), "y"), [2, 3, 2, 2]);
        assert_eq!(shape_of(&reshape(&[2, 3, 4], "shape { dim: 1 } axis: 1 num_axes: 0"), "y"), [2, 1, 3, 4]);
        assert_eq!(shape_of(&reshape(&[2, 3, 4], "shape { dim: -1 } axis: -3 num_axes: 2"), "y"), [2, 12]);
        assert_eq!(shape_of(&reshape(&[2, 3, 4], "shape { dim: 1 } axis: -1 num_axes: 0"), "y"), [2, 3, 4, 1]);
    }

    #[test]
    fn reshape_errors() {
        assert_contains(&build_error(&reshape(&[6], "shape { dim: -1 dim: -1 }")), "contains more than one -1");
        assert_contains(&build_error(&reshape(&[6], "shape { dim: -2 dim: 3 }")), "has dimension -2");
        assert_contains(&build_error(&reshape(&[6], "shape { dim: 6 } num_axes: -2")), "num_axes is -2");
        let e = build_error(&reshape(&[2, 3], "shape { dim: 0 dim: 0 dim: 0 }"));
        assert_contains(&e, "the new shape has a 0 at position 2, but the 2-axis input has no axis 2 to copy");
        let e = build_error(&reshape(&[2, 3], "shape { dim: 4 dim: -1 }"));
        assert_contains(&e, "the input's count (6) must be divisible by the product of the specified dimensions (4)");
        let e = build_error(&reshape(&[2, 3], "shape { dim: 5 }"));
        assert_contains(&e, "the output shape [5] must have as many elements as the input [2, 3] (6)");
        assert_contains(
            &build_error(&reshape(&[2, 3], "shape { dim: 6 } axis: 3")),
            "axis 3 out of range for a 2-axis input",
        );
        assert_contains(&build_error(&reshape(&[2, 3], "shape { dim: 6 } axis: -4")), "axis -4 out of range");
        assert_contains(
            &build_error(&reshape(&[2, 3], "shape { dim: 6 } axis: 1 num_axes: 2")),
            "beyond the 2 axes of the input",
        );
    }
}
