//! The table of layer types: Caffe's type string to constructor.

use super::{Layer, LayerContext};
use crate::backend::Backend;
use crate::proto::LayerParameter;
use crate::{Error, Result};

/// A layer constructor.
type Ctor<B> = fn(&LayerParameter, &LayerContext) -> Result<Box<dyn Layer<B>>>;

fn table<B: Backend>() -> Vec<(&'static str, Ctor<B>)> {
    vec![
        ("BN", super::bn::create),
        ("BatchNorm", super::batch_norm::create),
        ("Bias", super::scale_bias::create_bias),
        ("Convolution", super::conv::create_convolution),
        ("Deconvolution", super::conv::create_deconvolution),
        ("DummyData", super::input::create_dummy_data),
        ("EuclideanLoss", super::euclidean_loss::create),
        ("InnerProduct", super::inner_product::create),
        ("Input", super::input::create_input),
        ("LRN", super::lrn::create),
        ("MVN", super::mvn::create),
        ("ReLU", super::activation::create_relu),
        ("Scale", super::scale_bias::create_scale),
    ]
}

/// Every layer type crema knows, sorted.
pub fn layer_types() -> Vec<&'static str> {
    let mut names: Vec<&str> = table::<crate::backend::cpu::Cpu>().into_iter().map(|(n, _)| n).collect();
    names.sort_unstable();
    names
}

/// Builds the layer `lp` describes.
pub fn create_layer<B: Backend>(lp: &LayerParameter, cx: &LayerContext) -> Result<Box<dyn Layer<B>>> {
    let kind = lp.r#type();
    match table::<B>().into_iter().find(|(n, _)| *n == kind) {
        Some((_, ctor)) => ctor(lp, cx),
        None => Err(Error::Config(format!(
            "unknown layer type `{kind}`; crema knows: {}",
            layer_types().join(", ")
        ))),
    }
}
