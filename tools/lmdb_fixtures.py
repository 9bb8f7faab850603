#!/usr/bin/env python3
"""Writes fixtures/lmdb/*: small LMDB databases of Caffe Datum records, made by the real LMDB
library (py-lmdb: `pip install lmdb`), for crema's LMDB reader and Data layer tests.

- digits:  300 raw 1x6x5 Datums, keys "%08d_img%d.png" (convert_imageset's), label i % 10;
           pixel j of record i is (7 i + 3 j) % 256. Several leaf pages under a branch page.
- deep:    150 raw 1x2x2 Datums with 400-byte keys, label i, pixel j = (i + j) % 256: a tree
           three pages deep.
- color:   4 raw 3x40x30 Datums (values in overflow pages), label i,
           pixel (c, y, x) = (50 i + 80 c + 3 y + x) % 256.
- encoded: PNG-encoded Datums: gray 6x5 (label 0), gray 6x5 (label 1), RGB 6x5 (label 2); gray
           pixel (y, x) = 10 y + x + 100 r for record r, RGB pixel (y, x) = (R, G, B) =
           (10 y + x, 100, 200).

Run from the crate root: python3 tools/lmdb_fixtures.py
"""
import os
import struct
import zlib

import lmdb


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
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


def png(width, height, rows, color):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if color else 0, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def write(name, records):
    path = os.path.join("fixtures", "lmdb", name)
    os.makedirs(path, exist_ok=True)
    for f in ("data.mdb", "lock.mdb"):
        if os.path.exists(os.path.join(path, f)):
            os.remove(os.path.join(path, f))
    env = lmdb.open(path, map_size=1 << 24, subdir=True, lock=False)
    with env.begin(write=True) as txn:
        for key, value in records:
            txn.put(key, value)
    env.close()
    lock = os.path.join(path, "lock.mdb")
    if os.path.exists(lock):
        os.remove(lock)


write("digits", [(b"%08d_img%d.png" % (i, i), datum(1, 6, 5, [(7 * i + 3 * j) % 256 for j in range(30)], i % 10)) for i in range(300)])
write("deep", [((b"%08d_" % i) + b"k" * 391, datum(1, 2, 2, [(i + j) % 256 for j in range(4)], i)) for i in range(150)])
write(
    "color",
    [
        (b"%08d" % i, datum(3, 40, 30, [(50 * i + 80 * c + 3 * y + x) % 256 for c in range(3) for y in range(40) for x in range(30)], i))
        for i in range(4)
    ],
)
gray = lambda r: png(5, 6, [[10 * y + x + 100 * r for x in range(5)] for y in range(6)], False)
rgb = png(5, 6, [[v for x in range(5) for v in (10 * y + x, 100, 200)] for y in range(6)], True)
write("encoded", [(b"00000000", datum(0, 0, 0, gray(0), 0, True)), (b"00000001", datum(0, 0, 0, gray(1), 1, True)), (b"00000002", datum(0, 0, 0, rgb, 2, True))])
