"""The training configuration, typed: every setting and its default is declared once here (the model's architecture in
`ModelConfig`, model.py), read from `models/configs/*.yaml`.

A YAML file may name another with `extends: other.yaml` (relative to itself); its sections are merged into the other's,
key by key. `--set a.b.c=VALUE` (a YAML value) then replaces one key. Every file and every `--set` is checked against the
JSON Schema generated from these classes (`config_schema()`, committed as src/core/schemas/training-config.schema.json):
an unknown key, a wrong type or a value outside a setting's choices stops the run with one line naming the key and
where it came from.

  python -m mindsemantix.train_config --schema      prints the JSON Schema
  python -m mindsemantix.train_config CONFIG.yaml   prints the merged config with every default filled in
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .model import ModelConfig

SCHEMA_PATH = "src/core/schemas/training-config.schema.json"


class ConfigError(ValueError):
    """A training config that cannot be used; the message is one sentence naming the key and the file."""


def _doc(text: str, default: Any = dataclasses.MISSING, choices: dict[str, str] | None = None, **kw):
    """A config field with its description (and, for a closed set of values, what each value means)."""
    meta = {"doc": text, **({"choices": choices} if choices else {})}
    return dataclasses.field(metadata=meta, **({} if default is dataclasses.MISSING else {"default": default}), **kw)


# ---- the sections -------------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class DataConfig:
    """Where the training trials come from (docs/model.md, "NSD as users hold it")."""
    source: Literal["sim", "nsd-hdf5", "nsd-wds"] = _doc("the corpus layout", "sim", choices={
        "sim": "the simulator's folder (data.root)", "nsd-hdf5": "MindEye2's HDF5 betas", "nsd-wds": "MindEye-1 / UMBRAE webdatasets"})
    root: str | None = _doc("sim: the simulated dataset folder (`--data` overrides it)", None)
    field: str = _doc("sim: which per-trial estimate to train on (`responses`, the online window mean, or `betas`)", "responses")
    subjects: list[str] | dict[str, dict] | None = _doc(
        "sim: the subject ids to load (null: all); nsd-*: subject id → its files", None)
    ssl_subjects: list[str] | dict[str, dict] | None = _doc(
        "masked brain modeling's subjects when they are more than `subjects` (it needs no captions)", None)
    captions: str | None = _doc("nsd-*: the captions file", None)
    stim_info: str | None = _doc("nsd-*: nsd_stim_info_merged.csv (nsdId → cocoId, shared1000 test split)", None)
    stimuli_h5: str | None = _doc("nsd-hdf5: nsd_stimuli.hdf5 for the image losses", None)
    labeled_fraction: float = _doc("the share of training trials the captioning stages see (masked brain modeling sees all)", 1.0)


@dataclass(kw_only=True)
class LmConfig:
    """The frozen language model the soft prompt feeds."""
    kind: Literal["smollm2", "tiny-random"] = _doc("the LM", choices={
        "smollm2": "SmolLM2-135M-Instruct", "tiny-random": "a tiny random LM with the real vocabulary (tests)"})
    cache_dir: str = _doc("where the LM's weights are cached", "models/runs/cache")
    caption_max_tokens: int = _doc("caption tokens kept as LM / generation targets", 16)
    max_new_tokens: int = _doc("greedy decoding's limit", 24)


@dataclass(kw_only=True)
class LossWeights:
    """Each loss's weight in a stage's total (0 switches a loss off); a stage adds only the losses it has."""
    itc_text: float = _doc("brain–text contrastive (stages 1, 2)", 1.0)
    emb: float = _doc("cosine regression onto the mean reference embedding (stages 1, 2)", 0.0)
    itc_image: float = _doc("brain–image contrastive (stages 1, 2)", 1.0)
    itm: float = _doc("brain–text matching with hard negatives (stage 1)", 1.0)
    itg: float = _doc("brain-grounded caption generation in the Q-Former (stage 1)", 1.0)
    align: float = _doc("soft-prompt key-word alignment (stage 2)", 0.0)
    lm: float = _doc("the frozen LM's loss on the caption tokens (stage 2)", 1.0)
    generator: float = _doc("the image generator's MSE (stages 1, 2)", 1.0)


@dataclass(kw_only=True)
class StageConfig:
    steps: int = _doc("optimiser steps")
    lr: float = _doc("peak learning rate (AdamW; linear warm-up, cosine decay to a tenth)")
    warmup: float = _doc("warm-up share of the steps", 0.05)
    weight_decay: float = _doc("AdamW weight decay", 0.05)
    batch_size: int | None = _doc("trials per batch (null: train.batch_size)", None)


@dataclass(kw_only=True)
class SslConfig(StageConfig):
    """Masked brain modeling (docs/model.md, Training)."""
    target: str = _doc("what the masked code reconstructs", "self", choices={
        "self": "reconstruct the trial", "repeats": "the mean of its other repeats",
        "cross": "the trial itself plus another subject's response to the same stimulus"})
    cross_weight: float = _doc("weight of the cross-subject reconstruction (target cross)", 1.0)
    contrast_weight: float = _doc("weight of the cross-subject contrastive term (0: off)", 0.0)
    norm_patches: bool = _doc("normalise each target patch by its own mean and sd (MAE's normalised-pixel loss)", False)
    readout: str = _doc("how the subject read-outs start", "learned", choices={
        "learned": "masked brain modeling trains the subject read-outs",
        "pca": "each read-out is first fitted, without captions, as a linear autoencoder of its subject's trials"})


@dataclass(kw_only=True)
class Stage1Config(StageConfig):
    """BLIP-2 style representation learning."""
    encoder_lr_mult: float = _doc("the brain encoder's learning rate relative to lr", 1.0)
    readout_lr_mult: float | None = _doc("the subject read-outs' own rate relative to lr (null: encoder_lr_mult; 0: frozen)", None)


@dataclass(kw_only=True)
class Stage2Config(Stage1Config):
    """The soft prompt into the frozen LM."""
    freeze_encoder: bool = _doc("keep the brain encoder fixed (no gradient, no dropout)", False)
    reference: str = _doc("which reference caption the LM learns", "random", choices={
        "random": "one of the references, drawn each step", "consensus": "the one closest to the others in MiniLM space"})
    short_captions: int = _doc("draw the LM's reference among the n shortest (0: all)", 0)
    lm_every: int = _doc("the LM loss every n steps (0: never)", 1)
    lm_batch: int | None = _doc("the LM loss on the first n trials of the batch (null or 0: all)", None)


@dataclass(kw_only=True)
class TrainSection:
    batch_size: int = _doc("trials per batch (a stage's batch_size overrides it)")
    cache_dir: str | None = _doc("where frozen-encoder targets are cached (null: <out>/cache)", None)
    embed_captions: int | None = _doc("MiniLM-embed at most this many references per stimulus (null: all)", None)
    effnet_size: int | None = _doc("EfficientNet-Lite0 input size (null: its own)", None)
    precision: str | int = _doc("Lightning's precision", "32-true")
    grad_clip: float | None = _doc("gradient norm clip (null: none)", 1.0)
    ckpt_every: int = _doc("Lightning checkpoint every n steps", 200)
    keep_all_ckpts: bool = _doc("keep every checkpoint, not only the last", False)
    log_every: int = _doc("a log line every n steps", 25)
    weights: LossWeights = _doc("loss weights", default_factory=LossWeights)
    ssl: SslConfig = _doc("stage ssl: masked brain modeling")
    stage1: Stage1Config = _doc("stage 1: contrastive, matching, generation")
    stage2: Stage2Config = _doc("stage 2: soft prompt into the frozen LM")

    def stage(self, name: str) -> StageConfig:
        return getattr(self, name)


@dataclass(kw_only=True)
class TrainingConfig:
    """What `python -m mindsemantix.train --config` reads."""
    data: DataConfig = _doc("the training data", default_factory=DataConfig)
    model: ModelConfig = _doc("the architecture (ModelConfig in models/mindsemantix/model.py; subjects come from the data)",
                              default_factory=ModelConfig)
    lm: LmConfig = _doc("the frozen LM")
    train: TrainSection = _doc("optimisation")

    def to_dict(self) -> dict:
        """Plain data (checkpoints, run.json); `from_dict` reads it back."""
        return _to_plain(self)

    @classmethod
    def from_dict(cls, raw: dict, source: str = "the saved training config") -> TrainingConfig:
        _check(raw, config_schema(), source)
        return _build(cls, raw)


# ---- schema -------------------------------------------------------------------------------------------------------

def _config_fields(cls):
    return [f for f in dataclasses.fields(cls) if f.metadata.get("config", True)]


def _type_schema(tp) -> dict:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _class_schema(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_schema(a) for a in args]
        if all(set(p) == {"type"} and isinstance(p["type"], str) for p in parts):
            return {"type": [p["type"] for p in parts]}
        return {"anyOf": parts}
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null", dict: "object"}
    if tp in simple:
        return {"type": simple[tp]}
    raise TypeError(f"no JSON Schema for the config type {tp!r}")


def _class_schema(cls) -> dict:
    hints = typing.get_type_hints(cls)
    props, required = {}, []
    for f in _config_fields(cls):
        p = _type_schema(hints[f.name])
        if "choices" in f.metadata:
            p["enum"] = list(f.metadata["choices"])
        if "doc" in f.metadata:
            doc = f.metadata["doc"]
            if "choices" in f.metadata:
                doc += ": " + "; ".join(f"{k}: {v}" for k, v in f.metadata["choices"].items())
            p = {"description": doc, **p}
        if f.default is not dataclasses.MISSING:
            p["default"] = f.default
        elif f.default_factory is dataclasses.MISSING:
            required.append(f.name)
        props[f.name] = p
    out = {"type": "object", "additionalProperties": False, "properties": props}
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        out = {"description": " ".join(cls.__doc__.split()), **out}
    return {**out, "required": required} if required else out


def config_schema() -> dict:
    """The JSON Schema of a merged training config (every file merged, `extends` resolved)."""
    s = _class_schema(TrainingConfig)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "mindsemantix training config",
            "description": "python -m mindsemantix.train --config FILE (models/configs/*.yaml). Generated from "
                           "models/mindsemantix/train_config.py (python -m mindsemantix.train_config --schema); a file "
                           "may name another with `extends` and leave out what that one sets.",
            **{k: v for k, v in s.items() if k != "description"},
            "properties": {**s["properties"], "extends": {"description": "another config file, relative to this one, "
                                                                         "whose settings this file's replace", "type": "string"}}}


def _partial(schema: dict) -> dict:
    """The schema without `required`: one file of an `extends` chain, or one --set, may hold any part of a config."""
    if isinstance(schema, dict):
        return {k: _partial(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [_partial(v) for v in schema]
    return schema


# ---- checking -----------------------------------------------------------------------------------------------------

def _kind(s: dict) -> str:
    names = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string", "null": "null",
             "object": "a mapping", "array": "a list"}
    if "anyOf" in s:
        return " or ".join(_kind(p) for p in s["anyOf"])
    t = s.get("type")
    if t == "array" and "items" in s:
        return f"a list of {_kind(s['items']).split(' ', 1)[-1]}s"
    if isinstance(t, list):
        return " or ".join(names[x] for x in t)
    return names.get(t, "something else")


def _known_keys(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in schema.get("properties", {}).items():
        out.append(prefix + k)
        out += _known_keys(v, prefix + k + ".")
    return out


def _message(e, source: str, root: dict) -> str:
    path = [str(p) for p in e.absolute_path]
    key = ".".join(path)
    if e.validator == "additionalProperties":
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        bad = ".".join(path + [str(extra[0])])
        near = difflib.get_close_matches(bad, _known_keys(root), n=1, cutoff=0.75)
        hint = f"did you mean {near[0]}?" if near else f"the settings are listed in {SCHEMA_PATH}."
        return f"{source}: unknown training-config key {bad}; {hint}"
    if e.validator == "required":
        missing = e.message.split("'")[1]
        full = ".".join(path + [missing])
        return f"{full} is not set ({source}); set it in the config file or with --set {full}=VALUE."
    if e.validator == "enum":
        choices = _field_meta(e.absolute_path).get("choices") or {v: "" for v in e.validator_value}
        listed = [f"{k} ({v})" if v else str(k) for k, v in choices.items()]
        use = ", ".join(listed[:-1]) + " or " + listed[-1] if len(listed) > 1 else listed[0]
        return f"{key} is {e.instance!r}; use {use} (in {source})."
    if e.validator in ("type", "anyOf"):
        return f"{key} is {e.instance!r} ({source}); it must be {_kind(e.schema)}."
    return f"{key}: {e.message} ({source})."


def _field_meta(path) -> dict:
    """The metadata (doc, choices) of the config field at path, e.g. ('train', 'ssl', 'target')."""
    cls, meta = TrainingConfig, {}
    for p in path:
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if p not in fields:
            return {}
        meta, cls = fields[p].metadata, typing.get_type_hints(cls)[p]
    return meta


def _check(raw: dict, schema: dict, source: str) -> None:
    import jsonschema
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} is not a mapping of config sections (data, model, lm, train): fix the file.")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(raw), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(_message(errors[0], source, schema))


# ---- building -----------------------------------------------------------------------------------------------------

def _value(tp, v):
    if dataclasses.is_dataclass(tp) and isinstance(v, dict):
        return _build(tp, v)
    if tp is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if tp is int and isinstance(v, float):  # JSON Schema counts 3.0 as an integer
        return int(v)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        for a in args:  # the first member the value already is, else the first that converts
            if a is type(v) or (typing.get_origin(a) or a) is type(v):
                return v
        for a in args:
            if a in (float, int) and isinstance(v, (int, float)) and not isinstance(v, bool):
                return a(v)
    return v


def _build(cls, raw: dict):
    hints = typing.get_type_hints(cls)
    return cls(**{k: _value(hints[k], v) for k, v in raw.items()})


def _to_plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in _config_fields(type(obj))}
    if isinstance(obj, list):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def section(cls, raw, name: str, source: str):
    """One section (e.g. DataConfig) from its plain form, checked like a file's; an instance passes through."""
    if isinstance(raw, cls):
        return raw
    schema = config_schema()
    _check({name: raw}, _partial(schema), source)
    return _build(cls, raw)


# ---- loading ------------------------------------------------------------------------------------------------------

def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    import yaml
    path = Path(path)
    if path.resolve() in seen:
        raise ConfigError(f"{path} extends itself through {' → '.join(str(p) for p in seen)}: break the cycle.")
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"the training config {path} does not exist: give a file such as models/configs/default.yaml.") from None
    raw = {} if raw is None else raw
    _check(raw, _partial(config_schema()), str(path))
    raw = dict(raw)
    base = raw.pop("extends", None)
    return _merge(_read(path.parent / base, seen + (path.resolve(),)), raw) if base else raw


def parse_set(kv: str) -> tuple[list[str], Any]:
    """`a.b.c=VALUE` (VALUE in YAML) → (['a', 'b', 'c'], value)."""
    import yaml
    key, eq, val = kv.partition("=")
    if not eq or not key:
        raise ConfigError(f"--set {kv} is not KEY=VALUE: write e.g. --set train.stage2.steps=600.")
    if key == "extends":
        raise ConfigError(f"--set {kv}: extends belongs in a config file; give that file to --config instead.")
    return key.split("."), yaml.safe_load(val)


def load_config(path: Path | str, overrides: list[str] = (), data_root: str | None = None) -> TrainingConfig:
    """The config file (with what it extends), `--data` (data.root), then each `--set KEY=VALUE` (replacing that key)."""
    raw = _read(Path(path))
    schema = config_schema()
    if data_root is not None:
        raw.setdefault("data", {})["root"] = data_root
    for kv in overrides:
        parts, value = parse_set(kv)
        one: Any = value
        for p in reversed(parts):
            one = {p: one}
        _check(one, _partial(schema), f"--set {kv}")
        d = raw
        for p in parts[:-1]:
            if not isinstance(d.get(p), dict):
                d[p] = {}
            d = d[p]
        d[parts[-1]] = value
    _check(raw, schema, str(path) + (" and --set" if overrides else ""))
    return _build(TrainingConfig, raw)


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.train_config",
                                 description="Print a training config with every default filled in, or the config's JSON Schema.")
    ap.add_argument("config", nargs="?", help="a YAML training config, e.g. models/configs/default.yaml")
    ap.add_argument("--schema", action="store_true", help="print the JSON Schema instead")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if a.schema:
        print(json.dumps(config_schema(), indent=2))
        return 0
    if a.config:
        print(json.dumps(load_config(a.config).to_dict(), indent=2))
        return 0
    ap.print_usage(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
