"""The contracts in src/core/schemas, from the Python side: the shared documents (test/fixtures/schemas/documents.json,
also run by test/core/schemas.test.ts with ajv) are judged alike, manifests are validated before they are written,
and refusals are one sentence naming the field."""
import copy
import json
from pathlib import Path

import pytest

from mindsemantix import schemas

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = json.loads((ROOT / "test" / "fixtures" / "schemas" / "documents.json").read_text())


def document_of(case):
    if "base" not in case:
        return copy.deepcopy(case["doc"])
    file, _, sub = case["base"].partition("#")
    doc = json.loads((ROOT / file).read_text())
    for k in sub.split("/") if sub else []:
        doc = doc[k]

    def parent(path):
        node = doc
        for k in path[:-1]:
            node = node[k]
        return node
    for path, value in case.get("set", []):
        parent(path)[path[-1]] = value
    for path in case.get("delete", []):
        del parent(path)[path[-1]]
    return doc


def test_schemas_are_found_from_the_package():
    assert schemas.SCHEMA_DIR == ROOT / "src" / "core" / "schemas"
    assert schemas.load("bundle-manifest")["$id"] == schemas.SCHEMA_BASE + "bundle-manifest.schema.json"


@pytest.mark.parametrize("case", FIXTURES["good"], ids=lambda c: c["name"])
def test_good_documents_validate(case):
    assert schemas.check(case["schema"], document_of(case), case.get("pointer", "")) is None


@pytest.mark.parametrize("case", FIXTURES["bad"], ids=lambda c: f'{c["schema"]}:{c["kind"]}:{c["field"]}')
def test_bad_documents_are_refused_naming_the_same_field_as_ts(case):
    p = schemas.check(case["schema"], document_of(case), case.get("pointer", ""))
    assert p is not None, "accepted"
    assert (p.kind, p.field, p.expected) == (case["kind"], case["field"], case["expected"])


def test_a_manifest_that_breaks_the_contract_is_not_written(tmp_path):
    m = json.loads((ROOT / "models" / "bundles" / "default" / "manifest.json").read_text())
    assert schemas.validate_manifest(m, "default") is m
    m["subjects"]["sim01"]["voxels"] = 0
    with pytest.raises(schemas.SchemaViolation) as e:
        schemas.validate_manifest(m, f"export to {tmp_path}")
    msg = str(e.value)
    assert msg == (f'export to {tmp_path}: manifest.json field "subjects.sim01.voxels" must be an integer ≥ 1 (it is 0); '
                   "the bundle would not load, fix the exporter or its inputs.")
    assert e.value.problem.field == "subjects.sim01.voxels"


def test_the_exporter_refuses_a_bad_preprocessing_block(tmp_path, monkeypatch):
    """write_bundle validates before manifest.json exists: a preprocessing block streams/ would refuse never ships."""
    from mindsemantix import export
    monkeypatch.setattr(export, "DEFAULT_PREPROCESSING", {**export.DEFAULT_PREPROCESSING, "detrend": {"polort": 2}})
    with pytest.raises(schemas.SchemaViolation, match=r'unknown field "preprocessing\.detrend\.polort"'):
        export.export_tiny(tmp_path / "b", seed=3)
    assert (tmp_path / "b" / "qformer.onnx").exists() and not (tmp_path / "b" / "manifest.json").exists()


def test_calibrate_refuses_an_input_bundle_whose_manifest_breaks_the_contract(tmp_path):
    from types import SimpleNamespace
    from mindsemantix.calibrate import run
    from mindsemantix.calibrate_data import CalibrationInputError
    m = json.loads((ROOT / "models" / "bundles" / "default" / "manifest.json").read_text())
    del m["dims"]["E"]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "manifest.json").write_text(json.dumps(m))
    a = SimpleNamespace(bundle=str(tmp_path / "in"), out=str(tmp_path / "out"), subject="p01", threads=1, seed=0, replace=False)
    with pytest.raises(CalibrationInputError, match=r'^.*/in: manifest\.json has no field "dims\.E" \(an integer ≥ 1\); pass --bundle with a folder'):
        run(a)
    assert not (tmp_path / "out").exists()
