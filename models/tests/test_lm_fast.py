"""The decode-step graph (mindsemantix.lm_fast): built from an exported decoder graph it computes what that graph computes
— the same top tokens and log-normalisers at the last position and the same new cache rows — while taking the prompt
prefix's cache once for all rows; written once, listed with its sha256, rebuilt when its source changes."""
import json

import numpy as np
import onnxruntime as ort
import pytest

from mindsemantix.export import export_tiny
from mindsemantix.lm_fast import STEP_FILE, TOP_K, build_step_graph, ensure_step_graph, write_step_graph
from mindsemantix.lm_quant import INT8_FILE, ensure_quantized
from mindsemantix.util import sha256_file


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    o = export_tiny(out, seed=3)
    lm = out / "lm"
    ensure_quantized(lm)
    write_step_graph(lm / "decoder.onnx", lm / "decoder.fp32.step.onnx")
    return lm, o["manifest"]["generation"]


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _full(sess, g, x, past, plen):
    B, S = x.shape[:2]
    feeds = {"inputs_embeds": x, "attention_mask": np.ones((B, plen + S), np.int64),
             "position_ids": np.tile(np.arange(plen, plen + S), (B, 1))}
    for i in range(g["num_layers"]):
        for kv in ("key", "value"):
            feeds[f"past_key_values.{i}.{kv}"] = past[f"{i}.{kv}"]
    names = [o.name for o in sess.get_outputs()]
    out = dict(zip(names, sess.run(None, feeds)))
    return out["logits"][:, -1], {n[len("present."):]: out[n] for n in names if n.startswith("present.")}


def _step(sess, g, x, prefix, past, plen, temperature):
    B, S = x.shape[:2]
    feeds = {"inputs_embeds": x, "attention_mask": np.ones((B, plen + S), np.int64),
             "position_ids": np.tile(np.arange(plen, plen + S), (B, 1)),
             "inv_temperature": np.array([1 / temperature], np.float32)}
    for i in range(g["num_layers"]):
        for kv in ("key", "value"):
            feeds[f"prefix.{i}.{kv}"] = prefix[f"{i}.{kv}"]
            feeds[f"past_key_values.{i}.{kv}"] = past[f"{i}.{kv}"]
    names = [o.name for o in sess.get_outputs()]
    out = dict(zip(names, sess.run(None, feeds)))
    return out, {n[len("present."):]: out[n] for n in names if n.startswith("present.")}


def _empty(g, B):
    return {f"{i}.{kv}": np.zeros((B, g["num_kv_heads"], 0, g["head_dim"]), np.float32)
            for i in range(g["num_layers"]) for kv in ("key", "value")}


def test_step_graph_computes_what_the_full_graph_computes(tiny):
    lm, g = tiny
    full, step = _session(lm / "decoder.onnx"), _session(lm / "decoder.fp32.step.onnx")
    H = full.get_inputs()[0].shape[2]
    rng = np.random.default_rng(0)
    P, R, B, T = 6, 4, 3, 0.7
    prefix_x = rng.normal(size=(1, P, H)).astype(np.float32)
    _, prefix = _full(full, g, prefix_x, _empty(g, 1), 0)
    # rows that already have R positions of their own after the shared prefix, then one new position each
    rows_x = rng.normal(size=(B, R, H)).astype(np.float32)
    _, rows_full = _full(full, g, np.concatenate([np.repeat(prefix_x, B, 0), rows_x], 1), _empty(g, B), 0)
    _, rows_step = _step(step, g, rows_x, prefix, _empty(g, B), P, T)
    for k, v in rows_step.items():
        assert v.shape[2] == R, "the step graph returns only the rows' own cache"
        np.testing.assert_allclose(v, rows_full[k][:, :, P:], atol=1e-5)
    x = rng.normal(size=(B, 1, H)).astype(np.float32)
    logits, present_full = _full(full, g, x, rows_full, P + R)
    out, present_step = _step(step, g, x, prefix, rows_step, P + R, T)
    K = out["top_ids"].shape[1]
    assert K == min(TOP_K, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")[:, :K]
    np.testing.assert_array_equal(out["top_ids"][:, :8], order[:, :8])
    np.testing.assert_allclose(out["top_values"], np.take_along_axis(logits, out["top_ids"], 1), atol=1e-4)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    lse_t = np.log(np.exp((logits - logits.max(1, keepdims=True)) / T).sum(1)) + logits.max(1) / T
    np.testing.assert_allclose(out["logsumexp"], lse, atol=1e-4)
    np.testing.assert_allclose(out["logsumexp_t"], lse_t, atol=1e-4)
    for k, v in present_step.items():
        np.testing.assert_allclose(v, present_full[k][:, :, P:], atol=1e-5)


def test_step_graph_without_prefix_and_the_int8_graph_run(tiny):
    lm, g = tiny
    ensure_step_graph(lm)
    full, step = _session(lm / INT8_FILE), _session(lm / STEP_FILE)
    H = full.get_inputs()[0].shape[2]
    x = np.random.default_rng(1).normal(size=(2, 5, H)).astype(np.float32)
    logits, _ = _full(full, g, x, _empty(g, 2), 0)
    out, present = _step(step, g, x, _empty(g, 1), _empty(g, 2), 0, 1.0)
    assert out["top_ids"][:, 0].tolist() == logits.argmax(1).tolist()
    assert present["0.key"].shape == (2, g["num_kv_heads"], 5, g["head_dim"])


def test_step_graph_is_listed_and_rebuilt_only_when_its_source_changes(tiny):
    lm, _ = tiny
    ensure_step_graph(lm)
    m = json.loads((lm / "lm-manifest.json").read_text())
    assert m["files"][STEP_FILE] == sha256_file(lm / STEP_FILE)
    assert m["sizes"][STEP_FILE] == (lm / STEP_FILE).stat().st_size
    assert m["step_graph"]["source_sha256"] == m["files"][INT8_FILE] and m["step_graph"]["top_k"] == TOP_K
    mtime = (lm / STEP_FILE).stat().st_mtime_ns
    assert ensure_step_graph(lm) is False and (lm / STEP_FILE).stat().st_mtime_ns == mtime
    m["step_graph"]["source_sha256"] = "0" * 64  # as if the int8 graph had been regenerated since
    (lm / "lm-manifest.json").write_text(json.dumps(m))
    assert ensure_step_graph(lm) is True
    assert json.loads((lm / "lm-manifest.json").read_text())["step_graph"]["source_sha256"] == m["files"][INT8_FILE]


def test_a_graph_of_another_shape_is_refused_with_a_reason():
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, [1, 1, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["inputs_embeds"], ["logits"])], "g",
                                                [x], [y]))
    with pytest.raises(ValueError, match="past_key_values"):
        build_step_graph(model)
    assert isinstance(model, onnx.ModelProto)
