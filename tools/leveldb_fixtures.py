#!/usr/bin/env python3
"""Writes fixtures/leveldb/*: small LevelDB databases of Caffe Datum records, made by the real
LevelDB library (plyvel: `pip install plyvel`; LevelDB 1.22), for crema's LevelDB reader.

- log:    the 300 records of fixtures/lmdb/digits (see tools/lmdb_fixtures.py), written with
          Caffe's options (64 KiB blocks, 256 MB write buffer): everything stays in the log.
- tables: the same 300 records in 1 KiB blocks of table files (compacted in two steps, so in
          several tables); then record 3 is overwritten with label 99, records 7, 57, 107, ...
          (i % 50 == 7) are deleted, and record 300 is added, these last writes staying in the
          log.
- snappy: 200 records of 1x10x10 Datums whose pixels all equal i % 256, label i % 7, in
          Snappy-compressed table blocks.

Run from the crate root: python3 tools/leveldb_fixtures.py
"""
import os
import shutil

import plyvel


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | 0x80 if v else b)
        if not v:
            return bytes(out)


def datum(channels, height, width, data, label):
    return (b"\x08" + varint(channels) + b"\x10" + varint(height) + b"\x18" + varint(width)
            + b"\x22" + varint(len(data)) + bytes(data) + b"\x28" + varint(label))


def digit(i, label=None):
    return b"%08d_img%d.png" % (i, i), datum(1, 6, 5, [(7 * i + 3 * j) % 256 for j in range(30)], i % 10 if label is None else label)


def fresh(name, **options):
    path = os.path.join("fixtures", "leveldb", name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return plyvel.DB(path, create_if_missing=True, **options)


def tidy(name):
    # LOCK and the info LOG are the library's runtime files, not the database.
    for f in ("LOCK", "LOG", "LOG.old"):
        p = os.path.join("fixtures", "leveldb", name, f)
        if os.path.exists(p):
            os.remove(p)


db = fresh("log", block_size=65536, write_buffer_size=268435456)
for i in range(300):
    db.put(*digit(i))
db.close()
tidy("log")

db = fresh("tables", block_size=1024)
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
tidy("tables")

db = fresh("snappy", block_size=4096, compression="snappy")
for i in range(200):
    db.put(b"%08d" % i, datum(1, 10, 10, [i % 256] * 100, i % 7))
db.compact_range()
db.close()
tidy("snappy")
