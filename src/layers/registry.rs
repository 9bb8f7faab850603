//! The table of layer types: Caffe's type string to constructor.

use super::{Layer, LayerContext};
use crate::backend::Backend;
use crate::proto::LayerParameter;
use crate::{Error, Result};

/// A layer constructor.
type Ctor<B> = fn(&LayerParameter, &LayerContext) -> Result<Box<dyn Layer<B>>>;

fn table<B: Backend>() -> Vec<(&'static str, Ctor<B>)> {
    vec![
        ("AbsVal", super::activation::create_absval),
        ("BNLL", super::activation::create_bnll),
        ("Clip", super::activation::create_clip),
        ("Convolution", super::conv::create_convolution),
        ("Deconvolution", super::conv::create_deconvolution),
        ("Dropout", super::dropout::create),
        ("DummyData", super::input::create_dummy_data),
        ("ELU", super::activation::create_elu),
        ("EuclideanLoss", super::euclidean_loss::create),
        ("Exp", super::activation::create_exp),
        ("InnerProduct", super::inner_product::create),
        ("Input", super::input::create_input),
        ("Log", super::activation::create_log),
        ("PReLU", super::prelu::create),
        ("Power", super::activation::create_power),
        ("ReLU", super::activation::create_relu),
        ("Sigmoid", super::activation::create_sigmoid),
        ("Swish", super::swish::create),
        ("TanH", super::activation::create_tanh),
        ("Threshold", super::activation::create_threshold),
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
