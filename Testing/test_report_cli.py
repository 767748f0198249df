"""`radgpt report` end to end: contract keys, bad inputs, orientation invariance, warnings."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import (
    load_findings,
    reorient_arrays,
    run_cli,
    simple_case_arrays,
    without_provenance,
    write_case,
)


def test_report_writes_contract_outputs(simple_case, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("report", simple_case, "--out", out, "--phase", "non-contrast", check=True)
    assert "2 lesion(s)" in proc.stdout
    f = load_findings(out)
    assert {"findings.json", "report.txt", "report.html"} <= {p.name for p in out.iterdir()}
    assert f["schema_version"] == 1 and f["case_id"] == "CASE_0001" and f["phase"] == "non-contrast"
    assert set(f["organs"]) == {"liver", "spleen", "kidney_left"}
    for organ in f["organs"].values():
        assert {"volume_ml", "mean_hu", "complete", "enlarged", "steatosis"} <= set(organ)
    assert [l["id"] for l in f["lesions"]] == ["liver_lesion_1", "kidney_cyst_1"]
    liver_lesion, cyst = f["lesions"]
    assert liver_lesion["organ"] == "liver" and liver_lesion["kind"] == "lesion" and liver_lesion["side"] is None
    assert cyst["organ"] == "kidney" and cyst["kind"] == "cyst" and cyst["side"] == "left"
    assert liver_lesion["attenuation"] == "hypo"  # 20 HU in a 60 HU liver
    assert liver_lesion["mean_hu"] == pytest.approx(20, abs=2)
    assert f["organs"]["liver"]["mean_hu"] == pytest.approx(60, abs=1.5)  # eroded, lesion excluded
    assert f["organs"]["liver"]["steatosis"] is False
    for key in ("provenance",):
        assert f[key]["inputs"]["ct"][0]["sha256"]
    text = (out / "report.txt").read_text(encoding="utf-8")
    assert "FINDINGS:" in text and "IMPRESSION:" in text


def test_phase_controls_steatosis(simple_case, tmp_path):
    run_cli("report", simple_case, "--out", tmp_path / "a", "--phase", "arterial", check=True)
    assert load_findings(tmp_path / "a")["organs"]["liver"]["steatosis"] is None
    run_cli("report", simple_case, "--out", tmp_path / "b", check=True)
    f = load_findings(tmp_path / "b")
    assert f["phase"] == "unknown" and f["organs"]["liver"]["steatosis"] is None


@pytest.mark.parametrize(
    "axcodes,order",
    [(("L", "P", "S"), None), (("R", "A", "S"), (2, 0, 1)), (("L", "A", "S"), (1, 2, 0))],
)
def test_orientation_invariance(tmp_path, axcodes, order):
    """The same physical case stored in LPS / with permuted axes gives identical findings."""
    ct, affine, masks = simple_case_arrays()
    ref = write_case(tmp_path / "ras", ct, affine, masks)
    run_cli("report", ref, "--out", tmp_path / "o_ras", check=True)
    ct2, aff2, masks2 = reorient_arrays(ct, affine, masks, axcodes, order)
    assert ct2.shape != ct.shape or not np.array_equal(aff2, affine)
    other = write_case(tmp_path / "other", ct2, aff2, masks2)
    run_cli("report", other, "--out", tmp_path / "o_other", check=True)
    a, b = load_findings(tmp_path / "o_ras"), load_findings(tmp_path / "o_other")
    assert without_provenance(a) == without_provenance(b)


def test_masks_in_other_orientation_than_ct(tmp_path):
    """CT in RAS, masks stored in LPS: same findings as all-RAS."""
    ct, affine, masks = simple_case_arrays()
    ref = write_case(tmp_path / "ras", ct, affine, masks)
    _, aff2, masks2 = reorient_arrays(ct, affine, masks, ("L", "P", "S"))
    mixed = write_case(tmp_path / "mixed", ct, affine, {})
    for name, arr in masks2.items():
        nib.save(nib.Nifti1Image(arr, aff2), mixed / "segmentations" / f"{name}.nii.gz")
    run_cli("report", ref, "--out", tmp_path / "o1", check=True)
    run_cli("report", mixed, "--out", tmp_path / "o2", check=True)
    assert without_provenance(load_findings(tmp_path / "o1")) == without_provenance(load_findings(tmp_path / "o2"))


def test_slice_index_counts_along_the_ct_files_own_axis(tmp_path):
    """A CT stored inferior-to-superior reversed (R, A, I): slice_index follows the file."""
    ct, affine, masks = simple_case_arrays()
    run_cli("report", write_case(tmp_path / "ras", ct, affine, masks), "--out", tmp_path / "o1", check=True)
    ct2, aff2, masks2 = reorient_arrays(ct, affine, masks, ("R", "A", "I"))
    run_cli("report", write_case(tmp_path / "rai", ct2, aff2, masks2), "--out", tmp_path / "o2", check=True)
    l1 = load_findings(tmp_path / "o1")["lesions"][0]
    l2 = load_findings(tmp_path / "o2")["lesions"][0]
    assert l2["slice_index"] == ct.shape[2] - 1 - l1["slice_index"]
    assert l1["longest_diameter_mm"] == l2["longest_diameter_mm"]


def test_masks_only_mode(tmp_path):
    ct, affine, masks = simple_case_arrays()
    case = write_case(tmp_path, None, affine, masks, with_ct=False)
    run_cli("report", case, "--out", tmp_path / "out", check=True)
    f = load_findings(tmp_path / "out")
    assert f["organs"]["liver"]["mean_hu"] is None and f["organs"]["liver"]["volume_ml"] > 0
    assert f["lesions"][0]["mean_hu"] is None and f["lesions"][0]["attenuation"] is None
    assert f["lesions"][0]["longest_diameter_mm"] > 0


def test_empty_lesion_mask_is_success_with_zero_lesions(tmp_path):
    ct, affine, masks = simple_case_arrays()
    masks["liver_lesion"][:] = 0
    del masks["kidney_cyst"]
    case = write_case(tmp_path, ct, affine, masks)
    proc = run_cli("report", case, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert load_findings(tmp_path / "out")["lesions"] == []


def test_unknown_structure_is_a_warning(tmp_path):
    ct, affine, masks = simple_case_arrays()
    masks["flux_capacitor"] = masks["spleen"]
    masks["vertebrae_L1"] = masks["spleen"]  # known but unused: no warning
    case = write_case(tmp_path, ct, affine, masks)
    proc = run_cli("report", case, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "flux_capacitor" in proc.stderr and "warning" in proc.stderr
    assert "vertebrae_L1" not in proc.stderr
    f = load_findings(tmp_path / "out")
    assert any("flux_capacitor" in w for w in f["warnings"])
    assert f["provenance"]["ignored_structures"] == ["vertebrae_L1"]


def test_sub_threshold_components_are_counted(tmp_path):
    ct, affine, masks = simple_case_arrays()
    masks["liver_lesion"][30, 10, 5] = 1  # one 12 mm^3 voxel... at 2x2x3 mm = 12 mm^3: kept
    masks["liver_lesion"][35, 10, 5] = 1
    big = dict(masks)
    case = write_case(tmp_path / "a", ct, affine, big)
    run_cli("report", case, "--out", tmp_path / "oa", check=True)
    f = load_findings(tmp_path / "oa")
    # Two single voxels of 12 mm^3 are above the 10 mm^3 floor: they are lesions.
    assert sum(l["mask"] == "liver_lesion" for l in f["lesions"]) == 3
    # On a finer grid the same floor drops single voxels but counts them.
    fine = affine.copy()
    fine[:3, :3] = np.diag([1.0, 1.0, 1.0])
    case = write_case(tmp_path / "b", ct, fine, big)
    run_cli("report", case, "--out", tmp_path / "ob", check=True)
    f = load_findings(tmp_path / "ob")
    assert sum(l["mask"] == "liver_lesion" for l in f["lesions"]) == 1
    sub = f["sub_threshold_lesions"]
    assert sub == [{"mask": "liver_lesion", "organ": "liver", "count": 2, "total_volume_ml": 0.002, "floor_mm3": 10.0}]
    assert "below 10 mm3" in (tmp_path / "ob" / "report.txt").read_text(encoding="utf-8")


# ---------------------------------------------------------------- bad inputs
def _assert_clean_failure(proc, out_dir, must_name):
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert must_name in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert not out_dir.exists() or not any(out_dir.iterdir())
    assert not list(out_dir.parent.glob(f".{out_dir.name}.tmp-*"))


def test_grid_mismatch_is_an_error(simple_case, tmp_path):
    bad = simple_case / "segmentations" / "spleen.nii.gz"
    img = nib.load(bad)
    aff = img.affine.copy()
    aff[0, 3] += 0.5
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), aff), bad)
    out = tmp_path / "out"
    proc = run_cli("report", simple_case, "--out", out)
    _assert_clean_failure(proc, out, "spleen.nii.gz")
    assert "grid" in proc.stderr
    # With --resample the same case runs.
    assert run_cli("report", simple_case, "--out", out, "--resample").returncode == 0


def test_shape_mismatch_is_an_error(simple_case, tmp_path):
    bad = simple_case / "segmentations" / "liver.nii.gz"
    img = nib.load(bad)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-1], img.affine), bad)
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("report", simple_case, "--out", out), out, "liver.nii.gz")


def test_corrupt_gzip(simple_case, tmp_path):
    bad = simple_case / "segmentations" / "liver_lesion.nii.gz"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("report", simple_case, "--out", out), out, "liver_lesion.nii.gz")
    bad.write_bytes(data[:10] + bytes(200) + data[210:])
    _assert_clean_failure(run_cli("report", simple_case, "--out", out), out, "liver_lesion.nii.gz")


def test_missing_segmentations_folder(tmp_path):
    case = tmp_path / "CASE"
    case.mkdir()
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("report", case, "--out", out), out, "segmentations")


def test_nonexistent_case_dir(tmp_path):
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("report", tmp_path / "nope", "--out", out), out, "nope")


def test_nan_in_ct(tmp_path):
    ct, affine, masks = simple_case_arrays()
    ct = ct.astype(np.float32)
    ct[3, 3, 3] = np.nan
    case = write_case(tmp_path, ct, affine, masks)
    out = tmp_path / "out"
    proc = run_cli("report", case, "--out", out)
    _assert_clean_failure(proc, out, "ct.nii.gz")
    assert "NaN" in proc.stderr


def test_non_binary_mask(tmp_path):
    ct, affine, masks = simple_case_arrays()
    masks["liver"] = masks["liver"] * 2 + masks["liver_lesion"]  # a multi-label map by mistake
    case = write_case(tmp_path, ct, affine, masks)
    out = tmp_path / "out"
    proc = run_cli("report", case, "--out", out)
    _assert_clean_failure(proc, out, "liver.nii.gz")
    assert "binary" in proc.stderr


def test_existing_out_dir_is_not_clobbered_on_failure(simple_case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (simple_case / "ct.nii.gz").write_bytes(b"\x1f\x8b garbage")
    proc = run_cli("report", simple_case, "--out", out)
    assert proc.returncode != 0 and "ct.nii.gz" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_debug_shows_traceback(tmp_path):
    proc = run_cli("report", tmp_path / "nope", "--out", tmp_path / "o", "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_institution_templates_option(simple_case, tmp_path):
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "report.txt.j2").write_text(
        "ST. ELSEWHERE {{ findings.case_id }}: {{ findings.lesions | length }} lesions\n")
    run_cli("report", simple_case, "--out", tmp_path / "o1", "--templates", tpl, check=True)
    assert (tmp_path / "o1" / "report.txt").read_text(encoding="utf-8") == "ST. ELSEWHERE CASE_0001: 2 lesions\n"
    assert "FINDINGS" in (tmp_path / "o1" / "report.md").read_text().upper()  # shipped template fills in
    out = tmp_path / "o2"
    _assert_clean_failure(run_cli("report", simple_case, "--out", out, "--templates", tmp_path / "nope"), out, "nope")
    (tpl / "report.txt.j2").write_text("{% if %}broken\n")
    proc = run_cli("report", simple_case, "--out", out, "--templates", tpl)
    _assert_clean_failure(proc, out, "report.txt.j2")


def test_rerun_removes_outputs_made_from_changed_findings(simple_case, tmp_path):
    from RadGPTLogic.io.atomic import write_files_atomically

    out = tmp_path / "out"
    run_cli("report", simple_case, "--out", out, check=True)
    write_files_atomically(out, {"narrative.txt": "old narrative"})  # as `radgpt narrative` writes it
    (out / "derived").mkdir()
    (out / "derived" / "my_own_mask.nii.gz").write_bytes(b"mine")  # the user's files are never touched
    (out / "notes.txt").write_text("my notes")
    run_cli("report", simple_case, "--out", out, check=True)  # same findings: narrative kept
    assert (out / "narrative.txt").read_text(encoding="utf-8") == "old narrative"
    mask = simple_case / "segmentations" / "spleen.nii.gz"
    img = nib.load(mask)
    arr = np.asarray(img.dataobj).copy()
    arr[arr.nonzero()[0][0]] = 0  # erase one slab: the spleen volume changes
    nib.save(nib.Nifti1Image(arr, img.affine), mask)
    proc = run_cli("report", simple_case, "--out", out, check=True)
    assert not (out / "narrative.txt").exists()
    assert "narrative.txt: removed" in proc.stderr
    assert (out / "derived" / "my_own_mask.nii.gz").read_bytes() == b"mine"
    assert (out / "notes.txt").read_text(encoding="utf-8") == "my notes"
    assert oct((out).stat().st_mode & 0o777) != oct(0o700)
