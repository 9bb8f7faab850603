//! crema: a Caffe-compatible network interpreter.
//!
//! Reads Caffe's files as they are (net and solver definitions in protobuf text format,
//! weights in `.caffemodel`, solver snapshots in `.solverstate`), runs the nets forward and
//! backward on the CPU and on NVIDIA GPUs, and trains them with Caffe's solvers.

pub mod backend;
pub mod error;
pub mod io;
pub mod proto;
pub mod prototxt;

pub use error::{Error, Result};
pub mod blob;
pub mod data;
pub mod eval;
pub mod filler;
pub mod inference;
pub mod layers;
pub mod net;
pub mod rng;
pub mod solver;
pub mod upgrade;
