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
        ("Accuracy", super::accuracy::create),
        ("ArgMax", super::argmax::create),
        ("BatchNorm", super::batch_norm::create),
        ("BatchReindex", super::batch_reindex::create),
        ("Bias", super::scale_bias::create_bias),
        ("BN", super::bn::create),
        ("BNLL", super::activation::create_bnll),
        ("Clip", super::activation::create_clip),
        ("Concat", super::concat::create_concat),
        ("ContrastiveLoss", super::contrastive::create),
        ("Convolution", super::conv::create_convolution),
        ("Crop", super::crop::create),
        ("Deconvolution", super::conv::create_deconvolution),
        ("Data", super::data::create),
        ("DenseImageData", super::dense_image_data::create),
        ("Dropout", super::dropout::create),
        ("DummyData", super::input::create_dummy_data),
        ("Eltwise", super::eltwise::create),
        ("ELU", super::activation::create_elu),
        ("Embed", super::embed::create),
        ("EuclideanLoss", super::euclidean_loss::create),
        ("HDF5Data", super::hdf5_data::create),
        ("HDF5Output", super::hdf5_output::create),
        ("HingeLoss", super::label_losses::create_hinge),
        ("Im2col", super::im2col::create),
        ("ImageData", super::image_data::create),
        ("Exp", super::activation::create_exp),
        ("Filter", super::filter::create),
        ("Flatten", super::reshape::create_flatten),
        ("InfogainLoss", super::infogain::create),
        ("InnerProduct", super::inner_product::create),
        ("Input", super::input::create_input),
        ("Log", super::activation::create_log),
        ("LRN", super::lrn::create),
        ("LSTM", super::recurrent::create_lstm),
        ("LSTMUnit", super::lstm_unit::create),
        ("MemoryData", super::input::create_memory_data),
        ("MultinomialLogisticLoss", super::label_losses::create_multinomial),
        ("MVN", super::mvn::create),
        ("Parameter", super::parameter::create),
        ("Pooling", super::pooling::create),
        ("Power", super::activation::create_power),
        ("PReLU", super::prelu::create),
        ("Reduction", super::reduction::create),
        ("ReLU", super::activation::create_relu),
        ("RNN", super::recurrent::create_rnn),
        ("Reshape", super::reshape::create_reshape),
        ("Scale", super::scale_bias::create_scale),
        ("Sigmoid", super::activation::create_sigmoid),
        ("SigmoidCrossEntropyLoss", super::sigmoid_xent::create),
        ("Silence", super::split::create_silence),
        ("Slice", super::concat::create_slice),
        ("Softmax", super::softmax::create),
        ("SoftmaxWithLoss", super::softmax_loss::create),
        ("Split", super::split::create_split),
        ("SPP", super::spp::create),
        ("Swish", super::swish::create),
        ("TanH", super::activation::create_tanh),
        ("Threshold", super::activation::create_threshold),
        ("Tile", super::tile::create),
        ("Upsample", super::upsample::create),
        ("WindowData", super::window_data::create),
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
        None if kind == "Python" => {
            let p = lp.python_param.clone().unwrap_or_default();
            Err(Error::Config(format!(
                "a Python layer (module `{}`, class `{}`) runs Python code from the model's authors, which crema \
                 cannot run; replace it with built-in layers, or run its part of the model in Python",
                p.module(),
                p.layer()
            )))
        }
        None => Err(Error::Config(format!(
            "unknown layer type `{kind}`; crema knows: {}",
            layer_types().join(", ")
        ))),
    }
}
