"""The Segment button on a real Qt event loop, against a runner with a real worker process.

``slicer_fakes.fake_runner.FakeSegmentationRunner`` has the segmentation stage's runner
interface and starts a real child process that emits the interface's events, writes
the case folder atomically, can be cancelled and fails with a one-line error.  Its
masks are the phantom's, so every loaded segment is compared with exact truth.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("PyQt5")

import slicer_fakes as harness  # noqa: E402

harness.install()

import slicer  # noqa: E402  (the fake)
from slicer_fakes.fake_runner import FakeSegmentationRunner  # noqa: E402

from RadGPTLogic import vocabulary as vocab  # noqa: E402
from RadGPTLogic.phantom import build_phantom  # noqa: E402
from RadGPTSlicerLib import segment_stage  # noqa: E402

PROBABILITIES = {"liver_lesion": 0.55, "pancreatic_lesion": 0.93}


@pytest.fixture(scope="module")
def phantom():
    return build_phantom(size="small")


@pytest.fixture
def panel(phantom):
    """The panel with a CT and no segmentation; Segment uses the fake runner (its runs recorded)."""
    harness.reset()
    volume = harness.add_volume(phantom.ct, phantom.affine)
    module, widget = harness.open_panel()
    widget.runners = []
    widget.behaviour = "ok"

    def runner(device, models=("total",)):
        widget.models_asked = list(models)
        r = FakeSegmentationRunner(["fake-model"], device=device, behaviour=widget.behaviour,
                                   probabilities=PROBABILITIES)
        widget.runners.append(r)
        return r

    widget.logic.segmentationRunner = runner
    yield widget, volume
    widget.cleanup()


class StepWatch:
    """A GUI timer that records which step of the run was current each time it fired:
    proof that the event loop kept running during every step."""

    def __init__(self, widget):
        from PyQt5 import QtCore

        self.seen = set()
        self.widget = widget
        self.timer = QtCore.QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self):
        run = self.widget._segmentRun
        if run is not None:
            self.seen.add(run.step)

    def stop(self):
        self.timer.stop()


def segment_masks(node):
    s = node.GetSegmentation()
    return {s.GetNthSegmentID(n): s.fake_segment_mask(s.GetNthSegmentID(n)).transpose(2, 1, 0)
            for n in range(s.GetNumberOfSegments())}


def tag(segment, name):
    import vtk

    value = vtk.mutable("")
    return str(value) if segment.GetTag(name, value) else None


def test_segment_loads_every_mask_as_a_tagged_segment_without_freezing(panel, phantom):
    widget, volume = panel
    widget.ui.deviceComboBox.setCurrentText("cpu")
    watch = StepWatch(widget)
    progress = []
    on_progress = widget._onSegmentProgress
    widget._onSegmentProgress = lambda f, t: (progress.append((f, t)), on_progress(f, t))
    widget.ui.segmentButton.click()
    assert not widget.ui.segmentButton.isEnabled() and widget.ui.segmentCancelButton.isEnabled()
    assert harness.wait_until(lambda: widget._segmentRun is None, 120)
    watch.stop()
    assert slicer.util.MESSAGES == []
    # the event loop ran during every step: the GUI never froze
    assert {"write CT", "segment", "read masks", "load"} <= watch.seen
    runner = widget.runners[0]
    assert runner.started_with[2] == "cpu" and not runner.running
    assert any(f is not None and 0 < f <= 1 for f, _ in progress) and any("predict" in t for _, t in progress)

    node = widget._parameterNode.segmentation
    assert node is not None and node.GetName().endswith("RadGPT segmentation")
    masks = segment_masks(node)
    assert set(masks) == set(phantom.masks)  # segment ID = canonical name
    for name, truth in phantom.masks.items():
        np.testing.assert_array_equal(masks[name], truth, err_msg=name)
    segmentation = node.GetSegmentation()
    # organs share one labelmap layer; a lesion inside its organ sits on another layer
    assert segmentation.GetLayerIndex("liver") == segmentation.GetLayerIndex("spleen")
    assert segmentation.GetLayerIndex("liver_lesion") != segmentation.GetLayerIndex("liver")
    liver = segmentation.GetSegment("liver")
    assert liver.GetName() == "liver"
    assert np.allclose(liver.GetColor(), np.array([221, 130, 101]) / 255.0)
    assert tag(liver, "TerminologyEntry") == (
        "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
        "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")
    assert tag(segmentation.GetSegment("kidney_left"), "TerminologyEntry").split("~")[2:4] == [
        "SCT^64033007^Kidney", "SCT^7771000^Left"]
    lesion = segmentation.GetSegment("liver_lesion")
    assert tag(lesion, "TerminologyEntry").split("~")[1:6] == [
        "SCT^49755003^Morphologically Altered Structure", "SCT^4147007^Mass", "^^",
        "Anatomic codes - DICOM master list", "SCT^10200004^Liver"]
    for name in masks:
        segment = segmentation.GetSegment(name)
        assert tag(segment, "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
        assert tag(segment, "DICOM.SegmentAlgorithmName") == "RadGPT fake-model"
    assert tag(lesion, "RadGPT.Confidence") == "0.550"
    assert not any(n.GetName() == "RadGPT import" for n in slicer.mrmlScene.fake_nodes())  # temporary nodes gone
    assert not os.path.exists(os.path.dirname(runner.started_with[0]))  # temporary folder gone
    assert "loaded" in widget.ui.segmentStatusLabel.text()

    # the loaded segmentation is measured, the low-confidence lesion listed first for review
    widget.ui.computeButton.click()
    assert harness.wait_until(lambda: widget._findings is not None and not widget.controller.busy, 120)
    first = widget.ui.findingsTable.item(0, 0).text()
    assert first.startswith("liver_lesion")
    assert widget.ui.findingsTable.item(0, widget.ui.findingsTable.columnCount() - 1).text() == "0.55 review"


def test_cancel_ends_the_process_and_loads_nothing(panel):
    widget, volume = panel
    widget.behaviour = "slow"
    nodes_before = len(slicer.mrmlScene.fake_nodes("vtkMRMLSegmentationNode"))
    widget.ui.segmentButton.click()
    assert harness.wait_until(lambda: widget.runners and widget.runners[0].running
                              and widget._segmentRun is not None and widget._segmentRun.step == "segment", 60)
    assert harness.wait_until(lambda: "predict" in widget.ui.segmentStatusLabel.text(), 30)
    runner = widget.runners[0]
    pid = runner.pid
    out_parent = os.path.dirname(runner.started_with[1])
    widget.ui.segmentCancelButton.click()
    assert harness.wait_until(lambda: widget._segmentRun is None, 10)
    assert not runner.running
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    assert "cancelled" in widget.ui.segmentStatusLabel.text()
    assert len(slicer.mrmlScene.fake_nodes("vtkMRMLSegmentationNode")) == nodes_before
    assert not os.path.exists(out_parent)  # no partial output, no temporary folder
    assert slicer.util.MESSAGES == []  # a cancel is not an error
    assert widget.ui.segmentButton.isEnabled() and not widget.ui.segmentCancelButton.isEnabled()


@pytest.mark.parametrize("behaviour,expected", [
    ("fail", "the model needs a CT in Hounsfield units"),
    ("crash", "CUDA error: out of memory"),
])
def test_a_failed_run_is_one_line_in_a_dialog_and_the_log(panel, caplog, behaviour, expected):
    widget, volume = panel
    widget.behaviour = behaviour
    widget.ui.segmentButton.click()
    assert harness.wait_until(lambda: widget._segmentRun is None, 60)
    level, text = slicer.util.MESSAGES[-1]
    assert level == "error" and expected in text and "\n" not in text
    if behaviour == "fail":
        assert "ct.nii.gz:" in text  # names the file
    assert any(expected in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert widget._parameterNode.segmentation is None
    assert widget.ui.segmentButton.isEnabled()


def test_masks_off_the_ct_grid_are_refused_with_the_file_named(tmp_path, phantom):
    from RadGPTLogic.errors import InputError
    from RadGPTLogic.io.nifti import source_nifti_gz_bytes

    seg = tmp_path / "case" / "segmentations"
    seg.mkdir(parents=True)
    shifted = np.array(phantom.affine, float)
    shifted[0, 3] += 0.4  # off the lattice by 0.4 mm
    (seg / "liver.nii.gz").write_bytes(source_nifti_gz_bytes(phantom.masks["liver"].astype(np.uint8), shifted))
    with pytest.raises(InputError, match=r"liver\.nii\.gz.*not the CT's grid"):
        segment_stage.read_case_masks(tmp_path / "case", phantom.ct.shape[::-1], phantom.affine)


def test_layers_hold_no_overlaps_and_keep_every_voxel(phantom):
    import tempfile
    from pathlib import Path

    from RadGPTLogic.io.nifti import source_nifti_gz_bytes

    with tempfile.TemporaryDirectory() as tmp:
        seg = Path(tmp) / "segmentations"
        seg.mkdir()
        for name, mask in phantom.masks.items():
            (seg / f"{name}.nii.gz").write_bytes(source_nifti_gz_bytes(mask.astype(np.uint8), phantom.affine))
        plan = segment_stage.read_case_masks(tmp, phantom.ct.shape[::-1], phantom.affine)
    placed = {}
    for labels, names in plan.layers:
        for value, name in enumerate(names, start=1):
            placed[name] = labels.transpose(2, 1, 0) == value
    assert set(placed) == set(phantom.masks)
    for name, mask in phantom.masks.items():
        np.testing.assert_array_equal(placed[name], mask, err_msg=name)
    assert len(plan.layers) < len(phantom.masks)  # shared layers, not one per mask


def test_terminology_codes_match_the_dicom_code_dictionary():
    """Type codes and meanings as DICOM (pydicom's SNOMED CT dictionary) defines them."""
    codes = pytest.importorskip("pydicom.sr.codedict").codes
    by_value = {}
    for name in dir(codes.SCT):
        try:
            code = getattr(codes.SCT, name)
        except AttributeError:
            continue
        if hasattr(code, "value"):
            by_value.setdefault(code.value, set()).add(code.meaning.lower())
    for structure, (_context, value, meaning, _modifier, _rgb) in segment_stage.STRUCTURE_TERMS.items():
        if value == "57850000":  # celiac trunk: in Slicer's DICOM master list, not in pydicom's dictionary
            continue
        assert value in by_value and meaning.lower() in by_value[value], structure
    for kind, (_context, value, meaning, _rgb) in segment_stage.LESION_TERMS.items():
        assert value in by_value and meaning.lower() in by_value[value], kind
    for lesion in vocab.LESION_ORGAN_KIND:
        assert segment_stage.terminology_entry(lesion).count("~") == 6


def test_models_field_chooses_the_models_and_is_remembered(panel):
    widget, _volume = panel
    from PyQt5 import QtCore

    folder = "/models/Dataset123_X/nnUNetTrainer__nnUNetPlans__3d_fullres"
    widget.ui.segmentModelsLineEdit.setText(f" total_fast ; {folder} ")
    widget.ui.segmentModelsLineEdit.editingFinished.emit()
    widget.ui.segmentButton.click()
    assert harness.wait_until(lambda: widget._segmentRun is None, 120)
    assert widget.models_asked == ["total_fast", folder]
    assert QtCore.QSettings().value("RadGPT/Segment/models").strip().startswith("total_fast")
    widget.ui.segmentModelsLineEdit.setText("")
    widget.ui.segmentButton.click()
    assert harness.wait_until(lambda: widget._segmentRun is None, 120)
    assert widget.models_asked == ["total"]  # empty field: TotalSegmentator's published weights


def test_segment_button_drives_the_real_runner_and_model(tmp_path):
    """No fake runner: the module's own runner (RadGPTLogic.segment) in its worker process,
    the committed tiny nnU-Net model, a piece of the phantom around the liver."""
    import nibabel as nib
    from segment_helpers import TINY_MODEL, dice, needs_model, small_fov_ct

    if needs_model.args[0]:
        pytest.skip(needs_model.kwargs["reason"])
    image = nib.as_closest_canonical(nib.load(str(small_fov_ct(tmp_path / "ct.nii.gz"))))
    ct = np.asarray(image.dataobj)
    harness.reset()
    harness.add_volume(ct, image.affine)
    _module, widget = harness.open_panel()
    try:
        widget.ui.segmentModelsLineEdit.setText(str(TINY_MODEL))
        widget.ui.deviceComboBox.setCurrentText("cpu")
        progress = []
        on_progress = widget._onSegmentProgress
        widget._onSegmentProgress = lambda f, t: (progress.append(t), on_progress(f, t))
        widget.ui.segmentButton.click()
        assert harness.wait_until(lambda: widget._segmentRun is None, 600)
        assert slicer.util.MESSAGES == []
        assert any("predict Dataset987_RadGPTTinyPhantom fold all" in t for t in progress)
        masks = segment_masks(widget._parameterNode.segmentation)
        assert {"liver", "spleen", "kidney_left", "kidney_right", "pancreas", "liver_lesion"} <= set(masks)
        truth = build_phantom(size="small", seed=3, lesions=[]).masks["liver"][110:170, 60:120, 40:72]
        assert dice(masks["liver"], truth) >= 0.85
    finally:
        widget.cleanup()
