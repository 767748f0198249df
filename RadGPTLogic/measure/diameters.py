"""WHO bidimensional lesion diameters, measured exactly in millimetres.

Definitions used (WHO, Miller et al. 1981; see docs/MEASUREMENT.md):

* The cross-section of a lesion in an axial slice is the area inside the 0.5
  iso-contour of its mask (:mod:`.contour`): boundaries run half-way between
  inside and outside voxel centres.
* **Longest diameter (LD)**: the longest distance between two boundary points of
  the cross-section, over all axial slices (canonical axis 2).  It is attained at
  two contour vertices, so it is found exactly from the vertices (via their convex
  hull when there are many).
* **Perpendicular diameter**: in the LD's slice, over every line perpendicular to
  the LD, the distance between the first and the last boundary crossing of that
  line; the largest such distance.  Between consecutive vertex positions along
  the LD this distance is a convex function of the line position, so its maximum
  is attained at a vertex position: evaluating those positions is exact.  Both
  end points lie on the boundary, so the perpendicular never exceeds the LD.

Distances go through the affine (anisotropic and sheared in-plane spacing are
handled): in-plane index offsets (di, dj) are mapped to mm with the 2x2 factor R of
``affine[:3, :2] = Q R``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contour import contour_segments, contour_vertices

_EPS = 1e-9


@dataclass(frozen=True)
class AxialDiameters:
    """Result of :func:`who_diameters`.

    ``k`` is the axial slice index in the frame of the mask passed in.  End points
    are in that frame's voxel index coordinates (i, j, k), floats: each is a pair
    of points, shape (2, 3).
    """

    longest_mm: float
    perpendicular_mm: float
    k: int
    longest_ijk: np.ndarray
    perpendicular_ijk: np.ndarray


def _farthest_pair(pts: np.ndarray) -> tuple[float, int, int]:
    """Largest pairwise distance of 2-D points (mm) and the indices of the pair."""
    cand = np.arange(len(pts))
    if len(pts) > 64:
        from scipy.spatial import ConvexHull, QhullError

        try:
            cand = ConvexHull(pts).vertices
        except QhullError:  # degenerate (collinear) sets: brute force below is exact too
            pass
    best, bi, bj = -1.0, 0, 0
    sub = pts[cand]
    for start in range(0, len(sub), 1024):
        block = sub[start: start + 1024]
        d2 = ((block[:, None, :] - sub[None, :, :]) ** 2).sum(-1)
        flat = int(np.argmax(d2))
        r, c = divmod(flat, d2.shape[1])
        if d2[r, c] > best:
            best, bi, bj = float(d2[r, c]), int(cand[start + r]), int(cand[c])
    return float(np.sqrt(best)), bi, bj


def _perpendicular_span(segs: np.ndarray, p: np.ndarray, q: np.ndarray):
    """Longest first-to-last-crossing span of lines perpendicular to p->q.

    ``segs`` are contour segments in 2-D mm, shape (S, 2, 2).  Returns the span
    (mm) and its two end points (2, 2) in mm.
    """
    u = (q - p) / np.linalg.norm(q - p)
    v = np.array([-u[1], u[0]])
    su, sv = segs @ u, segs @ v  # (S, 2) each
    lo, hi = su.min(1), su.max(1)
    du = su[:, 1] - su[:, 0]
    flat = np.abs(du) <= _EPS  # segment parallel to the perpendicular lines
    slope = np.where(flat, 0.0, (sv[:, 1] - sv[:, 0]) / np.where(flat, 1.0, du))
    v_hi_flat = np.where(flat, sv.max(1), 0.0)
    v_lo_flat = np.where(flat, sv.min(1), 0.0)
    positions = np.unique(su)
    best = (-1.0, 0.0, 0.0, 0.0)
    for start in range(0, len(positions), 256):
        c = positions[start: start + 256, None]
        cross = (lo[None, :] <= c + _EPS) & (hi[None, :] >= c - _EPS)
        v_at = sv[None, :, 0] + (c - su[None, :, 0]) * slope[None, :]
        v_top = np.where(flat[None, :], v_hi_flat[None, :], v_at)
        v_bot = np.where(flat[None, :], v_lo_flat[None, :], v_at)
        top = np.where(cross, v_top, -np.inf).max(1)
        bot = np.where(cross, v_bot, np.inf).min(1)
        span = top - bot
        i = int(np.argmax(span))
        if span[i] > best[0]:
            best = (float(span[i]), float(c[i, 0]), float(bot[i]), float(top[i]))
    length, c0, v0, v1 = best
    return max(length, 0.0), np.array([c0 * u + v0 * v, c0 * u + v1 * v])


def _slice_bounds(mask: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Per axial slice, an upper bound (mm) of any chord: the diagonal of its in-plane bounding box."""
    ni, nj, nk = mask.shape
    proj_i = mask.any(axis=1)  # (ni, nk)
    proj_j = mask.any(axis=0)  # (nj, nk)
    present = proj_i.any(axis=0)

    def extent(proj, n):
        first = np.argmax(proj, axis=0)
        last = n - 1 - np.argmax(proj[::-1], axis=0)
        return (last - first + 1).astype(float)

    ei, ej = extent(proj_i, ni), extent(proj_j, nj)
    d1 = np.linalg.norm(np.stack([ei, ej], 1) @ r2.T, axis=1)
    d2 = np.linalg.norm(np.stack([ei, -ej], 1) @ r2.T, axis=1)
    return np.where(present, np.maximum(d1, d2), -1.0)


def inplane_metric(affine: np.ndarray) -> np.ndarray:
    """2x2 matrix R mapping in-plane index offsets (di, dj) to an orthonormal mm frame of the slice."""
    _, r2 = np.linalg.qr(np.asarray(affine, float)[:3, :2])
    return r2


def who_diameters(mask: np.ndarray, affine: np.ndarray) -> AxialDiameters | None:
    """WHO longest axial diameter and its perpendicular for one lesion component.

    Parameters
    ----------
    mask : (I, J, K) bool ndarray
        The component, canonical frame (axis 2 = axial slices), usually a crop.
    affine : (4, 4) ndarray
        Voxel index of ``mask`` -> RAS mm (only its linear part matters).

    Returns None for an empty mask.  Ties between slices (equal LD within 1e-6 mm)
    go to the slice with the larger perpendicular, then the lower index.
    """
    if not mask.any():
        return None
    r2 = inplane_metric(affine)
    bounds = _slice_bounds(mask, r2)
    order = np.argsort(-bounds, kind="stable")
    best_ld, candidates = -1.0, []
    for k in order:
        if bounds[k] < 0 or bounds[k] < best_ld - 1e-6:
            break
        verts = contour_vertices(mask[:, :, k])
        pts = verts @ r2.T
        ld, a, b = _farthest_pair(pts)
        if ld > best_ld + 1e-6:
            best_ld, candidates = ld, [(int(k), verts[a], verts[b], pts[a], pts[b])]
        elif ld >= best_ld - 1e-6:
            candidates.append((int(k), verts[a], verts[b], pts[a], pts[b]))
    best = None
    for k, va, vb, pa, pb in sorted(candidates, key=lambda c: c[0]):
        segs = contour_segments(mask[:, :, k]) @ r2.T
        perp, ends_mm = _perpendicular_span(segs, pa, pb)
        if best is None or perp > best[1] + 1e-6:
            ends_idx = np.linalg.solve(r2, ends_mm.T).T
            best = (k, perp, va, vb, ends_idx)
    assert best is not None  # a non-empty mask has a slice with a longest diameter, so a candidate
    k, perp, va, vb, ends_idx = best
    return AxialDiameters(
        longest_mm=float(best_ld),
        perpendicular_mm=float(perp),
        k=k,
        longest_ijk=np.array([[va[0], va[1], k], [vb[0], vb[1], k]], float),
        perpendicular_ijk=np.column_stack([ends_idx, [k, k]]).astype(float),
    )
