#!/usr/bin/env python3
"""Generate crema's DICOM reader fixtures: fixtures/dicom/*.dcm, expected/ and manifest.json.

Environment (the versions the committed fixtures were made with):

    python3 -m venv /tmp/dcmpy
    /tmp/dcmpy/bin/pip install pydicom==3.0.2 python-gdcm==3.2.6 pylibjpeg==2.1.0 \
        pylibjpeg-libjpeg==2.5.0 pylibjpeg-openjpeg==2.6.0 numpy pillow

(the committed files were made with numpy 2.4.6 and pillow 13.0.0, i.e. libjpeg-turbo 3.2.0 for
jpeg_baseline_rgb; other versions may change compressed bytes).

Run from the repository root (rewrites everything under fixtures/dicom/, README.md included):

    /tmp/dcmpy/bin/python tools/dicom_fixtures.py     # or `python tools/dicom_fixtures.py`
                                                      # with that venv activated

Pixels come from two 128x128 Montgomery County chest X-rays in fixtures/cxr-lite/images/,
resized to small non-square frames (ROWS x COLS below) so that a transposed read shows.
Everything is deterministic: fixed seeds, UIDs derived from the fixture name, fixed dates.
Rerunning rewrites identical bytes as long as the library versions above are used.

For each file the script writes, under fixtures/dicom/expected/:
  <name>.values.npy   frame 0 as pydicom's pixel_array decodes it, int32, (rows, cols) or
                      (rows, cols, 3); compressed data through the gdcm / pylibjpeg plugins,
                      not the one that encoded it (RLE: pydicom's decoder, the only one,
                      cross-checked by GDCM's own reader, as are all native files)
  <name>.display.png  the 8-bit image crema must output, computed by display() below
                      (our own numpy implementation of crema's display rules)
and checks every lossless file decodes back to exactly the source values.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import pixel_array
from pydicom.pixels.processing import apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.dataelem import DataElement
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGBaseline8Bit,
    JPEG2000Lossless,
    JPEG2000,
    JPEGLSLossless,
    generate_uid,
)

import gdcm

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "fixtures" / "cxr-lite" / "images"
OUT = ROOT / "fixtures" / "dicom"
EXP = OUT / "expected"

# Small, because every expectation is an int32 .npy (4 bytes a value) and all fixtures together
# must stay well under 400 KB. Non-square so a transposed read shows; odd widths so rows have
# odd length and JPEG MCUs are partial. Limits: J2K needs >= 32 per side (openjpeg's 6
# resolution levels) and GDCM refuses 8-bit frames of odd total size (padded Pixel Data).
ROWS, COLS = 32, 41  # gray fixtures
RGB_ROWS, RGB_COLS = 26, 34  # colour fixtures (4:2:2 MCUs are 16x8: partial both ways)
SEED = 20240611

SOP_DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
SOP_CT = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
SOP_SC = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
SOP_MF_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root; suffix is a hash of the name


# --------------------------------------------------------------------------------------------
# source pixels


def load_png(name: str) -> np.ndarray:
    a = np.array(Image.open(SRC / f"{name}.png").convert("L"))
    assert a.shape == (128, 128) and a.dtype == np.uint8
    return a


def shrink(a8: np.ndarray, rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """Centre-crop the 128x128 image to the rows:cols aspect, then resize (bilinear)."""
    h = round(128 * rows / cols)
    top = (128 - h) // 2
    im = Image.fromarray(a8[top : top + h, :]).resize((cols, rows), Image.BILINEAR)
    return np.array(im, dtype=np.uint8)


def to12(a8: np.ndarray, seed: int) -> np.ndarray:
    """v12 = v8*16 + noise(0..15): 12-bit values whose low bits matter."""
    rng = np.random.default_rng(seed)
    return (a8.astype(np.uint16) * 16 + rng.integers(0, 16, a8.shape, dtype=np.uint16)).astype(
        np.uint16
    )


# --------------------------------------------------------------------------------------------
# datasets


def uid(name: str, what: str) -> UID:
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=["crema dicom fixtures", name, what])


def new_ds(
    name: str,
    rows: int,
    cols: int,
    *,
    photometric: str = "MONOCHROME2",
    samples: int = 1,
    bits_allocated: int = 16,
    bits_stored: int = 12,
    signed: bool = False,
    sop_class: str = SOP_DX,
    modality: str = "DX",
    patient: str = "MCUCXR_0001_0",
) -> Dataset:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = uid(name, "sop")
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = fm.MediaStorageSOPInstanceUID
    ds.StudyDate = "20240611"
    ds.StudyTime = "120000"
    ds.Modality = modality
    ds.SeriesDescription = name
    ds.PatientName = "CREMA^FIXTURE"
    ds.PatientID = patient
    ds.StudyInstanceUID = uid("study", "study")
    ds.SeriesInstanceUID = uid(name, "series")
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    return ds


def set_native(ds: Dataset, arr: np.ndarray, big_endian: bool = False) -> None:
    """Native (uncompressed) Pixel Data from arr (frames, rows, cols[, 3]) or (rows, cols[, 3])."""
    if ds.BitsAllocated == 8:
        data = arr.astype(np.uint8).tobytes()
        vr = "OB"
    else:
        data = arr.astype(">u2" if big_endian else "<u2").tobytes()
        vr = "OW"
    if len(data) % 2:
        data += b"\0"
    ds.PixelData = data
    ds["PixelData"].VR = vr


def set_window(ds: Dataset, center, width, function: str | None = None) -> None:
    ds.WindowCenter = center
    ds.WindowWidth = width
    if function:
        ds.VOILUTFunction = function


def set_rescale(ds: Dataset, slope, intercept, kind: str = "US") -> None:
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = slope
    ds.RescaleType = kind


def set_encapsulated(ds: Dataset, frames: list[bytes], ts: str) -> None:
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def mark_lossy(ds: Dataset, ratio: float, method: str) -> None:
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = f"{ratio:.2f}"
    ds.LossyImageCompressionMethod = method


def write(ds: Dataset, name: str, ts: str | None = None) -> Path:
    if ts is not None:
        ds.file_meta.TransferSyntaxUID = ts
    path = OUT / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------------------------
# encoders other than pydicom's own


def gdcm_encode(ds: Dataset, ts: str, codec=None) -> list[bytes]:
    """Encode ds's native pixel data to `ts` with GDCM; return the frames' codestreams."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.dcm"), os.path.join(tmp, "out.dcm")
        plain = ds.copy()
        plain.file_meta = ds.file_meta.copy()
        plain.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        plain.save_as(src, enforce_file_format=True)
        r = gdcm.ImageReader()
        r.SetFileName(src)
        assert r.Read(), "gdcm could not read its input"
        ch = gdcm.ImageChangeTransferSyntax()
        ch.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(ts)))
        ch.SetInput(r.GetImage())
        if codec is not None:
            ch.SetUserCodec(codec)
        assert ch.Change(), f"gdcm could not encode {ts}"
        w = gdcm.ImageWriter()
        w.SetFileName(dst)
        w.SetFile(r.GetFile())
        w.SetImage(ch.GetOutput())
        assert w.Write()
        out = pydicom.dcmread(dst)
        assert out.file_meta.TransferSyntaxUID == ts, out.file_meta.TransferSyntaxUID
        nf = int(ds.get("NumberOfFrames", 1))
        return list(generate_frames(out.PixelData, number_of_frames=nf))


def pillow_jpeg_422(rgb: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG, YCbCr with 4:2:2 chroma (H=2, V=1): what YBR_FULL_422 means."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=quality, subsampling=1, optimize=False)
    return buf.getvalue()


def jpeg_lossless_encode(a: np.ndarray, precision: int, predictor: int) -> bytes:
    """A plain ITU T.81 process-14 (SOF3) encoder, one component, any predictor 1..7, Pt = 0.

    GDCM only writes selection value 1, so this exists to give crema a process-14 file with a
    different predictor. Its output is checked below against two independent decoders
    (pylibjpeg-libjpeg and GDCM through pydicom) before it is used.
    """
    x = a.astype(np.int64)
    rows, cols = x.shape
    pred = np.zeros_like(x)
    ra = np.zeros_like(x)
    rb = np.zeros_like(x)
    rc = np.zeros_like(x)
    ra[:, 1:] = x[:, :-1]
    rb[1:, :] = x[:-1, :]
    rc[1:, 1:] = x[:-1, :-1]
    p = {
        1: ra,
        2: rb,
        3: rc,
        4: ra + rb - rc,
        5: ra + ((rb - rc) >> 1),
        6: rb + ((ra - rc) >> 1),
        7: (ra + rb) >> 1,
    }[predictor]
    pred[:] = p
    pred[0, 1:] = x[0, :-1]  # first line: Ra
    pred[1:, 0] = x[:-1, 0]  # first column: Rb
    pred[0, 0] = 1 << (precision - 1)
    diff = x - pred
    diff = ((diff + 32768) % 65536) - 32768  # modulo 2^16 (no effect for <= 15-bit data)
    mag = np.abs(diff)
    ssss = np.zeros_like(mag)
    nz = mag > 0
    ssss[nz] = np.floor(np.log2(mag[nz])).astype(np.int64) + 1
    # Huffman table from the category histogram (code lengths by the usual merge; a dummy
    # symbol keeps the all-ones code unused, T.81 K.2)
    import heapq

    freq = {int(s): int(n) for s, n in zip(*np.unique(ssss, return_counts=True))}
    heap = [(n, i, [s]) for i, (s, n) in enumerate(sorted(freq.items()))]
    heap.append((0, len(heap), [-1]))  # dummy
    heapq.heapify(heap)
    length = {s: 0 for s in list(freq) + [-1]}
    uniq = len(heap)
    while len(heap) > 1:
        n1, _, s1 = heapq.heappop(heap)
        n2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            length[s] += 1
        heapq.heappush(heap, (n1 + n2, uniq, s1 + s2))
        uniq += 1
    assert max(length.values()) <= 16
    syms = sorted((l, s) for s, l in length.items() if s >= 0)
    code, codes, prev_len = 0, {}, syms[0][0]
    counts = [0] * 16
    for l, s in syms:
        code <<= l - prev_len
        prev_len = l
        codes[s] = (code, l)
        counts[l - 1] += 1
        code += 1
    # entropy-coded segment
    bits: list[str] = []
    for d, s in zip(diff.ravel().tolist(), ssss.ravel().tolist()):
        c, l = codes[s]
        bits.append(format(c, f"0{l}b"))
        if 0 < s < 16:
            v = d if d > 0 else d - 1
            bits.append(format(v & ((1 << s) - 1), f"0{s}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    ecs = bytearray()
    for i in range(0, len(stream), 8):
        b = int(stream[i : i + 8], 2)
        ecs.append(b)
        if b == 0xFF:
            ecs.append(0)

    def seg(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    sof = bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    dht = bytes([0x00]) + bytes(counts) + bytes(s for _, s in syms)
    sos = bytes([1, 1, 0x00, predictor, 0, 0])
    return b"\xff\xd8" + seg(0xC3, sof) + seg(0xC4, dht) + seg(0xDA, sos) + bytes(ecs) + b"\xff\xd9"


def rgb_to_ybr_full(rgb: np.ndarray) -> np.ndarray:
    """PS3.3 C.7.6.3.1.2 YBR_FULL from RGB, rounded and clamped to 8 bits."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    out = np.stack([y, cb, cr], axis=-1)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# crema's display rules, implemented independently of pydicom's VOI code


def rnd(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def display(ds: Dataset, v: np.ndarray, raw: np.ndarray | None) -> np.ndarray:
    """v: frame 0 stored values (int, sign-extended). raw: frame 0 before any YBR->RGB."""
    pi = ds.PhotometricInterpretation
    if int(ds.SamplesPerPixel) == 3:
        if pi == "YBR_FULL":
            y, cb, cr = (raw[..., i].astype(np.float64) for i in range(3))
            r = y + 1.402 * (cr - 128)
            g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
            b = y + 1.772 * (cb - 128)
            return rnd(np.stack([r, g, b], axis=-1))
        # RGB, or JPEG baseline YBR_FULL_422 which the JPEG decoder returns as RGB
        return rnd(v.astype(np.float64))
    has_rescale = "RescaleSlope" in ds or "RescaleIntercept" in ds
    m = v.astype(np.float64)
    if has_rescale:
        m = m * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        item = ds.VOILUTSequence[0]
        n, first, bits = (int(x) for x in item.LUTDescriptor)
        if n == 0:
            n = 65536
        if int(ds.PixelRepresentation) == 1 and first >= 32768:
            first -= 65536
        lut = np.asarray(item.LUTData, dtype=np.float64).ravel()
        assert lut.size == n
        idx = np.clip(np.floor(m).astype(np.int64) - first, 0, n - 1)
        out = lut[idx] * 255.0 / (2**bits - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        c = ds.WindowCenter
        w = ds.WindowWidth
        c = float(c[0] if isinstance(c, (list, pydicom.multival.MultiValue)) else c)
        w = float(w[0] if isinstance(w, (list, pydicom.multival.MultiValue)) else w)
        fn = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        if fn == "LINEAR":
            out = ((m - (c - 0.5)) / (w - 1) + 0.5) * 255
            out = np.where(m <= c - 0.5 - (w - 1) / 2, 0.0, out)
            out = np.where(m > c - 0.5 + (w - 1) / 2, 255.0, out)
        elif fn == "LINEAR_EXACT":
            out = ((m - c) / w + 0.5) * 255
            out = np.where(m <= c - w / 2, 0.0, out)
            out = np.where(m > c + w / 2, 255.0, out)
        elif fn == "SIGMOID":
            out = 255 / (1 + np.exp(-4 * (m - c) / w))
        else:
            raise ValueError(fn)
    elif int(ds.BitsStored) == 8 and int(ds.PixelRepresentation) == 0 and not has_rescale:
        out = v.astype(np.float64)
    else:
        lo, hi = m.min(), m.max()
        out = np.zeros_like(m) if hi == lo else (m - lo) / (hi - lo) * 255
    d = rnd(out)
    if pi == "MONOCHROME1":
        d = 255 - d
    return d


def pydicom_display(ds: Dataset, v: np.ndarray) -> np.ndarray | None:
    """pydicom's own VOI result scaled to 8 bits; only a sanity check, never the expectation."""
    if int(ds.SamplesPerPixel) != 1:
        return None
    if not ("VOILUTSequence" in ds or "WindowCenter" in ds):
        return None
    from pydicom.pixels.processing import apply_modality_lut

    m = apply_modality_lut(v, ds) if "RescaleSlope" in ds else v
    y = apply_voi_lut(m, ds)
    if "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = y.astype(np.float64) * 255 / (2**bits - 1)
    else:
        bs = int(ds.BitsStored)
        if int(ds.PixelRepresentation) == 0:
            lo, hi = 0.0, 2.0**bs - 1
        else:
            lo, hi = -(2.0 ** (bs - 1)), 2.0 ** (bs - 1) - 1
        if "RescaleSlope" in ds:
            s, i = float(ds.RescaleSlope), float(ds.RescaleIntercept)
            lo, hi = lo * s + i, hi * s + i
        out = (y - lo) / (hi - lo) * 255
    d = rnd(out)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        d = 255 - d
    return d


# --------------------------------------------------------------------------------------------
# the fixtures


def build() -> list[dict]:
    """Write every .dcm; return one record per file (name, notes, source frame 0)."""
    img1 = load_png("MCUCXR_0001_0")
    img2 = load_png("MCUCXR_0002_0")
    a8 = shrink(img1)  # (ROWS, COLS) 8-bit
    b8 = shrink(img2)
    a12 = to12(a8, SEED + 1)
    b12 = to12(b8, SEED + 2)
    c1, c2 = shrink(img1, RGB_ROWS, RGB_COLS), shrink(img2, RGB_ROWS, RGB_COLS)
    rgb = np.stack([c1, c2, c1[:, ::-1]], axis=-1)  # distinct channels: swaps show
    R, C = ROWS, COLS
    recs: list[dict] = []

    def rec(name, ds, src, note, lossy=False, expect="read", ts=None):
        recs.append(
            dict(name=name, ds=ds, src=src, note=note, lossy=lossy, expect=expect,
                 ts=str(ts or ds.file_meta.TransferSyntaxUID))
        )

    # 1 ---------------------------------------------------------------------------------------
    n = "explicit_le_mono2_12bit"
    ds = new_ds(n, R, C)
    set_window(ds, "2000", "3000")
    set_rescale(ds, "1", "0")
    set_native(ds, a12)
    write(ds, n, ExplicitVRLittleEndian)
    rec(n, ds, a12, "Explicit VR LE, 16/12-bit MONOCHROME2, window 2000/3000, rescale 1/0")

    # 2 ---------------------------------------------------------------------------------------
    n = "implicit_le_mono1"
    ds = new_ds(n, R, C, photometric="MONOCHROME1")
    inv = (4095 - a12).astype(np.uint16)
    set_window(ds, "2095", "3000")
    set_native(ds, inv)
    write(ds, n, ImplicitVRLittleEndian)
    rec(n, ds, inv, "Implicit VR LE, MONOCHROME1 (stored 4095 - v12), window 2095/3000")

    # 3 ---------------------------------------------------------------------------------------
    n = "explicit_be"
    ds = new_ds(n, R, C, bits_stored=16)
    rng = np.random.default_rng(SEED + 3)
    a16 = (a8.astype(np.uint32) * 256 + rng.integers(0, 256, a8.shape)).astype(np.uint16)
    set_window(ds, "32768", "48000")
    set_native(ds, a16, big_endian=True)
    write(ds, n, ExplicitVRBigEndian)
    rec(n, ds, a16, "Explicit VR Big Endian (retired), 16/16-bit, window 32768/48000")

    # 4 ---------------------------------------------------------------------------------------
    n = "deflated"
    ds = new_ds(n, R, C, patient="MCUCXR_0002_0")
    set_window(ds, ["2000", "1200"], ["3000", "800"])
    set_native(ds, b12)
    write(ds, n, DeflatedExplicitVRLittleEndian)
    rec(n, ds, b12, "Deflated Explicit VR LE, 16/12-bit, two windows (2000/3000 first, 1200/800)")

    # 5 ---------------------------------------------------------------------------------------
    n = "rle_16bit"
    ds = new_ds(n, R, C)
    set_window(ds, "2000", "3000")
    set_native(ds, a12)
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    write(ds, n)
    rec(n, ds, a12, "RLE Lossless (pydicom encoder), 16/12-bit MONOCHROME2, window 2000/3000")

    # 6 ---------------------------------------------------------------------------------------
    n = "rle_rgb"
    ds = new_ds(n, RGB_ROWS, RGB_COLS, photometric="RGB", samples=3, bits_allocated=8, bits_stored=8,
                sop_class=SOP_SC, modality="OT")
    set_native(ds, rgb)
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    write(ds, n)
    rec(n, ds, rgb, "RLE Lossless (pydicom encoder), 8-bit RGB, 3 segments")

    # 7 ---------------------------------------------------------------------------------------
    n = "jpeg_ll_sv1_16bit"
    ds = new_ds(n, R, C)
    set_window(ds, "2000", "3000")
    set_native(ds, a12)
    set_encapsulated(ds, gdcm_encode(ds, JPEGLosslessSV1), JPEGLosslessSV1)
    write(ds, n)
    rec(n, ds, a12, "JPEG Lossless SV1 (GDCM), 16/12-bit (GDCM writes SOF3 P=16), window 2000/3000")

    # 8 ---------------------------------------------------------------------------------------
    n = "jpeg_ll_p14"
    ds = new_ds(n, R, C, patient="MCUCXR_0002_0")
    set_window(ds, "2000", "3000")
    set_native(ds, b12)
    set_encapsulated(ds, gdcm_encode(ds, JPEGLossless), JPEGLossless)
    write(ds, n)
    rec(n, ds, b12, "JPEG Lossless process 14 UID (GDCM), 16/12-bit; GDCM writes predictor 1")

    # 8b --------------------------------------------------------------------------------------
    n = "jpeg_ll_p14_pred6"
    ds = new_ds(n, R, C)
    set_window(ds, "2000", "3000")
    set_native(ds, a12)
    set_encapsulated(ds, [jpeg_lossless_encode(a12, 12, 6)], JPEGLossless)
    write(ds, n)
    rec(n, ds, a12, "EXTRA: JPEG Lossless process 14 with predictor 6 (this script's encoder), "
        "16/12-bit, window 2000/3000")

    # 9 ---------------------------------------------------------------------------------------
    n = "jpeg_ll_8bit_mono2_nowindow"
    ds = new_ds(n, R, C, bits_allocated=8, bits_stored=8, patient="MCUCXR_0002_0")
    set_native(ds, b8)
    set_encapsulated(ds, gdcm_encode(ds, JPEGLosslessSV1), JPEGLosslessSV1)
    write(ds, n)
    rec(n, ds, b8, "JPEG Lossless SV1 (GDCM), 8-bit MONOCHROME2, no window, no rescale: identity")

    # 10 --------------------------------------------------------------------------------------
    n = "jpeg_baseline_gray"
    ds = new_ds(n, R, C, bits_allocated=8, bits_stored=8)
    set_native(ds, a8)
    codec = gdcm.JPEGCodec()
    codec.SetLossless(False)
    codec.SetQuality(85)
    frames = gdcm_encode(ds, JPEGBaseline8Bit, codec)
    set_encapsulated(ds, frames, JPEGBaseline8Bit)
    mark_lossy(ds, a8.size / len(frames[0]), "ISO_10918_1")
    write(ds, n)
    rec(n, ds, a8, "JPEG Baseline (GDCM, quality 85), 8-bit MONOCHROME2, no window: identity",
        lossy=True)

    # 11 --------------------------------------------------------------------------------------
    n = "jpeg_baseline_rgb"
    ds = new_ds(n, RGB_ROWS, RGB_COLS, photometric="YBR_FULL_422", samples=3, bits_allocated=8, bits_stored=8,
                sop_class=SOP_SC, modality="OT")
    set_native(ds, rgb)  # placeholder, replaced below
    frame = pillow_jpeg_422(rgb, 90)
    set_encapsulated(ds, [frame], JPEGBaseline8Bit)
    mark_lossy(ds, rgb.size / len(frame), "ISO_10918_1")
    write(ds, n)
    rec(n, ds, rgb, "JPEG Baseline (Pillow/libjpeg, quality 90), YCbCr 4:2:2 (H2V1) with JFIF "
        "APP0, Photometric YBR_FULL_422", lossy=True)

    # 12 --------------------------------------------------------------------------------------
    n = "j2k_lossless"
    ds = new_ds(n, R, C)
    set_window(ds, "2000", "3000")
    set_native(ds, a12)
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    write(ds, n)
    rec(n, ds, a12, "JPEG 2000 Lossless (pylibjpeg-openjpeg via pydicom), 16/12-bit, "
        "window 2000/3000")

    # 13 --------------------------------------------------------------------------------------
    n = "j2k_lossy"
    ds = new_ds(n, R, C, patient="MCUCXR_0002_0")
    set_window(ds, "2000", "3000")
    set_native(ds, b12)
    ds.compress(JPEG2000, encoding_plugin="pylibjpeg", generate_instance_uid=False, j2k_cr=[6])
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    mark_lossy(ds, b12.size * 2 / len(frame), "ISO_15444_1")
    write(ds, n)
    rec(n, ds, b12, "JPEG 2000 (lossy, ratio 6, pylibjpeg-openjpeg), 16/12-bit, "
        "window 2000/3000", lossy=True)

    # 14 --------------------------------------------------------------------------------------
    n = "jpeg_ls"
    ds = new_ds(n, R, C)
    set_window(ds, "2000", "3000")
    set_native(ds, a12)
    set_encapsulated(ds, gdcm_encode(ds, JPEGLSLossless), JPEGLSLossless)
    write(ds, n)
    rec(n, ds, a12, "JPEG-LS Lossless (GDCM/CharLS), 16/12-bit (GDCM writes SOF55 P=16 and an LSE "
        "segment: MAXVAL 65535, T1 18, T2 67, T3 276, RESET 64), window 2000/3000")

    # 15 --------------------------------------------------------------------------------------
    n = "signed_ct_like"
    ds = new_ds(n, R, C, signed=True, sop_class=SOP_CT, modality="CT")
    rng = np.random.default_rng(SEED + 15)
    hu = np.floor(a8.astype(np.float64) * 2.5).astype(np.int32) - 200 + rng.integers(0, 4, a8.shape)
    s = hu + 1024  # stored = HU - intercept
    yy, xx = np.mgrid[0:R, 0:C]
    outside = ((yy - (R - 1) / 2) / (R / 2)) ** 2 + ((xx - (C - 1) / 2) / (C / 2)) ** 2 > 1.0
    s[outside] = -2000  # CT-style padding outside a round field of view
    s[0, 0] = -2048  # the most negative 12-bit value
    assert s.min() >= -2048 and s.max() <= 2047
    stored_words = (s & 0x0FFF).astype(np.uint16)  # 12-bit two's complement, bits 12..15 zero
    set_rescale(ds, "1", "-1024", "HU")
    set_window(ds, "40", "400")
    set_native(ds, stored_words)
    write(ds, n, ExplicitVRLittleEndian)
    rec(n, ds, s.astype(np.int32), "Explicit VR LE, signed 16/12-bit, words hold 12-bit two's "
        "complement with bits 12-15 ZERO (sign-extend from bit 11), -2000 padding outside a "
        "round FOV, rescale 1/-1024, window 40/400")

    # 16 --------------------------------------------------------------------------------------
    for n, fn in (("linear_exact", "LINEAR_EXACT"), ("sigmoid", "SIGMOID")):
        ds = new_ds(n, R, C)
        set_window(ds, "1500", "1600", fn)
        set_rescale(ds, "1", "0")
        set_native(ds, a12)
        write(ds, n, ExplicitVRLittleEndian)
        rec(n, ds, a12, f"as explicit_le_mono2_12bit but window 1500/1600 and VOILUTFunction {fn}")

    # 17 --------------------------------------------------------------------------------------
    n = "rescale_slope"
    ds = new_ds(n, R, C)
    set_rescale(ds, "0.5", "100")
    set_window(ds, "1100.5", "1600")
    set_native(ds, a12)
    write(ds, n, ExplicitVRLittleEndian)
    rec(n, ds, a12, "rescale slope 0.5 intercept 100 (m = 100..2147.5), window 1100.5/1600 in "
        "rescaled units")

    # 18 --------------------------------------------------------------------------------------
    n = "voi_lut_seq"
    ds = new_ds(n, R, C)
    set_window(ds, "2000", "3000")  # present but the LUT wins
    first, nlut = 512, 2048  # maps m = 512..2559; values outside clamp to the ends
    x = np.arange(nlut) / (nlut - 1)
    lut = np.floor(4095 * x**0.5 + 0.5).astype(np.uint16)  # gamma 0.5, 12-bit output
    item = Dataset()
    item.LUTDescriptor = [nlut, first, 12]
    item.LUTExplanation = "gamma 0.5"
    item.LUTData = lut.tolist()
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([item])
    set_native(ds, a12)
    write(ds, n, ExplicitVRLittleEndian)
    rec(n, ds, a12, "VOILUTSequence: LUTDescriptor [2048, 512, 12], LUTData (US) gamma 0.5, plus "
        "a window 2000/3000 that the LUT overrides")

    # 19 --------------------------------------------------------------------------------------
    n = "no_window_12bit"
    ds = new_ds(n, R, C, patient="MCUCXR_0002_0")
    set_native(ds, b12)
    write(ds, n, ExplicitVRLittleEndian)
    rec(n, ds, b12, "12-bit, no window, no VOI LUT, no rescale: min-max")

    # 20 --------------------------------------------------------------------------------------
    n = "rgb_planar"
    ds = new_ds(n, RGB_ROWS, RGB_COLS, photometric="RGB", samples=3, bits_allocated=8, bits_stored=8,
                sop_class=SOP_SC, modality="OT")
    ds.PlanarConfiguration = 1
    set_native(ds, np.ascontiguousarray(rgb.transpose(2, 0, 1)))  # RRR..GGG..BBB..
    write(ds, n, ExplicitVRLittleEndian)
    rec(n, ds, rgb, "8-bit RGB native, PlanarConfiguration 1")

    # 21 --------------------------------------------------------------------------------------
    n = "ybr_full"
    ds = new_ds(n, RGB_ROWS, RGB_COLS, photometric="YBR_FULL", samples=3, bits_allocated=8, bits_stored=8,
                sop_class=SOP_SC, modality="OT")
    ybr = rgb_to_ybr_full(rgb)
    set_native(ds, ybr)
    write(ds, n, ExplicitVRLittleEndian)
    rec(n, ds, ybr, "8-bit YBR_FULL native, PlanarConfiguration 0 (made from the RGB image)")

    # 22 --------------------------------------------------------------------------------------
    n = "multiframe"
    ds = new_ds(n, R, C, sop_class=SOP_MF_WORD_SC, modality="OT")
    ds.NumberOfFrames = 2
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = "100"
    set_window(ds, "2000", "3000")
    set_native(ds, np.stack([a12, b12]))
    write(ds, n, ExplicitVRLittleEndian)
    rec(n, ds, a12, "2 frames 16/12-bit (frame 0 = MCUCXR_0001_0, frame 1 = MCUCXR_0002_0), "
        "window 2000/3000; crema reads frame 0")

    # 23 --------------------------------------------------------------------------------------
    n = "no_preamble"
    ds = new_ds(n, R, C)
    set_window(ds, "2000", "3000")
    set_native(ds, a12)
    del ds.file_meta
    ds.preamble = None
    path = OUT / f"{n}.dcm"
    # pydicom writes exactly what it is given: no preamble, no 'DICM', no group 0002
    ds.save_as(path, implicit_vr=True, little_endian=True)
    raw = path.read_bytes()
    assert raw[:4] == b"\x08\x00\x05\x00", raw[:8]  # starts straight with (0008,0005)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    rec(n, ds, a12, "no preamble, no 'DICM', no file meta: bare Implicit VR LE dataset "
        "(ACR-NEMA style), 16/12-bit, window 2000/3000", ts=ImplicitVRLittleEndian)

    # 24 --------------------------------------------------------------------------------------
    n = "odd_lengths_seq"
    ds = new_ds(n, R, C)
    set_window(ds, "2000", "3000")
    # (0008,1140) Referenced Image Sequence: undefined length, item of undefined length,
    # holding a nested undefined-length sequence and a defined-length one
    code = Dataset()
    code.CodeValue = "121311"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Localizer"
    code.is_undefined_length_sequence_item = True
    ref = Dataset()
    ref.ReferencedSOPClassUID = SOP_DX
    ref.ReferencedSOPInstanceUID = uid(n, "ref")
    ref.PurposeOfReferenceCodeSequence = Sequence([code])  # (0040,A170)
    ref["PurposeOfReferenceCodeSequence"].is_undefined_length = True
    frame_item = Dataset()
    frame_item.ReferencedFrameNumber = "1"
    ref.ReferencedImageSequence = Sequence([frame_item])  # nested, defined length
    ref.is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence = Sequence([ref, Dataset()])  # second item empty
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.ReferencedImageSequence[1].is_undefined_length_sequence_item = True
    # private block (0009,00xx): creator, an UN element of defined length, and an UN element
    # of UNDEFINED length (a private sequence whose VR was lost: per PS3.5 6.2.2 its content is
    # Implicit VR LE items followed by a sequence delimiter)
    ds.add_new(0x00090010, "LO", "CREMA FIXTURE")
    ds.add_new(0x00091001, "UN", bytes(range(1, 37)))
    inner = Dataset()
    inner.add_new(0x00090010, "LO", "CREMA FIXTURE")  # written implicit VR
    inner.add_new(0x00091010, "LO", "inside UN")
    inner.add_new(0x00280010, "US", 999)  # a decoy Rows inside the private sequence
    from pydicom.filewriter import write_dataset
    from pydicom.filebase import DicomBytesIO

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, inner)
    body = fp.getvalue()
    # one item of defined length; pydicom appends the sequence delimitation item itself
    un_value = b"\xfe\xff\x00\xe0" + len(body).to_bytes(4, "little") + body
    ds.add(DataElement(0x00091002, "UN", un_value, is_undefined_length=True))
    ds.add_new(0x00091003, "UN", b"AB")  # short UN
    set_native(ds, a12)
    ds.DataSetTrailingPadding = b"\0" * 16  # (FFFC,FFFC) after Pixel Data
    write(ds, n, ExplicitVRLittleEndian)
    rec(n, ds, a12, "Explicit VR LE: undefined-length ReferencedImageSequence with an "
        "undefined-length item holding an undefined-length nested sequence (and a "
        "defined-length one, and an empty second item); private UN elements incl. one of "
        "undefined length (implicit-VR items inside, with a decoy Rows=999); "
        "DataSetTrailingPadding after Pixel Data")

    # 25 --------------------------------------------------------------------------------------
    n = "cxr_MCUCXR_0001_0"
    ds = new_ds(n, 128, 128, bits_allocated=8, bits_stored=8)
    set_native(ds, img1)
    set_encapsulated(ds, gdcm_encode(ds, JPEGLosslessSV1), JPEGLosslessSV1)
    write(ds, n)
    rec(n, ds, img1, "end-to-end: exactly fixtures/cxr-lite/images/MCUCXR_0001_0.png, 128x128 "
        "8-bit MONOCHROME2, no window/rescale, JPEG Lossless SV1 (GDCM)")
    return recs


# --------------------------------------------------------------------------------------------
# expected outputs


def decode_all(path: Path, rec: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """frame 0 with every pydicom plugin that can decode it: {plugin: (as RGB, raw)}."""
    ts = UID(rec["ts"])
    plugins = {
        ExplicitVRLittleEndian: [""],
        ImplicitVRLittleEndian: [""],
        ExplicitVRBigEndian: [""],
        DeflatedExplicitVRLittleEndian: [""],
        RLELossless: ["pydicom"],  # pydicom's gdcm plugin does not do RLE; see gdcm_direct
        JPEGLosslessSV1: ["pylibjpeg", "gdcm"],
        JPEGLossless: ["pylibjpeg", "gdcm"],
        # GDCM first for baseline: its IJG decoder (fancy upsampling) matches libjpeg-turbo
        JPEGBaseline8Bit: ["gdcm", "pylibjpeg"],
        JPEG2000Lossless: ["gdcm", "pylibjpeg"],  # not the plugin that encoded it
        JPEG2000: ["gdcm", "pylibjpeg"],
        JPEGLSLossless: ["gdcm"],
    }[ts]
    out = {}
    for p in plugins:
        ds = pydicom.dcmread(path, force=True)
        if not ds.file_meta or "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ts
        kw = {"decoding_plugin": p} if p else {}
        rgb = pixel_array(ds, index=0, **kw)
        raw = pixel_array(ds, index=0, raw=True, **kw)
        out[p or "native"] = (rgb.astype(np.int32), raw.astype(np.int32))
    if ts in (RLELossless, ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
              DeflatedExplicitVRLittleEndian):
        g = gdcm_direct(path)  # a second, independent reader (pre colour conversion)
        out["gdcm-direct"] = (None, g)
    return out


def gdcm_direct(path: Path) -> np.ndarray:
    """Frame 0 decoded by GDCM's own ImageReader (no pydicom): a second reader for native
    and RLE data, where pydicom has no second plugin. No colour conversion."""
    r = gdcm.ImageReader()
    r.SetFileName(str(path))
    assert r.Read()
    im = r.GetImage()
    buf = im.GetBuffer().encode("utf-8", "surrogateescape")
    pf = im.GetPixelFormat()
    rows, cols = im.GetDimension(1), im.GetDimension(0)
    spp = pf.GetSamplesPerPixel()
    dt = {8: np.uint8, 16: np.uint16}[pf.GetBitsAllocated()]
    if pf.GetPixelRepresentation() == 1:
        dt = {8: np.int8, 16: np.int16}[pf.GetBitsAllocated()]  # GDCM sign-extends
    a = np.frombuffer(buf, dtype=dt)[: rows * cols * spp]
    if spp == 1:
        return a.reshape(rows, cols).astype(np.int32)
    if im.GetPlanarConfiguration() == 1:
        return a.reshape(3, rows, cols).transpose(1, 2, 0).astype(np.int32)
    return a.reshape(rows, cols, 3).astype(np.int32)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    EXP.mkdir(parents=True, exist_ok=True)
    for old in list(OUT.glob("*.dcm")) + list(EXP.glob("*")):
        old.unlink()
    recs = build()
    manifest, notes = [], []
    for r in recs:
        name, ds = r["name"], r["ds"]
        path = OUT / f"{name}.dcm"
        dec = decode_all(path, r)
        first = next(iter(dec))
        vals, raw = dec[first]
        src = r["src"].astype(np.int32)
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.SamplesPerPixel)
        assert vals.shape == ((rows, cols) if samples == 1 else (rows, cols, 3)), vals.shape
        msgs = []
        others = [p for p in dec if p != first]
        for p in others:
            v2, raw2 = dec[p]
            if r["lossy"]:
                d = int(np.abs(v2 - vals).max())
                if d:
                    msgs.append(f"{p} differs from {first} by up to {d}")
            else:
                assert np.array_equal(raw2, raw), (name, p, "decoders disagree")
        if others and not r["lossy"]:
            msgs.append(f"{', '.join(others)} agree{'s' if len(others) == 1 else ''}")
        if not r["lossy"]:
            ok = np.array_equal(raw, src)
            assert ok, (name, "lossless decode != source")
        else:
            err = np.abs(vals - src)
            msgs.append(f"{first} vs source: max |err| {int(err.max())}, mean {err.mean():.2f}")
        disp = display(ds, vals, raw)
        pyd = pydicom_display(ds, vals)
        if pyd is not None:
            d = np.abs(pyd.astype(int) - disp.astype(int))
            if d.max():
                msgs.append(
                    f"pydicom apply_voi_lut differs on {int((d > 0).sum())} px (max {int(d.max())})"
                )
            else:
                msgs.append("pydicom's apply_voi_lut gives the same display")
        if ds.PhotometricInterpretation == "YBR_FULL":
            d = np.abs(vals - disp.astype(np.int32))
            msgs.append(
                f"pydicom's YBR->RGB (values.npy) vs display rule: {int((d > 0).sum())} px "
                f"differ, max {int(d.max())}"
            )
        if name == "cxr_MCUCXR_0001_0":
            assert np.array_equal(disp, load_png("MCUCXR_0001_0")), "end-to-end display != PNG"
        if r["expect"] == "read":
            np.save(EXP / f"{name}.values.npy", vals.astype("<i4"))
            Image.fromarray(disp, "RGB" if samples == 3 else "L").save(EXP / f"{name}.display.png")
        manifest.append(
            {
                "file": f"{name}.dcm",
                "transfer_syntax": r["ts"],
                "photometric": str(ds.PhotometricInterpretation),
                "rows": rows,
                "cols": cols,
                "samples": samples,
                "bits_stored": int(ds.BitsStored),
                "signed": int(ds.PixelRepresentation) == 1,
                "lossy": r["lossy"],
                "expect": r["expect"],
            }
        )
        if r["expect"] != "read":
            msgs.append("expected/ not written (crema refuses it)")
        notes.append((name, r["note"], msgs, first))
        print(f"{name:30s} {path.stat().st_size:7d} B  decoded by {first}; " + "; ".join(msgs))
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (OUT / "README.md").write_text(readme(notes))
    return 0


def versions() -> str:
    import libjpeg
    import openjpeg
    import pylibjpeg
    from PIL import features

    ojp = ".".join(str(x) for x in openjpeg.utils.get_openjpeg_version())
    return (
        f"pydicom {pydicom.__version__}, python-gdcm {gdcm.Version.GetVersion()}, "
        f"pylibjpeg {pylibjpeg.__version__}, pylibjpeg-libjpeg {libjpeg.__version__}, "
        f"pylibjpeg-openjpeg {openjpeg.__version__} (OpenJPEG {ojp}), numpy {np.__version__}, "
        f"Pillow {Image.__version__} (libjpeg-turbo {features.version_feature('libjpeg_turbo')})"
    )


README_HEAD = """# DICOM reader fixtures

Test files for crema's DICOM reader. **Generated; do not edit by hand.** Remake them all with

```
/tmp/dcmpy/bin/python tools/dicom_fixtures.py      # from the repository root
```

(the environment to create is in the script's header). Made with: {versions}.
Rerunning with these versions rewrites byte-identical files.

## Where the pixels come from

Real chest X-rays of the **Montgomery County** set (U.S. National Library of Medicine), through
`fixtures/cxr-lite/images/`: `MCUCXR_0001_0.png` and `MCUCXR_0002_0.png` (128 x 128, 8-bit).
Each is centre-cropped to the target aspect and resized (Pillow bilinear) to {rows} rows x {cols}
columns for the gray files and {rrows} x {rcols} for the colour ones: small, non-square, odd
widths. 12-bit data is `v12 = v8 * 16 + noise`, noise uniform in 0..15 from a fixed seed, so
the low bits matter. The colour image is R = MCUCXR_0001_0, G = MCUCXR_0002_0,
B = MCUCXR_0001_0 mirrored left-right (channel swaps and flips show).
`cxr_MCUCXR_0001_0.dcm` holds exactly the 128 x 128 pixels of `MCUCXR_0001_0.png`.

## Layout

- `<name>.dcm`: the file (Part 10 unless noted).
- `expected/<name>.values.npy`: frame 0's stored values as pydicom 3's `pixel_array` decodes
  them, int32 little-endian, `(rows, cols)` or `(rows, cols, 3)`. Signed data is sign-extended
  from Bits Stored. Colour is RGB: pydicom's `pixel_array` converts YBR_FULL and YBR_FULL_422 to
  RGB by default (its `convert_color_space`; the JPEG decoders hand it YCbCr), so the colour
  expectations are what a viewer shows. Decoded with a plugin other than the encoder where one
  exists (see "Checks"); every lossless file must also equal the source array exactly, and the
  script asserts that.
- `expected/<name>.display.png`: crema's 8-bit output per its display rules (frame 0; rescale;
  VOI LUT sequence, else window LINEAR / LINEAR_EXACT / SIGMOID, else identity for unsigned
  8-bit without rescale, else min-max; `floor(x + 0.5)`; MONOCHROME1 inverted after VOI; colour
  passed through, YBR_FULL converted with the 1.402 / 0.344136 / 0.714136 / 1.772 formula), by
  the script's own numpy code, not pydicom's VOI functions. RGB PNG for colour.
- `manifest.json`: one object per file: file, transfer_syntax, photometric, rows, cols,
  samples, bits_stored, signed, lossy (JPEG baseline and J2K lossy: another decoder may differ
  by a few levels), expect (`read` or `refused`).

## Files

"""

README_NOTES = """
## Deviations from the original list, and findings

- **Size.** The frames are {rows} x {cols} (gray) and {rrows} x {rcols} (colour), not 72 x 88:
  with an int32 `.npy` for every file, 72 x 88 alone would be ~25 KB per expectation and the set
  would pass 400 KB. The minimum is set by JPEG 2000 (openjpeg's 6 resolution levels need >= 32
  per side); GDCM also refuses 8-bit frames of odd total size (padded Pixel Data), so 8-bit gray
  frames have even size (odd width, even height).
- **`jpeg_ll_p14.dcm`: GDCM only writes predictor 1.** With the process-14 UID
  (1.2.840.10008.1.2.4.57) it writes the same codestream as for SV1: SOS Ss = 1. So the extra
  **`jpeg_ll_p14_pred6.dcm`** carries a predictor-6 codestream (`Rb + ((Ra - Rc) >> 1)`, the
  one where `>> 1` vs `/ 2` matters on negative differences) made by the script's own small
  T.81 SOF3 encoder (`jpeg_lossless_encode`, optimal Huffman table). It is checked, not trusted:
  pylibjpeg-libjpeg and GDCM both decode it to exactly the source values.
- **GDCM's lossless JPEG and JPEG-LS write precision 16** for 12-bit data in 16-bit words
  (SOF3 / SOF55 P = 16, first-pixel prediction 2^15), not 12. `jpeg_ll_p14_pred6.dcm` has
  P = 12, and the 8-bit files P = 8.
- **JPEG baseline colour is encoded with Pillow (libjpeg-turbo), not GDCM**: GDCM's baseline
  colour output is 4:2:0 and keeps Photometric RGB. Pillow's stream is JFIF (APP0), component
  ids 1/2/3, Y sampled 2x1 and Cb/Cr 1x1 (4:2:2), labelled YBR_FULL_422 as DICOM requires.
  Gray baseline is GDCM's (quality 85).
- **Lossy expectations use GDCM's decoder.** For JPEG baseline it matches libjpeg-turbo
  (Pillow) exactly; pylibjpeg-libjpeg differs by up to 1 level on the gray file and up to 7
  on the colour one (different chroma upsampling). For J2K lossy GDCM and pylibjpeg-openjpeg
  agree exactly (both are OpenJPEG).
- **JPEG 2000** (pydicom's `compress` with pylibjpeg-openjpeg): a bare J2K codestream (no JP2
  boxes), one tile, SIZ 12-bit unsigned, 5 decomposition levels, 64 x 64 code blocks, LRCP,
  one quality layer, no MCT, a COM marker "Created by OpenJPEG ..."; 5-3 reversible for
  `j2k_lossless`, 9-7 irreversible at compression ratio 6 for `j2k_lossy` (which carries
  LossyImageCompression 01).
- **Big endian**: pydicom 3.0.2 writes Explicit VR Big Endian from the file meta's transfer
  syntax (`save_as(..., enforce_file_format=True)`; meta group little endian), but writes OW
  Pixel Data bytes as given, so the script stores big-endian words itself. pydicom and GDCM
  both read it back to the source values.
- **Deflate**: pydicom 3.0.2 writes it natively from the transfer syntax: the meta group plain,
  the rest raw deflate (no zlib header).
- **RLE**: pydicom's own encoder. `rle_rgb.dcm` has 3 segments (R, G, B planes, as RLE always
  does) and says PlanarConfiguration 0, as pydicom writes it. pydicom has no second RLE plugin
  here, so GDCM's reader checks it.
- **`signed_ct_like.dcm`**: the 16-bit words hold the 12-bit two's complement with bits 12..15
  zero, so a reader must sign-extend from bit 11 (reading int16 gives +2096 for -2000).
- **`no_preamble.dcm`** is written by pydicom without a preamble or meta group: it begins with
  (0008,0005). Its manifest transfer syntax is the one a reader must assume (Implicit VR LE).
- **`odd_lengths_seq.dcm`**: every value length is even, as DICOM requires; what is odd is the
  structure: undefined lengths, delimiters, UN elements, trailing padding.
- **`deflated.dcm`** has two windows (first 2000/3000 is the one to use, then 1200/800).
- **`jpeg_ls.dcm`** (GDCM/CharLS, NEAR 0): its `expected/` files were added when crema learnt JPEG-LS, by
  `tools/make_jpegls_fixtures.py` (CharLS through imagecodecs decodes the values; the display by the rule
  above), as this script writes them.
- pydicom's `apply_voi_lut` (scaled to 8 bits) agrees with the script's display on every
  windowed or VOI-LUT file; pydicom's YBR_FULL->RGB equals the display formula on
  `ybr_full.dcm`.

## Checks (printed by the script)

"""


def readme(notes) -> str:
    fmt = dict(versions=versions(), rows=ROWS, cols=COLS, rrows=RGB_ROWS, rcols=RGB_COLS)
    out = README_HEAD.format(**fmt)
    for name, note, _, _ in notes:
        out += f"- `{name}.dcm`: {note}.\n"
    out += README_NOTES.format(**fmt)
    for name, _, msgs, first in notes:
        out += f"- `{name}`: values decoded by {first}" + "".join(f"; {m}" for m in msgs) + ".\n"
    return out


if __name__ == "__main__":
    sys.exit(main())
