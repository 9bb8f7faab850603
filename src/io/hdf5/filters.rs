//! The HDF5 filters a chunk may pass through, undone: deflate (gzip), shuffle, Fletcher-32 and
//! h5py's LZF. Every decoder is bounded by the size the chunk must have, so a hostile chunk
//! cannot make it allocate more.

use std::io::Read;

/// HDF5's filter identifiers.
pub(super) const DEFLATE: u16 = 1;
pub(super) const SHUFFLE: u16 = 2;
pub(super) const FLETCHER32: u16 = 3;
pub(super) const SZIP: u16 = 4;
pub(super) const NBIT: u16 = 5;
pub(super) const SCALEOFFSET: u16 = 6;
/// h5py's LZF filter (registered with The HDF Group as 32000).
pub(super) const LZF: u16 = 32000;

/// A name for filter `id` in messages: the registered name where crema knows it.
pub(super) fn filter_name(id: u16, given: &str) -> String {
    let known = match id {
        DEFLATE => "deflate (gzip)",
        SHUFFLE => "shuffle",
        FLETCHER32 => "fletcher32",
        SZIP => "szip",
        NBIT => "nbit",
        SCALEOFFSET => "scaleoffset",
        LZF => "lzf",
        307 => "bzip2",
        32001 => "blosc",
        32004 => "lz4",
        32008 => "bitshuffle",
        32015 => "zstd",
        _ if !given.is_empty() => given,
        _ => "unnamed",
    };
    format!("{known} (filter {id})")
}

/// Inflates a zlib stream (what HDF5's deflate filter writes) into at most `limit` bytes;
/// `Err` says what is wrong.
pub(super) fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut dec = flate2::read::ZlibDecoder::new(data).take(limit as u64 + 1);
    dec.read_to_end(&mut out).map_err(|e| format!("its deflate stream is corrupt ({e})"))?;
    if out.len() > limit {
        return Err(format!("its deflate stream inflates past the chunk's {limit} bytes"));
    }
    Ok(out)
}

/// Decompresses LZF (liblzf's format, as h5py's filter writes it) into at most `limit` bytes.
pub(super) fn lzf(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let corrupt = |what: &str| format!("its LZF stream is corrupt ({what})");
    // LZF expands at most about 88-fold: reserve no more than that.
    let mut out: Vec<u8> = Vec::with_capacity(limit.min(data.len().saturating_mul(100)));
    let mut i = 0;
    while i < data.len() {
        let ctrl = data[i] as usize;
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let lit = data.get(i..i + run).ok_or_else(|| corrupt("a literal runs past its end"))?;
            if out.len() + run > limit {
                return Err(corrupt("it expands past the chunk's size"));
            }
            out.extend_from_slice(lit);
            i += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *data.get(i).ok_or_else(|| corrupt("a length runs past its end"))? as usize;
                i += 1;
            }
            let low = *data.get(i).ok_or_else(|| corrupt("a back-reference runs past its end"))? as usize;
            i += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            let from = out.len().checked_sub(back).ok_or_else(|| corrupt("a back-reference points before its start"))?;
            let len = len + 2;
            if out.len() + len > limit {
                return Err(corrupt("it expands past the chunk's size"));
            }
            // Byte by byte: a reference may overlap what it writes.
            for k in 0..len {
                let b = out[from + k];
                out.push(b);
            }
        }
    }
    Ok(out)
}

/// Undoes the shuffle filter: the bytes were stored as `size` planes (all first bytes of the
/// elements, then all second bytes, ...); a tail shorter than an element is left as it is.
pub(super) fn unshuffle(data: &[u8], size: usize) -> Vec<u8> {
    if size <= 1 || data.len() < size {
        return data.to_vec();
    }
    let n = data.len() / size;
    let mut out = vec![0u8; data.len()];
    for (b, plane) in data[..n * size].chunks_exact(n).enumerate() {
        for (i, &v) in plane.iter().enumerate() {
            out[i * size + b] = v;
        }
    }
    out[n * size..].copy_from_slice(&data[n * size..]);
    out
}

/// HDF5's Fletcher-32 over `data`: 16-bit big-endian words (a last odd byte as the high half of
/// a word), sums folded to 16 bits at least every 360 words; `sum2 << 16 | sum1`.
pub(super) fn fletcher32(data: &[u8]) -> u32 {
    let fold = |s: u32| (s & 0xffff) + (s >> 16);
    let (mut sum1, mut sum2) = (0u32, 0u32);
    for block in data.chunks(720) {
        for w in block.chunks(2) {
            let word = (w[0] as u32) << 8 | w.get(1).copied().unwrap_or(0) as u32;
            sum1 += word;
            sum2 += sum1;
        }
        sum1 = fold(sum1);
        sum2 = fold(sum2);
    }
    sum1 = fold(sum1);
    sum2 = fold(sum2);
    (sum2 << 16) | sum1
}

/// Checks and strips the Fletcher-32 checksum at the end of `data`.
pub(super) fn strip_fletcher32(mut data: Vec<u8>) -> Result<Vec<u8>, String> {
    let Some(body) = data.len().checked_sub(4) else {
        return Err("it is too short to hold its Fletcher-32 checksum".into());
    };
    let stored = u32::from_le_bytes(data[body..].try_into().expect("4 bytes"));
    let sum = fletcher32(&data[..body]);
    // HDF5 before 1.6.3 stored the checksum with its bytes swapped; the library still accepts both.
    if stored != sum && stored != sum.swap_bytes() {
        return Err(format!("its Fletcher-32 checksum is {stored:#010x}, but its bytes sum to {sum:#010x}"));
    }
    data.truncate(body);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lzf_literals_and_overlapping_references() {
        // "abc" as a literal, then a reference 3 back copying 6 bytes (overlapping itself).
        let stream = [2, b'a', b'b', b'c', (4 << 5) as u8, 2];
        assert_eq!(lzf(&stream, 100).unwrap(), b"abcabcabc");
        assert!(lzf(&stream, 5).unwrap_err().contains("expands"));
        assert!(lzf(&[(1 << 5) as u8, 9], 100).unwrap_err().contains("before its start"));
        assert!(lzf(&[5, b'x'], 100).unwrap_err().contains("past its end"));
    }

    #[test]
    fn unshuffle_restores_elements_and_keeps_the_tail() {
        let elems: Vec<u8> = vec![1, 2, 3, 4, 5, 6, 7, 8, 9];
        // Two 4-byte elements, shuffled into planes, then a 1-byte tail.
        let shuffled = vec![1, 5, 2, 6, 3, 7, 4, 8, 9];
        assert_eq!(unshuffle(&shuffled, 4), elems);
        assert_eq!(unshuffle(&[1, 2, 3], 4), [1, 2, 3]);
    }

    #[test]
    fn inflate_is_bounded() {
        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[7u8; 1000]).unwrap();
        let z = enc.finish().unwrap();
        assert_eq!(inflate(&z, 1000).unwrap(), vec![7u8; 1000]);
        assert!(inflate(&z, 999).unwrap_err().contains("past"));
        assert!(inflate(&z[..z.len() / 2], 1000).is_err() || inflate(&z[..z.len() / 2], 1000).unwrap().len() < 1000);
        assert!(inflate(b"not zlib", 10).is_err());
    }

    #[test]
    fn fletcher32_checks_and_strips() {
        let body = b"hello hdf5".to_vec();
        let mut with = body.clone();
        with.extend_from_slice(&fletcher32(&body).to_le_bytes());
        assert_eq!(strip_fletcher32(with.clone()).unwrap(), body);
        with[0] ^= 1;
        assert!(strip_fletcher32(with).unwrap_err().contains("checksum"));
        assert!(strip_fletcher32(vec![1, 2]).is_err());
    }
}
