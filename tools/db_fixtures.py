#!/usr/bin/env python3
"""Writes fixtures/lmdb/* and fixtures/leveldb/*: small databases of Caffe Datum records made by
the real libraries (py-lmdb 3.0 with LMDB 0.9.36, plyvel 1.5.1 with LevelDB 1.22:
`pip install lmdb plyvel`), for crema's readers and Data layer tests.

LMDB (fixtures/lmdb):
- digits:  300 raw 1x6x5 Datums, keys "%08d_img%d.png" (convert_imageset's), label i % 10;
           pixel j of record i is (7 i + 3 j) % 256. Several leaf pages under a branch page.
- deep:    150 raw 1x2x2 Datums with 400-byte keys, label i, pixel j = (i + j) % 256: a tree
           three pages deep.
- color:   4 raw 3x40x30 Datums (values in overflow pages), label i,
           pixel (c, y, x) = (50 i + 80 c + 3 y + x) % 256.
- encoded: PNG-encoded Datums: gray 6x5 (label 0), gray 6x5 (label 1), RGB 6x5 (label 2); gray
           pixel (y, x) = 10 y + x + 100 r for record r, RGB pixel (y, x) = (R, G, B) =
           (10 y + x, 100, 200).

LevelDB (fixtures/leveldb):
- log:    the 300 digits records, written with Caffe's options (64 KiB blocks, 256 MB write
          buffer): everything stays in the log.
- tables: the same 300 records in 1 KiB blocks of table files (compacted in two steps, so in
          several tables); then record 3 is overwritten with label 99, records 7, 57, 107, ...
          (i % 50 == 7) are deleted, and record 300 is added, these last writes staying in the
          log.
- snappy: 200 records of 1x10x10 Datums whose pixels all equal i % 256, label i % 7, in
          Snappy-compressed table blocks.

Run from the crate root: python3 tools/db_fixtures.py
"""
import os
import shutil
import struct
import zlib

import lmdb
import plyvel


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | 0x80 if v else b)
        if not v:
            return bytes(out)


def datum(channels, height, width, data, label, encoded=False):
    msg = b""
    if not encoded:
        msg += b"\x08" + varint(channels) + b"\x10" + varint(height) + b"\x18" + varint(width)
    msg += b"\x22" + varint(len(data)) + bytes(data)
    msg += b"\x28" + varint(label)
    if encoded:
        msg += b"\x38\x01"
    return msg


def digit(i, label=None):
    return b"%08d_img%d.png" % (i, i), datum(1, 6, 5, [(7 * i + 3 * j) % 256 for j in range(30)], i % 10 if label is None else label)


def png(width, height, rows, color):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if color else 0, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def fresh(kind, name):
    path = os.path.join("fixtures", kind, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def tidy(path):
    # Lock files and LevelDB's info LOG are the libraries' runtime files, not the database.
    for f in ("lock.mdb", "LOCK", "LOG", "LOG.old"):
        if os.path.exists(os.path.join(path, f)):
            os.remove(os.path.join(path, f))


def write_lmdb(name, records):
    path = fresh("lmdb", name)
    env = lmdb.open(path, map_size=1 << 24, subdir=True, lock=False)
    with env.begin(write=True) as txn:
        for key, value in records:
            txn.put(key, value)
    env.close()
    tidy(path)


write_lmdb("digits", [digit(i) for i in range(300)])
write_lmdb("deep", [((b"%08d_" % i) + b"k" * 391, datum(1, 2, 2, [(i + j) % 256 for j in range(4)], i)) for i in range(150)])
write_lmdb(
    "color",
    [
        (b"%08d" % i, datum(3, 40, 30, [(50 * i + 80 * c + 3 * y + x) % 256 for c in range(3) for y in range(40) for x in range(30)], i))
        for i in range(4)
    ],
)
gray = lambda r: png(5, 6, [[10 * y + x + 100 * r for x in range(5)] for y in range(6)], False)
rgb = png(5, 6, [[v for x in range(5) for v in (10 * y + x, 100, 200)] for y in range(6)], True)
write_lmdb("encoded", [(b"00000000", datum(0, 0, 0, gray(0), 0, True)), (b"00000001", datum(0, 0, 0, gray(1), 1, True)), (b"00000002", datum(0, 0, 0, rgb, 2, True))])

path = fresh("leveldb", "log")
db = plyvel.DB(path, create_if_missing=True, block_size=65536, write_buffer_size=268435456)
for i in range(300):
    db.put(*digit(i))
db.close()
tidy(path)

path = fresh("leveldb", "tables")
db = plyvel.DB(path, create_if_missing=True, block_size=1024)
for i in range(150):
    db.put(*digit(i))
db.compact_range()
for i in range(150, 300):
    db.put(*digit(i))
db.compact_range(start=b"00000140", stop=b"00000200")
db.put(*digit(3, 99))
for i in range(7, 300, 50):
    db.delete(digit(i)[0])
db.put(*digit(300))
db.close()
tidy(path)

path = fresh("leveldb", "snappy")
db = plyvel.DB(path, create_if_missing=True, block_size=4096, compression="snappy")
for i in range(200):
    db.put(b"%08d" % i, datum(1, 10, 10, [i % 256] * 100, i % 7))
db.compact_range()
db.close()
tidy(path)
