"""Shared by the segmentation tests: the committed tiny model, unseen phantoms, Dice."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from RadGPTLogic.phantom import LesionSpec, build_phantom

TINY_MODEL = (Path(__file__).resolve().parent / "models" / "Dataset987_RadGPTTinyPhantom"
              / "nnUNetTrainer__nnUNetPlans__3d_tiny")
#: The tiny model's dataset.json "labels" (background included).
TINY_DATASET_LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4, "pancreas": 5,
                       "liver_lesion": 6, "pancreatic_lesion": 7, "kidney_lesion": 8}
#: Label value of each structure class of the tiny model.
TINY_LABELS = {k: v for k, v in TINY_DATASET_LABELS.items() if v}
ORGANS = ("liver", "spleen", "kidney_left", "kidney_right", "pancreas")

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("nnunetv2") is None or not (TINY_MODEL / "fold_all" / "checkpoint_final.pth").is_file(),
    reason="needs nnunetv2 (pip install nnunetv2 torch==2.13.0) and the committed tiny model")


def unseen_lesions() -> list:
    """Four lesions over 15 mm at places and sizes the training script never drew (its
    lesions are random; these are fixed), one per trained lesion class plus a second liver one."""
    return [
        LesionSpec("liver_lesion", (80.0, -10.0, 50.0), (12.0, 10.0, 11.0), 25.0),
        LesionSpec("liver_lesion", (35.0, 55.0, 35.0), (9.0, 8.0, 8.0), 70.0),
        LesionSpec("pancreatic_pdac", (28.0, 18.0, -28.0), (11.0, 9.5, 10.0), 40.0),
        LesionSpec("kidney_lesion", (-78.0, -44.0, -48.0), (10.0, 9.0, 10.0), 15.0),
    ]


def unseen_phantom(**kwargs):
    """A phantom with a noise seed, phase and lesions the training set did not have."""
    kwargs.setdefault("lesions", unseen_lesions())
    kwargs.setdefault("seed", 90210)
    kwargs.setdefault("phase", "venous")
    return build_phantom(**kwargs)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / float(total)


def lesion_truth(phantom, spec) -> np.ndarray:
    """The voxels of one LesionSpec (its component of the phantom's lesion mask)."""
    from scipy import ndimage

    mask = phantom.masks[spec.mask]
    labels, _n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    centre = np.round(np.linalg.solve(phantom.affine[:3, :3], np.array(spec.center) - phantom.affine[:3, 3]))
    return labels == labels[tuple(int(c) for c in centre)]


def lesion_dice(phantom, spec, predicted_canonical: np.ndarray, margin_vox: int = 6) -> float:
    """Dice of one lesion: truth component vs predicted voxels of its class near it."""
    truth = lesion_truth(phantom, spec)
    idx = np.argwhere(truth)
    lo, hi = np.maximum(idx.min(0) - margin_vox, 0), idx.max(0) + 1 + margin_vox
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return dice(truth[box], np.asarray(predicted_canonical, bool)[box])


def canonical_mask(path) -> np.ndarray:
    """A mask file's voxels in the canonical RAS frame (nibabel's closest canonical)."""
    return np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj) > 0


def write_nifti(path, array, affine) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.asarray(affine, float)), str(path))
    return path


def small_fov_ct(path, seed: int = 3) -> Path:
    """A quick CT for runner mechanics: a 120 x 120 x 80 mm box of the phantom around the
    liver (one sliding-window tile), RAS."""
    phantom = build_phantom(size="small", seed=seed, lesions=[])
    box = (slice(110, 170), slice(60, 120), slice(40, 72))  # canonical voxels, 2 x 2 x 2.5 mm
    affine = phantom.affine.copy()
    affine[:3, 3] = phantom.affine[:3, :3] @ np.array([b.start for b in box]) + phantom.affine[:3, 3]
    return write_nifti(path, phantom.ct[box], affine)
