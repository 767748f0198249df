"""The narrative fact checker against real findings (phantom -> engine -> findings.json)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from RadGPTLogic.phantom import build_phantom, staging_lesions, write_case
from RadGPTLogic.pipeline import run_report
from RadGPTLogic.report.factcheck import ERROR_KINDS, check_narrative, number_matches
from RadGPTLogic.report.structured import render_text


def make_findings(root, name, lesions=None, phase="non-contrast", edit=None) -> tuple:
    """(out_dir, findings dict) of a phantom case run through the engine."""
    kwargs = {} if lesions is None else {"lesions": lesions}
    phantom = build_phantom(size="small", **kwargs)
    if edit is not None:
        edit(phantom)
    case = write_case(phantom, root / "cases", case_id=name)
    out = root / f"out_{name}"
    run_report(case, out, phase)
    return out, json.loads((out / "findings.json").read_text(encoding="utf-8"))


def cm(mm: float) -> str:
    return f"{mm / 10:.1f}"


def values(f: dict) -> dict:
    """Display strings of the staging phantom's facts, checked against the layout the texts assume."""
    les = {les["id"]: les for les in f["lesions"]}
    l1, l2, pdac = les["liver_lesion_1"], les["liver_lesion_2"], les["pancreatic_pdac_1"]
    cyst, kl = les["kidney_cyst_1"], les["kidney_lesion_1"]
    assert set(l1["location"]["couinaud"]) == {"S7", "S8"} and l2["location"]["couinaud"][0] == "S4a"
    assert pdac["location"]["pancreas_part"] == "head" and pdac["t_stage"] == "T2"
    assert pdac["resectability"] == "borderline"
    deg = pdac["vessel_contact_deg"]
    assert deg["CHA"] and deg["SMV"] and deg["PV"] > 180 >= max(deg["CHA"], deg["SMV"])
    assert not (deg["SMA"] or deg["CA"] or deg["aorta"] or deg["IVC"])
    assert (cyst["side"], cyst["location"]["kidney_pole"]) == ("right", "upper")
    assert (kl["side"], kl["location"]["kidney_pole"], kl["attenuation"]) == ("left", "interpolar", "iso")
    size = lambda les: f"{cm(les['longest_diameter_mm'])} x {cm(les['perpendicular_diameter_mm'])} cm"  # noqa: E731
    mm = lambda les: f"{les['longest_diameter_mm']:.0f} x {les['perpendicular_diameter_mm']:.0f} mm"  # noqa: E731
    o = f["organs"]
    return {
        "L1": size(l1), "L2": size(l2), "P": size(pdac), "C": size(cyst), "K": size(kl),
        "L1mm": mm(l1), "L2mm": mm(l2), "L1long": cm(l1["longest_diameter_mm"]), "Clong": cm(cyst["longest_diameter_mm"]),
        "CHA": f"{deg['CHA']:.0f}", "SMV": f"{deg['SMV']:.0f}", "PV": f"{deg['PV']:.0f}",
        "liver_ml": f"{o['liver']['volume_ml']:.1f}", "liver_ml0": f"{o['liver']['volume_ml']:.0f}",
        "spleen_ml": f"{o['spleen']['volume_ml']:.1f}", "pancreas_ml": f"{o['pancreas']['volume_ml']:.1f}",
        "liver_hu": f"{o['liver']['mean_hu']:.0f}", "img1": l1["slice_index"], "img2": l2["slice_index"],
        "spleen_hu": f"{o['spleen']['mean_hu']:.0f}", "pancreas_hu": f"{o['pancreas']['mean_hu']:.0f}",
        "kidney_hu": f"{o['kidney_right']['mean_hu']:.0f}", "kidney_r_ml": f"{o['kidney_right']['volume_ml']:.1f}",
        "L1_ml": f"{l1['volume_ml']:.1f}", "L2_ml": f"{l2['volume_ml']:.1f}", "C_hu": f"{cyst['mean_hu']:.0f}",
        "K_hu": f"{kl['mean_hu']:.0f}",
    }


SECTIONED = """EXAMINATION: CT abdomen with intravenous contrast, portal venous phase.

FINDINGS:
Liver: Normal in size ({liver_ml} mL). Mean attenuation {liver_hu} HU, low for this phase, which may represent steatosis. Two hypodense lesions: a {L1} lesion in segments 8 and 7 (image {img1}) and a {L2} lesion in segment 4a (image {img2}).
Spleen: Normal in size ({spleen_ml} mL). No focal lesion.
Pancreas: Normal volume ({pancreas_ml} mL). There is a {P} hypoattenuating mass in the pancreatic head consistent with PDAC. The mass abuts the common hepatic artery ({CHA} degrees) and the SMV ({SMV} degrees) and encases the portal vein ({PV} degrees). No contact with the SMA, celiac axis, aorta or IVC.
Kidneys: Both kidneys are normal in size. A {C} cyst in the upper pole of the right kidney. A {K} isoattenuating lesion in the interpolar region of the left kidney.

IMPRESSION:
1. {P} pancreatic head adenocarcinoma abutting the CHA and SMV and encasing the portal vein; T2, borderline resectable (NCCN).
2. Two hypodense liver lesions, the largest {L1} in segments 8/7.
3. Right upper pole renal cyst ({Clong} cm) and left interpolar renal lesion ({K}).
4. Low hepatic attenuation, possible steatosis.
"""

PARAGRAPH = """CT of the abdomen in the portal venous phase. The liver is of normal size ({liver_ml0} mL) with an attenuation of {liver_hu} HU, raising the possibility of steatosis; it contains two hypodense lesions, a {L1mm} lesion spanning Couinaud segments VIII and VII and a {L2mm} lesion in S4a. The spleen is not enlarged. In the head of the pancreas there is a {P} hypodense mass which abuts the common hepatic artery by {CHA}° and the superior mesenteric vein by {SMV}°, and encases the portal vein over {PV}°, without involvement of the SMA, celiac trunk, aorta or inferior vena cava. The right kidney has a {C} cyst at the upper pole, and the left kidney a {K} isodense lesion in the mid pole. IMPRESSION: Pancreatic head PDAC measuring {P}, cT2, borderline resectable. Two liver lesions (segments 8/7 and 4a). Right renal cyst and left renal lesion. No ascites or lymphadenopathy.
"""


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("fc")
    out, f = make_findings(root, "S", lesions=staging_lesions(), phase="venous")
    return f


@pytest.fixture(scope="module")
def texts(staged):
    v = values(staged)
    return {"sectioned": SECTIONED.format(**v), "paragraph": PARAGRAPH.format(**v), "v": v}


def kinds(result) -> set:
    return {e["kind"] for e in result.errors}


# --- faithful texts pass -------------------------------------------------------


def test_structured_report_passes_its_own_check(staged, tmp_path):
    r = check_narrative(render_text(staged), staged)
    assert r.ok, r.errors
    assert r.facts_found == r.facts_expected and len(r.facts_expected) >= 20
    _, plain = make_findings(tmp_path, "N", lesions=[])
    assert check_narrative(render_text(plain), plain).ok


@pytest.mark.parametrize("style", ["sectioned", "paragraph"])
def test_faithful_narratives_pass(staged, texts, style):
    r = check_narrative(texts[style], staged)
    assert r.ok, r.errors
    assert r.facts_found == r.facts_expected
    json.dumps(r.to_dict())  # JSON-serialisable
    assert set(r.to_dict()) >= {"ok", "errors", "facts_expected", "facts_found"}


def test_paraphrases_pass(staged, texts):
    """Roman segments, mm for cm, hypodense for hypo, abuts/encases for degrees, 'cannot be excluded'."""
    v = texts["v"]
    text = f"""LIVER: Normal in size. Attenuation {v['liver_hu']} HU; fatty infiltration cannot be excluded. A {v['L1']} hypoattenuating lesion at the junction of hepatic segments VII/VIII. In segment IV, there is a {v['L2mm']} hypodense lesion.
SPLEEN: Normal in size, without focal lesion.
PANCREAS: A {v['P']} hypoenhancing mass in the pancreatic head, compatible with ductal adenocarcinoma. The tumor shows {v['CHA']}° contact with the common hepatic artery (abutment), {v['SMV']}° with the SMV (abutment), and {v['PV']}° with the portal vein (encasement). The SMA, celiac axis, aorta and IVC are free of tumor contact.
KIDNEYS: Simple-appearing cyst in the upper pole of the right kidney measuring {v['C']}. The left kidney demonstrates a {v['K']} isodense lesion in its interpolar region. No hydronephrosis.

IMPRESSION:
1. Pancreatic head adenocarcinoma with portal vein encasement and abutment of the CHA and SMV. AJCC T2. NCCN: borderline resectable.
2. Two liver lesions (segments 7/8 and 4).
3. Right renal upper pole cyst; left interpolar renal lesion.
"""
    r = check_narrative(text, staged)
    assert r.ok, r.errors


def test_number_tolerances():
    assert number_matches(3.1, 1, "cm", 31.4) and number_matches(2.2, 1, "cm", 22.0)  # "3.1 x 2.2 cm"
    assert number_matches(31, 0, "mm", 31.4) and number_matches(31.4, 1, "mm", 31.4)
    assert not number_matches(3.4, 1, "cm", 31.4) and not number_matches(30, 0, "mm", 31.4)
    assert number_matches(3, 0, "cm", 29.53)          # "3 cm" = 3.0 cm
    assert not number_matches(2, 0, "cm", 24.1)       # 2.4 cm is not "2 cm"
    assert number_matches(21, 0, "mm", 20.67)         # re-rounding of the displayed 2.1 cm
    assert number_matches(231, 0, "degrees", 230.6) and not number_matches(213, 0, "°", 230.6)
    assert number_matches(60, 0, "HU", 59.99) and not number_matches(65, 0, "HU", 59.99)
    assert number_matches(1582, 0, "mL", 1582.04) and number_matches(1582.0, 1, "cc", 1582.04)
    assert number_matches(1.58, 2, "L", 1582.04) and not number_matches(1.68, 2, "L", 1582.04)


# --- injected errors are caught -----------------------------------------------------

INJECTIONS = [
    # (name, old, new, expected error kind)
    ("changed size", "a {L1} lesion in segments", "a 3.6 x 2.1 cm lesion in segments", "changed_number"),
    ("changed volume", "({spleen_ml} mL)", "(329.3 mL)", "changed_number"),
    ("changed degrees", "({PV} degrees)", "(213 degrees)", "changed_number"),
    ("wrong segment", "lesion in segment 4a", "lesion in segment 3", "wrong_location"),
    ("wrong pancreas part", "mass in the pancreatic head", "mass in the pancreatic tail", "wrong_location"),
    ("wrong pole", "cyst in the upper pole of", "cyst in the lower pole of", "wrong_location"),
    ("swapped side", "upper pole of the right kidney", "upper pole of the left kidney", "swapped_side"),
    ("invented spleen lesion", "No focal lesion.", "A 1.2 cm hypodense lesion is present in the spleen.",
     "invented_finding"),
    ("invented liver lesion", "(image {img2}).", "(image {img2}) and a further 0.8 cm lesion in segment 3.",
     "invented_finding"),
    ("invented metastasis", "4. Low hepatic", "4. Liver metastases. 5. Low hepatic", "invented_finding"),
    ("invented lymph node", "4. Low hepatic", "4. Enlarged peripancreatic lymph nodes. 5. Low hepatic",
     "invented_finding"),
    ("invented splenomegaly", "Spleen: Normal in size", "Spleen: Enlarged", "invented_finding"),
    ("invented N stage", "T2, borderline", "T2N1, borderline", "invented_finding"),
    ("wrong T stage", "T2, borderline", "T3, borderline", "wrong_stage"),
    ("dropped T stage", "T2, borderline", "borderline", "dropped_stage"),
    ("wrong resectability", "T2, borderline resectable", "T2, locally advanced", "wrong_resectability"),
    ("dropped resectability", "T2, borderline resectable (NCCN)", "T2", "dropped_resectability"),
    ("abutment for encasement", "encases the portal vein", "abuts the portal vein", "wrong_vessel_contact"),
    ("invented SMA contact", "No contact with the SMA, celiac axis", "It abuts the SMA. No contact with the celiac axis",
     "wrong_vessel_contact"),
    ("wrong kind", "A {C} cyst in the upper pole", "A {C} solid mass in the upper pole", "wrong_kind"),
    # the right numbers under the wrong organ or lesion (each number exists somewhere in the findings)
    ("spleen given the pancreas's volume", "Spleen: Normal in size ({spleen_ml} mL)",
     "Spleen: Normal in size ({pancreas_ml} mL)", "misattributed_number"),
    ("pancreas given the liver's volume", "Normal volume ({pancreas_ml} mL)", "Normal volume ({liver_ml} mL)",
     "misattributed_number"),
    ("liver given the spleen's HU", "Mean attenuation {liver_hu} HU", "Mean attenuation {spleen_hu} HU",
     "misattributed_number"),
    ("pancreas given a kidney's HU", "Normal volume ({pancreas_ml} mL).",
     "Normal volume ({pancreas_ml} mL), mean attenuation {kidney_hu} HU.", "misattributed_number"),
    ("spleen given a kidney's volume", "Spleen: Normal in size ({spleen_ml} mL)",
     "Spleen: Normal in size ({kidney_r_ml} mL)", "misattributed_number"),
    ("liver lesion sizes swapped", "a {L1} lesion in segments 8 and 7 (image {img1}) and a {L2} lesion in segment 4a",
     "a {L2} lesion in segments 8 and 7 (image {img1}) and a {L1} lesion in segment 4a", "misattributed_number"),
    ("kidney lesion sizes swapped", "A {C} cyst in the upper pole of the right kidney. A {K} isoattenuating",
     "A {K} cyst in the upper pole of the right kidney. A {C} isoattenuating", "misattributed_number"),
    ("liver lesion given the other's volume", "a {L2} lesion in segment 4a (image {img2})",
     "a {L2} lesion in segment 4a (image {img2}; volume {L1_ml} mL)", "misattributed_number"),
    ("kidney lesion given the cyst's HU", "A {K} isoattenuating lesion", "A {K} isoattenuating ({C_hu} HU) lesion",
     "misattributed_number"),
]


@pytest.mark.parametrize("name,old,new,kind", INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_injected_errors_are_caught(staged, texts, name, old, new, kind):
    v = texts["v"]
    old, new = old.format(**v), new.format(**v)
    assert old in texts["sectioned"]
    r = check_narrative(texts["sectioned"].replace(old, new, 1), staged)
    assert not r.ok
    assert kind in kinds(r), r.errors
    assert all(e["kind"] in ERROR_KINDS for e in r.errors)


def test_numbers_under_their_own_organ_and_lesion_pass(staged, texts):
    """The attribution check accepts every number where it belongs (the swaps above are its negatives)."""
    v = texts["v"]
    text = texts["sectioned"].replace("Normal volume ({pancreas_ml} mL).".format(**v),
                                      "Normal volume ({pancreas_ml} mL), mean attenuation {pancreas_hu} HU.".format(**v))
    text = text.replace("a {L2} lesion in segment 4a (image {img2})".format(**v),
                        "a {L2} lesion in segment 4a (image {img2}; volume {L2_ml} mL)".format(**v))
    text = text.replace("A {K} isoattenuating lesion".format(**v), "A {K} isoattenuating ({K_hu} HU) lesion".format(**v))
    text = text.replace("Kidneys: Both kidneys are normal in size.",
                        "Kidneys: Both kidneys are normal in size (right {kidney_r_ml} mL, {kidney_hu} HU).".format(**v))
    r = check_narrative(text, staged)
    assert r.ok, r.errors


def test_dropped_lesion_and_dropped_size(staged, texts):
    v = texts["v"]
    text = texts["sectioned"]
    dropped = text.replace(f" A {v['K']} isoattenuating lesion in the interpolar region of the left kidney.", "") \
        .replace(f" and left interpolar renal lesion ({v['K']})", "")
    r = check_narrative(dropped, staged)
    assert "dropped_lesion" in kinds(r)
    assert any("kidney_lesion_1" in e["detail"] for e in r.errors)
    assert "kidney_lesion_1: mentioned" not in r.facts_found
    no_size = text.replace(f"a {v['L2']} lesion in segment 4a", "a smaller lesion in segment 4a")
    r = check_narrative(no_size, staged)
    assert kinds(r) == {"dropped_size"}, r.errors


def test_dropped_location_and_vessel(staged, texts):
    v = texts["v"]
    r = check_narrative(texts["sectioned"].replace("a {L2} lesion in segment 4a".format(**v), "a {L2} lesion".format(**v))
                        .replace(" and 4a", ""), staged)
    assert "dropped_location" in kinds(r)
    r = check_narrative(texts["sectioned"].replace(" and the SMV ({SMV} degrees)".format(**v), "")
                        .replace("CHA and SMV", "CHA"), staged)
    assert kinds(r) == {"dropped_vessel_contact"}, r.errors


def test_swapped_side_in_paragraph_style(staged, texts):
    r = check_narrative(texts["paragraph"].replace("The right kidney has", "The left kidney has"), staged)
    assert "swapped_side" in kinds(r)
    r = check_narrative(texts["paragraph"].replace("segments VIII and VII", "segments VI and VII"), staged)
    assert "wrong_location" in kinds(r)


# --- negation, organ findings -----------------------------------------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """No lesions, non-contrast: steatosis false, all organs of normal size."""
    return make_findings(tmp_path_factory.mktemp("plain"), "N", lesions=[])[1]


def test_negations_are_understood(plain):
    ok = [
        "FINDINGS:\nLiver: Normal in size and attenuation. No focal liver lesion. No steatosis.\n"
        "Spleen: Not enlarged.\nPancreas: Normal size, no mass or ductal dilatation.\n"
        "Kidneys: Normal in size bilaterally. No renal lesions or hydronephrosis.\n"
        "Lymph nodes: No lymphadenopathy.\n\nIMPRESSION:\nNo focal liver, pancreatic or renal lesion.",
        "The liver, spleen, pancreas and kidneys are normal in size. There is no focal lesion in the liver, "
        "pancreas or kidneys, and no hepatic steatosis. Lymph nodes are not enlarged. There is no evidence of "
        "metastatic disease. The spleen is unremarkable without focal lesions. Impression: Normal study.",
    ]
    for text in ok:
        r = check_narrative(text, plain)
        assert r.ok, (text, r.errors)
    bad = {
        "The liver shows diffuse fatty infiltration. IMPRESSION: Hepatic steatosis.": "invented_finding",
        "A 1.0 cm simple cyst is seen in the right kidney.": "invented_finding",
        "Mild splenomegaly. No focal lesions.": "invented_finding",
        "The pancreas contains a hypodense mass in the tail.": "invented_finding",
        "There is a small amount of ascites.": "invented_finding",
        "Enlarged para-aortic lymph nodes are present.": "invented_finding",
        "No lesion. IMPRESSION: T1 N0 M0.": "invented_finding",
    }
    for text, kind in bad.items():
        r = check_narrative(text, plain)
        assert kind in kinds(r), (text, r.errors)


def test_steatosis_is_required_when_present(tmp_path):
    def fatty(ph):
        lesion = np.zeros(ph.shape, bool)
        for name, m in ph.masks.items():
            if name.startswith("liver_") and not name.startswith("liver_segment"):
                lesion |= m
        ph.ct[ph.masks["liver"] & ~lesion] -= 40

    _, f = make_findings(tmp_path, "F", lesions=[], edit=fatty)
    assert f["organs"]["liver"]["steatosis"] is True
    assert check_narrative(render_text(f), f).ok
    base = "The liver is normal in size{x}. The spleen, pancreas and kidneys are normal. No focal lesion."
    assert check_narrative(base.format(x=" with diffuse fatty infiltration"), f).ok
    assert "dropped_organ_finding" in kinds(check_narrative(base.format(x=""), f))
    assert "wrong_organ_finding" in kinds(check_narrative(base.format(x=" without steatosis"), f))


def test_enlarged_organ_is_required_and_not_contradicted(plain):
    f = copy.deepcopy(plain)
    f["organs"]["spleen"]["enlarged"] = "enlarged"
    assert check_narrative("Splenomegaly. No focal lesion in the liver, pancreas or kidneys.", f).ok
    assert "dropped_organ_finding" in kinds(check_narrative("No focal lesion.", f))
    r = check_narrative("The spleen is normal in size. Splenomegaly is not present.", f)
    assert "wrong_organ_finding" in kinds(r)


def test_possible_steatosis_stays_possible(staged, texts):
    v = texts["v"]
    text = texts["sectioned"].replace("possible steatosis", "hepatic steatosis") \
        .replace("which may represent steatosis", "in keeping with steatosis")
    assert "wrong_organ_finding" in kinds(check_narrative(text, staged))
    assert v  # the faithful text (hedged) passes: see test_faithful_narratives_pass


def test_notes_support_additions(staged, texts):
    text = texts["sectioned"].replace("4. Low hepatic", "4. Cirrhotic liver morphology; 1.2 cm portocaval lymph node. "
                                                       "5. Low hepatic")
    plain_check = check_narrative(text, staged)
    assert {"invented_finding", "changed_number"} <= kinds(plain_check)
    notes = "Cirrhotic liver morphology. Portocaval lymph node 1.2 cm."
    r = check_narrative(text, staged, notes=notes)
    assert r.ok, r.errors
    assert {e["tag"] for e in r.from_notes} == {"from notes"} and len(r.from_notes) >= 3


@pytest.mark.parametrize("phase", ["unknown", "non-contrast", "arterial", "venous", "delayed"])
def test_structured_report_passes_its_own_check_in_every_phase(phase):
    """Phase-dependent sentences ("steatosis not assessable on ...") must not read as findings."""
    from conftest import simple_case_arrays

    from RadGPTLogic.case import Case
    from RadGPTLogic.engine import Engine
    from RadGPTLogic.report.structured import render_text

    ct, affine, masks = simple_case_arrays()
    f = Engine(Case.from_arrays("C", affine, masks, ct=ct), phase).compute().to_dict()
    r = check_narrative(render_text(f), f)
    assert r.ok, r.errors


def test_two_staged_lesions_and_a_missing_sma_pass_their_own_report():
    """Per-vessel statements fit one of several lesions; "T4 not excluded" is a caveat, not a stage."""
    from RadGPTLogic.case import Case
    from RadGPTLogic.engine import Engine
    from RadGPTLogic.phantom import LesionSpec, build_phantom, staging_lesions
    from RadGPTLogic.report.structured import render_text

    p = build_phantom(size="small", lesions=staging_lesions() + [LesionSpec("pancreatic_tumor", (30, 10, 14), (6., 5., 6.))])
    f = Engine(Case.from_arrays("F", p.affine, p.masks, ct=p.ct), "venous").compute().to_dict()
    pv = sorted(les["vessel_contact_deg"]["PV"] for les in f["lesions"] if les["organ"] == "pancreas")
    assert 0 < pv[0] <= 180 < pv[1]  # one abutment, one encasement of the same vessel
    r = check_narrative(render_text(f), f)
    assert r.ok, r.errors
    masks = {k: v for k, v in p.masks.items() if k != "superior_mesenteric_artery"}
    f = Engine(Case.from_arrays("F", p.affine, masks, ct=p.ct), "venous").compute().to_dict()
    r = check_narrative(render_text(f), f)
    assert r.ok, r.errors
