"""The Slicer module on a real Qt 5.15 event loop (PyQt5, offscreen) with Slicer faked.

``Testing/slicer_fakes`` reproduces what Slicer's sources say the module meets:
segment events carrying the segment ID, shared labelmap layers with label values,
overwrite-all painting, node removal and scene close, and the cost of the
full-extent export (``slicer.util.arrayFromSegmentBinaryLabelmap`` adds and removes
a temporary node: counted, so a regression to it fails here).  The widget is built
from its ``.ui`` file and driven through the real path: stroke -> segment event ->
debounce timer -> worker thread -> result swapped in on the GUI thread.

Expected numbers come from the core run directly on the phantom's arrays.
"""

from __future__ import annotations

import ast
import py_compile
import re
import struct
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PyQt5")

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "RadGPTSlicer"

import slicer_fakes as harness  # noqa: E402

harness.install()

import slicer  # noqa: E402  (the fake)

from RadGPTLogic.case import Case  # noqa: E402
from RadGPTLogic.engine import Engine  # noqa: E402
from RadGPTLogic.phantom import build_phantom  # noqa: E402
from RadGPTSlicerLib import ensure_core_importable  # noqa: E402
from RadGPTSlicerLib.findings_view import LESION_COLUMNS, lesion_rows, review_order  # noqa: E402
from RadGPTSlicerLib.layers import SegmentTracker, grid_offset, ijk_crop_to_canonical  # noqa: E402

#: Couinaud segment masks overlap the liver, which one multi-label file cannot hold: own layers.
COUINAUD = tuple(f"liver_segment_{n}" for n in range(1, 9))


@pytest.fixture(scope="module")
def phantom():
    return build_phantom(size="small")


@pytest.fixture
def panel(phantom):
    harness.reset()
    volume = harness.add_volume(phantom.ct, phantom.affine)
    seg = harness.add_segmentation(volume, phantom.masks, shared=True, separate=COUINAUD)
    module, widget = harness.open_panel()
    widget.ui.computeButton.click()
    assert harness.wait_until(lambda: widget._findings is not None and not widget.controller.busy, 120)
    yield widget, volume, seg, phantom
    widget.cleanup()


def reference(masks, phantom, phase="unknown"):
    return Engine(Case.from_arrays("ref", phantom.affine, masks, ct=phantom.ct), phase).compute().to_dict()


def lesion_of(findings, mask):
    return [l for l in findings["lesions"] if l["mask"] == mask]


def segment_id(seg_node, name):
    return seg_node.GetSegmentation().GetSegmentIdBySegmentName(name)


def current_masks(seg_node, phantom):
    s = seg_node.GetSegmentation()
    return {s.GetSegment(sid).GetName(): s.fake_segment_mask(sid).transpose(2, 1, 0)
            for sid in (s.GetNthSegmentID(n) for n in range(s.GetNumberOfSegments()))}


def stroke(widget, seg_node, name, box_ijk, erase=False):
    """One Paint stroke through the embedded editor (its overwrite mode applies)."""
    widget.editor.setCurrentSegmentID(segment_id(seg_node, name))
    (i0, i1), (j0, j1), (k0, k1) = box_ijk
    widget.editor.fake_stroke(np.ones((k1 - k0, j1 - j0, i1 - i0), bool), erase=erase, origin_kji=(k0, j0, i0))


# --------------------------------------------------------------------- the panel
def test_compute_in_background_matches_the_core(panel):
    widget, volume, seg, phantom = panel
    want = reference(current_masks(seg, phantom), phantom)
    got = widget._findings
    assert [l["id"] for l in got["lesions"]] == [l["id"] for l in want["lesions"]]
    for g, w in zip(got["lesions"], want["lesions"]):
        for key in ("longest_diameter_mm", "perpendicular_diameter_mm", "volume_ml", "mean_hu", "calipers_ras_mm"):
            assert g[key] == w[key], key
    volumes = {k: v["volume_ml"] for k, v in want["organs"].items()}
    assert {k: v["volume_ml"] for k, v in got["organs"].items()} == volumes
    assert widget.ui.findingsTable.rowCount() == len(want["lesions"])
    assert widget.ui.findingsTable.item(0, 0).text() == got["lesions"][0]["id"]
    assert "Up to date" in widget.ui.statusLabel.text()
    assert slicer.util.COSTS == {"full_exports": 0, "temp_nodes": 0}


def test_lesion_stroke_updates_table_and_report_without_full_export(panel, monkeypatch):
    from RadGPTSlicerLib.layers import LayerPatch
    from RadGPTSlicerLib.measure_process import RemoteSession

    widget, volume, seg, phantom = panel
    sent = []
    call = RemoteSession._call
    monkeypatch.setattr(RemoteSession, "_call", lambda self, op, *a: (sent.append((op, a)), call(self, op, *a))[1])
    lesion = widget._findings["lesions"][0]
    mask = lesion["mask"]
    renders_before = widget.controller.session.stats()["renders"]
    names = set(current_masks(seg, phantom))
    # grow the lesion: a box around its centre voxel
    ijk = np.argwhere(seg.GetSegmentation().fake_segment_mask(segment_id(seg, mask)).transpose(2, 1, 0))
    c = ijk.mean(axis=0).astype(int)
    stroke(widget, seg, mask, ((c[0] - 9, c[0] + 9), (c[1] - 3, c[1] + 3), (c[2] - 2, c[2] + 2)))
    assert widget.controller.stale and "updating" in widget.ui.statusLabel.text()
    assert harness.wait_until(lambda: not widget.controller.stale and not widget.controller.busy, 60)
    want = reference(current_masks(seg, phantom), phantom)
    assert widget._findings["lesions"] == want["lesions"] or [
        (l["id"], l["longest_diameter_mm"]) for l in widget._findings["lesions"]] == [
        (l["id"], l["longest_diameter_mm"]) for l in want["lesions"]]
    assert max(l["longest_diameter_mm"] for l in lesion_of(widget._findings, mask)) >= 18.0 * 0.9
    assert slicer.util.COSTS == {"full_exports": 0, "temp_nodes": 0}  # no temporary nodes, no CT-sized export
    # only the edited lesion (and the organ it was carved from) changed; one key image re-rendered per lesion
    # of that mask, the others came from the cache
    changed = {seg.GetSegmentation().GetSegment(s).GetName() for s in widget.controller.session.stats()["last_changed"]}
    assert mask in changed and changed <= names
    rerendered = widget.controller.session.stats()["renders"] - renders_before
    assert 1 <= rerendered <= len(lesion_of(widget._findings, mask))
    # only the changed box of the shared layer went to the measurement process, not the layer
    layers = [layer for op, args in sent if op == "apply" for layer in args[0]]
    assert layers and all(isinstance(layer, LayerPatch) for layer in layers)
    assert sum(layer.voxels.size for layer in layers) <= 20 * 8 * 6
    assert "Up to date" in widget.ui.statusLabel.text()


def test_overwrite_all_carves_the_organ_in_a_shared_layer(panel):
    """Slicer's default mode writes the lesion label over the organ's label in the shared layer;
    the event names only the lesion, yet the organ's change is found from its own voxels."""
    widget, volume, seg, phantom = panel
    liver_id = segment_id(seg, "liver")
    before = int(seg.GetSegmentation().fake_segment_mask(liver_id).sum())
    ijk = np.argwhere(phantom.masks["liver"])
    c = ijk[len(ijk) // 2]
    seg.GetSegmentation().invoked.clear()
    stroke(widget, seg, "liver_lesion", ((c[0] - 2, c[0] + 3), (c[1] - 2, c[1] + 3), (c[2] - 1, c[2] + 2)))
    events = [cd for ev, cd in seg.GetSegmentation().invoked if ev == slicer.vtkSegmentation.RepresentationModified]
    # the painted segment and the Couinaud segments on other layers are named; the liver is not
    assert events[0] == segment_id(seg, "liver_lesion") and liver_id not in events
    after = int(seg.GetSegmentation().fake_segment_mask(liver_id).sum())
    assert after < before  # carved
    assert harness.wait_until(lambda: not widget.controller.stale and not widget.controller.busy, 60)
    assert liver_id in widget.controller.session.stats()["last_changed"]
    want = reference(current_masks(seg, phantom), phantom)
    assert widget._findings["organs"]["liver"]["volume_ml"] == want["organs"]["liver"]["volume_ml"]


def test_editor_mode_cue_follows_the_editor_node(panel):
    widget = panel[0]
    assert "overwrite all segments" in widget.ui.editorModeLabel.text()
    widget._editorNode.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    assert "allow overlap" in widget.ui.editorModeLabel.text()


def test_overwrite_none_separates_the_lesion_and_keeps_the_organ(panel):
    widget, volume, seg, phantom = panel
    widget._editorNode.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    liver_id = segment_id(seg, "liver")
    before = int(seg.GetSegmentation().fake_segment_mask(liver_id).sum())
    layers_before = seg.GetSegmentation().GetNumberOfLayers()
    c = np.argwhere(phantom.masks["liver"])[0] + 2
    stroke(widget, seg, "liver_lesion", ((c[0], c[0] + 3), (c[1], c[1] + 3), (c[2], c[2] + 2)))
    assert seg.GetSegmentation().GetNumberOfLayers() == layers_before + 1  # lesion moved to its own layer
    assert int(seg.GetSegmentation().fake_segment_mask(liver_id).sum()) == before
    assert harness.wait_until(lambda: not widget.controller.stale and not widget.controller.busy, 60)
    want = reference(current_masks(seg, phantom), phantom)
    assert [l["volume_ml"] for l in widget._findings["lesions"]] == [l["volume_ml"] for l in want["lesions"]]


def test_measuring_runs_in_a_process_of_its_own_that_ends_with_the_session(panel):
    import os

    widget, volume, seg, phantom = panel
    session = widget.controller.session
    assert session.pid != os.getpid() and session.running
    slicer.mrmlScene.RemoveNode(seg)  # the session ends with its inputs
    assert widget.controller.session is None and not session.running


def test_a_dead_measurement_process_is_one_line_and_compute_starts_a_new_one(panel, caplog):
    import os
    import signal

    widget, volume, seg, phantom = panel
    first = widget.controller.session
    os.kill(first.pid, signal.SIGKILL)
    c = np.argwhere(phantom.masks["liver_lesion"]).mean(axis=0).astype(int)
    stroke(widget, seg, "liver_lesion", ((c[0] - 6, c[0] + 6), (c[1] - 2, c[1] + 2), (c[2] - 1, c[2] + 1)))
    assert harness.wait_until(lambda: "update failed" in widget.ui.statusLabel.text(), 30)
    assert "measurement process ended unexpectedly" in widget.ui.statusLabel.text()
    assert any("measurement process ended" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    widget.ui.computeButton.click()
    assert harness.wait_until(lambda: widget.controller.session is not None and widget.controller.session is not first
                              and not widget.controller.busy and "Up to date" in widget.ui.statusLabel.text(), 120)
    want = reference(current_masks(seg, phantom), phantom)
    assert [l["volume_ml"] for l in widget._findings["lesions"]] == [l["volume_ml"] for l in want["lesions"]]


def test_layer_copies_reuse_released_arrays():
    from RadGPTSlicerLib.layers import ArrayPool

    pool = ArrayPool()
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    first = pool.copy_of(a)
    assert first is not a and np.array_equal(first, a)
    pool.release(first)
    b = a[::-1].copy()
    second = pool.copy_of(b)
    assert second is first and np.array_equal(second, b)  # the released memory, with the new voxels
    assert pool.copy_of(a) is not first  # in use again: a fresh array
    pool.release(first)
    assert pool.copy_of(a.astype(np.uint16)) is not first  # another dtype never reuses it


def test_messages_carry_arrays_out_of_band():
    import io

    from RadGPTSlicerLib import ipc
    from RadGPTSlicerLib.layers import LayerSnapshot

    big = np.arange(2 * 3 * 5, dtype=np.int16).reshape(2, 3, 5)
    message = ("apply", ([LayerSnapshot(("a",), big, (0, 4, 0, 2, 0, 1), {"a": 1})], {"a": "liver"}))
    stream = io.BytesIO()
    ipc.send(stream, message)
    assert big.tobytes() in stream.getvalue()  # raw, after the pickle: not pickled element by element
    stream.seek(0)
    op, (snapshots, names) = ipc.recv(stream)
    assert op == "apply" and names == {"a": "liver"}
    np.testing.assert_array_equal(snapshots[0].voxels, big)
    assert snapshots[0].voxels.flags.writeable and snapshots[0].extent == (0, 4, 0, 2, 0, 1)
    with pytest.raises(ipc.ChannelClosed):
        ipc.recv(io.BytesIO(b"\x00" * 3))


def _paint_in_mode(phantom, mode):
    """A fresh panel; one lesion stroke inside the liver in editor overwrite ``mode``; the findings after it."""
    harness.reset()
    volume = harness.add_volume(phantom.ct, phantom.affine)
    seg = harness.add_segmentation(volume, phantom.masks, shared=True, separate=COUINAUD)
    module, widget = harness.open_panel()
    try:
        widget._editorNode.SetOverwriteMode(mode)
        widget.ui.computeButton.click()
        assert harness.wait_until(lambda: widget._findings is not None and not widget.controller.busy, 120)
        c = np.argwhere(phantom.masks["liver"])
        c = c[len(c) // 2]
        stroke(widget, seg, "liver_lesion", ((c[0] - 4, c[0] + 5), (c[1] - 4, c[1] + 5), (c[2] - 2, c[2] + 3)))
        assert harness.wait_until(lambda: not widget.controller.stale and not widget.controller.busy, 60)
        liver = seg.GetSegmentation().fake_segment_mask(segment_id(seg, "liver")).sum()
        rows = [[widget.ui.findingsTable.item(r, c).text() for c in range(widget.ui.findingsTable.columnCount())]
                for r in range(widget.ui.findingsTable.rowCount())]
        return widget._findings, rows, int(liver)
    finally:
        widget.cleanup()


@pytest.fixture(scope="module")
def both_modes(phantom):
    return (_paint_in_mode(phantom, slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments),
            _paint_in_mode(phantom, slicer.vtkMRMLSegmentEditorNode.OverwriteNone))


def _without(findings, lesion_keys=()):
    out = {k: v for k, v in findings.items() if k not in ("provenance", "warnings", "lesions")}
    out["lesions"] = [{k: v for k, v in l.items() if k not in lesion_keys} for l in findings["lesions"]]
    return out


def test_both_editor_modes_give_the_same_findings_table(both_modes):
    """Overwrite-all carves the painted lesion out of the liver segment (and of the Couinaud segment
    masks on their own layers), allow-overlap keeps it inside: the engine counts an organ's lesions as
    part of it either way, so the panel shows the same table and the same numbers."""
    (carved, carved_rows, carved_liver), (kept, kept_rows, kept_liver) = both_modes
    assert carved_liver < kept_liver  # the segmentations really differ
    assert carved_rows == kept_rows and len(carved_rows) == len(kept["lesions"])
    assert _without(carved, ("couinaud_by",)) == _without(kept, ("couinaud_by",))


@pytest.mark.xfail(strict=True, reason="engine: lesion voxels carved out of the Couinaud segment masks are "
                                       "assigned by the nearest segment, so couinaud_by says so (same segment)")
def test_both_editor_modes_explain_the_location_alike(both_modes):
    (carved, _, _), (kept, _, _) = both_modes
    assert _without(carved) == _without(kept)


def test_edits_before_compute_do_not_hang_the_status():
    harness.reset()
    p = build_phantom(size="small")
    volume = harness.add_volume(p.ct, p.affine)
    seg = harness.add_segmentation(volume, p.masks, shared=True)
    module, widget = harness.open_panel()
    stroke(widget, seg, "liver_lesion", ((50, 53), (60, 63), (40, 42)))
    harness.wait_until(lambda: False, 0.3)
    assert "updating" not in widget.ui.statusLabel.text()
    widget.cleanup()


def test_removing_the_segmentation_forgets_findings_and_observers(panel):
    widget, volume, seg, phantom = panel
    segmentation = seg.GetSegmentation()
    assert segmentation.NumberOfObservers() > 0
    slicer.mrmlScene.RemoveNode(seg)
    assert widget._findings is None and widget.controller.session is None
    assert widget.ui.findingsTable.rowCount() == 0
    assert "removed" in widget.ui.statusLabel.text()
    assert not [o for o in segmentation._observers.values() if getattr(o[1], "__self__", None) is widget]


def test_scene_close_releases_everything(panel):
    widget, volume, seg, phantom = panel
    segmentation = seg.GetSegmentation()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # VTKObservationMixin warns on a second observer of one method
        slicer.mrmlScene.Clear(0)
    assert widget._findings is None and widget.controller.session is None
    # the editor node is a singleton: it survives the close and is observed exactly once again
    editor_node = slicer.mrmlScene.GetSingletonNode("RadGPTSegmentEditor", "vtkMRMLSegmentEditorNode")
    assert widget._editorNode is editor_node
    assert len([o for o in editor_node._observers.values() if getattr(o[1], "__self__", None) is widget]) == 1
    assert not [o for o in segmentation._observers.values() if getattr(o[1], "__self__", None) is widget]
    assert widget.ui.reportBrowser.toPlainText() == ""


def test_errors_go_to_a_dialog_and_the_log(panel, caplog, tmp_path):
    widget = panel[0]
    widget.ui.projectFolderPathLineEdit.setCurrentPath("")
    widget.onSaveCase()
    assert harness.wait_until(lambda: slicer.util.MESSAGES, 30)
    level, text = slicer.util.MESSAGES[-1]
    assert level == "error" and "choose a project folder first" in text and "\n" not in text
    assert any("choose a project folder first" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_the_in_slicer_self_test_passes_in_the_harness():
    """RadGPTSlicerTest is written for a real Slicer; run here it keeps it consistent with the module
    (every Slicer call it makes is one the fakes model from Slicer's sources)."""
    import io
    import unittest

    harness.reset()
    module, widget = harness.open_panel()
    try:
        result = unittest.TextTestRunner(stream=io.StringIO()).run(module.RadGPTSlicerTest("runTest"))
    finally:
        widget.cleanup()
    assert result.testsRun == 1 and result.wasSuccessful(), result.errors + result.failures


def test_an_undefined_slicer_function_fails_the_test():
    with pytest.raises(AttributeError):
        _ = slicer.util.arrayFromSegment  # deprecated in Slicer, not modelled: using it must fail
    with pytest.raises(AttributeError):
        _ = slicer.qSlicerNoSuchWidget


def test_module_uses_only_real_and_faked_slicer_util_functions():
    from slicer.util import REAL_UTIL_NAMES

    used = set()
    for path in [MODULE_DIR / "RadGPTSlicer.py", *(MODULE_DIR / "RadGPTSlicerLib").glob("*.py")]:
        used |= set(re.findall(r"slicer(?:_util|\.util)\.(\w+)\(", path.read_text(encoding="utf-8")))
    assert used, "no slicer.util call found"
    assert used <= REAL_UTIL_NAMES, used - REAL_UTIL_NAMES
    # pip_install: only without slicer.packaging;
    # getModuleLogic: only in a docstring
    missing = {u for u in used if not hasattr(slicer.util, u)} - {"pip_install", "getModuleLogic"}
    assert not missing, missing


def test_no_pythonqt_only_or_pyqt_only_idioms_in_the_widget():
    """Property assignment (``w.enabled = x``) works only in PythonQt; string signal connects
    only in PythonQt; reads must go through methods or ``property()``."""
    source = (MODULE_DIR / "RadGPTSlicer.py").read_text(encoding="utf-8")
    assert not re.search(r"self\.ui\.\w+\.(enabled|text|visible|toolTip|checked|value)\s*=", source)
    assert '.connect("' not in source
    assert not re.search(r"self\.ui\.\w+\.(text|currentText)\(\)", source)


# --------------------------------------------------------------- library units
def test_tracker_finds_changed_labels_in_a_shared_layer_by_voxels():
    from RadGPTSlicerLib.layers import LayerSnapshot

    shape = (6, 8, 10)  # k, j, i
    vox = np.zeros(shape, np.uint8)
    vox[1:3, 1:4, 1:5] = 1
    vox[3:5, 4:7, 5:9] = 2
    tracker = SegmentTracker((10, 8, 6), np.array([[0, 1], [1, 1], [2, 1]]))
    extent = (0, 9, 0, 7, 0, 5)
    assert tracker.update([LayerSnapshot(("a", "b"), vox.copy(), extent, {"a": 1, "b": 2})]) == {"a", "b"}
    edited = vox.copy()
    edited[3, 4, 5] = 1  # paint a voxel of "b" as "a": both changed
    assert tracker.update([LayerSnapshot(("a", "b"), edited, extent, {"a": 1, "b": 2})]) == {"a", "b"}
    assert tracker.update([LayerSnapshot(("a", "b"), edited.copy(), extent, {"a": 1, "b": 2})]) == set()
    assert tracker.crop("a").count == 2 * 3 * 4 + 1 and tracker.crop("b").count == 2 * 3 * 4 - 1
    # the layer shrinks (Slicer shrinks to the nonzero extent): "b" erased, "a" loses its painted voxel
    small = edited[:3, :5, :6].copy()
    assert tracker.update([LayerSnapshot(("a", "b"), small, (0, 5, 0, 4, 0, 2), {"a": 1, "b": 2})]) == {"a", "b"}
    assert tracker.crop("b").is_empty and tracker.crop("a").count == 2 * 3 * 4


def test_interior_edits_patch_the_crop_and_equal_a_fresh_read(monkeypatch):
    """A lesion painted inside an organ (overwrite-all carves it in the shared layer): the organ's
    crop is patched in the changed box only, and equals what reading the layer afresh gives."""
    from RadGPTSlicerLib.layers import LayerSnapshot

    rng = np.random.default_rng(7)
    shape = (20, 30, 40)  # k, j, i
    vox = np.zeros(shape, np.uint8)
    vox[2:18, 3:27, 4:36] = 1                       # organ
    vox[rng.random(shape) < 0.02] = 0              # ragged, so crops are not plain boxes
    vox[8:10, 10:13, 10:14] = 2                    # lesion inside
    ornt = np.array([[1, -1], [0, 1], [2, 1]])     # a source frame other than the canonical one
    extent = (3, 42, 5, 34, 1, 20)                  # the layer sits at an offset on the CT grid
    labels = {"organ": 1, "lesion": 2}
    tracker = SegmentTracker((50, 40, 30), ornt)
    tracker.update([LayerSnapshot(("lesion", "organ"), vox.copy(), extent, labels)])
    patched = []
    original = SegmentTracker._patch
    monkeypatch.setattr(SegmentTracker, "_patch", lambda self, *a: patched.append(a[0]) or original(self, *a))
    edited = vox.copy()
    edited[9:12, 12:16, 15:20] = 2                  # a stroke well inside the organ
    edited[5, 6, 7] = 0                             # and an erased voxel elsewhere inside it
    assert tracker.update([LayerSnapshot(("lesion", "organ"), edited, extent, labels)]) == {"organ", "lesion"}
    assert "organ" in patched
    fresh = SegmentTracker((50, 40, 30), ornt)
    fresh.update([LayerSnapshot(("lesion", "organ"), edited.copy(), extent, labels)])
    for sid in labels:
        assert tracker.crop(sid).offset == fresh.crop(sid).offset, sid
        np.testing.assert_array_equal(tracker.crop(sid).mask, fresh.crop(sid).mask, err_msg=sid)


def test_crop_to_canonical_matches_the_full_array_path():
    from RadGPTLogic.case import Crop
    from RadGPTLogic.geometry import canonical_orientation, to_canonical

    affine = np.array([[0.0, 0.0, 0.9, -38.0], [-0.8, 0.0, 0.0, 30.0], [0.0, 1.5, 0.0, -28.0], [0, 0, 0, 1.0]])
    full = np.zeros((12, 9, 7), bool)
    full[3:7, 2:5, 1:6] = True
    full[4, 2, 1] = False
    ornt = canonical_orientation(affine)
    want = Crop.from_full(np.ascontiguousarray(to_canonical(full, ornt)))
    got = ijk_crop_to_canonical(full[3:7, 2:5, 1:6], (3, 2, 1), full.shape, ornt)
    assert got.offset == want.offset
    np.testing.assert_array_equal(got.mask, want.mask)


def test_grid_offset():
    a = np.diag([0.8, 0.8, 2.0, 1.0])
    b = a.copy()
    b[:3, 3] = (1.6, -0.8, 4.0)
    assert grid_offset(b, a) == (2, -1, 2)
    c = b.copy()
    c[0, 3] += 0.3
    assert grid_offset(c, a) is None


def test_low_confidence_lesions_are_listed_first():
    findings = {"lesions": [{"id": "a", "mask": "liver_lesion"}, {"id": "b", "mask": "kidney_lesion"},
                            {"id": "c", "mask": "pancreatic_lesion"}]}
    order = review_order(findings, {"kidney_lesion": 0.4, "pancreatic_lesion": 0.95, "liver_lesion": 0.6})
    assert order == [1, 0, 2]
    rows = lesion_rows(findings, {"kidney_lesion": 0.4})
    assert rows[1][LESION_COLUMNS.index("Confidence")] == "0.40 review" and rows[0][-1] == ""


# ------------------------------------------------------- module files and packaging
def _module_files():
    return sorted(
        p.relative_to(MODULE_DIR).as_posix()
        for p in MODULE_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and p.name != "CMakeLists.txt"
    )


def _cmake_list(text: str, variable: str) -> list:
    m = re.search(r"set\(\s*" + variable + r"\s+(.*?)\)", text, re.S)
    assert m, f"{variable} not set"
    return [t.replace("${MODULE_NAME}", "RadGPTSlicer") for t in m.group(1).split()]


def test_module_python_files_compile(tmp_path):
    for path in [MODULE_DIR / f for f in _module_files() if f.endswith(".py")]:
        py_compile.compile(str(path), cfile=str(tmp_path / (path.name + "c")), doraise=True)


def test_every_module_file_is_listed_in_cmake():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = _cmake_list(text, "MODULE_PYTHON_SCRIPTS") + _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    assert sorted(listed) == _module_files()
    assert "slicerMacroBuildScriptedModule" in text
    # the core package is installed next to the module
    assert "RadGPTLogic/*.py" in text and "SOURCE_DIR" in text and "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR" in text


def _cmake_set(text: str, variable: str) -> str:
    m = re.search(r'set\(' + variable + r' "([^"]*)"', text)
    assert m, variable
    return m.group(1)


def test_extension_cmake_metadata():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{key} "[^"]+"\)', text), key
    assert re.search(r"project\(RadGPT\)", text)
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(RadGPTSlicer)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text
    # one address the maintainers set: homepage, icon and screenshot all derive from it
    repository = _cmake_set(text, "RADGPT_REPOSITORY_URL")
    assert re.fullmatch(r"https://github\.com/[^/\s]+/[^/\s]+", repository)
    assert text.count(repository) == 1
    assert _cmake_set(text, "EXTENSION_HOMEPAGE") == "${RADGPT_REPOSITORY_URL}"
    for key, path in (("EXTENSION_ICONURL", "Resources/RadGPT.png"),
                      ("EXTENSION_SCREENSHOTURLS", "Resources/Screenshot01.png")):
        assert _cmake_set(text, key) == "${_radgpt_raw_url}/" + path and (REPO / path).is_file(), key


def test_contributors_are_name_and_organisation_in_cmake_and_module():
    cmake = _cmake_set((REPO / "CMakeLists.txt").read_text(encoding="utf-8"), "EXTENSION_CONTRIBUTORS")
    entries = [e.strip() for e in cmake.split(",")]
    assert entries and all(re.fullmatch(r"[^()]+ \([^()]+\)", e) for e in entries), entries
    tree = ast.parse((MODULE_DIR / "RadGPTSlicer.py").read_text(encoding="utf-8"))
    module = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RadGPTSlicer")
    listed = [ast.literal_eval(node.value) for node in ast.walk(module)
              if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "self.parent.contributors"]
    assert listed == [entries]


def test_extensions_index_entry_follows_the_catalog_schema():
    import json

    entry = json.loads((REPO / "Resources" / "ExtensionsIndex" / "RadGPT.json").read_text(encoding="utf-8"))
    # Slicer/Slicer Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json: required keys, no others
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert re.fullmatch(r"https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/"
                        r"slicer-extension-catalog-entry-schema-v1\.0\.\d\.json#", entry["$schema"])
    assert isinstance(entry.get("tier", 1), int) and 1 <= entry.get("tier", 1) <= 5
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert entry["scm_url"] == _cmake_set(cmake, "RADGPT_REPOSITORY_URL")
    assert entry["category"] == _cmake_set(cmake, "EXTENSION_CATEGORY")
    depends = _cmake_set(cmake, "EXTENSION_DEPENDS")
    assert entry.get("build_dependencies", []) == ([] if depends == "NA" else depends.split())


def test_screenshot_is_a_small_png_rendered_from_the_panel(tmp_path):
    from PyQt5 import QtGui

    shipped = QtGui.QImage(str(REPO / "Resources" / "Screenshot01.png"))
    assert not shipped.isNull() and 400 <= shipped.width() <= 1000
    assert (REPO / "Resources" / "Screenshot01.png").stat().st_size < 300_000
    # the generator renders the current panel (harness state is reset for the tests that follow)
    from slicer_fakes.render_screenshot import SAVED_WIDTH, render

    fresh = QtGui.QImage(str(render(tmp_path / "shot.png")))
    assert fresh.width() == SAVED_WIDTH == shipped.width()
    assert abs(fresh.height() - shipped.height()) < 0.1 * shipped.height()


@pytest.mark.parametrize("path", ["Resources/RadGPT.png", "RadGPTSlicer/Resources/Icons/RadGPTSlicer.png"])
def test_icons_are_128_px_pngs(path):
    data = (REPO / path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (128, 128)


def test_ui_file_has_the_widgets_the_module_uses():
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "RadGPTSlicer.ui").getroot()
    widgets = {w.get("name"): w for w in root.iter("widget")}
    source = (MODULE_DIR / "RadGPTSlicer.py").read_text(encoding="utf-8")
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    assert used and used <= set(widgets), used - set(widgets)

    bound = {}
    for w in widgets.values():
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = w.get("class")
    assert bound == {"inputVolume": "qMRMLNodeComboBox", "segmentation": "qMRMLNodeComboBox",
                     "phase": "QComboBox", "autoUpdate": "QCheckBox"}
    for name in ("segmentButton", "segmentCancelButton", "editorFrame", "editorModeLabel", "narrativeOptInCheckBox",
                 "saveCaseButton", "addToDatasetButton", "exportDicomButton", "computeProgressBar"):
        assert name in widgets, name
    assert widgets["findingsTable"].get("class") == "QTableWidget"
    assert widgets["reportBrowser"].get("class") == "QTextBrowser"
    assert widgets["statusLabel"].get("class") == "QLabel"


def test_parameter_node_fields_match_the_ui():
    tree = ast.parse((MODULE_DIR / "RadGPTSlicer.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RadGPTSlicerParameterNode")
    assert any(isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in cls.decorator_list)
    fields = {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}
    assert fields == {"inputVolume", "segmentation", "phase", "autoUpdate"}
    names = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"RadGPTSlicer", "RadGPTSlicerWidget", "RadGPTSlicerLogic", "RadGPTSlicerTest"} <= names


FORBIDDEN = re.compile(r"^\s*(?:import|from)\s+(slicer|vtk|qt|ctk|PythonQt)\b"
                       r"|__import__\(\s*['\"](slicer|vtk|qt|ctk)", re.M)


def test_core_never_imports_slicer_vtk_qt_ctk():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "RadGPTLogic").rglob("*.py")
                 if FORBIDDEN.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_lib_has_no_qt_and_no_top_level_slicer_imports():
    for path in (MODULE_DIR / "RadGPTSlicerLib").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        top_level = [n for n in ast.parse(text).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in top_level:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] in {"slicer", "vtk", "qt", "ctk"} for n in names), (path.name, names)
        assert not re.search(r"^\s*(?:import|from)\s+(qt|ctk)\b", text, re.M), path.name


def test_core_is_found_from_a_source_checkout():
    assert ensure_core_importable()
