"""Lesion findings: connected components, WHO diameters, volume, HU, side.

A lesion mask (e.g. ``liver_tumor``) may hold several lesions.  They are split
into 3-D connected components, by default with **26-connectivity** (voxels
touching by a face, an edge or a corner are one lesion;
:attr:`Rules.lesion_connectivity`).  Components below the size floor
(:attr:`Rules.min_lesion_volume_mm3`) are not reported as lesions, but counted as
sub-threshold in findings.json, never dropped silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..case import Case, Crop
from ..rules import Rules
from .diameters import who_diameters
from .hu import robust_hu_stats


def connectivity_structure(connectivity: int) -> np.ndarray:
    """The 3x3x3 structuring element of 6-, 18- or 26-connectivity (face / +edge / +corner neighbours)."""
    rank = {6: 1, 18: 2, 26: 3}.get(connectivity)
    if rank is None:
        raise ValueError(f"connectivity must be 6, 18 or 26; got {connectivity!r}")
    return ndimage.generate_binary_structure(3, rank)


def split_components(crop: Crop, voxel_volume_mm3: float, min_volume_mm3: float, connectivity: int = 26):
    """Split a mask into connected components (26-connectivity by default; see :attr:`Rules.lesion_connectivity`).

    Returns ``(kept, n_small, small_volume_ml)``: ``kept`` is a list of
    :class:`Crop` (one per component at or above the floor, largest first; ties by
    position), ``n_small`` and ``small_volume_ml`` count the rest.
    """
    if crop.is_empty:
        return [], 0, 0.0
    labels, n = ndimage.label(crop.mask, structure=connectivity_structure(connectivity))
    if n == 0:
        return [], 0, 0.0
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    kept, n_small, small_voxels = [], 0, 0
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        count = int(counts[lab - 1])
        if count * voxel_volume_mm3 < min_volume_mm3:
            n_small += 1
            small_voxels += count
            continue
        sub = np.ascontiguousarray(labels[sl] == lab)
        offset = tuple(int(o + s.start) for o, s in zip(crop.offset, sl))
        kept.append((count, offset, Crop(sub, offset)))
    kept.sort(key=lambda t: (-t[0], t[1]))
    return [c for _, _, c in kept], n_small, small_voxels * voxel_volume_mm3 / 1000.0


def attenuation_class(lesion_hu: float | None, organ_hu: float | None, band_hu: float) -> str | None:
    """``hypo``/``iso``/``hyper`` relative to the organ's parenchyma; None without both HU."""
    if lesion_hu is None or organ_hu is None:
        return None
    diff = lesion_hu - organ_hu
    if abs(diff) <= band_hu:
        return "iso"
    return "hypo" if diff < 0 else "hyper"


def _crop_affine(affine: np.ndarray, offset) -> np.ndarray:
    shift = np.eye(4)
    shift[:3, 3] = offset
    return affine @ shift


def _to_ras(affine: np.ndarray, ijk: np.ndarray) -> list:
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).round(3).tolist()


def kidney_side(case: Case, comp: Crop) -> tuple[str | None, str]:
    """Side of a kidney lesion: the kidney it overlaps most, else the nearest kidney.

    Returns (side or None, how it was decided).
    """
    overlaps: dict[str, int] = {}  # side -> lesion voxels inside that kidney
    for side in ("left", "right"):
        kidney = case.crop(f"kidney_{side}")
        if kidney is not None and not kidney.is_empty:
            overlaps[side] = int(np.count_nonzero(comp.mask & kidney.in_box(comp.offset, comp.shape)))
    if not overlaps:
        return None, "not assessable (no kidney masks)"
    best = max(overlaps, key=overlaps.__getitem__)
    if overlaps[best] > 0 and list(overlaps.values()).count(overlaps[best]) == 1:
        return best, "overlap with kidney mask"
    from .organs import centroid_ras

    c = centroid_ras(comp, case.affine)
    dist = {s: float(np.linalg.norm(centroid_ras(case.structures[f"kidney_{s}"], case.affine) - c)) for s in overlaps}
    return min(dist, key=dist.__getitem__), "nearest kidney (no overlap)"


def measure_component(case: Case, comp: Crop, rules: Rules) -> dict:
    """Geometry and HU of one lesion component (no organ context): a findings dict fragment."""
    vox_ml = case.voxel_volume_mm3 / 1000.0
    diam = who_diameters(comp.mask, _crop_affine(case.affine, comp.offset))
    if diam is None:
        raise ValueError("measure_component needs a non-empty component")
    k_global = diam.k + comp.offset[2]
    out: dict[str, Any] = {
        "longest_diameter_mm": diam.longest_mm,
        "perpendicular_diameter_mm": diam.perpendicular_mm,
        "volume_ml": comp.count * vox_ml,
        "mean_hu": None,
        "sd_hu": None,
        "slice_index": case.source_slice_index(k_global),
        "voxel_count": comp.count,
        "calipers_ras_mm": {
            "longest": _to_ras(case.affine, diam.longest_ijk + np.asarray(comp.offset)),
            "perpendicular": _to_ras(case.affine, diam.perpendicular_ijk + np.asarray(comp.offset)),
        },
        "canonical_slice": int(k_global),
    }
    if case.has_ct:
        stats = robust_hu_stats(case.hu(comp.slices), comp.mask)
        assert stats is not None  # a non-empty component has HU values
        out.update(mean_hu=stats.mean, sd_hu=stats.sd, hu_roi=stats.roi)
    return out


def fraction_inside(comp: Crop, organs: list) -> float | None:
    """Share of the component's voxels inside the union of the given organ crops (None without organs)."""
    organs = [o for o in organs if o is not None]
    if not organs:
        return None
    inside = np.zeros(comp.shape, bool)
    for organ in organs:
        inside |= organ.in_box(comp.offset, comp.shape)
    return float(np.count_nonzero(inside & comp.mask) / comp.count)
