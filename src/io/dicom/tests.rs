//! DICOM files built element by element, to test the parser and the display pipeline on
//! exactly what each rule covers. Files written by real DICOM libraries are tested in
//! `tests/dicom.rs`.

use super::*;

/// How a test file is encoded.
#[derive(Clone, Copy, PartialEq)]
enum Enc {
    ImplicitLe,
    ExplicitLe,
    ExplicitBe,
}

/// Bytes of one element.
fn el(enc: Enc, tag: u32, vr: &str, value: &[u8]) -> Vec<u8> {
    let be = enc == Enc::ExplicitBe;
    let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut out = Vec::new();
    out.extend(u16b((tag >> 16) as u16));
    out.extend(u16b(tag as u16));
    let len = if value.len() == usize::MAX { u32::MAX } else { value.len() as u32 };
    if enc == Enc::ImplicitLe || tag >> 16 == 0xFFFE {
        out.extend(u32b(len));
    } else {
        out.extend(vr.as_bytes());
        if ["OB", "OW", "SQ", "UN", "UT"].contains(&vr) {
            out.extend([0, 0]);
            out.extend(u32b(len));
        } else {
            out.extend(u16b(len as u16));
        }
    }
    out.extend(value);
    out
}

/// An element of undefined length whose contents follow as bytes.
fn el_undefined(enc: Enc, tag: u32, vr: &str, contents: &[u8]) -> Vec<u8> {
    let mut out = el(enc, tag, vr, &[]);
    let n = out.len();
    out[n - 4..].copy_from_slice(&[0xFF; 4]);
    out.extend(contents);
    out
}

fn us(enc: Enc, v: u16) -> Vec<u8> {
    if enc == Enc::ExplicitBe { v.to_be_bytes().to_vec() } else { v.to_le_bytes().to_vec() }
}

/// A string value padded to even length.
fn st(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    v
}

/// A Part-10 file: preamble, meta group with `uid`, then `body`.
fn part10(uid: &str, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 128];
    out.extend(b"DICM");
    let mut uid_v = uid.as_bytes().to_vec();
    if uid_v.len() % 2 == 1 {
        uid_v.push(0);
    }
    let meta = [el(Enc::ExplicitLe, 0x0002_0001, "OB", &[0, 1]), el(Enc::ExplicitLe, 0x0002_0010, "UI", &uid_v)].concat();
    out.extend(el(Enc::ExplicitLe, 0x0002_0000, "UL", &(meta.len() as u32).to_le_bytes()));
    out.extend(meta);
    out.extend(body);
    out
}

/// The image elements of a gray image, plus `extra` (sorted into place by the caller).
struct Gray<'a> {
    rows: u16,
    cols: u16,
    allocated: u16,
    stored: u16,
    signed: bool,
    photometric: &'a str,
    extra: Vec<Vec<u8>>,
}

impl Gray<'_> {
    fn body(&self, enc: Enc, pixels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(el(enc, 0x0008_0060, "CS", &st("DX")));
        out.extend(el(enc, 0x0028_0002, "US", &us(enc, 1)));
        out.extend(el(enc, 0x0028_0004, "CS", &st(self.photometric)));
        out.extend(el(enc, 0x0028_0010, "US", &us(enc, self.rows)));
        out.extend(el(enc, 0x0028_0011, "US", &us(enc, self.cols)));
        out.extend(el(enc, 0x0028_0100, "US", &us(enc, self.allocated)));
        out.extend(el(enc, 0x0028_0101, "US", &us(enc, self.stored)));
        out.extend(el(enc, 0x0028_0102, "US", &us(enc, self.stored - 1)));
        out.extend(el(enc, 0x0028_0103, "US", &us(enc, self.signed as u16)));
        for e in &self.extra {
            out.extend(e);
        }
        out.extend(el(enc, 0x7FE0_0010, if self.allocated == 8 { "OB" } else { "OW" }, pixels));
        out
    }
}

fn words(enc: Enc, v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|&x| us(enc, x)).collect()
}

fn gray12(photometric: &str, extra: Vec<Vec<u8>>) -> Gray<'_> {
    Gray { rows: 2, cols: 3, allocated: 16, stored: 12, signed: false, photometric, extra }
}

const EXPLICIT: &str = "1.2.840.10008.1.2.1";

#[test]
fn windowed_twelve_bit_explicit_little_endian() {
    let enc = Enc::ExplicitLe;
    // Centre 2048, width 1001: below 1547.5 is 0, above 2547.5 is 255.
    let g = gray12("MONOCHROME2", vec![el(enc, 0x0028_1050, "DS", &st("2048\\100")), el(enc, 0x0028_1051, "DS", &st("1001 "))]);
    // The top four bits hold overlay-like garbage: only the 12 stored bits count.
    let px = [0u16, 1547, 1548, 2048, 2548, 0xF000 | 2047];
    let file = part10(EXPLICIT, &g.body(enc, &words(enc, &px)));
    let d = decode(&file).unwrap();
    assert_eq!((d.width, d.height, d.channels, d.bits), (3, 2, 1, 12));
    let f = |m: f64| (((m - 2047.5) / 1000.0 + 0.5) * 255.0 + 0.5).floor() as u8;
    assert_eq!(d.data, [0, 0, f(1548.0), f(2048.0), 255, f(2047.0)]);
    assert_eq!(f(2048.0), 128);
}

#[test]
fn every_encoding_reads_the_same_pixels() {
    let px = [0u16, 100, 4095, 2000, 3000, 17];
    let mut seen = Vec::new();
    for (enc, uid) in [(Enc::ImplicitLe, "1.2.840.10008.1.2"), (Enc::ExplicitLe, EXPLICIT), (Enc::ExplicitBe, "1.2.840.10008.1.2.2")] {
        let g = gray12("MONOCHROME2", vec![]);
        let file = part10(uid, &g.body(enc, &words(enc, &px)));
        seen.push(decode(&file).unwrap().data);
    }
    // Deflated: the data set after the meta group, raw deflate.
    let g = gray12("MONOCHROME2", vec![]);
    let body = g.body(Enc::ExplicitLe, &words(Enc::ExplicitLe, &px));
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &body).unwrap();
    seen.push(decode(&part10("1.2.840.10008.1.2.1.99", &z.finish().unwrap())).unwrap().data);
    // No window: the frame's minimum and maximum become 0 and 255.
    let want: Vec<u8> = px.iter().map(|&v| ((v as f64 / 4095.0 * 255.0) + 0.5).floor() as u8).collect();
    for s in &seen {
        assert_eq!(s, &want);
    }
}

#[test]
fn monochrome1_is_inverted_and_bare_data_sets_read() {
    let enc = Enc::ImplicitLe;
    let g = Gray { rows: 1, cols: 4, allocated: 8, stored: 8, signed: false, photometric: "MONOCHROME1", extra: vec![] };
    let body = g.body(enc, &[0, 10, 200, 255]);
    // 8-bit unsigned without rescale or window: the values themselves, then inverted.
    assert_eq!(decode(&part10("1.2.840.10008.1.2", &body)).unwrap().data, [255, 245, 55, 0]);
    assert_eq!(decode(&body).unwrap().data, [255, 245, 55, 0]);
    assert!(is_dicom(&body, std::path::Path::new("IM0001")));
    assert!(is_dicom(&body, std::path::Path::new("x.DCM")));
    assert!(!is_dicom(&body, std::path::Path::new("x.png")));
}

#[test]
fn signed_rescaled_values_are_windowed_in_modality_units() {
    let enc = Enc::ExplicitLe;
    let g = Gray {
        rows: 1,
        cols: 4,
        allocated: 16,
        stored: 12,
        signed: true,
        photometric: "MONOCHROME2",
        extra: vec![
            el(enc, 0x0028_1050, "DS", &st("40")),
            el(enc, 0x0028_1051, "DS", &st("400")),
            el(enc, 0x0028_1052, "DS", &st("-1024")),
            el(enc, 0x0028_1053, "DS", &st("1")),
        ],
    };
    // 12-bit two's complement: 0xFFF is -1, 0x800 is -2048; bits above 12 are ignored.
    let px = [1064u16, 0x0FFF, 0xF800, 1224];
    let d = decode(&part10(EXPLICIT, &g.body(enc, &words(enc, &px)))).unwrap();
    let f = |m: f64| (((m - 39.5) / 399.0 + 0.5) * 255.0 + 0.5).floor().clamp(0.0, 255.0) as u8;
    assert_eq!(d.data, [f(40.0), 0, 0, f(200.0)]);
}

#[test]
fn voi_functions_and_luts() {
    let enc = Enc::ExplicitLe;
    let px = [0u16, 1000, 2000, 2048, 3000, 4095];
    let window = || vec![el(enc, 0x0028_1050, "DS", &st("2048")), el(enc, 0x0028_1051, "DS", &st("2000"))];
    let run = |extra: Vec<Vec<u8>>| decode(&part10(EXPLICIT, &gray12("MONOCHROME2", extra).body(enc, &words(enc, &px)))).map(|d| d.data);
    let q = |y: f64| (y + 0.5).floor().clamp(0.0, 255.0) as u8;
    let exact = run([window(), vec![el(enc, 0x0028_1056, "CS", &st("LINEAR_EXACT"))]].concat()).unwrap();
    assert_eq!(exact, px.map(|v| if v as f64 <= 1048.0 { 0 } else if v as f64 > 3048.0 { 255 } else { q(((v as f64 - 2048.0) / 2000.0 + 0.5) * 255.0) }));
    let sigmoid = run([window(), vec![el(enc, 0x0028_1056, "CS", &st("SIGMOID"))]].concat()).unwrap();
    assert_eq!(sigmoid, px.map(|v| q(255.0 / (1.0 + (-4.0 * (v as f64 - 2048.0) / 2000.0).exp()))));
    let err = run([window(), vec![el(enc, 0x0028_1056, "CS", &st("LOG"))]].concat()).unwrap_err();
    assert!(err.contains("VOI LUT Function LOG"), "{err}");

    // A VOI LUT (8 entries from 999, 3-bit output) wins over the window.
    let item = [
        el(enc, 0x0028_3002, "US", &words(enc, &[8, 999, 3])),
        el(enc, 0x0028_3006, "OW", &words(enc, &[0, 1, 2, 3, 4, 5, 6, 7])),
    ]
    .concat();
    let seq = el(enc, 0x0028_3010, "SQ", &el(enc, 0xFFFE_E000, "", &item));
    let lut = run([window(), vec![seq]].concat()).unwrap();
    // Inputs below the first entry take the first, above the last the last.
    assert_eq!(lut, [0, q(255.0 / 7.0), 255, 255, 255, 255]);
}

#[test]
fn sequences_of_undefined_length_and_un_elements_are_skipped() {
    let enc = Enc::ExplicitLe;
    // A sequence of undefined length holding an item of undefined length holding a nested
    // sequence; then a private UN element of undefined length encoded as implicit VR.
    let nested = el(enc, 0x0008_1155, "UI", &st("1.2.3"));
    let inner_seq = el(enc, 0x0008_1140, "SQ", &el(enc, 0xFFFE_E000, "", &nested));
    let item = [el_undefined(enc, 0xFFFE_E000, "", &inner_seq), el(enc, 0xFFFE_E00D, "", &[])].concat();
    let seq = [el_undefined(enc, 0x0008_1115, "SQ", &item), el(enc, 0xFFFE_E0DD, "", &[])].concat();
    let implicit_item = [el(Enc::ImplicitLe, 0x0009_0010, "", b"ABCD"), el(Enc::ImplicitLe, 0xFFFE_E00D, "", &[])].concat();
    let un = [el_undefined(enc, 0x0009_1001, "UN", &[el_undefined(Enc::ImplicitLe, 0xFFFE_E000, "", &implicit_item), el(Enc::ImplicitLe, 0xFFFE_E0DD, "", &[])].concat())].concat();
    let mut body = [seq, un].concat();
    let g = Gray { rows: 1, cols: 2, allocated: 8, stored: 8, signed: false, photometric: "MONOCHROME2", extra: vec![] };
    body.extend(g.body(enc, &[7, 9]));
    assert_eq!(decode(&part10(EXPLICIT, &body)).unwrap().data, [7, 9]);
}

#[test]
fn rle_frames_decode() {
    // 16-bit, 2 x 2: high bytes then low bytes, each plane one literal run.
    let px = [0x0102u16, 0x0A0B, 0x0000, 0x0FFF];
    let hi: Vec<u8> = px.iter().map(|v| (v >> 8) as u8).collect();
    let lo: Vec<u8> = px.iter().map(|v| *v as u8).collect();
    let mut frame = vec![0u8; 64];
    frame[0] = 2;
    frame[4] = 64;
    frame[8] = 69;
    frame.extend([3].iter().chain(&hi));
    frame.extend([3].iter().chain(&lo));
    frame.push(0); // pad to even
    let enc = Enc::ExplicitLe;
    let mut g = gray12("MONOCHROME2", vec![]);
    (g.rows, g.cols) = (2, 2);
    let mut body = g.body(enc, &[]);
    // Replace the empty native pixel data with encapsulated fragments.
    let native = el(enc, 0x7FE0_0010, "OW", &[]);
    body.truncate(body.len() - native.len());
    let fragments = [el(enc, 0xFFFE_E000, "", &[]), el(enc, 0xFFFE_E000, "", &frame), el(enc, 0xFFFE_E0DD, "", &[])].concat();
    body.extend(el_undefined(enc, 0x7FE0_0010, "OB", &fragments));
    let d = decode(&part10("1.2.840.10008.1.2.5", &body)).unwrap();
    let want: Vec<u8> = px.iter().map(|&v| ((v as f64 / 4095.0 * 255.0) + 0.5).floor() as u8).collect();
    assert_eq!(d.data, want);
}

/// A JPEG-LS stream CharLS wrote and the samples it decodes to (fixtures/jpegls).
fn jpeg_ls_fixture(name: &str) -> (Vec<u8>, Vec<i32>) {
    (codec_fixture("jpegls", &format!("{name}.jls")), codec_samples("jpegls", name))
}

/// A file of fixtures/`dir`.
fn codec_fixture(dir: &str, file: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(dir).join(file)).unwrap()
}

/// The reference decoder's samples of fixtures/`dir`/`name`.u16 (little-endian u16).
fn codec_samples(dir: &str, name: &str) -> Vec<i32> {
    codec_fixture(dir, &format!("{name}.u16")).chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as i32).collect()
}

#[test]
fn twelve_bit_jpeg_frames_decode() {
    let enc = Enc::ExplicitLe;
    let mut g = gray12("MONOCHROME2", vec![]);
    (g.rows, g.cols) = (97, 120);
    // libjpeg-turbo's decode of the stream, within its integer IDCT's rounding; the same
    // coefficients re-packed with restart intervals, over two fragments, decode the same.
    let want = codec_samples("jpeg12", "gray12-q90");
    let (q90, rst) = (codec_fixture("jpeg12", "gray12-q90.jpg"), codec_fixture("jpeg12", "gray12-rst.jpg"));
    let (a, b) = rst.split_at(rst.len() / 4 * 2); // fragments have even lengths
    for fragments in [vec![&q90[..]], vec![a, b]] {
        let file = part10("1.2.840.10008.1.2.4.51", &encapsulated(enc, g.body(enc, &[]), &fragments));
        let v = decode_values(&file).unwrap();
        assert_eq!((v.width, v.height, v.channels), (120, 97, 1));
        let worst = v.values.iter().zip(&want).map(|(x, y)| (x - y).abs()).max().unwrap();
        assert!(v.values.len() == want.len() && worst <= 1, "worst difference {worst}");
        assert_eq!(decode(&file).unwrap().data.len(), 120 * 97);
    }
    // A header that disagrees with the stream, and a truncated stream, are errors.
    (g.rows, g.cols) = (96, 120);
    let err = decode(&part10("1.2.840.10008.1.2.4.51", &encapsulated(enc, g.body(enc, &[]), &[&q90]))).unwrap_err();
    assert!(err.contains("12-bit JPEG stream holds 120 x 97 pixels of 1 samples; the header says 120 x 96"), "{err}");
    (g.rows, g.cols) = (97, 120);
    let err = decode(&part10("1.2.840.10008.1.2.4.51", &encapsulated(enc, g.body(enc, &[]), &[&q90[..q90.len() / 2]]))).unwrap_err();
    assert!(err.starts_with("JPEG DCT: "), "{err}");
}

/// `body` (ending in an empty native Pixel Data element, which is dropped) with encapsulated
/// pixel data: an empty Basic Offset Table, then `fragments`, each padded to even length.
fn encapsulated(enc: Enc, mut body: Vec<u8>, fragments: &[&[u8]]) -> Vec<u8> {
    let native = el(enc, 0x7FE0_0010, "OB", &[]);
    body.truncate(body.len() - native.len());
    let mut items = el(enc, 0xFFFE_E000, "", &[]);
    for f in fragments {
        let mut f = f.to_vec();
        if f.len() % 2 == 1 {
            f.push(0);
        }
        items.extend(el(enc, 0xFFFE_E000, "", &f));
    }
    items.extend(el(enc, 0xFFFE_E0DD, "", &[]));
    body.extend(el_undefined(enc, 0x7FE0_0010, "OB", &items));
    body
}

#[test]
fn jpeg_ls_frames_decode() {
    let enc = Enc::ExplicitLe;
    // 12-bit gray, lossless: exactly the samples CharLS encoded.
    let (jls, want) = jpeg_ls_fixture("gray12");
    let mut g = gray12("MONOCHROME2", vec![]);
    (g.rows, g.cols) = (96, 128);
    let file = part10("1.2.840.10008.1.2.4.80", &encapsulated(enc, g.body(enc, &[]), &[&jls]));
    let v = decode_values(&file).unwrap();
    assert_eq!((v.width, v.height, v.channels), (128, 96, 1));
    assert!(v.values == want);
    // No window: the frame's range stretched to 0..255.
    let (lo, hi) = (*want.iter().min().unwrap() as f64, *want.iter().max().unwrap() as f64);
    let shown: Vec<u8> = want.iter().map(|&x| ((x as f64 - lo) / (hi - lo) * 255.0 + 0.5).floor() as u8).collect();
    assert_eq!(decode(&file).unwrap().data, shown);

    // Near-lossless (NEAR 2), the stream in two fragments: CharLS's own decode.
    let (jls, want) = jpeg_ls_fixture("near12");
    (g.rows, g.cols) = (48, 64);
    let (a, b) = jls.split_at(700);
    let file = part10("1.2.840.10008.1.2.4.81", &encapsulated(enc, g.body(enc, &[]), &[a, b]));
    assert!(decode_values(&file).unwrap().values == want);

    // 8-bit RGB, sample-interleaved.
    let (jls, want) = jpeg_ls_fixture("rgb_ilv2");
    let rgb = |rows: u16, cols: u16| {
        let mut body = Vec::new();
        body.extend(el(enc, 0x0008_0060, "CS", &st("XC")));
        body.extend(el(enc, 0x0028_0002, "US", &us(enc, 3)));
        body.extend(el(enc, 0x0028_0004, "CS", &st("RGB")));
        body.extend(el(enc, 0x0028_0006, "US", &us(enc, 0)));
        body.extend(el(enc, 0x0028_0010, "US", &us(enc, rows)));
        body.extend(el(enc, 0x0028_0011, "US", &us(enc, cols)));
        for (tag, v) in [(0x0028_0100, 8), (0x0028_0101, 8), (0x0028_0102, 7), (0x0028_0103, 0)] {
            body.extend(el(enc, tag, "US", &us(enc, v)));
        }
        body.extend(el(enc, 0x7FE0_0010, "OB", &[]));
        body
    };
    let file = part10("1.2.840.10008.1.2.4.80", &encapsulated(enc, rgb(24, 36), &[&jls]));
    let v = decode_values(&file).unwrap();
    assert_eq!((v.width, v.height, v.channels), (36, 24, 3));
    assert!(v.values == want);
    let d = decode(&file).unwrap();
    assert_eq!(d.data, want.iter().map(|&x| x as u8).collect::<Vec<_>>());

    // The stream must be the header's image (one larger than the header's is refused before
    // its samples are allocated); a corrupt one is an error.
    let file = part10("1.2.840.10008.1.2.4.80", &encapsulated(enc, rgb(25, 36), &[&jls]));
    let err = decode(&file).unwrap_err();
    assert!(err.contains("JPEG-LS stream holds 36 x 24 pixels of 3 samples; the header says 36 x 25 of 3"), "{err}");
    let file = part10("1.2.840.10008.1.2.4.80", &encapsulated(enc, rgb(24, 35), &[&jls]));
    let err = decode(&file).unwrap_err();
    assert!(err.contains("36x24x3 samples exceeds the limit of 2520"), "{err}");
    let cut = &jls[..jls.len() / 2];
    let err = decode(&part10("1.2.840.10008.1.2.4.80", &encapsulated(enc, rgb(24, 36), &[cut]))).unwrap_err();
    assert!(err.starts_with("JPEG-LS: "), "{err}");
}

#[test]
fn unreadable_syntaxes_and_bad_headers_say_why() {
    let enc = Enc::ExplicitLe;
    let g = gray12("MONOCHROME2", vec![]);
    let body = g.body(enc, &words(enc, &[1, 2, 3, 4, 5, 6]));
    let err = decode(&part10("1.2.840.10008.1.2.4.201", &body)).unwrap_err();
    assert!(err.contains("High-Throughput JPEG 2000") && err.contains("gdcmconv"), "{err}");
    // Pixel data shorter than the header's image.
    let short = g.body(enc, &words(enc, &[1, 2, 3]));
    let err = decode(&part10(EXPLICIT, &short)).unwrap_err();
    assert!(err.contains("holds 6 bytes") && err.contains("needs 12"), "{err}");
    // A huge image claimed over a few bytes is refused before anything is allocated for it.
    let huge = Gray { rows: 65535, cols: 65535, ..gray12("MONOCHROME2", vec![]) };
    assert!(decode(&part10(EXPLICIT, &huge.body(enc, &[0; 4]))).unwrap_err().contains("needs"));
    let pal = gray12("PALETTE COLOR", vec![]);
    assert!(decode(&part10(EXPLICIT, &pal.body(enc, &words(enc, &[0; 6])))).unwrap_err().contains("palette"));
    assert!(decode(b"hello").unwrap_err().contains("not a DICOM file"));
}

#[test]
fn truncated_and_corrupted_files_are_errors_not_panics() {
    let enc = Enc::ExplicitLe;
    let item = [el(enc, 0x0028_3002, "US", &words(enc, &[8, 1000, 3])), el(enc, 0x0028_3006, "OW", &words(enc, &[0, 1, 2, 3, 4, 5, 6, 7]))].concat();
    let extra = vec![el(enc, 0x0028_1050, "DS", &st("2048")), el(enc, 0x0028_1051, "DS", &st("2000")), el(enc, 0x0028_3010, "SQ", &el(enc, 0xFFFE_E000, "", &item))];
    let file = part10(EXPLICIT, &gray12("MONOCHROME1", extra).body(enc, &words(enc, &[1, 2, 3, 4, 5, 6])));
    assert!(decode(&file).is_ok());
    for n in 0..file.len() {
        assert!(decode(&file[..n]).is_err(), "{n} bytes read");
    }
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..file.len() {
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = file.clone();
            bad[i] = seed as u8;
            let _ = decode(&bad);
        }
    }
}

/// `gray` with the given `extra` elements, 1 x 4 pixels of 16/12 bits, as an explicit VR file.
fn file_with(photometric: &str, extra: Vec<Vec<u8>>, px: &[u16]) -> Vec<u8> {
    let enc = Enc::ExplicitLe;
    let mut g = gray12(photometric, extra);
    (g.rows, g.cols) = (1, px.len() as u16);
    part10(EXPLICIT, &g.body(enc, &words(enc, px)))
}

#[test]
fn vendor_quirks_fall_back_as_viewers_do() {
    let enc = Enc::ExplicitLe;
    let px = [100u16, 200, 300, 500];
    let minmax: Vec<u8> = px.iter().map(|&v| (((v - 100) as f64 / 400.0 * 255.0) + 0.5).floor() as u8).collect();
    // A window of width 0, or one that does not parse, is no window: min-max applies.
    for (c, w) in [("200", "0"), ("abc", "100"), ("", "")] {
        let f = file_with("MONOCHROME2", vec![el(enc, 0x0028_1050, "DS", &st(c)), el(enc, 0x0028_1051, "DS", &st(w))], &px);
        assert_eq!(decode(&f).unwrap().data, minmax, "{c}/{w}");
    }
    // An empty Number of Frames is one frame.
    let f = file_with("MONOCHROME2", vec![el(enc, 0x0028_0008, "IS", b"  ")], &px);
    assert_eq!(decode(&f).unwrap().data, minmax);
    // Pixel padding is left out of the range (and clamps to black).
    let f = file_with("MONOCHROME2", vec![el(enc, 0x0028_0120, "US", &us(enc, 0))], &[0, 100, 300, 500]);
    assert_eq!(decode(&f).unwrap().data, [0, 0, 128, 255]);
    // Presentation LUT Shape INVERSE inverts a MONOCHROME2 image, and does not invert a
    // MONOCHROME1 one twice.
    let inverse = || el(enc, 0x2050_0020, "CS", &st("INVERSE"));
    let f = file_with("MONOCHROME2", vec![inverse()], &px);
    assert_eq!(decode(&f).unwrap().data, minmax.iter().map(|v| 255 - v).collect::<Vec<_>>());
    let f = file_with("MONOCHROME1", vec![inverse()], &px);
    assert_eq!(decode(&f).unwrap().data, minmax.iter().map(|v| 255 - v).collect::<Vec<_>>());
    // A stray delimiter at the top level is stepped over.
    let mut g = gray12("MONOCHROME2", vec![el(enc, 0xFFFE_E00D, "", &[])]);
    (g.rows, g.cols) = (1, 4);
    assert_eq!(decode(&part10(EXPLICIT, &g.body(enc, &words(enc, &px)))).unwrap().data, minmax);
}

#[test]
fn eight_bit_data_with_an_identity_rescale_shows_as_it_is() {
    let enc = Enc::ExplicitLe;
    let mut g = Gray { rows: 1, cols: 4, allocated: 8, stored: 8, signed: false, photometric: "MONOCHROME2", extra: vec![] };
    g.extra = vec![el(enc, 0x0028_1052, "DS", &st("0")), el(enc, 0x0028_1053, "DS", &st("1"))];
    assert_eq!(decode(&part10(EXPLICIT, &g.body(enc, &[100, 110, 120, 130]))).unwrap().data, [100, 110, 120, 130]);
    // 8-bit samples in OW words of a big-endian file are swapped pairwise.
    let be = Enc::ExplicitBe;
    g.extra.clear();
    let mut body = g.body(be, &[]);
    let native = el(be, 0x7FE0_0010, "OB", &[]);
    body.truncate(body.len() - native.len());
    body.extend(el(be, 0x7FE0_0010, "OW", &[110, 100, 130, 120]));
    assert_eq!(decode(&part10("1.2.840.10008.1.2.2", &body)).unwrap().data, [100, 110, 120, 130]);
}

#[test]
fn a_file_saying_explicit_but_written_implicit_reads() {
    let px = [0u16, 4095, 2000, 1000];
    let mut g = gray12("MONOCHROME2", vec![]);
    (g.rows, g.cols) = (1, 4);
    let implicit = part10(EXPLICIT, &g.body(Enc::ImplicitLe, &words(Enc::ImplicitLe, &px)));
    let explicit = part10(EXPLICIT, &g.body(Enc::ExplicitLe, &words(Enc::ExplicitLe, &px)));
    assert_eq!(decode(&implicit).unwrap(), decode(&explicit).unwrap());
}

#[test]
fn signed_modality_luts_map_negative_inputs_whatever_their_vr() {
    let enc = Enc::ExplicitLe;
    // Signed pixels -2..1 through a Modality LUT from -2 (written as US 0xFFFE, as many writers
    // do) of 4 entries 0, 1000, 2000, 4095: min-max then spreads them.
    let item = [el(enc, 0x0028_3002, "US", &words(enc, &[4, 0xFFFE, 12])), el(enc, 0x0028_3006, "OW", &words(enc, &[0, 1000, 2000, 4095]))].concat();
    let mut g = gray12("MONOCHROME2", vec![el(enc, 0x0028_3000, "SQ", &el(enc, 0xFFFE_E000, "", &item))]);
    (g.rows, g.cols, g.signed) = (1, 4, true);
    let d = decode(&part10(EXPLICIT, &g.body(enc, &words(enc, &[0x0FFE, 0x0FFF, 0, 1])))).unwrap();
    let q = |m: f64| (m / 4095.0 * 255.0 + 0.5).floor() as u8;
    assert_eq!(d.data, [0, q(1000.0), q(2000.0), 255]);
}

#[test]
fn encapsulated_frames_without_an_offset_table_read() {
    // RLE, 8-bit, 1 x 4: the frame as the first item, with no Basic Offset Table before it.
    let mut frame = vec![0u8; 64];
    frame[0] = 1;
    frame[4] = 64;
    frame.extend([3, 10, 20, 30, 40]);
    frame.push(0);
    let enc = Enc::ExplicitLe;
    let g = Gray { rows: 1, cols: 4, allocated: 8, stored: 8, signed: false, photometric: "MONOCHROME2", extra: vec![] };
    let mut body = g.body(enc, &[]);
    let native = el(enc, 0x7FE0_0010, "OB", &[]);
    body.truncate(body.len() - native.len());
    body.extend(el_undefined(enc, 0x7FE0_0010, "OB", &[el(enc, 0xFFFE_E000, "", &frame), el(enc, 0xFFFE_E0DD, "", &[])].concat()));
    assert_eq!(decode(&part10("1.2.840.10008.1.2.5", &body)).unwrap().data, [10, 20, 30, 40]);
}

#[test]
fn lut_sequences_cost_their_own_length() {
    // Many VOI LUT sequences of 8 bytes, each an item of undefined length that is never closed:
    // a walk past each sequence's end would make this quadratic (minutes); it is linear.
    let enc = Enc::ExplicitLe;
    let one = el(enc, 0x0028_3010, "SQ", &el_undefined(enc, 0xFFFE_E000, "", &[]));
    let mut extra = vec![one.clone(); 20_000];
    extra.push(el(enc, 0xFFFE_E00D, "", &[]));
    let t = std::time::Instant::now();
    let _ = decode(&file_with("MONOCHROME2", extra, &[1, 2, 3, 4]));
    // Generous: the quadratic walk took over 10 s for this size.
    assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());
}
