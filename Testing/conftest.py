"""Shared fixtures: small hand-built cases (independent of the phantom module) and real-data paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "real"


def real_path(*parts) -> Path:
    """Path under ../shared/data/real; skips the test when the data is absent."""
    p = SHARED_REAL.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p


def run_cli(*args, check=False):
    """Run ``radgpt`` in a subprocess (the real console entry point's module)."""
    proc = subprocess.run(
        [sys.executable, "-m", "RadGPTLogic.cli", *map(str, args)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"radgpt {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def ellipsoid(shape, spacing, center_mm, semi_mm, angle_deg=0.0):
    """Bool array: voxel centres (i*si, j*sj, k*sk) inside an ellipsoid rotated about k (mm)."""
    i, j, k = (np.arange(n) * s for n, s in zip(shape, spacing))
    x = i[:, None, None] - center_mm[0]
    y = j[None, :, None] - center_mm[1]
    z = k[None, None, :] - center_mm[2]
    t = np.deg2rad(angle_deg)
    u = x * np.cos(t) + y * np.sin(t)
    v = -x * np.sin(t) + y * np.cos(t)
    return (u / semi_mm[0]) ** 2 + (v / semi_mm[1]) ** 2 + (z / semi_mm[2]) ** 2 <= 1.0


def simple_case_arrays(shape=(60, 50, 24), spacing=(5.0, 5.0, 7.5)):
    """A small abdomen-like case in the canonical RAS frame (axis 0 -> R, 1 -> A, 2 -> S).

    Liver (60 HU, about 1.2 L) with one lesion (20 HU), spleen (50 HU, about 115 mL), a
    kidney_left (about 60 mL: small) with a cyst; coarse voxels keep the arrays tiny while
    the organs have plausible sizes.  Returns (ct int16, affine, masks dict of uint8).
    """
    rng = np.random.default_rng(0)
    ct = np.full(shape, -100, np.int16)
    s = spacing[0] / 2.0  # geometry below is in units of the original 2 mm grid
    liver = ellipsoid(shape, spacing, (80 * s, 50 * s, 36 * s), (30 * s, 25 * s, 24 * s))
    lesion = ellipsoid(shape, spacing, (84 * s, 52 * s, 36 * s), (9 * s, 6 * s, 6 * s), angle_deg=30)
    spleen = ellipsoid(shape, spacing, (20 * s, 60 * s, 36 * s), (12 * s, 10 * s, 15 * s))
    kidney = ellipsoid(shape, spacing, (25 * s, 25 * s, 30 * s), (8 * s, 8 * s, 14 * s))
    cyst = ellipsoid(shape, spacing, (25 * s, 25 * s, 33 * s), (5 * s, 5 * s, 5 * s))
    ct[liver] = 60
    ct[spleen] = 50
    ct[kidney] = 35
    ct[lesion & liver] = 20
    ct[cyst] = 5
    ct = (ct + rng.normal(0, 3, shape)).astype(np.int16)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-60.0 * s, -40.0 * s, -30.0 * s)
    masks = {
        "liver": liver, "liver_lesion": lesion & liver, "spleen": spleen,
        "kidney_left": kidney, "kidney_cyst": cyst & kidney,
    }
    return ct, affine, {k: v.astype(np.uint8) for k, v in masks.items()}


def reorient_arrays(ct, affine, masks, axcodes=("R", "A", "S"), order=None):
    """Store the same physical voxels with other axis codes and/or axis order (exact)."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

    target = axcodes2ornt(axcodes)
    if order is not None:
        target = target[list(order)]
    tf = ornt_transform(axcodes2ornt(("R", "A", "S")), target)
    new_affine = affine @ inv_ornt_aff(tf, ct.shape)
    return (
        apply_orientation(ct, tf),
        new_affine,
        {k: np.ascontiguousarray(apply_orientation(v, tf)) for k, v in masks.items()},
    )


def write_case(root: Path, ct, affine, masks, case_id="CASE_0001", with_ct=True) -> Path:
    case = root / case_id
    (case / "segmentations").mkdir(parents=True, exist_ok=True)
    if with_ct and ct is not None:
        nib.save(nib.Nifti1Image(np.ascontiguousarray(ct), affine), case / "ct.nii.gz")
    for name, arr in masks.items():
        nib.save(nib.Nifti1Image(np.ascontiguousarray(arr), affine), case / "segmentations" / f"{name}.nii.gz")
    return case


@pytest.fixture
def simple_case(tmp_path) -> Path:
    ct, affine, masks = simple_case_arrays()
    return write_case(tmp_path, ct, affine, masks)


def load_findings(out_dir: Path) -> dict:
    return json.loads((out_dir / "findings.json").read_text(encoding="utf-8"))


def without_provenance(findings: dict) -> dict:
    return {k: v for k, v in findings.items() if k != "provenance"}
