//! What data layers and the dataset tools share: reading image files as Caffe (OpenCV) gives
//! them ([`decode`]), resizing ([`resize`]), source lists and path resolution ([`source`]),
//! Caffe's `DataTransformer` ([`transform`]), the seeded sample order that makes runs resumable
//! ([`order`]), label checks ([`labels`]), background loading ([`prefetch`]), and the
//! preparation of segmentation datasets behind `crema dataset` ([`dataset`]), and Caffe's
//! `convert_imageset` into an LMDB database ([`imageset`]).
//!
//! The layers themselves (`DenseImageData`, `ImageData`) live in `crate::layers`.

pub mod dataset;
pub mod datum;
pub mod decode;
pub mod imageset;
pub mod labels;
pub mod order;
pub mod prefetch;
pub mod resize;
pub mod source;
pub mod transform;

pub use decode::{read_image, read_label_image, ColorMode, Image8};
