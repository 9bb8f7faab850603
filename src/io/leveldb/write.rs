//! Writing a LevelDB database in one pass, laid out as LevelDB itself leaves one after a full
//! compaction: the records, in key order, fill table files of about [`TABLE_SIZE`] bytes (the
//! size LevelDB's compactions write), all on one level, and a MANIFEST names them. The LevelDB
//! library (so Caffe's `backend: LEVELDB`) opens the result, reads it and writes to it.
//!
//! - Each record is a put: its internal key is the user key and an 8-byte tag (sequence number
//!   `i + 1` for record `i`, as that many puts would number them, and the value type 1).
//! - A table is data blocks of about [`BLOCK_SIZE`] bytes (uncompressed, keys prefix-compressed
//!   with a restart point every 16 keys), an empty metaindex block (no filter), an index block
//!   (one entry per data block, keyed by a short key between that block's last key and the
//!   next block's first, as LevelDB shortens them) and the 48-byte footer. Every block carries
//!   its type and masked CRC-32C.
//! - The tables go on the shallowest level 1 to 6 whose size budget (10 MiB at level 1, ten
//!   times more per level; the last level has none) holds them all, so LevelDB finds nothing
//!   to compact on opening, as it would on level 0 with four files or more, and a lookup
//!   reads one file.
//! - `MANIFEST-000001` is a log of one version edit: the bytewise comparator, log number 0 (no
//!   log holds a record), the next file number, the last sequence number and the tables with
//!   their smallest and largest internal keys; `CURRENT` names it.
//!
//! Everything is written in a temporary folder beside the database, synced, and renamed into
//! place at the end: an existing database (any non-empty folder) is never overwritten, and an
//! error leaves nothing behind.

use super::{masked_crc, COMPARATOR, FOOTER, LOG_BLOCK, LOG_HEADER, TABLE_MAGIC};
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Bytes of a data block: a block is closed with the entry that makes it this large (LevelDB's
/// `block_size`).
pub const BLOCK_SIZE: usize = 4096;
/// Bytes of a table file: a table is closed with the block that makes it this large (LevelDB's
/// `max_file_size`, the size of the files its compactions write). A value larger than this
/// makes a larger file, as in LevelDB.
pub const TABLE_SIZE: u64 = 2 << 20;
/// Keys between restart points of a data block (LevelDB's `block_restart_interval`); index
/// blocks restart at every key, as LevelDB writes them.
const RESTART_INTERVAL: usize = 16;
/// The size budget of level 1 (LevelDB's `MaxBytesForLevel`); each level below holds ten
/// times more, and the last, [`LAST_LEVEL`], has none.
const LEVEL1_BYTES: u64 = 10 << 20;
const LAST_LEVEL: u32 = 6;
/// The value type of a put.
const TYPE_VALUE: u64 = 1;
/// LevelDB's largest sequence number, which index keys that are not keys of entries carry.
const MAX_SEQUENCE: u64 = (1 << 56) - 1;
const MANIFEST: u64 = 1;
/// The number of the first table; the others follow.
const FIRST_TABLE: u64 = 2;

/// What [`write_leveldb`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Records.
    pub entries: u64,
    /// Table files (0 when empty).
    pub tables: u64,
    /// Data blocks of all tables.
    pub blocks: u64,
    /// Bytes of all tables.
    pub bytes: u64,
    /// The level the tables are on (0 when there are none).
    pub level: u32,
}

/// Writes the records `records` gives, whose keys must be strictly increasing (bytewise), as
/// the LevelDB database `dir`: a new folder (or an empty one) holding `CURRENT`, the MANIFEST
/// and the table files, as Caffe's `convert_imageset -backend leveldb` makes. Missing parent
/// folders are made. An error from `records` stops the writing and leaves no database.
pub fn write_leveldb<I>(dir: &Path, records: I) -> Result<Written>
where
    I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
{
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(already_there(dir, "the folder is not empty"));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(if dir.exists() && !dir.is_dir() { already_there(dir, "a file is there") } else { Error::io(dir, e) }),
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = crate::io::temp_path(dir);
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = write_files(&tmp, dir, records).and_then(|w| {
        crate::io::sync_dir(&tmp.join("CURRENT"));
        place(&tmp, dir)?;
        crate::io::sync_dir(dir);
        Ok(w)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Whether writing a LevelDB database at `dir` would be refused: something is there that is
/// not an empty folder.
pub fn occupied(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

fn already_there(dir: &Path, what: &str) -> Error {
    Error::Io {
        path: dir.to_path_buf(),
        err: std::io::Error::new(std::io::ErrorKind::AlreadyExists, format!("{what}; a database is written only as a new folder (or into an empty one): remove it or choose another name")),
    }
}

/// Renames the finished folder `tmp` to `dir`, which is absent or an empty folder (which
/// `rename` replaces on Unix; elsewhere it is removed first).
fn place(tmp: &Path, dir: &Path) -> Result<()> {
    #[cfg(not(unix))]
    if dir.is_dir() {
        std::fs::remove_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(tmp, dir).map_err(|e| if occupied(dir) { already_there(dir, "files appeared there while the database was written") } else { Error::io(dir, e) })
}

/// Writes the tables, the MANIFEST and CURRENT into the folder `tmp`; `dir` names the
/// database in errors about the records.
fn write_files<I>(tmp: &Path, dir: &Path, records: I) -> Result<Written>
where
    I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
{
    let bad = |msg: String| Error::Encode { file: dir.display().to_string(), msg };
    let mut tables: Vec<TableFile> = Vec::new();
    let mut open: Option<Table> = None;
    let mut last: Option<Vec<u8>> = None;
    let mut seq = 0u64;
    for r in records {
        let (key, value) = r?;
        if let Some(l) = last.as_deref().filter(|&l| l >= key.as_slice()) {
            return Err(bad(format!(
                "key `{}` does not come after the one before it (`{}`): keys must be strictly increasing, bytewise",
                String::from_utf8_lossy(&key),
                String::from_utf8_lossy(l)
            )));
        }
        if key.len() > u32::MAX as usize - 8 || value.len() > u32::MAX as usize {
            return Err(bad(format!("a record of a {}-byte key and a {}-byte value; LevelDB takes each under 4 GiB", key.len(), value.len())));
        }
        seq += 1;
        let table = match &mut open {
            Some(t) => t,
            None => open.insert(Table::create(tmp, FIRST_TABLE + tables.len() as u64)?),
        };
        let mut ikey = Vec::with_capacity(key.len() + 8);
        ikey.extend_from_slice(&key);
        ikey.extend_from_slice(&tag(seq));
        table.add(ikey, &value).map_err(|e| Error::io(&table.path, e))?;
        if let Some(t) = open.take_if(|t| t.offset >= TABLE_SIZE) {
            tables.push(t.finish()?);
        }
        last = Some(key);
    }
    if let Some(t) = open.take() {
        tables.push(t.finish()?);
    }
    let bytes = tables.iter().map(|t| t.size).sum();
    let blocks = tables.iter().map(|t| t.blocks).sum();
    let level = if tables.is_empty() { 0 } else { level_for(bytes) };
    let next_file = FIRST_TABLE + tables.len() as u64;
    let manifest = tmp.join(format!("MANIFEST-{MANIFEST:06}"));
    write_file(&manifest, &log_file(&version_edit(&tables, level, next_file, seq)))?;
    write_file(&tmp.join("CURRENT"), format!("MANIFEST-{MANIFEST:06}\n").as_bytes())?;
    Ok(Written { entries: seq, tables: tables.len() as u64, blocks, bytes, level })
}

/// The shallowest level whose size budget holds `bytes` (the last level holds anything).
fn level_for(bytes: u64) -> u32 {
    let mut budget = LEVEL1_BYTES;
    for level in 1..LAST_LEVEL {
        if bytes <= budget {
            return level;
        }
        budget = budget.saturating_mul(10);
    }
    LAST_LEVEL
}

/// The 8 bytes after a user key: sequence number and value type.
fn tag(seq: u64) -> [u8; 8] {
    (seq << 8 | TYPE_VALUE).to_le_bytes()
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_slice(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A block being filled: prefix-compressed entries, then the restart offsets and their count.
struct Block {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    /// Entries since the last restart point.
    run: usize,
    interval: usize,
    last: Vec<u8>,
}

impl Block {
    fn new(interval: usize) -> Block {
        Block { buf: Vec::new(), restarts: vec![0], run: 0, interval, last: Vec::new() }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Adds an entry; keys come in increasing order.
    fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.run < self.interval {
            key.iter().zip(&self.last).take_while(|(a, b)| a == b).count()
        } else {
            // Blocks are closed at BLOCK_SIZE, so every entry starts within 4 GiB of its block.
            self.restarts.push(self.buf.len() as u32);
            self.run = 0;
            0
        };
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (key.len() - shared) as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last.clear();
        self.last.extend_from_slice(key);
        self.run += 1;
    }

    /// The size of the finished block.
    fn size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// The finished block's contents; the block is emptied for reuse.
    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.reserve(4 * self.restarts.len() + 4);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        (self.restarts, self.run) = (vec![0], 0);
        self.last.clear();
        out
    }
}

/// A finished table, as the MANIFEST names it.
struct TableFile {
    number: u64,
    size: u64,
    blocks: u64,
    smallest: Vec<u8>,
    largest: Vec<u8>,
}

/// A table file being written.
struct Table {
    number: u64,
    path: PathBuf,
    w: BufWriter<File>,
    /// Bytes written (the next block's offset).
    offset: u64,
    data: Block,
    index: Block,
    /// The handle of the last data block written, whose index entry waits for the next key.
    pending: Option<Vec<u8>>,
    smallest: Vec<u8>,
    /// The last internal key added.
    last: Vec<u8>,
    blocks: u64,
}

impl Table {
    fn create(dir: &Path, number: u64) -> Result<Table> {
        let path = dir.join(format!("{number:06}.ldb"));
        let file = File::options().write(true).create_new(true).open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Table {
            number,
            path,
            w: BufWriter::with_capacity(1 << 18, file),
            offset: 0,
            data: Block::new(RESTART_INTERVAL),
            index: Block::new(1),
            pending: None,
            smallest: Vec::new(),
            last: Vec::new(),
            blocks: 0,
        })
    }

    fn add(&mut self, ikey: Vec<u8>, value: &[u8]) -> std::io::Result<()> {
        if let Some(handle) = self.pending.take() {
            self.index.add(&separator(&self.last, &ikey), &handle);
        }
        if self.smallest.is_empty() {
            self.smallest = ikey.clone();
        }
        self.data.add(&ikey, value);
        self.last = ikey;
        if self.data.size() >= BLOCK_SIZE {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the data block being filled, if any.
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.data.is_empty() {
            let contents = self.data.finish();
            self.pending = Some(self.write_block(&contents)?);
            self.blocks += 1;
        }
        Ok(())
    }

    /// Writes a block and its trailer (type 0, no compression, and checksum); returns its
    /// handle.
    fn write_block(&mut self, contents: &[u8]) -> std::io::Result<Vec<u8>> {
        self.w.write_all(contents)?;
        self.w.write_all(&[0])?;
        self.w.write_all(&masked_crc(&[contents, &[0]]).to_le_bytes())?;
        let mut handle = Vec::new();
        put_varint(&mut handle, self.offset);
        put_varint(&mut handle, contents.len() as u64);
        self.offset += contents.len() as u64 + 5;
        Ok(handle)
    }

    /// Writes the last data block, the metaindex and index blocks and the footer, and syncs
    /// the file.
    fn finish(mut self) -> Result<TableFile> {
        let path = self.path.clone();
        (|| -> std::io::Result<TableFile> {
            self.flush()?;
            let metaindex = self.write_block(&Block::new(1).finish())?;
            if let Some(handle) = self.pending.take() {
                self.index.add(&successor(&self.last), &handle);
            }
            let contents = self.index.finish();
            let index = self.write_block(&contents)?;
            let mut footer = metaindex;
            footer.extend_from_slice(&index);
            footer.resize(FOOTER - 8, 0);
            footer.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
            self.w.write_all(&footer)?;
            self.offset += FOOTER as u64;
            let file = self.w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(TableFile { number: self.number, size: self.offset, blocks: self.blocks, smallest: self.smallest, largest: self.last })
        })()
        .map_err(|e| Error::io(&path, e))
    }
}

/// The user key of an internal key.
fn user(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len().saturating_sub(8)]
}

/// A key for the index between the internal keys `a` (the last of a block) and `b` (the first
/// of the next): as LevelDB's bytewise comparator shortens it, the shortest user key after
/// `a`'s and before `b`'s that is shorter than `a`'s (with the largest tag, so that it sorts
/// after `a`), else `a` itself.
fn separator(a: &[u8], b: &[u8]) -> Vec<u8> {
    let (ua, ub) = (user(a), user(b));
    let n = ua.iter().zip(ub).take_while(|(x, y)| x == y).count();
    if n + 1 < ua.len() && n < ub.len() && ua[n] < 0xff && ua[n] + 1 < ub[n] {
        let mut s = ua[..=n].to_vec();
        s[n] += 1;
        s.extend_from_slice(&(MAX_SEQUENCE << 8 | TYPE_VALUE).to_le_bytes());
        return s;
    }
    a.to_vec()
}

/// A key for the index after the internal key `a` (the last of a table): the shortest user
/// key after `a`'s, where shorter than it (with the largest tag), else `a` itself.
fn successor(a: &[u8]) -> Vec<u8> {
    let ua = user(a);
    match ua.iter().position(|&b| b != 0xff) {
        Some(i) if i + 1 < ua.len() => {
            let mut s = ua[..=i].to_vec();
            s[i] += 1;
            s.extend_from_slice(&(MAX_SEQUENCE << 8 | TYPE_VALUE).to_le_bytes());
            s
        }
        _ => a.to_vec(),
    }
}

/// The version edit of the MANIFEST: comparator, log number, next file number, last sequence
/// number and the new tables on `level`.
fn version_edit(tables: &[TableFile], level: u32, next_file: u64, last_sequence: u64) -> Vec<u8> {
    let mut e = Vec::new();
    put_varint(&mut e, 1);
    put_slice(&mut e, COMPARATOR);
    put_varint(&mut e, 2);
    put_varint(&mut e, 0);
    put_varint(&mut e, 3);
    put_varint(&mut e, next_file);
    put_varint(&mut e, 4);
    put_varint(&mut e, last_sequence);
    for t in tables {
        put_varint(&mut e, 7);
        put_varint(&mut e, level.into());
        put_varint(&mut e, t.number);
        put_varint(&mut e, t.size);
        put_slice(&mut e, &t.smallest);
        put_slice(&mut e, &t.largest);
    }
    e
}

/// A log file of the one record `record`: fragments in 32 KiB blocks, each with its
/// checksum, length and type (full, or first, middle and last); a block's last bytes, too few
/// for a header, are zeros.
fn log_file(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + record.len() / LOG_BLOCK * LOG_HEADER + 2 * LOG_HEADER);
    let (mut left, mut first) = (record, true);
    loop {
        let room = LOG_BLOCK - out.len() % LOG_BLOCK;
        if room < LOG_HEADER {
            out.resize(out.len() + room, 0);
            continue;
        }
        let n = left.len().min(room - LOG_HEADER);
        let last = n == left.len();
        let kind: u8 = match (first, last) {
            (true, true) => 1,
            (true, false) => 2,
            (false, false) => 3,
            (false, true) => 4,
        };
        out.extend_from_slice(&masked_crc(&[&[kind], &left[..n]]).to_le_bytes());
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&left[..n]);
        if last {
            return out;
        }
        (left, first) = (&left[n..], false);
    }
}

/// Writes and syncs a new file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    (|| {
        let mut f = File::options().write(true).create_new(true).open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    })()
    .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ikey(user: &[u8]) -> Vec<u8> {
        [user, &tag(7)].concat()
    }

    #[test]
    fn index_keys_lie_between_blocks_and_are_short() {
        let max = (MAX_SEQUENCE << 8 | TYPE_VALUE).to_le_bytes();
        // `00000041_a/b.png` .. `00000062_c.png`: `0000005` sorts between them.
        let (a, b) = (ikey(b"00000041_a/b.png"), ikey(b"00000062_c.png"));
        let s = separator(&a, &b);
        assert_eq!(s, [b"0000005".as_slice(), &max].concat());
        // One key a prefix of the other, adjacent bytes, no shorter key: the key itself.
        for (x, y) in [(&b"abc"[..], &b"abcd"[..]), (b"abc1x", b"abc2"), (b"ab", b"ad")] {
            assert_eq!(separator(&ikey(x), &ikey(y)), ikey(x), "{x:?} {y:?}");
        }
        assert_eq!(successor(&ikey(b"\xff\xffab")), [b"\xff\xffb".as_slice(), &max].concat());
        assert_eq!(successor(&ikey(b"\xff\xff")), ikey(b"\xff\xff"));
        assert_eq!(successor(&ikey(b"a")), ikey(b"a"));
    }

    #[test]
    fn levels_hold_their_budget() {
        assert_eq!(level_for(1), 1);
        assert_eq!(level_for(10 << 20), 1);
        assert_eq!(level_for((10 << 20) + 1), 2);
        assert_eq!(level_for(100 << 20), 2);
        assert_eq!(level_for(u64::MAX), LAST_LEVEL);
    }

    /// A MANIFEST larger than a log block is split into fragments the reader joins.
    #[test]
    fn log_records_span_blocks() {
        let path = Path::new("MANIFEST-000001");
        for len in [0, 1, LOG_BLOCK - LOG_HEADER, LOG_BLOCK - LOG_HEADER - 3, LOG_BLOCK, 3 * LOG_BLOCK + 11] {
            let record: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let file = log_file(&record);
            assert_eq!(super::super::log_records(&file, path).unwrap(), vec![record], "{len} bytes");
        }
    }
}
