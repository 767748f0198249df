"""WHO diameters against analytic truth: pixel blocks (exact) and digitised ellipses."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ellipsoid

from RadGPTLogic.measure.contour import contour_segments, contour_vertices
from RadGPTLogic.measure.diameters import who_diameters


def test_block_longest_diameter_is_exact():
    # A 7 x 4 block of pixels in one slice: the 0.5 iso-contour's farthest vertices
    # are (-0.5, 0)-(6.5, 3) or (0, -0.5)-(6, 3.5): sqrt(7^2 + 3^2) vs sqrt(6^2 + 4^2).
    m = np.zeros((12, 10, 3), bool)
    m[2:9, 3:7, 1] = True
    d = who_diameters(m, np.diag([1.0, 1.0, 1.0, 1.0]))
    assert d.longest_mm == pytest.approx(np.hypot(7, 3), abs=1e-9)
    assert d.k == 1
    # Anisotropic pixels (0.5 x 2 mm): candidates hypot(7*.5, 3*2) and hypot(6*.5, 4*2).
    d = who_diameters(m, np.diag([0.5, 2.0, 3.0, 1.0]))
    assert d.longest_mm == pytest.approx(max(np.hypot(3.5, 6), np.hypot(3, 8)), abs=1e-9)


def test_single_voxel_and_line():
    m = np.zeros((3, 3, 3), bool)
    m[1, 1, 1] = True
    d = who_diameters(m, np.eye(4))
    # The diamond of a single pixel's iso-contour has vertices 1 apart across.
    assert d.longest_mm == pytest.approx(1.0, abs=1e-9)
    assert d.perpendicular_mm == pytest.approx(1.0, abs=1e-9)
    line = np.zeros((20, 3, 1), bool)
    line[2:17, 1, 0] = True
    d = who_diameters(line, np.diag([2.0, 1.0, 1.0, 1.0]))
    assert d.longest_mm == pytest.approx(15 * 2.0, abs=1e-9)
    assert d.perpendicular_mm == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    "spacing,semi,angle",
    [
        ((1.0, 1.0, 1.0), (15.0, 10.0), 0.0),
        ((0.75, 0.75, 1.0), (15.0, 10.0), 30.0),
        ((0.7, 0.7, 5.0), (20.0, 8.0), 45.0),
        ((0.6, 1.2, 2.5), (12.0, 7.0), 110.0),  # anisotropic in-plane
        ((2.0, 2.0, 2.5), (15.0, 10.0), 70.0),
    ],
)
def test_ellipse_within_tolerance(spacing, semi, angle):
    """LD and perpendicular within 1.5 x in-plane spacing of the analytic axes 2a, 2b."""
    extent = 2 * max(semi) + 10
    shape = tuple(int(np.ceil(extent / s)) for s in spacing[:2]) + (int(np.ceil(40 / spacing[2])),)
    center = (shape[0] * spacing[0] / 2, shape[1] * spacing[1] / 2, 20.0)
    m = ellipsoid(shape, spacing, center, (semi[0], semi[1], 12.0), angle)
    d = who_diameters(m, np.diag([*spacing, 1.0]))
    tol = 1.5 * max(spacing[:2])
    assert abs(d.longest_mm - 2 * semi[0]) <= tol
    assert abs(d.perpendicular_mm - 2 * semi[1]) <= tol
    assert d.perpendicular_mm <= d.longest_mm
    # The slice holding the LD is the one through the centre (largest cross-section).
    assert abs(d.k * spacing[2] - center[2]) <= spacing[2] + 1e-9
    # Calipers are perpendicular and as long as reported.
    ld_vec = (d.longest_ijk[1] - d.longest_ijk[0]) * spacing
    pd_vec = (d.perpendicular_ijk[1] - d.perpendicular_ijk[0]) * spacing
    assert np.linalg.norm(ld_vec) == pytest.approx(d.longest_mm, rel=1e-9)
    assert np.linalg.norm(pd_vec) == pytest.approx(d.perpendicular_mm, rel=1e-9)
    assert abs(np.dot(ld_vec, pd_vec)) < 1e-6 * d.longest_mm * d.perpendicular_mm


def test_perpendicular_is_a_chord_not_the_mask_width():
    """An L shape: the perpendicular is the longest boundary-to-boundary chord, never more than LD."""
    m = np.zeros((30, 30, 1), bool)
    m[2:26, 2:6, 0] = True  # long vertical bar
    m[22:26, 2:20, 0] = True  # foot
    d = who_diameters(m, np.eye(4))
    assert d.perpendicular_mm <= d.longest_mm
    # LD runs from the bar's top to the foot's end; brute-force over vertices agrees.
    v = contour_vertices(m[:, :, 0])
    brute = max(np.linalg.norm(a - b) for a in v for b in v)
    assert d.longest_mm == pytest.approx(brute, abs=1e-9)


def test_sheared_affine_uses_world_distances():
    """An oblique in-plane affine (axes not orthogonal): distances follow the affine."""
    m = np.zeros((10, 10, 1), bool)
    m[2:8, 4, 0] = True
    shear = np.array([[1.0, 0.5, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    d = who_diameters(m, shear)
    verts = contour_vertices(m[:, :, 0])
    world = verts @ shear[:2, :2].T
    brute = max(np.linalg.norm(a - b) for a in world for b in world)
    assert d.longest_mm == pytest.approx(brute, abs=1e-9)


def test_segments_close_around_shapes():
    """Every contour vertex is used by exactly two segments (closed contours)."""
    rng = np.random.default_rng(1)
    m = rng.random((15, 15)) > 0.5
    segs = contour_segments(m)
    ends = np.round(segs.reshape(-1, 2) * 2).astype(int)
    _, counts = np.unique(ends, axis=0, return_counts=True)
    assert np.all(counts == 2)
    verts = np.round(contour_vertices(m) * 2).astype(int)
    assert {tuple(p) for p in verts} == {tuple(p) for p in ends}
