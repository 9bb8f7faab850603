#!/usr/bin/env python3
"""Make the JPEG-LS test streams of crema's decoder (src/io/dicom/jpeg_ls.rs) with CharLS.

Writes fixtures/jpegls/: for each case <name>.jls (a JPEG-LS stream written by CharLS, the
reference JPEG-LS codec) and <name>.u16 (the samples it must decode to: little-endian u16,
row-major, components interleaved), plus manifest.txt (one line per case: name, width, height,
components, precision, and what it covers) and README.md. Lossless cases expect the source
samples (and the script checks CharLS decodes them back exactly); near-lossless ones expect
CharLS's own decode (checked to be within NEAR of the source), so crema's tests check
bit-exactness with CharLS. It also writes fixtures/dicom/expected/jpeg_ls.values.npy and
jpeg_ls.display.png for fixtures/dicom/jpeg_ls.dcm (the values CharLS decodes from its pixel
data, and the display tools/dicom_fixtures.py's rules give for its window), which
tools/dicom_fixtures.py would write too.

Needs `pip install imagecodecs numpy` (imagecodecs bundles CharLS; made with imagecodecs
2026.3.6, CharLS 2.4.3, numpy 2.4.6). Cases imagecodecs' own API cannot make (interleave
modes, preset thresholds, comments, the HP colour transform) call the CharLS library that
imagecodecs ships through ctypes. CharLS writes no restart markers, so the restart cases are
spliced from strips CharLS encoded separately (a restart interval is coded as a scan of its
own, T.87 / CharLS: statistics, run index and the line above reset), and CharLS must decode
the spliced stream back to the source. CI does not run this script; its output is committed.

Run from the repository root:

    python tools/make_jpegls_fixtures.py [/path/to/shared/data]

The 12-bit and colour images are crops of Montgomery County chest X-rays (U.S. National
Library of Medicine) from the shared cxr-lungs data set (montgomery/images/MCUCXR_0001_0.png
and MCUCXR_0002_0.png, 512 x 512, 8-bit); the default data path is ../shared/data next to the
repository. Everything else is synthetic, from fixed seeds.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from pathlib import Path

import imagecodecs
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "jpegls"
DICOM = ROOT / "fixtures" / "dicom"
SEED = 20250611


# --------------------------------------------------------------------------------------------
# CharLS through ctypes (the C API of CharLS 2.x)


class FrameInfo(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("bits_per_sample", ctypes.c_int32),
        ("component_count", ctypes.c_int32),
    ]


class PcParameters(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_int32)
        for n in ("maximum_sample_value", "threshold1", "threshold2", "threshold3", "reset_value")
    ]


def charls() -> ctypes.CDLL:
    here = Path(imagecodecs.__file__).resolve().parent
    found = glob.glob(str(here.parent / "imagecodecs.libs" / "libcharls*")) + glob.glob(
        str(here / "libcharls*")
    )
    if not found:
        sys.exit("the CharLS library that imagecodecs bundles was not found")
    lib = ctypes.CDLL(found[0])
    lib.charls_jpegls_encoder_create.restype = ctypes.c_void_p
    lib.charls_get_version_string.restype = ctypes.c_char_p
    return lib


LIB = charls()


def encode(
    a: np.ndarray,
    bits: int,
    near: int = 0,
    ilv: int = 0,
    preset: tuple[int, int, int, int, int] | None = None,
    comment: bytes | None = None,
    app: tuple[int, bytes] | None = None,
    transform: int = 0,
) -> bytes:
    """CharLS's JPEG-LS stream of a (rows, cols) or (rows, cols, components) array."""
    h, w = a.shape[:2]
    nc = a.shape[2] if a.ndim == 3 else 1
    e = ctypes.c_void_p(LIB.charls_jpegls_encoder_create())

    def ok(rc: int, what: str) -> None:
        assert rc == 0, f"CharLS {what}: error {rc}"

    try:
        ok(LIB.charls_jpegls_encoder_set_frame_info(e, ctypes.byref(FrameInfo(w, h, bits, nc))), "frame")
        ok(LIB.charls_jpegls_encoder_set_near_lossless(e, ctypes.c_int32(near)), "near")
        ok(LIB.charls_jpegls_encoder_set_interleave_mode(e, ctypes.c_int32(ilv)), "interleave")
        if preset is not None:
            ok(LIB.charls_jpegls_encoder_set_preset_coding_parameters(e, ctypes.byref(PcParameters(*preset))), "preset")
        if transform:
            ok(LIB.charls_jpegls_encoder_set_color_transformation(e, ctypes.c_int32(transform)), "transform")
        dst = ctypes.create_string_buffer(a.size * 4 + 4096)
        ok(LIB.charls_jpegls_encoder_set_destination_buffer(e, dst, ctypes.c_size_t(len(dst))), "buffer")
        if comment is not None:
            ok(LIB.charls_jpegls_encoder_write_comment(e, comment, ctypes.c_size_t(len(comment))), "comment")
        if app is not None:
            ok(LIB.charls_jpegls_encoder_write_application_data(e, ctypes.c_int32(app[0]), app[1], ctypes.c_size_t(len(app[1]))), "app")
        src = a if nc == 1 or ilv != 0 else a.transpose(2, 0, 1)  # ILV 0: planes
        src = np.ascontiguousarray(src.astype(np.uint8 if bits <= 8 else "<u2"))
        ok(LIB.charls_jpegls_encoder_encode_from_buffer(e, src.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(src.nbytes), ctypes.c_uint32(0)), "encode")
        n = ctypes.c_size_t()
        ok(LIB.charls_jpegls_encoder_get_bytes_written(e, ctypes.byref(n)), "size")
        return dst.raw[: n.value]
    finally:
        LIB.charls_jpegls_encoder_destroy(e)


def decode(stream: bytes) -> np.ndarray:
    return imagecodecs.jpegls_decode(stream)


# --------------------------------------------------------------------------------------------
# JPEG-LS stream surgery (for restart intervals)


def segments(s: bytes) -> tuple[bytes, bytes, bytes]:
    """(header up to and including the one SOS segment, entropy-coded data, b"\\xff\\xd9")."""
    sos = s.index(b"\xff\xda")
    n = int.from_bytes(s[sos + 2 : sos + 4], "big")
    assert s.endswith(b"\xff\xd9") and s.count(b"\xff\xda") == 1
    return s[: sos + 2 + n], s[sos + 2 + n : -2], s[-2:]


def with_restarts(a: np.ndarray, bits: int, lines: int, **kw) -> bytes:
    """A stream with restart interval `lines`: each interval encoded by CharLS as an image
    of its own, their scan data joined by RST0..RST7 (cyclically), a DRI after the frame."""
    strips = [encode(a[y : y + lines], bits, **kw) for y in range(0, a.shape[0], lines)]
    head, _, eoi = segments(encode(a, bits, **kw))
    sos = head.rindex(b"\xff\xda")
    dri = b"\xff\xdd\x00\x04" + lines.to_bytes(2, "big")
    out = head[:sos] + dri + head[sos:]
    for i, strip in enumerate(strips):
        if i:
            out += bytes([0xFF, 0xD0 + (i - 1) % 8])
        out += segments(strip)[1]
    return out + eoi


# --------------------------------------------------------------------------------------------
# source images


def cxr(data: Path, name: str) -> np.ndarray:
    png = data / "cxr-lungs" / "montgomery" / "images" / f"{name}.png"
    a = imagecodecs.png_decode(png.read_bytes())
    assert a.shape == (512, 512) and a.dtype == np.uint8, a.shape
    return a


def to_bits(a8: np.ndarray, bits: int, rng) -> np.ndarray:
    """8-bit to `bits` bits with noise in the new low bits, black (0) left flat for runs."""
    shift = bits - 8
    noise = rng.integers(0, 1 << shift, a8.shape)
    v = (a8.astype(np.int64) << shift) + np.where(a8 == 0, 0, noise)
    return v.astype(np.uint16)


def runs_image(w: int, h: int, rng) -> np.ndarray:
    """Flat areas in several levels: runs reaching the line end, interrupted by a sample like
    the one above (RItype 1) or not (RItype 0), single odd pixels, noisy stretches."""
    a = np.full((h, w), 40, dtype=np.int64)
    a[:, w // 2 :] = 200
    a[h // 3 : 2 * h // 3, 5:17] = 90
    a[2 * h // 3 :, :] = 120
    for _ in range(25):
        a[rng.integers(0, h), rng.integers(0, w)] = rng.integers(0, 256)
    a[3, :] = rng.integers(0, 256, w)  # a noisy line
    a[7:9, 20:30] = 201  # +1 from its surroundings
    a[h - 1, w - 1] = 0  # interruption at the very last sample
    return a.astype(np.uint8)


# --------------------------------------------------------------------------------------------


def main() -> int:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    rng = np.random.default_rng(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    x1 = cxr(data, "MCUCXR_0001_0")
    x2 = cxr(data, "MCUCXR_0002_0")
    cases = []

    def add(name: str, a: np.ndarray, bits: int, stream: bytes, note: str, near: int = 0, want=None):
        got = decode(stream)
        got = got.reshape(a.shape)
        if want is None:
            if near == 0:
                assert np.array_equal(got, a), f"{name}: CharLS does not decode its stream back"
                want = a
            else:
                err = np.abs(got.astype(np.int64) - a.astype(np.int64)).max()
                assert err <= near, f"{name}: error {err} above NEAR {near}"
                assert not np.array_equal(got, a), f"{name}: near-lossless changed nothing"
                want = got
        (OUT / f"{name}.jls").write_bytes(stream)
        (OUT / f"{name}.u16").write_bytes(np.ascontiguousarray(want).astype("<u2").tobytes())
        h, w = a.shape[:2]
        nc = a.shape[2] if a.ndim == 3 else 1
        cases.append((name, w, h, nc, bits, note))
        print(f"{name:16s} {w:4d}x{h:<4d}x{nc} P{bits:<2d} {len(stream):6d} B  {note}")

    # Gray, lossless.
    g8 = x1[300:348, 200:264]
    add("gray8", g8, 8, imagecodecs.jpegls_encode(g8),
        "8-bit gray 64x48 lossless (imagecodecs' own API: a SPIFF header in APP8)")
    g12 = to_bits(x1[10:106, 0:128], 12, rng)
    add("gray12", g12, 12, encode(g12, 12),
        "12-bit gray 128x96 lossless: a chest X-ray crop with its black border (runs) and noise")
    g16 = to_bits(x2[200:240, 100:148], 16, rng)
    g16[0, :5] = [65535, 0, 65535, 0, 65535]  # modular wrap-around of the errors
    g16[-1, -4:] = 65535
    add("gray16", g16, 16, encode(g16, 16), "16-bit gray 48x40 lossless, extremes 0 and 65535")

    # Near-lossless: CharLS's decode is the expectation.
    add("near8", g8, 8, encode(g8, 8, near=3), "8-bit gray NEAR=3", near=3)
    n12 = g12[:48, :64]
    add("near12", n12, 12, encode(n12, 12, near=2), "12-bit gray 64x48 NEAR=2", near=2)
    add("near16", g16, 16, encode(g16, 16, near=7), "16-bit gray NEAR=7", near=7)

    # Runs, odd sizes.
    r = runs_image(37, 23, rng)
    add("runs37x23", r, 8, encode(r, 8), "8-bit 37x23 flat areas: runs to the line end, both interruption types")
    add("runs37x23_near2", r, 8, encode(r, 8, near=2), "the same NEAR=2", near=2)
    flat = np.full((5, 300), 77, dtype=np.uint8)
    flat[2, 150] = 78
    add("flat300x5", flat, 8, encode(flat, 8), "runs 300 wide: RUNindex climbs, partial chunks at line ends")
    # The longest runs: 65535 x 2 zeros but the last sample 200 (a flat first line is in run
    # mode only at 0, its line above). Line 0 takes RUNindex to 31 (J = 15) and ends in a
    # partial chunk; line 1 completes a 32768 chunk at RUNindex 31 (which stays 31), then a
    # run of 32766 and an interruption coding the 200 with the limit LIMIT - 16. The
    # expectation is too big for a .u16 file (256 KB): the test knows it, so this stream is
    # not in manifest.txt.
    longest = np.zeros((2, 65535), dtype=np.uint8)
    longest[1, -1] = 200
    ls = encode(longest, 8)
    assert np.array_equal(decode(ls), longest)
    (OUT / "longest_runs.jls").write_bytes(ls)
    print(f"{'longest_runs':16s} 65535x2    x1 P8  {len(ls):6d} B  0s, then 200 (not in the manifest)")
    add("one", np.array([[201]], dtype=np.uint8), 8, encode(np.array([[201]], dtype=np.uint8), 8), "1x1")
    col = rng.integers(0, 1024, (17, 1)).astype(np.uint16)
    col[5:9] = 300
    add("column1x17", col, 10, encode(col, 10), "width 1, 10-bit")
    row = np.concatenate([np.full(10, 3), rng.integers(0, 32, 19)]).astype(np.uint8).reshape(1, 29)
    add("row29x1", row, 5, encode(row, 5), "height 1, 5-bit")

    # Low precisions: the MAXVAL < 128 default thresholds.
    for bits, near in ((2, 0), (4, 0), (6, 1), (7, 0)):
        a = (to_bits(x1[150:170, 300:331], 8, rng) >> (8 - bits)).astype(np.uint8)
        a[:3, :] = a[0, 0]
        name = f"low{bits}" + (f"_near{near}" if near else "")
        add(name, a, bits, encode(a, bits, near=near), f"{bits}-bit gray 31x20" + (f" NEAR={near}" if near else ""), near=near)

    # LSE preset parameters.
    p12 = g12[40:80, 30:90]
    add("preset12", p12, 12, encode(p12, 12, preset=(0, 5, 12, 40, 16)),
        "12-bit with LSE T1=5 T2=12 T3=40 RESET=16")
    m = np.minimum(p12, 3000)
    add("maxval3000", m, 12, encode(m, 12, preset=(3000, 0, 0, 0, 0)),
        "12-bit with LSE MAXVAL=3000, default thresholds for it")
    add("maxval3000_near1", m, 12, encode(m, 12, near=1, preset=(3000, 0, 0, 0, 0)),
        "the same NEAR=1 (RANGE from MAXVAL)", near=1)

    # Colour, 8-bit: the three interleave modes.
    rgb = np.stack([x1[250:274, 300:336], x2[250:274, 300:336], x1[250:274, 336:300:-1]], axis=-1)
    rgb[:6, :12] = (10, 20, 30)  # flat in all components
    rgb[18:, 28:] = (10, 200, 30)
    for ilv in (0, 1, 2):
        add(f"rgb_ilv{ilv}", rgb, 8, encode(rgb, 8, ilv=ilv), f"8-bit RGB 36x24 ILV {ilv}")
    add("rgb_ilv2_near2", rgb, 8, encode(rgb, 8, ilv=2, near=2), "8-bit RGB ILV 2 NEAR=2", near=2)
    add("rgb_ilv1_near1", rgb, 8, encode(rgb, 8, ilv=1, near=1), "8-bit RGB ILV 1 NEAR=1", near=1)
    add("rgb_imagecodecs", rgb, 8, imagecodecs.jpegls_encode(rgb),
        "8-bit RGB through imagecodecs' own API (its default interleave, SPIFF header)")

    # Restart intervals (spliced, see the header); 12 intervals so RSTm wraps.
    rs = g12[:45, :50]
    add("restart12", rs, 12, with_restarts(rs, 12, 4), "12-bit 50x45, DRI 4 lines: RST0..RST7 wrap")
    add("restart12_near2", rs, 12, with_restarts(rs, 12, 5, near=2), "the same NEAR=2, DRI 5", near=2)
    rr = rgb[:23]
    add("restart_rgb_ilv1", rr, 8, with_restarts(rr, 8, 3, ilv=1), "RGB ILV 1, DRI 3 lines")
    add("restart_rgb_ilv2", rr, 8, with_restarts(rr, 8, 7, ilv=2), "RGB ILV 2, DRI 7 lines")

    # Segments a decoder must skip, and one it must refuse.
    add("comments", g8[:10, :12], 8,
        encode(g8[:10, :12], 8, comment=b"crema JPEG-LS fixture", app=(3, b"application data")),
        "COM and APP3 segments before the frame")
    hp = encode(rgb[:4, :5], 8, ilv=2, transform=1)
    (OUT / "hp1.jls").write_bytes(hp)
    print(f"{'hp1':16s} (refused: HP1 colour transform, APP8 mrfx) {len(hp)} B")

    with open(OUT / "manifest.txt", "w") as f:
        f.write("# name width height components precision: what it covers\n")
        for name, w, h, nc, bits, note in cases:
            f.write(f"{name} {w} {h} {nc} {bits}: {note}\n")
    total = sum(p.stat().st_size for p in OUT.glob("*"))
    with open(OUT / "README.md", "w") as f:
        f.write(
            "# JPEG-LS fixtures\n\n"
            "Made by `tools/make_jpegls_fixtures.py` with CharLS "
            f"{LIB.charls_get_version_string().decode()} (through imagecodecs {imagecodecs.__version__}); "
            "generated, do not edit. `<name>.jls` is the stream, `<name>.u16` the samples it decodes "
            "to (little-endian u16, row-major, components interleaved): the source for lossless "
            "cases, CharLS's own decode for near-lossless ones. `manifest.txt` lists the cases; "
            "`hp1.jls` uses CharLS's HP1 colour transform, which crema refuses; `longest_runs.jls` (65535 x 2 "
            "zeros, the last sample 200) has no `.u16`, the test knows its samples. The restart cases are "
            "spliced from strips CharLS encoded (it writes no restart markers) and checked to decode "
            "back with CharLS. Chest X-ray crops: Montgomery County set (NLM), MCUCXR_0001_0 and "
            "MCUCXR_0002_0.\n"
        )
    dicom_expected()
    print(f"total {total} bytes in {OUT}")
    return 0


def dicom_expected() -> None:
    """expected/ files for fixtures/dicom/jpeg_ls.dcm: 16/12-bit MONOCHROME2, window 2000/3000
    (LINEAR), no rescale; its codestream is the one JPEG stream in the file."""
    b = (DICOM / "jpeg_ls.dcm").read_bytes()
    start, end = b.index(b"\xff\xd8\xff"), b.rindex(b"\xff\xd9") + 2
    v = decode(b[start:end]).astype(np.int32)
    assert v.shape == (32, 41), v.shape
    np.save(DICOM / "expected" / "jpeg_ls.values.npy", v.astype("<i4"))
    c, w = 2000.0, 3000.0
    m = v.astype(np.float64)
    out = ((m - (c - 0.5)) / (w - 1) + 0.5) * 255
    out = np.where(m <= c - 0.5 - (w - 1) / 2, 0.0, out)
    out = np.where(m > c - 0.5 + (w - 1) / 2, 255.0, out)
    disp = np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
    (DICOM / "expected" / "jpeg_ls.display.png").write_bytes(imagecodecs.png_encode(disp))
    print(f"fixtures/dicom/expected/jpeg_ls.*: values {int(v.min())}..{int(v.max())}")


if __name__ == "__main__":
    sys.exit(main())
