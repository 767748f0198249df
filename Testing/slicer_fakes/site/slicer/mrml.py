"""Fake MRML scene and nodes (Slicer/Slicer Libs/MRML/Core, Modules/Loadable/Segmentations/MRML).

Reproduced behaviour:

* Scene events (``vtkMRMLScene.h``): ``NodeAddedEvent`` = 0x2001,
  ``NodeAboutToBeRemovedEvent`` = 0x2002, ``NodeRemovedEvent`` = 0x2003, with the
  node as call data; ``Clear(0)`` is ``StartCloseEvent``, removal of every node
  without a singleton tag (each with its removal events), ``EndCloseEvent``.
* Removing a node removes the references other nodes hold to it (``RemoveNode``
  -> ``RemoveReferencesToNode``), which modifies the referring nodes.
* ``vtkMRMLSegmentationNode.SegmentationChangedEvent`` = 23001 when another
  vtkSegmentation object is set.
"""

from __future__ import annotations

import itertools

import numpy as np
import vtk

from .segmentation import vtkSegmentation


class vtkMRMLNode(vtk.vtkObject):
    def __init__(self):
        super().__init__()
        self._id = None
        self._name = ""
        self._attributes = {}
        self._references = {}  # role -> node ID
        self._singleton = None
        self._scene = None

    def GetID(self):
        return self._id

    def GetName(self):
        return self._name

    def SetName(self, name):
        self._name = str(name)
        self.Modified()

    def GetScene(self):
        return self._scene

    def SetAttribute(self, key, value):
        self._attributes[str(key)] = None if value is None else str(value)

    def GetAttribute(self, key):
        return self._attributes.get(key)

    def GetSingletonTag(self):
        return self._singleton

    def SetSingletonTag(self, tag):
        self._singleton = tag

    def UnRegister(self, _other):
        pass

    def SetNodeReferenceID(self, role, node_id):
        if self._references.get(role) != node_id:
            if node_id is None:
                self._references.pop(role, None)
            else:
                self._references[role] = node_id
            self.Modified()

    def GetNodeReferenceID(self, role):
        return self._references.get(role)

    def GetNodeReference(self, role):
        node_id = self._references.get(role)
        return self._scene.GetNodeByID(node_id) if (node_id and self._scene) else None

    def GetDisplayNode(self):
        return self.GetNodeReference("display")

    def CreateDefaultDisplayNodes(self):
        if self.GetDisplayNode() is None and self._scene is not None:
            display = self._scene.AddNewNodeByClass(self.DISPLAY_CLASS)
            self.SetNodeReferenceID("display", display.GetID())

    DISPLAY_CLASS = "vtkMRMLDisplayNode"


class vtkMRMLDisplayNode(vtkMRMLNode):
    def __init__(self):
        super().__init__()
        self._visible = {}

    def GetColorNode(self):
        return None

    def GetSegmentVisibility(self, segment_id):
        return self._visible.get(segment_id, True)

    def SetSegmentVisibility(self, segment_id, visible):
        self._visible[segment_id] = bool(visible)
        self.Modified()


class vtkMRMLSegmentationDisplayNode(vtkMRMLDisplayNode):
    pass


class vtkMRMLTransformableNode(vtkMRMLNode):
    def GetParentTransformNode(self):
        return self.GetNodeReference("transform")

    def GetTransformNodeID(self):
        return self.GetNodeReferenceID("transform")

    def SetAndObserveTransformNodeID(self, node_id):
        self.SetNodeReferenceID("transform", node_id)


class _ImageData:
    def __init__(self, node):
        self._node = node

    def GetDimensions(self):
        return tuple(reversed(self._node.fake_array.shape))

    def GetPointData(self):
        node = self._node

        class _PD:
            def GetScalars(self_inner):
                class _S:
                    def numpy_view(self2):
                        return node.fake_array.reshape(-1)

                return _S()

        return _PD()


class vtkMRMLVolumeNode(vtkMRMLTransformableNode):
    DISPLAY_CLASS = "vtkMRMLScalarVolumeDisplayNode"

    def __init__(self):
        super().__init__()
        self.fake_array = np.zeros((1, 1, 1), np.int16)  # [k, j, i], VTK-owned memory in Slicer
        self.fake_ijk_to_ras = np.eye(4)

    def GetImageData(self):
        return _ImageData(self)

    def GetIJKToRASMatrix(self, matrix):
        for r in range(4):
            for c in range(4):
                matrix.SetElement(r, c, self.fake_ijk_to_ras[r, c])

    def GetStorageNode(self):
        return self.GetNodeReference("storage")


class vtkMRMLScalarVolumeNode(vtkMRMLVolumeNode):
    pass


class vtkMRMLLabelMapVolumeNode(vtkMRMLScalarVolumeNode):
    pass


class vtkMRMLScalarVolumeDisplayNode(vtkMRMLDisplayNode):
    pass


class vtkMRMLSegmentationNode(vtkMRMLTransformableNode):
    ReferenceImageGeometryChangedEvent = 23000
    SegmentationChangedEvent = 23001
    DISPLAY_CLASS = "vtkMRMLSegmentationDisplayNode"

    def __init__(self):
        super().__init__()
        self._segmentation = vtkSegmentation()

    @staticmethod
    def GetReferenceImageGeometryReferenceRole():
        return "referenceImageGeometryRef"

    def GetSegmentation(self):
        return self._segmentation

    def SetAndObserveSegmentation(self, segmentation):
        segmentation.fake_grid = self._segmentation.fake_grid
        self._segmentation = segmentation
        self.InvokeEvent(self.SegmentationChangedEvent)

    def SetReferenceImageGeometryParameterFromVolumeNode(self, volume_node):
        self._segmentation.fake_grid = (volume_node.fake_array.shape, np.array(volume_node.fake_ijk_to_ras))
        self.SetNodeReferenceID(self.GetReferenceImageGeometryReferenceRole(), volume_node.GetID())

    def CreateBinaryLabelmapRepresentation(self):
        return True

    def GetBinaryLabelmapInternalRepresentation(self, segment_id):
        segment = self._segmentation.GetSegment(segment_id)
        return segment.GetRepresentation("Binary labelmap") if segment is not None else None


class vtkMRMLSegmentEditorNode(vtkMRMLNode):
    OverwriteAllSegments = 0
    OverwriteVisibleSegments = 1
    OverwriteNone = 2

    def __init__(self):
        super().__init__()
        self._overwrite = 0
        self._selected = None

    def GetOverwriteMode(self):
        return self._overwrite

    def SetOverwriteMode(self, mode):
        if mode != self._overwrite:
            self._overwrite = int(mode)
            self.Modified()

    @staticmethod
    def ConvertOverwriteModeToString(mode):
        return {0: "OverwriteAllSegments", 1: "OverwriteVisibleSegments", 2: "OverwriteNone"}.get(mode, "")

    def GetSelectedSegmentID(self):
        return self._selected

    def SetSelectedSegmentID(self, segment_id):
        self._selected = segment_id
        self.Modified()


class vtkMRMLScriptedModuleNode(vtkMRMLNode):
    def __init__(self):
        super().__init__()
        self._parameters = {}

    def SetParameter(self, name, value):
        if self._parameters.get(name) != value:
            self._parameters[name] = value
            self.Modified()

    def GetParameter(self, name):
        return self._parameters.get(name, "")

    def UnsetParameter(self, name):
        self._parameters.pop(name, None)


class vtkMRMLMarkupsLineNode(vtkMRMLTransformableNode):
    DISPLAY_CLASS = "vtkMRMLMarkupsDisplayNode"

    def __init__(self):
        super().__init__()
        self.fake_points = np.zeros((0, 3))
        self._locked = False

    def RemoveAllControlPoints(self):
        self.fake_points = np.zeros((0, 3))

    def SetLocked(self, locked):
        self._locked = bool(locked)

    def GetNthControlPointPositionWorld(self, n, out):
        out[:] = [float(v) for v in self.fake_points[n]]


class vtkMRMLMarkupsDisplayNode(vtkMRMLDisplayNode):
    pass


NODE_CLASSES = {cls.__name__: cls for cls in (
    vtkMRMLScalarVolumeNode, vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode, vtkMRMLSegmentEditorNode,
    vtkMRMLScriptedModuleNode, vtkMRMLMarkupsLineNode, vtkMRMLScalarVolumeDisplayNode,
    vtkMRMLSegmentationDisplayNode, vtkMRMLMarkupsDisplayNode, vtkMRMLDisplayNode,
)}


class vtkMRMLScene(vtk.vtkObject):
    NodeAboutToBeAddedEvent = 0x2000
    NodeAddedEvent = 0x2001
    NodeAboutToBeRemovedEvent = 0x2002
    NodeRemovedEvent = 0x2003
    StartCloseEvent = 0x2000 | 0x0100 | 0x0003
    EndCloseEvent = 0x2000 | 0x0200 | 0x0003

    def __init__(self):
        super().__init__()
        self._nodes = []
        self._counter = itertools.count(1)
        self._closing = False

    def CreateNodeByClass(self, class_name):
        return NODE_CLASSES[class_name]()

    def AddNode(self, node):
        if node.GetSingletonTag():
            existing = self.GetSingletonNode(node.GetSingletonTag(), type(node).__name__)
            if existing is not None:
                return existing
        node._id = f"{type(node).__name__}{next(self._counter)}"
        node._scene = self
        self._nodes.append(node)
        self.InvokeEvent(self.NodeAddedEvent, node)
        return node

    def AddNewNodeByClass(self, class_name, name=""):
        node = self.CreateNodeByClass(class_name)
        node._name = name or class_name.replace("vtkMRML", "").replace("Node", "")
        return self.AddNode(node)

    def RemoveNode(self, node):
        if node is None or node not in self._nodes:
            return
        self.InvokeEvent(self.NodeAboutToBeRemovedEvent, node)
        self._nodes.remove(node)
        node._scene = None
        self.InvokeEvent(self.NodeRemovedEvent, node)
        for other in list(self._nodes):  # RemoveReferencesToNode
            for role, node_id in list(other._references.items()):
                if node_id == node.GetID():
                    other.SetNodeReferenceID(role, None)

    def Clear(self, remove_singletons=0):
        self._closing = True
        self.InvokeEvent(self.StartCloseEvent)
        for node in list(reversed(self._nodes)):
            if remove_singletons or node.GetSingletonTag() is None:
                self.RemoveNode(node)
        self._closing = False
        self.InvokeEvent(self.EndCloseEvent)

    def IsClosing(self):
        return self._closing

    def GetNodeByID(self, node_id):
        return next((n for n in self._nodes if n.GetID() == node_id), None)

    def GetFirstNodeByClass(self, class_name):
        return next((n for n in self._nodes if _isa(n, class_name)), None)

    def GetSingletonNode(self, tag, class_name):
        return next((n for n in self._nodes if n.GetSingletonTag() == tag and _isa(n, class_name)), None)

    def GetNumberOfNodes(self):
        return len(self._nodes)

    # fake helpers
    def fake_nodes(self, class_name=None):
        return [n for n in self._nodes if class_name is None or _isa(n, class_name)]


def _isa(node, class_name) -> bool:
    return any(c.__name__ == class_name for c in type(node).__mro__)
