"""Splitting a combined celiac mask into trunk, common hepatic and splenic artery.

A synthetic tree (aorta, trunk, CHA to the patient's right, splenic artery to the
left) is voxelised from capsules in RAS mm on grids stored RAS, LPS-like (x and y
flipped) and with permuted axes: the split must be the same physical one on every
grid, with the CHA always on the patient's right (+x in RAS).
"""

from __future__ import annotations

import numpy as np
import pytest

from RadGPTLogic.case import Case, Crop
from RadGPTLogic.staging.celiac import PARTS, split_celiac

SPACING = (0.8, 0.8, 1.5)
ORIGIN = (-70.0, -20.0, -30.0)
SHAPE = (151, 76, 51)   # covers x -70..50, y -20..40, z -30..45 (RAS mm)

AORTA = (((0.0, 0.0, -40.0), (0.0, 0.0, 60.0)), 10.0)
TRUNK = (((0.0, 6.0, 0.0), (2.0, 22.0, 4.0)), 3.5)
CHA = (((2.0, 22.0, 4.0), (20.0, 28.0, 8.0), (40.0, 27.0, 12.0)), 3.0)
SPLENIC = (((2.0, 22.0, 4.0), (-25.0, 21.0, 10.0), (-45.0, 12.0, 14.0), (-62.0, 2.0, 16.0)), 3.0)


def ras_affine():
    a = np.diag(list(SPACING) + [1.0])
    a[:3, 3] = ORIGIN
    return a


def frame_affine(kind):
    """Affine of the same voxel centres stored as ``kind``: ras, lps (x, y flipped) or permuted."""
    a = ras_affine()
    if kind == "ras":
        return a, (0, 1, 2), (False, False, False)
    if kind == "lps":
        b = a.copy()
        for ax in (0, 1):
            b[:3, 3] += a[:3, ax] * (SHAPE[ax] - 1)
            b[:3, ax] *= -1
        return b, (0, 1, 2), (True, True, False)
    if kind == "permuted":  # stored axes (S, R, P): z, x, and y flipped
        b = np.eye(4)
        b[:3, 0], b[:3, 1], b[:3, 2] = a[:3, 2], a[:3, 0], -a[:3, 1]
        b[:3, 3] = a[:3, 3] + a[:3, 1] * (SHAPE[1] - 1)
        return b, (2, 0, 1), (False, False, True)
    raise ValueError(kind)


def to_frame(ras_array, kind):
    """The RAS-stored array as stored in frame ``kind``."""
    _, order, flips = frame_affine(kind)
    out = np.transpose(ras_array, order)
    for ax, f in enumerate(flips):
        if f:
            out = np.flip(out, ax)
    return np.ascontiguousarray(out)


def capsule_chain(xyz, points, radius):
    """Voxels within ``radius`` of the polyline through ``points``."""
    inside = np.zeros(xyz.shape[:-1], bool)
    for p, q in zip(points[:-1], points[1:]):
        p, q = np.asarray(p, float), np.asarray(q, float)
        d = q - p
        t = np.clip(((xyz - p) @ d) / (d @ d), 0.0, 1.0)
        inside |= np.linalg.norm(xyz - (p + t[..., None] * d), axis=-1) <= radius
    return inside


@pytest.fixture(scope="module")
def tree():
    """RAS-stored full-grid masks: aorta, the three true parts and their union."""
    a = ras_affine()
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE], indexing="ij"), -1)
    xyz = ijk @ a[:3, :3].T + a[:3, 3]
    aorta = capsule_chain(xyz, *AORTA)
    trunk = capsule_chain(xyz, *TRUNK) & ~aorta
    cha = capsule_chain(xyz, *CHA) & ~aorta & ~trunk
    spl = capsule_chain(xyz, *SPLENIC) & ~aorta & ~trunk & ~cha
    return {"aorta": aorta, "celiac_trunk": trunk, "common_hepatic_artery": cha, "splenic_artery": spl,
            "celiac": trunk | cha | spl}


def world_voxels(crop: Crop, affine) -> np.ndarray:
    """Sorted RAS mm (rounded to 1e-3) of a crop's voxels: comparable across frames."""
    if crop.is_empty:
        return np.zeros((0, 3))
    w = (np.argwhere(crop.mask) + np.asarray(crop.offset)) @ affine[:3, :3].T + affine[:3, 3]
    w = np.round(w, 3)
    return w[np.lexsort(w.T[::-1])]


def centroid_x(crop: Crop, affine) -> float:
    return float(world_voxels(crop, affine)[:, 0].mean())


def split_in_frame(tree, kind, with_aorta=True):
    affine, _, _ = frame_affine(kind)
    celiac = Crop.from_full(to_frame(tree["celiac"], kind))
    aorta = Crop.from_full(to_frame(tree["aorta"], kind)) if with_aorta else None
    return split_celiac(celiac, aorta, affine), celiac, aorta, affine


def dice(a: Crop, b: Crop, shape) -> float:
    x, y = a.in_box((0, 0, 0), shape), b.in_box((0, 0, 0), shape)
    return 2.0 * np.count_nonzero(x & y) / max(1, np.count_nonzero(x) + np.count_nonzero(y))


@pytest.mark.parametrize("kind", ["ras", "lps", "permuted"])
@pytest.mark.parametrize("with_aorta", [True, False])
def test_cha_is_on_the_patients_right_in_every_frame(tree, kind, with_aorta):
    out, celiac, aorta, affine = split_in_frame(tree, kind, with_aorta)
    xs = {name: centroid_x(out[name], affine) for name in PARTS}
    assert xs["common_hepatic_artery"] > xs["celiac_trunk"] > xs["splenic_artery"], (xs, out["how"])
    # Partition: no overlap, and the union is the input.
    shape = celiac.mask.shape
    boxes = [out[name].in_box(celiac.offset, shape) for name in PARTS]
    assert sum(b.astype(int) for b in boxes).max() == 1
    assert np.array_equal(boxes[0] | boxes[1] | boxes[2], celiac.mask)
    assert isinstance(out["how"], str) and out["how"]


@pytest.mark.parametrize("kind", ["ras", "lps", "permuted"])
def test_split_matches_the_truth_and_touches_the_aorta(tree, kind):
    out, celiac, aorta, affine = split_in_frame(tree, kind)
    shape = tree["celiac"].shape if kind == "ras" else to_frame(tree["celiac"], kind).shape
    for name in PARTS:
        truth = Crop.from_full(to_frame(tree[name], kind))
        assert dice(out[name], truth, shape) > 0.8, name
    # The trunk touches the aorta (a 26-neighbour of an aorta voxel).
    from scipy import ndimage

    near = ndimage.binary_dilation(aorta.in_box((0, 0, 0), shape), np.ones((3, 3, 3), bool))
    assert np.any(out["celiac_trunk"].in_box((0, 0, 0), shape) & near)
    assert "aorta" in out["how"]


@pytest.mark.parametrize("with_aorta", [True, False])
def test_same_physical_split_in_every_frame(tree, with_aorta):
    ref, _, _, ref_aff = split_in_frame(tree, "ras", with_aorta)
    for kind in ("lps", "permuted"):
        out, _, _, affine = split_in_frame(tree, kind, with_aorta)
        for name in PARTS:
            assert np.array_equal(world_voxels(out[name], affine), world_voxels(ref[name], ref_aff)), (kind, name)


def test_canonical_case_frame(tree):
    # Through the importer: LPS-stored arrays become a canonical (RAS) case.
    affine, _, _ = frame_affine("lps")
    case = Case.from_arrays("celiac", affine, {"celiac_aa": to_frame(tree["celiac"], "lps"),
                                               "aorta": to_frame(tree["aorta"], "lps")})
    out = split_celiac(case.crop("celiac_aa"), case.crop("aorta"), case.affine)
    xs = {name: centroid_x(out[name], case.affine) for name in PARTS}
    assert xs["common_hepatic_artery"] > xs["celiac_trunk"] > xs["splenic_artery"]
    ref, _, _, ref_aff = split_in_frame(tree, "ras")
    for name in PARTS:
        assert np.array_equal(world_voxels(out[name], case.affine), world_voxels(ref[name], ref_aff))


def test_detached_piece_joins_the_nearest_part(tree):
    # A 3 mm gap cut into the splenic artery: the distal piece is still splenic.
    a = ras_affine()
    celiac = tree["celiac"].copy()
    x = np.arange(SHAPE[0]) * SPACING[0] + ORIGIN[0]
    celiac[(x > -38.0) & (x < -35.0)] = False
    out = split_celiac(Crop.from_full(celiac), Crop.from_full(tree["aorta"]), a)
    spl = out["splenic_artery"].in_box((0, 0, 0), SHAPE)
    assert spl[x < -40.0].sum() == (celiac & tree["splenic_artery"])[x < -40.0].sum()
    assert "detached" in out["how"]
    total = sum(out[n].count for n in PARTS)
    assert total == celiac.sum()


def test_unbranched_mask_is_all_trunk(tree):
    out = split_celiac(Crop.from_full(tree["celiac_trunk"]), Crop.from_full(tree["aorta"]), ras_affine())
    assert out["celiac_trunk"].count == tree["celiac_trunk"].sum()
    assert out["common_hepatic_artery"].is_empty and out["splenic_artery"].is_empty
    assert "no bifurcation" in out["how"]


def test_empty_mask():
    out = split_celiac(Crop.empty(), None, ras_affine())
    assert all(out[n].is_empty for n in PARTS) and out["how"]


@pytest.mark.parametrize("with_aorta", [True, False])
def test_phantom_celiac_tree(with_aorta):
    from RadGPTLogic.phantom import build_phantom

    ph = build_phantom(size="small", lesions=[], noise_sd=0.0)
    combined = ph.masks["celiac_trunk"] | ph.masks["common_hepatic_artery"] | ph.masks["splenic_artery"]
    aorta = Crop.from_full(ph.masks["aorta"]) if with_aorta else None
    out = split_celiac(Crop.from_full(combined), aorta, ph.affine)
    for name in PARTS:
        assert dice(out[name], Crop.from_full(ph.masks[name]), combined.shape) > 0.8, (name, out["how"])
