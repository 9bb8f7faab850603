//! DenseImageData and ImageData on hand-made images: order, shuffle, rand_skip, resizing,
//! crop/mirror on both tops, mean/scale, BGR, 16-bit, resuming, and the errors for bad input.

use crema::backend::cpu::Cpu;
use crema::blob::Blob;
use crema::layers::{create_layer, Ctx, Layer, LayerContext, Pass};
use crema::net::{Net, NetOptions};
use crema::proto::{LayerParameter, NetParameter, NetState, Phase};
use std::path::{Path, PathBuf};

/// A gray PNG of `w x h` from `f(x, y)`.
fn gray_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)])).save(path).unwrap();
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// `n` images `img{i}.png` (4x3, every pixel `10 * i`) with labels `lab{i}.png` (pixel `x % 2`),
/// listed in `list.txt`.
fn numbered(dir: &Path, n: usize) -> PathBuf {
    let mut list = String::new();
    for i in 0..n {
        gray_png(&dir.join(format!("img{i}.png")), 4, 3, |_, _| 10 * i as u8);
        gray_png(&dir.join(format!("lab{i}.png")), 4, 3, |x, _| (x % 2) as u8);
        list.push_str(&format!("img{i}.png lab{i}.png\n"));
    }
    let p = dir.join("list.txt");
    write(&p, &list);
    p
}

fn net_text(layer: &str) -> String {
    format!("name: \"t\"\nlayer {{ name: \"data\" top: \"data\" top: \"label\" {layer} }}\n")
}

fn build(text: &str, phase: Phase, seed: u64, model_dir: Option<&Path>) -> crema::Result<Net<Cpu>> {
    let mut param: NetParameter = crema::prototxt::parse(text, "test.prototxt")?;
    param.state = Some(NetState { phase: Some(phase as i32), ..Default::default() });
    Net::with_options(Cpu::new(), &param, &NetOptions { seed, model_dir: model_dir.map(Path::to_path_buf), share_diffs: false, share_data: false, fuse: true })
}

fn dense(dir: &Path, params: &str, extra: &str) -> String {
    net_text(&format!(
        "type: \"DenseImageData\" dense_image_data_param {{ source: \"{}\" root_folder: \"{}/\" {params} }} {extra}",
        dir.join("list.txt").display(),
        dir.display()
    ))
}

fn blob(net: &Net<Cpu>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let b = net.blob(name).unwrap();
    (b.shape().to_vec(), b.data_to_vec(net.backend()).unwrap())
}

/// The first data value of each sample of the current batch (the image number * 10).
fn firsts(net: &Net<Cpu>) -> Vec<usize> {
    let (shape, data) = blob(net, "data");
    let per = data.len() / shape[0];
    (0..shape[0]).map(|i| (data[i * per] / 10.0) as usize).collect()
}

fn passes(net: &mut Net<Cpu>, n: usize) -> Vec<Vec<usize>> {
    (0..n).map(|_| {
        net.forward().unwrap();
        firsts(net)
    }).collect()
}

#[test]
fn file_order_wraps_and_tops_have_caffe_shapes() {
    let d = tempfile::tempdir().unwrap();
    numbered(d.path(), 5);
    let mut net = build(&dense(d.path(), "batch_size: 2", ""), Phase::Train, 1, None).unwrap();
    assert_eq!(net.blob("data").unwrap().shape(), [2, 3, 3, 4], "colour by default: 3 channels");
    assert_eq!(net.blob("label").unwrap().shape(), [2, 1, 3, 4]);
    assert_eq!(passes(&mut net, 4), [vec![0, 1], vec![2, 3], vec![4, 0], vec![1, 2]]);
    let (_, label) = blob(&net, "label");
    assert_eq!(&label[..4], [0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn shuffle_is_seeded_and_reshuffled_each_epoch() {
    let d = tempfile::tempdir().unwrap();
    numbered(d.path(), 8);
    let text = dense(d.path(), "batch_size: 8 shuffle: true is_color: false", "");
    let a = passes(&mut build(&text, Phase::Train, 3, None).unwrap(), 3);
    let b = passes(&mut build(&text, Phase::Train, 3, None).unwrap(), 3);
    let c = passes(&mut build(&text, Phase::Train, 4, None).unwrap(), 3);
    assert_eq!(a, b, "same seed, same order");
    assert_ne!(a, c, "another seed, another order");
    assert_ne!(a[0], a[1], "reshuffled every epoch");
    for epoch in &a {
        let mut s = epoch.clone();
        s.sort_unstable();
        assert_eq!(s, (0..8).collect::<Vec<_>>(), "each epoch is a permutation");
    }
    assert_ne!(a[0], (0..8).collect::<Vec<_>>(), "the first epoch is shuffled too");
}

#[test]
fn rand_skip_starts_at_a_seeded_offset() {
    let d = tempfile::tempdir().unwrap();
    numbered(d.path(), 10);
    let text = dense(d.path(), "batch_size: 2 rand_skip: 8", "");
    let mut starts = std::collections::HashSet::new();
    for seed in 0..12 {
        let first = passes(&mut build(&text, Phase::Train, seed, None).unwrap(), 1).remove(0);
        assert!(first[0] < 8 && first[1] == (first[0] + 1) % 10, "{first:?}");
        assert_eq!(first, passes(&mut build(&text, Phase::Train, seed, None).unwrap(), 1)[0]);
        starts.insert(first[0]);
    }
    assert!(starts.len() > 2, "the skip depends on the seed: {starts:?}");
}

#[test]
fn images_resize_bilinear_and_labels_nearest() {
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("i.png"), 2, 1, |x, _| [0, 100][x as usize]);
    gray_png(&d.path().join("l.png"), 2, 1, |x, _| x as u8);
    write(&d.path().join("list.txt"), "i.png l.png\n");
    let mut net = build(&dense(d.path(), "batch_size: 1 new_height: 1 new_width: 4 is_color: false", ""), Phase::Train, 0, None).unwrap();
    net.forward().unwrap();
    assert_eq!(blob(&net, "data"), (vec![1, 1, 1, 4], vec![0.0, 25.0, 75.0, 100.0]));
    assert_eq!(blob(&net, "label"), (vec![1, 1, 1, 4], vec![0.0, 0.0, 1.0, 1.0]));
}

#[test]
fn crop_and_mirror_move_image_and_label_together() {
    let d = tempfile::tempdir().unwrap();
    // Pixel value v = 8y + x; label v % 3: any misalignment between the tops shows.
    gray_png(&d.path().join("i.png"), 8, 6, |x, y| (8 * y + x) as u8);
    gray_png(&d.path().join("l.png"), 8, 6, |x, y| ((8 * y + x) % 3) as u8);
    write(&d.path().join("list.txt"), "i.png l.png\n");
    for phase in [Phase::Train, Phase::Test] {
        let text = dense(d.path(), "batch_size: 1 is_color: false mirror: true crop_height: 3 crop_width: 4", "");
        let mut net = build(&text, phase, 5, None).unwrap();
        let (mut mirrored, mut offsets) = (0, std::collections::HashSet::new());
        for _ in 0..40 {
            net.forward().unwrap();
            let (shape, data) = blob(&net, "data");
            let (_, label) = blob(&net, "label");
            assert_eq!(shape, [1, 1, 3, 4]);
            for (v, l) in data.iter().zip(&label) {
                assert_eq!(*l, (*v as u32 % 3) as f32, "label moved with its pixel");
            }
            // Rows step by 8, columns by +1 (plain) or -1 (mirrored).
            let step = data[1] - data[0];
            assert!(step == 1.0 || step == -1.0);
            assert_eq!(data[4] - data[0], 8.0);
            mirrored += (step < 0.0) as usize;
            offsets.insert(data[0] as u32);
        }
        assert!(mirrored > 5 && mirrored < 35, "mirrors about half the time ({mirrored}/40) in {phase:?}");
        assert!(offsets.len() > 4, "random windows in {phase:?} too, as the SegNet fork does");
    }
}

#[test]
fn mean_and_scale_touch_the_image_only() {
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("i.png"), 2, 1, |x, _| [30, 50][x as usize]);
    gray_png(&d.path().join("l.png"), 2, 1, |x, _| x as u8);
    write(&d.path().join("list.txt"), "i.png l.png\n");
    let text = dense(d.path(), "batch_size: 1 is_color: false", "transform_param { scale: 0.5 mean_value: 10 }");
    let mut net = build(&text, Phase::Train, 0, None).unwrap();
    net.forward().unwrap();
    assert_eq!(blob(&net, "data").1, [10.0, 20.0]);
    assert_eq!(blob(&net, "label").1, [0.0, 1.0]);
    // transform_param's own crop and mirror are refused, as the fork aborts on them.
    let text = dense(d.path(), "batch_size: 1", "transform_param { mirror: true }");
    let e = build(&text, Phase::Train, 0, None).err().unwrap().to_string();
    assert!(e.contains("layer `data` (type DenseImageData)") && e.contains("no transform_param.mirror or crop_size"), "{e}");
}

#[test]
fn mean_files_subtract_per_pixel_and_resolve_from_the_model_dir() {
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("i.png"), 2, 1, |x, _| [30, 50][x as usize]);
    gray_png(&d.path().join("l.png"), 2, 1, |_, _| 0);
    write(&d.path().join("list.txt"), "i.png l.png\n");
    let mean = crema::io::BlobData::new(vec![1, 1, 1, 2], vec![5.0, 20.0]);
    crema::io::write_binaryproto(d.path().join("mean.binaryproto"), &mean).unwrap();
    for (params, extra) in [
        ("batch_size: 1 is_color: false mean_file: \"mean.binaryproto\"", ""),
        ("batch_size: 1 is_color: false", "transform_param { mean_file: \"mean.binaryproto\" scale: 2 }"),
    ] {
        let mut net = build(&dense(d.path(), params, extra), Phase::Train, 0, Some(d.path())).unwrap();
        net.forward().unwrap();
        let scale = if extra.is_empty() { 1.0 } else { 2.0 };
        assert_eq!(blob(&net, "data").1, [25.0 * scale, 30.0 * scale]);
    }
    let text = dense(d.path(), "batch_size: 1 mean_file: \"mean.binaryproto\"", "transform_param { mean_value: 1 }");
    let e = build(&text, Phase::Train, 0, Some(d.path())).err().unwrap().to_string();
    assert!(e.contains("both dense_image_data_param.mean_file and a transform_param mean"), "{e}");
    // A mean of another size than the image is an error naming both.
    let text = dense(d.path(), "batch_size: 1 is_color: false new_height: 2 new_width: 2 mean_file: \"mean.binaryproto\"", "");
    let e = build(&text, Phase::Train, 0, Some(d.path())).err().unwrap().to_string();
    assert!(e.contains("mean.binaryproto is 1x1x2") && e.contains("i.png is 1x2x2"), "{e}");
}

#[test]
fn colour_is_bgr_and_is_color_false_gives_one_channel() {
    let d = tempfile::tempdir().unwrap();
    image::RgbImage::from_pixel(1, 1, image::Rgb([10, 20, 30])).save(d.path().join("i.png")).unwrap();
    gray_png(&d.path().join("l.png"), 1, 1, |_, _| 0);
    write(&d.path().join("list.txt"), "i.png l.png\n");
    let mut net = build(&dense(d.path(), "batch_size: 1", ""), Phase::Train, 0, None).unwrap();
    net.forward().unwrap();
    assert_eq!(blob(&net, "data"), (vec![1, 3, 1, 1], vec![30.0, 20.0, 10.0]));
    let mut net = build(&dense(d.path(), "batch_size: 1 is_color: false", ""), Phase::Train, 0, None).unwrap();
    net.forward().unwrap();
    // libpng's gray: (9797*10 + 19234*20 + 3737*30) >> 15 = 18
    assert_eq!(blob(&net, "data"), (vec![1, 1, 1, 1], vec![18.0]));
}

#[test]
fn sixteen_bit_images_keep_their_high_byte() {
    let d = tempfile::tempdir().unwrap();
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![0x1234u16, 0xfffe]).unwrap();
    img.save(d.path().join("i.png")).unwrap();
    gray_png(&d.path().join("l.png"), 2, 1, |_, _| 1);
    write(&d.path().join("list.txt"), "i.png l.png\n");
    let mut net = build(&dense(d.path(), "batch_size: 1 is_color: false", ""), Phase::Train, 0, None).unwrap();
    net.forward().unwrap();
    assert_eq!(blob(&net, "data").1, [18.0, 255.0]);
    // A 16-bit label image is refused rather than zeroed.
    img.save(d.path().join("l16.png")).unwrap();
    write(&d.path().join("list.txt"), "i.png l16.png\n");
    let e = build(&dense(d.path(), "batch_size: 1", ""), Phase::Train, 0, None).err().unwrap().to_string();
    assert!(e.contains("l16.png: a 16-bit label image"), "{e}");
}

#[test]
fn jsrt_img_files_read_as_images() {
    let d = tempfile::tempdir().unwrap();
    // Left half 0 (bright after inversion), right half 4095 (dark).
    let mut bytes = Vec::with_capacity(2048 * 2048 * 2);
    for _y in 0..2048 {
        for x in 0..2048 {
            bytes.extend_from_slice(&(if x < 1024 { 0u16 } else { 4095 }).to_be_bytes());
        }
    }
    std::fs::write(d.path().join("JPCLN001.IMG"), &bytes).unwrap();
    gray_png(&d.path().join("l.png"), 2048, 2048, |x, _| (x >= 1024) as u8);
    write(&d.path().join("list.txt"), "JPCLN001.IMG l.png\n");
    let mut net = build(&dense(d.path(), "batch_size: 1 is_color: false new_height: 2 new_width: 4", ""), Phase::Train, 0, None).unwrap();
    net.forward().unwrap();
    assert_eq!(blob(&net, "data").1, [255.0, 255.0, 0.0, 0.0, 255.0, 255.0, 0.0, 0.0]);
    assert_eq!(blob(&net, "label").1, [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
}

#[test]
fn set_pass_resumes_with_the_same_batches() {
    let d = tempfile::tempdir().unwrap();
    numbered(d.path(), 5);
    let text = dense(d.path(), "batch_size: 3 shuffle: true rand_skip: 4 mirror: true crop_height: 2 crop_width: 3", "");
    let record = |net: &mut Net<Cpu>, n: usize| -> Vec<(Vec<f32>, Vec<f32>)> {
        (0..n).map(|_| {
            net.forward().unwrap();
            (blob(net, "data").1, blob(net, "label").1)
        }).collect()
    };
    let full = record(&mut build(&text, Phase::Train, 9, None).unwrap(), 7);
    // As the solver tells a net resumed at iteration 2 with iter_size 2: pass 2 * 2 + 0.
    let mut resumed = build(&text, Phase::Train, 9, None).unwrap();
    resumed.set_pass(Pass { iter: 2, sub: 0, per_iter: 2 });
    assert_eq!(record(&mut resumed, 3), full[4..7]);
    // Seeking back inside a running net, prefetched batches and all.
    resumed.set_pass(Pass { iter: 1, sub: 0, per_iter: 1 });
    assert_eq!(record(&mut resumed, 2), full[1..3]);
    // Told each pass in turn, as the solver does, it keeps its queue and its order.
    let mut told = build(&text, Phase::Train, 9, None).unwrap();
    let seq: Vec<_> = (0..7u32)
        .map(|i| {
            told.set_pass(Pass { iter: (i / 2) as u64, sub: i % 2, per_iter: 2 });
            told.forward().unwrap();
            (blob(&told, "data").1, blob(&told, "label").1)
        })
        .collect();
    assert_eq!(seq, full);
}

#[test]
fn batch_of_one_follows_each_image_size() {
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("a.png"), 3, 2, |_, _| 1);
    gray_png(&d.path().join("b.png"), 5, 4, |_, _| 1);
    write(&d.path().join("list.txt"), "a.png a.png\nb.png b.png\n");
    let mut net = build(&dense(d.path(), "batch_size: 1 is_color: false", ""), Phase::Train, 0, None).unwrap();
    net.forward().unwrap();
    assert_eq!(net.blob("data").unwrap().shape(), [1, 1, 2, 3]);
    net.forward().unwrap();
    assert_eq!(net.blob("data").unwrap().shape(), [1, 1, 4, 5]);
    assert_eq!(net.blob("label").unwrap().shape(), [1, 1, 4, 5]);
    // Two sizes in one batch: an error naming the odd file.
    let mut net = build(&dense(d.path(), "batch_size: 2", ""), Phase::Train, 0, None).unwrap();
    let e = net.forward().unwrap_err().to_string();
    assert!(e.contains("b.png: gives a 3x4x5") && e.contains("a.png (first of its batch) gives 3x2x3"), "{e}");
}

#[test]
fn files_resolve_relative_to_the_model_when_not_found_from_the_working_directory() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("models/m");
    let data = d.path().join("fixtures/set");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::create_dir_all(data.join("images")).unwrap();
    gray_png(&data.join("images/a.png"), 2, 2, |_, _| 7);
    gray_png(&data.join("images/l.png"), 2, 2, |_, _| 1);
    write(&data.join("train.txt"), "images/a.png images/l.png\n");
    // As a model in the repository names its data: relative to the model file.
    let text = net_text(
        "type: \"DenseImageData\" dense_image_data_param { source: \"../../fixtures/set/train.txt\" \
         root_folder: \"../../fixtures/set/\" batch_size: 1 is_color: false }",
    );
    let mut net = build(&text, Phase::Train, 0, Some(&model)).unwrap();
    net.forward().unwrap();
    assert_eq!(blob(&net, "data").1, [7.0; 4]);
    let e = build(&text, Phase::Train, 0, None).err().unwrap().to_string();
    assert!(e.contains("../../fixtures/set/train.txt") && e.contains("source file not found"), "{e}");
    // Without root_folder, names resolve relative to the source file's own folder.
    let text = net_text(
        "type: \"DenseImageData\" dense_image_data_param { source: \"../../fixtures/set/train.txt\" batch_size: 1 }",
    );
    build(&text, Phase::Train, 0, Some(&model)).unwrap().forward().unwrap();
}

#[test]
fn image_data_lists_labels_and_applies_transform_param() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..3u8 {
        gray_png(&d.path().join(format!("p{i}.png")), 5, 4, |x, y| 10 * i + (5 * y + x) as u8);
    }
    write(&d.path().join("list.txt"), "p0.png 2\np1.png 0\np2.png 1\n");
    let text = net_text(&format!(
        "type: \"ImageData\" image_data_param {{ source: \"{}\" root_folder: \"{}/\" batch_size: 2 is_color: false }} \
         transform_param {{ crop_size: 2 scale: 2 }}",
        d.path().join("list.txt").display(),
        d.path().display()
    ));
    let mut net = build(&text, Phase::Test, 0, None).unwrap();
    net.forward().unwrap();
    assert_eq!(blob(&net, "label"), (vec![2], vec![2.0, 0.0]));
    // TEST crops the centre: rows 1..3, columns 1..3 of 5x4 -> values 6, 7, 11, 12; scaled by 2.
    let (shape, data) = blob(&net, "data");
    assert_eq!(shape, [2, 1, 2, 2]);
    assert_eq!(&data[..4], [12.0, 14.0, 22.0, 24.0]);
    assert_eq!(&data[4..], [32.0, 34.0, 42.0, 44.0]);
    net.forward().unwrap();
    assert_eq!(blob(&net, "label").1, [1.0, 2.0]);
}

// ---------------------------------------------------------------- bad input

fn build_err(text: &str) -> String {
    build(text, Phase::Train, 0, None).err().map(|e| e.to_string()).unwrap_or_else(|| "built".into())
}

#[test]
fn missing_images_are_named() {
    let d = tempfile::tempdir().unwrap();
    numbered(d.path(), 3);
    write(&d.path().join("list.txt"), "nope.png lab0.png\n");
    let e = build_err(&dense(d.path(), "batch_size: 1", ""));
    assert!(e.contains("nope.png") && e.contains("not found"), "{e}");
    // A later missing file fails the forward pass that needs it.
    write(&d.path().join("list.txt"), "img0.png lab0.png\nimg1.png gone.png\n");
    let mut net = build(&dense(d.path(), "batch_size: 1", ""), Phase::Train, 0, None).unwrap();
    net.forward().unwrap();
    let e = net.forward().unwrap_err().to_string();
    assert!(e.contains("layer `data` (type DenseImageData)") && e.contains("gone.png"), "{e}");
}

#[test]
fn unreadable_files_are_named() {
    let d = tempfile::tempdir().unwrap();
    numbered(d.path(), 2);
    write(&d.path().join("img1.png"), "this is not a PNG");
    let mut net = build(&dense(d.path(), "batch_size: 1", ""), Phase::Train, 0, None).unwrap();
    net.forward().unwrap();
    let e = net.forward().unwrap_err().to_string();
    assert!(e.contains("img1.png: not an image crema can read"), "{e}");
}

#[test]
fn image_and_label_sizes_must_match() {
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("i.png"), 4, 4, |_, _| 0);
    gray_png(&d.path().join("l.png"), 3, 4, |_, _| 0);
    write(&d.path().join("list.txt"), "i.png l.png\n");
    let e = build_err(&dense(d.path(), "batch_size: 1", ""));
    assert!(e.contains("i.png: the image is 4x4 but its label") && e.contains("l.png is 3x4"), "{e}");
    // With resizing both come out the same size.
    build(&dense(d.path(), "batch_size: 1 new_height: 2 new_width: 2", ""), Phase::Train, 0, None).unwrap();
}

#[test]
fn empty_and_malformed_sources_are_named() {
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("list.txt"), "\n\n");
    let e = build_err(&dense(d.path(), "batch_size: 1", ""));
    assert!(e.contains("list.txt: the source file lists no images"), "{e}");
    write(&d.path().join("list.txt"), "a.png\n");
    let e = build_err(&dense(d.path(), "batch_size: 1", ""));
    assert!(e.contains("list.txt: line 1: expected 2 fields"), "{e}");
    let e = build_err(&dense(d.path(), "batch_size: 0", ""));
    assert!(e.contains("batch_size must be positive"), "{e}");
    let e = build_err(&dense(d.path(), "batch_size: 1 new_height: 3", ""));
    assert!(e.contains("new_height and new_width must be set together"), "{e}");
}

/// Runs one forward pass of a layer outside a net, after telling it the label range.
fn forward_with_range(lp: &LayerParameter, classes: usize, ignore: Option<i32>) -> crema::Result<Vec<f32>> {
    let be = Cpu::new();
    let mut layer: Box<dyn Layer<Cpu>> = create_layer(lp, &LayerContext::new(Phase::Train, 0))?;
    layer.set_label_range(1, classes, ignore)?;
    let shapes = layer.reshape(&be, &[])?;
    let mut blobs: Vec<Blob<Cpu>> = shapes.iter().map(|s| Blob::new(&be, s, false).unwrap()).collect();
    let mut ctx = Ctx::new(&mut blobs, &mut [], &[], &[0, 1], &[], &[], Phase::Train);
    layer.forward(&be, &mut ctx)?;
    blobs[1].data_to_vec(&be)
}

#[test]
fn labels_the_loss_cannot_take_are_errors_naming_file_and_pixel() {
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("i.png"), 4, 2, |_, _| 0);
    gray_png(&d.path().join("mask.png"), 4, 2, |x, y| if (x, y) == (2, 1) { 255 } else { 1 });
    write(&d.path().join("list.txt"), "i.png mask.png\n");
    let text = dense(d.path(), "batch_size: 1", "");
    let param: NetParameter = crema::prototxt::parse(&text, "t").unwrap();
    let lp = &param.layer[0];
    let e = forward_with_range(lp, 2, None).unwrap_err().to_string();
    assert!(e.contains("mask.png: label value 255 at pixel (x 2, y 1) is out of range: the loss takes 0..=1 (2 classes)"), "{e}");
    // 255 as the ignore_label is fine; so is any value without a loss reading the labels.
    assert_eq!(forward_with_range(lp, 2, Some(255)).unwrap()[6], 255.0);
    assert_eq!(forward_with_range(lp, 256, None).unwrap()[6], 255.0);

    // ImageData checks its listed labels as soon as the net tells it the range.
    write(&d.path().join("cls.txt"), "i.png 0\ni.png 3\n");
    let lp: LayerParameter = crema::prototxt::parse::<NetParameter>(
        &net_text(&format!(
            "type: \"ImageData\" image_data_param {{ source: \"{}\" root_folder: \"{}/\" }}",
            d.path().join("cls.txt").display(),
            d.path().display()
        )),
        "t",
    )
    .unwrap()
    .layer
    .remove(0);
    let e = forward_with_range(&lp, 3, None).unwrap_err().to_string();
    assert!(e.contains("cls.txt: line 2: label 3 is out of range: the loss takes 0..=2 (3 classes)"), "{e}");
}

/// Through the net: a loss layer reading the labels (through a Split) tells the data layer
/// its class count. Runs once SoftmaxWithLoss, Accuracy and Split are registered.
#[test]
fn the_net_tells_data_layers_the_class_count_of_their_loss() {
    let types = crema::layers::layer_types();
    if !["SoftmaxWithLoss", "Accuracy", "Split"].iter().all(|t| types.contains(t)) {
        eprintln!("skipped: SoftmaxWithLoss, Accuracy or Split is not registered in this build");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("i.png"), 4, 2, |_, _| 0);
    gray_png(&d.path().join("mask.png"), 4, 2, |x, _| if x == 3 { 255 } else { 0 });
    write(&d.path().join("list.txt"), "i.png mask.png\n");
    let text = dense(d.path(), "batch_size: 1 is_color: false", "")
        + "layer { name: \"score\" type: \"Convolution\" bottom: \"data\" top: \"score\" \
           convolution_param { num_output: 2 kernel_size: 1 } }\n\
           layer { name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"score\" bottom: \"label\" top: \"loss\" }\n\
           layer { name: \"acc\" type: \"Accuracy\" bottom: \"score\" bottom: \"label\" top: \"acc\" }\n";
    let mut net = build(&text, Phase::Train, 0, None).unwrap();
    let e = net.forward().unwrap_err().to_string();
    assert!(e.contains("mask.png: label value 255 at pixel (x 3, y 0)") && e.contains("2 classes"), "{e}");
}

/// A solver training on fixtures/cxr-lite with shuffled, mirrored and cropped batches,
/// snapshotted and resumed, ends with the weights of the unbroken run, bit for bit.
#[test]
fn training_resumed_from_a_snapshot_sees_the_same_batches() {
    use crema::solver::Solver;
    let d = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cxr-lite");
    write(
        &d.path().join("net.prototxt"),
        &format!(
            "layer {{ name: \"data\" type: \"DenseImageData\" top: \"data\" top: \"label\"
               dense_image_data_param {{ source: \"{0}/train.txt\" root_folder: \"{0}/\" batch_size: 2
                 shuffle: true rand_skip: 10 mirror: true crop_height: 64 crop_width: 96 is_color: false }}
               transform_param {{ scale: 0.00390625 mean_value: 128 }} }}
             layer {{ name: \"conv\" type: \"Convolution\" bottom: \"data\" top: \"score\"
               convolution_param {{ num_output: 2 kernel_size: 3 pad: 1 weight_filler {{ type: \"gaussian\" std: 0.1 }} }} }}
             layer {{ name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"score\" bottom: \"label\" top: \"loss\" }}",
            fixtures.display()
        ),
    );
    let solver_text = format!(
        "net: \"net.prototxt\" base_lr: 0.1 momentum: 0.9 lr_policy: \"fixed\" max_iter: 6 iter_size: 2 \
         random_seed: 3 snapshot: 3 snapshot_prefix: \"{}/snap\"",
        d.path().display()
    );
    write(&d.path().join("solver.prototxt"), &solver_text);
    let weights = |s: &Solver<Cpu>| -> Vec<Vec<f32>> { s.net().params().iter().map(|p| p.data_to_vec(s.backend()).unwrap()).collect() };

    let mut full = Solver::from_file(Cpu::new(), d.path().join("solver.prototxt")).unwrap();
    full.solve().unwrap();
    let mut resumed = Solver::from_file(Cpu::new(), d.path().join("solver.prototxt")).unwrap();
    resumed.restore(d.path().join("snap_iter_3.solverstate")).unwrap();
    resumed.solve().unwrap();
    assert_eq!(resumed.iter(), 6);
    assert_eq!(weights(&resumed), weights(&full));
    // A different seed trains on other batches: the weights differ.
    write(&d.path().join("solver.prototxt"), &solver_text.replace("random_seed: 3", "random_seed: 4"));
    let mut other = Solver::from_file(Cpu::new(), d.path().join("solver.prototxt")).unwrap();
    other.solve().unwrap();
    assert_ne!(weights(&other), weights(&full));
}
