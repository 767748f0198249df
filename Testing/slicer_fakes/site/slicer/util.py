"""Fake slicer.util: the functions of Slicer/Slicer Base/Python/slicer/util.py the module uses.

Each behaves as the real one does (read in util.py at Slicer main, commit 583e9b37):

* ``arrayFromVolume``: a ``[k, j, i]`` view of the volume's voxel memory (no copy).
* ``arrayFromSegmentInternalBinaryLabelmap``: a ``[k, j, i]`` view of the segment's
  internal labelmap, which may be a shared layer holding other segments' labels,
  over the layer's own extent (no copy).
* ``arrayFromSegmentBinaryLabelmap``: the costly path.  It adds a temporary
  ``vtkMRMLLabelMapVolumeNode`` to the scene, exports the segment into it on the
  whole reference volume's extent, copies the array out and removes the node (and
  its display/colour node): scene events fire and a full-size array is allocated.
  ``COSTS`` counts these exports and temporary nodes, so a test catches a
  regression to this path.
* ``errorDisplay``/``warningDisplay``/``infoDisplay``: log at their level, then show a
  message box unless testing is enabled (``slicer.app.testingEnabled()``).
* ``tryWithErrorDisplay``: shows the error and re-raises.

A function that the real util.py lacks is deliberately absent (``REAL_UTIL_NAMES``
lists the real module's public names), and so is every real function the module
does not use: calling it raises ``AttributeError`` and fails the test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import numpy as np

import slicer

#: Public names of Slicer's Base/Python/slicer/util.py (Slicer main, commit 583e9b37).
REAL_UTIL_NAMES = frozenset([
    'LazyImport', 'MRMLNodeNotFoundException', 'MessageDialog', 'NodeModify', 'RenderBlocker',
    'VTKObservationMixin', 'WaitCursor', 'addParameterEditWidgetConnections', 'addVolumeFromArray',
    'addVolumeFromITKImage', 'array', 'arrayFromGridTransform', 'arrayFromGridTransformModified',
    'arrayFromMarkupsControlPointData', 'arrayFromMarkupsControlPointDataModified',
    'arrayFromMarkupsControlPoints', 'arrayFromMarkupsCurveData', 'arrayFromMarkupsCurvePoints',
    'arrayFromModelCellData', 'arrayFromModelCellDataModified', 'arrayFromModelPointData',
    'arrayFromModelPointDataModified', 'arrayFromModelPoints', 'arrayFromModelPointsModified',
    'arrayFromModelPolyIds', 'arrayFromSegment', 'arrayFromSegmentBinaryLabelmap',
    'arrayFromSegmentInternalBinaryLabelmap', 'arrayFromTableColumn', 'arrayFromTableColumnModified',
    'arrayFromTransformMatrix', 'arrayFromVTKMatrix', 'arrayFromVolume', 'arrayFromVolumeModified', 'chdir',
    'childWidgetVariables', 'clickAndDrag', 'computeChecksum', 'confirmOkCancelDisplay',
    'confirmRetryCloseDisplay', 'confirmYesNoDisplay', 'createProgressDialog', 'dataframeFromMarkups',
    'dataframeFromTable', 'delayDisplay', 'displayPythonShell', 'downloadAndExtractArchive', 'downloadFile',
    'errorDisplay', 'executePythonModule', 'exit', 'exportNode', 'extractAlgoAndDigest', 'extractArchive',
    'findChild', 'findChildren', 'forceRenderAllViews', 'getFilesInDirectory', 'getFirstNodeByClassByName',
    'getFirstNodeByName', 'getModule', 'getModuleGui', 'getModuleLogic', 'getModuleWidget',
    'getNewModuleGui', 'getNewModuleWidget', 'getNode', 'getNodes', 'getNodesByClass',
    'getSubjectHierarchyItemChildren', 'importClassesFromDirectory', 'importModuleObjects',
    'importQtClassesFromDirectory', 'importVTKClassesFromDirectory', 'infoDisplay', 'itkImageFromVolume',
    'itkImageFromVolumeModified', 'launchConsoleProcess', 'loadAnnotationFiducial', 'loadAnnotationROI',
    'loadAnnotationRuler', 'loadColorTable', 'loadFiberBundle', 'loadLabelVolume', 'loadMarkups',
    'loadMarkupsClosedCurve', 'loadMarkupsCurve', 'loadMarkupsFiducialList', 'loadModel', 'loadNodeFromFile',
    'loadNodesFromFile', 'loadScalarOverlay', 'loadScene', 'loadSegmentation', 'loadSequence',
    'loadShaderProperty', 'loadTable', 'loadText', 'loadTransform', 'loadUI', 'loadVolume',
    'logProcessOutput', 'longPath', 'lookupTopLevelWidget', 'mainWindow', 'messageBox', 'moduleNames',
    'modulePath', 'moduleSelector', 'openAddColorTableDialog', 'openAddDataDialog',
    'openAddFiberBundleDialog', 'openAddFiducialDialog', 'openAddMarkupsDialog', 'openAddModelDialog',
    'openAddScalarOverlayDialog', 'openAddSegmentationDialog', 'openAddShaderPropertyDialog',
    'openAddTransformDialog', 'openAddVolumeDialog', 'openSaveDataDialog', 'pip_install', 'pip_uninstall',
    'plot', 'pythonShell', 'quit', 'reloadScriptedModule', 'removeParameterEditWidgetConnections',
    'resetSliceViews', 'resetThreeDViews', 'restart', 'saveNode', 'saveScene', 'selectModule',
    'selectedModule', 'setApplicationLogoVisible', 'setDataProbeVisible', 'setErrorLogVisible',
    'setMenuBarsVisible', 'setModuleHelpSectionVisible', 'setModulePanelTitleVisible',
    'setPythonConsoleVisible', 'setSliceViewerLayers', 'setStatusBarVisible', 'setToolbarsVisible',
    'setViewControllersVisible', 'settingsValue', 'showStatusMessage', 'sourceDir', 'startQtDesigner',
    'startupEnvironment', 'tempDirectory', 'toBool', 'toLatin1String', 'toVTKString', 'tryWithErrorDisplay',
    'updateMarkupsControlPointsFromArray', 'updateNodeFromParameterEditWidgets',
    'updateParameterEditWidgetsFromNode', 'updateSegmentBinaryLabelmapFromArray', 'updateTableFromArray',
    'updateTransformMatrixFromArray', 'updateVTKMatrixFromArray', 'updateVolumeFromArray',
    'updateVolumeFromITKImage', 'vtkMatrixFromArray', 'warningDisplay',
])

#: Cost counters of the slow paths (reset by the tests).
COSTS = {"full_exports": 0, "temp_nodes": 0}
#: Message boxes shown: (level, text).
MESSAGES = []


def arrayFromVolume(volumeNode):
    return volumeNode.fake_array


def arrayFromSegmentInternalBinaryLabelmap(segmentationNode, segmentId):
    vimage = segmentationNode.GetBinaryLabelmapInternalRepresentation(segmentId)
    nshape = tuple(reversed(vimage.GetDimensions()))
    import vtk.util.numpy_support

    return vtk.util.numpy_support.vtk_to_numpy(vimage.GetPointData().GetScalars()).reshape(nshape)


def arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, referenceVolumeNode=None):
    if not referenceVolumeNode:
        referenceVolumeNode = segmentationNode.GetNodeReference(
            slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
        if not referenceVolumeNode:
            raise RuntimeError("No reference volume is found in the input segmentationNode, "
                               "therefore a valid referenceVolumeNode input is required.")
    labelmapVolumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__temp__")
    COSTS["temp_nodes"] += 1
    try:
        segmentation = segmentationNode.GetSegmentation()
        if segmentation.GetSegment(segmentId) is None:
            raise RuntimeError("Export of segment failed.")
        # ExportSegmentsToLabelmapNode: the segment on the reference volume's whole extent
        full = np.zeros(referenceVolumeNode.fake_array.shape, np.uint8)
        full[segmentation.fake_segment_mask(segmentId)] = 1
        labelmapVolumeNode.fake_array = full
        labelmapVolumeNode.fake_ijk_to_ras = np.array(referenceVolumeNode.fake_ijk_to_ras)
        COSTS["full_exports"] += 1
        narray = arrayFromVolume(labelmapVolumeNode)
    finally:
        slicer.mrmlScene.RemoveNode(labelmapVolumeNode)
    return narray


def updateSegmentBinaryLabelmapFromArray(narray, segmentationNode, segmentId, referenceVolumeNode=None):
    segmentation = segmentationNode.GetSegmentation()
    segment = segmentation.GetSegment(segmentId)
    from slicer.segmentation import vtkOrientedImageData

    layer = vtkOrientedImageData(image_to_world=segmentation.fake_grid[1])
    layer.fake_set_full((np.asarray(narray) != 0).astype(np.uint8))
    segment._representations["Binary labelmap"] = layer
    segment._label = 1
    segmentation._content_event(segmentId)


def updateMarkupsControlPointsFromArray(markupsNode, narray, world=False):
    markupsNode.fake_points = np.array(narray, float).reshape(-1, 3)
    markupsNode.Modified()


def getNodesByClass(className, scene=None):
    return (scene or slicer.mrmlScene).fake_nodes(className)


def getNode(pattern="*", index=0, scene=None):
    nodes = [n for n in (scene or slicer.mrmlScene).fake_nodes() if n.GetName() == pattern or n.GetID() == pattern]
    if not nodes:
        raise MRMLNodeNotFoundException(f"could not find nodes in the scene by name or id '{pattern}'")
    return nodes[index]


class MRMLNodeNotFoundException(Exception):
    pass


def modulePath(moduleName):
    return sys.modules[moduleName].__file__


def loadUI(path):
    from PyQt5 import uic

    if not os.path.isfile(path):
        raise RuntimeError("Could not load UI file: file not found " + str(path) + "\n\n")
    return uic.loadUi(path)


def childWidgetVariables(widget):
    from PyQt5 import QtWidgets

    ui = type("", (), {})()
    for child in widget.findChildren(QtWidgets.QWidget):
        if child.objectName():
            setattr(ui, child.objectName(), child)
    return ui


def setSliceViewerLayers(background="keep-current", foreground="keep-current", label="keep-current",
                         foregroundOpacity=None, labelOpacity=None, fit=False, rotateToVolumePlane=False):
    slicer.app.fake_layers = {"background": background}


def saveNode(node, filename, properties={}):
    """Writes a volume node as NIfTI (what Slicer's ITK writer does for .nii.gz)."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ascontiguousarray(node.fake_array.transpose(2, 1, 0)), node.fake_ijk_to_ras),
             filename)
    return True


def _messageDisplay(level, text):
    logging.log(level, text)
    if not slicer.app.testingEnabled():
        MESSAGES.append((logging.getLevelName(level).lower(), text))


def errorDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
    _messageDisplay(logging.ERROR, text)


def warningDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
    _messageDisplay(logging.WARNING, text)


def infoDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
    _messageDisplay(logging.INFO, text)


def confirmOkCancelDisplay(text, windowTitle=None, parent=None, **kwargs):
    logging.info(text)
    MESSAGES.append(("confirm", text))
    return slicer.app.fake_confirm


@contextlib.contextmanager
def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
    try:
        yield
    except Exception as e:
        if show and not slicer.app.testingEnabled():
            errorDisplay(f"{message}\n\n{e}" if message is not None else str(e))
        raise


def toBool(value):
    try:
        return bool(int(value))
    except (ValueError, TypeError):
        return value.lower() in ["true"] if isinstance(value, str) else bool(value)


def reloadScriptedModule(moduleName):
    raise NotImplementedError("not used in tests")


class VTKObservationMixin:
    """As in util.py: observations keyed by (object, event, method); the tag from AddObserver."""

    def __init__(self):
        super().__init__()
        self.__observations = {}

    @property
    def Observations(self):
        return [(obj, event, method, group, tag, priority)
                for obj, events in self.__observations.items()
                for event, methods in events.items()
                for method, (group, tag, priority) in methods.items()]

    def removeObservers(self, method=None):
        if method is None:
            for obj, _, _, _, tag, _ in self.Observations:
                obj.RemoveObserver(tag)
            self.__observations.clear()
        else:
            for obj, events in self.__observations.items():
                for e, methods in events.items():
                    if method in methods:
                        _g, t, _p = methods.pop(method)
                        obj.RemoveObserver(t)

    def addObserver(self, obj, event, method, group="none", priority=0.0):
        events = self.__observations.setdefault(obj, {})
        methods = events.setdefault(event, {})
        if method in methods:
            import warnings

            warnings.warn("already has observer")
            return
        tag = obj.AddObserver(event, method, priority)
        methods[method] = group, tag, priority

    def removeObserver(self, obj, event, method):
        try:
            _group, tag, _priority = self.__observations[obj][event].pop(method)
            obj.RemoveObserver(tag)
        except KeyError:
            import warnings

            warnings.warn("does not have observer")

    def hasObserver(self, obj, event, method):
        try:
            return method in self.__observations[obj][event]
        except KeyError:
            return False


for _name in [n for n in list(globals()) if not n.startswith("_") and callable(globals()[n])
              and n not in ("REAL_UTIL_NAMES",) and globals()[n].__module__ == __name__]:
    assert _name in REAL_UTIL_NAMES, f"fake slicer.util.{_name} is not a real Slicer function"
