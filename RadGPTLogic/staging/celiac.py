"""Split a combined celiac mask (AbdomenAtlas ``celiac_aa``) into trunk, CHA and splenic artery.

The combined mask holds the celiac trunk (short, leaving the aorta anteriorly),
the common hepatic artery (CHA, running to the patient's right, +x in RAS) and the
splenic artery (to the patient's left, -x).  Rule:

1. **Origin.**  The trunk starts where the mask meets the aorta: the celiac voxels
   nearest to the aorta mask (within ``ORIGIN_GAP_MM``; all those within one voxel
   of the nearest).  Without an aorta mask (or with one farther away) the shape
   alone decides: the two ends farthest apart along the mask are the distal CHA
   and splenic ends, and the trunk is the side arm off the path between them whose
   tip lies laterally between those two ends (the trunk sits between its branches)
   and, of those, the most posterior (it leaves the aorta's front, while the
   gastroduodenal or left gastric arteries run forwards or upwards).  With no such
   arm, the most posterior voxels (smallest RAS y, one voxel deep).  "The most
   posterior voxels" alone would not do: the splenic artery usually reaches
   further back, towards the splenic hilum, than the trunk's origin.
2. **Geodesic distance** from the origin inside the connected piece of the mask
   that holds it (26-connected voxels; each step weighs its length in mm through
   the affine, so anisotropic and oblique grids are measured correctly; Dijkstra).
3. **Bifurcation.**  Walking out from the origin (to half the smallest voxel
   edge), the part of the mask beyond geodesic distance d is labelled into
   connected pieces; the trunk is the mask up to the first d where at least two
   pieces reach on ``BRANCH_MIN_MM`` (8 mm) or more beyond d.  Shorter pieces there are
   side twigs or segmentation bumps and stay with the trunk.
4. **Sides.**  Each branch runs to the side of its centroid's RAS x relative to
   the bifurcation point (the centroid of the trunk's far end): the branch running
   furthest to the right (+x) is the CHA, the one furthest to the left the
   splenic artery; any further long branch joins the side it runs to.  Sides are
   always world x through the affine, never an array index (the reference
   implementation compared array indices in RAS and swapped the two arteries).
5. Pieces of the mask not connected to the origin's piece (gaps in the
   segmentation) go to whichever part has the voxel nearest to them.

The three parts partition the input voxels exactly.  When the mask never splits
into two long branches (only a trunk, or a trunk with one branch), everything is
returned as the trunk and ``how`` says so: a single unbranched vessel cannot be
told apart from its trunk by shape alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from ..case import Crop

ORIGIN_GAP_MM = 10.0    # celiac-to-aorta distance up to which the origin is taken at the aorta
BRANCH_MIN_MM = 8.0     # a branch must reach this far (geodesic mm) beyond the bifurcation
PARTS = ("celiac_trunk", "common_hepatic_artery", "splenic_artery")
_FULL = np.ones((3, 3, 3), bool)


def _world(idx: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """RAS mm of voxel indices (N, 3)."""
    return idx @ affine[:3, :3].T + affine[:3, 3]


def _as_crop(box_mask: np.ndarray, offset) -> Crop:
    """Crop (tight bounding box) of a bool array placed at ``offset``."""
    crop = Crop.from_full(box_mask)
    if crop.is_empty:
        return crop
    return Crop(crop.mask, tuple(int(a + b) for a, b in zip(crop.offset, offset)))


def _origin_at_aorta(mask: np.ndarray, offset, aorta: Crop, spacing: np.ndarray):
    """Celiac voxels nearest the aorta (bool, celiac box) and that distance, or (None, inf)."""
    pad = np.ceil(ORIGIN_GAP_MM / spacing).astype(int) + 1
    # Only the overlap of both padded boxes can hold celiac voxels near the aorta.
    lo = np.maximum(np.asarray(offset) - pad, np.asarray(aorta.offset) - pad)
    hi = np.minimum(np.asarray(offset) + mask.shape + pad, np.asarray(aorta.offset) + aorta.shape + pad)
    if np.any(hi <= lo):
        return None, np.inf
    box = aorta.in_box(tuple(lo), tuple(hi - lo))
    if not box.any():
        return None, np.inf
    dist = ndimage.distance_transform_edt(~box, sampling=spacing)
    d = np.full(mask.shape, np.inf)
    clo, chi = np.maximum(lo, offset), np.minimum(hi, np.asarray(offset) + mask.shape)
    if np.any(chi <= clo):
        return None, np.inf
    dst = tuple(slice(a - o, b - o) for a, b, o in zip(clo, chi, offset))
    src = tuple(slice(a - o, b - o) for a, b, o in zip(clo, chi, lo))
    d[dst] = np.where(mask[dst], dist[src], np.inf)
    dmin = float(d.min())
    if dmin > ORIGIN_GAP_MM:
        return None, dmin
    return d <= dmin + spacing.max(), dmin


def _origin_without_aorta(mask: np.ndarray, offset, affine: np.ndarray, spacing: np.ndarray):
    """Origin voxels (bool) from the tree's shape alone, and how.

    The two ends farthest apart along the mask (E1, E2) are the distal CHA and
    splenic ends; every other arm hangs off the path between them.  The trunk is
    the arm whose tip lies laterally between E1 and E2 (the trunk sits between its
    branches) and, of those, the most posterior (it leaves the aorta's front; the
    gastroduodenal and left gastric arteries run forward or up).  Without such an
    arm, the most posterior voxels.
    """
    idx = np.argwhere(mask)
    world = _world(idx + np.asarray(offset), affine)
    start = np.zeros_like(mask)
    start[tuple(idx[np.argmin(world[:, 1])])] = True
    g0 = _geodesic(mask, start, affine)
    e1 = np.unravel_index(np.argmax(np.where(np.isfinite(g0), g0, -1)), mask.shape)
    one = np.zeros_like(mask)
    one[e1] = True
    g1 = _geodesic(mask, one, affine)
    e2 = np.unravel_index(np.argmax(np.where(np.isfinite(g1), g1, -1)), mask.shape)
    one[:] = False
    one[e2] = True
    g2 = _geodesic(mask, one, affine)
    height = (g1 + g2 - g1[e2]) / 2.0           # geodesic height above the E1-E2 path (mm)
    arms, n = ndimage.label(mask & (height > 0.5 * BRANCH_MIN_MM), _FULL)
    x1, x2 = sorted(float(_world(np.array([e]) + offset, affine)[0, 0]) for e in (e1, e2))
    best = None
    for k in range(1, n + 1):
        vox = np.argwhere(arms == k)
        h = height[tuple(vox.T)]
        tip = vox[h >= h.max() - spacing.max()]
        w = _world(tip + offset, affine)
        if x1 < w[:, 0].mean() < x2 and (best is None or w[:, 1].mean() < best[0]):
            best = (w[:, 1].mean(), tip)
    out = np.zeros_like(mask)
    if best is not None:
        out[tuple(best[1].T)] = True
        return out, "origin at the tip of the side arm between the two branches"
    sel = idx[world[:, 1] <= world[:, 1].min() + spacing.max()]
    out[tuple(sel.T)] = True
    return out, "origin at the most posterior voxels (no side arm found)"


def _geodesic(main: np.ndarray, sources: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Geodesic distance (mm) inside ``main`` from the ``sources`` voxels (inf where unreached)."""
    n = int(main.sum())
    label = np.full(main.shape, -1, np.int64)
    label[main] = np.arange(n)
    rows, cols, weights = [], [], []
    offsets = [o for o in np.ndindex(3, 3, 3) if o > (1, 1, 1)]  # 13 half-neighbourhood steps
    for o in offsets:
        step = np.asarray(o) - 1
        length = float(np.linalg.norm(affine[:3, :3] @ step))
        src = tuple(slice(max(0, -s), main.shape[a] - max(0, s)) for a, s in enumerate(step))
        dst = tuple(slice(max(0, s), main.shape[a] - max(0, -s)) for a, s in enumerate(step))
        both = main[src] & main[dst]
        rows.append(label[src][both])
        cols.append(label[dst][both])
        weights.append(np.full(int(both.sum()), length))
    graph = csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    dist = dijkstra(graph, directed=False, indices=label[sources], min_only=True)
    out = np.full(main.shape, np.inf)
    out[main] = dist
    return out


def _split_at(main: np.ndarray, geo: np.ndarray, d: float):
    """(labels, long labels) when >= 2 pieces beyond level d reach BRANCH_MIN_MM further, else None."""
    labels, n = ndimage.label(main & (geo > d), _FULL)
    if n < 2:
        return None
    reach = ndimage.maximum(geo, labels, index=np.arange(1, n + 1)) - d
    long = np.flatnonzero(reach >= BRANCH_MIN_MM) + 1
    return (labels, long) if len(long) >= 2 else None


def _find_split(main: np.ndarray, geo: np.ndarray, step: float):
    """First level d (to ``step``) where the mask beyond d holds two long branches: (d, labels, long)."""
    finite = np.isfinite(geo)
    top = float(geo[finite].max()) - BRANCH_MIN_MM if finite.any() else 0.0
    coarse = 4.0 * step
    d = 0.0
    while d < top:
        if _split_at(main, geo, d) is not None:
            # Refine within the last coarse step.
            f = max(0.0, d - coarse + step)
            while f < d:
                found = _split_at(main, geo, f)
                if found is not None:
                    return (f,) + found
                f += step
            return (d,) + _split_at(main, geo, d)
        d += coarse
    return None


def split_celiac(celiac: Crop, aorta: Crop | None, affine) -> dict[str, Any]:
    """Split a combined celiac mask into trunk, CHA and splenic artery (see the module docstring).

    Parameters
    ----------
    celiac : Crop
        The combined mask (``celiac_aa``).
    aorta : Crop or None
        The aorta mask on the same grid, if the case has one.
    affine : (4, 4) ndarray
        Voxel index of both crops' grid -> RAS mm (any orientation).

    Returns
    -------
    dict
        ``celiac_trunk``, ``common_hepatic_artery``, ``splenic_artery``: Crops (possibly
        empty) that partition the input's voxels; ``how``: a one-line account of the
        rule applied.
    """
    affine = np.asarray(affine, float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    empty = {name: Crop.empty() for name in PARTS}
    if celiac.is_empty or not celiac.mask.any():
        return {**empty, "how": "empty celiac mask"}
    mask, offset = celiac.mask, np.asarray(celiac.offset)

    pieces, n_pieces = ndimage.label(mask, _FULL)
    origin_all, dmin = (None, np.inf) if aorta is None or aorta.is_empty else \
        _origin_at_aorta(mask, offset, aorta, spacing)
    if origin_all is not None:
        origin_how = f"origin where it meets the aorta ({dmin:.1f} mm)"
        # The connected piece that holds the origin (most origin voxels).
        counts = np.bincount(pieces[origin_all], minlength=n_pieces + 1)
        counts[0] = 0
        main_label = int(np.argmax(counts))
        main = pieces == main_label
        origin = origin_all & main
    else:
        # No aorta (or none within ORIGIN_GAP_MM): the largest piece, shape alone.
        sizes = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
        sizes[0] = 0
        main_label = int(np.argmax(sizes))
        main = pieces == main_label
        origin, origin_how = _origin_without_aorta(main, offset, affine, spacing)
        origin_how += " (no aorta mask)" if aorta is None or aorta.is_empty else \
            f" (aorta farther than {ORIGIN_GAP_MM:.0f} mm)"

    geo = _geodesic(main, origin, affine)
    found = _find_split(main, geo, 0.5 * float(spacing.min()))
    part = np.zeros(mask.shape, np.int8)      # 0 outside, 1 trunk, 2 CHA, 3 splenic
    if found is None:
        part[main] = 1
        how = (f"{origin_how}; no bifurcation into two branches >= {BRANCH_MIN_MM:.0f} mm long: "
               "all taken as the celiac trunk")
    else:
        d, labels, long = found
        part[main] = 1
        front = main & (geo <= d) & (geo > d - max(1.0, float(spacing.max())))
        bif_x = float(_world(np.argwhere(front) + offset, affine)[:, 0].mean())
        side = np.array([_world(np.argwhere(labels == k) + offset, affine)[:, 0].mean() - bif_x for k in long])
        cha, spl = long[int(np.argmax(side))], long[int(np.argmin(side))]
        for k, s in zip(long, side):
            to_cha = k == cha or (k != spl and s > 0)
            part[labels == k] = 2 if to_cha else 3
        how = (f"{origin_how}; trunk to the bifurcation {d:.1f} mm along it; "
               f"branches by RAS x of their centroids: CHA {side.max():+.1f} mm (right), "
               f"splenic {side.min():+.1f} mm (left) of the bifurcation")

    # Pieces not connected to the origin's: to the part nearest to them.
    others = mask & ~main
    if others.any():
        owned = np.argwhere(part > 0)
        tree = cKDTree(_world(owned + offset, affine))
        for k in range(1, n_pieces + 1):
            if k == main_label:
                continue
            vox = np.argwhere(pieces == k)
            if len(vox) == 0:
                continue
            dist, j = tree.query(_world(vox + offset, affine))
            part[tuple(vox.T)] = part[tuple(owned[j[int(np.argmin(dist))]])]
        how += f"; {n_pieces - 1} detached piece(s) joined to the nearest part"

    out: dict[str, Any] = {name: _as_crop(part == code, offset) for code, name in enumerate(PARTS, start=1)}
    out["how"] = how  # beside the Crops: the rule applied, one line
    return out
