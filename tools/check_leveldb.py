#!/usr/bin/env python3
"""Checks, with the LevelDB library itself (plyvel 1.5.1, whose wheel bundles LevelDB 1.22:
`pip install plyvel==1.5.1`), the databases crema's writer made in tests/data_leveldb.rs
(`written_databases_read_back_record_for_record`, which leaves them in
target/tmp/leveldb-interop). Each is copied (LevelDB rewrites a database's MANIFEST when it
opens one) and the copy opened with paranoid checks: an iterator walks every record in order,
forwards and backwards, with checksums verified; a lookup by key finds each one through the
tables' index blocks, and keys between and beyond them are not found. Then LevelDB writes one
more record (between two of crema's), is closed and reopened (recovering from its own log and
the MANIFEST it wrote from crema's), compacts the whole key range (merging the table of the new
record with the crema table it falls in) and is reopened again, each time finding the same
records. Exits non-zero, naming the database and record, on any difference.

Usage: python3 tools/check_leveldb.py [target/tmp/leveldb-interop]
"""
import os
import shutil
import sys
import tempfile

import plyvel

RAMP = bytes(range(256))


def ramp(i, n):
    """Bytes (31 i + j) mod 256 for j < n, as tests/data_leveldb.rs makes them."""
    s = 31 * i % 256
    return (RAMP * (n // 256 + 2))[s:s + n]


def digits_record(i):
    data = bytes((7 * i + 3 * j) % 256 for j in range(30))
    # A Datum: channels 1, height 6, width 5, data, label.
    return b"%08d_img%d.png" % (i, i), b"\x08\x01\x10\x06\x18\x05\x22\x1e" + data + b"\x28" + bytes([i % 10])


BIG = [0, 1, 100, 4095, 4096, 4097, 65536, 1 << 20, (2 << 20) - 1, 2 << 20, (3 << 20) + 5, 0, 6 << 20, 17, (5 << 20) + 3, 1]

EXPECTED = {
    "empty": [],
    "one": [(b"a", b"b")],
    "many": [(b"%08d_n%02d/img_%d.jpg" % (i, i % 13, i), ramp(i, i * 977 % 3000)) for i in range(5000)],
    "sparse": [(b"%09d_" % (i * 7919) + b"x" * (i % 50), ramp(i, i * 131 % 700)) for i in range(3000)]
    + [(b"\xff\xff" + i.to_bytes(2, "big"), ramp(i, 300)) for i in range(300)],
    "big": [(b"%08d_big" % i, ramp(i, n)) for i, n in enumerate(BIG)],
    "digits": [digits_record(i) for i in range(300)],
}


def fail(name, msg):
    sys.exit(f"{name}: {msg}")


def short(b):
    return repr(b[:24]) + ("..." if len(b) > 24 else "")


def verify(name, db, records, when):
    """The records, in order both ways and by key; keys not in them are not found."""
    got = 0
    for i, ((k, v), (ek, ev)) in enumerate(zip(db.iterator(verify_checksums=True), records)):
        got += 1
        if k != ek or v != ev:
            fail(name, f"{when}: record {i} differs: key {short(k)} vs {short(ek)}, {len(v)} vs {len(ev)} bytes")
    n = sum(1 for _ in db.iterator(include_value=False))
    if got != len(records) or n != len(records):
        fail(name, f"{when}: the iterator walked {n} records, expected {len(records)}")
    for i, ((k, v), (ek, ev)) in enumerate(zip(db.iterator(reverse=True, verify_checksums=True), reversed(records))):
        if k != ek or v != ev:
            fail(name, f"{when}: record {len(records) - 1 - i} differs walking backwards: key {short(k)} vs {short(ek)}")
    for i, (k, v) in enumerate(records):
        if db.get(k, verify_checksums=True) != v:
            fail(name, f"{when}: looking up record {i} (key {short(k)}) by key fails")
        # Keys between records, and before the first: not there.
        for missing in (k + b"\x00", k[:-1]) if k else (k + b"\x00",):
            if missing not in {r[0] for r in records[max(i - 1, 0):i + 2]} and db.get(missing) is not None:
                fail(name, f"{when}: key {short(missing)} (not written) is found near record {i}")
    if records and db.get(b"\xff" * 8) is not None:
        fail(name, f"{when}: a key after every record is found")


def levels(db):
    return [int(db.get_property(b"leveldb.num-files-at-level%d" % level)) for level in range(7)]


def check(root, name, records):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        shutil.copytree(os.path.join(root, name), path)
        db = plyvel.DB(path, create_if_missing=False, paranoid_checks=True)
        files = levels(db)
        verify(name, db, records, "as crema wrote it")
        # One more record, between two of crema's (or alone).
        extra = (records[len(records) // 2][0] + b"~plyvel" if records else b"plyvel", b"written by LevelDB")
        db.put(*extra)
        db.close()
        after = sorted(records + [extra])
        db = plyvel.DB(path, create_if_missing=False, paranoid_checks=True)
        verify(name, db, after, "after LevelDB wrote a record and reopened the database")
        # Bounds given: without them plyvel passes empty keys, and nothing is compacted.
        db.compact_range(start=b"", stop=b"\xff" * 32)
        db.close()
        db = plyvel.DB(path, create_if_missing=False, paranoid_checks=True)
        verify(name, db, after, "after LevelDB compacted the database")
        compacted = levels(db)
        db.close()
    size = sum(len(v) for _, v in records)
    print(f"{name}: {len(records)} records ({size} bytes of values), {placed(files)}: read, written, reopened "
          f"and compacted ({placed(compacted)}) by LevelDB {plyvel.__leveldb_version__}")


def placed(files):
    return ", ".join(f"{n} table{'s' if n > 1 else ''} on level {level}" for level, n in enumerate(files) if n) or "no tables"


root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "tmp", "leveldb-interop")
for name, records in EXPECTED.items():
    try:
        check(root, name, records)
    except plyvel.Error as e:
        fail(name, f"LevelDB: {e}")
