//! What crema's JPEG decoders share: reading markers and marker segments (ITU-T T.81 B.1, which
//! JPEG-LS keeps), and the Huffman decoding of the sequential DCT and lossless processes (T.81
//! annex C and F.2.2): code tables with a one-step lookup for short codes, and a reader of a
//! scan's entropy-coded bits that removes stuffed zero bytes, stops at markers and moves past
//! restart markers. Used by [`super::jpeg_lossless`], [`super::jpeg12`] and [`super::jpeg_ls`].

/// Reads the marker at `*pos` (after any fill bytes) and moves past it; `None` at the end of
/// the data. `stuffed` tells the second bytes that are not markers after 0xFF (0x00 in T.81;
/// below 0x80 but for TEM in JPEG-LS); `what` begins the error messages.
pub(super) fn next_marker(data: &[u8], pos: &mut usize, stuffed: fn(u8) -> bool, what: &str) -> Result<Option<u8>, String> {
    let Some(&b) = data.get(*pos) else {
        return Ok(None);
    };
    if b != 0xFF {
        return Err(format!("{what}expected a marker at offset {}, found byte 0x{b:02X}", *pos));
    }
    while data.get(*pos) == Some(&0xFF) {
        *pos += 1;
    }
    match data.get(*pos) {
        None => Ok(None),
        Some(&m) if stuffed(m) => Err(format!("{what}expected a marker at offset {}, found 0xFF{m:02X}", *pos - 1)),
        Some(&m) => {
            *pos += 1;
            Ok(Some(m))
        }
    }
}

/// The next marker of a stream, moving `*pos` past it; `None` at the end of the data. Right
/// after a scan's data, bytes before the next marker are skipped (stray bytes are tolerated
/// there, `in_data` telling the second bytes after 0xFF that belong to the data); elsewhere a
/// marker must come next ([`next_marker`]).
pub(super) fn marker_after(data: &[u8], pos: &mut usize, after_scan: bool, in_data: fn(u8) -> bool, stuffed: fn(u8) -> bool, what: &str) -> Result<Option<u8>, String> {
    if !after_scan {
        return next_marker(data, pos, stuffed, what);
    }
    let mut from = *pos;
    loop {
        let Some(off) = data.get(from..).and_then(|d| d.iter().position(|&b| b == 0xFF)) else { return Ok(None) };
        let at = from + off;
        match data.get(at + 1) {
            None => return Ok(None),
            Some(0xFF) => from = at + 1,
            Some(&m) if in_data(m) => from = at + 2,
            Some(&m) => {
                *pos = at + 2;
                return Ok(Some(m));
            }
        }
    }
}

/// The body of the marker segment at `*pos` (after its length field), checked against the
/// bytes that remain; moves past it.
pub(super) fn segment<'a>(data: &'a [u8], pos: &mut usize, what: &str) -> Result<&'a [u8], String> {
    let Some(l) = data.get(*pos..*pos + 2) else {
        return Err(format!("{what}truncated marker segment length"));
    };
    let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
    if len < 2 {
        return Err(format!("{what}marker segment length {len} at offset {} is below 2", *pos));
    }
    let Some(body) = data.get(*pos + 2..*pos + len) else {
        return Err(format!("{what}truncated marker segment at offset {} (length {len}, {} bytes remain)", *pos, data.len() - *pos));
    };
    *pos += len;
    Ok(body)
}

/// One component of a frame header: its identifier, sampling factors and the field after them
/// (the DCT's quantisation table selector; unused by the lossless processes).
pub(super) struct FrameComponent {
    pub id: u8,
    pub h: usize,
    pub v: usize,
    pub tq: u8,
}

/// A frame header's fields (T.81 B.2.2, which JPEG-LS keeps).
pub(super) struct FrameFields {
    pub precision: u8,
    pub height: usize,
    pub width: usize,
    pub components: Vec<FrameComponent>,
}

/// Reads the frame header `seg` (named `sof` in messages) with the checks every decoder makes:
/// the length against the component count, a height given in the header (not by a DNL
/// marker), a width and at least one component, distinct component identifiers, and at most
/// `max_samples` samples in all. What depends on the process (precision, sampling factors,
/// tables) is the caller's to check. Errors are messages without the decoder's prefix.
pub(super) fn frame_fields(seg: &[u8], sof: &str, max_samples: usize) -> Result<FrameFields, String> {
    if seg.len() < 6 {
        return Err(format!("truncated {sof} frame header"));
    }
    let precision = seg[0];
    let height = usize::from(u16::from_be_bytes([seg[1], seg[2]]));
    let width = usize::from(u16::from_be_bytes([seg[3], seg[4]]));
    let nf = usize::from(seg[5]);
    if seg.len() != 6 + 3 * nf {
        return Err(format!("{sof} frame header length {} does not match its {nf} components", seg.len() + 2));
    }
    if height == 0 {
        return Err("frame height 0 (height given by a DNL marker) is not supported".into());
    }
    if width == 0 || nf == 0 {
        return Err(format!("frame has width {width} and {nf} components"));
    }
    let mut components: Vec<FrameComponent> = Vec::with_capacity(nf);
    for c in seg[6..].chunks_exact(3) {
        if components.iter().any(|k| k.id == c[0]) {
            return Err(format!("component identifier {} appears twice in the frame", c[0]));
        }
        components.push(FrameComponent { id: c[0], h: usize::from(c[1] >> 4), v: usize::from(c[1] & 15), tq: c[2] });
    }
    if !matches!(width.checked_mul(height).and_then(|n| n.checked_mul(nf)), Some(n) if n <= max_samples) {
        return Err(format!("frame of {width}x{height}x{nf} samples exceeds the limit of {max_samples}"));
    }
    Ok(FrameFields { precision, height, width, components })
}

/// Bits of the Huffman lookup table's index: codes up to this long decode in one step.
const LUT_BITS: u32 = 9;

/// A Huffman table (T.81 annex C, decoding as in F.2.2.3).
pub(super) struct Huffman {
    /// Indexed by the next LUT_BITS bits: `(code length << 8) | symbol`, or 0 where the
    /// code is longer than LUT_BITS (or invalid).
    lut: [u16; 1 << LUT_BITS],
    /// For each code length 1..=16 (index 0 unused): largest code, or -1 for none.
    maxcode: [i32; 17],
    /// For each code length: the first code of that length.
    mincode: [i32; 17],
    /// For each code length: the index in `values` of its first symbol.
    valptr: [i32; 17],
    /// The symbols, in code order.
    values: Vec<u8>,
}

impl Huffman {
    /// Builds a table from BITS (code counts per length 1..=16) and HUFFVAL.
    pub(super) fn new(counts: &[u8; 16], values: &[u8], what: &str) -> Result<Huffman, String> {
        let mut t = Huffman {
            lut: [0; 1 << LUT_BITS],
            maxcode: [-1; 17],
            mincode: [0; 17],
            valptr: [0; 17],
            values: values.to_vec(),
        };
        let mut code: u32 = 0;
        let mut k: usize = 0;
        for len in 1..=16u32 {
            let n = u32::from(counts[len as usize - 1]);
            t.valptr[len as usize] = k as i32;
            t.mincode[len as usize] = code as i32;
            for _ in 0..n {
                if code >= (1u32 << len) {
                    return Err(format!("{what}invalid Huffman table (too many codes of length {len})"));
                }
                if len <= LUT_BITS {
                    let shift = LUT_BITS - len;
                    let first = (code << shift) as usize;
                    let entry = ((len as u16) << 8) | u16::from(values[k]);
                    t.lut[first..first + (1usize << shift)].fill(entry);
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                t.maxcode[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        Ok(t)
    }
}

/// Reads the entropy-coded bits of a scan: removes the 0x00 stuffed after 0xFF and stops at
/// a marker or at the end of the data.
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    /// The codec's name, to begin error messages with ("JPEG lossless: ").
    what: &'static str,
    /// Next byte to read.
    pub(super) pos: usize,
    /// Bits, most significant first: the top `nbits` are data, the rest 0 (or 1 once ended).
    buf: u64,
    nbits: u32,
    /// A marker or the end of the data was reached: no more bytes come.
    ended: bool,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(data: &'a [u8], pos: usize, what: &'static str) -> Self {
        BitReader {
            data,
            what,
            pos,
            buf: 0,
            nbits: 0,
            ended: false,
        }
    }

    /// Fills the buffer to more than 56 bits, or to what remains before a marker or the end
    /// (the bits past that are set to 1 for peeking).
    #[inline(never)]
    fn refill(&mut self) {
        if !self.ended {
            // Fast path: eight bytes with no 0xFF among them.
            while self.nbits <= 56 {
                if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
                    let word = u64::from_be_bytes(chunk.try_into().unwrap_or([0xFF; 8]));
                    let inv = !word;
                    // Nonzero iff some byte of `inv` is zero, i.e. some byte of `word` is 0xFF.
                    let has_ff =
                        inv.wrapping_sub(0x0101_0101_0101_0101) & !inv & 0x8080_8080_8080_8080;
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
                break;
            }
            while self.nbits <= 56 {
                let Some(&b) = self.data.get(self.pos) else {
                    self.ended = true;
                    break;
                };
                if b == 0xFF {
                    if self.data.get(self.pos + 1) == Some(&0) {
                        self.pos += 2;
                    } else {
                        self.ended = true;
                        break;
                    }
                } else {
                    self.pos += 1;
                }
                self.buf |= u64::from(b) << (56 - self.nbits);
                self.nbits += 8;
            }
        }
        if self.ended && self.nbits < 64 {
            self.buf |= u64::MAX >> self.nbits;
        }
    }

    /// The error for a read past the data.
    fn truncated(&self) -> String {
        match self.data.get(self.pos + 1) {
            Some(&m) => format!(
                "{}scan data ends early (marker 0xFF{m:02X} at offset {} before the end of the scan)",
                self.what, self.pos
            ),
            _ => format!("{}truncated scan data", self.what),
        }
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) -> Result<(), String> {
        if n > self.nbits {
            return Err(self.truncated());
        }
        self.buf <<= n;
        self.nbits -= n;
        Ok(())
    }

    /// Decodes one Huffman symbol. Leaves at least 15 bits buffered for what follows it,
    /// unless the data has ended.
    #[inline(always)]
    pub(super) fn symbol(&mut self, t: &Huffman) -> Result<u8, String> {
        if self.nbits < 32 {
            self.refill();
        }
        let e = t.lut[(self.buf >> (64 - LUT_BITS)) as usize];
        let (len, s) = if e != 0 {
            (u32::from(e >> 8), e as u8)
        } else {
            self.slow_code(t)?
        };
        self.consume(len)?;
        Ok(s)
    }

    /// Reads `s` (0..=15) magnitude bits and extends them to a signed value (F.2.2.1).
    #[inline(always)]
    pub(super) fn extend(&mut self, s: u32) -> Result<i32, String> {
        if s == 0 {
            return Ok(0);
        }
        let v = (self.buf >> (64 - s)) as i32;
        self.consume(s)?;
        Ok(if v < (1 << (s - 1)) {
            v - (1 << s) + 1
        } else {
            v
        })
    }

    /// Decodes a code longer than LUT_BITS: (length, symbol).
    #[cold]
    fn slow_code(&self, t: &Huffman) -> Result<(u32, u8), String> {
        let peek = (self.buf >> 48) as u32;
        for len in LUT_BITS + 1..=16 {
            let code = (peek >> (16 - len)) as i32;
            if code <= t.maxcode[len as usize] {
                let i = t.valptr[len as usize] + code - t.mincode[len as usize];
                if let Some(&s) = usize::try_from(i).ok().and_then(|i| t.values.get(i)) {
                    return Ok((len, s));
                }
                break;
            }
        }
        if self.ended && self.nbits < 16 {
            return Err(self.truncated());
        }
        Err(format!("{}invalid Huffman code in scan data", self.what))
    }

    /// Moves past the restart marker that ends a restart interval.
    pub(super) fn restart(&mut self) -> Result<(), String> {
        self.buf = 0;
        self.nbits = 0;
        self.ended = false;
        match find_marker(self.data, self.pos) {
            Some((at, m)) if (0xD0..=0xD7).contains(&m) => {
                self.pos = at + 2;
                Ok(())
            }
            Some((at, m)) => Err(format!("{}expected a restart marker in scan data, found 0xFF{m:02X} at offset {at}", self.what)),
            None => Err(format!("{}truncated scan data (restart marker missing)", self.what)),
        }
    }
}

/// The next marker at or after `pos` (skipping entropy-coded bytes, stuffed 0xFF00 and fill
/// bytes): its offset (of its last 0xFF) and code.
pub(super) fn find_marker(data: &[u8], mut pos: usize) -> Option<(usize, u8)> {
    loop {
        let off = data.get(pos..)?.iter().position(|&b| b == 0xFF)?;
        let at = pos + off;
        match *data.get(at + 1)? {
            0x00 => pos = at + 2,
            0xFF => pos = at + 1,
            m => return Some((at, m)),
        }
    }
}
