"""Real third-party data (../shared/data/real): TotalSegmentator's own figures as the oracle."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import load_findings, real_path, run_cli

from RadGPTLogic.io.casefolder import load_case
from RadGPTLogic.measure.hu import hu_stats

# TotalSegmentator `total` label values in example_seg_fast (its README / map_to_binary.py).
TS_LABELS = {
    1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach",
    7: "pancreas", 19: "duodenum", 20: "colon", 52: "aorta", 63: "inferior_vena_cava",
    64: "portal_vein_and_splenic_vein",
}


@pytest.fixture(scope="module")
def ct_sm_case(tmp_path_factory):
    """The ct_sm CT with example_seg_fast split into binary masks by plain nibabel code."""
    seg_path = real_path("totalsegmentator", "ct_sm", "example_seg_fast.nii.gz")
    ct_path = real_path("totalsegmentator", "ct_sm", "example_ct_sm.nii.gz")
    case = tmp_path_factory.mktemp("real") / "ct_sm"
    (case / "segmentations").mkdir(parents=True)
    shutil.copy(ct_path, case / "ct.nii.gz")
    seg = nib.load(seg_path)
    labels = np.asarray(seg.dataobj)
    for value, name in TS_LABELS.items():
        nib.save(nib.Nifti1Image((labels == value).astype(np.uint8), seg.affine),
                 case / "segmentations" / f"{name}.nii.gz")
    return case


@pytest.fixture(scope="module")
def ts_stats():
    return json.loads(real_path("totalsegmentator", "ct_sm", "example_seg_fast_statistics.json").read_text())


@pytest.fixture(scope="module")
def ct_sm_findings(ct_sm_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("real_out") / "out"
    run_cli("report", ct_sm_case, "--out", out, "--phase", "non-contrast", check=True)
    return load_findings(out)


def _touches_edge(mask: np.ndarray) -> bool:
    return any(np.take(mask, i, axis=a).any() for a in range(3) for i in (0, -1))


def test_uncut_organs_match_totalsegmentator_volume(ct_sm_findings, ct_sm_case, ts_stats):
    checked = 0
    for ts_name in TS_LABELS.values():
        ours = {"gallbladder": "gall_bladder", "inferior_vena_cava": "postcava"}.get(ts_name, ts_name)
        if ours not in ct_sm_findings["organs"]:
            continue  # vessels are not organs
        raw = np.asarray(nib.load(ct_sm_case / "segmentations" / f"{ts_name}.nii.gz").dataobj) > 0
        entry = ct_sm_findings["organs"][ours]
        if _touches_edge(raw):
            assert entry["complete"] is False and entry["volume_ml"] is None
        else:
            assert entry["complete"] is True
            expected_ml = ts_stats[ts_name]["volume"] / 1000.0
            assert entry["volume_ml"] == pytest.approx(expected_ml, rel=0.01)
            checked += 1
    assert checked >= 2  # the pancreas and the gallbladder lie inside the scan
    assert ct_sm_findings["organs"]["pancreas"]["complete"] is True


def test_cut_organs_are_incomplete(ct_sm_findings):
    for name in ("liver", "spleen", "kidney_left", "kidney_right"):
        entry = ct_sm_findings["organs"][name]
        assert entry["complete"] is False and entry["volume_ml"] is None and entry["enlarged"] is None
        assert entry["mean_hu"] is not None  # attenuation of the imaged part is still reported


def test_whole_mask_mean_hu_matches_totalsegmentator(ct_sm_case, ts_stats):
    """Our HU statistics code on the whole mask reproduces TotalSegmentator's `intensity`."""
    case = load_case(ct_sm_case)
    for name, ts_name in (("pancreas", "pancreas"), ("liver", "liver"), ("spleen", "spleen")):
        crop = case.crop(name)
        stats = hu_stats(case.hu(crop.slices), crop.mask)
        assert stats.mean == pytest.approx(ts_stats[ts_name]["intensity"], abs=0.01)


def test_native_phase_verdicts(ct_sm_findings):
    liver = ct_sm_findings["organs"]["liver"]
    spleen = ct_sm_findings["organs"]["spleen"]
    assert liver["liver_minus_spleen_hu"] == pytest.approx(liver["mean_hu"] - spleen["mean_hu"])
    # Liver ~46 HU, about 12 HU above the spleen: no steatosis by either rule.
    assert liver["steatosis"] is False
    pancreas = ct_sm_findings["organs"]["pancreas"]
    assert pancreas["pancreas_to_spleen_ratio"] == pytest.approx(pancreas["mean_hu"] / spleen["mean_hu"])
    assert pancreas["steatosis"] is (pancreas["pancreas_to_spleen_ratio"] < 0.7)


def test_full_ct_masks_only_lps_file(tmp_path):
    """A real LPS-stored CTA with binary masks (aorta_cta): masks-and-CT load and volumes match the README."""
    src = real_path("totalsegmentator", "aorta_cta")
    case = tmp_path / "aorta"
    (case / "segmentations").mkdir(parents=True)
    shutil.copy(src / "ct_cropped.nii.gz", case / "ct.nii.gz")
    for name in ("aorta", "celiac_trunk", "superior_mesenteric_artery"):
        shutil.copy(src / f"{name}.nii.gz", case / "segmentations" / f"{name}.nii.gz")
    loaded = load_case(case)
    # Independent: voxel count x voxel volume straight from nibabel.
    img = nib.load(src / "aorta.nii.gz")
    expected = np.count_nonzero(np.asarray(img.dataobj)) * abs(np.linalg.det(img.affine[:3, :3])) / 1000
    assert loaded.crop("aorta").count * loaded.voxel_volume_mm3 / 1000 == pytest.approx(expected)
    assert expected == pytest.approx(245.7, abs=0.1)
    assert loaded.crop("celiac_trunk").count > 0
