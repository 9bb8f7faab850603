//! Writing HDF5 files in the original format (superblock 0, version-1 object headers, groups
//! as symbol tables), which every HDF5 library since 1.0 reads: what Caffe's HDF5 snapshots
//! (`snapshot_format: HDF5`) hold, groups of float32 and int32 datasets and strings, stored
//! contiguously, and what HDF5Output writes, float32 datasets whose rows wait in a file.
//!
//! The file is laid out children first, so every address is known when its parent is written:
//! it is written front to back in one pass (the superblock last, into the room kept for it),
//! streamed through [`atomic_write`](crate::io::atomic_write) without being assembled in memory.

use crate::{Error, Result};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

const UNDEFINED: u64 = u64::MAX;
/// Children of a group's B-tree node (2 x the group internal-node K of 16).
const BTREE_CHILDREN: usize = 32;
/// Bytes of a symbol table entry: name offset, header address, cache type, reserved, scratch.
const ENTRY: usize = 40;
/// HDF5's marker for an empty free list in a local heap.
const FREE_NULL: u64 = 1;
/// Bytes of the superblock with the root group's symbol table entry.
const SUPERBLOCK: usize = 96;

/// A group to write: members in name order, as HDF5 keeps them. Float datasets may borrow
/// their values (`'a`): writing streams them, so nothing is copied.
#[derive(Clone, Debug, Default)]
pub struct Group<'a> {
    members: BTreeMap<String, Member<'a>>,
}

#[derive(Clone, Debug)]
enum Member<'a> {
    Group(Group<'a>),
    Floats(Vec<usize>, Cow<'a, [f32]>),
    /// A float32 dataset whose values are the first bytes of a file (little-endian).
    FloatsIn(Vec<usize>, Arc<File>),
    Ints(Vec<usize>, Vec<i32>),
    Text(String),
}

impl<'a> Group<'a> {
    /// An empty group.
    pub fn new() -> Self {
        Group::default()
    }

    /// The member group `name`, created when absent (a path `a/b` nests groups).
    pub fn group(&mut self, name: &str) -> &mut Group<'a> {
        let mut g = self;
        for part in name.split('/').filter(|p| !p.is_empty()) {
            let m = g.members.entry(part.to_string()).or_insert_with(|| Member::Group(Group::new()));
            if !matches!(m, Member::Group(_)) {
                *m = Member::Group(Group::new());
            }
            let Member::Group(inner) = m else { unreachable!("made a group above") };
            g = inner;
        }
        g
    }

    /// A float32 dataset of `shape` (C order): values owned (a `Vec`) or borrowed (a slice).
    pub fn floats(&mut self, name: &str, shape: &[usize], data: impl Into<Cow<'a, [f32]>>) {
        self.members.insert(name.to_string(), Member::Floats(shape.to_vec(), data.into()));
    }

    /// A float32 dataset of `shape` whose values are the first `4 x shape's product` bytes of
    /// `file` (little-endian f32), copied from it when the group is written: values kept on
    /// disk rather than in memory. The file's position is moved; a file shorter than the
    /// dataset fails the write.
    pub fn floats_in_file(&mut self, name: &str, shape: &[usize], file: Arc<File>) {
        self.members.insert(name.to_string(), Member::FloatsIn(shape.to_vec(), file));
    }

    /// An int32 dataset of `shape`.
    pub fn ints(&mut self, name: &str, shape: &[usize], data: Vec<i32>) {
        self.members.insert(name.to_string(), Member::Ints(shape.to_vec(), data));
    }

    /// A scalar dataset holding `text` as a null-terminated fixed-length string, as the HDF5
    /// Lite API's `H5LTmake_dataset_string` stores one.
    pub fn text(&mut self, name: &str, text: &str) {
        self.members.insert(name.to_string(), Member::Text(text.to_string()));
    }

    /// The most members of any group in this tree.
    fn widest(&self) -> usize {
        let inner = self.members.values().filter_map(|m| if let Member::Group(g) = m { Some(g.widest()) } else { None });
        inner.fold(self.members.len(), usize::max)
    }

    /// Refuses what the format cannot name: an empty name, one with a NUL, or over 65,535
    /// bytes.
    fn check_names(&self) -> std::result::Result<(), String> {
        for (name, m) in &self.members {
            if name.is_empty() || name.contains('\0') || name.len() > 65535 {
                return Err(format!("cannot name an HDF5 object `{name}`"));
            }
            if let Member::Group(g) = m {
                g.check_names()?;
            }
        }
        Ok(())
    }
}

/// Writes `root` as the HDF5 file at `path` (atomically: a temporary file renamed over it).
pub fn write_hdf5(path: &Path, root: &Group) -> Result<()> {
    let leaf_k = layout(root).map_err(|msg| Error::Encode { file: path.display().to_string(), msg })?;
    crate::io::atomic_write(path, |w| emit(root, leaf_k, w))
}

/// The file's bytes.
#[cfg(test)]
pub(super) fn encode(root: &Group) -> std::result::Result<Vec<u8>, String> {
    let leaf_k = layout(root)?;
    let mut out = io::Cursor::new(Vec::new());
    emit(root, leaf_k, &mut out).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// Checks that `root` can be written, and gives the symbol-table leaf K its widest group needs.
fn layout(root: &Group) -> std::result::Result<usize, String> {
    root.check_names()?;
    // Symbol-table nodes hold 2 x leaf K entries; one B-tree node names up to 32 of them.
    let leaf_k = root.widest().div_ceil(2 * BTREE_CHILDREN).max(4);
    // A node's entry count is 16 bits: 2K entries at most 65,535.
    if 2 * leaf_k > u16::MAX as usize {
        return Err(format!("a group of {} members is more than crema writes", root.widest()));
    }
    Ok(leaf_k)
}

/// Writes the file to `out`, from its start: room for the superblock, the tree, then the
/// superblock.
fn emit<W: Write + Seek>(root: &Group, leaf_k: usize, out: &mut W) -> io::Result<()> {
    let mut w = Writer { out, at: 0, leaf_k };
    w.put(&[0; SUPERBLOCK])?;
    let root_group = w.group(root)?;
    let eof = w.at;
    let mut sb = [0u8; SUPERBLOCK];
    sb[..8].copy_from_slice(b"\x89HDF\r\n\x1a\n");
    // Versions 0 (superblock, free space, root group, shared headers), 8-byte offsets and lengths.
    sb[8..16].copy_from_slice(&[0, 0, 0, 0, 0, 8, 8, 0]);
    sb[16..18].copy_from_slice(&(leaf_k as u16).to_le_bytes());
    sb[18..20].copy_from_slice(&((BTREE_CHILDREN / 2) as u16).to_le_bytes());
    // Flags (4 bytes of 0), then base, free-space, end-of-file and driver addresses.
    sb[24..32].copy_from_slice(&0u64.to_le_bytes());
    sb[32..40].copy_from_slice(&UNDEFINED.to_le_bytes());
    sb[40..48].copy_from_slice(&eof.to_le_bytes());
    sb[48..56].copy_from_slice(&UNDEFINED.to_le_bytes());
    // The root group's symbol table entry, its B-tree and heap cached in the scratch pad.
    sb[56..64].copy_from_slice(&0u64.to_le_bytes());
    sb[64..72].copy_from_slice(&root_group.header.to_le_bytes());
    sb[72..76].copy_from_slice(&1u32.to_le_bytes());
    sb[80..88].copy_from_slice(&root_group.btree.to_le_bytes());
    sb[88..96].copy_from_slice(&root_group.heap.to_le_bytes());
    w.out.seek(SeekFrom::Start(0))?;
    w.out.write_all(&sb)?;
    w.out.seek(SeekFrom::Start(eof))?;
    Ok(())
}

struct Writer<'a, W> {
    out: &'a mut W,
    /// Bytes written so far: the address of the next.
    at: u64,
    leaf_k: usize,
}

/// Where a written group's parts are.
struct Written {
    header: u64,
    btree: u64,
    heap: u64,
}

/// Pads `v` with zeros to a multiple of 8 bytes.
fn pad8(v: &mut Vec<u8>) {
    v.resize(v.len().div_ceil(8) * 8, 0);
}

fn u64s(v: &mut Vec<u8>, values: &[u64]) {
    for x in values {
        v.extend_from_slice(&x.to_le_bytes());
    }
}

/// A dataset's values, as they are written.
enum Values<'v> {
    Bytes(Vec<u8>),
    F32(&'v [f32]),
    I32(&'v [i32]),
    /// The first `.1` bytes of a file.
    File(&'v File, u64),
}

impl Values<'_> {
    fn len(&self) -> u64 {
        match self {
            Values::Bytes(b) => b.len() as u64,
            Values::F32(v) => 4 * v.len() as u64,
            Values::I32(v) => 4 * v.len() as u64,
            Values::File(_, n) => *n,
        }
    }
}

impl<W: Write + Seek> Writer<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.at += bytes.len() as u64;
        Ok(())
    }

    /// Zeros up to the next multiple of 8 bytes.
    fn pad8(&mut self) -> io::Result<()> {
        let n = self.at.next_multiple_of(8) - self.at;
        self.put(&[0; 8][..n as usize])
    }

    /// Numbers as little-endian bytes.
    fn put_le<T: Copy, const N: usize>(&mut self, values: &[T], bytes: fn(T) -> [u8; N]) -> io::Result<()> {
        crate::io::wire::write_le(self.out, values, bytes)?;
        self.at += (N * values.len()) as u64;
        Ok(())
    }

    fn values(&mut self, values: &Values<'_>) -> io::Result<()> {
        match values {
            Values::Bytes(b) => self.put(b),
            Values::F32(v) => self.put_le(v, f32::to_le_bytes),
            Values::I32(v) => self.put_le(v, i32::to_le_bytes),
            Values::File(file, n) => {
                let mut file: &File = file;
                file.seek(SeekFrom::Start(0))?;
                let copied = io::copy(&mut file.take(*n), self.out)?;
                self.at += copied;
                if copied != *n {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("a dataset's {n} bytes were to come from a file that holds {copied}"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Writes a version-1 object header of `messages` (type, flags, data) and returns its
    /// address.
    fn header(&mut self, messages: &[(u16, u8, Vec<u8>)]) -> io::Result<u64> {
        self.pad8()?;
        let addr = self.at;
        let mut body = Vec::new();
        for (kind, flags, data) in messages {
            let mut data = data.clone();
            pad8(&mut data);
            body.extend_from_slice(&kind.to_le_bytes());
            body.extend_from_slice(&(data.len() as u16).to_le_bytes());
            body.extend_from_slice(&[*flags, 0, 0, 0]);
            body.extend_from_slice(&data);
        }
        let mut head = vec![1, 0];
        head.extend_from_slice(&(messages.len() as u16).to_le_bytes());
        head.extend_from_slice(&1u32.to_le_bytes());
        head.extend_from_slice(&(body.len() as u32).to_le_bytes());
        head.extend_from_slice(&[0; 4]);
        head.extend_from_slice(&body);
        self.put(&head)?;
        Ok(addr)
    }

    /// Writes `g`'s members, then its heap, symbol-table nodes, B-tree and object header.
    fn group(&mut self, g: &Group) -> io::Result<Written> {
        let mut entries = Vec::with_capacity(g.members.len());
        for (name, m) in &g.members {
            let addr = match m {
                Member::Group(inner) => self.group(inner)?.header,
                Member::Floats(shape, data) => self.dataset(shape, &float32(), Values::F32(data.as_ref()))?,
                Member::FloatsIn(shape, file) => {
                    let n = shape.iter().try_fold(4u64, |n, &d| n.checked_mul(d as u64));
                    let n = n.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("dataset `{name}`: shape {shape:?} is too large")))?;
                    self.dataset(shape, &float32(), Values::File(file, n))?
                }
                Member::Ints(shape, data) => self.dataset(shape, &int32(), Values::I32(data))?,
                Member::Text(text) => {
                    let mut bytes = text.as_bytes().to_vec();
                    bytes.push(0);
                    self.dataset(&[], &string(bytes.len()), Values::Bytes(bytes))?
                }
            };
            entries.push((name.as_bytes(), addr));
        }
        // The local heap: the empty name at offset 0, then each name, 8-byte aligned.
        let mut names = vec![0u8; 8];
        let mut offsets = Vec::with_capacity(entries.len());
        for (name, _) in &entries {
            offsets.push(names.len() as u64);
            names.extend_from_slice(name);
            names.push(0);
            pad8(&mut names);
        }
        self.pad8()?;
        let heap = self.at;
        let mut block = b"HEAP\0\0\0\0".to_vec();
        u64s(&mut block, &[names.len() as u64, FREE_NULL, heap + 32]);
        block.extend_from_slice(&names);
        self.put(&block)?;
        // Symbol-table nodes of up to 2K entries each, written at their full size.
        let per_node = 2 * self.leaf_k;
        let mut nodes = Vec::new();
        for (chunk, offs) in entries.chunks(per_node).zip(offsets.chunks(per_node)) {
            let addr = self.at;
            let mut node = b"SNOD\x01\0".to_vec();
            node.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
            for ((_, header), &off) in chunk.iter().zip(offs) {
                u64s(&mut node, &[off, *header]);
                node.extend_from_slice(&[0; 24]);
            }
            node.resize(8 + per_node * ENTRY, 0);
            self.put(&node)?;
            nodes.push((addr, *offs.last().expect("a chunk has entries")));
        }
        // `layout` chose leaf K so that the widest group's nodes fit one B-tree node.
        debug_assert!(nodes.len() <= BTREE_CHILDREN);
        // One B-tree node: key 0 the empty name, then after each child the last name in it.
        let btree = self.at;
        let mut node = b"TREE\0\0".to_vec();
        node.extend_from_slice(&(nodes.len() as u16).to_le_bytes());
        u64s(&mut node, &[UNDEFINED, UNDEFINED, 0]);
        for (addr, last) in &nodes {
            u64s(&mut node, &[*addr, *last]);
        }
        // Signature, type, level, entries; two siblings; 2K + 1 keys and 2K children.
        node.resize(8 + 16 + (BTREE_CHILDREN + 1) * 8 + BTREE_CHILDREN * 8, 0);
        self.put(&node)?;
        let mut table = Vec::new();
        u64s(&mut table, &[btree, heap]);
        let header = self.header(&[(0x11, 0, table)])?;
        Ok(Written { header, btree, heap })
    }

    /// Writes a contiguous dataset (its values, then its header) and returns the header's
    /// address. `shape` empty: a scalar.
    fn dataset(&mut self, shape: &[usize], dtype: &[u8], values: Values<'_>) -> io::Result<u64> {
        self.pad8()?;
        let size = values.len();
        let data_at = if size == 0 { UNDEFINED } else { self.at };
        self.values(&values)?;
        // Dataspace version 1, with maximum dimensions equal to the dimensions.
        let mut space = vec![1, shape.len() as u8, if shape.is_empty() { 0 } else { 1 }, 0, 0, 0, 0, 0];
        let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        u64s(&mut space, &dims);
        if !shape.is_empty() {
            u64s(&mut space, &dims);
        }
        // Fill value version 2: allocated late, written if set, the default (zero) defined.
        let fill = vec![2, 2, 2, 1, 0, 0, 0, 0];
        let mut layout = vec![3, 1];
        u64s(&mut layout, &[data_at, size]);
        self.header(&[(0x01, 0, space), (0x03, 1, dtype.to_vec()), (0x05, 1, fill), (0x08, 0, layout)])
    }
}

/// IEEE float32, little-endian (class 1, version 1).
fn float32() -> Vec<u8> {
    vec![0x11, 0x20, 0x1f, 0x00, 4, 0, 0, 0, 0, 0, 32, 0, 23, 8, 0, 23, 127, 0, 0, 0]
}

/// Signed int32, little-endian (class 0, version 1).
fn int32() -> Vec<u8> {
    vec![0x10, 0x08, 0x00, 0x00, 4, 0, 0, 0, 0, 0, 32, 0]
}

/// A null-terminated ASCII string of `len` bytes (class 3, version 1).
fn string(len: usize) -> Vec<u8> {
    let mut v = vec![0x13, 0x00, 0x00, 0x00];
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v
}
