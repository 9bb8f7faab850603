//! The lung models of models/ through the segmenter: the inference nets take an image of any
//! size and give a mask and probability map of that size.

use crema::backend::cpu::Cpu;
use crema::inference::{transformer, Image8, Mean, Options, ResizeFilter, Segmenter, DEFAULT_SCALE};
use crema::net::Net;
use crema::proto::Phase;
use std::path::Path;

fn lite_net() -> Net<Cpu> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lung_segnet_lite/inference.prototxt");
    let mut param = crema::upgrade::read_net(&path).unwrap();
    param.state = Some(crema::proto::NetState { phase: Some(Phase::Test as i32), ..Default::default() });
    Net::new(Cpu::new(), &param, 1).unwrap()
}

fn options(size: Option<(usize, usize)>) -> Options {
    Options { input: None, output: None, class: 1, transform: transformer(DEFAULT_SCALE, Mean::None), filter: ResizeFilter::Antialiased, size }
}

#[test]
fn lung_segnet_lite_inference_segments_an_image_at_its_own_size() {
    let mut seg = Segmenter::new(lite_net(), options(None)).unwrap();
    assert_eq!(seg.input_shape(), [1, 128, 128]);
    let (w, h) = (300, 200);
    let img = Image8 { width: w, height: h, channels: 1, data: (0..w * h).map(|i| (i % 251) as u8).collect() };
    let out = seg.segment(&img).unwrap();
    assert_eq!((out.mask.width(), out.mask.height()), (w, h));
    assert_eq!(out.prob.len(), w * h);
    assert!(out.prob.iter().all(|p| (0.0..=1.0).contains(p)));
    // A colour image is refused by a gray net.
    let rgb = Image8 { width: 2, height: 2, channels: 3, data: vec![0; 12] };
    assert!(seg.segment(&rgb).unwrap_err().to_string().contains("3-channel image for an input of 1 channels"));
}

/// The segmenter's net runs forward only, sharing blob memory, and computes the bits a plain
/// net computes from the same input.
#[test]
fn segmenting_runs_forward_only_with_shared_memory_and_the_same_probabilities() {
    let mut seg = Segmenter::new(lite_net(), options(None)).unwrap();
    let img = Image8 { width: 128, height: 128, channels: 1, data: (0..128 * 128).map(|i| (i * 7 % 253) as u8).collect() };
    seg.segment(&img).unwrap();
    let net = seg.net();
    assert!(net.is_forward_only() && net.shares_data());
    assert!(net.blobs().iter().filter(|b| b.data_is_shared()).count() > 10);
    let be = net.backend().clone();
    let input = net.blob(net.blob_name(net.inputs()[0])).unwrap().data_to_vec(&be).unwrap();
    let got = net.blob("prob").unwrap().data_to_vec(&be).unwrap();
    let mut plain = lite_net();
    let name = plain.blob_name(plain.inputs()[0]).to_string();
    plain.blob_mut(&name).unwrap().set_data(&be, &input).unwrap();
    plain.forward().unwrap();
    let want = plain.blob("prob").unwrap().data_to_vec(&be).unwrap();
    assert!(got.iter().map(|v| v.to_bits()).eq(want.iter().map(|v| v.to_bits())), "probabilities differ");
}

#[test]
fn the_input_size_can_be_changed_to_what_the_net_was_trained_at() {
    let mut seg = Segmenter::new(lite_net(), options(Some((64, 96)))).unwrap();
    assert_eq!(seg.input_shape(), [1, 64, 96]);
    let img = Image8 { width: 50, height: 40, channels: 1, data: vec![90; 2000] };
    let out = seg.segment(&img).unwrap();
    assert_eq!((out.mask.width(), out.mask.height()), (50, 40));
    assert_eq!(seg.net().blob("prob").unwrap().shape(), [1, 2, 64, 96]);
    // Five 2x2 poolings need a multiple of 32; SegNet's upsampling cannot restore 48 -> 3 -> 6.
    let e = Segmenter::new(lite_net(), options(Some((48, 48)))).err().expect("48 is not a multiple of 32").to_string();
    assert!(e.contains("upsample") || e.contains("Upsample"), "{e}");
}

/// `crema segment` on an original 512x512 X-ray gives the net exactly the pixels `crema dataset`
/// wrote for training (fixtures/cxr-lite was made from ../shared/data/cxr-lungs at 128x128).
#[test]
fn segment_input_is_the_training_pixels_of_crema_dataset() {
    use crema::inference::{load_image, preprocess::resize};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let originals = root.join("../shared/data/cxr-lungs/montgomery/images");
    if !originals.is_dir() {
        eprintln!("skipped: {} not found", originals.display());
        return;
    }
    let list = std::fs::read_to_string(root.join("fixtures/cxr-lite/test.txt")).unwrap();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let image = line.split_whitespace().next().unwrap();
        let name = Path::new(image).file_name().unwrap();
        let small = load_image(&root.join("fixtures/cxr-lite").join(image), 1).unwrap();
        let big = load_image(&originals.join(name), 1).unwrap();
        assert_eq!((big.width, big.height), (512, 512));
        assert!(resize(&big, 128, 128, ResizeFilter::Antialiased) == small, "{image}");
    }
}
