"""Lesions drawn inside their organ (AbdomenAtlas) or carved out of it (Slicer's "overwrite all")
give the same findings; lesions outside their organ are flagged, never reported as ordinary
lesions; the cache stays bounded; lesion connectivity is the rule's."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli, simple_case_arrays, write_case

from RadGPTLogic import vocabulary as vocab
from RadGPTLogic.case import Case, Crop
from RadGPTLogic.engine import Engine
from RadGPTLogic.errors import InputError
from RadGPTLogic.measure.attachment import attachment, organ_with_lesions
from RadGPTLogic.phantom import build_phantom
from RadGPTLogic.rules import DEFAULT_RULES, Rules


def _findings(affine, masks, ct=None, phase="venous", rules=DEFAULT_RULES) -> dict:
    f = Engine(Case.from_arrays("C", affine, masks, ct=ct), phase=phase, rules=rules).compute().to_dict()
    f.pop("provenance")
    return f


def _carve(masks: dict, keep=lambda name: False) -> dict:
    """Slicer's overwrite-all painting: every lesion's voxels leave every other segment."""
    lesions = np.zeros(next(iter(masks.values())).shape, bool)
    for name, arr in masks.items():
        if name in vocab.LESIONS:
            lesions |= arr.astype(bool)
    return {n: (a.astype(bool) if n in vocab.LESIONS or keep(n) else a.astype(bool) & ~lesions)
            for n, a in masks.items()}


@pytest.fixture(scope="module")
def phantom():
    return build_phantom(size="small", phase="venous")


@pytest.fixture(scope="module")
def inside(phantom):
    return _findings(phantom.affine, phantom.masks, phantom.ct)


def test_carving_lesions_out_of_organs_changes_no_finding(phantom, inside):
    # Organs, vessels and every other mask carved; liver segments kept whole (they hold the lesion).
    carved = _findings(phantom.affine, _carve(phantom.masks, keep=lambda n: n.startswith("liver_segment")),
                       phantom.ct)
    assert carved == inside
    assert inside["lesions"] and all(l["in_organ_fraction"] == 1.0 and not l["outside_organ"]
                                     for l in inside["lesions"])
    assert any(l.get("t_stage") for l in inside["lesions"])  # staging ran on carved vessels too


def test_carving_segments_too_keeps_every_finding_but_the_couinaud_shares(phantom, inside):
    carved = _findings(phantom.affine, _carve(phantom.masks), phantom.ct)
    for ours, ref in zip(carved["lesions"], inside["lesions"]):
        for key in ("couinaud_by", "couinaud_shares"):
            ours.pop(key, None), ref.pop(key, None)
        assert ours == ref  # the segment list itself (location.couinaud) is the same
    rest = lambda f: {k: v for k, v in f.items() if k != "lesions"}  # noqa: E731
    assert rest(carved) == rest(inside)


def test_carved_organ_volume_equals_the_whole_organ():
    ct, affine, masks = simple_case_arrays()
    carved = _carve(masks)
    assert carved["liver"].sum() < masks["liver"].sum()  # the hole is real
    a, b = _findings(affine, masks, ct), _findings(affine, carved, ct)
    voxel_ml = np.prod(np.diag(affine)[:3]) / 1000
    assert a["organs"]["liver"]["volume_ml"] == pytest.approx(masks["liver"].sum() * voxel_ml)
    assert b == a


def test_a_spleen_saved_as_liver_lesion_is_flagged_not_reported(tmp_path):
    ct, affine, masks = simple_case_arrays()
    masks["liver_lesion"] = masks["spleen"].copy()
    f = _findings(affine, masks, ct)
    (lesion,) = [l for l in f["lesions"] if l["organ"] == "liver"]
    assert lesion["outside_organ"] is True and lesion["in_organ_fraction"] == 0.0
    assert any("outside the liver mask" in w for w in f["warnings"])
    case = write_case(tmp_path, ct, affine, masks)
    proc = run_cli("report", case, "--out", tmp_path / "out", check=True)
    report = (tmp_path / "out" / "report.txt").read_text(encoding="utf-8")
    assert "outside the liver mask" in report and "check the masks" in report.lower()
    assert "outside the liver mask" in report.split("IMPRESSION:")[1]
    assert "No liver" not in report.split("IMPRESSION:")[1]  # never "no liver lesion" beside "check the masks"
    assert "liver_lesion_1: lies outside the liver mask" in proc.stderr


def test_a_lesion_mask_larger_than_its_organ_is_an_error(tmp_path):
    ct, affine, masks = simple_case_arrays()
    masks["liver_lesion"] = np.ones_like(masks["liver"])
    with pytest.raises(InputError, match="larger than its organ"):
        _findings(affine, masks, ct)
    case = write_case(tmp_path, ct, affine, masks)
    proc = run_cli("report", case, "--out", tmp_path / "out")
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    assert len(proc.stderr.strip().splitlines()) == 1 and "liver_lesion.nii.gz" in proc.stderr


def test_contact_rule_on_shapes_worked_out_by_hand():
    grid = (20, 20, 20)
    organ = np.zeros(grid, bool)
    organ[2:18, 2:18, 2:18] = True
    hole = np.zeros(grid, bool)
    hole[8:12, 8:12, 8:12] = True  # a carved, internal lesion: its whole shell is organ
    comp = Crop.from_full(hole)
    carved = Crop.from_full(organ & ~hole)
    a = attachment(comp, carved, [carved], grid, 0.2)
    assert (a.inside, a.contact, a.belongs) == (0.0, 1.0, True)
    # A cube outside the organ touching it on one face: 16 of its 6*16 face-shell voxels.
    out = np.zeros(grid, bool)
    out[18:20, 6:10, 6:10] = True
    a = attachment(Crop.from_full(out), Crop.from_full(organ), [Crop.from_full(organ)], grid, 0.2)
    shell_faces = 16 + 2 * 8 * 2  # x-face inward (4x4), four side faces 2x4 each (+x face is off the grid)
    assert a.contact == pytest.approx(16 / shell_faces) and a.belongs is (16 / shell_faces >= 0.2)
    united = organ_with_lesions(carved, [comp], grid, 0.2)
    assert np.array_equal(united.in_box((0, 0, 0), grid), organ)


def test_a_right_kidney_lesion_never_joins_the_left_kidney():
    grid, affine = (40, 20, 20), np.eye(4)
    left, right, lesion = (np.zeros(grid, bool) for _ in range(3))
    left[2:12, 5:15, 5:15] = True
    right[25:38, 5:15, 5:15] = True
    lesion[27:31, 8:12, 8:12] = True  # carved out of the right kidney
    right &= ~lesion
    f = _findings(affine, {"kidney_left": left, "kidney_right": right, "kidney_lesion": lesion})
    assert f["organs"]["kidney_right"]["voxel_count"] == 13 * 10 * 10
    assert f["organs"]["kidney_left"]["voxel_count"] == 10 * 10 * 10
    assert f["lesions"][0]["side"] == "right"


@pytest.mark.parametrize("connectivity, expected", [(26, 1), (18, 2), (6, 2)])
def test_lesion_connectivity_rule_is_applied(connectivity, expected):
    grid, affine = (30, 30, 30), np.eye(4)
    liver = np.zeros(grid, bool)
    liver[2:28, 2:28, 2:28] = True
    lesion = np.zeros(grid, bool)
    lesion[8:13, 8:13, 8:13] = True
    lesion[13:18, 13:18, 13:18] = True  # touches the first cube at one corner only
    f = _findings(affine, {"liver": liver, "liver_lesion": lesion}, rules=Rules(lesion_connectivity=connectivity))
    assert len(f["lesions"]) == expected


def test_rules_refuse_unknown_enumerated_values():
    with pytest.raises(ValueError):
        Rules(t4_rule="sometimes")
    with pytest.raises(ValueError):
        Rules(lesion_connectivity=8)


def test_cache_holds_only_what_the_current_masks_can_hit():
    ct, affine, masks = simple_case_arrays()
    engine = Engine(Case.from_arrays("C", affine, masks, ct=ct))
    engine.compute()
    size = len(engine._cache)
    lesion = masks["liver_lesion"].astype(bool)
    ii, jj, kk = np.nonzero(lesion)
    for n in range(30):  # single-voxel edits, as painting in Slicer
        edited = lesion.copy()
        edited[ii[n], jj[n], kk[n]] = False
        engine.update_structure("liver_lesion", edited)
        engine.compute()
        assert len(engine._cache) == size
    assert engine.stats["hits"] > 0


def test_lesion_ids_sort_as_numbers():
    grid, affine = (60, 60, 10), np.eye(4)
    liver = np.zeros(grid, bool)
    liver[1:59, 1:59, 1:9] = True
    lesion = np.zeros(grid, bool)
    for i in range(3, 55, 4):
        for j in range(3, 55, 4):
            lesion[i:i + 2, j:j + 2, 3:6] = True  # 13 x 13 identical 2x2x3-voxel lesions (12 mm^3 each)
    f = _findings(affine, {"liver": liver, "liver_lesion": lesion})
    numbers = [int(l["id"].rsplit("_", 1)[1]) for l in f["lesions"]]
    assert numbers == sorted(numbers) and len(numbers) == 13 * 13


def test_many_lesions_make_a_bounded_readable_report():
    from RadGPTLogic.report.structured import KEY_IMAGES_PER_ORGAN, render_reports

    grid, affine = (60, 60, 12), np.eye(4)
    liver = np.zeros(grid, bool)
    liver[1:59, 1:59, 1:11] = True
    lesion = np.zeros(grid, bool)
    for n, i in enumerate(range(3, 55, 4)):
        for j in range(3, 55, 4):
            lesion[i:i + 2, j:j + 2, 3:6 + (n % 3)] = True  # sizes differ by row: 12, 16, 20 mm^3
    ct = np.where(liver, 60, -100).astype(np.int16)
    case = Case.from_arrays("M", affine, {"liver": liver, "liver_lesion": lesion}, ct=ct)
    f = Engine(case).compute().to_dict()
    reports = render_reports(f, case=case)
    html = reports["report.html"]
    assert html.count('<img class="keyimage"') == KEY_IMAGES_PER_ORGAN
    assert f"No key image for {len(f['lesions']) - KEY_IMAGES_PER_ORGAN} smaller lesions" in html
    # the largest lesions get the images
    largest = sorted(f["lesions"], key=lambda l: -l["volume_ml"])[:KEY_IMAGES_PER_ORGAN]
    assert all(f'id="key-{l["id"]}"' in html for l in largest)
    # one not-assessable line for all lesions, not one per lesion
    text = reports["report.txt"]
    na = text.split("NOT ASSESSABLE:")[1].split("\n\n")[0].strip().splitlines()
    assert na == [f"- Couinaud segment of {len(f['lesions'])} liver lesions: segment not assessable (no segment masks)"]
