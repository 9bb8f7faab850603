#!/usr/bin/env python3
"""Make the test streams of crema's sequential DCT JPEG decoder (src/io/dicom/jpeg12.rs).

Writes fixtures/jpeg12/: small 12-bit (SOF1) and 8-bit (SOF0) JPEG streams made by
libjpeg-turbo, a few of them re-packed by this script (restart intervals, 16-bit DQT, our own
Huffman tables, fill bytes, a COM segment), and what libjpeg-turbo's decoder (islow IDCT)
makes of each, every sample a little-endian u16, row-major, components interleaved, as
NAME.u16. README.md there lists them.

Needs `pip install imagecodecs numpy` (made with imagecodecs 2026.3.6, i.e. libjpeg-turbo
3.1.3, and numpy 2.4.6; other libjpeg-turbo versions may change the compressed bytes).
CI does not run it. Run from the repository root:

    python tools/make_jpeg12_fixtures.py

Pixels: a crop of fixtures/cxr-lite/images/MCUCXR_0001_0.png (a 128x128 Montgomery County
chest X-ray already in the repository), scaled to 12 bits with mild Gaussian noise (fixed
seed). Colour images are made from the same crop (three differently mapped planes).

Colour references: libjpeg-turbo upsamples chroma with its "fancy" (triangle) filter, while
crema replicates samples. So the reference of a colour stream is made component by
component: this script entropy-decodes the stream's quantised coefficients, re-packs each
component's blocks as a gray stream with the same quantisation table, has libjpeg-turbo
decode that (the component's plane as libjpeg computes it before upsampling), and replicates
its samples to the full size (x * h / Hmax, y * v / Vmax). For a 4:4:4 stream the script
checks that this equals libjpeg-turbo's own YCbCr output. Re-packed streams are checked to
decode in libjpeg-turbo exactly as the stream they were made from.
"""

from __future__ import annotations

import heapq
import struct
from pathlib import Path

import imagecodecs as ic
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "jpeg12"
SOURCE = ROOT / "fixtures" / "cxr-lite" / "images" / "MCUCXR_0001_0.png"

# T.81 figure A.6: ZIGZAG[k] is the natural index of the k-th coefficient in zig-zag order.
ZIGZAG = []
for s in range(15):
    ys = range(min(s, 7), max(0, s - 7) - 1, -1) if s % 2 == 0 else range(max(0, s - 7), min(s, 7) + 1)
    ZIGZAG += [y * 8 + (s - y) for y in ys]
assert sorted(ZIGZAG) == list(range(64)) and ZIGZAG[:6] == [0, 1, 8, 16, 9, 2]


# ---------------------------------------------------------------- parsing a stream


def segments(data: bytes):
    """Yields (marker, body, offset after the body) of each marker segment up to SOS."""
    assert data[:2] == b"\xff\xd8"
    pos = 2
    while True:
        assert data[pos] == 0xFF
        while data[pos] == 0xFF:
            pos += 1
        m = data[pos]
        pos += 1
        if m == 0xD9:
            return
        (n,) = struct.unpack(">H", data[pos : pos + 2])
        yield m, data[pos + 2 : pos + n], pos + n
        pos += n
        if m == 0xDA:
            return


class Bits:
    def __init__(self, data: bytes, pos: int):
        out = bytearray()
        while True:
            b = data[pos]
            if b == 0xFF:
                if data[pos + 1] != 0:
                    break
                pos += 1
            out.append(b)
            pos += 1
        self.s = "".join(f"{b:08b}" for b in out)
        self.i = 0

    def get(self, n: int) -> int:
        v = int(self.s[self.i : self.i + n], 2) if n else 0
        self.i += n
        return v

    def symbol(self, table: dict) -> int:
        code = 0
        for n in range(1, 17):
            code = code * 2 + self.get(1)
            if (n, code) in table:
                return table[(n, code)]
        raise ValueError("bad code")


def extend(v: int, t: int) -> int:
    return v - (1 << t) + 1 if t and v < (1 << (t - 1)) else v


def parse(data: bytes) -> dict:
    """The frame, tables and quantised coefficients (zig-zag order) of a one-scan stream."""
    qt, huff, restart = {}, {}, 0
    for m, body, end in segments(data):
        if m == 0xDB:
            while body:
                pq, tq = body[0] >> 4, body[0] & 15
                n = 64 * (pq + 1)
                vals = body[1 : 1 + n]
                qt[tq] = list(vals) if pq == 0 else list(struct.unpack(f">{64}H", vals))
                body = body[1 + n :]
        elif m == 0xC4:
            while body:
                tc, th = body[0] >> 4, body[0] & 15
                counts = body[1:17]
                vals = body[17 : 17 + sum(counts)]
                table, code, k = {}, 0, 0
                for n in range(1, 17):
                    for _ in range(counts[n - 1]):
                        table[(n, code)] = vals[k]
                        code += 1
                        k += 1
                    code *= 2
                huff[(tc, th)] = table
                body = body[17 + sum(counts) :]
        elif m in (0xC0, 0xC1):
            p, y, x, nf = struct.unpack(">BHHB", body[:6])
            comps = [(body[6 + 3 * i], body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15, body[8 + 3 * i]) for i in range(nf)]
        elif m == 0xDD:
            (restart,) = struct.unpack(">H", body)
        elif m == 0xDA:
            ns = body[0]
            assert ns == len(comps) and restart == 0, "only one interleaved scan, no restarts"
            sel = [(body[2 + 2 * i] >> 4, body[2 + 2 * i] & 15) for i in range(ns)]
            bits = Bits(data, end)
    hmax = max(c[1] for c in comps)
    vmax = max(c[2] for c in comps)
    if len(comps) == 1:
        mx, my = -(-x // 8), -(-y // 8)
        shape = [(1, 1)]
    else:
        mx, my = -(-x // (8 * hmax)), -(-y // (8 * vmax))
        shape = [(c[1], c[2]) for c in comps]
    coefs = [np.zeros((my * v, mx * h, 64), np.int32) for h, v in shape]
    preds = [0] * len(comps)
    for j in range(my):
        for i in range(mx):
            for c, (h, v) in enumerate(shape):
                dc, ac = huff[(0, sel[c][0])], huff[(1, sel[c][1])]
                for by in range(v):
                    for bx in range(h):
                        blk = coefs[c][j * v + by, i * h + bx]
                        t = bits.symbol(dc)
                        preds[c] += extend(bits.get(t), t)
                        blk[0] = preds[c]
                        k = 1
                        while k < 64:
                            rs = bits.symbol(ac)
                            r, s = rs >> 4, rs & 15
                            if s == 0:
                                if r != 15:
                                    break
                                k += 16
                                continue
                            k += r
                            blk[k] = extend(bits.get(s), s)
                            k += 1
    return dict(p=p, x=x, y=y, comps=comps, qt=qt, coefs=coefs, hmax=hmax, vmax=vmax)


# ---------------------------------------------------------------- writing a stream


def huffman(freq: dict) -> tuple[list[int], list[int]]:
    """BITS and HUFFVAL of a code for these symbol counts, at most 16 bits, no all-1s code
    (T.81 K.2: a reserved symbol of count 1 takes the all-1s code and is dropped)."""
    heap = [(c, i, [s]) for i, (s, c) in enumerate(sorted(freq.items()))]
    heap.append((1, -1, [256]))
    heapq.heapify(heap)
    size = {s: 0 for s in list(freq) + [256]}
    n = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            size[s] += 1
        heapq.heappush(heap, (c1 + c2, n, s1 + s2))
        n += 1
    bits = [0] * 40
    for s in size.values():
        bits[s] += 1
    i = 39
    while i > 16:  # K.3 Adjust_BITS
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
        i -= 1
    while bits[i] == 0:
        i -= 1
    bits[i] -= 1  # the reserved symbol
    order = sorted(freq, key=lambda s: (-freq[s], s))
    return bits[1:17], order


def codes(bits: list[int], vals: list[int]) -> dict:
    table, code, k = {}, 0, 0
    for n in range(1, 17):
        for _ in range(bits[n - 1]):
            table[vals[k]] = (code, n)
            code += 1
            k += 1
        code *= 2
    return table


def category(v: int) -> int:
    return abs(v).bit_length()


def repack(f: dict, restart: int = 0, pq16: bool = False, extras: bool = False, comp: int | None = None) -> bytes:
    """Writes f's coefficients as a one-scan stream with our own Huffman tables (one DC and
    one AC table per component). comp: only that component, as a gray frame of its size."""
    x, y, p = f["x"], f["y"], f["p"]
    comps, coefs = f["comps"], f["coefs"]
    if comp is not None:
        cid, h, v, tq = comps[comp]
        x = -(-x * h // f["hmax"])
        y = -(-y * v // f["vmax"])
        comps, coefs = [(cid, 1, 1, tq)], [coefs[comp]]
    nc = len(comps)
    if nc == 1:
        mx, my, shape = -(-x // 8), -(-y // 8), [(1, 1)]
    else:
        mx, my = -(-x // (8 * f["hmax"])), -(-y // (8 * f["vmax"]))
        shape = [(c[1], c[2]) for c in comps]
    # Symbols: (component, class, symbol, extra bits, extra length), or None for a restart.
    events, preds, n = [], [0] * nc, 0
    for j in range(my):
        for i in range(mx):
            if restart and n and n % restart == 0:
                events.append(None)
                preds = [0] * nc
            n += 1
            for c, (h, v) in enumerate(shape):
                for by in range(v):
                    for bx in range(h):
                        blk = coefs[c][j * v + by, i * h + bx]
                        d = int(blk[0]) - preds[c]
                        preds[c] = int(blk[0])
                        t = category(d)
                        events.append((c, 0, t, d if d >= 0 else d + (1 << t) - 1, t))
                        run = 0
                        last = max([k for k in range(1, 64) if blk[k]], default=0)
                        for k in range(1, last + 1):
                            a = int(blk[k])
                            if a == 0:
                                run += 1
                                continue
                            while run > 15:
                                events.append((c, 1, 0xF0, 0, 0))
                                run -= 16
                            s = category(a)
                            events.append((c, 1, (run << 4) | s, a if a >= 0 else a + (1 << s) - 1, s))
                            run = 0
                        if last < 63:
                            events.append((c, 1, 0x00, 0, 0))
    freqs = {}
    for e in events:
        if e:
            d = freqs.setdefault((e[0], e[1]), {})
            d[e[2]] = d.get(e[2], 0) + 1
    out = bytearray(b"\xff\xd8")

    def seg(m, body):
        out.extend(bytes([0xFF, m]) + struct.pack(">H", len(body) + 2) + bytes(body))

    if extras:
        seg(0xFE, b"crema jpeg12 fixture")
    for tq in sorted({c[3] for c in comps}):
        q = f["qt"][tq]
        if pq16:
            seg(0xDB, bytes([0x10 | tq]) + struct.pack(">64H", *q))
        else:
            seg(0xDB, bytes([tq]) + bytes(q))
    sof = 0xC1 if p == 12 else 0xC0
    seg(sof, struct.pack(">BHHB", p, y, x, nc) + b"".join(bytes([c[0], (c[1] << 4) | c[2], c[3]]) for c in comps))
    tables = {}
    for (c, cls), fr in sorted(freqs.items()):
        bits, vals = huffman(fr)
        seg(0xC4, bytes([(cls << 4) | c] + bits + vals))
        tables[(c, cls)] = codes(bits, vals)
    if restart:
        seg(0xDD, struct.pack(">H", restart))
    if extras:
        out.extend(b"\xff\xff")  # fill bytes before SOS
    seg(0xDA, bytes([nc]) + b"".join(bytes([comps[c][0], (c << 4) | c]) for c in range(nc)) + b"\x00\x3f\x00")
    acc, nbits, rst = 0, 0, 0

    def flush_bytes():
        nonlocal acc, nbits
        while nbits >= 8:
            b = (acc >> (nbits - 8)) & 0xFF
            out.append(b)
            if b == 0xFF:
                out.append(0)
            nbits -= 8
        acc &= (1 << nbits) - 1

    def pad():
        nonlocal acc, nbits
        if nbits % 8:
            k = 8 - nbits % 8
            acc = (acc << k) | ((1 << k) - 1)
            nbits += k
        flush_bytes()

    for e in events:
        if e is None:
            pad()
            out.extend([0xFF, 0xD0 + rst])
            rst = (rst + 1) & 7
            continue
        c, cls, sym, extra, elen = e
        code, clen = tables[(c, cls)][sym]
        acc = (acc << clen) | code
        acc = (acc << elen) | extra
        nbits += clen + elen
        flush_bytes()
    pad()
    out.extend(b"\xff\xd9")
    return bytes(out)


# ---------------------------------------------------------------- references


def reference(data: bytes) -> np.ndarray:
    """What libjpeg-turbo decodes, colour planes replicated rather than fancy-upsampled."""
    f = parse(data)
    if len(f["comps"]) == 1:
        return ic.jpeg8_decode(data)
    planes = []
    for c, (_, h, v, _) in enumerate(f["comps"]):
        plane = ic.jpeg8_decode(repack(f, comp=c))
        ys = np.arange(f["y"]) * v // f["vmax"]
        xs = np.arange(f["x"]) * h // f["hmax"]
        planes.append(plane[ys][:, xs])
    return np.stack(planes, axis=-1)


def save(name: str, data: bytes, ref: np.ndarray, rows: list, note: str):
    (OUT / f"{name}.jpg").write_bytes(data)
    (OUT / f"{name}.u16").write_bytes(ref.astype("<u2").tobytes())
    sof = "SOF1" if b"\xff\xc1" in data else "SOF0"
    nc = ref.shape[2] if ref.ndim == 3 else 1
    rows.append(f"| `{name}` | {ref.shape[1]}x{ref.shape[0]} | {nc} | {sof} | {len(data)} | {note} |")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    rng = np.random.default_rng(20240612)
    src = ic.png_decode(SOURCE.read_bytes())
    if src.ndim == 3:
        src = src[..., 0]
    crop8 = src[16:113, 4:124].astype(np.float64)  # 97 rows, 120 columns
    gray12 = np.clip(np.round(crop8 * 16 + rng.normal(0, 6, crop8.shape)), 0, 4095).astype(np.uint16)
    gray8 = np.clip(np.round(crop8 + rng.normal(0, 1.5, crop8.shape)), 0, 255).astype(np.uint8)
    rows = []

    q90 = ic.jpeg8_encode(gray12, level=90, bitspersample=12)
    ref90 = ic.jpeg8_decode(q90)
    save("gray12-q90", q90, ref90, rows, "libjpeg-turbo, quality 90 (optimised Huffman tables, as always at 12 bits)")
    q50 = ic.jpeg8_encode(gray12, level=50, bitspersample=12)
    save("gray12-q50", q50, ic.jpeg8_decode(q50), rows, "libjpeg-turbo, quality 50")

    # Re-packed: restart interval 7 (does not divide the 15 blocks of a row), 16-bit DQT,
    # our own Huffman tables, a COM segment and fill bytes. Decodes as gray12-q90.
    rst = repack(parse(q90), restart=7, pq16=True, extras=True)
    assert np.array_equal(ic.jpeg8_decode(rst), ref90)
    (OUT / "gray12-rst.jpg").write_bytes(rst)
    rows.append(f"| `gray12-rst` | 120x97 | 1 | SOF1 | {len(rst)} | gray12-q90 re-packed: DRI 7, 16-bit DQT, COM, fill bytes; reference `gray12-q90.u16` |")

    g8 = ic.jpeg8_encode(gray8, level=85, optimize=False)
    save("gray8-q85", g8, ic.jpeg8_decode(g8), rows, "libjpeg-turbo, quality 85, the standard (annex K) Huffman tables")

    # Colour from the crop: three differently mapped planes.
    def colour(w, h, bits):
        g = crop8[:h, :w] / 255.0
        rgb = np.stack([g, g[:, ::-1] ** 0.7, 0.5 * g + 0.5 * np.linspace(0, 1, w)[None, :]], -1)
        m = (1 << bits) - 1
        return np.clip(np.round(rgb * m + rng.normal(0, m / 400, rgb.shape)), 0, m).astype(np.uint16 if bits > 8 else np.uint8)

    c12 = ic.jpeg8_encode(colour(64, 45, 12), level=90, bitspersample=12, colorspace="RGB", outcolorspace="YCbCr", subsampling="420")
    ref = reference(c12)
    save("ycc12-420", c12, ref, rows, "libjpeg-turbo RGB -> YCbCr 4:2:0, quality 90; reference: planes replicated")
    c12r = repack(parse(c12), restart=3)
    assert np.array_equal(ic.jpeg8_decode(c12r, colorspace="YCbCr", outcolorspace="YCbCr"), ic.jpeg8_decode(c12, colorspace="YCbCr", outcolorspace="YCbCr"))
    (OUT / "ycc12-420-rst.jpg").write_bytes(c12r)
    rows.append(f"| `ycc12-420-rst` | 64x45 | 3 | SOF1 | {len(c12r)} | ycc12-420 re-packed with DRI 3 (interleaved MCUs); reference `ycc12-420.u16` |")

    c8 = ic.jpeg8_encode(colour(50, 37, 8), level=80, colorspace="RGB", outcolorspace="YCbCr", subsampling="422")
    save("ycc8-422", c8, reference(c8), rows, "libjpeg-turbo RGB -> YCbCr 4:2:2, quality 80; reference: planes replicated")

    # Check the component-wise reference on a stream without subsampling (not written).
    c444 = ic.jpeg8_encode(colour(50, 37, 8), level=80, colorspace="RGB", outcolorspace="YCbCr", subsampling="444")
    assert np.array_equal(reference(c444), ic.jpeg8_decode(c444, colorspace="YCbCr", outcolorspace="YCbCr"))

    (OUT / "README.md").write_text(
        "# Sequential DCT JPEG streams (12- and 8-bit)\n\n"
        "Test data for `src/io/dicom/jpeg12.rs`, made by `tools/make_jpeg12_fixtures.py` (see its\n"
        "header for how). `NAME.jpg` is a stream; `NAME.u16` is libjpeg-turbo's decode of it (islow\n"
        "IDCT), every sample a little-endian u16, row-major, components interleaved; colour streams\n"
        "stay YCbCr with chroma replicated to the full size (not libjpeg's fancy upsampling).\n\n"
        "| file | size | components | frame | bytes | what |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "Pixels: a crop of `fixtures/cxr-lite/images/MCUCXR_0001_0.png` (Montgomery County chest\n"
        "X-ray set, U.S. National Library of Medicine) with mild Gaussian noise.\n"
    )
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total} bytes")


if __name__ == "__main__":
    main()
