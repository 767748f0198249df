"""AJCC 8th T and NCCN resectability rules: every bin boundary and every category."""

from __future__ import annotations

import pytest

from RadGPTLogic.staging.ajcc import exocrine_t, pnet_t
from RadGPTLogic.staging.nccn import resectability

NONE = {"SMA": 0.0, "CA": 0.0, "CHA": 0.0, "SMV": 0.0, "PV": 0.0, "aorta": 0.0, "IVC": 0.0}


@pytest.mark.parametrize(
    "mm,t",
    [(3.0, "T1a"), (5.0, "T1a"), (5.01, "T1b"), (9.99, "T1b"), (10.0, "T1c"), (20.0, "T1c"),
     (20.01, "T2"), (40.0, "T2"), (40.01, "T3"), (95.0, "T3")],
)
def test_exocrine_size_bins(mm, t):
    assert exocrine_t(mm, NONE)["t_stage"] == t


@pytest.mark.parametrize("artery", ["CA", "SMA", "CHA"])
def test_exocrine_t4_by_rule(artery):
    deg = dict(NONE, **{artery: 150.0})
    assert exocrine_t(15.0, deg)["t_stage"] == "T1c"  # abutment is not T4 by default
    assert exocrine_t(15.0, deg, rule="any_contact")["t_stage"] == "T4"
    deg[artery] = 181.0
    r = exocrine_t(15.0, deg)
    assert r["t_stage"] == "T4" and artery in r["t_stage_basis"] and "> 180" in r["t_stage_rule"]
    deg[artery] = 180.0
    assert exocrine_t(15.0, deg)["t_stage"] == "T1c"  # exactly 180 is abutment


def test_venous_contact_never_makes_t4():
    deg = dict(NONE, SMV=300.0, PV=250.0, IVC=90.0, aorta=40.0)
    assert exocrine_t(25.0, deg)["t_stage"] == "T2"


def test_missing_artery_masks_are_a_caveat():
    r = exocrine_t(25.0, dict(NONE, CA=None, CHA=None))
    assert r["t_stage"] == "T2" and "CA" in r["t_stage_caveat"] and "CHA" in r["t_stage_caveat"]
    with pytest.raises(ValueError):
        exocrine_t(25.0, NONE, rule="sometimes")


@pytest.mark.parametrize("mm,t", [(19.99, "T1"), (20.0, "T2"), (40.0, "T2"), (40.01, "T3")])
def test_pnet_size_bins(mm, t):
    organs = {o: False for o in ("duodenum", "common_bile_duct", "stomach", "spleen", "colon",
                                 "adrenal_gland_left", "adrenal_gland_right")}
    assert pnet_t(mm, NONE, organs)["t_stage"] == t


def test_pnet_organ_rules():
    organs = {o: False for o in ("duodenum", "common_bile_duct", "stomach", "spleen", "colon",
                                 "adrenal_gland_left", "adrenal_gland_right")}
    assert pnet_t(15.0, NONE, dict(organs, duodenum=True))["t_stage"] == "T3"
    assert pnet_t(15.0, NONE, dict(organs, common_bile_duct=True))["t_stage"] == "T3"
    for organ in ("stomach", "spleen", "colon", "adrenal_gland_left"):
        assert pnet_t(15.0, NONE, dict(organs, **{organ: True}))["t_stage"] == "T4"
    assert pnet_t(15.0, dict(NONE, SMA=200.0), organs)["t_stage"] == "T4"
    assert pnet_t(15.0, dict(NONE, CHA=200.0), organs)["t_stage"] == "T1"  # CHA is not in the NET T4 rule
    r = pnet_t(15.0, NONE, dict(organs, colon=None))
    assert "colon" in r["t_stage_caveat"]


# ------------------------------------------------------------------------- NCCN
def cat(part, **deg):
    return resectability(dict(NONE, **deg), part)


def test_resectable():
    r = cat("head")
    assert r["category"] == "resectable" and r["drivers"] == []
    assert any("irregularity" in a for a in r["assumptions"])
    assert cat("head", SMV=180.0)["category"] == "resectable"  # <= 180 without irregularity
    assert cat("body", PV=120.0)["category"] == "resectable"


@pytest.mark.parametrize("part", ["head", "neck"])
def test_head_categories(part):
    assert cat(part, SMA=120.0)["category"] == "borderline"
    assert cat(part, CHA=90.0)["category"] == "borderline"
    assert cat(part, SMA=181.0)["category"] == "locally_advanced"
    assert cat(part, CA=200.0)["category"] == "locally_advanced"
    r = cat(part, CA=100.0)
    assert r["category"] == "borderline" and any("NCCN silent" in a for a in r["assumptions"])
    assert cat(part, SMV=200.0)["category"] == "borderline"
    assert cat(part, IVC=10.0)["category"] == "borderline"
    r = cat(part, SMA=200.0, SMV=250.0)
    assert r["category"] == "locally_advanced" and any("SMA" in d for d in r["drivers"])


@pytest.mark.parametrize("part", ["body", "tail"])
def test_body_tail_categories(part):
    assert cat(part, CA=150.0)["category"] == "borderline"
    r = cat(part, CA=220.0)
    assert r["category"] == "borderline" and any("gastroduodenal" in a for a in r["assumptions"])
    assert cat(part, CA=100.0, aorta=30.0)["category"] == "locally_advanced"
    assert cat(part, SMA=200.0)["category"] == "locally_advanced"
    assert cat(part, PV=190.0)["category"] == "borderline"
    assert cat(part, aorta=50.0)["category"] == "resectable"  # aortic contact alone: no CA involvement


def test_not_assessable_paths():
    r = resectability(dict(NONE, CHA=None), "head")
    assert r["category"] is None and "CHA" in r["reason"]
    r = resectability(dict(NONE, aorta=None), "tail")
    assert r["category"] is None and "aorta" in r["reason"]
    assert resectability(dict(NONE, aorta=None), "head")["category"] == "resectable"
    # Unknown location: both rule sets applied; they disagree for CA 100 deg + aorta contact.
    r = resectability(dict(NONE, CA=100.0, aorta=30.0), None)
    assert r["category"] is None and "location" in r["reason"]
    r = resectability(dict(NONE, SMA=250.0), None)
    assert r["category"] == "locally_advanced"


@pytest.mark.parametrize("spacing", [(0.75, 0.75, 1.0), (2.0, 2.0, 2.5), (0.8, 0.8, 5.0)])
def test_organ_contact_distance_rule(spacing):
    """Touching masks are contact on any grid; a 3 mm fat plane is not."""
    import numpy as np

    from RadGPTLogic.case import Case, Crop
    from RadGPTLogic.staging.organ_contact import organ_contacts

    shape = (80, 80, 40)
    affine = np.diag([*spacing, 1.0])
    tumour = np.zeros(shape, bool)
    tumour[10:30, 10:30, 10:30] = True
    for gap_mm, expected in ((0.0, True), (3.0, False), (6.0, False)):
        gap = int(np.ceil(gap_mm / spacing[0])) if gap_mm else 0
        organ = np.zeros(shape, bool)
        organ[30 + gap:50 + gap, 10:30, 10:30] = True
        case = Case.from_arrays("C", affine, {"duodenum": organ})
        got = organ_contacts(case, Crop.from_full(tumour), contact_mm=1.5)
        assert got["duodenum"] is expected, (spacing, gap_mm)
        assert got["stomach"] is None  # no mask given
