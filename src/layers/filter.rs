//! Filter: keeps the items (first-axis entries) of each data bottom whose selector value is
//! nonzero, in order (Caffe's FilterLayer). Bottoms are K data blobs then the selector, of shape
//! `(N)` or `(N, 1, ...)`; top `i` is data bottom `i` with only the kept items. Backward copies
//! each top item's gradient back to the item it came from and zeroes the others; the selector
//! takes no gradient (asking for one is an error, as in Caffe).
//!
//! How many items the tops hold depends on the selector's values, which Caffe's Reshape reads
//! from the selector's data. crema's reshape sees shapes only, so the layer reads the selector
//! (on the host) in [`Layer::read_bottom_values`], which the net calls just before each
//! forward's reshape; that reshape then gives the kept count. When the net is built (values not
//! computed yet) the tops hold every item, as Caffe's first reshape gives. No item kept gives
//! tops with a first axis of 0, as in Caffe.

use super::{Arity, Ctx, Layer, LayerContext};
use crate::backend::Backend;
use crate::blob::{count_range, Blob};
use crate::proto::LayerParameter;
use crate::{Error, Result};

/// Items a selector may have: the kept positions travel as `f32` (as
/// [`TensorOps::gather_rows`](crate::backend::TensorOps::gather_rows) takes them), exact up to
/// 2^24.
const MAX_ITEMS: usize = 1 << 24;

struct Filter<B: Backend> {
    /// The selector's bottom index (the last).
    selector: usize,
    /// The selector's item count and the positions of its nonzero values, as last read.
    read: Option<(usize, Vec<usize>)>,
    /// The kept positions of the last forward, as `f32`, on the backend.
    index: Option<B::Buf>,
    /// The item count and the kept count of the last forward.
    items: usize,
    kept: usize,
    /// Elements per item of each data bottom, at the last reshape.
    row_len: Vec<usize>,
}

pub(super) fn create<B: Backend>(lp: &LayerParameter, _: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let (bottoms, tops) = (lp.bottom.len(), lp.top.len());
    if bottoms >= 2 && tops != bottoms - 1 {
        return Err(Error::Config(format!(
            "takes one top per data bottom: {} data bottom(s) and the selector (the last bottom) need {} top(s), given {tops}",
            bottoms - 1,
            bottoms - 1
        )));
    }
    Ok(Box::new(Filter::<B> { selector: bottoms.saturating_sub(1), read: None, index: None, items: 0, kept: 0, row_len: Vec::new() }))
}

/// Checks the shapes (data bottoms, then the selector) and returns the selector's item count.
fn check_shapes(bottoms: &[&[usize]]) -> Result<usize> {
    let s = bottoms.len() - 1;
    let selector = bottoms[s];
    let Some(&items) = selector.first() else {
        return Err(Error::Shape(format!("the selector (bottom {s}) must have at least one axis, given shape {selector:?}")));
    };
    if selector[1..].iter().any(|&d| d != 1) {
        return Err(Error::Shape(format!(
            "the selector (bottom {s}) must have shape (N) or (N, 1, ...): its axes after the first must be 1, given shape {selector:?}"
        )));
    }
    for (i, shape) in bottoms[..s].iter().enumerate() {
        if shape.first() != Some(&items) {
            return Err(Error::Shape(format!(
                "bottom {i} has shape {shape:?}, the selector (bottom {s}) has {items} items: each data bottom must have as many along its first axis"
            )));
        }
    }
    if items > MAX_ITEMS {
        return Err(Error::Shape(format!("the selector (bottom {s}) has {items} items, more than the {MAX_ITEMS} Filter takes")));
    }
    Ok(items)
}

impl<B: Backend> Layer<B> for Filter<B> {
    fn type_name(&self) -> &'static str {
        "Filter"
    }
    fn bottoms(&self) -> Arity {
        Arity::at_least(2)
    }
    fn tops(&self) -> Arity {
        Arity::at_least(1)
    }
    /// The selector gets no gradient (Caffe refuses to compute one).
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != self.selector
    }
    /// Backward works from the kept positions and the diffs alone.
    fn backward_reads_bottom(&self, _bottom: usize) -> bool {
        false
    }
    fn backward_reads_top(&self, _top: usize) -> bool {
        false
    }
    fn read_bottom_values(&mut self, be: &B, bottoms: &[&Blob<B>]) -> Result<()> {
        let shapes: Vec<&[usize]> = bottoms.iter().map(|b| b.shape()).collect();
        let items = check_shapes(&shapes)?;
        let mut values = vec![0.0f32; items];
        be.download(&bottoms[bottoms.len() - 1].data, 0, &mut values)?;
        // Caffe keeps an item when its selector value converts to true: anything but zero
        // (NaN included).
        let kept = values.iter().enumerate().filter(|&(_, &v)| v != 0.0).map(|(i, _)| i).collect();
        self.read = Some((items, kept));
        Ok(())
    }
    fn reshape(&mut self, _: &B, bottoms: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let items = check_shapes(bottoms)?;
        let kept = match &self.read {
            Some((n, kept)) if *n == items => kept.len(),
            // Values not read for this batch size (the net being built): every item.
            _ => items,
        };
        let data = &bottoms[..bottoms.len() - 1];
        self.row_len = data.iter().map(|s| count_range(s, 1, s.len())).collect();
        Ok(data
            .iter()
            .map(|s| {
                let mut top = s.to_vec();
                top[0] = kept;
                top
            })
            .collect())
    }
    fn forward(&mut self, be: &B, ctx: &mut Ctx<'_, B>) -> Result<()> {
        let parts = ctx.parts()?;
        let s = parts.bottoms.len() - 1;
        let items = parts.bottoms[s].shape().first().copied().unwrap_or(0);
        let kept = match &self.read {
            Some((n, kept)) if *n == items && parts.tops.iter().all(|t| t.shape().first() == Some(&kept.len())) => kept,
            _ => return Err(Error::Internal("Filter ran forward without reading its selector first".into())),
        };
        let index = match &mut self.index {
            Some(b) => b,
            None => self.index.insert(be.alloc(0)?),
        };
        be.set_len(index, kept.len())?;
        let positions: Vec<f32> = kept.iter().map(|&i| i as f32).collect();
        be.upload(&positions, index, 0)?;
        (self.items, self.kept) = (items, kept.len());
        for (t, top) in parts.tops.into_iter().enumerate() {
            if self.kept > 0 && self.row_len[t] > 0 {
                be.gather_rows(index, items, self.row_len[t], &parts.bottoms[t].data, &mut top.data)?;
            }
        }
        Ok(())
    }
    fn backward(&mut self, be: &B, ctx: &mut Ctx<'_, B>, propagate_down: &[bool]) -> Result<()> {
        let s = propagate_down.len() - 1;
        if propagate_down[s] {
            return Err(Error::Config(format!("cannot backpropagate to the selector (bottom {s})")));
        }
        let mut parts = ctx.parts_back()?;
        for (i, bottom) in parts.bottoms.iter_mut().take(s).enumerate() {
            if !propagate_down[i] {
                continue;
            }
            let n = bottom.count();
            be.fill(&mut bottom.diff, 0, n, 0.0)?;
            if self.kept > 0 && self.row_len[i] > 0 {
                let index = self.index.as_ref().ok_or_else(|| Error::Internal("Filter ran backward before forward".into()))?;
                be.scatter_add_rows(index, self.items, self.row_len[i], &parts.tops[i].diff, &mut bottom.diff)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tensor_testing::{assert_contains, build_error, forwarded, input, net};

    /// Data bottoms `x` (4x2) and `v` (4), selector `s` of `selector` shape; tops `y` and `w`,
    /// and a Power layer after `y` (its shape follows the kept count).
    fn filter(selector: &[usize]) -> String {
        format!(
            r#"force_backward: true {} {} {}
            layer {{ name: "f" type: "Filter" bottom: "x" bottom: "v" bottom: "s" top: "y" top: "w" }}
            layer {{ name: "p" type: "Power" bottom: "y" top: "z" power_param {{ scale: 2 }} }}"#,
            input("x", &[4, 2]),
            input("v", &[4]),
            input("s", selector)
        )
    }

    const X: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    const V: [f32; 4] = [10.0, 20.0, 30.0, 40.0];

    #[test]
    fn filter_keeps_the_selected_items_and_scatters_their_gradients() {
        let mut net = net(&filter(&[4])).unwrap();
        let be = net.backend().clone();
        // Built: every item, as Caffe's first reshape.
        assert_eq!(net.blob("y").unwrap().shape(), [4, 2]);
        net.blob_mut("x").unwrap().set_data(&be, &X).unwrap();
        net.blob_mut("v").unwrap().set_data(&be, &V).unwrap();
        // Any nonzero value keeps its item.
        net.blob_mut("s").unwrap().set_data(&be, &[1.0, 0.0, 0.5, -3.0]).unwrap();
        net.forward().unwrap();
        assert_eq!(net.blob("y").unwrap().shape(), [3, 2]);
        assert_eq!(net.blob("y").unwrap().data_to_vec(&be).unwrap(), [1.0, 2.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(net.blob("w").unwrap().shape(), [3]);
        assert_eq!(net.blob("w").unwrap().data_to_vec(&be).unwrap(), [10.0, 30.0, 40.0]);
        assert_eq!(net.blob("z").unwrap().shape(), [3, 2]);
        assert_eq!(net.blob("z").unwrap().data_to_vec(&be).unwrap(), [2.0, 4.0, 10.0, 12.0, 14.0, 16.0]);
        net.blob_mut("z").unwrap().set_diff(&be, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        net.blob_mut("w").unwrap().set_diff(&be, &[-1.0, -2.0, -3.0]).unwrap();
        net.backward().unwrap();
        assert_eq!(net.blob("x").unwrap().diff_to_vec(&be).unwrap(), [2.0, 4.0, 0.0, 0.0, 6.0, 8.0, 10.0, 12.0]);
        assert_eq!(net.blob("v").unwrap().diff_to_vec(&be).unwrap(), [-1.0, 0.0, -2.0, -3.0]);
        assert!(net.blob("s").unwrap().diff_to_vec(&be).unwrap().iter().all(|&d| d == 0.0));

        // A new selection resizes the tops and the layers after them.
        net.blob_mut("s").unwrap().set_data(&be, &[0.0, f32::NAN, 0.0, 0.0]).unwrap();
        net.forward().unwrap();
        assert_eq!(net.blob("z").unwrap().shape(), [1, 2]);
        assert_eq!(net.blob("y").unwrap().data_to_vec(&be).unwrap(), [3.0, 4.0]);
        assert_eq!(net.blob("w").unwrap().data_to_vec(&be).unwrap(), [20.0]);
        // Reshaping without values keeps the last selection.
        net.reshape().unwrap();
        assert_eq!(net.blob("y").unwrap().shape(), [1, 2]);
    }

    #[test]
    fn filter_keeping_nothing_gives_empty_tops_and_zero_gradients() {
        let body = filter(&[4, 1, 1]);
        let mut net = forwarded(&body, &[("x", &X), ("v", &V), ("s", &[0.0; 4])]);
        let be = net.backend().clone();
        assert_eq!(net.blob("y").unwrap().shape(), [0, 2]);
        assert_eq!(net.blob("w").unwrap().shape(), [0]);
        assert_eq!(net.blob("z").unwrap().shape(), [0, 2]);
        net.blob_mut("x").unwrap().set_diff(&be, &[9.0; 8]).unwrap();
        net.backward().unwrap();
        assert_eq!(net.blob("x").unwrap().diff_to_vec(&be).unwrap(), [0.0; 8]);
    }

    /// A forward-only net sharing data: Filter's tops and the blobs after them are lent buffers
    /// sized after each forward's selection (growing and shrinking), poisoned before each write.
    #[test]
    fn filter_tops_of_changing_size_in_shared_data() {
        let body = format!(
            r#"{} {}
            layer {{ name: "f" type: "Filter" bottom: "x" bottom: "s" top: "y" }}
            layer {{ name: "p1" type: "Power" bottom: "y" top: "a" power_param {{ scale: 2 }} }}
            layer {{ name: "p2" type: "Power" bottom: "a" top: "b" power_param {{ scale: 3 }} }}
            layer {{ name: "p3" type: "Power" bottom: "b" top: "c" power_param {{ shift: 1 }} }}
            layer {{ name: "p4" type: "Power" bottom: "c" top: "d" power_param {{ scale: 0.5 }} }}"#,
            input("x", &[4, 2]),
            input("s", &[4])
        );
        let mut net = net(&body).unwrap();
        let be = net.backend().clone();
        net.make_forward_only().unwrap();
        net.set_data_sharing(true, &[]).unwrap();
        net.poison_shared_data(true);
        assert!(net.blob("y").unwrap().data_is_shared());
        net.blob_mut("x").unwrap().set_data(&be, &X).unwrap();
        for (selector, kept) in [([0.0, 1.0, 0.0, 1.0], vec![1, 3]), ([1.0; 4], vec![0, 1, 2, 3]), ([0.0, 0.0, 1.0, 0.0], vec![2])] {
            net.blob_mut("s").unwrap().set_data(&be, &selector).unwrap();
            net.forward().unwrap();
            let want: Vec<f32> = kept.iter().flat_map(|&i| [3.0 * X[2 * i] + 0.5, 3.0 * X[2 * i + 1] + 0.5]).collect();
            assert_eq!(net.blob("d").unwrap().shape(), [kept.len(), 2]);
            assert_eq!(net.blob("d").unwrap().data_to_vec(&be).unwrap(), want);
        }
    }

    #[test]
    fn filter_errors() {
        assert_contains(
            &build_error(&filter(&[4, 2])),
            "layer `f` (type Filter): the selector (bottom 2) must have shape (N) or (N, 1, ...): its axes after the first must be 1, given shape [4, 2]",
        );
        assert_contains(&build_error(&filter(&[3])), "bottom 0 has shape [4, 2], the selector (bottom 2) has 3 items");
        let two_tops = format!(
            r#"{} {} layer {{ name: "f" type: "Filter" bottom: "x" bottom: "s" top: "y" top: "w" }}"#,
            input("x", &[4, 2]),
            input("s", &[4])
        );
        assert_contains(&build_error(&two_tops), "1 data bottom(s) and the selector (the last bottom) need 1 top(s), given 2");
        let one_bottom = format!(r#"{} layer {{ name: "f" type: "Filter" bottom: "x" top: "y" }}"#, input("x", &[4, 2]));
        assert_contains(&build_error(&one_bottom), "takes at least 2 bottom blob(s), given 1");
        // A selector computed by a layer that learns would need a gradient: Caffe refuses.
        let learned = format!(
            r#"{} {}
            layer {{ name: "ip" type: "InnerProduct" bottom: "h" top: "s" inner_product_param {{ num_output: 1
              weight_filler {{ type: "constant" value: 1 }} }} }}
            layer {{ name: "f" type: "Filter" bottom: "x" bottom: "s" top: "y" }}
            layer {{ name: "loss" type: "Reduction" bottom: "y" top: "loss" loss_weight: 1 }}"#,
            input("x", &[4, 2]),
            input("h", &[4, 3])
        );
        let mut n = forwarded(&learned, &[("x", &X), ("h", &[1.0; 12])]);
        let e = n.backward().unwrap_err().to_string();
        assert_contains(&e, "layer `f` (type Filter): cannot backpropagate to the selector (bottom 1)");
        // A selector reshaped after the net was built is checked when forward reads it.
        let mut n = net(&filter(&[4])).unwrap();
        let be = n.backend().clone();
        n.blob_mut("s").unwrap().reshape(&be, &[3]).unwrap();
        let e = n.forward().unwrap_err().to_string();
        assert_contains(&e, "layer `f` (type Filter): bottom 0 has shape [4, 2], the selector (bottom 2) has 3 items");
    }
}
