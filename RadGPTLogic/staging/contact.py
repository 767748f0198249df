"""Circumferential tumour-vessel contact in degrees, across the vessel's own axis.

The radiological quantity (NCCN, SAR-APA; Lu et al., AJR 1997) is the part of a
vessel's circumference in solid contact with tumour, read on a section
perpendicular to the vessel: **abutment** <= 180 degrees, **encasement** > 180.
The SMA, SMV, aorta and IVC run craniocaudally, the portal vein obliquely, the
common hepatic and splenic arteries almost transversely, so an axial slice is a
true cross-section only for some of them.  This module measures every vessel in
planes perpendicular to its own local centreline.

Frames and units: masks are :class:`~RadGPTLogic.case.Crop` objects in the
canonical voxel frame; ``affine`` maps canonical voxel indices to RAS mm.  All
geometry (centreline, tangents, rays, distances) is in RAS mm through the affine,
so anisotropic voxels (e.g. 0.7 x 0.7 x 2.5 mm) and oblique grids are handled.

**Vessel model** (:func:`prepare_vessel`; tumour-independent, once per vessel)

1. Euclidean distance map ``D`` of the vessel (mm).  Seeds are its ridge voxels
   (``D`` within half a voxel of its 3x3x3 maximum), the most central one per
   cubic cell of max(1 mm, radius / 4) (radius: that of a straight tube with the
   mask's volume and box diagonal).
2. Each seed is moved onto the axis twice: the vessel voxels within 2.5 local
   radii (``D`` at the seed; at most 30 mm) give the tangent (principal axis of
   their covariance), and the centroid of those of them within half a radius of
   the seed's perpendicular plane gives the centre (for a straight tube, exactly
   the axis point).  A sub-lattice of the voxels with spacing <= radius / 2 is
   used, which keeps these centroids unbiased and the cost per seed bounded.
3. Centres stand for the axis up to half a seed cell along their tangent, so
   sections are added every 1 mm in between; centres closer than 0.5 mm merge.
   Each centre ``c`` with normal ``t`` and local radius ``r`` = ``D(c)`` is a
   cross-section.

With ``near`` (the union of the pancreatic lesions) only sections within
``margin_mm`` of its bounding box (per axis) are kept; the distance map and the
neighbourhoods still see ``CONTEXT_MM`` (30 mm) beyond, and cells and
sub-lattices are tied to absolute coordinates, so every section kept is the one
the unrestricted model has and the contact reads the same.

**Contact rule** (:func:`contact_degrees`), per cross-section

* 180 rays (every ``RAY_STEP_DEG`` = 2 degrees) leave ``c`` in the plane
  perpendicular to ``t``, sampled every third of the smallest voxel edge.  A ray's
  **wall** is its first sample outside the vessel (nearest-voxel lookup).
* The tumour's surface is the 0.5 level of its trilinearly interpolated mask
  (half-way between tumour and non-tumour voxel centres, the convention of
  :mod:`RadGPTLogic.measure.contour`).
* A ray is in **solid contact** when the tumour is met between one step inside
  its wall and ``contact_mm`` beyond it, and fills at least half of the
  ``SOLID_MM`` (2 mm) of the ray that follow that first meeting point.  The
  second condition keeps rays that only graze a staircase corner of the tumour's
  edge (or a one-voxel sliver of mask) from counting: without it every arc reads
  about half a voxel too long at each end.  A tumour that overlaps the vessel
  mask is met at the wall, so it counts.
* ``CONTACT_MM`` = 1.5 mm is the distance rule for "no fat plane": masks that
  touch, or are separated by a seam of one unlabelled voxel (<= 1.5 mm; common
  between separately segmented structures), read contact; a 3 mm fat plane, i.e.
  >= 2 voxels on the 0.6-1 mm grids of pancreas CT, reads none.  Boundaries of
  voxel masks are only known to within a voxel, so a gap g is measured as
  g +- the voxel size along the ray and reads 0 only when g > ``contact_mm`` +
  that size: a 1 mm gap reads contact, a 2 mm gap little or none, a 3 mm gap 0 in
  the axial plane and on <= 1 mm slices; along a 2.5 mm slice axis a 3 mm gap
  cannot be resolved.
* **Guards** against sections that are not clean cross-sections (near a branch
  point or a vessel's end, rays escape along another lumen): a ray is valid only
  if its wall lies within ``RAY_CAP_RADII`` (2.5) local radii of ``c`` (2.5 and
  not 2 so that veins flattened 2:1 still pass); a section is used only when its
  centre lies inside the vessel and >= 90 % of its rays are valid.  Invalid rays
  never count.  Where a branch leaves obliquely, a plane of the trunk just past
  the junction cuts the branch's lumen within that cap: such a section can pick
  up part of a contact that lies on the branch within a few mm of the junction.
  The running median below and the branch's own sections (which see the whole
  contact) keep this from setting the result (Testing/test_contact.py).
* **Degrees** of a section: the wall points form a polygon; each valid ray owns
  the angle, seen from the polygon's area centroid, half-way to its valid
  neighbours, and the angles of the contact rays are summed (for a centred origin
  this is contact rays x 2 degrees; measuring around the centroid removes the
  error of an origin slightly off-centre: 0.5 mm off a 4 mm artery would move a
  180-degree contact by up to 14 degrees).  Separate contact arcs add up.  A
  section whose polygon is not star-shaped around its centroid (a crescent lumen)
  uses the share of its valid rays in contact x 360.
* Each section's value is the median over the sections within ``SMOOTH_MM``
  (2 mm, about five sections), so one section's voxel noise cannot set the
  result, and a contact must span a few millimetres of vessel to count in full;
  the result is the **maximum** of these over the clean sections within reach of
  the tumour (centre within 2.5 r + ``contact_mm`` + 1.5 voxel diagonals of a
  tumour surface voxel).

Walls do not depend on the tumour: they are cast for the sections a tumour
reaches and cached in the model, so a second lesion reuses them.

Accuracy (sector start angles swept every 15 degrees; Testing/test_contact.py
checks a subset): tubes of radius 3-5 mm wrapped by a sector shell on a 0.75 x 0.75 x 1 mm grid, vertical,
tilted 30 degrees and horizontal, read within 9 degrees of the true sector (mean
error +1 to +3); on a 0.8 x 0.8 x 2.5 mm grid vertical and tilted vessels within
8 degrees.  A vessel running horizontally on 2.5 mm slices is cut by sections that
contain the slice axis: each end of the arc is then only known to half a slice
(1.25 mm = 14 degrees at a 5 mm radius), and errors reach 15-18 degrees.  That
ambiguity is in the voxels, not in the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..case import Crop

CONTACT_MM = 1.5               # tumour within this distance beyond the wall = contact (mm)
SOLID_MM = 2.0                 # ... and filling half of this much ray beyond that point (mm)
RAY_STEP_DEG = 2.0             # angle between rays
RAY_CAP_RADII = 2.5            # a ray's wall must lie within this many local radii
MIN_VALID_FRACTION = 0.9       # share of valid rays a clean section needs
SMOOTH_MM = 2.0                # running median over the sections this close (mm)
NEIGHBOURHOOD_RADII = 2.5      # PCA neighbourhood radius, in local vessel radii
MAX_NEIGHBOURHOOD_MM = 30.0    # ... at most (aorta)
CONTEXT_MM = 30.0              # data kept beyond the modelled region (>= the above)
SEED_CELL_MM = 1.0             # smallest seed cell (mm)
SECTION_STEP_MM = 1.0          # spacing of sections along the axis (mm)
MERGE_MM = 0.5                 # refined centres closer than this are one section (mm)


@dataclass(eq=False)
class VesselModel:
    """Cross-sections of one vessel (see the module docstring).

    Attributes
    ----------
    centers : (N, 3) ndarray
        Section centres on the centreline, RAS mm.
    tangents : (N, 3) ndarray
        Unit vessel directions (section normals), RAS; the sign is arbitrary.
    radii : (N,) ndarray
        Local radius (mm): distance map of the vessel at the centre voxel.
    mask, offset :
        The vessel's voxels (bool, canonical frame) and the canonical index of
        ``mask[0, 0, 0]``; rays read them.
    affine : (4, 4) ndarray
        Canonical voxel index -> RAS mm.
    ray_step_deg : float
        Angle between neighbouring rays.
    """

    centers: np.ndarray
    tangents: np.ndarray
    radii: np.ndarray
    mask: np.ndarray = field(repr=False)
    offset: tuple
    affine: np.ndarray = field(repr=False)
    ray_step_deg: float = RAY_STEP_DEG
    # Per-section in-plane frame (u, v) and the cached ray walls (mm from the
    # centre; NaN = not cast yet, inf = no wall within the cap): set in __post_init__.
    _u: np.ndarray = field(init=False, repr=False)
    _v: np.ndarray = field(init=False, repr=False)
    _walls: np.ndarray = field(init=False, repr=False)
    _inside: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        n = len(self.centers)
        self._u, self._v = _plane_frames(self.tangents)
        n_rays = int(round(360.0 / self.ray_step_deg))
        self._walls = np.full((n, n_rays), np.nan, np.float32)
        self._inside = np.zeros(n, bool)

    @property
    def n_sections(self) -> int:
        return len(self.centers)

    @property
    def n_rays(self) -> int:
        return self._walls.shape[1]


@dataclass(frozen=True)
class ContactResult:
    """Result of :func:`contact_degrees`.

    ``degrees`` is the largest circumferential contact over the sections examined
    (0 when there is none); ``center_ras_mm`` and ``tangent`` give that section
    (None when no section had contact); ``n_sections`` counts the clean sections
    examined, ``n_rejected`` those within reach that failed the guards.
    """

    degrees: float
    center_ras_mm: tuple | None
    tangent: tuple | None
    n_sections: int
    n_rejected: int = 0


# ----------------------------------------------------------------------- helpers
def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)


def _plane_frames(t: np.ndarray):
    """Two unit vectors (u, v) spanning the plane perpendicular to each tangent."""
    t = np.asarray(t, float).reshape(-1, 3)
    # Cross with the coordinate axis least aligned with t: never degenerate.
    ref = np.eye(3)[np.argmin(np.abs(t), axis=1)]
    u = np.cross(t, ref)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(t, u)
    return u, v


def _lookup(mask: np.ndarray, offset, ijk: np.ndarray) -> np.ndarray:
    """Nearest-voxel value of ``mask`` at float canonical indices ``ijk`` (..., 3); False outside."""
    idx = np.rint(ijk).astype(np.intp)
    idx -= np.asarray(offset, np.intp)
    shape = np.asarray(mask.shape, np.intp)
    ok = np.all((idx >= 0) & (idx < shape), axis=-1)
    flat = np.ravel_multi_index(tuple(np.moveaxis(idx, -1, 0)), mask.shape, mode="clip")
    return mask.ravel()[flat] & ok


def _empty_model(crop: Crop, affine, ray_step_deg) -> VesselModel:
    z = np.zeros((0, 3))
    return VesselModel(z, z.copy(), np.zeros(0), crop.mask, tuple(crop.offset), np.asarray(affine, float),
                       ray_step_deg)


def _typical_radius(crop: Crop, spacing: np.ndarray) -> float:
    """Radius (mm) of a straight tube with the crop's volume and its box diagonal as length.

    Depends only on the whole crop (never on ``near``), so restricted and full models
    sub-sample their voxels identically.  Curved or branching vessels get a shorter
    radius than their true one, which only makes the sub-lattice finer.
    """
    volume = crop.count * float(np.prod(spacing))
    length = float(np.linalg.norm(np.asarray(crop.shape) * spacing))
    return float(np.sqrt(volume / (np.pi * max(length, 1e-6))))


# ------------------------------------------------------------------ the model
def prepare_vessel(crop: Crop, affine, near: Crop | None = None, margin_mm: float = 25.0,
                   ray_step_deg: float = RAY_STEP_DEG) -> VesselModel:
    """Centreline cross-sections of a vessel (tumour-independent; see the module docstring).

    Parameters
    ----------
    crop : Crop
        The vessel mask (canonical frame).
    affine : (4, 4) ndarray
        Canonical voxel index -> RAS mm.
    near : Crop, optional
        When given (the union of the lesions to stage), only sections within
        ``margin_mm`` (per axis) of its bounding box are modelled.  An empty ``near``
        gives an empty model.
    margin_mm : float
    ray_step_deg : float
        Angle between rays of a section (degrees).
    """
    affine = np.asarray(affine, float)
    spacing = _spacing(affine)
    if crop.is_empty or not crop.mask.any():
        return _empty_model(crop, affine, ray_step_deg)
    lo = np.asarray(crop.offset, int)
    hi = lo + np.asarray(crop.shape, int)
    rlo, rhi = lo, hi
    if near is not None:
        if near.is_empty:
            return _empty_model(crop, affine, ray_step_deg)
        margin_vox = np.ceil(margin_mm / spacing).astype(int)
        rlo = np.maximum(lo, np.asarray(near.offset) - margin_vox)
        rhi = np.minimum(hi, np.asarray(near.offset) + np.asarray(near.shape) + margin_vox)
        if np.any(rhi <= rlo):
            return _empty_model(crop, affine, ray_step_deg)
    # Work box: the region plus context, and one background voxel beyond the mask's
    # own box so the distance map sees its true ends (where the region cuts the
    # vessel the voxels beyond are real data, not background).
    pad = np.ceil(CONTEXT_MM / spacing).astype(int)
    wlo = np.maximum(lo - 1, rlo - pad)
    whi = np.minimum(hi + 1, rhi + pad)
    work = crop.in_box(tuple(wlo), tuple(whi - wlo))
    dist = ndimage.distance_transform_edt(work, sampling=spacing)

    # 1. Seeds: ridge voxels of the distance map inside the region, one per cell.
    ridge = work & (dist >= ndimage.maximum_filter(dist, size=3) - 0.5 * spacing.min())
    region = tuple(slice(a - w, b - w) for a, b, w in zip(rlo, rhi, wlo))
    sub = np.zeros_like(ridge)
    sub[region] = ridge[region]
    seed_idx = np.argwhere(sub) + wlo
    if len(seed_idx) == 0:
        return _empty_model(crop, affine, ray_step_deg)
    seed_d = dist[tuple((seed_idx - wlo).T)]
    seeds = seed_idx @ affine[:3, :3].T + affine[:3, 3]
    # Big vessels get bigger cells (fewer seeds); step 3 fills the axis in between.
    rv = _typical_radius(crop, spacing)
    cell = float(np.clip(rv / 4.0, SEED_CELL_MM, 3.0))
    keep = _thin(seeds, seed_d, cell)
    seeds, seed_d = seeds[keep], seed_d[keep]

    # 2. Refine onto the axis with local PCA of a sub-lattice of the vessel voxels.
    stride = np.maximum(1, np.floor(rv / (2.0 * spacing)).astype(int))
    # The lattice phase is tied to absolute indices: any work box gives the same points.
    phase = [(-w) % s for w, s in zip(wlo, stride)]
    lattice = work[phase[0]::stride[0], phase[1]::stride[1], phase[2]::stride[2]]
    cloud_idx = np.argwhere(lattice) * stride + np.asarray(phase) + wlo
    cloud = cloud_idx @ affine[:3, :3].T + affine[:3, 3]
    tree = cKDTree(cloud)
    inv = np.linalg.inv(affine)

    def radius_at(p):
        ijk = np.rint(p @ inv[:3, :3].T + inv[:3, 3]).astype(int) - wlo
        ijk = np.clip(ijk, 0, np.asarray(work.shape) - 1)
        return dist[tuple(ijk.T)]

    centers, radii = seeds, seed_d
    for it in range(2):
        if len(centers) == 0:  # every seed fell off the axis (tiny or broken mask)
            return _empty_model(crop, affine, ray_step_deg)
        reach = np.clip(NEIGHBOURHOOD_RADII * radii, 2.0 * spacing.max(), MAX_NEIGHBOURHOOD_MM)
        centers, tangents, good = _refine(tree, cloud, centers, reach, np.maximum(0.5 * radii, spacing.max()))
        radii = radius_at(centers)
        ok = good & (radii > 0)
        centers, tangents, radii = centers[ok], tangents[ok], radii[ok]
        if it == 0:
            # Seeds now sit on the axis: merge duplicates before the final pass.
            keep = _thin(centers, radii, MERGE_MM)
            centers, radii = centers[keep], radii[keep]
    # 3. Sections every SECTION_STEP_MM: each centre also stands for the axis up to
    # half a seed cell along its tangent.
    m = int(round((cell - SECTION_STEP_MM) / (2.0 * SECTION_STEP_MM)))
    if m > 0:
        steps = SECTION_STEP_MM * np.concatenate([np.arange(-m, 0), np.arange(1, m + 1)])
        extra = (centers[:, None, :] + steps[None, :, None] * tangents[:, None, :]).reshape(-1, 3)
        extra_r = radius_at(extra)
        good = extra_r > 0
        centers = np.concatenate([centers, extra[good]])
        tangents = np.concatenate([tangents, np.repeat(tangents, len(steps), axis=0)[good]])
        radii = np.concatenate([radii, extra_r[good]])
    # Keep only sections centred in the region (the context is for neighbourhoods),
    # then merge near-duplicates (most central first).
    cidx = np.rint(centers @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    keep = np.flatnonzero(np.all((cidx >= rlo) & (cidx < rhi), axis=1))
    keep = keep[_thin(centers[keep], radii[keep], MERGE_MM)]
    return VesselModel(centers[keep], tangents[keep], radii[keep], crop.mask, tuple(crop.offset), affine,
                       ray_step_deg)


def _thin(points: np.ndarray, score: np.ndarray, cell_mm: float) -> np.ndarray:
    """Indices keeping, per cubic cell of ``cell_mm``, the point with the highest score."""
    if len(points) == 0:
        return np.zeros(0, int)
    keys = np.floor(points / cell_mm).astype(np.int64)
    order = np.lexsort((-score, keys[:, 2], keys[:, 1], keys[:, 0]))
    k = keys[order]
    first = np.ones(len(k), bool)
    first[1:] = np.any(k[1:] != k[:-1], axis=1)
    return np.sort(order[first])


def _group_sums(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Column sums of consecutive row groups of sizes ``counts`` (empty groups sum to 0)."""
    out = np.zeros((len(counts), values.shape[1]))
    nz = counts > 0
    if nz.any():
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nz]
        out[nz] = np.add.reduceat(values, starts, axis=0)
    return out


def _refine(tree: cKDTree, cloud: np.ndarray, p: np.ndarray, reach: np.ndarray, half_slab: np.ndarray):
    """One step of axis refinement for points ``p`` (M, 3): new centres, tangents, validity.

    The tangent is the principal axis of the cloud points within ``reach`` of each
    point; the new centre is the centroid of those within ``half_slab`` of the plane
    through the point perpendicular to the tangent, moved back into that plane.
    """
    # All (point, cloud) pairs within the largest reach, as arrays (no Python lists).
    pairs = cKDTree(p).sparse_distance_matrix(tree, float(reach.max()), output_type="ndarray")
    pairs = pairs[pairs["v"] <= reach[pairs["i"]]]
    pairs = pairs[np.argsort(pairs["i"], kind="stable")]
    owner, idx = pairs["i"].astype(np.intp), pairs["j"].astype(np.intp)
    counts = np.bincount(owner, minlength=len(p))
    d = cloud[idx] - p[owner]
    n = np.maximum(counts, 1).astype(float)
    feats = np.concatenate([d, (d[:, :, None] * d[:, None, :]).reshape(-1, 9)], axis=1)
    sums = _group_sums(feats, counts)
    mean = sums[:, :3] / n[:, None]
    cov = sums[:, 3:].reshape(-1, 3, 3) / n[:, None, None] - mean[:, :, None] * mean[:, None, :]
    _, vecs = np.linalg.eigh(cov)
    t = vecs[:, :, 2]
    along = np.einsum("ij,ij->i", d, t[owner])
    slab = np.abs(along) <= half_slab[owner]
    ns = np.bincount(owner[slab], minlength=len(p)).astype(float)
    shift = _group_sums(d[slab], ns.astype(np.intp)) / np.maximum(ns, 1)[:, None]
    shift -= np.einsum("ij,ij->i", shift, t)[:, None] * t
    good = (counts >= 8) & (ns >= 3)
    return p + np.where(good[:, None], shift, 0.0), t, good


# -------------------------------------------------------------------- rays
def _ray_dirs(model: VesselModel, idx: np.ndarray) -> np.ndarray:
    """Unit ray directions (S, A, 3) in RAS of sections ``idx``."""
    ang = np.deg2rad(np.arange(model.n_rays) * model.ray_step_deg)
    return (np.cos(ang)[None, :, None] * model._u[idx][:, None, :]
            + np.sin(ang)[None, :, None] * model._v[idx][:, None, :])


def _cast_walls(model: VesselModel, idx: np.ndarray, delta: float, halfdiag: float) -> None:
    """Fill the wall cache of sections ``idx`` (distance in mm of each ray's first outside sample)."""
    if len(idx) == 0:
        return
    inv = np.linalg.inv(model.affine)
    lin = inv[:3, :3]
    c_ijk = model.centers[idx] @ lin.T + inv[:3, 3]
    d_ijk = _ray_dirs(model, idx) @ lin.T                    # (S, A, 3) index units per mm
    inside = _lookup(model.mask, model.offset, c_ijk)
    r = model.radii[idx]
    # Every sample nearer than D(c) - 2 half-diagonals is inside the vessel (the
    # distance map is measured between voxel centres and lookups round to the
    # nearest one), so marching starts there.
    s0 = np.maximum(r - 2.0 * halfdiag - delta, 0.0)
    cap = RAY_CAP_RADII * r + 2.0 * halfdiag
    S, A = d_ijk.shape[:2]
    walls = np.full((S, A), np.inf, np.float32)
    todo = np.ones((S, A), bool)
    chunk = max(8, int(np.ceil((4.0 * halfdiag + 1.0) / delta)))
    start = s0.copy()
    while True:
        si, ai = np.nonzero(todo & (start[:, None] <= cap[:, None]))
        if len(si) == 0:
            break
        s = start[si][:, None] + delta * np.arange(chunk)[None, :]          # (M, K)
        pts = c_ijk[si][:, None, :] + s[..., None] * d_ijk[si, ai][:, None, :]
        out = ~_lookup(model.mask, model.offset, pts)
        out &= s <= cap[si][:, None]
        hit = out.any(axis=1)
        first = np.argmax(out, axis=1)
        walls[si[hit], ai[hit]] = s[hit, first[hit]]
        todo[si[hit], ai[hit]] = False
        start = start + delta * chunk
    model._walls[idx] = walls
    model._inside[idx] = inside


def contact_degrees(vessel: VesselModel, tumour: Crop, affine, contact_mm: float = CONTACT_MM) -> ContactResult:
    """Largest circumferential contact (degrees) between ``tumour`` and the vessel.

    See the module docstring for the rule.  ``affine`` must be the grid of both
    masks (canonical voxel index -> RAS mm).
    """
    affine = np.asarray(affine, float)
    if not np.allclose(affine, vessel.affine, atol=1e-6):
        raise ValueError("contact_degrees: the tumour's affine differs from the vessel model's")
    if vessel.n_sections == 0 or tumour.is_empty or not tumour.mask.any():
        return ContactResult(0.0, None, None, 0)
    spacing = _spacing(affine)
    halfdiag = 0.5 * float(np.linalg.norm(spacing))
    delta = float(spacing.min()) / 3.0

    # Sections within reach of the tumour: distance from the centre to the nearest
    # tumour surface voxel (a KD-tree of the surface, in RAS mm).
    padded = np.pad(tumour.mask, 1)
    surface = padded & ~ndimage.binary_erosion(padded)
    surf_idx = np.argwhere(surface) - 1 + np.asarray(tumour.offset)
    surf = surf_idx @ affine[:3, :3].T + affine[:3, 3]
    # A ray reaches at most cap + 2 half-diagonals (wall) + contact_mm (tumour).
    limit = RAY_CAP_RADII * vessel.radii + contact_mm + 3.0 * halfdiag
    dist, _ = cKDTree(surf).query(vessel.centers, distance_upper_bound=float(limit.max()))
    idx = np.flatnonzero(dist <= limit)
    if len(idx) == 0:
        return ContactResult(0.0, None, None, 0)
    todo = idx[np.isnan(vessel._walls[idx, 0])]
    _cast_walls(vessel, todo, delta, halfdiag)
    walls = vessel._walls[idx].astype(float)                                # (S, A)
    valid = np.isfinite(walls)
    clean = vessel._inside[idx] & (valid.mean(axis=1) >= MIN_VALID_FRACTION)
    idx, walls, valid = idx[clean], walls[clean], valid[clean]
    n_rejected = int(np.count_nonzero(~clean))
    if len(idx) == 0:
        return ContactResult(0.0, None, None, 0, n_rejected)

    # Tumour samples from one step inside each wall to contact_mm + SOLID_MM beyond it.
    inv = np.linalg.inv(affine)
    c_ijk = vessel.centers[idx] @ inv[:3, :3].T + inv[:3, 3]
    dirs = _ray_dirs(vessel, idx)
    d_ijk = dirs @ inv[:3, :3].T
    n_band = int(np.floor(contact_mm / delta)) + 2          # samples -1 .. contact_mm
    n_solid = max(1, int(round(SOLID_MM / delta)))
    offs = delta * np.arange(-1, n_band - 1 + n_solid)
    w = np.where(valid, walls, 0.0)
    s = w[..., None] + offs                                                   # (S, A, J)
    pts = c_ijk[:, None, None, :] + s[..., None] * d_ijk[:, :, None, :]
    # Tumour present where its trilinearly interpolated mask is >= 0.5 (uint8 in,
    # float out; one voxel of zeros around the crop so its faces interpolate to 0).
    vol = np.pad(tumour.mask, 1).astype(np.uint8)
    q = (pts - (np.asarray(tumour.offset) - 1)).reshape(-1, 3).T
    val = ndimage.map_coordinates(vol, q, output=np.float32, order=1, mode="constant", cval=0.0,
                                  prefilter=False)
    hit = val.reshape(pts.shape[:-1]) >= 0.5                                   # (S, A, J)
    # Contact: tumour met within the band, and solid over >= half of SOLID_MM from there.
    first = np.argmax(hit, axis=2)
    found = hit[..., :n_band].any(axis=2)
    csum = np.concatenate([np.zeros(hit.shape[:2] + (1,), np.int32), np.cumsum(hit, axis=2, dtype=np.int32)], axis=2)
    end = np.minimum(first + n_solid, hit.shape[2])
    solid = (np.take_along_axis(csum, end[..., None], 2) - np.take_along_axis(csum, first[..., None], 2))[..., 0]
    touch = found & (solid >= 0.5 * n_solid) & valid                            # (S, A)

    degrees = _smooth_along(vessel.centers[idx], _section_degrees(vessel, idx, dirs, w, valid, touch))
    degrees = np.clip(degrees, 0.0, 360.0)
    best = int(np.argmax(degrees))
    if degrees[best] <= 0:
        return ContactResult(0.0, None, None, len(idx), n_rejected)
    k = idx[best]
    return ContactResult(float(degrees[best]), tuple(float(x) for x in vessel.centers[k]),
                         tuple(float(x) for x in vessel.tangents[k]), len(idx), n_rejected)


def _smooth_along(centers: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Median of each section's degrees with those of the sections within ``SMOOTH_MM``.

    Sections lie about 1 mm apart along the vessel, so this is a running median of
    about five sections: one section's voxel noise cannot set the maximum, and a
    contact must span a few millimetres of vessel to count in full.
    """
    if len(degrees) < 2 or not np.any(degrees > 0):
        return degrees
    out = degrees.copy()
    for start in range(0, len(degrees), 512):
        d2 = ((centers[start:start + 512, None, :] - centers[None, :, :]) ** 2).sum(-1)
        vals = np.where(d2 <= SMOOTH_MM ** 2, degrees[None, :], np.nan)
        out[start:start + 512] = np.nanmedian(vals, axis=1)
    return out


def _section_degrees(vessel: VesselModel, idx, dirs, walls, valid, touch) -> np.ndarray:
    """Contact angle (degrees) of each section, measured around its wall polygon's centroid.

    Each valid ray owns half the angle to its previous and next valid rays, seen
    from the centroid; invalid rays own none and never touch.  When the polygon is
    not star-shaped around its centroid (a crescent-shaped lumen, e.g. where a
    tumour mask has taken part of the vessel), angles around it are meaningless and
    the section falls back to the share of its valid rays that touch, x 360.
    """
    u, v = vessel._u[idx], vessel._v[idx]
    # Wall points in the section's own 2-D frame (mm), relative to the ray origin.
    x = walls * np.einsum("sak,sk->sa", dirs, u)
    y = walls * np.einsum("sak,sk->sa", dirs, v)
    out = np.zeros(len(idx))
    for n in np.flatnonzero(touch.any(axis=1)):
        ok = valid[n]
        px, py, hit = x[n, ok], y[n, ok], touch[n, ok]
        fallback = 360.0 * np.count_nonzero(hit) / len(hit)
        # Area centroid of the polygon (shoelace).
        qx, qy = np.roll(px, -1), np.roll(py, -1)
        cross = px * qy - qx * py
        area = cross.sum() / 2.0
        if abs(area) < 1e-9:
            out[n] = fallback
            continue
        gx = ((px + qx) * cross).sum() / (6.0 * area)
        gy = ((py + qy) * cross).sum() / (6.0 * area)
        phi = np.arctan2(py - gy, px - gx)
        # Signed turn to the next valid ray; the sign of the area orients the polygon.
        gap = np.sign(area) * (np.mod(np.roll(phi, -1) - phi + np.pi, 2.0 * np.pi) - np.pi)
        if np.any(gap < 0) or abs(gap.sum() - 2.0 * np.pi) > 1e-6:
            out[n] = fallback
            continue
        share = 0.5 * (gap + np.roll(gap, 1))
        out[n] = np.degrees(share[hit].sum())
    return out
