"""A synthetic abdominal CT with masks and analytic truth.

The phantom is a plausible abdomen built from simple solids (ellipsoids, tubes
along polylines, elliptic cylinders) whose sizes and places are known exactly, so
measured findings can be checked against truth.  It serves ``radgpt demo``, the
test-suite and the benchmarks.

Frames and units
----------------
All geometry is in world millimetres in the **RAS+** convention that nibabel
documents ("Coordinate systems and affines"; also ``nibabel.orientations``, whose
default axis labels are ``(('L', 'R'), ('P', 'A'), ('I', 'S'))``, i.e. each axis
runs *from* the first letter *to* the second): world ``x`` increases towards the
patient's **Right**, ``y`` towards Anterior, ``z`` towards Superior.  Hence the
liver, IVC and gallbladder lie at ``x > 0`` and the spleen and stomach at
``x < 0`` (DICOM's LPS has the opposite sign on x and y).  The body's midline is
``x = 0``; ``z = 0`` is about the level of L1 (pancreatic neck).

Arrays are returned in the canonical frame used by :mod:`RadGPTLogic.case`:
axis 0 -> R, axis 1 -> A, axis 2 -> S (what ``nibabel.as_closest_canonical``
gives), with a diagonal voxel -> RAS mm ``affine``.  :func:`reorient` and
:func:`write_case` store the same physical voxels in any other orientation.

Speed
-----
Every structure is evaluated only inside its own bounding box (a tube: inside
each segment's box), on broadcast 1-D coordinate vectors, so the full-size
512 x 512 x 300 phantom builds in seconds.  Masks are full-grid bool arrays
allocated with ``np.zeros`` and written only inside their boxes; on systems
that hand out zeroed pages lazily (Linux, macOS) the untouched parts cost no
memory, so the full-size phantom peaks at about 1 GB.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from . import vocabulary as vocab

__all__ = [
    "LesionSpec",
    "Phantom",
    "build_phantom",
    "default_lesions",
    "reorient",
    "reorient_array",
    "write_case",
    "couinaud_segment",
    "voxelise",
    "Ellipsoid",
    "Cone",
    "Tube",
    "SIMULATED_PHASES",
    "SIZES",
]

#: The contrast phases the synthetic CT can be made in (a subset of :data:`RadGPTLogic.rules.PHASES`).
SIMULATED_PHASES = ("non-contrast", "venous", "arterial")

# Field of view (mm) and voxel spacing (mm, along R, A, S) of the named sizes.
# "small" covers the same abdomen as "full", only coarser; both are centred on
# FOV_CENTER_MM.
SIZES = {
    "small": {"shape": (200, 160, 100), "spacing": (2.0, 2.0, 2.5)},
    "full": {"shape": (512, 512, 300), "spacing": (0.75, 0.75, 1.0)},
}
FOV_CENTER_MM = (0.0, 0.0, -10.0)


# =============================================================================
# Solids.  Each solid has ``bounds()`` -> (lo, hi) world mm and
# ``contains(x, y, z)`` on broadcast coordinate arrays; composites expose their
# primitive ``parts()`` so each part is evaluated only inside its own box.
# =============================================================================


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid with semi-axes (a, b, c) mm, c along S, turned in the axial plane.

    ``angle_deg`` turns the a-axis from +x (patient Right) towards +y (Anterior).
    """

    center: tuple
    semi_axes: tuple
    angle_deg: float = 0.0

    def bounds(self):
        a, b, c = self.semi_axes
        t = math.radians(self.angle_deg)
        hx = math.hypot(a * math.cos(t), b * math.sin(t))
        hy = math.hypot(a * math.sin(t), b * math.cos(t))
        half = np.array([hx, hy, c])
        return np.asarray(self.center, float) - half, np.asarray(self.center, float) + half

    def contains(self, x, y, z):
        a, b, c = self.semi_axes
        t = math.radians(self.angle_deg)
        cos_t, sin_t = np.float32(math.cos(t)), np.float32(math.sin(t))
        dx = x - np.float32(self.center[0])
        dy = y - np.float32(self.center[1])
        dz = z - np.float32(self.center[2])
        u = (dx * cos_t + dy * sin_t) / np.float32(a)  # 2-D (x, y) only: cheap
        v = (dy * cos_t - dx * sin_t) / np.float32(b)
        return (u * u + v * v) + (dz / np.float32(c)) ** 2 <= 1.0

    def parts(self):
        return (self,)


@dataclass(frozen=True)
class Cone:
    """Capsule around the segment p0-p1 whose radius goes linearly from r0 to r1 (mm).

    A point belongs when its distance to the segment is at most the radius at the
    closest point's position along the segment (a rounded cone, exact for r0 == r1).
    """

    p0: tuple
    p1: tuple
    r0: float
    r1: float

    def bounds(self):
        p = np.array([self.p0, self.p1], float)
        r = max(self.r0, self.r1)
        return p.min(0) - r, p.max(0) + r

    def contains(self, x, y, z):
        p0 = np.asarray(self.p0, np.float32)
        d = np.asarray(self.p1, np.float32) - p0
        wx, wy, wz = x - p0[0], y - p0[1], z - p0[2]
        length2 = float(d @ d)
        if length2 == 0.0:
            t = np.zeros(np.broadcast_shapes(wx.shape, wy.shape, wz.shape), np.float32)
        else:
            t = (wx * d[0] + wy * d[1] + wz * d[2]) * np.float32(1.0 / length2)
            np.clip(t, 0.0, 1.0, out=t)
        dist2 = (wx - t * d[0]) ** 2 + (wy - t * d[1]) ** 2 + (wz - t * d[2]) ** 2
        radius = np.float32(self.r0) + t * np.float32(self.r1 - self.r0)
        return dist2 <= radius * radius

    def parts(self):
        return (self,)


@dataclass(frozen=True)
class Tube:
    """Chain of :class:`Cone` segments along a polyline; radius given per vertex (mm)."""

    points: tuple
    radii: tuple

    def __post_init__(self):
        if len(self.points) != len(self.radii) or len(self.points) < 2:
            raise ValueError("a tube needs >= 2 points and one radius per point")

    def parts(self):
        return tuple(
            Cone(self.points[n], self.points[n + 1], self.radii[n], self.radii[n + 1])
            for n in range(len(self.points) - 1)
        )

    def bounds(self):
        return _union_bounds(self.parts())


@dataclass(frozen=True)
class Union:
    """Union of solids."""

    solids: tuple

    def parts(self):
        return tuple(p for s in self.solids for p in s.parts())

    def bounds(self):
        return _union_bounds(self.parts())


@dataclass(frozen=True)
class HalfSpace:
    """Points with ``normal . (p - point) >= 0`` (a clipping plane, mm)."""

    point: tuple
    normal: tuple

    def contains(self, x, y, z):
        n = np.asarray(self.normal, np.float32)
        p = np.asarray(self.point, np.float32)
        return (x - p[0]) * n[0] + (y - p[1]) * n[1] + (z - p[2]) * n[2] >= 0.0


@dataclass(frozen=True)
class AnyOf:
    """Points in at least one of several clipping regions (e.g. half-spaces)."""

    regions: tuple

    def contains(self, x, y, z):
        out = self.regions[0].contains(x, y, z)
        for region in self.regions[1:]:
            out = out | region.contains(x, y, z)
        return out


def _union_bounds(parts):
    lo, hi = zip(*(p.bounds() for p in parts))
    return np.min(lo, axis=0), np.max(hi, axis=0)


# =============================================================================
# The sampling grid (canonical RAS, axis-aligned).
# =============================================================================


@dataclass(frozen=True)
class _Grid:
    """Axis-aligned canonical grid: voxel (i, j, k) centre = origin + (i, j, k) * spacing (RAS mm)."""

    origin: tuple
    spacing: tuple
    shape: tuple

    @property
    def affine(self) -> np.ndarray:
        aff = np.diag([*map(float, self.spacing), 1.0])
        aff[:3, 3] = self.origin
        return aff

    def axis_mm(self, axis: int, sl: slice = slice(None)) -> np.ndarray:
        """World coordinates (float32 mm) of the voxel centres along ``axis`` within ``sl``."""
        idx = np.arange(self.shape[axis])[sl]
        return (self.origin[axis] + idx * self.spacing[axis]).astype(np.float32)

    def coords(self, box):
        """Broadcastable (x, y, z) coordinate arrays (mm) of the voxels in ``box``."""
        x = self.axis_mm(0, box[0])[:, None, None]
        y = self.axis_mm(1, box[1])[None, :, None]
        z = self.axis_mm(2, box[2])[None, None, :]
        return x, y, z

    def box(self, lo, hi):
        """Slices of the voxels whose centres lie in the world box [lo, hi], or None if empty."""
        out = []
        for a in range(3):
            first = math.ceil((lo[a] - self.origin[a]) / self.spacing[a] - 1e-9)
            last = math.floor((hi[a] - self.origin[a]) / self.spacing[a] + 1e-9)
            first, last = max(first, 0), min(last, self.shape[a] - 1)
            if last < first:
                return None
            out.append(slice(first, last + 1))
        return tuple(out)


def _intersect(box, sub):
    """``sub`` clipped to ``box`` as slices relative to ``box``, or None if disjoint."""
    if sub is None:
        return None, None
    rel, abs_ = [], []
    for b, s in zip(box, sub):
        lo, hi = max(b.start, s.start), min(b.stop, s.stop)
        if hi <= lo:
            return None, None
        rel.append(slice(lo - b.start, hi - b.start))
        abs_.append(slice(lo, hi))
    return tuple(rel), tuple(abs_)


def voxelise(solid, grid: _Grid, clip=()):
    """Voxel centres inside ``solid`` (and inside every ``clip`` half-space).

    Returns ``(box, mask)``: canonical slices of the solid's bounding box and a
    bool array over that box; ``(None, None)`` when the solid misses the grid.
    Each primitive part is evaluated only over its own box.
    """
    box = grid.box(*solid.bounds())
    if box is None:
        return None, None
    mask = np.zeros(tuple(s.stop - s.start for s in box), bool)
    for part in solid.parts():
        rel, sub = _intersect(box, grid.box(*part.bounds()))
        if rel is None:
            continue
        mask[rel] |= part.contains(*grid.coords(sub))
    if clip:
        x, y, z = grid.coords(box)
        for half in clip:
            mask &= half.contains(x, y, z)
    return box, mask


def _make_grid(size, spacing, shape, z_range_mm) -> _Grid:
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, not {size!r}")
    base_shape = np.array(SIZES[size]["shape"], float)
    base_spacing = np.array(SIZES[size]["spacing"], float)
    fov = base_shape * base_spacing  # mm covered by the named size
    if spacing is not None:
        spacing = np.broadcast_to(np.asarray(spacing, float), (3,)).copy()
    if shape is not None:
        shape = np.broadcast_to(np.asarray(shape, int), (3,)).copy()
    if spacing is None and shape is None:
        spacing, shape = base_spacing, base_shape.astype(int)
    elif shape is None:
        # Same field of view, other sampling: the world geometry does not move.
        shape = np.ceil(fov / spacing - 1e-9).astype(int)
    elif spacing is None:
        spacing = fov / shape
    if np.any(spacing <= 0) or np.any(shape < 1):
        raise ValueError(f"spacing must be > 0 and shape >= 1 (got {spacing}, {shape})")
    center = np.asarray(FOV_CENTER_MM, float)
    origin = center - (shape - 1) / 2.0 * spacing
    if z_range_mm is not None:
        zmin, zmax = map(float, z_range_mm)
        if not zmax > zmin:
            raise ValueError(f"z_range_mm must be (zmin, zmax) with zmax > zmin, got {z_range_mm}")
        # Keep the same lattice of slice positions (an exact crop or extension of
        # the uncropped phantom): slices whose centres lie within [zmin, zmax].
        k0 = math.ceil((zmin - origin[2]) / spacing[2] - 1e-9)
        k1 = math.floor((zmax - origin[2]) / spacing[2] + 1e-9)
        if k1 < k0:
            raise ValueError(f"z_range_mm {z_range_mm} holds no slice at spacing {spacing[2]} mm")
        origin[2] += k0 * spacing[2]
        shape[2] = k1 - k0 + 1
    return _Grid(tuple(map(float, origin)), tuple(map(float, spacing)), tuple(map(int, shape)))


# =============================================================================
# Anatomy (RAS mm).  Numbers are chosen to look like an average adult abdomen
# (AbdomenAtlas/AMOS cases: liver ~1.5 l, spleen ~200 ml, kidneys ~150 ml).
# =============================================================================

# Body cross-section (constant along z): outer skin ellipse, the inner edge of
# the abdominal wall muscles, and the cavity that organs are clipped to.
BODY_SEMI = (165.0, 118.0)
WALL_OUTER_SEMI = (152.0, 106.0)
CAVITY_SEMI = (141.0, 96.0)
VERTEBRA = ((0.0, -47.0), 20.0)             # vertebral body centre (x, y), radius
CANAL = ((0.0, -76.0), 8.0)                 # spinal canal (CSF)
NEURAL_ARCH = ((0.0, -76.0), 14.0)          # bony ring around the canal
SPINOUS = ((0.0, -88.0), (0.0, -104.0), 5.0)
PARASPINAL = (((-30.0, -86.0), (20.0, 16.0)), ((30.0, -86.0), (20.0, 16.0)))

IVC_XY = (25.0, -12.0)
AORTA_XY = (-15.0, -12.0)
AORTA_R = 11.0
SMV_XY = (3.0, 22.0)
SMV_R = 6.0
Z_PORTAL = 25.0                              # transverse portal plane (Couinaud)

# Couinaud sector boundaries: vertical planes through the IVC axis, given by
# their axial angle (degrees from +x = patient Right towards +y = Anterior):
# right hepatic vein, middle hepatic vein (Cantlie line, through the
# gallbladder fossa) and the umbilical fissure / left hepatic vein.
ANGLE_RHV = -5.0
ANGLE_MHV = 55.0
ANGLE_UF = 100.0
# Caudate lobe (S1): in front of and to the left of the IVC, behind the hilum.
CAUDATE = Ellipsoid((IVC_XY[0] - 19.0, IVC_XY[1] + 20.0, Z_PORTAL + 26.0), (22.0, 16.0, 30.0))
# S2/S3 split in the left lateral sector: an oblique plane, S2 above and behind.
S2_PLANE = HalfSpace((-40.0, 40.0, Z_PORTAL + 26.0), (0.0, -0.45, 1.0))

_LIVER = Union((
    Ellipsoid((70.0, -6.0, 34.0), (68.0, 80.0, 70.0)),         # right lobe
    Ellipsoid((10.0, 24.0, 40.0), (50.0, 50.0, 37.0), 20.0),   # medial part: S4 and caudate
    Ellipsoid((-35.0, 40.0, 54.0), (52.0, 34.0, 26.0), -10.0),  # left lateral lobe
))
_LIVER_CLIP = (
    # The inferior surface rises from right to left (the liver is a wedge).
    HalfSpace((90.0, 0.0, -40.0), (0.5, 0.0, 1.0)),
    # No liver behind and left of the IVC's front (the crus and aorta lie there).
    AnyOf((HalfSpace((0.0, IVC_XY[1] + 6.0, 0.0), (0.0, 1.0, 0.0)),
           HalfSpace((IVC_XY[0] - 8.0, 0.0, 0.0), (1.0, 0.0, 0.0)))),
    # Nor below the caudate in the midline: the lesser sac, where the celiac
    # trunk, its branches and the portal vein run outside the liver.
    AnyOf((HalfSpace((0.0, 0.0, 36.0), (0.0, 0.0, 1.0)),
           HalfSpace((0.0, 26.0, 0.0), (0.0, 1.0, 0.0)),
           HalfSpace((30.0, 0.0, 0.0), (1.0, 0.0, 0.0)))),
)

STRUCTURES = {
    # name: (solid, clipping half-spaces, tissue)
    "liver": (_LIVER, _LIVER_CLIP, "liver"),
    "stomach": (Tube(
        ((-62.0, -5.0, 80.0), (-72.0, 8.0, 60.0), (-62.0, 30.0, 42.0), (-35.0, 55.0, 22.0),
         (-8.0, 55.0, 12.0), (6.0, 48.0, 8.0)),
        (24.0, 29.0, 26.0, 19.0, 15.0, 11.0)), (), "stomach"),
    "spleen": (Ellipsoid((-100.0, -42.0, 52.0), (50.0, 22.0, 52.0), 125.0), (), "spleen"),
    "kidney_left": (Ellipsoid((-75.0, -46.0, -45.0), (27.0, 23.0, 55.0), -30.0), (), "kidney"),
    "kidney_right": (Ellipsoid((75.0, -46.0, -62.0), (27.0, 23.0, 55.0), 30.0), (), "kidney"),
    "duodenum": (Tube(
        ((6.0, 48.0, 8.0), (32.0, 30.0, 6.0), (56.0, 14.0, 0.0), (60.0, 10.0, -50.0),
         (48.0, 5.0, -68.0), (15.0, 3.0, -72.0), (-12.0, 3.0, -70.0), (-42.0, 6.0, -60.0),
         (-46.0, 14.0, -38.0)),
        (11.0, 12.0, 12.0, 12.0, 9.0, 7.0, 7.0, 9.0, 9.0)), (), "duodenum"),
    "pancreas": (Tube(
        ((30.0, 12.0, -55.0), (29.0, 16.0, -25.0), (14.0, 30.0, -6.0), (3.0, 38.0, 0.0),
         (-18.0, 32.0, 6.0), (-45.0, 21.0, 12.0), (-72.0, 6.0, 18.0), (-90.0, -9.0, 24.0)),
        (13.0, 16.0, 10.0, 9.0, 10.0, 10.0, 9.0, 7.0)), (), "pancreas"),
    "gall_bladder": (Ellipsoid((62.0, 46.0, -12.0), (15.0, 13.0, 32.0), 55.0), (), "gall_bladder"),
    # veins
    "postcava": (Tube(((IVC_XY[0], IVC_XY[1], 200.0), (IVC_XY[0], IVC_XY[1], -200.0)),
                      (11.0, 11.0)), (), "vein"),
    "superior_mesenteric_vein": (Tube(((SMV_XY[0], SMV_XY[1], -95.0), (SMV_XY[0], SMV_XY[1], -2.0)),
                                      (SMV_R - 1.0, SMV_R)), (), "vein"),
    "splenic_vein": (Tube(
        ((SMV_XY[0] - 2.0, SMV_XY[1] - 2.0, 1.0), (-20.0, 19.0, 6.0), (-45.0, 12.0, 12.0),
         (-72.0, -5.0, 20.0), (-88.0, -20.0, 28.0)),
        (5.0, 4.5, 4.5, 4.5, 4.0)), (), "vein"),
    "portal_vein": (Tube(
        ((SMV_XY[0], SMV_XY[1], -1.0), (22.0, 16.0, 12.0), (42.0, 10.0, Z_PORTAL + 2.0),
         (56.0, 8.0, Z_PORTAL + 6.0)),
        (7.0, 7.0, 6.5, 5.0)), (), "vein"),
    # arteries (branches first, so the aorta keeps its round section)
    "splenic_artery": (Tube(
        ((-14.0, 8.0, 24.0), (-38.0, 12.0, 28.0), (-62.0, 0.0, 32.0), (-82.0, -14.0, 36.0),
         (-92.0, -24.0, 38.0)),
        (3.0, 3.0, 3.0, 3.0, 2.5)), (), "artery"),
    "common_hepatic_artery": (Tube(
        ((-14.0, 8.0, 24.0), (0.0, 14.0, 28.0), (22.0, 14.0, 31.0), (40.0, 16.0, 34.0)),
        (3.0, 3.0, 3.0, 2.5)), (), "artery"),
    "celiac_trunk": (Tube(((AORTA_XY[0], AORTA_XY[1] + 8.0, 20.0), (-14.0, 8.0, 24.0)),
                          (4.0, 3.5)), (), "artery"),
    "superior_mesenteric_artery": (Tube(
        ((AORTA_XY[0], AORTA_XY[1] + 8.0, 6.0), (-14.0, 6.0, -2.0), (-12.0, 13.0, -18.0),
         (-10.0, 15.0, -95.0)),
        (4.5, 4.5, 4.0, 3.5)), (), "artery"),
    "aorta": (Tube(((AORTA_XY[0], AORTA_XY[1], 200.0), (AORTA_XY[0], AORTA_XY[1], -200.0)),
                   (AORTA_R, AORTA_R)), (), "artery"),
}
# Painting order = the order above: later structures take the voxels they share
# with earlier ones (vessels pass through organs; the gallbladder sits in its
# fossa in the liver; kidneys press into liver and spleen).
ORGANS = ("liver", "spleen", "kidney_left", "kidney_right", "pancreas", "gall_bladder",
          "stomach", "duodenum")
VESSELS = ("aorta", "postcava", "superior_mesenteric_artery", "superior_mesenteric_vein",
           "portal_vein", "splenic_vein", "celiac_trunk", "common_hepatic_artery", "splenic_artery")

# Psoas muscles: widen towards the pelvis; painted before the organs.
_PSOAS = (Tube(((-28.0, -40.0, 5.0), (-42.0, -38.0, -200.0)), (5.0, 24.0)),
          Tube(((28.0, -40.0, 5.0), (42.0, -38.0, -200.0)), (5.0, 24.0)))

# Pancreas parts by design: head right of the SMV's right border, neck in front
# of the SMV, body up to the aorta's left border, tail beyond it.
_PANCREAS_BORDERS = (SMV_XY[0] + SMV_R, SMV_XY[0] - SMV_R, AORTA_XY[0] - AORTA_R)

# Noise-free CT numbers (HU) by tissue and phase.
HU = {
    "non-contrast": dict(air=-1000, fat=-100, muscle=40, bone=400, csf=10, liver=60, spleen=50,
                         kidney=35, pancreas=45, artery=45, vein=45, gall_bladder=10,
                         stomach=20, duodenum=20),
    "venous": dict(air=-1000, fat=-100, muscle=60, bone=400, csf=10, liver=110, spleen=120,
                   kidney=180, pancreas=100, artery=160, vein=160, gall_bladder=10,
                   stomach=20, duodenum=20),
    "arterial": dict(air=-1000, fat=-100, muscle=55, bone=400, csf=10, liver=75, spleen=110,
                     kidney=200, pancreas=120, artery=300, vein=110, gall_bladder=10,
                     stomach=20, duodenum=20),
}
# Lesion HU by (organ, kind) and phase, used when a LesionSpec gives no HU.
LESION_HU = {
    "non-contrast": {("liver", "lesion"): 20, ("liver", "tumor"): 25, ("liver", "cyst"): 5,
                     ("pancreas", "lesion"): 30, ("pancreas", "tumor"): 30, ("pancreas", "pdac"): 30,
                     ("pancreas", "pnet"): 45, ("pancreas", "cyst"): 5,
                     ("kidney", "lesion"): 25, ("kidney", "tumor"): 30, ("kidney", "cyst"): 5},
    "venous": {("liver", "lesion"): 60, ("liver", "tumor"): 70, ("liver", "cyst"): 8,
               ("pancreas", "lesion"): 55, ("pancreas", "tumor"): 55, ("pancreas", "pdac"): 55,
               ("pancreas", "pnet"): 150, ("pancreas", "cyst"): 8,
               ("kidney", "lesion"): 90, ("kidney", "tumor"): 100, ("kidney", "cyst"): 8},
    "arterial": {("liver", "lesion"): 50, ("liver", "tumor"): 110, ("liver", "cyst"): 8,
                 ("pancreas", "lesion"): 60, ("pancreas", "tumor"): 60, ("pancreas", "pdac"): 60,
                 ("pancreas", "pnet"): 180, ("pancreas", "cyst"): 8,
                 ("kidney", "lesion"): 110, ("kidney", "tumor"): 130, ("kidney", "cyst"): 8},
}

# Label codes of the internal label map.
_TISSUE_CODE = {"air": 0, "fat": 1, "muscle": 2, "bone": 3, "csf": 4}
_STRUCT_CODE = {name: 10 + n for n, name in enumerate(STRUCTURES)}
_LESION_CODE0 = 100
_MAX_LESIONS = 255 - _LESION_CODE0


# =============================================================================
# Lesions
# =============================================================================


@dataclass(frozen=True)
class LesionSpec:
    """One ellipsoidal lesion, in RAS mm.

    Attributes
    ----------
    mask : str
        Canonical lesion mask name (``liver_lesion``, ``liver_cyst``, ``pancreatic_pdac``,
        ``kidney_lesion``, ``kidney_cyst`` ...; see ``vocabulary.LESIONS``).  Several
        lesions may share a mask (one connected component each).
    center : (3,) float
        Centre, RAS mm.
    semi_axes : (3,) float
        (a, b, c) mm; a and b lie in the axial plane, c along S.  The largest axial
        section passes through the centre, so the WHO longest diameter is
        ``2 * max(a, b)`` and the perpendicular one ``2 * min(a, b)``.
    angle_deg : float
        Turn of the a-axis in the axial plane, from +x (Right) towards +y (Anterior).
    hu : float or None
        Noise-free CT number; None takes the phase default for the organ and kind
        (:data:`LESION_HU`).
    """

    mask: str
    center: tuple
    semi_axes: tuple
    angle_deg: float = 0.0
    hu: float | None = None

    def __post_init__(self):
        if self.mask not in vocab.LESION_ORGAN_KIND:
            raise ValueError(f"unknown lesion mask {self.mask!r}; expected one of {vocab.LESIONS}")
        if len(self.center) != 3 or len(self.semi_axes) != 3 or min(self.semi_axes) <= 0:
            raise ValueError(f"{self.mask}: center needs 3 values and semi_axes 3 positive values")

    @property
    def organ(self) -> str:
        """``liver``, ``pancreas`` or ``kidney``."""
        return vocab.LESION_ORGAN_KIND[self.mask][0]

    @property
    def kind(self) -> str:
        """``lesion``, ``tumor``, ``cyst``, ``pdac`` or ``pnet``."""
        return vocab.LESION_ORGAN_KIND[self.mask][1]

    @property
    def side(self) -> str | None:
        """``left``/``right`` for kidney lesions (RAS: x < 0 is the patient's left), else None."""
        if self.organ != "kidney":
            return None
        return "right" if self.center[0] > 0 else "left"

    @property
    def organ_mask(self) -> str:
        """The organ mask that holds this lesion's voxels."""
        return f"kidney_{self.side}" if self.organ == "kidney" else self.organ

    def solid(self) -> Ellipsoid:
        return Ellipsoid(tuple(map(float, self.center)), tuple(map(float, self.semi_axes)),
                         float(self.angle_deg))


def default_lesions() -> list:
    """The five default lesions (all >= 10 mm, each well inside its organ).

    - ``liver_lesion`` 30 x 20 mm straddling S8/S7 (right lobe, above the portal plane);
    - ``liver_lesion`` 16 x 14 mm in S4 (a second component of the same mask);
    - ``pancreatic_pdac`` 26 x 22 mm in the pancreatic head;
    - ``kidney_lesion`` 20 x 18 mm, interpolar, left kidney;
    - ``kidney_cyst`` 20 mm, upper pole, right kidney.
    """
    return [
        LesionSpec("liver_lesion", (87.0, -14.0, 58.0), (15.0, 10.0, 12.0), 30.0),
        LesionSpec("liver_lesion", (30.0, 62.0, 38.0), (8.0, 7.0, 7.5), 10.0),
        LesionSpec("pancreatic_pdac", (30.0, 17.0, -30.0), (13.0, 11.0, 12.0), 60.0),
        LesionSpec("kidney_lesion", (-80.0, -44.0, -45.0), (10.0, 9.0, 10.0), 60.0),
        LesionSpec("kidney_cyst", (78.0, -46.0, -30.0), (10.0, 10.0, 10.0), 0.0),
    ]


# =============================================================================
# The phantom
# =============================================================================


def staging_lesions() -> list:
    """The default lesions with the pancreatic PDAC replaced by one that reaches the vessels.

    A 24 x 20 x 38 mm PDAC in the pancreatic head/neck region that wraps the portal
    vein and touches the SMV and the common hepatic artery (vessels are spared:
    the tumour grows around them).  Used by the full-size benchmark and the staging
    tests; its contact angles come from the masks, not from analytic truth.
    """
    out = [lesion for lesion in default_lesions() if lesion.mask != "pancreatic_pdac"]
    out.append(LesionSpec("pancreatic_pdac", (4.0, 18.0, 9.0), (12.0, 10.0, 19.0), 0.0))
    return out


@dataclass
class Phantom:
    """A built phantom, in the canonical RAS frame.

    Attributes
    ----------
    ct : ndarray, int16
        HU, axis 0 -> R, 1 -> A, 2 -> S.
    affine : (4, 4) ndarray
        Canonical voxel index -> RAS mm (diagonal: spacing, and the first voxel's centre).
    masks : dict
        Canonical structure name -> bool array of ``ct.shape``.  Organ masks include
        their lesions' voxels; ``liver_segment_1`` ... ``_8`` partition ``liver``.
    truth : dict
        JSON-serialisable analytic and voxel truth (see :func:`build_phantom`).
    lesions : list of LesionSpec
    boxes : dict
        Name -> canonical slices of a box that holds the whole mask (for cropping).
    """

    ct: np.ndarray
    affine: np.ndarray
    masks: dict
    truth: dict
    lesions: list = field(default_factory=list)
    boxes: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(self.ct.shape)

    @property
    def spacing(self) -> tuple:
        """Voxel size (mm) along R, A, S."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


def _ellipse2d(x, y, center, semi):
    return ((x - center[0]) / semi[0]) ** 2 + ((y - center[1]) / semi[1]) ** 2 <= 1.0


def _background(grid: _Grid):
    """Axial tissue codes (constant along z) and the 2-D region organs may occupy."""
    x = grid.axis_mm(0)[:, None]
    y = grid.axis_mm(1)[None, :]
    code = np.full(grid.shape[:2], _TISSUE_CODE["air"], np.uint8)
    code[_ellipse2d(x, y, (0, 0), BODY_SEMI)] = _TISSUE_CODE["fat"]
    wall = _ellipse2d(x, y, (0, 0), WALL_OUTER_SEMI) & ~_ellipse2d(x, y, (0, 0), CAVITY_SEMI)
    code[wall] = _TISSUE_CODE["muscle"]
    spine = np.zeros(grid.shape[:2], bool)
    for center, semi in PARASPINAL:
        m = _ellipse2d(x, y, center, semi)
        code[m] = _TISSUE_CODE["muscle"]
        spine |= m
    bone = _ellipse2d(x, y, VERTEBRA[0], (VERTEBRA[1],) * 2)
    bone |= _ellipse2d(x, y, NEURAL_ARCH[0], (NEURAL_ARCH[1],) * 2)
    (x0, y0), (x1, y1), r = SPINOUS
    bone |= (np.abs(x - x0) <= r) & (y <= max(y0, y1)) & (y >= min(y0, y1))
    code[bone] = _TISSUE_CODE["bone"]
    canal = _ellipse2d(x, y, CANAL[0], (CANAL[1],) * 2)
    code[canal] = _TISSUE_CODE["csf"]
    spine |= bone | canal
    allowed = _ellipse2d(x, y, (0, 0), CAVITY_SEMI) & ~spine
    return code, allowed


def _paint(label, box, mask, code, allowed=None):
    if allowed is not None:
        mask = mask & allowed[box[0], box[1]][:, :, None]
    label[box][mask] = code
    return mask


def _drop_islands(label, box, code, fill):
    """Relabel all but the largest 6-connected piece of ``code`` within ``box`` as ``fill``."""
    from scipy import ndimage

    sub = label[box]
    pieces, n = ndimage.label(sub == code)
    if n > 1:
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        sub[(pieces != 0) & (pieces != np.argmax(sizes))] = fill


def _merge_segment_crumbs(seg: np.ndarray) -> None:
    """Give each small detached piece of a segment to the segment it touches most.

    Cutting the liver's surface with the sector planes can leave a few detached
    voxels; merging them keeps every segment one piece (as an annotator would).
    """
    from scipy import ndimage

    for k in range(1, 9):
        pieces, n = ndimage.label(seg == k)
        if n < 2:
            continue
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        keep = int(np.argmax(sizes))
        for idx, sl in enumerate(ndimage.find_objects(pieces), start=1):
            if idx == keep or sl is None or sizes[idx] > 0.05 * sizes[keep]:
                continue
            grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
            piece = pieces[grown] == idx
            ring = ndimage.binary_dilation(piece) & ~piece
            around = seg[grown][ring]
            around = around[(around != 0) & (around != k)]
            if around.size:
                seg[grown][piece] = np.bincount(around).argmax()


def couinaud_segment(x, y, z) -> np.ndarray:
    """Couinaud segment number (1..8, uint8) of world points (broadcast arrays, RAS mm).

    A Bismuth-style scheme: vertical planes through the IVC axis at the right,
    middle and left (umbilical fissure) hepatic veins split the liver into the right
    posterior (S6/S7), right anterior (S5/S8), left medial (S4) and left lateral
    (S2/S3) sectors; the transverse portal plane ``z = Z_PORTAL`` separates the
    superior segments (S7, S8) from the inferior ones (S6, S5); an oblique plane
    separates S2 (above and behind) from S3; the caudate (S1) is an ellipsoid in
    front of and left of the IVC.  Defined everywhere, so any set of liver voxels
    is partitioned exactly.
    """
    dx = x - np.float32(IVC_XY[0])
    dy = y - np.float32(IVC_XY[1])
    psi = np.degrees(np.arctan2(dy, dx))
    # Angles measured from +x towards +y, unwrapped to [-135, 225) so the sectors
    # run right posterior -> right anterior -> left medial -> left lateral; the cut
    # lies behind and left of the IVC, where the liver has no parenchyma (the
    # right lobe's bare area behind the IVC stays in S7/S6).
    psi = np.where(psi < -135.0, psi + 360.0, psi)
    superior = z >= np.float32(Z_PORTAL)
    shape = np.broadcast_shapes(np.shape(psi), np.shape(z))
    seg = np.empty(shape, np.uint8)
    right_post = psi < ANGLE_RHV
    right_ant = (psi >= ANGLE_RHV) & (psi < ANGLE_MHV)
    left_med = (psi >= ANGLE_MHV) & (psi < ANGLE_UF)
    left_lat = psi >= ANGLE_UF
    seg[...] = np.where(right_post & superior, 7, 0)
    seg[right_post & ~superior] = 6
    seg[np.broadcast_to(right_ant & superior, shape)] = 8
    seg[np.broadcast_to(right_ant & ~superior, shape)] = 5
    seg[np.broadcast_to(left_med, shape)] = 4
    s2 = np.broadcast_to(S2_PLANE.contains(x, y, z), shape)
    ll = np.broadcast_to(left_lat, shape)
    seg[ll & s2] = 2
    seg[ll & ~s2] = 3
    seg[np.broadcast_to(CAUDATE.contains(x, y, z), shape)] = 1
    return seg


def _pancreas_part(center) -> str:
    right, left, aorta_left = _PANCREAS_BORDERS
    x = center[0]
    if x > right:
        return "head"
    if x >= left:
        return "neck"
    if x >= aorta_left:
        return "body"
    return "tail"


def _touches_face(mask: np.ndarray) -> bool:
    for axis in range(3):
        if np.take(mask, 0, axis=axis).any() or np.take(mask, -1, axis=axis).any():
            return True
    return False


def _touches_face_box(mask: np.ndarray, box, grid_shape) -> bool:
    """Like :func:`_touches_face` for a mask given over ``box`` of the full grid."""
    for axis in range(3):
        if box[axis].start == 0 and np.take(mask, 0, axis=axis).any():
            return True
        if box[axis].stop == grid_shape[axis] and np.take(mask, -1, axis=axis).any():
            return True
    return False


def _bbox_union(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(s.start, t.start), max(s.stop, t.stop)) for s, t in zip(a, b))


def _add_noise(ct: np.ndarray, sd: float, seed: int) -> None:
    """Add seeded Gaussian noise (HU) in place, slab by slab to bound memory."""
    if sd <= 0:
        return
    rng = np.random.default_rng(seed)
    step = max(1, int(4_000_000 // (ct.shape[1] * ct.shape[2])))
    for i in range(0, ct.shape[0], step):
        slab = ct[i:i + step].astype(np.float32)
        slab += rng.standard_normal(slab.shape, dtype=np.float32) * np.float32(sd)
        np.rint(slab, out=slab)
        np.clip(slab, -32768, 32767, out=slab)
        ct[i:i + step] = slab.astype(np.int16)


def build_phantom(
    size: str = "small",
    spacing: Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
    lesions: Iterable[LesionSpec] | None = None,
    seed: int = 0,
    phase: str = "non-contrast",
    z_range_mm: tuple | None = None,
    noise_sd: float = 8.0,
) -> Phantom:
    """Build the synthetic abdomen.

    Parameters
    ----------
    size : {"small", "full"}
        ``small``: 200 x 160 x 100 voxels of 2.0 x 2.0 x 2.5 mm (400 x 320 x 250 mm);
        ``full``: 512 x 512 x 300 voxels of 0.75 x 0.75 x 1.0 mm (384 x 384 x 300 mm).
    spacing, shape : 3 values, optional
        Override the sampling (mm along R, A, S; voxels).  With only ``spacing`` the
        named size's field of view is kept; with only ``shape`` its spacing is
        derived.  The anatomy never moves; only the sampling changes.
    lesions : list of LesionSpec, optional
        Defaults to :func:`default_lesions`; pass ``[]`` for none.  Lesions must not
        overlap each other.
    seed : int
        Seed of the Gaussian noise.
    phase : {"non-contrast", "venous", "arterial"}
    z_range_mm : (zmin, zmax), optional
        Keep only the slices whose centres lie in [zmin, zmax] (RAS mm): an exact
        craniocaudal crop of the same slice lattice, e.g. to cut the liver at the
        scan edge.
    noise_sd : float
        Standard deviation of the noise (HU); 0 for a noise-free CT.

    Returns
    -------
    Phantom
        ``truth`` holds ``spacing_mm``, ``shape``, ``affine``, ``phase``, ``seed``,
        ``noise_sd``, ``z_range_mm``, ``organs`` (per organ: ``voxel_volume_ml``,
        noise-free ``hu``, ``present``, ``complete`` = has voxels and none on a face
        of the grid), ``vessels`` (same keys), ``liver_segments``
        (``voxel_volume_ml``) and ``lesions`` (one dict per LesionSpec, in order:
        ``mask``, ``organ`` (liver/pancreas/kidney), ``organ_mask``, ``kind``,
        ``side`` (kidney only), ``center_ras_mm``, ``semi_axes_mm``, ``angle_deg``,
        ``longest_diameter_mm`` = 2 max(a, b), ``perpendicular_diameter_mm`` =
        2 min(a, b), ``volume_ml`` (analytic 4/3 pi a b c), ``voxel_volume_ml``
        (its voxels x voxel volume), ``complete``, ``hu`` (noise-free), ``couinaud``
        (liver: segments holding > 10 % of its voxels, largest share first),
        ``pancreas_part`` (by design, from the centre's position against the SMV
        and aorta), ``kidney_pole`` (thirds of the kidney mask's craniocaudal
        extent), ``slice_index`` (canonical k of the slice nearest the centre,
        where the largest axial section lies)).  Diameters and volumes in mm and
        ml, positions in RAS mm.
    """
    if phase not in HU:
        raise ValueError(f"phase must be one of {SIMULATED_PHASES}, not {phase!r}")
    grid = _make_grid(size, spacing, shape, z_range_mm)
    lesions = default_lesions() if lesions is None else list(lesions)
    if len(lesions) > _MAX_LESIONS:
        raise ValueError(f"at most {_MAX_LESIONS} lesions")
    hu = HU[phase]

    # 1. Label map: body background, psoas, organs and vessels in painting order,
    #    then lesions (which take their voxels from whatever lay there).
    bg, allowed = _background(grid)
    label = np.empty(grid.shape, np.uint8)
    label[...] = bg[:, :, None]
    for psoas in _PSOAS:
        box, m = voxelise(psoas, grid)
        if box is not None:
            _paint(label, box, m & (label[box] == _TISSUE_CODE["fat"]), _TISSUE_CODE["muscle"])
    boxes = {}
    for name, (solid, clip, _tissue) in STRUCTURES.items():
        box, m = voxelise(solid, grid, clip)
        if box is not None:
            _paint(label, box, m, _STRUCT_CODE[name], allowed)
        boxes[name] = box
    # Painting can leave crumbs (a voxel pinched off between two vessels); give
    # them back to fat so every organ and vessel is one connected piece.
    for name, box in boxes.items():
        if box is not None:
            _drop_islands(label, box, _STRUCT_CODE[name], _TISSUE_CODE["fat"])
    lesion_boxes = []
    vessel_codes = np.array([_STRUCT_CODE[v] for v in VESSELS])
    for n, lesion in enumerate(lesions):
        box, m = voxelise(lesion.solid(), grid)
        if box is not None:
            # A tumour grows around vessels, it does not replace them: vessel voxels
            # stay vessel, so a lesion overlapping a vessel wraps (encases) it.
            m = m & ~np.isin(label[box], vessel_codes)
            _paint(label, box, m, _LESION_CODE0 + n)
        lesion_boxes.append(box)

    # 2. Masks (full-grid, written only inside their boxes).
    def empty():
        return np.zeros(grid.shape, bool)

    masks = {}
    for name, box in boxes.items():
        masks[name] = empty()
        if box is not None:
            masks[name][box] = label[box] == _STRUCT_CODE[name]
    lesion_voxels = []  # per lesion: its own voxels within its box
    for n, (lesion, box) in enumerate(zip(lesions, lesion_boxes)):
        own = None if box is None else (label[box] == _LESION_CODE0 + n)
        lesion_voxels.append(own)
        masks.setdefault(lesion.mask, empty())
        if box is None:
            continue
        masks[lesion.mask][box] |= own
        masks[lesion.organ_mask][box] |= own
        boxes[lesion.mask] = _bbox_union(boxes.get(lesion.mask), box)
        boxes[lesion.organ_mask] = _bbox_union(boxes.get(lesion.organ_mask), box)

    # 3. Couinaud segments over the liver's box (which now includes its lesions).
    liver_box = boxes["liver"]
    seg_box = None
    if liver_box is not None:
        liver = masks["liver"][liver_box]
        seg_box = couinaud_segment(*grid.coords(liver_box))
        seg_box[~liver] = 0
        _merge_segment_crumbs(seg_box)
    for k in range(1, 9):
        name = f"liver_segment_{k}"
        masks[name] = empty()
        boxes[name] = liver_box
        if liver_box is not None:
            masks[name][liver_box] = liver & (seg_box == k)

    # 4. CT: noise-free HU per label, then noise.
    lut = np.zeros(256, np.int16)
    for tissue, code in _TISSUE_CODE.items():
        lut[code] = hu[tissue]
    for name, (_s, _c, tissue) in STRUCTURES.items():
        lut[_STRUCT_CODE[name]] = hu[tissue]
    lesion_hu = []
    for n, lesion in enumerate(lesions):
        value = lesion.hu if lesion.hu is not None else LESION_HU[phase][(lesion.organ, lesion.kind)]
        lesion_hu.append(float(value))
        lut[_LESION_CODE0 + n] = int(round(value))
    ct = lut[label]
    del label
    _add_noise(ct, noise_sd, seed)

    truth = _truth(grid, phase, seed, noise_sd, z_range_mm, masks, boxes, lesions,
                   lesion_boxes, lesion_voxels, lesion_hu)
    return Phantom(ct=ct, affine=grid.affine, masks=masks, truth=truth, lesions=lesions, boxes=boxes)


def _truth(grid, phase, seed, noise_sd, z_range_mm, masks, boxes, lesions, lesion_boxes,
           lesion_voxels, lesion_hu) -> dict:
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    hu = HU[phase]

    def count(name):
        box = boxes.get(name)
        return 0 if box is None else int(np.count_nonzero(masks[name][box]))

    def entry(name, tissue):
        n = count(name)
        # An organ cut by the scan edge (or outside the scan) is not complete.
        return {"voxel_volume_ml": n * voxel_ml, "hu": float(hu[tissue]),
                "present": n > 0, "complete": n > 0 and not _touches_face(masks[name])}

    organs = {n: entry(n, STRUCTURES[n][2]) for n in ORGANS}
    vessels = {n: entry(n, STRUCTURES[n][2]) for n in VESSELS}
    segments = {f"liver_segment_{k}": {"voxel_volume_ml": count(f"liver_segment_{k}") * voxel_ml}
                for k in range(1, 9)}

    out = []
    for n, lesion in enumerate(lesions):
        a, b, c = map(float, lesion.semi_axes)
        box, own = lesion_boxes[n], lesion_voxels[n]
        nvox = 0 if own is None else int(np.count_nonzero(own))
        k = (lesion.center[2] - grid.origin[2]) / grid.spacing[2]
        item = {
            "mask": lesion.mask,
            "organ": lesion.organ,
            "organ_mask": lesion.organ_mask,
            "kind": lesion.kind,
            "side": lesion.side,
            "center_ras_mm": [float(v) for v in lesion.center],
            "semi_axes_mm": [a, b, c],
            "angle_deg": float(lesion.angle_deg),
            "longest_diameter_mm": 2.0 * max(a, b),
            "perpendicular_diameter_mm": 2.0 * min(a, b),
            "volume_ml": 4.0 / 3.0 * math.pi * a * b * c / 1000.0,
            "voxel_volume_ml": nvox * voxel_ml,
            "complete": nvox > 0 and not _touches_face_box(own, box, grid.shape),
            "hu": lesion_hu[n],
            "couinaud": None,
            "pancreas_part": None,
            "kidney_pole": None,
            "slice_index": int(min(max(round(k), 0), grid.shape[2] - 1)),
        }
        if lesion.organ == "liver" and nvox:
            counts = np.array([np.count_nonzero(masks[f"liver_segment_{s}"][box] & own) for s in range(1, 9)])
            shares = counts / nvox
            order = np.argsort(-shares, kind="stable")
            item["couinaud"] = [f"S{i + 1}" for i in order if shares[i] > 0.10]
        elif lesion.organ == "pancreas":
            item["pancreas_part"] = _pancreas_part(lesion.center)
        elif lesion.organ == "kidney":
            item["kidney_pole"] = _kidney_pole(masks[lesion.organ_mask], boxes.get(lesion.organ_mask),
                                               grid, lesion.center[2])
        out.append(item)

    return {
        "generator": "RadGPTLogic.phantom",
        "frame": "canonical RAS (axis 0 -> R, 1 -> A, 2 -> S); world RAS+ mm",
        "spacing_mm": [float(s) for s in grid.spacing],
        "shape": [int(s) for s in grid.shape],
        "affine": grid.affine.tolist(),
        "phase": phase,
        "seed": int(seed),
        "noise_sd": float(noise_sd),
        "z_range_mm": None if z_range_mm is None else [float(v) for v in z_range_mm],
        "organs": organs,
        "vessels": vessels,
        "liver_segments": segments,
        "lesions": out,
    }


def _kidney_pole(kidney: np.ndarray, box, grid: _Grid, z_center: float) -> str | None:
    """Pole of a point by thirds of the kidney mask's craniocaudal extent (slice centres)."""
    if box is None:
        return None
    ks = np.flatnonzero(kidney[box].any(axis=(0, 1)))
    if ks.size == 0:
        return None
    z = grid.origin[2] + (ks[[0, -1]] + box[2].start) * grid.spacing[2]
    lo, hi = float(z[0]), float(z[1])
    third = (hi - lo) / 3.0
    if z_center >= hi - third:
        return "upper"
    if z_center <= lo + third:
        return "lower"
    return "interpolar"


# =============================================================================
# Orientation and output
# =============================================================================


def _target_codes(axcodes, axis_order):
    codes = tuple(str(c).upper() for c in axcodes)
    if len(codes) != 3:
        raise ValueError(f"axcodes needs 3 letters, got {axcodes!r}")
    pairs = {"R": "LR", "L": "LR", "A": "PA", "P": "PA", "S": "IS", "I": "IS"}
    if any(c not in pairs for c in codes) or len({pairs[c] for c in codes}) != 3:
        raise ValueError(f"axcodes {axcodes!r} must name each of L/R, P/A, I/S once")
    if axis_order is not None:
        order = tuple(int(a) for a in axis_order)
        if sorted(order) != [0, 1, 2]:
            raise ValueError(f"axis_order must be a permutation of (0, 1, 2), got {axis_order!r}")
        codes = tuple(codes[a] for a in order)
    return codes


def reorient_array(array: np.ndarray, affine: np.ndarray, axcodes="RAS", axis_order=None):
    """The same physical voxels stored with other axis codes (exact flips and transposes).

    Parameters
    ----------
    array : 3-D ndarray
    affine : (4, 4)
        Voxel -> RAS mm of ``array``; any affine whose axes are (close to) a signed
        permutation of R, A, S.  For an oblique affine the result is still exact
        (only the indexing changes), and ``axcodes`` name the nearest directions.
    axcodes : str or 3 letters
        Direction in which each output axis index increases (nibabel convention),
        e.g. ``"LPS"`` (DICOM) or a permuted order such as ``"SRA"``.
    axis_order : permutation of (0, 1, 2), optional
        Reorder the output axes after applying ``axcodes``: output axis n is
        ``axcodes[axis_order[n]]``.

    Returns
    -------
    (array, affine)
        A view of ``array`` (no copy) and its voxel -> RAS mm affine.
    """
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    codes = _target_codes(axcodes, axis_order)
    start = io_orientation(np.asarray(affine, float))
    transform = ornt_transform(start, axcodes2ornt(codes))
    out = apply_orientation(array, transform)
    new_affine = np.asarray(affine, float) @ inv_ornt_aff(transform, array.shape)
    return out, new_affine


def reorient(phantom: Phantom, axcodes="LPS", axis_order=None, names: Iterable[str] | None = None):
    """The phantom's CT and masks in another orientation (same physical voxels).

    Returns ``(ct, affine, masks)``: views of the canonical arrays flipped and
    transposed to ``axcodes`` (and ``axis_order``, see :func:`reorient_array`), the
    voxel -> RAS mm affine that goes with them, and a dict of masks (all of them, or
    only ``names``).
    """
    ct, affine = reorient_array(phantom.ct, phantom.affine, axcodes, axis_order)
    wanted = phantom.masks if names is None else {n: phantom.masks[n] for n in names}
    masks = {n: reorient_array(m, phantom.affine, axcodes, axis_order)[0] for n, m in wanted.items()}
    return ct, affine, masks


def write_case(
    phantom: Phantom,
    out_dir: str | os.PathLike,
    case_id: str = "PHANTOM_0001",
    axcodes="RAS",
    axis_order=None,
    with_ct: bool = True,
    extra_masks: Mapping[str, np.ndarray] | None = None,
    names: Iterable[str] | None = None,
) -> Path:
    """Write the phantom as an AbdomenAtlas case folder.

    Writes ``out_dir/<case_id>/ct.nii.gz`` (int16 HU, unless ``with_ct`` is False),
    ``segmentations/<name>.nii.gz`` (uint8 0/1) for every mask (or only ``names``)
    plus ``extra_masks`` (name -> canonical-frame array, e.g. combined masks such as
    ``veins``), and ``truth.json``.  Arrays are stored in the orientation
    ``axcodes``/``axis_order`` (see :func:`reorient_array`) with the matching affine
    in both qform and sform.  ``truth.json`` adds ``file`` (axcodes, shape, affine of
    the written files) and rewrites each lesion's ``slice_index`` as the index
    along the written files' own slice axis.  Returns the case folder.
    """
    from .geometry import canonical_orientation, orientation_code
    from .io.atomic import publish, read_manifest
    from .io.nifti import source_nifti_gz_bytes

    case = Path(out_dir) / case_id
    ct, affine, masks = reorient(phantom, axcodes, axis_order, names)
    files: dict[str, bytes | str] = {}  # relative path -> content
    if with_ct:
        files["ct.nii.gz"] = source_nifti_gz_bytes(np.asarray(ct, np.int16), affine)
    for name, arr in masks.items():
        files[f"segmentations/{name}.nii.gz"] = source_nifti_gz_bytes(np.asarray(arr, np.uint8), affine)
    for name, arr in (extra_masks or {}).items():
        arr = np.asarray(arr)
        if arr.shape != phantom.shape:
            raise ValueError(f"extra mask {name}: shape {arr.shape} differs from the phantom {phantom.shape}")
        out, _ = reorient_array(arr, phantom.affine, axcodes, axis_order)
        files[f"segmentations/{name}.nii.gz"] = source_nifti_gz_bytes((out != 0).astype(np.uint8), affine)

    truth = json.loads(json.dumps(phantom.truth))
    # The file axis that holds canonical S, and whether it runs I -> S or S -> I.
    codes = _target_codes(axcodes, axis_order)
    s_axis = next(n for n, c in enumerate(codes) if c in "SI")
    nk = phantom.shape[2]
    for item in truth["lesions"]:
        k = item["slice_index"]
        item["slice_index"] = k if codes[s_axis] == "S" else nk - 1 - k
    truth["file"] = {
        "axcodes": list(orientation_code(canonical_orientation(affine))),
        "shape": [int(s) for s in ct.shape],
        "affine": np.asarray(affine).tolist(),
        "slice_axis": s_axis,
    }
    files["truth.json"] = json.dumps(truth, indent=2) + "\n"
    # A folder written again loses the files of the earlier writing (other masks).
    publish(case, files, remove=set(read_manifest(case)) - set(files))
    return case
