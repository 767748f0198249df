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
import sys
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
from RadGPTSlicerLib.layers import SegmentTracker, ijk_crop_to_canonical, grid_offset  # noqa: E402


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
    assert harness.wait_until(lambda: widget._findings is not None, 120)
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
    shape = seg_node.GetSegmentation().fake_grid[0]
    modifier = np.zeros(shape, bool)
    (i0, i1), (j0, j1), (k0, k1) = box_ijk
    modifier[k0:k1, j0:j1, i0:i1] = True
    widget.editor.fake_stroke(modifier, erase=erase)


# --------------------------------------------------------------------- the panel
def test_compute_in_background_matches_the_core(panel):
    widget, volume, seg, phantom = panel
    want = reference(current_masks(seg, phantom), phantom)
    got = widget._findings
    assert [l["id"] for l in got["lesions"]] == [l["id"] for l in want["lesions"]]
    for g, w in zip(got["lesions"], want["lesions"]):
        for key in ("longest_diameter_mm", "perpendicular_diameter_mm", "volume_ml", "mean_hu", "calipers_ras_mm"):
            assert g[key] == w[key], key
    assert {k: v["volume_ml"] for k, v in got["organs"].items()} == {k: v["volume_ml"] for k, v in want["organs"].items()}
    assert widget.ui.findingsTable.rowCount() == len(want["lesions"])
    assert widget.ui.findingsTable.item(0, 0).text() == got["lesions"][0]["id"]
    assert "Up to date" in widget.ui.statusLabel.text()
    assert slicer.util.COSTS == {"full_exports": 0, "temp_nodes": 0}


def test_lesion_stroke_updates_table_and_report_without_full_export(panel):
    widget, volume, seg, phantom = panel
    lesion = widget._findings["lesions"][0]
    mask = lesion["mask"]
    renders_before = widget.controller.session.images.renders
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
    changed = {seg.GetSegmentation().GetSegment(s).GetName() for s in widget.controller.session.tracker.last_changed}
    assert mask in changed and changed <= names
    rerendered = widget.controller.session.images.renders - renders_before
    assert 1 <= rerendered <= len(lesion_of(widget._findings, mask))
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
    assert liver_id in widget.controller.session.tracker.last_changed
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
    slicer.mrmlScene.Clear(0)
    assert widget._findings is None and widget.controller.session is None
    assert not [o for o in segmentation._observers.values() if getattr(o[1], "__self__", None) is widget]
    assert widget.ui.reportBrowser.toPlainText() == ""


def test_errors_go_to_a_dialog_and_the_log(panel, caplog, tmp_path):
    widget = panel[0]
    widget.ui.outputFolderLineEdit.setText("")
    widget.onSaveCase()
    assert harness.wait_until(lambda: slicer.util.MESSAGES, 30)
    level, text = slicer.util.MESSAGES[-1]
    assert level == "error" and "choose a case folder first" in text and "\n" not in text
    assert any("choose a case folder first" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_save_case_writes_the_cli_layout(panel, tmp_path):
    widget, volume, seg, phantom = panel
    widget.ui.outputFolderLineEdit.setText(str(tmp_path / "saved"))
    widget.onSaveCase()
    assert harness.wait_until(lambda: "Saved to" in widget.ui.exportStatusLabel.text(), 120)
    case_id = widget._findings["case_id"]
    import json

    saved = json.loads((tmp_path / "saved" / case_id / "findings.json").read_text())
    assert [l["volume_ml"] for l in saved["lesions"]] == [l["volume_ml"] for l in widget._findings["lesions"]]
    assert (tmp_path / "saved" / "case" / "segmentations" / "liver.nii.gz").is_file()


def test_an_undefined_slicer_function_fails_the_test():
    with pytest.raises(AttributeError):
        slicer.util.arrayFromSegment  # deprecated in Slicer, not modelled: using it must fail
    with pytest.raises(AttributeError):
        slicer.qSlicerNoSuchWidget


def test_module_uses_only_real_and_faked_slicer_util_functions():
    from slicer.util import REAL_UTIL_NAMES

    used = set()
    for path in [MODULE_DIR / "RadGPTSlicer.py", *(MODULE_DIR / "RadGPTSlicerLib").glob("*.py")]:
        used |= set(re.findall(r"slicer(?:_util|\.util)\.(\w+)\(", path.read_text()))
    assert used, "no slicer.util call found"
    assert used <= REAL_UTIL_NAMES, used - REAL_UTIL_NAMES
    # pip_install: only without slicer.packaging; addVolumeFromArray: only the in-Slicer self-test;
    # getModuleLogic: only in a docstring
    missing = {u for u in used if not hasattr(slicer.util, u)} - {"pip_install", "addVolumeFromArray", "getModuleLogic"}
    assert not missing, missing


def test_no_pythonqt_only_or_pyqt_only_idioms_in_the_widget():
    """Property assignment (``w.enabled = x``) works only in PythonQt; string signal connects
    only in PythonQt; reads must go through methods or ``property()``."""
    source = (MODULE_DIR / "RadGPTSlicer.py").read_text()
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
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    listed = _cmake_list(text, "MODULE_PYTHON_SCRIPTS") + _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    assert sorted(listed) == _module_files()
    assert "slicerMacroBuildScriptedModule" in text
    # the core package is installed next to the module
    assert "RadGPTLogic/*.py" in text and "SOURCE_DIR" in text and "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR" in text


def test_extension_cmake_metadata():
    text = (REPO / "CMakeLists.txt").read_text()
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{key} "[^"]+"\)', text), key
    assert re.search(r"project\(RadGPT\)", text)
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(RadGPTSlicer)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text


@pytest.mark.parametrize("path", ["Resources/RadGPT.png", "RadGPTSlicer/Resources/Icons/RadGPTSlicer.png"])
def test_icons_are_128_px_pngs(path):
    data = (REPO / path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (128, 128)


def test_ui_file_has_the_widgets_the_module_uses():
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "RadGPTSlicer.ui").getroot()
    widgets = {w.get("name"): w for w in root.iter("widget")}
    source = (MODULE_DIR / "RadGPTSlicer.py").read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    assert used and used <= set(widgets), used - set(widgets)

    bound = {}
    for name, w in widgets.items():
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
    tree = ast.parse((MODULE_DIR / "RadGPTSlicer.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RadGPTSlicerParameterNode")
    assert any(isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in cls.decorator_list)
    fields = {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}
    assert fields == {"inputVolume", "segmentation", "phase", "autoUpdate"}
    names = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"RadGPTSlicer", "RadGPTSlicerWidget", "RadGPTSlicerLogic", "RadGPTSlicerTest"} <= names


FORBIDDEN = re.compile(r"^\s*(?:import|from)\s+(slicer|vtk|qt|ctk|PythonQt)\b|__import__\(\s*['\"](slicer|vtk|qt|ctk)", re.M)


def test_core_never_imports_slicer_vtk_qt_ctk():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "RadGPTLogic").rglob("*.py") if FORBIDDEN.search(p.read_text())]
    assert offenders == []


def test_lib_has_no_qt_and_no_top_level_slicer_imports():
    for path in (MODULE_DIR / "RadGPTSlicerLib").glob("*.py"):
        text = path.read_text()
        top_level = [n for n in ast.parse(text).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in top_level:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] in {"slicer", "vtk", "qt", "ctk"} for n in names), (path.name, names)
        assert not re.search(r"^\s*(?:import|from)\s+(qt|ctk)\b", text, re.M), path.name


def test_core_is_found_from_a_source_checkout():
    assert ensure_core_importable()
