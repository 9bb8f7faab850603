"""Full-size DICOM radiographs for `cargo bench --bench dicom_decode`.

Writes one chest X-ray (../shared/data/cxr-lungs, Montgomery MCUCXR_0001_0, resized to
2500 rows x 2048 columns, 12 bits in 16, windowed) in each transfer syntax crema decodes into
the folder given (default target/dicom-bench), with the same libraries and environment as
tools/dicom_fixtures.py (see its header):

    /tmp/dcmpy/bin/python tools/dicom_bench_files.py [OUT_DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dicom_fixtures as fx  # noqa: E402
from pydicom.uid import (  # noqa: E402
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
)

ROWS, COLS = 2500, 2048


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else fx.ROOT / "target" / "dicom-bench")
    out.mkdir(parents=True, exist_ok=True)
    fx.OUT = out
    src = fx.ROOT.parent / "shared" / "data" / "cxr-lungs" / "montgomery" / "images" / "MCUCXR_0001_0.png"
    a8 = np.asarray(Image.open(src).convert("L").resize((COLS, ROWS), Image.BILINEAR), dtype=np.uint8)
    a12 = fx.to12(a8, seed=7)

    def gray12(name):
        ds = fx.new_ds(name, ROWS, COLS)
        fx.set_native(ds, a12)
        fx.set_window(ds, 2000, 3000)
        return ds

    fx.write(gray12("native"), "native", ExplicitVRLittleEndian)
    fx.write(gray12("deflated"), "deflated", DeflatedExplicitVRLittleEndian)
    ds = gray12("rle")
    ds.compress(RLELossless)
    fx.write(ds, "rle")
    ds = gray12("jpeg_lossless")
    fx.set_encapsulated(ds, fx.gdcm_encode(ds, JPEGLosslessSV1), JPEGLosslessSV1)
    fx.write(ds, "jpeg_lossless")
    ds = gray12("j2k_lossless")
    ds.compress(JPEG2000Lossless)
    fx.write(ds, "j2k_lossless")
    ds = fx.new_ds("jpeg_baseline", ROWS, COLS, bits_allocated=8, bits_stored=8)
    fx.set_native(ds, a8)
    fx.set_encapsulated(ds, fx.gdcm_encode(ds, JPEGBaseline8Bit), JPEGBaseline8Bit)
    fx.write(ds, "jpeg_baseline")
    for p in sorted(out.glob("*.dcm")):
        print(f"{p.name}: {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
