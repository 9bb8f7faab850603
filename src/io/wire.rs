//! The protocol-buffer wire format, by hand: a bounds-checked reader for untrusted bytes and
//! the few encoding helpers the writers need.
//!
//! The reader never allocates on the strength of a length or count it has read: a length is
//! checked against the bytes that remain before the slice is taken, so the largest thing any
//! caller can build from a field is bounded by the size of the input. Unknown fields of every
//! wire type are skipped (groups too, to a depth of [`MAX_GROUP_DEPTH`], without recursion),
//! which is what lets one walker read caffemodels written with any fork's field numbering.

use std::fmt;
use std::io::{self, Write};

/// Deepest nesting of (deprecated, proto2) groups the reader skips over; protobuf's own
/// default recursion limit.
pub const MAX_GROUP_DEPTH: usize = 100;

/// Longest varint: 64 bits in 7-bit groups.
const MAX_VARINT_LEN: usize = 10;

/// Wire type numbers as they appear in the low 3 bits of a tag.
pub(crate) const WT_VARINT: u8 = 0;
pub(crate) const WT_FIXED64: u8 = 1;
pub(crate) const WT_LEN: u8 = 2;
const WT_START_GROUP: u8 = 3;
const WT_END_GROUP: u8 = 4;
pub(crate) const WT_FIXED32: u8 = 5;

/// The payload of one field, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    /// The eight little-endian bytes as a u64 (a double or fixed64 by its bits).
    Fixed64(u64),
    /// A length-delimited payload and the absolute offset of its first byte.
    Len(&'a [u8], usize),
    /// The four little-endian bytes as a u32 (a float or fixed32 by its bits).
    Fixed32(u32),
    /// A group, already skipped: its content is never read.
    Group,
}

impl Value<'_> {
    /// The wire type's name as an error message says it.
    pub(crate) fn wire_name(&self) -> &'static str {
        match self {
            Value::Varint(_) => "varint",
            Value::Fixed64(_) => "fixed64",
            Value::Len(..) => "length-delimited",
            Value::Fixed32(_) => "fixed32",
            Value::Group => "group",
        }
    }
}

/// One field: its number, its value, and the absolute offset of its tag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    pub offset: usize,
}

/// What went wrong while decoding, the absolute byte offset where (if known) and the chain of
/// things it happened inside (innermost first). Turned into [`crate::Error::Decode`] with the
/// file's name by [`DecodeError::into_error`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodeError {
    pub msg: String,
    pub offset: Option<usize>,
    /// The field whose payload ran past the end, for a truncated length-delimited field: lets
    /// the caller say which layer or blob was cut off.
    pub truncated_field: Option<u32>,
    context: Vec<String>,
}

impl DecodeError {
    /// An error at a known byte offset.
    pub(crate) fn at(offset: usize, msg: impl Into<String>) -> Self {
        DecodeError {
            msg: msg.into(),
            offset: Some(offset),
            truncated_field: None,
            context: Vec::new(),
        }
    }

    /// An error about a whole message (a count that does not match a shape, say).
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        DecodeError {
            msg: msg.into(),
            offset: None,
            truncated_field: None,
            context: Vec::new(),
        }
    }

    /// Adds an enclosing context ("layer `conv1`", "blob 0", ...), outermost last.
    pub(crate) fn inside(mut self, ctx: impl Into<String>) -> Self {
        self.context.push(ctx.into());
        self
    }

    /// The crate error, naming `file`.
    pub(crate) fn into_error(self, file: &str) -> crate::Error {
        crate::Error::Decode {
            file: file.to_string(),
            msg: self.to_string(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset}")?;
        }
        if !self.context.is_empty() {
            f.write_str(" inside")?;
            for ctx in self.context.iter().rev() {
                write!(f, " {ctx}")?;
            }
        }
        Ok(())
    }
}

pub(crate) type DecodeResult<T> = std::result::Result<T, DecodeError>;

/// Iterates over the fields of one message held in `buf`, whose first byte is at absolute
/// offset `base` of the file (offsets in errors are the file's).
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole message.
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    /// Absolute offset of the next byte to read.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> DecodeResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(DecodeError::at(
                self.offset(),
                format!(
                    "truncated: {what} needs {n} bytes but only {} remain",
                    self.remaining()
                ),
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn read_varint(&mut self) -> DecodeResult<u64> {
        let start = self.offset();
        let mut value = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(DecodeError::at(start, "truncated varint"));
            };
            self.pos += 1;
            if i == MAX_VARINT_LEN - 1 {
                if byte & 0x80 != 0 {
                    return Err(DecodeError::at(start, "varint longer than 10 bytes"));
                }
                if byte > 1 {
                    return Err(DecodeError::at(start, "varint overflows 64 bits"));
                }
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        // Not reached: the tenth byte either ends the varint or is reported above.
        Err(DecodeError::at(start, "varint longer than 10 bytes"))
    }

    fn read_tag(&mut self) -> DecodeResult<(u32, u8)> {
        let offset = self.offset();
        let tag = self.read_varint()?;
        let number = tag >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(DecodeError::at(
                offset,
                format!("invalid field number {number}"),
            ));
        }
        Ok((number as u32, (tag & 7) as u8))
    }

    /// The next field, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> DecodeResult<Option<Field<'a>>> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        let offset = self.offset();
        let (number, wire) = self.read_tag()?;
        let value = self.read_value(number, wire, offset)?;
        Ok(Some(Field {
            number,
            value,
            offset,
        }))
    }

    fn read_value(&mut self, number: u32, wire: u8, offset: usize) -> DecodeResult<Value<'a>> {
        Ok(match wire {
            WT_VARINT => Value::Varint(self.read_varint()?),
            WT_FIXED64 => {
                let b = self.take(8, "a fixed64 field")?;
                Value::Fixed64(u64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            }
            WT_LEN => {
                let len_at = self.offset();
                let len = self.read_varint()?;
                if len > self.remaining() as u64 {
                    let mut e = DecodeError::at(
                        len_at,
                        format!(
                            "truncated: field {number} claims {len} bytes but only {} remain",
                            self.remaining()
                        ),
                    );
                    e.truncated_field = Some(number);
                    return Err(e);
                }
                let start = self.offset();
                Value::Len(self.take(len as usize, "a length-delimited field")?, start)
            }
            WT_START_GROUP => {
                self.skip_group(number)?;
                Value::Group
            }
            WT_END_GROUP => {
                return Err(DecodeError::at(
                    offset,
                    format!("unexpected end-group tag (field {number})"),
                ));
            }
            WT_FIXED32 => {
                let b = self.take(4, "a fixed32 field")?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            other => {
                return Err(DecodeError::at(
                    offset,
                    format!("invalid wire type {other} (field {number})"),
                ));
            }
        })
    }

    /// Skips a group whose start tag (field `number`) was just read, nested groups included,
    /// iteratively and to at most [`MAX_GROUP_DEPTH`] levels.
    fn skip_group(&mut self, number: u32) -> DecodeResult<()> {
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            if self.remaining() == 0 {
                return Err(DecodeError::at(
                    self.offset(),
                    format!("truncated: group {innermost} never ends"),
                ));
            }
            let offset = self.offset();
            let (n, wire) = self.read_tag()?;
            match wire {
                WT_START_GROUP => {
                    if open.len() >= MAX_GROUP_DEPTH {
                        return Err(DecodeError::at(
                            offset,
                            format!("groups nested deeper than {MAX_GROUP_DEPTH} levels"),
                        ));
                    }
                    open.push(n);
                }
                WT_END_GROUP => {
                    if n != innermost {
                        return Err(DecodeError::at(
                            offset,
                            format!("end-group tag for field {n} closes group {innermost}"),
                        ));
                    }
                    open.pop();
                }
                _ => {
                    self.read_value(n, wire, offset)?;
                }
            }
        }
        Ok(())
    }
}

/// The error for a known field that arrived with the wrong wire type.
pub(crate) fn wrong_wire(field: &Field<'_>, what: &str, expected: &str) -> DecodeError {
    DecodeError::at(
        field.offset,
        format!(
            "field {what} ({}) has wire type {}, expected {expected}",
            field.number,
            field.value.wire_name()
        ),
    )
}

/// A length-delimited field's payload and its absolute offset.
pub(crate) fn expect_len<'a>(field: &Field<'a>, what: &str) -> DecodeResult<(&'a [u8], usize)> {
    match field.value {
        Value::Len(bytes, at) => Ok((bytes, at)),
        _ => Err(wrong_wire(field, what, "length-delimited")),
    }
}

/// A varint field's value.
pub(crate) fn expect_varint(field: &Field<'_>, what: &str) -> DecodeResult<u64> {
    match field.value {
        Value::Varint(v) => Ok(v),
        _ => Err(wrong_wire(field, what, "varint")),
    }
}

/// A string field, decoded leniently (protobuf's C++ runtime only warns on bad UTF-8 in proto2).
pub(crate) fn expect_string(field: &Field<'_>, what: &str) -> DecodeResult<String> {
    let (bytes, _) = expect_len(field, what)?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// How many values a repeated scalar field of `width` bytes (4 for float, 8 for double)
/// contributes, packed or not. Checks the wire type and that a packed payload is a whole
/// number of values.
pub(crate) fn count_fixed(field: &Field<'_>, what: &str, width: usize) -> DecodeResult<usize> {
    match (field.value, width) {
        (Value::Fixed32(_), 4) | (Value::Fixed64(_), 8) => Ok(1),
        (Value::Len(bytes, at), _) => {
            if bytes.len() % width != 0 {
                Err(DecodeError::at(
                    at,
                    format!(
                        "packed {what} has {} bytes, not a multiple of {width}",
                        bytes.len()
                    ),
                ))
            } else {
                Ok(bytes.len() / width)
            }
        }
        _ => Err(wrong_wire(
            field,
            what,
            if width == 4 {
                "fixed32 or packed"
            } else {
                "fixed64 or packed"
            },
        )),
    }
}

/// Appends a float field's values (packed or not) to `out`. The wire type must already have
/// been checked by [`count_fixed`].
pub(crate) fn append_f32(field: &Field<'_>, out: &mut Vec<f32>) {
    match field.value {
        Value::Fixed32(bits) => out.push(f32::from_bits(bits)),
        Value::Len(bytes, _) => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        _ => {}
    }
}

/// Appends a double field's values (packed or not) to `out`, narrowed to f32 as Caffe's
/// `Blob<float>::FromProto` does. The wire type must already have been checked.
pub(crate) fn append_f64_as_f32(field: &Field<'_>, out: &mut Vec<f32>) {
    match field.value {
        Value::Fixed64(bits) => out.push(f64::from_bits(bits) as f32),
        Value::Len(bytes, _) => {
            out.extend(bytes.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
        _ => {}
    }
}

/// Appends a repeated varint field's values (packed or not) to `out`.
pub(crate) fn append_varints(
    field: &Field<'_>,
    what: &str,
    out: &mut Vec<u64>,
) -> DecodeResult<()> {
    match field.value {
        Value::Varint(v) => out.push(v),
        Value::Len(bytes, at) => {
            let mut r = Reader::new(bytes, at);
            while r.remaining() > 0 {
                out.push(r.read_varint()?);
            }
        }
        _ => return Err(wrong_wire(field, what, "varint or packed")),
    }
    Ok(())
}

// ---- encoding ----

/// Bytes a varint of `v` takes.
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `v` as a varint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a field tag.
pub(crate) fn put_tag(buf: &mut Vec<u8>, number: u32, wire: u8) {
    put_varint(buf, (u64::from(number) << 3) | u64::from(wire));
}

/// Bytes a tag for field `number` takes.
pub(crate) fn tag_len(number: u32) -> usize {
    varint_len(u64::from(number) << 3)
}

/// Bytes a length-delimited field `number` with a payload of `len` bytes takes in all.
pub(crate) fn len_field_len(number: u32, len: usize) -> usize {
    tag_len(number) + varint_len(len as u64) + len
}

/// Writes the tag and length that open a length-delimited field.
pub(crate) fn write_len_header(w: &mut impl Write, number: u32, len: usize) -> io::Result<()> {
    let mut head = Vec::with_capacity(16);
    put_tag(&mut head, number, WT_LEN);
    put_varint(&mut head, len as u64);
    w.write_all(&head)
}

/// Bytes a packed float field of `n` values takes in all (0 for none: protobuf omits an empty
/// packed field).
pub(crate) fn packed_f32_len(number: u32, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        len_field_len(number, 4 * n)
    }
}

/// Writes `values` as a packed float field, converting through a fixed buffer so that no
/// second copy of the data is made. Writes nothing for no values.
pub(crate) fn write_packed_f32(w: &mut impl Write, number: u32, values: &[f32]) -> io::Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    write_len_header(w, number, 4 * values.len())?;
    write_le(w, values, f32::to_le_bytes)
}

/// Writes `values` one after another as the bytes `bytes` gives each (little-endian), through
/// a fixed buffer so that no second copy of the data is made.
pub(crate) fn write_le<T: Copy, const N: usize>(w: &mut impl Write, values: &[T], bytes: fn(T) -> [u8; N]) -> io::Result<()> {
    let mut buf = [0u8; 64 * 1024];
    for chunk in values.chunks(buf.len() / N) {
        for (dst, &v) in buf.chunks_exact_mut(N).zip(chunk) {
            dst.copy_from_slice(&bytes(v));
        }
        w.write_all(&buf[..N * chunk.len()])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> DecodeResult<Vec<(u32, Value<'_>)>> {
        let mut r = Reader::new(buf, 0);
        let mut out = Vec::new();
        while let Some(f) = r.next_field()? {
            out.push((f.number, f.value));
        }
        Ok(out)
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX, 1 << 63] {
            let mut buf = Vec::new();
            put_tag(&mut buf, 1, WT_VARINT);
            put_varint(&mut buf, v);
            assert_eq!(varint_len(v), buf.len() - 1);
            assert_eq!(fields(&buf).unwrap(), vec![(1, Value::Varint(v))]);
        }
    }

    #[test]
    fn eleven_byte_varint_is_an_error() {
        let mut buf = vec![0x08];
        buf.extend([0xff; 10]);
        buf.push(0x01);
        let e = fields(&buf).unwrap_err();
        assert_eq!(e.to_string(), "varint longer than 10 bytes at byte 1");
    }

    #[test]
    fn overflowing_tenth_byte_is_an_error() {
        let mut buf = vec![0x08];
        buf.extend([0xff; 9]);
        buf.push(0x02);
        assert!(fields(&buf).unwrap_err().msg.contains("overflows"));
    }

    #[test]
    fn truncations_are_errors() {
        assert!(
            fields(&[0x08])
                .unwrap_err()
                .msg
                .contains("truncated varint")
        );
        assert!(
            fields(&[0x08, 0x80])
                .unwrap_err()
                .msg
                .contains("truncated varint")
        );
        assert!(
            fields(&[0x0a, 0x05, 1, 2])
                .unwrap_err()
                .msg
                .contains("claims 5 bytes")
        );
        assert!(
            fields(&[0x0d, 1, 2, 3])
                .unwrap_err()
                .msg
                .contains("truncated")
        );
        assert!(
            fields(&[0x09, 1, 2, 3, 4, 5, 6, 7])
                .unwrap_err()
                .msg
                .contains("truncated")
        );
    }

    #[test]
    fn huge_length_is_an_error_not_an_allocation() {
        let mut buf = vec![0x0a];
        put_varint(&mut buf, 1 << 42);
        let e = fields(&buf).unwrap_err();
        assert!(e.msg.contains("claims 4398046511104 bytes"), "{e}");
    }

    #[test]
    fn groups_are_skipped_and_nesting_is_bounded() {
        // field 2 group { field 1 varint 5; field 3 group {} } then field 4 varint 7
        let buf = [0x13, 0x08, 0x05, 0x1b, 0x1c, 0x14, 0x20, 0x07];
        assert_eq!(
            fields(&buf).unwrap(),
            vec![(2, Value::Group), (4, Value::Varint(7))]
        );
        let deep = vec![0x13u8; 10_000];
        assert!(fields(&deep).unwrap_err().msg.contains("nested deeper"));
        assert!(
            fields(&[0x13, 0x08, 0x01])
                .unwrap_err()
                .msg
                .contains("never ends")
        );
        assert!(
            fields(&[0x13, 0x1c])
                .unwrap_err()
                .msg
                .contains("closes group 2")
        );
        assert!(
            fields(&[0x14])
                .unwrap_err()
                .msg
                .contains("unexpected end-group")
        );
    }

    #[test]
    fn bad_wire_types_and_field_numbers() {
        assert!(
            fields(&[0x0e])
                .unwrap_err()
                .msg
                .contains("invalid wire type 6")
        );
        assert!(
            fields(&[0x0f])
                .unwrap_err()
                .msg
                .contains("invalid wire type 7")
        );
        assert!(fields(&[0x00]).unwrap_err().msg.contains("field number 0"));
    }

    #[test]
    fn packed_floats_and_context_in_messages() {
        let mut buf = Vec::new();
        write_packed_f32(&mut buf, 5, &[1.0, -2.5]).unwrap();
        assert_eq!(buf.len(), packed_f32_len(5, 2));
        let mut r = Reader::new(&buf, 100);
        let f = r.next_field().unwrap().unwrap();
        assert_eq!(count_fixed(&f, "data", 4).unwrap(), 2);
        let mut out = Vec::new();
        append_f32(&f, &mut out);
        assert_eq!(out, vec![1.0, -2.5]);
        let e = DecodeError::at(1234, "truncated")
            .inside("blob 0")
            .inside("layer `conv1`");
        assert_eq!(
            e.to_string(),
            "truncated at byte 1234 inside layer `conv1` blob 0"
        );
    }

    #[test]
    fn large_packed_write_spans_buffers() {
        let values: Vec<f32> = (0..50_000).map(|i| i as f32).collect();
        let mut buf = Vec::new();
        write_packed_f32(&mut buf, 5, &values).unwrap();
        let f = Reader::new(&buf, 0).next_field().unwrap().unwrap();
        let mut out = Vec::new();
        append_f32(&f, &mut out);
        assert_eq!(out, values);
    }
}
