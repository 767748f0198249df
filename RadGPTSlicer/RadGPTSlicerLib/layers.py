"""Segments read from their own binary labelmap layers, and per-segment change detection.

Slicer stores each segment's binary labelmap in a *layer* (``vtkOrientedImageData``)
that several segments may share; a segment owns the voxels of its layer equal to
its label value (``vtkSegment::GetLabelValue``).  A layer covers only its own
extent of the segmentation's grid, shrunk to its nonzero voxels after each edit.

Two halves, split by thread:

* :func:`snapshot_layers` runs on the GUI thread: it copies the voxels of the
  layers holding the given segments straight from Slicer's memory
  (``slicer.util.arrayFromSegmentInternalBinaryLabelmap``, a view), one copy per
  layer, with its extent and label values.  No scene node is created and nothing
  is exported to the CT's extent.  The copy is needed because Slicer may change or
  reallocate that memory at any time (Segment Editor runs on the GUI thread).
* :class:`SegmentTracker` runs on the worker thread: it compares each new layer
  copy with the previous copy of the same layer, takes the label values found in
  the changed voxels as the changed segments (the segment's own voxels decide,
  never a modification time, which a shared layer gives all its segments alike),
  and re-crops only those, inside the union of their old box and the changed box.

Frames: layer arrays are ``[k, j, i]`` (VTK order reversed); extents and offsets
are IJK voxel indices of the segmentation grid, which :func:`grid_offset` checks
against the CT's grid (same spacing and axes, integer shift).  Crops handed to the
engine are in the case's canonical RAS frame (:func:`ijk_crop_to_canonical`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from RadGPTLogic.case import Crop
from RadGPTLogic.geometry import to_canonical

#: Largest deviation (mm) of a voxel corner for two grids to count as the same lattice.
GRID_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class LayerSnapshot:
    """A copy of one labelmap layer, taken on the GUI thread.

    Attributes
    ----------
    key : tuple
        Sorted IDs of the segments on the layer: the layer's identity for diffing.
    voxels : ndarray
        ``[k, j, i]`` copy of the layer over ``extent`` (label values; 0 = empty).
    extent : tuple
        ``(i0, i1, j0, j1, k0, k1)``, inclusive, in the CT's IJK (already shifted by
        :func:`grid_offset`); empty when ``i1 < i0``.
    labels : dict
        Segment ID -> label value on this layer.
    """

    key: tuple
    voxels: np.ndarray
    extent: tuple
    labels: dict


@dataclass(frozen=True)
class LayerPatch:
    """The voxels of a layer that changed since it was last sent: ``voxels`` over ``lo``..``hi``
    (``[k, j, i]`` indices into the layer's array, hi exclusive; an empty box = no change)."""

    key: tuple
    extent: tuple
    labels: dict
    lo: tuple
    hi: tuple
    voxels: np.ndarray


@dataclass
class _LayerState:
    voxels: np.ndarray
    extent: tuple
    boxes: dict = field(default_factory=dict)  # segment ID -> (lo_ijk, hi_ijk) exclusive, or None


# ------------------------------------------------------------------ geometry
def grid_offset(image_to_world: np.ndarray, ijk_to_ras: np.ndarray):
    """Integer IJK shift from a layer's grid to the CT's, or None when the lattices differ.

    Slicer layers normally use the CT's geometry (the segmentation's reference
    geometry is set from the CT), possibly with another origin on the same lattice.
    """
    a = np.asarray(image_to_world, float)
    b = np.asarray(ijk_to_ras, float)
    if not np.allclose(a[:3, :3], b[:3, :3], atol=1e-6, rtol=1e-6):
        return None
    shift = np.linalg.solve(b[:3, :3], a[:3, 3] - b[:3, 3])  # CT IJK of the layer's IJK origin
    rounded = np.round(shift)
    if np.any(np.abs(b[:3, :3] @ (shift - rounded)) > GRID_TOLERANCE_MM):
        return None
    return tuple(int(v) for v in rounded)


def ijk_crop_to_canonical(mask_ijk: np.ndarray, offset_ijk, source_shape, ornt) -> Crop:
    """A crop given in source IJK (bool ``[i, j, k]`` box at ``offset_ijk``) in the canonical frame.

    ``ornt`` is the case's orientation (source axis -> canonical axis and flip), as
    used by :func:`RadGPTLogic.io.nifti.to_canonical`.
    """
    if mask_ijk.size == 0 or not mask_ijk.any():
        return Crop.empty()
    box, canonical_offset = ijk_box_to_canonical(mask_ijk, offset_ijk, source_shape, ornt)
    return Crop(box, canonical_offset)


def ijk_box_to_canonical(box_ijk: np.ndarray, offset_ijk, source_shape, ornt) -> tuple:
    """``(box, offset)``: a box of voxels given in source IJK at ``offset_ijk``, in the canonical frame.

    Unlike :func:`ijk_crop_to_canonical` the box is kept as it is (empty or not,
    not shrunk): it is the piece of a crop that an edit replaced.
    """
    canonical_offset = [0, 0, 0]
    for axis in range(3):
        target, flip = int(ornt[axis][0]), float(ornt[axis][1])
        start, size = int(offset_ijk[axis]), int(box_ijk.shape[axis])
        canonical_offset[target] = (int(source_shape[axis]) - start - size) if flip < 0 else start
    box = np.ascontiguousarray(to_canonical(box_ijk, ornt)).astype(bool, copy=False)
    return box, tuple(canonical_offset)


# ------------------------------------------------------------------ GUI thread
class ArrayPool:
    """Arrays of layer copies that are free again, reused for the next copy of the same shape.

    A copy of a large shared layer into fresh memory pays for its page faults on the
    GUI thread at every stroke; into a reused array it is a plain memory copy.  The
    owner of a copy releases it once nothing reads it any more (the measurement
    process's client, after the next copy of that layer was sent).  Thread-safe.
    """

    def __init__(self, keep: int = 2):
        import threading

        self._free: dict = {}
        self._keep = keep
        self._lock = threading.Lock()

    def copy_of(self, array: np.ndarray) -> np.ndarray:
        key = (tuple(array.shape), np.dtype(array.dtype).str)
        with self._lock:
            free = self._free.get(key)
            out = free.pop() if free else None
        if out is None:
            return np.array(array, copy=True, order="C")
        np.copyto(out, array)
        return out

    def release(self, array: np.ndarray) -> None:
        key = (tuple(array.shape), np.dtype(array.dtype).str)
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < self._keep and not any(a is array for a in free):
                free.append(array)


def snapshot_layers(segmentation_node, segment_ids, slicer_util, ct_ijk_to_ras, matrix_factory,
                    buffers: ArrayPool = None) -> tuple:
    """Copy the layers holding ``segment_ids`` (GUI thread).  Returns ``(snapshots, unreadable)``.

    ``unreadable`` lists segments whose layer is not on the CT's lattice (another
    spacing or orientation); the caller reads those through the slow full-extent
    export.  A segment that no longer exists is left out of both.
    """
    segmentation = segmentation_node.GetSegmentation()
    layers = {}
    unreadable = []
    for segment_id in segment_ids:
        if segmentation.GetSegment(segment_id) is None:
            continue
        layer_index = segmentation.GetLayerIndex(segment_id)
        if layer_index in layers:
            continue
        layers[layer_index] = segmentation.GetSegmentIDsForLayer(layer_index)
    snapshots = []
    for layer_members in layers.values():
        members = tuple(layer_members)
        image = segmentation_node.GetBinaryLabelmapInternalRepresentation(members[0])
        matrix = matrix_factory()
        image.GetImageToWorldMatrix(matrix)
        image_to_world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        shift = grid_offset(image_to_world, ct_ijk_to_ras)
        if shift is None:
            unreadable.extend(members)
            continue
        extent = tuple(image.GetExtent())
        if extent[1] >= extent[0] and extent[3] >= extent[2] and extent[5] >= extent[4]:
            view = slicer_util.arrayFromSegmentInternalBinaryLabelmap(segmentation_node, members[0])
            voxels = buffers.copy_of(view) if buffers is not None else np.array(view, copy=True)
        else:
            voxels = np.zeros((0, 0, 0), np.uint8)
        extent = (extent[0] + shift[0], extent[1] + shift[0], extent[2] + shift[1], extent[3] + shift[1],
                  extent[4] + shift[2], extent[5] + shift[2])
        labels = {sid: int(segmentation.GetSegment(sid).GetLabelValue()) for sid in members}
        snapshots.append(LayerSnapshot(tuple(sorted(members)), voxels, extent, labels))
    return snapshots, unreadable


# ------------------------------------------------------------------ worker thread
def _label_box(voxels: np.ndarray, label: int, lo_kji=(0, 0, 0), hi_kji=None):
    """(mask_ijk, offset_ijk relative to the layer) of ``label`` inside a [k, j, i] box, or None."""
    if hi_kji is None:
        hi_kji = voxels.shape
    sub = voxels[lo_kji[0]:hi_kji[0], lo_kji[1]:hi_kji[1], lo_kji[2]:hi_kji[2]]
    inside = sub == label
    ks = np.flatnonzero(inside.any(axis=(1, 2)))
    if ks.size == 0:
        return None
    inside = inside[ks[0]:ks[-1] + 1]
    js = np.flatnonzero(inside.any(axis=(0, 2)))
    iz = np.flatnonzero(inside.any(axis=(0, 1)))
    box = inside[:, js[0]:js[-1] + 1, iz[0]:iz[-1] + 1]
    offset_ijk = (lo_kji[2] + int(iz[0]), lo_kji[1] + int(js[0]), lo_kji[0] + int(ks[0]))
    return np.ascontiguousarray(box.transpose(2, 1, 0)), offset_ijk


def changed_box(old: np.ndarray, new: np.ndarray):
    """``(lo_kji, hi_kji)`` (hi exclusive) of the voxels that differ between two same-shape arrays, or None.

    The slices that differ are found comparing 8 voxels at a time (uint64 views of
    each k-slice), so a stroke in a 50-million-voxel shared layer costs a few ms;
    only the changed slices are then compared voxel by voxel.
    """
    nk = old.shape[0]
    if nk == 0 or old.size == 0:
        return None
    a = np.ascontiguousarray(old).reshape(nk, -1).view(np.uint8)
    b = np.ascontiguousarray(new).reshape(nk, -1).view(np.uint8)
    n8 = a.shape[1] // 8 * 8
    differs = np.zeros(nk, bool)
    if n8:
        differs |= (a[:, :n8].view(np.uint64) != b[:, :n8].view(np.uint64)).any(axis=1)
    if n8 < a.shape[1]:
        differs |= (a[:, n8:] != b[:, n8:]).any(axis=1)
    ks = np.flatnonzero(differs)
    if ks.size == 0:
        return None
    k0, k1 = int(ks[0]), int(ks[-1]) + 1
    diff = old[k0:k1] != new[k0:k1]
    js = np.flatnonzero(diff.any(axis=(0, 2)))
    iz = np.flatnonzero(diff.any(axis=(0, 1)))
    return (k0, int(js[0]), int(iz[0])), (k1, int(js[-1]) + 1, int(iz[-1]) + 1)


def _strictly_inside(lo, hi, box) -> bool:
    """The box ``lo``..``hi`` (exclusive) lies inside ``box`` without touching its boundary planes.

    Voxels on a tight bounding box's boundary planes are then unchanged, so the
    segment's bounding box is too.
    """
    (blo, bhi) = box
    return all(b0 < a0 and a1 < b1 for a0, a1, b0, b1 in zip(lo, hi, blo, bhi))


class SegmentTracker:
    """Per-segment voxels of a segmentation, kept current from layer snapshots (worker thread).

    ``update(snapshots)`` returns the IDs of the segments whose voxels changed, and
    ``crop(segment_id)`` the segment's current crop in the case's canonical frame.
    """

    def __init__(self, source_shape, ornt):
        self.source_shape = tuple(int(s) for s in source_shape)
        self.ornt = np.asarray(ornt)
        self._layers: dict = {}   # layer key -> _LayerState
        self._crops: dict = {}    # segment ID -> Crop (canonical)
        self._digests: dict = {}  # segment ID -> digest of its own voxels
        self._layer_of: dict = {}  # segment ID -> layer key
        #: voxels compared by the last update (for the benchmark's accounting)
        self.last_compared = 0
        #: segment IDs whose voxels changed in the last update
        self.last_changed: set = set()

    def crop(self, segment_id: str) -> Crop:
        return self._crops.get(segment_id, Crop.empty())

    def layer_voxels(self, key: tuple, extent: tuple):
        """The voxels last seen of layer ``key`` when they cover ``extent``, else None (read only)."""
        state = self._layers.get(key)
        if state is None or state.extent != tuple(extent):
            return None
        return state.voxels

    def set_crop(self, segment_id: str, crop: Crop) -> bool:
        """Store a crop read another way (full-extent export); True when its voxels changed."""
        digest = crop.digest()
        changed = self._digests.get(segment_id) != digest
        self._crops[segment_id], self._digests[segment_id] = crop, digest
        self._layer_of.pop(segment_id, None)
        return changed

    def forget(self, segment_ids) -> None:
        for sid in segment_ids:
            self._crops.pop(sid, None)
            self._digests.pop(sid, None)
            self._layer_of.pop(sid, None)

    def known(self) -> set:
        return set(self._crops)

    def update(self, snapshots) -> set:
        changed = set()
        self.last_compared = 0
        for snap in snapshots:
            state = self._layers.get(snap.key)
            if state is None or snap.voxels.size == 0 or state.voxels.size == 0:
                changed |= self._update_full(snap)
            elif state.extent == snap.extent and state.voxels.shape == snap.voxels.shape:
                changed |= self._update_same_extent(snap, state)
            else:
                changed |= self._update_new_extent(snap, state)
        self.last_changed = set(changed)
        return changed

    # the layer grew or shrank (Slicer shrinks layers to their nonzero voxels after each edit)
    def _update_new_extent(self, snap: LayerSnapshot, state: _LayerState) -> set:
        lo = [min(state.extent[2 * a], snap.extent[2 * a]) for a in range(3)]      # i, j, k
        hi = [max(state.extent[2 * a + 1], snap.extent[2 * a + 1]) for a in range(3)]
        shape_kji = (hi[2] - lo[2] + 1, hi[1] - lo[1] + 1, hi[0] - lo[0] + 1)

        def embed(voxels, extent):
            out = np.zeros(shape_kji, voxels.dtype)
            k0, j0, i0 = extent[4] - lo[2], extent[2] - lo[1], extent[0] - lo[0]
            out[k0:k0 + voxels.shape[0], j0:j0 + voxels.shape[1], i0:i0 + voxels.shape[2]] = voxels
            return out

        union_extent = (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])
        old_shift = (state.extent[4] - lo[2], state.extent[2] - lo[1], state.extent[0] - lo[0])
        union_state = _LayerState(embed(state.voxels, state.extent), union_extent, {
            sid: None if b is None else (tuple(x + s for x, s in zip(b[0], old_shift)),
                                         tuple(x + s for x, s in zip(b[1], old_shift)))
            for sid, b in state.boxes.items()})
        union_snap = LayerSnapshot(snap.key, embed(snap.voxels, snap.extent), union_extent, snap.labels)
        changed = self._update_same_extent(union_snap, union_state)
        new_shift = (snap.extent[4] - lo[2], snap.extent[2] - lo[1], snap.extent[0] - lo[0])
        state.boxes = {sid: None if b is None else (tuple(x - s for x, s in zip(b[0], new_shift)),
                                                    tuple(x - s for x, s in zip(b[1], new_shift)))
                       for sid, b in union_state.boxes.items()}
        state.voxels, state.extent = snap.voxels, snap.extent
        return changed

    # every segment of the layer is cropped afresh (first sight, new members, new extent)
    def _update_full(self, snap: LayerSnapshot) -> set:
        # an old layer state holding any of these segments is now stale
        for key in [k for k in self._layers if set(k) & set(snap.key)]:
            del self._layers[key]
        state = _LayerState(snap.voxels, snap.extent)
        changed = set()
        boxes = []
        if snap.voxels.size and max(snap.labels.values(), default=0) > 0:
            from scipy import ndimage  # one pass gives the box of every label

            boxes = ndimage.find_objects(snap.voxels, max_label=max(snap.labels.values()))
        for sid, label in snap.labels.items():
            box = boxes[label - 1] if 0 < label <= len(boxes) else None
            found = None
            if box is not None:
                found = _label_box(snap.voxels, label, tuple(s.start for s in box), tuple(s.stop for s in box))
            changed |= self._store(sid, snap, state, found)
        self._layers[snap.key] = state
        self.last_compared += snap.voxels.size
        return changed

    def _update_same_extent(self, snap: LayerSnapshot, state: _LayerState) -> set:
        self.last_compared += snap.voxels.size
        box = changed_box(state.voxels, snap.voxels)
        if box is None:
            state.voxels = snap.voxels
            return set()
        dlo, dhi = box
        box_old = state.voxels[dlo[0]:dhi[0], dlo[1]:dhi[1], dlo[2]:dhi[2]]
        box_new = snap.voxels[dlo[0]:dhi[0], dlo[1]:dhi[1], dlo[2]:dhi[2]]
        box_diff = box_old != box_new
        touched = set(np.unique(box_old[box_diff]).tolist()) | set(np.unique(box_new[box_diff]).tolist())
        touched.discard(0)
        changed = set()
        for sid, label in snap.labels.items():
            if label not in touched:
                continue
            old = state.boxes.get(sid)
            if old is not None and sid in self._crops and _strictly_inside(dlo, dhi, old):
                # e.g. a lesion carved out of the organ's interior: only the changed box is read
                changed |= self._patch(sid, snap, label, dlo, dhi)
                continue
            lo, hi = dlo, dhi
            if old is not None:  # the segment now lies inside its old box plus the changed box
                lo = tuple(min(a, b) for a, b in zip(lo, old[0]))
                hi = tuple(max(a, b) for a, b in zip(hi, old[1]))
            changed |= self._store(sid, snap, state, _label_box(snap.voxels, label, lo, hi))
        state.voxels = snap.voxels
        return changed

    def _patch(self, sid, snap, label, dlo, dhi) -> set:
        """The segment's crop with the changed box replaced (its bounding box cannot have changed)."""
        i0, j0, k0 = snap.extent[0], snap.extent[2], snap.extent[4]
        region = snap.voxels[dlo[0]:dhi[0], dlo[1]:dhi[1], dlo[2]:dhi[2]] == label
        patch, offset = ijk_box_to_canonical(region.transpose(2, 1, 0), (i0 + dlo[2], j0 + dlo[1], k0 + dlo[0]),
                                             self.source_shape, self.ornt)
        old = self._crops[sid]
        mask = old.mask.copy()
        at = tuple(o - c for o, c in zip(offset, old.offset))
        mask[at[0]:at[0] + patch.shape[0], at[1]:at[1] + patch.shape[1], at[2]:at[2] + patch.shape[2]] = patch
        crop = Crop(mask, old.offset)
        self._layer_of[sid] = snap.key
        digest = crop.digest()
        if self._digests.get(sid) == digest:
            return set()
        self._crops[sid], self._digests[sid] = crop, digest
        return {sid}

    def _store(self, sid, snap, state, found) -> set:
        i0, j0, k0 = snap.extent[0], snap.extent[2], snap.extent[4]
        if found is None:
            crop = Crop.empty()
            state.boxes[sid] = None
        else:
            mask_ijk, off = found
            state.boxes[sid] = ((off[2], off[1], off[0]),
                                (off[2] + mask_ijk.shape[2], off[1] + mask_ijk.shape[1], off[0] + mask_ijk.shape[0]))
            crop = ijk_crop_to_canonical(mask_ijk, (i0 + off[0], j0 + off[1], k0 + off[2]), self.source_shape,
                                         self.ornt)
        self._layer_of[sid] = snap.key
        digest = crop.digest()
        if self._digests.get(sid) == digest and sid in self._crops:
            return set()
        self._crops[sid], self._digests[sid] = crop, digest
        return {sid}
