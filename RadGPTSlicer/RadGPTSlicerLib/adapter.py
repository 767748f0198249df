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

Segments are normally read from their own labelmap layers
(:mod:`RadGPTSlicerLib.layers`); :func:`read_segment_ijk` is the slow fallback for a
segmentation whose grid is not the CT's (Slicer resamples it onto the CT grid).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


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


def read_segment_ijk(segmentation_node, segment_id: str, reference_volume_node, slicer_util) -> np.ndarray:
    """One segment as a bool ``[i, j, k]`` array on the reference volume's grid.

    ``arrayFromSegmentBinaryLabelmap`` returns a copy (``[k, j, i]``, the label
    value of the exported segment inside), so the result owns its memory.
    """
    kji = slicer_util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, reference_volume_node)
    return kji_to_ijk(np.asarray(kji) != 0)


def _name(node) -> str:
    getter = getattr(node, "GetName", None)
    return (getter() if getter else "") or ""
