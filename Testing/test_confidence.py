"""Per-lesion segmentation confidence (issue 9, point 6), end to end from hand-built case folders.

A phantom case folder gets a ``segmentation.json`` and ``probabilities/<mask>.npz``
files written from KNOWN probability arrays:

* ``liver_lesion``: 0.8 (= 204/255, exact in the file's 1/255 steps) in the large
  component, a ramp 0.2 -> 1.0 along patient R in the small one, 0.6 around them;
* ``pancreatic_pdac``: 0.4 (= 102/255) inside the tumor, 0 around it;
* ``kidney_lesion``: listed as model output but without a probabilities file;
* ``kidney_cyst``: not listed at all (a hand-made mask).

Expected numbers come from the arrays themselves (quantised as the file stores them).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO
from scipy import ndimage

from RadGPTLogic.case import Case, ProbabilityCrop
from RadGPTLogic.cli import main
from RadGPTLogic.engine import Engine
from RadGPTLogic.evaluate.labels import extract_labels
from RadGPTLogic.findings import findings_schema
from RadGPTLogic.io.casefolder import case_folder_files, load_case
from RadGPTLogic.io.nifti import source_nifti_gz_bytes
from RadGPTLogic.io.probabilities import MARGIN_VOXELS, attach_probabilities, probability_npz_bytes, read_probability
from RadGPTLogic.measure.confidence import review_ranks
from RadGPTLogic.phantom import build_phantom, reorient_array, write_case
from RadGPTLogic.pipeline import run_report
from RadGPTLogic.report.factcheck import check_narrative
from RadGPTLogic.rules import DEFAULT_RULES, Rules

CAUTION = "low segmentation confidence; verify on images"
MODEL = "RadGPT abdomen (test)"


# ------------------------------------------------------------------ known arrays
def quantised(p: np.ndarray) -> np.ndarray:
    """Probabilities as the file stores them (uint8 steps of 1/255), back as float64."""
    return (np.rint(np.clip(p, 0, 1) * 255).astype(np.uint8).astype(np.float32) / 255).astype(np.float64)


def components(mask: np.ndarray) -> list:
    """26-connected components, largest first."""
    labels, n = ndimage.label(mask, np.ones((3, 3, 3)))
    comps = [labels == i for i in range(1, n + 1)]
    return sorted(comps, key=lambda c: -int(c.sum()))


def probability_maps(phantom) -> dict:
    """Canonical-frame probability of each lesion class with a probabilities file."""
    big, small = components(phantom.masks["liver_lesion"])
    liver = np.full(phantom.shape, 0.6, np.float32)
    liver[big] = 0.8
    i = np.nonzero(small)[0]
    ramp = 0.2 + 0.8 * (np.arange(phantom.shape[0]) - i.min()) / (i.max() - i.min())
    liver[small] = np.broadcast_to(ramp[:, None, None], phantom.shape)[small]
    pdac = np.zeros(phantom.shape, np.float32)
    pdac[phantom.masks["pancreatic_pdac"]] = 0.4
    return {"liver_lesion": liver, "pancreatic_pdac": pdac}


def expected(p: np.ndarray, region: np.ndarray, component: np.ndarray, rules: Rules = DEFAULT_RULES) -> dict:
    """Mean and share below 0.5 over ``component``, voxels outside the stored crop (``region``'s
    bounding box grown by the margin) as 0; and the low flag of the rule."""
    idx = np.argwhere(region)
    lo = np.maximum(idx.min(0) - MARGIN_VOXELS, 0)
    hi = np.minimum(idx.max(0) + 1 + MARGIN_VOXELS, region.shape)
    stored = np.zeros(region.shape, bool)
    stored[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    values = np.where(stored, quantised(p), 0.0)[component]
    mean, share = round(float(values.mean()), 3), round(float((values < 0.5).mean()), 3)
    low = mean < rules.confidence_low_mean or share > rules.confidence_low_share_below_0_5
    return {"mean_probability": mean, "share_below_0_5": share, "low": low}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_segmentation(case_dir, phantom, axcodes="RAS", axis_order=None, maps=None) -> None:
    """Write segmentation.json and the probability files (in the CT file's own voxel order)."""
    maps = probability_maps(phantom) if maps is None else maps
    (case_dir / "probabilities").mkdir(exist_ok=True)
    structures = {}
    for label, name in enumerate(("liver", "liver_lesion", "pancreatic_pdac", "kidney_lesion"), start=1):
        mask_file = case_dir / "segmentations" / f"{name}.nii.gz"
        entry = {"model": MODEL, "label": label, "label_name": name, "sha256": sha256(mask_file),
                 "voxels": int(phantom.masks[name].sum())}
        if name in maps:
            src = reorient_array(maps[name], phantom.affine, axcodes, axis_order)[0]
            region = reorient_array(phantom.masks[name], phantom.affine, axcodes, axis_order)[0]
            (case_dir / "probabilities" / f"{name}.npz").write_bytes(probability_npz_bytes(src, region))
            entry.update(probabilities=f"probabilities/{name}.npz",
                         probability=round(float(quantised(maps[name])[phantom.masks[name]].mean()), 3))
        structures[name] = entry
    record = {
        "format": "radgpt-segmentation/1", "radgpt_version": "test",
        "ct": {"file": "ct.nii.gz", "sha256": sha256(case_dir / "ct.nii.gz")},
        "models": [{"name": MODEL, "folder": "-", "configuration": "3d_tiny", "trainer": "-", "folds": ["all"],
                    "checkpoint": "checkpoint_final.pth", "device": "cpu", "mirroring": False, "tile_step": 0.5,
                    "seconds": 1.0}],
        "precedence": [MODEL],
        "structures": structures,
    }
    (case_dir / "segmentation.json").write_text(json.dumps(record, indent=1))


def lesions_by_id(findings: dict) -> dict:
    return {les["id"]: les for les in findings["lesions"]}


@pytest.fixture(scope="module")
def phantom():
    return build_phantom(size="small")


@pytest.fixture(scope="module")
def ras(phantom, tmp_path_factory):
    """(case folder, output folder, findings dict) of the RAS-stored segmented case."""
    root = tmp_path_factory.mktemp("conf")
    case = write_case(phantom, root, case_id="SEG")
    add_segmentation(case, phantom)
    out = root / "out"
    run_report(case, out)
    return case, out, json.loads((out / "findings.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------ tests
def test_confidence_numbers_and_flags(phantom, ras):
    _, _, f = ras
    les = lesions_by_id(f)
    maps = probability_maps(phantom)
    big, small = components(phantom.masks["liver_lesion"])
    assert les["liver_lesion_1"]["voxel_count"] == big.sum() and les["liver_lesion_2"]["voxel_count"] == small.sum()
    assert les["liver_lesion_1"]["confidence"] == {
        "mean_probability": 0.8, "share_below_0_5": 0.0, "low": False, "model": MODEL, "mask_edited": False}
    assert les["pancreatic_pdac_1"]["confidence"] == {
        "mean_probability": 0.4, "share_below_0_5": 1.0, "low": True, "model": MODEL, "mask_edited": False}
    ramp = expected(maps["liver_lesion"], phantom.masks["liver_lesion"], small)
    assert 0.4 < ramp["mean_probability"] < 0.7 and ramp["low"]  # the ramp is low by its mean
    assert les["liver_lesion_2"]["confidence"] == {**ramp, "model": MODEL, "mask_edited": False}
    # listed without a probabilities file, and not listed (hand-made): no confidence
    assert les["kidney_lesion_1"]["confidence"] is None and les["kidney_cyst_1"]["confidence"] is None


def test_review_rank_low_first_lowest_mean_first(ras):
    _, _, f = ras
    ids = [les["id"] for les in f["lesions"]]
    assert ids == ["liver_lesion_1", "liver_lesion_2", "pancreatic_pdac_1", "kidney_cyst_1", "kidney_lesion_1"]
    ranks = {les["id"]: les["review_rank"] for les in f["lesions"]}
    assert ranks == {"pancreatic_pdac_1": 1, "liver_lesion_2": 2, "liver_lesion_1": 3, "kidney_cyst_1": 4,
                     "kidney_lesion_1": 5}


def test_findings_with_confidence_match_the_schema(ras):
    jsonschema = pytest.importorskip("jsonschema")
    _, _, f = ras
    schema = findings_schema()
    jsonschema.validate(f, schema)
    bad = json.loads(json.dumps(f))
    bad["lesions"][0]["confidence"]["mean_probability"] = 1.5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = json.loads(json.dumps(f))
    del bad["lesions"][0]["confidence"]["low"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = json.loads(json.dumps(f))
    bad["lesions"][0]["review_rank"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_report_cautions_only_the_low_lesions(ras):
    _, out, _ = ras
    txt = (out / "report.txt").read_text(encoding="utf-8")
    lines = [line.strip() for line in txt.splitlines() if CAUTION in line]
    assert len(lines) == 2, lines
    assert lines[0].startswith("Liver lesion 2 ") and lines[1].startswith("Pancreatic PDAC 1 ")
    assert all(line.endswith(f"; {CAUTION}.") for line in lines)
    assert txt.count(CAUTION) == 2
    for name in ("report.md", "report.html"):
        assert (out / name).read_text(encoding="utf-8").count(CAUTION) == 2, name


def test_factcheck_and_labeller_are_not_confused_by_the_caution(ras):
    _, out, f = ras
    txt = (out / "report.txt").read_text(encoding="utf-8")
    assert CAUTION in txt
    r = check_narrative(txt, f)
    assert r.ok, r.errors
    # a narrative that carries the caution in its own words passes too
    narrative = txt.replace("IMPRESSION:", "Pancreatic PDAC: low segmentation confidence; verify on images.\n\n"
                                           "IMPRESSION:")
    r = check_narrative(narrative, f)
    assert r.ok, r.errors
    # the rule labeller reads the same labels with and without the caution
    plain = txt.replace(f"; {CAUTION}", "")
    assert CAUTION not in plain
    assert extract_labels(txt) == extract_labels(plain)
    assert extract_labels(txt + f"\nLiver lesion 2: {CAUTION}.\n") == extract_labels(plain)


@pytest.mark.parametrize("axcodes,axis_order", [("LPS", None), ("LIA", (2, 0, 1))])
def test_other_orientations_give_the_same_confidence(phantom, ras, tmp_path, axcodes, axis_order):
    case = write_case(phantom, tmp_path, case_id="SEG", axcodes=axcodes, axis_order=axis_order)
    add_segmentation(case, phantom, axcodes, axis_order)
    f = run_report(case, tmp_path / "out").to_dict()
    want = {les["id"]: (les["confidence"], les["review_rank"]) for les in ras[2]["lesions"]}
    assert {les["id"]: (les["confidence"], les["review_rank"]) for les in f["lesions"]} == want


def test_edited_mask(phantom, ras, tmp_path):
    """A mask rewritten after the model ran: mask_edited, numbers over the current component,
    voxels beyond the stored crop as 0."""
    case = tmp_path / "SEG"
    shutil.copytree(ras[0], case)
    big, _ = components(phantom.masks["liver_lesion"])
    grown = big | np.roll(big, 6, axis=2)  # 15 mm further up: partly beyond the crop's margin
    assert not np.roll(big, 6, axis=2)[..., :6].any()  # nothing wrapped round
    lesion_file = case / "segmentations" / "liver_lesion.nii.gz"
    lesion_file.write_bytes(source_nifti_gz_bytes(grown.astype(np.uint8), nib.load(str(lesion_file)).affine))
    f = run_report(case, tmp_path / "out").to_dict()
    les = lesions_by_id(f)
    assert set(les) == {"liver_lesion_1", "pancreatic_pdac_1", "kidney_cyst_1", "kidney_lesion_1"}
    want = expected(probability_maps(phantom)["liver_lesion"], phantom.masks["liver_lesion"], grown)
    idx = np.argwhere(phantom.masks["liver_lesion"])
    assert (np.argwhere(grown)[:, 2].max() > idx[:, 2].max() + MARGIN_VOXELS)  # some voxels beyond the crop
    assert les["liver_lesion_1"]["confidence"] == {**want, "model": MODEL, "mask_edited": True}
    assert les["pancreatic_pdac_1"]["confidence"]["mask_edited"] is False
    # 0.8 inside, 0.6 in the margin, 0 beyond: the mean lies below 0.8
    assert want["mean_probability"] < 0.8 and want["share_below_0_5"] > 0


def test_batch_inputs_include_the_segmentation_files(ras, tmp_path):
    from RadGPTLogic.dataset.batch.resume import input_changes

    case = tmp_path / "SEG"
    shutil.copytree(ras[0], case)
    inputs = case_folder_files(case).inputs()
    assert {"segmentation.json", "probabilities/liver_lesion.npz", "probabilities/pancreatic_pdac.npz"} <= set(inputs)
    f = run_report(case, tmp_path / "out").to_dict()
    assert input_changes(case, f) == []
    path = case / "probabilities" / "pancreatic_pdac.npz"
    offset, values = read_probability(path)
    region = np.zeros(tuple(np.load(path)["grid_shape_ijk"]), bool)
    region[tuple(slice(o + MARGIN_VOXELS, o + n - MARGIN_VOXELS) for o, n in zip(offset, values.shape))] = True
    full = np.zeros(region.shape, np.float32)
    full[tuple(slice(o, o + n) for o, n in zip(offset, values.shape))] = 0.9
    path.write_bytes(probability_npz_bytes(full, region))
    assert input_changes(case, f) == ["probabilities/pancreatic_pdac.npz changed"]
    f2 = run_report(case, tmp_path / "out2").to_dict()
    assert lesions_by_id(f2)["pancreatic_pdac_1"]["confidence"]["mean_probability"] == round(230 / 255, 3)


def test_hand_made_masks_have_no_confidence(phantom, tmp_path):
    case = write_case(phantom, tmp_path, case_id="HAND")
    f = run_report(case, tmp_path / "out").to_dict()
    assert all(les["confidence"] is None for les in f["lesions"])
    assert [les["review_rank"] for les in f["lesions"]] == list(range(1, len(f["lesions"]) + 1))
    assert CAUTION not in (tmp_path / "out" / "report.txt").read_text(encoding="utf-8")


def test_in_memory_case_with_attached_probabilities(phantom, ras):
    """The Slicer path: a case built from arrays (LPS here), probabilities handed over in the
    source frame, gives the folder's numbers."""
    case_dir, _, f = ras
    ct, affine = reorient_array(phantom.ct, phantom.affine, "LPS")
    masks = {n: reorient_array(m, phantom.affine, "LPS")[0] for n, m in phantom.masks.items()}
    case = Case.from_arrays("MEM", affine, masks, ct=ct)
    assert all(les["confidence"] is None for les in Engine(case).compute().to_dict()["lesions"])
    record = json.loads((case_dir / "segmentation.json").read_text(encoding="utf-8"))
    crops = {}
    for name, P in probability_maps(phantom).items():
        src = reorient_array(P, phantom.affine, "LPS")[0]
        region = reorient_array(phantom.masks[name], phantom.affine, "LPS")[0]
        path = case_dir.parent / f"{name}.LPS.npz"
        path.write_bytes(probability_npz_bytes(src, region))
        crops[name] = read_probability(path, ct.shape)
    attach_probabilities(case, record, crops, where="Slicer segmentation")
    got = Engine(case).compute().to_dict()
    want = {les["id"]: les["confidence"] for les in f["lesions"]}
    # nothing records the mask files' hashes here: no edit known
    assert {les["id"]: les["confidence"] for les in got["lesions"]} == want


def test_confidence_is_recomputed_when_the_probabilities_change(ras):
    case = load_case(ras[0])
    engine = Engine(case)
    first = lesions_by_id(engine.compute().to_dict())
    again = lesions_by_id(engine.compute().to_dict())
    assert again["pancreatic_pdac_1"]["confidence"] == first["pancreatic_pdac_1"]["confidence"]
    old = case.probabilities["pancreatic_pdac"]
    case.probabilities["pancreatic_pdac"] = ProbabilityCrop(np.full(old.shape, 0.9, np.float32), old.offset)
    changed = lesions_by_id(engine.compute().to_dict())
    assert changed["pancreatic_pdac_1"]["confidence"]["mean_probability"] == 0.9
    assert changed["pancreatic_pdac_1"]["confidence"]["low"] is False
    # now only liver_lesion_2 is low: it comes first, then the rest in findings order
    assert [changed[i]["review_rank"] for i in ("liver_lesion_2", "liver_lesion_1", "pancreatic_pdac_1")] == [1, 2, 3]
    # an edit in memory (Slicer's Segment Editor) marks the mask as edited
    engine.update_structure("liver_lesion", case.structures["liver_lesion"])
    edited = lesions_by_id(engine.compute().to_dict())
    assert edited["liver_lesion_1"]["confidence"]["mask_edited"] is True


def test_review_ranks_and_rules():
    def les(mean=None, low=False):
        return {"confidence": None if mean is None else {"mean_probability": mean, "low": low}}

    assert review_ranks([les(), les(0.9), les(0.5, True), les(0.6, True), les(0.5, True)]) == [4, 5, 1, 3, 2]
    assert review_ranks([]) == []
    with pytest.raises(ValueError):
        Rules(confidence_low_mean=1.5)
    assert DEFAULT_RULES.as_dict()["confidence_low_mean"] == 0.7


# --------------------------------------------------------------- bad inputs: exit 2
def _run_cli(case, out, capsys) -> tuple:
    rc = main(["report", str(case), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("breakage,named", [
    ("not json", "segmentation.json"),
    ("structures list of numbers", "segmentation.json"),
    ("entry not an object", "segmentation.json"),
    ("sha256 a number", "segmentation.json"),
    ("path outside probabilities/", "segmentation.json"),
    ("garbage npz", "liver_lesion.npz"),
    ("npz of another grid", "liver_lesion.npz"),
    ("npz missing", "liver_lesion.npz"),
])
def test_bad_segmentation_files_are_one_line_errors(ras, tmp_path, capsys, breakage, named):
    case = tmp_path / "SEG"
    shutil.copytree(ras[0], case)
    record_path = case / "segmentation.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    npz = case / "probabilities" / "liver_lesion.npz"
    if breakage == "not json":
        record_path.write_text('{"structures": {')
    elif breakage == "structures list of numbers":
        record_path.write_text(json.dumps({**record, "structures": [1, 2]}))
    elif breakage == "entry not an object":
        record["structures"]["liver_lesion"] = "probabilities/liver_lesion.npz"
        record_path.write_text(json.dumps(record))
    elif breakage == "sha256 a number":
        record["structures"]["liver_lesion"]["sha256"] = 5
        record_path.write_text(json.dumps(record))
    elif breakage == "path outside probabilities/":
        record["structures"]["liver_lesion"]["probabilities"] = "../elsewhere/liver_lesion.npz"
        record_path.write_text(json.dumps(record))
    elif breakage == "garbage npz":
        npz.write_bytes(b"PK\x03\x04 not really a zip")
    elif breakage == "npz of another grid":
        small = np.zeros((10, 10, 10), np.float32)
        region = np.zeros((10, 10, 10), bool)
        region[4:6, 4:6, 4:6] = True
        npz.write_bytes(probability_npz_bytes(small, region))
    elif breakage == "npz missing":
        npz.unlink()
    rc, err = _run_cli(case, tmp_path / "out", capsys)
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("radgpt: error: ") and named in err, err
    assert not (tmp_path / "out" / "findings.json").exists()


# ------------------------------------------------------------ Slicer panel order
def _findings_view():
    path = REPO / "RadGPTSlicer" / "RadGPTSlicerLib" / "findings_view.py"
    spec = importlib.util.spec_from_file_location("findings_view_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_panel_prefers_the_findings_review_rank(ras):
    view = _findings_view()
    f = ras[2]
    order = view.review_order(f)
    assert [f["lesions"][n]["id"] for n in order] == [
        "pancreatic_pdac_1", "liver_lesion_2", "liver_lesion_1", "kidney_cyst_1", "kidney_lesion_1"]
    # the segment loader's whole-mask probabilities do not override the lesions' own numbers
    assert view.review_order(f, {"liver_lesion": 0.99, "pancreatic_pdac": 0.99}) == order
    rows = view.lesion_rows(f)
    column = view.LESION_COLUMNS.index("Confidence")
    ramp = f"{f['lesions'][1]['confidence']['mean_probability']:.2f}"
    assert [rows[n][column] for n in order] == ["0.40 review", f"{ramp} review", "0.80", "", ""]
    # ... but fill in for a lesion the findings have no confidence for
    order = view.review_order(f, {"kidney_lesion": 0.3})
    assert [f["lesions"][n]["id"] for n in order][:3] == ["kidney_lesion_1", "pancreatic_pdac_1", "liver_lesion_2"]
    # findings without confidence (older files) keep the old behaviour
    old = {"lesions": [{"id": "a", "mask": "liver_lesion"}, {"id": "b", "mask": "kidney_lesion"}]}
    assert view.review_order(old, {"kidney_lesion": 0.4}) == [1, 0]
