//! Tile: the bottom repeated `tiles` times along `axis` (each repetition is the whole block of
//! axes from `axis` on).

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::{Backend, StridedCopy};
use crate::blob::{canonical_axis, checked_count, count_range};
use crate::proto::LayerParameter;
use crate::{Error, Result};

struct Tile {
    axis: i32,
    tiles: usize,
    outer: usize,
    inner: usize,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let p = lp.tile_param.unwrap_or_default();
    let tiles = p.tiles.ok_or_else(|| Error::Config("tile_param.tiles must be specified".into()))?;
    if tiles <= 0 {
        return Err(Error::Config(format!("tile_param.tiles must be positive, given {tiles}")));
    }
    Ok(Box::new(Tile { axis: p.axis(), tiles: tiles as usize, outer: 0, inner: 0 }))
}

impl<B: Backend> Layer<B> for Tile {
    fn type_name(&self) -> &'static str {
        "Tile"
    }
    fn bottoms(&self) -> Arity {
        Arity::exactly(1)
    }
    fn tops(&self) -> Arity {
        Arity::exactly(1)
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let shape = bottoms[0];
        let axis = canonical_axis(self.axis, shape.len())?;
        let mut top = shape.to_vec();
        top[axis] *= self.tiles;
        checked_count(&top)?;
        self.outer = count_range(shape, 0, axis);
        self.inner = count_range(shape, axis, shape.len());
        Ok(vec![top])
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let (t, inner) = (self.tiles, self.inner);
        let copy = StridedCopy {
            shape: vec![self.outer, t, inner],
            src_offset: 0,
            src_strides: vec![inner, 0, 1],
            dst_offset: 0,
            dst_strides: vec![t * inner, inner, 1],
        };
        let mut parts = ctx.parts()?;
        be.copy_strided(&parts.bottoms[0].data, &mut parts.tops[0].data, &copy, false)
    }
    /// The sum of the tiles' gradients, added in tile order as Caffe does.
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let (t, inner) = (self.tiles, self.inner);
        let mut parts = ctx.parts_back()?;
        let top = parts.tops[0];
        let bottom = &mut parts.bottoms[0];
        for k in 0..t {
            let copy = StridedCopy {
                shape: vec![self.outer, inner],
                src_offset: k * inner,
                src_strides: vec![t * inner, 1],
                dst_offset: 0,
                dst_strides: vec![inner, 1],
            };
            be.copy_strided(&top.diff, &mut bottom.diff, &copy, k > 0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, forwarded, on_input};

    fn tile(shape: &[usize], param: &str) -> String {
        on_input(shape, "Tile", "tile_param", param)
    }

    #[test]
    fn tile_repeats_the_block_from_axis() {
        let x: &[f32] = &[1.0, 2.0, 3.0, 4.0];
        let net = forwarded(&tile(&[2, 2], "axis: 0 tiles: 2"), &[("x", x)]);
        let be = net.backend().clone();
        assert_eq!(net.blob("y").unwrap().shape(), [4, 2]);
        assert_eq!(net.blob("y").unwrap().data_to_vec(&be).unwrap(), [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
        let net = forwarded(&tile(&[2, 2], "tiles: 2"), &[("x", x)]);
        assert_eq!(net.blob("y").unwrap().data_to_vec(&be).unwrap(), [1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]);
    }

    #[test]
    fn tile_errors() {
        assert_contains(&build_error(&tile(&[2, 2], "axis: 1")), "tile_param.tiles must be specified");
        assert_contains(&build_error(&tile(&[2, 2], "tiles: 0")), "tile_param.tiles must be positive, given 0");
        assert_contains(&build_error(&tile(&[2, 2], "axis: 2 tiles: 2")), "axis 2 out of range");
    }
}
