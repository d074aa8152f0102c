"""The typed training config: defaults declared once, YAML with `extends` and `--set`, unknown keys and wrong values
stopped with one line naming the key and the file, and the committed JSON Schema equal to the one the classes generate."""
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from mindsemantix.train_config import ConfigError, TrainingConfig, _partial, config_schema, load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "models" / "configs"
SCHEMA = REPO / "src" / "core" / "schemas" / "training-config.schema.json"


def test_the_committed_schema_is_the_one_the_typed_config_generates():
    # regenerate with: PYTHONPATH=models .venv/bin/python -m mindsemantix.train_config --schema > src/core/schemas/training-config.schema.json
    assert json.loads(SCHEMA.read_text()) == config_schema()


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_config_file_validates_against_the_committed_schema(name):
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    raw = yaml.safe_load((CONFIGS / name).read_text())
    jsonschema.validate(raw, _partial(schema))                       # the file on its own (it may extend another)
    merged = load_config(CONFIGS / name).to_dict()
    jsonschema.validate(merged, schema)                              # with what it extends and every default
    assert TrainingConfig.from_dict(merged) == load_config(CONFIGS / name)


def test_extends_merges_key_by_key_and_set_replaces_one_key():
    cfg = load_config(CONFIGS / "tiny.yaml", ["train.stage2.reference=consensus", "train.stage2.steps=600", "data.subjects=[sim01]"],
                      data_root="/data/x")
    s2 = cfg.train.stage2
    assert (s2.reference, s2.steps, s2.lm_every, s2.lm_batch) == ("consensus", 600, 2, 4)   # --set, --set, tiny, tiny
    assert s2.freeze_encoder is True and s2.weight_decay == 0.0                           # from default.yaml
    assert cfg.train.ssl.readout == "learned" and cfg.train.ssl.cross_weight == 1.0       # the typed defaults
    assert cfg.model.dim == 32 and cfg.model.mask_ratio == 0.75 and cfg.lm.kind == "tiny-random"
    assert cfg.data.root == "/data/x" and cfg.data.subjects == ["sim01"]
    assert load_config(CONFIGS / "tiny.yaml", ["data.root=/y"], data_root="/data/x").data.root == "/y"  # --set after --data
    assert isinstance(load_config(CONFIGS / "tiny.yaml", ["train.stage1.lr=1"]).train.stage1.lr, float)


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_an_unknown_key_names_the_key_and_the_file(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text(f"extends: {CONFIGS / 'tiny.yaml'}\ntrain:\n  stage2: {{refrence: consensus}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert _one_line(e) == f"{bad}: unknown training-config key train.stage2.refrence; did you mean train.stage2.reference?"
    (tmp_path / "base.yaml").write_text("train: {stage3: {steps: 1}}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\n")
    with pytest.raises(ConfigError, match=r"base.yaml: unknown training-config key train.stage3"):
        load_config(tmp_path / "child.yaml")
    with pytest.raises(ConfigError, match=r"^--set model.subjects=\{a: 1\}: unknown training-config key model.subjects"):
        load_config(CONFIGS / "tiny.yaml", ["model.subjects={a: 1}"])     # set from the data, never from the config


def test_wrong_values_and_missing_settings_are_one_line_each(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "tiny.yaml", ["train.stage2.steps=many"])
    assert _one_line(e) == "train.stage2.steps is 'many' (--set train.stage2.steps=many); it must be an integer."
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "tiny.yaml", ["train.stage2.reference=best"])
    assert _one_line(e) == ("train.stage2.reference is 'best'; use random (one of the references, drawn each step) or consensus "
                            "(the one closest to the others in MiniLM space) (in --set train.stage2.reference=best).")
    with pytest.raises(ConfigError, match=r"^--set train.stage2.steps is not KEY=VALUE"):
        load_config(CONFIGS / "tiny.yaml", ["train.stage2.steps"])
    with pytest.raises(ConfigError, match=r"^--set extends=default.yaml: extends belongs in a config file"):
        load_config(CONFIGS / "tiny.yaml", ["extends=default.yaml"])
    (tmp_path / "short.yaml").write_text("lm: {kind: tiny-random}\ntrain: {batch_size: 8, ssl: {steps: 1, lr: 0.1}, stage1: {steps: 1, lr: 0.1}, "
                                         "stage2: {steps: 1}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "short.yaml")
    assert _one_line(e) == f"train.stage2.lr is not set ({tmp_path / 'short.yaml'}); set it in the config file or with --set train.stage2.lr=VALUE."
    assert load_config(tmp_path / "short.yaml", ["train.stage2.lr=0.1"]).train.stage2.lm_every == 1
