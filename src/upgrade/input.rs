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

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> NetParameter {
        crate::prototxt::parse(text, "test.prototxt").expect("test net parses")
    }

    #[test]
    fn input_dims_become_a_first_input_layer() {
        let mut n = net(r#"input: "data" input_dim: 10 input_dim: 3 input_dim: 227 input_dim: 227
            input: "label" input_dim: 10 input_dim: 1 input_dim: 1 input_dim: 1
            layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }"#);
        assert!(needs(&n));
        upgrade(&mut n).unwrap();
        assert!(n.input.is_empty() && n.input_dim.is_empty() && n.input_shape.is_empty());
        assert_eq!(n.layer.len(), 2);
        let input = &n.layer[0];
        assert_eq!((input.name.as_deref(), input.r#type.as_deref()), (Some("input"), Some("Input")));
        assert_eq!(input.top, ["data", "label"]);
        let shapes = &input.input_param.as_ref().unwrap().shape;
        assert_eq!(shapes[0].dim, [10, 3, 227, 227]);
        assert_eq!(shapes[1].dim, [10, 1, 1, 1]);
        assert_eq!(n.layer[1].name.as_deref(), Some("relu"));
    }

    #[test]
    fn input_shapes_are_copied() {
        let mut n = net(r#"input: "x" input_shape { dim: 2 dim: 5 }"#);
        upgrade(&mut n).unwrap();
        assert_eq!(n.layer[0].input_param.as_ref().unwrap().shape[0].dim, [2, 5]);
    }

    #[test]
    fn inputs_without_shapes_are_dropped() {
        let mut n = net(r#"input: "x" layer { name: "a" }"#);
        upgrade(&mut n).unwrap();
        assert!(n.input.is_empty());
        assert_eq!(n.layer.len(), 1);
    }

    #[test]
    fn malformed_counts_are_errors() {
        let mut n = net(r#"input: "x" input_dim: 1 input_dim: 3 input_dim: 8"#);
        let e = upgrade(&mut n).unwrap_err().to_string();
        assert!(e.contains("1 input(s) but 3 input_dim value(s)") && e.contains("exactly 4"), "{e}");
        let mut n = net(r#"input: "x" input: "y" input_shape { dim: 1 }"#);
        let e = upgrade(&mut n).unwrap_err().to_string();
        assert!(e.contains("2 input(s) but 1 input_shape(s)"), "{e}");
        let mut n = net(r#"input: "x" input_shape { dim: 1 } input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1"#);
        let e = upgrade(&mut n).unwrap_err().to_string();
        assert!(e.contains("both input_shape (1) and input_dim (4)"), "{e}");
    }
}
