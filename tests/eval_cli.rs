//! `crema segment` and `crema evaluate` end to end, the real binary on a tiny trained net whose
//! answer is known: a 1x1 convolution with fixed weights and a Softmax, which makes a pixel
//! class 1 ("lung") exactly when its scaled value is above 0.5 — with the default scale of
//! 1/256, when the pixel is above 128.

use crema::backend::cpu::Cpu;
use crema::net::Net;
use image::{GrayImage, Luma, Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::process::Command;

const CREMA: &str = env!("CARGO_BIN_EXE_crema");

/// The tiny segmentation net; `extra` goes into the Input layer (e.g. a transform_param).
fn net_text(extra: &str) -> String {
    format!(
        r#"name: "tiny_seg"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 1 dim: 8 dim: 8 }} }} {extra} }}
layer {{ name: "score" type: "Convolution" bottom: "data" top: "score" convolution_param {{ num_output: 2 kernel_size: 1 }} }}
layer {{ name: "prob" type: "Softmax" bottom: "score" top: "prob" }}
"#
    )
}

/// Class scores `-10 x + 5` and `10 x - 5`: class 1 wins exactly when x > 0.5.
const WEIGHTS: [f32; 2] = [-10.0, 10.0];
const BIAS: [f32; 2] = [5.0, -5.0];

/// Writes model.prototxt and weights.caffemodel into `dir`.
fn write_model(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    write_net(dir, &net_text(extra))
}

/// Writes `text` as model.prototxt and its convolution's weights as weights.caffemodel.
fn write_net(dir: &Path, text: &str) -> (PathBuf, PathBuf) {
    let model = dir.join("model.prototxt");
    std::fs::write(&model, text).unwrap();
    let param = crema::upgrade::read_net(&model).unwrap();
    let mut net = Net::new(Cpu::new(), &param, 0).unwrap();
    let be = net.backend().clone();
    net.params_mut()[0].set_data(&be, &WEIGHTS).unwrap();
    net.params_mut()[1].set_data(&be, &BIAS).unwrap();
    let weights = dir.join("weights.caffemodel");
    net.save_caffemodel(&weights, false).unwrap();
    (model, weights)
}

fn crema(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(CREMA).args(args).output().expect("run crema");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// An 8x8 image: 200 inside the block `x0..x1, y0..y1`, 50 elsewhere.
fn block(w: u32, h: u32, x: std::ops::Range<u32>, y: std::ops::Range<u32>) -> GrayImage {
    GrayImage::from_fn(w, h, |px, py| Luma([if x.contains(&px) && y.contains(&py) { 200 } else { 50 }]))
}

/// A 0/255 mask with the block on.
fn mask(w: u32, h: u32, x: std::ops::Range<u32>, y: std::ops::Range<u32>) -> GrayImage {
    GrayImage::from_fn(w, h, |px, py| Luma([if x.contains(&px) && y.contains(&py) { 255 } else { 0 }]))
}

/// Three cases with known scores: `a` exact (Dice 1), `b` the truth shifted one column (16
/// pixels each, 12 shared: Dice 0.75, IoU 0.6, accuracy 56/64), `c` both empty (Dice 1).
fn write_cases(dir: &Path) -> PathBuf {
    for sub in ["images", "masks"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    block(8, 8, 2..6, 2..6).save(dir.join("images/a.png")).unwrap();
    mask(8, 8, 2..6, 2..6).save(dir.join("masks/a.png")).unwrap();
    block(8, 8, 2..6, 2..6).save(dir.join("images/b.png")).unwrap();
    mask(8, 8, 3..7, 2..6).save(dir.join("masks/b.png")).unwrap();
    block(8, 8, 0..0, 0..0).save(dir.join("images/c.png")).unwrap();
    mask(8, 8, 0..0, 0..0).save(dir.join("masks/c.png")).unwrap();
    let list = dir.join("test.txt");
    std::fs::write(&list, "images/a.png masks/a.png\nimages/b.png masks/b.png\nimages/c.png masks/c.png\n").unwrap();
    list
}

const EXPECTED_CSV: &str = "name,dice,iou,accuracy\n\
a,1.000000,1.000000,1.000000\n\
b,0.750000,0.600000,0.875000\n\
c,1.000000,1.000000,1.000000\n";

fn check_summary(out: &Path) {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["images"], 3);
    let close = |a: &serde_json::Value, b: f64| assert!((a.as_f64().unwrap() - b).abs() < 1e-12, "{a} vs {b}");
    close(&v["dice"]["mean"], 2.75 / 3.0);
    let m = 2.75 / 3.0;
    close(&v["dice"]["std"], (((1.0 - m) * (1.0 - m) * 2.0 + (0.75 - m) * (0.75 - m)) / 2.0f64).sqrt());
    close(&v["dice"]["min"], 0.75);
    close(&v["dice"]["max"], 1.0);
    close(&v["iou"]["mean"], 2.6 / 3.0);
    close(&v["accuracy"]["min"], 0.875);
    // Best row: a and c (2 tiles); worst row: b. Tiles of 256 with two label lines at scale 2.
    let montage = image::open(out.join("best_worst.png")).unwrap().to_rgb8();
    assert_eq!((montage.width(), montage.height()), (6 + 2 * 262, 6 + 2 * (38 + 256 + 6)));
}

#[test]
fn evaluate_a_list_with_a_net_gives_the_known_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = write_model(dir.path(), "");
    let list = write_cases(dir.path());
    let out = dir.path().join("eval");
    let (code, stdout, err) = crema(&["evaluate", "--model", &s(&model), "--weights", &s(&weights), "--source", &s(&list), "--out", &s(&out)]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("scale 0.00390625 (default)"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("metrics.csv")).unwrap(), EXPECTED_CSV);
    check_summary(&out);
    assert!(stdout.contains("3 images"), "{stdout}");
    assert!(stdout.contains("dice          0.9167    0.1443    0.7500    1.0000"), "{stdout}");
}

#[test]
fn segment_writes_masks_probabilities_and_overlays_then_evaluate_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = write_model(dir.path(), "");
    write_cases(dir.path());
    let out = dir.path().join("seg");
    let images = dir.path().join("images");
    let (code, _, err) = crema(&[
        "segment", "--model", &s(&model), "--weights", &s(&weights), &s(&images), "--out", &s(&out), "--truth", &s(&dir.path().join("masks")),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("b 8x8 dice=0.7500"), "{err}");

    // The mask is the bright block, 0/255.
    let m = image::open(out.join("a_mask.png")).unwrap().to_luma8();
    assert_eq!(m, mask(8, 8, 2..6, 2..6));
    // The probability map: round(255 * softmax) of the known scores.
    let p = image::open(out.join("a_prob.png")).unwrap().to_luma8();
    let prob = |v: f32| {
        let x = v * 0.00390625;
        let (s0, s1) = (WEIGHTS[0] * x + BIAS[0], WEIGHTS[1] * x + BIAS[1]);
        (255.0 * (s1 - s1.max(s0)).exp() / ((s0 - s1.max(s0)).exp() + (s1 - s1.max(s0)).exp())).round() as u8
    };
    assert_eq!(p.get_pixel(3, 3).0[0], prob(200.0));
    assert_eq!(p.get_pixel(0, 0).0[0], prob(50.0));
    assert!(prob(200.0) > 250 && prob(50.0) < 3);
    // Overlay of b: predicted pixels red-tinted, the truth's inner boundary white, the rest gray.
    let o = image::open(out.join("b_overlay.png")).unwrap().to_rgb8();
    let red = |g: f32| Rgb([(0.6f32 * g + 102.0).round() as u8, (0.6f32 * g).round() as u8, (0.6f32 * g).round() as u8]);
    assert_eq!(*o.get_pixel(2, 3), red(200.0)); // predicted, outside the truth
    assert_eq!(*o.get_pixel(4, 3), red(200.0)); // predicted, truth interior
    assert_eq!(*o.get_pixel(3, 2), Rgb([255, 255, 255])); // truth's top edge
    assert_eq!(*o.get_pixel(6, 4), Rgb([255, 255, 255])); // truth's right edge, not predicted
    assert_eq!(*o.get_pixel(0, 0), Rgb([50, 50, 50]));
    // Without a truth mask the overlay has no white.
    std::fs::remove_file(dir.path().join("masks/c.png")).unwrap();
    let (code, _, err) = crema(&["segment", "--model", &s(&model), "--weights", &s(&weights), &s(&images.join("a.png")), "--out", &s(&out)]);
    assert_eq!(code, 0, "{err}");
    let o: RgbImage = image::open(out.join("a_overlay.png")).unwrap().to_rgb8();
    assert!(o.pixels().all(|p| *p != Rgb([255, 255, 255])));
    mask(8, 8, 0..0, 0..0).save(dir.path().join("masks/c.png")).unwrap();

    // evaluate --pred/--truth on segment's folder gives the same scores as the net did.
    let ev = dir.path().join("eval");
    let (code, _, err) = crema(&[
        "evaluate", "--pred", &s(&out), "--truth", &s(&dir.path().join("masks")), "--images", &s(&images), "--out", &s(&ev),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(ev.join("metrics.csv")).unwrap(), EXPECTED_CSV);
    check_summary(&ev);
}

#[test]
fn images_are_resized_to_the_input_and_masks_back_to_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = write_model(dir.path(), "");
    // 16x16 with a bright block on even coordinates: shrunk to 8x8 (antialiased) the block's
    // cells stay above 128 and its neighbours below, so the mask comes back exactly.
    let img = dir.path().join("big.png");
    block(16, 16, 4..12, 6..10).save(&img).unwrap();
    let out = dir.path().join("seg");
    for filter in ["antialiased", "linear"] {
        let (code, _, err) = crema(&["segment", "--model", &s(&model), "--weights", &s(&weights), "--resize", filter, &s(&img), "--out", &s(&out)]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(image::open(out.join("big_mask.png")).unwrap().to_luma8(), mask(16, 16, 4..12, 6..10), "{filter}");
        assert_eq!(image::open(out.join("big_prob.png")).unwrap().to_luma8().dimensions(), (16, 16));
    }
}

#[test]
fn segment_reads_dicom_radiographs_as_their_png() {
    // A folder as a PACS export leaves it: an extensionless DICOM file (the fixture holding
    // exactly MCUCXR_0001_0.png's pixels, JPEG lossless) and a DICOMDIR index, beside the PNG.
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = write_model(dir.path(), "");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::copy(root.join("fixtures/cxr-lite/images/MCUCXR_0001_0.png"), images.join("png.png")).unwrap();
    std::fs::copy(root.join("fixtures/dicom/cxr_MCUCXR_0001_0.dcm"), images.join("IM000001")).unwrap();
    std::fs::write(images.join("DICOMDIR"), [0u8; 200]).unwrap();
    std::fs::write(images.join("notes"), "not an image").unwrap();
    let out = dir.path().join("seg");
    let (code, _, err) = crema(&["segment", "--model", &s(&model), "--weights", &s(&weights), &s(&images), "--out", &s(&out)]);
    assert_eq!(code, 0, "{err}");
    let mut written: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    written.sort();
    let want = ["IM000001_mask.png", "IM000001_overlay.png", "IM000001_prob.png", "png_mask.png", "png_overlay.png", "png_prob.png"];
    assert_eq!(written, want);
    for kind in ["mask", "prob", "overlay"] {
        let a = image::open(out.join(format!("IM000001_{kind}.png"))).unwrap();
        assert_eq!(a, image::open(out.join(format!("png_{kind}.png"))).unwrap(), "{kind}");
    }
    // A lung mask of some pixels, not a blank: the net thresholds the radiograph at 128.
    let m = image::open(out.join("IM000001_mask.png")).unwrap().to_luma8();
    assert!(m.pixels().any(|p| p.0[0] == 255) && m.pixels().any(|p| p.0[0] == 0));
}

#[test]
fn preprocessing_comes_from_flags_then_the_input_layer_then_the_default() {
    let dir = tempfile::tempdir().unwrap();
    // With scale 1/128 a pixel of 100 is lung (100/128 > 0.5); with 1/256 it is not.
    let (model, weights) = write_model(dir.path(), "transform_param { scale: 0.0078125 }");
    let img = dir.path().join("x.png");
    GrayImage::from_pixel(8, 8, Luma([100])).save(&img).unwrap();
    let out = dir.path().join("seg");
    let lung_pixels = || image::open(out.join("x_mask.png")).unwrap().to_luma8().pixels().filter(|p| p.0[0] == 255).count();
    let run = |extra: &[&str]| {
        let mut args = vec!["segment", "--model", model.to_str().unwrap(), "--weights", weights.to_str().unwrap(), img.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        let (code, _, err) = crema(&args);
        assert_eq!(code, 0, "{err}");
        err
    };
    let err = run(&[]);
    assert!(err.contains("scale 0.0078125 (the model's Input transform_param)"), "{err}");
    assert_eq!(lung_pixels(), 64);
    let err = run(&["--scale", "0.00390625"]);
    assert!(err.contains("(--scale)"), "{err}");
    assert_eq!(lung_pixels(), 0);
    // (100 - 40) / 128 < 0.5: the mean moves it back out.
    run(&["--mean", "40"]);
    assert_eq!(lung_pixels(), 0);
}

#[test]
fn bad_inputs_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = write_model(dir.path(), "");
    let list = write_cases(dir.path());
    let out = s(&dir.path().join("out"));
    let (m, w) = (s(&model), s(&weights));

    // A missing image.
    let missing = s(&dir.path().join("images/nope.png"));
    let (code, _, err) = crema(&["segment", "--model", &m, "--weights", &w, &missing, "--out", &out]);
    assert_eq!(code, 1);
    assert!(err.contains("nope.png") && err.contains("No such file"), "{err}");

    // An unreadable file.
    let junk = dir.path().join("images/junk.png");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\n broken").unwrap();
    let (code, _, err) = crema(&["segment", "--model", &m, "--weights", &w, &s(&junk), "--out", &out]);
    assert_eq!(code, 1);
    assert!(err.contains("junk.png"), "{err}");
    std::fs::remove_file(&junk).unwrap();

    // An empty list.
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    let (code, _, err) = crema(&["evaluate", "--model", &m, "--weights", &w, "--source", &s(&empty), "--out", &out]);
    assert_eq!(code, 1);
    assert!(err.contains("empty.txt") && err.contains("empty"), "{err}");

    // A list naming a missing mask.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "images/a.png masks/zzz.png\n").unwrap();
    let (code, _, err) = crema(&["evaluate", "--model", &m, "--weights", &w, "--source", &s(&bad), "--out", &out]);
    assert_eq!(code, 1);
    assert!(err.contains("zzz.png"), "{err}");

    // An image and its mask of different sizes.
    mask(9, 8, 2..6, 2..6).save(dir.path().join("masks/a.png")).unwrap();
    let (code, _, err) = crema(&["evaluate", "--model", &m, "--weights", &w, "--source", &s(&list), "--out", &out]);
    assert_eq!(code, 1);
    assert!(err.contains("masks/a.png is 9x8") && err.contains("images/a.png is 8x8"), "{err}");

    // A prediction and its truth of different sizes.
    let pred = dir.path().join("pred");
    std::fs::create_dir_all(&pred).unwrap();
    mask(8, 8, 2..6, 2..6).save(pred.join("a.png")).unwrap();
    let (code, _, err) = crema(&["evaluate", "--pred", &s(&pred), "--truth", &s(&dir.path().join("masks")), "--out", &out]);
    assert_eq!(code, 1);
    assert!(err.contains("pred/a.png is 8x8") && err.contains("masks/a.png is 9x8"), "{err}");

    // A prediction without a truth.
    mask(8, 8, 0..1, 0..1).save(pred.join("lonely.png")).unwrap();
    let (code, _, err) = crema(&["evaluate", "--pred", &s(&pred), "--truth", &s(&dir.path().join("images")), "--out", &out]);
    assert_eq!(code, 1);
    assert!(err.contains("lonely") && err.contains("no true mask"), "{err}");

    // Neither mode given; --gpu without CUDA.
    let (code, _, err) = crema(&["evaluate", "--out", &out]);
    assert_eq!(code, 1);
    assert!(err.contains("--source") && err.contains("--pred"), "{err}");
    let (code, _, err) = crema(&["segment", "--model", &m, "--weights", &w, "--gpu", "0", &missing, "--out", &out]);
    assert_eq!(code, 1);
    assert!(err.contains("CUDA"), "{err}");
}

/// A Bayesian net (Monte-Carlo dropout on the scores) is averaged over `--samples` forward
/// passes and gets an uncertainty map; a deterministic net refuses more than one sample.
#[test]
fn segment_averages_the_samples_of_a_bayesian_net() {
    let dir = tempfile::tempdir().unwrap();
    let text = net_text("").replace("dim: 1 dim: 1 dim: 8", "dim: 4 dim: 1 dim: 8").replace(
        r#"layer { name: "prob""#,
        r#"layer { name: "drop" type: "Dropout" bottom: "score" top: "score" dropout_param { sample_weights_test: true } }
layer { name: "prob""#,
    );
    let (model, weights) = write_net(dir.path(), &text);
    write_cases(dir.path());
    let out = dir.path().join("seg");
    let img = s(&dir.path().join("images/a.png"));
    let (code, _, err) = crema(&["segment", "--model", &s(&model), "--weights", &s(&weights), &img, "--out", &s(&out), "--samples", "16"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("mean of 16 forward passes"), "{err}");
    assert!(err.contains("uncertainty=") && err.contains("probability and uncertainty maps"), "{err}");
    let u = image::open(out.join("a_uncertainty.png")).unwrap().to_luma8();
    assert_eq!(u.dimensions(), (8, 8));
    // With half the scores dropped, some samples of some pixels tie at 0.5: not all certain.
    assert!(u.pixels().any(|p| p[0] > 0), "no uncertainty in 16 samples");
    // The model's batch of 4 is the default number of samples.
    let (code, _, err) = crema(&["segment", "--model", &s(&model), "--weights", &s(&weights), &img, "--out", &s(&out)]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("mean of 4 forward passes"), "{err}");

    let (model, weights) = write_model(dir.path(), "");
    let (code, _, err) = crema(&["segment", "--model", &s(&model), "--weights", &s(&weights), &img, "--out", &s(&out), "--samples", "3"]);
    assert_ne!(code, 0);
    assert!(err.contains("3 samples asked") && err.contains("sample_weights_test"), "{err}");
    assert!(err.contains("model.prototxt"), "the error names the model: {err}");
}
