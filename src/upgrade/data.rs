//! Step 2: the data-transformation fields (`scale`, `mean_file`, `crop_size`, `mirror`) that
//! early V1 nets set inside `data_param`, `image_data_param` and `window_data_param` move to
//! the layer's `transform_param` (Caffe's `UpgradeNetDataTransformation`).
//!
//! Quirk kept from Caffe: once any data layer needs this, *every* V1 layer of type DATA,
//! IMAGE_DATA or WINDOW_DATA is given a `transform_param` and its `*_param` message, empty if
//! need be, because Caffe reaches both through `mutable_*` accessors. The empty messages are
//! visible in the upgraded file, so they are reproduced.

use crate::proto::{NetParameter, TransformationParameter, V1LayerParameter, v1_layer_parameter::LayerType};

/// The four old fields, as they sit in each of the three data parameter messages.
struct OldFields<'a> {
    scale: &'a mut Option<f32>,
    mean_file: &'a mut Option<String>,
    crop_size: &'a mut Option<u32>,
    mirror: &'a mut Option<bool>,
}

impl OldFields<'_> {
    fn move_into(self, transform: &mut TransformationParameter) {
        if let Some(s) = self.scale.take() {
            transform.scale = Some(s);
        }
        if let Some(m) = self.mean_file.take() {
            transform.mean_file = Some(m);
        }
        if let Some(c) = self.crop_size.take() {
            transform.crop_size = Some(c);
        }
        if let Some(m) = self.mirror.take() {
            transform.mirror = Some(m);
        }
    }
}

/// The old fields of `layer`'s data parameter message, if its type has one; the message is
/// created when absent, as Caffe's `mutable_*` accessors do.
fn old_fields(layer: &mut V1LayerParameter) -> Option<OldFields<'_>> {
    macro_rules! fields {
        ($slot:expr) => {{
            let p = $slot.get_or_insert_with(Default::default);
            Some(OldFields {
                scale: &mut p.scale,
                mean_file: &mut p.mean_file,
                crop_size: &mut p.crop_size,
                mirror: &mut p.mirror,
            })
        }};
    }
    match LayerType::try_from(layer.r#type?) {
        Ok(LayerType::Data) => fields!(layer.data_param),
        Ok(LayerType::ImageData) => fields!(layer.image_data_param),
        Ok(LayerType::WindowData) => fields!(layer.window_data_param),
        _ => None,
    }
}

/// Whether any V1 data layer sets an old transformation field (Caffe's `NetNeedsDataUpgrade`).
pub fn needs(net: &NetParameter) -> bool {
    macro_rules! any_old {
        ($param:expr) => {
            $param.as_ref().is_some_and(|p| {
                p.scale.is_some() || p.mean_file.is_some() || p.crop_size.is_some() || p.mirror.is_some()
            })
        };
    }
    net.layers.iter().any(|l| match l.r#type.map(LayerType::try_from) {
        Some(Ok(LayerType::Data)) => any_old!(l.data_param),
        Some(Ok(LayerType::ImageData)) => any_old!(l.image_data_param),
        Some(Ok(LayerType::WindowData)) => any_old!(l.window_data_param),
        _ => false,
    })
}

/// Moves the old fields of every V1 data layer into its `transform_param`.
pub fn upgrade(net: &mut NetParameter) {
    for layer in &mut net.layers {
        let mut transform = layer.transform_param.clone().unwrap_or_default();
        if let Some(fields) = old_fields(layer) {
            fields.move_into(&mut transform);
            layer.transform_param = Some(transform);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> NetParameter {
        crate::prototxt::parse(text, "test.prototxt").expect("test net parses")
    }

    #[test]
    fn old_fields_move_and_every_data_layer_gets_both_messages() {
        let mut n = net(
            r#"layers { name: "a" type: DATA data_param { source: "db" scale: 0.5 mean_file: "m" crop_size: 3 mirror: true } }
            layers { name: "b" type: DATA }
            layers { name: "c" type: WINDOW_DATA transform_param { mean_value: 104 } window_data_param { mirror: false } }
            layers { name: "d" type: RELU }"#,
        );
        assert!(needs(&n));
        upgrade(&mut n);
        assert!(!needs(&n));
        let a = &n.layers[0];
        let t = a.transform_param.as_ref().unwrap();
        assert_eq!(
            (t.scale, t.mean_file.as_deref(), t.crop_size, t.mirror),
            (Some(0.5), Some("m"), Some(3), Some(true))
        );
        let d = a.data_param.as_ref().unwrap();
        assert_eq!(d.source.as_deref(), Some("db"));
        assert_eq!((d.scale, d.mean_file.as_deref(), d.crop_size, d.mirror), (None, None, None, None));
        // Caffe's mutable_* accessors leave empty messages on a data layer that had none.
        assert_eq!(n.layers[1].transform_param, Some(TransformationParameter::default()));
        assert_eq!(n.layers[1].data_param, Some(Default::default()));
        let c = &n.layers[2];
        let t = c.transform_param.as_ref().unwrap();
        assert_eq!((t.mirror, &t.mean_value[..]), (Some(false), &[104.0][..]));
        assert_eq!(n.layers[3].transform_param, None);
        assert_eq!(n.layers[3].data_param, None);
    }

    #[test]
    fn nets_without_old_fields_need_nothing() {
        let n = net(r#"layers { name: "a" type: DATA data_param { source: "db" } transform_param { scale: 2 } }"#);
        assert!(!needs(&n));
    }
}
