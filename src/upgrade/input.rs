//! Step 4: the legacy net inputs (`input: "data"` with `input_dim` x4 or `input_shape`) become
//! one Input layer, as Caffe's `UpgradeNetInput` does: a layer named `input` of type `Input`,
//! one top per input and one `input_param.shape` per top, placed first in the net.
//!
//! An `input` with neither dims nor shapes (how old caffemodels record their inputs) is simply
//! dropped, as in Caffe. Counts that do not match (4 dims per input, or one shape per input),
//! or both kinds given at once, are errors: Caffe would read past the end of the list or
//! silently ignore one kind.

use super::err;
use crate::Result;
use crate::proto::{BlobShape, InputParameter, LayerParameter, NetParameter};

/// Whether the net declares legacy inputs (Caffe's `NetNeedsInputUpgrade`).
pub fn needs(net: &NetParameter) -> bool {
    !net.input.is_empty()
}

/// Replaces the legacy input fields of `net` by an Input layer at the front.
pub fn upgrade(net: &mut NetParameter) -> Result<()> {
    let inputs = std::mem::take(&mut net.input);
    let shapes = std::mem::take(&mut net.input_shape);
    let dims = std::mem::take(&mut net.input_dim);
    if shapes.is_empty() && dims.is_empty() {
        return Ok(());
    }
    let shape = if !shapes.is_empty() {
        if !dims.is_empty() {
            return Err(err(format!(
                "the net gives both input_shape ({}) and input_dim ({}) for its inputs; give one",
                shapes.len(),
                dims.len()
            )));
        }
        if shapes.len() != inputs.len() {
            return Err(err(format!(
                "the net declares {} input(s) but {} input_shape(s); give one shape per input",
                inputs.len(),
                shapes.len()
            )));
        }
        shapes
    } else {
        if dims.len() != 4 * inputs.len() {
            return Err(err(format!(
                "the net declares {} input(s) but {} input_dim value(s); input_dim needs exactly 4 \
                 per input (num, channels, height, width), {} in all",
                inputs.len(),
                dims.len(),
                4 * inputs.len()
            )));
        }
        dims.chunks(4).map(|d| BlobShape { dim: d.iter().map(|&x| i64::from(x)).collect() }).collect()
    };
    let layer = LayerParameter {
        name: Some("input".into()),
        r#type: Some("Input".into()),
        top: inputs,
        input_param: Some(InputParameter { shape }),
        ..Default::default()
    };
    net.layer.insert(0, layer);
    Ok(())
}
