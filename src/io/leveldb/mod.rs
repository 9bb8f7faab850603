//! Reading and writing LevelDB databases, the other store of Caffe's `Data` layer (`backend:
//! LEVELDB`, the field's default, used by Caffe's early examples), without the LevelDB library.
//!
//! A database folder holds a `CURRENT` file naming the `MANIFEST`, whose version edits list
//! the live table files (`NNNNNN.ldb`, or `.sst`), and write-ahead logs (`NNNNNN.log`) holding
//! the writes not yet in a table: a database Caffe wrote with its 256 MB write buffer often
//! holds everything in its log. Logs are read as 32 KiB blocks of checksummed record
//! fragments; tables as checksummed blocks (Snappy-compressed or not) of prefix-compressed
//! keys, found through the table's index block. Every entry carries a sequence number: for each
//! key the newest wins, and a deletion removes it. The records are then served in key order.
//!
//! Opening reads every live file once (the keys of a LevelDB lie beside its values). Values
//! from logs are kept; values in tables are read again, block by block, when asked for.
//! Every length, offset and checksum is checked, so a corrupt or truncated database gives an
//! [`Error::Decode`] naming the file, never a panic. [`write_leveldb`] writes a database the
//! LevelDB library reads.

mod write;
pub use write::{occupied, write_leveldb, Written, BLOCK_SIZE, TABLE_SIZE};

use super::FileBytes;
use crate::{Error, Result};
use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};

const LOG_BLOCK: usize = 32768;
const LOG_HEADER: usize = 7;
const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
const FOOTER: usize = 48;
const COMPARATOR: &[u8] = b"leveldb.BytewiseComparator";

/// An open LevelDB database, read-only.
pub struct LevelDb {
    dir: PathBuf,
    tables: Vec<(PathBuf, FileBytes)>,
    /// Values read from the logs.
    logged: Vec<u8>,
    records: Vec<Record>,
}

struct Record {
    key: Vec<u8>,
    value: Loc,
}

/// Where a value lies.
#[derive(Clone)]
enum Loc {
    /// In `logged`.
    Log(Range<usize>),
    /// In data block `block` (offset and size in the file) of table `table`, at `range` of the
    /// block's (decompressed) contents.
    Table { table: usize, block: (usize, usize), range: Range<usize> },
}

/// An entry before merging: user key, sequence number, value (None: a deletion).
struct Entry {
    key: Vec<u8>,
    seq: u64,
    value: Option<Loc>,
}

fn corrupt(file: &Path, msg: impl Into<String>) -> Error {
    Error::Decode { file: file.display().to_string(), msg: format!("{} (a corrupt or truncated LevelDB database)", msg.into()) }
}

/// Reads a varint of at most 64 bits at `*at`, advancing it.
fn varint(b: &[u8], at: &mut usize, file: &Path) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at).ok_or_else(|| corrupt(file, format!("a number runs past the end at byte {at}")))?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(corrupt(file, format!("an overlong number before byte {at}")))
}

/// `len` bytes at `*at`, advancing it.
fn take<'a>(b: &'a [u8], at: &mut usize, len: usize, file: &Path) -> Result<&'a [u8]> {
    let end = at.checked_add(len).filter(|&e| e <= b.len()).ok_or_else(|| corrupt(file, format!("{len} bytes at byte {at} run past the end ({} bytes)", b.len())))?;
    let s = &b[*at..end];
    *at = end;
    Ok(s)
}

/// A length-prefixed byte string.
fn slice<'a>(b: &'a [u8], at: &mut usize, file: &Path) -> Result<&'a [u8]> {
    let len = varint(b, at, file)? as usize;
    take(b, at, len, file)
}

/// CRC-32C (Castagnoli), as LevelDB checksums its logs and blocks, masked as it stores them.
fn masked_crc(parts: &[&[u8]]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    let mut crc = !0u32;
    for p in parts {
        for &b in *p {
            crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    let crc = !crc;
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The records of a log file (reassembled from their fragments).
fn log_records(b: &[u8], file: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut partial: Option<Vec<u8>> = None;
    let mut at = 0;
    while at < b.len() {
        let left_in_block = LOG_BLOCK - at % LOG_BLOCK;
        if left_in_block < LOG_HEADER {
            at += left_in_block;
            continue;
        }
        if b.len() - at < LOG_HEADER {
            if b[at..].iter().all(|&v| v == 0) {
                break;
            }
            return Err(corrupt(file, format!("the log ends inside a record header at byte {at}")));
        }
        let (crc, len, kind) = (u32_at(b, at), u16::from_le_bytes([b[at + 4], b[at + 5]]) as usize, b[at + 6]);
        if kind == 0 && len == 0 {
            // Preallocated space: the rest of the block is empty.
            at += left_in_block;
            continue;
        }
        if LOG_HEADER + len > left_in_block || at + LOG_HEADER + len > b.len() {
            return Err(corrupt(file, format!("a log record of {len} bytes at byte {at} runs past its block or the file")));
        }
        let data = &b[at + LOG_HEADER..at + LOG_HEADER + len];
        if masked_crc(&[&[kind], data]) != crc {
            return Err(corrupt(file, format!("the log record at byte {at} fails its checksum")));
        }
        match (kind, partial.as_mut()) {
            (1, None) => out.push(data.to_vec()),
            (2, None) => partial = Some(data.to_vec()),
            (3, Some(p)) => p.extend_from_slice(data),
            (4, Some(p)) => {
                p.extend_from_slice(data);
                out.extend(partial.take());
            }
            _ => return Err(corrupt(file, format!("a log record of type {kind} out of sequence at byte {at}"))),
        }
        at += LOG_HEADER + len;
    }
    if partial.is_some() {
        return Err(corrupt(file, "the log ends inside a record"));
    }
    Ok(out)
}

/// The live table files (level, number) and log numbers a MANIFEST describes.
struct Manifest {
    tables: Vec<u64>,
    log_number: u64,
    prev_log_number: u64,
}

fn manifest(b: &[u8], file: &Path) -> Result<Manifest> {
    let mut live = std::collections::BTreeSet::new();
    let (mut log_number, mut prev_log_number) = (0, 0);
    for edit in log_records(b, file)? {
        let mut at = 0;
        while at < edit.len() {
            match varint(&edit, &mut at, file)? {
                1 => {
                    let name = slice(&edit, &mut at, file)?;
                    if name != COMPARATOR {
                        return Err(Error::Decode {
                            file: file.display().to_string(),
                            msg: format!("keys ordered by `{}`; crema reads databases of LevelDB's bytewise order", String::from_utf8_lossy(name)),
                        });
                    }
                }
                2 => log_number = varint(&edit, &mut at, file)?,
                3 | 4 => {
                    varint(&edit, &mut at, file)?;
                }
                5 => {
                    varint(&edit, &mut at, file)?;
                    slice(&edit, &mut at, file)?;
                }
                6 => {
                    let level = varint(&edit, &mut at, file)?;
                    let number = varint(&edit, &mut at, file)?;
                    live.remove(&(level, number));
                }
                7 => {
                    let level = varint(&edit, &mut at, file)?;
                    let number = varint(&edit, &mut at, file)?;
                    varint(&edit, &mut at, file)?;
                    slice(&edit, &mut at, file)?;
                    slice(&edit, &mut at, file)?;
                    live.insert((level, number));
                }
                9 => prev_log_number = varint(&edit, &mut at, file)?,
                tag => return Err(corrupt(file, format!("an unknown version edit field {tag}"))),
            }
        }
    }
    Ok(Manifest { tables: live.into_iter().map(|(_, n)| n).collect(), log_number, prev_log_number })
}

/// The entries of one log: each record a write batch (sequence, count, then puts and deletes).
fn log_entries(b: &[u8], file: &Path, logged: &mut Vec<u8>, out: &mut Vec<Entry>) -> Result<()> {
    for batch in log_records(b, file)? {
        if batch.len() < 12 {
            return Err(corrupt(file, format!("a write batch of {} bytes", batch.len())));
        }
        let seq = u64::from_le_bytes(batch[..8].try_into().expect("8 bytes"));
        let count = u32_at(&batch, 8) as u64;
        let mut at = 12;
        for i in 0..count {
            let kind = *take(&batch, &mut at, 1, file)?.first().expect("one byte");
            let key = slice(&batch, &mut at, file)?.to_vec();
            let value = match kind {
                1 => {
                    let v = slice(&batch, &mut at, file)?;
                    logged.extend_from_slice(v);
                    Some(Loc::Log(logged.len() - v.len()..logged.len()))
                }
                0 => None,
                k => return Err(corrupt(file, format!("a write batch entry of type {k}"))),
            };
            out.push(Entry { key, seq: seq.saturating_add(i), value });
        }
        if at != batch.len() {
            return Err(corrupt(file, "a write batch with bytes after its entries"));
        }
    }
    Ok(())
}

/// The contents of the block `(offset, size)` of a table, checked and decompressed.
fn block<'a>(t: &'a [u8], (offset, size): (usize, usize), file: &Path) -> Result<Cow<'a, [u8]>> {
    let end = offset.checked_add(size).and_then(|e| e.checked_add(5)).filter(|&e| e <= t.len());
    let Some(end) = end else { return Err(corrupt(file, format!("a block of {size} bytes at byte {offset} runs past the end"))) };
    let (contents, kind, crc) = (&t[offset..offset + size], t[end - 5], u32_at(t, end - 4));
    if masked_crc(&[contents, &[kind]]) != crc {
        return Err(corrupt(file, format!("the block at byte {offset} fails its checksum")));
    }
    match kind {
        0 => Ok(Cow::Borrowed(contents)),
        1 => snappy(contents, file).map(Cow::Owned),
        k => Err(corrupt(file, format!("a block compressed with method {k}; LevelDB writes 0 (none) or 1 (Snappy)"))),
    }
}

/// The (key, value) entries of a block, keys un-prefixed; values as ranges of `b`.
fn block_entries(b: &[u8], file: &Path) -> Result<Vec<(Vec<u8>, Range<usize>)>> {
    if b.len() < 4 {
        return Err(corrupt(file, "a block too short for its restart count"));
    }
    let restarts = u32_at(b, b.len() - 4) as usize;
    let end = restarts.checked_mul(4).and_then(|r| (b.len() - 4).checked_sub(r)).ok_or_else(|| corrupt(file, format!("a block of {} bytes with {restarts} restart points", b.len())))?;
    let mut out: Vec<(Vec<u8>, Range<usize>)> = Vec::new();
    let mut at = 0;
    while at < end {
        let shared = varint(b, &mut at, file)? as usize;
        let unshared = varint(b, &mut at, file)? as usize;
        let value_len = varint(b, &mut at, file)? as usize;
        let prev = out.last().map(|(k, _)| k.as_slice()).unwrap_or_default();
        if shared > prev.len() {
            return Err(corrupt(file, format!("a key sharing {shared} bytes with a key of {}", prev.len())));
        }
        let mut key = prev[..shared].to_vec();
        key.extend_from_slice(take(&b[..end], &mut at, unshared, file)?);
        let start = at;
        take(&b[..end], &mut at, value_len, file)?;
        out.push((key, start..at));
    }
    Ok(out)
}

/// A block handle: offset and size.
fn handle(b: &[u8], at: &mut usize, file: &Path) -> Result<(usize, usize)> {
    let offset = varint(b, at, file)?;
    let size = varint(b, at, file)?;
    Ok((usize::try_from(offset).unwrap_or(usize::MAX), usize::try_from(size).unwrap_or(usize::MAX)))
}

/// The entries of table number `table` (held in `t`).
fn table_entries(t: &[u8], table: usize, file: &Path, out: &mut Vec<Entry>) -> Result<()> {
    if t.len() < FOOTER || u64::from_le_bytes(t[t.len() - 8..].try_into().expect("8 bytes")) != TABLE_MAGIC {
        return Err(corrupt(file, "no table footer"));
    }
    let footer = &t[t.len() - FOOTER..];
    let mut at = 0;
    handle(footer, &mut at, file)?;
    let index_handle = handle(footer, &mut at, file)?;
    let index = block(t, index_handle, file)?;
    for (_, h) in block_entries(&index, file)? {
        let data_handle = handle(&index[h.clone()], &mut 0, file)?;
        let data = block(t, data_handle, file)?;
        for (ikey, value) in block_entries(&data, file)? {
            let Some(split) = ikey.len().checked_sub(8) else {
                return Err(corrupt(file, format!("an internal key of {} bytes", ikey.len())));
            };
            let tag = u64::from_le_bytes(ikey[split..].try_into().expect("8 bytes"));
            let value = match tag & 0xff {
                1 => Some(Loc::Table { table, block: data_handle, range: value }),
                0 => None,
                k => return Err(corrupt(file, format!("an entry of type {k}"))),
            };
            out.push(Entry { key: ikey[..split].to_vec(), seq: tag >> 8, value });
        }
    }
    Ok(())
}

/// Decompresses a Snappy block (the raw format: the length, then literals and copies).
fn snappy(src: &[u8], file: &Path) -> Result<Vec<u8>> {
    let mut at = 0;
    let len = varint(src, &mut at, file)? as usize;
    if len > src.len().saturating_mul(64).max(1 << 16) {
        return Err(corrupt(file, format!("a compressed block of {} bytes claiming {len}", src.len())));
    }
    let mut out = Vec::with_capacity(len);
    while at < src.len() {
        let tag = src[at];
        at += 1;
        let (copy_len, offset) = match tag & 3 {
            0 => {
                let mut n = (tag >> 2) as usize;
                if n >= 60 {
                    let bytes = take(src, &mut at, n - 59, file)?;
                    n = bytes.iter().rev().fold(0, |a, &b| (a << 8) | b as usize);
                }
                out.extend_from_slice(take(src, &mut at, n + 1, file)?);
                continue;
            }
            1 => (((tag >> 2) & 7) as usize + 4, ((tag as usize >> 5) << 8) | *take(src, &mut at, 1, file)?.first().expect("one byte") as usize),
            2 => ((tag >> 2) as usize + 1, u16::from_le_bytes(take(src, &mut at, 2, file)?.try_into().expect("2 bytes")) as usize),
            _ => ((tag >> 2) as usize + 1, u32_at(take(src, &mut at, 4, file)?, 0) as usize),
        };
        if offset == 0 || offset > out.len() {
            return Err(corrupt(file, format!("a Snappy copy from {offset} bytes back, with {} written", out.len())));
        }
        let from = out.len() - offset;
        for i in 0..copy_len {
            out.push(out[from + i]);
        }
        if out.len() > len {
            return Err(corrupt(file, format!("a Snappy block longer than its {len} bytes")));
        }
    }
    if out.len() != len {
        return Err(corrupt(file, format!("a Snappy block of {} bytes, not {len}", out.len())));
    }
    Ok(out)
}

/// The number of a `NNNNNN.ext` file name.
fn file_number(name: &str, ext: &str) -> Option<u64> {
    name.strip_suffix(ext)?.parse().ok()
}

impl LevelDb {
    /// Opens the LevelDB database in folder `dir`.
    pub fn open(dir: &Path) -> Result<LevelDb> {
        let current_path = dir.join("CURRENT");
        let current = std::fs::read_to_string(&current_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Decode { file: dir.display().to_string(), msg: "no CURRENT file: not a LevelDB database".into() },
            _ => Error::io(&current_path, e),
        })?;
        let name = current.trim_end_matches('\n');
        if !name.starts_with("MANIFEST-") || name.contains(['/', '\\']) {
            return Err(corrupt(&current_path, format!("CURRENT names `{name}`, not a MANIFEST")));
        }
        let manifest_path = dir.join(name);
        let m = manifest(&FileBytes::open(&manifest_path)?, &manifest_path)?;
        let mut entries = Vec::new();
        let mut tables = Vec::new();
        for number in m.tables {
            let ldb = dir.join(format!("{number:06}.ldb"));
            let path = if ldb.exists() { ldb } else { dir.join(format!("{number:06}.sst")) };
            let bytes = FileBytes::open(&path)?;
            table_entries(&bytes, tables.len(), &path, &mut entries)?;
            tables.push((path, bytes));
        }
        let mut logs: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok()?.file_name().to_str().and_then(|n| file_number(n, ".log")))
            .filter(|&n| n >= m.log_number || n == m.prev_log_number)
            .collect();
        logs.sort_unstable();
        let mut logged = Vec::new();
        for n in logs {
            let path = dir.join(format!("{n:06}.log"));
            log_entries(&FileBytes::open(&path)?, &path, &mut logged, &mut entries)?;
        }
        // For each key the newest entry; deletions remove the key.
        entries.sort_by(|a, b| a.key.cmp(&b.key).then(b.seq.cmp(&a.seq)));
        entries.dedup_by(|later, first| later.key == first.key);
        let records = entries.into_iter().filter_map(|e| Some(Record { key: e.key, value: e.value? })).collect();
        Ok(LevelDb { dir: dir.to_path_buf(), tables, logged, records })
    }

    /// The database folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the database holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The key of record `i` in key order.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.records.get(i).map(|r| r.key.as_slice())
    }

    /// The value of record `i` (read from its table block where it lives in one).
    pub fn value(&self, i: usize) -> Result<Cow<'_, [u8]>> {
        let r = self.records.get(i).ok_or_else(|| Error::Internal(format!("record {i} of {}", self.records.len())))?;
        match &r.value {
            Loc::Log(range) => Ok(Cow::Borrowed(&self.logged[range.clone()])),
            Loc::Table { table, block: h, range } => {
                let (path, bytes) = &self.tables[*table];
                match block(bytes, *h, path)? {
                    Cow::Borrowed(b) => Ok(Cow::Borrowed(&b[range.clone()])),
                    Cow::Owned(b) => Ok(Cow::Owned(b[range.clone()].to_vec())),
                }
            }
        }
    }
}
