//! Bad nets and bad data give clear errors naming what is wrong, never a panic.

use crema::backend::cpu::Cpu;
use crema::net::Net;
use crema::proto::NetParameter;

fn build(text: &str) -> Result<Net<Cpu>, String> {
    let param: NetParameter = crema::prototxt::parse(text, "net.prototxt").map_err(|e| e.to_string())?;
    Net::new(Cpu::new(), &param, 0).map_err(|e| e.to_string())
}

fn error(text: &str) -> String {
    match build(text) {
        Ok(_) => panic!("built a net that should have been refused:\n{text}"),
        Err(e) => e,
    }
}

const INPUT: &str = r#"layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }"#;

#[test]
fn unknown_layer_type_lists_the_known_ones() {
    let e = error(&format!(r#"{INPUT} layer {{ name: "w" type: "Convolutoin" bottom: "x" top: "y" }}"#));
    assert!(e.contains("layer `w`") && e.contains("unknown layer type `Convolutoin`") && e.contains("Convolution,"), "{e}");
}

#[test]
fn wrong_numbers_of_bottoms_and_tops() {
    let e = error(&format!(r#"{INPUT} layer {{ name: "r" type: "ReLU" bottom: "x" bottom: "x" top: "y" }}"#));
    assert!(e.contains("layer `r`") && e.contains("exactly 1 bottom"), "{e}");
    let e = error(&format!(r#"{INPUT} layer {{ name: "s" type: "Softmax" bottom: "x" }}"#));
    assert!(e.contains("layer `s`") && e.contains("top"), "{e}");
}

#[test]
fn a_bottom_no_layer_produces() {
    let e = error(&format!(r#"{INPUT} layer {{ name: "r" type: "ReLU" bottom: "z" top: "y" }}"#));
    assert!(e.contains("layer `r`") && e.contains("`z`") && e.contains("not produced"), "{e}");
}

#[test]
fn shapes_that_do_not_fit_between_layers() {
    let e = error(&format!(
        r#"{INPUT}
        layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 2 dim: 4 dim: 8 dim: 8 }} }} }}
        layer {{ name: "e" type: "Eltwise" bottom: "x" bottom: "y" top: "z" }}"#
    ));
    assert!(e.contains("layer `e`"), "{e}");
    let e = error(&format!(
        r#"{INPUT} layer {{ name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param {{ num_output: 2 kernel_size: 11 }} }}"#
    ));
    assert!(e.contains("layer `c`") && e.contains("too small for kernel 11"), "{e}");
    let e = error(&format!(
        r#"{INPUT} layer {{ name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param {{ num_output: 2 kernel_size: 3 group: 2 }} }}"#
    ));
    assert!(e.contains("layer `c`") && e.contains("not divisible by group"), "{e}");
}

#[test]
fn in_place_where_a_layer_cannot() {
    let e = error(&format!(r#"{INPUT} layer {{ name: "p" type: "Pooling" bottom: "x" top: "x" pooling_param {{ kernel_size: 2 }} }}"#));
    assert!(e.contains("layer `p`") && e.contains("cannot run in place"), "{e}");
}

#[test]
fn weights_of_the_wrong_shape_name_layer_blob_and_shapes() {
    let case = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/layers/conv_basic");
    let mut net = build(
        r#"layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 7 dim: 9 } } }
           layer { name: "conv" type: "Convolution" bottom: "data" top: "out" convolution_param { num_output: 5 kernel_size: 3 } }"#,
    )
    .unwrap();
    let e = net.load_weights_files(&[case.join("weights.caffemodel")]).unwrap_err().to_string();
    assert!(e.contains("weights.caffemodel") && e.contains("blob 0 of layer `conv`") && e.contains("4 3 3 3") && e.contains("5 3 3 3"), "{e}");
}

#[test]
fn a_top_produced_twice() {
    let e = error(&format!(r#"{INPUT} layer {{ name: "a" type: "ReLU" bottom: "x" top: "y" }} layer {{ name: "b" type: "Sigmoid" bottom: "y" top: "y2" }} layer {{ name: "c" type: "TanH" bottom: "y2" top: "y" }}"#));
    assert!(e.contains("layer `c`") && e.contains("more than one layer"), "{e}");
}

#[test]
fn a_python_layer_is_refused_naming_its_module() {
    let e = error(&format!(
        r#"{INPUT} layer {{ name: "py" type: "Python" bottom: "x" top: "y" python_param {{ module: "rpn.proposal_layer" layer: "ProposalLayer" }} }}"#
    ));
    assert!(e.contains("layer `py`") && e.contains("rpn.proposal_layer") && e.contains("ProposalLayer") && e.contains("cannot run"), "{e}");
}

/// MemoryData (fed by pycaffe's set_input_arrays) is an input of the net with Caffe's shapes,
/// so deploy nets written with it build and take their values from outside.
#[test]
fn memory_data_is_an_input_shaped_as_caffe_shapes_it() {
    let text = r#"layer { name: "m" type: "MemoryData" top: "data" top: "label" memory_data_param { batch_size: 4 channels: 3 height: 5 width: 6 } }
                  layer { name: "ip" type: "InnerProduct" bottom: "data" top: "y" inner_product_param { num_output: 2 } }
                  layer { name: "s" type: "Silence" bottom: "label" }"#;
    let mut net = build(text).unwrap();
    assert_eq!(net.blob("data").unwrap().shape(), [4, 3, 5, 6]);
    assert_eq!(net.blob("label").unwrap().shape(), [4]);
    let names: Vec<&str> = net.inputs().iter().map(|&i| net.blob_name(i)).collect();
    assert_eq!(names, ["data", "label"]);
    let be = net.backend().clone();
    net.blob_mut("data").unwrap().set_data(&be, &vec![1.0; 360]).unwrap();
    net.forward().unwrap();
    assert_eq!(net.blob("data").unwrap().data_to_vec(&be).unwrap(), vec![1.0; 360], "forward leaves the values given");
    let e = error(r#"layer { name: "m" type: "MemoryData" top: "data" top: "label" memory_data_param { batch_size: 4 channels: 3 height: 5 } }"#);
    assert!(e.contains("layer `m`") && e.contains("must be given and positive") && e.contains("4 3 5 0"), "{e}");
    let e = error(r#"layer { name: "m" type: "MemoryData" top: "data" memory_data_param { batch_size: 1 channels: 1 height: 1 width: 1 } }"#);
    assert!(e.contains("layer `m`") && e.contains("exactly 2 top"), "{e}");
}
