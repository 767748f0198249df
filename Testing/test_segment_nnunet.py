"""The real nnU-Net v2 path on CPU with the committed tiny model, on phantoms it never saw.

Truth is the phantom's: organ masks and each lesion's voxels.  The model was trained
by ``Testing/models/train_tiny.py`` on random phantoms (other noise, lesions,
spacings, fields of view); these phantoms use a noise seed, phase and lesion set of
their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from segment_helpers import (
    ORGANS,
    TINY_LABELS,
    TINY_MODEL,
    canonical_mask,
    dice,
    lesion_dice,
    needs_model,
    unseen_phantom,
    write_nifti,
)

from RadGPTLogic import cli
from RadGPTLogic.phantom import reorient_array

pytestmark = needs_model
LESION_CLASS = {"liver_lesion": "liver_lesion", "pancreatic_pdac": "pancreatic_lesion",
                "kidney_lesion": "kidney_lesion"}


@pytest.fixture(scope="module")
def run_ras(tmp_path_factory):
    """``radgpt run`` on a venous-phase phantom stored RAS: (phantom, ct path, OUT)."""
    root = tmp_path_factory.mktemp("run_ras")
    phantom = unseen_phantom(size="small")
    ct = write_nifti(root / "PHANTOM_UNSEEN.nii.gz", phantom.ct, phantom.affine)
    out = root / "out"
    code = cli.main(["run", str(ct), "--model", str(TINY_MODEL), "--out", str(out), "--device", "cpu",
                     "--phase", "venous", "--no-progress"])
    assert code == 0
    return phantom, ct, out


def test_run_segments_every_organ_and_lesion_against_the_phantom_truth(run_ras):
    phantom, _ct, out = run_ras
    seg = out / "case" / "segmentations"
    for organ in ORGANS:
        assert dice(canonical_mask(seg / f"{organ}.nii.gz"), phantom.masks[organ]) >= 0.85, organ
    for spec in phantom.lesions:
        assert 2 * max(spec.semi_axes[:2]) > 15  # every lesion here is over 15 mm
        predicted = canonical_mask(seg / f"{LESION_CLASS[spec.mask]}.nii.gz")
        assert lesion_dice(phantom, spec, predicted) >= 0.7, spec


def test_run_reports_the_lesions_it_segmented(run_ras):
    phantom, _ct, out = run_ras
    findings = json.loads((out / "report" / "findings.json").read_text(encoding="utf-8"))
    assert findings["case_id"] == "PHANTOM_UNSEEN"  # named after the CT, not the temporary case folder
    found = findings["lesions"]
    matched = []
    for spec in phantom.lesions:
        organ = {"liver_lesion": "liver", "pancreatic_pdac": "pancreas", "kidney_lesion": "kidney"}[spec.mask]
        truth_ld = 2 * max(spec.semi_axes[:2])
        near = [l for l in found
                if l["organ"] == organ and abs(l["longest_diameter_mm"] - truth_ld) < 0.25 * truth_ld]
        seen = [(l["organ"], l["longest_diameter_mm"]) for l in found]
        assert near, f"{spec.mask} {truth_ld} mm not reported: {seen}"
        matched.append(near[0])
    # every lesion from the model carries the model's confidence, and a review rank
    assert sorted(l["review_rank"] for l in found) == list(range(1, len(found) + 1))
    for lesion in found:
        confidence = lesion["confidence"]
        assert confidence["model"] == "Dataset987_RadGPTTinyPhantom" and confidence["mask_edited"] is False
        assert 0.0 <= confidence["mean_probability"] <= 1.0 and 0.0 <= confidence["share_below_0_5"] <= 1.0
    for lesion in matched:  # the real lesions, well segmented, are confident ones
        assert lesion["confidence"]["mean_probability"] >= 0.7 and not lesion["confidence"]["low"], lesion
    report = (out / "report" / "report.txt").read_text(encoding="utf-8")
    lows = [l for l in found if l["confidence"]["low"]]
    assert report.count("low segmentation confidence; verify on images") == len(lows)
    record = json.loads((out / "case" / "segmentation.json").read_text(encoding="utf-8"))
    assert record["models"][0]["name"] == "Dataset987_RadGPTTinyPhantom"
    assert record["models"][0]["mirroring"] is False  # the checkpoint allows none
    assert record["structures"]["liver"]["includes_lesions"] == ["liver_lesion"]
    assert record["structures"]["liver_lesion"]["probabilities"] == "probabilities/liver_lesion.npz"


def test_masks_equal_what_nnunetv2_predict_writes_for_the_same_ct(run_ras, tmp_path):
    """nnunetv2's own command (``nnUNetv2_predict_from_modelfolder``, which loads the model
    by its trainer name) on the same CT file: voxel for voxel the same labels."""
    _phantom, ct, out = run_ras
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "case_0000.nii.gz").write_bytes(ct.read_bytes())
    command = Path(sys.executable).with_name("nnUNetv2_predict_from_modelfolder")
    proc = subprocess.run([str(command), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "nn"), "-m", str(TINY_MODEL),
                           "-f", "all", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = nib.load(str(tmp_path / "nn" / "case.nii.gz"))
    ours_ct = nib.load(str(out / "case" / "ct.nii.gz"))
    assert np.allclose(reference.affine, ours_ct.affine)
    labels = np.zeros(reference.shape, np.uint8)
    for name, value in TINY_LABELS.items():  # lesions after organs: organ masks hold their lesions
        labels[np.asarray(nib.load(str(out / "case" / "segmentations" / f"{name}.nii.gz")).dataobj) > 0] = value
    expected = np.asarray(reference.dataobj)
    assert np.array_equal(labels, expected), f"{int((labels != expected).sum())} voxels differ"


def test_an_lps_ct_with_other_spacing_gets_masks_on_its_own_grid(tmp_path):
    """Stored LPS (as DICOM-derived files are), 1.6 x 1.6 x 3 mm, cut above and below."""
    phantom = unseen_phantom(spacing=(1.6, 1.6, 3.0), z_range_mm=(-100.0, 90.0), phase="arterial", seed=777)
    ct_lps, affine_lps = reorient_array(phantom.ct, phantom.affine, "LPS")
    ct = write_nifti(tmp_path / "lps.nii.gz", ct_lps, affine_lps)
    case = tmp_path / "case"
    assert cli.main(["segment", str(ct), "--model", str(TINY_MODEL), "--out", str(case), "--device", "cpu",
                     "--no-progress"]) == 0
    liver_file = nib.load(str(case / "segmentations" / "liver.nii.gz"))
    assert nib.aff2axcodes(liver_file.affine) == ("L", "P", "S") and liver_file.shape == ct_lps.shape
    assert np.allclose(liver_file.affine, affine_lps)
    assert (case / "ct.nii.gz").read_bytes() == ct.read_bytes()  # the CT's own file, untouched
    for organ in ORGANS:
        assert dice(canonical_mask(case / "segmentations" / f"{organ}.nii.gz"), phantom.masks[organ]) >= 0.85, organ
    # laterality survives the flip: the left kidney mask lies at x < 0 (RAS)
    left = canonical_mask(case / "segmentations" / "kidney_left.nii.gz")
    x_mm = phantom.affine[0, 0] * np.argwhere(left)[:, 0].mean() + phantom.affine[0, 3]
    assert x_mm < 0
    for spec in phantom.lesions:
        predicted = canonical_mask(case / "segmentations" / f"{LESION_CLASS[spec.mask]}.nii.gz")
        assert lesion_dice(phantom, spec, predicted) >= 0.7, spec


def test_a_dicom_series_is_segmented_and_its_ct_kept_as_nifti(tmp_path):
    """CT given as a DICOM folder (LPS slices written with SimpleITK): ct.nii.gz holds the
    series' HU on its grid and the masks match the phantom."""
    pytest.importorskip("SimpleITK")
    from test_dicom import _write_series

    from RadGPTLogic.io.dicom import read_dicom_series
    from RadGPTLogic.phantom import build_phantom

    phantom = build_phantom(spacing=(2.5, 2.5, 3.0), lesions=[], z_range_mm=(-90.0, 80.0), seed=31)
    lps = np.diag([-1.0, -1.0, 1.0])
    ras_origin = phantom.affine[:3, 3]
    # DICOM slices: rows along +y (P in LPS is -A) handled by direction cosines; keep RAS voxel order,
    # direction cosines in LPS: column direction = -x (R->L flipped), row direction = -y.
    nx, ny, nz = phantom.shape
    hu = [phantom.ct[:, :, k].T for k in range(nz)]  # (rows = y, columns = x)
    positions = [lps @ (ras_origin + np.array([0.0, 0.0, k * 3.0])) for k in range(nz)]
    series = _write_series(tmp_path / "dicom", hu, positions, r=lps @ np.array([1.0, 0, 0]),
                           c=lps @ np.array([0, 1.0, 0]), pixel_spacing=(2.5, 2.5))
    case = tmp_path / "case"
    assert cli.main(["segment", str(series), "--model", str(TINY_MODEL), "--out", str(case), "--device", "cpu",
                     "--no-progress"]) == 0
    volume = read_dicom_series(series)
    ct_file = nib.as_closest_canonical(nib.load(str(case / "ct.nii.gz")))
    assert np.array_equal(np.asarray(ct_file.dataobj), np.asarray(volume.array))
    assert np.array_equal(np.asarray(volume.array), phantom.ct)
    for organ in ORGANS:
        assert dice(canonical_mask(case / "segmentations" / f"{organ}.nii.gz"), phantom.masks[organ]) >= 0.85, organ
