"""Export a trained run (stage-2 weights) as a bundle: networks, reduced-rank ridge baselines, masks, manifest.
The frozen LM (lm/) and the MiniLM text_encoder.onnx come from `python -m mindsemantix.bootstrap` (run here if missing)."""
from __future__ import annotations

import json
from pathlib import Path

from .util import log


def reproduce_commands(run_dir: Path) -> list[str]:
    """The training commands behind a run, oldest first: its own argv (run.json), preceded by those of the run its
    --init weights came from (a continued stage 2, say), or, for --init-bundle, by the command recorded in that bundle's
    manifest and the export that made the bundle from its checkpoint (run.json `init_bundle` names the bundle by its
    manifest's sha256: the folder may since have been overwritten)."""
    rj = run_dir / "run.json"
    if not rj.exists():
        return []
    run = json.loads(rj.read_text())
    argv = [str(a) for a in run.get("argv", [])][1:]
    if not argv:
        return []
    before = []
    if "--init" in argv:
        before = reproduce_commands(Path(argv[argv.index("--init") + 1]).parent)
    b = run.get("init_bundle") or {}
    if "--init-bundle" in argv and b.get("command"):
        before = [b["command"]]
        if b.get("checkpoint"):
            before.append(f"python -m mindsemantix.export --checkpoint {b['checkpoint']}" + (f" --data {b['data']}" if b.get("data") else "")
                          + f" --out {b['path']}")
    return before + ["python -m mindsemantix.train " + " ".join(a if " " not in a else repr(a) for a in argv)]


def export_trained(ckpt: Path, data: Path | None, out: Path, ridge_rank: int = 64) -> dict:
    from .evaluate import load_weights, fit_baselines, train_caption_bank
    from .export import write_bundle, DEFAULT_PREPROCESSING
    from .train import load_corpus
    from .targets import build_targets
    from .lm_assets import load_lm_tokenizer
    from .textenc import minilm_dir
    from . import bootstrap
    model, blob = load_weights(ckpt)
    cfg = blob["config"]
    if cfg["lm"]["kind"] != "smollm2":
        raise SystemExit(f"{ckpt} was trained with the {cfg['lm']['kind']} LM; a bundle needs the SmolLM2 soft prompt (lm.kind: smollm2).")
    if data is not None:
        cfg["data"]["root"] = str(data)
    corpus = load_corpus(cfg["data"])
    if list(corpus.subjects) != list(model.cfg.subjects):
        corpus.subjects = {s: corpus.subjects[s] for s in model.cfg.subjects}
    bootstrap.run(out)
    lm_manifest = json.loads((out / "lm" / "lm-manifest.json").read_text())
    run = json.loads((ckpt.parent / "run.json").read_text()) if (ckpt.parent / "run.json").exists() else {}
    gen = dict(lm_manifest["generation"])
    gen.update(run.get("generation", {}))  # the prompt the soft prompt was trained with
    gen["max_new_tokens"] = cfg["lm"].get("max_new_tokens", 24)
    gen = {k: gen[k] for k in ("max_new_tokens", "eos_token_ids", "prefix_ids", "suffix_ids", "num_layers", "num_kv_heads", "head_dim")}
    tok = load_lm_tokenizer(out / "lm")
    from .train import targets_config
    tcfg = targets_config(cfg)
    targets = build_targets(corpus, tok, gen["eos_token_ids"][0], tcfg, Path(cfg["train"].get("cache_dir") or ckpt.parent / "cache"))
    baselines = fit_baselines(corpus, targets["cap_emb"], rank=ridge_rank, seed=blob["seed"])
    caps, emb = train_caption_bank(corpus, targets["cap_emb"])
    pre = dict(DEFAULT_PREPROCESSING)
    if "tr" in corpus.meta:
        pre["tr"] = corpus.meta["tr"]
    masks = {s: corpus.subjects[s].mask for s in model.cfg.subjects}
    # the canonical reproduce command (stages may have been run one by one with the same seed and config)
    command = " && ".join(reproduce_commands(ckpt.parent)) or (
        f"python -m mindsemantix.train --config {run.get('config_path', 'models/configs/default.yaml')} "
        f"--data {data or cfg['data']['root']} --out {ckpt.parent} --seed {blob['seed']} --stage all --threads 1")
    m = write_bundle(out, name=out.name, model=model, masks=masks, text_encoder=None, text_tokenizer_json=minilm_dir() / "tokenizer.json",
                     baselines=baselines, baseline_captions=caps, baseline_embeddings=emb, generation=gen, preprocessing=pre,
                     seed=blob["seed"], command=command,
                     extra={"training": {"checkpoint": str(ckpt), "stage": blob["stage"], "steps": blob["steps"], "metrics": blob["metrics"],
                                         "estimator": corpus.meta.get("estimator"), "data": cfg["data"],
                                         "baseline_ridge_rank": ridge_rank,
                                         **({"init_bundle": {k: run["init_bundle"].get(k) for k in ("path", "name", "created", "manifest_sha256")}}
                                            if run.get("init_bundle") else {})}})
    from .baseline_images import add_baseline_images
    try:  # the retrieval baseline's pictures for the Node demo summary (image.retrieval)
        m = add_baseline_images(out)
    except ValueError as e:
        log(f"export: no baseline images: {e}")
    log(f"export: {out} written")
    return m
