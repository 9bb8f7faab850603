//! JPEG lossless (ITU-T T.81 process 14, Huffman, SOF3) decoding. Written by a helper.
//!
//! This is the codec of the DICOM transfer syntaxes 1.2.840.10008.1.2.4.57 (any predictor)
//! and 1.2.840.10008.1.2.4.70 (selection value 1). [`decode`] reads one stream (one frame):
//!
//! - markers: SOI, SOF3, DHT (several tables per segment, several segments), DRI, SOS, RSTn,
//!   EOI; APPn, COM and other unknown segments are skipped by their length; fill bytes (0xFF)
//!   before markers are allowed. Other frame types (DCT, arithmetic, hierarchical, JPEG-LS)
//!   are refused with a message naming them.
//! - scans: one scan with all components interleaved, or several scans each covering some of
//!   the components; predictors 1..=7 (T.81 table H.1), point transform (Al), restart
//!   intervals (prediction restarts as at the start of the scan, T.81 H.1.2.1), and the
//!   difference category 16 (32768, no extra bits, H.1.2.2). Reconstruction is modulo 2^16.
//! - sampling factors must be 1x1 (lossless frames with subsampling are refused).
//!
//! Every length is checked against the bytes that remain and the frame size against the
//! caller's `max_samples` before the sample buffer is allocated, so hostile input gives an
//! `Err` and never a panic or an outsized allocation. A scan whose data stops before its
//! last sample is an error: missing bits are taken as 1s only to peek past the end, never as
//! data.

use super::jpeg_common::{frame_fields, marker_after, segment, BitReader, Huffman};

/// A decoded lossless JPEG frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Samples per line (X).
    pub width: usize,
    /// Number of lines (Y).
    pub height: usize,
    /// Components per pixel (1 for gray, 3 for colour).
    pub components: usize,
    /// Sample precision P in bits (2..=16).
    pub precision: u8,
    /// width * height * components samples, row-major, components interleaved.
    pub samples: Vec<u16>,
}

/// Decodes one lossless JPEG stream. `max_samples` bounds width*height*components: a frame
/// header claiming more is an error, before anything is allocated.
pub fn decode(data: &[u8], max_samples: usize) -> Result<Frame, String> {
    Decoder::new(data, max_samples).run()
}

fn fail<T>(msg: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("JPEG lossless: {msg}"))
}

/// Decodes one difference: its category's Huffman code, then its bits (T.81 F.2.2.1 and
/// H.1.2.2, where category 16 is 32768 with no extra bits).
#[inline(always)]
fn difference(bits: &mut BitReader, t: &Huffman) -> Result<i32, String> {
    match bits.symbol(t)? {
        16 => Ok(32768),
        s @ 0..=15 => bits.extend(u32::from(s)),
        s => fail(format!("Huffman symbol {s} is not a difference category (0..=16)")),
    }
}


struct FrameHeader {
    width: usize,
    height: usize,
    precision: u8,
    /// Component identifiers, in frame order.
    ids: Vec<u8>,
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    max_samples: usize,
    tables: [Option<Huffman>; 4],
    restart_interval: usize,
    frame: Option<FrameHeader>,
    samples: Vec<u16>,
    /// Per frame component: whether a scan has decoded it.
    decoded: Vec<bool>,
}

impl<'a> Decoder<'a> {
    fn new(data: &'a [u8], max_samples: usize) -> Self {
        Decoder {
            data,
            pos: 0,
            max_samples,
            tables: [None, None, None, None],
            restart_interval: 0,
            frame: None,
            samples: Vec::new(),
            decoded: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Frame, String> {
        if self.data.get(..2) != Some(&[0xFF, 0xD8]) {
            return fail("missing SOI marker (not a JPEG stream)");
        }
        self.pos = 2;
        let mut after_scan = false;
        while let Some(marker) = marker_after(self.data, &mut self.pos, after_scan, |m| m == 0, |m| m == 0, "JPEG lossless: ")? {
            after_scan = false;
            match marker {
                0xD9 => break,
                0xD8 => return fail("unexpected second SOI marker"),
                0xD0..=0xD7 | 0x01 => {}
                0xC3 => {
                    let seg = self.segment()?;
                    self.frame_header(seg)?;
                }
                0xC4 => {
                    let seg = self.segment()?;
                    self.huffman_tables(seg)?;
                }
                0xDD => {
                    let seg = self.segment()?;
                    if seg.len() != 2 {
                        return fail(format!(
                            "DRI segment has length {} (expected 4)",
                            seg.len() + 2
                        ));
                    }
                    self.restart_interval = usize::from(u16::from_be_bytes([seg[0], seg[1]]));
                }
                0xDA => {
                    let seg = self.segment()?;
                    self.scan(seg)?;
                    after_scan = true;
                }
                0xC0 => return fail("SOF0 (baseline DCT) is not a lossless frame"),
                0xC1 => return fail("SOF1 (extended DCT) is not a lossless frame"),
                0xC2 => return fail("SOF2 (progressive DCT) is not a lossless frame"),
                0xC5..=0xC7 | 0xCD..=0xCF | 0xDE | 0xDF => {
                    return fail(format!(
                        "marker 0xFF{marker:02X} belongs to a hierarchical (differential) stream, which is not supported"
                    ));
                }
                0xC9..=0xCB => {
                    return fail(format!(
                        "SOF{} is arithmetic-coded; only Huffman-coded lossless (SOF3) is supported",
                        marker - 0xC0
                    ));
                }
                0xC8 => return fail("JPG extension frame (0xFFC8) is not supported"),
                0xF7 => return fail("SOF55 is JPEG-LS, not JPEG lossless (process 14)"),
                _ => {
                    self.segment()?;
                }
            }
        }
        let Some(frame) = self.frame.take() else {
            return fail("no SOF3 frame header");
        };
        if let Some(c) = self.decoded.iter().position(|&d| !d) {
            return if self.decoded.iter().any(|&d| d) {
                fail(format!(
                    "component {} is in no scan (stream truncated?)",
                    frame.ids[c]
                ))
            } else {
                fail("no scan (stream truncated?)")
            };
        }
        Ok(Frame {
            width: frame.width,
            height: frame.height,
            components: frame.ids.len(),
            precision: frame.precision,
            samples: self.samples,
        })
    }

    /// The body of the marker segment at `pos` (after its length field).
    fn segment(&mut self) -> Result<&'a [u8], String> {
        segment(self.data, &mut self.pos, "JPEG lossless: ")
    }

    fn frame_header(&mut self, seg: &[u8]) -> Result<(), String> {
        if self.frame.is_some() {
            return fail("more than one frame header");
        }
        let f = frame_fields(seg, "SOF3", self.max_samples).or_else(fail)?;
        let (precision, height, width, nf) = (f.precision, f.height, f.width, f.components.len());
        if !(2..=16).contains(&precision) {
            return fail(format!("sample precision {precision} is outside 2..=16"));
        }
        if let Some(c) = f.components.iter().find(|c| (c.h, c.v) != (1, 1)) {
            return fail(format!("component {} has sampling factors {}x{}; only 1x1 is supported for lossless", c.id, c.h, c.v));
        }
        let ids: Vec<u8> = f.components.iter().map(|c| c.id).collect();
        self.samples = vec![0; width * height * nf];
        self.decoded = vec![false; nf];
        self.frame = Some(FrameHeader {
            width,
            height,
            precision,
            ids,
        });
        Ok(())
    }

    fn huffman_tables(&mut self, mut seg: &[u8]) -> Result<(), String> {
        while let Some((&tcth, rest)) = seg.split_first() {
            let (class, id) = (tcth >> 4, usize::from(tcth & 15));
            if class > 1 || id > 3 {
                return fail(format!(
                    "DHT table class {class} / identifier {id} out of range"
                ));
            }
            let Some(counts) = rest.get(..16) else {
                return fail("truncated DHT segment");
            };
            let mut bits = [0u8; 16];
            bits.copy_from_slice(counts);
            let n: usize = bits.iter().map(|&c| usize::from(c)).sum();
            if n > 256 {
                return fail(format!("DHT table has {n} codes (more than 256)"));
            }
            let Some(values) = rest.get(16..16 + n) else {
                return fail("truncated DHT segment");
            };
            let table = Huffman::new(&bits, values, "JPEG lossless: ")?;
            // Lossless scans use only class 0 (DC) tables; class 1 is checked and ignored.
            if class == 0 {
                self.tables[id] = Some(table);
            }
            seg = &rest[16 + n..];
        }
        Ok(())
    }

    fn scan(&mut self, seg: &[u8]) -> Result<(), String> {
        let Some(frame) = self.frame.as_ref() else {
            return fail("SOS before the SOF3 frame header");
        };
        let ns = usize::from(*seg.first().unwrap_or(&0));
        if !(1..=4).contains(&ns) || seg.len() != 4 + 2 * ns {
            return fail(format!(
                "invalid SOS header ({} bytes for {ns} components)",
                seg.len() + 2
            ));
        }
        let mut comps = Vec::with_capacity(ns);
        let mut tables: Vec<&Huffman> = Vec::with_capacity(ns);
        for c in seg[1..1 + 2 * ns].chunks_exact(2) {
            let Some(idx) = frame.ids.iter().position(|&id| id == c[0]) else {
                return fail(format!("scan component {} is not in the frame", c[0]));
            };
            if comps.contains(&idx) || self.decoded[idx] {
                return fail(format!("component {} is in more than one scan", c[0]));
            }
            let td = usize::from(c[1] >> 4);
            let Some(Some(t)) = self.tables.get(td) else {
                return fail(format!("scan uses undefined Huffman table {td}"));
            };
            comps.push(idx);
            tables.push(t);
        }
        let predictor = seg[1 + 2 * ns];
        // seg[2 + 2 * ns] is Se (0 for lossless; ignored, some encoders write other values).
        let pt = seg[3 + 2 * ns] & 15;
        if !(1..=7).contains(&predictor) {
            return fail(format!(
                "predictor selection value {predictor} is not 1..=7"
            ));
        }
        if pt >= frame.precision {
            return fail(format!(
                "point transform {pt} is not below the precision {}",
                frame.precision
            ));
        }
        let params = ScanParams {
            width: frame.width,
            height: frame.height,
            nc: frame.ids.len(),
            initial: 1i32 << (frame.precision - pt - 1),
            predictor,
            restart_interval: self.restart_interval,
        };
        let mut bits = BitReader::new(self.data, self.pos, "JPEG lossless: ");
        decode_scan(&mut bits, &params, &comps, &tables, &mut self.samples)?;
        self.pos = bits.pos;
        if pt > 0 {
            let nc = params.nc;
            for &c in &comps {
                for s in self.samples.iter_mut().skip(c).step_by(nc) {
                    *s = (u32::from(*s) << pt) as u16;
                }
            }
        }
        for &c in &comps {
            self.decoded[c] = true;
        }
        Ok(())
    }
}

struct ScanParams {
    width: usize,
    height: usize,
    /// Components in the frame (the stride between pixels).
    nc: usize,
    /// Prediction for the first sample of a scan or restart interval: 2^(P-Pt-1).
    initial: i32,
    predictor: u8,
    /// MCUs (pixels) per restart interval, 0 for none.
    restart_interval: usize,
}

/// Decodes the scan's samples into `samples` (before the point transform's shift).
fn decode_scan(
    bits: &mut BitReader,
    p: &ScanParams,
    comps: &[usize],
    tables: &[&Huffman],
    samples: &mut [u16],
) -> Result<(), String> {
    let (nc, stride) = (p.nc, p.width * p.nc);
    // Position where the current restart interval began: its row is predicted as the
    // first line of a scan (T.81 H.1.2.1).
    let (mut rx, mut ry) = (0usize, 0usize);
    let mut left = p.restart_interval;
    for y in 0..p.height {
        let row = y * stride;
        for x in 0..p.width {
            if p.restart_interval != 0 {
                if left == 0 {
                    bits.restart()?;
                    left = p.restart_interval;
                    (rx, ry) = (x, y);
                }
                left -= 1;
            }
            let base = row + x * nc;
            for (&c, &t) in comps.iter().zip(tables) {
                let i = base + c;
                let diff = difference(bits, t)?;
                let pred = if y == ry {
                    if x == rx {
                        p.initial
                    } else {
                        i32::from(samples[i - nc])
                    }
                } else if x == 0 {
                    i32::from(samples[i - stride])
                } else {
                    let ra = i32::from(samples[i - nc]);
                    let rb = i32::from(samples[i - stride]);
                    let rc = i32::from(samples[i - stride - nc]);
                    match p.predictor {
                        1 => ra,
                        2 => rb,
                        3 => rc,
                        4 => ra + rb - rc,
                        5 => ra + ((rb - rc) >> 1),
                        6 => rb + ((ra - rc) >> 1),
                        _ => (ra + rb) >> 1,
                    }
                };
                samples[i] = ((pred + diff) & 0xFFFF) as u16;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a small deterministic generator for test images.
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

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Tables {
        /// Code lengths from the scan's category frequencies, one table per component.
        Optimal,
        /// One fixed table covering all 17 categories (codes of 3..=10 bits).
        Fixed,
        /// One fixed table with codes of 2..=16 bits (mostly the slow path).
        Deep,
    }

    /// What the test encoder writes.
    #[derive(Clone, Debug)]
    struct Enc {
        width: usize,
        height: usize,
        nc: usize,
        precision: u8,
        pt: u8,
        predictor: u8,
        /// Frame component indices of each scan, in the order the scan codes them.
        scans: Vec<Vec<usize>>,
        restart: usize,
        tables: Tables,
        /// Extra 0xFF fill bytes before every marker after SOI.
        fill: bool,
    }

    impl Enc {
        fn new(width: usize, height: usize, nc: usize, precision: u8, predictor: u8) -> Enc {
            Enc {
                width,
                height,
                nc,
                precision,
                pt: 0,
                predictor,
                scans: vec![(0..nc).collect()],
                restart: 0,
                tables: Tables::Optimal,
                fill: false,
            }
        }
    }

    struct BitWriter {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }

    impl BitWriter {
        fn put(&mut self, bits: u32, len: u32) {
            if len == 0 {
                return;
            }
            self.acc = (self.acc << len) | u64::from(bits & ((1u32 << len) - 1));
            self.n += len;
            while self.n >= 8 {
                let b = (self.acc >> (self.n - 8)) as u8;
                self.out.push(b);
                if b == 0xFF {
                    self.out.push(0);
                }
                self.n -= 8;
            }
            self.acc &= (1u64 << self.n) - 1;
        }
        fn pad(&mut self) {
            if self.n > 0 {
                self.put(0xFF, 8 - self.n);
            }
        }
    }

    fn category(d: i32) -> u32 {
        if d == 32768 {
            16
        } else {
            32 - d.unsigned_abs().leading_zeros()
        }
    }

    /// Canonical code lengths -> (BITS, HUFFVAL, code and length per symbol).
    fn canonical(lengths: &[u32; 17]) -> ([u8; 16], Vec<u8>, [(u32, u32); 17]) {
        let mut bits = [0u8; 16];
        let mut vals = Vec::new();
        let mut codes = [(0u32, 0u32); 17];
        let mut code = 0u32;
        for len in 1..=16u32 {
            for s in 0..17 {
                if lengths[s] == len {
                    bits[len as usize - 1] += 1;
                    vals.push(s as u8);
                    codes[s] = (code, len);
                    code += 1;
                }
            }
            code <<= 1;
        }
        (bits, vals, codes)
    }

    const FIXED: [u32; 17] = [3, 3, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10];
    const DEEP: [u32; 17] = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16, 16];

    /// Huffman code lengths for the categories' frequencies (unused categories get none),
    /// with a reserved all-ones code; the fixed table if a code would exceed 16 bits.
    fn optimal_lengths(freq: &[u64; 17]) -> [u32; 17] {
        // Nodes: (weight, leaves below); leaf 17 is the reserved code.
        let mut nodes: Vec<(u64, Vec<usize>)> = (0..17)
            .filter(|&s| freq[s] > 0)
            .map(|s| (freq[s] * 2, vec![s]))
            .collect();
        nodes.push((1, vec![17]));
        let mut len = [0u32; 18];
        while nodes.len() > 1 {
            nodes.sort_by_key(|n| std::cmp::Reverse(n.0));
            let (wa, la) = nodes.pop().unwrap();
            let (wb, lb) = nodes.pop().unwrap();
            for &s in la.iter().chain(&lb) {
                len[s] += 1;
            }
            nodes.push((wa + wb, la.into_iter().chain(lb).collect()));
        }
        let mut out = [0u32; 17];
        out.copy_from_slice(&len[..17]);
        if out.iter().any(|&l| l > 16) {
            FIXED
        } else {
            out
        }
    }

    /// Encodes `img` (width*height*nc samples below 2^precision) as a lossless JPEG.
    fn encode(e: &Enc, img: &[u16]) -> Vec<u8> {
        let (w, h, nc) = (e.width, e.height, e.nc);
        assert_eq!(img.len(), w * h * nc);
        let red: Vec<i32> = img.iter().map(|&v| i32::from(v >> e.pt)).collect();
        let mut out = vec![0xFF, 0xD8];
        let marker = |out: &mut Vec<u8>, m: u8| {
            if e.fill {
                out.extend_from_slice(&[0xFF, 0xFF]);
            }
            out.extend_from_slice(&[0xFF, m]);
        };
        let segment = |out: &mut Vec<u8>, m: u8, body: &[u8]| {
            marker(out, m);
            out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(body);
        };
        segment(&mut out, 0xE0, b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0");
        segment(&mut out, 0xFE, b"crema test encoder");
        let mut sof = vec![e.precision];
        sof.extend_from_slice(&(h as u16).to_be_bytes());
        sof.extend_from_slice(&(w as u16).to_be_bytes());
        sof.push(nc as u8);
        for c in 0..nc {
            sof.extend_from_slice(&[10 + c as u8 * 7, 0x11, 0]);
        }
        segment(&mut out, 0xC3, &sof);
        if e.restart > 0 {
            segment(&mut out, 0xDD, &(e.restart as u16).to_be_bytes());
        }
        let initial = 1i32 << (e.precision - e.pt - 1);
        for scan in &e.scans {
            // (scan component, category, extra bits) per sample; None marks a restart.
            let mut events: Vec<Option<(usize, u32, u32)>> = Vec::new();
            let mut freq = vec![[0u64; 17]; scan.len()];
            let mut start = 0usize; // pixel number where the restart interval began
            for n in 0..w * h {
                if e.restart > 0 && n > 0 && n % e.restart == 0 {
                    events.push(None);
                    start = n;
                }
                let (y, x) = (n / w, n % w);
                let first_row = y == start / w;
                for (k, &c) in scan.iter().enumerate() {
                    let at = |xx: usize, yy: usize| red[(yy * w + xx) * nc + c];
                    let px = if n == start {
                        initial
                    } else if first_row {
                        at(x - 1, y)
                    } else if x == 0 {
                        at(x, y - 1)
                    } else {
                        let (ra, rb, rc) = (at(x - 1, y), at(x, y - 1), at(x - 1, y - 1));
                        match e.predictor {
                            1 => ra,
                            2 => rb,
                            3 => rc,
                            4 => ra + rb - rc,
                            5 => ra + ((rb - rc) >> 1),
                            6 => rb + ((ra - rc) >> 1),
                            7 => (ra + rb) >> 1,
                            _ => unreachable!(),
                        }
                    };
                    let mut d = (at(x, y) - px).rem_euclid(65536);
                    if d > 32768 {
                        d -= 65536;
                    }
                    let s = category(d);
                    let extra = if d < 0 {
                        (d + (1 << s) - 1) as u32
                    } else {
                        d as u32
                    };
                    freq[k][s as usize] += 1;
                    events.push(Some((k, s, extra)));
                }
            }
            let lengths: Vec<[u32; 17]> = match e.tables {
                Tables::Optimal => freq.iter().map(optimal_lengths).collect(),
                Tables::Fixed => vec![FIXED],
                Tables::Deep => vec![DEEP],
            };
            let tabs: Vec<_> = lengths.iter().map(canonical).collect();
            // The first table in a segment of its own, the others together in one.
            let mut rest = Vec::new();
            for (id, (bits, vals, _)) in tabs.iter().enumerate() {
                let mut body = vec![id as u8];
                body.extend_from_slice(bits);
                body.extend_from_slice(vals);
                if id == 0 {
                    segment(&mut out, 0xC4, &body);
                } else {
                    rest.extend_from_slice(&body);
                }
            }
            if !rest.is_empty() {
                segment(&mut out, 0xC4, &rest);
            }
            let mut sos = vec![scan.len() as u8];
            for (k, &c) in scan.iter().enumerate() {
                let td = if tabs.len() > 1 { k as u8 } else { 0 };
                sos.extend_from_slice(&[10 + c as u8 * 7, td << 4]);
            }
            sos.extend_from_slice(&[e.predictor, 0, e.pt]);
            segment(&mut out, 0xDA, &sos);
            let mut bw = BitWriter {
                out: std::mem::take(&mut out),
                acc: 0,
                n: 0,
            };
            let mut rst = 0u8;
            for ev in events {
                match ev {
                    Some((k, s, extra)) => {
                        let (code, len) = tabs[k.min(tabs.len() - 1)].2[s as usize];
                        assert!(len > 0);
                        bw.put(code, len);
                        if s < 16 {
                            bw.put(extra, s);
                        }
                    }
                    None => {
                        bw.pad();
                        bw.out.extend_from_slice(&[0xFF, 0xD0 + rst]);
                        rst = (rst + 1) & 7;
                    }
                }
            }
            bw.pad();
            out = bw.out;
        }
        marker(&mut out, 0xD9);
        out
    }

    /// A test image: gradients, noise and occasional jumps to any value.
    fn image(rng: &mut Rng, w: usize, h: usize, nc: usize, precision: u8) -> Vec<u16> {
        let max = 1u64 << precision;
        let noise = rng.below(6);
        let mut img = Vec::with_capacity(w * h * nc);
        for y in 0..h {
            for x in 0..w {
                for c in 0..nc {
                    let smooth = (x as u64 * 37 + y as u64 * 13 + c as u64 * 1000) % max;
                    let v = if rng.below(20) == 0 {
                        rng.below(max)
                    } else {
                        (smooth + rng.below(1 << noise)) % max
                    };
                    img.push(v as u16);
                }
            }
        }
        img
    }

    /// Encodes, decodes and checks every sample (the low `pt` bits are lost).
    fn round_trip(e: &Enc, img: &[u16]) {
        let data = encode(e, img);
        let f =
            decode(&data, e.width * e.height * e.nc).unwrap_or_else(|m| panic!("{m} for {e:?}"));
        assert_eq!(
            (f.width, f.height, f.components, f.precision),
            (e.width, e.height, e.nc, e.precision)
        );
        let want: Vec<u16> = img.iter().map(|&v| (v >> e.pt) << e.pt).collect();
        if f.samples != want {
            let i = f
                .samples
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap();
            panic!(
                "sample {i} differs ({} != {}) for {e:?}",
                f.samples[i], want[i]
            );
        }
    }

    #[test]
    fn predictors_and_precisions() {
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        for predictor in 1..=7 {
            for (i, &p) in [2u8, 8, 12, 16, 5, 15].iter().enumerate() {
                let (w, h) = (1 + rng.below(40) as usize, 1 + rng.below(30) as usize);
                let mut e = Enc::new(w, h, 1, p, predictor);
                e.tables = [Tables::Optimal, Tables::Fixed, Tables::Deep][i % 3];
                let img = image(&mut rng, w, h, 1, p);
                round_trip(&e, &img);
            }
        }
    }

    #[test]
    fn odd_sizes() {
        let mut rng = Rng(77);
        for &(w, h) in &[(1, 1), (1, 9), (9, 1), (7, 5), (2, 2), (300, 1), (1, 300)] {
            for predictor in 1..=7 {
                for nc in [1, 3] {
                    let e = Enc::new(w, h, nc, 12, predictor);
                    round_trip(&e, &image(&mut rng, w, h, nc, 12));
                }
            }
        }
    }

    #[test]
    fn point_transform() {
        let mut rng = Rng(99);
        for &(p, pt) in &[(12u8, 3u8), (16, 4), (8, 7), (2, 1), (16, 15), (10, 1)] {
            for predictor in [1, 4, 6, 7] {
                let mut e = Enc::new(23, 17, 1, p, predictor);
                e.pt = pt;
                round_trip(&e, &image(&mut rng, 23, 17, 1, p));
                let mut e = Enc::new(13, 11, 3, p, predictor);
                e.pt = pt;
                e.scans = vec![vec![1], vec![0, 2]];
                round_trip(&e, &image(&mut rng, 13, 11, 3, p));
            }
        }
    }

    #[test]
    fn colour_scans() {
        let mut rng = Rng(5);
        let layouts: Vec<Vec<Vec<usize>>> = vec![
            vec![vec![0, 1, 2]],
            vec![vec![0], vec![1], vec![2]],
            vec![vec![2], vec![0], vec![1]],
            vec![vec![2, 0], vec![1]],
            vec![vec![1, 2, 0]],
        ];
        for (i, scans) in layouts.into_iter().enumerate() {
            for predictor in 1..=7 {
                let (w, h) = (1 + rng.below(30) as usize, 1 + rng.below(20) as usize);
                let mut e = Enc::new(w, h, 3, [8, 12, 16][i % 3], predictor);
                e.scans = scans.clone();
                e.tables = [Tables::Optimal, Tables::Fixed][predictor as usize % 2];
                round_trip(&e, &image(&mut rng, w, h, 3, e.precision));
            }
        }
        // Four components in one scan, and two.
        let mut e = Enc::new(9, 8, 4, 8, 5);
        round_trip(&e, &image(&mut rng, 9, 8, 4, 8));
        e.scans = vec![vec![3, 1], vec![0, 2]];
        round_trip(&e, &image(&mut rng, 9, 8, 4, 8));
    }

    #[test]
    fn restart_intervals() {
        let mut rng = Rng(31337);
        for &(w, h, ri) in &[
            (10, 6, 10), // one row per interval
            (10, 6, 20),
            (10, 6, 7), // does not divide the row
            (10, 6, 1),
            (10, 6, 3),
            (10, 6, 60), // the whole image
            (10, 6, 1000),
            (1, 9, 2),
            (9, 1, 4),
            (7, 5, 13),
        ] {
            for predictor in 1..=7 {
                for nc in [1, 3] {
                    let mut e = Enc::new(w, h, nc, 16, predictor);
                    e.restart = ri;
                    e.fill = predictor % 2 == 0;
                    round_trip(&e, &image(&mut rng, w, h, nc, 16));
                    if nc == 3 {
                        e.scans = vec![vec![0], vec![2, 1]];
                        round_trip(&e, &image(&mut rng, w, h, nc, 16));
                    }
                }
            }
        }
    }

    #[test]
    fn category_16() {
        // A jump of 32768 (either way) is difference 32768, coded with no extra bits.
        for img in [
            vec![0u16, 32768, 0, 65535, 32767, 0],
            vec![32768u16, 0, 32768, 0, 1, 32769],
        ] {
            for tables in [Tables::Optimal, Tables::Fixed, Tables::Deep] {
                let mut e = Enc::new(6, 1, 1, 16, 1);
                e.tables = tables;
                round_trip(&e, &img);
                // The first sample's prediction is 32768: 0 differs from it by 32768 too.
                let data = encode(&e, &img);
                assert_eq!(decode(&data, 6).unwrap().samples, img);
            }
        }
        let mut e = Enc::new(2, 2, 1, 16, 7);
        e.tables = Tables::Fixed;
        round_trip(&e, &[0, 65535, 32768, 0]);
    }

    #[test]
    fn constant_image_single_code() {
        // Only category 0: a one-symbol table (1-bit code); all data is 0 bits then padding.
        for (w, h) in [(1, 1), (8, 1), (9, 3), (64, 64)] {
            let e = Enc::new(w, h, 1, 8, 1);
            let img = vec![128u16; w * h];
            round_trip(&e, &img);
        }
    }

    fn fixture(name: &str) -> (Vec<u8>, Vec<u16>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jpeg-lossless");
        let jpeg = std::fs::read(dir.join(format!("{name}.jpg"))).unwrap();
        let raw = std::fs::read(dir.join(format!("{name}.u16"))).unwrap();
        let want = raw
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        (jpeg, want)
    }

    const FIXTURES: [(&str, usize, usize, usize, u8); 3] = [
        ("gdcm-gray16", 40, 30, 1, 16),
        ("gdcm-gray12", 40, 30, 1, 16),
        ("gdcm-rgb8", 40, 30, 3, 8),
    ];

    #[test]
    fn gdcm_streams() {
        for (name, w, h, nc, p) in FIXTURES {
            let (jpeg, want) = fixture(name);
            let f = decode(&jpeg, 1 << 20).unwrap_or_else(|m| panic!("{name}: {m}"));
            assert_eq!(
                (f.width, f.height, f.components, f.precision),
                (w, h, nc, p),
                "{name}"
            );
            assert!(f.samples == want, "{name}: samples differ");
        }
    }

    #[test]
    fn truncated_and_corrupt_streams() {
        let mut rng = Rng(4242);
        let mut streams: Vec<Vec<u8>> = FIXTURES.iter().map(|f| fixture(f.0).0).collect();
        let mut e = Enc::new(11, 7, 3, 12, 6);
        e.restart = 5;
        e.scans = vec![vec![0], vec![1, 2]];
        streams.push(encode(&e, &image(&mut rng, 11, 7, 3, 12)));
        let mut e = Enc::new(13, 5, 1, 16, 4);
        e.tables = Tables::Deep;
        streams.push(encode(&e, &image(&mut rng, 13, 5, 1, 16)));
        for data in &streams {
            let full = decode(data, 1 << 20).unwrap();
            // Every truncation: an error, or (cut inside EOI only) the same frame.
            let eoi = data.windows(2).rposition(|w| w == [0xFF, 0xD9]).unwrap();
            for n in 0..data.len() {
                match decode(&data[..n], 1 << 20) {
                    Ok(f) => assert!(n >= eoi && f == full, "truncated to {n} bytes decoded"),
                    Err(m) => assert!(m.starts_with("JPEG lossless: "), "{m}"),
                }
            }
            // Single-byte corruptions and a few multi-byte ones: Ok or Err, never a panic.
            for _ in 0..3000 {
                let mut bad = data.clone();
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(bad.len() as u64) as usize;
                    bad[i] = match rng.below(4) {
                        0 => 0xFF,
                        1 => 0,
                        _ => rng.next() as u8,
                    };
                }
                if let Ok(f) = decode(&bad, 1 << 20) {
                    assert_eq!(f.samples.len(), f.width * f.height * f.components);
                }
            }
            // Every single byte set to each of a few values.
            for i in 0..data.len() {
                for v in [0x00, 0xFF, 0x01, 0x80, 0x10, 0xC0] {
                    let mut bad = data.clone();
                    bad[i] = v;
                    let _ = decode(&bad, 1 << 20);
                }
            }
        }
    }

    #[test]
    fn scan_ending_early() {
        let mut rng = Rng(8);
        let e = Enc::new(20, 10, 1, 12, 1);
        let data = encode(&e, &image(&mut rng, 20, 10, 1, 12));
        // Cut the scan data in the middle but keep EOI.
        let mut cut = data[..data.len() / 2].to_vec();
        cut.extend_from_slice(&[0xFF, 0xD9]);
        let m = decode(&cut, 200).unwrap_err();
        assert!(m.contains("ends early"), "{m}");
        let m = decode(&data[..data.len() / 2], 200).unwrap_err();
        assert_eq!(m, "JPEG lossless: truncated scan data");
    }

    /// A minimal header: SOI, SOF with the given marker and fields, DHT, SOS.
    fn header(sof: u8, p: u8, w: u16, h: u16, sampling: u8, predictor: u8) -> Vec<u8> {
        let mut d = vec![0xFF, 0xD8, 0xFF, sof, 0, 11, p];
        d.extend_from_slice(&h.to_be_bytes());
        d.extend_from_slice(&w.to_be_bytes());
        d.extend_from_slice(&[1, 1, sampling, 0]);
        d.extend_from_slice(&[
            0xFF, 0xC4, 0, 20, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        d.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, predictor, 0, 0]);
        d.extend_from_slice(&[0x00, 0x00, 0xFF, 0xD9]);
        d
    }

    #[test]
    fn header_errors() {
        // The minimal header decodes (one 1-bit code, category 0).
        let ok = decode(&header(0xC3, 8, 4, 4, 0x11, 1), 16).unwrap();
        assert_eq!(ok.samples, vec![128; 16]);
        let err = |d: &[u8], max: usize| decode(d, max).unwrap_err();
        assert!(
            err(&header(0xC3, 16, 65535, 65535, 0x11, 1), 1 << 20).contains("exceeds the limit")
        );
        assert!(err(&header(0xC3, 8, 4, 4, 0x11, 1), 15).contains("exceeds the limit"));
        assert!(err(&header(0xC3, 8, 0, 4, 0x11, 1), 100).contains("width 0"));
        assert!(err(&header(0xC3, 8, 4, 0, 0x11, 1), 100).contains("DNL"));
        assert!(err(&header(0xC3, 1, 4, 4, 0x11, 1), 100).contains("precision"));
        assert!(err(&header(0xC3, 17, 4, 4, 0x11, 1), 100).contains("precision"));
        assert!(err(&header(0xC3, 8, 4, 4, 0x21, 1), 100).contains("sampling"));
        assert!(err(&header(0xC3, 8, 4, 4, 0x11, 0), 100).contains("predictor"));
        assert!(err(&header(0xC3, 8, 4, 4, 0x11, 8), 100).contains("predictor"));
        assert_eq!(
            err(&header(0xC1, 8, 4, 4, 0x11, 1), 100),
            "JPEG lossless: SOF1 (extended DCT) is not a lossless frame"
        );
        assert!(err(&header(0xC0, 8, 4, 4, 0x11, 1), 100).contains("baseline"));
        assert!(err(&header(0xC2, 8, 4, 4, 0x11, 1), 100).contains("progressive"));
        assert!(err(&header(0xCB, 8, 4, 4, 0x11, 1), 100).contains("arithmetic"));
        assert!(err(&header(0xC7, 8, 4, 4, 0x11, 1), 100).contains("hierarchical"));
        assert!(err(&header(0xF7, 8, 4, 4, 0x11, 1), 100).contains("JPEG-LS"));
        assert!(err(b"\x89PNG", 100).contains("SOI"));
        assert!(err(b"", 100).contains("SOI"));
        assert!(err(b"\xFF\xD8\xFF\xD9", 100).contains("no SOF3"));
        // Point transform not below the precision.
        let mut d = header(0xC3, 8, 4, 4, 0x11, 1);
        let al = d.len() - 5;
        d[al] = 8;
        assert!(err(&d, 100).contains("point transform"));
        // Scan referring to a table that was never defined.
        let mut d = header(0xC3, 8, 4, 4, 0x11, 1);
        let td = d.len() - 8;
        d[td] = 0x20;
        assert!(err(&d, 100).contains("undefined Huffman table"));
        // An over-full Huffman table.
        let mut d = header(0xC3, 8, 4, 4, 0x11, 1);
        let dht = d.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
        d.splice(
            dht + 3..dht + 22,
            [
                22, 0x00, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2,
            ],
        );
        assert!(
            err(&d, 100).contains("invalid Huffman table"),
            "{}",
            err(&d, 100)
        );
        // A DHT whose counts promise more values than the segment holds.
        let mut d = header(0xC3, 8, 4, 4, 0x11, 1);
        d[dht + 6] = 2;
        assert!(err(&d, 100).contains("truncated DHT"));
    }
}
