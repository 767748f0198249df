"""Organ findings: volume, completeness, attenuation, enlargement, steatosis.

* **Volume** = voxel count x voxel volume (|det| of the affine), in mL.  An organ
  with a voxel on any face of the grid may be cut by the scan's field of view:
  it is ``complete: false`` and its volume (and enlargement) is null.
* **Mean HU** comes from the organ minus its lesions, eroded by one voxel
  (:mod:`.hu`), so neither the rim nor a tumour biases it.  It is kept for
  incomplete organs: the attenuation of the imaged part is still valid.
* **Steatosis** (liver) and **fatty pancreas** are judged only where the phase
  allows (see :func:`attenuation_verdicts`).
"""

from __future__ import annotations

import numpy as np

from ..case import Case, Crop
from ..rules import ENLARGEMENT_SOURCES, SMALL_SOURCES, Rules
from .hu import HUStats, robust_hu_stats


def organ_volume(crop: Crop, grid_shape, voxel_volume_mm3: float) -> tuple[float | None, bool, int]:
    """(volume in mL or None when cut by the grid edge, complete?, voxel count)."""
    n = crop.count
    complete = not crop.touches_grid_edge(grid_shape)
    volume = n * voxel_volume_mm3 / 1000.0 if complete else None
    return volume, complete, n


def organ_hu(case: Case, crop: Crop, exclude: Crop | None = None) -> HUStats | None:
    """Robust HU statistics of an organ, leaving out the voxels of ``exclude`` (its lesions)."""
    if not case.has_ct or crop.is_empty:
        return None
    roi = crop.mask
    if exclude is not None and not exclude.is_empty:
        roi = roi & ~exclude.in_box(crop.offset, crop.shape)
    if not roi.any():
        return None
    return robust_hu_stats(case.hu(crop.slices), roi)


def enlargement(name: str, volume_ml: float | None, rules: Rules) -> str | None:
    """``"no"``, ``"enlarged"`` or ``"massively_enlarged"``; None when no rule exists or no volume."""
    if volume_ml is None:
        return None
    if name == "spleen":
        if volume_ml > rules.spleen_massive_ml:
            return "massively_enlarged"
        return "enlarged" if volume_ml > rules.spleen_enlarged_ml else "no"
    limit = {
        "liver": rules.liver_enlarged_ml,
        "pancreas": rules.pancreas_enlarged_ml,
        "kidney_left": rules.kidney_enlarged_ml,
        "kidney_right": rules.kidney_enlarged_ml,
    }.get(name)
    if limit is None:
        return None
    return "enlarged" if volume_ml > limit else "no"


def enlargement_rule(name: str) -> str | None:
    return ENLARGEMENT_SOURCES.get(name)


def small_limit_ml(name: str, rules: Rules) -> float | None:
    """Lower end of the organ's normal volume range (mL), or None when there is no such rule."""
    return {
        "liver": rules.liver_small_ml,
        "spleen": rules.spleen_small_ml,
        "pancreas": rules.pancreas_small_ml,
        "kidney_left": rules.kidney_small_ml,
        "kidney_right": rules.kidney_small_ml,
    }.get(name)


def smallness(name: str, volume_ml: float | None, rules: Rules) -> bool | None:
    """True when a complete organ lies below the lower end of its normal range (None: no rule or no volume)."""
    limit = small_limit_ml(name, rules)
    if limit is None or volume_ml is None:
        return None
    return bool(volume_ml < limit)


def small_rule(name: str) -> str | None:
    return SMALL_SOURCES.get(name)


def attenuation_verdicts(organs: dict, phase: str, rules: Rules) -> None:
    """Fill ``steatosis`` (and the numbers behind it) into the liver and pancreas entries.

    ``organs`` maps organ name -> finding dict holding ``mean_hu``.  Rules:

    * non-contrast: liver steatosis if liver < 40 HU or liver - spleen < -10 HU;
      fatty pancreas (``steatosis`` of the pancreas) if pancreas/spleen < 0.7.
    * venous: no verdict (``steatosis`` null) but ``possible_steatosis`` true when
      the liver is below 80 HU.
    * arterial, delayed, unknown: no verdict.
    Every other organ gets ``steatosis`` null.
    """
    spleen_hu = organs.get("spleen", {}).get("mean_hu")
    for entry in organs.values():
        entry.setdefault("steatosis", None)
    liver = organs.get("liver")
    if liver is not None and liver.get("mean_hu") is not None:
        hu = liver["mean_hu"]
        if phase == "non-contrast":
            l_minus_s = hu - spleen_hu if spleen_hu is not None else None
            liver["liver_minus_spleen_hu"] = l_minus_s
            liver["steatosis"] = bool(
                hu < rules.liver_steatosis_hu or (l_minus_s is not None and l_minus_s < rules.liver_minus_spleen_hu)
            )
            liver["steatosis_rule"] = (
                f"non-contrast: liver < {rules.liver_steatosis_hu:g} HU or liver - spleen < "
                f"{rules.liver_minus_spleen_hu:g} HU" + ("" if spleen_hu is not None else " (no spleen: HU rule only)")
            )
        elif phase == "venous":
            liver["possible_steatosis"] = bool(hu < rules.venous_liver_low_hu)
            liver["steatosis_rule"] = (f"venous: no verdict; liver < {rules.venous_liver_low_hu:g} HU "
                                       "= possible steatosis")
        else:
            liver["steatosis_rule"] = f"{phase} phase: steatosis not assessable"
    pancreas = organs.get("pancreas")
    if pancreas is not None and pancreas.get("mean_hu") is not None:
        if phase == "non-contrast" and spleen_hu is not None and spleen_hu > 0:
            ratio = pancreas["mean_hu"] / spleen_hu
            pancreas["pancreas_to_spleen_ratio"] = float(ratio)
            pancreas["steatosis"] = bool(ratio < rules.pancreas_spleen_ratio)
            pancreas["steatosis_rule"] = f"non-contrast: pancreas/spleen HU < {rules.pancreas_spleen_ratio:g}"
        else:
            why = "needs a spleen mask with positive HU" if phase == "non-contrast" else f"{phase} phase"
            pancreas["steatosis_rule"] = f"fatty pancreas not assessable ({why})"


def centroid_ras(crop: Crop, affine: np.ndarray) -> np.ndarray:
    """Centre of mass of a crop in RAS mm."""
    idx = np.argwhere(crop.mask).mean(axis=0) + np.asarray(crop.offset)
    return affine[:3, :3] @ idx + affine[:3, 3]
