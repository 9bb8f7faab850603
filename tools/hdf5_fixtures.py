#!/usr/bin/env python3
"""Writes fixtures/hdf5/*: small HDF5 files made by the real HDF5 library (h5py 3.16 with
HDF5 2.0: `pip install h5py`), for crema's HDF5 reader and HDF5Data layer tests.

Every value follows a formula, so tests check them without an HDF5 library:

- classify.h5: what Caffe's hdf5_classification example writes (h5py defaults: superblock 0,
  contiguous storage). `data` float32 (10, 4) = 10 i + j; `label` float32 (10,) = i % 2.
- classify2.h5: the same layout, 6 rows: `data` = 100 + 10 i + j, `label` = (i + 1) % 2.
- chunked.h5: `data` float64 (50, 3, 2, 2) = i + c / 10 + y / 100 + x / 1000, chunks
  (3, 2, 2, 1) (edge chunks cut by the shape, over 64 chunks, so a chunk index two levels
  deep), gzip level 1 with shuffle; `label` int64 (50,) = 3 i - 7, chunks (16,), gzip.
- filters.h5: `data` big-endian float32 (9, 5) = i - j / 4, chunks (4, 5), LZF with
  fletcher32; `label` uint8 (9, 1) = 250 + i % 6; `pixels` int16 (9, 2) = -1000 i + j,
  chunks (5, 2), partly written: rows 5.. were never written and hold the fill value -5.
- latest.h5: libver "latest" (superblock 3, version 2 object headers, link messages):
  `data` float32 (7, 3) = i * j contiguous; `label` float32 (7,) = 2 i, compact; `chunked`
  float32 (40, 2) = i + j / 2 in chunks (4, 2) (a fixed-array chunk index); `single` float32
  (5, 2) = -i in one chunk, gzip; `gzipped` float32 (40, 2) = i - j in chunks (4, 2), gzip (a
  fixed array of filtered chunks); `early` int32 (12, 3) = 3 i + j in chunks (5, 3) allocated
  at creation (an implicit index); `group/inner` float32 (2,) = [1, 2].
- userblock.h5: a 512-byte user block before the superblock; `data` float32 (3, 2) = i + j,
  `label` float32 (3,) = i.
- many.h5: 40 datasets `d00`..`d39`, `dK` float32 (2,) = [K, -K], in an old-style group (a
  B-tree over several symbol-table nodes); `data` float32 (2, 1) = [[0], [1]] and `label`
  float32 (2,) = [5, 6].
- train.h5, test.h5: as Caffe's 02-brewing-logreg notebook writes its data for the
  hdf5_classification example (`data` float64 with 4 features, `label` float32 of 2 classes;
  train gzip-compressed, test not), here 80 and 40 rows of a separable problem:
  x[i, j] = sin(1.7 i + 2.3 j + 0.5 i j + o) (o = 0 for train, 100 for test),
  label = 1 where x0 + 0.5 x1 - x2 > 0, else 0.
- maxshape.h5: libver "latest", `data` float32 (4, 4) = 10 i + j with maxshape (4, 8) and
  chunks (2, 2): a fixed array numbering its chunks over the grid of the maximum shape.
- snapshot/net_iter_3.caffemodel.h5, snapshot/net_iter_3.solverstate.h5: an HDF5 snapshot
  laid out as Caffe's `snapshot_format: HDF5` writes one (Net::ToHDF5 and
  SnapshotSolverStateToHDF5, through the HDF5 Lite calls Caffe uses: float32 datasets, int32
  datasets of one value, a fixed-length string), for the net of tests/hdf5_snapshots.rs:
  layers data, ip1 (weights "shared_w", bias), relu, ip2 (sharing "shared_w", own bias), loss.
  A group per layer; ip2 holds only its bias `1`. ip1/0 = [[.1, .2, .3], [.4, .5, .6]],
  ip1/1 = [1, 2], ip2/1 = [-1, -2]; iter 3, current_step 0, learned_net
  "net_iter_3.caffemodel.h5", history/0 = 0.01 k (k = 0..5, shape 2x3), history/1 = [.5, .25],
  history/2 = [-.5, .125].

Run from the crate root: python3 tools/hdf5_fixtures.py
"""
import os

import h5py
import numpy as np

OUT = os.path.join("fixtures", "hdf5")


def grid(shape, f):
    return np.fromfunction(f, shape, dtype=np.float64)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if name.endswith(".h5"):
            os.remove(os.path.join(OUT, name))
    path = lambda n: os.path.join(OUT, n)

    with h5py.File(path("classify.h5"), "w") as f:
        f["data"] = grid((10, 4), lambda i, j: 10 * i + j).astype(np.float32)
        f["label"] = (np.arange(10) % 2).astype(np.float32)
    with h5py.File(path("classify2.h5"), "w") as f:
        f["data"] = grid((6, 4), lambda i, j: 100 + 10 * i + j).astype(np.float32)
        f["label"] = ((np.arange(6) + 1) % 2).astype(np.float32)

    with h5py.File(path("chunked.h5"), "w") as f:
        data = grid((50, 3, 2, 2), lambda i, c, y, x: i + c / 10 + y / 100 + x / 1000)
        f.create_dataset("data", data=data, chunks=(3, 2, 2, 1), compression="gzip",
                         compression_opts=1, shuffle=True)
        f.create_dataset("label", data=3 * np.arange(50, dtype=np.int64) - 7, chunks=(16,),
                         compression="gzip")

    with h5py.File(path("filters.h5"), "w") as f:
        f.create_dataset("data", data=grid((9, 5), lambda i, j: i - j / 4).astype(">f4"),
                         chunks=(4, 5), compression="lzf", fletcher32=True)
        f["label"] = (250 + np.arange(9) % 6).astype(np.uint8).reshape(9, 1)
        px = f.create_dataset("pixels", shape=(9, 2), dtype=np.int16, chunks=(5, 2), fillvalue=-5)
        px[0:5] = grid((5, 2), lambda i, j: -1000 * i + j).astype(np.int16)

    with h5py.File(path("latest.h5"), "w", libver="latest") as f:
        f["data"] = grid((7, 3), lambda i, j: i * j).astype(np.float32)
        # A compact dataset: its values live in its object header.
        space = h5py.h5s.create_simple((7,))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        label = h5py.h5d.create(f.id, b"label", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)
        label.write(h5py.h5s.ALL, h5py.h5s.ALL, (2 * np.arange(7)).astype(np.float32))
        f.create_dataset("chunked", data=grid((40, 2), lambda i, j: i + j / 2).astype(np.float32),
                         chunks=(4, 2))
        f.create_dataset("single", data=-grid((5, 2), lambda i, j: i).astype(np.float32),
                         chunks=(5, 2), compression="gzip")
        f.create_dataset("gzipped", data=grid((40, 2), lambda i, j: i - j).astype(np.float32),
                         chunks=(4, 2), compression="gzip")
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((5, 3))
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        early = h5py.h5d.create(f.id, b"early", h5py.h5t.STD_I32LE, h5py.h5s.create_simple((12, 3)), dcpl=dcpl)
        early.write(h5py.h5s.ALL, h5py.h5s.ALL, grid((12, 3), lambda i, j: 3 * i + j).astype(np.int32))
        f.create_group("group")["inner"] = np.array([1, 2], dtype=np.float32)

    with h5py.File(path("maxshape.h5"), "w", libver="latest") as f:
        f.create_dataset("data", data=grid((4, 4), lambda i, j: 10 * i + j).astype(np.float32),
                         maxshape=(4, 8), chunks=(2, 2))

    with h5py.File(path("userblock.h5"), "w", userblock_size=512) as f:
        f["data"] = grid((3, 2), lambda i, j: i + j).astype(np.float32)
        f["label"] = np.arange(3, dtype=np.float32)

    with h5py.File(path("many.h5"), "w") as f:
        for k in range(40):
            f["d%02d" % k] = np.array([k, -k], dtype=np.float32)
        f["data"] = np.array([[0], [1]], dtype=np.float32)
        f["label"] = np.array([5, 6], dtype=np.float32)

    for name, rows, o, comp in [("train.h5", 80, 0, {"compression": "gzip", "compression_opts": 1}),
                                ("test.h5", 40, 100, {})]:
        x = grid((rows, 4), lambda i, j: np.sin(1.7 * i + 2.3 * j + 0.5 * i * j + o))
        y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(np.float32)
        with h5py.File(path(name), "w") as f:
            f.create_dataset("data", data=x, **comp)
            f.create_dataset("label", data=y, **comp)

    snap = os.path.join(OUT, "snapshot")
    os.makedirs(snap, exist_ok=True)
    with h5py.File(os.path.join(snap, "net_iter_3.caffemodel.h5"), "w") as f:
        data = f.create_group("data")
        for layer in ["data", "ip1", "relu", "ip2", "loss"]:
            data.create_group(layer)
        data["ip1/0"] = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=np.float32)
        data["ip1/1"] = np.array([1, 2], dtype=np.float32)
        data["ip2/1"] = np.array([-1, -2], dtype=np.float32)
    with h5py.File(os.path.join(snap, "net_iter_3.solverstate.h5"), "w") as f:
        f["iter"] = np.array([3], dtype=np.int32)
        f["learned_net"] = np.bytes_(b"net_iter_3.caffemodel.h5")
        f["current_step"] = np.array([0], dtype=np.int32)
        h = f.create_group("history")
        h["0"] = (0.01 * np.arange(6, dtype=np.float32)).reshape(2, 3)
        h["1"] = np.array([0.5, 0.25], dtype=np.float32)
        h["2"] = np.array([-0.5, 0.125], dtype=np.float32)

    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(path(name)))


if __name__ == "__main__":
    main()
