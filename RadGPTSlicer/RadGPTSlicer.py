"""RadGPT: live structured reports from abdominal CT segmentations, in 3D Slicer.

A thin GUI over two packages:

* ``RadGPTLogic`` (pure Python, shipped next to this file): Case, Engine, Findings,
  report rendering.
* ``RadGPTSlicerLib`` (no Qt): node <-> array adapter, live-update controller,
  table rows and calipers for the panel.

This file only wires Slicer objects (nodes, Qt widgets, timers, observers) to them.
"""

import importlib
import importlib.util
import logging
import os
import re
from typing import Annotated

import numpy as np
import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    Choice,
    parameterNodeWrapper,
)

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

import RadGPTSlicerLib

RadGPTSlicerLib.ensure_core_importable()

from RadGPTLogic.rules import PHASES  # noqa: E402 (needs the path set up above)

#: Debounce delay between the last segment edit and the re-measurement.
UPDATE_DELAY_MS = 500
#: Attribute that marks the markups line nodes this module draws calipers with.
CALIPER_ATTRIBUTE = "RadGPT.Caliper"


def _sameNode(a, b) -> bool:
    """True when both are None or both are the same MRML node (compared by ID)."""
    if a is None or b is None:
        return a is b
    return a.GetID() == b.GetID()


#
# RadGPTSlicer
#


class RadGPTSlicer(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("RadGPT")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["RadGPT contributors"]
        self.parent.helpText = _("""
Measures every tumour in an abdominal CT segmentation (WHO diameters, volume, HU), reports organ
volumes and attenuation, and renders a structured report. With auto-update on, only the
structures touched by a Segment Editor edit are re-measured, shortly after the edit.
Click a lesion to centre the slice views on it and show its calipers.
""")
        self.parent.acknowledgementText = _("""
RadGPT for 3D Slicer. Measurements and reports come from the pure-Python RadGPTLogic package,
which also runs from the command line (radgpt).
""")


#
# RadGPTSlicerParameterNode
#


@parameterNodeWrapper
class RadGPTSlicerParameterNode:
    """
    The parameters needed by module.

    inputVolume - The CT the segmentation was drawn on (reference geometry of every measurement).
    segmentation - Organ, vessel and lesion segments, named with RadGPT structure names or aliases.
    phase - Contrast phase of the CT.
    autoUpdate - Re-measure the edited structures after each segment edit.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    phase: Annotated[str, Choice(list(PHASES))] = "unknown"
    autoUpdate: bool = True


#
# RadGPTSlicerWidget
#


class RadGPTSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._controller = None
        self._updateTimer = None
        self._updateTimerCallback = None
        # Nodes the current findings were computed from (None: nothing computed).
        self._sourceVolumeNode = None
        self._sourceSegmentationNode = None
        self._observedSegmentationNode = None
        self._observedSegmentation = None
        self._findings = None  # Findings.to_dict() of the last computation

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadGPTSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = RadGPTSlicerLogic()

        from RadGPTSlicerLib.findings_view import LESION_COLUMNS
        from RadGPTSlicerLib.live_update import LiveUpdateController

        self._controller = LiveUpdateController(
            timer_factory=self._createUpdateTimer,
            list_segments=self._listSegments,
            read_segment=self._readSegment,
            segment_mtime=self._segmentMTime,
            on_findings=self._showFindings,
            on_stale=self._showStale,
            on_error=self._showUpdateError,
        )

        table = self.ui.findingsTable
        table.setColumnCount(len(LESION_COLUMNS))
        table.setHorizontalHeaderLabels(list(LESION_COLUMNS))
        table.horizontalHeader().setSectionResizeMode(qt.QHeaderView.ResizeToContents)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.computeButton.connect("clicked(bool)", self.onComputeButton)
        self.ui.findingsTable.connect("cellClicked(int,int)", self.onLesionClicked)

        self.initializeParameterNode()

    def _createUpdateTimer(self, callback):
        """Single-shot debounce timer for the live-update controller."""
        timer = qt.QTimer()
        timer.setSingleShot(True)
        timer.setInterval(UPDATE_DELAY_MS)
        timer.connect("timeout()", callback)
        self._updateTimer, self._updateTimerCallback = timer, callback
        return timer

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self._controller is not None:
            self._controller.detach()
        if self._updateTimer is not None:
            # Lingering signal connections keep the widget alive (Slicer issue #7392).
            self._updateTimer.stop()
            self._updateTimer.disconnect("timeout()", self._updateTimerCallback)
        self._observeSegmentation(None)
        self.removeObservers()

    def onReload(self) -> None:
        """Reload the Lib as well: slicer.util.reloadScriptedModule re-executes only this file."""
        import RadGPTSlicerLib.adapter
        import RadGPTSlicerLib.findings_view
        import RadGPTSlicerLib.live_update

        for module in (RadGPTSlicerLib.adapter, RadGPTSlicerLib.findings_view, RadGPTSlicerLib.live_update):
            importlib.reload(module)
        importlib.reload(RadGPTSlicerLib)
        ScriptedLoadableModuleWidget.onReload(self)

    # ------------------------------------------------------ parameter node
    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # Live updates go on while the user edits in Segment Editor; only the GUI binding stops.
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._forgetFindings(_("Select a CT and its segmentation, then press Compute."))

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode
        if not self._parameterNode.segmentation:
            firstSegmentationNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if firstSegmentationNode:
                self._parameterNode.segmentation = firstSegmentationNode

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets carry the dynamic property "SlicerParameterName" in the .ui file.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        p = self._parameterNode
        volumeNode = p.inputVolume if p else None
        segmentationNode = p.segmentation if p else None
        self._observeSegmentation(segmentationNode)
        self._controller.enabled = bool(p and p.autoUpdate)

        engine = self._controller.engine
        if engine is not None:
            if not (_sameNode(volumeNode, self._sourceVolumeNode) and _sameNode(segmentationNode, self._sourceSegmentationNode)):
                self._forgetFindings(_("Inputs changed: press Compute."))
            elif p.phase != engine.phase:
                self._changePhase(p.phase)

        canCompute = bool(volumeNode and segmentationNode)
        self.ui.computeButton.enabled = canCompute
        self.ui.computeButton.toolTip = (
            _("Read the CT and all segments and compute the findings.") if canCompute
            else _("Select the CT volume and its segmentation.")
        )

    # ------------------------------------------------------ observations
    def _observeSegmentation(self, segmentationNode) -> None:
        """Observe edits of ``segmentationNode`` (and the replacement of its vtkSegmentation)."""
        segmentation = segmentationNode.GetSegmentation() if segmentationNode else None
        if segmentationNode is self._observedSegmentationNode and segmentation is self._observedSegmentation:
            return
        if self._observedSegmentation is not None:
            for event in self.logic.segmentationEvents():
                self.removeObserver(self._observedSegmentation, event, self._onSegmentationEdited)
        if self._observedSegmentationNode is not None:
            self.removeObserver(self._observedSegmentationNode, slicer.vtkMRMLSegmentationNode.SegmentationChangedEvent,
                                self._onSegmentationReplaced)
        self._observedSegmentationNode, self._observedSegmentation = segmentationNode, segmentation
        if segmentationNode is not None:
            self.addObserver(segmentationNode, slicer.vtkMRMLSegmentationNode.SegmentationChangedEvent,
                             self._onSegmentationReplaced)
        if segmentation is not None:
            for event in self.logic.segmentationEvents():
                self.addObserver(segmentation, event, self._onSegmentationEdited)

    def _onSegmentationEdited(self, caller=None, event=None) -> None:
        # Only mark dirty: the controller's timer does the work once the edits settle.
        self._controller.mark_dirty()

    def _onSegmentationReplaced(self, caller=None, event=None) -> None:
        node = self._observedSegmentationNode
        self._observeSegmentation(None)  # drop the observers of the old vtkSegmentation ...
        self._observeSegmentation(node)  # ... and observe the new one
        self._controller.mark_dirty()

    # --------------------------------------- callbacks of the controller
    def _listSegments(self):
        from RadGPTSlicerLib.adapter import segment_names

        node = self._sourceSegmentationNode
        return segment_names(node) if node is not None else {}

    def _segmentMTime(self, segmentId):
        from RadGPTSlicerLib.adapter import segment_mtime

        return segment_mtime(self._sourceSegmentationNode, segmentId, self.logic.binaryLabelmapName())

    def _readSegment(self, segmentId):
        return self.logic.readSegment(self._sourceSegmentationNode, segmentId, self._sourceVolumeNode,
                                      self._controller.engine.case)

    def _showFindings(self, findings) -> None:
        from RadGPTLogic.report.structured import render_html
        from RadGPTSlicerLib.findings_view import lesion_rows

        self._findings = findings.to_dict()
        rows = lesion_rows(self._findings)
        table = self.ui.findingsTable
        table.clearContents()
        table.setRowCount(len(rows))
        for rowIndex, row in enumerate(rows):
            for columnIndex, text in enumerate(row):
                table.setItem(rowIndex, columnIndex, qt.QTableWidgetItem(text))  # editing is off in the .ui
        # Key images are PNG data URIs, which QTextBrowser displays; they need the case.
        engine = self._controller.engine
        self.ui.reportBrowser.setHtml(render_html(self._findings, case=engine.case if engine else None))
        self._showStale(self._controller.stale)

    def _showStale(self, stale: bool) -> None:
        if not stale:
            if self._findings is not None:
                self._setStatus(
                    _("Up to date: {lesions} lesion(s), {organs} organ(s).").format(
                        lesions=len(self._findings["lesions"]), organs=len(self._findings["organs"])),
                    stale=False,
                )
        elif self._controller.enabled:
            self._setStatus(_("stale: segmentation edited, updating..."), stale=True)
        else:
            self._setStatus(_("stale: segmentation edited; press Compute or turn on auto-update."), stale=True)

    def _showUpdateError(self, exc) -> None:
        logging.error("RadGPT update failed: %s", exc, exc_info=exc)
        self._setStatus(_("stale: update failed ({error}); press Compute.").format(error=exc), stale=True)

    def _setStatus(self, text: str, stale: bool) -> None:
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #c06000; font-weight: bold;" if stale else "")

    def _forgetFindings(self, status: str) -> None:
        if self._controller is not None:
            self._controller.detach()
        self._sourceVolumeNode = self._sourceSegmentationNode = None
        self._findings = None
        if hasattr(self, "ui"):
            self.ui.findingsTable.clearContents()
            self.ui.findingsTable.setRowCount(0)
            self.ui.reportBrowser.clear()
            self._setStatus(status, stale=False)

    # -------------------------------------------------------------- actions
    def onComputeButton(self) -> None:
        """Full read of the CT and all segments, then findings; live updates follow from here."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("RadGPT could not compute the findings."), waitCursor=True):
            self.logic.ensureDependencies()
            volumeNode, segmentationNode, phase = p.inputVolume, p.segmentation, p.phase
            self._sourceVolumeNode, self._sourceSegmentationNode = volumeNode, segmentationNode
            try:
                self._controller.reset(lambda: self.logic.buildEngine(volumeNode, segmentationNode, phase))
            except Exception:
                self._forgetFindings(_("Computation failed: see the error message."))
                raise

    def _changePhase(self, phase: str) -> None:
        with slicer.util.tryWithErrorDisplay(_("RadGPT could not apply the contrast phase."), waitCursor=True):
            # Measurements do not depend on the phase: the engine keeps its cache.
            self._controller.engine.set_phase(phase)
            self._controller.update_now(force=True)

    def onLesionClicked(self, row, column=0) -> None:
        if not self._findings or not (0 <= row < len(self._findings["lesions"])):
            return
        lesion = self._findings["lesions"][row]
        with slicer.util.tryWithErrorDisplay(_("Could not show the lesion."), waitCursor=False):
            self.logic.showLesion(lesion, self._sourceVolumeNode)


#
# RadGPTSlicerLogic
#


class RadGPTSlicerLogic(ScriptedLoadableModuleLogic):
    """Slicer-side logic: node access for the adapter, dependencies, calipers.

    Usable without the widget, e.g. from the Python console::

        logic = slicer.util.getModuleLogic("RadGPTSlicer")
        findings = logic.computeFindings(volumeNode, segmentationNode, "venous")
        print(findings.to_json())
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return RadGPTSlicerParameterNode(super().getParameterNode())

    # ------------------------------------------------------------ Slicer facts
    @staticmethod
    def binaryLabelmapName() -> str:
        return slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()

    @staticmethod
    def segmentationEvents() -> list:
        """vtkSegmentation events after which the findings may be out of date."""
        return [
            slicer.vtkSegmentation.SegmentAdded,
            slicer.vtkSegmentation.SegmentRemoved,
            slicer.vtkSegmentation.SegmentModified,  # name changes (voxel edits come as SourceRepresentationModified)
            slicer.vtkSegmentation.SourceRepresentationModified,
        ]

    # ------------------------------------------------------------ dependencies
    @staticmethod
    def requirementsPath() -> str:
        return os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "requirements.txt")

    def ensureDependencies(self) -> None:
        """Install the Python packages RadGPTLogic needs and Slicer lacks (nibabel, jinja2)."""
        path = self.requirementsPath()
        try:
            import slicer.packaging as packaging  # Slicer >= 5.12
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            packaging.pip_ensure(packaging.load_requirements(path), requester="RadGPT")
            return
        with open(path) as f:
            requirements = [line.strip() for line in f if line.strip() and not line.startswith(("#", "-"))]
        missing = [r for r in requirements if importlib.util.find_spec(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) is None]
        if missing:
            if not slicer.util.confirmOkCancelDisplay(
                _("RadGPT needs these Python packages: {packages}. Install them now?").format(packages=", ".join(missing))
            ):
                raise RuntimeError("required Python packages are missing: " + ", ".join(missing))
            slicer.util.pip_install(missing)

    # ------------------------------------------------------------ computation
    def buildEngine(self, volumeNode, segmentationNode, phase: str = "unknown"):
        """Read the CT and every reportable segment into a Case; return an Engine over it."""
        from RadGPTLogic.engine import Engine
        from RadGPTSlicerLib.adapter import case_from_nodes

        if not volumeNode or not segmentationNode:
            raise ValueError("a CT volume and a segmentation are needed")
        # Segmentations loaded as closed surfaces get a labelmap first (no-op when present).
        segmentationNode.CreateBinaryLabelmapRepresentation()
        case = case_from_nodes(volumeNode, segmentationNode, slicer.util, matrix_factory=vtk.vtkMatrix4x4)
        return Engine(case, phase)

    def computeFindings(self, volumeNode, segmentationNode, phase: str = "unknown"):
        """One-shot findings (a RadGPTLogic Findings object) for a volume and a segmentation."""
        return self.buildEngine(volumeNode, segmentationNode, phase).compute()

    def readSegment(self, segmentationNode, segmentId, volumeNode, case):
        """One segment, re-read after an edit, as a Crop in ``case``'s canonical frame."""
        from RadGPTSlicerLib.adapter import segment_crop_for_engine

        return segment_crop_for_engine(segmentationNode, segmentId, volumeNode, slicer.util, case)

    # ------------------------------------------------------------ navigation
    def caliperNode(self, role: str):
        """The markups line node used for ``role`` ("longest" or "perpendicular"), created once."""
        for node in slicer.util.getNodesByClass("vtkMRMLMarkupsLineNode"):
            if node.GetAttribute(CALIPER_ATTRIBUTE) == role:
                return node
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"RadGPT {role}")
        node.SetAttribute(CALIPER_ATTRIBUTE, role)
        node.CreateDefaultDisplayNodes()
        return node

    def showLesion(self, lesion: dict, volumeNode=None) -> None:
        """Draw the lesion's WHO calipers as line markups and centre the slice views on it."""
        from RadGPTSlicerLib.findings_view import caliper_points

        points = caliper_points(lesion)
        transformId = volumeNode.GetTransformNodeID() if volumeNode else None
        focusWorld = None
        for role, title in (("longest", _("long axis")), ("perpendicular", _("short axis"))):
            node = self.caliperNode(role)
            node.SetAndObserveTransformNodeID(transformId)  # calipers are in the volume's own RAS
            if role not in points:
                node.RemoveAllControlPoints()
                continue
            slicer.util.updateMarkupsControlPointsFromArray(node, np.array(points[role], dtype=float))
            node.SetName(f"{lesion['id']} {title}")
            node.SetLocked(True)
            if role == "longest":
                start, end = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
                node.GetNthControlPointPositionWorld(0, start)
                node.GetNthControlPointPositionWorld(1, end)
                focusWorld = [(a + b) / 2.0 for a, b in zip(start, end)]
        if volumeNode is not None:
            slicer.util.setSliceViewerLayers(background=volumeNode)  # the lesion is seen on its own CT
        if focusWorld is not None:
            slicer.modules.markups.logic().JumpSlicesToLocation(*focusWorld, True)


#
# RadGPTSlicerTest
#


class RadGPTSlicerTest(ScriptedLoadableModuleTest):
    """Self-test: a synthetic CT and segmentation built in the scene, measured through the real
    Slicer calls (arrayFromVolume, arrayFromSegmentBinaryLabelmap, GetIJKToRASMatrix)."""

    # Grid (k, j, i), LPS-like voxel axes as DICOM CTs have them: i -> left, j -> posterior.
    SHAPE_KJI = (24, 48, 56)
    IJK_TO_RAS = np.array([
        [-0.75, 0.0, 0.0, 40.0],
        [0.0, -0.75, 0.0, 30.0],
        [0.0, 0.0, 2.0, -20.0],
        [0.0, 0.0, 0.0, 1.0],
    ])

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LesionDiameterFromNodes()
        self.setUp()
        self.test_LiveUpdateAfterEdit()

    def _makeScene(self):
        ct = np.full(self.SHAPE_KJI, -100, np.int16)
        liver = np.zeros(self.SHAPE_KJI, np.uint8)
        liver[4:20, 8:40, 10:50] = 1
        spleen = np.zeros(self.SHAPE_KJI, np.uint8)
        spleen[6:16, 41:47, 12:30] = 1
        tumor = np.zeros(self.SHAPE_KJI, np.uint8)
        # 20 x 12 voxels in plane (15 x 9 mm), 6 slices
        tumor[8:14, 18:30, 20:40] = 1
        ct[liver > 0] = 60
        ct[spleen > 0] = 50
        ct[tumor > 0] = 20
        volumeNode = slicer.util.addVolumeFromArray(ct, self.IJK_TO_RAS, name="RadGPT test CT")
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "RadGPT test segmentation")
        segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        segmentIds = {}
        for name, mask in (("liver", liver), ("spleen", spleen), ("liver_tumor", tumor)):
            segmentIds[name] = segmentationNode.GetSegmentation().AddEmptySegment(name, name)
            slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentIds[name], volumeNode)
        return volumeNode, segmentationNode, segmentIds, ct, liver, tumor

    def test_LesionDiameterFromNodes(self):
        self.delayDisplay("Measuring a synthetic liver tumour through Slicer nodes")
        from RadGPTLogic.case import Case
        from RadGPTLogic.engine import Engine

        volumeNode, segmentationNode, _ids, ct, liver, tumor = self._makeScene()
        findings = RadGPTSlicerLogic().computeFindings(volumeNode, segmentationNode, "venous").to_dict()
        self.assertEqual(len(findings["lesions"]), 1)
        lesion = findings["lesions"][0]

        # Known value: the 0.5 iso-contour of a 15 x 9 mm voxel rectangle has its corners cut by
        # half a voxel (0.75 mm), so its longest chord is hypot(15, 9 - 0.75) mm.
        self.assertAlmostEqual(lesion["longest_diameter_mm"], float(np.hypot(15.0, 8.25)), places=3)
        self.assertAlmostEqual(lesion["volume_ml"], 20 * 12 * 6 * 0.75 * 0.75 * 2.0 / 1000.0, places=6)
        self.assertAlmostEqual(lesion["mean_hu"], 20.0, places=3)

        # Same numbers as the core computes from the numpy arrays directly.
        reference = Engine(Case.from_arrays("reference", self.IJK_TO_RAS,
                                            {"liver": liver.T > 0, "liver_tumor": tumor.T > 0}, ct=ct.T),
                           "venous").compute().to_dict()["lesions"][0]
        for key in ("longest_diameter_mm", "perpendicular_diameter_mm", "volume_ml", "slice_index"):
            self.assertAlmostEqual(lesion[key], reference[key], places=6)
        self.assertEqual(lesion["calipers_ras_mm"], reference["calipers_ras_mm"])

        RadGPTSlicerLogic().showLesion(lesion, volumeNode)
        self.delayDisplay("Test passed")

    def test_LiveUpdateAfterEdit(self):
        self.delayDisplay("Live update: only the edited segment is read again")
        from RadGPTSlicerLib.live_update import LiveUpdateController
        from RadGPTSlicerLib.adapter import segment_mtime, segment_names

        volumeNode, segmentationNode, ids, _ct, _liver, tumor = self._makeScene()
        logic = RadGPTSlicerLogic()

        class ManualTimer:
            def __init__(self, callback):
                self.callback, self.active = callback, False

            def start(self):
                self.active = True

            def stop(self):
                self.active = False

        reads, results = [], []
        controller = LiveUpdateController(
            timer_factory=ManualTimer,
            list_segments=lambda: segment_names(segmentationNode),
            read_segment=lambda sid: reads.append(sid) or logic.readSegment(
                segmentationNode, sid, volumeNode, controller.engine.case),
            segment_mtime=lambda sid: segment_mtime(segmentationNode, sid, logic.binaryLabelmapName()),
            on_findings=lambda f: results.append(f.to_dict()),
        )
        controller.reset(lambda: logic.buildEngine(volumeNode, segmentationNode, "venous"))
        before = results[-1]["lesions"][0]["longest_diameter_mm"]

        grown = tumor.copy()
        grown[8:14, 18:30, 20:46] = 1  # 6 voxels (4.5 mm) longer along i
        slicer.util.updateSegmentBinaryLabelmapFromArray(grown, segmentationNode, ids["liver_tumor"], volumeNode)
        controller.mark_dirty()
        self.assertTrue(controller.timer.active)
        controller.timer.callback()  # what the QTimer does after UPDATE_DELAY_MS

        after = results[-1]["lesions"][0]["longest_diameter_mm"]
        self.assertIn(ids["liver_tumor"], reads)
        self.assertAlmostEqual(after, float(np.hypot(19.5, 8.25)), places=3)
        self.assertGreater(after, before)
        self.assertGreater(controller.engine.stats["hits"], 0)  # the untouched spleen came from the cache
        self.delayDisplay("Test passed")
