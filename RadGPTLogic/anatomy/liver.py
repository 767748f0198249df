"""Liver lesion location: Couinaud segments from segment masks, S4 split into S4a/S4b.

Rules (clinical_rules_and_peers.md §A3):

* Segments come only from ``liver_segment_1`` ... ``liver_segment_8`` masks (a
  model's output or TotalSegmentator's ``liver_segments``).  Without them there is
  no guess: the location is "not assessable (no segment masks)".
* A lesion is placed in every segment holding **more than 10 %** of its voxels,
  largest share first (RadGPT's rule, adopted).  When the segment masks leave
  lesion voxels out (some models exclude tumour voxels from the parenchyma, and
  Slicer's "overwrite all" editing carves a painted lesion out of every segment),
  each uncovered voxel takes the segment of the nearest segment voxel within
  :data:`FILL_SEARCH_VOXELS`, and the result says so (``couinaud_by``).  Carving
  destroys the true boundary between segments inside the lesion, so the shares of
  a carved lesion that spans segments are this nearest-segment estimate.
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
    segment_crops = {s: case.crop(s) for s in SEGMENTS}
    present = [s for s, c in segment_crops.items() if c is not None and not c.is_empty]
    if not present:
        return None
    mask, offset, fill = _lesion_with_filled_segments(case, lesion, present)
    counts, by = _segment_counts(case, mask, offset, present, bifurcation_z, fill=fill)
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


# Lesion voxels that no segment mask covers take the label of the nearest segment voxel
# found within this many voxels around the lesion.
FILL_SEARCH_VOXELS = 3


def _lesion_with_filled_segments(case, lesion: Crop, present: list):
    """The lesion's voxels, and how segment labels are found for them.

    Returns ``(mask, offset, fill)``: ``fill`` is None when every lesion voxel lies in
    a segment mask (the usual convention), else a label array over the mask's box
    giving each uncovered voxel its nearest segment (1..8, 0 = none found): segment
    masks carved around the lesion (Slicer's "overwrite all") or leaving it out.
    """
    pad = FILL_SEARCH_VOXELS
    lo = np.maximum(np.subtract(lesion.offset, pad), 0)
    hi = np.minimum(np.add(np.add(lesion.offset, lesion.shape), pad), case.shape)
    offset, shape = tuple(int(x) for x in lo), tuple(int(x) for x in hi - lo)
    own = lesion.in_box(offset, shape)
    labels = np.zeros(shape, np.uint8)
    for name in present:
        labels[case.crop(name).in_box(offset, shape)] = int(name.rsplit("_", 1)[1])
    uncovered = own & (labels == 0)
    if not uncovered.any():
        return own, offset, None
    if not labels.any():
        return own, offset, np.zeros(shape, np.uint8)
    # Nearest labelled voxel of every voxel (Euclidean in voxel units along each axis' spacing).
    _, (ii, jj, kk) = ndimage.distance_transform_edt(labels == 0, sampling=case.spacing, return_indices=True)
    filled = labels.copy()
    filled[uncovered] = labels[ii[uncovered], jj[uncovered], kk[uncovered]]
    return own, offset, filled


def _segment_counts(case, mask, offset, present, bifurcation_z, fill=None):
    """Lesion voxels per segment label (S4 split at ``bifurcation_z``); ``fill`` replaces the masks."""
    counts = {}
    for name in present:
        if fill is not None:
            seg = (fill == int(name.rsplit("_", 1)[1])) & mask
        else:
            seg = case.crop(name).in_box(offset, mask.shape) & mask
        label = "S" + name.rsplit("_", 1)[1]
        if label == "S4" and bifurcation_z is not None:
            upper = _slice_z(case.affine, offset[2] + np.arange(mask.shape[2])) > bifurcation_z
            counts["S4a"] = int(np.count_nonzero(seg[:, :, upper]))
            counts["S4b"] = int(np.count_nonzero(seg[:, :, ~upper]))
        else:
            counts[label] = int(np.count_nonzero(seg))
    return counts, "lesion voxels" if fill is None else "lesion voxels (uncovered ones by the nearest segment)"
