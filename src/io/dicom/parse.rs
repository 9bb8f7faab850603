//! The data set of a DICOM file: the elements a radiograph's pixels depend on, read from the
//! file meta group and the data set in any of the uncompressed encodings (implicit or explicit
//! VR, little or big endian, deflated), everything else skipped by its length or by its
//! delimiters.

use std::borrow::Cow;
use std::io::Read;

/// A message saying what is wrong; the caller names the file.
pub(super) type Res<T> = std::result::Result<T, String>;

/// Transfer syntaxes crema knows by UID, and what it does with each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// Native pixels, implicit VR little endian (`1.2.840.10008.1.2`; also a file without
    /// meta group).
    ImplicitLe,
    /// Native pixels, explicit VR little endian (`.1.2.1`).
    ExplicitLe,
    /// Native pixels, explicit VR little endian, the data set deflated (`.1.2.1.99`).
    DeflatedLe,
    /// Native pixels, explicit VR big endian (`.1.2.2`, retired but still met).
    ExplicitBe,
    /// RLE Lossless (`.1.2.5`).
    Rle,
    /// JPEG baseline or extended, 8-bit (`.1.2.4.50`, `.51`).
    JpegBaseline,
    /// JPEG lossless, process 14 (`.1.2.4.57`, `.70`).
    JpegLossless,
    /// JPEG-LS, lossless or near-lossless (`.1.2.4.80`, `.81`).
    JpegLs,
    /// JPEG 2000 (`.1.2.4.90`, `.91`).
    Jpeg2000,
}

impl Syntax {
    /// The syntax of a transfer syntax UID, or a message saying why crema cannot read it.
    fn from_uid(uid: &str) -> Res<Syntax> {
        Ok(match uid {
            "1.2.840.10008.1.2" => Syntax::ImplicitLe,
            "1.2.840.10008.1.2.1" => Syntax::ExplicitLe,
            "1.2.840.10008.1.2.1.99" => Syntax::DeflatedLe,
            "1.2.840.10008.1.2.2" => Syntax::ExplicitBe,
            "1.2.840.10008.1.2.5" => Syntax::Rle,
            "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" => Syntax::JpegBaseline,
            "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => Syntax::JpegLossless,
            "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => Syntax::JpegLs,
            "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => Syntax::Jpeg2000,
            _ => {
                let name = match uid {
                    "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
                        "High-Throughput JPEG 2000"
                    }
                    "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "JPEG 2000 Part 2 multi-component",
                    u if u.starts_with("1.2.840.10008.1.2.4.10") => "MPEG video",
                    "1.2.840.10008.1.2.4.52" | "1.2.840.10008.1.2.4.53" | "1.2.840.10008.1.2.4.54" | "1.2.840.10008.1.2.4.55" => {
                        "a retired JPEG process"
                    }
                    _ => "an unknown transfer syntax",
                };
                return Err(format!(
                    "pixel data in {name} (transfer syntax {uid}), which crema does not decode; convert the file \
                     to an uncompressed or JPEG lossless one first (e.g. `gdcmconv --raw in.dcm out.dcm`)"
                ));
            }
        })
    }

    fn explicit(self) -> bool {
        self != Syntax::ImplicitLe
    }

    fn big_endian(self) -> bool {
        self == Syntax::ExplicitBe
    }

    /// Whether the pixel data is encapsulated (compressed frames in fragments).
    pub fn encapsulated(self) -> bool {
        matches!(self, Syntax::Rle | Syntax::JpegBaseline | Syntax::JpegLossless | Syntax::JpegLs | Syntax::Jpeg2000)
    }
}

/// A lookup table (Modality or VOI LUT): `data[i]` for input `first + i`, values of `bits` bits.
#[derive(Clone, Debug, PartialEq)]
pub struct Lut {
    /// The input value mapped by `data[0]`.
    pub first: i64,
    /// Bits of each output value.
    pub bits: u32,
    /// The table.
    pub data: Vec<u32>,
}

/// Where the pixel data is.
#[derive(Clone, Debug, PartialEq)]
pub enum PixelData {
    /// Native: the bytes of every frame, end to end; `ow`: the element's VR is OW (whose words
    /// a big-endian file swaps, 8-bit samples included).
    Native { range: std::ops::Range<usize>, ow: bool },
    /// Encapsulated: the Basic Offset Table's offsets and each fragment's bytes.
    Fragments { offsets: Vec<u32>, fragments: Vec<std::ops::Range<usize>> },
}

/// What crema reads of a DICOM image.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// How the pixels are encoded.
    pub syntax: Syntax,
    /// Rows, columns.
    pub rows: usize,
    pub cols: usize,
    /// Samples per pixel: 1 (gray) or 3 (colour).
    pub samples: usize,
    /// Bits allocated per sample, bits stored, high bit.
    pub bits_allocated: u32,
    pub bits_stored: u32,
    pub high_bit: u32,
    /// Whether samples are two's complement.
    pub signed: bool,
    /// 0: colour samples interleaved per pixel; 1: one plane per colour.
    pub planar: u16,
    /// MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, ... (trimmed).
    pub photometric: String,
    /// Number of frames (1 when absent).
    pub frames: usize,
    /// Rescale slope and intercept, when either is present.
    pub rescale: Option<(f64, f64)>,
    /// The first Modality LUT of the Modality LUT Sequence.
    pub modality_lut: Option<Lut>,
    /// The first window centre and width.
    pub window: Option<(f64, f64)>,
    /// VOI LUT Function (LINEAR when absent).
    pub voi_function: String,
    /// Pixel Padding Value and Pixel Padding Range Limit: stored values outside the image.
    pub padding: Option<(i64, i64)>,
    /// Presentation LUT Shape INVERSE.
    pub presentation_inverse: bool,
    /// The first VOI LUT of the VOI LUT Sequence.
    pub voi_lut: Option<Lut>,
    /// The pixel data.
    pub pixels: PixelData,
}

/// A parsed file: its header, and the bytes its ranges point into (the file itself, or the
/// inflated data set of a deflated one).
pub struct Parsed<'a> {
    pub header: Header,
    pub bytes: Cow<'a, [u8]>,
}

const ITEM: u32 = 0xFFFE_E000;
const ITEM_END: u32 = 0xFFFE_E00D;
const SEQ_END: u32 = 0xFFFE_E0DD;
const PIXEL_DATA: u32 = 0x7FE0_0010;
/// Nesting of sequences crema follows before calling a file hostile.
const MAX_DEPTH: usize = 64;

/// Whether `bytes` hold a Part-10 file ("DICM" after a 128-byte preamble).
pub fn has_preamble(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// Whether `bytes` look like a bare data set (no preamble, no meta group), as ACR-NEMA-era
/// files and some exports are: its first element is a group-0008 element, implicit or explicit
/// VR little endian.
pub fn looks_bare(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0] == 0x08 && bytes[1] == 0x00 && (bytes[3] == 0x00)
}

/// One element's header.
#[derive(Clone, Copy, Debug)]
struct Elem {
    tag: u32,
    vr: [u8; 2],
    /// `None`: undefined length.
    len: Option<usize>,
    /// Offset of the value.
    at: usize,
}

/// Reads elements of one encoding from a byte slice.
#[derive(Clone, Copy)]
struct Reader<'b> {
    b: &'b [u8],
    explicit: bool,
    be: bool,
}

impl<'b> Reader<'b> {
    fn u16_at(&self, at: usize) -> Res<u16> {
        let s = self.b.get(at..at + 2).ok_or_else(|| format!("truncated at byte {at}"))?;
        Ok(if self.be { u16::from_be_bytes([s[0], s[1]]) } else { u16::from_le_bytes([s[0], s[1]]) })
    }

    fn u32_at(&self, at: usize) -> Res<u32> {
        let s = self.b.get(at..at + 4).ok_or_else(|| format!("truncated at byte {at}"))?;
        let a = [s[0], s[1], s[2], s[3]];
        Ok(if self.be { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }

    /// The element header at `at`.
    fn elem(&self, at: usize) -> Res<Elem> {
        let tag = (self.u16_at(at)? as u32) << 16 | self.u16_at(at + 2)? as u32;
        let delimiter = tag >> 16 == 0xFFFE;
        let (vr, len, at_value) = if delimiter || !self.explicit {
            (*b"  ", self.u32_at(at + 4)?, at + 8)
        } else {
            let vr = self.b.get(at + 4..at + 6).ok_or_else(|| format!("truncated at byte {at}"))?;
            let vr = [vr[0], vr[1]];
            if !vr.iter().all(u8::is_ascii_uppercase) {
                return Err(format!("element ({:04X},{:04X}) at byte {at} has no valid VR (bytes {:02X} {:02X})", tag >> 16, tag & 0xFFFF, vr[0], vr[1]));
            }
            if matches!(&vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV") {
                (vr, self.u32_at(at + 8)?, at + 12)
            } else {
                (vr, self.u16_at(at + 6)? as u32, at + 8)
            }
        };
        let len = if len == u32::MAX { None } else { Some(len as usize) };
        if let Some(n) = len
            && at_value.checked_add(n).is_none_or(|end| end > self.b.len())
        {
            return Err(format!(
                "element ({:04X},{:04X}) at byte {at} claims {n} bytes, but only {} remain (truncated file?)",
                tag >> 16,
                tag & 0xFFFF,
                self.b.len().saturating_sub(at_value)
            ));
        }
        Ok(Elem { tag, vr, len, at: at_value })
    }

    fn value(&self, e: &Elem) -> &'b [u8] {
        // `elem` checked the range.
        let n = e.len.unwrap_or(0);
        &self.b[e.at..e.at + n]
    }

    /// The offset just past an element of undefined length starting its value at `at`: a
    /// sequence (items up to a sequence delimiter), or, for VR UN, one encoded as implicit VR
    /// little endian.
    fn skip_undefined(&self, e: &Elem, depth: usize) -> Res<usize> {
        if depth > MAX_DEPTH {
            return Err("sequences nested too deeply".into());
        }
        let inner = if &e.vr == b"UN" { Reader { explicit: false, be: false, ..*self } } else { *self };
        let mut at = e.at;
        loop {
            let item = inner.elem(at)?;
            match item.tag {
                SEQ_END => return Ok(item.at),
                ITEM => {
                    at = match item.len {
                        Some(n) => item.at + n,
                        None => inner.skip_item(item.at, depth + 1)?,
                    }
                }
                t => return Err(format!("({:04X},{:04X}) where a sequence item was expected at byte {at}", t >> 16, t & 0xFFFF)),
            }
        }
    }

    /// The offset just past an item of undefined length whose elements start at `at`.
    fn skip_item(&self, mut at: usize, depth: usize) -> Res<usize> {
        loop {
            let e = self.elem(at)?;
            if e.tag == ITEM_END {
                return Ok(e.at);
            }
            at = self.next(&e, depth)?;
        }
    }

    /// The offset of the element after `e`.
    fn next(&self, e: &Elem, depth: usize) -> Res<usize> {
        match e.len {
            Some(n) => Ok(e.at + n),
            None => self.skip_undefined(e, depth + 1),
        }
    }

    /// The elements of the first item of the sequence `e`, as (tag, VR, value) triples of the
    /// item's top level.
    /// The walk never passes the sequence's own end (for one of undefined length, the item's
    /// delimiter or a sequence delimiter ends it), so each sequence costs its own length.
    fn first_item(&self, e: &Elem) -> Res<Vec<ItemElem<&'b [u8]>>> {
        let inner = if &e.vr == b"UN" { Reader { explicit: false, be: false, ..*self } } else { *self };
        let seq_end = e.len.map_or(self.b.len(), |n| e.at + n);
        if seq_end == e.at {
            return Ok(Vec::new());
        }
        let item = inner.elem(e.at)?;
        if item.tag != ITEM {
            return Ok(Vec::new());
        }
        let stop = match item.len {
            Some(n) if item.at + n > seq_end => return Err(format!("an item at byte {} runs past the end of its sequence", e.at)),
            Some(n) => item.at + n,
            None => seq_end,
        };
        let mut out = Vec::new();
        let mut at = item.at;
        while at < stop {
            let el = inner.elem(at)?;
            if el.tag == ITEM_END || el.tag == SEQ_END {
                break;
            }
            if el.len.is_some() {
                out.push((el.tag, el.vr, inner.value(&el)));
            }
            at = inner.next(&el, 1)?;
        }
        Ok(out)
    }
}

/// An element of a sequence item: tag, VR (blank in implicit VR) and value.
type ItemElem<V> = (u32, [u8; 2], V);

/// Trimmed text of a string value (padding spaces and NULs removed).
fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim_matches(|c: char| c == ' ' || c == '\0').to_string()
}

/// The first number of a DS or IS value (values are separated by backslashes).
fn first_number(v: &[u8], what: &str) -> Res<f64> {
    let t = text(v);
    let first = t.split('\\').next().unwrap_or("").trim();
    first.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| format!("{what} is not a number: {t:?}"))
}

/// Header fields, gathered while walking the data set.
#[derive(Default)]
struct Fields {
    rows: Option<u16>,
    cols: Option<u16>,
    samples: Option<u16>,
    bits_allocated: Option<u16>,
    bits_stored: Option<u16>,
    high_bit: Option<u16>,
    signed: Option<u16>,
    planar: Option<u16>,
    photometric: Option<String>,
    frames: Option<f64>,
    slope: Option<f64>,
    intercept: Option<f64>,
    center: Option<f64>,
    width: Option<f64>,
    voi_function: Option<String>,
    padding: Option<Vec<u8>>,
    padding_limit: Option<Vec<u8>>,
    presentation_inverse: bool,
    modality_lut: Option<Vec<ItemElem<Vec<u8>>>>,
    voi_lut: Option<Vec<ItemElem<Vec<u8>>>>,
}

/// Parses a whole file.
pub fn parse(bytes: &[u8]) -> Res<Parsed<'_>> {
    let (syntax, start) = if has_preamble(bytes) {
        let (syntax, start) = meta(bytes)?;
        // Writers that say explicit VR little endian but wrote implicit VR exist: the first
        // element tells (a VR is two upper-case letters).
        let syntax = match syntax {
            Some(Syntax::ExplicitLe | Syntax::ImplicitLe) | None => sniff(&bytes[start..]),
            Some(s) => s,
        };
        (syntax, start)
    } else if looks_bare(bytes) {
        (sniff(bytes), 0)
    } else {
        return Err("not a DICOM file (no \"DICM\" at byte 128, and no data set at byte 0)".into());
    };
    let body: Cow<[u8]> = if syntax == Syntax::DeflatedLe {
        let rest = &bytes[start..];
        // Deflate expands at most 1032-fold; refuse anything claiming more before holding it,
        // and anything beyond 1 GiB (a 43 cm radiograph at 0.1 mm is 37 MB).
        let cap = (rest.len() as u64).saturating_mul(1032).min(1 << 30);
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(rest)
            .take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("the deflated data set does not inflate: {e}"))?;
        if out.len() as u64 > cap {
            return Err("the deflated data set inflates beyond 1032 times its size, or 1 GiB".into());
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(&bytes[start..])
    };
    let header = dataset(&body, syntax)?;
    // Ranges are relative to `body`; keep them so.
    Ok(Parsed { header, bytes: body })
}

/// Whether a little-endian data set starting at `b` is in explicit VR (its first element has
/// a VR) or implicit.
fn sniff(b: &[u8]) -> Syntax {
    if b.get(4..6).is_some_and(|vr| vr.iter().all(u8::is_ascii_uppercase)) { Syntax::ExplicitLe } else { Syntax::ImplicitLe }
}

/// The file meta group: the transfer syntax (`None` where the group names none) and where the
/// data set starts. The group is explicit VR little endian, or, from some old writers,
/// implicit.
fn meta(bytes: &[u8]) -> Res<(Option<Syntax>, usize)> {
    let explicit = matches!(sniff(&bytes[132..]), Syntax::ExplicitLe);
    let r = Reader { b: bytes, explicit, be: false };
    let mut at = 132;
    let mut uid = None;
    loop {
        if at + 4 > bytes.len() || r.u16_at(at)? != 0x0002 {
            break;
        }
        let e = r.elem(at).map_err(|m| format!("file meta group: {m}"))?;
        if e.tag == 0x0002_0010 {
            uid = Some(text(r.value(&e)));
        }
        at = match e.len {
            Some(n) => e.at + n,
            None => return Err("file meta group: an element of undefined length".into()),
        };
    }
    Ok((uid.map(|u| Syntax::from_uid(&u)).transpose()?, at))
}

/// Walks the data set up to the pixel data.
fn dataset(b: &[u8], syntax: Syntax) -> Res<Header> {
    let r = Reader { b, explicit: syntax.explicit(), be: syntax.big_endian() };
    let mut f = Fields::default();
    let mut at = 0;
    let us = |e: &Elem, v: &[u8], name: &str| -> Res<u16> {
        if v.len() < 2 {
            return Err(format!("{name} ({:04X},{:04X}) has {} bytes, not 2", e.tag >> 16, e.tag & 0xFFFF, v.len()));
        }
        Ok(if r.be { u16::from_be_bytes([v[0], v[1]]) } else { u16::from_le_bytes([v[0], v[1]]) })
    };
    let pixels = loop {
        if at >= b.len() {
            return Err("the file has no pixel data (7FE0,0010)".into());
        }
        let e = r.elem(at)?;
        if e.tag == PIXEL_DATA {
            break pixel_data(&r, &e, syntax)?;
        }
        if matches!(e.tag, 0x7FE0_0008 | 0x7FE0_0009) {
            return Err("float pixel data (7FE0,0008/0009) is not a radiograph crema can read".into());
        }
        if e.tag >> 16 == 0xFFFE {
            // A stray delimiter at the top level: step over it.
            at = e.at + e.len.unwrap_or(0);
            continue;
        }
        if e.tag > PIXEL_DATA {
            return Err("the file has no pixel data (7FE0,0010)".into());
        }
        if e.len.is_some() {
            let v = r.value(&e);
            match e.tag {
                0x0028_0002 => f.samples = Some(us(&e, v, "Samples per Pixel")?),
                0x0028_0004 => f.photometric = Some(text(v)),
                0x0028_0006 => f.planar = Some(us(&e, v, "Planar Configuration")?),
                // Empty or unreadable: one frame, as viewers take it.
                0x0028_0008 => f.frames = first_number(v, "Number of Frames").ok(),
                0x0028_0010 => f.rows = Some(us(&e, v, "Rows")?),
                0x0028_0011 => f.cols = Some(us(&e, v, "Columns")?),
                0x0028_0100 => f.bits_allocated = Some(us(&e, v, "Bits Allocated")?),
                0x0028_0101 => f.bits_stored = Some(us(&e, v, "Bits Stored")?),
                0x0028_0102 => f.high_bit = Some(us(&e, v, "High Bit")?),
                0x0028_0103 => f.signed = Some(us(&e, v, "Pixel Representation")?),
                // An unreadable window is no window: the next VOI rule applies.
                0x0028_1050 => f.center = first_number(v, "Window Center").ok(),
                0x0028_1051 => f.width = first_number(v, "Window Width").ok(),
                0x0028_1052 if !text(v).is_empty() => f.intercept = Some(first_number(v, "Rescale Intercept")?),
                0x0028_1053 if !text(v).is_empty() => f.slope = Some(first_number(v, "Rescale Slope")?),
                0x0028_1056 => f.voi_function = Some(text(v)),
                0x0028_0120 => f.padding = Some(v.to_vec()),
                0x0028_0121 => f.padding_limit = Some(v.to_vec()),
                0x2050_0020 => f.presentation_inverse = text(v) == "INVERSE",
                _ => {}
            }
        }
        let lut_seen = if e.tag == 0x0028_3000 { f.modality_lut.is_some() } else { f.voi_lut.is_some() };
        if matches!(e.tag, 0x0028_3000 | 0x0028_3010) && !lut_seen {
            let item: Vec<_> = r.first_item(&e)?.into_iter().map(|(t, vr, v)| (t, vr, v.to_vec())).collect();
            if !item.is_empty() {
                if e.tag == 0x0028_3000 { f.modality_lut = Some(item) } else { f.voi_lut = Some(item) }
            }
        }
        at = r.next(&e, 0)?;
    };
    finish(f, syntax, pixels, r.be)
}

/// The pixel data element: its native bytes, or its fragments.
fn pixel_data(r: &Reader, e: &Elem, syntax: Syntax) -> Res<PixelData> {
    match (e.len, syntax.encapsulated()) {
        (Some(n), false) => Ok(PixelData::Native { range: e.at..e.at + n, ow: &e.vr == b"OW" }),
        (None, true) => {
            let mut at = e.at;
            let mut offsets = Vec::new();
            let mut fragments = Vec::new();
            let mut first = true;
            loop {
                let item = r.elem(at)?;
                match (item.tag, item.len) {
                    (SEQ_END, _) => break,
                    (ITEM, Some(n)) => {
                        let v = r.value(&item);
                        // The first item is the Basic Offset Table: empty, or offsets starting
                        // at 0. Some writers leave it out; a first item that cannot be one (a
                        // JPEG or RLE frame) is then a fragment.
                        let is_table = v.len().is_multiple_of(4) && v.get(..4).is_none_or(|z| z == [0, 0, 0, 0]);
                        if first && is_table {
                            offsets = v.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                        } else {
                            fragments.push(item.at..item.at + n);
                        }
                        first = false;
                        at = item.at + n;
                    }
                    _ => return Err(format!("encapsulated pixel data: a malformed fragment at byte {at}")),
                }
                if at >= r.b.len() {
                    // Some writers end the file without the sequence delimiter.
                    break;
                }
            }
            Ok(PixelData::Fragments { offsets, fragments })
        }
        (Some(_), true) => Err("compressed pixel data with a defined length (it must be encapsulated)".into()),
        (None, false) => Err("native pixel data with an undefined length".into()),
    }
}

/// Reads a LUT from the elements of a Modality or VOI LUT Sequence item.
fn lut(item: &[ItemElem<Vec<u8>>], be: bool, signed_input: bool, what: &str) -> Res<Option<Lut>> {
    let get = |tag: u32| item.iter().find(|(t, _, _)| *t == tag);
    let (Some(desc), Some(data)) = (get(0x0028_3002), get(0x0028_3006)) else {
        return Ok(None);
    };
    let u16s = |v: &[u8]| -> Vec<u16> {
        v.chunks_exact(2).map(|c| if be { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) }).collect()
    };
    let d = u16s(&desc.2);
    if d.len() != 3 {
        return Err(format!("{what}: LUT Descriptor has {} values, not 3", d.len()));
    }
    let entries = if d[0] == 0 { 65536 } else { d[0] as usize };
    // The first value mapped is signed when the LUT's input can be negative (PS3.3 C.11.1.1.1:
    // for a Modality LUT, Pixel Representation), whatever VR a writer gave it, or when the VR
    // is SS.
    let signed_first = signed_input || &desc.1 == b"SS";
    let first = if signed_first { d[1] as i16 as i64 } else { d[1] as i64 };
    let bits = d[2] as u32;
    if !(1..=16).contains(&bits) {
        return Err(format!("{what}: LUT Descriptor gives {bits} bits per entry (1 to 16 allowed)"));
    }
    let values: Vec<u32> = if bits <= 8 && data.2.len() == entries {
        // 8-bit entries packed one a byte (an OB-like LUT Data some writers use).
        data.2.iter().map(|&v| v as u32).collect()
    } else {
        u16s(&data.2).into_iter().map(u32::from).collect()
    };
    if values.len() < entries {
        return Err(format!("{what}: LUT Data holds {} entries, its descriptor says {entries}", values.len()));
    }
    let mask = (1u32 << bits) - 1;
    Ok(Some(Lut { first, bits, data: values[..entries].iter().map(|v| v & mask).collect() }))
}

fn finish(f: Fields, syntax: Syntax, pixels: PixelData, be: bool) -> Res<Header> {
    let need = |v: Option<u16>, name: &str| v.ok_or_else(|| format!("no {name} in the file: not an image"));
    let rows = need(f.rows, "Rows (0028,0010)")? as usize;
    let cols = need(f.cols, "Columns (0028,0011)")? as usize;
    let samples = f.samples.unwrap_or(1) as usize;
    let bits_allocated = need(f.bits_allocated, "Bits Allocated (0028,0100)")? as u32;
    let bits_stored = f.bits_stored.map_or(bits_allocated, u32::from);
    let high_bit = f.high_bit.map_or(bits_stored.saturating_sub(1), u32::from);
    let photometric = f.photometric.unwrap_or_else(|| if samples == 1 { "MONOCHROME2".into() } else { "RGB".into() });
    if rows == 0 || cols == 0 {
        return Err(format!("an image of {rows} x {cols} pixels"));
    }
    if samples != 1 && samples != 3 {
        return Err(format!("{samples} samples per pixel (1 or 3 can be read)"));
    }
    if !matches!(bits_allocated, 8 | 16 | 32) {
        return Err(format!("{bits_allocated} bits allocated per sample (8, 16 or 32 can be read)"));
    }
    if bits_stored == 0 || bits_stored > bits_allocated || high_bit >= bits_allocated || high_bit + 1 < bits_stored {
        return Err(format!("inconsistent bits: {bits_allocated} allocated, {bits_stored} stored, high bit {high_bit}"));
    }
    let frames = match f.frames {
        None => 1,
        Some(n) if n <= 1.0 => 1,
        Some(n) if n.fract() == 0.0 && n <= 1e9 => n as usize,
        Some(n) => return Err(format!("Number of Frames is {n}")),
    };
    let signed = f.signed.unwrap_or(0) == 1;
    let modality_lut = match &f.modality_lut {
        Some(item) => lut(item, be, signed, "Modality LUT Sequence")?,
        None => None,
    };
    // A VOI LUT's input is the modality LUT's output, signed when the rescaled values can be.
    let voi_signed = if modality_lut.is_some() { false } else { signed || f.intercept.is_some_and(|i| i < 0.0) };
    let voi_lut = match &f.voi_lut {
        Some(item) => lut(item, be, voi_signed, "VOI LUT Sequence")?,
        None => None,
    };
    // An identity rescale is no rescale (8-bit data then shows as it is).
    let rescale = Some((f.slope.unwrap_or(1.0), f.intercept.unwrap_or(0.0))).filter(|&r| r != (1.0, 0.0));
    // A window the VOI LUT Function cannot use (LINEAR needs a width of at least 1, the others a
    // positive one) is no window: the next VOI rule applies, as viewers do.
    let linear = matches!(f.voi_function.as_deref(), None | Some("") | Some("LINEAR"));
    let window = match (f.center, f.width) {
        (Some(c), Some(w)) if (linear && w >= 1.0) || (!linear && w > 0.0) => Some((c, w)),
        _ => None,
    };
    let value = |v: &Option<Vec<u8>>| -> Option<i64> {
        let v = v.as_ref().filter(|v| v.len() >= 2)?;
        let u = if be { u16::from_be_bytes([v[0], v[1]]) } else { u16::from_le_bytes([v[0], v[1]]) };
        Some(if signed { u as i16 as i64 } else { u as i64 })
    };
    let padding = value(&f.padding).map(|p| {
        let limit = value(&f.padding_limit).unwrap_or(p);
        (p.min(limit), p.max(limit))
    });
    Ok(Header {
        syntax,
        rows,
        cols,
        samples,
        bits_allocated,
        bits_stored,
        high_bit,
        signed,
        planar: f.planar.unwrap_or(0),
        photometric,
        frames,
        rescale,
        modality_lut,
        window,
        voi_function: f.voi_function.unwrap_or_default(),
        padding,
        presentation_inverse: f.presentation_inverse,
        voi_lut,
        pixels,
    })
}
