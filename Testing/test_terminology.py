"""The one terminology table (RadGPTLogic.terminology): codes, colours, Slicer files.

Codes are checked against pydicom's concept dictionary (generated from the DICOM
standard's context groups), an independent source; Slicer's file formats against
the column and key names its own readers use (vtkMRMLColorTableStorageNode,
dcmqi's segment-context schema).
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from RadGPTLogic import terminology as T
from RadGPTLogic import vocabulary as vocab

GENERIC = {"91723000", "123037004"}  # Anatomical Structure (DICOM CID 7150 / Slicer)


def test_every_vocabulary_name_has_a_specific_code():
    for name in vocab.CANONICAL:
        term = T.term_for(name)
        assert term.type.value not in GENERIC, f"{name} resolves to the generic Anatomical Structure"
        assert term.type.meaning.lower() != "anatomical structure", name
        assert len(term.rgb) == 3 and all(0 <= c <= 255 for c in term.rgb), name
    assert set(T.TERMS) == set(vocab.CANONICAL)


def test_the_issue_cases():
    assert T.term_for("celiac_trunk").type.value == "57850000"
    assert T.term_for("portal_vein_and_splenic_vein").type.value == "110765007"
    assert T.term_for("kidney_left").type_modifier == T.LEFT
    assert T.term_for("kidney_right").type_modifier == T.RIGHT
    assert T.term_for("adrenal_gland_left").type_modifier == T.LEFT
    assert T.term_for("liver").type_modifier is None


def test_sct_codes_and_meanings_agree_with_the_dicom_standard():
    concepts = pytest.importorskip("pydicom.sr._concepts_dict").concepts["SCT"]
    meanings = {}
    for entries in concepts.values():
        for value, (meaning, cids) in entries.items():
            if cids:  # the meaning a DICOM context group gives
                meanings.setdefault(value, set()).add(meaning.lower())
    checked = 0
    for term in list(T.TERMS.values()) + [T.lesion_term("kidney_tumor", "left")]:
        for code in (term.category, term.type, term.type_modifier, term.region, term.region_modifier):
            if code is None or code.scheme != "SCT" or code.value not in meanings:
                continue
            assert code.meaning.lower() in meanings[code.value], (term.name, code)
            checked += 1
    assert checked > 60


def test_local_codes_only_where_no_snomed_concept_was_found():
    local = {n for n, t in T.TERMS.items() if t.type.scheme == T.LOCAL_SCHEME}
    assert local == {"pancreas_neck", "veins", "celiac_aa"}
    assert T.LOCAL_SCHEME.startswith("99")  # DICOM private coding scheme designator


def test_lesion_terms_carry_organ_and_side():
    t = T.lesion_term("kidney_cyst", "right")
    assert t.category == T.MORPHOLOGICALLY_ALTERED and t.type.value == "367643001"
    assert t.region == T.ORGAN_CODES["kidney"] and t.region_modifier == T.RIGHT and t.side == "right"
    assert T.lesion_term("pancreatic_pdac").type.meaning == "Adenocarcinoma"
    assert T.lesion_term("liver_lesion", None).region_modifier is None


def test_slicer_terminology_context():
    ctx = json.loads(json.dumps(T.slicer_terminology_context()))
    assert ctx["@schema"].endswith("segment-context-schema.json#")
    types = {}
    for cat in ctx["SegmentationCodes"]["Category"]:
        for typ in cat["Type"]:
            types[(cat["CodeValue"], typ["CodeValue"])] = typ
    for name, term in T.TERMS.items():
        entry = types[(term.category.value, term.type.value)]
        if term.type_modifier is None:
            if term.category == T.ANATOMICAL_STRUCTURE:
                assert entry["recommendedDisplayRGBValue"] == list(term.rgb), name
                assert entry["3dSlicerLabel"] == term.label
        else:
            mods = {m["CodeValue"]: m for m in entry["Modifier"]}
            assert mods[term.type_modifier.value]["recommendedDisplayRGBValue"] == list(term.rgb)
            assert mods[term.type_modifier.value]["3dSlicerLabel"] == term.label
    anatomy = T.slicer_anatomic_context()
    regions = {r["CodeValue"]: r for r in anatomy["AnatomicCodes"]["AnatomicRegion"]}
    assert {m["CodeValue"] for m in regions["64033007"]["Modifier"]} == {"7771000", "24028007"}


def test_slicer_colour_table_csv():
    rows = list(csv.DictReader(io.StringIO(T.slicer_colour_table_csv())))
    # the columns vtkMRMLColorTableStorageNode::ReadCsvFile looks up
    assert list(rows[0])[:6] == ["LabelValue", "Name", "Color_R", "Color_G", "Color_B", "Color_A"]
    for prefix in ("Category", "Type", "TypeModifier", "Region", "RegionModifier"):
        for part in ("CodingScheme", "CodeValue", "CodeMeaning"):
            assert f"{prefix}_{part}" in rows[0]
    assert [r["Name"] for r in rows] == list(vocab.CANONICAL)
    assert [int(r["LabelValue"]) for r in rows] == list(range(1, len(rows) + 1))
    by_name = {r["Name"]: r for r in rows}
    left = by_name["kidney_left"]
    assert (left["Type_CodeValue"], left["TypeModifier_CodeValue"]) == ("64033007", "7771000")
    assert [int(left[c]) for c in ("Color_R", "Color_G", "Color_B")] == list(T.term_for("kidney_left").rgb)


def test_write_slicer_files(tmp_path):
    paths = T.write_slicer_files(tmp_path)
    assert sorted(p.name for p in paths) == ["radgpt-anatomy.json", "radgpt.csv", "radgpt.term.json"]
    assert json.loads((tmp_path / "radgpt.term.json").read_text(encoding="utf-8")) == T.slicer_terminology_context()


def test_terminology_entries_round_trip():
    for name, term in T.TERMS.items():
        codes = T.parse_slicer_terminology(T.slicer_terminology_entry(term))
        got, why = T.name_from_terminology(codes["category"], codes["type"], codes["type_modifier"],
                                           codes["region"], codes["region_modifier"])
        assert got == name, (name, why)
    codes = T.parse_slicer_terminology(T.slicer_terminology_entry(T.lesion_term("kidney_tumor", "left")))
    assert codes["region_modifier"] == T.LEFT


def test_slicer_general_anatomy_codes_map():
    """Codes as Slicer's own General Anatomy terminology writes them (category 123037004)."""
    anatomical = T.Code("123037004", "SCT", "Anatomical Structure")
    morph = T.Code("49755003", "SCT", "Morphologically Altered Structure")
    kidney = T.Code("64033007", "SCT", "Kidney")
    assert T.name_from_terminology(anatomical, kidney, T.Code("24028007", "SCT", "Right")) == ("kidney_right", None)
    name, why = T.name_from_terminology(anatomical, kidney)
    assert name is None and "without a side" in why
    mass = T.Code("4147007", "SCT", "Mass")
    assert T.name_from_terminology(morph, mass, None, kidney)[0] == "kidney_lesion"
    neoplasm = T.Code("108369006", "SCT", "Neoplasm")
    pancreas = T.Code("15776009", "SCT", "Pancreas")
    assert T.name_from_terminology(morph, neoplasm, None, pancreas)[0] == "pancreatic_tumor"
    assert T.name_from_terminology(morph, T.Code("367643001", "SCT", "Cyst"), None,
                                   T.Code("10200004", "SCT", "Liver"))[0] == "liver_cyst"
    name, why = T.name_from_terminology(morph, mass, None, T.Code("39607008", "SCT", "Lung"))
    assert name is None and "Lung" in why
    tissue = T.Code("85756007", "SCT", "Tissue")  # Slicer's default for a new segment
    name, why = T.name_from_terminology(tissue, tissue)
    assert name is None and "Tissue" in why
