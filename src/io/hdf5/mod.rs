//! Reading numeric datasets from HDF5 files, the input of Caffe's `HDF5Data` layer, without the
//! HDF5 library.
//!
//! What is read is what Caffe users write: files from h5py, MATLAB, Octave or the HDF5 C API,
//! with either generation of the format:
//! - superblocks 0 to 3 (a user block before the superblock is skipped);
//! - object headers of versions 1 and 2, with their continuation blocks;
//! - groups of both kinds: symbol tables (a B-tree over symbol-table nodes, names in a local
//!   heap) and link messages (the compact form the newer format writes);
//! - datasets of integers (8 to 64 bits, signed or not) and IEEE floats (16, 32, 64 bits), of
//!   either byte order, read as f32 as Caffe's `H5LTread_dataset_float` converts them;
//! - compact, contiguous and chunked storage; chunks indexed by a version-1 B-tree (every file
//!   of the original format), or, in the newer format, a single chunk, an implicit index or a
//!   fixed array; chunks passed through deflate (gzip), shuffle, Fletcher-32 (checked) or
//!   h5py's LZF; chunks never written hold the dataset's fill value.
//!
//! Not read, each refused with a message that says so: groups in the dense form (fractal
//! heaps: over 8 members in a file of the newer format), the extensible-array and version-2
//! B-tree chunk indexes (datasets with an unlimited dimension in the newer format), paged fixed
//! arrays (over 1,024 chunks there), other filters (szip, blosc, ...), and non-numeric types.
//!
//! Every address, length and count read from the file is checked against the file before use;
//! no B-tree node or header block is visited twice; and a dataset may not claim more bytes than
//! its file could hold once inflated (deflate expands at most 1,032-fold). A corrupt, truncated
//! or hostile file gives an [`Error::Decode`] naming it, never a panic or an outsized
//! allocation. Checksums of metadata blocks are not verified; every structure is bounds-checked
//! instead.

mod filters;
mod write;

pub use write::{write_hdf5, Group};

use super::FileBytes;
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
/// Deeper than any B-tree or group nesting of a real file.
const MAX_DEPTH: usize = 64;
/// More header blocks than any object has.
const MAX_HEADER_BLOCKS: usize = 4096;
/// How much larger than its file a dataset may be: deflate expands at most 1,032-fold, LZF and
/// the other filters less.
const MAX_EXPANSION: u64 = 1100;
/// Caffe's limit on a blob's element count.
const MAX_ELEMENTS: usize = i32::MAX as usize;

const MSG_DATASPACE: u16 = 0x01;
const MSG_LINK_INFO: u16 = 0x02;
const MSG_DATATYPE: u16 = 0x03;
const MSG_FILL_OLD: u16 = 0x04;
const MSG_FILL: u16 = 0x05;
const MSG_LINK: u16 = 0x06;
const MSG_LAYOUT: u16 = 0x08;
const MSG_FILTERS: u16 = 0x0B;
const MSG_CONTINUATION: u16 = 0x10;
const MSG_SYMBOL_TABLE: u16 = 0x11;
/// A message flag: the message is stored elsewhere and this is a reference to it.
const FLAG_SHARED: u8 = 0x02;

/// An HDF5 file opened for reading.
pub struct Hdf5 {
    path: PathBuf,
    bytes: FileBytes,
    /// Where addresses count from (the superblock's position).
    base: u64,
    off_size: usize,
    len_size: usize,
    root: u64,
}

/// How a dataset's elements are stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// An integer of `size` bytes.
    Int { size: usize, signed: bool, big_endian: bool },
    /// An IEEE float of `size` bytes (2, 4 or 8).
    Float { size: usize, big_endian: bool },
    /// A fixed-length string of `size` bytes.
    Str { size: usize },
}

impl Dtype {
    /// Bytes per element.
    pub fn size(&self) -> usize {
        match *self {
            Dtype::Int { size, .. } | Dtype::Float { size, .. } | Dtype::Str { size } => size,
        }
    }
    /// Whether the elements are numbers.
    pub fn is_numeric(&self) -> bool {
        !matches!(self, Dtype::Str { .. })
    }
    /// A name like `float32`, `uint8` or `big-endian int16`.
    pub fn describe(&self) -> String {
        let (name, big) = match *self {
            Dtype::Int { size, signed, big_endian } => (format!("{}int{}", if signed { "" } else { "u" }, size * 8), big_endian),
            Dtype::Float { size, big_endian } => (format!("float{}", size * 8), big_endian),
            Dtype::Str { size } => (format!("strings of {size} bytes"), false),
        };
        if big && self.size() > 1 { format!("big-endian {name}") } else { name }
    }
}

/// A dataset's description: its shape, element type and where its values lie.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The path it was found at.
    pub name: String,
    /// Its dimensions, slowest first (C order, as h5py and Caffe see them).
    pub shape: Vec<usize>,
    /// The stored element type.
    pub dtype: Dtype,
    /// The maximum dimensions (the shape when the file gives none; `usize::MAX` unlimited):
    /// the newer chunk indexes number chunks over their grid.
    max_shape: Vec<usize>,
    layout: Layout,
    filters: Vec<Filter>,
    fill: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
enum Layout {
    /// The values, in the object header: (absolute position, length).
    Compact(usize, usize),
    /// At an absolute address, or nowhere yet (all fill value).
    Contiguous(Option<u64>),
    /// Chunks of `dims` elements, found through `index`; `edges_unfiltered`: chunks that
    /// extend past the dataset's edge were stored without the filters.
    Chunked { dims: Vec<usize>, index: ChunkIndex, edges_unfiltered: bool },
}

#[derive(Clone, Debug)]
enum ChunkIndex {
    /// A version-1 B-tree of chunks.
    BTree(u64),
    /// One chunk the size of the dataset: stored size (when filtered) and filter mask.
    Single { addr: u64, size: Option<u64>, mask: u32 },
    /// Unfiltered chunks one after another from an address.
    Implicit(u64),
    /// A fixed array of chunk addresses.
    FixedArray(u64),
    /// No chunk was ever written.
    Unallocated,
}

#[derive(Clone, Debug)]
struct Filter {
    id: u16,
    name: String,
    values: Vec<u32>,
}

/// One chunk as an index names it.
struct Chunk {
    offsets: Vec<u64>,
    addr: u64,
    size: u64,
    mask: u32,
}

/// One message of an object header: its type, flags and the byte range of its data.
#[derive(Clone, Copy, Debug)]
struct Msg {
    kind: u16,
    flags: u8,
    at: usize,
    len: usize,
}

impl Hdf5 {
    /// Opens the file at `path` and reads its superblock.
    pub fn open(path: &Path) -> Result<Hdf5> {
        Hdf5::parse(path, FileBytes::open(path)?)
    }

    /// Reads a file's bytes from memory; `path` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Hdf5> {
        Hdf5::parse(path, FileBytes::Read(bytes))
    }

    fn parse(path: &Path, bytes: FileBytes) -> Result<Hdf5> {
        let mut f = Hdf5 { path: path.to_path_buf(), bytes, base: 0, off_size: 8, len_size: 8, root: 0 };
        // The superblock is at 0, or after a user block of 512, 1024, 2048, ... bytes.
        let mut at = 0usize;
        while f.bytes.get(at..at + 8).is_none_or(|s| s != SIGNATURE) {
            at = if at == 0 { 512 } else { at * 2 };
            if at >= f.bytes.len() {
                return Err(f.err_plain("not an HDF5 file (no HDF5 signature at byte 0, 512, 1024, ...)".into()));
            }
        }
        f.base = at as u64;
        let version = f.u8(at + 8, "superblock version")?;
        match version {
            0 | 1 => {
                f.off_size = f.u8(at + 13, "size of offsets")? as usize;
                f.len_size = f.u8(at + 14, "size of lengths")? as usize;
                f.check_sizes()?;
                // Then the group K values, flags, (v1) indexed-storage K; then four addresses
                // (base, free space, end of file, driver) and the root group's symbol table entry.
                let addrs = at + 24 + if version == 1 { 4 } else { 0 };
                let entry = addrs + 4 * f.off_size;
                f.root = f.addr(entry + f.len_size, "root group address")?.ok_or_else(|| f.err("the root group has no address".into()))?;
            }
            2 | 3 => {
                f.off_size = f.u8(at + 9, "size of offsets")? as usize;
                f.len_size = f.u8(at + 10, "size of lengths")? as usize;
                f.check_sizes()?;
                // base, extension, end of file, root object header.
                f.root = f.addr(at + 12 + 3 * f.off_size, "root group address")?.ok_or_else(|| f.err("the root group has no address".into()))?;
            }
            v => return Err(f.err_plain(format!("HDF5 superblock version {v}; crema reads versions 0 to 3"))),
        }
        Ok(f)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_sizes(&self) -> Result<()> {
        for s in [self.off_size, self.len_size] {
            if ![2, 4, 8].contains(&s) {
                return Err(self.err(format!("addresses or lengths of {s} bytes")));
            }
        }
        Ok(())
    }

    /// An error for a malformed file.
    fn err(&self, msg: String) -> Error {
        self.err_plain(format!("{msg} (a corrupt or truncated HDF5 file)"))
    }

    /// An error about this file, as it is given.
    fn err_plain(&self, msg: String) -> Error {
        Error::Decode { file: self.path.display().to_string(), msg }
    }

    fn slice(&self, at: usize, len: usize, what: &str) -> Result<&[u8]> {
        at.checked_add(len)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or_else(|| self.err(format!("{what} at byte {at} runs past the end of the file ({} bytes)", self.bytes.len())))
    }

    fn u8(&self, at: usize, what: &str) -> Result<u8> {
        self.slice(at, 1, what).map(|b| b[0])
    }

    fn u16(&self, at: usize, what: &str) -> Result<u16> {
        self.uint(at, 2, what).map(|v| v as u16)
    }

    fn u32(&self, at: usize, what: &str) -> Result<u32> {
        self.uint(at, 4, what).map(|v| v as u32)
    }

    /// A little-endian unsigned integer of `n` (at most 8) bytes.
    fn uint(&self, at: usize, n: usize, what: &str) -> Result<u64> {
        let b = self.slice(at, n, what)?;
        Ok(b.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64))
    }

    /// A length field (`len_size` bytes) as usize.
    fn length(&self, at: usize, what: &str) -> Result<usize> {
        let v = self.uint(at, self.len_size, what)?;
        usize::try_from(v).map_err(|_| self.err(format!("{what} {v} is too large")))
    }

    /// An address field: `None` for HDF5's undefined address (all ones), else the absolute
    /// address.
    fn addr(&self, at: usize, what: &str) -> Result<Option<u64>> {
        let v = self.uint(at, self.off_size, what)?;
        let undefined = if self.off_size == 8 { u64::MAX } else { (1u64 << (8 * self.off_size)) - 1 };
        if v == undefined {
            return Ok(None);
        }
        self.base.checked_add(v).map(Some).ok_or_else(|| self.err(format!("{what} {v} is out of range")))
    }

    /// An absolute address as a position in the file, checked to lie inside it.
    fn pos(&self, addr: u64, what: &str) -> Result<usize> {
        usize::try_from(addr)
            .ok()
            .filter(|&p| p < self.bytes.len())
            .ok_or_else(|| self.err(format!("{what} at address {addr} lies past the end of the file ({} bytes)", self.bytes.len())))
    }

    /// Checks a 4-byte signature at `at`.
    fn expect_sig(&self, at: usize, sig: &[u8; 4], what: &str) -> Result<()> {
        if self.slice(at, 4, what)? != sig {
            return Err(self.err(format!("{what} at byte {at} lacks its `{}` signature", String::from_utf8_lossy(sig))));
        }
        Ok(())
    }

    /// The messages of the object header at `addr`, continuation blocks included.
    fn header(&self, addr: u64) -> Result<Vec<Msg>> {
        let at = self.pos(addr, "object header")?;
        let mut msgs = Vec::new();
        // Blocks of messages still to read: (position, length).
        let mut blocks: Vec<(usize, usize)> = Vec::new();
        let v2 = self.slice(at, 4, "object header")? == b"OHDR";
        let mut ordered = false;
        if v2 {
            let version = self.u8(at + 4, "object header version")?;
            if version != 2 {
                return Err(self.err(format!("object header at byte {at} has version {version}")));
            }
            let flags = self.u8(at + 5, "object header flags")?;
            ordered = flags & 0x04 != 0;
            let mut p = at + 6;
            if flags & 0x20 != 0 {
                p += 16;
            }
            if flags & 0x10 != 0 {
                p += 4;
            }
            let width = 1usize << (flags & 3);
            let size = self.uint(p, width, "object header size")? as usize;
            blocks.push((p + width, size));
        } else {
            let version = self.u8(at, "object header version")?;
            if version != 1 {
                return Err(self.err(format!("object header at byte {at} has version {version}, not 1 or 2")));
            }
            let size = self.u32(at + 8, "object header size")? as usize;
            blocks.push((at + 16, size));
        }
        // Blocks read so far: none may overlap another (so no byte is read twice).
        let mut seen: Vec<(usize, usize)> = Vec::new();
        while let Some((start, len)) = blocks.pop() {
            self.slice(start, len, "object header block")?;
            let end = start + len;
            if seen.iter().any(|&(s, e)| start < e && s < end) || seen.len() >= MAX_HEADER_BLOCKS {
                return Err(self.err(format!("object header at byte {at} has overlapping or too many continuation blocks")));
            }
            seen.push((start, end));
            let head = if v2 { 4 + if ordered { 2 } else { 0 } } else { 8 };
            let mut p = start;
            while p + head <= end {
                let (kind, size, flags) = if v2 {
                    (self.u8(p, "message type")? as u16, self.u16(p + 1, "message size")? as usize, self.u8(p + 3, "message flags")?)
                } else {
                    (self.u16(p, "message type")?, self.u16(p + 2, "message size")? as usize, self.u8(p + 4, "message flags")?)
                };
                let data = p + head;
                if data + size > end {
                    return Err(self.err(format!("a message at byte {p} runs past its header block")));
                }
                let msg = Msg { kind, flags, at: data, len: size };
                if kind == MSG_CONTINUATION {
                    let to = self.addr(data, "continuation address")?.ok_or_else(|| self.err("a continuation block has no address".into()))?;
                    let clen = self.length(data + self.off_size, "continuation length")?;
                    let cpos = self.pos(to, "continuation block")?;
                    if v2 {
                        self.expect_sig(cpos, b"OCHK", "continuation block")?;
                        // The signature before the messages, a checksum after.
                        let inner = clen.checked_sub(8).ok_or_else(|| self.err("a continuation block is too short".into()))?;
                        blocks.push((cpos + 4, inner));
                    } else {
                        blocks.push((cpos, clen));
                    }
                } else if kind != 0 {
                    msgs.push(msg);
                }
                p = data + size;
            }
        }
        Ok(msgs)
    }

    /// The members of the group whose header holds `msgs`: (name, object header address).
    fn members(&self, msgs: &[Msg]) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for m in msgs {
            match m.kind {
                MSG_SYMBOL_TABLE => {
                    let btree = self.addr(m.at, "group B-tree address")?;
                    let heap = self.addr(m.at + self.off_size, "group heap address")?;
                    if let (Some(btree), Some(heap)) = (btree, heap) {
                        self.symbol_table(btree, heap, &mut out)?;
                    }
                }
                MSG_LINK => {
                    if let Some(link) = self.link(m)? {
                        out.push(link);
                    }
                }
                MSG_LINK_INFO => {
                    let flags = self.u8(m.at + 1, "link info flags")?;
                    let heap_at = m.at + 2 + if flags & 1 != 0 { 8 } else { 0 };
                    if self.addr(heap_at, "link heap address")?.is_some() {
                        return Err(self.err_plain(
                            "a group stores its members in a fractal heap (the dense form of HDF5's newer format, for groups of \
                             over 8 members), which crema does not read; write the file with h5py's default libver"
                                .into(),
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// A link message: its name and, for a hard link, the object it leads to.
    fn link(&self, m: &Msg) -> Result<Option<(String, u64)>> {
        let version = self.u8(m.at, "link version")?;
        if version != 1 {
            return Err(self.err(format!("link message version {version}")));
        }
        let flags = self.u8(m.at + 1, "link flags")?;
        let mut p = m.at + 2;
        let mut kind = 0;
        if flags & 0x08 != 0 {
            kind = self.u8(p, "link type")?;
            p += 1;
        }
        if flags & 0x04 != 0 {
            p += 8;
        }
        if flags & 0x10 != 0 {
            p += 1;
        }
        let width = 1usize << (flags & 3);
        let len = self.uint(p, width, "link name length")? as usize;
        p += width;
        let name = String::from_utf8_lossy(self.slice(p, len, "link name")?).into_owned();
        p += len;
        if p > m.at + m.len {
            return Err(self.err("a link message runs past its end".into()));
        }
        if kind != 0 {
            return Ok(None); // soft and external links lead outside what a dataset lookup follows
        }
        let to = self.addr(p, "link address")?.ok_or_else(|| self.err(format!("link `{name}` has no address")))?;
        Ok(Some((name, to)))
    }

    /// The entries of an old-style group: a B-tree over symbol-table nodes, names in a local heap.
    fn symbol_table(&self, btree: u64, heap: u64, out: &mut Vec<(String, u64)>) -> Result<()> {
        let hp = self.pos(heap, "local heap")?;
        self.expect_sig(hp, b"HEAP", "local heap")?;
        let size = self.length(hp + 8, "local heap size")?;
        let data = self.addr(hp + 8 + 2 * self.len_size, "local heap data")?.ok_or_else(|| self.err("a local heap has no data".into()))?;
        let data = self.slice(self.pos(data, "local heap data")?, size, "local heap data")?;
        let mut nodes = Vec::new();
        self.btree(btree, 0, self.len_size, &mut HashSet::new(), None, &mut nodes)?;
        let mut seen = HashSet::new();
        // Names of one group do not overlap in its heap: more name bytes than the heap holds
        // means a crafted file.
        let mut name_bytes = 0usize;
        for (_, node) in nodes {
            if !seen.insert(node) {
                return Err(self.err(format!("a group names the symbol table node at address {node} twice")));
            }
            let np = self.pos(node, "symbol table node")?;
            self.expect_sig(np, b"SNOD", "symbol table node")?;
            let count = self.u16(np + 6, "symbol count")? as usize;
            // Name offset, object header address, cache type, reserved, scratch pad.
            let entry = self.len_size + self.off_size + 24;
            self.slice(np + 8, count * entry, "symbol table node")?;
            for k in 0..count {
                let e = np + 8 + k * entry;
                let name_at = self.length(e, "symbol name offset")?;
                let raw = data.get(name_at..).ok_or_else(|| self.err(format!("a symbol name offset {name_at} lies past its heap")))?;
                let end = raw.iter().position(|&b| b == 0).ok_or_else(|| self.err("a symbol name runs past its heap".into()))?;
                name_bytes += end + 1;
                if name_bytes > data.len() {
                    return Err(self.err("a group's names overlap in its heap".into()));
                }
                let to = self.addr(e + self.len_size, "symbol address")?.ok_or_else(|| self.err("a symbol has no address".into()))?;
                out.push((String::from_utf8_lossy(&raw[..end]).into_owned(), to));
            }
        }
        Ok(())
    }

    /// Walks the version-1 B-tree at `addr` (node type `kind`: 0 groups, 1 chunks) and appends
    /// each leaf child with the position of its key: (key position, child address).
    fn btree(&self, addr: u64, kind: u8, key_size: usize, seen: &mut HashSet<u64>, level: Option<u8>, out: &mut Vec<(usize, u64)>) -> Result<()> {
        if !seen.insert(addr) {
            return Err(self.err(format!("a B-tree visits the node at address {addr} twice")));
        }
        let p = self.pos(addr, "B-tree node")?;
        self.expect_sig(p, b"TREE", "B-tree node")?;
        if self.u8(p + 4, "B-tree node type")? != kind {
            return Err(self.err(format!("the B-tree node at byte {p} is not of type {kind}")));
        }
        let node_level = self.u8(p + 5, "B-tree level")?;
        if level.is_some_and(|l| l != node_level) || node_level as usize > MAX_DEPTH {
            return Err(self.err(format!("the B-tree node at byte {p} has level {node_level}, out of place")));
        }
        let entries = self.u16(p + 6, "B-tree entry count")? as usize;
        let first = p + 8 + 2 * self.off_size;
        let stride = key_size + self.off_size;
        self.slice(first, entries * stride + key_size, "B-tree node")?;
        for i in 0..entries {
            let key = first + i * stride;
            let child = self.addr(key + key_size, "B-tree child")?.ok_or_else(|| self.err("a B-tree child has no address".into()))?;
            if node_level == 0 {
                out.push((key, child));
            } else {
                self.btree(child, kind, key_size, seen, Some(node_level - 1), out)?;
            }
        }
        Ok(())
    }

    /// The names of the root group's members, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.members(&self.header(self.root)?)?.into_iter().map(|(n, _)| n).collect();
        names.sort();
        Ok(names)
    }

    /// The names of the members of the group at `path` (`""` for the root), sorted.
    pub fn members_of(&self, path: &str) -> Result<Vec<String>> {
        let msgs = self.object(path, "group")?;
        if msgs.iter().any(|m| m.kind == MSG_LAYOUT) {
            return Err(self.err_plain(format!("`{path}` is a dataset, not a group")));
        }
        let mut names: Vec<String> = self.members(&msgs)?.into_iter().map(|(n, _)| n).collect();
        names.sort();
        Ok(names)
    }

    /// Whether an object (group or dataset) exists at `path`.
    pub fn exists(&self, path: &str) -> Result<bool> {
        match self.object(path, "object") {
            Ok(_) => Ok(true),
            Err(Error::Decode { msg, .. }) if msg.starts_with(&format!("no object `{path}`")) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The header messages of the object at `path`; `what` names it in the error for a
    /// missing one.
    fn object(&self, path: &str, what: &str) -> Result<Vec<Msg>> {
        let mut msgs = self.header(self.root)?;
        for (depth, part) in path.split('/').filter(|p| !p.is_empty()).enumerate() {
            if depth >= MAX_DEPTH {
                return Err(self.err_plain(format!("path `{path}` is too deep")));
            }
            let members = self.members(&msgs)?;
            let Some((_, to)) = members.iter().find(|(n, _)| n == part) else {
                let mut names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
                names.sort();
                let holder = if depth == 0 { "the file" } else { "its group" };
                return Err(self.err_plain(format!("no {what} `{path}`: {holder} holds {}", list(&names))));
            };
            msgs = self.header(*to)?;
        }
        Ok(msgs)
    }

    /// The stored bytes of a dataset kept whole (compact or contiguous), for the scalars and
    /// strings of snapshots.
    fn whole_bytes(&self, ds: &Dataset) -> Result<&[u8]> {
        let count = ds.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
        let bytes = count.checked_mul(ds.dtype.size()).ok_or_else(|| self.err(format!("dataset `{}` is too large", ds.name)))?;
        match &ds.layout {
            Layout::Compact(at, len) if *len == bytes => self.slice(*at, bytes, "compact data"),
            Layout::Contiguous(Some(addr)) => {
                let p = if bytes == 0 { 0 } else { self.pos(*addr, "dataset values")? };
                self.slice(p, bytes, &format!("dataset `{}`'s values", ds.name))
            }
            _ => Err(self.err_plain(format!("dataset `{}` is chunked or unwritten; crema reads such datasets as floats only", ds.name))),
        }
    }

    /// A string dataset's text (up to its first NUL).
    pub fn read_text(&self, ds: &Dataset) -> Result<String> {
        if ds.dtype.is_numeric() || ds.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(1) {
            return Err(self.err_plain(format!("dataset `{}` is not a single string", ds.name)));
        }
        let b = self.whole_bytes(ds)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Ok(String::from_utf8_lossy(&b[..end]).into_owned())
    }

    /// An integer dataset's values.
    pub fn read_ints(&self, ds: &Dataset) -> Result<Vec<i64>> {
        let Dtype::Int { size, signed, big_endian } = ds.dtype else {
            return Err(self.err_plain(format!("dataset `{}` holds {}, not integers", ds.name, ds.dtype.describe())));
        };
        Ok(self
            .whole_bytes(ds)?
            .chunks_exact(size)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..size].copy_from_slice(c);
                if big_endian {
                    b[..size].reverse();
                }
                let v = u64::from_le_bytes(b);
                let shift = 64 - 8 * size as u32;
                if signed { ((v << shift) as i64) >> shift } else { v as i64 }
            })
            .collect())
    }

    /// The dataset at `name` (a member of the root group, or a path like `group/data`).
    pub fn dataset(&self, name: &str) -> Result<Dataset> {
        let msgs = self.object(name, "dataset")?;
        self.describe(name, &msgs)
    }

    /// A dataset from its header messages.
    fn describe(&self, name: &str, msgs: &[Msg]) -> Result<Dataset> {
        let find = |kind: u16| msgs.iter().find(|m| m.kind == kind);
        let Some(layout) = find(MSG_LAYOUT) else {
            return Err(self.err_plain(format!("`{name}` is a group, not a dataset")));
        };
        for m in msgs {
            if m.flags & FLAG_SHARED != 0 && matches!(m.kind, MSG_DATASPACE | MSG_DATATYPE | MSG_FILL | MSG_LAYOUT | MSG_FILTERS) {
                return Err(self.err_plain(format!("dataset `{name}` uses a shared (committed) type or space, which crema does not read")));
            }
        }
        let space = find(MSG_DATASPACE).ok_or_else(|| self.err(format!("dataset `{name}` has no dataspace")))?;
        let dtype = find(MSG_DATATYPE).ok_or_else(|| self.err(format!("dataset `{name}` has no datatype")))?;
        let (shape, max_shape) = self.dataspace(space, name)?;
        let dtype = self.datatype(dtype, name)?;
        let filters = match find(MSG_FILTERS) {
            Some(m) => self.filters(m)?,
            None => Vec::new(),
        };
        let fill = self.fill(find(MSG_FILL), find(MSG_FILL_OLD), dtype.size())?;
        let layout = self.layout(layout, shape.len(), name)?;
        Ok(Dataset { name: name.to_string(), shape, dtype, max_shape, layout, filters, fill })
    }

    /// The dimensions and maximum dimensions of a dataspace.
    fn dataspace(&self, m: &Msg, name: &str) -> Result<(Vec<usize>, Vec<usize>)> {
        let version = self.u8(m.at, "dataspace version")?;
        let rank = self.u8(m.at + 1, "dataspace rank")? as usize;
        let dims_at = match version {
            1 => m.at + 8,
            2 => {
                let kind = self.u8(m.at + 3, "dataspace type")?;
                if kind == 2 {
                    return Err(self.err_plain(format!("dataset `{name}` is empty (a null dataspace)")));
                }
                m.at + 4
            }
            v => return Err(self.err(format!("dataspace version {v}"))),
        };
        let dims = (0..rank).map(|d| self.length(dims_at + d * self.len_size, "dimension")).collect::<Result<Vec<_>>>()?;
        let max = if self.u8(m.at + 2, "dataspace flags")? & 1 != 0 {
            let at = dims_at + rank * self.len_size;
            (0..rank)
                .map(|d| self.uint(at + d * self.len_size, self.len_size, "maximum dimension").map(|v| usize::try_from(v).unwrap_or(usize::MAX)))
                .collect::<Result<Vec<_>>>()?
        } else {
            dims.clone()
        };
        Ok((dims, max))
    }

    fn datatype(&self, m: &Msg, name: &str) -> Result<Dtype> {
        let b0 = self.u8(m.at, "datatype class")?;
        let bits = self.u8(m.at + 1, "datatype flags")?;
        let size = self.u32(m.at + 4, "datatype size")? as usize;
        let class = b0 & 0x0f;
        let big_endian = bits & 1 != 0;
        let unsupported = |what: &str| self.err_plain(format!("dataset `{name}` holds {what}; HDF5Data reads integers and IEEE floats"));
        match class {
            0 => {
                let offset = self.u16(m.at + 8, "bit offset")?;
                let precision = self.u16(m.at + 10, "precision")? as usize;
                if ![1, 2, 4, 8].contains(&size) || offset != 0 || precision != 8 * size {
                    return Err(unsupported(&format!("{precision}-bit integers in {size} bytes")));
                }
                Ok(Dtype::Int { size, signed: bits & 0x08 != 0, big_endian })
            }
            1 => {
                if bits & 0x40 != 0 {
                    return Err(unsupported("VAX-order floats"));
                }
                let (exp_size, mant_size) = (self.u8(m.at + 13, "exponent size")?, self.u8(m.at + 15, "mantissa size")?);
                let ieee = matches!((size, exp_size, mant_size), (2, 5, 10) | (4, 8, 23) | (8, 11, 52));
                if !ieee {
                    return Err(unsupported(&format!("{size}-byte floats with a {exp_size}-bit exponent and {mant_size}-bit mantissa")));
                }
                Ok(Dtype::Float { size, big_endian })
            }
            3 => Ok(Dtype::Str { size }),
            _ => {
                let what = match class {
                    2 => "times",
                    4 => "bit fields",
                    5 => "opaque values",
                    6 => "compound records",
                    7 => "references",
                    8 => "enumerations (h5py writes booleans so; store them as uint8)",
                    9 => "variable-length values",
                    10 => "arrays",
                    _ => "values of an unknown class",
                };
                Err(unsupported(what))
            }
        }
    }

    fn filters(&self, m: &Msg) -> Result<Vec<Filter>> {
        let version = self.u8(m.at, "filter pipeline version")?;
        let count = self.u8(m.at + 1, "filter count")? as usize;
        let mut p = m.at + if version == 1 { 8 } else { 2 };
        let mut out = Vec::new();
        for _ in 0..count {
            let id = self.u16(p, "filter id")?;
            p += 2;
            let name_len = if version == 1 || id >= 256 {
                p += 2;
                self.u16(p - 2, "filter name length")? as usize
            } else {
                0
            };
            let nvalues = self.u16(p + 2, "filter value count")? as usize;
            p += 4;
            let name = String::from_utf8_lossy(self.slice(p, name_len, "filter name")?).trim_end_matches('\0').to_string();
            p += if version == 1 { name_len.div_ceil(8) * 8 } else { name_len };
            let values = (0..nvalues).map(|i| self.u32(p + 4 * i, "filter value")).collect::<Result<Vec<_>>>()?;
            p += 4 * nvalues;
            if version == 1 && nvalues % 2 == 1 {
                p += 4;
            }
            if p > m.at + m.len {
                return Err(self.err("a filter pipeline message runs past its end".into()));
            }
            out.push(Filter { id, name, values });
        }
        Ok(out)
    }

    /// The fill value's bytes, when the file defines one.
    fn fill(&self, new: Option<&Msg>, old: Option<&Msg>, size: usize) -> Result<Option<Vec<u8>>> {
        let value_at = |at: usize| -> Result<Option<Vec<u8>>> {
            let n = self.u32(at, "fill value size")? as usize;
            if n == 0 {
                return Ok(None);
            }
            if n != size {
                return Err(self.err(format!("a fill value of {n} bytes for {size}-byte elements")));
            }
            Ok(Some(self.slice(at + 4, n, "fill value")?.to_vec()))
        };
        if let Some(m) = new {
            let version = self.u8(m.at, "fill value version")?;
            let defined = match version {
                1 => true,
                2 => self.u8(m.at + 3, "fill value defined")? != 0,
                3 => self.u8(m.at + 1, "fill value flags")? & 0x20 != 0,
                v => return Err(self.err(format!("fill value message version {v}"))),
            };
            let at = if version == 3 { m.at + 2 } else { m.at + 4 };
            return if defined { value_at(at) } else { Ok(None) };
        }
        match old {
            Some(m) => value_at(m.at),
            None => Ok(None),
        }
    }

    fn layout(&self, m: &Msg, rank: usize, name: &str) -> Result<Layout> {
        let version = self.u8(m.at, "layout version")?;
        if !(3..=5).contains(&version) {
            return Err(self.err_plain(format!(
                "dataset `{name}` has a version {version} storage layout (HDF5 before 1.6.3), which crema does not read"
            )));
        }
        let class = self.u8(m.at + 1, "layout class")?;
        let p = m.at + 2;
        match class {
            0 => {
                let size = self.u16(p, "compact size")? as usize;
                self.slice(p + 2, size, "compact data")?;
                Ok(Layout::Compact(p + 2, size))
            }
            1 => Ok(Layout::Contiguous(self.addr(p, "data address")?)),
            2 if version == 3 => {
                let dimensionality = self.u8(p, "chunk rank")? as usize;
                let addr = self.addr(p + 1, "chunk B-tree address")?;
                let dims_at = p + 1 + self.off_size;
                let dims = self.chunk_dims(dims_at, 4, dimensionality, rank, name)?;
                Ok(Layout::Chunked { dims, index: addr.map_or(ChunkIndex::Unallocated, ChunkIndex::BTree), edges_unfiltered: false })
            }
            2 => {
                let flags = self.u8(p, "chunk flags")?;
                let dimensionality = self.u8(p + 1, "chunk rank")? as usize;
                let width = self.u8(p + 2, "chunk dimension width")? as usize;
                if !(1..=8).contains(&width) {
                    return Err(self.err(format!("chunk dimensions of {width} bytes")));
                }
                let dims = self.chunk_dims(p + 3, width, dimensionality, rank, name)?;
                let mut q = p + 3 + width * dimensionality;
                let index_type = self.u8(q, "chunk index type")?;
                q += 1;
                let index = match index_type {
                    1 => {
                        let (mut size, mut mask) = (None, 0);
                        if flags & 0x02 != 0 {
                            size = Some(self.uint(q, self.len_size, "chunk size")?);
                            mask = self.u32(q + self.len_size, "filter mask")?;
                            q += self.len_size + 4;
                        }
                        self.addr(q, "chunk address")?.map(|addr| ChunkIndex::Single { addr, size, mask })
                    }
                    2 => self.addr(q, "chunk address")?.map(ChunkIndex::Implicit),
                    3 => self.addr(q + 1, "chunk index address")?.map(ChunkIndex::FixedArray),
                    4 | 5 => {
                        let what = if index_type == 4 { "an extensible array" } else { "a version-2 B-tree" };
                        return Err(self.err_plain(format!(
                            "dataset `{name}` indexes its chunks with {what} (a dataset with an unlimited dimension, written \
                             with libver='latest'), which crema does not read; write it without maxshape or with h5py's default libver"
                        )));
                    }
                    t => return Err(self.err(format!("chunk index type {t}"))),
                };
                Ok(Layout::Chunked { dims, index: index.unwrap_or(ChunkIndex::Unallocated), edges_unfiltered: flags & 0x01 != 0 })
            }
            3 => Err(self.err_plain(format!("dataset `{name}` is a virtual dataset, which crema does not read"))),
            c => Err(self.err(format!("storage layout class {c}"))),
        }
    }

    /// Chunk dimensions: `count` fields of `width` bytes, the last the element size.
    fn chunk_dims(&self, at: usize, width: usize, count: usize, rank: usize, name: &str) -> Result<Vec<usize>> {
        if count != rank + 1 {
            return Err(self.err(format!("dataset `{name}` has rank {rank} but chunks of rank {}", count.saturating_sub(1))));
        }
        let dims = (0..rank)
            .map(|d| self.uint(at + d * width, width, "chunk dimension").map(|v| v as usize))
            .collect::<Result<Vec<_>>>()?;
        if dims.contains(&0) {
            return Err(self.err(format!("dataset `{name}` has a chunk dimension of 0")));
        }
        Ok(dims)
    }

    /// Reads every value of `ds` as f32 (C order), converting as HDF5 converts to a float.
    pub fn read_f32(&self, ds: &Dataset) -> Result<Vec<f32>> {
        let name = &ds.name;
        if !ds.dtype.is_numeric() {
            return Err(self.err_plain(format!("dataset `{name}` holds {}; HDF5Data reads integers and IEEE floats", ds.dtype.describe())));
        }
        let count = ds.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS);
        let count = count.ok_or_else(|| {
            self.err_plain(format!("dataset `{name}` of shape {:?} has more than 2^31 - 1 values, Caffe's limit for a blob", ds.shape))
        })?;
        let es = ds.dtype.size();
        let bytes = count * es;
        if bytes as u64 > MAX_EXPANSION.saturating_mul(self.bytes.len() as u64) + (1 << 20) {
            return Err(self.err(format!("dataset `{name}` claims {bytes} bytes, more than a file of {} bytes can hold", self.bytes.len())));
        }
        let fill = match &ds.fill {
            Some(v) => {
                let mut f = [0.0f32];
                convert(ds.dtype, v, &mut f);
                f[0]
            }
            None => 0.0,
        };
        let mut out = Vec::new();
        out.try_reserve_exact(count).map_err(|_| Error::OutOfMemory { bytes: count * 4, device: "host".into() })?;
        out.resize(count, fill);
        match &ds.layout {
            Layout::Compact(at, len) => {
                if *len != bytes {
                    return Err(self.err(format!("dataset `{name}` holds {len} bytes of compact data for {bytes} bytes of values")));
                }
                convert(ds.dtype, self.slice(*at, bytes, "compact data")?, &mut out);
            }
            Layout::Contiguous(Some(addr)) => {
                let p = if bytes == 0 { 0 } else { self.pos(*addr, "dataset values")? };
                convert(ds.dtype, self.slice(p, bytes, &format!("dataset `{name}`'s values"))?, &mut out);
            }
            Layout::Contiguous(None) => {}
            Layout::Chunked { dims, index, edges_unfiltered } => self.read_chunks(ds, dims, index, *edges_unfiltered, &mut out)?,
        }
        Ok(out)
    }

    /// The chunks an index names, each once, at offsets on the chunk grid. The newer indexes
    /// number chunks over the grid of the maximum dimensions.
    fn chunks(&self, ds: &Dataset, dims: &[usize], index: &ChunkIndex, chunk_bytes: usize) -> Result<Vec<Chunk>> {
        let rank = dims.len();
        let grid: Vec<usize> = ds.max_shape.iter().zip(&ds.shape).zip(dims).map(|((&m, &s), &c)| m.max(s).div_ceil(c)).collect();
        let grid_count = grid.iter().try_fold(1usize, |a, &g| a.checked_mul(g));
        let offsets = |mut i: usize| -> Vec<u64> {
            let mut o = vec![0u64; rank];
            for d in (0..rank).rev() {
                o[d] = ((i % grid[d]) * dims[d]) as u64;
                i /= grid[d];
            }
            o
        };
        // A count of listed chunks that the file's bytes bound.
        let listed = |per_chunk: usize, what: &str| -> Result<usize> {
            grid_count
                .filter(|&n| n.checked_mul(per_chunk).is_some_and(|b| b <= self.bytes.len()))
                .ok_or_else(|| self.err(format!("dataset `{}` has more chunks in its {what} than the file holds", ds.name)))
        };
        let mut out = Vec::new();
        match *index {
            ChunkIndex::Unallocated => {}
            ChunkIndex::BTree(addr) => {
                let key_size = 8 + 8 * (rank + 1);
                let mut leaves = Vec::new();
                self.btree(addr, 1, key_size, &mut HashSet::new(), None, &mut leaves)?;
                for (key, child) in leaves {
                    let size = self.u32(key, "chunk size")? as u64;
                    let mask = self.u32(key + 4, "filter mask")?;
                    let offsets = (0..rank).map(|d| self.uint(key + 8 + 8 * d, 8, "chunk offset")).collect::<Result<Vec<_>>>()?;
                    out.push(Chunk { offsets, addr: child, size, mask });
                }
            }
            ChunkIndex::Single { addr, size, mask } => {
                out.push(Chunk { offsets: vec![0; rank], addr, size: size.unwrap_or(chunk_bytes as u64), mask });
            }
            ChunkIndex::Implicit(addr) => {
                let n = listed(chunk_bytes, "implicit index")?;
                for i in 0..n {
                    let at = addr.checked_add((i * chunk_bytes) as u64).ok_or_else(|| self.err("a chunk address overflows".into()))?;
                    out.push(Chunk { offsets: offsets(i), addr: at, size: chunk_bytes as u64, mask: 0 });
                }
            }
            ChunkIndex::FixedArray(addr) => {
                let h = self.pos(addr, "fixed array header")?;
                self.expect_sig(h, b"FAHD", "fixed array header")?;
                let client = self.u8(h + 5, "fixed array client")?;
                let entry = self.u8(h + 6, "fixed array entry size")? as usize;
                let page_bits = self.u8(h + 7, "fixed array page bits")?;
                let entries = self.length(h + 8, "fixed array entry count")?;
                let filtered = client == 1;
                let size_width = if filtered { entry.checked_sub(self.off_size + 4).filter(|&w| (1..=8).contains(&w)) } else { Some(0) };
                let size_width = size_width.filter(|w| filtered || entry == self.off_size + w);
                let size_width = size_width.ok_or_else(|| self.err(format!("fixed array entries of {entry} bytes")))?;
                let n = listed(entry, "fixed array")?;
                if entries < n {
                    return Err(self.err(format!("a fixed array of {entries} entries for {n} chunks")));
                }
                if page_bits < 32 && entries > 1usize << page_bits {
                    return Err(self.err_plain(format!(
                        "dataset `{}` indexes its {entries} chunks with a paged fixed array (over {} chunks, written with \
                         libver='latest'), which crema does not read; use larger chunks or h5py's default libver",
                        ds.name,
                        1usize << page_bits
                    )));
                }
                let Some(block) = self.addr(h + 8 + self.len_size, "fixed array data block")? else {
                    return Ok(out);
                };
                let b = self.pos(block, "fixed array data block")?;
                self.expect_sig(b, b"FADB", "fixed array data block")?;
                let first = b + 6 + self.off_size;
                self.slice(first, n * entry, "fixed array entries")?;
                for i in 0..n {
                    let e = first + i * entry;
                    let Some(at) = self.addr(e, "chunk address")? else { continue };
                    let (size, mask) = if filtered {
                        (self.uint(e + self.off_size, size_width, "chunk size")?, self.u32(e + self.off_size + size_width, "filter mask")?)
                    } else {
                        (chunk_bytes as u64, 0)
                    };
                    out.push(Chunk { offsets: offsets(i), addr: at, size, mask });
                }
            }
        }
        // Each chunk once, at a multiple of the chunk dimensions (HDF5 writes no other).
        let mut seen = HashSet::with_capacity(out.len());
        for c in &out {
            if c.offsets.iter().zip(dims).any(|(&o, &d)| o % d as u64 != 0) || !seen.insert(c.offsets.clone()) {
                return Err(self.err(format!("dataset `{}` lists a chunk at {:?} twice or off its grid", ds.name, c.offsets)));
            }
        }
        Ok(out)
    }

    fn read_chunks(&self, ds: &Dataset, dims: &[usize], index: &ChunkIndex, edges_unfiltered: bool, out: &mut [f32]) -> Result<()> {
        let name = &ds.name;
        let es = ds.dtype.size();
        let rank = dims.len();
        let chunk_count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS);
        let chunk_bytes = chunk_count.ok_or_else(|| self.err(format!("dataset `{name}` has chunks of over 2^31 values")))? * es;
        for chunk in self.chunks(ds, dims, index, chunk_bytes)? {
            // A chunk wholly past the current shape (the dataset shrank) holds nothing to read.
            if chunk.offsets.iter().zip(&ds.shape).any(|(&o, &s)| o >= s as u64) {
                continue;
            }
            let p = self.pos(chunk.addr, "chunk")?;
            let size = usize::try_from(chunk.size).map_err(|_| self.err("a chunk size overflows".into()))?;
            let raw = self.slice(p, size, &format!("a chunk of `{name}`"))?;
            let o: Vec<usize> = chunk.offsets.iter().map(|&v| v as usize).collect();
            let edge = (0..rank).any(|d| o[d] + dims[d] > ds.shape[d]);
            let filters: &[Filter] = if edge && edges_unfiltered { &[] } else { &ds.filters };
            let data = self.unfilter(raw, filters, chunk.mask, chunk_bytes, es).map_err(|msg| {
                self.err(format!("the chunk of dataset `{name}` at {:?} (byte {p}): {msg}", chunk.offsets))
            })?;
            if data.len() != chunk_bytes {
                return Err(self.err(format!("a chunk of dataset `{name}` holds {} bytes, not {chunk_bytes}", data.len())));
            }
            // Copy the part of the chunk inside the dataset, a run along the last dimension at a time.
            let extent: Vec<usize> = (0..rank).map(|d| dims[d].min(ds.shape[d] - o[d])).collect();
            let run = extent.last().copied().unwrap_or(1);
            let rows: usize = extent[..rank.saturating_sub(1)].iter().product();
            let mut idx = vec![0usize; rank.saturating_sub(1)];
            for _ in 0..rows {
                let (mut src, mut dst) = (0usize, 0usize);
                for d in 0..rank {
                    let i = if d + 1 < rank { idx[d] } else { 0 };
                    src = src * dims[d] + i;
                    dst = dst * ds.shape[d] + o[d] + i;
                }
                convert(ds.dtype, &data[src * es..(src + run) * es], &mut out[dst..dst + run]);
                for d in (0..idx.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < extent[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
        Ok(())
    }

    /// Undoes a chunk's filters, last first, skipping those its mask says were not applied.
    fn unfilter(&self, raw: &[u8], pipeline: &[Filter], mask: u32, chunk_bytes: usize, es: usize) -> std::result::Result<Vec<u8>, String> {
        // Room for checksums a filter after a compressor may have appended.
        let limit = chunk_bytes + 64;
        let mut data = raw.to_vec();
        for (i, f) in pipeline.iter().enumerate().rev() {
            if i < 32 && mask & (1 << i) != 0 {
                continue;
            }
            data = match f.id {
                filters::DEFLATE => filters::inflate(&data, limit)?,
                filters::LZF => filters::lzf(&data, limit)?,
                filters::SHUFFLE => filters::unshuffle(&data, f.values.first().map_or(es, |&v| v as usize)),
                filters::FLETCHER32 => filters::strip_fletcher32(data)?,
                id => {
                    return Err(format!(
                        "it was written through the {} filter, which crema does not undo (it reads deflate/gzip, shuffle, \
                         fletcher32 and lzf)",
                        filters::filter_name(id, &f.name)
                    ))
                }
            };
        }
        Ok(data)
    }
}

/// `a, b and c`, or `no datasets`.
fn list(names: &[&str]) -> String {
    match names {
        [] => "nothing".into(),
        [one] => format!("only `{one}`"),
        _ => names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
    }
}

/// Converts stored elements to f32: C's conversion, as HDF5 does (floats round to nearest).
fn convert(dtype: Dtype, src: &[u8], dst: &mut [f32]) {
    macro_rules! each {
        ($n:literal, $big:expr, $f:expr) => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact($n)) {
                let mut b: [u8; $n] = s.try_into().expect("chunk size");
                if $big {
                    b.reverse();
                }
                *d = $f(b);
            }
        };
    }
    match dtype {
        Dtype::Float { size: 4, big_endian } => each!(4, big_endian, f32::from_le_bytes),
        Dtype::Float { size: 8, big_endian } => each!(8, big_endian, |b| f64::from_le_bytes(b) as f32),
        Dtype::Float { size: _, big_endian } => each!(2, big_endian, |b| half(u16::from_le_bytes(b))),
        Dtype::Int { size: 1, signed, .. } => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = if signed { s as i8 as f32 } else { s as f32 };
            }
        }
        Dtype::Int { size: 2, signed, big_endian } => {
            each!(2, big_endian, |b| if signed { i16::from_le_bytes(b) as f32 } else { u16::from_le_bytes(b) as f32 })
        }
        Dtype::Int { size: 4, signed, big_endian } => {
            each!(4, big_endian, |b| if signed { i32::from_le_bytes(b) as f32 } else { u32::from_le_bytes(b) as f32 })
        }
        Dtype::Int { size: _, signed, big_endian } => {
            each!(8, big_endian, |b| if signed { i64::from_le_bytes(b) as f32 } else { u64::from_le_bytes(b) as f32 })
        }
        Dtype::Str { .. } => {}
    }
}

/// An IEEE half-precision value as f32.
fn half(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as f32;
    match exp {
        0 => sign * mant * 2f32.powi(-24),
        31 if mant == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + mant / 1024.0) * 2f32.powi(e - 15),
    }
}

#[cfg(test)]
mod tests;
