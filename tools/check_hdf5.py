#!/usr/bin/env python3
"""Checks, with the HDF5 library itself (h5py: `pip install h5py`), the HDF5 files crema
wrote in a folder, as its expected.json describes them: the snapshots of tests/hdf5_snapshots.rs
(`crema_writes_caffes_hdf5_snapshots`, in target/tmp/hdf5-interop/snap) or the HDF5Output
files of tests/hdf5_output.rs (`crema_test_appends_every_iteration`, in
target/tmp/hdf5-output-interop). The library opens each file, finds the groups, reads every
dataset with the type, shape and values expected (float32 and int32 datasets, a fixed-length
string), and can add to the file and read it back, so its heaps and B-trees are sound. Exits
non-zero, naming the file and dataset, on any difference.

Usage: python3 tools/check_hdf5.py [target/tmp/hdf5-interop/snap | target/tmp/hdf5-output-interop]
"""
import json
import os
import shutil
import sys
import tempfile

import h5py
import numpy as np


def fail(msg):
    print("check_hdf5: " + msg, file=sys.stderr)
    sys.exit(1)


def check(path, want):
    with h5py.File(path, "r") as f:
        for g in want.get("groups", []):
            if not isinstance(f.get(g), h5py.Group):
                fail("%s: no group %s" % (path, g))
        for kind, dtype in [("float32", np.float32), ("int32", np.int32)]:
            for name, values in want.get(kind, {}).items():
                d = f.get(name)
                if not isinstance(d, h5py.Dataset):
                    fail("%s: no dataset %s" % (path, name))
                if d.dtype != np.dtype(dtype):
                    fail("%s: %s is %s, not %s" % (path, name, d.dtype, kind))
                shape = tuple(want.get("shapes", {}).get(name, [len(values)]))
                if d.shape != shape:
                    fail("%s: %s has shape %s, not %s" % (path, name, d.shape, shape))
                got = d[()].ravel()
                if not np.array_equal(got, np.array(values, dtype=dtype)):
                    fail("%s: %s holds %s, not %s" % (path, name, got, values))
        for name, text in want.get("string", {}).items():
            d = f[name]
            if d.shape != () or d.dtype.kind != "S" or d[()].decode() != text:
                fail("%s: %s is %r (%s %s), not the string %r" % (path, name, d[()], d.dtype, d.shape, text))
    # The library can extend the file (its free-space and B-tree structures are sound).
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "copy.h5")
        shutil.copy(path, copy)
        with h5py.File(copy, "r+") as f:
            f["added/by/h5py"] = np.arange(5, dtype=np.float32)
        with h5py.File(copy, "r") as f:
            if list(f["added/by/h5py"][()]) != [0, 1, 2, 3, 4]:
                fail("%s: a dataset added by the HDF5 library does not read back" % path)
    print("%s: read by HDF5 %s (h5py %s)" % (os.path.basename(path), h5py.version.hdf5_version, h5py.version.version))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/tmp/hdf5-interop/snap"
    expected_file = os.path.join(root, "expected.json")
    if not os.path.exists(expected_file):
        fail("%s is missing: run `cargo test --test hdf5_snapshots` (or `--test hdf5_output`) first" % expected_file)
    with open(expected_file) as f:
        expected = json.load(f)
    for name, want in sorted(expected.items()):
        check(os.path.join(root, name), want)


if __name__ == "__main__":
    main()
