//! Running trained segmentation nets: preparing images as the training data layers did
//! ([`preprocess`]), segmenting them ([`segment`]), and turning a training net's weights into
//! inference weights by folding BN statistics ([`bn_stats`]); and storing a trained net's
//! features as Caffe's extract_features does ([`extract`]).

pub mod bn_stats;
pub mod extract;
pub mod preprocess;
pub mod segment;

pub use preprocess::{gray_image, load_image, transformer, Image8, Mean, ResizeFilter, Transformer};
pub use segment::{Options, Segmentation, Segmenter, DEFAULT_SCALE};
