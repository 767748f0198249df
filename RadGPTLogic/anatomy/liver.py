"""Liver lesion location: Couinaud segments from segment masks, S4 split into S4a/S4b.

Rules (clinical_rules_and_peers.md §A3):

* Segments come only from ``liver_segment_1`` ... ``liver_segment_8`` masks (a
  model's output or TotalSegmentator's ``liver_segments``).  Without them there is
  no guess: the location is "not assessable (no segment masks)".
* A lesion is placed in every segment holding **more than 10 %** of its voxels that
  lie inside some segment, largest share first (RadGPT's rule, adopted).  When the
  segment masks leave the lesion out (some models exclude tumour voxels from the
  parenchyma), the shares are taken over the lesion's surrounding shell (2 voxels)
  instead, and the result says so (``couinaud_by``).
* Segment 4 is split into **S4a** (superior) and **S4b** (inferior) at the axial
  plane of the portal vein bifurcation when a portal-vein mask is given.  Proxy for
  the bifurcation: scanning the portal vein's axial cross-sections from inferior to
  superior, the first slice where it splits into two or more 2-D components (the
  left and right portal branches); if it never splits, its most superior slice (the
  hilum).  Heights are RAS z in mm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..case import Case, Crop

SEGMENTS = tuple(f"liver_segment_{k}" for k in range(1, 9))
SHARE_THRESHOLD = 0.10
# 2-D portal-vein fragments smaller than this (mm^2) are noise, not a branch.
MIN_BRANCH_AREA_MM2 = 4.0


def portal_bifurcation_z(portal: Crop | None, affine: np.ndarray) -> float | None:
    """RAS z (mm) of the portal vein bifurcation proxy (see module docstring), or None."""
    if portal is None or portal.is_empty:
        return None
    pixel_area = float(np.linalg.norm(np.cross(affine[:3, 0], affine[:3, 1])))
    min_pixels = max(1, int(np.ceil(MIN_BRANCH_AREA_MM2 / pixel_area)))
    slices_z = []
    for k in range(portal.shape[2]):
        sl = portal.mask[:, :, k]
        if not sl.any():
            continue
        labels, n = ndimage.label(sl, structure=np.ones((3, 3), bool))
        big = int(np.count_nonzero(np.bincount(labels.ravel())[1:] >= min_pixels)) if n else 0
        slices_z.append((float(_slice_z(affine, portal.offset[2] + k)), big))
    if not slices_z:
        return None
    slices_z.sort()
    for z, n in slices_z:
        if n >= 2:
            return z
    return slices_z[-1][0]


def _slice_z(affine: np.ndarray, k):
    """RAS z (mm) of canonical slice index ``k`` (scalar or array); exact for axial grids."""
    return affine[2, 2] * np.asarray(k, float) + affine[2, 3]


def couinaud_location(case: Case, lesion: Crop, bifurcation_z: float | None = None) -> dict | None:
    """Couinaud segments of a liver lesion, or None when the case has no segment masks.

    Returns ``{"couinaud": ["S7", "S8"], "couinaud_shares": {"S7": 0.6, ...},
    "couinaud_by": "lesion voxels" | "surrounding parenchyma"}``.  ``S4`` is reported
    as ``S4a``/``S4b`` when ``bifurcation_z`` (RAS mm) is given.
    """
    present = [s for s in SEGMENTS if case.has(s) and not case.crop(s).is_empty]
    if not present:
        return None
    counts, by = _segment_counts(case, lesion.mask, lesion.offset, present, bifurcation_z)
    if sum(counts.values()) == 0:
        # Segment masks exclude the lesion: look at the parenchyma around it.
        pad = 2
        shell_offset = tuple(o - pad for o in lesion.offset)
        grown = ndimage.binary_dilation(np.pad(lesion.mask, pad), iterations=pad)
        shell = grown & ~np.pad(lesion.mask, pad)
        counts, by = _segment_counts(case, shell, shell_offset, present, bifurcation_z)
        by = "surrounding parenchyma"
    total = sum(counts.values())
    if total == 0:
        return {"couinaud": [], "couinaud_shares": {}, "couinaud_by": "outside all segment masks"}
    shares = {name: n / total for name, n in counts.items() if n}
    ranked = sorted(shares, key=lambda s: (-shares[s], s))
    return {
        "couinaud": [s for s in ranked if shares[s] > SHARE_THRESHOLD],
        "couinaud_shares": {s: round(shares[s], 4) for s in ranked},
        "couinaud_by": by,
    }


def _segment_counts(case, mask, offset, present, bifurcation_z):
    counts = {}
    for name in present:
        seg = case.crop(name).in_box(offset, mask.shape) & mask
        label = "S" + name.rsplit("_", 1)[1]
        if label == "S4" and bifurcation_z is not None:
            upper = _slice_z(case.affine, offset[2] + np.arange(mask.shape[2])) > bifurcation_z
            counts["S4a"] = int(np.count_nonzero(seg[:, :, upper]))
            counts["S4b"] = int(np.count_nonzero(seg[:, :, ~upper]))
        else:
            counts[label] = int(np.count_nonzero(seg))
    return counts, "lesion voxels"
