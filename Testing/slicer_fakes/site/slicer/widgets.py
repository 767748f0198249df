"""Fake MRML/CTK widgets as real PyQt5 widgets (what the RadGPT .ui and panel use).

* ``qMRMLWidget``: ``setMRMLScene`` emits ``mrmlSceneChanged(vtkMRMLScene*)``; the
  .ui connects it to the node selectors, as Slicer's designer files do.
* ``qMRMLNodeComboBox``: lists the scene's nodes of ``nodeTypes``, follows node
  additions and removals (a removed current node is deselected, emitting
  ``currentNodeChanged``), ``currentNode``/``setCurrentNode``.
* ``ctkCollapsibleButton``: a titled container (``setText``, ``setCollapsed``).
* ``qMRMLSegmentEditorWidget`` (Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h):
  the setters and slots the module calls; ``fake_stroke`` does what a Paint or
  Erase stroke does through vtkSlicerSegmentEditorLogic with the editor node's
  overwrite mode.
"""

from __future__ import annotations

from PyQt5 import QtCore, QtWidgets

import vtk


class _IndexableSignal:
    """``signal['vtkMRMLScene*']`` as PyQt5's .ui loader indexes it; returns the plain signal."""

    def __init__(self, bound):
        self._bound = bound

    def __getitem__(self, _signature):
        return self._bound

    def connect(self, slot):
        self._bound.connect(slot)

    def disconnect(self, slot=None):
        self._bound.disconnect(slot) if slot is not None else self._bound.disconnect()

    def emit(self, *args):
        self._bound.emit(*args)


class qMRMLWidget(QtWidgets.QWidget):
    _mrmlSceneChanged = QtCore.pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    @property
    def mrmlSceneChanged(self):
        return _IndexableSignal(self._mrmlSceneChanged)

    def setMRMLScene(self, scene):
        self._scene = scene
        self._mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    currentNodeChanged = QtCore.pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self._types = []
        self._none = False
        self._tags = []
        self._nodes = []
        self.currentIndexChanged.connect(self._index_changed)

    # designer properties
    def setNodeTypes(self, types):
        self._types = list(types)

    def setShowChildNodeTypes(self, value):
        self._show_children = bool(value)

    def setAddEnabled(self, value):
        pass

    def setRemoveEnabled(self, value):
        pass

    def setNoneEnabled(self, value):
        self._none = bool(value)

    def setMRMLScene(self, scene):
        if self._scene is not None:
            for tag in self._tags:
                self._scene.RemoveObserver(tag)
        self._scene, self._tags = scene, []
        if scene is not None:
            self._tags = [scene.AddObserver(scene.NodeAddedEvent, self._scene_changed),
                          scene.AddObserver(scene.NodeRemovedEvent, self._scene_changed)]
        self._rebuild(None)

    def currentNode(self):
        index = self.currentIndex()
        return self._nodes[index] if 0 <= index < len(self._nodes) else None

    def currentNodeID(self):
        node = self.currentNode()
        return node.GetID() if node is not None else ""

    def setCurrentNode(self, node):
        index = next((n for n, x in enumerate(self._nodes) if x is node), 0 if self._none else -1)
        if node is None and self._none:
            index = 0
        if index != self.currentIndex():
            self.setCurrentIndex(index)

    # internals
    def _matching(self):
        if self._scene is None:
            return []
        return [n for n in self._scene.fake_nodes() if any(
            t == type(n).__name__ or t in [c.__name__ for c in type(n).__mro__[1:]
                                             if getattr(self, "_show_children", True)] for t in self._types)]

    def _scene_changed(self, *args):
        self._rebuild(self.currentNode())

    def _rebuild(self, keep):
        self.blockSignals(True)
        self.clear()
        self._nodes = ([None] if self._none else []) + self._matching()
        for node in self._nodes:
            self.addItem("None" if node is None else node.GetName())
        index = next((n for n, x in enumerate(self._nodes) if x is keep and keep is not None), 0 if self._nodes else -1)
        self.setCurrentIndex(index)
        self.blockSignals(False)
        if self.currentNode() is not keep:
            self.currentNodeChanged.emit(self.currentNode())

    def _index_changed(self, _index):
        self.currentNodeChanged.emit(self.currentNode())


class ctkCollapsibleButton(QtWidgets.QGroupBox):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapsed = False

    def setText(self, text):
        self.setTitle(text)

    def setCollapsed(self, collapsed):
        self._collapsed = bool(collapsed)

    def collapsed(self):
        return self._collapsed


class qMRMLSegmentEditorWidget(qMRMLWidget):
    segmentationNodeChanged = QtCore.pyqtSignal(object)
    sourceVolumeNodeChanged = QtCore.pyqtSignal(object)
    currentSegmentIDChanged = QtCore.pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._editor_node = None
        self._segmentation = None
        self._source = None
        self._segment_id = ""
        self.fake_shortcuts = False
        self.fake_view_observations = False
        self.fake_active_effect = None
        self.setMinimumHeight(120)

    def setMRMLSegmentEditorNode(self, node):
        self._editor_node = node

    def mrmlSegmentEditorNode(self):
        return self._editor_node

    def setSegmentationNode(self, node):
        if node is not self._segmentation:
            self._segmentation = node
            self.segmentationNodeChanged.emit(node)

    def segmentationNode(self):
        return self._segmentation

    def segmentationNodeID(self):
        return self._segmentation.GetID() if self._segmentation is not None else ""

    def setSourceVolumeNode(self, node):
        if node is not self._source:
            self._source = node
            self.sourceVolumeNodeChanged.emit(node)

    def sourceVolumeNode(self):
        return self._source

    def sourceVolumeNodeID(self):
        return self._source.GetID() if self._source is not None else ""

    def setCurrentSegmentID(self, segment_id):
        self._segment_id = segment_id
        self.currentSegmentIDChanged.emit(segment_id)

    def currentSegmentID(self):
        return self._segment_id

    def setMaximumNumberOfUndoStates(self, n):
        pass

    def installKeyboardShortcuts(self, parent=None):
        self.fake_shortcuts = True

    def uninstallKeyboardShortcuts(self):
        self.fake_shortcuts = False

    def setupViewObservations(self):
        self.fake_view_observations = True

    def removeViewObservations(self):
        self.fake_view_observations = False

    def setActiveEffect(self, effect):
        self.fake_active_effect = effect

    def setActiveEffectByName(self, name):
        self.fake_active_effect = name

    def updateWidgetFromMRML(self):
        pass

    def setSegmentationNodeSelectorVisible(self, visible):
        pass

    def setSourceVolumeNodeSelectorVisible(self, visible):
        pass

    # fake: one Paint (or Erase) stroke of the current segment
    def fake_stroke(self, modifier_kji, erase=False):
        node = self._segmentation
        display = node.GetDisplayNode()
        visible = None
        if display is not None:
            seg = node.GetSegmentation()
            visible = [seg.GetNthSegmentID(n) for n in range(seg.GetNumberOfSegments())
                       if display.GetSegmentVisibility(seg.GetNthSegmentID(n))]
        mode = self._editor_node.GetOverwriteMode() if self._editor_node is not None else 0
        node.GetSegmentation().fake_edit(self._segment_id, modifier_kji, erase=erase, overwrite_mode=mode,
                                         visible=visible)


__all__ = ["qMRMLWidget", "qMRMLNodeComboBox", "ctkCollapsibleButton", "qMRMLSegmentEditorWidget", "vtk"]
