"""Oracle for the scanner-reader tests: what nibabel makes of a NIfTI or DICOM file.

    python -m mindsemantix.oracles.nib_read nifti FILE... [--raw-dir DIR]
    python -m mindsemantix.oracles.nib_read dicom FILE... [--raw-dir DIR]
    python -m mindsemantix.oracles.nib_read parrec|parrec-fp FILE.PAR... [--raw-dir DIR]   (nibabel.parrec, scaling dv|fp)
    python -m mindsemantix.oracles.nib_read csa BLOB.bin...    (nibabel's csareader: {tag: items} per file)
    python -m mindsemantix.oracles.nib_read variants SOURCE.nii OUTDIR
    python -m mindsemantix.oracles.nib_read header FILE...      (every raw header field, as nibabel's header dtype names it)
    python -m mindsemantix.oracles.nib_read layout               (nibabel's Nifti1Header/Nifti2Header dtypes: name, offset, type, count)
    python -m mindsemantix.oracles.nib_read dicom-variants MOSAIC.dcm[.gz] ENHANCED.dcm[.gz] SLICE.dcm OUTDIR

`dicom-variants` rewrites real DICOMs with pydicom so their pixels carry a known pattern (the shipped test files have
zeroed pixels): mosaic.dcm (+ mosaic_unit_iop.dcm, cosines normalised), enhanced.dcm, and two per-slice series (axial/ and oblique/, 2 volumes × 5 slices, files in
shuffled order) for dcm2niix to assemble.
`variants` writes, with nibabel, the same image as NIfTI files a TS reader must handle: big-endian, every common
datatype, scl_slope/scl_inter, qform-only, no transform (Analyze fall-back), NIfTI-2, gzip; prints their names.

Prints a JSON list, one object per file: dims, affine (row-major 16, RAS+ mm), zooms, and for NIfTI the TR in seconds
(or {"error": ...}). With --raw-dir, writes file i's voxels to DIR/i.f32 as little-endian float32, x fastest (order "F").

DICOM is read with nibabel.nicom.dicomwrappers: nibabel's own voxel order (row, column, slice), the affine converted
from DICOM LPS to NIfTI RAS+. Tests re-index it onto the TS reader's grid through the two affines.
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


def _plain(v):
    # JSON has no NaN/Infinity: send them as strings
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v


def read_header(path, raw=None):
    # the header as stored (nib.load's img.header is already reset for writing: vox_offset 0, scl_* NaN)
    import nibabel as nib
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        size = np.frombuffer(f.read(4), "<i4")[0]
        f.seek(0)
        klass = nib.Nifti2Header if size in (540, int.from_bytes((540).to_bytes(4, "big"), "little")) else nib.Nifti1Header
        hdr = klass.from_fileobj(f, check=False)
    fields = {}
    for name in hdr.template_dtype.names:
        v = hdr[name]
        if v.dtype.kind == "S":
            fields[name] = v.item().decode("latin1")
        elif v.shape == ():
            fields[name] = _plain(v.item())
        else:
            fields[name] = [_plain(x) for x in v.tolist()]
    try:
        q, qcode = hdr.get_qform(coded=True)
    except ValueError:  # nibabel's quaternion check refuses some float64 quaternions it wrote itself (NIfTI-2)
        q, qcode = None, -1
    s, scode = hdr.get_sform(coded=True)
    return {"version": 2 if isinstance(hdr, nib.Nifti2Header) else 1, "endianness": hdr.endianness, "fields": fields,
            "qform": None if q is None else [float(x) for x in q.ravel()], "qform_code": int(qcode),
            "sform": None if s is None else [float(x) for x in s.ravel()], "sform_code": int(scode),
            "zooms": [float(z) for z in hdr.get_zooms()], "dtype": str(hdr.get_data_dtype())}


def header_layout():
    import nibabel as nib
    out = {}
    for key, klass in (("nifti1", nib.Nifti1Header), ("nifti2", nib.Nifti2Header)):
        dt = klass.template_dtype
        out[key] = {"size": dt.itemsize, "fields": [
            {"name": n, "offset": dt.fields[n][1], "dtype": dt.fields[n][0].base.str, "shape": list(dt.fields[n][0].shape)}
            for n in dt.names]}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


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
    # DICOM patient space is LPS; NIfTI world space is RAS+
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff
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
    # qform_code 2 above sform_code 1, with different transforms: nibabel takes the sform whenever its code is set
    im = nib.Nifti1Image(data.astype(np.float32), None)
    shifted = oblique.copy()
    shifted[:3, 3] += [7.5, -3.25, 11.0]
    im.set_qform(oblique, code=2)
    im.set_sform(shifted, code=1)
    im.header.set_xyzt_units("mm", "sec")
    nib.save(im, os.path.join(outdir, "qform2_above_sform1.nii"))
    made.append("qform2_above_sform1.nii")
    json.dump(made, sys.stdout)
    sys.stdout.write("\n")


def read_parrec(path, raw, scaling="dv"):
    import nibabel as nib
    img = nib.parrec.load(path, scaling=scaling)
    zooms = img.header.get_zooms()
    tr = float(zooms[3]) if len(zooms) > 3 else 0.0
    data = img.get_fdata(dtype=np.float64).astype(np.float32) if raw else None
    return _result(img.shape, img.affine, zooms[:3], data, raw, {"tr": tr})


def _dcmread(path):
    import pydicom
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return pydicom.dcmread(f)


def write_dicom_variants(mosaic, enhanced, single, outdir):
    import os
    import pydicom
    from pydicom.uid import generate_uid
    made = []
    ds = _dcmread(mosaic)
    n = ds.Rows * ds.Columns
    ds.PixelData = ((np.arange(n, dtype=np.int64) * 37 + 11) % 4000).astype("<u2").tobytes()
    ds.save_as(os.path.join(outdir, "mosaic.dcm"))
    made.append("mosaic.dcm")
    # the same mosaic with unit-length orientation cosines written to 10 decimals (the shipped file keeps 6)
    iop = np.array(list(map(float, ds.ImageOrientationPatient))).reshape(2, 3)
    iop /= np.linalg.norm(iop, axis=1, keepdims=True)
    ds.ImageOrientationPatient = [f"{v:.10f}" for v in iop.ravel()]
    ds.save_as(os.path.join(outdir, "mosaic_unit_iop.dcm"))
    made.append("mosaic_unit_iop.dcm")
    ds = _dcmread(enhanced)
    keep = 12  # a slab of the volume keeps the test file small
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence(list(ds.PerFrameFunctionalGroupsSequence)[:keep])
    ds.NumberOfFrames = keep
    n = keep * ds.Rows * ds.Columns
    ds.PixelData = ((np.arange(n, dtype=np.int64) * 13 + 5) % 3000).astype("<u2").tobytes()
    ds.save_as(os.path.join(outdir, "enhanced.dcm"))
    made.append("enhanced.dcm")
    rng = np.random.default_rng(7)
    for name, angle in (("axial", 0.0), ("oblique", 0.35)):
        d = os.path.join(outdir, name)
        os.makedirs(d, exist_ok=True)
        c, s_ = np.cos(angle), np.sin(angle)
        row = np.array([c, 0.0, -s_])          # direction of increasing column index
        col = np.array([0.0, c, s_])
        col = col - row * (row @ col)
        col /= np.linalg.norm(col)
        normal = np.cross(row, col)
        origin = np.array([-83.9063, -91.2, 6.6406])
        series_uid = generate_uid()
        files = []
        for t in range(2):
            for k in range(5):
                x = _dcmread(single)
                x.SeriesInstanceUID = series_uid
                x.SOPInstanceUID = generate_uid()
                x.file_meta.MediaStorageSOPInstanceUID = x.SOPInstanceUID
                x.SeriesNumber = 7
                x.InstanceNumber = t * 5 + k + 1
                x.AcquisitionNumber = t + 1
                x.TemporalPositionIdentifier = t + 1
                x.ImagesInAcquisition = 5
                x.SliceThickness = 4.0
                x.SpacingBetweenSlices = 4.0
                x.ImageOrientationPatient = [f"{v:.8f}" for v in (*row, *col)]
                x.ImagePositionPatient = [f"{v:.5f}" for v in origin + normal * 4.0 * k]
                x.SliceLocation = f"{4.0 * k:.3f}"
                x.AcquisitionTime = f"1200{10 + 2 * t:02d}.{k:06d}"
                nn = x.Rows * x.Columns
                x.PixelData = ((np.arange(nn) * (k + 3) + 100 * t + 17 * k) % 2000).astype("<i2").tobytes()
                files.append(x)
        order = rng.permutation(len(files))
        for i, j in enumerate(order):
            files[j].save_as(os.path.join(d, f"IM{i:04d}.dcm"))
        made.append(name + "/")
    json.dump(made, sys.stdout)
    sys.stdout.write("\n")


def read_csa(paths):
    from nibabel.nicom import csareader
    out = []
    for p in paths:
        opener = gzip.open if p.endswith(".gz") else open
        with opener(p, "rb") as f:
            h = csareader.read(f.read())
        out.append({name: tag["items"] for name, tag in h["tags"].items()})
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.oracles.nib_read")
    ap.add_argument("kind", choices=["nifti", "header", "layout", "dicom", "parrec", "parrec-fp", "csa", "variants", "dicom-variants"])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--raw-dir", help="write file i's voxels to DIR/i.f32 as float32, x fastest")
    a = ap.parse_args(argv)
    if a.kind == "layout":
        header_layout()
        return
    if a.kind == "csa":
        read_csa(a.paths)
        return
    if a.kind == "dicom-variants":
        write_dicom_variants(*a.paths[:4])
        return
    if a.kind == "variants":
        write_variants(a.paths[0], a.paths[1])
        return
    import os
    readers = {"nifti": read_nifti, "header": read_header, "dicom": read_dicom, "parrec": read_parrec,
               "parrec-fp": lambda p, raw: read_parrec(p, raw, "fp")}
    reader = readers[a.kind]
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
