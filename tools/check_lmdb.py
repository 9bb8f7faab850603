#!/usr/bin/env python3
"""Checks, with the LMDB library itself (py-lmdb: `pip install lmdb`), the databases crema's
writer made in tests/data_lmdb.rs (`written_databases_read_back_record_for_record`, which
leaves them in target/tmp/lmdb-interop): the library opens each, its statistics agree, a
cursor walks every record in order, and a lookup by key finds each one through the branch
pages. Exits non-zero, naming the database and record, on any difference.

Usage: python3 tools/check_lmdb.py [target/tmp/lmdb-interop]
"""
import os
import sys

import lmdb


def interop_record(i):
    key = b"%08d_" % i + b"k" * (i % 300)
    n = (i * 977) % 5000
    return key, bytes((i * 31 + j) % 256 for j in range(n))


def digits_record(i):
    data = bytes((7 * i + 3 * j) % 256 for j in range(30))
    # A Datum: channels 1, height 6, width 5, data, label.
    return b"%08d_img%d.png" % (i, i), b"\x08\x01\x10\x06\x18\x05\x22\x1e" + data + b"\x28" + bytes([i % 10])


EXPECTED = {
    "empty": [],
    "one": [(b"a", b"b")],
    "many": [interop_record(i) for i in range(3000)],
    "digits": [digits_record(i) for i in range(300)],
}


def check(root, name, records):
    path = os.path.join(root, name)
    env = lmdb.open(path, readonly=True, lock=False)
    stat = env.stat()
    if stat["entries"] != len(records):
        sys.exit(f"{name}: the library counts {stat['entries']} records, expected {len(records)}")
    with env.begin() as txn:
        got = list(txn.cursor())
        if len(got) != len(records):
            sys.exit(f"{name}: the cursor walked {len(got)} records, expected {len(records)}")
        for i, ((k, v), (ek, ev)) in enumerate(zip(got, records)):
            if k != ek or v != ev:
                sys.exit(f"{name}: record {i} differs (key {k[:20]!r} vs {ek[:20]!r}, {len(v)} vs {len(ev)} bytes)")
        for i, (k, v) in enumerate(records):
            if txn.get(k) != v:
                sys.exit(f"{name}: looking up record {i} by key fails")
        if records and txn.get(records[-1][0] + b"\x00") is not None:
            sys.exit(f"{name}: a key not in the database is found")
    env.close()
    print(f"{name}: {len(records)} records, depth {stat['depth']}, {stat['branch_pages']} branch, "
          f"{stat['leaf_pages']} leaf, {stat['overflow_pages']} overflow pages: read by LMDB {'.'.join(map(str, lmdb.version()))}")


root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "tmp", "lmdb-interop")
for name, records in EXPECTED.items():
    check(root, name, records)
