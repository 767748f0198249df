"""Fake ``slicer`` package for testing the RadGPT module without 3D Slicer.

Modules: ``mrml`` (scene, nodes), ``segmentation`` (vtkSegmentationCore with
shared layers and editor painting), ``util``, ``ScriptedLoadableModule``,
``parameterNodeWrapper``, ``i18n`` and ``widgets`` (qMRML/CTK widgets on PyQt5).
Only what the module uses and Slicer really has is defined.  ``reset()`` gives a
fresh scene between tests.
"""

from .mrml import (  # noqa: F401
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLMarkupsLineNode,
    vtkMRMLNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLScene,
    vtkMRMLScriptedModuleNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSegmentEditorNode,
)
from .segmentation import vtkOrientedImageData, vtkSegment, vtkSegmentation  # noqa: F401


class vtkSegmentationConverter:
    @staticmethod
    def GetSegmentationBinaryLabelmapRepresentationName():
        return "Binary labelmap"

    @staticmethod
    def GetBinaryLabelmapRepresentationName():
        return "Binary labelmap"


class _App:
    def __init__(self):
        self.testing = False
        self.fake_confirm = True
        self.fake_layers = None
        self.cursor_depth = 0

    def testingEnabled(self):
        return self.testing

    def setOverrideCursor(self, cursor):
        self.cursor_depth += 1

    def restoreOverrideCursor(self):
        self.cursor_depth -= 1

    def processEvents(self):
        from PyQt5 import QtWidgets

        QtWidgets.QApplication.processEvents()


class _MarkupsLogic:
    def __init__(self):
        self.jumps = []

    def JumpSlicesToLocation(self, x, y, z, centered, viewGroup=-1, exclude=None):
        self.jumps.append((x, y, z))


class _Module:
    def __init__(self, logic):
        self._logic = logic

    def logic(self):
        return self._logic


class _Modules:
    def __init__(self):
        self.markups = _Module(_MarkupsLogic())


mrmlScene = vtkMRMLScene()
app = _App()
modules = _Modules()
dicomDatabase = None
selfTests = {}


def reset():
    """A fresh scene and application state (test helper)."""
    global mrmlScene, app, modules, dicomDatabase
    mrmlScene = vtkMRMLScene()
    app = _App()
    modules = _Modules()
    dicomDatabase = None
    from . import util

    util.COSTS.update({k: 0 for k in util.COSTS})
    util.MESSAGES.clear()


def __getattr__(name):
    if name == "qMRMLSegmentEditorWidget":
        from .widgets import qMRMLSegmentEditorWidget

        return qMRMLSegmentEditorWidget
    raise AttributeError(f"module 'slicer' (fake) has no attribute {name!r}")


from . import util  # noqa: E402,F401
from .util import VTKObservationMixin  # noqa: E402,F401
