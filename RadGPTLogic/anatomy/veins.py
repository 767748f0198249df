"""The SMV / portal-vein trunk, and the SMV/PV split of a combined mask.

The pancreas is divided at the SMV/PV confluence (AJCC 8th), so the engine needs
the venous *trunk*: the vertical superior mesenteric vein (SMV) and the portal vein
(PV) it continues into behind the pancreatic neck, **without** the splenic vein
(SV), which runs to the patient's left behind the body and tail and would drag the
trunk's left border towards the spleen.  Cases bring that trunk in three shapes:

* separate ``superior_mesenteric_vein`` and/or ``portal_vein`` masks (AbdomenAtlas):
  they are united as given;
* the combined AbdomenAtlas ``veins`` mask (SMV + PV): used as is, and split into
  SMV and PV by :func:`split_veins` where the two are needed apart;
* TotalSegmentator's ``portal_vein_and_splenic_vein`` (PV + SV, often with the top
  of the SMV): the splenic vein is removed by :func:`isolate_trunk` first.

Frames and units: masks are :class:`~RadGPTLogic.case.Crop` in the canonical frame
(array axes -> R, A, S); every position is a voxel *centre* mapped through the
case affine to RAS world millimetres (``x`` grows towards the patient's right,
``y`` anterior, ``z`` superior), so anisotropic or oblique grids and any storage
orientation give the same result.  "Slice" always means a canonical axial slice
(index ``k`` along array axis 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..case import Case, Crop

# 26-connectivity in 3-D (the engine's convention for components) and its
# in-plane part (8-connectivity within one axial slice).
_FULL = np.ones((3, 3, 3), bool)
_SLICE_MAJOR = np.zeros((3, 3, 3), bool)  # in-plane neighbours of an array ordered (k, i, j)
_SLICE_MAJOR[1] = True

# A splenic vein joining the followed portal vein widens it to the left by its
# whole course (5-12 cm); the portal vein itself drifts left by at most its
# obliquity x slice thickness per slice (about 9 mm at 5 mm slices and 60 degrees).
SPLENIC_JUMP_MM = 15.0
# How far below the junction level the junction itself may reach (about one
# splenic-vein diameter).
JUNCTION_DEPTH_MM = 10.0
# The shortest vessel segment (craniocaudal mm) taken as a real SMV or PV segment.
MIN_SEGMENT_MM = 10.0
# Centreline slope (horizontal mm per craniocaudal mm) up to which a vein segment
# counts as vertical (about 31 degrees from the body axis).
VERTICAL_SLOPE = 0.6
# In-plane distance (mm; at least one voxel) within which a combined mask's
# voxels beside a given SMV or PV mask count as that vessel's rim (two models'
# borders differ by a voxel or two), not as the other vessel.
RIM_MM = 2.0


# =============================================================================
# Geometry helpers (shared with :mod:`.pancreas`)
# =============================================================================


def present(case: Case, name: str) -> Crop | None:
    """The case's crop of ``name``, or None when the mask is absent or empty."""
    crop = case.crop(name)
    return crop if crop is not None and not crop.is_empty else None


def voxel_world(affine: np.ndarray, offset, idx, rows=(0, 1, 2)) -> np.ndarray:
    """World RAS mm of crop voxel indices ``idx`` (a tuple of 3 arrays, as from
    ``np.nonzero``) of a crop at canonical ``offset``: an (N, len(rows)) array of
    the world coordinates ``rows`` (0: x, 1: y, 2: z)."""
    a = np.asarray(affine, float)
    out = np.empty((len(idx[0]), len(rows)))
    for col, r in enumerate(rows):
        # Plain scaled sums: no BLAS call (which can stall on busy machines) and
        # no (N, 3) float index copy.
        acc = out[:, col]
        acc[:] = a[r, 3] + sum(a[r, ax] * o for ax, o in enumerate(offset))
        for ax in range(3):
            if a[r, ax] != 0.0:
                acc += a[r, ax] * np.asarray(idx[ax])
    return out


def world_axis(affine: np.ndarray, offset, shape, row: int) -> np.ndarray:
    """World coordinate ``row`` (0: x, 1: y, 2: z; mm) of every voxel centre of a box,
    as a dense float array of ``shape`` (for masked reductions over small crops)."""
    a = np.asarray(affine, float)[row]
    i = (np.arange(shape[0]) + offset[0]) * a[0]
    j = (np.arange(shape[1]) + offset[1]) * a[1]
    k = (np.arange(shape[2]) + offset[2]) * a[2]
    return i[:, None, None] + j[None, :, None] + k[None, None, :] + a[3]


def slice_z_mm(affine: np.ndarray) -> float:
    """Craniocaudal distance (mm) between consecutive canonical axial slices."""
    return float(abs(np.asarray(affine, float)[2, 2])) or float(np.linalg.norm(np.asarray(affine)[:3, 2]))


def occupied_slices(crop: Crop) -> np.ndarray:
    """Canonical axial indices ``k`` of the slices holding at least one voxel (sorted)."""
    if crop is None or crop.is_empty:
        return np.zeros(0, int)
    return np.flatnonzero(crop.mask.any(axis=(0, 1))) + int(crop.offset[2])


@dataclass(frozen=True)
class SliceProfile:
    """Per-slice summary of a mask, in world mm.

    Arrays run over the slices that hold voxels, in increasing ``k`` (canonical
    axial index); ``x_min``/``x_max`` are the left (patient's left = smaller x)
    and right borders, ``*_mean`` the centroid of the slice's voxel centres.
    """

    k: np.ndarray
    count: np.ndarray
    x_min: np.ndarray
    x_max: np.ndarray
    x_mean: np.ndarray
    y_mean: np.ndarray
    z_mean: np.ndarray

    @property
    def empty(self) -> bool:
        return self.k.size == 0

    def at(self, name: str, k) -> np.ndarray:
        """Values of field ``name`` at slices ``k`` (array), each taken from the
        nearest profiled slice (ties: the upper one)."""
        values = getattr(self, name)
        k = np.asarray(k)
        pos = np.searchsorted(self.k, k)
        lo = np.clip(pos - 1, 0, self.k.size - 1)
        hi = np.clip(pos, 0, self.k.size - 1)
        take_hi = np.abs(self.k[hi] - k) <= np.abs(self.k[lo] - k)
        return values[np.where(take_hi, hi, lo)]


def slice_profile(crop: Crop, affine: np.ndarray, k_range=None) -> SliceProfile:
    """:class:`SliceProfile` of ``crop``, optionally only over canonical slices
    ``k_range = (k_first, k_last)`` (inclusive)."""
    empty = np.zeros(0)
    if crop is None or crop.is_empty:
        return SliceProfile(np.zeros(0, int), empty, empty, empty, empty, empty, empty)
    mask, k0 = crop.mask, int(crop.offset[2])
    lo, hi = 0, mask.shape[2]
    if k_range is not None:
        lo = max(lo, int(k_range[0]) - k0)
        hi = min(hi, int(k_range[1]) - k0 + 1)
    if hi <= lo:
        return SliceProfile(np.zeros(0, int), empty, empty, empty, empty, empty, empty)
    idx = np.nonzero(mask[:, :, lo:hi])
    if idx[0].size == 0:
        return SliceProfile(np.zeros(0, int), empty, empty, empty, empty, empty, empty)
    offset = (crop.offset[0], crop.offset[1], k0 + lo)
    w = voxel_world(affine, offset, idx)
    kk = idx[2]
    n = hi - lo
    count = np.bincount(kk, minlength=n).astype(float)
    x_min = np.full(n, np.inf)
    x_max = np.full(n, -np.inf)
    np.minimum.at(x_min, kk, w[:, 0])
    np.maximum.at(x_max, kk, w[:, 0])
    has = count > 0
    means = [np.bincount(kk, weights=w[:, a], minlength=n)[has] / count[has] for a in range(3)]
    return SliceProfile(
        k=np.flatnonzero(has) + k0 + lo, count=count[has], x_min=x_min[has], x_max=x_max[has],
        x_mean=means[0], y_mean=means[1], z_mean=means[2],
    )


def union(crops) -> Crop:
    """Voxel union of several crops (None and empty ones skipped)."""
    crops = [c for c in crops if c is not None and not c.is_empty]
    if not crops:
        return Crop.empty()
    if len(crops) == 1:
        return crops[0]
    lo = np.min([c.offset for c in crops], axis=0)
    hi = np.max([np.add(c.offset, c.shape) for c in crops], axis=0)
    shape = tuple(int(v) for v in hi - lo)
    box = np.zeros(shape, bool)
    for c in crops:
        box |= c.in_box(tuple(lo), shape)
    return _tight(box, tuple(int(v) for v in lo))


def slice_centre_z(affine: np.ndarray, crop: Crop, k: int) -> float:
    """World z (mm) of canonical slice ``k`` at the centre of ``crop``'s in-plane box."""
    centre = ([crop.offset[0] + (crop.shape[0] - 1) / 2.0], [crop.offset[1] + (crop.shape[1] - 1) / 2.0], [k])
    return float(voxel_world(affine, (0, 0, 0), centre)[0, 2])


def _tight(box: np.ndarray, offset) -> Crop:
    """Crop of a bool array over a box at ``offset``, shrunk to its bounding box."""
    sub = Crop.from_full(box)
    if sub.is_empty:
        return sub
    return Crop(sub.mask, tuple(int(a + b) for a, b in zip(sub.offset, offset)))


# =============================================================================
# SMV / PV split of a combined mask
# =============================================================================


@dataclass(frozen=True)
class _Hinge:
    """Two-segment centreline: ``c(z) = H + b (z - z_h)`` below ``z_h`` (the SMV),
    ``H + d (z - z_h)`` above (the PV); ``c`` is the (x, y) centroid, mm; ``k`` the
    canonical axial slice of the hinge."""

    z_h: float
    k: int
    H: np.ndarray
    b: np.ndarray
    d: np.ndarray
    valid: bool


def _fit_hinge(prof: SliceProfile) -> _Hinge | None:
    """Best two-segment continuous fit of the per-slice centroids against z.

    Every profiled slice that leaves at least :data:`MIN_SEGMENT_MM` (and two
    slices) on each side is tried as the hinge; the least-squares fit with the
    smallest residual wins.  It is ``valid`` (an SMV below and a PV above) when the
    lower segment is vertical (slope <= :data:`VERTICAL_SLOPE`), the upper one is
    clearly more oblique (by 0.3 or more) and the hinge at least halves the
    residual of a single straight line.  None without any candidate.
    """
    n = prof.k.size
    if n < 5:
        return None
    z = prof.z_mean
    c = np.stack([prof.x_mean, prof.y_mean], axis=1)
    zc = z - z.mean()
    slope_line = (zc @ (c - c.mean(axis=0))) / max(float(zc @ zc), 1e-12)
    sse_line = float(((c - c.mean(axis=0) - zc[:, None] * slope_line) ** 2).sum())
    cand = np.arange(2, n - 2)
    cand = cand[(z[cand] - z[0] >= MIN_SEGMENT_MM) & (z[-1] - z[cand] >= MIN_SEGMENT_MM)]
    if cand.size == 0:
        return None
    # All candidate fits at once through their normal equations (3 x 3 each).
    dz = z[None, :] - z[cand][:, None]
    X = np.stack([np.ones_like(dz), np.minimum(dz, 0.0), np.maximum(dz, 0.0)], axis=2)
    XtX = np.matmul(X.transpose(0, 2, 1), X)
    Xtc = np.matmul(X.transpose(0, 2, 1), c[None])
    try:
        coef = np.linalg.solve(XtX, Xtc)
    except np.linalg.LinAlgError:
        coef = np.stack([np.linalg.lstsq(x, c, rcond=None)[0] for x in X])
    sse = ((np.matmul(X, coef) - c[None]) ** 2).sum(axis=(1, 2))
    best = int(np.argmin(sse))
    h, coef = int(cand[best]), coef[best]
    b, d = coef[1], coef[2]
    s_low, s_up = float(np.hypot(*b)), float(np.hypot(*d))
    valid = s_low <= VERTICAL_SLOPE and s_up >= s_low + 0.3 and float(sse[best]) <= 0.5 * sse_line
    return _Hinge(float(z[h]), int(prof.k[h]), coef[0], b, d, valid)


def _overall_vertical(prof: SliceProfile) -> bool:
    """Whether the straight line through the per-slice centroids is vertical
    (slope <= :data:`VERTICAL_SLOPE`)."""
    if prof.k.size < 2:
        return True
    zc = prof.z_mean - prof.z_mean.mean()
    c = np.stack([prof.x_mean, prof.y_mean], axis=1)
    slope = (zc @ (c - c.mean(axis=0))) / max(float(zc @ zc), 1e-12)
    return float(np.hypot(*slope)) <= VERTICAL_SLOPE


def confluence_level(trunk: Crop, affine: np.ndarray) -> tuple[int | None, str]:
    """Canonical axial slice of the SMV/PV confluence of a combined trunk mask, and the rule used.

    The hinge of :func:`split_veins` when its centreline turns from vertical to
    oblique; otherwise the top slice of a vertical trunk (an SMV alone) or the
    lowest slice of an oblique one (a portal vein alone).
    """
    if trunk is None or trunk.is_empty:
        return None, "no trunk"
    prof = slice_profile(trunk, affine)
    hinge = _fit_hinge(prof)
    if hinge is not None and hinge.valid:
        return hinge.k, "where the trunk's centreline turns from vertical (SMV) to oblique (PV)"
    if _overall_vertical(prof):
        return int(prof.k[-1]), "top slice of the (vertical) trunk"
    return int(prof.k[0]), "lowest slice of the (oblique) trunk"


def _ray_distance(p: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Distance (mm) of points ``p`` (N, 3) from the ray ``origin + t * direction``, t >= 0."""
    u = direction / np.linalg.norm(direction)
    rel = p - origin
    t = np.maximum(rel[:, 0] * u[0] + rel[:, 1] * u[1] + rel[:, 2] * u[2], 0.0)
    rel -= t[:, None] * u
    return np.sqrt((rel * rel).sum(axis=1))


def split_veins(veins: Crop, affine: np.ndarray) -> tuple[Crop, Crop]:
    """Split a combined SMV + PV mask into ``(smv, pv)``.

    Rule: the per-slice centroids (world mm) of the mask trace its centreline;
    a continuous two-segment line is fitted to them against z (see
    :func:`_fit_hinge`): the lower segment is the vertical SMV, the upper one the
    portal vein running obliquely up and to the right to the liver hilum, and the
    hinge between them is the confluence, where the centreline turns from
    vertical to oblique.  Each voxel goes to the nearer of the two rays leaving
    the hinge point (downwards along the SMV segment, upwards along the PV
    segment; 3-D point-to-ray distance), so the PV's lower wall beside the top of
    the SMV stays with the PV.

    Without a clear turn (fewer than five slices, a segment shorter than
    :data:`MIN_SEGMENT_MM`, no oblique upper part) the whole mask is the SMV when
    its overall course is vertical (slope <= :data:`VERTICAL_SLOPE`) and the PV
    otherwise, e.g. a trunk that holds only the portal vein.

    The two crops partition ``veins`` exactly (no overlap; their union is the input).
    """
    if veins is None or veins.is_empty:
        return Crop.empty(), Crop.empty()
    prof = slice_profile(veins, affine)
    hinge = _fit_hinge(prof)
    if hinge is None or not hinge.valid:
        return (veins, Crop.empty()) if _overall_vertical(prof) else (Crop.empty(), veins)
    idx = np.nonzero(veins.mask)
    p = voxel_world(affine, veins.offset, idx)
    origin = np.array([hinge.H[0], hinge.H[1], hinge.z_h])
    d_low = _ray_distance(p, origin, -np.array([hinge.b[0], hinge.b[1], 1.0]))
    d_up = _ray_distance(p, origin, np.array([hinge.d[0], hinge.d[1], 1.0]))
    # Ties (points equidistant, e.g. on the hinge) go by level.
    is_smv = (d_low < d_up) | ((d_low == d_up) & (p[:, 2] < hinge.z_h))
    smv = np.zeros(veins.shape, bool)
    smv[tuple(v[is_smv] for v in idx)] = True
    pv = veins.mask & ~smv
    return _tight(smv, veins.offset), _tight(pv, veins.offset)


# =============================================================================
# The trunk inside TotalSegmentator's portal_vein_and_splenic_vein
# =============================================================================


class _UnionFind:
    """Union-find over slice components; each root keeps the smallest world x of its members."""

    def __init__(self, low):
        self.parent = list(range(len(low)))
        self.low = [float(v) for v in low]

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.low[ra] = min(self.low[ra], self.low[rb])


@dataclass
class _SliceGraph:
    """2-D components of each axial slice of a mask and the links between them.

    ``lab`` (crop frame) labels the in-plane (8-connected) components, one slice each; label
    ``l`` lies in crop slice ``k[l]`` and spans world x from ``low[l]`` to
    ``high[l]`` with ``size[l]`` voxels.  ``links`` (L, 2) pairs a component of
    slice k with one of slice k - 1 that it touches (26-connectivity), sorted by
    k; together they give the mask's 26-connected components.
    """

    lab: np.ndarray
    n: int
    k: np.ndarray
    low: np.ndarray
    high: np.ndarray
    size: np.ndarray
    links: np.ndarray
    seed: int
    seed_voxel: tuple

    def roots(self, keep_link) -> _UnionFind:
        """Union-find after joining the links whose lower slice passes ``keep_link(k)``."""
        uf = _UnionFind(self.low)
        for a, b in self.links:
            if keep_link(int(self.k[b])):
                uf.join(int(a), int(b))
        return uf


def _slice_graph(mask: Crop, affine: np.ndarray) -> _SliceGraph:
    m = mask.mask
    ni, nj, _ = m.shape
    # Labelled slice-major (contiguous slices): about twice as fast as in place.
    m_t = np.ascontiguousarray(m.transpose(2, 0, 1))
    lab_t, n = ndimage.label(m_t, structure=_SLICE_MAJOR)
    lab = lab_t.transpose(1, 2, 0)
    kt, it, jt = np.nonzero(m_t)  # (a bool array is scanned faster than the labels)
    idx = (it, jt, kt)
    labs = lab_t[kt, it, jt]
    x = voxel_world(affine, mask.offset, idx, rows=(0,))[:, 0]
    low = np.full(n + 1, np.inf)
    high = np.full(n + 1, -np.inf)
    np.minimum.at(low, labs, x)
    np.maximum.at(high, labs, x)
    size = np.bincount(labs, minlength=n + 1)
    lab_k = np.zeros(n + 1, np.int64)
    lab_k[labs] = idx[2]
    seed_pos = int(np.argmax(x))
    # Links: each voxel of slice k >= 1 against its 3 x 3 neighbours in slice
    # k - 1.  Pairs are deduplicated through (slice, rank-in-slice) codes, which
    # needs no sort while slices hold few components.
    order = np.argsort(lab_k[1:], kind="stable") + 1
    starts = np.searchsorted(lab_k[order], lab_k[order], side="left")
    rank = np.zeros(n + 1, np.int64)
    rank[order] = np.arange(order.size) - starts
    width = int(rank.max()) + 1
    sel = idx[2] >= 1
    I, J, K, A = idx[0][sel], idx[1][sel], idx[2][sel] - 1, labs[sel]
    code_parts: list[np.ndarray] = []
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            ii, jj = I + di, J + dj
            ok = (ii >= 0) & (ii < ni) & (jj >= 0) & (jj < nj)
            below = lab_t[K[ok], ii[ok], jj[ok]]
            hit = below > 0
            a, b = A[ok][hit], below[hit]
            code_parts.append((lab_k[b] * width + rank[a]) * width + rank[b])
    codes: np.ndarray = np.concatenate(code_parts) if code_parts else np.zeros(0, np.int64)
    table_size = int(m.shape[2]) * width * width
    if table_size <= 8_000_000:
        table = np.zeros(table_size, bool)
        table[codes] = True
        codes = np.flatnonzero(table)
    else:
        codes = np.unique(codes)
    kb, rest = np.divmod(codes, width * width)
    ra, rb = np.divmod(rest, width)
    label_at = np.zeros((int(m.shape[2]), width), np.int64)
    label_at[lab_k[1:], rank[1:]] = np.arange(1, n + 1)
    links = np.stack([label_at[kb + 1, ra], label_at[kb, rb]], axis=1)
    return _SliceGraph(lab, n, lab_k, low, high, size, links, int(labs[seed_pos]),
                       tuple(int(v[seed_pos]) for v in idx))


def isolate_trunk(mask: Crop, affine: np.ndarray) -> tuple[Crop, dict]:
    """The SMV/PV trunk inside a portal-vein + splenic-vein mask.

    Rule (the splenic vein is the branch that joins the trunk from the patient's
    left at the confluence):

    1. **Follow the portal vein down.**  The mask's rightmost voxel lies in the
       portal vein at the liver hilum.  The axial slices are added from the top
       down; after each, the part of the mask above that level which is connected
       (26-connectivity) to the rightmost voxel is "the followed part".
    2. **Junction level** ``k_m``: the lowest slice at which the followed part
       suddenly reaches at least :data:`SPLENIC_JUMP_MM` further to the patient's
       left (smaller x) than one slice higher, either as a whole (the splenic
       vein, separate above this level, joins it) or within the slice itself (a
       splenic vein running in the slice's plane).  The portal vein alone drifts
       left far less per slice.
    3. **Left border at the confluence** ``x_cut``: the followed part's left
       border in the slice just above ``k_m`` (the portal vein leaving the
       confluence); when the mask goes on downwards as a vertical SMV (a piece at
       least :data:`MIN_SEGMENT_MM` tall below the junction zone, the
       :data:`JUNCTION_DEPTH_MM` under ``k_m``, overlapping the portal vein's
       left-right extent widened by :data:`SPLENIC_JUMP_MM` to the left), the
       SMV's left border at the top of that piece if it lies further left.
    4. **Trunk** = the followed part above ``k_m`` plus the mask voxels at and
       below ``k_m`` whose centre is not left of ``x_cut``, keeping what stays
       connected to the portal vein.  Everything else (the splenic vein to the
       left of the confluence, pieces above the junction not connected to the
       portal vein) is removed.

    Without such a junction (no splenic vein in the mask, or one that never
    widens the followed part abruptly) the trunk is the connected part of the
    mask holding the rightmost voxel.

    Returns ``(trunk, info)``; ``info`` is JSON-serialisable: ``rule`` (text),
    ``junction_k`` (canonical axial index or None), ``junction_z_mm``,
    ``cut_x_mm`` and ``smv_below`` (whether step 3 found a vertical SMV).
    """
    info: dict[str, Any] = {"junction_k": None, "junction_z_mm": None, "cut_x_mm": None, "smv_below": False}
    if mask is None or mask.is_empty:
        info["rule"] = "empty mask"
        return Crop.empty(), info
    m = mask.mask
    ni, nj, nk = m.shape
    g = _slice_graph(mask, affine)
    seed, seed_k = g.seed, int(g.k[g.seed])
    labels_by_k: dict[int, list[int]] = {}
    for lbl in range(1, g.n + 1):
        labels_by_k.setdefault(int(g.k[lbl]), []).append(lbl)
    links_by_k: dict[int, list[tuple[int, int]]] = {}
    for a, b in g.links:
        links_by_k.setdefault(int(g.k[b]), []).append((int(a), int(b)))

    # 1-2. The top-down sweep.
    uf = _UnionFind(g.low)
    prev_whole = prev_slice = None
    slice_low, slice_high = {}, {}
    jumps = []
    for k in range(nk - 1, -1, -1):
        for a, b in links_by_k.get(k, ()):
            uf.join(a, b)
        if k > seed_k:
            continue
        root = uf.find(seed)
        whole = uf.low[root]
        mine = [lbl for lbl in labels_by_k.get(k, ()) if uf.find(lbl) == root]
        here = min(g.low[lbl] for lbl in mine) if mine else None
        if here is not None:  # the followed part has voxels on this slice
            slice_low[k] = float(here)
            slice_high[k] = float(max(g.high[lbl] for lbl in mine))
        if (prev_whole is not None and whole < prev_whole - SPLENIC_JUMP_MM) or (
                here is not None and prev_slice is not None and here < prev_slice - SPLENIC_JUMP_MM):
            jumps.append(k)
        prev_whole = whole
        if here is not None:
            prev_slice = here

    if not jumps:
        uf = g.roots(lambda k: True)
        root = uf.find(seed)
        lut = np.array([False] + [uf.find(l) == root for l in range(1, g.n + 1)])
        info["rule"] = ("no splenic-vein junction found: the connected part holding the "
                        "portal vein (rightmost voxel) is the trunk")
        return _tight(lut[g.lab], mask.offset), info

    # 3. The trunk's left border at the confluence.
    k_m = min(jumps)
    above = [k for k in slice_low if k > k_m]
    k_above = min(above) if above else k_m
    x_pv = slice_low.get(k_above, float(g.low[seed]))
    x_right = slice_high.get(k_above, float(g.high[seed]))
    dz = slice_z_mm(affine)
    k_zone = k_m - int(np.floor(JUNCTION_DEPTH_MM / dz + 1e-9))
    x_cut = x_pv
    if k_zone >= 1:
        # Components of the mask below the junction zone; the SMV candidate is the
        # largest one reaching the zone's lower edge under the portal vein.
        uf_below = g.roots(lambda k: k < k_zone - 1)
        groups: dict[int, list[int]] = {}  # component root -> its labels below the zone
        for lbl in range(1, g.n + 1):
            if g.k[lbl] < k_zone:
                groups.setdefault(uf_below.find(lbl), []).append(lbl)
        best = None
        for members in groups.values():
            top = [l for l in members if g.k[l] == k_zone - 1]
            if not top:
                continue
            lo, hi = min(g.low[l] for l in top), max(g.high[l] for l in top)
            # (A nearly horizontal portal vein seen on thick slices starts well to
            # the right of the SMV below it: the SMV may lie up to one splenic
            # jump further left.)
            if hi < x_pv - SPLENIC_JUMP_MM or lo > x_right:
                continue
            total = int(sum(g.size[l] for l in members))
            height = (max(g.k[l] for l in members) - min(g.k[l] for l in members) + 1) * dz
            if best is None or total > best[0]:
                best = (total, height, float(lo))
        if best is not None and best[1] >= MIN_SEGMENT_MM:
            info["smv_below"] = True
            x_cut = min(x_cut, best[2])

    # 4. The trunk: the followed part above the junction, the mask right of the
    #    cut at and below it, kept where connected to the portal vein.
    uf_up = g.roots(lambda k: k > k_m)
    root = uf_up.find(seed)
    lut = np.array([False] + [g.k[l] > k_m and uf_up.find(l) == root for l in range(1, g.n + 1)])
    keep = lut[g.lab]
    xs_low = world_axis(affine, mask.offset, (ni, nj, k_m + 1), 0)
    keep[:, :, :k_m + 1] = m[:, :, :k_m + 1] & (xs_low >= x_cut - 1e-6)
    # Connectivity to the portal vein, labelled only over the kept voxels' box
    # (the splenic vein no longer widens it).
    box = Crop.from_full(keep)
    labels3d, _ = ndimage.label(box.mask, structure=_FULL)
    seed_in_box = tuple(v - o for v, o in zip(g.seed_voxel, box.offset))
    if keep[g.seed_voxel]:
        piece = labels3d == labels3d[seed_in_box]
    else:  # the rightmost voxel lies below the junction: keep the largest piece
        sizes = np.bincount(labels3d.ravel())
        sizes[0] = 0
        piece = labels3d == int(np.argmax(sizes))
    keep = np.zeros_like(m)
    keep[box.slices] = piece
    k_global = int(k_m + mask.offset[2])
    info.update({
        "junction_k": k_global,
        "junction_z_mm": slice_centre_z(affine, mask, k_global),
        "cut_x_mm": float(x_cut),
        "rule": ("splenic vein removed: voxels left of the trunk's left border at the confluence "
                 "at and below the junction, and parts above it not connected to the portal vein"),
    })
    return _tight(keep, mask.offset), info


# =============================================================================
# The missing half of an SMV / PV pair
# =============================================================================


def other_vein(trunk: Crop, given: Crop, given_is: str, affine: np.ndarray) -> tuple[Crop, dict]:
    """The vein missing from an SMV/PV pair, taken from a combined trunk mask.

    Rule (the SMV ends where it joins the portal vein, as for the confluence of
    :func:`find_venous_trunk`):

    * ``given_is == "SMV"``: the confluence is the given SMV's top axial slice
      ``k_c``; the **PV** is what the trunk holds besides the SMV and reaches
      above ``k_c``.
    * ``given_is == "PV"``: the confluence is the given PV's lowest axial slice
      ``k_c``; the **SMV** is what the trunk holds besides the PV and reaches
      below ``k_c``.

    In detail: the trunk minus the given mask, minus (on the given vein's side of
    the confluence) a rim within :data:`RIM_MM` in-plane of it, where two models'
    borders differ by a voxel or two; of that remainder, the 26-connected pieces
    that reach past ``k_c``.  The missing vein is not cut at ``k_c`` itself: a
    nearly horizontal portal vein's lower wall lies below the top of the SMV it
    leaves.  No centreline fit is needed, so a short or nearly horizontal portal
    vein (a few thick slices above the SMV) is found as reliably as a long
    oblique one.

    ``trunk`` and ``given`` are canonical crops (``trunk`` already without the
    splenic vein, see :func:`isolate_trunk`); ``affine`` maps canonical voxels to
    RAS mm.  Returns ``(crop, info)``: ``crop`` is empty when nothing of the
    trunk reaches past the confluence; ``info`` (JSON-serialisable) holds
    ``confluence_k`` (canonical axial index), ``extent_mm`` (craniocaudal extent
    of the result) and ``rule``.
    """
    if given_is not in ("SMV", "PV"):
        raise ValueError(f"given_is must be 'SMV' or 'PV', not {given_is!r}")
    info: dict[str, Any] = {"confluence_k": None, "extent_mm": 0.0}
    if trunk is None or trunk.is_empty or given is None or given.is_empty:
        info["rule"] = "no trunk or no given vein"
        return Crop.empty(), info
    k_given = occupied_slices(given)
    k_c = int(k_given[-1] if given_is == "SMV" else k_given[0])
    k_abs = np.arange(trunk.shape[2]) + int(trunk.offset[2])
    given_side = (k_abs < k_c) if given_is == "SMV" else (k_abs > k_c)
    beyond = (k_abs > k_c) if given_is == "SMV" else (k_abs < k_c)
    # The given mask and its in-plane rim (square, at least one voxel), over the
    # trunk's box padded so that given voxels just outside it still count.
    a = np.asarray(affine, float)
    r = [max(1, int(round(RIM_MM / max(float(np.linalg.norm(a[:3, ax])), 1e-6)))) for ax in (0, 1)]
    pad_off = (trunk.offset[0] - r[0], trunk.offset[1] - r[1], trunk.offset[2])
    pad_shape = (trunk.shape[0] + 2 * r[0], trunk.shape[1] + 2 * r[1], trunk.shape[2])
    near = given.in_box(pad_off, pad_shape)
    rim = ndimage.binary_dilation(near, structure=np.ones((2 * r[0] + 1, 2 * r[1] + 1, 1), bool))
    inner = (slice(r[0], r[0] + trunk.shape[0]), slice(r[1], r[1] + trunk.shape[1]), slice(None))
    rest = trunk.mask & ~near[inner]
    rest[:, :, given_side] &= ~rim[inner][:, :, given_side]
    labels, _ = ndimage.label(rest, structure=_FULL)
    reach = np.unique(labels[:, :, beyond])
    found = _tight(np.isin(labels, reach[reach > 0]), trunk.offset)
    if not found.is_empty:
        ks = occupied_slices(found)
        info["extent_mm"] = float((ks[-1] - ks[0] + 1) * slice_z_mm(affine))
    info["confluence_k"] = k_c
    if given_is == "SMV":
        info["rule"] = ("PV = trunk minus the SMV mask (and its rim below the SMV's top), "
                        "pieces reaching above the SMV's top slice")
    else:
        info["rule"] = ("SMV = trunk minus the PV mask (and its rim above the PV's lowest slice), "
                        "pieces reaching below the PV's lowest slice")
    return found, info


# =============================================================================
# The trunk of a case
# =============================================================================


@dataclass
class VenousTrunk:
    """The SMV/PV trunk of a case and where its confluence is.

    Attributes
    ----------
    crop : Crop or None
        SMV + PV without the splenic vein; None when the case has no vein mask.
    source : str
        Which masks and rule gave it (or, with ``crop`` None, why not).
    confluence_k : int or None
        Canonical axial index of the SMV/PV confluence (see :func:`find_venous_trunk`).
    landmarks : dict
        JSON-serialisable details (the confluence rule, the splenic-vein cut).
    """

    crop: Crop | None
    source: str
    confluence_k: int | None = None
    landmarks: dict = field(default_factory=dict)


def combined_trunk(case: Case, given: Crop | None = None) -> tuple[Crop | None, str, dict | None]:
    """The SMV/PV trunk held in a combined mask of ``case``, if any.

    ``veins`` (AbdomenAtlas SMV + PV) as is; else ``portal_vein_and_splenic_vein``
    (TotalSegmentator PV + splenic vein, often with the top of the SMV) with the
    splenic vein removed by :func:`isolate_trunk`.  ``given`` (an SMV or PV mask
    of the case) joins the combined mask for the isolation: a given SMV shows
    where the trunk comes up from below even when the combined mask holds no SMV,
    which places the splenic-vein cut at the SMV's left border.  Returns
    ``(crop, source, isolate_info)``: ``crop`` None when the case has neither mask
    (or no trunk was found), ``isolate_info`` the :func:`isolate_trunk` details or
    None.
    """
    veins = present(case, "veins")
    if veins is not None:
        return veins, "veins", None
    combined = present(case, "portal_vein_and_splenic_vein")
    if combined is None:
        return None, "no combined vein mask", None
    trunk, info = isolate_trunk(union([combined, given]), case.affine)
    if trunk.is_empty:
        return None, "portal_vein_and_splenic_vein: no trunk found", info
    if info["junction_k"] is not None:
        return trunk, "portal_vein_and_splenic_vein (splenic vein removed)", info
    return trunk, "portal_vein_and_splenic_vein (no splenic-vein junction found; whole connected mask)", info


def find_venous_trunk(case: Case) -> VenousTrunk:
    """The SMV/PV trunk of ``case`` (sources as in :func:`venous_trunk`) and its confluence level.

    The confluence level is, by source: the top slice of a given
    ``superior_mesenteric_vein`` (the SMV ends where it joins the portal vein);
    with only ``portal_vein``, its lowest slice; for ``veins``, the hinge of
    :func:`confluence_level` (where the centreline turns from vertical to
    oblique, the rule of :func:`split_veins`); for
    ``portal_vein_and_splenic_vein``, that hinge when the isolated trunk has a
    vertical SMV part, else the splenic-vein junction level of
    :func:`isolate_trunk`.
    """
    smv = present(case, "superior_mesenteric_vein")
    pv = present(case, "portal_vein")
    marks: dict[str, Any] = {}
    k_c: int | None
    given = smv if smv is not None else pv
    if given is not None:  # the SMV, the PV or both
        pieces = [smv, pv]
        source = "+".join(n for n, c in (("superior_mesenteric_vein", smv), ("portal_vein", pv)) if c is not None)
        if smv is None or pv is None:
            # One of the pair alone: the other can still come from a combined mask.
            trunk, how, info = combined_trunk(case, given)
            if info is not None:
                marks["portal_vein_and_splenic_vein"] = info
            if trunk is not None:
                given_is = "SMV" if smv is not None else "PV"
                extra, _ = other_vein(trunk, given, given_is, case.affine)
                if not extra.is_empty:
                    pieces.append(extra)
                    source += f"+{how}"
        trunk = union(pieces)
        if smv is not None:
            k_c, how = int(occupied_slices(smv)[-1]), "top slice of the SMV mask"
        else:  # the PV alone
            k_c, how = int(occupied_slices(given)[0]), "lowest slice of the portal vein mask"
    else:
        trunk, source, info = combined_trunk(case)
        if info is not None:
            marks["portal_vein_and_splenic_vein"] = info
        if trunk is None:
            if info is not None:
                return VenousTrunk(None, source, landmarks=marks)
            return VenousTrunk(None, "no SMV/PV mask (superior_mesenteric_vein, portal_vein, veins "
                                     "or portal_vein_and_splenic_vein)")
        if info is None:  # veins
            k_c, how = confluence_level(trunk, case.affine)
        else:
            hinge = _fit_hinge(slice_profile(trunk, case.affine))
            if hinge is not None and hinge.valid:
                k_c, how = hinge.k, "where the trunk's centreline turns from vertical (SMV) to oblique (PV)"
            elif info["junction_k"] is not None:
                k_c, how = int(info["junction_k"]), "splenic-vein junction level"
            else:
                k_c, how = confluence_level(trunk, case.affine)
    assert k_c is not None  # a non-empty trunk always has a confluence level
    marks["confluence"] = {"k": int(k_c), "rule": how}
    return VenousTrunk(trunk, source, int(k_c), marks)


def venous_trunk(case: Case) -> tuple[Crop | None, str]:
    """The SMV/PV trunk of ``case`` without the splenic vein, and how it was found.

    Sources, first match wins:

    1. ``superior_mesenteric_vein`` and/or ``portal_vein``: their union (with only
       one of them given, plus the other from ``veins`` or the trunk isolated from
       ``portal_vein_and_splenic_vein``, by :func:`other_vein`);
    2. ``veins`` (AbdomenAtlas SMV + PV): as is;
    3. ``portal_vein_and_splenic_vein`` (TotalSegmentator): the splenic vein is
       removed by :func:`isolate_trunk`.

    Returns ``(crop, source)``, or ``(None, reason)`` when the case has no such mask.
    """
    t = find_venous_trunk(case)
    return t.crop, t.source
