"""Circumferential tumour-vessel contact against synthetic tubes with a known wrapped sector.

Every scene is voxelised here from analytic geometry (voxel centres): a vessel is the
set of points within ``r`` of its axis; the tumour is an annular sector shell
``r + gap < rho <= r + gap + 6 mm`` over a known angular sector around the axis and
20 mm along it.  The true contact angle is the sector's angle (0 with a fat gap).
"""

from __future__ import annotations

import numpy as np
import pytest

from RadGPTLogic.case import Crop
from RadGPTLogic.staging.contact import CONTACT_MM, ContactResult, contact_degrees, prepare_vessel

FINE = (0.75, 0.75, 1.0)
THICK = (0.8, 0.8, 2.5)
TILT30 = (np.sin(np.radians(30)) * np.cos(0.6), np.sin(np.radians(30)) * np.sin(0.6), np.cos(np.radians(30)))
DIRECTIONS = {"vertical": (0.0, 0.0, 1.0), "tilted30": TILT30, "horizontal": (1.0, 0.0, 0.0)}
SECTORS = (60.0, 120.0, 200.0, 270.0)


# ---------------------------------------------------------------- scene builders
def make_grid(extent_mm, spacing, rotate_deg=0.0):
    """(shape, affine): a grid covering ``extent_mm`` per axis; optionally turned about S."""
    shape = tuple(int(round(e / s)) for e, s in zip(extent_mm, spacing))
    affine = np.eye(4)
    t = np.radians(rotate_deg)
    rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    affine[:3, :3] = rot @ np.diag(spacing)
    return shape, affine


def world(shape, affine):
    """RAS mm of every voxel centre, shape + (3,)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def perpendicular_frame(t):
    t = np.asarray(t, float) / np.linalg.norm(t)
    ref = np.eye(3)[np.argmin(np.abs(t))]
    e1 = np.cross(t, ref)
    e1 /= np.linalg.norm(e1)
    return t, e1, np.cross(t, e1)


def straight_scene(shape, affine, center, direction, radius, sector_deg, start_deg=0.0, gap=0.0,
                   thick=6.0, length=20.0, xyz=None):
    """Vessel (straight tube) and sector-shell tumour Crops."""
    xyz = world(shape, affine) if xyz is None else xyz
    t, e1, e2 = perpendicular_frame(direction)
    d = xyz - np.asarray(center, float)
    s = d @ t
    q = d - s[..., None] * t
    rho = np.linalg.norm(q, axis=-1)
    phi = np.mod(np.degrees(np.arctan2(q @ e2, q @ e1)) - start_deg, 360.0)
    vessel = rho <= radius
    tumour = (rho > radius + gap) & (rho <= radius + gap + thick) & (phi < sector_deg) & (np.abs(s) <= length / 2)
    return Crop.from_full(vessel), Crop.from_full(tumour)


def arc_scene(shape, affine, origin, bend_radius, radius, sector_deg, facing_deg=180.0, gap=0.0, thick=6.0,
              tumour_arc_deg=30.0):
    """A vessel bent along a circle of ``bend_radius`` in the coronal (R-S) plane around ``origin``.

    The vessel covers the arc from 20 to 160 degrees (0 = +R, 90 = +S); the tumour
    sector is centred at 90 degrees along the arc and faces ``facing_deg`` around the
    vessel (180 = towards the inside of the bend, 0 = outside, 90 = anterior).
    """
    p = world(shape, affine) - np.asarray(origin, float)
    h = p[..., 1]
    rc = np.hypot(p[..., 0], p[..., 2])
    rho = np.hypot(rc - bend_radius, h)
    psi = np.degrees(np.arctan2(p[..., 2], p[..., 0]))
    phi = np.degrees(np.arctan2(h, rc - bend_radius))
    off = np.abs(np.mod(phi - facing_deg + 180.0, 360.0) - 180.0)
    vessel = (rho <= radius) & (psi >= 20.0) & (psi <= 160.0)
    tumour = ((rho > radius + gap) & (rho <= radius + gap + thick) & (off <= sector_deg / 2)
              & (np.abs(psi - 90.0) <= tumour_arc_deg / 2))
    return Crop.from_full(vessel), Crop.from_full(tumour)


def tube_scene_case(spacing, direction, radius):
    """A 60 mm cube with a tube through a centre that is not on a voxel centre."""
    shape, affine = make_grid((60.0, 60.0, 60.0), spacing)
    center = np.array([30.0, 30.0, 30.0]) + (0.3, 0.37, 0.61)
    return shape, affine, center, world(shape, affine)


@pytest.fixture(scope="module")
def tube_models():
    """(grid, direction) -> (shape, affine, center, xyz, VesselModel), built once and reused by many tumours."""
    out = {}
    for gname, spacing, radius in (("fine", FINE, 4.0), ("thick", THICK, 5.0)):
        for dname, direction in DIRECTIONS.items():
            shape, affine, center, xyz = tube_scene_case(spacing, direction, radius)
            vessel, _ = straight_scene(shape, affine, center, direction, radius, 0.0, xyz=xyz)
            out[gname, dname] = (shape, affine, center, xyz, radius, prepare_vessel(vessel, affine))
    return out


def measure(tube_models, grid, direction, sector, **kw):
    shape, affine, center, xyz, radius, model = tube_models[grid, direction]
    _, tumour = straight_scene(shape, affine, center, DIRECTIONS[direction], radius, sector, xyz=xyz, **kw)
    return contact_degrees(model, tumour, affine)


# ------------------------------------------------------------------------ accuracy
@pytest.mark.parametrize("direction", list(DIRECTIONS))
@pytest.mark.parametrize("sector", SECTORS)
def test_fine_grid_sector_within_10_degrees(tube_models, direction, sector):
    res = measure(tube_models, "fine", direction, sector, start_deg=17.0)
    assert isinstance(res, ContactResult)
    assert res.degrees == pytest.approx(sector, abs=10.0)
    assert res.n_sections > 5 and res.center_ras_mm is not None


@pytest.mark.parametrize("direction", ["vertical", "tilted30"])
@pytest.mark.parametrize("sector", SECTORS)
def test_thick_slices_sector_within_10_degrees(tube_models, direction, sector):
    res = measure(tube_models, "thick", direction, sector, start_deg=17.0)
    assert res.degrees == pytest.approx(sector, abs=10.0)


@pytest.mark.parametrize("sector", SECTORS)
def test_horizontal_vessel_on_thick_slices(tube_models, sector):
    # Cross-sections of a horizontal vessel contain the 2.5 mm slice axis: each end
    # of the arc is only known to half a slice, 1.25 mm = 14 degrees at a 5 mm radius.
    res = measure(tube_models, "thick", "horizontal", sector, start_deg=17.0)
    assert res.degrees == pytest.approx(sector, abs=15.0)


@pytest.mark.parametrize("grid", ["fine", "thick"])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_no_tumour_contact_reads_zero(tube_models, grid, direction):
    # A 90-degree shell behind a 3 mm fat plane: no contact.
    res = measure(tube_models, grid, direction, 90.0, start_deg=30.0, gap=3.0)
    assert res.degrees == 0.0
    assert res.center_ras_mm is None and res.tangent is None


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_one_mm_seam_reads_contact(tube_models, direction):
    # Documented choice: a 1 mm gap (one unlabelled voxel) is not a fat plane.
    res = measure(tube_models, "fine", direction, 90.0, start_deg=30.0, gap=1.0)
    assert res.degrees == pytest.approx(90.0, abs=15.0)


@pytest.mark.parametrize("start", [0.0, 45.0, 90.0, 135.0, 200.0, 300.0])
@pytest.mark.parametrize("direction", ["tilted30", "horizontal"])
def test_sector_at_any_start_angle(tube_models, direction, start):
    res = measure(tube_models, "fine", direction, 120.0, start_deg=start)
    assert res.degrees == pytest.approx(120.0, abs=10.0)


def test_contact_section_is_perpendicular_to_the_vessel(tube_models):
    for direction in DIRECTIONS:
        res = measure(tube_models, "fine", direction, 200.0)
        t = np.asarray(DIRECTIONS[direction]) / np.linalg.norm(DIRECTIONS[direction])
        assert abs(np.dot(res.tangent, t)) > np.cos(np.radians(3.0))
        shape, affine, center, *_ = tube_models["fine", direction]
        off = np.asarray(res.center_ras_mm) - center
        assert np.linalg.norm(off - np.dot(off, t) * t) < 0.5  # on the axis
        assert abs(np.dot(off, t)) <= 10.0  # within the tumour's length


@pytest.mark.parametrize("facing", [180.0, 0.0, 90.0])
@pytest.mark.parametrize("sector", SECTORS)
def test_curved_vessel(facing, sector):
    shape, affine = make_grid((100.0, 30.0, 100.0), FINE)
    vessel, tumour = arc_scene(shape, affine, (50.3, 15.2, 20.4), 40.0, 4.0, sector, facing_deg=facing)
    res = contact_degrees(prepare_vessel(vessel, affine), tumour, affine)
    assert res.degrees == pytest.approx(sector, abs=10.0)


def test_curved_vessel_fat_plane():
    shape, affine = make_grid((100.0, 30.0, 100.0), FINE)
    vessel, tumour = arc_scene(shape, affine, (50.3, 15.2, 20.4), 40.0, 4.0, 120.0, gap=3.0)
    assert contact_degrees(prepare_vessel(vessel, affine), tumour, affine).degrees == 0.0


def test_oblique_grid_affine():
    # The same physical scene on a grid turned 25 degrees about S (a non-diagonal affine).
    shape, affine = make_grid((70.0, 70.0, 60.0), FINE, rotate_deg=25.0)
    affine[:3, 3] = (-5.0, -20.0, 0.0)
    center = (10.0, 30.0, 30.0)
    vessel, tumour = straight_scene(shape, affine, center, TILT30, 4.0, 150.0, start_deg=40.0)
    res = contact_degrees(prepare_vessel(vessel, affine), tumour, affine)
    assert res.degrees == pytest.approx(150.0, abs=10.0)


# ----------------------------------------------------------------- no spurious contact
def test_far_tumour_reads_zero(tube_models):
    shape, affine, center, xyz, radius, model = tube_models["fine", "tilted30"]
    far = np.linalg.norm(xyz - (center + (15.0, -15.0, 0.0)), axis=-1) <= 4.0
    res = contact_degrees(model, Crop.from_full(far), affine)
    assert res.degrees == 0.0 and res.n_sections == 0


def test_empty_inputs():
    shape, affine = make_grid((20.0, 20.0, 20.0), FINE)
    vessel, tumour = straight_scene(shape, affine, (10.0, 10.0, 10.0), (0, 0, 1), 3.0, 90.0)
    model = prepare_vessel(vessel, affine)
    assert contact_degrees(model, Crop.empty(), affine).degrees == 0.0
    empty = prepare_vessel(Crop.empty(), affine)
    assert empty.n_sections == 0 and contact_degrees(empty, tumour, affine).degrees == 0.0
    assert prepare_vessel(vessel, affine, near=Crop.empty()).n_sections == 0


def branch_scene(branch_dir, tumour_fn):
    """Main vertical tube (r 4) with a branch (r 3) leaving at z = 30 towards ``branch_dir``."""
    shape, affine = make_grid((70.0, 40.0, 60.0), FINE)
    xyz = world(shape, affine)
    main_c = np.array([15.2, 20.3, 30.0])
    d = xyz - main_c
    main = np.hypot(d[..., 0], d[..., 1]) <= 4.0
    b = np.asarray(branch_dir, float) / np.linalg.norm(branch_dir)
    s = d @ b
    rho_b = np.linalg.norm(d - s[..., None] * b, axis=-1)
    branch = (rho_b <= 3.0) & (s >= 0.0) & (s <= 45.0)
    tumour = tumour_fn(d, b, s, rho_b) & ~main & ~branch
    return shape, affine, Crop.from_full(main | branch), Crop.from_full(tumour)


@pytest.mark.parametrize("sector", [30.0, 90.0])
def test_branch_point_does_not_inflate_contact(sector):
    # Oblique branch (45 degrees up to the right); the tumour wraps ``sector`` degrees
    # of its lower side from 7 to 27 mm along it (>= 3 mm from the trunk).
    # Horizontal sections of the trunk at the junction cut the branch lumen: their
    # rays escape along it (refused sections) or leave it through its lower wall,
    # next to the tumour.  The result must be the branch's own contact, read on a
    # section of the branch.
    b = (1.0, 0.0, 1.0)

    def tumour_fn(d, b, s, rho_b):
        q = d - s[..., None] * b
        down = np.array([1.0, 0.0, -1.0]) / np.sqrt(2.0)
        ang = np.degrees(np.arccos(np.clip((q @ down) / np.maximum(rho_b, 1e-9), -1, 1)))
        return (rho_b > 3.0) & (rho_b <= 9.0) & (ang <= sector / 2) & (s >= 7.0) & (s <= 27.0)

    shape, affine, vessel, tumour = branch_scene(b, tumour_fn)
    res = contact_degrees(prepare_vessel(vessel, affine), tumour, affine)
    assert res.degrees == pytest.approx(sector, abs=10.0)
    assert res.n_rejected > 0  # sections at the junction were seen and refused
    bn = np.asarray(b) / np.linalg.norm(b)
    assert abs(np.dot(res.tangent, bn)) > np.cos(np.radians(15.0))


def test_fat_plane_near_a_branch_point_reads_zero():
    # A tumour 3 mm away from both the trunk and the branch, in the crotch of the junction.
    def tumour_fn(d, b, s, rho_b):
        rho_main = np.hypot(d[..., 0], d[..., 1])
        return (rho_main > 7.0) & (rho_b > 6.0) & (np.abs(d[..., 2] - 8.0) <= 8.0) & (d[..., 0] > 0) \
            & (np.abs(d[..., 1]) <= 8.0)

    shape, affine, vessel, tumour = branch_scene((1.0, 0.0, 1.0), tumour_fn)
    assert contact_degrees(prepare_vessel(vessel, affine), tumour, affine).degrees == 0.0


# --------------------------------------------------------------- restriction, reuse
def test_restricted_model_gives_the_same_answer():
    shape, affine = make_grid((60.0, 60.0, 130.0), FINE)
    xyz = world(shape, affine)
    center = np.array([30.2, 30.1, 65.3])
    vessel, tumour = straight_scene(shape, affine, center, TILT30, 4.0, 200.0, start_deg=10.0, xyz=xyz)
    full = prepare_vessel(vessel, affine)
    near = prepare_vessel(vessel, affine, near=tumour, margin_mm=25.0)
    assert near.n_sections < full.n_sections
    a, b = contact_degrees(full, tumour, affine), contact_degrees(near, tumour, affine)
    assert a.degrees == pytest.approx(200.0, abs=10.0)
    assert b.degrees == pytest.approx(a.degrees, abs=1e-9)
    assert b.center_ras_mm == pytest.approx(a.center_ras_mm, abs=1e-9)
    assert b.n_sections == a.n_sections
    # A tumour beyond a 10 mm margin: the restricted model has no section within reach.
    near10 = prepare_vessel(vessel, affine, near=tumour, margin_mm=10.0)
    _, far = straight_scene(shape, affine, center + 55.0 * np.asarray(TILT30), TILT30, 4.0, 90.0, xyz=xyz)
    assert contact_degrees(near10, far, affine).n_sections == 0
    assert contact_degrees(full, far, affine).degrees == pytest.approx(90.0, abs=10.0)


def test_model_is_reused_across_tumours(tube_models):
    # Walls are cached: the same answer the second time, for any order of tumours.
    first = measure(tube_models, "fine", "vertical", 120.0)
    measure(tube_models, "fine", "vertical", 270.0)
    again = measure(tube_models, "fine", "vertical", 120.0)
    assert again.degrees == first.degrees


def test_mismatched_affine_is_refused(tube_models):
    shape, affine, center, xyz, radius, model = tube_models["fine", "vertical"]
    _, tumour = straight_scene(shape, affine, center, (0, 0, 1), radius, 90.0, xyz=xyz)
    other = affine.copy()
    other[0, 3] += 5.0
    with pytest.raises(ValueError):
        contact_degrees(model, tumour, other)


def test_contact_mm_default_matches_rules():
    from RadGPTLogic.rules import DEFAULT_RULES

    assert DEFAULT_RULES.contact_mm == CONTACT_MM == 1.5
