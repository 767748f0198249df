"""Inputs that used to give a confident wrong report with exit 0: each is now an error naming the
file, or a finding that says "check the masks"."""

from __future__ import annotations

import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import load_findings, real_path, run_cli, simple_case_arrays, write_case


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("radgpt: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ------------------------------------------------------------------- label tables

def test_amos_labels_read_with_the_total_table_are_flagged(tmp_path):
    seg = real_path("amos", "amos_0013_label.nii.gz")
    case = tmp_path / "case"
    run_cli("import", seg, "--labels", "total", "--out", case, check=True)
    proc = run_cli("report", case, "--out", tmp_path / "out", check=True)
    f = load_findings(tmp_path / "out")
    flagged = {c["structure"] for c in f["mask_checks"]}
    # AMOS 5 esophagus -> "liver", 7 stomach -> "pancreas", 8 aorta / 9 IVC -> "adrenal glands"
    assert {"liver", "pancreas", "adrenal_gland_right", "adrenal_gland_left"} <= flagged
    pancreas = next(c for c in f["mask_checks"] if c["structure"] == "pancreas")
    assert "implausible for a pancreas" in pancreas["problem"]
    report = (tmp_path / "out" / "report.txt").read_text(encoding="utf-8")
    assert report.index("CHECK THE MASKS:") < report.index("FINDINGS:")
    assert report.split("IMPRESSION:")[1].strip().startswith("1. Check the masks:")
    assert "check the masks" in proc.stderr
    # The right table: nothing to check.
    run_cli("import", seg, "--labels", "amos", "--out", tmp_path / "good", check=True)
    run_cli("report", tmp_path / "good", "--out", tmp_path / "good_out", check=True)
    assert load_findings(tmp_path / "good_out")["mask_checks"] == []


def test_embedded_names_disagreeing_with_labels_is_an_error(tmp_path):
    seg = real_path("totalsegmentator", "ct_sm", "example_seg.nii.gz")
    proc = run_cli("import", seg, "--labels", "amos", "--out", tmp_path / "case")
    _one_line_error(proc, str(seg), "disagree", "amos")
    assert not (tmp_path / "case").exists()
    run_cli("import", seg, "--labels", "total", "--out", tmp_path / "ok", check=True)  # agreeing table: fine


def test_a_label_value_missing_from_a_published_table_is_an_error(tmp_path):
    ct, affine, masks = simple_case_arrays()
    lab = np.zeros(ct.shape, np.uint8)
    lab[masks["liver"] > 0] = 1
    lab[masks["spleen"] > 0] = 16  # AMOS has 15 labels
    nib.save(nib.Nifti1Image(lab, affine), tmp_path / "lab.nii.gz")
    _one_line_error(run_cli("import", tmp_path / "lab.nii.gz", "--labels", "amos", "--out", tmp_path / "c"),
                    "label value 16", "amos")


def test_organs_on_the_wrong_side_are_flagged(tmp_path):
    ct, affine, masks = simple_case_arrays()
    masks["liver"], masks["spleen"] = masks["spleen"], masks["liver"]  # swapped names
    masks.pop("liver_lesion")
    run_cli("report", write_case(tmp_path, ct, affine, masks), "--out", tmp_path / "out", check=True)
    checks = load_findings(tmp_path / "out")["mask_checks"]
    assert any(c["structure"] == "liver" and c["check"] == "side" for c in checks)


def test_air_under_an_organ_name_is_flagged(tmp_path):
    ct, affine, masks = simple_case_arrays()
    ct = ct.copy()
    ct[masks["spleen"] > 0] = -850  # lung saved as "spleen"
    run_cli("report", write_case(tmp_path, ct, affine, masks), "--out", tmp_path / "out", check=True)
    (check,) = [c for c in load_findings(tmp_path / "out")["mask_checks"] if c["check"] == "attenuation"]
    assert check["structure"] == "spleen" and "-850 HU" in check["problem"]


# ---------------------------------------------------------------- case folder files

@pytest.fixture
def case_dir(tmp_path):
    ct, affine, masks = simple_case_arrays()
    return write_case(tmp_path, ct, affine, masks)


def _broken_link(path):
    os.symlink(path.parent / "nowhere.nii.gz", path)


def _link_loop(path):
    os.symlink(path.name, path)


def _fifo(path):
    os.mkfifo(path)


def _folder(path):
    path.mkdir()


@pytest.mark.parametrize("make, words", [(_broken_link, "broken symbolic link"), (_link_loop, "symbolic link loop"),
                                         (_fifo, "not a regular file"), (_folder, "is a folder")])
@pytest.mark.parametrize("which", ["mask", "ct"])
def test_unreadable_entries_are_named(case_dir, tmp_path, make, words, which):
    target = case_dir / "segmentations" / "pancreas.nii.gz" if which == "mask" else case_dir / "ct.nii.gz"
    if target.exists():
        target.unlink()
    make(target)
    proc = run_cli("report", case_dir, "--out", tmp_path / "out")
    _one_line_error(proc, str(target), words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("first, second", [("gall_bladder.nii.gz", "gallbladder.nii.gz"),
                                           ("spleen.nii.gz", "spleen.nii")])
def test_two_files_for_one_structure_are_an_error(case_dir, tmp_path, first, second):
    seg = case_dir / "segmentations"
    src = seg / "spleen.nii.gz"
    if first != "spleen.nii.gz":
        shutil.copy(src, seg / first)
    img = nib.load(src)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine), seg / second)
    line = _one_line_error(run_cli("report", case_dir, "--out", tmp_path / "out"), "keep one file per structure")
    assert first in line and second in line


def test_a_case_with_no_known_structure_is_an_error(case_dir, tmp_path):
    seg = case_dir / "segmentations"
    for p in list(seg.iterdir()):
        p.rename(seg / ("organ_" + p.name))
    _one_line_error(run_cli("report", case_dir, "--out", tmp_path / "out"), "no mask has a known structure name",
                    "organ_liver.nii.gz")


def test_other_files_are_named_in_a_warning(case_dir, tmp_path):
    (case_dir / "segmentations" / "README.txt").write_text("notes")
    proc = run_cli("report", case_dir, "--out", tmp_path / "out", check=True)
    assert "README.txt: not a mask file" in proc.stderr


# ---------------------------------------------------------------------- impressions

def test_no_lesion_mask_means_not_assessed(tmp_path):
    seg = real_path("totalsegmentator", "ct_sm", "example_seg.nii.gz")
    ct = real_path("totalsegmentator", "ct_sm", "example_ct_sm.nii.gz")
    run_cli("import", seg, "--ct", ct, "--out", tmp_path / "case", check=True)
    run_cli("report", tmp_path / "case", "--out", tmp_path / "out", "--phase", "non-contrast", check=True)
    f = load_findings(tmp_path / "out")
    # TotalSegmentator `total` has kidney cysts, no liver or pancreas lesion class
    assert f["lesions_assessed"] == {"liver": False, "pancreas": False, "kidney": True}
    impression = (tmp_path / "out" / "report.txt").read_text(encoding="utf-8").split("IMPRESSION:")[1]
    assert "Liver and pancreas not assessed for lesions (no lesion mask given)." in impression
    assert "No kidney lesion in the masks provided." in impression


def test_many_sub_threshold_components_reach_the_impression():
    from RadGPTLogic.case import Case
    from RadGPTLogic.engine import Engine
    from RadGPTLogic.report.structured import render_text

    grid = (90, 90, 70)  # 1 mm voxels: a single voxel (1 mm3) is below the 10 mm3 floor
    liver = np.zeros(grid, bool)
    liver[5:85, 5:85, 5:65] = True  # 384 mL
    lesion = np.zeros(grid, bool)
    lesion[8:82:3, 8:82:3, 8:62:3] = True  # 25 x 25 x 18 = 11,250 isolated voxels
    f = Engine(Case.from_arrays("S", np.eye(4), {"liver": liver, "liver_lesion": lesion})).compute().to_dict()
    assert f["lesions"] == [] and f["sub_threshold_lesions"][0]["count"] == 25 * 25 * 18
    impression = render_text(f).split("IMPRESSION:")[1]
    assert "Not measured: 11250 liver lesion components below 10 mm3" in impression
    assert "No liver lesion" not in impression


# ---------------------------------------------------------------------- text defects

def test_a_right_kidney_lesion_is_listed_under_the_right_kidney():
    from RadGPTLogic.case import Case
    from RadGPTLogic.engine import Engine
    from RadGPTLogic.phantom import build_phantom, default_lesions
    from RadGPTLogic.report.structured import render_text

    cyst = [l for l in default_lesions() if l.mask == "kidney_cyst"]  # in the right kidney
    ph = build_phantom(size="small", lesions=cyst)
    f = Engine(Case.from_arrays("K", ph.affine, ph.masks, ph.ct), "non-contrast").compute().to_dict()
    assert f["lesions"][0]["side"] == "right"
    lines = render_text(f).split("FINDINGS:")[1].split("\n\n")[0].splitlines()
    right = next(n for n, line in enumerate(lines) if line.startswith("Right kidney:"))
    left = next(n for n, line in enumerate(lines) if line.startswith("Left kidney:"))
    cyst_line = next(n for n, line in enumerate(lines) if "Kidney cyst 1" in line)
    assert right < cyst_line < left


def test_small_organs_use_the_lower_limit(tmp_path):
    from RadGPTLogic.case import Case
    from RadGPTLogic.engine import Engine
    from RadGPTLogic.report.structured import render_text

    grid = (40, 40, 40)
    pancreas = np.zeros(grid, bool)
    pancreas[10:30, 10:30, 10:20] = True  # 4,000 voxels of 4.3 mm3: 17.2 mL
    affine = np.diag([1.625, 1.625, 1.625, 1.0])
    f = Engine(Case.from_arrays("S", affine, {"pancreas": pancreas})).compute().to_dict()
    entry = f["organs"]["pancreas"]
    assert entry["volume_ml"] == pytest.approx(4000 * 1.625 ** 3 / 1000)
    assert entry["small"] is True and entry["enlarged"] == "no" and entry["small_below_ml"] == 34.5
    text = render_text(f)
    assert "Pancreas: small (volume 17.2 mL; below 34.5 mL)" in text and "normal size" not in text
    assert "Small pancreas (volume 17.2 mL)." in text.split("IMPRESSION:")[1]


def test_zero_voxel_size_without_orientation_is_an_error(case_dir, tmp_path):
    liver = case_dir / "segmentations" / "liver.nii.gz"
    img = nib.load(liver)
    bad = nib.Nifti1Image(np.asarray(img.dataobj), None)
    bad.header.set_zooms((5.0, 5.0, 0.0))  # no qform/sform: the voxel size is all there is
    bad.header["qform_code"] = bad.header["sform_code"] = 0
    nib.save(bad, liver)
    (case_dir / "ct.nii.gz").unlink()
    _one_line_error(run_cli("report", case_dir, "--out", tmp_path / "out"), str(liver), "voxel size 5 x 5 x 0")


def test_a_ct_without_orientation_is_named_not_a_mask(case_dir, tmp_path):
    """Only the CT lacks orientation: the grids disagree because of the CT, so the error names it."""
    ct = case_dir / "ct.nii.gz"
    img = nib.load(ct)
    bad = nib.Nifti1Image(np.asarray(img.dataobj), None)
    bad.header.set_zooms(img.header.get_zooms())
    bad.header["qform_code"] = bad.header["sform_code"] = 0
    nib.save(bad, ct)
    _one_line_error(run_cli("report", case_dir, "--out", tmp_path / "out"), str(ct), "no orientation")


def test_a_lesion_of_gas_is_flagged_for_checking():
    """A lesion component whose voxels are gas (a stray prediction in bowel gas or air) opens the
    report with "check the masks"; a fat-containing one (-80 HU, e.g. angiomyolipoma) does not."""
    from RadGPTLogic.case import Case
    from RadGPTLogic.engine import Engine
    from RadGPTLogic.report.structured import render_text

    grid = (40, 40, 40)
    ct = np.full(grid, 40, np.int16)
    kidney = np.zeros(grid, bool)
    kidney[5:35, 5:35, 5:35] = True
    lesion = np.zeros(grid, bool)
    lesion[8:14, 8:14, 8:14] = True   # gas
    lesion[24:30, 24:30, 24:30] = True  # fat
    ct[8:14, 8:14, 8:14] = -990
    ct[24:30, 24:30, 24:30] = -80
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    f = Engine(Case.from_arrays("G", affine, {"kidney_left": kidney, "kidney_lesion": lesion}, ct=ct)).compute()
    data = f.to_dict()
    gas = [l for l in data["lesions"] if l["mean_hu"] < -500]
    fat = [l for l in data["lesions"] if -500 < l["mean_hu"] < 0]
    assert len(gas) == 1 and len(fat) == 1
    checks = [c for c in data["mask_checks"] if c["check"] == "attenuation"]
    assert [c["structure"] for c in checks] == [gas[0]["id"]]
    impression = render_text(data).split("IMPRESSION:")[1]
    assert "Check the masks" in impression and "gas, not of a lesion" in impression


def test_help_texts_read_right():
    import contextlib
    import io

    from RadGPTLogic.cli import main
    from RadGPTLogic.phantom import SIZES

    for command in ("evaluate", "demo"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(out.getvalue().split())
        assert "%%" not in text
        if command == "evaluate":
            assert "95% Wilson intervals" in text
        else:  # every option explained, the sizes as the phantom makes them
            assert "x".join(map(str, SIZES["small"]["shape"])) in text and "contrast phase" in text
