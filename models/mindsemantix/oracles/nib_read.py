"""Oracle for the scanner-reader tests: what nibabel makes of a NIfTI or DICOM file.

    python -m mindsemantix.oracles.nib_read nifti FILE... [--raw-dir DIR]
    python -m mindsemantix.oracles.nib_read dicom FILE... [--raw-dir DIR]
    python -m mindsemantix.oracles.nib_read variants SOURCE.nii OUTDIR

`variants` writes, with nibabel, the same image as NIfTI files a TS reader must handle: big-endian, every common
datatype, scl_slope/scl_inter, qform-only, no transform (Analyze fall-back), NIfTI-2, gzip; prints their names.

Prints a JSON list, one object per file: dims, affine (row-major 16, RAS+ mm), zooms, and for NIfTI the TR in seconds
(or {"error": ...}). With --raw-dir, writes file i's voxels to DIR/i.f32 as little-endian float32, x fastest (order "F").

DICOM is given in the voxel order dcm2niix writes (x = DICOM column, y = DICOM row reversed, z = slice) with the affine
converted from DICOM LPS to NIfTI RAS+, so TS readers, dcm2niix and nibabel can be compared voxel for voxel.
"""
import argparse
import gzip
import json
import sys

import numpy as np


def _result(dims, affine, zooms, data, raw, extra=None):
    out = {"dims": [int(d) for d in dims], "affine": [float(v) for v in np.asarray(affine).ravel()],
           "zooms": [float(z) for z in zooms]}
    out.update(extra or {})
    if raw:
        np.asarray(data, dtype="<f4").ravel(order="F").tofile(raw)
    return out


def read_nifti(path, raw):
    import nibabel as nib
    img = nib.load(path)
    hdr = img.header
    zooms = hdr.get_zooms()
    tr = 0.0
    if len(zooms) > 3:
        _, tunit = hdr.get_xyzt_units()
        scale = {"msec": 1e-3, "usec": 1e-6}.get(tunit, 1.0)
        tr = float(zooms[3]) * scale
    data = img.get_fdata(dtype=np.float32) if raw else None
    return _result(img.shape, img.affine, zooms[:3], data, raw, {"tr": tr, "datatype": int(hdr["datatype"])})


def read_dicom(path, raw):
    import pydicom
    from nibabel.nicom import dicomwrappers
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        ds = pydicom.dcmread(f)
    w = dicomwrappers.wrapper_from_data(ds)
    data = w.get_data()  # [row, col, slice] (+ frames), DICOM LPS affine
    aff = w.affine
    if data.ndim == 2:
        data = data[:, :, None]
    # nibabel's voxel axes (row, col, slice) -> dcm2niix's (col, reversed row, slice)
    nrows = data.shape[0]
    data = np.swapaxes(data, 0, 1)[:, ::-1, ...]
    perm = np.zeros((4, 4))
    perm[1, 0] = -1.0   # new x (col) -> old j (col)...
    perm[:, :] = 0
    perm[0, 1] = 1.0    # old i (row) = (nrows-1) - new j
    perm[0, 3] = nrows - 1
    perm[0, 1] = -1.0
    perm[1, 0] = 1.0    # old j (col) = new i
    perm[2, 2] = 1.0
    perm[3, 3] = 1.0
    lps2ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine = lps2ras @ aff @ perm
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return _result(data.shape, affine, zooms, data.astype(np.float32) if raw else None, raw)


def write_variants(src, outdir):
    import os
    import nibabel as nib
    img = nib.load(src)
    data = np.asarray(img.dataobj, dtype=np.float64)[..., :2] if img.ndim == 4 else np.asarray(img.dataobj, dtype=np.float64)
    aff = img.affine.copy()
    # an oblique affine with a left-handed (qfac = -1) frame exercises the quaternion path
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])
    oblique = rot @ aff
    made = []

    def save(name, arr, dtype, affine, klass=nib.Nifti1Image, endian="<", slope=None, inter=None, q=1, s=1, units=("mm", "sec"), tr=2.0):
        hdr = klass.header_class(endianness=endian)
        im = klass(arr.astype(dtype), affine, header=hdr)
        im.header.set_data_dtype(dtype)
        im.header.set_xyzt_units(*units)
        if arr.ndim == 4:
            zooms = list(im.header.get_zooms()[:3]) + [tr]
            im.header.set_zooms(zooms)
        im.set_qform(affine if q else None, code=q)
        im.set_sform(affine if s else None, code=s)
        path = os.path.join(outdir, name)
        if slope is None:
            nib.save(im, path)
        else:
            # raw integers plus scl_slope/scl_inter patched into the header, so the file carries that exact scaling
            raw = np.round((arr - inter) / slope).astype(dtype)
            plain = path[:-3] if path.endswith(".gz") else path
            nib.save(klass(raw, affine, header=im.header), plain)
            with open(plain, "r+b") as f:
                h = klass.header_class.from_fileobj(f)
                h["scl_slope"], h["scl_inter"] = slope, inter
                f.seek(0)
                f.write(h.binaryblock)
            if plain != path:
                with open(plain, "rb") as f, gzip.open(path, "wb") as g:
                    g.write(f.read())
                os.remove(plain)
        made.append(name)

    small = data - data.min()
    save("le_float32.nii", data, np.float32, aff)
    save("be_int16.nii", np.clip(data, -32768, 32767), np.int16, oblique, endian=">")
    save("be_float64_qonly.nii", data, np.float64, oblique, endian=">", s=0)
    save("uint8_noxform.nii", small / max(small.max(), 1) * 255, np.uint8, aff, q=0, s=0)
    save("int32_scaled.nii.gz", data, np.int32, oblique, slope=0.5, inter=-10.0)
    save("be_uint16_scaled.nii", small, np.uint16, aff, endian=">", slope=2.0, inter=3.0)
    save("int8.nii", np.clip(data / 100, -128, 127), np.int8, oblique)
    save("float32_ms.nii", data, np.float32, aff, units=("mm", "msec"), tr=2500.0)
    save("nifti2_be_int16.nii", np.clip(data, -32768, 32767), np.int16, oblique, klass=nib.Nifti2Image, endian=">")
    save("nifti2_float32.nii.gz", data, np.float32, aff, klass=nib.Nifti2Image)
    json.dump(made, sys.stdout)
    sys.stdout.write("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.oracles.nib_read")
    ap.add_argument("kind", choices=["nifti", "dicom", "variants"])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--raw-dir", help="write file i's voxels to DIR/i.f32 as float32, x fastest")
    a = ap.parse_args(argv)
    if a.kind == "variants":
        write_variants(a.paths[0], a.paths[1])
        return
    import os
    reader = read_nifti if a.kind == "nifti" else read_dicom
    results = []
    for i, path in enumerate(a.paths):
        try:
            results.append(reader(path, os.path.join(a.raw_dir, f"{i}.f32") if a.raw_dir else None))
        except Exception as e:  # the TS test decides whether a failure was expected
            results.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
