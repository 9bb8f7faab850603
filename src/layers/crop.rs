//! Crop: bottom 0 cut to bottom 1's shape on the axes from `axis` on, at given offsets.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Backend, StridedCopy, strides_of};
use crate::blob::canonical_axis;
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct Crop {
    axis: i32,
    offsets: Vec<u32>,
    /// Bottom 0 to top, for the current shapes.
    copy: StridedCopy,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.crop_param.clone().unwrap_or_default();
    let copy = StridedCopy { shape: vec![], src_offset: 0, src_strides: vec![], dst_offset: 0, dst_strides: vec![] };
    Ok(Box::new(Crop { axis: p.axis(), offsets: p.offset, copy }))
}

impl<B: Backend> Layer<B> for Crop {
    fn type_name(&self) -> &'static str {
        "Crop"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(2)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    /// Caffe's Crop leaves the reference bottom's diff untouched (zero), even when forced.
    fn writes_bottom_diff(&self, bottom: usize) -> bool {
        bottom == 0
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (data, like) = (bottoms[0], bottoms[1]);
        let n = data.len();
        let start = canonical_axis(self.axis, n)?;
        if self.offsets.len() > 1 && start + self.offsets.len() != n {
            return Err(Error::Shape(format!(
                "{} offsets given for the {} axes from axis {start} of the {n}-axis input (give one, or one per axis)",
                self.offsets.len(),
                n - start
            )));
        }
        if like.len() < n {
            return Err(Error::Shape(format!("the reference bottom {like:?} has fewer axes than the input {data:?}")));
        }
        let mut top = data.to_vec();
        let mut offsets = vec![0usize; n];
        for i in start..n {
            let off = match self.offsets.len() {
                0 => 0,
                1 => self.offsets[0],
                _ => self.offsets[i - start],
            } as usize;
            if data[i] < off + like[i] {
                return Err(Error::Shape(format!(
                    "the crop of axis {i} is out of bounds: size {} at offset {off} of an input of size {}",
                    like[i], data[i]
                )));
            }
            top[i] = like[i];
            offsets[i] = off;
        }
        let src_strides = strides_of(data);
        self.copy = StridedCopy {
            src_offset: offsets.iter().zip(&src_strides).map(|(o, s)| o * s).sum(),
            src_strides,
            dst_offset: 0,
            dst_strides: strides_of(&top),
            shape: top.clone(),
        };
        Ok(vec![top])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let mut parts = ctx.parts()?;
        be.copy_strided(&parts.bottoms[0].data, &mut parts.tops[0].data, &self.copy, false)
    }
    /// The top's gradient lands in the cropped window of bottom 0's, zero elsewhere; bottom 1
    /// only gives a shape and its gradient is left untouched, as in Caffe.
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let mut parts = ctx.parts_back()?;
        let bottom = &mut parts.bottoms[0];
        let n = bottom.count();
        be.fill(&mut bottom.diff, 0, n, 0.0)?;
        let back = StridedCopy {
            shape: self.copy.shape.clone(),
            src_offset: self.copy.dst_offset,
            src_strides: self.copy.dst_strides.clone(),
            dst_offset: self.copy.src_offset,
            dst_strides: self.copy.src_strides.clone(),
        };
        be.copy_strided(&parts.tops[0].diff, &mut bottom.diff, &back, false)
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, input, net, shape_of};

    fn crop(a: &[usize], b: &[usize], param: &str) -> String {
        format!(
            r#"{} {} layer {{ name: "c" type: "Crop" bottom: "a" bottom: "b" top: "y" crop_param {{ {param} }} }}"#,
            input("a", a),
            input("b", b)
        )
    }

    #[test]
    fn crop_shapes_and_values() {
        assert_eq!(shape_of(&crop(&[2, 3, 7, 8], &[1, 1, 4, 4], ""), "y"), [2, 3, 4, 4]);
        assert_eq!(shape_of(&crop(&[2, 3, 7, 8], &[1, 2, 4, 4], "axis: -3 offset: 1"), "y"), [2, 2, 4, 4]);
        let mut net = net(&crop(&[3, 4], &[2, 2], "axis: 0 offset: 1 offset: 2")).unwrap();
        let be = net.backend().clone();
        net.blob_mut("a").unwrap().set_data(&be, &(0..12).map(|v| v as f32).collect::<Vec<_>>()).unwrap();
        net.forward().unwrap();
        assert_eq!(net.blob("y").unwrap().data_to_vec(&be).unwrap(), [6.0, 7.0, 10.0, 11.0]);
    }

    #[test]
    fn crop_errors() {
        let e = build_error(&crop(&[2, 3, 7, 8], &[2, 3, 4, 4], "offset: 1 offset: 5"));
        assert_contains(&e, "the crop of axis 3 is out of bounds: size 4 at offset 5 of an input of size 8");
        let e = build_error(&crop(&[2, 3, 7, 8], &[2, 3, 4, 4], "axis: 1 offset: 1 offset: 1"));
        assert_contains(&e, "2 offsets given for the 3 axes from axis 1 of the 4-axis input");
        assert_contains(&build_error(&crop(&[2, 3, 7, 8], &[2, 3, 4], "")), "fewer axes than the input");
        assert_contains(&build_error(&crop(&[2, 3], &[2, 3], "axis: 2")), "axis 2 out of range");
    }
}
