"""Findings against the phantom's analytic truth: diameters, volumes, counts, sides, organs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_findings, run_cli, without_provenance

from RadGPTLogic.phantom import LesionSpec, build_phantom, default_lesions, write_case


def _report(case_dir, out, phase="non-contrast"):
    run_cli("report", case_dir, "--out", out, "--phase", phase, check=True)
    return load_findings(out)


def _pairs(findings, truth):
    """Match each truth lesion to the finding of the same mask and rank (largest voxel count first)."""
    pairs = []
    for mask in sorted({t["mask"] for t in truth["lesions"]}):
        ts = sorted((t for t in truth["lesions"] if t["mask"] == mask), key=lambda t: -t["voxel_volume_ml"])
        fs = [f for f in findings["lesions"] if f["mask"] == mask]
        fs.sort(key=lambda f: int(f["id"].rsplit("_", 1)[1]))
        assert len(fs) == len(ts), f"{mask}: {len(fs)} findings for {len(ts)} true lesions"
        pairs += list(zip(fs, ts))
    return pairs


def _check_against_truth(findings, truth, spacing):
    tol = 1.5 * max(spacing[:2])
    assert len(findings["lesions"]) == len(truth["lesions"])
    for f, t in _pairs(findings, truth):
        assert f["organ"] == t["organ"] and f["kind"] == t["kind"] and f["side"] == t["side"]
        assert abs(f["longest_diameter_mm"] - t["longest_diameter_mm"]) <= tol, (f["id"], f["longest_diameter_mm"])
        assert abs(f["perpendicular_diameter_mm"] - t["perpendicular_diameter_mm"]) <= tol, f["id"]
        if t["longest_diameter_mm"] >= 10:
            assert f["volume_ml"] == pytest.approx(t["volume_ml"], rel=0.06)
        assert f["volume_ml"] == pytest.approx(t["voxel_volume_ml"], rel=1e-6)  # float32 header spacing
        assert f["in_organ_fraction"] == pytest.approx(1.0)
    return True


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    phantom = build_phantom(size="small")
    case = write_case(phantom, root, case_id="P1")
    return phantom, json.loads((case / "truth.json").read_text(encoding="utf-8")), _report(case, root / "out")


def test_default_phantom_lesions(default_run):
    phantom, truth, f = default_run
    assert _check_against_truth(f, truth, phantom.spacing)
    # Order: liver, pancreas, kidney; largest first within each organ.
    organs = [l["organ"] for l in f["lesions"]]
    assert organs == sorted(organs, key=["liver", "pancreas", "kidney"].index)
    for organ in ("liver", "kidney"):
        vols = [l["volume_ml"] for l in f["lesions"] if l["organ"] == organ]
        assert vols == sorted(vols, reverse=True)


def test_default_phantom_slice_and_attenuation(default_run):
    phantom, truth, f = default_run
    sz = phantom.spacing[2]
    for finding, t in _pairs(f, truth):
        # The LD lies in an axial slice through (or next to) the lesion centre.
        z = phantom.affine[2, 2] * finding["canonical_slice"] + phantom.affine[2, 3]
        assert abs(z - t["center_ras_mm"][2]) <= sz + 1e-6
        assert abs(finding["slice_index"] - t["slice_index"]) <= 1
        organ_hu = truth["organs"][t["organ_mask"] if t["organ"] != "kidney" else f"kidney_{t['side']}"]["hu"]
        if t["hu"] <= organ_hu - 15:
            assert finding["attenuation"] == "hypo"
        assert finding["mean_hu"] == pytest.approx(t["hu"], abs=3)


def test_default_phantom_organs(default_run):
    phantom, truth, f = default_run
    for name, t in truth["organs"].items():
        if name not in f["organs"]:
            continue
        entry = f["organs"][name]
        assert entry["complete"] == t["complete"]
        if t["complete"]:
            assert entry["volume_ml"] == pytest.approx(t["voxel_volume_ml"], rel=1e-6)  # float32 header spacing
            assert entry["enlarged"] in ("no", None)
        else:
            assert entry["volume_ml"] is None
        assert entry["mean_hu"] == pytest.approx(t["hu"], abs=1.5)  # eroded ROI: no rim or lesion bias
    assert f["organs"]["liver"]["steatosis"] is False


@pytest.mark.parametrize("spacing", [(0.7, 0.7, 5.0), (1.6, 0.9, 2.0)])
def test_rotated_lesions_on_anisotropic_grids(tmp_path, spacing):
    """Lesions rotated in-plane at many angles, on grids with thick slices or unequal in-plane spacing."""
    base = default_lesions()
    centre = {l.mask: l.center for l in base[::-1]}  # first lesion of each mask wins
    big_liver, small_liver = [l.center for l in base if l.mask == "liver_lesion"][:2]
    lesions = [
        LesionSpec("liver_lesion", big_liver, (15.0, 9.0, 14.0), angle_deg=20.0),
        LesionSpec("liver_lesion", small_liver, (9.0, 6.0, 14.0), angle_deg=35.0),
        LesionSpec("kidney_lesion", centre["kidney_lesion"], (9.0, 6.0, 12.0), angle_deg=75.0),
        LesionSpec("kidney_cyst", centre["kidney_cyst"], (8.0, 5.5, 12.0), angle_deg=130.0),
        LesionSpec("pancreatic_pdac", centre["pancreatic_pdac"], (12.0, 8.0, 12.0), angle_deg=160.0),
    ]
    phantom = build_phantom(size="small", spacing=spacing, lesions=lesions)
    case = write_case(phantom, tmp_path, case_id="P2")
    truth = json.loads((case / "truth.json").read_text(encoding="utf-8"))
    f = _report(case, tmp_path / "out")
    assert _check_against_truth(f, truth, spacing)


def test_phantom_orientation_invariance(tmp_path):
    """The phantom stored as RAS, LPS and LPS with permuted axes gives identical findings."""
    phantom = build_phantom(size="small", seed=3)
    results = []
    for i, (codes, order) in enumerate([("RAS", None), ("LPS", None), ("LPS", (2, 0, 1))]):
        case = write_case(phantom, tmp_path / str(i), case_id="P3", axcodes=codes, axis_order=order)
        results.append(without_provenance(_report(case, tmp_path / f"out{i}")))
    assert results[0] == results[1] == results[2]
    assert len(results[0]["lesions"]) == 5


def test_scan_edge_makes_organs_incomplete(tmp_path):
    phantom = build_phantom(size="small", z_range_mm=(-60.0, 60.0))
    case = write_case(phantom, tmp_path, case_id="P4")
    truth = json.loads((case / "truth.json").read_text(encoding="utf-8"))
    f = _report(case, tmp_path / "out")
    assert truth["organs"]["liver"]["complete"] is False
    assert f["organs"]["liver"]["complete"] is False and f["organs"]["liver"]["volume_ml"] is None
    assert any(item["what"] == "liver volume" for item in f["not_assessable"])
    assert "Liver volume: organ touches the edge of the scan" in (tmp_path / "out" / "report.txt").read_text()


def test_venous_phase_possible_steatosis_flag(tmp_path):
    phantom = build_phantom(size="small", phase="venous")
    case = write_case(phantom, tmp_path, case_id="P5")
    f = _report(case, tmp_path / "out", phase="venous")
    liver = f["organs"]["liver"]
    assert liver["steatosis"] is None
    assert liver["possible_steatosis"] is (liver["mean_hu"] < 80)


def test_steatosis_on_a_fatty_liver(tmp_path):
    """Lower the liver's HU in the CT: non-contrast steatosis must be called."""
    import nibabel as nib

    phantom = build_phantom(size="small")
    case = write_case(phantom, tmp_path, case_id="P6")
    img = nib.load(case / "ct.nii.gz")
    ct = np.asarray(img.dataobj).copy()
    liver = np.asarray(nib.load(case / "segmentations" / "liver.nii.gz").dataobj) > 0
    ct[liver] -= 30  # 60 -> 30 HU: < 40 HU and 20 HU below the spleen
    nib.save(nib.Nifti1Image(ct, img.affine), case / "ct.nii.gz")
    f = _report(case, tmp_path / "out")
    assert f["organs"]["liver"]["steatosis"] is True
    assert f["organs"]["liver"]["liver_minus_spleen_hu"] < -10
