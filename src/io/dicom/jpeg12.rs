//! Sequential DCT JPEG decoding with Huffman coding (ITU-T T.81 processes 1, 2 and 4:
//! SOF0 and SOF1, 8- or 12-bit samples). Written by a helper.
//!
//! This is the codec of the DICOM transfer syntax 1.2.840.10008.1.2.4.51 (JPEG Extended,
//! 12-bit lossy, common in older computed-radiography archives), which the `image` crate
//! cannot decode. [`decode`] reads one stream (one frame):
//!
//! - markers: SOI, SOF0, SOF1, DQT (8- and 16-bit tables), DHT, DRI, SOS, RSTn, EOI; APPn,
//!   COM, DNL and other unknown segments are skipped by their length; fill bytes (0xFF)
//!   before markers are allowed. Progressive, lossless, arithmetic-coded and hierarchical
//!   frames and JPEG-LS are refused with a message naming them.
//! - scans: one interleaved scan, or several scans each covering some of the components
//!   (T.81 A.2); any sampling factors 1..=4; restart intervals (the DC predictions restart
//!   at 0, F.2.1.3.1); Huffman-coded DC differences and AC run/size symbols with EOB and ZRL
//!   (F.2.2), up to 15 bits of magnitude.
//! - reconstruction: dequantisation (the table installed when the component's scan starts),
//!   the 8x8 inverse DCT of A.3.3 computed separably in `f32` with rounding half up, the
//!   level shift by 2^(P-1) and clamping to 0..2^P-1. Blocks past the right and bottom edges
//!   are decoded and dropped.
//! - components: 1 (gray) to 4. Subsampled components are upsampled to the full size by
//!   replication (nearest sample, as libjpeg's non-"fancy" upsampling); the output keeps the
//!   stream's colour space (YCbCr for the usual 3-component stream: no conversion to RGB).
//!
//! Every length is checked against the bytes that remain and the frame size against the
//! caller's `max_samples` before the sample buffers are allocated, so hostile input gives an
//! `Err` and never a panic or an outsized allocation. A scan whose data stops before its
//! last block is an error: missing bits are taken as 1s only to peek past the end, never as
//! data. Each block takes at least two bits of Huffman code, so the decoding time is bounded
//! by the data's length besides the frame's size.
//!
//! The Huffman tables and the bit reader are [`super::jpeg_common`]'s, shared with the lossless
//! decoder.

use super::jpeg_common::{find_marker, frame_fields, marker_after, segment, BitReader, Huffman};

/// A decoded DCT JPEG frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Samples per line (X).
    pub width: usize,
    /// Number of lines (Y).
    pub height: usize,
    /// Components per pixel (1 for gray, 3 for colour: YCbCr as coded, not converted).
    pub components: usize,
    /// Sample precision P in bits (8 or 12).
    pub precision: u8,
    /// width * height * components samples, row-major, components interleaved.
    pub samples: Vec<u16>,
}

/// Decodes one sequential DCT JPEG stream. `max_samples` bounds width*height*components: a
/// frame header claiming more is an error, before anything is allocated.
pub fn decode(data: &[u8], max_samples: usize) -> Result<Frame, String> {
    Decoder::new(data, max_samples).run()
}

/// The sample precision of a stream's frame (8 or 12 for the DCT processes), from its first
/// frame header; `None` where none comes before the end or a scan.
pub fn precision(data: &[u8]) -> Option<u8> {
    let mut pos = 0;
    loop {
        let (at, m) = find_marker(data, pos)?;
        match m {
            // SOFn (DHT, JPG and DAC share the range but are not frame headers).
            0xC0..=0xCF if !matches!(m, 0xC4 | 0xC8 | 0xCC) => return data.get(at + 4).copied(),
            0xDA => return None,
            // Markers without a segment.
            0xD0..=0xD9 | 0x01 => pos = at + 2,
            _ => {
                let len = u16::from_be_bytes([*data.get(at + 2)?, *data.get(at + 3)?]) as usize;
                pos = at + 2 + len.max(2);
            }
        }
    }
}

const PREFIX: &str = "JPEG DCT: ";

fn fail<T>(msg: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("{PREFIX}{msg}"))
}

/// ZIGZAG[k]: the natural (row-major) index in the 8x8 block of the k-th coefficient in
/// zig-zag order (T.81 figure A.6).
const ZIGZAG: [usize; 64] = {
    let mut t = [0usize; 64];
    let mut k = 0;
    let mut s: usize = 0; // the anti-diagonal x + y
    while s < 15 {
        let lo = s.saturating_sub(7);
        let hi = if s < 7 { s } else { 7 };
        // Even diagonals run up and to the right (y falling), odd ones down and to the left.
        let mut i = 0;
        while i <= hi - lo {
            let y = if s.is_multiple_of(2) { hi - i } else { lo + i };
            t[k] = y * 8 + (s - y);
            k += 1;
            i += 1;
        }
        s += 1;
    }
    t
};


/// A frame component and its decoded samples (before upsampling).
struct Component {
    id: u8,
    /// Sampling factors.
    h: usize,
    v: usize,
    /// Quantisation table selector.
    tq: usize,
    /// The component's own size: ceil(X * h / Hmax) x ceil(Y * v / Vmax) (T.81 A.1.1).
    width: usize,
    height: usize,
    /// width * height samples, row-major.
    plane: Vec<u16>,
    /// Whether a scan has decoded it.
    decoded: bool,
}

struct FrameHeader {
    width: usize,
    height: usize,
    precision: u8,
    hmax: usize,
    vmax: usize,
    /// MCUs per line and MCU lines of an interleaved scan.
    mcus_x: usize,
    mcus_y: usize,
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    max_samples: usize,
    /// Quantisation tables in natural order.
    qt: [Option<[u16; 64]>; 4],
    dc_tables: [Option<Huffman>; 4],
    ac_tables: [Option<Huffman>; 4],
    restart_interval: usize,
    frame: Option<FrameHeader>,
    comps: Vec<Component>,
}

impl<'a> Decoder<'a> {
    fn new(data: &'a [u8], max_samples: usize) -> Self {
        Decoder {
            data,
            pos: 0,
            max_samples,
            qt: [None; 4],
            dc_tables: [None, None, None, None],
            ac_tables: [None, None, None, None],
            restart_interval: 0,
            frame: None,
            comps: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Frame, String> {
        if self.data.get(..2) != Some(&[0xFF, 0xD8]) {
            return fail("missing SOI marker (not a JPEG stream)");
        }
        self.pos = 2;
        let mut after_scan = false;
        while let Some(marker) = marker_after(self.data, &mut self.pos, after_scan, |m| m == 0, |m| m == 0, PREFIX)? {
            after_scan = false;
            match marker {
                0xD9 => break,
                0xD8 => return fail("unexpected second SOI marker"),
                0xD0..=0xD7 | 0x01 => {}
                0xC0 | 0xC1 => {
                    let seg = self.segment()?;
                    self.frame_header(seg, marker - 0xC0)?;
                }
                0xC4 => {
                    let seg = self.segment()?;
                    self.huffman_tables(seg)?;
                }
                0xDB => {
                    let seg = self.segment()?;
                    self.quant_tables(seg)?;
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
                0xC2 => {
                    return fail(
                        "SOF2 (progressive DCT) is not supported; only sequential DCT (SOF0, SOF1) is",
                    );
                }
                0xC3 => return fail("SOF3 is lossless JPEG, not a DCT frame"),
                0xC5..=0xC7 | 0xCD..=0xCF | 0xDE | 0xDF => {
                    return fail(format!(
                        "marker 0xFF{marker:02X} belongs to a hierarchical (differential) stream, which is not supported"
                    ));
                }
                0xC9..=0xCC => {
                    return fail(format!(
                        "marker 0xFF{marker:02X} belongs to an arithmetic-coded stream; only Huffman coding is supported"
                    ));
                }
                0xC8 => return fail("JPG extension frame (0xFFC8) is not supported"),
                0xF7 | 0xF8 => {
                    return fail(format!(
                        "marker 0xFF{marker:02X} belongs to JPEG-LS, not DCT JPEG"
                    ));
                }
                _ => {
                    self.segment()?;
                }
            }
        }
        let Some(frame) = self.frame.take() else {
            return fail("no SOF0 or SOF1 frame header");
        };
        if let Some(c) = self.comps.iter().find(|c| !c.decoded) {
            return if self.comps.iter().any(|c| c.decoded) {
                fail(format!(
                    "component {} is in no scan (stream truncated?)",
                    c.id
                ))
            } else {
                fail("no scan (stream truncated?)")
            };
        }
        let (w, h, nc) = (frame.width, frame.height, self.comps.len());
        let samples = if nc == 1 {
            // One component is never subsampled: its plane is the image.
            std::mem::take(&mut self.comps[0].plane)
        } else {
            let mut out = vec![0u16; w * h * nc];
            for (ci, c) in self.comps.iter().enumerate() {
                // Nearest sample: x * h / Hmax is below the component's width.
                let xs: Vec<usize> = (0..w).map(|x| x * c.h / frame.hmax).collect();
                for y in 0..h {
                    let src = &c.plane[(y * c.v / frame.vmax) * c.width..][..c.width];
                    let dst = &mut out[y * w * nc..][..w * nc];
                    for (d, &sx) in dst.chunks_exact_mut(nc).zip(&xs) {
                        d[ci] = src[sx];
                    }
                }
            }
            out
        };
        Ok(Frame {
            width: w,
            height: h,
            components: nc,
            precision: frame.precision,
            samples,
        })
    }

    /// The body of the marker segment at `pos` (after its length field).
    fn segment(&mut self) -> Result<&'a [u8], String> {
        segment(self.data, &mut self.pos, PREFIX)
    }

    fn frame_header(&mut self, seg: &[u8], sof: u8) -> Result<(), String> {
        if self.frame.is_some() {
            return fail("more than one frame header");
        }
        let f = frame_fields(seg, &format!("SOF{sof}"), self.max_samples).or_else(fail)?;
        let (precision, height, width) = (f.precision, f.height, f.width);
        if precision != 8 && precision != 12 {
            return fail(format!("sample precision {precision} (DCT frames have 8 or 12)"));
        }
        if f.components.len() > 4 {
            return fail(format!("frame has width {width} and {} components (1..=4 are supported)", f.components.len()));
        }
        let mut comps: Vec<Component> = Vec::with_capacity(f.components.len());
        for c in &f.components {
            if !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v) {
                return fail(format!("component {} has sampling factors {}x{} (1..=4 allowed)", c.id, c.h, c.v));
            }
            if c.tq > 3 {
                return fail(format!("component {} uses quantisation table {} (0..=3 allowed)", c.id, c.tq));
            }
            comps.push(Component {
                id: c.id,
                h: c.h,
                v: c.v,
                tq: usize::from(c.tq),
                width: 0,
                height: 0,
                plane: Vec::new(),
                decoded: false,
            });
        }
        let hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
        let vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
        // Each plane is at most the frame's size: the planes together are within the limit.
        for c in &mut comps {
            c.width = (width * c.h).div_ceil(hmax);
            c.height = (height * c.v).div_ceil(vmax);
            c.plane = vec![0; c.width * c.height];
        }
        self.comps = comps;
        self.frame = Some(FrameHeader {
            width,
            height,
            precision,
            hmax,
            vmax,
            mcus_x: width.div_ceil(8 * hmax),
            mcus_y: height.div_ceil(8 * vmax),
        });
        Ok(())
    }

    fn quant_tables(&mut self, mut seg: &[u8]) -> Result<(), String> {
        while let Some((&pqtq, rest)) = seg.split_first() {
            let (pq, tq) = (pqtq >> 4, usize::from(pqtq & 15));
            if pq > 1 || tq > 3 {
                return fail(format!(
                    "DQT table precision {pq} / identifier {tq} out of range"
                ));
            }
            let n = if pq == 0 { 64 } else { 128 };
            let Some(body) = rest.get(..n) else {
                return fail("truncated DQT segment");
            };
            let mut table = [0u16; 64];
            for (k, &z) in ZIGZAG.iter().enumerate() {
                table[z] = if pq == 0 {
                    u16::from(body[k])
                } else {
                    u16::from_be_bytes([body[2 * k], body[2 * k + 1]])
                };
            }
            self.qt[tq] = Some(table);
            seg = &rest[n..];
        }
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
            let table = Huffman::new(&bits, values, PREFIX)?;
            if class == 0 {
                self.dc_tables[id] = Some(table);
            } else {
                self.ac_tables[id] = Some(table);
            }
            seg = &rest[16 + n..];
        }
        Ok(())
    }

    fn scan(&mut self, seg: &[u8]) -> Result<(), String> {
        let Some(frame) = self.frame.as_ref() else {
            return fail("SOS before the frame header");
        };
        let ns = usize::from(*seg.first().unwrap_or(&0));
        if !(1..=4).contains(&ns) || seg.len() != 4 + 2 * ns {
            return fail(format!(
                "invalid SOS header ({} bytes for {ns} components)",
                seg.len() + 2
            ));
        }
        let (ss, se) = (seg[1 + 2 * ns], seg[2 + 2 * ns]);
        // Ah and Al (seg[3 + 2 * ns]) are 0 in sequential scans; libjpeg only warns otherwise.
        if ss != 0 || se != 63 {
            return fail(format!(
                "scan has spectral selection {ss}..={se} (a sequential scan has 0..=63)"
            ));
        }
        let mut scomps: Vec<ScanComponent> = Vec::with_capacity(ns);
        let mut blocks_per_mcu = 0;
        for c in seg[1..1 + 2 * ns].chunks_exact(2) {
            let Some(idx) = self.comps.iter().position(|k| k.id == c[0]) else {
                return fail(format!("scan component {} is not in the frame", c[0]));
            };
            let comp = &self.comps[idx];
            if comp.decoded || scomps.iter().any(|s| s.idx == idx) {
                return fail(format!("component {} is in more than one scan", c[0]));
            }
            let (td, ta) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
            let Some(Some(dc)) = self.dc_tables.get(td) else {
                return fail(format!("scan uses undefined DC Huffman table {td}"));
            };
            let Some(Some(ac)) = self.ac_tables.get(ta) else {
                return fail(format!("scan uses undefined AC Huffman table {ta}"));
            };
            let Some(q) = self.qt[comp.tq] else {
                return fail(format!(
                    "component {} uses undefined quantisation table {}",
                    c[0], comp.tq
                ));
            };
            let mut qf = [0f32; 64];
            for (d, &s) in qf.iter_mut().zip(&q) {
                *d = f32::from(s);
            }
            blocks_per_mcu += comp.h * comp.v;
            scomps.push(ScanComponent { idx, dc, ac, q: qf });
        }
        if ns > 1 && blocks_per_mcu > 10 {
            return fail(format!(
                "interleaved scan has {blocks_per_mcu} blocks per MCU (at most 10)"
            ));
        }
        let mut bits = BitReader::new(self.data, self.pos, PREFIX);
        decode_scan(
            &mut bits,
            frame,
            self.restart_interval,
            &scomps,
            &mut self.comps,
        )?;
        self.pos = bits.pos;
        for s in &scomps {
            self.comps[s.idx].decoded = true;
        }
        Ok(())
    }
}

/// A component of a scan with the tables it is decoded with.
struct ScanComponent<'t> {
    /// Index in the frame's components.
    idx: usize,
    dc: &'t Huffman,
    ac: &'t Huffman,
    /// Quantisation table, natural order.
    q: [f32; 64],
}

/// The inverse DCT's basis: BASIS[u][x] = C(u) / 2 * cos((2x + 1) u pi / 16), with
/// C(0) = 1/sqrt(2) and C(u) = 1 otherwise (T.81 A.3.3), so that f = B^T F B.
fn idct_basis() -> [[f32; 8]; 8] {
    let mut b = [[0f32; 8]; 8];
    for (u, row) in b.iter_mut().enumerate() {
        let c = if u == 0 {
            std::f64::consts::FRAC_1_SQRT_2
        } else {
            1.0
        };
        for (x, v) in row.iter_mut().enumerate() {
            let angle = ((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0;
            *v = (c / 2.0 * angle.cos()) as f32;
        }
    }
    b
}

/// Decodes the scan's blocks into the components' planes.
fn decode_scan(
    bits: &mut BitReader,
    frame: &FrameHeader,
    restart_interval: usize,
    scomps: &[ScanComponent],
    comps: &mut [Component],
) -> Result<(), String> {
    let basis = idct_basis();
    let center = (1u32 << (frame.precision - 1)) as f32 + 0.5;
    let maxval = (1i32 << frame.precision) - 1;
    let mut preds = [0i32; 4];
    let mut block = Block {
        coef: [0.0; 64],
        rows: 0,
    };
    // One block per MCU when a scan has one component (A.2.2), else the frame's MCUs (A.2.3).
    let (mcus_x, mcus_y) = if scomps.len() == 1 {
        let c = &comps[scomps[0].idx];
        (c.width.div_ceil(8), c.height.div_ceil(8))
    } else {
        (frame.mcus_x, frame.mcus_y)
    };
    let mut left = restart_interval;
    for my in 0..mcus_y {
        for mx in 0..mcus_x {
            if restart_interval != 0 {
                if left == 0 {
                    bits.restart()?;
                    left = restart_interval;
                    preds = [0; 4];
                }
                left -= 1;
            }
            for (k, s) in scomps.iter().enumerate() {
                let comp = &mut comps[s.idx];
                let (bh, bv) = if scomps.len() == 1 {
                    (1, 1)
                } else {
                    (comp.h, comp.v)
                };
                for by in 0..bv {
                    for bx in 0..bh {
                        decode_block(bits, s, &mut preds[k], &mut block)?;
                        let x0 = (mx * bh + bx) * 8;
                        let y0 = (my * bv + by) * 8;
                        if x0 < comp.width && y0 < comp.height {
                            block.store(&basis, center, maxval, comp, x0, y0);
                        }
                        block.clear();
                    }
                }
            }
        }
    }
    Ok(())
}

/// One block's dequantised coefficients in natural order.
struct Block {
    coef: [f32; 64],
    /// Bit v set: row v (vertical frequency v) has a nonzero coefficient.
    rows: u8,
}

impl Block {
    fn clear(&mut self) {
        for v in 0..8 {
            if self.rows & (1 << v) != 0 {
                self.coef[v * 8..v * 8 + 8].fill(0.0);
            }
        }
        self.rows = 0;
    }

    /// The inverse DCT, level shift and clamping, written to the plane at (x0, y0) with what
    /// lies past its edges dropped.
    fn store(
        &self,
        basis: &[[f32; 8]; 8],
        center: f32,
        maxval: i32,
        comp: &mut Component,
        x0: usize,
        y0: usize,
    ) {
        let mut out = [0f32; 64];
        if self.rows == 1 && self.coef[1..8].iter().all(|&c| c == 0.0) {
            // DC only: f = F(0,0) / 8 everywhere.
            out = [self.coef[0] / 8.0; 64];
        } else {
            // Rows: t[v][x] = sum_u F[v][u] B[u][x], skipping zero coefficients; then
            // columns: f[y][x] = sum_v B[v][y] t[v][x].
            let mut t = [0f32; 64];
            for v in 0..8 {
                if self.rows & (1 << v) == 0 {
                    continue;
                }
                let tr = &mut t[v * 8..v * 8 + 8];
                for (&c, b) in self.coef[v * 8..v * 8 + 8].iter().zip(basis) {
                    if c != 0.0 {
                        for (t, &b) in tr.iter_mut().zip(b) {
                            *t += c * b;
                        }
                    }
                }
            }
            for y in 0..8 {
                let o = &mut out[y * 8..y * 8 + 8];
                for v in 0..8 {
                    if self.rows & (1 << v) == 0 {
                        continue;
                    }
                    let bv = basis[v][y];
                    for (o, &t) in o.iter_mut().zip(&t[v * 8..v * 8 + 8]) {
                        *o += bv * t;
                    }
                }
            }
        }
        let w = (comp.width - x0).min(8);
        let h = (comp.height - y0).min(8);
        for y in 0..h {
            let dst = &mut comp.plane[(y0 + y) * comp.width + x0..][..w];
            for (d, &v) in dst.iter_mut().zip(&out[y * 8..]) {
                // Rounding half up, as libjpeg's descaling: `center` holds the 0.5, and
                // truncation is the floor once negatives are 0 (`as` saturates; no NaN).
                *d = ((v + center).max(0.0) as i32).min(maxval) as u16;
            }
        }
    }
}

/// Decodes one block's coefficients (F.2.2.1, F.2.2.2), dequantised, into `block` (which is
/// all zeros on entry).
#[inline]
fn decode_block(
    bits: &mut BitReader,
    s: &ScanComponent,
    pred: &mut i32,
    block: &mut Block,
) -> Result<(), String> {
    let t = u32::from(bits.symbol(s.dc)?);
    if t > 15 {
        return fail(format!("DC difference category {t} (at most 15)"));
    }
    let diff = bits.extend(t)?;
    *pred = pred.wrapping_add(diff);
    block.coef[0] = *pred as f32 * s.q[0];
    block.rows = 1;
    let mut k = 1;
    while k < 64 {
        let rs = bits.symbol(s.ac)?;
        let (r, size) = (usize::from(rs >> 4), u32::from(rs & 15));
        if size == 0 {
            if r == 15 {
                k += 16; // ZRL
                continue;
            }
            break; // EOB
        }
        k += r;
        if k > 63 {
            return fail("AC coefficient run past the end of the block");
        }
        let v = bits.extend(size)?;
        let z = ZIGZAG[k];
        block.coef[z] = v as f32 * s.q[z];
        block.rows |= 1 << (z / 8);
        k += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a small deterministic generator.
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
    fn zigzag_order() {
        let mut seen = [false; 64];
        for &z in &ZIGZAG {
            assert!(!seen[z]);
            seen[z] = true;
        }
        assert_eq!(ZIGZAG[..10], [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]);
        assert_eq!(ZIGZAG[60..], [61, 54, 47, 55, 62, 63][2..]);
    }

    fn read(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jpeg12");
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn reference(name: &str) -> Vec<u16> {
        read(&format!("{name}.u16"))
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    /// (stream, reference, width, height, components, precision)
    const FIXTURES: [(&str, &str, usize, usize, usize, u8); 7] = [
        ("gray12-q90", "gray12-q90", 120, 97, 1, 12),
        ("gray12-q50", "gray12-q50", 120, 97, 1, 12),
        ("gray12-rst", "gray12-q90", 120, 97, 1, 12),
        ("gray8-q85", "gray8-q85", 120, 97, 1, 8),
        ("ycc12-420", "ycc12-420", 64, 45, 3, 12),
        ("ycc12-420-rst", "ycc12-420", 64, 45, 3, 12),
        ("ycc8-422", "ycc8-422", 50, 37, 3, 8),
    ];

    /// Every sample within 1 of libjpeg-turbo's decode (islow IDCT).
    #[test]
    fn libjpeg_turbo_streams() {
        for (name, refname, w, h, nc, p) in FIXTURES {
            let data = read(&format!("{name}.jpg"));
            let want = reference(refname);
            let t = std::time::Instant::now();
            let f = decode(&data, 1 << 20).unwrap_or_else(|m| panic!("{name}: {m}"));
            let dt = t.elapsed();
            assert_eq!(
                (f.width, f.height, f.components, f.precision),
                (w, h, nc, p),
                "{name}"
            );
            assert_eq!(f.samples.len(), want.len(), "{name}");
            let diffs: Vec<u32> = f
                .samples
                .iter()
                .zip(&want)
                .map(|(&a, &b)| u32::from(a.abs_diff(b)))
                .collect();
            let max = diffs.iter().copied().max().unwrap();
            let off = diffs.iter().filter(|&&d| d > 0).count();
            let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
            eprintln!(
                "{name}: max |diff| {max}, mean {mean:.5}, {off} of {} samples differ, {dt:?}",
                diffs.len()
            );
            assert!(max <= 1, "{name}: max |diff| {max}");
        }
    }

    #[test]
    fn truncated_streams() {
        for name in ["gray12-q50", "ycc12-420-rst", "ycc8-422", "gray12-rst"] {
            let data = read(&format!("{name}.jpg"));
            let full = decode(&data, 1 << 20).unwrap();
            let eoi = data.windows(2).rposition(|w| w == [0xFF, 0xD9]).unwrap();
            for n in 0..data.len() {
                match decode(&data[..n], 1 << 20) {
                    Ok(f) => assert!(n >= eoi && f == full, "{name} cut to {n} bytes decoded"),
                    Err(m) => assert!(m.starts_with(PREFIX), "{m}"),
                }
            }
        }
        // Scan data cut in the middle with EOI kept.
        let data = read("gray12-q90.jpg");
        let mut cut = data[..data.len() / 2].to_vec();
        cut.extend_from_slice(&[0xFF, 0xD9]);
        let m = decode(&cut, 1 << 20).unwrap_err();
        assert!(m.contains("ends early"), "{m}");
        assert_eq!(
            decode(&data[..data.len() / 2], 1 << 20).unwrap_err(),
            "JPEG DCT: truncated scan data"
        );
    }

    #[test]
    fn corrupt_streams() {
        let mut rng = Rng(0x5EED_1234_ABCD_0001);
        for name in ["ycc8-422", "ycc12-420-rst", "gray12-q50", "gray12-rst"] {
            let data = read(&format!("{name}.jpg"));
            // Single-byte and a few multi-byte corruptions: Ok or Err, never a panic.
            for _ in 0..2000 {
                let mut bad = data.clone();
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(bad.len() as u64) as usize;
                    bad[i] = match rng.below(4) {
                        0 => 0xFF,
                        1 => 0,
                        _ => rng.next() as u8,
                    };
                }
                match decode(&bad, 1 << 20) {
                    Ok(f) => assert_eq!(f.samples.len(), f.width * f.height * f.components),
                    Err(m) => assert!(m.starts_with(PREFIX), "{m}"),
                }
            }
        }
        // Every byte of the small streams set to each of a few values (headers included).
        for name in ["ycc8-422", "ycc12-420-rst"] {
            let data = read(&format!("{name}.jpg"));
            for i in 0..data.len() {
                for v in [0x00, 0xFF, 0x01, 0x80, 0x11, 0xC0, 0x3F, 0xFE] {
                    let mut bad = data.clone();
                    bad[i] = v;
                    let _ = decode(&bad, 1 << 20);
                }
            }
        }
    }

    /// A minimal stream: SOI, DQT 0 (all 1), SOF, DHT with a one-code DC table (category 0)
    /// and a one-code AC table (EOB), SOS, `data`, EOI. Each block is the two bits 00.
    fn stream(sof: u8, p: u8, w: u16, h: u16, comps: &[(u8, u8)], data: &[u8]) -> Vec<u8> {
        let mut d = vec![0xFF, 0xD8, 0xFF, 0xDB, 0, 67, 0x00];
        d.extend_from_slice(&[1; 64]);
        d.extend_from_slice(&[0xFF, sof, 0, 8 + 3 * comps.len() as u8, p]);
        d.extend_from_slice(&h.to_be_bytes());
        d.extend_from_slice(&w.to_be_bytes());
        d.push(comps.len() as u8);
        for &(id, hv) in comps {
            d.extend_from_slice(&[id, hv, 0]);
        }
        for class in [0x00, 0x10] {
            d.extend_from_slice(&[0xFF, 0xC4, 0, 20, class, 1]);
            d.extend_from_slice(&[0; 15]);
            d.push(0);
        }
        d.extend_from_slice(&[0xFF, 0xDA, 0, 6 + 2 * comps.len() as u8, comps.len() as u8]);
        for &(id, _) in comps {
            d.extend_from_slice(&[id, 0x00]);
        }
        d.extend_from_slice(&[0, 63, 0]);
        d.extend_from_slice(data);
        d.extend_from_slice(&[0xFF, 0xD9]);
        d
    }

    fn gray(sof: u8, p: u8, w: u16, h: u16) -> Vec<u8> {
        stream(sof, p, w, h, &[(1, 0x11)], &[0; 64])
    }

    #[test]
    fn minimal_streams() {
        for (p, mid) in [(8u8, 128u16), (12, 2048)] {
            for sof in [0xC0, 0xC1] {
                let f = decode(&gray(sof, p, 13, 9), 13 * 9).unwrap();
                assert_eq!(
                    (f.width, f.height, f.components, f.precision),
                    (13, 9, 1, p)
                );
                assert_eq!(f.samples, vec![mid; 13 * 9]);
            }
        }
        // Three components, 4:2:0, 17x17: 2x2 MCUs of 6 blocks.
        let d = stream(
            0xC1,
            12,
            17,
            17,
            &[(1, 0x22), (2, 0x11), (3, 0x11)],
            &[0; 6],
        );
        let f = decode(&d, 17 * 17 * 3).unwrap();
        assert_eq!(f.samples, vec![2048; 17 * 17 * 3]);
        // DC differences: +1 (code 0, 1 bit), then the DC table's other code 1 (category 1)
        // with extra bit 1 adds 1 again. Quantiser 8: each step is 8 / 8 = 1 level.
        let mut d = gray(0xC1, 12, 16, 8);
        let dqt = 7;
        d[dqt..dqt + 64].fill(8);
        let dht = d.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
        // DC table: two 1-bit codes, symbols 0 and 1.
        d[dht + 5] = 2;
        d.insert(dht + 22, 1);
        d[dht + 3] += 1;
        let sos = d.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
        let data = sos + 10;
        // Block 1: DC code 1, extra bit 1 (+1), EOB 0; block 2: DC code 1, bit 1, EOB 0.
        d.splice(data..data + 64, [0b1101_1011, 0xFF, 0x00]);
        let f = decode(&d, 128).unwrap();
        assert_eq!(f.samples[..8], [2049; 8]);
        assert_eq!(f.samples[8..16], [2050; 8]);
    }

    #[test]
    fn huge_frames_are_refused_before_allocation() {
        let err = decode(&gray(0xC1, 12, 65535, 65535), 1 << 26).unwrap_err();
        assert!(err.contains("exceeds the limit"), "{err}");
        let err = decode(&gray(0xC1, 12, 13, 9), 13 * 9 - 1).unwrap_err();
        assert!(err.contains("exceeds the limit"), "{err}");
        let d = stream(
            0xC1,
            12,
            65535,
            65535,
            &[(1, 0x22), (2, 0x11), (3, 0x11)],
            &[],
        );
        let err = decode(&d, 1 << 26).unwrap_err();
        assert!(err.contains("exceeds the limit"), "{err}");
        // Allowed but with too little data: an error once the data runs out.
        let d = stream(0xC1, 12, 4000, 3000, &[(1, 0x11)], &[0; 100]);
        let err = decode(&d, 1 << 24).unwrap_err();
        assert!(err.contains("ends early"), "{err}");
    }

    #[test]
    fn header_errors() {
        let err = |d: &[u8]| decode(d, 1 << 20).unwrap_err();
        let has = |d: &[u8], s: &str| {
            let m = err(d);
            assert!(m.contains(s), "{m} (wanted {s:?})");
        };
        has(&gray(0xC2, 8, 8, 8), "progressive");
        has(&gray(0xC3, 8, 8, 8), "lossless");
        has(&gray(0xC9, 12, 8, 8), "arithmetic");
        has(&gray(0xCA, 12, 8, 8), "arithmetic");
        has(&gray(0xC5, 12, 8, 8), "hierarchical");
        has(&gray(0xF7, 12, 8, 8), "JPEG-LS");
        has(&gray(0xC1, 16, 8, 8), "precision 16");
        has(&gray(0xC1, 10, 8, 8), "precision 10");
        has(&gray(0xC1, 12, 8, 0), "DNL");
        has(&gray(0xC1, 12, 0, 8), "width 0");
        has(&stream(0xC1, 12, 8, 8, &[(1, 0x51)], &[0; 8]), "sampling");
        has(&stream(0xC1, 12, 8, 8, &[(1, 0x10)], &[0; 8]), "sampling");
        has(
            &stream(0xC1, 12, 8, 8, &[(1, 0x11), (1, 0x11)], &[0; 8]),
            "twice",
        );
        has(
            &stream(0xC1, 12, 64, 64, &[(1, 0x44), (2, 0x22)], &[0; 64]),
            "blocks per MCU",
        );
        has(b"\x89PNG", "SOI");
        has(b"", "SOI");
        has(b"\xFF\xD8\xFF\xD9", "no SOF0 or SOF1");
        let base = gray(0xC1, 12, 8, 8);
        let sos = base.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
        // Spectral selection of a progressive scan.
        let mut d = base.clone();
        d[sos + 8] = 5;
        has(&d, "spectral selection");
        // Undefined tables.
        let mut d = base.clone();
        d[sos + 6] = 0x20;
        has(&d, "undefined DC Huffman table 2");
        let mut d = base.clone();
        d[sos + 6] = 0x01;
        has(&d, "undefined AC Huffman table 1");
        let sof = base.windows(2).position(|w| w == [0xFF, 0xC1]).unwrap();
        let mut d = base.clone();
        d[sof + 12] = 2; // the component's Tq
        has(&d, "undefined quantisation table 2");
        let mut d = base.clone();
        d[sof + 12] = 4;
        has(&d, "quantisation table 4");
        // A scan component not in the frame; SOS before SOF.
        let mut d = base.clone();
        d[sos + 5] = 9;
        has(&d, "not in the frame");
        let mut d = base.clone();
        d[sof + 1] = 0xFE; // SOF becomes COM
        has(&d, "SOS before the frame header");
        // Truncated and malformed DQT.
        let mut d = base.clone();
        d[5] = 40; // DQT length 40: 64 values do not fit
        has(&d, "truncated DQT");
        let mut d = base.clone();
        d[6] = 0x20;
        has(&d, "DQT table precision 2");
        // An over-full Huffman table, and a DHT promising more values than it holds.
        let mut d = base.clone();
        let dht = d.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
        d[dht + 5] = 3;
        d.splice(dht + 22..dht + 22, [1, 2]);
        d[dht + 3] += 2;
        has(&d, "invalid Huffman table");
        let mut d = base.clone();
        d[dht + 6] = 2;
        has(&d, "truncated DHT");
        // DC category above 15 and an AC run past the block's end.
        let mut d = base.clone();
        d[dht + 21] = 16;
        has(&d, "DC difference category 16");
        let mut d = base.clone();
        let ac = d.windows(3).position(|w| w == [0xC4, 0, 20]).unwrap();
        let ac = d[ac + 3..]
            .windows(2)
            .position(|w| w == [0xFF, 0xC4])
            .unwrap()
            + ac
            + 3;
        d[ac + 21] = 0xF1; // run 15, size 1: coefficients 16, 32, 48, then 64
        has(&d, "past the end of the block");
        // A component that no scan covers.
        let d = {
            let mut d = stream(0xC1, 12, 8, 8, &[(1, 0x11), (2, 0x11)], &[0; 8]);
            let sos = d.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
            // One-component scan of component 1 only.
            d.splice(sos + 2..sos + 9, [0, 8, 1, 1, 0x00]);
            d
        };
        has(&d, "component 2 is in no scan");
    }
}
