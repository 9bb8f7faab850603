//! `crema dataset` on tiny synthetic layouts: folders with two mask folders OR-ed, a seeded
//! fractional split, class weights against a direct count, list files, JSRT + SCR, the real
//! binary, and the output read back by DenseImageData.

use crema::data::dataset::{prepare, Input, Options, Split};
use crema::data::{read_image, read_label_image, ColorMode};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn gray_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)])).save(path).unwrap();
}

/// Six 8x8 images; `left/` masks cover columns < 2 (value 255) and `right/` masks columns >= 6
/// (value 200) of images 0..5; image 3's right mask is named `img3_mask.png`; `img9` has no
/// mask. Every image's pixels are 40 * its number.
fn layout(root: &Path) {
    for i in 0..6u32 {
        gray_png(&root.join(format!("images/img{i}.png")), 8, 8, |_, _| 40 * i as u8);
        gray_png(&root.join(format!("left/img{i}.png")), 8, 8, |x, y| if x < 2 && y >= i { 255 } else { 0 });
        let right = if i == 3 { "right/img3_mask.png".to_string() } else { format!("right/img{i}.png") };
        gray_png(&root.join(right), 8, 8, |x, _| if x >= 6 { 200 } else { 100 });
    }
    gray_png(&root.join("images/img9.png"), 8, 8, |_, _| 0);
}

fn opts(input: Input, out: &Path, size: usize, split: Option<Split>) -> Options {
    Options { input, out: out.to_path_buf(), width: size, height: size, split, seed: 1, matching: None, limit_train: None, limit_test: None }
}

fn names(list: &Path) -> Vec<String> {
    std::fs::read_to_string(list)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 2);
            let name = f[0].strip_prefix("images/").unwrap().to_string();
            assert_eq!(f[1], format!("labels/{name}"));
            name.strip_suffix(".png").unwrap().to_string()
        })
        .collect()
}

#[test]
fn folders_or_their_masks_split_by_fraction_and_weigh_classes() {
    let d = tempfile::tempdir().unwrap();
    layout(d.path());
    let out = d.path().join("out");
    let input = Input::Folders { images: d.path().join("images"), masks: vec![d.path().join("left"), d.path().join("right")] };
    let report = prepare(&opts(input.clone(), &out, 8, Some(Split::Fraction(0.5)))).unwrap();
    let (train, test) = (names(&out.join("train.txt")), names(&out.join("test.txt")));
    assert_eq!((train.len(), test.len()), (3, 3));
    assert_eq!(report.train, train);
    let all: BTreeSet<String> = train.iter().chain(&test).cloned().collect();
    assert_eq!(all, (0..6).map(|i| format!("img{i}")).collect(), "img9 (no mask) is left out, the rest split");
    assert!(report.notes.iter().any(|n| n.contains("1 image(s)") && n.contains("no mask")), "{:?}", report.notes);

    // Labels: 1 where either mask is > 127 (the right masks' 100 is not).
    for i in 0..6u32 {
        let lab = read_label_image(&out.join(format!("labels/img{i}.png"))).unwrap();
        for y in 0..8 {
            for x in 0..8 {
                let want = ((x < 2 && y >= i as usize) || x >= 6) as u8;
                assert_eq!(lab.at(x, y, 0), want, "img{i} ({x},{y})");
            }
        }
        let img = read_image(&out.join(format!("images/img{i}.png")), ColorMode::Gray).unwrap();
        assert!(img.data.iter().all(|&v| v == 40 * i as u8));
    }

    // Class weights against a direct count of the training labels.
    let (mut px, mut present) = ([0u64; 2], [0u64; 2]);
    for n in &train {
        let lab = read_label_image(&out.join(format!("labels/{n}.png"))).unwrap();
        for c in 0..2 {
            let k = lab.data.iter().filter(|&&v| v == c as u8).count() as u64;
            px[c] += k;
            if k > 0 {
                present[c] += 64;
            }
        }
    }
    let freq = [px[0] as f64 / present[0] as f64, px[1] as f64 / present[1] as f64];
    let median = (freq[0] + freq[1]) / 2.0;
    assert_eq!(report.stats.pixels, px);
    let w = report.stats.weights();
    assert!((w[0] - median / freq[0]).abs() < 1e-12 && (w[1] - median / freq[1]).abs() < 1e-12, "{w:?}");
    let printed = std::fs::read_to_string(out.join("class_weights.txt")).unwrap();
    assert!(printed.contains(&format!("class_weighting: {:.4}", median / freq[1])), "{printed}");

    // The same seed splits the same way; another seed differently (for these six names).
    let again = prepare(&opts(input.clone(), &d.path().join("again"), 8, Some(Split::Fraction(0.5)))).unwrap();
    assert_eq!(again.train, report.train);
    let other = prepare(&Options { seed: 2, ..opts(input, &d.path().join("other"), 8, Some(Split::Fraction(0.5))) }).unwrap();
    assert_ne!(other.train, report.train);
}

#[test]
fn resizing_is_bilinear_for_images_and_nearest_for_masks() {
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("images/a.png"), 8, 8, |x, _| if x < 4 { 0 } else { 200 });
    gray_png(&d.path().join("m/a.png"), 8, 8, |x, _| if x < 4 { 0 } else { 255 });
    let out = d.path().join("out");
    let input = Input::Folders { images: d.path().join("images"), masks: vec![d.path().join("m")] };
    prepare(&Options { width: 4, height: 2, ..opts(input, &out, 0, Some(Split::Fraction(1.0))) }).unwrap();
    let img = read_image(&out.join("images/a.png"), ColorMode::Gray).unwrap();
    let lab = read_label_image(&out.join("labels/a.png")).unwrap();
    assert_eq!((img.width, img.height), (4, 2));
    // Each output column averages two source columns with their neighbours: the edge blurs.
    assert_eq!(&img.data[..4], [0, 25, 175, 200]);
    assert_eq!(&lab.data[..4], [0, 0, 1, 1]);
    assert!(!out.join("test.txt").exists(), "no held-out pairs, no test.txt");
}

#[test]
fn list_files_with_a_held_out_list_and_several_masks_per_line() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    for n in ["p", "q", "r"] {
        gray_png(&src.join(format!("im/{n}.png")), 4, 4, |_, _| 9);
        gray_png(&src.join(format!("ma/{n}.png")), 4, 4, |x, _| if x == 0 { 255 } else { 0 });
        gray_png(&src.join(format!("mb/{n}.png")), 4, 4, |x, _| if x == 3 { 255 } else { 0 });
    }
    // Paths relative to the list's folder, as ../shared/data/cxr-lungs/train.txt has them.
    std::fs::write(src.join("train.txt"), "im/p.png ma/p.png mb/p.png\nim/q.png ma/q.png\n").unwrap();
    std::fs::write(src.join("test.txt"), "im/r.png ma/r.png\n").unwrap();
    let out = d.path().join("out");
    let input = Input::Lists { train: src.join("train.txt"), test: Some(src.join("test.txt")) };
    let r = prepare(&opts(input.clone(), &out, 4, None)).unwrap();
    assert_eq!((r.train.clone(), r.test.clone()), (vec!["p".to_string(), "q".into()], vec!["r".to_string()]));
    assert_eq!(names(&out.join("test.txt")), ["r"]);
    let p = read_label_image(&out.join("labels/p.png")).unwrap();
    assert_eq!(&p.data[..4], [1, 0, 0, 1]);
    let q = read_label_image(&out.join("labels/q.png")).unwrap();
    assert_eq!(&q.data[..4], [1, 0, 0, 0]);
    // --match and the limits.
    let r = prepare(&Options { matching: Some("q.png".into()), ..opts(input.clone(), &d.path().join("o2"), 4, None) }).unwrap();
    assert_eq!((r.train.len(), r.test.len()), (1, 0));
    let r = prepare(&Options { limit_train: Some(1), ..opts(input.clone(), &d.path().join("o3"), 4, None) }).unwrap();
    assert_eq!(r.train, ["p"]);
    // A held-out list and --split together are refused.
    let e = prepare(&opts(input, &d.path().join("o4"), 4, Some(Split::Fraction(0.5)))).unwrap_err().to_string();
    assert!(e.contains("held-out list already splits"), "{e}");
    // A line naming a missing file names the list and the line.
    std::fs::write(src.join("bad.txt"), "im/p.png ma/p.png\nim/zz.png ma/p.png\n").unwrap();
    let e = prepare(&opts(Input::Lists { train: src.join("bad.txt"), test: None }, &d.path().join("o5"), 4, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.txt: line 2") && e.contains("im/zz.png"), "{e}");
}

#[test]
fn jsrt_images_with_scr_masks_split_by_fold() {
    let d = tempfile::tempdir().unwrap();
    let jsrt = d.path().join("All247images");
    std::fs::create_dir_all(&jsrt).unwrap();
    let mut bytes = vec![0u8; 2048 * 2048 * 2];
    bytes.chunks_exact_mut(2).for_each(|b| b.copy_from_slice(&4095u16.to_be_bytes())); // all dark
    for (fold, n) in [("fold1", "JPCLN001"), ("fold2", "JPCNN002")] {
        std::fs::write(jsrt.join(format!("{n}.IMG")), &bytes).unwrap();
        for (side, left) in [("left lung", true), ("right lung", false)] {
            let dir = d.path().join(format!("scratch/{fold}/masks/{side}"));
            std::fs::create_dir_all(&dir).unwrap();
            // SCR's masks are GIFs (1024x1024; smaller here), the left lung on the image's right.
            let mask = image::GrayImage::from_fn(128, 128, |x, _| {
                image::Luma([if (x >= 64) == left { 255 } else { 0 }])
            });
            image::DynamicImage::ImageLuma8(mask).to_rgba8().save(dir.join(format!("{n}.gif"))).unwrap();
        }
    }
    let out = d.path().join("out");
    let input = Input::JsrtScr { images: jsrt, scr: d.path().join("scratch") };
    let r = prepare(&opts(input, &out, 16, None)).unwrap();
    assert_eq!((r.train.clone(), r.test.clone()), (vec!["JPCLN001".to_string()], vec!["JPCNN002".to_string()]));
    assert!(r.split.contains("fold1"), "{}", r.split);
    let img = read_image(&out.join("images/JPCLN001.png"), ColorMode::Gray).unwrap();
    assert_eq!((img.width, img.height), (16, 16));
    assert!(img.data.iter().all(|&v| v == 0), "4095 is dark");
    let lab = read_label_image(&out.join("labels/JPCNN002.png")).unwrap();
    assert!(lab.data.iter().all(|&v| v == 1), "left and right masks OR-ed cover everything");
}

fn crema(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crema")).args(args).output().expect("run crema");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_command_prints_class_weighting_and_its_output_feeds_dense_image_data() {
    let d = tempfile::tempdir().unwrap();
    layout(d.path());
    let p = |s: &str| d.path().join(s).display().to_string();
    let (code, stdout, stderr) = crema(&[
        "dataset", "--images", &p("images"), "--masks", &p("left"), "--masks", &p("right"),
        "--split", "0.7", "--seed", "5", "--size", "6x4", "--out", &p("out"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote 4 training and 2 held-out pairs of 6x4"), "{stdout}");
    assert_eq!(stdout.matches("    class_weighting: ").count(), 2, "{stdout}");
    assert!(stdout.contains("note: 1 image(s)"), "{stdout}");

    // DenseImageData reads what it wrote, with labels in 0..=1.
    let text = format!(
        "layer {{ name: \"data\" type: \"DenseImageData\" top: \"data\" top: \"label\" \
         dense_image_data_param {{ source: \"{}\" root_folder: \"{}/\" batch_size: 4 is_color: false }} }}",
        p("out/train.txt"),
        p("out")
    );
    let mut param: crema::proto::NetParameter = crema::prototxt::parse(&text, "t").unwrap();
    param.state = Some(crema::proto::NetState { phase: Some(0), ..Default::default() });
    let mut net = crema::net::Net::new(crema::backend::cpu::Cpu::new(), &param, 0).unwrap();
    net.forward().unwrap();
    assert_eq!(net.blob("data").unwrap().shape(), [4, 1, 4, 6]);
    let labels = net.blob("label").unwrap().data_to_vec(net.backend()).unwrap();
    assert!(labels.iter().all(|&v| v == 0.0 || v == 1.0) && labels.contains(&1.0));

    // Errors: no split for folders; a missing folder named.
    let (code, _, stderr) = crema(&["dataset", "--images", &p("images"), "--masks", &p("left"), "--size", "4", "--out", &p("o2")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("give --split FRACTION or --train-list and --test-list"), "{stderr}");
    let (code, _, stderr) = crema(&["dataset", "--images", &p("nope"), "--masks", &p("left"), "--split", "0.5", "--size", "4", "--out", &p("o3")]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&p("nope")), "{stderr}");
    let (code, _, stderr) = crema(&["dataset", "--from-list", &p("x"), "--size", "0x4", "--out", &p("o4")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--size 0x4"), "{stderr}");
}
