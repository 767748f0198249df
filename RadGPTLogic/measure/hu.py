"""Attenuation statistics (Hounsfield units) on the native CT grid.

Partial-volume voxels on a structure's rim mix its attenuation with that of its
neighbours (fat at -100 HU, a lesion, a vessel), so HU are taken from the mask
eroded by one voxel (6-connected structuring element).  When the eroded ROI is too
small to be representative (fewer than ``min_voxels``), the whole mask is used and
the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_CROSS = ndimage.generate_binary_structure(3, 1)

# Below this many voxels an eroded ROI is judged too small; the whole mask is used.
MIN_ERODED_VOXELS = 20


@dataclass(frozen=True)
class HUStats:
    """Mean and standard deviation (HU) over an ROI of ``n_voxels``; ``roi`` says which ROI."""

    mean: float
    sd: float
    n_voxels: int
    roi: str  # "eroded 1 voxel" or "whole mask"


def robust_roi(mask: np.ndarray, min_voxels: int = MIN_ERODED_VOXELS) -> tuple[np.ndarray, str]:
    """The mask eroded by one voxel, or the mask itself when erosion leaves < ``min_voxels``."""
    eroded = ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)
    if np.count_nonzero(eroded) >= min_voxels:
        return eroded, "eroded 1 voxel"
    return mask, "whole mask"


def hu_stats(hu: np.ndarray, roi: np.ndarray, roi_name: str = "whole mask") -> HUStats | None:
    """Mean and SD (population, ddof=0) of ``hu`` over the bool ``roi`` of the same shape."""
    values = hu[roi]
    if values.size == 0:
        return None
    values = values.astype(np.float64)
    return HUStats(float(values.mean()), float(values.std()), int(values.size), roi_name)


def robust_hu_stats(hu: np.ndarray, mask: np.ndarray, min_voxels: int = MIN_ERODED_VOXELS) -> HUStats | None:
    """HU statistics over :func:`robust_roi` of ``mask``."""
    roi, name = robust_roi(mask, min_voxels)
    return hu_stats(hu, roi, name)
