//! Reading LMDB databases, the store behind Caffe's `Data` layer (`backend: LMDB`), without
//! the LMDB library: the file is mapped and its B+tree walked once, in key order, into an
//! index of the values, which are then read straight from the map.
//!
//! The format is LMDB 0.9's on 64-bit little-endian machines (what every Caffe install
//! wrote): pages of `psize` bytes; pages 0 and 1 are meta pages, the one with the higher
//! transaction id is current and names the main database's root page; branch pages hold
//! (key, child page) nodes, leaf pages (key, value) nodes; a value too large for its leaf
//! lives in a run of overflow pages that the node names. Every offset, count and page number
//! read from the file is checked against the file before it is used, so a truncated or
//! corrupt database gives an [`Error::Decode`] naming it, never a panic, and the walk visits
//! no page twice. [`write_lmdb`] writes a database the LMDB library reads.

mod write;
pub use write::{write_lmdb, Written, MAX_KEY, PAGE_SIZE};

use super::FileBytes;
use crate::{Error, Result};
use std::ops::Range;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0xBEEF_C0DE;
const DATA_VERSION: u32 = 1;
/// Bytes of a page header; node offsets of a page follow it.
const PAGE_HEADER: usize = 16;
/// Bytes of a node header; the key follows it, then (in a leaf) the value.
const NODE_HEADER: usize = 8;
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_LEAF2: u16 = 0x20;
/// A leaf node whose value lives in overflow pages.
const F_BIGDATA: u16 = 0x01;
/// A leaf node holding a sub-database, or duplicate values: not written by Caffe.
const F_SUBDATA: u16 = 0x02;
const F_DUPDATA: u16 = 0x04;
/// The main database's flag for duplicate keys (`MDB_DUPSORT`).
const DUPSORT: u16 = 0x04;
/// The root of an empty database.
const NO_PAGE: u64 = u64::MAX;
/// Deeper than any B+tree of a file that fits on a disk.
const MAX_DEPTH: usize = 64;

/// An open LMDB database (its main, unnamed database), read-only.
pub struct Lmdb {
    path: PathBuf,
    bytes: FileBytes,
    entries: Vec<Entry>,
}

/// Where one record's key and value lie in the file.
#[derive(Clone, Debug)]
struct Entry {
    key: Range<usize>,
    value: Range<usize>,
}

/// Little-endian reads that fail, naming `what`, past the end of the file.
struct Reader<'a> {
    bytes: &'a [u8],
    path: &'a Path,
}

impl Reader<'_> {
    fn err(&self, msg: String) -> Error {
        Error::Decode { file: self.path.display().to_string(), msg: format!("{msg} (a corrupt or truncated LMDB database)") }
    }
    fn slice(&self, at: usize, len: usize, what: &str) -> Result<&[u8]> {
        at.checked_add(len)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or_else(|| self.err(format!("{what} at byte {at} runs past the end of the file ({} bytes)", self.bytes.len())))
    }
    fn u16(&self, at: usize, what: &str) -> Result<u16> {
        self.slice(at, 2, what).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, at: usize, what: &str) -> Result<u32> {
        self.slice(at, 4, what).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&self, at: usize, what: &str) -> Result<u64> {
        self.slice(at, 8, what).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

/// What a valid meta page says.
struct Meta {
    page_size: usize,
    txnid: u64,
    root: u64,
    depth: usize,
    entries: u64,
    flags: u16,
}

/// Reads the meta page at byte `at`, `None` if it is not one.
fn meta(r: &Reader, at: usize) -> Result<Option<Meta>> {
    if r.bytes.len() < at + 152 || r.u32(at + 16, "magic")? != MAGIC {
        return Ok(None);
    }
    let version = r.u32(at + 20, "version")?;
    if version != DATA_VERSION {
        return Err(r.err(format!("LMDB data format version {version}; crema reads version {DATA_VERSION} (LMDB 0.9)")));
    }
    // The main database's record is the second of the two after the map's address and size.
    let main = at + 88;
    Ok(Some(Meta {
        page_size: r.u32(at + 40, "page size")? as usize,
        flags: r.u16(main + 4, "database flags")?,
        depth: r.u16(main + 6, "tree depth")? as usize,
        entries: r.u64(main + 32, "entry count")?,
        root: r.u64(main + 40, "root page")?,
        txnid: r.u64(at + 144, "transaction id")?,
    }))
}

impl Lmdb {
    /// Opens the database at `path`: an LMDB environment folder (its `data.mdb`), or the data
    /// file itself.
    pub fn open(path: &Path) -> Result<Lmdb> {
        let file = if path.is_dir() { path.join("data.mdb") } else { path.to_path_buf() };
        if path.is_dir() && !file.exists() {
            return Err(Error::Decode {
                file: path.display().to_string(),
                msg: "a folder without data.mdb: not an LMDB database".into(),
            });
        }
        Self::read(FileBytes::open(&file)?, file)
    }

    /// The database whose data file holds `bytes`; `path` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Lmdb> {
        Self::read(FileBytes::Read(bytes), path.to_path_buf())
    }

    fn read(bytes: FileBytes, path: PathBuf) -> Result<Lmdb> {
        let entries = index(&Reader { bytes: &bytes, path: &path })?;
        Ok(Lmdb { path, bytes, entries })
    }

    /// The data file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the database holds no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Record `i` in key order: its key and value.
    pub fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let e = self.entries.get(i)?;
        Some((&self.bytes[e.key.clone()], &self.bytes[e.value.clone()]))
    }
}

/// Walks the current tree of the main database into the list of its records, in key order.
fn index(r: &Reader) -> Result<Vec<Entry>> {
    let first = meta(r, 0)?.ok_or_else(|| r.err("no LMDB meta page at the start of the file".into()))?;
    let psize = first.page_size;
    if !(512..=65536).contains(&psize) || !psize.is_power_of_two() {
        return Err(r.err(format!("page size {psize}")));
    }
    if r.bytes.len() < 2 * psize {
        return Err(r.err(format!("{} bytes, less than the two meta pages of {psize} bytes", r.bytes.len())));
    }
    let m = match meta(r, psize)? {
        Some(second) if second.txnid > first.txnid => second,
        _ => first,
    };
    if m.flags & DUPSORT != 0 {
        return Err(r.err("a database with duplicate keys (MDB_DUPSORT), which Caffe never writes".into()));
    }
    let mut entries = Vec::new();
    if m.root == NO_PAGE {
        return Ok(entries);
    }
    let pages = r.bytes.len() / psize;
    let page_at = |pgno: u64, what: &str| -> Result<usize> {
        if pgno < 2 || pgno >= pages as u64 {
            return Err(r.err(format!("{what} names page {pgno}, outside the file's {pages} pages")));
        }
        Ok(pgno as usize * psize)
    };
    let mut visited = vec![false; pages];
    // Depth-first, children in order: leaves come in key order.
    let mut stack = vec![(m.root, 1usize)];
    while let Some((pgno, depth)) = stack.pop() {
        let at = page_at(pgno, "the tree")?;
        if std::mem::replace(&mut visited[pgno as usize], true) {
            return Err(r.err(format!("page {pgno} is reached twice")));
        }
        if depth > MAX_DEPTH.min(m.depth.max(1)) {
            return Err(r.err(format!("page {pgno} lies deeper than the tree's depth of {}", m.depth)));
        }
        if r.u64(at, "page number")? != pgno {
            return Err(r.err(format!("page {pgno} is labelled {}", r.u64(at, "page number")?)));
        }
        let flags = r.u16(at + 10, "page flags")?;
        let lower = r.u16(at + 12, "page's free space start")? as usize;
        if lower < PAGE_HEADER || lower > psize {
            return Err(r.err(format!("page {pgno} has a node table ending at {lower}")));
        }
        let count = (lower - PAGE_HEADER) / 2;
        let node = |i: usize| -> Result<(usize, u16, u16, u16, usize)> {
            let off = r.u16(at + PAGE_HEADER + 2 * i, "node offset")? as usize;
            if off < lower || off + NODE_HEADER > psize {
                return Err(r.err(format!("node {i} of page {pgno} at offset {off}")));
            }
            let n = at + off;
            let (lo, hi, nflags) = (r.u16(n, "node")?, r.u16(n + 2, "node")?, r.u16(n + 4, "node")?);
            let ksize = r.u16(n + 6, "key size")? as usize;
            if off + NODE_HEADER + ksize > psize {
                return Err(r.err(format!("the key of node {i} of page {pgno} runs past its page")));
            }
            Ok((n, lo, hi, nflags, ksize))
        };
        match flags & (P_BRANCH | P_LEAF | P_LEAF2 | P_OVERFLOW) {
            P_BRANCH => {
                if count == 0 {
                    return Err(r.err(format!("branch page {pgno} has no children")));
                }
                for i in (0..count).rev() {
                    let (_, lo, hi, nflags, _) = node(i)?;
                    let child = lo as u64 | (hi as u64) << 16 | (nflags as u64) << 32;
                    stack.push((child, depth + 1));
                }
            }
            P_LEAF => {
                for i in 0..count {
                    let (n, lo, hi, nflags, ksize) = node(i)?;
                    let size = lo as usize | (hi as usize) << 16;
                    let key = n + NODE_HEADER..n + NODE_HEADER + ksize;
                    if nflags & (F_SUBDATA | F_DUPDATA) != 0 {
                        return Err(r.err(format!("node {i} of page {pgno} holds a sub-database or duplicates, which Caffe never writes")));
                    }
                    let value = if nflags & F_BIGDATA != 0 {
                        let first = r.u64(key.end, "overflow page number")?;
                        let o = page_at(first, &format!("node {i} of page {pgno}"))?;
                        if r.u16(o + 10, "page flags")? & P_OVERFLOW == 0 {
                            return Err(r.err(format!("node {i} of page {pgno} names page {first}, which is not an overflow page")));
                        }
                        let run = r.u32(o + 12, "overflow page count")? as usize;
                        if PAGE_HEADER + size > run.saturating_mul(psize) || first as usize + run > pages {
                            return Err(r.err(format!("a value of {size} bytes in {run} overflow pages from page {first}")));
                        }
                        o + PAGE_HEADER..o + PAGE_HEADER + size
                    } else {
                        if key.end - at + size > psize {
                            return Err(r.err(format!("the value of node {i} of page {pgno} runs past its page")));
                        }
                        key.end..key.end + size
                    };
                    entries.push(Entry { key, value });
                }
            }
            other => return Err(r.err(format!("page {pgno} in the tree has flags {other:#x}, neither branch nor leaf"))),
        }
    }
    if entries.len() as u64 != m.entries {
        return Err(r.err(format!("the tree holds {} records but the database says {}", entries.len(), m.entries)));
    }
    Ok(entries)
}
