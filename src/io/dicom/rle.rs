//! DICOM RLE Lossless (PS3.5 annex G): a 64-byte header of up to 15 segment offsets, each
//! segment one byte plane (most significant byte of each sample first) run-length coded as
//! PackBits.

use super::parse::Res;

/// Decodes one RLE frame of `pixels` pixels into `planes` byte planes, each `pixels` bytes,
/// plane `k` being segment `k` (for 16-bit gray: plane 0 the high bytes, plane 1 the low).
pub fn decode(frame: &[u8], pixels: usize, planes: usize) -> Res<Vec<Vec<u8>>> {
    if frame.len() < 64 {
        return Err(format!("RLE frame of {} bytes, shorter than its 64-byte header", frame.len()));
    }
    if !(1..=15).contains(&planes) {
        return Err(format!("RLE holds 1 to 15 segments; the image needs {planes}"));
    }
    let word = |i: usize| u32::from_le_bytes([frame[4 * i], frame[4 * i + 1], frame[4 * i + 2], frame[4 * i + 3]]) as usize;
    let segments = word(0);
    if segments != planes {
        return Err(format!("RLE frame has {segments} segments; the image needs {planes} (one per byte of each sample)"));
    }
    let offsets: Vec<usize> = (1..=segments).map(word).collect();
    let mut out = Vec::with_capacity(planes);
    for (k, &start) in offsets.iter().enumerate() {
        let end = offsets.get(k + 1).copied().unwrap_or(frame.len());
        if start < 64 || start > end || end > frame.len() {
            return Err(format!("RLE segment {k} lies at bytes {start}..{end} of a {}-byte frame", frame.len()));
        }
        out.push(packbits(&frame[start..end], pixels).map_err(|m| format!("RLE segment {k}: {m}"))?);
    }
    Ok(out)
}

/// PackBits: a control byte n, then n + 1 literal bytes (n < 128), or one byte repeated
/// 257 - n times (n > 128); 128 does nothing. Stops once `want` bytes are out (encoders pad
/// segments to an even length).
fn packbits(src: &[u8], want: usize) -> Res<Vec<u8>> {
    // Two bytes make at most 128: a segment too short for its pixels is refused before
    // anything is allocated for them.
    if want / 64 > src.len() {
        return Err(format!("{} bytes cannot hold {want} pixels", src.len()));
    }
    let mut out = Vec::with_capacity(want);
    let mut i = 0;
    while out.len() < want && i < src.len() {
        let n = src[i] as usize;
        i += 1;
        if n < 128 {
            let lit = src.get(i..i + n + 1).ok_or("a literal run passes the end of the segment")?;
            out.extend_from_slice(lit);
            i += n + 1;
        } else if n > 128 {
            let &b = src.get(i).ok_or("a repeat run passes the end of the segment")?;
            out.resize(out.len() + 257 - n, b);
            i += 1;
        }
    }
    if out.len() < want {
        return Err(format!("decodes to {} bytes, {want} expected", out.len()));
    }
    out.truncate(want);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_runs_and_literals() {
        // 3 literals, a run of 4, a no-op, 1 literal, then padding past what is wanted.
        let src = [2, 1, 2, 3, 253, 9, 128, 0, 7, 0];
        assert_eq!(packbits(&src, 8).unwrap(), [1, 2, 3, 9, 9, 9, 9, 7]);
        assert!(packbits(&src[..9], 9).unwrap_err().contains("8 bytes, 9 expected"));
        assert!(packbits(&[5, 1, 2], 6).unwrap_err().contains("literal run"));
        assert!(packbits(&[200], 6).unwrap_err().contains("repeat run"));
        // 129 repeats 128 times: 64 bytes a byte at best; anything claiming more is refused.
        assert_eq!(packbits(&[129, 4], 128).unwrap(), [4; 128]);
        assert!(packbits(&[129, 4], 1 << 30).unwrap_err().contains("cannot hold"));
    }

    #[test]
    fn frames_check_their_header() {
        let mut f = vec![0u8; 64];
        f[0] = 2;
        f[4] = 64;
        f[8] = 66;
        f.extend([255, 5, 255, 6]);
        assert_eq!(decode(&f, 2, 2).unwrap(), [vec![5, 5], vec![6, 6]]);
        assert!(decode(&f, 2, 1).unwrap_err().contains("2 segments"));
        f[8] = 200;
        assert!(decode(&f, 2, 2).unwrap_err().contains("segment 0"));
        assert!(decode(&f[..10], 2, 2).unwrap_err().contains("64-byte header"));
    }
}
