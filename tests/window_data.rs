//! WindowData (R-CNN's data layer) on hand-made images and window files: the batch's
//! foreground/background make-up and labels, warped, mirrored, square and context-padded crops
//! checked pixel by pixel against values computed here, mean values and mean files at Caffe's
//! offsets, resuming, the errors for bad input, and training with `crema train`.

use crema::backend::cpu::Cpu;
use crema::layers::Pass;
use crema::net::{Net, NetOptions};
use crema::proto::{NetParameter, NetState, Phase};
use std::path::Path;

type Rgb = [u8; 3];

/// An RGB PNG of `w x h` from `f(x, y)`.
fn rgb_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> Rgb) {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y))).save(path).unwrap();
}

/// A gradient whose three channels differ everywhere.
fn gradient(x: u32, y: u32) -> Rgb {
    [(10 * x + y) as u8, (100 + x + 10 * y) as u8, (200 - 3 * x - 2 * y) as u8]
}

/// Channel `c` of pixel (x, y) as crema (and Caffe) hold it: B, G, R.
fn bgr(f: &impl Fn(u32, u32) -> Rgb, x: usize, y: usize, c: usize) -> f32 {
    f(x as u32, y as u32)[2 - c] as f32
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// One window-file block: `# index`, the image, `3 h w`, and its windows.
fn block(index: usize, image: &str, (w, h): (u32, u32), windows: &[&str]) -> String {
    let mut s = format!("# {index}\n{image}\n3\n{h}\n{w}\n{}\n", windows.len());
    for win in windows {
        s.push_str(win);
        s.push('\n');
    }
    s
}

/// A net of one WindowData layer reading `dir/w.txt` (images under `dir/`).
fn net_text(dir: &Path, params: &str, transform: &str) -> String {
    format!(
        "name: \"t\"\nlayer {{ name: \"data\" type: \"WindowData\" top: \"data\" top: \"label\"
           window_data_param {{ source: \"{0}/w.txt\" root_folder: \"{0}/\" {params} }}
           transform_param {{ {transform} }} }}\n",
        dir.display()
    )
}

fn build(text: &str, seed: u64) -> crema::Result<Net<Cpu>> {
    let mut param: NetParameter = crema::prototxt::parse(text, "test.prototxt")?;
    param.state = Some(NetState { phase: Some(Phase::Train as i32), ..Default::default() });
    Net::with_options(Cpu::new(), &param, &NetOptions { seed, ..Default::default() })
}

fn blob(net: &Net<Cpu>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let b = net.blob(name).unwrap();
    (b.shape().to_vec(), b.data_to_vec(net.backend()).unwrap())
}

/// The values of one forward pass: data and labels.
fn pass(net: &mut Net<Cpu>) -> (Vec<f32>, Vec<f32>) {
    net.forward().unwrap();
    (blob(net, "data").1, blob(net, "label").1)
}

/// `crop x crop` planes of 3 channels from `f(c, y, x)`.
fn planes(crop: usize, f: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let mut v = Vec::with_capacity(3 * crop * crop);
    for c in 0..3 {
        for y in 0..crop {
            for x in 0..crop {
                v.push(f(c, y, x));
            }
        }
    }
    v
}

#[test]
fn batches_hold_caffe_s_foreground_count_background_first() {
    let d = tempfile::tempdir().unwrap();
    // One image per kind, each a flat colour, so each item shows where it came from.
    rgb_png(&d.path().join("fg.png"), 8, 8, |_, _| [10, 20, 30]);
    rgb_png(&d.path().join("mid.png"), 8, 8, |_, _| [40, 50, 60]);
    rgb_png(&d.path().join("bg.png"), 8, 8, |_, _| [70, 80, 90]);
    let text = block(0, "fg.png", (8, 8), &["1 0.9 0 0 3 3", "2 0.6 1 1 4 4", "3 0.5 2 2 5 5"])
        + &block(1, "mid.png", (8, 8), &["4 0.4 0 0 3 3"])
        + &block(2, "bg.png", (8, 8), &["5 0.1 0 0 3 3", "0 0.0 2 2 5 5"]);
    write(&d.path().join("w.txt"), &text);
    // int(10 * 0.29) = 2 foreground windows (Caffe truncates), 8 background.
    let params = "batch_size: 10 fg_threshold: 0.5 bg_threshold: 0.3 fg_fraction: 0.29";
    let mut net = build(&net_text(d.path(), params, "crop_size: 4"), 1).unwrap();
    assert_eq!(net.blob("data").unwrap().shape(), [10, 3, 4, 4]);
    assert_eq!(net.blob("label").unwrap().shape(), [10]);
    let mut classes = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (data, label) = pass(&mut net);
        assert!(label[..8].iter().all(|&l| l == 0.0), "{label:?}");
        assert!(label[8..].iter().all(|&l| [1.0, 2.0, 3.0].contains(&l)), "{label:?}");
        classes.extend(label[8..].iter().map(|&l| l as i32));
        // Blue first: the background image's 90, the foreground's 30; the middle image (overlap
        // between the thresholds) never comes.
        for (i, item) in data.chunks(48).enumerate() {
            let want = if i < 8 { [90.0, 80.0, 70.0] } else { [30.0, 20.0, 10.0] };
            assert_eq!([item[0], item[16], item[32]], want, "item {i}");
        }
    }
    assert_eq!(classes.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    // The default fg_fraction 0.25 of 8: 2.
    let mut net = build(&net_text(d.path(), "batch_size: 8", "crop_size: 4"), 1).unwrap();
    let (_, label) = pass(&mut net);
    assert_eq!(label.iter().filter(|&&l| l > 0.0).count(), 2);
    assert!(label[..6].iter().all(|&l| l == 0.0));
}

#[test]
fn a_warp_of_the_crop_s_own_size_is_the_window_bgr_minus_mean_times_scale() {
    let d = tempfile::tempdir().unwrap();
    rgb_png(&d.path().join("g.png"), 8, 6, gradient);
    write(&d.path().join("w.txt"), &block(0, "g.png", (8, 6), &["1 0.9 2 1 5 4"]));
    let params = "batch_size: 1 fg_fraction: 1 scale: 0.5";
    let mean = [1.0, 2.0, 3.0];
    let plain = planes(4, |c, y, x| (bgr(&gradient, 2 + x, 1 + y, c) - mean[c]) * 0.5);
    let mirrored = planes(4, |c, y, x| (bgr(&gradient, 2 + 3 - x, 1 + y, c) - mean[c]) * 0.5);
    let transform = "crop_size: 4 mean_value: 1 mean_value: 2 mean_value: 3";
    let mut net = build(&net_text(d.path(), params, transform), 3).unwrap();
    for _ in 0..5 {
        assert_eq!(pass(&mut net), (plain.clone(), vec![1.0]));
    }
    // With mirror, each item is flipped with probability 1/2, in any phase.
    let mut net = build(&net_text(d.path(), params, &format!("{transform} mirror: true")), 3).unwrap();
    let (mut flipped, mut kept) = (0, 0);
    for _ in 0..40 {
        let (data, _) = pass(&mut net);
        if data == mirrored {
            flipped += 1;
        } else {
            assert_eq!(data, plain);
            kept += 1;
        }
    }
    assert!(flipped > 5 && kept > 5, "{flipped} flipped, {kept} kept");
}

/// OpenCV's INTER_LINEAR resize of one row or column: source index and weight of the next.
fn taps(src: usize, dst: usize) -> Vec<(usize, f64)> {
    (0..dst)
        .map(|d| {
            let f = (d as f64 + 0.5) * src as f64 / dst as f64 - 0.5;
            let s = f.floor();
            if s < 0.0 {
                (0, 0.0)
            } else if s as usize >= src - 1 {
                (src - 1, 0.0)
            } else {
                (s as usize, f - s)
            }
        })
        .collect()
}

#[test]
fn windows_are_warped_bilinearly_to_the_crop() {
    let d = tempfile::tempdir().unwrap();
    rgb_png(&d.path().join("g.png"), 8, 6, gradient);
    // A 3 x 2 window (x 2..=4, y 1..=2) warped to 5 x 5.
    write(&d.path().join("w.txt"), &block(0, "g.png", (8, 6), &["1 0.9 2 1 4 2"]));
    let mut net = build(&net_text(d.path(), "batch_size: 1 fg_fraction: 1", "crop_size: 5"), 0).unwrap();
    let (data, _) = pass(&mut net);
    let (xs, ys) = (taps(3, 5), taps(2, 5));
    let px = |c, x: usize, y: usize| bgr(&gradient, 2 + x.min(2), 1 + y.min(1), c) as f64;
    let want = planes(5, |c, y, x| {
        let ((x0, a), (y0, b)) = (xs[x], ys[y]);
        let top = px(c, x0, y0) * (1.0 - a) + px(c, x0 + 1, y0) * a;
        let bottom = px(c, x0, y0 + 1) * (1.0 - a) + px(c, x0 + 1, y0 + 1) * a;
        (top * (1.0 - b) + bottom * b).round() as f32
    });
    // OpenCV computes in 11-bit fixed point: a value may differ by 1.
    for (i, (g, w)) in data.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1.0, "value {i}: {g} vs {w}\n{data:?}\n{want:?}");
    }
    assert!(data.iter().zip(&want).filter(|(g, w)| g != w).count() <= 3);
}

#[test]
fn square_mode_takes_a_square_about_the_window_centre() {
    let d = tempfile::tempdir().unwrap();
    let f = |x: u32, y: u32| -> Rgb { [(10 * x + y) as u8, (200 - x - 5 * y) as u8, (x + 12 * y) as u8] };
    rgb_png(&d.path().join("g.png"), 16, 16, f);
    // 2 wide, 4 tall at (6, 4): centre (7, 6), half side 2 -> x 5..=9, y 4..=8: 5 x 5, the crop.
    write(&d.path().join("w.txt"), &block(0, "g.png", (16, 16), &["1 0.9 6 4 7 7"]));
    let mut net = build(&net_text(d.path(), "batch_size: 1 fg_fraction: 1 crop_mode: \"square\"", "crop_size: 5"), 0).unwrap();
    let (data, _) = pass(&mut net);
    assert_eq!(data, planes(5, |c, y, x| bgr(&f, 5 + x, 4 + y, c)));
    // The same window warped ("warp", the default) stretches its 2 columns over 5: no column
    // outside the window appears.
    let mut net = build(&net_text(d.path(), "batch_size: 1 fg_fraction: 1", "crop_size: 5"), 0).unwrap();
    let (data, _) = pass(&mut net);
    let blue_row0 = &data[..5];
    assert!(blue_row0.iter().all(|&v| (bgr(&f, 6, 4, 0)..=bgr(&f, 7, 4, 0)).contains(&v)), "{blue_row0:?}");
}

#[test]
fn context_padding_grows_the_window_and_pads_outside_the_image_with_zeros() {
    let d = tempfile::tempdir().unwrap();
    rgb_png(&d.path().join("u.png"), 8, 8, |_, _| [30, 60, 90]);
    // crop 8, context_pad 2: the window 0..=3 grows by 8/4 about its centre to -2..=6; the
    // part in the image (0..=6 of 9) warps to round(7 * 8/9) = 6 pixels after a pad of
    // round(2 * 8/9) = 2, on both axes.
    write(&d.path().join("w.txt"), &block(0, "u.png", (8, 8), &["1 0.9 0 0 3 3"]));
    let params = "batch_size: 1 fg_fraction: 1 context_pad: 2";
    let v = [90.0, 60.0, 30.0];
    let at = |x0: usize, x1: usize| planes(8, move |c, y, x| if y >= 2 && (x0..x1).contains(&x) { v[c] - 10.0 } else { 0.0 });
    let (plain, mirrored) = (at(2, 8), at(0, 6));
    let mut net = build(&net_text(d.path(), params, "crop_size: 8 mean_value: 10"), 5).unwrap();
    assert_eq!(pass(&mut net).0, plain, "the padding gets no mean: it stays 0");
    // Mirrored, the pad on the left is the right side's (0 here): the warp moves left.
    let mut net = build(&net_text(d.path(), params, "crop_size: 8 mean_value: 10 mirror: true"), 5).unwrap();
    let seen: Vec<bool> = (0..30)
        .map(|_| {
            let data = pass(&mut net).0;
            assert!(data == plain || data == mirrored);
            data == mirrored
        })
        .collect();
    assert!(seen.contains(&true) && seen.contains(&false));
}

#[test]
fn mean_files_are_read_at_the_crop_position_shifted_by_caffe_s_mean_off() {
    let d = tempfile::tempdir().unwrap();
    rgb_png(&d.path().join("u.png"), 8, 8, |_, _| [30, 60, 90]);
    let m = |c: usize, y: usize, x: usize| (c * 50 + y * 6 + x) as f32;
    let mut values = Vec::new();
    for c in 0..3 {
        for y in 0..6 {
            for x in 0..6 {
                values.push(m(c, y, x));
            }
        }
    }
    let mean = d.path().join("mean.binaryproto");
    crema::io::write_binaryproto(&mean, &crema::io::BlobData::new(vec![1, 3, 6, 6], values)).unwrap();
    let v = [90.0, 60.0, 30.0];
    let transform = format!("crop_size: 4 mean_file: \"{}\"", mean.display());
    // No context: the whole crop, each value minus the mean at (y + 1, x + 1): (6 - 4) / 2 = 1.
    write(&d.path().join("w.txt"), &block(0, "u.png", (8, 8), &["1 0.9 2 2 5 5"]));
    let mut net = build(&net_text(d.path(), "batch_size: 1 fg_fraction: 1", &transform), 0).unwrap();
    assert_eq!(pass(&mut net).0, planes(4, |c, y, x| v[c] - m(c, y + 1, x + 1)));
    // With context (crop 4, pad 1, window 0..=1: -1..=3, 4 of 5 inside -> 3 pixels after a pad
    // of 1): the warped part at rows and columns 1..4 takes the mean there, plus the offset.
    write(&d.path().join("w.txt"), &block(0, "u.png", (8, 8), &["1 0.9 0 0 1 1"]));
    let mut net = build(&net_text(d.path(), "batch_size: 1 fg_fraction: 1 context_pad: 1", &transform), 0).unwrap();
    let inside = |y: usize, x: usize| (1..4).contains(&y) && (1..4).contains(&x);
    assert_eq!(pass(&mut net).0, planes(4, |c, y, x| if inside(y, x) { v[c] - m(c, y + 1, x + 1) } else { 0.0 }));
    // A mean too small for the crop is refused.
    let e = build(&net_text(d.path(), "batch_size: 1 fg_fraction: 1", &transform.replace("crop_size: 4", "crop_size: 7")), 0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("mean.binaryproto is 3x6x6") && e.contains("W >= 7"), "{e}");
}

#[test]
fn batches_are_a_function_of_seed_and_pass() {
    let d = tempfile::tempdir().unwrap();
    rgb_png(&d.path().join("g.png"), 16, 12, gradient);
    let windows = ["1 0.9 0 0 5 5", "2 0.8 3 2 12 9", "1 0.7 8 4 15 11", "0 0.1 1 1 4 8", "0 0.2 6 0 10 3"];
    write(&d.path().join("w.txt"), &block(0, "g.png", (16, 12), &windows));
    let text = net_text(d.path(), "batch_size: 4 fg_fraction: 0.5 context_pad: 1", "crop_size: 6 mirror: true");
    let full: Vec<_> = {
        let mut net = build(&text, 7).unwrap();
        (0..6).map(|_| pass(&mut net)).collect()
    };
    let mut resumed = build(&text, 7).unwrap();
    resumed.set_pass(Pass { iter: 2, sub: 0, per_iter: 2 });
    assert_eq!((0..2).map(|_| pass(&mut resumed)).collect::<Vec<_>>(), full[4..6]);
    resumed.set_pass(Pass { iter: 1, sub: 0, per_iter: 1 });
    assert_eq!(pass(&mut resumed), full[1]);
    let mut other = build(&text, 8).unwrap();
    assert_ne!((0..6).map(|_| pass(&mut other)).collect::<Vec<_>>(), full);
}

fn build_err(text: &str) -> String {
    build(text, 0).err().map(|e| e.to_string()).unwrap_or_else(|| "built".into())
}

#[test]
fn bad_window_files_and_images_are_named() {
    let d = tempfile::tempdir().unwrap();
    rgb_png(&d.path().join("a.png"), 8, 6, gradient);
    // One foreground window a batch (int(2 * 0.5)), one background.
    let text = net_text(d.path(), "batch_size: 2 fg_fraction: 0.5", "crop_size: 4");
    let e = build_err(&text);
    assert!(e.contains("layer `data` (type WindowData)") && e.contains("w.txt") && e.contains("window file not found"), "{e}");
    write(&d.path().join("w.txt"), "");
    assert!(build_err(&text).contains("w.txt: the window file is empty"));
    write(&d.path().join("w.txt"), &block(0, "a.png", (8, 6), &["1 0.9 0 0 3 3", "0 0.1 0 0 x 3"]));
    let e = build_err(&text);
    assert!(e.contains("w.txt: line 8: x2 of window 2 of 2 of image block 0 is `x`, not an integer"), "{e}");
    write(&d.path().join("w.txt"), &(block(0, "a.png", (8, 6), &["1 0.9 0 0 3 3"]) + &block(2, "a.png", (8, 6), &[])));
    let e = build_err(&text);
    assert!(e.contains("w.txt: line 8: image block 1 is numbered 2"), "{e}");
    // Every image must exist, named with its line.
    let ok = block(0, "a.png", (8, 6), &["1 0.9 0 0 3 3", "0 0.1 0 0 3 3"]);
    write(&d.path().join("w.txt"), &(ok.clone() + &block(1, "gone.png", (8, 6), &["0 0.1 0 0 3 3"])));
    let e = build_err(&text);
    assert!(e.contains("gone.png") && e.contains("image not found; listed at line 10 of window file"), "{e}");
    // A file that is not an image fails the pass that draws it.
    write(&d.path().join("junk.png"), "not a png");
    write(&d.path().join("w.txt"), &block(0, "junk.png", (8, 6), &["1 0.9 0 0 3 3", "0 0.1 0 0 3 3"]));
    let e = build(&text, 0).unwrap().forward().unwrap_err().to_string();
    assert!(e.contains("junk.png: not an image crema can read"), "{e}");
    // A window outside its image: the forward pass that draws it names the line.
    write(&d.path().join("w.txt"), &block(0, "a.png", (8, 6), &["1 0.9 4 2 8 5", "0 0.1 0 0 3 3"]));
    let e = build(&text, 0).unwrap().forward().unwrap_err().to_string();
    assert!(e.contains("w.txt: line 7: the window x1 4 y1 2 x2 8 y2 5 of"), "{e}");
    assert!(e.contains("a.png (8x6): it is not inside the image"), "{e}");
    // A set the batch draws from must not be empty (Caffe would divide by zero).
    write(&d.path().join("w.txt"), &block(0, "a.png", (8, 6), &["0 0.1 0 0 3 3"]));
    let e = build_err(&text);
    assert!(e.contains("no foreground windows (overlap >= fg_threshold 0.5), but each batch draws 1"), "{e}");
    build(&net_text(d.path(), "batch_size: 2 fg_fraction: 0", "crop_size: 4"), 0).unwrap().forward().unwrap();
    // The last image's channels shape Caffe's top: anything but 3 is refused.
    write(&d.path().join("w.txt"), &ok.replace("\n3\n6\n", "\n1\n6\n"));
    let e = build_err(&text);
    assert!(e.contains("w.txt: line 3: the last image's channels is 1"), "{e}");
}

#[test]
fn bad_parameters_are_refused() {
    let d = tempfile::tempdir().unwrap();
    rgb_png(&d.path().join("a.png"), 8, 6, gradient);
    write(&d.path().join("w.txt"), &block(0, "a.png", (8, 6), &["1 0.9 0 0 3 3", "0 0.1 0 0 3 3"]));
    let cases = [
        ("batch_size: 2", "", "needs transform_param.crop_size > 0"),
        ("batch_size: 0", "crop_size: 4", "batch_size must be positive"),
        ("batch_size: 2 crop_size: 4", "", "window_data_param.crop_size is 4 but transform_param.crop_size is 0"),
        ("batch_size: 2 mirror: true", "crop_size: 4", "window_data_param.mirror is true but transform_param.mirror is false"),
        ("batch_size: 2", "crop_size: 4 scale: 0.5", "transform_param.scale is 0.5 but window_data_param.scale is 1"),
        ("batch_size: 2 fg_fraction: 1.5", "crop_size: 4", "fg_fraction is 1.5; it must be in 0..=1"),
        ("batch_size: 2 context_pad: 2", "crop_size: 4", "context_pad 2 leaves no room"),
        ("batch_size: 2 crop_mode: \"fit\"", "crop_size: 4", "crop_mode is `fit`"),
        ("batch_size: 2", "crop_size: 4 mean_value: 1 mean_value: 2", "not 2"),
        ("batch_size: 2", "crop_size: 4 force_gray: true", "remove transform_param.force_gray"),
    ];
    for (params, transform, want) in cases {
        let e = build_err(&net_text(d.path(), params, transform));
        assert!(e.contains(want), "{params} / {transform}: {e}");
    }
    // Redundant old fields that agree with transform_param, and cache_images, are fine.
    let params = "batch_size: 2 crop_size: 4 mirror: true scale: 2 cache_images: true";
    build(&net_text(d.path(), params, "crop_size: 4 mirror: true scale: 2"), 0).unwrap().forward().unwrap();
}

/// A loss reading the labels tells the layer its class count: a class it cannot take is an
/// error naming the window file line.
#[test]
fn classes_the_loss_cannot_take_name_the_line() {
    let d = tempfile::tempdir().unwrap();
    rgb_png(&d.path().join("a.png"), 8, 6, gradient);
    write(&d.path().join("w.txt"), &block(0, "a.png", (8, 6), &["1 0.9 0 0 3 3", "3 0.7 1 1 4 4", "0 0.1 0 0 3 3"]));
    let text = net_text(d.path(), "batch_size: 2 fg_fraction: 0.5", "crop_size: 4")
        + "layer { name: \"ip\" type: \"InnerProduct\" bottom: \"data\" top: \"score\" inner_product_param { num_output: 3 } }\n\
           layer { name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"score\" bottom: \"label\" top: \"loss\" }\n";
    let e = match build(&text, 0) {
        Ok(mut net) => net.forward().unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("w.txt: line 8: class 3 is out of range: the loss takes 0..=2 (3 classes)"), "{e}");
    build(&text.replace("num_output: 3", "num_output: 4"), 0).unwrap().forward().unwrap();
}

/// `crema train` on a WindowData net with a TEST phase too, and the solver resumed from a
/// snapshot ends with the weights of the unbroken run.
#[test]
fn crema_trains_on_window_data_and_resumes_exactly() {
    use crema::solver::Solver;
    let d = tempfile::tempdir().unwrap();
    for (i, colour) in [[200u8, 30, 30], [30, 200, 30], [30, 30, 200]].into_iter().enumerate() {
        rgb_png(&d.path().join(format!("i{i}.png")), 24, 20, move |x, y| {
            if (6..18).contains(&x) && (5..15).contains(&y) { colour } else { [(x * 5) as u8, (y * 7) as u8, 90] }
        });
    }
    let mut text = String::new();
    for i in 0..3 {
        let (fg1, fg2) = (format!("{} 0.9 6 5 17 14", i + 1), format!("{} 0.6 7 6 16 13", i + 1));
        text += &block(i, &format!("i{i}.png"), (24, 20), &[&fg1, &fg2, "0 0.1 0 0 5 4", "0 0.2 18 15 23 19"]);
    }
    write(&d.path().join("w.txt"), &text);
    let data = |phase: &str, mirror: bool| {
        format!(
            "layer {{ name: \"data\" type: \"WindowData\" top: \"data\" top: \"label\" include {{ phase: {phase} }}
               window_data_param {{ source: \"w.txt\" batch_size: 8 fg_fraction: 0.5 context_pad: 2 }}
               transform_param {{ crop_size: 12 mirror: {mirror} mean_value: 104 mean_value: 117 mean_value: 123 }} }}\n"
        )
    };
    let net = data("TRAIN", true)
        + &data("TEST", false)
        + "layer { name: \"ip\" type: \"InnerProduct\" bottom: \"data\" top: \"score\"
             inner_product_param { num_output: 4 weight_filler { type: \"gaussian\" std: 0.01 } } }
           layer { name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"score\" bottom: \"label\" top: \"loss\" }
           layer { name: \"acc\" type: \"Accuracy\" bottom: \"score\" bottom: \"label\" top: \"acc\" include { phase: TEST } }\n";
    write(&d.path().join("net.prototxt"), &net);
    let solver = "net: \"net.prototxt\" base_lr: 0.0001 momentum: 0.9 lr_policy: \"fixed\" max_iter: 6 display: 1 \
                  test_iter: 2 test_interval: 3 random_seed: 2 snapshot: 3 snapshot_prefix: \"snap\"";
    write(&d.path().join("solver.prototxt"), solver);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["train", "-solver", "solver.prototxt"])
        .current_dir(d.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let losses = log.lines().filter(|l| l.contains("Iteration") && l.contains("loss =")).count();
    assert!(losses >= 6, "{log}");
    assert!(log.contains("Test net output") && log.contains("acc ="), "{log}");
    assert!(log.contains("Optimization Done."), "{log}");

    // The same through the library, resumed at iteration 3.
    let weights =
        |s: &Solver<Cpu>| -> Vec<Vec<f32>> { s.net().params().iter().map(|p| p.data_to_vec(s.backend()).unwrap()).collect() };
    let path = d.path().join("solver.prototxt");
    write(&path, &solver.replace("snapshot_prefix: \"snap\"", &format!("snapshot_prefix: \"{}/lib\"", d.path().display())));
    let mut full = Solver::from_file(Cpu::new(), &path).unwrap();
    full.solve().unwrap();
    let mut resumed = Solver::from_file(Cpu::new(), &path).unwrap();
    resumed.restore(d.path().join("lib_iter_3.solverstate")).unwrap();
    resumed.solve().unwrap();
    assert_eq!(weights(&resumed), weights(&full));
}
