//! JPEG-LS (ITU-T T.87 | ISO/IEC 14495-1) decoding. Written by a helper.
//!
//! This is the codec of the DICOM transfer syntaxes 1.2.840.10008.1.2.4.80 (JPEG-LS lossless)
//! and 1.2.840.10008.1.2.4.81 (JPEG-LS near-lossless). [`decode`] reads one stream (one
//! frame):
//!
//! - markers: SOI, SOF55 (0xFFF7), LSE (0xFFF8) preset coding parameters (type 1: MAXVAL, T1,
//!   T2, T3, RESET; zeros mean the defaults of T.87 C.2.4.1.1), DRI (2-, 3- or 4-byte
//!   interval), SOS, RSTm, EOI; APPn, COM and other unknown segments are skipped by their
//!   length; fill bytes (0xFF) before markers are allowed.
//! - scans: NEAR 0 (lossless) or above (near-lossless, with T.87's modular reconstruction),
//!   interleave mode ILV 0 (one component per scan), 1 (line interleaved) and 2 (sample
//!   interleaved), any number of components, restart intervals (counted in lines; each
//!   interval starts afresh: context statistics, run indices and the line above reset as at
//!   the start of the scan, as CharLS reads them).
//! - the coding itself: regular mode (gradients quantized by T1/T2/T3 into 365 contexts, the
//!   median edge detector, bias correction C[Q], Golomb codes with k from A[Q]/N[Q], the
//!   error mapping and the limited-length code of LIMIT and qbpp bits), run mode (the J[]
//!   table and RUNindex, run interruption samples with their two contexts), and the bit
//!   stuffing of T.87 (after a 0xFF byte the next byte carries 7 bits; 0xFF followed by a byte
//!   of 0x80 or more is a marker). In sample-interleaved scans a run covers whole pixels and
//!   its interruption codes every component in the RItype 0 context, as CharLS (which decodes
//!   T.87's conformance streams) does.
//!
//! CharLS, which writes most JPEG-LS in DICOM, codes with MAXVAL = 2^P - 1 even where its LSE
//! segment gives another MAXVAL (its thresholds then follow the given one). A stream with such
//! a MAXVAL is decoded as T.87 says first; if that fails, or leaves data unread after a scan,
//! it is decoded as CharLS codes it, and that is kept if it decodes cleanly.
//!
//! Refused, with a message naming them: mapping tables (LSE types 2 and 3, or a scan's Tm),
//! oversize dimensions (LSE type 4), the JPEG-LS part 2 (T.870) extensions (SOF57 and other
//! LSE types), a point transform, sampling factors other than 1x1, CharLS's HP colour
//! transforms (an APP8 "mrfx" segment; DICOM does not allow them) and frame heights given by
//! a DNL marker.
//!
//! Every length is checked against the bytes that remain and the frame size against the
//! caller's `max_samples` before the sample buffer is allocated, so hostile input gives an
//! `Err` and never a panic or an outsized allocation. A scan whose data stops before its
//! last sample is an error. Each line of each component takes at least one bit of data, and
//! each bit at most 32768 samples of a run, so the work is bounded by the frame's size.

use super::jpeg_common::{frame_fields, marker_after, segment};

/// A decoded JPEG-LS frame.
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

/// Decodes one JPEG-LS stream. `max_samples` bounds width*height*components: a frame header
/// claiming more is an error, before anything is allocated.
pub fn decode(data: &[u8], max_samples: usize) -> Result<Frame, String> {
    let mut first = Decoder::new(data, max_samples, false);
    let result = first.run();
    if first.custom_maxval && (result.is_err() || first.leftover) {
        // CharLS codes with MAXVAL = 2^P - 1 whatever MAXVAL its LSE segment gives (its
        // RANGE, LIMIT and clamping ignore it): a stream T.87's reading of MAXVAL cannot
        // decode cleanly is tried that way, and kept if it decodes with no data left over.
        let mut second = Decoder::new(data, max_samples, true);
        if let Ok(frame) = second.run()
            && !second.leftover
        {
            return Ok(frame);
        }
    }
    result
}

fn fail<T>(msg: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("JPEG-LS: {msg}"))
}

/// J[RUNindex]: the order of the run-length code (T.87 A.7.1.2).
const J: [u32; 32] = [
    0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13,
    14, 15,
];

/// Regular-mode contexts (0..=364, 0 only reached in sample-interleaved scans) and the two
/// run interruption contexts (365: RItype 0, 366: RItype 1).
const CONTEXTS: usize = 367;
const RUN_CONTEXT: usize = 365;

/// Bounds of the bias correction C[Q] (T.87 A.6.2).
const MIN_C: i32 = -128;
const MAX_C: i32 = 127;

/// Reads the entropy-coded bits of a scan: after a 0xFF byte the next byte (below 0x80)
/// carries 7 bits; 0xFF followed by 0x80 or more is a marker, where the data stops.
struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte to read.
    pos: usize,
    /// Bits, most significant first: the top `nbits` are data, the rest 0.
    buf: u64,
    nbits: u32,
    /// A marker or the end of the data was reached: no more bytes come.
    ended: bool,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            pos,
            buf: 0,
            nbits: 0,
            ended: false,
        }
    }

    /// Fills the buffer to more than 48 bits, or to what remains before a marker or the end.
    #[inline(never)]
    fn refill(&mut self) {
        while !self.ended && self.nbits <= 48 {
            // Fast path: eight bytes with no 0xFF among them.
            if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
                let word = u64::from_be_bytes(chunk.try_into().unwrap_or([0xFF; 8]));
                let inv = !word;
                // Nonzero iff some byte of `inv` is zero, i.e. some byte of `word` is 0xFF.
                let has_ff = inv.wrapping_sub(0x0101_0101_0101_0101) & !inv & 0x8080_8080_8080_8080;
                if has_ff == 0 {
                    let take = (64 - self.nbits) / 8;
                    self.buf |= word >> self.nbits;
                    self.nbits += take * 8;
                    self.pos += take as usize;
                    if self.nbits < 64 {
                        self.buf &= !(u64::MAX >> self.nbits);
                    }
                    continue;
                }
            }
            match self.data.get(self.pos) {
                None => self.ended = true,
                Some(&0xFF) => match self.data.get(self.pos + 1) {
                    Some(&next) if next < 0x80 => {
                        // 0xFF is 8 bits of data; the byte after it 7 (its top bit is 0).
                        self.buf |= 0xFF << (56 - self.nbits);
                        self.buf |= u64::from(next) << (49 - self.nbits);
                        self.nbits += 15;
                        self.pos += 2;
                    }
                    _ => self.ended = true,
                },
                Some(&b) => {
                    self.buf |= u64::from(b) << (56 - self.nbits);
                    self.nbits += 8;
                    self.pos += 1;
                }
            }
        }
    }

    /// The error for a read past the data.
    fn truncated(&self) -> String {
        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
            (Some(0xFF), Some(&m)) => format!(
                "JPEG-LS: scan data ends early (marker 0xFF{m:02X} at offset {} before the last sample)",
                self.pos
            ),
            _ => "JPEG-LS: truncated scan data".to_string(),
        }
    }

    /// The next `n` bits (n <= 32) as a number.
    #[inline(always)]
    fn bits(&mut self, n: u32) -> Result<u32, String> {
        if n == 0 {
            return Ok(0);
        }
        if self.nbits < n {
            self.refill();
            if self.nbits < n {
                return Err(self.truncated());
            }
        }
        let v = (self.buf >> (64 - n)) as u32;
        self.buf <<= n;
        self.nbits -= n;
        Ok(v)
    }

    /// Counts 0 bits up to the next 1 bit and consumes them and the 1. More than `max` zeros
    /// is an invalid code.
    #[inline(always)]
    fn unary(&mut self, max: u32) -> Result<u32, String> {
        let mut q = 0u32;
        loop {
            if self.nbits == 0 {
                self.refill();
                if self.nbits == 0 {
                    return Err(self.truncated());
                }
            }
            // The bits below the top `nbits` are 0, so a leading 1 inside them is data.
            let lz = self.buf.leading_zeros();
            if lz < self.nbits {
                q += lz;
                if q > max {
                    return fail(format!(
                        "invalid code in scan data ({q} zero bits, at most {max})"
                    ));
                }
                self.buf = (self.buf << lz) << 1;
                self.nbits -= lz + 1;
                return Ok(q);
            }
            q += self.nbits;
            self.buf = 0;
            self.nbits = 0;
            if q > max {
                return fail(format!(
                    "invalid code in scan data (more than {max} zero bits)"
                ));
            }
        }
    }

    /// Decodes one limited-length Golomb code (T.87 A.5.3): `limit` is LIMIT (regular mode)
    /// or LIMIT - J[RUNindex] - 1 (run interruption).
    #[inline(always)]
    fn golomb(&mut self, k: u32, limit: u32, qbpp: u32) -> Result<u32, String> {
        let escape = limit.saturating_sub(qbpp + 1);
        if self.nbits < 40 {
            self.refill();
        }
        // Fast path: the whole code is in the buffer and is not the escape.
        let lz = self.buf.leading_zeros();
        if lz < escape && lz + 1 + k <= self.nbits {
            let rest = (self.buf << lz) << 1;
            self.buf = rest << k;
            self.nbits -= lz + 1 + k;
            // (For k = 0 the shifts leave 0.)
            return Ok((lz << k) | ((rest >> 1) >> (63 - k)) as u32);
        }
        let q = self.unary(escape)?;
        if q < escape {
            Ok((q << k) | self.bits(k)?)
        } else {
            Ok(self.bits(qbpp)? + 1)
        }
    }

    /// Moves past the restart marker that ends a restart interval (the bits left in the
    /// current byte are padding).
    fn restart(&mut self) -> Result<(), String> {
        self.buf = 0;
        self.nbits = 0;
        self.ended = false;
        match find_marker(self.data, self.pos) {
            Some((at, m)) if (0xD0..=0xD7).contains(&m) => {
                self.pos = at + 2;
                Ok(())
            }
            Some((at, m)) => fail(format!(
                "expected a restart marker in scan data, found 0xFF{m:02X} at offset {at}"
            )),
            None => fail("truncated scan data (restart marker missing)"),
        }
    }
}

/// The next marker at or after `pos` (skipping entropy-coded bytes, 0xFF followed by a byte
/// below 0x80, and fill bytes): its offset (of its last 0xFF) and code.
fn find_marker(data: &[u8], mut pos: usize) -> Option<(usize, u8)> {
    loop {
        let off = data.get(pos..)?.iter().position(|&b| b == 0xFF)?;
        let at = pos + off;
        match *data.get(at + 1)? {
            0xFF => pos = at + 1,
            m if m >= 0x80 => return Some((at, m)),
            _ => pos = at + 2,
        }
    }
}

struct FrameHeader {
    width: usize,
    height: usize,
    precision: u8,
    /// Component identifiers, in frame order.
    ids: Vec<u8>,
}

/// LSE type 1 values as given (0: the default).
#[derive(Clone, Copy, Default)]
struct Preset {
    maxval: u16,
    t1: u16,
    t2: u16,
    t3: u16,
    reset: u16,
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    max_samples: usize,
    preset: Preset,
    /// Code with MAXVAL = 2^P - 1 whatever the preset says (as CharLS does).
    charls_maxval: bool,
    /// A scan had a preset MAXVAL other than 2^P - 1.
    custom_maxval: bool,
    /// A scan's data went on (by two bytes or more) after its last sample.
    leftover: bool,
    /// Lines per restart interval, 0 for none.
    restart_interval: usize,
    frame: Option<FrameHeader>,
    samples: Vec<u16>,
    /// Per frame component: whether a scan has decoded it.
    decoded: Vec<bool>,
}

impl<'a> Decoder<'a> {
    fn new(data: &'a [u8], max_samples: usize, charls_maxval: bool) -> Self {
        Decoder {
            data,
            pos: 0,
            max_samples,
            preset: Preset::default(),
            charls_maxval,
            custom_maxval: false,
            leftover: false,
            restart_interval: 0,
            frame: None,
            samples: Vec::new(),
            decoded: Vec::new(),
        }
    }

    fn run(&mut self) -> Result<Frame, String> {
        if self.data.get(..2) != Some(&[0xFF, 0xD8]) {
            return fail("missing SOI marker (not a JPEG stream)");
        }
        self.pos = 2;
        let mut after_scan = false;
        while let Some(marker) = marker_after(self.data, &mut self.pos, after_scan, |m| m < 0x80, |m| m < 0x80 && m != 0x01, "JPEG-LS: ")? {
            after_scan = false;
            match marker {
                0xD9 => break,
                0xD8 => return fail("unexpected second SOI marker"),
                0xD0..=0xD7 | 0x01 => {}
                0xF7 => {
                    let seg = self.segment()?;
                    self.frame_header(seg)?;
                }
                0xF8 => {
                    let seg = self.segment()?;
                    self.preset_parameters(seg)?;
                }
                0xDD => {
                    let seg = self.segment()?;
                    if !(2..=4).contains(&seg.len()) {
                        return fail(format!(
                            "DRI segment has length {} (expected 4, 5 or 6)",
                            seg.len() + 2
                        ));
                    }
                    self.restart_interval =
                        seg.iter().fold(0usize, |v, &b| (v << 8) | usize::from(b));
                }
                0xDA => {
                    let seg = self.segment()?;
                    self.scan(seg)?;
                    after_scan = true;
                }
                0xE8 => {
                    let seg = self.segment()?;
                    // CharLS's HP colour transforms (not part of T.87) announce themselves in
                    // an APP8 segment "mrfx" followed by the transform's number.
                    if let Some(&[b'm', b'r', b'f', b'x', t]) = seg.get(..5)
                        && t != 0
                    {
                        return fail(format!(
                            "the stream uses HP colour transform {t} (a CharLS extension, \
                             not T.87; DICOM does not allow it), which is not supported"
                        ));
                    }
                }
                0xF9 => {
                    return fail("SOF57 (JPEG-LS part 2, T.870 extensions) is not supported");
                }
                0xC3 => return fail("SOF3 is JPEG lossless (process 14), not JPEG-LS"),
                0xC0..=0xC2 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                    return fail(format!(
                        "SOF{} is a DCT or lossless JPEG frame of T.81, not JPEG-LS (SOF55)",
                        marker - 0xC0
                    ));
                }
                _ => {
                    self.segment()?;
                }
            }
        }
        let Some(frame) = self.frame.take() else {
            return fail("no SOF55 frame header");
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
            samples: std::mem::take(&mut self.samples),
        })
    }

    /// The body of the marker segment at `pos` (after its length field).
    fn segment(&mut self) -> Result<&'a [u8], String> {
        segment(self.data, &mut self.pos, "JPEG-LS: ")
    }

    fn frame_header(&mut self, seg: &[u8]) -> Result<(), String> {
        if self.frame.is_some() {
            return fail("more than one frame header");
        }
        let f = frame_fields(seg, "SOF55", self.max_samples).or_else(fail)?;
        let (precision, height, width, nf) = (f.precision, f.height, f.width, f.components.len());
        if !(2..=16).contains(&precision) {
            return fail(format!("sample precision {precision} is outside 2..=16"));
        }
        if let Some(c) = f.components.iter().find(|c| (c.h, c.v) != (1, 1)) {
            return fail(format!("component {} has sampling factors {}x{}; only 1x1 is supported", c.id, c.h, c.v));
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

    /// An LSE segment (T.87 C.2.4.1): preset coding parameters are kept for the scans that
    /// follow (checked there, against the frame's precision and the scan's NEAR).
    fn preset_parameters(&mut self, seg: &[u8]) -> Result<(), String> {
        match seg.first() {
            Some(1) => {
                if seg.len() != 11 {
                    return fail(format!(
                        "LSE preset parameters segment has length {} (expected 13)",
                        seg.len() + 2
                    ));
                }
                let v = |i: usize| u16::from_be_bytes([seg[i], seg[i + 1]]);
                self.preset = Preset {
                    maxval: v(1),
                    t1: v(3),
                    t2: v(5),
                    t3: v(7),
                    reset: v(9),
                };
                Ok(())
            }
            Some(2 | 3) => fail("LSE mapping table segments (palette images) are not supported"),
            Some(4) => fail("LSE oversize image dimensions are not supported"),
            Some(id) => fail(format!(
                "LSE segment of type {id} (a T.870 extension) is not supported"
            )),
            None => fail("empty LSE segment"),
        }
    }

    fn scan(&mut self, seg: &[u8]) -> Result<(), String> {
        let Some(frame) = self.frame.as_ref() else {
            return fail("SOS before the SOF55 frame header");
        };
        let ns = usize::from(*seg.first().unwrap_or(&0));
        if ns == 0 || seg.len() != 4 + 2 * ns {
            return fail(format!(
                "invalid SOS header ({} bytes for {ns} components)",
                seg.len() + 2
            ));
        }
        let mut comps = Vec::with_capacity(ns);
        for c in seg[1..1 + 2 * ns].chunks_exact(2) {
            let Some(idx) = frame.ids.iter().position(|&id| id == c[0]) else {
                return fail(format!("scan component {} is not in the frame", c[0]));
            };
            if comps.contains(&idx) || self.decoded[idx] {
                return fail(format!("component {} is in more than one scan", c[0]));
            }
            if c[1] != 0 {
                return fail(format!(
                    "scan component {} uses mapping table {} (palette images are not supported)",
                    c[0], c[1]
                ));
            }
            comps.push(idx);
        }
        let near = i32::from(seg[1 + 2 * ns]);
        let ilv = seg[2 + 2 * ns];
        let pt = seg[3 + 2 * ns];
        if pt != 0 {
            return fail(format!(
                "point transform {} (Ah/Al byte 0x{pt:02X}) is not supported",
                pt & 15
            ));
        }
        if ilv > 2 {
            return fail(format!("interleave mode {ilv} is not 0, 1 or 2"));
        }
        if ilv == 0 && ns > 1 {
            return fail(format!(
                "interleave mode 0 with {ns} components in the scan (expected 1)"
            ));
        }
        let top = (1u16 << (frame.precision - 1) << 1).wrapping_sub(1);
        self.custom_maxval |= self.preset.maxval != 0 && self.preset.maxval != top;
        let coding = Coding::new(frame.precision, near, self.preset, self.charls_maxval)?;
        let params = ScanParams {
            width: frame.width,
            height: frame.height,
            nc: frame.ids.len(),
            // One component: the interleave mode makes no difference.
            sample_interleaved: ilv == 2 && ns > 1,
            restart_interval: self.restart_interval,
        };
        let mut bits = BitReader::new(self.data, self.pos);
        decode_scan(&mut bits, coding, &params, &comps, &mut self.samples)?;
        // Unread data before the next marker: at most the padding of the last byte (and the
        // byte after a last 0xFF) in a stream decoded as it was coded.
        let end = find_marker(self.data, bits.pos).map_or(self.data.len(), |(at, _)| at);
        self.leftover |= bits.nbits as usize + 8 * (end - bits.pos) >= 16;
        self.pos = bits.pos;
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
    /// ILV 2 with more than one component: pixels are coded together (joint run mode).
    sample_interleaved: bool,
    /// Lines per restart interval, 0 for none.
    restart_interval: usize,
}

/// The coding parameters of a scan and its context statistics (T.87 A.2).
struct Coding {
    near: i32,
    maxval: i32,
    /// RANGE: the number of values of a (quantized) prediction error.
    range: i32,
    qbpp: u32,
    limit: u32,
    t1: i32,
    t2: i32,
    t3: i32,
    reset: i32,
    /// The quantized gradient of every difference -MAXVAL..=MAXVAL (index d + MAXVAL).
    quantized: Vec<i8>,
    /// Each context's statistics.
    ctx: [Stats; CONTEXTS],
    /// Nn[Q] (negative errors) of the two run interruption contexts.
    nn: [i32; 2],
}

/// A context's statistics (T.87 A.2.1): A[Q] (sum of |error|), B[Q] (sum of errors, for the
/// bias), C[Q] (bias correction), N[Q] (count).
#[derive(Clone, Copy, Default)]
struct Stats {
    a: i64,
    b: i32,
    c: i32,
    n: i32,
}

/// The number of bits of values below `v` (v >= 1): ceil(log2(v)).
fn ceil_log2(v: i32) -> u32 {
    32 - (v.max(1) - 1).leading_zeros()
}

impl Coding {
    /// The parameters for a scan of `precision`-bit samples with `near`, by the frame's preset
    /// values or their defaults (T.87 C.2.4.1.1). `charls_maxval`: code with MAXVAL = 2^P - 1
    /// whatever the preset says (the preset's MAXVAL still gives the default thresholds).
    fn new(precision: u8, near: i32, p: Preset, charls_maxval: bool) -> Result<Coding, String> {
        let top = (1i32 << precision) - 1;
        let given = if p.maxval == 0 {
            top
        } else {
            i32::from(p.maxval)
        };
        if given > top {
            return fail(format!(
                "preset MAXVAL {given} exceeds the {precision}-bit sample range"
            ));
        }
        let maxval = if charls_maxval { top } else { given };
        if near > (maxval / 2).min(255) {
            return fail(format!("NEAR {near} is too large for MAXVAL {maxval}"));
        }
        // Default thresholds, from BASIC_T1 = 3, BASIC_T2 = 7 and BASIC_T3 = 21.
        let clamp = |i: i32, j: i32| if i > given || i < j { j } else { i };
        let (d1, d2, d3) = if given >= 128 {
            let factor = (given.min(4095) + 128) / 256;
            let d1 = clamp(factor + 2 + 3 * near, near + 1);
            let d2 = clamp(factor * (7 - 3) + 3 + 5 * near, d1);
            (d1, d2, clamp(factor * (21 - 4) + 4 + 7 * near, d2))
        } else {
            let factor = 256 / (given + 1);
            let d1 = clamp((3 / factor + 3 * near).max(2), near + 1);
            let d2 = clamp((7 / factor + 5 * near).max(3), d1);
            (d1, d2, clamp((21 / factor + 7 * near).max(4), d2))
        };
        let or_default = |v: u16, d: i32| if v == 0 { d } else { i32::from(v) };
        let (t1, t2, t3) = (
            or_default(p.t1, d1),
            or_default(p.t2, d2),
            or_default(p.t3, d3),
        );
        let reset = or_default(p.reset, 64);
        if !(near < t1 && t1 <= t2 && t2 <= t3 && t3 <= maxval) {
            return fail(format!(
                "preset thresholds T1 {t1}, T2 {t2}, T3 {t3} are not ordered within {}..={maxval}",
                near + 1
            ));
        }
        if !(3..=maxval.max(255)).contains(&reset) {
            return fail(format!(
                "preset RESET {reset} is outside 3..={}",
                maxval.max(255)
            ));
        }
        let range = (maxval + 2 * near) / (2 * near + 1) + 1;
        let qbpp = ceil_log2(range);
        let bpp = ceil_log2(maxval + 1).max(2);
        let limit = 2 * (bpp + bpp.max(8));
        let mut coding = Coding {
            near,
            maxval,
            range,
            qbpp,
            limit,
            t1,
            t2,
            t3,
            reset,
            quantized: Vec::new(),
            ctx: [Stats::default(); CONTEXTS],
            nn: [0; 2],
        };
        coding.quantized = (-maxval..=maxval).map(|d| coding.quantize(d)).collect();
        coding.reset_statistics();
        Ok(coding)
    }

    /// The context statistics at the start of a scan or restart interval (T.87 A.2.1).
    fn reset_statistics(&mut self) {
        self.ctx.fill(Stats {
            a: i64::from(((self.range + 32) / 64).max(2)),
            b: 0,
            c: 0,
            n: 1,
        });
        self.nn = [0; 2];
    }

    /// The quantized gradient (T.87 A.3.3), -4..=4.
    fn quantize(&self, d: i32) -> i8 {
        if d <= -self.t3 {
            -4
        } else if d <= -self.t2 {
            -3
        } else if d <= -self.t1 {
            -2
        } else if d < -self.near {
            -1
        } else if d <= self.near {
            0
        } else if d < self.t1 {
            1
        } else if d < self.t2 {
            2
        } else if d < self.t3 {
            3
        } else {
            4
        }
    }

    /// The signed context of a sample's neighbourhood: 81*Q1 + 9*Q2 + Q3 (-364..=364), 0 for
    /// the run mode's flat neighbourhood.
    #[inline(always)]
    fn context(&self, ra: i32, rb: i32, rc: i32, rd: i32) -> i32 {
        // Samples are 0..=MAXVAL, so differences are within the table.
        let q = |d: i32| i32::from(self.quantized[(d + self.maxval) as usize]);
        81 * q(rd - rb) + 9 * q(rb - rc) + q(rc - ra)
    }

    /// The Golomb parameter k: the least with N << k >= `a` (T.87 A.5.1).
    #[inline(always)]
    fn golomb_k(n: i32, a: i64) -> Result<u32, String> {
        let n = i64::from(n.max(1));
        if n >= a {
            return Ok(0);
        }
        // N << k has the bit length of A at k = the difference of their lengths; it is then
        // below A, or not, and one more doubling is always enough.
        let mut k = n.leading_zeros() - a.leading_zeros();
        if (n << k) < a {
            k += 1;
        }
        if k > 24 {
            return fail("invalid scan data (context statistics out of range)");
        }
        Ok(k)
    }

    /// A decoded mapped error above any the encoder can write is corrupt data (this also
    /// keeps the statistics far from overflow).
    #[inline(always)]
    fn check_mapped(&self, m: u32) -> Result<i32, String> {
        if m > 2 * self.range as u32 + 1 {
            return fail(format!(
                "invalid scan data (mapped prediction error {m} for RANGE {})",
                self.range
            ));
        }
        Ok(m as i32)
    }

    /// The reconstructed sample from a prediction and a (signed, quantized) error, with the
    /// modular reduction of T.87 A.4.4 / A.6.
    #[inline(always)]
    fn reconstruct(&self, px: i32, err: i32) -> i32 {
        let step = 2 * self.near + 1;
        let mut rx = px + err * step;
        if rx < -self.near {
            rx += self.range * step;
        } else if rx > self.maxval + self.near {
            rx -= self.range * step;
        }
        rx.max(0).min(self.maxval)
    }

    /// Decodes one sample in regular mode (T.87 A.4 to A.6) in signed context `ctx`.
    #[inline(always)]
    fn regular(
        &mut self,
        bits: &mut BitReader,
        ctx: i32,
        ra: i32,
        rb: i32,
        rc: i32,
    ) -> Result<i32, String> {
        let (sign, q) = if ctx < 0 {
            (-1, (-ctx) as usize)
        } else {
            (1, ctx as usize)
        };
        // Median edge detector.
        let mut px = if rc >= ra.max(rb) {
            ra.min(rb)
        } else if rc <= ra.min(rb) {
            ra.max(rb)
        } else {
            ra + rb - rc
        };
        let st = self.ctx[q];
        px = (px + sign * st.c).max(0).min(self.maxval);
        let k = Self::golomb_k(st.n, st.a)?;
        let m = self.check_mapped(bits.golomb(k, self.limit, self.qbpp)?)?;
        // Inverse error mapping (A.5.2); the other mapping for k = 0 with a negative bias.
        // Normally 2E for E >= 0 and -2E - 1 below; swapped, 2E + 1 and -2E - 2.
        let swapped = self.near == 0 && k == 0 && 2 * st.b <= -st.n;
        let err = match (swapped, m & 1 == 1) {
            (false, false) | (true, true) => m >> 1,
            (false, true) => -((m + 1) >> 1),
            (true, false) => -(m >> 1) - 1,
        };
        self.ctx[q] = self.updated(st, err);
        Ok(self.reconstruct(px, sign * err))
    }

    /// A regular context's statistics after an error (T.87 A.6.1 and A.6.2).
    #[inline(always)]
    fn updated(&self, mut st: Stats, err: i32) -> Stats {
        st.b += err * (2 * self.near + 1);
        st.a += i64::from(err.abs());
        if st.n == self.reset {
            st.a >>= 1;
            st.b >>= 1;
            st.n >>= 1;
        }
        st.n += 1;
        if st.b <= -st.n {
            st.b += st.n;
            if st.c > MIN_C {
                st.c -= 1;
            }
            if st.b <= -st.n {
                st.b = -st.n + 1;
            }
        } else if st.b > 0 {
            st.b -= st.n;
            if st.c < MAX_C {
                st.c += 1;
            }
            if st.b > 0 {
                st.b = 0;
            }
        }
        st
    }

    /// Decodes a run interruption sample (T.87 A.7.2) after a run of `ra`s, `rb` above it;
    /// `j` is J[RUNindex]. `ritype`: the neighbours' type (always false in sample-interleaved
    /// scans, whose components interrupt together).
    #[inline(never)]
    fn interruption(
        &mut self,
        bits: &mut BitReader,
        ra: i32,
        rb: i32,
        ritype: bool,
        j: u32,
    ) -> Result<i32, String> {
        let t = usize::from(ritype);
        let q = RUN_CONTEXT + t;
        let (px, sign) = if ritype {
            (ra, 1)
        } else if ra > rb {
            (rb, -1)
        } else {
            (rb, 1)
        };
        let mut st = self.ctx[q];
        let temp = if ritype {
            st.a + i64::from(st.n >> 1)
        } else {
            st.a
        };
        let k = Self::golomb_k(st.n, temp)?;
        let m = self.check_mapped(bits.golomb(k, self.limit - j - 1, self.qbpp)?)?;
        // EMErrval = 2|Errval| - RItype - map, where map is 1 for a negative error unless
        // k is 0 and negative errors are the fewer, where it marks a positive one.
        let s = m + t as i32;
        let map = s & 1 == 1;
        let magnitude = (s + 1) >> 1;
        let fewer_negative = k == 0 && 2 * self.nn[t] < st.n;
        let err = if map == fewer_negative {
            magnitude
        } else {
            -magnitude
        };
        if err < 0 {
            self.nn[t] += 1;
        }
        st.a += i64::from((m + 1 - t as i32) >> 1);
        if st.n == self.reset {
            st.a >>= 1;
            st.n >>= 1;
            self.nn[t] >>= 1;
        }
        st.n += 1;
        self.ctx[q] = st;
        Ok(self.reconstruct(px, sign * err))
    }
}

/// One component's line buffers and run index. The lines hold width + 2 samples: index x + 1
/// is sample x; index 0 is Ra (current line) or Rc (line above) of sample 0, and the last
/// index of the line above is Rd of the last sample (T.87 A.2.1 and A.3.1).
struct Lines {
    prev: Vec<i32>,
    cur: Vec<i32>,
    run_index: usize,
}

impl Lines {
    fn new(width: usize) -> Lines {
        Lines {
            prev: vec![0; width + 2],
            cur: vec![0; width + 2],
            run_index: 0,
        }
    }

    /// As at the start of a scan: the line above the first is 0s.
    fn reset(&mut self) {
        self.prev.fill(0);
        self.cur.fill(0);
        self.run_index = 0;
    }

    /// Sets the edge samples before a line is decoded: Ra of sample 0 is Rb, Rd of the last
    /// sample is its Rb (and Rc of sample 0 is the previous line's Ra of sample 0, which
    /// index 0 of `prev` still holds).
    fn start_line(&mut self, width: usize) {
        self.prev[width + 1] = self.prev[width];
        self.cur[0] = self.prev[1];
    }

    /// Stores the decoded line as component `c` of line `y` and makes it the line above.
    fn finish_line(&mut self, samples: &mut [u16], y: usize, c: usize, p: &ScanParams) {
        let row = &mut samples[y * p.width * p.nc..(y + 1) * p.width * p.nc];
        for (s, &v) in row[c..].iter_mut().step_by(p.nc).zip(&self.cur[1..]) {
            *s = v as u16;
        }
        std::mem::swap(&mut self.prev, &mut self.cur);
    }
}

/// Decodes a scan's samples into `samples`.
fn decode_scan(
    bits: &mut BitReader,
    mut coding: Coding,
    p: &ScanParams,
    comps: &[usize],
    samples: &mut [u16],
) -> Result<(), String> {
    let mut lines: Vec<Lines> = comps.iter().map(|_| Lines::new(p.width)).collect();
    // The sample-interleaved mode's one run index.
    let mut run_index = 0usize;
    for y in 0..p.height {
        if p.restart_interval != 0 && y > 0 && y % p.restart_interval == 0 {
            bits.restart()?;
            coding.reset_statistics();
            lines.iter_mut().for_each(Lines::reset);
            run_index = 0;
        }
        if p.sample_interleaved {
            lines.iter_mut().for_each(|l| l.start_line(p.width));
            decode_pixels(bits, &mut coding, &mut lines, &mut run_index, p.width)?;
        } else {
            for l in lines.iter_mut() {
                l.start_line(p.width);
                decode_line(bits, &mut coding, l, p.width)?;
            }
        }
        for (l, &c) in lines.iter_mut().zip(comps) {
            l.finish_line(samples, y, c, p);
        }
    }
    Ok(())
}

/// Decodes one line of one component (interleave modes 0 and 1).
fn decode_line(
    bits: &mut BitReader,
    coding: &mut Coding,
    l: &mut Lines,
    width: usize,
) -> Result<(), String> {
    let (prev, cur) = (&l.prev[..width + 2], &mut l.cur[..width + 2]);
    let mut x = 1;
    // The neighbours slide along the line: Rc, Rb and Ra of x + 1 are Rb, Rd and Rx of x.
    let (mut ra, mut rb, mut rc) = (cur[0], prev[1], prev[0]);
    while x <= width {
        let rd = prev[x + 1];
        let ctx = coding.context(ra, rb, rc, rd);
        if ctx != 0 {
            ra = coding.regular(bits, ctx, ra, rb, rc)?;
            cur[x] = ra;
            (rc, rb) = (rb, rd);
            x += 1;
            continue;
        }
        // Run mode (T.87 A.7): a run of Ra up to an interruption sample or the line's end.
        let (count, interrupted) = run_length(bits, &mut l.run_index, width + 1 - x)?;
        cur[x..x + count].fill(ra);
        x += count;
        if interrupted {
            let rb = prev[x];
            let ritype = (ra - rb).abs() <= coding.near;
            cur[x] = coding.interruption(bits, ra, rb, ritype, J[l.run_index])?;
            l.run_index = l.run_index.saturating_sub(1);
            x += 1;
        }
        if x <= width {
            (ra, rb, rc) = (cur[x - 1], prev[x], prev[x - 1]);
        }
    }
    Ok(())
}

/// Decodes one line of all the components of a sample-interleaved scan (ILV 2), pixel by
/// pixel: run mode only where every component's neighbourhood is flat, a run continuing
/// while every component repeats, and an interruption codes every component.
fn decode_pixels(
    bits: &mut BitReader,
    coding: &mut Coding,
    lines: &mut [Lines],
    run_index: &mut usize,
    width: usize,
) -> Result<(), String> {
    let mut ctxs = [0i32; 256];
    let ctxs = &mut ctxs[..lines.len()];
    let mut x = 1;
    while x <= width {
        let mut flat = true;
        for (ctx, l) in ctxs.iter_mut().zip(lines.iter()) {
            *ctx = coding.context(l.cur[x - 1], l.prev[x], l.prev[x - 1], l.prev[x + 1]);
            flat &= *ctx == 0;
        }
        if !flat {
            for (&ctx, l) in ctxs.iter().zip(lines.iter_mut()) {
                let (ra, rb, rc) = (l.cur[x - 1], l.prev[x], l.prev[x - 1]);
                l.cur[x] = coding.regular(bits, ctx, ra, rb, rc)?;
            }
            x += 1;
            continue;
        }
        let (count, interrupted) = run_length(bits, run_index, width + 1 - x)?;
        for l in lines.iter_mut() {
            let ra = l.cur[x - 1];
            l.cur[x..x + count].fill(ra);
        }
        x += count;
        if interrupted {
            for l in lines.iter_mut() {
                let (ra, rb) = (l.cur[x - 1], l.prev[x]);
                l.cur[x] = coding.interruption(bits, ra, rb, false, J[*run_index])?;
            }
            *run_index = run_index.saturating_sub(1);
            x += 1;
        }
    }
    Ok(())
}

/// Decodes a run's length (T.87 A.7.1.2) at a position with `remaining` samples left in
/// the line: the count, and whether an interruption sample follows.
#[inline(never)]
fn run_length(
    bits: &mut BitReader,
    run_index: &mut usize,
    remaining: usize,
) -> Result<(usize, bool), String> {
    let mut count = 0usize;
    loop {
        if bits.bits(1)? == 1 {
            let chunk = 1usize << J[*run_index];
            let n = chunk.min(remaining - count);
            count += n;
            if n == chunk && *run_index < 31 {
                *run_index += 1;
            }
            if count == remaining {
                return Ok((count, false));
            }
        } else {
            count += bits.bits(J[*run_index])? as usize;
            if count >= remaining {
                return fail(format!(
                    "invalid scan data (a run of {count} samples where {remaining} remain in the line)"
                ));
            }
            return Ok((count, true));
        }
    }
}

#[cfg(test)]
mod tests;
