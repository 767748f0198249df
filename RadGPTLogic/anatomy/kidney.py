"""Kidney lesion location: pole and exophytic fraction (side is in measure/lesions.py).

Rules (clinical_rules_and_peers.md §A5, R.E.N.A.L. components from masks):

* **Pole**: the kidney's own craniocaudal extent (RAS z of its parenchyma = kidney
  mask minus kidney lesions) is cut into thirds; the lesion's centroid height says
  ``upper``, ``interpolar`` or ``lower``.  True polar lines (where the renal sinus
  opens) need a sinus mask we do not have; thirds are the documented fallback.  A
  kidney cut by the top or bottom of the scan has no known extent: pole not
  assessable.
* **Exophytic fraction**: the share of the lesion's voxels outside the kidney's
  parenchymal envelope, reconstructed per axial slice in polar coordinates (see
  :func:`exophytic_fraction`); lesion voxels in slices without parenchyma are outside.
"""

from __future__ import annotations

import numpy as np

from ..case import Case, Crop


def _world_z(affine: np.ndarray, offset, mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask) + np.asarray(offset)
    return idx @ affine[2, :3] + affine[2, 3]


def kidney_parenchyma(case: Case, side: str, lesion_names) -> Crop | None:
    """The kidney mask of ``side`` minus all kidney lesion masks (in the kidney's crop)."""
    kidney = case.crop(f"kidney_{side}")
    if kidney is None or kidney.is_empty:
        return None
    mask = kidney.mask.copy()
    for name in lesion_names:
        lesion = case.crop(name)
        if lesion is not None and not lesion.is_empty:
            mask &= ~lesion.in_box(kidney.offset, kidney.shape)
    return Crop(mask, kidney.offset)


def kidney_pole(case: Case, lesion: Crop, parenchyma: Crop | None, kidney_complete: bool) -> dict:
    """``{"kidney_pole": ..., "kidney_pole_rule": ...}``; pole None with a reason when not assessable."""
    if parenchyma is None or not parenchyma.mask.any():
        return {"kidney_pole": None, "kidney_pole_rule": "not assessable (no kidney mask)"}
    if not kidney_complete:
        return {"kidney_pole": None, "kidney_pole_rule": "not assessable (kidney cut by the scan edge)"}
    z = _world_z(case.affine, parenchyma.offset, parenchyma.mask)
    lo, hi = float(z.min()), float(z.max())
    zc = float(_world_z(case.affine, lesion.offset, lesion.mask).mean())
    third = (hi - lo) / 3.0
    pole = "lower" if zc < lo + third else "upper" if zc > hi - third else "interpolar"
    return {"kidney_pole": pole, "kidney_pole_rule": "thirds of the kidney's craniocaudal extent (lesion centroid)"}


def exophytic_fraction(lesion: Crop, parenchyma: Crop | None, affine: np.ndarray, n_bins: int = 72) -> float | None:
    """Share (0..1) of the lesion's voxels outside the kidney's parenchymal envelope.

    Per axial slice, around the parenchyma's centroid, the envelope radius in each
    angular bin (5 degrees) is the outermost parenchyma voxel's.  Where the lesion
    reaches beyond the parenchyma (the lesion replaced the kidney's outline there)
    and where no parenchyma lies, the envelope is interpolated around the circle from
    the neighbouring bins, which follows a curved outline (a convex hull would bridge
    the gap with a straight chord and call part of an intrarenal lesion exophytic).
    Lesion voxels beyond the envelope are exophytic.  Distances are in mm in the
    slice plane (through the affine); lesion voxels in slices without parenchyma
    count as outside.
    """
    if parenchyma is None or not parenchyma.mask.any():
        return None
    from ..measure.diameters import inplane_metric

    r2 = inplane_metric(affine)
    outside = total = 0
    for k in range(lesion.shape[2]):
        les = np.argwhere(lesion.mask[:, :, k]) + np.asarray(lesion.offset[:2])
        if les.size == 0:
            continue
        total += len(les)
        kk = lesion.offset[2] + k - parenchyma.offset[2]
        if 0 <= kk < parenchyma.shape[2]:
            par = np.argwhere(parenchyma.mask[:, :, kk]) + np.asarray(parenchyma.offset[:2])
        else:
            par = np.zeros((0, 2))
        if len(par) < 3:
            outside += len(les)
            continue
        centre = par.mean(axis=0)
        p_xy, l_xy = (par - centre) @ r2.T, (les - centre) @ r2.T
        p_r, l_r = np.hypot(*p_xy.T), np.hypot(*l_xy.T)
        p_bin = (np.arctan2(p_xy[:, 1], p_xy[:, 0]) / (2 * np.pi) * n_bins).astype(int) % n_bins
        l_bin = (np.arctan2(l_xy[:, 1], l_xy[:, 0]) / (2 * np.pi) * n_bins).astype(int) % n_bins
        env = np.full(n_bins, -1.0)
        np.maximum.at(env, p_bin, p_r)
        reach = np.full(n_bins, -1.0)
        np.maximum.at(reach, l_bin, l_r)
        known = (env >= 0) & (reach <= env)  # outline drawn by parenchyma, not lesion
        if not known.any():
            outside += len(les)
            continue
        idx = np.flatnonzero(known)
        bins = np.arange(n_bins)
        # Periodic linear interpolation of the envelope across unknown bins.
        env_full = np.interp(bins, np.concatenate([idx - n_bins, idx, idx + n_bins]),
                             np.tile(env[idx], 3))
        outside += int(np.count_nonzero(l_r > env_full[l_bin] + 1e-9))
    return outside / total if total else None
