"""Slicer nodes <-> RadGPTLogic arrays, with every Slicer call injected.

Pure functions: no ``slicer``, ``vtk`` or ``qt`` import.  The caller passes

* ``slicer_util``: an object with ``arrayFromVolume(volumeNode)`` and
  ``arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, referenceVolumeNode)``
  (``slicer.util`` inside Slicer, a fake in the tests);
* ``matrix_factory``: a callable returning an empty 4x4 matrix object with
  ``GetElement(row, col)`` (``vtk.vtkMatrix4x4`` inside Slicer).

Frames
------
``slicer.util.arrayFromVolume`` and ``arrayFromSegmentBinaryLabelmap`` return arrays
indexed ``[k, j, i]`` (VTK's memory order, reversed), while
``volumeNode.GetIJKToRASMatrix`` maps ``(i, j, k)``.  Everything handed to RadGPTLogic
is transposed to ``[i, j, k]`` first; :meth:`Case.from_arrays` then reorients
(without resampling) to its canonical RAS frame.

Segments are read one at a time (``arrayFromSegmentBinaryLabelmap`` with the CT as
reference geometry, so every array has the CT's shape), and each is cropped to its
bounding box before the next one is read: overlapping segments (a tumour inside the
pancreas, a tumour touching a vessel) are never flattened into one labelmap, and
memory stays at about one full-size mask at a time.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from RadGPTLogic import vocabulary as vocab
from RadGPTLogic.case import Case, Crop
from RadGPTLogic.geometry import to_canonical

#: Name of Slicer's binary labelmap representation
#: (``slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()``).
BINARY_LABELMAP = "Binary labelmap"


# ---------------------------------------------------------------- geometry
def ijk_to_ras(volume_node, matrix_factory=None) -> np.ndarray:
    """The volume's IJK -> RAS matrix as a (4, 4) float array.

    ``matrix_factory`` creates the matrix object that ``GetIJKToRASMatrix`` fills
    (``vtk.vtkMatrix4x4``; imported lazily when not given, i.e. inside Slicer).
    """
    if matrix_factory is None:  # pragma: no cover - only inside Slicer
        import vtk

        matrix_factory = vtk.vtkMatrix4x4
    m = matrix_factory()
    volume_node.GetIJKToRASMatrix(m)
    out = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)
    if not np.all(np.isfinite(out)) or abs(np.linalg.det(out[:3, :3])) < 1e-12:
        raise ValueError(f"volume '{_name(volume_node)}' has a degenerate IJK to RAS matrix")
    return out


def kji_to_ijk(array: np.ndarray) -> np.ndarray:
    """View of a Slicer ``[k, j, i]`` array as ``[i, j, k]`` (no copy)."""
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"expected a 3-D voxel array, got shape {array.shape}")
    return array.transpose(2, 1, 0)


# ---------------------------------------------------------------- segments
def segment_names(segmentation_node) -> "OrderedDict[str, str]":
    """Segment ID -> segment name, in the segmentation's order."""
    segmentation = segmentation_node.GetSegmentation()
    out = OrderedDict()
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        out[segment_id] = segmentation.GetSegment(segment_id).GetName()
    return out


def segment_mtime(segmentation_node, segment_id: str, representation_name: str = BINARY_LABELMAP):
    """Modification time of a segment's binary labelmap, ``None`` when the segment is gone.

    As in Slicer's auto-complete effects, the time is that of the labelmap object.
    Segments that share one labelmap layer share this time, so an edit of one of
    them flags all of them; the engine's content-hash cache then recomputes only the
    structures whose voxels really changed.  A segment without a labelmap yet
    (e.g. only a closed surface) reports 0.
    """
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        return None
    representation = segment.GetRepresentation(representation_name)
    return int(representation.GetMTime()) if representation is not None else 0


def read_segment_ijk(segmentation_node, segment_id: str, reference_volume_node, slicer_util) -> np.ndarray:
    """One segment as a bool ``[i, j, k]`` array on the reference volume's grid.

    ``arrayFromSegmentBinaryLabelmap`` returns a copy (``[k, j, i]``, the label
    value of the exported segment inside), so the result owns its memory.
    """
    kji = slicer_util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, reference_volume_node)
    return kji_to_ijk(np.asarray(kji) != 0)


def segment_crop_for_engine(segmentation_node, segment_id: str, reference_volume_node, slicer_util, case: Case) -> Crop:
    """One segment as a :class:`Crop` in ``case``'s canonical frame (what the engine stores)."""
    ijk = read_segment_ijk(segmentation_node, segment_id, reference_volume_node, slicer_util)
    if tuple(ijk.shape) != tuple(case.source_shape):
        raise ValueError(
            f"segment '{segment_id}': grid {ijk.shape} differs from the case grid {tuple(case.source_shape)} "
            "(was the reference volume changed?)"
        )
    return Crop.from_full(to_canonical(ijk, case.ornt))


def segment_array_for_engine(segmentation_node, segment_id: str, reference_volume_node, slicer_util, case: Case) -> np.ndarray:
    """One segment as a full bool array in ``case``'s canonical RAS frame.

    The form ``Engine.update_structure(name, array)`` accepts; prefer
    :func:`segment_crop_for_engine`, which hands over only the bounding box.
    """
    ijk = read_segment_ijk(segmentation_node, segment_id, reference_volume_node, slicer_util)
    if tuple(ijk.shape) != tuple(case.source_shape):
        raise ValueError(f"segment '{segment_id}': grid {ijk.shape} differs from the case grid {tuple(case.source_shape)}")
    return np.ascontiguousarray(to_canonical(ijk, case.ornt))


# --------------------------------------------------------------------- case
def case_from_nodes(
    volume_node,
    segmentation_node,
    slicer_util,
    *,
    matrix_factory=None,
    case_id: str | None = None,
    segment_ids=None,
) -> Case:
    """Build a :class:`Case` from a CT volume node and a segmentation node.

    * The CT is read with ``arrayFromVolume`` (``[k, j, i]``), copied (the array is a
      view of VTK-owned memory that Slicer may reallocate at any time) and
      transposed to ``[i, j, k]``; its geometry comes from ``GetIJKToRASMatrix``.
    * Each segment whose name RadGPT knows (see :mod:`RadGPTLogic.vocabulary`) is
      read with ``arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId,
      volumeNode)``, i.e. resampled onto the CT grid by Slicer, and stored as a crop.
      Two segments with names mapping to one structure are united.
    * Segments with other names are not read: they are listed in ``case.ignored``
      (bones, lungs ...) or ``case.warnings`` (unknown), as :meth:`Case.from_arrays`
      does for files.

    ``segment_ids`` restricts the segments read (default: all).  Coordinates are the
    volume's own RAS; a parent transform of the volume is reported as a warning.
    """
    affine = ijk_to_ras(volume_node, matrix_factory)
    ct_ijk = kji_to_ijk(np.array(slicer_util.arrayFromVolume(volume_node), copy=True))
    case = Case.from_arrays(case_id or _name(volume_node) or "slicer_case", affine, {}, ct=ct_ijk)
    case.sources["ct"] = [{"name": _name(volume_node)}]
    if _parent_transform(volume_node) is not None:
        case.warnings.append(
            f"volume '{_name(volume_node)}' is under a transform: positions are in the volume's own (untransformed) RAS"
        )
    names = segment_names(segmentation_node)
    wanted = names.keys() if segment_ids is None else [s for s in segment_ids if s in names]
    for segment_id in wanted:
        name = names[segment_id]
        canonical = vocab.canonical_name(name)
        if canonical is None:
            if vocab.is_known_unused(name):
                case.ignored.append(name)
            else:
                case.warnings.append(f"{name}: unknown structure name (ignored)")
            continue
        crop = segment_crop_for_engine(segmentation_node, segment_id, volume_node, slicer_util, case)
        case.add_crop(canonical, crop, source={"name": name, "segment_id": segment_id})
    return case


def _name(node) -> str:
    getter = getattr(node, "GetName", None)
    return (getter() if getter else "") or ""


def _parent_transform(node):
    getter = getattr(node, "GetParentTransformNode", None)
    return getter() if getter else None
