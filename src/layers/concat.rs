//! Concat (bottoms joined along one axis) and Slice (one bottom cut along one axis), each the
//! other's gradient, both as strided block copies.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Backend, StridedCopy};
use crate::blob::{canonical_axis, count_range};
use crate::proto::LayerParameter;
use crate::{Error, Result};

/// The axis a Concat or Slice works on: `axis` (may be negative) or the legacy non-negative
/// `concat_dim`/`slice_dim`; Caffe rejects both at once.
#[derive(Clone, Copy, Debug)]
enum AxisChoice {
    Axis(i32),
    Legacy(u32),
}

impl AxisChoice {
    fn new(axis: Option<i32>, legacy: Option<u32>, legacy_name: &str) -> Result<Self> {
        match (axis, legacy) {
            (Some(_), Some(_)) => {
                Err(Error::Config(format!("either axis or {legacy_name} should be specified; not both")))
            }
            (None, Some(d)) if d > i32::MAX as u32 => {
                Err(Error::Config(format!("{legacy_name} {d} is out of range (it must be below 32)")))
            }
            (None, Some(d)) => Ok(AxisChoice::Legacy(d)),
            (a, None) => Ok(AxisChoice::Axis(a.unwrap_or(1))),
        }
    }

    fn resolve(self, num_axes: usize, legacy_name: &str) -> Result<usize> {
        match self {
            AxisChoice::Axis(a) => canonical_axis(a, num_axes),
            AxisChoice::Legacy(d) if (d as usize) < num_axes => Ok(d as usize),
            AxisChoice::Legacy(d) => {
                Err(Error::Shape(format!("{legacy_name} {d} out of range for a blob of {num_axes} axes")))
            }
        }
    }
}

/// Geometry shared by Concat and Slice: the joined blob is `outer x total x inner` along the
/// axis, each part `outer x sizes[i] x inner`.
#[derive(Default)]
struct Parts {
    outer: usize,
    inner: usize,
    sizes: Vec<usize>,
}

impl Parts {
    fn total(&self) -> usize {
        self.sizes.iter().sum()
    }
    /// The copy of part `i` into (`to_joined`) or out of the joined blob.
    fn copy(&self, i: usize, to_joined: bool) -> StridedCopy {
        let offset: usize = self.sizes[..i].iter().sum();
        let (part, joined) = (self.sizes[i] * self.inner, self.total() * self.inner);
        if to_joined {
            StridedCopy::block(self.outer, part, part, 0, joined, offset * self.inner)
        } else {
            StridedCopy::block(self.outer, part, joined, offset * self.inner, part, 0)
        }
    }
}

struct Concat {
    axis: AxisChoice,
    parts: Parts,
}

pub(super) fn create_concat<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.concat_param.unwrap_or_default();
    Ok(Box::new(Concat { axis: AxisChoice::new(p.axis, p.concat_dim, "concat_dim")?, parts: Parts::default() }))
}

impl<B: Backend> Layer<B> for Concat {
    fn type_name(&self) -> &'static str {
        "Concat"
    }
    fn bottoms(&self) -> Arity {
        Arity::at_least(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    /// Backward copies gradients; no values.
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        false
    }
    fn backward_reads_top(&self, _top: usize) -> bool {
        false
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let first = bottoms[0];
        let axis = self.axis.resolve(first.len(), "concat_dim")?;
        let mut top = first.to_vec();
        for (i, b) in bottoms.iter().enumerate().skip(1) {
            if b.len() != first.len() {
                return Err(Error::Shape(format!(
                    "all inputs must have the same number of axes: bottom 0 is {first:?}, bottom {i} is {b:?}"
                )));
            }
            if (0..first.len()).any(|j| j != axis && b[j] != first[j]) {
                return Err(Error::Shape(format!(
                    "all inputs must have the same shape except along axis {axis}: bottom 0 is {first:?}, bottom {i} is {b:?}"
                )));
            }
            top[axis] += b[axis];
        }
        self.parts = Parts {
            outer: count_range(first, 0, axis),
            inner: count_range(first, axis + 1, first.len()),
            sizes: bottoms.iter().map(|b| b[axis]).collect(),
        };
        crate::blob::checked_count(&top)?;
        Ok(vec![top])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let parts = ctx.parts()?;
        let top = parts.tops.into_iter().next().ok_or_else(|| Error::Internal("Concat without a top".into()))?;
        for (i, b) in parts.bottoms.iter().enumerate() {
            be.copy_strided(&b.data, &mut top.data, &self.parts.copy(i, true), false)?;
        }
        Ok(())
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let mut parts = ctx.parts_back()?;
        let top = parts.tops[0];
        for (i, b) in parts.bottoms.iter_mut().enumerate() {
            if propagate_down[i] {
                be.copy_strided(&top.diff, &mut b.diff, &self.parts.copy(i, false), false)?;
            }
        }
        Ok(())
    }
}

struct Slice {
    axis: AxisChoice,
    points: Vec<u32>,
    tops: usize,
    parts: Parts,
}

pub(super) fn create_slice<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.slice_param.clone().unwrap_or_default();
    let tops = lp.top.len();
    if !p.slice_point.is_empty() {
        if p.slice_point.len() + 1 != tops {
            return Err(Error::Config(format!(
                "{} slice points given for {tops} tops (give one fewer than the tops, or none to slice equally)",
                p.slice_point.len()
            )));
        }
        if p.slice_point[0] == 0 || p.slice_point.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Error::Config(format!(
                "slice points must be positive and increasing, given {:?}",
                p.slice_point
            )));
        }
    }
    let axis = AxisChoice::new(p.axis, p.slice_dim, "slice_dim")?;
    Ok(Box::new(Slice { axis, points: p.slice_point, tops, parts: Parts::default() }))
}

impl Slice {
    /// The extent of each top along the axis, from the bottom's `extent` there.
    fn sizes(&self, axis: usize, extent: usize) -> Result<Vec<usize>> {
        let tops = self.tops;
        if self.points.is_empty() {
            if !extent.is_multiple_of(tops) {
                return Err(Error::Shape(format!(
                    "the number of tops ({tops}) should evenly divide the input's axis {axis} of size {extent}"
                )));
            }
            return Ok(vec![extent / tops; tops]);
        }
        if tops > extent {
            return Err(Error::Shape(format!("{tops} tops cannot slice axis {axis} of size {extent}")));
        }
        let ends: Vec<usize> = self.points.iter().map(|&p| p as usize).chain([extent]).collect();
        if ends[ends.len() - 2] > extent {
            return Err(Error::Shape(format!(
                "slice point {} is beyond the end of axis {axis} of size {extent}",
                ends[ends.len() - 2]
            )));
        }
        Ok(ends.iter().scan(0, |prev, &e| Some(e - std::mem::replace(prev, e))).collect())
    }
}

impl<B: Backend> Layer<B> for Slice {
    fn type_name(&self) -> &'static str {
        "Slice"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::at_least(1)
    }
    /// Backward copies gradients; no values.
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        false
    }
    fn backward_reads_top(&self, _top: usize) -> bool {
        false
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        let axis = self.axis.resolve(shape.len(), "slice_dim")?;
        let sizes = self.sizes(axis, shape[axis])?;
        let tops = sizes
            .iter()
            .map(|&s| {
                let mut t = shape.to_vec();
                t[axis] = s;
                t
            })
            .collect();
        self.parts =
            Parts { outer: count_range(shape, 0, axis), inner: count_range(shape, axis + 1, shape.len()), sizes };
        Ok(tops)
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        let bottom = parts.bottoms[0];
        for (i, t) in parts.tops.iter_mut().enumerate() {
            be.copy_strided(&bottom.data, &mut t.data, &self.parts.copy(i, false), false)?;
        }
        Ok(())
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let mut parts = ctx.parts_back()?;
        let bottom = &mut parts.bottoms[0];
        for (i, t) in parts.tops.iter().enumerate() {
            be.copy_strided(&t.diff, &mut bottom.diff, &self.parts.copy(i, true), false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, input, shape_of};

    fn concat(a: &[usize], b: &[usize], param: &str) -> String {
        format!(
            r#"{} {} layer {{ name: "c" type: "Concat" bottom: "a" bottom: "b" top: "y" concat_param {{ {param} }} }}"#,
            input("a", a),
            input("b", b)
        )
    }

    fn slice(shape: &[usize], tops: usize, param: &str) -> String {
        let tops: String = (0..tops).map(|i| format!(r#"top: "t{i}" "#)).collect();
        format!(
            r#"{} layer {{ name: "s" type: "Slice" bottom: "x" {tops} slice_param {{ {param} }} }}"#,
            input("x", shape)
        )
    }

    #[test]
    fn concat_shapes() {
        assert_eq!(shape_of(&concat(&[2, 3, 4], &[2, 5, 4], ""), "y"), [2, 8, 4]);
        assert_eq!(shape_of(&concat(&[2, 3, 4], &[2, 3, 1], "axis: -1"), "y"), [2, 3, 5]);
        assert_eq!(shape_of(&concat(&[2, 3], &[4, 3], "concat_dim: 0"), "y"), [6, 3]);
    }

    #[test]
    fn concat_errors() {
        let e = build_error(&concat(&[2, 3], &[2, 3], "axis: 1 concat_dim: 1"));
        assert_contains(&e, "either axis or concat_dim should be specified; not both");
        let e = build_error(&concat(&[2, 3, 4], &[2, 3, 5], "axis: 1"));
        assert_contains(
            &e,
            "all inputs must have the same shape except along axis 1: bottom 0 is [2, 3, 4], bottom 1 is [2, 3, 5]",
        );
        let e = build_error(&concat(&[2, 3, 4], &[2, 3], ""));
        assert_contains(&e, "all inputs must have the same number of axes");
        assert_contains(
            &build_error(&concat(&[2, 3], &[2, 3], "concat_dim: 2")),
            "concat_dim 2 out of range for a blob of 2 axes",
        );
        assert_contains(&build_error(&concat(&[2, 3], &[2, 3], "axis: -3")), "axis -3 out of range");
    }

    #[test]
    fn slice_shapes() {
        let body = slice(&[2, 6, 3], 3, "slice_point: 1 slice_point: 4");
        assert_eq!(
            [shape_of(&body, "t0"), shape_of(&body, "t1"), shape_of(&body, "t2")],
            [[2, 1, 3], [2, 3, 3], [2, 2, 3]]
        );
        let body = slice(&[2, 6, 3], 3, "axis: -1");
        assert_eq!(shape_of(&body, "t2"), [2, 6, 1]);
        // A last point at the end of the axis leaves an empty top, which Caffe accepts.
        assert_eq!(shape_of(&slice(&[5, 2], 2, "slice_dim: 0 slice_point: 5"), "t1"), [0, 2]);
    }

    #[test]
    fn slice_errors() {
        let e = build_error(&slice(&[2, 6], 2, "slice_point: 1 slice_point: 2"));
        assert_contains(&e, "2 slice points given for 2 tops");
        let e = build_error(&slice(&[2, 6], 3, "slice_point: 3 slice_point: 3"));
        assert_contains(&e, "slice points must be positive and increasing, given [3, 3]");
        assert_contains(&build_error(&slice(&[2, 6], 2, "slice_point: 0")), "must be positive and increasing");
        let e = build_error(&slice(&[2, 7], 2, ""));
        assert_contains(&e, "the number of tops (2) should evenly divide the input's axis 1 of size 7");
        let e = build_error(&slice(&[2, 6], 3, "slice_point: 2 slice_point: 7"));
        assert_contains(&e, "slice point 7 is beyond the end of axis 1 of size 6");
        let e = build_error(&slice(&[2, 2], 3, "slice_point: 1 slice_point: 2"));
        assert_contains(&e, "3 tops cannot slice axis 1 of size 2");
        let e = build_error(&slice(&[2, 2], 2, "axis: 1 slice_dim: 1"));
        assert_contains(&e, "either axis or slice_dim should be specified; not both");
    }
}
