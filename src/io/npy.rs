//! NumPy `.npy` arrays: reading format versions 1.0, 2.0 and 3.0 into f32, writing `<f4` in C
//! order.
//!
//! Floats (`f4`, and `f8` and `f2`, converted) are always read; integer and boolean dtypes are
//! converted to f32 only when [`NpyOptions::integers`] asks for it, and are an error
//! otherwise, so that a label file read where data was expected does not pass unnoticed.
//! Fortran-order arrays and structured dtypes are errors. Like `numpy.load`, bytes after the
//! array's data are ignored.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// An array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NpyArray {
    /// The dimensions, outermost first; empty for a 0-d array (one element).
    pub shape: Vec<usize>,
    /// The values in C order, converted to f32.
    pub data: Vec<f32>,
}

/// How [`read_npy_with`] treats dtypes that are not floating point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NpyOptions {
    /// Convert integer and boolean arrays (`i1`..`i8`, `u1`..`u8`, `b1`) to f32 (exactly up
    /// to 2^24, rounded beyond) instead of refusing them.
    pub integers: bool,
}

/// Reads a `.npy` file of floating-point values.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    read_npy_with(path, NpyOptions::default())
}

/// Reads a `.npy` file with `options`.
pub fn read_npy_with(path: impl AsRef<Path>, options: NpyOptions) -> Result<NpyArray> {
    let path = path.as_ref();
    let bytes = super::FileBytes::open(path)?;
    decode_npy(&bytes, &path.display().to_string(), options)
}

/// Decodes the bytes of a `.npy` file; `file` names it in errors.
pub fn decode_npy(bytes: &[u8], file: &str, options: NpyOptions) -> Result<NpyArray> {
    decode(bytes, options).map_err(|msg| Error::Decode {
        file: file.to_string(),
        msg,
    })
}

/// Writes `data` of `shape` as a `<f4` C-order `.npy` file (version 1.0, or 2.0 for a header
/// too long for 1.0), atomically.
pub fn write_npy(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    let path = path.as_ref();
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(data.len()) {
        return Err(Error::Encode {
            file: path.display().to_string(),
            msg: format!("{} values do not fill shape {shape:?}", data.len()),
        });
    }
    let header = header_bytes(shape);
    super::atomic_write(path, |w| {
        w.write_all(&header)?;
        let mut buf = [0u8; 64 * 1024];
        for chunk in data.chunks(buf.len() / 4) {
            for (dst, v) in buf.chunks_exact_mut(4).zip(chunk) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
            w.write_all(&buf[..4 * chunk.len()])?;
        }
        Ok(())
    })
}

/// Magic, version, length and the dict, padded with spaces and a newline to a multiple of 64
/// bytes as NumPy does.
fn header_bytes(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    let (version, len_bytes) = if dict.len() + 1 + 10 <= u16::MAX as usize {
        (1u8, 2)
    } else {
        (2u8, 4)
    };
    let prefix = MAGIC.len() + 2 + len_bytes;
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    while prefix + dict.len() + 1 < total {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend([version, 0]);
    if version == 1 {
        out.extend((dict.len() as u16).to_le_bytes());
    } else {
        out.extend((dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out
}

/// The element type: kind (`f`, `i`, `u`, `b`), size in bytes, byte order.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dtype {
    kind: char,
    size: usize,
    big_endian: bool,
}

fn decode(bytes: &[u8], options: NpyOptions) -> std::result::Result<NpyArray, String> {
    if bytes.is_empty() {
        return Err("empty file: not a .npy array".into());
    }
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a .npy file (bad magic string)".into());
    }
    let major = bytes[6];
    let minor = bytes[7];
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => return Err(format!("unsupported .npy format version {major}.{minor}")),
    };
    let start = 8 + len_bytes;
    let Some(len_field) = bytes.get(8..start) else {
        return Err("truncated in the header length".into());
    };
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([len_field[0], len_field[1]]) as usize
    } else {
        u32::from_le_bytes([len_field[0], len_field[1], len_field[2], len_field[3]]) as usize
    };
    let Some(header) = bytes.get(start..start.saturating_add(header_len)) else {
        return Err(format!(
            "truncated: header claims {header_len} bytes but only {} remain",
            bytes.len() - start.min(bytes.len())
        ));
    };
    let header = std::str::from_utf8(header).map_err(|_| "bad header: not text".to_string())?;
    let (dtype, fortran, shape) =
        parse_header(header).map_err(|e| format!("bad header {:?}: {e}", header.trim_end()))?;
    if fortran {
        return Err("fortran_order True is not supported (write the array in C order)".into());
    }
    if dtype.kind != 'f' && !options.integers {
        return Err(format!(
            "dtype {} holds {}; read it with NpyOptions {{ integers: true }} to convert to f32",
            dtype_name(dtype),
            if dtype.kind == 'b' {
                "booleans"
            } else {
                "integers"
            }
        ));
    }
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in memory"))?;
    let body = &bytes[start + header_len..];
    let needed = count.checked_mul(dtype.size).filter(|&n| n <= body.len()).ok_or_else(|| {
        format!(
            "truncated: shape {shape:?} of {} needs {count} x {} bytes but only {} follow the header",
            dtype_name(dtype),
            dtype.size,
            body.len()
        )
    })?;
    let data = convert(&body[..needed], dtype);
    Ok(NpyArray { shape, data })
}

fn dtype_name(d: Dtype) -> String {
    let order = if d.size == 1 {
        '|'
    } else if d.big_endian {
        '>'
    } else {
        '<'
    };
    format!("'{order}{}{}'", d.kind, d.size)
}

/// Decodes `bytes` (a whole number of elements) to f32.
fn convert(bytes: &[u8], d: Dtype) -> Vec<f32> {
    fn each<const N: usize>(bytes: &[u8], big: bool, f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                if big {
                    a.reverse();
                }
                f(a)
            })
            .collect()
    }
    let be = d.big_endian;
    match (d.kind, d.size) {
        ('f', 4) => each(bytes, be, f32::from_le_bytes),
        ('f', 8) => each(bytes, be, |a| f64::from_le_bytes(a) as f32),
        ('f', 2) => each(bytes, be, |a| f16_to_f32(u16::from_le_bytes(a))),
        ('i', 1) => each(bytes, be, |a: [u8; 1]| a[0] as i8 as f32),
        ('u', 1) => each(bytes, be, |a: [u8; 1]| a[0] as f32),
        ('b', 1) => each(bytes, be, |a: [u8; 1]| if a[0] != 0 { 1.0 } else { 0.0 }),
        ('i', 2) => each(bytes, be, |a| i16::from_le_bytes(a) as f32),
        ('u', 2) => each(bytes, be, |a| u16::from_le_bytes(a) as f32),
        ('i', 4) => each(bytes, be, |a| i32::from_le_bytes(a) as f32),
        ('u', 4) => each(bytes, be, |a| u32::from_le_bytes(a) as f32),
        ('i', 8) => each(bytes, be, |a| i64::from_le_bytes(a) as f32),
        ('u', 8) => each(bytes, be, |a| u64::from_le_bytes(a) as f32),
        // parse_dtype admits nothing else
        _ => Vec::new(),
    }
}

/// IEEE half to single precision, exactly.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match exp {
        0 => {
            let v = mant as f32 / 16_777_216.0; // mant * 2^-24
            return if sign != 0 { -v } else { v };
        }
        31 => sign | 0x7f80_0000 | (mant << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

fn parse_dtype(s: &str) -> std::result::Result<Dtype, String> {
    let mut chars = s.chars();
    let order = chars.next().ok_or("empty descr")?;
    let big_endian = match order {
        '<' | '|' => false,
        '>' => true,
        '=' => cfg!(target_endian = "big"),
        _ => return Err(format!("descr '{s}' has no byte-order mark")),
    };
    let kind = chars
        .next()
        .ok_or_else(|| format!("descr '{s}' has no kind"))?;
    let size: usize = chars
        .as_str()
        .parse()
        .map_err(|_| format!("descr '{s}' has no size"))?;
    let ok = matches!(
        (kind, size),
        ('f', 2 | 4 | 8) | ('i' | 'u', 1 | 2 | 4 | 8) | ('b', 1)
    );
    if !ok {
        return Err(format!("unsupported dtype '{s}'"));
    }
    Ok(Dtype {
        kind,
        size,
        big_endian,
    })
}

/// Parses the header's Python dict literal: `descr`, `fortran_order` and `shape`, nothing else.
fn parse_header(h: &str) -> std::result::Result<(Dtype, bool, Vec<usize>), String> {
    let mut p = Lit {
        s: h.as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" => {
                if p.peek() != Some(b'\'') && p.peek() != Some(b'"') {
                    return Err("structured dtypes are not supported".into());
                }
                descr = Some(parse_dtype(&p.string()?)?)
            }
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => return Err(format!("unexpected key '{other}'")),
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    match (descr, fortran, shape) {
        (Some(d), Some(f), Some(s)) => Ok((d, f, s)),
        _ => Err("missing one of 'descr', 'fortran_order', 'shape'".into()),
    }
}

/// A cursor over a Python literal.
struct Lit<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lit<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at column {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let q = self
            .peek()
            .filter(|&q| q == b'\'' || q == b'"')
            .ok_or("expected a string")?;
        self.i += 1;
        let start = self.i;
        while self.s.get(self.i).is_some_and(|&c| c != q) {
            self.i += 1;
        }
        let out = self.s.get(start..self.i).ok_or("unterminated string")?;
        self.expect_raw(q)?;
        Ok(String::from_utf8_lossy(out).into_owned())
    }
    fn expect_raw(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err("unterminated string".into())
        }
    }
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        self.ws();
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err("expected True or False".into())
    }
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(out);
            }
            self.ws();
            let start = self.i;
            while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let d: usize = digits
                .parse()
                .map_err(|_| "shape holds something other than non-negative integers")?;
            out.push(d);
            self.eat(b'L'); // Python 2 longs
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, fortran: &str, body: &[u8]) -> Vec<u8> {
        let dict =
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n");
        let mut b = MAGIC.to_vec();
        b.extend([1, 0]);
        b.extend((dict.len() as u16).to_le_bytes());
        b.extend(dict.as_bytes());
        b.extend(body);
        b
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        for (shape, n) in [(vec![2, 3], 6), (vec![4], 4), (vec![], 1), (vec![0, 5], 0)] {
            let p = dir.path().join("a.npy");
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
            write_npy(&p, &shape, &data).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0);
            assert_eq!(read_npy(&p).unwrap(), NpyArray { shape, data });
        }
        assert!(write_npy(dir.path().join("b.npy"), &[3], &[1.0]).is_err());
    }

    #[test]
    fn header_format_matches_numpy() {
        let h = header_bytes(&[2, 3]);
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(text.ends_with(" \n"));
        let h = header_bytes(&[7]);
        assert!(
            std::str::from_utf8(&h[10..])
                .unwrap()
                .contains("'shape': (7,)")
        );
    }

    #[test]
    fn conversions() {
        let o = NpyOptions { integers: true };
        let f8: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            decode_npy(&npy("<f8", "(2,)", "False", &f8), "x", o)
                .unwrap()
                .data,
            vec![1.5, -2.0]
        );
        let be: Vec<u8> = [1.5f32, 3.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(
            decode_npy(&npy(">f4", "(2,)", "False", &be), "x", o)
                .unwrap()
                .data,
            vec![1.5, 3.0]
        );
        let i4: Vec<u8> = [-3i32, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            decode_npy(&npy("<i4", "(1, 2)", "False", &i4), "x", o)
                .unwrap()
                .data,
            vec![-3.0, 7.0]
        );
        let i8: Vec<u8> = [5i64].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            decode_npy(&npy("<i8", "(1,)", "False", &i8), "x", o)
                .unwrap()
                .data,
            vec![5.0]
        );
        assert_eq!(
            decode_npy(&npy("|u1", "(2,)", "False", &[0, 255]), "x", o)
                .unwrap()
                .data,
            vec![0.0, 255.0]
        );
        assert_eq!(
            decode_npy(&npy("|b1", "(2,)", "False", &[0, 1]), "x", o)
                .unwrap()
                .data,
            vec![0.0, 1.0]
        );
        let f2: Vec<u8> = [0x3c00u16, 0xc000, 0x0001]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let half = decode_npy(&npy("<f2", "(3,)", "False", &f2), "x", o)
            .unwrap()
            .data;
        assert_eq!(half, vec![1.0, -2.0, 5.960_464_5e-8]);
        let e = decode_npy(
            &npy("<i4", "(1, 2)", "False", &i4),
            "l.npy",
            NpyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "l.npy: dtype '<i4' holds integers; read it with NpyOptions { integers: true } to convert to f32"
        );
    }

    #[test]
    fn malformed_headers_and_bodies() {
        let o = NpyOptions::default();
        let err = |b: &[u8]| decode_npy(b, "a.npy", o).unwrap_err().to_string();
        assert_eq!(err(&[]), "a.npy: empty file: not a .npy array");
        assert!(err(b"PK\x03\x04zipfile").contains("bad magic"));
        assert!(err(&npy("<f4", "(2,)", "True", &[0; 8])).contains("fortran_order True"));
        assert!(err(&npy("<c8", "(2,)", "False", &[0; 16])).contains("unsupported dtype '<c8'"));
        assert!(err(&npy("<f4", "(2, -1)", "False", &[0; 8])).contains("non-negative integers"));
        assert!(err(&npy("<f4", "(3,)", "False", &[0; 8])).contains("truncated: shape [3]"));
        assert!(
            err(&npy(
                "<f4",
                "(4294967296, 4294967296, 4294967296)",
                "False",
                &[]
            ))
            .contains("more elements")
        );
        let mut v9 = npy("<f4", "(1,)", "False", &[0; 4]);
        v9[6] = 9;
        assert!(err(&v9).contains("version 9.0"));
        let full = npy("<f4", "(1,)", "False", &[0; 4]);
        for cut in 0..full.len() {
            assert!(
                decode_npy(&full[..cut], "a.npy", o).is_err(),
                "prefix {cut}"
            );
        }
        let structured = b"\x93NUMPY\x01\x00\x30\x00{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }";
        assert!(err(structured).contains("truncated") || err(structured).contains("structured"));
    }

    #[test]
    fn version_2_and_3_headers() {
        for major in [2u8, 3] {
            let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n";
            let mut b = MAGIC.to_vec();
            b.extend([major, 0]);
            b.extend((dict.len() as u32).to_le_bytes());
            b.extend(dict.as_bytes());
            b.extend(2.5f32.to_le_bytes());
            assert_eq!(
                decode_npy(&b, "x", NpyOptions::default()).unwrap().data,
                vec![2.5]
            );
        }
    }
}
