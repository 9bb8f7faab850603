//! The decoder against streams CharLS wrote (fixtures/jpegls, made by
//! tools/make_jpegls_fixtures.py), and against hostile input.

use super::*;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jpegls")
}

fn stream(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(format!("{name}.jls"))).unwrap()
}

struct Case {
    name: String,
    width: usize,
    height: usize,
    components: usize,
    precision: u8,
}

/// fixtures/jpegls/manifest.txt: "name width height components precision: note".
fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(dir().join("manifest.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let head = l.split(':').next().unwrap();
            let f: Vec<&str> = head.split_whitespace().collect();
            assert_eq!(f.len(), 5, "{l}");
            Case {
                name: f[0].to_string(),
                width: f[1].parse().unwrap(),
                height: f[2].parse().unwrap(),
                components: f[3].parse().unwrap(),
                precision: f[4].parse().unwrap(),
            }
        })
        .collect()
}

fn expected(name: &str) -> Vec<u16> {
    std::fs::read(dir().join(format!("{name}.u16")))
        .unwrap()
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

#[test]
fn charls_streams_decode_exactly() {
    let cases = cases();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    for c in &cases {
        let f = decode(&stream(&c.name), 1 << 20).unwrap_or_else(|m| panic!("{}: {m}", c.name));
        assert_eq!(
            (f.width, f.height, f.components, f.precision),
            (c.width, c.height, c.components, c.precision),
            "{}",
            c.name
        );
        let want = expected(&c.name);
        assert_eq!(f.samples.len(), want.len(), "{}", c.name);
        if let Some(i) = f.samples.iter().zip(&want).position(|(a, b)| a != b) {
            let (px, k) = (i / c.components, i % c.components);
            panic!(
                "{}: sample {i} (x {}, y {}, component {k}) is {}, CharLS says {}",
                c.name,
                px % c.width,
                px / c.width,
                f.samples[i],
                want[i]
            );
        }
    }
}

#[test]
fn hp_colour_transform_is_refused() {
    let m = decode(&stream("hp1"), 1 << 20).unwrap_err();
    assert!(
        m.starts_with("JPEG-LS: ") && m.contains("HP colour transform 1"),
        "{m}"
    );
}

/// Streams for the hostile-input tests: every kind of scan, small.
const HOSTILE: [&str; 9] = [
    "runs37x23",
    "runs37x23_near2",
    "near12",
    "gray16",
    "rgb_ilv0",
    "rgb_ilv2_near2",
    "restart12",
    "restart_rgb_ilv1",
    "low2",
];

#[test]
fn every_truncation_is_an_error() {
    for name in HOSTILE {
        let data = stream(name);
        let full = decode(&data, 1 << 20).unwrap();
        let eoi = data.windows(2).rposition(|w| w == [0xFF, 0xD9]).unwrap();
        for n in 0..data.len() {
            match decode(&data[..n], 1 << 20) {
                // Only a cut at or inside EOI leaves the whole frame.
                Ok(f) => assert!(n >= eoi && f == full, "{name}: {n} bytes decoded"),
                Err(m) => assert!(m.starts_with("JPEG-LS: "), "{name}: {m}"),
            }
        }
    }
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn corrupt_bytes_give_errors_or_frames_never_panics() {
    let mut rng = Rng(0x5EED_0F15);
    for name in HOSTILE {
        let data = stream(name);
        // Every byte set to each of a few values.
        for i in 0..data.len() {
            for v in [0x00, 0xFF, 0x01, 0x7F, 0x80, 0xD0, 0xF7] {
                let mut bad = data.clone();
                bad[i] = v;
                if let Ok(f) = decode(&bad, 1 << 20) {
                    assert_eq!(f.samples.len(), f.width * f.height * f.components);
                }
            }
        }
        // Random corruptions of one to four bytes, and bit flips.
        for _ in 0..3000 {
            let mut bad = data.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(bad.len() as u64) as usize;
                bad[i] = match rng.below(3) {
                    0 => bad[i] ^ (1 << rng.below(8)),
                    _ => rng.next() as u8,
                };
            }
            if let Ok(f) = decode(&bad, 1 << 20) {
                assert_eq!(f.samples.len(), f.width * f.height * f.components);
            }
        }
    }
}

#[test]
fn random_scan_data_never_panics() {
    // A valid header over random bytes (long zero runs included): an error or a frame.
    let data = stream("rgb_ilv1");
    let sos = data.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let head = &data[..sos + 2 + usize::from(u16::from_be_bytes([data[sos + 2], data[sos + 3]]))];
    let mut rng = Rng(42);
    for round in 0..300 {
        let mut d = head.to_vec();
        for _ in 0..rng.below(3000) {
            d.push(match round % 3 {
                0 => rng.next() as u8,
                1 => [0u8, 0xFF, 0x7F, 0x80][rng.below(4) as usize],
                _ => (rng.next() as u8) & 0x0F,
            });
        }
        let _ = decode(&d, 1 << 20);
    }
}

/// A minimal stream: SOI, SOF55 (one component unless `nf`), SOS, `data`, EOI.
fn minimal(p: u8, w: u16, h: u16, near: u8, data: &[u8]) -> Vec<u8> {
    let mut d = vec![0xFF, 0xD8, 0xFF, 0xF7, 0, 11, p];
    d.extend_from_slice(&h.to_be_bytes());
    d.extend_from_slice(&w.to_be_bytes());
    d.extend_from_slice(&[1, 1, 0x11, 0]);
    d.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, near, 0, 0]);
    d.extend_from_slice(data);
    d.extend_from_slice(&[0xFF, 0xD9]);
    d
}

#[test]
fn a_flat_image_is_runs() {
    // 4x4 zeros: run bits 1111 (line 0, RUNindex 0..4), 11 and 11 (J = 1), 1 (J = 2).
    let d = minimal(8, 4, 4, 0, &[0xFF, 0x40]);
    let f = decode(&d, 16).unwrap();
    assert_eq!(f.samples, vec![0; 16]);
    // One bit less is a truncated scan.
    let d = minimal(8, 4, 4, 0, &[0xFF, 0x00]);
    let m = decode(&d, 16).unwrap_err();
    assert!(m.contains("ends early"), "{m}");
}

#[test]
fn huge_frames_are_refused_before_allocation() {
    for (w, h, limit) in [(65535u16, 65535u16, 1usize << 20), (4, 4, 15)] {
        let m = decode(&minimal(16, w, h, 0, &[0xFF, 0x40]), limit).unwrap_err();
        assert!(m.contains("exceeds the limit"), "{m}");
    }
    // Three components of 65535 x 65535 over a few bytes.
    let mut d = vec![0xFF, 0xD8, 0xFF, 0xF7, 0, 17, 8, 0xFF, 0xFF, 0xFF, 0xFF, 3];
    d.extend_from_slice(&[1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
    let m = decode(&d, 1 << 24).unwrap_err();
    assert!(m.contains("65535x65535x3 samples exceeds"), "{m}");
}

/// Replaces the bytes of segment `marker` (after its length) in `d`.
fn with_segment(d: &[u8], marker: u8, body: &[u8]) -> Vec<u8> {
    let at = d.windows(2).position(|w| w == [0xFF, marker]).unwrap();
    let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
    let mut out = d[..at + 2].to_vec();
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&d[at + 2 + len..]);
    out
}

/// Inserts a segment before the SOS.
fn before_scan(d: &[u8], marker: u8, body: &[u8]) -> Vec<u8> {
    let at = d.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut out = d[..at].to_vec();
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&d[at..]);
    out
}

#[test]
fn header_errors_say_what_is_wrong() {
    let ok = minimal(8, 4, 4, 0, &[0xFF, 0x40]);
    let err = |d: &[u8]| {
        let m = decode(d, 1 << 20).unwrap_err();
        assert!(m.starts_with("JPEG-LS: "), "{m}");
        m
    };
    let sof = |p: u8, h: u16, w: u16, sampling: u8| {
        let mut b = vec![p];
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&[1, 1, sampling, 0]);
        with_segment(&ok, 0xF7, &b)
    };
    assert!(err(&sof(1, 4, 4, 0x11)).contains("precision 1"));
    assert!(err(&sof(17, 4, 4, 0x11)).contains("precision 17"));
    assert!(err(&sof(8, 0, 4, 0x11)).contains("DNL"));
    assert!(err(&sof(8, 4, 0, 0x11)).contains("width 0"));
    assert!(err(&sof(8, 4, 4, 0x21)).contains("sampling factors 2x1"));
    assert!(
        err(&with_segment(&ok, 0xF7, &[8, 0, 4, 0, 4, 2, 1, 0x11, 0])).contains("does not match")
    );
    let sos = |b: &[u8]| with_segment(&ok, 0xDA, b);
    assert!(err(&sos(&[1, 1, 5, 0, 0, 0])).contains("mapping table 5"));
    assert!(err(&sos(&[1, 1, 0, 0, 0, 1])).contains("point transform 1"));
    assert!(err(&sos(&[1, 1, 0, 0, 3, 0])).contains("interleave mode 3"));
    assert!(err(&sos(&[1, 1, 0, 128, 0, 0])).contains("NEAR 128"));
    assert!(err(&sos(&[1, 2, 0, 0, 0, 0])).contains("component 2 is not in the frame"));
    assert!(err(&sos(&[2, 1, 0, 1, 0, 0, 0, 0])).contains("more than one scan"));
    assert!(err(&sos(&[1, 1, 0, 0, 0])).contains("invalid SOS"));
    // A second scan of the same component.
    let mut twice = ok[..ok.len() - 2].to_vec();
    twice.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0, 0, 0xFF, 0x40, 0xFF, 0xD9]);
    assert!(err(&twice).contains("more than one scan"));
    // LSE segments.
    let lse = |b: &[u8]| before_scan(&ok, 0xF8, b);
    assert_eq!(
        decode(&lse(&[1, 0, 255, 0, 3, 0, 7, 0, 21, 0, 64]), 16).unwrap(),
        decode(&ok, 16).unwrap()
    );
    assert!(err(&lse(&[1, 1, 0, 0, 3, 0, 7, 0, 21, 0, 64])).contains("MAXVAL 256"));
    assert!(err(&lse(&[1, 0, 0, 0, 9, 0, 7, 0, 21, 0, 64])).contains("T1 9, T2 7"));
    assert!(err(&lse(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2])).contains("RESET 2"));
    assert!(err(&lse(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0])).contains("length 12"));
    assert!(err(&lse(&[2, 1, 0, 1, 2, 3])).contains("mapping table"));
    assert!(err(&lse(&[4, 2, 0, 0, 0, 1, 0, 0, 0, 1])).contains("oversize"));
    assert!(err(&lse(&[5, 0])).contains("type 5"));
    assert!(err(&lse(&[])).contains("empty LSE"));
    // DRI of 1 or 5 bytes.
    assert!(err(&before_scan(&ok, 0xDD, &[1])).contains("DRI segment has length 3"));
    assert!(err(&before_scan(&ok, 0xDD, &[0, 0, 0, 0, 1])).contains("length 7"));
    // Other frame types, and not a stream at all.
    let mut sof3 = ok.clone();
    sof3[3] = 0xC3;
    assert!(err(&sof3).contains("SOF3 is JPEG lossless"));
    sof3[3] = 0xC0;
    assert!(err(&sof3).contains("SOF0"));
    sof3[3] = 0xF9;
    assert!(err(&sof3).contains("SOF57"));
    assert!(err(b"\x89PNG").contains("SOI"));
    assert!(err(b"").contains("SOI"));
    assert!(err(b"\xFF\xD8\xFF\xD9").contains("no SOF55"));
    assert!(
        err(&ok[..ok.len() - 6]).contains("truncated")
            || err(&ok[..ok.len() - 6]).contains("ends early")
    );
    let no_scan = [&ok[..15], &[0xFF, 0xD9][..]].concat();
    assert!(err(&no_scan).contains("no scan"), "{}", err(&no_scan));
}

#[test]
fn restart_intervals_of_every_dri_length_and_missing_markers() {
    let data = stream("restart12");
    let full = decode(&data, 1 << 20).unwrap();
    // The interval as 3 and 4 bytes (T.87 C.2.5).
    for body in [&[0u8, 0, 4][..], &[0, 0, 0, 4]] {
        assert_eq!(
            decode(&with_segment(&data, 0xDD, body), 1 << 20).unwrap(),
            full
        );
    }
    // Without restart markers the scan data reads on (wrongly) into the next interval or
    // stops at the marker; with the interval doubled the marker comes too early.
    let m = decode(&with_segment(&data, 0xDD, &[0, 8]), 1 << 20).unwrap_err();
    assert!(m.contains("ends early") && m.contains("0xFFD"), "{m}");
    // A restart marker removed.
    let rst = data.windows(2).position(|w| w == [0xFF, 0xD3]).unwrap();
    let cut = [&data[..rst], &data[rst + 2..]].concat();
    assert!(decode(&cut, 1 << 20).is_err());
    // An EOI where the third marker should be.
    let mut early = data[..rst].to_vec();
    early.extend_from_slice(&[0xFF, 0xD9]);
    let m = decode(&early, 1 << 20).unwrap_err();
    assert!(
        m.contains("expected a restart marker") || m.contains("ends early"),
        "{m}"
    );
    // Fill bytes before a restart marker are allowed.
    let filled = [&data[..rst], &[0xFF, 0xFF][..], &data[rst..]].concat();
    assert_eq!(decode(&filled, 1 << 20).unwrap(), full);
}

#[test]
fn the_longest_runs_reach_the_last_run_index() {
    // 65535 x 2 zeros, the last sample 200 (see tools/make_jpegls_fixtures.py): J = 15
    // chunks of 32768 at RUNindex 31, and an interruption coded with LIMIT - 16.
    let data = stream("longest_runs");
    let f = decode(&data, 1 << 20).unwrap();
    assert_eq!(
        (f.width, f.height, f.components, f.precision),
        (65535, 2, 1, 8)
    );
    let mut want = vec![0u16; 2 * 65535];
    want[2 * 65535 - 1] = 200;
    assert!(f.samples == want);
    // 131070 samples from 20 bytes of scan data: every cut is still an error.
    for n in 0..data.len() - 2 {
        assert!(decode(&data[..n], 1 << 20).is_err(), "{n} bytes");
    }
}

#[test]
fn charls_preset_maxval_streams_decode_as_charls_codes_them() {
    // CharLS writes MAXVAL 3000 in its LSE segment but codes with RANGE, LIMIT and clamping
    // of MAXVAL 4095 (2^P - 1); T.87's reading cannot decode such a stream, so the decoder
    // tries CharLS's. The fixtures' samples are CharLS's.
    for name in ["maxval3000", "maxval3000_near1"] {
        let data = stream(name);
        let mut strict = Decoder::new(&data, 1 << 20, false);
        assert!(strict.run().is_err() || strict.leftover, "{name}");
        assert_eq!(
            decode(&data, 1 << 20).unwrap().samples,
            expected(name),
            "{name}"
        );
    }
}
