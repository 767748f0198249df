"""Fake vtkSegmentationCore: segments, shared binary labelmap layers, editor painting.

Reproduced from Slicer's sources (Slicer/Slicer, Libs/vtkSegmentationCore and
Modules/Loadable/Segmentations/Logic):

* A segment's binary labelmap is a ``vtkOrientedImageData`` *layer*.  Several
  segments may share one layer (how Slicer loads any multi-label file); each then
  owns the voxels equal to its ``GetLabelValue()``.  ``GetRepresentation`` returns
  the shared object itself, so segments of one layer share its ``GetMTime()``.
* Layers have their own extent (``GetExtent``, inclusive ``i0 i1 j0 j1 k0 k1``) on
  the reference grid; after each edit the layer is shrunk to the extent of its
  nonzero voxels (``vtkSegmentationModifier::ShrinkSegmentToEffectiveExtent``).
* Events (``vtkSegmentation.h``, ``vtkSegmentation.cxx``, ``vtkSegmentationModifier.cxx``):
  ``SegmentAdded``/``SegmentRemoved``/``SegmentModified`` carry the segment ID as
  ``char*`` call data; an edit through the Segment Editor invokes
  ``SourceRepresentationModified`` and ``RepresentationModified`` with the *edited*
  segment's ID only, even when, in a shared layer, the paint replaced voxels of
  another segment (overwrite-all writes the painted label over the organ's label).
  Segments on *other* layers are erased by separate calls, each invoking the events
  with that segment's ID (``vtkSlicerSegmentEditorLogic.cxx``, ``segmentsToErase``).
* Overwrite modes (``vtkMRMLSegmentEditorNode``): ``OverwriteAllSegments`` = 0,
  ``OverwriteVisibleSegments`` = 1, ``OverwriteNone`` = 2.  Painting in a shared
  layer over a segment that must not be overwritten first moves the painted
  segment to a new layer of its own
  (``vtkSegmentationModifier::SeparateModifiedSegmentFromSharedLabelmap``).

Methods named ``fake_*`` are test helpers and have no Slicer counterpart.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import vtk

BINARY_LABELMAP = "Binary labelmap"
CLOSED_SURFACE = "Closed surface"


class _Scalars:
    def __init__(self, image):
        self._image = image

    def numpy_view(self):
        return self._image._array.reshape(-1)


class _PointData:
    def __init__(self, image):
        self._image = image

    def GetScalars(self):
        return _Scalars(self._image)


class vtkOrientedImageData(vtk.vtkObject):
    """A labelmap layer: voxels ``[k, j, i]`` over ``extent`` of a grid given by ``image_to_world``."""

    def __init__(self, array_kji=None, extent=None, image_to_world=None):
        super().__init__()
        self._array = np.zeros((0, 0, 0), np.uint8) if array_kji is None else array_kji
        self._extent = tuple(extent) if extent is not None else (0, -1, 0, -1, 0, -1)
        self._image_to_world = np.eye(4) if image_to_world is None else np.asarray(image_to_world, float)

    # Slicer/VTK API
    def GetExtent(self):
        return self._extent

    def GetDimensions(self):
        e = self._extent
        return (max(e[1] - e[0] + 1, 0), max(e[3] - e[2] + 1, 0), max(e[5] - e[4] + 1, 0))

    def GetPointData(self):
        return _PointData(self)

    def GetImageToWorldMatrix(self, matrix):
        for r in range(4):
            for c in range(4):
                matrix.SetElement(r, c, self._image_to_world[r, c])

    def IsEmpty(self):
        return self._array.size == 0 or not self._array.any()

    # fake helpers -------------------------------------------------------
    def fake_full(self, grid_shape_kji) -> np.ndarray:
        """This layer's values on the whole reference grid ``[k, j, i]``."""
        out = np.zeros(grid_shape_kji, self._array.dtype)
        if self._array.size:
            i0, _, j0, _, k0, _ = self._extent
            nk, nj, ni = self._array.shape
            out[k0:k0 + nk, j0:j0 + nj, i0:i0 + ni] = self._array
        return out

    def fake_set_full(self, full_kji: np.ndarray) -> None:
        """Replace the voxels from a whole-grid array, shrunk to the nonzero extent (new buffer)."""
        nz = np.nonzero(full_kji.any(axis=(1, 2)))[0]
        if nz.size == 0:
            self._array, self._extent = np.zeros((0, 0, 0), full_kji.dtype), (0, -1, 0, -1, 0, -1)
        else:
            k0, k1 = nz[0], nz[-1]
            j = np.nonzero(full_kji.any(axis=(0, 2)))[0]
            i = np.nonzero(full_kji.any(axis=(0, 1)))[0]
            self._array = np.ascontiguousarray(full_kji[k0:k1 + 1, j[0]:j[-1] + 1, i[0]:i[-1] + 1])
            self._extent = (int(i[0]), int(i[-1]), int(j[0]), int(j[-1]), int(k0), int(k1))
        self.Modified()


class vtkSegment(vtk.vtkObject):
    def __init__(self):
        super().__init__()
        self._name = ""
        self._color = (0.5, 0.5, 0.5)
        self._label = 1
        self._tags = {}
        self._representations = {}

    def GetName(self):
        return self._name

    def SetName(self, name):
        if name != self._name:
            self._name = str(name)
            self.Modified()

    def GetColor(self):
        return self._color

    def SetColor(self, r, g=None, b=None):
        self._color = tuple(r) if g is None else (float(r), float(g), float(b))
        self.Modified()

    def GetLabelValue(self):
        return self._label

    def SetLabelValue(self, value):
        self._label = int(value)
        self.Modified()

    def SetTag(self, tag, value):
        self._tags[str(tag)] = str(value)
        self.Modified()

    def GetTag(self, tag, value):
        """``GetTag(tag, vtk.mutable(""))``: True and the value set when the tag exists."""
        if tag not in self._tags:
            return False
        value.set(self._tags[tag])
        return True

    def HasTag(self, tag):
        return tag in self._tags

    def GetRepresentation(self, name):
        return self._representations.get(name)

    def AddRepresentation(self, name, data):
        self._representations[name] = data
        self.Modified()

    @staticmethod
    def GetTerminologyEntryTagName():
        return "TerminologyEntry"


class vtkSegmentation(vtk.vtkObject):
    SourceRepresentationModified = 62100
    RepresentationModified = 62101
    SegmentAdded = 62102
    SegmentRemoved = 62103
    SegmentModified = 62104
    ContainedRepresentationNamesModified = 62105
    SegmentsOrderModified = 62106

    def __init__(self):
        super().__init__()
        self._segments = OrderedDict()
        self._segment_tags = {}
        self._next_id = 1
        #: reference grid of new layers: (shape_kji, image_to_world); set by the segmentation node
        self.fake_grid = None

    # ------------------------------------------------------------ Slicer API
    def GetSourceRepresentationName(self):
        return BINARY_LABELMAP

    def GetNumberOfSegments(self):
        return len(self._segments)

    def GetNthSegmentID(self, index):
        return list(self._segments)[index]

    def GetSegment(self, segment_id):
        return self._segments.get(segment_id)

    def GetSegmentIdBySegmentName(self, name):
        for sid, seg in self._segments.items():
            if seg.GetName().lower() == str(name).lower():
                return sid
        return ""

    def AddEmptySegment(self, segment_id="", segment_name="", color=None):
        segment_id = segment_id or self._generate_id()
        segment = vtkSegment()
        segment._name = segment_name or segment_id
        if color is not None:
            segment._color = tuple(color)
        shape, i2w = self.fake_grid
        segment._representations[BINARY_LABELMAP] = vtkOrientedImageData(image_to_world=i2w)
        self._add(segment_id, segment)
        return segment_id

    def RemoveSegment(self, segment_id):
        segment = self._segments.pop(segment_id, None)
        if segment is None:
            return
        tag = self._segment_tags.pop(segment_id)
        segment.RemoveObserver(tag)
        layer = segment.GetRepresentation(BINARY_LABELMAP)
        if layer is not None and self._shares(layer):
            layer.fake_set_full(np.where(layer.fake_full(self.fake_grid[0]) == segment.GetLabelValue(), 0,
                                         layer.fake_full(self.fake_grid[0])).astype(layer._array.dtype))
        self.Modified()
        self.InvokeEvent(self.SegmentRemoved, segment_id)

    def GetNumberOfLayers(self, representation_name=""):
        return len(self._layers())

    def GetLayerIndex(self, segment_id, representation_name=""):
        segment = self._segments.get(segment_id)
        if segment is None:
            return -1
        layer = segment.GetRepresentation(BINARY_LABELMAP)
        return next(n for n, l in enumerate(self._layers()) if l is layer)

    def GetLayerDataObject(self, layer, representation_name=""):
        return self._layers()[layer]

    def GetSegmentIDsForLayer(self, layer, representation_name=""):
        data = self._layers()[layer]
        return tuple(sid for sid, s in self._segments.items() if s.GetRepresentation(BINARY_LABELMAP) is data)

    def SeparateSegmentLabelmap(self, segment_id):
        """Move a segment out of its shared layer into a new layer of its own (label 1)."""
        segment = self._segments[segment_id]
        layer = segment.GetRepresentation(BINARY_LABELMAP)
        if not self._shares(layer):
            return
        shape, i2w = self.fake_grid
        full = layer.fake_full(shape)
        own = (full == segment.GetLabelValue())
        layer.fake_set_full(np.where(own, 0, full).astype(full.dtype))
        new = vtkOrientedImageData(image_to_world=i2w)
        new.fake_set_full(own.astype(np.uint8))
        segment._representations[BINARY_LABELMAP] = new
        segment._label = 1
        self.InvokeEvent(self.SourceRepresentationModified, new)  # call data: the labelmap object
        self.InvokeEvent(self.RepresentationModified, segment_id)

    # --------------------------------------------------------- internals
    def _generate_id(self):
        while f"Segment_{self._next_id}" in self._segments:
            self._next_id += 1
        return f"Segment_{self._next_id}"

    def _add(self, segment_id, segment):
        self._segments[segment_id] = segment
        self._segment_tags[segment_id] = segment.AddObserver(
            vtk.vtkCommand.ModifiedEvent, lambda caller, event, sid=segment_id: self._segment_modified(sid))
        self.Modified()
        self.InvokeEvent(self.SegmentAdded, segment_id)

    def _segment_modified(self, segment_id):
        if segment_id in self._segments:
            self.InvokeEvent(self.SegmentModified, segment_id)

    def _layers(self):
        out = []
        for segment in self._segments.values():
            layer = segment.GetRepresentation(BINARY_LABELMAP)
            if layer is not None and not any(layer is l for l in out):
                out.append(layer)
        return out

    def _shares(self, layer) -> bool:
        return sum(1 for s in self._segments.values() if s.GetRepresentation(BINARY_LABELMAP) is layer) > 1

    def _sharing(self, layer):
        return [sid for sid, s in self._segments.items() if s.GetRepresentation(BINARY_LABELMAP) is layer]

    # ------------------------------------------------------ fake helpers
    def fake_add_shared_layer(self, segments, dtype=np.uint8):
        """Add segments sharing one new layer: ``segments`` is a list of (id, name, mask_kji, color).

        Label values 1, 2, ... in list order; later masks win where masks overlap
        (a multi-label file cannot hold overlaps).  Returns the layer.
        """
        shape, i2w = self.fake_grid
        full = np.zeros(shape, dtype)
        layer = vtkOrientedImageData(image_to_world=i2w)
        for label, (segment_id, name, mask_kji, color) in enumerate(segments, start=1):
            full[np.asarray(mask_kji, bool)] = label
        layer.fake_set_full(full)
        for label, (segment_id, name, mask_kji, color) in enumerate(segments, start=1):
            segment = vtkSegment()
            segment._name, segment._label = name, label
            if color is not None:
                segment._color = tuple(color)
            segment._representations[BINARY_LABELMAP] = layer
            self._add(segment_id, segment)
        return layer

    def fake_add_segment(self, segment_id, name, mask_kji, color=None):
        """Add a segment on a layer of its own (label 1)."""
        shape, i2w = self.fake_grid
        layer = vtkOrientedImageData(image_to_world=i2w)
        layer.fake_set_full(np.asarray(mask_kji, bool).astype(np.uint8))
        segment = vtkSegment()
        segment._name = name
        if color is not None:
            segment._color = tuple(color)
        segment._representations[BINARY_LABELMAP] = layer
        self._add(segment_id, segment)

    def fake_segment_mask(self, segment_id) -> np.ndarray:
        """The segment's voxels on the whole reference grid ``[k, j, i]`` (bool)."""
        segment = self._segments[segment_id]
        layer = segment.GetRepresentation(BINARY_LABELMAP)
        return layer.fake_full(self.fake_grid[0]) == segment.GetLabelValue()

    def fake_edit(self, segment_id, modifier_kji, *, erase=False, overwrite_mode=0, visible=None):
        """What one Segment Editor stroke (Paint / Erase effect) does to the segmentation.

        ``modifier_kji``: bool array on the reference grid, the brush footprint.
        Mirrors vtkSlicerSegmentEditorLogic::ModifySegmentByLabelmap (ModificationModeAdd
        or ModificationModeRemove) and vtkSegmentationModifier::ModifyBinaryLabelmap.
        """
        shape, _ = self.fake_grid
        modifier = np.asarray(modifier_kji, bool)
        others = [s for s in self._segments if s != segment_id]
        if overwrite_mode == 0:
            to_overwrite = others
        elif overwrite_mode == 1:
            to_overwrite = [s for s in others if visible is None or s in visible]
        else:
            to_overwrite = []
        segment = self._segments[segment_id]
        if erase:
            layer = segment.GetRepresentation(BINARY_LABELMAP)
            full = layer.fake_full(shape)
            full[modifier & (full == segment.GetLabelValue())] = 0
            layer.fake_set_full(full)
            self._content_event(segment_id)
            return
        layer = segment.GetRepresentation(BINARY_LABELMAP)
        shared = [s for s in self._sharing(layer) if s != segment_id]
        full = layer.fake_full(shape)
        protected = [s for s in shared if s not in to_overwrite]
        if any((modifier & (full == self._segments[s].GetLabelValue())).any() for s in protected):
            # SeparateModifiedSegmentFromSharedLabelmap: the painted segment gets a layer of its own
            self.SeparateSegmentLabelmap(segment_id)
            layer = segment.GetRepresentation(BINARY_LABELMAP)
            full = layer.fake_full(shape)
        full[modifier] = segment.GetLabelValue()  # MODE_MERGE_MASK: shared labels under the brush are replaced
        if full.dtype != np.uint8 and full.max() <= 255:
            full = full.astype(np.uint8)
        layer.fake_set_full(full)
        self._content_event(segment_id)
        # segments on other layers that may be overwritten: erased one layer at a time
        erased = []
        sharing_now = set(self._sharing(layer))
        for other in to_overwrite:
            if other in sharing_now:
                continue
            other_layer = self._segments[other].GetRepresentation(BINARY_LABELMAP)
            if any(other_layer is l for l in erased):
                continue
            erased.append(other_layer)
            ofull = other_layer.fake_full(shape)
            for sid in self._sharing(other_layer):
                if sid in to_overwrite:
                    ofull[modifier & (ofull == self._segments[sid].GetLabelValue())] = 0
            if not np.array_equal(ofull, other_layer.fake_full(shape)):
                other_layer.fake_set_full(ofull)
                self._content_event(other)

    def _content_event(self, segment_id):
        self.InvokeEvent(self.SourceRepresentationModified, segment_id)
        self.InvokeEvent(self.RepresentationModified, segment_id)
