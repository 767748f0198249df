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
        self._array = np.array(full_kji, copy=True, order="C")
        self._extent = (0, full_kji.shape[2] - 1, 0, full_kji.shape[1] - 1, 0, full_kji.shape[0] - 1)
        if not full_kji.size:
            self._extent = (0, -1, 0, -1, 0, -1)
        self._shrink()
        self.Modified()

    # Region access: what vtkOrientedImageDataResample::MergeImage / CopyImage do over the
    # modifier's extent only (Slicer never touches the whole grid for one brush stroke).
    def fake_region(self, origin_kji, shape_kji) -> np.ndarray:
        """A copy of this layer's values over the box ``origin_kji`` + ``shape_kji`` (0 outside the extent)."""
        out = np.zeros(shape_kji, self._array.dtype)
        src, dst = self._overlap(origin_kji, shape_kji)
        if src is not None:
            out[dst] = self._array[src]
        return out

    def fake_write_region(self, origin_kji, values: np.ndarray) -> None:
        """Write ``values`` over the box at ``origin_kji``: the extent grows to hold it, then shrinks to the
        nonzero voxels (vtkSegmentationModifier::ShrinkSegmentToEffectiveExtent)."""
        values = np.asarray(values)
        if values.any():
            self._grow(origin_kji, values.shape, values.dtype)
        src, dst = self._overlap(origin_kji, values.shape)
        if src is not None:
            self._array[src] = values[dst]
            self._shrink()
        self.Modified()

    def _box(self):
        """(origin_kji, shape_kji) of the extent."""
        i0, i1, j0, j1, k0, k1 = self._extent
        return (k0, j0, i0), (max(k1 - k0 + 1, 0), max(j1 - j0 + 1, 0), max(i1 - i0 + 1, 0))

    def _overlap(self, origin_kji, shape_kji):
        """(slices into the layer array, slices into the box) of their intersection, or (None, None)."""
        lo_l, sh_l = self._box()
        src, dst = [], []
        for a in range(3):
            lo = max(lo_l[a], origin_kji[a])
            hi = min(lo_l[a] + sh_l[a], origin_kji[a] + shape_kji[a])
            if hi <= lo:
                return None, None
            src.append(slice(lo - lo_l[a], hi - lo_l[a]))
            dst.append(slice(lo - origin_kji[a], hi - origin_kji[a]))
        return tuple(src), tuple(dst)

    def _grow(self, origin_kji, shape_kji, dtype) -> None:
        lo_l, sh_l = self._box()
        if all(sh_l):
            lo = [min(lo_l[a], origin_kji[a]) for a in range(3)]
            hi = [max(lo_l[a] + sh_l[a], origin_kji[a] + shape_kji[a]) for a in range(3)]
        else:
            lo, hi = list(origin_kji), [origin_kji[a] + shape_kji[a] for a in range(3)]
        if lo == list(lo_l) and [h - l for h, l in zip(hi, lo)] == list(sh_l):
            return
        grown = np.zeros([h - l for h, l in zip(hi, lo)], np.promote_types(self._array.dtype, dtype))
        if all(sh_l):
            grown[tuple(slice(lo_l[a] - lo[a], lo_l[a] - lo[a] + sh_l[a]) for a in range(3))] = self._array
        self._array = grown
        self._extent = (lo[2], hi[2] - 1, lo[1], hi[1] - 1, lo[0], hi[0] - 1)

    def _shrink(self) -> None:
        """Drop empty boundary planes (the effective extent), without scanning the interior twice."""
        a = self._array
        if a.size == 0 or not a.any():
            self._array, self._extent = np.zeros((0, 0, 0), a.dtype), (0, -1, 0, -1, 0, -1)
            return
        lo, hi = [0, 0, 0], list(a.shape)
        for axis in range(3):
            while not np.take(a, lo[axis], axis=axis)[tuple(slice(lo[b], hi[b]) for b in range(3) if b != axis)].any():
                lo[axis] += 1
            while not np.take(a, hi[axis] - 1, axis=axis)[tuple(slice(lo[b], hi[b]) for b in range(3) if b != axis)].any():
                hi[axis] -= 1
        if lo == [0, 0, 0] and hi == list(a.shape):
            return
        (k0, j0, i0), _ = self._box()
        self._array = np.ascontiguousarray(a[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
        self._extent = (i0 + lo[2], i0 + hi[2] - 1, j0 + lo[1], j0 + hi[1] - 1, k0 + lo[0], k0 + hi[0] - 1)


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

    def GetNthSegment(self, index):
        ids = list(self._segments)
        return self._segments[ids[index]] if 0 <= index < len(ids) else None

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

    def fake_import_labelmap(self, labels_kji, segment_ids=None, names=None):
        """vtkSlicerSegmentationsModuleLogic::ImportLabelmapToSegmentationNode on the reference grid.

        With ``segment_ids`` (the vtkStringArray overload) label value n + 1 goes to
        ``segment_ids[n]`` (created when missing, named after its ID), all on one
        shared layer over the whole labelmap extent.  Without, one new segment per
        label value found, named ``Label_<value>`` (or ``names[0]`` when there is a
        single label: the labelmap node's name), on one layer shrunk to the
        labels' extent.
        """
        shape, i2w = self.fake_grid
        labels_kji = np.asarray(labels_kji)
        if labels_kji.shape != tuple(shape):
            raise NotImplementedError("fake import: the labelmap must be on the segmentation's reference grid")
        layer = vtkOrientedImageData(image_to_world=i2w)
        layer._array = np.array(labels_kji, copy=True, order="C")
        layer._extent = (0, shape[2] - 1, 0, shape[1] - 1, 0, shape[0] - 1)
        if segment_ids is None:
            layer._shrink()
            values = [int(v) for v in np.unique(layer._array) if v != 0]
            for value in values:
                segment = vtkSegment()
                segment._name = names[0] if (names and len(values) == 1) else f"Label_{value}"
                segment._label = value
                segment._representations[BINARY_LABELMAP] = layer
                self._add(self._generate_id(), segment)
            return True
        for n, segment_id in enumerate(segment_ids):
            if not segment_id:
                continue
            segment = self._segments.get(segment_id)
            if segment is None:
                segment = vtkSegment()
                segment._name = segment_id
                self._add(segment_id, segment)
            segment._label = n + 1
            segment._representations[BINARY_LABELMAP] = layer
        self._content_event(segment_ids[0] if segment_ids else "")
        return True

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

    def fake_edit(self, segment_id, modifier_kji, *, origin_kji=(0, 0, 0), erase=False, overwrite_mode=0,
                  visible=None):
        """What one Segment Editor stroke (Paint / Erase effect) does to the segmentation.

        ``modifier_kji``: bool brush footprint, a box placed at ``origin_kji`` on the
        reference grid (the whole grid when ``origin_kji`` is zero and the shapes match).
        Mirrors vtkSlicerSegmentEditorLogic::ModifySegmentByLabelmap (ModificationModeAdd
        or ModificationModeRemove) and vtkSegmentationModifier::ModifyBinaryLabelmap:
        only voxels inside the modifier's extent are read and written.
        """
        modifier = np.asarray(modifier_kji, bool)
        origin = tuple(int(v) for v in origin_kji)
        nz = np.nonzero(modifier)
        if not nz[0].size:
            return
        lo = [int(n.min()) for n in nz]
        hi = [int(n.max()) + 1 for n in nz]
        modifier = modifier[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        origin = tuple(o + l for o, l in zip(origin, lo))
        others = [s for s in self._segments if s != segment_id]
        if overwrite_mode == 0:
            to_overwrite = others
        elif overwrite_mode == 1:
            to_overwrite = [s for s in others if visible is None or s in visible]
        else:
            to_overwrite = []
        segment = self._segments[segment_id]
        label = segment.GetLabelValue()
        layer = segment.GetRepresentation(BINARY_LABELMAP)
        if erase:
            region = layer.fake_region(origin, modifier.shape)
            region[modifier & (region == label)] = 0
            layer.fake_write_region(origin, region)
            self._content_event(segment_id)
            return
        shared = [s for s in self._sharing(layer) if s != segment_id]
        region = layer.fake_region(origin, modifier.shape)
        protected = [s for s in shared if s not in to_overwrite]
        if any((modifier & (region == self._segments[s].GetLabelValue())).any() for s in protected):
            # SeparateModifiedSegmentFromSharedLabelmap: the painted segment gets a layer of its own
            self.SeparateSegmentLabelmap(segment_id)
            layer = segment.GetRepresentation(BINARY_LABELMAP)
            label = segment.GetLabelValue()
            region = layer.fake_region(origin, modifier.shape)
        region[modifier] = label  # MODE_MERGE_MASK: shared labels under the brush are replaced
        layer.fake_write_region(origin, region)
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
            oregion = other_layer.fake_region(origin, modifier.shape)
            before = oregion.copy()
            for sid in self._sharing(other_layer):
                if sid in to_overwrite:
                    oregion[modifier & (oregion == self._segments[sid].GetLabelValue())] = 0
            if not np.array_equal(oregion, before):
                other_layer.fake_write_region(origin, oregion)
                self._content_event(other)

    def _content_event(self, segment_id):
        self.InvokeEvent(self.SourceRepresentationModified, segment_id)
        self.InvokeEvent(self.RepresentationModified, segment_id)
