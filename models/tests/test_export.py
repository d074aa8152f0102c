"""The tiny random bundle: complete per docs/ARCHITECTURE.md, checksums right, and ONNX == PyTorch (≤ 1e-4, same greedy ids)."""
import json

import numpy as np
import onnx
import pytest
import torch

from mindsemantix import schemas
from mindsemantix.export import export_tiny
from mindsemantix.caption import BundleRunner, greedy_torch
from mindsemantix.onnx_util import ort_session
from mindsemantix.util import sha256_file
from mindsemantix.llama_kv import KVLlama, tiny_random_hf_llama

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    # a bootstrap-generated file already in the folder (as when re-exporting over a used bundle): never listed
    (out / "effnet_lite0.onnx").write_bytes(b"generated on each machine by mindsemantix.bootstrap")
    objs = export_tiny(out, seed=3)
    return out, objs


def io_names(path):
    m = onnx.load(str(path), load_external_data=False)
    return [i.name for i in m.graph.input], [o.name for o in m.graph.output]


def test_bundle_is_complete_with_checksums(tiny):
    out, _ = tiny
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "mindsemantix-bundle" and m["version"] == 1
    assert schemas.check("bundle-manifest", m) is None  # the contract src/inference loads it by
    for k in ("T", "D", "Q", "D_lm", "E"):
        assert isinstance(m["dims"][k], int) and m["dims"][k] > 0
    for rel, sha in m["files"].items():
        assert sha256_file(out / rel) == sha, rel
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - set(m["files"]) == {"manifest.json", "effnet_lite0.onnx", "lm/decoder.onnx", "lm/embed_tokens.onnx", "lm/tokenizer.json", "lm/lm-manifest.json"}
    lm = json.loads((out / "lm" / "lm-manifest.json").read_text())
    for rel, sha in lm["files"].items():
        assert sha256_file(out / "lm" / rel) == sha
    for sub, e in m["subjects"].items():
        import nibabel as nib
        assert (np.asarray(nib.load(out / e["mask"]).dataobj) > 0).sum() == e["voxels"]
        assert io_names(out / e["encoder"]) == (["voxels"], ["brain_tokens"])
        assert io_names(out / e["baseline"]) == (["voxels"], ["caption_embedding"])
    assert io_names(out / "qformer.onnx") == (["brain_tokens"], ["soft_prompt", "caption_embedding"])
    assert io_names(out / "generator.onnx") == (["caption_embedding", "brain_tokens"], ["image"])
    assert io_names(out / "text_encoder.onnx") == (["input_ids", "attention_mask"], ["sentence_embedding"])
    assert io_names(out / "lm" / "embed_tokens.onnx") == (["input_ids"], ["inputs_embeds"])
    g = m["generation"]
    ins, outs = io_names(out / "lm" / "decoder.onnx")
    assert ins[:3] == ["inputs_embeds", "attention_mask", "position_ids"] and outs[0] == "logits"
    assert ins[3:] == [f"past_key_values.{i}.{kv}" for i in range(g["num_layers"]) for kv in ("key", "value")]
    assert outs[1:] == [f"present.{i}.{kv}" for i in range(g["num_layers"]) for kv in ("key", "value")]
    tokj = json.loads((out / "lm" / "tokenizer.json").read_text())
    assert len(tokj["model"]["vocab"]) == 49152  # the real SmolLM2 vocabulary
    assert g["prefix_ids"] and g["suffix_ids"] and 2 in g["eos_token_ids"]
    emb = np.load(out / "baseline_embeddings.npy")
    assert emb.dtype == np.float32 and emb.shape == (len(json.loads((out / "baseline_captions.json").read_text())), m["dims"]["E"])


def test_networks_match_pytorch(tiny):
    out, o = tiny
    model, m = o["model"], o["manifest"]
    rng = np.random.default_rng(0)
    for sub, e in m["subjects"].items():
        v = rng.normal(size=(3, e["voxels"])).astype(np.float32)
        bt = ort_session(out / e["encoder"]).run(None, {"voxels": v})[0]
        with torch.no_grad():
            ref = model.encoder(sub, torch.from_numpy(v)).numpy()
        assert bt.shape == (3, m["dims"]["T"], m["dims"]["D"])
        assert np.abs(bt - ref).max() <= TOL
        W, b = o["baselines"][sub]
        pred = ort_session(out / e["baseline"]).run(None, {"voxels": v})[0]
        r = v @ W + b
        assert np.abs(pred - r / np.linalg.norm(r, axis=1, keepdims=True)).max() <= TOL
    bt = torch.randn(3, m["dims"]["T"], m["dims"]["D"])
    sp, ce = ort_session(out / "qformer.onnx").run(None, {"brain_tokens": bt.numpy()})
    with torch.no_grad():
        q = model.qformer.queries(bt)
        assert np.abs(sp - model.qformer.lm_proj(q).numpy()).max() <= TOL
        assert np.abs(ce - model.qformer.caption_embedding(q).numpy()).max() <= TOL
        assert np.allclose(np.linalg.norm(ce, axis=1), 1, atol=1e-5)
        img = ort_session(out / "generator.onnx").run(None, {"caption_embedding": ce, "brain_tokens": bt.numpy()})[0]
        ref = model.generator(torch.from_numpy(ce), bt).numpy()
    assert img.shape == (3, *m["dims"]["image"]) and img.min() >= 0 and img.max() <= 1
    assert np.abs(img - ref).max() <= TOL
    ids = np.array([[101, 1037, 3899, 2003, 102], [101, 2417, 102, 0, 0]], np.int64)
    mask = (ids > 0).astype(np.int64)
    se = ort_session(out / "text_encoder.onnx").run(None, {"input_ids": ids, "attention_mask": mask})[0]
    with torch.no_grad():
        ref = o["text_encoder"](torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert np.abs(se - ref).max() <= TOL


def test_decoder_kv_cache_matches_pytorch_and_full_recompute(tiny):
    out, o = tiny
    lm = o["lm"]
    s = lm.s
    sess = ort_session(out / "lm" / "decoder.onnx")
    names = [x.name for x in sess.get_outputs()]
    x = torch.randn(2, 7, s.hidden_size)
    mask = torch.ones(2, 7, dtype=torch.int64)
    pos = torch.arange(7)[None].expand(2, -1).contiguous()
    # first pass P = 0, then 1 token with the cache
    feeds = {"inputs_embeds": x[:, :6].numpy(), "attention_mask": mask[:, :6].numpy(), "position_ids": pos[:, :6].numpy()}
    for i in range(s.num_layers):
        for kv in ("key", "value"):
            feeds[f"past_key_values.{i}.{kv}"] = np.zeros((2, s.num_kv_heads, 0, s.head_dim), np.float32)
    r1 = dict(zip(names, sess.run(None, feeds)))
    with torch.no_grad():
        ref1 = lm(x[:, :6], mask[:, :6], pos[:, :6], *lm.empty_past(2))
    assert np.abs(r1["logits"] - ref1[0].numpy()).max() <= TOL
    feeds = {"inputs_embeds": x[:, 6:].numpy(), "attention_mask": mask.numpy(), "position_ids": pos[:, 6:].numpy()}
    feeds.update({k.replace("present", "past_key_values"): v for k, v in r1.items() if k.startswith("present")})
    r2 = dict(zip(names, sess.run(None, feeds)))
    with torch.no_grad():
        full = lm(x, mask, pos, *lm.empty_past(2))[0]
    assert r2["present.0.key"].shape == (2, s.num_kv_heads, 7, s.head_dim)
    assert np.abs(r2["logits"][:, 0] - full[:, 6].numpy()).max() <= TOL


def test_kv_llama_equals_transformers_llama():
    hf = tiny_random_hf_llama(500, seed=1)
    lm = KVLlama.from_hf(hf)
    ids = torch.randint(0, 500, (2, 9))
    with torch.no_grad():
        ref = hf(input_ids=ids).logits
        got = lm(lm.embed_tokens(ids), torch.ones(2, 9, dtype=torch.int64), torch.arange(9)[None].expand(2, -1), *lm.empty_past(2))[0]
    assert torch.abs(ref - got).max() <= TOL


def test_greedy_captions_identical_in_onnxruntime_and_pytorch(tiny):
    out, o = tiny
    m = o["manifest"]
    runner = BundleRunner(out)
    rng = np.random.default_rng(1)
    for sub, e in m["subjects"].items():
        v = rng.normal(size=(4, e["voxels"])).astype(np.float32)
        sp, _ = runner.qform(runner.brain_tokens(sub, v))
        got = runner.greedy(sp)
        with torch.no_grad():
            bt = o["model"].encoder(sub, torch.from_numpy(v))
            spt = o["model"].qformer.lm_proj(o["model"].qformer.queries(bt))
        ref = greedy_torch(o["lm"], o["lm"].embed_tokens, spt, m["generation"])
        assert got == ref
        assert all(len(r) > 0 for r in ref)
        texts = runner.caption(sub, v)
        assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
