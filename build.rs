//! Compiles `proto/caffe.proto` into Rust types with prost-build, through protox
//! (a pure-Rust protobuf compiler, so no `protoc` binary is needed), and writes the
//! encoded `FileDescriptorSet` that the prototxt parser walks by field name.

use prost::Message;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=proto/caffe.proto");
    let fds = match protox::compile(["caffe.proto"], ["proto"]) {
        Ok(fds) => fds,
        Err(e) => panic!("proto/caffe.proto does not compile: {e:?}"),
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("caffe_descriptor.bin"), fds.encode_to_vec())
        .expect("write descriptor set");
    prost_build::Config::new()
        .enable_type_names()
        .compile_fds(fds)
        .expect("prost-build generates the caffe types");
}
