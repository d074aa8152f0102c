"""Oracle for the TS ingest tests: loads a (4-D) NIfTI with nibabel and reports what nibabel sees.

Usage: python nib_load_bold.py IMAGE [RAW_OUT]
Prints one JSON object: shape, dtype, affine (row-major), zooms, tr, qform == sform.
With RAW_OUT, writes every voxel in NIfTI memory order (x fastest) in the stored dtype, little-endian.
"""
import json
import sys

import nibabel as nib
import numpy as np


def main() -> None:
    img = nib.load(sys.argv[1])
    data = np.asanyarray(img.dataobj)
    hdr = img.header
    out = {
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "affine": [float(x) for x in img.affine.ravel()],
        "zooms": [float(z) for z in hdr.get_zooms()],
        "tr": float(hdr.get_zooms()[3]) if len(hdr.get_zooms()) > 3 else 0.0,
        "qform_equals_sform": bool(np.allclose(img.get_qform(), img.get_sform(), atol=1e-4)),
        "finite": bool(np.isfinite(data).all()),
    }
    if len(sys.argv) > 2:
        np.asarray(data, dtype=data.dtype.newbyteorder("<")).ravel(order="F").tofile(sys.argv[2])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
