"""Pancreas head / neck / body / tail and the SMV/PV trunk (anatomy.pancreas, anatomy.veins)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from RadGPTLogic.anatomy.pancreas import (
    NOT_ASSESSABLE,
    PancreasParts,
    _reassign_fragments,
    lesion_part,
    pancreas_parts,
)
from RadGPTLogic.anatomy.veins import find_venous_trunk, split_veins, venous_trunk, voxel_world
from RadGPTLogic.case import Case, Crop
from RadGPTLogic.phantom import build_phantom, reorient

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CODE = {"head": 1, "neck": 2, "body": 3, "tail": 4}
SEPARATE = ("superior_mesenteric_vein", "portal_vein")
BASE = ("pancreas", "aorta", "superior_mesenteric_artery", "pancreatic_pdac")


@pytest.fixture(scope="module")
def phantom():
    return build_phantom(size="small")


def _case(phantom, names=BASE + SEPARATE, extra=None, affine=None):
    masks = {n: phantom.masks[n] for n in names}
    masks.update(extra or {})
    return Case.from_arrays("P", phantom.affine if affine is None else affine, masks)


def _label_map(case: Case, parts: PancreasParts) -> np.ndarray:
    """Full-grid part codes; asserts that no voxel is in two parts."""
    out = np.zeros(case.shape, np.uint8)
    for name, crop in parts.parts.items():
        if crop.is_empty:
            continue
        region = out[crop.slices]
        assert not np.any(region[crop.mask]), f"{name} overlaps another part"
        region[crop.mask] = CODE[name]
    return out


def _full(case: Case, name: str) -> np.ndarray:
    out = np.zeros(case.shape, bool)
    crop = case.crop(name)
    out[crop.slices] = crop.mask
    return out


def _assert_partition(case: Case, parts: PancreasParts) -> np.ndarray:
    labels = _label_map(case, parts)
    pancreas = _full(case, "pancreas")
    assert np.array_equal(labels > 0, pancreas), "parts must cover exactly the pancreas"
    return labels


def _centroid(case: Case, crop: Crop) -> np.ndarray:
    return voxel_world(case.affine, crop.offset, np.nonzero(crop.mask)).mean(axis=0)


def _ball_in_pancreas(case: Case, centre_mm, radius_mm) -> Crop:
    """A spherical lesion (world mm) clipped to the pancreas."""
    pancreas = case.crop("pancreas")
    p = voxel_world(case.affine, pancreas.offset, np.nonzero(pancreas.mask))
    inside = np.linalg.norm(p - np.asarray(centre_mm), axis=1) <= radius_mm
    box = np.zeros(pancreas.shape, bool)
    box[tuple(v[inside] for v in np.nonzero(pancreas.mask))] = True
    sub = Crop.from_full(box)
    return Crop(sub.mask, tuple(int(a + b) for a, b in zip(sub.offset, pancreas.offset)))


# ----------------------------------------------------------------- phantom: separate SMV and PV masks


def test_phantom_parts_partition_and_order(phantom):
    case = _case(phantom)
    parts = pancreas_parts(case)
    assert parts.method == "smv_pv" and parts.reason is None
    assert set(parts.parts) == {"head", "neck", "body", "tail"}
    _assert_partition(case, parts)
    c = {n: _centroid(case, crop) for n, crop in parts.parts.items()}
    # RAS: +x is the patient's right.
    assert c["head"][0] > c["body"][0] > c["tail"][0]
    assert c["head"][0] > c["neck"][0] > c["tail"][0]
    # The neck lies in front of (anterior to, +y) the SMV/PV at its own levels.
    trunk, _ = venous_trunk(case)
    neck = parts.parts["neck"]
    ks = range(neck.offset[2], neck.offset[2] + neck.shape[2])
    box = trunk.in_box((trunk.offset[0], trunk.offset[1], neck.offset[2]), (trunk.shape[0], trunk.shape[1], len(ks)))
    vy = voxel_world(case.affine, (trunk.offset[0], trunk.offset[1], neck.offset[2]), np.nonzero(box))[:, 1]
    assert c["neck"][1] > vy.mean()
    json.dumps(parts.landmarks)  # JSON-serialisable
    assert parts.landmarks["body_tail"]["landmark"] == "left border of the aorta"


def test_phantom_pdac_lands_in_head(phantom):
    case = _case(phantom)
    parts = pancreas_parts(case)
    placed = lesion_part(parts, case.crop("pancreatic_pdac"))
    assert placed["pancreas_part"] == "head"
    assert placed["pancreas_parts"] == ["head"]
    assert placed["by"] == "overlap"
    assert sum(placed["shares"].values()) == pytest.approx(1.0)
    truth = next(t for t in phantom.truth["lesions"] if t["mask"] == "pancreatic_pdac")
    assert truth["pancreas_part"] == "head"


def test_phantom_tail_lesion_lands_in_tail(phantom):
    case = _case(phantom)
    parts = pancreas_parts(case)
    pancreas = case.crop("pancreas")
    p = voxel_world(case.affine, pancreas.offset, np.nonzero(pancreas.mask))
    # Near the tail end: the centroid of the pancreas within 20 mm of its leftmost point.
    end = p[p[:, 0] <= p[:, 0].min() + 20.0].mean(axis=0)
    lesion = _ball_in_pancreas(case, end, 8.0)
    assert lesion.count > 10
    placed = lesion_part(parts, lesion)
    assert placed["pancreas_part"] == "tail" and placed["pancreas_parts"] == ["tail"]


def test_lesion_across_two_parts_lists_both(phantom):
    case = _case(phantom)
    parts = pancreas_parts(case)
    x_border = parts.landmarks["body_tail"]["x_mm_range"][0]
    pancreas = case.crop("pancreas")
    p = voxel_world(case.affine, pancreas.offset, np.nonzero(pancreas.mask))
    near = p[np.abs(p[:, 0] - x_border) <= 2.0].mean(axis=0)
    placed = lesion_part(parts, _ball_in_pancreas(case, near, 8.0))
    assert set(placed["pancreas_parts"]) == {"body", "tail"}
    shares = placed["shares"]
    assert placed["pancreas_parts"][0] == max(shares, key=shares.get)
    assert all(shares[n] > 0.10 for n in placed["pancreas_parts"])


def test_lesion_outside_pancreas_gets_nearest_part(phantom):
    case = _case(phantom)
    parts = pancreas_parts(case)
    pancreas = case.crop("pancreas")
    p = voxel_world(case.affine, pancreas.offset, np.nonzero(pancreas.mask))
    # A small blob just beyond the tail end (left of the leftmost pancreas voxel).
    tip = p[np.argmin(p[:, 0])]
    ijk = np.linalg.solve(case.affine[:3, :3], tip - case.affine[:3, 3] + np.array([-6.0, 0.0, 0.0]))
    ijk = np.round(ijk).astype(int)
    box = np.ones((2, 2, 2), bool)
    lesion = Crop(box, tuple(int(v) for v in ijk))
    placed = lesion_part(parts, lesion)
    assert placed["by"] == "nearest" and placed["pancreas_part"] == "tail"
    assert placed["distance_mm"] > 0


def test_phantom_reoriented_gives_identical_parts(phantom):
    case = _case(phantom)
    ref = pancreas_parts(case)
    names = BASE + SEPARATE
    for axcodes, order in (("LPS", None), ("LPS", (2, 0, 1)), ("PIL", (1, 2, 0))):
        _, affine, masks = reorient(phantom, axcodes, order, names=names)
        other = Case.from_arrays("P2", affine, {n: np.ascontiguousarray(masks[n]) for n in names})
        parts = pancreas_parts(other)
        assert parts.method == ref.method and set(parts.parts) == set(ref.parts)
        for name, crop in ref.parts.items():
            got = parts.parts[name]
            assert got.count == crop.count, (axcodes, name)
            np.testing.assert_allclose(_centroid(other, got), _centroid(case, crop), atol=1e-6)
            assert got.offset == crop.offset and np.array_equal(got.mask, crop.mask)


def test_anisotropic_thick_slices(phantom):
    coarse = build_phantom(size="small", spacing=(1.6, 1.6, 5.0))
    case = _case(coarse)
    parts = pancreas_parts(case)
    assert parts.method == "smv_pv"
    _assert_partition(case, parts)
    assert lesion_part(parts, case.crop("pancreatic_pdac"))["pancreas_part"] == "head"
    c = {n: _centroid(case, crop) for n, crop in parts.parts.items()}
    assert c["head"][0] > c["body"][0] > c["tail"][0]


# ----------------------------------------------------------------- combined vein masks


def _agreement(a: np.ndarray, b: np.ndarray, pancreas: np.ndarray) -> float:
    return float(np.mean(a[pancreas] == b[pancreas]))


def test_combined_veins_masks_agree_with_separate(phantom):
    ref_case = _case(phantom)
    ref = _assert_partition(ref_case, pancreas_parts(ref_case))
    pancreas = phantom.masks["pancreas"]
    smv_pv = phantom.masks["superior_mesenteric_vein"] | phantom.masks["portal_vein"]

    veins_case = _case(phantom, BASE, {"veins": smv_pv})
    veins_parts = pancreas_parts(veins_case)
    assert veins_parts.method == "smv_pv"
    assert veins_parts.landmarks["head_body"]["source"] == "veins"
    assert _agreement(_assert_partition(veins_case, veins_parts), ref, pancreas) >= 0.95

    ts_case = _case(phantom, BASE, {"portal_vein_and_splenic_vein": smv_pv | phantom.masks["splenic_vein"]})
    ts_parts = pancreas_parts(ts_case)
    assert ts_parts.method == "smv_pv"
    assert "splenic vein removed" in ts_parts.landmarks["head_body"]["source"]
    assert _agreement(_assert_partition(ts_case, ts_parts), ref, pancreas) >= 0.95
    assert lesion_part(ts_parts, ts_case.crop("pancreatic_pdac"))["pancreas_part"] == "head"


def test_splenic_vein_removed_from_combined_mask(phantom):
    smv_pv = phantom.masks["superior_mesenteric_vein"] | phantom.masks["portal_vein"]
    splenic_only = phantom.masks["splenic_vein"] & ~smv_pv
    case = _case(phantom, ("pancreas",), {"portal_vein_and_splenic_vein": smv_pv | phantom.masks["splenic_vein"]})
    trunk, source = venous_trunk(case)
    assert "splenic vein removed" in source
    full = np.zeros(case.shape, bool)
    full[trunk.slices] = trunk.mask
    assert np.count_nonzero(full & splenic_only) <= 0.05 * np.count_nonzero(splenic_only)
    assert np.count_nonzero(full & smv_pv) >= 0.98 * np.count_nonzero(smv_pv)
    info = find_venous_trunk(case).landmarks["portal_vein_and_splenic_vein"]
    assert info["smv_below"] is True and info["junction_k"] is not None
    json.dumps(info)


def test_split_veins_recovers_smv_and_pv(phantom):
    smv_true, pv_true = phantom.masks["superior_mesenteric_vein"], phantom.masks["portal_vein"]
    union = smv_true | pv_true
    veins = Crop.from_full(union)
    smv, pv = split_veins(veins, phantom.affine)
    got_smv, got_pv = np.zeros(union.shape, bool), np.zeros(union.shape, bool)
    got_smv[smv.slices] = smv.mask
    got_pv[pv.slices] = pv.mask
    assert not np.any(got_smv & got_pv)
    assert np.array_equal(got_smv | got_pv, union)

    def dice(a, b):
        return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))

    assert dice(got_smv, smv_true) > 0.8
    assert dice(got_pv, pv_true) > 0.8


def test_split_veins_single_vessel():
    # A vertical tube alone is all SMV; an oblique one alone is all PV.
    shape, affine = (40, 40, 40), np.diag([1.0, 1.0, 1.0, 1.0])
    i, j, k = np.indices(shape)
    vertical = Crop.from_full((i - 20) ** 2 + (j - 20) ** 2 <= 9)
    smv, pv = split_veins(vertical, affine)
    assert smv.count == vertical.count and pv.is_empty
    oblique = Crop.from_full((i - 5 - k) ** 2 + (j - 20) ** 2 <= 9)
    smv, pv = split_veins(oblique, affine)
    assert pv.count == oblique.count and smv.is_empty
    assert split_veins(Crop.empty(), affine)[0].is_empty


def test_venous_trunk_sources(phantom):
    assert venous_trunk(_case(phantom))[1] == "superior_mesenteric_vein+portal_vein"
    only_pv = _case(phantom, BASE + ("portal_vein",))
    crop, source = venous_trunk(only_pv)
    assert source == "portal_vein" and crop.count == only_pv.crop("portal_vein").count
    crop, reason = venous_trunk(_case(phantom, BASE))
    assert crop is None and "no SMV/PV mask" in reason
    # An empty vein mask counts as absent.
    empty = np.zeros(phantom.shape, bool)
    crop, _ = venous_trunk(_case(phantom, BASE, {"superior_mesenteric_vein": empty}))
    assert crop is None


# ----------------------------------------------------------------- fallbacks


def test_sma_fallback_without_vein_masks(phantom):
    case = _case(phantom, BASE)
    parts = pancreas_parts(case)
    assert parts.method == "sma" and parts.reason is None
    assert set(parts.parts) == {"head", "body", "tail"}
    _assert_partition(case, parts)
    assert lesion_part(parts, case.crop("pancreatic_pdac"))["pancreas_part"] == "head"
    c = {n: _centroid(case, crop) for n, crop in parts.parts.items()}
    assert c["head"][0] > c["body"][0] > c["tail"][0]
    # The border runs through the SMA: between its leftmost and rightmost voxels.
    sma = case.crop("superior_mesenteric_artery")
    x = voxel_world(case.affine, sma.offset, np.nonzero(sma.mask))[:, 0]
    lo, hi = parts.landmarks["head_body"]["x_mm_range"]
    assert x.min() <= lo <= hi <= x.max()


def test_not_assessable_without_vein_or_sma(phantom):
    case = _case(phantom, ("pancreas", "aorta", "pancreatic_pdac"))
    parts = pancreas_parts(case)
    assert parts.method is None and parts.parts == {}
    assert parts.reason == NOT_ASSESSABLE == "not assessable (no SMV/PV or SMA mask)"
    assert lesion_part(parts, case.crop("pancreatic_pdac")) is None


def test_no_pancreas_mask(phantom):
    parts = pancreas_parts(_case(phantom, ("aorta",) + SEPARATE))
    assert parts.method is None and parts.parts == {} and "no pancreas" in parts.reason


def test_without_aorta_body_tail_split_half_way(phantom):
    case = _case(phantom, ("pancreas", "pancreatic_pdac") + SEPARATE)
    parts = pancreas_parts(case)
    assert parts.method == "smv_pv"
    _assert_partition(case, parts)
    mid = parts.landmarks["body_tail"]["x_mm"]
    body = voxel_world(case.affine, parts.parts["body"].offset, np.nonzero(parts.parts["body"].mask))[:, 0]
    tail = voxel_world(case.affine, parts.parts["tail"].offset, np.nonzero(parts.parts["tail"].mask))[:, 0]
    assert body.min() >= mid - 1e-6 and tail.max() < mid


def test_given_part_masks_used_as_is(phantom):
    x = phantom.affine[0, 3] + phantom.affine[0, 0] * np.arange(phantom.shape[0])
    x = np.broadcast_to(x[:, None, None], phantom.shape)
    pancreas = phantom.masks["pancreas"]
    given = {"pancreas_head": pancreas & (x > 0), "pancreas_body": pancreas & (x <= 0) & (x > -30),
             "pancreas_tail": pancreas & (x <= -30)}
    case = _case(phantom, extra=given)
    parts = pancreas_parts(case)
    assert parts.method == "masks" and parts.reason is None
    assert set(parts.parts) == {"head", "body", "tail"}
    for name in ("head", "body", "tail"):
        assert parts.parts[name] is case.crop(f"pancreas_{name}")
    assert parts.landmarks["pancreas_voxels_in_no_part"] == 0
    assert parts.landmarks["pancreas_voxels_in_several_parts"] == 0
    assert lesion_part(parts, case.crop("pancreatic_pdac"))["pancreas_part"] == "head"


def test_small_fragments_join_the_part_they_touch():
    labels = np.zeros((20, 6, 6), np.uint8)
    labels[:6] = CODE["head"]
    labels[6:11] = CODE["body"]
    labels[11:16] = CODE["tail"]
    labels[2, 2, 2] = CODE["body"]          # a body crumb inside the head
    labels[8, 1:3, 1:3] = CODE["tail"]      # a tail crumb inside the body
    labels[18, 2, 2] = CODE["body"]         # an island touching no other part: kept
    before = labels.copy()
    boxes = {c: tuple(slice(int(v.min()), int(v.max()) + 1) for v in np.nonzero(labels == c))
             for c in np.unique(labels) if c}
    pieces, voxels = _reassign_fragments(labels, boxes)
    assert (pieces, voxels) == (2, 5)
    assert labels[2, 2, 2] == CODE["head"] and np.all(labels[8, 1:3, 1:3] == CODE["body"])
    assert labels[18, 2, 2] == CODE["body"]
    assert np.count_nonzero(labels != before) == 5


# ----------------------------------------------------------------- real data (TotalSegmentator)


@pytest.mark.parametrize("rel", [
    "totalsegmentator/ct_sm/example_seg_fast.nii.gz",
    "totalsegmentator/ct_full/example_seg_fast_force_split.nii.gz",
])
def test_real_totalsegmentator_parts(rel):
    path = REAL / rel
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    img = nib.load(path)
    labels = np.asarray(img.dataobj)
    wanted = {7: "pancreas", 52: "aorta", 64: "portal_vein_and_splenic_vein"}
    if any(not np.any(labels == v) for v in wanted):
        pytest.skip(f"{rel} lacks one of the labels {sorted(wanted)}")
    case = Case.from_arrays("TS", img.affine, {name: labels == v for v, name in wanted.items()})
    parts = pancreas_parts(case)
    assert parts.method == "smv_pv"
    _assert_partition(case, parts)
    assert "splenic vein removed" in parts.landmarks["head_body"]["source"]
    trunk, _ = venous_trunk(case)
    assert trunk.count < case.crop("portal_vein_and_splenic_vein").count
    head, tail = parts.parts["head"], parts.parts["tail"]
    assert not head.is_empty and not tail.is_empty
    assert _centroid(case, head)[0] > _centroid(case, tail)[0]  # head on the patient's right
    json.dumps(parts.landmarks)
