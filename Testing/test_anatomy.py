"""Liver Couinaud location (incl. S4a/S4b) and kidney pole / exophytic fraction."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ellipsoid

from RadGPTLogic.anatomy.kidney import exophytic_fraction, kidney_pole
from RadGPTLogic.anatomy.liver import couinaud_location, portal_bifurcation_z
from RadGPTLogic.case import Case, Crop
from RadGPTLogic.engine import Engine
from RadGPTLogic.phantom import build_phantom


@pytest.fixture(scope="module")
def phantom():
    return build_phantom(size="small")


@pytest.fixture(scope="module")
def phantom_findings(phantom):
    case = Case.from_arrays("P", phantom.affine, phantom.masks, ct=phantom.ct)
    return Engine(case, "non-contrast").compute().to_dict()


def _truth_for(phantom, finding):
    c = np.mean(finding["calipers_ras_mm"]["longest"], axis=0)
    return min((t for t in phantom.truth["lesions"] if t["mask"] == finding["mask"]),
               key=lambda t: np.linalg.norm(np.subtract(t["center_ras_mm"][:2], c[:2])))


def test_couinaud_matches_phantom_truth(phantom, phantom_findings):
    liver = [l for l in phantom_findings["lesions"] if l["organ"] == "liver"]
    assert len(liver) == 2
    for lesion in liver:
        truth = _truth_for(phantom, lesion)
        ours = []
        for s in lesion["location"]["couinaud"]:
            s = "S4" if s.startswith("S4") else s
            if s not in ours:
                ours.append(s)
        assert ours == truth["couinaud"], (lesion["id"], lesion["couinaud_shares"])
        assert lesion["couinaud_by"] == "lesion voxels"
        assert all(v > 0.10 for k, v in lesion["couinaud_shares"].items() if k in lesion["location"]["couinaud"])


def test_kidney_pole_and_side_match_truth(phantom, phantom_findings):
    kidney = [l for l in phantom_findings["lesions"] if l["organ"] == "kidney"]
    assert len(kidney) == 2
    for lesion in kidney:
        truth = _truth_for(phantom, lesion)
        assert lesion["side"] == truth["side"]
        assert lesion["location"]["kidney_pole"] == truth["kidney_pole"]
        assert lesion["exophytic_fraction"] == pytest.approx(0.0, abs=0.02)  # phantom lesions lie inside


def test_no_segment_masks_is_not_assessable(phantom):
    masks = {k: v for k, v in phantom.masks.items() if not k.startswith("liver_segment")}
    f = Engine(Case.from_arrays("P", phantom.affine, masks, ct=phantom.ct)).compute().to_dict()
    lesion = next(l for l in f["lesions"] if l["organ"] == "liver")
    assert "couinaud" not in lesion["location"]
    assert lesion["location_note"] == "segment not assessable (no segment masks)"
    assert any(i["why"] == "segment not assessable (no segment masks)" for i in f["not_assessable"])


def test_segments_that_exclude_the_lesion_use_the_nearest_segment(phantom, phantom_findings):
    masks = dict(phantom.masks)
    lesion = masks["liver_lesion"]
    for k in range(1, 9):
        masks[f"liver_segment_{k}"] = masks[f"liver_segment_{k}"] & ~lesion
    f = Engine(Case.from_arrays("P", phantom.affine, masks, ct=phantom.ct)).compute().to_dict()
    for ours, ref in zip([l for l in f["lesions"] if l["organ"] == "liver"],
                         [l for l in phantom_findings["lesions"] if l["organ"] == "liver"]):
        assert ours["couinaud_by"] == "lesion voxels (uncovered ones by the nearest segment)"
        assert ours["location"]["couinaud"] == ref["location"]["couinaud"]  # the same segments, in order
        for seg, share in ref["couinaud_shares"].items():  # shares: the nearest-segment estimate
            assert abs(ours["couinaud_shares"][seg] - share) < 0.15


def test_s4_split_at_the_portal_bifurcation():
    shape, spacing = (40, 40, 40), (1.0, 1.0, 1.0)
    affine = np.diag([*spacing, 1.0])
    seg4 = np.zeros(shape, bool)
    seg4[5:35, 5:35, 5:35] = True
    pv = np.zeros(shape, bool)
    pv[20:23, 20:23, 0:20] = True  # trunk up to z = 19
    pv[10:13, 20:23, 20:30] = True  # left branch
    pv[28:31, 20:23, 20:30] = True  # right branch
    case = Case.from_arrays("S4", affine, {"liver_segment_4": seg4, "portal_vein": pv})
    z = portal_bifurcation_z(case.crop("portal_vein"), affine)
    assert z == pytest.approx(20.0)
    upper = Crop.from_full(ellipsoid(shape, spacing, (15, 15, 28), (3, 3, 3)))
    lower = Crop.from_full(ellipsoid(shape, spacing, (15, 15, 10), (3, 3, 3)))
    straddle = Crop.from_full(ellipsoid(shape, spacing, (15, 15, 19), (3, 3, 6)))
    assert couinaud_location(case, upper, z)["couinaud"] == ["S4a"]
    assert couinaud_location(case, lower, z)["couinaud"] == ["S4b"]
    assert set(couinaud_location(case, straddle, z)["couinaud"]) == {"S4a", "S4b"}
    assert couinaud_location(case, upper, None)["couinaud"] == ["S4"]
    # A portal vein that never splits: its top is the level.
    pv2 = np.zeros(shape, bool)
    pv2[20:23, 20:23, 3:31] = True
    assert portal_bifurcation_z(Crop.from_full(pv2), affine) == pytest.approx(30.0)


def test_exophytic_fraction_and_pole_on_a_synthetic_kidney():
    shape, spacing = (60, 60, 80), (1.0, 1.0, 1.0)
    affine = np.diag([*spacing, 1.0])
    kidney = ellipsoid(shape, spacing, (30, 30, 40), (12, 12, 30))
    inside = Crop.from_full(ellipsoid(shape, spacing, (30, 30, 62), (4, 4, 4)))
    half_out = Crop.from_full(ellipsoid(shape, spacing, (42, 30, 40), (6, 6, 6)))
    outside = Crop.from_full(ellipsoid(shape, spacing, (50, 30, 40), (4, 4, 4)))
    par = Crop.from_full(kidney & ~half_out.in_box((0, 0, 0), shape))
    assert exophytic_fraction(inside, par, affine) == pytest.approx(0.0)
    # The kidney is convex, so its envelope is the kidney itself: the expected share is
    # that of lesion voxels outside the kidney ellipsoid (more than half: the kidney
    # curves away from a lesion centred on its surface).
    expected = np.count_nonzero(half_out.mask & ~kidney[half_out.slices]) / half_out.count
    assert 0.5 < expected < 0.8
    assert exophytic_fraction(half_out, par, affine) == pytest.approx(expected, abs=0.05)
    assert exophytic_fraction(outside, par, affine) == pytest.approx(1.0)
    case = Case.from_arrays("K", affine, {"kidney_left": kidney})
    assert kidney_pole(case, inside, par, True)["kidney_pole"] == "upper"
    low = Crop.from_full(ellipsoid(shape, spacing, (30, 30, 15), (4, 4, 4)))
    assert kidney_pole(case, low, par, True)["kidney_pole"] == "lower"
    assert kidney_pole(case, half_out, par, True)["kidney_pole"] == "interpolar"
    assert kidney_pole(case, low, par, False)["kidney_pole"] is None
