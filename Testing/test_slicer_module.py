"""The Slicer module without Slicer: adapter and live-update controller against fakes.

3D Slicer cannot run here, so its objects are replaced by small fakes that behave as
the real calls do (facts from Slicer's sources, Base/Python/slicer/util.py and
Libs/vtkSegmentationCore):

* ``arrayFromVolume`` / ``arrayFromSegmentBinaryLabelmap`` return ``[k, j, i]`` arrays;
  the first is a view of VTK memory, the second a copy holding the segment's label;
* ``GetIJKToRASMatrix(m)`` fills a 4x4 matrix that maps ``(i, j, k)`` to RAS;
* a segment's binary labelmap is a data object with ``GetMTime()``; segments of one
  shared layer share that object, hence its time.

Expected numbers come from RadGPTLogic fed with the ``[i, j, k]`` arrays directly (the
fakes only ever see the transposed copies) and from geometry worked out by hand.
The in-Slicer counterpart of these tests is ``RadGPTSlicerTest`` in RadGPTSlicer.py.
"""

from __future__ import annotations

import ast
import py_compile
import re
import struct
import sys
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "RadGPTSlicer"
sys.path.insert(0, str(MODULE_DIR))

from RadGPTLogic.case import Case, Crop  # noqa: E402
from RadGPTLogic.engine import Engine  # noqa: E402
from RadGPTLogic.measure.organs import centroid_ras  # noqa: E402
from RadGPTSlicerLib import adapter, ensure_core_importable  # noqa: E402
from RadGPTSlicerLib.findings_view import LESION_COLUMNS, caliper_points, lesion_focus_ras, lesion_rows  # noqa: E402
from RadGPTSlicerLib.live_update import LiveUpdateController, union_crops  # noqa: E402


# --------------------------------------------------------------------------- fakes
class FakeMatrix:
    """Stands in for vtk.vtkMatrix4x4."""

    def __init__(self):
        self._m = np.eye(4)

    def SetElement(self, r, c, v):
        self._m[r, c] = v

    def GetElement(self, r, c):
        return float(self._m[r, c])


class FakeVolumeNode:
    def __init__(self, ijk: np.ndarray, ijk_to_ras: np.ndarray, name="CT", transform=None):
        self.kji = np.ascontiguousarray(ijk.transpose(2, 1, 0))  # what VTK stores
        self._ijk_to_ras = np.asarray(ijk_to_ras, float)
        self._name = name
        self._transform = transform

    def GetIJKToRASMatrix(self, m):
        for r in range(4):
            for c in range(4):
                m.SetElement(r, c, self._ijk_to_ras[r, c])

    def GetName(self):
        return self._name

    def GetParentTransformNode(self):
        return self._transform


class FakeLabelmap:
    """A binary labelmap data object: only its modification time matters here."""

    clock = 1000

    def __init__(self):
        self.mtime = FakeLabelmap.tick()

    @classmethod
    def tick(cls):
        cls.clock += 1
        return cls.clock

    def Modified(self):
        self.mtime = FakeLabelmap.tick()

    def GetMTime(self):
        return self.mtime


class FakeSegment:
    def __init__(self, name, kji, layer):
        self.name, self.kji, self.layer = name, kji, layer

    def GetName(self):
        return self.name

    def GetRepresentation(self, name):
        return self.layer if name == adapter.BINARY_LABELMAP else None


class FakeSegmentation:
    def __init__(self):
        self.segments = OrderedDict()

    # Slicer API
    def GetNumberOfSegments(self):
        return len(self.segments)

    def GetNthSegmentID(self, index):
        return list(self.segments)[index]

    def GetSegment(self, segment_id):
        return self.segments.get(segment_id)

    # test helpers (what Segment Editor does)
    def add(self, segment_id, name, ijk, share_layer_with=None):
        layer = self.segments[share_layer_with].layer if share_layer_with else FakeLabelmap()
        self.segments[segment_id] = FakeSegment(name, np.ascontiguousarray(ijk.transpose(2, 1, 0)).astype(np.uint8), layer)
        layer.Modified()

    def paint(self, segment_id, ijk):
        seg = self.segments[segment_id]
        seg.kji = np.ascontiguousarray(ijk.transpose(2, 1, 0)).astype(np.uint8)
        seg.layer.Modified()

    def rename(self, segment_id, name):
        self.segments[segment_id].name = name  # SegmentModified; the labelmap time is unchanged

    def remove(self, segment_id):
        del self.segments[segment_id]


class FakeSegmentationNode:
    def __init__(self):
        self.segmentation = FakeSegmentation()

    def GetSegmentation(self):
        return self.segmentation


class FakeSlicerUtil:
    """The two slicer.util functions the adapter uses, with a log of segment reads."""

    def __init__(self):
        self.segment_reads = []

    def arrayFromVolume(self, volume_node):
        return volume_node.kji  # a view, as in Slicer

    def arrayFromSegmentBinaryLabelmap(self, segmentation_node, segment_id, reference_volume_node):
        assert reference_volume_node is not None, "segments must be read on the CT grid"
        self.segment_reads.append(segment_id)
        seg = segmentation_node.GetSegmentation().GetSegment(segment_id)
        assert seg.kji.shape == reference_volume_node.kji.shape
        return (seg.kji != 0).astype(np.int16)  # a copy; the exported segment gets label 1


class FakeTimer:
    """Single-shot timer fired by hand."""

    def __init__(self, callback):
        self.callback = callback
        self.active = False
        self.starts = 0

    def start(self):
        self.active = True
        self.starts += 1

    def stop(self):
        self.active = False

    def fire(self):
        assert self.active, "timer was not started"
        self.active = False
        self.callback()


# ------------------------------------------------------------------- geometry helpers
# LPS-like voxel axes as DICOM CTs have them (i -> left, j -> posterior), anisotropic spacing.
LPS_AFFINE = np.array([
    [-0.8, 0.0, 0.0, 38.0],
    [0.0, -0.9, 0.0, 30.0],
    [0.0, 0.0, 2.5, -28.0],
    [0.0, 0.0, 0.0, 1.0],
])
# Permuted axes (i -> posterior, j -> superior, k -> right), as in a sagittal series.
PERMUTED_AFFINE = np.array([
    [0.0, 0.0, 0.9, -38.0],
    [-0.8, 0.0, 0.0, 30.0],
    [0.0, 1.5, 0.0, -28.0],
    [0.0, 0.0, 0.0, 1.0],
])
# Both grids cover x in about [-38, 38], y in [-28, 30], z in [-28, 19] mm.
SHAPES = {"lps": (96, 66, 20), "permuted": (74, 32, 85)}


def voxel_ras(shape, affine):
    """RAS coordinates (3, I, J, K) of every voxel centre."""
    ijk = np.indices(shape).reshape(3, -1)
    ras = affine[:3, :3] @ ijk + affine[:3, 3:4]
    return ras.reshape((3,) + tuple(shape))


def physical_ellipsoid(shape, affine, center, semi):
    x, y, z = voxel_ras(shape, affine)
    return ((x - center[0]) / semi[0]) ** 2 + ((y - center[1]) / semi[1]) ** 2 + ((z - center[2]) / semi[2]) ** 2 <= 1


def abdomen_ijk(shape, affine):
    """Liver with a tumour, spleen, left kidney with a tumour: [i, j, k] arrays + CT."""
    x, y, z = voxel_ras(shape, affine)
    structures = {
        "liver": physical_ellipsoid(shape, affine, (-8.0, 5.0, -5.0), (24.0, 16.0, 14.0)),
        "liver_tumor": physical_ellipsoid(shape, affine, (-10.0, 6.0, -4.0), (9.0, 5.0, 5.0)),
        "spleen": physical_ellipsoid(shape, affine, (28.0, 12.0, -5.0), (6.0, 7.0, 9.0)),
        "kidney_left": physical_ellipsoid(shape, affine, (26.0, -14.0, -10.0), (6.0, 6.0, 10.0)),
        "kidney_tumor": physical_ellipsoid(shape, affine, (26.0, -14.0, -8.0), (3.5, 3.5, 3.5)),
    }
    ct = np.full(shape, -100, np.int16)
    for name, hu in (("liver", 60), ("spleen", 50), ("kidney_left", 35), ("liver_tumor", 20), ("kidney_tumor", 15)):
        ct[structures[name]] = hu
    return ct, structures


def make_scene(kind="lps", share_layers=False):
    shape, affine = SHAPES[kind], {"lps": LPS_AFFINE, "permuted": PERMUTED_AFFINE}[kind]
    ct, structures = abdomen_ijk(shape, affine)
    volume = FakeVolumeNode(ct, affine, name="case42")
    seg_node = FakeSegmentationNode()
    previous = None
    for n, (name, mask) in enumerate(structures.items(), start=1):
        seg_node.segmentation.add(f"seg{n}", name, mask, share_layer_with=previous if share_layers else None)
        previous = f"seg{n}"
    return volume, seg_node, ct, structures, affine


def lesion(findings: dict, mask: str) -> dict:
    return next(l for l in findings["lesions"] if l["mask"] == mask)


# ---------------------------------------------------------------------------- adapter
def test_ijk_to_ras_reads_the_matrix_through_the_factory():
    volume = FakeVolumeNode(np.zeros((3, 4, 5)), LPS_AFFINE)
    np.testing.assert_array_equal(adapter.ijk_to_ras(volume, FakeMatrix), LPS_AFFINE)
    with pytest.raises(ValueError, match="degenerate"):
        adapter.ijk_to_ras(FakeVolumeNode(np.zeros((3, 4, 5)), np.diag([1.0, 0.0, 1.0, 1.0])), FakeMatrix)


@pytest.mark.parametrize("kind", ["lps", "permuted"])
def test_case_from_nodes_matches_the_core_on_ijk_arrays(kind):
    """KJI arrays + IJK->RAS matrix from the nodes give exactly what the core gives on IJK arrays."""
    volume, seg_node, ct, structures, affine = make_scene(kind)
    case = adapter.case_from_nodes(volume, seg_node, FakeSlicerUtil(), matrix_factory=FakeMatrix)
    reference = Case.from_arrays("reference", affine, structures, ct=ct)

    assert case.case_id == "case42"
    assert case.shape == reference.shape and case.source_shape == tuple(ct.shape)
    np.testing.assert_allclose(case.affine, reference.affine)
    assert set(case.structures) == set(structures)
    for name in structures:
        assert case.crop(name).offset == reference.crop(name).offset
        np.testing.assert_array_equal(case.crop(name).mask, reference.crop(name).mask)

    got = Engine(case, "venous").compute().to_dict()
    want = Engine(reference, "venous").compute().to_dict()
    assert [l["id"] for l in got["lesions"]] == [l["id"] for l in want["lesions"]]
    for g, w in zip(got["lesions"], want["lesions"]):
        for key in ("longest_diameter_mm", "perpendicular_diameter_mm", "volume_ml", "mean_hu", "slice_index",
                    "calipers_ras_mm"):
            assert g[key] == w[key], key


@pytest.mark.parametrize("kind", ["lps", "permuted"])
def test_lesion_lands_at_its_physical_place_and_size(kind):
    """Worked out by hand: the tumour is an ellipsoid centred at RAS (-10, 6, -4) with
    semi-axes 9, 5, 5 mm along R, A, S, so its longest axial diameter is ~18 mm along R."""
    volume, seg_node, ct, structures, _ = make_scene(kind)
    case = adapter.case_from_nodes(volume, seg_node, FakeSlicerUtil(), matrix_factory=FakeMatrix)

    np.testing.assert_allclose(centroid_ras(case.crop("liver_tumor"), case.affine), (-10.0, 6.0, -4.0), atol=0.35)
    tumor = lesion(Engine(case, "venous").compute().to_dict(), "liver_tumor")
    assert abs(tumor["longest_diameter_mm"] - 18.0) <= 1.0  # within about one in-plane voxel
    assert abs(tumor["perpendicular_diameter_mm"] - 10.0) <= 1.0
    (x0, y0, z0), (x1, y1, z1) = tumor["calipers_ras_mm"]["longest"]
    assert abs(x1 - x0) > 0.95 * tumor["longest_diameter_mm"]  # runs right-left
    assert z0 == z1 and abs(z0 - -4.0) <= 2.5  # an axial slice through the centre
    assert abs(tumor["volume_ml"] - 4 / 3 * np.pi * 9 * 5 * 5 / 1000) < 0.06 * tumor["volume_ml"]
    assert tumor["mean_hu"] == pytest.approx(20.0)  # CT and masks transposed alike
    focus = lesion_focus_ras(tumor)
    assert np.linalg.norm(np.subtract(focus, (-10.0, 6.0, -4.0))) < 2.5


def test_case_from_nodes_copies_the_ct_out_of_vtk_memory():
    volume, seg_node, ct, _, _ = make_scene()
    case = adapter.case_from_nodes(volume, seg_node, FakeSlicerUtil(), matrix_factory=FakeMatrix)
    before = case.hu(tuple(slice(None) for _ in range(3))).copy()
    volume.kji[...] = 999  # Slicer reuses or frees that buffer later
    np.testing.assert_array_equal(case.hu(tuple(slice(None) for _ in range(3))), before)


def test_segments_are_read_one_by_one_on_the_ct_grid_and_overlaps_kept():
    volume, seg_node, _, structures, _ = make_scene()
    seg_node.segmentation.add("scribble", "my scribble", np.zeros(SHAPES["lps"], bool))
    seg_node.segmentation.add("spine", "vertebrae_L1", np.zeros(SHAPES["lps"], bool))
    util = FakeSlicerUtil()
    case = adapter.case_from_nodes(volume, seg_node, util, matrix_factory=FakeMatrix)

    assert util.segment_reads == ["seg1", "seg2", "seg3", "seg4", "seg5"]  # unknown names are not read
    assert "vertebrae_L1" in case.ignored
    assert any("my scribble" in w for w in case.warnings)
    # the tumour lies inside the liver: both masks keep the shared voxels
    overlap = int(np.count_nonzero(structures["liver"] & structures["liver_tumor"]))
    assert overlap > 0
    assert case.crop("liver").count == int(structures["liver"].sum())
    assert case.crop("liver_tumor").count == int(structures["liver_tumor"].sum())
    assert case.sources["liver_tumor"] == [{"name": "liver_tumor", "segment_id": "seg2"}]


def test_two_segments_naming_one_structure_are_united():
    volume, seg_node, _, structures, _ = make_scene()
    extra = np.zeros(SHAPES["lps"], bool)
    extra[5:9, 5:9, 3:6] = True
    seg_node.segmentation.add("seg9", "Liver tumor", extra)  # alias of liver_tumor
    case = adapter.case_from_nodes(volume, seg_node, FakeSlicerUtil(), matrix_factory=FakeMatrix)
    assert case.crop("liver_tumor").count == int((structures["liver_tumor"] | extra).sum())


def test_segment_read_again_for_the_engine_is_in_the_case_frame():
    volume, seg_node, _, structures, _ = make_scene("permuted")
    util = FakeSlicerUtil()
    case = adapter.case_from_nodes(volume, seg_node, util, matrix_factory=FakeMatrix)
    crop = adapter.segment_crop_for_engine(seg_node, "seg2", volume, util, case)
    full = adapter.segment_array_for_engine(seg_node, "seg2", volume, util, case)
    assert crop.offset == case.crop("liver_tumor").offset
    np.testing.assert_array_equal(crop.mask, case.crop("liver_tumor").mask)
    assert full.shape == case.shape and full.dtype == bool
    np.testing.assert_array_equal(Crop.from_full(full).mask, crop.mask)

    small = FakeVolumeNode(np.zeros((5, 5, 5)), LPS_AFFINE)
    seg_small = FakeSegmentationNode()
    seg_small.segmentation.add("s", "liver", np.ones((5, 5, 5), bool))
    with pytest.raises(ValueError, match="differs from the case grid"):
        adapter.segment_crop_for_engine(seg_small, "s", small, util, case)


def test_segment_names_and_mtimes():
    _, seg_node, _, _, _ = make_scene(share_layers=True)
    names = adapter.segment_names(seg_node)
    assert list(names.items())[:2] == [("seg1", "liver"), ("seg2", "liver_tumor")]
    assert adapter.segment_mtime(seg_node, "missing") is None
    # a shared layer: one time for all its segments
    assert adapter.segment_mtime(seg_node, "seg1") == adapter.segment_mtime(seg_node, "seg5")
    assert adapter.segment_mtime(seg_node, "seg1", representation_name="Closed surface") == 0


def test_transformed_volume_is_reported():
    volume, seg_node, _, _, _ = make_scene()
    volume._transform = object()
    case = adapter.case_from_nodes(volume, seg_node, FakeSlicerUtil(), matrix_factory=FakeMatrix)
    assert any("under a transform" in w for w in case.warnings)


# ----------------------------------------------------------------- live update
class Harness:
    """A controller wired to a fake scene, as the widget wires it to Slicer."""

    def __init__(self, kind="lps", share_layers=False):
        self.volume, self.seg_node, self.ct, self.structures, self.affine = make_scene(kind, share_layers)
        self.util = FakeSlicerUtil()
        self.findings, self.stale_calls, self.errors, self.timers = [], [], [], []
        self.on_findings_hook = None
        self.controller = LiveUpdateController(
            timer_factory=self._timer,
            list_segments=lambda: adapter.segment_names(self.seg_node),
            read_segment=lambda sid: adapter.segment_crop_for_engine(
                self.seg_node, sid, self.volume, self.util, self.controller.engine.case),
            segment_mtime=lambda sid: adapter.segment_mtime(self.seg_node, sid),
            on_findings=self._on_findings,
            on_stale=self.stale_calls.append,
        )
        self.controller.reset(lambda: Engine(
            adapter.case_from_nodes(self.volume, self.seg_node, self.util, matrix_factory=FakeMatrix), "venous"))
        self.util.segment_reads.clear()

    def _timer(self, callback):
        timer = FakeTimer(callback)
        self.timers.append(timer)
        return timer

    def _on_findings(self, findings):
        self.findings.append(findings.to_dict())
        if self.on_findings_hook:
            self.on_findings_hook()

    @property
    def timer(self) -> FakeTimer:
        return self.controller.timer

    @property
    def seg(self) -> FakeSegmentation:
        return self.seg_node.segmentation


def grown_kidney_tumor(h: Harness) -> np.ndarray:
    return physical_ellipsoid(SHAPES["lps"], LPS_AFFINE, (26.0, -14.0, -8.0), (5.0, 5.0, 4.0))


def test_reset_computes_once_and_is_current():
    h = Harness()
    assert len(h.findings) == 1 and h.controller.computations == 1
    assert {l["mask"] for l in h.findings[0]["lesions"]} == {"liver_tumor", "kidney_tumor"}
    assert not h.controller.stale and not h.timer.active


def test_many_edit_events_give_one_recomputation():
    h = Harness()
    h.seg.paint("seg5", grown_kidney_tumor(h))
    for _ in range(6):  # one paint stroke fires several segmentation events
        h.controller.mark_dirty(object(), 62100)
    assert h.timer.active and h.timer.starts == 6
    assert len(h.findings) == 1  # nothing computed before the timer fires
    assert h.stale_calls == [True]
    h.timer.fire()
    assert len(h.findings) == 2 and h.controller.computations == 2
    assert h.stale_calls == [True, False]
    assert not h.timer.active


def test_only_the_edited_segment_is_read_and_untouched_structures_hit_the_cache():
    h = Harness()
    engine = h.controller.engine
    before = dict(engine.stats)
    old = h.findings[-1]
    h.seg.paint("seg5", grown_kidney_tumor(h))
    h.controller.mark_dirty()
    h.timer.fire()

    assert h.util.segment_reads == ["seg5"]
    assert h.controller.last_changed == ("seg5",)
    new = h.findings[-1]
    assert lesion(new, "kidney_tumor")["longest_diameter_mm"] > lesion(old, "kidney_tumor")["longest_diameter_mm"]
    assert lesion(new, "liver_tumor") == lesion(old, "liver_tumor")
    hits = engine.stats["hits"] - before["hits"]
    misses = engine.stats["misses"] - before["misses"]
    # liver, spleen and the liver tumour come from the cache; the kidney and its tumour are recomputed
    assert hits >= 3
    assert misses == 2
    # and the result equals a full recomputation from scratch
    fresh = Engine(adapter.case_from_nodes(h.volume, h.seg_node, FakeSlicerUtil(), matrix_factory=FakeMatrix),
                   "venous").compute().to_dict()
    assert [l["longest_diameter_mm"] for l in new["lesions"]] == [l["longest_diameter_mm"] for l in fresh["lesions"]]
    assert new["organs"] == fresh["organs"]


def test_shared_layer_rereads_siblings_but_the_cache_absorbs_them():
    h = Harness(share_layers=True)
    engine = h.controller.engine
    before = dict(engine.stats)
    h.seg.paint("seg5", grown_kidney_tumor(h))
    h.controller.mark_dirty()
    h.timer.fire()
    # the layer's time changed for every segment on it, so all are read again ...
    assert sorted(h.util.segment_reads) == ["seg1", "seg2", "seg3", "seg4", "seg5"]
    # ... but unchanged voxels have unchanged content hashes
    assert engine.stats["hits"] - before["hits"] >= 3
    assert engine.stats["misses"] - before["misses"] == 2


def test_removed_segment_disappears_from_findings():
    h = Harness()
    h.seg.remove("seg5")
    h.controller.mark_dirty()
    h.timer.fire()
    assert h.controller.last_removed == ("seg5",)
    assert not h.controller.engine.case.has("kidney_tumor")
    assert [l["mask"] for l in h.findings[-1]["lesions"]] == ["liver_tumor"]
    assert h.util.segment_reads == []


def test_added_and_renamed_segments():
    h = Harness()
    cyst = physical_ellipsoid(SHAPES["lps"], LPS_AFFINE, (-20.0, 0.0, -8.0), (4.0, 4.0, 4.0))
    h.seg.add("seg6", "my scribble", cyst)
    h.controller.mark_dirty()
    h.timer.fire()
    assert h.util.segment_reads == []  # not a reportable name: not read, nothing recomputed
    assert len(h.findings) == 1 and not h.controller.stale

    h.seg.rename("seg6", "liver cyst")  # SegmentModified: same labelmap time, new name
    h.controller.mark_dirty()
    h.timer.fire()
    assert h.util.segment_reads == ["seg6"]
    assert "liver_cyst" in {l["mask"] for l in h.findings[-1]["lesions"]}

    h.seg.rename("seg6", "my scribble")
    h.controller.mark_dirty()
    h.timer.fire()
    assert "liver_cyst" not in {l["mask"] for l in h.findings[-1]["lesions"]}


def test_edit_during_computation_marks_dirty_instead_of_recursing():
    h = Harness()
    engine = h.controller.engine
    depth = {"now": 0, "max": 0}
    compute = engine.compute

    def counting_compute():
        depth["now"] += 1
        depth["max"] = max(depth["max"], depth["now"])
        try:
            return compute()
        finally:
            depth["now"] -= 1

    engine.compute = counting_compute
    bigger = grown_kidney_tumor(h)

    def edit_while_computing():
        # the user paints again while the findings are being shown; Slicer fires events,
        # and a stray timer callback tries to update right away
        h.on_findings_hook = None
        h.seg.paint("seg5", bigger)
        h.controller.mark_dirty()
        assert h.controller.update_now() is None  # refused: already computing
        assert not h.timer.active  # not restarted while computing

    h.on_findings_hook = edit_while_computing
    h.seg.paint("seg1", h.structures["liver"])  # same voxels, new labelmap time
    h.controller.mark_dirty()
    h.timer.fire()

    assert depth["max"] == 1
    assert h.timer.active and h.controller.stale  # a second round is scheduled, not run inside the first
    h.timer.fire()
    assert depth["max"] == 1 and h.controller.computations == 3
    assert not h.controller.stale
    assert lesion(h.findings[-1], "kidney_tumor")["longest_diameter_mm"] > lesion(h.findings[0], "kidney_tumor")[
        "longest_diameter_mm"]


def test_auto_update_off_only_marks_stale():
    h = Harness()
    h.controller.enabled = False
    h.seg.paint("seg5", grown_kidney_tumor(h))
    h.controller.mark_dirty()
    assert not h.timer.active and h.controller.stale
    h.controller.enabled = True  # turning it back on catches up
    assert h.timer.active
    h.timer.fire()
    assert not h.controller.stale and len(h.findings) == 2


def test_no_change_no_recomputation_and_force():
    h = Harness()
    h.controller.mark_dirty()  # e.g. a colour change
    h.timer.fire()
    assert len(h.findings) == 1 and not h.controller.stale
    h.controller.update_now(force=True)
    assert len(h.findings) == 2


def test_failed_read_is_reported_and_retried():
    h = Harness()
    errors = []
    h.controller._on_error = errors.append
    real_read = h.util.arrayFromSegmentBinaryLabelmap
    h.util.arrayFromSegmentBinaryLabelmap = lambda *a: (_ for _ in ()).throw(RuntimeError("Export of segment failed."))
    h.seg.paint("seg5", grown_kidney_tumor(h))
    h.controller.mark_dirty()
    h.timer.fire()
    assert len(errors) == 1 and "Export of segment failed" in str(errors[0])
    assert h.controller.stale and not h.controller.computing and len(h.findings) == 1

    h.util.arrayFromSegmentBinaryLabelmap = real_read
    h.controller.mark_dirty()
    h.timer.fire()
    assert len(h.findings) == 2 and not h.controller.stale
    assert lesion(h.findings[-1], "kidney_tumor")["longest_diameter_mm"] > lesion(h.findings[0], "kidney_tumor")[
        "longest_diameter_mm"]


def test_phase_change_keeps_pending_edits():
    h = Harness()
    h.controller.enabled = False
    h.seg.paint("seg5", grown_kidney_tumor(h))
    h.controller.mark_dirty()
    h.controller.swap_engine(Engine(h.controller.engine.case, "arterial"))
    h.controller.update_now(force=True)
    assert h.findings[-1]["phase"] == "arterial"
    assert h.util.segment_reads == ["seg5"]
    with pytest.raises(ValueError):
        h.controller.swap_engine(Engine(Case.from_arrays("other", LPS_AFFINE, {}, ct=h.ct), "venous"))


def test_detach_stops_everything():
    h = Harness()
    h.controller.mark_dirty()
    h.controller.detach()
    assert not h.timer.active and h.controller.engine is None
    assert h.controller.update_now(force=True) is None


def test_union_crops():
    a = Crop(np.ones((2, 2, 2), bool), (0, 0, 0))
    b = Crop(np.ones((1, 1, 1), bool), (4, 4, 4))
    u = union_crops([a, Crop.empty(), b])
    assert u.offset == (0, 0, 0) and u.shape == (5, 5, 5) and u.count == 9
    assert union_crops([Crop.empty()]).is_empty
    assert union_crops([b]) is b


# ---------------------------------------------------------------- findings view
def test_lesion_rows_and_calipers():
    h = Harness()
    findings = h.findings[-1]
    rows = lesion_rows(findings)
    assert len(rows) == len(findings["lesions"]) and all(len(r) == len(LESION_COLUMNS) for r in rows)
    first = findings["lesions"][0]
    col = {name: i for i, name in enumerate(LESION_COLUMNS)}
    assert rows[0][0] == first["id"] and rows[0][col["Long axis (mm)"]] == f"{first['longest_diameter_mm']:.1f}"
    pts = caliper_points(first)
    assert set(pts) == {"longest", "perpendicular"} and all(len(p) == 2 for p in pts.values())
    assert lesion_focus_ras({"id": "x"}) is None


def test_location_and_stage_columns():
    from RadGPTLogic.case import Case
    from RadGPTLogic.engine import Engine
    from RadGPTLogic.phantom import build_phantom, staging_lesions

    p = build_phantom(size="small", lesions=staging_lesions())
    f = Engine(Case.from_arrays("S", p.affine, p.masks, ct=p.ct), "venous").compute().to_dict()
    col = {name: i for i, name in enumerate(LESION_COLUMNS)}
    rows = {r[0]: r for r in lesion_rows(f)}
    pdac = next(l for l in f["lesions"] if l["organ"] == "pancreas")
    assert rows[pdac["id"]][col["Location"]] == pdac["location"]["pancreas_part"]
    assert rows[pdac["id"]][col["Stage"]] == f"{pdac['t_stage']}, {pdac['resectability']}"
    liver = next(l for l in f["lesions"] if l["organ"] == "liver")
    assert rows[liver["id"]][col["Location"]] == "/".join(liver["location"]["couinaud"])
    kidney = next(l for l in f["lesions"] if l["organ"] == "kidney")
    assert rows[kidney["id"]][col["Location"]].endswith("pole") and rows[kidney["id"]][col["Stage"]] == ""


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
        assert not re.search(r"^\s*(?:import|from)\s+(slicer|qt|ctk)\b", text, re.M), path.name


def test_core_is_found_from_a_source_checkout():
    assert ensure_core_importable()
