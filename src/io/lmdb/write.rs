//! Writing an LMDB database in one pass, as a fresh LMDB environment holds it after one write
//! transaction: records arrive in key order and fill leaf pages (values larger than LMDB's
//! node limit go to overflow pages, as LMDB puts them), the branch levels are built over the
//! leaves, and the two meta pages name the tree (page 0 the empty database of transaction 0,
//! page 1 the tree of transaction 1). The LMDB library, and so Caffe, reads the result.
//!
//! The file is written to a temporary name and renamed into place; an existing database is
//! never overwritten.

use super::{DATA_VERSION, F_BIGDATA, MAGIC, NODE_HEADER, NO_PAGE, PAGE_HEADER, P_BRANCH, P_LEAF, P_OVERFLOW};
use crate::io::atomic_write;
use crate::{Error, Result};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// LMDB's page size on the machines Caffe runs on.
pub const PAGE_SIZE: usize = 4096;
/// LMDB's longest key (`MDB_MAXKEYSIZE`).
pub const MAX_KEY: usize = 511;
const P_META: u16 = 0x08;
/// LMDB's largest leaf node before its value moves to overflow pages (`me_nodemax`).
const NODE_MAX: usize = (((PAGE_SIZE - PAGE_HEADER) / 2) & !1) - 2;

/// What [`write_lmdb`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Records.
    pub entries: u64,
    /// Pages of the file, the two meta pages included.
    pub pages: u64,
    /// Levels of the tree (0 when empty).
    pub depth: u16,
}

/// Writes the records `records` gives, whose keys must be strictly increasing (bytewise), as
/// the LMDB database `dir` (a new folder holding `data.mdb`, as Caffe's `convert_imageset`
/// makes). An error from `records` stops the writing and leaves no database.
pub fn write_lmdb<I>(dir: &Path, records: I) -> Result<Written>
where
    I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
{
    let file = dir.join("data.mdb");
    if file.exists() {
        return Err(Error::Io {
            path: file,
            err: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a database is already there; remove it or choose another name"),
        });
    }
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut failure = None;
    let mut written = None;
    atomic_write(&file, |w| {
        let mut b = Builder { w, next: 2, leaf: Page::new(), leaves: Vec::new(), last: None, entries: 0, leaf_pages: 0, overflow_pages: 0 };
        b.w.write_all(&vec![0; 2 * PAGE_SIZE])?;
        for r in records {
            let pushed = r.and_then(|(k, v)| b.push(&k, &v, &file));
            if let Err(e) = pushed {
                failure = Some(e);
                return Err(std::io::Error::other("stopped"));
            }
        }
        written = Some(b.finish()?);
        Ok(())
    })
    .map_err(|e| {
        if created {
            // Only removes the folder if it is still empty.
            let _ = std::fs::remove_dir(dir);
        }
        failure.take().unwrap_or(e)
    })?;
    written.ok_or_else(|| Error::Internal("the LMDB writer finished without a result".into()))
}

/// One page being filled: nodes from the end down, their offsets after the header.
struct Page {
    buf: Vec<u8>,
    count: usize,
    upper: usize,
}

impl Page {
    fn new() -> Page {
        Page { buf: vec![0; PAGE_SIZE], count: 0, upper: PAGE_SIZE }
    }
    /// Whether a node of `len` bytes fits beside the ones placed.
    fn fits(&self, len: usize) -> bool {
        PAGE_HEADER + 2 * (self.count + 1) + even(len) <= self.upper
    }
    fn add(&mut self, node: &[u8]) {
        self.upper -= even(node.len());
        self.buf[self.upper..self.upper + node.len()].copy_from_slice(node);
        let slot = PAGE_HEADER + 2 * self.count;
        self.buf[slot..slot + 2].copy_from_slice(&(self.upper as u16).to_le_bytes());
        self.count += 1;
    }
    /// The finished page, numbered `pgno`, with `flags`; the page is emptied for reuse.
    fn take(&mut self, pgno: u64, flags: u16) -> Vec<u8> {
        let mut buf = std::mem::replace(&mut self.buf, vec![0; PAGE_SIZE]);
        header(&mut buf, pgno, flags);
        buf[12..14].copy_from_slice(&((PAGE_HEADER + 2 * self.count) as u16).to_le_bytes());
        buf[14..16].copy_from_slice(&(self.upper as u16).to_le_bytes());
        (self.count, self.upper) = (0, PAGE_SIZE);
        buf
    }
}

fn even(n: usize) -> usize {
    (n + 1) & !1
}

fn header(page: &mut [u8], pgno: u64, flags: u16) {
    page[0..8].copy_from_slice(&pgno.to_le_bytes());
    page[10..12].copy_from_slice(&flags.to_le_bytes());
}

/// A node: the 32-bit size or page number split over its first three fields, then the key.
fn node(lo_hi: u32, flags: u16, key: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut n = Vec::with_capacity(NODE_HEADER + key.len() + rest.len());
    n.extend_from_slice(&(lo_hi as u16).to_le_bytes());
    n.extend_from_slice(&((lo_hi >> 16) as u16).to_le_bytes());
    n.extend_from_slice(&flags.to_le_bytes());
    n.extend_from_slice(&(key.len() as u16).to_le_bytes());
    n.extend_from_slice(key);
    n.extend_from_slice(rest);
    n
}

struct Builder<'a, W: Write + Seek> {
    w: &'a mut W,
    /// The next page number, which is also the next page's place in the file.
    next: u64,
    leaf: Page,
    /// First key and page number of each leaf written.
    leaves: Vec<(Vec<u8>, u64)>,
    last: Option<Vec<u8>>,
    entries: u64,
    leaf_pages: u64,
    overflow_pages: u64,
}

impl<W: Write + Seek> Builder<'_, W> {
    fn push(&mut self, key: &[u8], value: &[u8], file: &Path) -> Result<()> {
        let bad = |msg: String| Error::Config(format!("{}: {msg}", file.display()));
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(bad(format!("a key of {} bytes; LMDB takes 1 to {MAX_KEY}", key.len())));
        }
        if self.last.as_deref().is_some_and(|l| l >= key) {
            return Err(bad(format!("key `{}` does not come after the one before it", String::from_utf8_lossy(key))));
        }
        let size = u32::try_from(value.len()).map_err(|_| bad(format!("a value of {} bytes; LMDB takes under 4 GiB", value.len())))?;
        let io = |e: std::io::Error| Error::io(file, e);
        let n = if NODE_HEADER + key.len() + value.len() > NODE_MAX {
            let pages = (PAGE_HEADER + value.len()).div_ceil(PAGE_SIZE);
            let mut first = vec![0; PAGE_SIZE];
            header(&mut first, self.next, P_OVERFLOW);
            first[12..16].copy_from_slice(&(pages as u32).to_le_bytes());
            self.w.write_all(&first[..PAGE_HEADER]).map_err(io)?;
            self.w.write_all(value).map_err(io)?;
            self.w.write_all(&vec![0; pages * PAGE_SIZE - PAGE_HEADER - value.len()]).map_err(io)?;
            let n = node(size, F_BIGDATA, key, &self.next.to_le_bytes());
            self.next += pages as u64;
            self.overflow_pages += pages as u64;
            n
        } else {
            node(size, 0, key, value)
        };
        if !self.leaf.fits(n.len()) {
            self.flush_leaf().map_err(io)?;
        }
        if self.leaf.count == 0 {
            self.leaves.push((key.to_vec(), 0));
        }
        self.leaf.add(&n);
        self.last = Some(key.to_vec());
        self.entries += 1;
        Ok(())
    }

    fn flush_leaf(&mut self) -> std::io::Result<()> {
        let pgno = self.next;
        self.w.write_all(&self.leaf.take(pgno, P_LEAF))?;
        if let Some(l) = self.leaves.last_mut() {
            l.1 = pgno;
        }
        self.next += 1;
        self.leaf_pages += 1;
        Ok(())
    }

    /// Writes the last leaf, the branch levels and the meta pages.
    fn finish(mut self) -> std::io::Result<Written> {
        if self.leaf.count > 0 {
            self.flush_leaf()?;
        }
        let (mut level, mut depth, mut branch_pages) = (std::mem::take(&mut self.leaves), u16::from(self.leaf_pages > 0), 0u64);
        while level.len() > 1 {
            let mut up = Vec::new();
            for group in branch_groups(&level) {
                let mut page = Page::new();
                for (i, (key, child)) in group.iter().enumerate() {
                    // The leftmost child's key is implicit.
                    page.add(&node(*child as u32, (*child >> 32) as u16, if i == 0 { &[] } else { key }, &[]));
                }
                up.push((group[0].0.clone(), self.next));
                self.w.write_all(&page.take(self.next, P_BRANCH))?;
                self.next += 1;
                branch_pages += 1;
            }
            level = up;
            depth += 1;
        }
        let root = level.first().map_or(NO_PAGE, |l| l.1);
        let last_pg = self.next - 1;
        let map_size = (self.next * PAGE_SIZE as u64).next_multiple_of(1 << 20);
        let empty = meta(0, 0, 1, map_size, [0; 5], NO_PAGE);
        let tree = meta(1, 1, last_pg, map_size, [depth as u64, branch_pages, self.leaf_pages, self.overflow_pages, self.entries], root);
        self.w.seek(SeekFrom::Start(0))?;
        self.w.write_all(&empty)?;
        self.w.write_all(&tree)?;
        self.w.seek(SeekFrom::End(0))?;
        Ok(Written { entries: self.entries, pages: self.next, depth })
    }
}

/// Splits one level's (first key, page) list into branch pages: as many nodes as fit, and
/// never a page with a single child (the last page borrows one from the page before).
fn branch_groups(level: &[(Vec<u8>, u64)]) -> Vec<&[(Vec<u8>, u64)]> {
    let mut bounds = vec![0];
    let mut page = Page::new();
    for (i, (key, _)) in level.iter().enumerate() {
        let len = NODE_HEADER + if page.count == 0 { 0 } else { key.len() };
        if !page.fits(len) {
            bounds.push(i);
            page = Page::new();
        }
        page.add(&vec![0; NODE_HEADER + if page.count == 0 { 0 } else { key.len() }]);
    }
    bounds.push(level.len());
    let n = bounds.len();
    if n > 2 && bounds[n - 1] - bounds[n - 2] == 1 {
        bounds[n - 2] -= 1;
    }
    bounds.windows(2).map(|w| &level[w[0]..w[1]]).collect()
}

/// A meta page: `[depth, branch, leaf, overflow, entries]` of the main database and its root.
fn meta(pgno: u64, txnid: u64, last_pg: u64, map_size: u64, main: [u64; 5], root: u64) -> Vec<u8> {
    let mut p = vec![0; PAGE_SIZE];
    header(&mut p, pgno, P_META);
    let m = PAGE_HEADER;
    p[m..m + 4].copy_from_slice(&MAGIC.to_le_bytes());
    p[m + 4..m + 8].copy_from_slice(&DATA_VERSION.to_le_bytes());
    p[m + 16..m + 24].copy_from_slice(&map_size.to_le_bytes());
    // The free-page database: empty; its first field holds the page size.
    let free = m + 24;
    p[free..free + 4].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
    p[free + 40..free + 48].copy_from_slice(&NO_PAGE.to_le_bytes());
    let main_db = m + 72;
    p[main_db + 6..main_db + 8].copy_from_slice(&(main[0] as u16).to_le_bytes());
    for (i, v) in main[1..].iter().enumerate() {
        p[main_db + 8 + 8 * i..main_db + 16 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    p[main_db + 40..main_db + 48].copy_from_slice(&root.to_le_bytes());
    p[m + 120..m + 128].copy_from_slice(&last_pg.to_le_bytes());
    p[m + 128..m + 136].copy_from_slice(&txnid.to_le_bytes());
    p
}
