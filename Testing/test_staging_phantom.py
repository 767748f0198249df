"""Pancreatic staging end to end on the phantom: contact, combined-mask splits, T, NCCN, PNET."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_findings, run_cli

from RadGPTLogic.case import Case
from RadGPTLogic.engine import Engine
from RadGPTLogic.io.casefolder import load_case
from RadGPTLogic.phantom import LesionSpec, build_phantom, default_lesions, staging_lesions, write_case
from RadGPTLogic.staging.vessels import resolve_vessels

SEPARATE_ARTERIES = ("celiac_trunk", "common_hepatic_artery", "splenic_artery")
SEPARATE_VEINS = ("superior_mesenteric_vein", "portal_vein")


@pytest.fixture(scope="module")
def staged():
    return build_phantom(size="small", lesions=staging_lesions())


def _pdac(masks, affine, ct, phase="venous", **kw):
    f = Engine(Case.from_arrays("S", affine, masks, ct=ct), phase, **kw).compute().to_dict()
    return f, next(l for l in f["lesions"] if l["organ"] == "pancreas")


def test_tumour_touching_smv_and_cha(staged):
    f, pdac = _pdac(staged.masks, staged.affine, staged.ct)
    deg = pdac["vessel_contact_deg"]
    assert set(deg) == {"SMA", "CA", "CHA", "SMV", "PV", "aorta", "IVC"}
    assert deg["SMV"] > 10 and deg["CHA"] > 30 and deg["PV"] > 180
    assert deg["SMA"] == 0 and deg["CA"] == 0 and deg["aorta"] == 0 and deg["IVC"] == 0
    assert pdac["t_stage"] == "T2"  # 2.4 cm, no arterial encasement
    assert pdac["resectability"] == "borderline"
    drivers = " ".join(pdac["resectability_detail"]["drivers"])
    assert "CHA" in drivers and "PV" in drivers
    assert pdac["location"]["pancreas_part"] in ("head", "neck")
    assert f["anatomy"]["vessels"]["CHA"] == "common_hepatic_artery"


def _combined(masks, arteries=True, veins="veins"):
    m = dict(masks)
    if arteries:
        m["celiac_aa"] = m["celiac_trunk"] | m["common_hepatic_artery"] | m["splenic_artery"]
        for n in SEPARATE_ARTERIES:
            del m[n]
    if veins == "veins":
        m["veins"] = m["superior_mesenteric_vein"] | m["portal_vein"]
    elif veins == "portal_vein_and_splenic_vein":
        m["portal_vein_and_splenic_vein"] = m["superior_mesenteric_vein"] | m["portal_vein"] | m["splenic_vein"]
    for n in SEPARATE_VEINS:
        del m[n]
    return m


@pytest.mark.parametrize("veins", ["veins", "portal_vein_and_splenic_vein"])
def test_combined_masks_give_the_same_staging(staged, veins):
    _, ref = _pdac(staged.masks, staged.affine, staged.ct)
    f, got = _pdac(_combined(staged.masks, veins=veins), staged.affine, staged.ct)
    assert f["anatomy"]["vessels"]["CHA"].startswith("celiac_aa split")
    assert f["anatomy"]["vessels"]["PV"] != "portal_vein"
    for key in ("SMA", "CA", "CHA", "PV", "aorta", "IVC"):
        assert got["vessel_contact_deg"][key] == pytest.approx(ref["vessel_contact_deg"][key], abs=25), key
    assert (got["vessel_contact_deg"]["CHA"] > 0) == (ref["vessel_contact_deg"]["CHA"] > 0)
    assert got["t_stage"] == ref["t_stage"] and got["resectability"] == ref["resectability"]


@pytest.mark.parametrize("axcodes,order", [("RAS", None), ("LPS", None), ("LPS", (2, 0, 1))])
def test_cha_is_the_right_hand_branch_in_any_storage(tmp_path, staged, axcodes, order):
    """celiac_aa split from files stored RAS, LPS and permuted: the CHA is on the patient's right."""
    extra = {"celiac_aa": staged.masks["celiac_trunk"] | staged.masks["common_hepatic_artery"]
             | staged.masks["splenic_artery"]}
    names = [n for n in staged.masks if n not in SEPARATE_ARTERIES]
    case_dir = write_case(staged, tmp_path, case_id="S", axcodes=axcodes, axis_order=order,
                          extra_masks=extra, names=names)
    case = load_case(case_dir)
    vessels = resolve_vessels(case)

    def x_of(crop):
        idx = np.argwhere(crop.mask) + np.asarray(crop.offset)
        return float((idx @ case.affine[:3, :3].T + case.affine[:3, 3])[:, 0].mean())

    cha, ca = vessels["CHA"]["crop"], vessels["CA"]["crop"]
    assert x_of(cha) > x_of(ca)  # RAS: larger x is the patient's right
    truth_x = float(np.mean((np.argwhere(staged.masks["common_hepatic_artery"]) @ staged.affine[:3, :3].T
                             + staged.affine[:3, 3])[:, 0]))
    assert x_of(cha) == pytest.approx(truth_x, abs=5.0)
    run_cli("report", case_dir, "--out", tmp_path / "out", "--phase", "venous", check=True)
    pdac = next(l for l in load_findings(tmp_path / "out")["lesions"] if l["organ"] == "pancreas")
    assert pdac["vessel_contact_deg"]["CHA"] > 30


def test_missing_vessel_masks_are_not_assessable(staged):
    masks = {k: v for k, v in staged.masks.items() if k != "superior_mesenteric_artery"}
    f, pdac = _pdac(masks, staged.affine, staged.ct)
    assert pdac["vessel_contact_deg"]["SMA"] is None
    assert pdac["resectability"] is None and "SMA" in pdac["resectability_detail"]["reason"]
    assert pdac["t_stage"] == "T2" and "SMA" in pdac["t_stage_caveat"]
    assert any(i["what"].endswith("resectability") for i in f["not_assessable"])


def test_sma_encasement_is_t4_and_locally_advanced():
    lesions = [l for l in default_lesions() if l.mask != "pancreatic_pdac"]
    lesions.append(LesionSpec("pancreatic_pdac", (-11.0, 16.0, -22.0), (11.0, 10.0, 14.0)))
    p = build_phantom(size="small", lesions=lesions)
    _, pdac = _pdac(p.masks, p.affine, p.ct)
    assert pdac["vessel_contact_deg"]["SMA"] > 180
    assert pdac["t_stage"] == "T4" and "SMA" in pdac["t_stage_basis"]
    assert pdac["resectability"] == "locally_advanced"


def test_any_contact_t4_setting(staged):
    from RadGPTLogic.rules import Rules

    _, pdac = _pdac(staged.masks, staged.affine, staged.ct, rules=Rules(t4_rule="any_contact"))
    assert pdac["t_stage"] == "T4" and "any solid" in pdac["t_stage_rule"]


def test_pnet_touching_the_duodenum_is_t3():
    lesions = [l for l in default_lesions() if l.mask != "pancreatic_pdac"]
    head = next(l for l in default_lesions() if l.mask == "pancreatic_pdac").center
    lesions.append(LesionSpec("pancreatic_pnet", head, (17.0, 16.0, 14.0)))  # 3.4 cm: T2 by size
    p = build_phantom(size="small", lesions=lesions)
    _, pnet = _pdac(p.masks, p.affine, p.ct)
    assert pnet["kind"] == "pnet" and pnet["organ_contact"]["duodenum"] is True
    assert pnet["t_stage"] == "T3" and "duodenum" in pnet["t_stage_basis"]
    assert pnet["resectability"] is None and "adenocarcinoma" in pnet["resectability_detail"]["reason"]


def test_cysts_are_not_staged(staged):
    masks = dict(staged.masks)
    masks["pancreatic_cyst"] = masks.pop("pancreatic_pdac")
    _, cyst = _pdac(masks, staged.affine, staged.ct)
    assert cyst["kind"] == "cyst" and cyst["vessel_contact_deg"] is None and cyst["t_stage"] is None


def test_vessel_work_is_done_once_per_case(staged):
    """Two pancreatic lesions share one set of vessel models; a second compute is all cache hits."""
    lesions = staging_lesions() + [LesionSpec("pancreatic_tumor", (-60.0, 5.0, 14.0), (6.0, 5.0, 6.0))]
    p = build_phantom(size="small", lesions=lesions)
    eng = Engine(Case.from_arrays("S", p.affine, p.masks, ct=p.ct), "venous")
    f = eng.compute()
    staged_lesions = [l for l in f.lesions if l.get("t_stage")]
    assert len(staged_lesions) == 2
    models = [k for k in eng._cache if k[0] == "models"]
    assert len(models) == 1
    misses = eng.stats["misses"]
    eng.compute()
    assert eng.stats["misses"] == misses


def test_report_writes_pancreas_parts_that_can_be_read_back(tmp_path, staged):
    """derived/pancreas_*.nii.gz partition the pancreas on the CT grid and work as input masks."""
    import nibabel as nib

    case_dir = write_case(staged, tmp_path, case_id="S", axcodes="LPS")
    run_cli("report", case_dir, "--out", tmp_path / "out", "--phase", "venous", "--t4-rule", "any_contact",
            check=True)
    f = load_findings(tmp_path / "out")
    pdac = next(l for l in f["lesions"] if l["organ"] == "pancreas")
    assert pdac["t_stage"] == "T4"  # any contact with the CHA under --t4-rule any_contact
    pancreas_img = nib.load(case_dir / "segmentations" / "pancreas.nii.gz")
    pancreas = np.asarray(pancreas_img.dataobj) > 0
    total = np.zeros(pancreas.shape, int)
    for part in ("head", "neck", "body", "tail"):
        img = nib.load(tmp_path / "out" / "derived" / f"pancreas_{part}.nii.gz")
        assert np.allclose(img.affine, pancreas_img.affine, atol=1e-4) and img.shape == pancreas.shape
        total += np.asarray(img.dataobj).astype(int)
    assert np.array_equal(total, pancreas.astype(int))
    # The parts, copied into the case, are used as given masks on the next run.
    for p in (tmp_path / "out" / "derived").iterdir():
        (case_dir / "segmentations" / p.name).write_bytes(p.read_bytes())
    run_cli("report", case_dir, "--out", tmp_path / "out2", "--phase", "venous", check=True)
    f2 = load_findings(tmp_path / "out2")
    assert f2["anatomy"]["pancreas_parts"]["method"] == "masks"
    pdac2 = next(l for l in f2["lesions"] if l["organ"] == "pancreas")
    assert pdac2["location"] == pdac["location"]
    assert not (tmp_path / "out2" / "derived").exists()
