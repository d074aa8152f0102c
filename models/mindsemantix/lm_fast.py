"""The decode-step graph the Node engine runs (lm/decoder.int8.step.onnx), derived from the exported decoder graph.

Three things made a decode step of several candidate rows slow, and none is the model's arithmetic:
- the prompt's fixed start (the few-shot prefix, ~60 tokens) sat in every row's KV cache, so each step copied it into
  and out of onnxruntime once per row and per layer;
- the exported attention repeats each key/value head for its group of query heads (Tile), copying every cache twice
  per layer and step;
- every step returned the logits over the whole vocabulary for every row, which the engine then walked in JavaScript
  (argmax, normalisers, the nucleus) and, on the prompt pass, computed at every prompt position.

The step graph takes the prefix's cache once (batch 1) and attends to it apart from each row's own cache, groups the
query heads instead of repeating the cache, and returns only each row's own part of the new cache; it applies the LM
head at the last position only and returns the top-k tokens with the two log-normalisers the engine needs (at
temperature 1 for log-probabilities, and at the sampling temperature). The weights and the other nodes are the source
graph's: from the fp32 graph it agrees with it to 1e-5 (models/tests/test_lm_fast.py).

IO (fixed; docs/inference.md "The decode-step graph"):
  inputs  inputs_embeds [B,S,H], attention_mask [B, P+past+S], position_ids [B,S], inv_temperature [1],
          prefix.<i>.key/.value [1,kv,P,d], past_key_values.<i>.key/.value [B,kv,past,d]
  outputs top_values [B,K], top_ids [B,K] (int64, most probable first), logsumexp [B], logsumexp_t [B],
          present.<i>.key/.value [B,kv,past+S,d]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .lm_quant import INT8_FILE, record_lm_file
from .util import log

# How many most probable tokens a step returns: beam search needs 2 × beams, the nucleus of a sampled row rarely holds
# more than a few dozen; a nucleus that would need more is cut here (docs/inference.md).
TOP_K = 256
STEP_FILE = "decoder.int8.step.onnx"
# Recorded in lm/lm-manifest.json under "step_graph"; a change here (or a new source graph) regenerates the file.
STEP_VERSION = 2


def build_step_graph(model, top_k: int = TOP_K):
    """Rewrites the decoder graph `model` (an onnx ModelProto: inputs inputs_embeds, attention_mask, position_ids,
    past_key_values.<i>.*; outputs logits, present.<i>.*) into the step graph, in place. Returns it.

    Per layer the attention is rebuilt from the source graph's own query, new key and new value tensors: scores against
    the shared prefix cache and against the row's cache are computed apart (the prefix broadcast over the rows, never
    copied) and joined, the source graph's scaling, mask and softmax follow unchanged, and the weighted sum is split the
    same way. Query heads are grouped by their key/value head ([B,heads,S,d] → [B,kv,group·S,d]) instead of the cache
    being repeated per query head. The same dot products as the source graph; sums may differ in the last bits."""
    import onnx
    from onnx import TensorProto, helper

    g = model.graph
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in g.node for o in n.output}
    layers = sorted({int(i.name.split(".")[1]) for i in g.input if i.name.startswith("past_key_values.")})
    if not layers or "logits" not in producer:
        raise ValueError("the decoder graph lacks past_key_values inputs or a logits output; re-export the LM.")
    inputs_by_name = {i.name: i for i in g.input}
    nodes = []

    def const(name: str, vals: list[int]) -> str:
        nodes.append(helper.make_node("Constant", [], [name],
                                      value=helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals)))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def dim(shape: str, k: int, name: str) -> str:
        return node("Slice", [shape, f"step/i{k}", f"step/i{k + 1}"], name)

    for k in range(5):
        const(f"step/i{k}", [k])
    const("step/zero1", [0])
    const("step/minus1", [-1])
    const("step/big", [2**62])

    first = f"past_key_values.{layers[0]}.key"
    prefix_shape = node("Shape", [f"prefix.{layers[0]}.key"], "step/prefix_shape")
    prefix_len = dim(prefix_shape, 2, "step/prefix_len")
    # The source graph reads the past length off the first layer's cache: it is now prefix + the row's own part.
    row_shape = node("Shape", [first], "step/row_shape")
    offset = node("Concat", ["step/zero1", "step/zero1", prefix_len, "step/zero1"], "step/len_offset", axis=0)
    full_shape = node("Add", [row_shape, offset], "step/full_shape")
    for n in consumers.get(first, []):
        if n.op_type == "Shape":
            for o in n.output:
                for c in consumers.get(o, []):
                    for j, x in enumerate(c.input):
                        if x == o:
                            c.input[j] = full_shape
    for layer in layers:
        L = f"step/l{layer}"
        kc, vc = producer.get(f"present.{layer}.key"), producer.get(f"present.{layer}.value")
        for c, name in ((kc, "key"), (vc, "value")):
            if c is None or c.op_type != "Concat" or c.input[0] != f"past_key_values.{layer}.{name}":
                raise ValueError(f"present.{layer}.{name} is not Concat(past, new) in the decoder graph; "
                                 "the step graph cannot be built.")
        # the score product and the weighted sum of the source graph, found from the repeated caches
        qk = _consumer_through(consumers, f"present.{layer}.key", ["Unsqueeze", "Tile", "Reshape", "Transpose", "MatMul"])
        av = _consumer_through(consumers, f"present.{layer}.value", ["Unsqueeze", "Tile", "Reshape", "MatMul"])
        q, scores, weights, out = qk.input[0], qk.output[0], av.input[0], av.output[0]
        g.node.remove(qk)
        g.node.remove(av)
        # this row's own cache, extended: what goes back to the engine, and what its attention reads
        row_k, row_v = kc.output[0], vc.output[0]
        for name in ("key", "value"):
            src = inputs_by_name[f"past_key_values.{layer}.{name}"].type.tensor_type.shape.dim
            g.input.append(helper.make_tensor_value_info(
                f"prefix.{layer}.{name}", TensorProto.FLOAT, [1, src[1].dim_value, "prefix", src[3].dim_value]))
        # shapes: q [B,heads,S,d], cache [B,kv,*,d]
        qs = node("Shape", [q], f"{L}/qs")
        b, heads, seq, d = (dim(qs, k, f"{L}/{n}") for k, n in enumerate(("b", "heads", "s", "d")))
        kv = dim(node("Shape", [row_k], f"{L}/cs"), 1, f"{L}/kv")
        group = node("Div", [heads, kv], f"{L}/group")
        gs = node("Mul", [group, seq], f"{L}/gs")
        q4 = node("Reshape", [q, node("Concat", [b, kv, gs, d], f"{L}/q4shape", axis=0)], f"{L}/q4")  # [B,kv,g·S,d]
        s_p = node("MatMul", [q4, node("Transpose", [f"prefix.{layer}.key"], f"{L}/kpt", perm=[0, 1, 3, 2])],
                   f"{L}/s_p")  # [B,kv,g·S,P]
        s_r = node("MatMul", [q4, node("Transpose", [row_k], f"{L}/krt", perm=[0, 1, 3, 2])], f"{L}/s_r")
        s4 = node("Concat", [s_p, s_r], f"{L}/s4", axis=3)  # [B,kv,g·S,total]
        total = dim(node("Shape", [s4], f"{L}/s4s"), 3, f"{L}/total")
        node("Reshape", [s4, node("Concat", [b, heads, seq, total], f"{L}/sshape", axis=0)], scores)
        w4 = node("Reshape", [weights, node("Concat", [b, kv, gs, total], f"{L}/w4shape", axis=0)], f"{L}/w4")
        w_p = node("Slice", [w4, "step/zero1", prefix_len, "step/i3"], f"{L}/w_p")
        w_r = node("Slice", [w4, prefix_len, "step/big", "step/i3"], f"{L}/w_r")
        o4 = node("Add", [node("MatMul", [w_p, f"prefix.{layer}.value"], f"{L}/o_p"),
                          node("MatMul", [w_r, row_v], f"{L}/o_r")], f"{L}/o4")  # [B,kv,g·S,d]
        node("Reshape", [o4, node("Concat", [b, heads, seq, d], f"{L}/oshape", axis=0)], out)
    # the LM head at the last position only
    head = producer["logits"]
    head.input[0] = node("Gather", [head.input[0], "step/minus1"], "step/last_hidden", axis=1)  # [B,1,H]
    head.output[0] = "step/logits3"
    logits = node("Squeeze", ["step/logits3", "step/i1"], "step/logits")  # [B,V]
    vocab = dim(node("Shape", [logits], "step/logits_shape"), 1, "step/vocab")
    k = node("Min", [const("step/k_max", [top_k]), vocab], "step/k")  # a vocabulary smaller than k: all of it
    nodes.append(helper.make_node("TopK", [logits, k], ["top_values", "top_ids"], axis=-1, largest=1, sorted=1))
    # log Σ exp as max + log Σ exp(x − max): onnxruntime's ReduceLogSumExp took 3–6 ms for 16 rows, this ~1 ms
    def logsumexp(x: str, out: str) -> None:
        top = node("ReduceMax", [x], f"{out}/max", axes=[1], keepdims=1)
        total = node("ReduceSum", [node("Exp", [node("Sub", [x, top], f"{out}/shifted")], f"{out}/exp"), "step/i1"],
                     f"{out}/sum", keepdims=0)
        node("Add", [node("Log", [total], f"{out}/log"), node("Squeeze", [top, "step/i1"], f"{out}/max1")], out)

    logsumexp(logits, "logsumexp")
    logsumexp(node("Mul", [logits, "inv_temperature"], "step/logits_t"), "logsumexp_t")
    g.node.extend(nodes)
    g.input.append(helper.make_tensor_value_info("inv_temperature", TensorProto.FLOAT, [1]))
    outputs = [o for o in g.output if o.name != "logits"]
    del g.output[:]
    g.output.extend([
        helper.make_tensor_value_info("top_values", TensorProto.FLOAT, ["batch", top_k]),
        helper.make_tensor_value_info("top_ids", TensorProto.INT64, ["batch", top_k]),
        helper.make_tensor_value_info("logsumexp", TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info("logsumexp_t", TensorProto.FLOAT, ["batch"]),
        *outputs,
    ])
    _prune(g)
    _toposort(g)
    onnx.checker.check_model(model)
    return model


def _consumer_through(consumers: dict, start: str, ops: list[str]):
    """The node reached from tensor `start` through single consumers of the given op types (the last one returned)."""
    t, n = start, None
    for op in ops:
        found = [c for c in consumers.get(t, []) if c.op_type == op]
        if len(found) != 1:
            raise ValueError(f"{start} does not reach {' → '.join(ops)} in the decoder graph; the step graph cannot "
                             "be built from this export.")
        n = found[0]
        t = n.output[0]
    return n


def _prune(g) -> None:
    """Drops nodes whose outputs nothing uses (the repeated caches the grouped attention no longer reads)."""
    while True:
        used = {o.name for o in g.output} | {i for n in g.node for i in n.input}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            g.node.remove(n)


def _toposort(g) -> None:
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending = list(g.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(x in ready for x in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"the step graph has a cycle or a missing input at {rest[0].name}")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


def write_step_graph(src: Path, dst: Path, top_k: int = TOP_K) -> None:
    """Builds the step graph of `src` and writes it to `dst` (temporary file, then renamed)."""
    import onnx
    model = onnx.load(str(src))
    build_step_graph(model, top_k)
    tmp = dst.with_name(dst.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(dst)


def ensure_step_graph(lm_dir: Path) -> bool:
    """Writes lm/decoder.int8.step.onnx from lm/decoder.int8.onnx unless lm-manifest.json lists it as built from that
    very file with the current settings, and records its sha256, size and settings there (the Node loader verifies it
    like every LM file). Run after lm_quant.ensure_quantized. True when it (re)wrote the file."""
    lm_dir = Path(lm_dir)
    mf = lm_dir / "lm-manifest.json"
    if not mf.exists():
        raise FileNotFoundError(f"{mf} is missing; run `python -m mindsemantix.bootstrap` to export the LM first.")
    m = json.loads(mf.read_text())
    src_sha = m.get("files", {}).get(INT8_FILE)
    if src_sha is None or not (lm_dir / INT8_FILE).exists():
        raise FileNotFoundError(f"{lm_dir / INT8_FILE} is missing; run `python -m mindsemantix.lm_quant {lm_dir}` first.")
    settings = {"source": INT8_FILE, "source_sha256": src_sha, "top_k": TOP_K, "version": STEP_VERSION}
    dst = lm_dir / STEP_FILE
    if (STEP_FILE in m.get("files", {}) and dst.exists() and m.get("sizes", {}).get(STEP_FILE) == dst.stat().st_size
            and m.get("step_graph") == settings):
        return False
    log(f"lm: building {STEP_FILE} from {INT8_FILE} (shared prefix cache, grouped-query attention, top {TOP_K}) …")
    write_step_graph(lm_dir / INT8_FILE, dst)
    m["step_graph"] = settings
    record_lm_file(mf, m, STEP_FILE)
    return True


def main(argv=None) -> int:
    """python -m mindsemantix.lm_fast LM_DIR: add the step graph to an lm/ folder that has the int8 decoder (tests, other
    bundles); --src/--dst build one from any exported decoder graph instead."""
    p = argparse.ArgumentParser(prog="python -m mindsemantix.lm_fast", description=main.__doc__)
    p.add_argument("lm_dir", nargs="?", type=Path, metavar="BUNDLE/lm")
    p.add_argument("--src", type=Path, help="an exported decoder graph (with --dst)")
    p.add_argument("--dst", type=Path)
    a = p.parse_args(argv)
    try:
        if a.src and a.dst:
            write_step_graph(a.src, a.dst)
        elif a.lm_dir:
            ensure_step_graph(a.lm_dir)
        else:
            p.error("give BUNDLE/lm, or --src and --dst")
    except (FileNotFoundError, ValueError) as e:
        sys.stderr.write(f"[lm_fast] {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
