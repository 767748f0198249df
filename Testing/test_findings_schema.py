"""findings.json against its JSON Schema (shipped in the package) and the typed accessors."""

from __future__ import annotations

import copy
import json
import typing

import pytest
from conftest import load_findings, real_path, run_cli

from RadGPTLogic.case import Case
from RadGPTLogic.engine import Engine
from RadGPTLogic.findings import LESION_KEYS, ORGAN_KEYS, LesionEntry, OrganEntry, findings_schema
from RadGPTLogic.phantom import build_phantom, staging_lesions

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def schema():
    s = findings_schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return s


@pytest.fixture(scope="module")
def phantom_findings():
    out = {}
    for phase, with_ct, lesions in (("venous", True, staging_lesions()), ("non-contrast", False, None)):
        ph = build_phantom(size="small", phase="venous" if phase == "venous" else "non-contrast",
                           **({"lesions": lesions} if lesions is not None else {}))
        case = Case.from_arrays("P", ph.affine, ph.masks, ph.ct if with_ct else None)
        out[(phase, with_ct)] = json.loads(Engine(case, phase).compute().to_json())
    return out


def test_phantom_findings_validate(schema, phantom_findings):
    for f in phantom_findings.values():
        jsonschema.validate(f, schema)
    staged = phantom_findings[("venous", True)]
    assert any(l["t_stage"] for l in staged["lesions"])  # the staging keys were exercised


def test_real_case_findings_validate(schema, tmp_path):
    seg = real_path("totalsegmentator", "ct_sm", "example_seg.nii.gz")
    ct = real_path("totalsegmentator", "ct_sm", "example_ct_sm.nii.gz")
    run_cli("import", seg, "--ct", ct, "--out", tmp_path / "case", check=True)
    run_cli("report", tmp_path / "case", "--out", tmp_path / "out", check=True)
    jsonschema.validate(load_findings(tmp_path / "out"), schema)


@pytest.mark.parametrize("path, bad", [
    (("phase",), "portal"),
    (("lesions", 0, "organ"), "spleen"),
    (("lesions", 0, "t_stage"), "T5"),
    (("lesions", 0, "vessel_contact_deg"), {"SMA": 400.0}),
    (("organs", "liver", "enlarged"), "huge"),
    (("schema_version",), 2),
])
def test_schema_rejects_wrong_values(schema, phantom_findings, path, bad):
    f = copy.deepcopy(phantom_findings[("venous", True)])
    target = f
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(f, schema)


def test_schema_and_typed_entries_agree(schema):
    organ = schema["$defs"]["organ"]
    lesion = schema["$defs"]["lesion"]
    assert tuple(organ["required"]) == ORGAN_KEYS
    assert tuple(lesion["required"]) == LESION_KEYS
    assert set(organ["properties"]) <= set(typing.get_type_hints(OrganEntry))
    assert set(lesion["properties"]) <= set(typing.get_type_hints(LesionEntry))
    assert set(ORGAN_KEYS) <= set(typing.get_type_hints(OrganEntry))
    assert set(LESION_KEYS) <= set(typing.get_type_hints(LesionEntry))
