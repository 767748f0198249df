"""Case: one CT (optional) and its structure masks on one grid, the engine's input.

A pure data model: files are read and written by :mod:`RadGPTLogic.io`
(:mod:`RadGPTLogic.io.casefolder` for case folders); this module imports nothing
from there.  Everything is held in the canonical RAS frame (see
:mod:`RadGPTLogic.geometry`):
array axis 0 -> patient Right, 1 -> Anterior, 2 -> Superior; ``affine`` maps voxel
indices to RAS millimetres.  Each mask is kept only as its bounding-box crop
(:class:`Crop`), so a full-size case with thirty structures fits in a few hundred
MB, and all later work runs on small arrays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from . import vocabulary as vocab
from .errors import InputError
from .geometry import canonical_affine, canonical_orientation, source_index_of_canonical_k, to_canonical


@dataclass(frozen=True)
class Crop:
    """A binary mask stored as its bounding box.

    ``mask`` is a C-contiguous bool array in the canonical frame; ``offset`` is the
    canonical voxel index (i, j, k) of ``mask[0, 0, 0]``.  An empty mask has shape
    (0, 0, 0).
    """

    mask: np.ndarray
    offset: tuple

    @staticmethod
    def empty() -> "Crop":
        return Crop(np.zeros((0, 0, 0), bool), (0, 0, 0))

    @staticmethod
    def from_full(full: np.ndarray, within: tuple | None = None) -> "Crop":
        """Crop a full-grid array (any dtype; nonzero = inside) to its bounding box.

        ``within``: slices of ``full`` outside which every voxel is known to be zero
        (e.g. :attr:`RadGPTLogic.io.nifti.Volume.nonzero_box`); only they are scanned.
        """
        origin = (0,) * full.ndim
        if within is not None:
            full = full[within]
            origin = tuple(int(s.start) for s in within)
        bbox = bounding_box(full)
        if bbox is None:
            return Crop.empty()
        sub = np.ascontiguousarray(full[bbox]).astype(bool, copy=False)
        return Crop(sub, tuple(o + int(s.start) for o, s in zip(origin, bbox)))

    @property
    def shape(self) -> tuple:
        return tuple(self.mask.shape)

    @property
    def is_empty(self) -> bool:
        return self.mask.size == 0

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def slices(self) -> tuple:
        """Slices of the full canonical grid that this crop covers."""
        return tuple(slice(o, o + n) for o, n in zip(self.offset, self.mask.shape))

    def digest(self) -> str:
        """Content hash (offset, shape and voxels): the key of the engine's per-structure cache."""
        h = hashlib.blake2b(digest_size=16)
        h.update(np.asarray(self.offset + self.shape, np.int64).tobytes())
        h.update(np.packbits(self.mask, axis=None).tobytes())
        return h.hexdigest()

    def in_box(self, offset, shape) -> np.ndarray:
        """This mask as a bool array over the box (``offset``, ``shape``); zero outside the crop."""
        if self.is_empty:
            return np.zeros(tuple(shape), bool)
        return _in_box(self.mask, self.offset, offset, shape)

    def touches_grid_edge(self, grid_shape) -> bool:
        """True when any voxel lies on a face of the full grid (the organ may be cut by the scan)."""
        if self.is_empty:
            return False
        m = self.mask
        for axis in range(3):
            if self.offset[axis] == 0 and np.take(m, 0, axis=axis).any():
                return True
            if self.offset[axis] + m.shape[axis] == grid_shape[axis] and np.take(m, -1, axis=axis).any():
                return True
        return False


def _in_box(values: np.ndarray, values_offset, offset, shape) -> np.ndarray:
    """``values`` (placed at ``values_offset``) over the box (``offset``, ``shape``): zero outside ``values``."""
    out = np.zeros(tuple(shape), values.dtype)
    lo = np.maximum(values_offset, offset)
    hi = np.minimum(np.add(values_offset, values.shape), np.add(offset, shape))
    if values.size == 0 or np.any(hi <= lo):
        return out
    dst = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, offset))
    src = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, values_offset))
    out[dst] = values[src]
    return out


@dataclass(frozen=True)
class ProbabilityCrop:
    """A model's class probability over a box of the canonical grid.

    ``values`` is a float32 array of probabilities (0-1) in the canonical frame;
    ``offset`` is the canonical voxel index (i, j, k) of ``values[0, 0, 0]``.
    Voxels outside the box count as probability 0 (see :meth:`in_box`).
    """

    values: np.ndarray
    offset: tuple

    @property
    def shape(self) -> tuple:
        return tuple(self.values.shape)

    def digest(self) -> str:
        """Content hash (offset, shape and values): part of the engine's cache key for confidence."""
        h = hashlib.blake2b(digest_size=16)
        h.update(np.asarray(tuple(self.offset) + self.shape, np.int64).tobytes())
        h.update(np.ascontiguousarray(self.values, np.float32).tobytes())
        return h.hexdigest()

    def in_box(self, offset, shape) -> np.ndarray:
        """The probabilities as a float32 array over the box (``offset``, ``shape``); 0 outside the stored box."""
        return _in_box(np.asarray(self.values, np.float32), self.offset, offset, shape)


def bounding_box(arr: np.ndarray):
    """Tuple of slices enclosing the nonzero voxels of a 3-D array, or None when it is empty."""
    plane = np.any(arr, axis=2)
    if not plane.any():
        return None
    i = np.flatnonzero(plane.any(axis=1))
    j = np.flatnonzero(plane.any(axis=0))
    sub = arr[i[0]: i[-1] + 1, j[0]: j[-1] + 1]
    k = np.flatnonzero(np.any(sub, axis=(0, 1)))
    return (slice(i[0], i[-1] + 1), slice(j[0], j[-1] + 1), slice(k[0], k[-1] + 1))


def union_crops(crops, frame: "Crop | None" = None) -> Crop:
    """Union of crops (one canonical frame).

    Without ``frame`` the result is the bounding box of all of them (an empty crop
    for none); with ``frame`` it is expressed in that crop's box, and only what
    overlaps the frame counts.
    """
    full = [c for c in crops if not c.is_empty]
    if frame is None:
        if len(full) == 1:
            return full[0]
        if not full:
            return Crop.empty()
        lo = np.min([c.offset for c in full], axis=0)
        hi = np.max([np.add(c.offset, c.shape) for c in full], axis=0)
        offset, shape = tuple(int(x) for x in lo), tuple(int(x) for x in hi - lo)
    else:
        offset, shape = frame.offset, frame.shape
    box = np.zeros(shape, bool)
    for c in full:
        box |= c.in_box(offset, shape)
    return Crop(box, offset)


@dataclass
class Case:
    """One scan: geometry, the CT (optional) and structure masks as crops.

    Attributes
    ----------
    case_id : str
    shape : tuple of int
        Canonical grid shape (i: R, j: A, k: S).
    affine : (4, 4) ndarray
        Canonical voxel index -> RAS mm.
    ornt, source_shape :
        Orientation and shape of the reference file (the CT, or the first mask in
        masks-only mode), to report slice numbers along the file's own slice axis.
    ct_raw : ndarray or None
        Stored CT values in the canonical frame (a view); HU = raw * ct_slope + ct_inter.
    structures : dict
        Canonical structure name -> :class:`Crop`.
    sources : dict
        Name (``ct`` or a structure) -> list of ``{"path", "sha256"}`` (or ``{"name"}``
        for in-memory arrays) it was built from.  A case folder's segmentation record
        and probability files are listed under their relative paths
        (``segmentation.json``, ``probabilities/<mask>.npz``).
    segmentation : dict or None
        The segmentation stage's record of how the masks were made (the content of
        ``segmentation.json``: ``models``, ``structures`` -> name -> ``model``,
        ``sha256``, ``probabilities`` ...), None when no model made them.
    probabilities : dict
        Lesion mask name -> :class:`ProbabilityCrop`, the model's class probability
        near that mask (canonical frame); the source of each lesion's segmentation
        confidence.  Empty for hand-made masks.
    warnings : list of str
        Things the user should know that did not stop the run.
    ignored : list of str
        Recognised structures that no report rule uses (bones, lungs ...).
    """

    case_id: str
    shape: tuple
    affine: np.ndarray
    ornt: np.ndarray
    source_shape: tuple
    ct_raw: np.ndarray | None = None
    ct_slope: float = 1.0
    ct_inter: float = 0.0
    structures: dict[str, Crop] = field(default_factory=dict)
    sources: dict[str, list[dict]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    segmentation: dict[str, Any] | None = None
    probabilities: dict[str, ProbabilityCrop] = field(default_factory=dict)

    # ----------------------------------------------------------------- geometry
    @property
    def spacing(self) -> np.ndarray:
        """Voxel edge lengths (mm) along canonical axes i, j, k."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def has_ct(self) -> bool:
        return self.ct_raw is not None

    def source_slice_index(self, k: int) -> int:
        """Index along the reference file's own slice axis of canonical axial slice ``k``."""
        return source_index_of_canonical_k(self.ornt, self.source_shape, k)

    # ---------------------------------------------------------------- accessors
    def crop(self, name: str) -> Crop | None:
        """The crop of canonical structure ``name``, or None when the case has no such mask."""
        return self.structures.get(name)

    def has(self, name: str) -> bool:
        return name in self.structures

    def hu(self, slices) -> np.ndarray:
        """CT values in Hounsfield units (float32) over canonical-frame ``slices``."""
        if self.ct_raw is None:
            raise ValueError("case has no CT")
        raw = self.ct_raw[tuple(slices)]
        out = raw.astype(np.float32)
        if (self.ct_slope, self.ct_inter) != (1.0, 0.0):
            out *= np.float32(self.ct_slope)
            out += np.float32(self.ct_inter)
        return out

    def set_structure(self, name: str, crop: Crop) -> None:
        """Replace (or add) a structure's mask, e.g. after an edit in Slicer."""
        self.structures[name] = crop

    # ------------------------------------------------------------ construction
    @classmethod
    def on_grid(cls, case_id: str, shape, affine: np.ndarray, ornt: np.ndarray, source_shape) -> "Case":
        """An empty case on a canonical grid (``shape``, ``affine``) whose reference file
        was stored with orientation ``ornt`` and shape ``source_shape``."""
        return cls(case_id=case_id, shape=tuple(shape), affine=affine, ornt=ornt, source_shape=tuple(source_shape))

    @classmethod
    def from_arrays(
        cls,
        case_id: str,
        affine: np.ndarray,
        masks: Mapping[str, np.ndarray],
        ct: np.ndarray | None = None,
    ) -> "Case":
        """Build a case from in-memory arrays sharing one voxel-to-RAS ``affine``.

        Arrays are in any axis order/orientation (the affine says which); names may
        be aliases.  This is the entry point for importers and the Slicer adapter.
        """
        ornt = canonical_orientation(affine)
        first = ct if ct is not None else next(iter(masks.values()), None)
        if first is None:
            raise InputError(None, f"case {case_id}: no CT and no masks given")
        source_shape = tuple(first.shape)
        case = cls(
            case_id=case_id,
            shape=tuple(to_canonical(first, ornt).shape),
            affine=canonical_affine(affine, source_shape, ornt),
            ornt=ornt,
            source_shape=source_shape,
        )
        if ct is not None:
            ct = np.asarray(ct)
            if np.issubdtype(ct.dtype, np.floating) and not np.all(np.isfinite(ct)):
                raise InputError(None, f"case {case_id}: CT holds NaN or infinite values")
            case.ct_raw = to_canonical(ct, ornt)
        for name, arr in masks.items():
            canonical = vocab.canonical_name(name)
            if canonical is None:
                if not vocab.is_known_unused(name):
                    case.warnings.append(f"{name}: unknown structure name (ignored)")
                else:
                    case.ignored.append(name)
                continue
            if tuple(arr.shape) != source_shape:
                raise InputError(None, f"mask {name}: shape {arr.shape} differs from the case grid {source_shape}")
            case.add_crop(canonical, Crop.from_full(to_canonical(np.asarray(arr), ornt)), source={"name": name})
        return case

    def add_crop(self, canonical: str, crop: Crop, source: dict) -> None:
        """Store a crop; a second file mapping to the same name (e.g. left and right
        kidney cysts) is united with the first."""
        if canonical in self.structures:
            old = self.structures[canonical]
            if not crop.is_empty:
                self.structures[canonical] = union_crops([old, crop])
            if source not in self.sources[canonical]:
                self.sources[canonical].append(source)
        else:
            self.structures[canonical] = crop
            self.sources[canonical] = [source]
