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
    Options { input: None, output: None, class: 1, transform: transformer(DEFAULT_SCALE, Mean::None), filter: ResizeFilter::Antialiased, size, samples: None }
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

/// A small Bayesian net: a convolution, Monte-Carlo dropout at test time (`ratio`), softmax;
/// the input's batch in the model is `batch`.
fn bayes_net(batch: usize, ratio: f32) -> Net<Cpu> {
    let text = format!(
        "name: 'bayes'
         layer {{ name: 'data' type: 'Input' top: 'data' input_param {{ shape {{ dim: {batch} dim: 1 dim: 8 dim: 12 }} }} }}
         layer {{ name: 'conv' type: 'Convolution' bottom: 'data' top: 'conv' convolution_param {{ num_output: 3 kernel_size: 3 pad: 1
                  weight_filler {{ type: 'gaussian' std: 2 }} bias_filler {{ type: 'constant' value: 0.1 }} }} }}
         layer {{ name: 'drop' type: 'Dropout' bottom: 'conv' top: 'conv' dropout_param {{ dropout_ratio: {ratio} sample_weights_test: true }} }}
         layer {{ name: 'prob' type: 'Softmax' bottom: 'conv' top: 'prob' }}"
    );
    let mut param: crema::proto::NetParameter = crema::prototxt::parse(&text, "bayes.prototxt").unwrap();
    param.state = Some(crema::proto::NetState { phase: Some(Phase::Test as i32), ..Default::default() });
    Net::new(Cpu::new(), &param, 7).unwrap()
}

fn samples(n: Option<usize>) -> Options {
    Options { samples: n, ..options(None) }
}

/// Monte-Carlo dropout: the segmenter's mean and uncertainty are those of the samples a plain
/// forward of a batch of copies gives (SegNet's Bayesian test script), in batches of at most the
/// model's batch size, and argmax follows the mean.
#[test]
fn a_net_that_samples_at_test_is_averaged_over_its_samples() {
    let img = Image8 { width: 12, height: 8, channels: 1, data: (0..96).map(|i| (i * 37 % 256) as u8).collect() };
    // The model's batch of 5 is the default number of samples, run in one forward.
    let mut seg = Segmenter::new(bayes_net(5, 0.5), samples(None)).unwrap();
    assert_eq!(seg.samples(), 5);
    let out = seg.segment(&img).unwrap();

    let mut plain = bayes_net(5, 0.5);
    let be = plain.backend().clone();
    let input = seg.net().blob("data").unwrap().data_to_vec(&be).unwrap();
    assert_eq!(input.len(), 5 * 96);
    assert!(input.chunks(96).all(|c| c == &input[..96]), "the batch holds copies of the image");
    plain.blob_mut("data").unwrap().set_data(&be, &input).unwrap();
    plain.forward().unwrap();
    let p = plain.blob("prob").unwrap().data_to_vec(&be).unwrap();
    let plane = 96;
    let mut saw_spread = false;
    for i in 0..plane {
        let at = |s: usize, k: usize| p[(s * 3 + k) * plane + i] as f64;
        let mean = |k: usize| (0..5).map(|s| at(s, k)).sum::<f64>() / 5.0;
        let var = |k: usize| (0..5).map(|s| (at(s, k) - mean(k)).powi(2)).sum::<f64>() / 5.0;
        assert!((out.prob[i] as f64 - mean(1)).abs() < 1e-6, "pixel {i}: mean {} vs {}", out.prob[i], mean(1));
        let u = (0..3).map(var).sum::<f64>() / 3.0;
        let got = out.uncertainty.as_ref().unwrap()[i] as f64;
        assert!((got - u).abs() < 1e-6, "pixel {i}: uncertainty {got} vs {u}");
        saw_spread |= u > 1e-3;
        let best = (0..3).fold(0, |b, k| if mean(k) > mean(b) { k } else { b });
        assert_eq!(out.mask.get(i % 12, i / 12), best == 1, "pixel {i}");
    }
    assert!(saw_spread, "dropout made no sample differ");
    let u8img = out.uncertainty_image().unwrap();
    assert_eq!(u8img.dimensions(), (12, 8));

    // Five samples in batches of 2 (the model's batch): a different draw, the same kind of result.
    let mut seg = Segmenter::new(bayes_net(2, 0.5), samples(Some(5))).unwrap();
    assert_eq!(seg.samples(), 5);
    let out = seg.segment(&img).unwrap();
    assert!(out.uncertainty.unwrap().iter().any(|&u| u > 1e-3));
    assert_eq!(seg.net().blob("prob").unwrap().shape()[0], 1, "the last batch holds the fifth sample");
}

/// Samples that cannot differ are refused; one sample of a net that samples is its plain
/// output, with no uncertainty; samples that all agree have none.
#[test]
fn samples_are_checked_and_agreeing_samples_have_no_uncertainty() {
    let e = Segmenter::new(lite_net(), samples(Some(4))).err().expect("the lite net is deterministic").to_string();
    assert!(e.contains("4 samples asked") && e.contains("sample_weights_test"), "{e}");
    let e = Segmenter::new(bayes_net(2, 0.5), samples(Some(0))).err().expect("zero samples").to_string();
    assert!(e.contains("at least 1"), "{e}");
    let seg = Segmenter::new(lite_net(), samples(None)).unwrap();
    assert_eq!(seg.samples(), 1);

    let img = Image8 { width: 12, height: 8, channels: 1, data: (0..96).map(|i| (i * 11 % 256) as u8).collect() };
    let one = Segmenter::new(bayes_net(4, 0.5), samples(Some(1))).unwrap().segment(&img).unwrap();
    assert!(one.uncertainty.is_none() && one.uncertainty_image().is_none() && one.mean_uncertainty().is_none());
    // A ratio of 0 keeps every unit: the samples agree, to the rounding of their mean.
    let mut seg = Segmenter::new(bayes_net(4, 0.0), samples(None)).unwrap();
    let all = seg.segment(&img).unwrap();
    assert!(all.uncertainty.as_ref().unwrap().iter().all(|&u| u < 1e-12));
    let mut single = Segmenter::new(bayes_net(4, 0.0), samples(Some(1))).unwrap();
    let s = single.segment(&img).unwrap();
    assert!(all.prob.iter().zip(&s.prob).all(|(a, b)| (a - b).abs() < 1e-6));
    assert_eq!(all.mean_uncertainty().map(|u| u < 1e-12), Some(true));
}
