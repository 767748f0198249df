"""Save, dataset export, DICOM SEG + SR and the narrative, driven through the panel on a real Qt loop.

Truth comes from outside the panel: the saved case folder is loaded again with the
core's own loader and measured by a fresh engine; the dataset is read back as
files and CSV; the DICOM objects are read with pydicom; the narrative goes through
the real ``openai`` client to the project's OpenAI-compatible test server (``llm_server``),
which records every request so the test can check what left the machine.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PyQt5")

import slicer_fakes as harness  # noqa: E402

harness.install()

import slicer  # noqa: E402  (the fake)

from RadGPTLogic.engine import Engine  # noqa: E402
from RadGPTLogic.io.atomic import read_manifest  # noqa: E402
from RadGPTLogic.io.casefolder import load_case  # noqa: E402
from RadGPTLogic.phantom import build_phantom  # noqa: E402

COUINAUD = tuple(f"liver_segment_{n}" for n in range(1, 9))
MEASURES = ("longest_diameter_mm", "perpendicular_diameter_mm", "volume_ml", "mean_hu")


@pytest.fixture(scope="module")
def phantom():
    return build_phantom(size="small")


@pytest.fixture
def panel(phantom, tmp_path):
    harness.reset()
    volume = harness.add_volume(phantom.ct, phantom.affine, name="Patient^Jane 4: CT")
    seg = harness.add_segmentation(volume, phantom.masks, shared=True, separate=COUINAUD)
    module, widget = harness.open_panel()
    widget.ui.computeButton.click()
    assert harness.wait_until(lambda: widget._findings is not None and not widget.controller.busy, 120)
    widget.ui.projectFolderPathLineEdit.setCurrentPath(str(tmp_path / "project"))
    yield widget, volume, seg
    widget.cleanup()


def run_export(widget, button, done_text, timeout=120):
    before = len(slicer.util.MESSAGES)
    button.click()
    ok = harness.wait_until(lambda: done_text in widget.ui.exportStatusLabel.text()
                            or len(slicer.util.MESSAGES) > before, timeout)
    assert ok and done_text in widget.ui.exportStatusLabel.text(), slicer.util.MESSAGES[before:]


def measured(findings):
    return [(l["id"], *[l[k] for k in MEASURES]) for l in findings["lesions"]]


def stroke(widget, seg_node, name, box_ijk):
    widget.editor.setCurrentSegmentID(seg_node.GetSegmentation().GetSegmentIdBySegmentName(name))
    (i0, i1), (j0, j1), (k0, k1) = box_ijk
    widget.editor.fake_stroke(np.ones((k1 - k0, j1 - j0, i1 - i0), bool), origin_kji=(k0, j0, i0))
    assert harness.wait_until(lambda: not widget.controller.stale and not widget.controller.busy, 60)


# --------------------------------------------------------------------------- save
def test_save_writes_the_cli_layout_that_the_core_measures_alike(panel, tmp_path):
    from RadGPTLogic.dataset.batch import input_changes

    widget, volume, seg = panel
    widget.ui.caseIdLineEdit.setText("pt 1/A")
    run_export(widget, widget.ui.saveCaseButton, "Saved")
    project = tmp_path / "project"
    case_dir, out_dir = project / "cases" / "pt_1_A", project / "reports" / "pt_1_A"
    assert (case_dir / "ct.nii.gz").is_file()
    assert sorted(p.name for p in (case_dir / "segmentations").iterdir()) == sorted(
        f"{n}.nii.gz" for n in build_phantom(size="small").masks)
    for name in ("findings.json", "report.txt", "report.md", "report.html"):
        assert (out_dir / name).is_file(), name
    saved = json.loads((out_dir / "findings.json").read_text(encoding="utf-8"))
    assert saved["case_id"] == "pt_1_A"
    # the core, loading the saved folder on its own, measures the same
    again = Engine(load_case(case_dir), saved["phase"]).compute().to_dict()
    assert [m[0] for m in measured(again)] == [m[0] for m in measured(saved)]
    for a, b in zip(measured(again), measured(saved)):
        assert np.allclose(a[1:], b[1:], rtol=1e-6), (a, b)
    assert {k: round(v["volume_ml"], 3) for k, v in again["organs"].items()} == {
        k: round(v["volume_ml"], 3) for k, v in saved["organs"].items()}
    # provenance names the files written, with their hashes: batch resume and triplet export accept them
    assert input_changes(case_dir, saved) == []
    summary = json.loads((project / "reports" / "batch_summary.json").read_text(encoding="utf-8"))
    assert [c["case_id"] for c in summary["cases"]] == ["pt_1_A"] and summary["cases"][0]["status"] == "ok"
    assert Path(summary["cases"][0]["case_dir"]) == case_dir.resolve()
    assert "Patient^Jane" not in (out_dir / "report.txt").read_text()  # the saved case carries the chosen ID


def test_resave_keeps_user_files_and_removes_only_stale_tool_masks(panel, tmp_path):
    widget, volume, seg = panel
    widget.ui.caseIdLineEdit.setText("case7")
    run_export(widget, widget.ui.saveCaseButton, "Saved")
    case_dir = tmp_path / "project" / "cases" / "case7"
    out_dir = tmp_path / "project" / "reports" / "case7"
    (case_dir / "notes.txt").write_text("the radiologist's notes")
    (case_dir / "segmentations" / "README.txt").write_text("mine")
    (out_dir / "comment.txt").write_text("second reader")
    spleen_before = json.loads((out_dir / "findings.json").read_text(encoding="utf-8"))["organs"]["spleen"]["volume_ml"]
    assert spleen_before > 0
    # the annotator deletes the spleen segment and saves again
    segmentation = seg.GetSegmentation()
    segmentation.RemoveSegment(segmentation.GetSegmentIdBySegmentName("spleen"))
    assert harness.wait_until(lambda: "spleen" not in widget._findings["organs"] and not widget.controller.busy, 60)
    widget.ui.exportStatusLabel.setText("")
    run_export(widget, widget.ui.saveCaseButton, "Saved")
    assert not (case_dir / "segmentations" / "spleen.nii.gz").exists()  # RadGPT wrote it, it is stale now
    assert (case_dir / "notes.txt").read_text(encoding="utf-8") == "the radiologist's notes"
    assert (case_dir / "segmentations" / "README.txt").read_text(encoding="utf-8") == "mine"
    assert (out_dir / "comment.txt").read_text(encoding="utf-8") == "second reader"
    assert "spleen" not in json.loads((out_dir / "findings.json").read_text(encoding="utf-8"))["organs"]
    assert "segmentations/spleen.nii.gz" not in read_manifest(case_dir)
    assert "notes.txt" not in read_manifest(case_dir)  # never claimed as the tool's
    assert not [p for p in case_dir.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_save_refuses_a_folder_of_the_users_own(panel, tmp_path):
    widget, volume, seg = panel
    widget.ui.caseIdLineEdit.setText("mine")
    own = tmp_path / "project" / "cases" / "mine"
    (own / "segmentations").mkdir(parents=True)
    (own / "segmentations" / "liver.nii.gz").write_bytes(b"the user's own mask")
    widget.ui.saveCaseButton.click()
    assert harness.wait_until(lambda: slicer.util.MESSAGES, 60)
    level, text = slicer.util.MESSAGES[-1]
    assert level == "error" and "\n" not in text and str(own) in text and "did not write" in text
    assert (own / "segmentations" / "liver.nii.gz").read_bytes() == b"the user's own mask"
    assert sorted(p.name for p in own.rglob("*")) == ["liver.nii.gz", "segmentations"]
    assert not (tmp_path / "project" / "reports" / "mine").exists()


# ------------------------------------------------------------------------ dataset
def test_add_to_dataset_twice_keeps_both_triplets(panel, tmp_path, phantom):
    widget, volume, seg = panel
    dataset = tmp_path / "dataset"
    widget.ui.datasetFolderPathLineEdit.setCurrentPath(str(dataset))
    widget.ui.caseIdLineEdit.setText("A")
    run_export(widget, widget.ui.addToDatasetButton, "Added A")
    first = max(l["longest_diameter_mm"] for l in widget._findings["lesions"] if l["organ"] == "liver")
    # next case (here: the same CT with a grown liver lesion), added under another ID
    ijk = np.argwhere(phantom.masks["liver_lesion"])
    c = ijk.mean(axis=0).astype(int)
    stroke(widget, seg, "liver_lesion", ((c[0] - 12, c[0] + 12), (c[1] - 2, c[1] + 2), (c[2] - 1, c[2] + 1)))
    second = max(l["longest_diameter_mm"] for l in widget._findings["lesions"] if l["organ"] == "liver")
    assert second > first
    widget.ui.caseIdLineEdit.setText("B")
    widget.ui.exportStatusLabel.setText("")
    run_export(widget, widget.ui.addToDatasetButton, "Added B")
    for cid in ("A", "B"):
        assert (dataset / cid / "ct.nii.gz").is_file() and (dataset / cid / "report.txt").is_file()
        assert (dataset / cid / "segmentations" / "liver_lesion.nii.gz").is_file()
        assert json.loads((dataset / cid / "findings.json").read_text(encoding="utf-8"))["case_id"] == cid
    rows = {r["case_id"]: r for r in csv.DictReader((dataset / "metadata.csv").open())}
    assert sorted(rows) == ["A", "B"]
    assert float(rows["A"]["largest_lesion_mm_liver"]) == pytest.approx(first, abs=0.05)
    assert float(rows["B"]["largest_lesion_mm_liver"]) == pytest.approx(second, abs=0.05)
    assert "1 other case(s) kept" in widget.ui.exportStatusLabel.text()


# ----------------------------------------------------------------------- narrative
def structured_echo(body):
    """A faithful model: rewrites nothing, returns the structured report it was sent."""
    prompt = next(m["content"] for m in body["messages"] if "STRUCTURED REPORT:" in m["content"])
    report = prompt.split("STRUCTURED REPORT:", 1)[1].split("FACTS THAT MUST APPEAR", 1)[0].strip()
    return f"#start\n{report}\n#end"


def swapped_sides(body):
    text = structured_echo(body)
    text = text.replace("right kidney", "RIGHT_").replace("left kidney", "right kidney")
    return text.replace("RIGHT_", "left kidney")


def llm_server_class():
    from llm_server import ScriptedLLMServer  # Testing/llm_server.py, the project's test server

    return ScriptedLLMServer


def start_narrative(widget, server):
    """Opt in, point the panel at ``server`` and press Write narrative."""
    widget.ui.endpointLineEdit.setText(server.url)
    widget.ui.narrativeOptInCheckBox.setChecked(True)
    widget.ui.narrativeButton.click()


def test_narrative_is_opt_in_and_says_what_leaves_the_machine(panel):
    widget = panel[0]
    widget.ui.narrativeOptInCheckBox.setChecked(False)
    assert not widget.ui.narrativeButton.isEnabled()
    statement = widget.ui.narrativeSentLabel.text()
    assert "Not sent: images, masks, the CT" in statement and "Nothing is sent until" in statement
    widget.ui.endpointLineEdit.setText("http://127.0.0.1:9/v1")
    widget.ui.endpointLineEdit.editingFinished.emit()
    widget.ui.narrativeOptInCheckBox.setChecked(True)
    assert widget.ui.narrativeButton.isEnabled()
    from PyQt5 import QtCore

    settings = QtCore.QSettings()
    assert settings.value("RadGPT/Narrative/endpoint") == "http://127.0.0.1:9/v1"
    assert slicer.util.toBool(settings.value("RadGPT/Narrative/optIn"))


def test_accepted_narrative_is_shown_checked_and_saved(panel, tmp_path):
    widget, volume, seg = panel
    Server = llm_server_class()
    with Server(structured_echo) as server:
        widget.ui.modelLineEdit.setText(server.model)
        start_narrative(widget, server)
        assert harness.wait_until(lambda: widget._narrativeJob is None, 60)
        sent = json.dumps(server.requests)
    assert widget.ui.narrativeCheckLabel.text().startswith("Fact check passed")
    assert "LIVER" in widget.ui.narrativeBrowser.toPlainText().upper()
    # what left the machine: text and numbers only; no volume name, file path, image or provenance
    assert "Patient^Jane" not in sent and "4: CT" not in sent
    assert "data:image" not in sent and "PNG" not in sent and "provenance" not in sent
    assert not re.search(r"/(tmp|home|root|work)/", sent)
    lesion = widget._findings["lesions"][0]
    assert f"{lesion['longest_diameter_mm']:.1f}" in sent or f"{lesion['longest_diameter_mm'] / 10:.1f}" in sent
    # saved beside the reports and taken into the dataset triplet
    widget.ui.caseIdLineEdit.setText("N1")
    widget.ui.datasetFolderPathLineEdit.setCurrentPath(str(tmp_path / "dataset"))
    run_export(widget, widget.ui.addToDatasetButton, "Added N1")
    out_dir = tmp_path / "project" / "reports" / "N1"
    record = json.loads((out_dir / "narrative_check.json").read_text(encoding="utf-8"))
    assert record["status"] == "accepted" and record["case_id"] == "N1"
    assert (tmp_path / "dataset" / "N1" / "narrative.txt").read_text() == (out_dir / "narrative.txt").read_text()


def test_a_narrative_that_fails_the_check_falls_back_to_the_structured_report(panel):
    widget = panel[0]
    Server = llm_server_class()
    with Server(swapped_sides) as server:
        start_narrative(widget, server)
        assert harness.wait_until(lambda: widget._narrativeJob is None, 60)
        assert len(server.requests) >= 2  # retried with the checker's errors before falling back
    label = widget.ui.narrativeCheckLabel.text()
    assert label.startswith("Fact check failed") and "structured report is shown" in label
    assert "RADGPT STRUCTURED REPORT" in widget.ui.narrativeBrowser.toPlainText()
    assert "c06000" in widget.ui.narrativeCheckLabel.styleSheet()


def test_cancel_drops_a_slow_answer(panel):
    widget = panel[0]
    Server = llm_server_class()
    with Server(structured_echo, delay_s=1.5) as server:
        start_narrative(widget, server)
        assert harness.wait_until(lambda: server.requests, 30)
        widget.ui.narrativeCancelButton.click()
        assert "cancelled" in widget.ui.narrativeCheckLabel.text()
        assert widget.ui.narrativeButton.isEnabled() and not widget.ui.narrativeCancelButton.isEnabled()
        assert harness.wait_until(lambda: not widget.sideJobs.busy, 30)  # the answer arrived ...
    assert widget.ui.narrativeBrowser.toPlainText() == ""  # ... and was dropped
    assert "cancelled" in widget.ui.narrativeCheckLabel.text()
    assert slicer.util.MESSAGES == []


def test_a_narrative_for_older_findings_is_marked_and_not_saved(panel, tmp_path, phantom):
    widget, volume, seg = panel
    Server = llm_server_class()
    with Server(structured_echo) as server:
        start_narrative(widget, server)
        assert harness.wait_until(lambda: widget._narrativeJob is None, 60)
    c = np.argwhere(phantom.masks["liver_lesion"]).mean(axis=0).astype(int)
    stroke(widget, seg, "liver_lesion", ((c[0] - 9, c[0] + 9), (c[1] - 2, c[1] + 2), (c[2] - 1, c[2] + 1)))
    assert "findings changed" in widget.ui.narrativeCheckLabel.text()
    widget.ui.caseIdLineEdit.setText("old")
    run_export(widget, widget.ui.saveCaseButton, "Saved")
    assert not (tmp_path / "project" / "reports" / "old" / "narrative.txt").exists()


# --------------------------------------------------------------------------- DICOM
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "totalsegmentator" / "dicom_upper_abdomen"


@pytest.fixture
def dicom_panel(tmp_path):
    pytest.importorskip("highdicom")
    pytest.importorskip("SimpleITK")
    if not (REAL / "ct_dicom").is_dir():
        pytest.skip(f"real data not available: {REAL}")
    import pydicom

    from RadGPTLogic.io.casefolder import full_mask
    from RadGPTLogic.io.dicom import read_dicom_series_info
    from RadGPTLogic.io.labelmaps import case_from_labelmap

    harness.reset()
    ct, info = read_dicom_series_info(REAL / "ct_dicom")
    case = case_from_labelmap(REAL / "example_seg_dicom.nii.gz", table="total", ct_path=REAL / "ct_dicom")
    # the volume as Slicer's DICOM plugin leaves it: voxels, geometry and the instance UIDs of its files
    volume = harness.add_volume(np.asarray(ct.array), ct.affine, name="4: CT upper abdomen")
    uids = {}
    for path in info.files:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        # these files leave SOPInstanceUID blank; the file meta holds it (what a DICOM database indexes)
        uids[str(ds.get("SOPInstanceUID", "") or ds.file_meta.MediaStorageSOPInstanceUID)] = str(path)
    assert len(uids) == len(info.files)
    volume.SetAttribute("DICOM.instanceUIDs", " ".join(uids))
    slicer.dicomDatabase = harness.FakeDicomDatabase(uids)
    masks = {n: full_mask(case, c).astype(bool) for n, c in case.structures.items() if not c.is_empty}
    seg = harness.add_segmentation(volume, masks, shared=True)
    module, widget = harness.open_panel()
    widget.ui.computeButton.click()
    assert harness.wait_until(lambda: widget._findings is not None and not widget.controller.busy, 120)
    widget.ui.projectFolderPathLineEdit.setCurrentPath(str(tmp_path / "project"))
    yield widget, volume, seg, case, uids
    widget.cleanup()


def test_dicom_seg_and_sr_reference_the_source_series(dicom_panel, tmp_path, caplog):
    import pydicom

    widget, volume, seg, case, uids = dicom_panel
    assert widget.ui.exportDicomButton.isEnabled()
    # paint a lesion into the liver (overwrite-all: carved out of the liver in the shared layer)
    liver = np.argwhere(seg.GetSegmentation().fake_segment_mask(
        seg.GetSegmentation().GetSegmentIdBySegmentName("liver")))  # k, j, i
    k, j, i = liver[len(liver) // 2]
    segmentation = seg.GetSegmentation()
    lesion_id = segmentation.AddEmptySegment("liver_lesion", "liver_lesion", [1.0, 1.0, 0.0])
    widget.editor.setCurrentSegmentID(lesion_id)
    widget.editor.fake_stroke(np.ones((3, 9, 9), bool), origin_kji=(k - 1, j - 4, i - 4))
    assert harness.wait_until(lambda: widget._findings["lesions"] and not widget.controller.busy, 60)
    lesion = widget._findings["lesions"][0]
    widget.ui.caseIdLineEdit.setText("upper_abdomen")
    run_export(widget, widget.ui.exportDicomButton, "DICOM SEG and SR written")
    out = tmp_path / "project" / "dicom" / "upper_abdomen"
    seg_ds = pydicom.dcmread(str(out / "upper_abdomen_seg.dcm"))
    sr_ds = pydicom.dcmread(str(out / "upper_abdomen_sr.dcm"))
    assert seg_ds.StudyInstanceUID == sr_ds.StudyInstanceUID
    # these CT files have blank study and series UIDs: the writer generated them and the log says so
    assert "note(s) about the source series in the log" in widget.ui.exportStatusLabel.text()
    assert any("blank StudyInstanceUID" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    instances = seg_ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    referenced = {str(item.ReferencedSOPInstanceUID) for item in instances}
    assert referenced == set(uids)
    labels = [str(s.SegmentLabel) for s in seg_ds.SegmentSequence]
    assert lesion["id"] in labels and "liver" in labels
    # the SR's long axis of the lesion is the panel's number
    values = []

    def walk(items):
        for item in items:
            yield item
            yield from walk(getattr(item, "ContentSequence", []))

    for item in walk(sr_ds.ContentSequence):
        if getattr(item, "ValueType", "") == "NUM" and item.ConceptNameCodeSequence[0].CodeValue == "103339001":
            values.append(float(item.MeasuredValueSequence[0].NumericValue))
    assert any(abs(v - lesion["longest_diameter_mm"]) < 1e-3 for v in values), (values, lesion["longest_diameter_mm"])


def test_dicom_export_is_offered_only_for_a_dicom_ct(panel):
    widget = panel[0]
    assert widget._findings is not None and not widget.ui.exportDicomButton.isEnabled()
