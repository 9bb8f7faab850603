//! DICOM radiographs: the decoders their compressed pixel data needs.

pub mod jpeg_lossless;
