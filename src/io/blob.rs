//! Caffe's `BlobProto`: decoding one from untrusted bytes into [`BlobData`], writing one as
//! Caffe's `Blob::ToProto` does, and mean files (`.binaryproto`, a lone `BlobProto`).
//!
//! Field numbers (BVLC `caffe.proto`): `num` 1, `channels` 2, `height` 3, `width` 4 (the
//! deprecated 4-D shape), `data` 5, `diff` 6 (float), `shape` 7 (`BlobShape { dim = 1 }`),
//! `double_data` 8, `double_diff` 9. Every repeated field is read packed or unpacked, and the
//! two encodings may be mixed, as protobuf's own parser allows.

use std::io::{self, Write};
use std::path::Path;

use super::wire::{
    self, DecodeError, DecodeResult, Field, Reader, append_f32, append_f64_as_f32, count_fixed,
    expect_len, expect_varint,
};
use crate::Result;

/// Caffe's limit on the number of axes of a blob (`kMaxBlobAxes`).
pub const MAX_BLOB_AXES: usize = 32;

const F_NUM: u32 = 1;
const F_CHANNELS: u32 = 2;
const F_HEIGHT: u32 = 3;
const F_WIDTH: u32 = 4;
const F_DATA: u32 = 5;
const F_DIFF: u32 = 6;
const F_SHAPE: u32 = 7;
const F_DOUBLE_DATA: u32 = 8;
const F_DOUBLE_DIFF: u32 = 9;
const F_SHAPE_DIM: u32 = 1;

/// One blob as stored in a file: its shape and its values as f32.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlobData {
    /// The dimensions, outermost first. Empty for a scalar (one element), as in Caffe.
    pub shape: Vec<usize>,
    /// The shape came from the deprecated `num`/`channels`/`height`/`width` fields (always
    /// four axes then), not from `shape`.
    pub legacy_4d: bool,
    /// The values, `count()` of them, or none where the file stored none.
    pub data: Vec<f32>,
    /// The gradient, `count()` values, or none (Caffe stores it only with `snapshot_diff`).
    pub diff: Vec<f32>,
}

impl BlobData {
    /// A blob of `shape` holding `data`, with no diff.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        BlobData {
            shape,
            legacy_4d: false,
            data,
            diff: Vec::new(),
        }
    }

    /// The number of elements the shape holds (1 for a scalar). Saturates at `usize::MAX`,
    /// which no decoded blob reaches: decoding rejects shapes whose product overflows.
    pub fn count(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .unwrap_or(usize::MAX)
    }
}

/// Element count of `shape`, or an error if the product does not fit.
fn checked_count(shape: &[usize]) -> DecodeResult<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            DecodeError::new(format!(
                "shape {shape:?} has more elements than fit in memory"
            ))
        })
}

/// A dimension read from the file: an int32 or int64 varint, which must not be negative.
fn dim(value: u64, offset: usize, what: &str) -> DecodeResult<usize> {
    let v = value as i64;
    if v < 0 {
        return Err(DecodeError::at(offset, format!("negative {what} {v}")));
    }
    usize::try_from(v).map_err(|_| DecodeError::at(offset, format!("{what} {v} is too large")))
}

/// Appends the dims of one `BlobShape` message to `dims`.
fn decode_shape(bytes: &[u8], base: usize, dims: &mut Vec<usize>) -> DecodeResult<()> {
    let mut r = Reader::new(bytes, base);
    let mut raw = Vec::new();
    while let Some(f) = r.next_field()? {
        if f.number == F_SHAPE_DIM {
            raw.clear();
            wire::append_varints(&f, "dim", &mut raw)?;
            for &v in &raw {
                dims.push(dim(v, f.offset, "dimension")?);
                if dims.len() > MAX_BLOB_AXES {
                    return Err(DecodeError::at(
                        f.offset,
                        format!("shape has more than {MAX_BLOB_AXES} axes"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Decodes one `BlobProto` held in `bytes` (at absolute offset `base` of its file).
///
/// Two passes over the message: the first checks every field's wire type, reads the shape and
/// counts the values; the second decodes the values straight into vectors of exactly that
/// size, which the input's own length bounds. Validates, as `Blob::FromProto` does, that data
/// (and diff) hold as many values as the shape, or none; with both `double_data` and `data`
/// present the doubles win, as in Caffe.
pub(crate) fn decode_blob(bytes: &[u8], base: usize) -> DecodeResult<BlobData> {
    let mut legacy = [0usize; 4];
    let mut legacy_4d = false;
    let mut dims = Vec::new();
    let (mut n_data, mut n_diff, mut n_ddata, mut n_ddiff) = (0usize, 0usize, 0usize, 0usize);

    let mut r = Reader::new(bytes, base);
    while let Some(f) = r.next_field()? {
        match f.number {
            F_NUM | F_CHANNELS | F_HEIGHT | F_WIDTH => {
                let name = ["num", "channels", "height", "width"][f.number as usize - 1];
                legacy[f.number as usize - 1] = dim(expect_varint(&f, name)?, f.offset, name)?;
                legacy_4d = true;
            }
            F_DATA => n_data += count_fixed(&f, "data", 4)?,
            F_DIFF => n_diff += count_fixed(&f, "diff", 4)?,
            F_DOUBLE_DATA => n_ddata += count_fixed(&f, "double_data", 8)?,
            F_DOUBLE_DIFF => n_ddiff += count_fixed(&f, "double_diff", 8)?,
            F_SHAPE => {
                let (b, at) = expect_len(&f, "shape")?;
                decode_shape(b, at, &mut dims)?;
            }
            _ => {}
        }
    }

    let shape = if legacy_4d { legacy.to_vec() } else { dims };
    let count = checked_count(&shape)?;
    let (data_from_double, n_data) = if n_ddata > 0 {
        (true, n_ddata)
    } else {
        (false, n_data)
    };
    let (diff_from_double, n_diff) = if n_ddiff > 0 {
        (true, n_ddiff)
    } else {
        (false, n_diff)
    };
    for (what, n) in [("data", n_data), ("diff", n_diff)] {
        if n != 0 && n != count {
            return Err(DecodeError::new(format!(
                "{what} holds {n} values but shape {shape:?} holds {count}"
            )));
        }
    }

    let mut data = Vec::with_capacity(n_data);
    let mut diff = Vec::with_capacity(n_diff);
    let mut r = Reader::new(bytes, base);
    while let Some(f) = r.next_field()? {
        fill(&f, data_from_double, diff_from_double, &mut data, &mut diff);
    }
    Ok(BlobData {
        shape,
        legacy_4d,
        data,
        diff,
    })
}

fn fill(
    f: &Field<'_>,
    data_from_double: bool,
    diff_from_double: bool,
    data: &mut Vec<f32>,
    diff: &mut Vec<f32>,
) {
    match (f.number, data_from_double, diff_from_double) {
        (F_DATA, false, _) => append_f32(f, data),
        (F_DOUBLE_DATA, true, _) => append_f64_as_f32(f, data),
        (F_DIFF, _, false) => append_f32(f, diff),
        (F_DOUBLE_DIFF, _, true) => append_f64_as_f32(f, diff),
        _ => {}
    }
}

/// Decodes a whole buffer as one `BlobProto` (a mean file's content); `file` names it in errors.
pub fn decode_binaryproto(bytes: &[u8], file: &str) -> Result<BlobData> {
    if bytes.is_empty() {
        return Err(DecodeError::new("empty file: expected a BlobProto").into_error(file));
    }
    decode_blob(bytes, 0).map_err(|e| e.into_error(file))
}

/// Reads a mean file (`.binaryproto`: one serialized `BlobProto`).
pub fn read_binaryproto(path: impl AsRef<Path>) -> Result<BlobData> {
    let path = path.as_ref();
    let bytes = super::FileBytes::open(path)?;
    decode_binaryproto(&bytes, &path.display().to_string())
}

/// Writes `blob` as a mean file (one `BlobProto`, as Caffe's `WriteProtoToBinaryFile` would),
/// atomically. The diff is written when the blob has one. A 4-axis blob marked `legacy_4d` is
/// described by `num`, `channels`, `height` and `width`, as Caffe's `compute_image_mean`
/// writes it (and as every Caffe version, old ones included, reads it); others by `shape`.
pub fn write_binaryproto(path: impl AsRef<Path>, blob: &BlobData) -> Result<()> {
    let path = path.as_ref();
    let view = BlobRef::of(blob);
    let diff = (!blob.diff.is_empty()).then_some(blob.diff.as_slice());
    view.check(diff.is_some())
        .map_err(|msg| crate::Error::Encode {
            file: path.display().to_string(),
            msg,
        })?;
    let legacy = blob.legacy_4d && blob.shape.len() == 4;
    super::atomic_write(path, |w| {
        if !legacy {
            return write_blob_body(w, view.shape, view.data, diff);
        }
        let mut dims = Vec::new();
        for (field, &d) in [F_NUM, F_CHANNELS, F_HEIGHT, F_WIDTH].into_iter().zip(&blob.shape) {
            wire::put_tag(&mut dims, field, wire::WT_VARINT);
            wire::put_varint(&mut dims, d as u64);
        }
        w.write_all(&dims)?;
        write_blob_body(w, &[], view.data, diff)
    })
}

/// A borrowed blob handed to a writer: shape, data and (used when a writer is asked to write
/// diffs) diff.
#[derive(Debug, Clone, Copy)]
pub struct BlobRef<'a> {
    /// The dimensions.
    pub shape: &'a [usize],
    /// `product(shape)` values.
    pub data: &'a [f32],
    /// `product(shape)` values, or empty when no diff is to be written.
    pub diff: &'a [f32],
}

impl<'a> BlobRef<'a> {
    /// A view of a [`BlobData`].
    pub fn of(blob: &'a BlobData) -> Self {
        BlobRef {
            shape: &blob.shape,
            data: &blob.data,
            diff: &blob.diff,
        }
    }

    /// Checks that data (and, when it is to be written, diff) match the shape.
    pub(crate) fn check(&self, with_diff: bool) -> std::result::Result<(), String> {
        let count = checked_count(self.shape).map_err(|e| e.msg)?;
        if self.data.len() != count {
            return Err(format!(
                "data holds {} values but shape {:?} holds {count}",
                self.data.len(),
                self.shape
            ));
        }
        if with_diff && self.diff.len() != count {
            return Err(format!(
                "diff holds {} values but shape {:?} holds {count}",
                self.diff.len(),
                self.shape
            ));
        }
        Ok(())
    }
}

/// The `BlobShape` payload for `shape`: field 1, packed int64 dims.
fn shape_payload(shape: &[usize]) -> Vec<u8> {
    let mut dims = Vec::with_capacity(shape.len() * 2);
    for &d in shape {
        wire::put_varint(&mut dims, d as u64);
    }
    let mut out = Vec::with_capacity(dims.len() + 4);
    if !dims.is_empty() {
        wire::put_tag(&mut out, F_SHAPE_DIM, wire::WT_LEN);
        wire::put_varint(&mut out, dims.len() as u64);
        out.extend_from_slice(&dims);
    }
    out
}

/// Length of the `BlobProto` body [`write_blob_body`] writes.
pub(crate) fn blob_body_len(shape: &[usize], n_data: usize, n_diff: usize) -> usize {
    let shape_len = if shape.is_empty() {
        0
    } else {
        wire::len_field_len(F_SHAPE, shape_payload(shape).len())
    };
    wire::packed_f32_len(F_DATA, n_data) + wire::packed_f32_len(F_DIFF, n_diff) + shape_len
}

/// Writes a `BlobProto` body as Caffe's `Blob<float>::ToProto` produces it, in field-number
/// order: `data` (5), `diff` (6) if given, then `shape` (7) — omitted for a scalar, whose
/// shape has no axes.
pub(crate) fn write_blob_body(
    w: &mut impl Write,
    shape: &[usize],
    data: &[f32],
    diff: Option<&[f32]>,
) -> io::Result<()> {
    wire::write_packed_f32(w, F_DATA, data)?;
    if let Some(diff) = diff {
        wire::write_packed_f32(w, F_DIFF, diff)?;
    }
    if !shape.is_empty() {
        let payload = shape_payload(shape);
        wire::write_len_header(w, F_SHAPE, payload.len())?;
        w.write_all(&payload)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::wire::{WT_FIXED32, WT_FIXED64, WT_LEN, WT_VARINT, put_tag, put_varint};

    fn encoded(shape: &[usize], data: &[f32], diff: Option<&[f32]>) -> Vec<u8> {
        let mut buf = Vec::new();
        write_blob_body(&mut buf, shape, data, diff).unwrap();
        assert_eq!(
            buf.len(),
            blob_body_len(shape, data.len(), diff.map_or(0, |d| d.len()))
        );
        buf
    }

    #[test]
    fn round_trip_with_and_without_diff() {
        let b = encoded(&[2, 3], &[1., 2., 3., 4., 5., 6.], None);
        let blob = decode_blob(&b, 0).unwrap();
        assert_eq!(
            blob,
            BlobData::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.])
        );
        let b = encoded(&[2], &[1., 2.], Some(&[3., 4.]));
        let blob = decode_blob(&b, 0).unwrap();
        assert_eq!(blob.diff, vec![3., 4.]);
        let b = encoded(&[], &[7.], None);
        assert_eq!(decode_blob(&b, 0).unwrap(), BlobData::new(vec![], vec![7.]));
    }

    #[test]
    fn legacy_shape_unpacked_mixed_and_doubles() {
        let mut b = Vec::new();
        for (n, v) in [(1u32, 1u64), (2, 2), (3, 1), (4, 2)] {
            put_tag(&mut b, n, WT_VARINT);
            put_varint(&mut b, v);
        }
        // two unpacked floats, then a packed run of two
        for v in [1.5f32, 2.5] {
            put_tag(&mut b, 5, WT_FIXED32);
            b.extend(v.to_le_bytes());
        }
        put_tag(&mut b, 5, WT_LEN);
        put_varint(&mut b, 8);
        b.extend(3.5f32.to_le_bytes());
        b.extend(4.5f32.to_le_bytes());
        // doubles for the diff, one unpacked
        for v in [0.25f64, 0.5, 0.75, 1.0] {
            put_tag(&mut b, 9, WT_FIXED64);
            b.extend(v.to_le_bytes());
        }
        let blob = decode_blob(&b, 0).unwrap();
        assert!(blob.legacy_4d);
        assert_eq!(blob.shape, vec![1, 2, 1, 2]);
        assert_eq!(blob.data, vec![1.5, 2.5, 3.5, 4.5]);
        assert_eq!(blob.diff, vec![0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn unpacked_dims_and_double_data_win_over_float() {
        let mut shape = Vec::new();
        for d in [2u64, 1] {
            put_tag(&mut shape, 1, WT_VARINT);
            put_varint(&mut shape, d);
        }
        let mut b = Vec::new();
        put_tag(&mut b, 7, WT_LEN);
        put_varint(&mut b, shape.len() as u64);
        b.extend(&shape);
        put_tag(&mut b, 8, WT_LEN);
        put_varint(&mut b, 16);
        b.extend(1.0f64.to_le_bytes());
        b.extend(2.0f64.to_le_bytes());
        put_tag(&mut b, 5, WT_FIXED32);
        b.extend(9.0f32.to_le_bytes());
        let blob = decode_blob(&b, 0).unwrap();
        assert_eq!(blob.shape, vec![2, 1]);
        assert_eq!(blob.data, vec![1.0, 2.0]);
    }

    #[test]
    fn count_mismatch_negative_dims_and_overflow_are_errors() {
        let b = encoded(&[3], &[1., 2.], None);
        // encoded() checks nothing; the decoder does
        let e = decode_blob(&b, 0).unwrap_err();
        assert_eq!(e.to_string(), "data holds 2 values but shape [3] holds 3");

        let mut b = Vec::new();
        put_tag(&mut b, 1, WT_VARINT);
        put_varint(&mut b, (-1i64) as u64);
        assert!(
            decode_blob(&b, 0)
                .unwrap_err()
                .msg
                .contains("negative num -1")
        );

        let big = 1usize << 40;
        let b = encoded(&[big, big], &[], None);
        assert!(
            decode_blob(&b, 0)
                .unwrap_err()
                .msg
                .contains("more elements than fit")
        );

        let b = encoded(&[1 << 40], &[1.0], None);
        assert!(
            decode_blob(&b, 0)
                .unwrap_err()
                .msg
                .contains("holds 1 values")
        );
    }

    #[test]
    fn empty_data_with_a_shape_is_accepted() {
        let b = encoded(&[4, 4], &[], None);
        let blob = decode_blob(&b, 0).unwrap();
        assert_eq!(blob.shape, vec![4, 4]);
        assert!(blob.data.is_empty());
    }

    #[test]
    fn wrong_wire_types_and_ragged_packing_are_errors() {
        let mut b = Vec::new();
        put_tag(&mut b, 5, WT_VARINT);
        put_varint(&mut b, 1);
        assert!(
            decode_blob(&b, 0)
                .unwrap_err()
                .msg
                .contains("field data (5) has wire type varint")
        );
        let mut b = Vec::new();
        put_tag(&mut b, 5, WT_LEN);
        put_varint(&mut b, 3);
        b.extend([0, 0, 0]);
        assert!(
            decode_blob(&b, 0)
                .unwrap_err()
                .msg
                .contains("not a multiple of 4")
        );
        let mut b = Vec::new();
        put_tag(&mut b, 7, WT_FIXED32);
        b.extend([0, 0, 0, 0]);
        assert!(
            decode_blob(&b, 0)
                .unwrap_err()
                .msg
                .contains("field shape (7)")
        );
    }

    #[test]
    fn mean_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mean.binaryproto");
        let mean = BlobData::new(vec![1, 3, 2, 2], (0..12).map(|i| i as f32 + 0.5).collect());
        write_binaryproto(&p, &mean).unwrap();
        assert_eq!(read_binaryproto(&p).unwrap(), mean);
        let bad = BlobData::new(vec![2], vec![1.0]);
        assert!(matches!(
            write_binaryproto(&p, &bad),
            Err(crate::Error::Encode { .. })
        ));
        assert_eq!(read_binaryproto(&p).unwrap(), mean);
    }

    #[test]
    fn too_many_axes() {
        let b = encoded(&[1; 33], &[1.0], None);
        assert!(
            decode_blob(&b, 0)
                .unwrap_err()
                .msg
                .contains("more than 32 axes")
        );
    }
}
