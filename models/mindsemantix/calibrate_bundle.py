"""Writing the calibrated bundle: every file of the input bundle, plus the new person's encoder-<id>.onnx,
baseline-<id>.onnx and mask, under an updated manifest (subjects, files with sha256, a `calibration` record).

The input bundle is only read. Everything is written to a hidden temp folder beside the output and renamed into place
at the end, so an interrupted calibration leaves no half bundle. lm/ (~0.8 GB) and the bootstrap-generated root files
(text_encoder.onnx, text_tokenizer.json, effnet_lite0.onnx: lm/lm-manifest.json's root_files) are hard-linked, not
copied: `serve` checks them by sha256 against lm/lm-manifest.json as in any bundle, a hard link is those same bytes
without another 0.8 GB on disk, and unlike a symlink it still works after the input bundle is moved or deleted. Across
file systems they are copied. Committed files (listed in manifest `files`) are always copied.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .model import BrainCaptioner, EncoderExport
from .onnx_util import export_onnx, ort_session
from .export import RidgeExport
from .schemas import validate_manifest
from .util import sha256_file, log


def link_or_copy(src: Path, dst: Path) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return "hard link"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


def subject_files(manifest: dict, subject: str) -> set:
    e = manifest["subjects"].get(subject)
    return {v for k, v in (e or {}).items() if k in ("encoder", "baseline", "mask")}


def copy_input(src: Path, dst: Path, manifest: dict, drop: set) -> dict:
    """Committed files copied, generated ones (lm/, text encoder) linked; returns {how: count}."""
    how = {"copy": 0, "hard link": 0}
    for rel in manifest["files"]:
        if rel in drop:
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
        how["copy"] += 1
    lm = (src / "lm").resolve()
    if lm.is_dir():
        for f in sorted(lm.rglob("*")):
            if f.is_file():
                how[link_or_copy(f, dst / "lm" / f.relative_to(lm))] += 1
    te = manifest.get("text_encoder", {})
    generated = {te.get("onnx"), te.get("tokenizer")}
    lm_manifest = src / "lm" / "lm-manifest.json"
    if lm_manifest.exists():  # every bootstrap-generated root file (effnet_lite0.onnx too): the new bundle lists them there
        generated |= set(json.loads(lm_manifest.read_text()).get("root_files", {}))
    for rel in sorted(r for r in generated if r):
        if rel not in manifest["files"] and (src / rel).exists():
            how[link_or_copy((src / rel).resolve(), dst / rel)] += 1
    return how


def export_subject(model: BrainCaptioner, subject: str, voxels: int, out: Path, ridge) -> tuple[str, str]:
    """encoder-<id>.onnx (read-out + frozen shared encoder) and baseline-<id>.onnx; the encoder is checked against
    PyTorch on random inputs before it is accepted."""
    enc_rel, base_rel = f"encoder-{subject}.onnx", f"baseline-{subject}.onnx"
    ex = EncoderExport(model, subject).eval()
    export_onnx(ex, (torch.randn(2, voxels),), out / enc_rel, ["voxels"], ["brain_tokens"],
                {"voxels": {0: "batch"}, "brain_tokens": {0: "batch"}})
    x = np.random.default_rng(0).normal(size=(3, voxels)).astype(np.float32)
    with torch.no_grad():
        want = ex(torch.from_numpy(x)).numpy()
    got = ort_session(out / enc_rel).run(None, {"voxels": x})[0]
    if not np.allclose(got, want, atol=1e-3):
        raise RuntimeError(f"the exported {enc_rel} differs from the fitted model by {np.abs(got - want).max():.2g}")
    W, b = ridge
    export_onnx(RidgeExport(W, b), (torch.randn(2, voxels),), out / base_rel, ["voxels"], ["caption_embedding"],
                {"voxels": {0: "batch"}, "caption_embedding": {0: "batch"}})
    return enc_rel, base_rel


def write_calibrated_bundle(src: Path, out: Path, manifest: dict, subject: str, voxels: int, mask_img, model: BrainCaptioner,
                            ridge, record: dict) -> dict:
    import nibabel as nib
    src, out = Path(src), Path(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        drop = subject_files(manifest, subject)  # --replace: the earlier calibration's files of this person go
        how = copy_input(src, tmp, manifest, drop)
        log(f"calibrate: copied the input bundle ({how['copy']} files copied, {how['hard link']} generated files hard-linked)")
        enc_rel, base_rel = export_subject(model, subject, voxels, tmp, ridge)
        mask_rel = f"masks/sub-{subject}_roi-mask.nii.gz"
        (tmp / "masks").mkdir(exist_ok=True)
        nib.save(mask_img, str(tmp / mask_rel))
        m = json.loads(json.dumps(manifest))
        m["files"] = {k: v for k, v in m["files"].items() if k not in drop}
        for rel in (enc_rel, base_rel, mask_rel):
            m["files"][rel] = sha256_file(tmp / rel)
        m["files"] = dict(sorted(m["files"].items()))
        m["subjects"][subject] = {"voxels": int(voxels), "mask": mask_rel, "encoder": enc_rel, "baseline": base_rel}
        m["name"] = manifest["name"] if manifest["name"].endswith(f"+{subject}") else f"{manifest['name']}+{subject}"
        m["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        m.setdefault("calibration", {})[subject] = record
        validate_manifest(m, f"calibrated bundle {out}")  # the contract src/inference checks at load
        (tmp / "manifest.json").write_text(json.dumps(m, indent=2))
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return m
