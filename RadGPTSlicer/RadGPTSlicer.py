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
import sys
from typing import Annotated

import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import (
    Choice,
    parameterNodeWrapper,
)
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

import RadGPTSlicerLib

RadGPTSlicerLib.ensure_core_importable()

from RadGPTLogic.rules import PHASES  # noqa: E402 (needs the path set up above)

#: Debounce delay after the last segment event: one Paint stroke fires its events within
#: one mouse release, so a short delay coalesces them and keeps the panel close behind the edit.
UPDATE_DELAY_MS = 30
#: Singleton tag of the panel's own Segment Editor parameter node (SegmentEditor uses "SegmentEditor").
EDITOR_NODE_TAG = "RadGPTSegmentEditor"
#: QSettings prefix of the narrative settings (endpoint, model, examples, opt-in).
SETTINGS_PREFIX = "RadGPT/Narrative/"
#: QSettings prefix of the save and export folders.
EXPORT_PREFIX = "RadGPT/Export/"
#: QSettings key of the segmentation models (";"-separated presets or results folders).
SEGMENT_MODELS_KEY = "RadGPT/Segment/models"
#: Models used when none are given: TotalSegmentator's published "total" weights.
DEFAULT_SEGMENT_MODELS = ("total",)
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
        self.parent.contributors = ["RadGPT maintainers (RadGPT for 3D Slicer project)"]
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
    """The panel: inputs, Segment, embedded Segment Editor, live findings and report,
    narrative, save and export.

    Qt calls keep to what PythonQt (Slicer) and PyQt5 (the test harness) share:
    methods (``setText``, ``setEnabled``), ``property(name)`` to read a property,
    ``signal.connect(callable)``.
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.controller = None
        self.editor = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._editorNode = None
        self._timers = []
        self._sourceVolumeNode = None
        self._sourceSegmentationNode = None
        self._observedSegmentationNode = None
        self._observedSegmentation = None
        self._findings = None
        self._images = {}  # resource name -> QImage (decoded once)
        self._computeJob = None
        self._segmentRun = None
        self._narrativeJob = None
        self._narrative = None  # the last narrative shown (RadGPTSlicerLib.narrative_job.ShownNarrative)
        self._confidence = {}  # canonical structure -> lesion probability (segmentation stage)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadGPTSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = RadGPTSlicerLogic()
        from RadGPTSlicerLib.findings_view import LESION_COLUMNS
        from RadGPTSlicerLib.jobs import JobRunner
        from RadGPTSlicerLib.live_update import LiveUpdateController

        self.controller = LiveUpdateController(
            timer_factory=self._createTimer, take_snapshot=self._takeSnapshot, on_result=self._showResult,
            on_stale=self._showStale, on_error=self._showUpdateError, delay_ms=UPDATE_DELAY_MS)
        self.sideJobs = JobRunner(self._createTimer, name="RadGPT-side")  # narrative: never blocks measuring
        self.segmentJobs = JobRunner(self._createTimer, name="RadGPT-segment")  # CT writing, mask reading

        table = self.ui.findingsTable
        table.setColumnCount(len(LESION_COLUMNS))
        table.setHorizontalHeaderLabels(list(LESION_COLUMNS))
        table.horizontalHeader().setSectionResizeMode(qt.QHeaderView.ResizeToContents)

        self._setupSegmentEditor()
        self._loadSettings()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAboutToBeRemovedEvent, self.onNodeAboutToBeRemoved)

        self.ui.computeButton.clicked.connect(self.onComputeButton)
        self.ui.findingsTable.cellClicked.connect(self.onLesionClicked)
        self.ui.segmentButton.clicked.connect(self.onSegmentButton)
        self.ui.segmentCancelButton.clicked.connect(self.onSegmentCancel)
        self.ui.narrativeButton.clicked.connect(self.onNarrativeButton)
        self.ui.narrativeCancelButton.clicked.connect(self.onNarrativeCancel)
        self.ui.narrativeOptInCheckBox.toggled.connect(self._onNarrativeSettingsChanged)
        for lineEdit in (self.ui.endpointLineEdit, self.ui.modelLineEdit, self.ui.examplesLineEdit):
            lineEdit.editingFinished.connect(self._onNarrativeSettingsChanged)
        self.ui.segmentModelsLineEdit.editingFinished.connect(self._onSegmentModelsChanged)
        self.ui.projectFolderPathLineEdit.currentPathChanged.connect(self._onExportFoldersChanged)
        self.ui.datasetFolderPathLineEdit.currentPathChanged.connect(self._onExportFoldersChanged)
        self.ui.saveCaseButton.clicked.connect(self.onSaveCase)
        self.ui.addToDatasetButton.clicked.connect(self.onAddToDataset)
        self.ui.exportDicomButton.clicked.connect(self.onExportDicom)

        self.initializeParameterNode()

    def _createTimer(self, intervalMs, singleShot, callback):
        timer = qt.QTimer()
        timer.setSingleShot(bool(singleShot))
        timer.setInterval(int(intervalMs))
        timer.timeout.connect(callback)
        self._timers.append((timer, callback))
        return timer

    def _setupSegmentEditor(self) -> None:
        """Embed the Segment Editor as Slicer's SegmentEditor module does, with its own editor node."""
        self.editor = slicer.qMRMLSegmentEditorWidget()
        self.editor.setMaximumNumberOfUndoStates(10)
        self._selectEditorNode()
        self.editor.setMRMLScene(slicer.mrmlScene)
        self.editor.setSegmentationNodeSelectorVisible(False)  # the panel's selectors drive it
        self.editor.setSourceVolumeNodeSelectorVisible(False)
        self.ui.editorFrame.layout().addWidget(self.editor)

    def _selectEditorNode(self) -> None:
        """Use the panel's own Segment Editor parameter node (a singleton: it survives scene close)."""
        node = slicer.mrmlScene.GetSingletonNode(EDITOR_NODE_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag(EDITOR_NODE_TAG)
            node = slicer.mrmlScene.AddNode(node)
        self._setEditorNode(node)
        self.editor.setMRMLSegmentEditorNode(node)

    def _setEditorNode(self, node) -> None:
        """Follow ``node``'s overwrite mode (None: stop following); one observer at most."""
        if node is self._editorNode:
            return
        if self._editorNode is not None:
            self.removeObserver(self._editorNode, vtk.vtkCommand.ModifiedEvent, self._showEditorMode)
        self._editorNode = node
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self._showEditorMode)
        self._showEditorMode()

    def cleanup(self) -> None:
        """Module widget destroyed (application exit, reload)."""
        if self.controller is not None:
            self.controller.shutdown()
        if self._segmentRun is not None:
            self._segmentRun.cancel()
        self.sideJobs.shutdown()
        self.segmentJobs.shutdown()
        for timer, callback in self._timers:
            timer.stop()
            timer.timeout.disconnect(callback)  # lingering connections keep the widget alive (Slicer #7392)
        self._timers = []
        self._observeSegmentation(None)
        self.removeObservers()

    def onReload(self) -> None:
        """Reload the Lib too: slicer.util.reloadScriptedModule re-executes only this file."""
        import RadGPTSlicerLib

        for name in sorted(n for n in list(sys.modules) if n.startswith("RadGPTSlicerLib.")):
            importlib.reload(sys.modules[name])
        importlib.reload(RadGPTSlicerLib)
        ScriptedLoadableModuleWidget.onReload(self)

    # ------------------------------------------------------ enter / exit
    def enter(self) -> None:
        self.initializeParameterNode()
        self._selectEditorNode()
        self.editor.installKeyboardShortcuts()
        self.editor.updateWidgetFromMRML()  # views are observed once an effect is activated

    def exit(self) -> None:
        # Live updates go on (the findings stay current); the editor releases the views.
        self.editor.setActiveEffect(None)
        self.editor.uninstallKeyboardShortcuts()
        self.editor.removeViewObservations()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.editor.setSegmentationNode(None)
        self.editor.removeViewObservations()
        self._forgetFindings(_("Select a CT and its segmentation, then press Compute."))
        self._setEditorNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()
            self._selectEditorNode()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAboutToBeRemoved(self, caller, event, node) -> None:
        """The CT or segmentation being measured is deleted (e.g. from the Data module)."""
        if node is None:
            return
        if node is self._sourceVolumeNode or node is self._sourceSegmentationNode:
            self._forgetFindings(_("The CT or segmentation was removed: select inputs and press Compute."))
        if node is self._observedSegmentationNode:
            self._observeSegmentation(None)

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first
        if not self._parameterNode.segmentation:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if first:
                self._parameterNode.segmentation = first

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        p = self._parameterNode
        volumeNode = p.inputVolume if p else None
        segmentationNode = p.segmentation if p else None
        self._observeSegmentation(segmentationNode)
        self.editor.setSegmentationNode(segmentationNode)
        self.editor.setSourceVolumeNode(volumeNode)
        self.controller.enabled = bool(p and p.autoUpdate)
        session = self.controller.session
        if session is not None:
            if not (_sameNode(volumeNode, self._sourceVolumeNode)
                    and _sameNode(segmentationNode, self._sourceSegmentationNode)):
                self._forgetFindings(_("Inputs changed: press Compute."))
            elif p.phase != session.phase:
                self._changePhase(p.phase)
        self._updateButtons()

    def _updateButtons(self) -> None:
        p = self._parameterNode
        volumeNode = p.inputVolume if p else None
        segmentationNode = p.segmentation if p else None
        computing = self._computeJob is not None
        segmenting = self._segmentRun is not None
        canCompute = bool(volumeNode and segmentationNode) and not computing and not segmenting
        self.ui.computeButton.setEnabled(canCompute)
        self.ui.computeButton.setToolTip(
            _("Read the CT and all segments and compute the findings.") if volumeNode and segmentationNode
            else _("Select the CT volume and its segmentation."))
        self.ui.segmentButton.setEnabled(bool(volumeNode) and not segmenting and not computing)
        self.ui.segmentCancelButton.setEnabled(segmenting)
        haveFindings = self._findings is not None
        self.ui.saveCaseButton.setEnabled(haveFindings)
        self.ui.addToDatasetButton.setEnabled(haveFindings)
        self.ui.exportDicomButton.setEnabled(haveFindings and bool(self.logic.dicomSeriesFiles(self._sourceVolumeNode)))
        optedIn = self.ui.narrativeOptInCheckBox.isChecked()
        self.ui.narrativeButton.setEnabled(haveFindings and optedIn and self._narrativeJob is None)
        self.ui.narrativeCancelButton.setEnabled(self._narrativeJob is not None)

    # ------------------------------------------------------ observations
    def _observeSegmentation(self, segmentationNode) -> None:
        """Observe the segment events of ``segmentationNode`` (and the replacement of its vtkSegmentation)."""
        segmentation = segmentationNode.GetSegmentation() if segmentationNode else None
        if segmentationNode is self._observedSegmentationNode and segmentation is self._observedSegmentation:
            return
        if self._observedSegmentation is not None:
            for event in self.logic.segmentEvents():
                self.removeObserver(self._observedSegmentation, event, self._onSegmentEvent)
        if self._observedSegmentationNode is not None:
            self.removeObserver(self._observedSegmentationNode, slicer.vtkMRMLSegmentationNode.SegmentationChangedEvent,
                                self._onSegmentationReplaced)
        self._observedSegmentationNode, self._observedSegmentation = segmentationNode, segmentation
        if segmentationNode is not None:
            self.addObserver(segmentationNode, slicer.vtkMRMLSegmentationNode.SegmentationChangedEvent,
                             self._onSegmentationReplaced)
        if segmentation is not None:
            for event in self.logic.segmentEvents():
                self.addObserver(segmentation, event, self._onSegmentEvent)

    @vtk.calldata_type(vtk.VTK_STRING)
    def _onSegmentEvent(self, caller, event, segmentId=None) -> None:
        # The segment ID comes with the event (vtkSegmentation.cxx, vtkSegmentationModifier.cxx);
        # only record it: the controller's timer does the work once the edits settle.
        self.controller.mark_dirty(segmentId or None)

    def _onSegmentationReplaced(self, caller=None, event=None) -> None:
        node = self._observedSegmentationNode
        self._observeSegmentation(None)
        self._observeSegmentation(node)
        self.controller.mark_dirty(None)

    def _showEditorMode(self, caller=None, event=None) -> None:
        from RadGPTSlicerLib.findings_view import editor_mode_text

        node = self._editorNode
        self.ui.editorModeLabel.setText(editor_mode_text(node.GetOverwriteMode()) if node is not None else "")

    # ------------------------------------------------- snapshot (GUI thread)
    def _takeSnapshot(self, segmentIds):
        session = self.controller.session
        return self.logic.snapshotSegments(self._sourceSegmentationNode, self._sourceVolumeNode, segmentIds,
                                           getattr(session, "buffers", None))

    # ---------------------------------------------- results (GUI thread)
    def _showResult(self, result) -> None:
        from RadGPTSlicerLib.findings_view import lesion_rows, review_order

        self._findings = result.findings
        for name, data in result.new_images.items():
            image = qt.QImage()
            image.loadFromData(qt.QByteArray(data), "PPM")  # uncompressed: decoding costs nothing
            self._images[name] = image
        order = review_order(self._findings, self._confidence)
        rows = lesion_rows(self._findings, self._confidence)
        table = self.ui.findingsTable
        table.setRowCount(len(rows))
        for rowIndex, lesionIndex in enumerate(order):
            for columnIndex, text in enumerate(rows[lesionIndex]):
                table.setItem(rowIndex, columnIndex, qt.QTableWidgetItem(text))
        self._rowToLesion = list(order)
        browser = self.ui.reportBrowser
        document = browser.document()
        for name, image in self._images.items():
            document.addResource(qt.QTextDocument.ImageResource, qt.QUrl(name), image)
        browser.setHtml(result.html)
        self._markNarrativeStale()
        for warning in result.warnings:
            logging.warning("RadGPT: %s", warning)
        self._showStale(self.controller.stale)
        self._updateButtons()

    def _markNarrativeStale(self) -> None:
        """A narrative written for other findings is kept on screen but said to be out of date."""
        from RadGPTSlicerLib.export import same_findings

        if self._narrative is not None and not same_findings(self._narrative.findings, self._findings):
            self._narrative = None
            self.ui.narrativeCheckLabel.setStyleSheet("color: #c06000; font-weight: bold;")
            self.ui.narrativeCheckLabel.setText(
                _("The findings changed after this narrative was written: write it again before saving it."))

    def _showStale(self, stale: bool) -> None:
        if self._findings is None:
            return
        if not stale:
            self._setStatus(_("Up to date: {lesions} lesion(s), {organs} organ(s).").format(
                lesions=len(self._findings["lesions"]), organs=len(self._findings["organs"])), stale=False)
        elif self.controller.enabled:
            self._setStatus(_("stale: segmentation edited, updating..."), stale=True)
        else:
            self._setStatus(_("stale: segmentation edited; press Compute or turn on auto-update."), stale=True)

    def _showUpdateError(self, exc) -> None:
        logging.error("RadGPT update failed: %s", exc, exc_info=exc)
        self._setStatus(_("stale: update failed ({error}); press Compute.").format(error=exc), stale=True)

    def _setStatus(self, text: str, stale: bool) -> None:
        self.ui.statusLabel.setText(text)
        self.ui.statusLabel.setStyleSheet("color: #c06000; font-weight: bold;" if stale else "")

    def _forgetFindings(self, status: str) -> None:
        if self.controller is not None:
            self.controller.detach()
        if self._computeJob is not None:
            self._computeJob.cancel()
            self._computeJob = None
            self.ui.computeProgressBar.setVisible(False)
        self._sourceVolumeNode = self._sourceSegmentationNode = None
        self._findings = None
        self._images = {}
        self._rowToLesion = []
        self._narrative = None
        if hasattr(self, "ui"):
            self.ui.findingsTable.clearContents()
            self.ui.findingsTable.setRowCount(0)
            self.ui.reportBrowser.clear()
            self._setStatus(status, stale=False)
            self._updateButtons()

    def _reportError(self, message: str, exc) -> None:
        """One line to the log and a dialog (slicer.util.errorDisplay logs at ERROR, then shows it)."""
        from RadGPTSlicerLib.findings_view import one_line_error

        text = f"{message} {one_line_error(exc)}"
        logging.debug("RadGPT error detail", exc_info=exc)
        slicer.util.errorDisplay(text)

    # -------------------------------------------------------------- Compute
    def onComputeButton(self) -> None:
        """Copy the CT and all segments (GUI thread), measure them in the background."""
        p = self._parameterNode
        volumeNode, segmentationNode, phase = p.inputVolume, p.segmentation, p.phase
        try:
            self.logic.ensureDependencies()
            build = self.logic.prepareSession(volumeNode, segmentationNode, phase)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._reportError(_("RadGPT could not read the inputs:"), exc)
            return
        self._forgetFindings(_("Computing..."))
        self._sourceVolumeNode, self._sourceSegmentationNode = volumeNode, segmentationNode
        self.ui.computeProgressBar.setVisible(True)
        self.ui.computeProgressBar.setValue(0)
        self._computeJob = self.controller.jobs.submit(
            build, on_done=self._onComputeDone, on_error=self._onComputeFailed,
            on_progress=self._onComputeProgress, on_discard=lambda built: built[0].close(), name="compute")
        self._updateButtons()

    def _onComputeProgress(self, fraction, text) -> None:
        self.ui.computeProgressBar.setValue(int(round(100 * fraction)))
        self._setStatus(text, stale=False)

    def _onComputeDone(self, built) -> None:
        session, result = built
        self._computeJob = None
        self.ui.computeProgressBar.setVisible(False)
        self._showResult(result)
        self.controller.attach(session, result)
        self._updateButtons()

    def _onComputeFailed(self, exc) -> None:
        from RadGPTSlicerLib.jobs import Cancelled

        self._computeJob = None
        self.ui.computeProgressBar.setVisible(False)
        self._forgetFindings(_("Computation failed: see the error message."))
        if not isinstance(exc, Cancelled):
            self._reportError(_("RadGPT could not compute the findings:"), exc)

    def _changePhase(self, phase: str) -> None:
        session = self.controller.session
        self.controller.jobs.submit(lambda ctx: session.set_phase(phase), on_done=self._showResult,
                                    on_error=lambda exc: self._reportError(_("Could not apply the phase:"), exc),
                                    name="phase")

    def onLesionClicked(self, row, column=0) -> None:
        if not self._findings or not (0 <= row < len(self._rowToLesion)):
            return
        lesion = self._findings["lesions"][self._rowToLesion[row]]
        try:
            self.logic.showLesion(lesion, self._sourceVolumeNode)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._reportError(_("Could not show the lesion:"), exc)

    # -------------------------------------------------------------- Segment
    def onSegmentButton(self) -> None:
        """Run the segmentation stage in its own process; load the result as segments."""
        from RadGPTSlicerLib.segment_stage import SegmentRun

        volumeNode = self._parameterNode.inputVolume
        device = self.ui.deviceComboBox.property("currentText")
        models = self._segmentModels()
        try:
            self._segmentRun = SegmentRun(
                self.logic.segmentationRunner(device, models), volumeNode, jobs=self.segmentJobs,
                timer_factory=self._createTimer, on_progress=self._onSegmentProgress, on_done=self._onSegmentDone,
                on_error=self._onSegmentFailed)
            self._segmentRun.start()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._segmentRun = None
            self._reportError(_("RadGPT could not start the segmentation:"), exc)
            return
        self.ui.segmentProgressBar.setVisible(True)
        self.ui.segmentProgressBar.setValue(0)
        self.ui.segmentStatusLabel.setText(_("Segmenting..."))
        self._updateButtons()

    def onSegmentCancel(self) -> None:
        if self._segmentRun is not None:
            self._segmentRun.cancel()

    def _onSegmentProgress(self, fraction, text) -> None:
        if fraction is None:
            self.ui.segmentProgressBar.setMaximum(0)  # busy indicator: total unknown
        else:
            self.ui.segmentProgressBar.setMaximum(100)
            self.ui.segmentProgressBar.setValue(int(round(100 * fraction)))
        self.ui.segmentStatusLabel.setText(text)

    def _onSegmentDone(self, segmentationNode, confidence) -> None:
        self._segmentRun = None
        self._confidence = dict(confidence)
        self.ui.segmentProgressBar.setVisible(False)
        self.ui.segmentStatusLabel.setText(_("Segmentation loaded: review the segments, then press Compute."))
        self._parameterNode.segmentation = segmentationNode
        self._updateButtons()

    def _onSegmentFailed(self, message, cancelled=False) -> None:
        self._segmentRun = None
        self.ui.segmentProgressBar.setVisible(False)
        self.ui.segmentStatusLabel.setText(message)
        if not cancelled:
            logging.error("RadGPT segmentation failed: %s", message)
            slicer.util.errorDisplay(_("RadGPT segmentation failed: {message}").format(message=message))
        self._updateButtons()

    # ------------------------------------------------------------ narrative
    def _loadSettings(self) -> None:
        """Narrative endpoint, model, examples and opt-in; project and dataset folders (Slicer's QSettings)."""
        from RadGPTSlicerLib.narrative_job import WHAT_IS_SENT

        settings = qt.QSettings()
        self.ui.endpointLineEdit.setText(str(settings.value(SETTINGS_PREFIX + "endpoint", "") or ""))
        self.ui.modelLineEdit.setText(str(settings.value(SETTINGS_PREFIX + "model", "") or ""))
        self.ui.examplesLineEdit.setText(str(settings.value(SETTINGS_PREFIX + "examples", "") or ""))
        self.ui.narrativeOptInCheckBox.setChecked(slicer.util.toBool(settings.value(SETTINGS_PREFIX + "optIn", False)))
        self.ui.narrativeSentLabel.setText(WHAT_IS_SENT)
        self.ui.segmentModelsLineEdit.setText(str(settings.value(SEGMENT_MODELS_KEY, "") or ""))
        self.ui.projectFolderPathLineEdit.setCurrentPath(str(settings.value(EXPORT_PREFIX + "projectFolder", "") or ""))
        self.ui.datasetFolderPathLineEdit.setCurrentPath(str(settings.value(EXPORT_PREFIX + "datasetFolder", "") or ""))

    def _onNarrativeSettingsChanged(self, *args) -> None:
        settings = qt.QSettings()
        for key, widget in (("endpoint", self.ui.endpointLineEdit), ("model", self.ui.modelLineEdit),
                            ("examples", self.ui.examplesLineEdit)):
            settings.setValue(SETTINGS_PREFIX + key, widget.property("text"))
        settings.setValue(SETTINGS_PREFIX + "optIn", self.ui.narrativeOptInCheckBox.isChecked())
        self._updateButtons()

    def _segmentModels(self) -> list:
        """The Models field: presets or results folders separated by ";" (empty: TotalSegmentator's total)."""
        text = str(self.ui.segmentModelsLineEdit.property("text") or "")
        return [m.strip() for m in text.split(";") if m.strip()] or list(DEFAULT_SEGMENT_MODELS)

    def _onSegmentModelsChanged(self, *args) -> None:
        qt.QSettings().setValue(SEGMENT_MODELS_KEY, self.ui.segmentModelsLineEdit.property("text"))

    def _onExportFoldersChanged(self, *args) -> None:
        settings = qt.QSettings()
        settings.setValue(EXPORT_PREFIX + "projectFolder", self.ui.projectFolderPathLineEdit.property("currentPath"))
        settings.setValue(EXPORT_PREFIX + "datasetFolder", self.ui.datasetFolderPathLineEdit.property("currentPath"))

    def _narrativeSettings(self) -> dict:
        return {"endpoint": self.ui.endpointLineEdit.property("text"),
                "model": self.ui.modelLineEdit.property("text"),
                "examples": self.ui.examplesLineEdit.property("text")}

    def onNarrativeButton(self) -> None:
        """Write the narrative in the background (opt-in only); the structured report stays shown."""
        from RadGPTSlicerLib.narrative_job import narrative_job

        if not self.ui.narrativeOptInCheckBox.isChecked() or self._findings is None:
            return
        try:
            self.logic.ensureDependencies(["openai>=1.30"])
            job = narrative_job(self._findings, self._narrativeSettings())
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._reportError(_("The narrative could not be written:"), exc)
            return
        self._narrative = None
        self.ui.narrativeBrowser.clear()
        self.ui.narrativeCheckLabel.setStyleSheet("")
        self.ui.narrativeCheckLabel.setText(_("Writing the narrative..."))
        holder = []
        running = self.sideJobs.submit(job, on_done=lambda shown: self._onNarrativeDone(holder[0], shown),
                                       on_error=lambda exc: self._onNarrativeFailed(holder[0], exc), name="narrative")
        holder.append(running)
        self._narrativeJob = running
        self._updateButtons()

    def onNarrativeCancel(self) -> None:
        """Drop the request at once; an answer still on its way is ignored."""
        if self._narrativeJob is not None:
            self._narrativeJob.cancel()
            self._narrativeJob = None
            self.ui.narrativeCheckLabel.setText(_("Narrative cancelled; the structured report stands."))
            self._updateButtons()

    def _onNarrativeDone(self, job, shown) -> None:
        if job is not self._narrativeJob:
            return  # cancelled, or replaced by a newer request
        self._narrativeJob = None
        self._narrative = shown
        self.ui.narrativeBrowser.setPlainText(shown.text)
        self.ui.narrativeCheckLabel.setText(shown.check_text)
        self.ui.narrativeCheckLabel.setStyleSheet("" if shown.accepted else "color: #c06000; font-weight: bold;")
        self._updateButtons()

    def _onNarrativeFailed(self, job, exc) -> None:
        from RadGPTSlicerLib.jobs import Cancelled

        if job is not self._narrativeJob or isinstance(exc, Cancelled):
            return
        self._narrativeJob = None
        self.ui.narrativeCheckLabel.setText(_("No narrative; the structured report stands."))
        self._reportError(_("The narrative could not be written:"), exc)
        self._updateButtons()

    # -------------------------------------------------------------- export
    def _exportInputs(self):
        return (self.ui.projectFolderPathLineEdit.property("currentPath"),
                self.ui.caseIdLineEdit.property("text"))

    def _runExport(self, what, fn) -> None:
        session = self.controller.session
        if session is None:
            return
        self.ui.exportStatusLabel.setText(_("{what}...").format(what=what))
        self.controller.jobs.submit(lambda ctx: fn(session), on_done=self._onExportDone,
                                    on_error=lambda exc: self._onExportFailed(what, exc), name=what)
        self._updateButtons()

    def _onExportDone(self, message) -> None:
        self.ui.exportStatusLabel.setText(message)
        logging.info("RadGPT: %s", message)

    def _onExportFailed(self, what, exc) -> None:
        self.ui.exportStatusLabel.setText(_("{what} failed.").format(what=what))
        self._reportError(_("{what} failed:").format(what=what), exc)

    def onSaveCase(self) -> None:
        folder, caseId = self._exportInputs()
        narrative = self._narrative

        def save(session):
            saved = session.save_case(folder, caseId, narrative)
            message = _(
                "Saved {case} to {folder}: cases/{case}/ (CT, masks), reports/{case}/ (findings, reports{extra}).")
            return message.format(case=saved["case_id"], folder=folder,
                                  extra=_(", narrative") if saved["narrative"] else "")

        self._runExport(_("Save case"), save)

    def onAddToDataset(self) -> None:
        folder, caseId = self._exportInputs()
        dataset = self.ui.datasetFolderPathLineEdit.property("currentPath")
        narrative = self._narrative

        def add(session):
            added = session.add_to_dataset(folder, dataset, caseId, narrative)
            return _("Added {case} to the dataset {dataset} ({n} other case(s) kept).").format(
                case=added["case_id"], dataset=dataset, n=len(added["kept"]))

        self._runExport(_("Add to dataset"), add)

    def onExportDicom(self) -> None:
        folder, caseId = self._exportInputs()
        files = self.logic.dicomSeriesFiles(self._sourceVolumeNode)

        def export(session):
            written, notes = session.export_dicom(files, folder, caseId)
            for note in notes:
                logging.warning("RadGPT DICOM export: %s", note)
            message = _("DICOM SEG and SR written: {files}.").format(files=", ".join(str(p) for p in written))
            if notes:
                message += " " + _("{n} note(s) about the source series in the log.").format(n=len(notes))
            return message

        self._runExport(_("DICOM export"), export)


#
# RadGPTSlicerLogic
#


class RadGPTSlicerLogic(ScriptedLoadableModuleLogic):
    """Slicer-side logic: reading nodes (GUI thread), the segmentation runner, calipers.

    Usable without the widget, e.g. from the Python console::

        logic = slicer.util.getModuleLogic("RadGPTSlicer")
        findings = logic.computeFindings(volumeNode, segmentationNode, "venous")
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        #: False: the panel measures in a process of its own (no GIL shared with Slicer's GUI thread)
        self.measureInProcess = False

    def getParameterNode(self):
        return RadGPTSlicerParameterNode(super().getParameterNode())

    @staticmethod
    def segmentEvents() -> list:
        """vtkSegmentation events after which findings may be out of date; each carries the segment ID.

        RepresentationModified (not SourceRepresentationModified) because its call data
        is always the segment ID; SourceRepresentationModified sometimes carries a
        labelmap object (vtkSegmentation.cxx).  Undo restores segments through
        vtkSegment::Modified, i.e. SegmentModified.
        """
        return [
            slicer.vtkSegmentation.SegmentAdded,
            slicer.vtkSegmentation.SegmentRemoved,
            slicer.vtkSegmentation.SegmentModified,
            slicer.vtkSegmentation.RepresentationModified,
        ]

    # ------------------------------------------------------------ dependencies
    @staticmethod
    def requirementsPath() -> str:
        return os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "requirements.txt")

    def ensureDependencies(self, requirements=None) -> None:
        """Install Python packages RadGPTLogic needs and Slicer lacks, after the user agrees.

        ``requirements``: pip requirement strings; default ``Resources/requirements.txt``
        (what measuring and reporting need).  Optional features pass their own (the
        narrative: ``openai``).
        """
        path = self.requirementsPath()
        try:
            import slicer.packaging as packaging  # Slicer >= 5.12
        except ImportError:
            packaging = None
        if requirements is None and packaging is not None and hasattr(packaging, "pip_ensure"):
            packaging.pip_ensure(packaging.load_requirements(path), requester="RadGPT")
            return
        if requirements is None:
            with open(path) as f:
                requirements = [line.strip() for line in f if line.strip() and not line.startswith(("#", "-"))]
        missing = [r for r in requirements
                   if importlib.util.find_spec(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) is None]
        if missing:
            if not slicer.util.confirmOkCancelDisplay(
                    _("RadGPT needs these Python packages: {packages}. Install them now?").format(
                        packages=", ".join(missing))):
                raise RuntimeError("required Python packages are missing: " + ", ".join(missing))
            slicer.util.pip_install(" ".join(missing))  # a string: accepted by every Slicer version

    # ------------------------------------------------------- reading (GUI thread)
    def ijkToRas(self, volumeNode) -> np.ndarray:
        from RadGPTSlicerLib.adapter import ijk_to_ras

        return ijk_to_ras(volumeNode, vtk.vtkMatrix4x4)

    def snapshotSegments(self, segmentationNode, volumeNode, segmentIds=None, buffers=None):
        """Copies of the layers holding ``segmentIds`` (all when None), all names, full-export crops.

        GUI thread, no scene node created; a layer off the CT's lattice is read through
        ``slicer.util.arrayFromSegmentBinaryLabelmap`` (full CT extent; slow) with a warning.
        """
        from RadGPTSlicerLib.adapter import read_segment_ijk, segment_names
        from RadGPTSlicerLib.layers import ijk_crop_to_canonical, snapshot_layers

        names = segment_names(segmentationNode)
        ids = list(names) if segmentIds is None else [s for s in segmentIds if s in names]
        ijkToRas = self.ijkToRas(volumeNode)
        snapshots, unreadable = snapshot_layers(segmentationNode, ids, slicer.util, ijkToRas, vtk.vtkMatrix4x4,
                                                buffers)
        fullCrops = {}
        if unreadable:
            logging.warning("RadGPT: segments %s are not on the CT's voxel grid; they are exported to the CT grid "
                            "after each edit (slow). Set the segmentation geometry from the CT to avoid this.",
                            ", ".join(unreadable))
            from RadGPTLogic.geometry import canonical_orientation

            ornt = canonical_orientation(ijkToRas)
            for segmentId in unreadable:
                mask = read_segment_ijk(segmentationNode, segmentId, volumeNode, slicer.util)
                fullCrops[segmentId] = ijk_crop_to_canonical(mask, (0, 0, 0), mask.shape, ornt)
        return snapshots, names, fullCrops

    def prepareSession(self, volumeNode, segmentationNode, phase: str = "unknown", inProcess: bool = None):
        """Copy the CT and every segment now (GUI thread); return the job that measures them.

        The returned ``build(context)`` runs on a worker thread and returns
        ``(session, UpdateResult)``.  The session lives in a measurement process of its
        own (:class:`RadGPTSlicerLib.measure_process.RemoteSession`) unless
        ``inProcess`` (default: ``self.measureInProcess``) asks for one in this process.
        """
        from RadGPTSlicerLib.adapter import kji_to_ijk

        if not volumeNode or not segmentationNode:
            raise ValueError("a CT volume and a segmentation are needed")
        inProcess = self.measureInProcess if inProcess is None else inProcess
        segmentationNode.CreateBinaryLabelmapRepresentation()
        ijkToRas = self.ijkToRas(volumeNode)
        ctKji = np.array(slicer.util.arrayFromVolume(volumeNode), copy=True)
        snapshots, names, fullCrops = self.snapshotSegments(segmentationNode, volumeNode, None)
        caseId, volumeName = volumeNode.GetName() or "slicer_case", volumeNode.GetName()
        transformed = volumeNode.GetParentTransformNode() is not None

        def localSession():
            from RadGPTSlicerLib.session import MeasurementSession

            session = MeasurementSession(caseId, kji_to_ijk(ctKji), ijkToRas, phase, volumeName)
            if transformed:
                session.case.warnings.append(f"volume '{volumeName}' is under a transform: positions are in "
                                             "the volume's own (untransformed) RAS")
            return session

        def build(context):
            from RadGPTSlicerLib.measure_process import RemoteSession

            context.report(0.1, _("Reading the CT and {n} segment(s)...").format(n=len(names)))
            session = None
            if not inProcess:
                try:
                    session = RemoteSession()
                except OSError as exc:  # e.g. no PythonSlicer to start: measure in this process instead
                    logging.warning("RadGPT: the measurement process could not start (%s); measuring in "
                                    "Slicer's process", exc)
            try:
                if session is None:
                    session = localSession()
                else:
                    session.open(caseId, ctKji, ijkToRas, phase, volumeName, transformed)
                context.check()
                context.report(0.4, _("Measuring..."))
                result = session.apply(snapshots, names, fullCrops, force=True)
                context.check()
            except BaseException:
                if session is not None:
                    session.close()
                raise
            context.report(1.0, _("Done."))
            return session, result

        return build

    def computeFindings(self, volumeNode, segmentationNode, phase: str = "unknown") -> dict:
        """One-shot findings dict (``Findings.to_dict()``), computed on the calling thread."""
        from RadGPTSlicerLib.jobs import JobContext

        _session, result = self.prepareSession(volumeNode, segmentationNode, phase, inProcess=True)(JobContext())
        return result.findings

    # ------------------------------------------------------------ segmentation
    def segmentationRunner(self, device: str = "auto", models=DEFAULT_SEGMENT_MODELS):
        """The segmentation stage's runner (a separate process; Slicer's Python runs the worker).

        ``models``: presets or nnU-Net results folders, in precedence order.
        """
        from RadGPTSlicerLib.segment_stage import make_runner

        return make_runner(device, models)

    @staticmethod
    def dicomSeriesFiles(volumeNode) -> list:
        """Files of the DICOM series the volume was loaded from (Slicer's DICOM database), or []."""
        from RadGPTSlicerLib.export import dicom_series_files

        return dicom_series_files(volumeNode, getattr(slicer, "dicomDatabase", None))

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
            slicer.util.setSliceViewerLayers(background=volumeNode)
        if focusWorld is not None:
            slicer.modules.markups.logic().JumpSlicesToLocation(*focusWorld, True)


#
# RadGPTSlicerTest
#


class RadGPTSlicerTest(ScriptedLoadableModuleTest):
    """Self-test in Slicer: a synthetic CT and a shared-layer segmentation built in the scene and
    measured through the real Slicer calls; then the panel follows an edit of the tumour."""

    SHAPE_KJI = (24, 48, 56)
    IJK_TO_RAS = np.array([
        [-0.75, 0.0, 0.0, 40.0],
        [0.0, -0.75, 0.0, 30.0],
        [0.0, 0.0, 2.0, -20.0],
        [0.0, 0.0, 0.0, 1.0],
    ])

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_LesionDiameterFromNodes()
        self.setUp()
        self.test_PanelFollowsAnEdit()

    def _scene(self):
        """CT and segmentation (liver, spleen, liver_tumor on one shared layer, as Slicer imports a labelmap)."""
        ct = np.full(self.SHAPE_KJI, -100, np.int16)
        labels = np.zeros(self.SHAPE_KJI, np.uint8)
        labels[4:20, 8:40, 10:50] = 1   # liver
        labels[6:16, 41:47, 12:30] = 2  # spleen
        labels[8:14, 18:30, 20:40] = 3  # tumour: 20 x 12 voxels in plane (15 x 9 mm), 6 slices
        for value, hu in ((1, 60), (2, 50), (3, 20)):
            ct[labels == value] = hu
        volumeNode = slicer.util.addVolumeFromArray(ct, self.IJK_TO_RAS, name="RadGPT test CT")
        labelNode = slicer.util.addVolumeFromArray(labels, self.IJK_TO_RAS, name="labels",
                                                   nodeClassName="vtkMRMLLabelMapVolumeNode")
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "RadGPT test segmentation")
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelNode, segmentationNode)
        slicer.mrmlScene.RemoveNode(labelNode)
        segmentation = segmentationNode.GetSegmentation()
        for index, name in enumerate(("liver", "spleen", "liver_tumor")):
            segmentation.GetNthSegment(index).SetName(name)
        return volumeNode, segmentationNode

    def _waitFor(self, condition, timeout_s: float = 60.0) -> bool:
        import time

        deadline = time.time() + timeout_s
        while not condition() and time.time() < deadline:
            slicer.app.processEvents()
            time.sleep(0.01)
        return bool(condition())

    def test_LesionDiameterFromNodes(self):
        self.delayDisplay("Measuring a synthetic liver tumour through Slicer nodes")
        volumeNode, segmentationNode = self._scene()
        findings = RadGPTSlicerLogic().computeFindings(volumeNode, segmentationNode, "venous")
        self.assertEqual(len(findings["lesions"]), 1)
        lesion = findings["lesions"][0]
        # The 0.5 iso-contour of a 15 x 9 mm voxel rectangle has its corners cut by half a
        # voxel (0.75 mm), so its longest chord is hypot(15, 9 - 0.75) mm.
        self.assertAlmostEqual(lesion["longest_diameter_mm"], float(np.hypot(15.0, 8.25)), places=3)
        self.assertAlmostEqual(lesion["volume_ml"], 20 * 12 * 6 * 0.75 * 0.75 * 2.0 / 1000.0, places=6)
        self.assertAlmostEqual(lesion["mean_hu"], 20.0, places=3)
        RadGPTSlicerLogic().showLesion(lesion, volumeNode)
        self.delayDisplay("Test passed")

    def test_PanelFollowsAnEdit(self):
        self.delayDisplay("The panel re-measures the tumour after an edit, in the background")
        volumeNode, segmentationNode = self._scene()
        widget = slicer.util.getModuleWidget("RadGPTSlicer")
        widget.initializeParameterNode()
        parameters = widget._parameterNode
        parameters.inputVolume = volumeNode
        parameters.segmentation = segmentationNode
        parameters.phase = "venous"
        parameters.autoUpdate = True
        widget.onComputeButton()
        self.assertTrue(self._waitFor(lambda: widget._findings is not None and not widget.controller.busy))
        self.assertEqual(len(widget._findings["lesions"]), 1)
        # the tumour grows to 28 x 12 voxels in plane (21 x 9 mm): longest chord hypot(21, 8.25) mm
        segmentation = segmentationNode.GetSegmentation()
        tumourId = segmentation.GetSegmentIdBySegmentName("liver_tumor")
        tumour = np.zeros(self.SHAPE_KJI, np.uint8)
        tumour[8:14, 18:30, 12:40] = 1
        updates = widget.controller.updates
        slicer.util.updateSegmentBinaryLabelmapFromArray(tumour, segmentationNode, tumourId, volumeNode)
        self.assertTrue(self._waitFor(lambda: widget.controller.updates > updates and not widget.controller.stale
                                      and not widget.controller.busy))
        lesion = widget._findings["lesions"][0]
        self.assertAlmostEqual(lesion["longest_diameter_mm"], float(np.hypot(21.0, 8.25)), places=3)
        self.assertEqual(widget.ui.findingsTable.rowCount(), 1)
        self.assertIn("Up to date", widget.ui.statusLabel.property("text"))
        self.delayDisplay("Test passed")
