"""Case: one CT (optional) and its structure masks on one grid, loaded once.

Everything is held in the canonical RAS frame (see :mod:`RadGPTLogic.io.nifti`):
array axis 0 -> patient Right, 1 -> Anterior, 2 -> Superior; ``affine`` maps voxel
indices to RAS millimetres.  Each mask is kept only as its bounding-box crop
(:class:`Crop`), so a full-size case with thirty structures fits in a few hundred
MB, and all later work runs on small arrays.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from . import vocabulary as vocab
from .errors import InputError
from .io.nifti import (
    GRID_TOLERANCE_MM,
    Volume,
    canonical_affine,
    canonical_orientation,
    grid_deviation_mm,
    read_nifti,
    source_index_of_canonical_k,
    to_canonical,
)

MASK_SUFFIXES = (".nii.gz", ".nii")


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
    def from_full(full: np.ndarray) -> "Crop":
        """Crop a full-grid array (any dtype; nonzero = inside) to its bounding box."""
        bbox = bounding_box(full)
        if bbox is None:
            return Crop.empty()
        sub = np.ascontiguousarray(full[bbox]).astype(bool, copy=False)
        return Crop(sub, tuple(int(s.start) for s in bbox))

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
        out = np.zeros(tuple(shape), bool)
        if self.is_empty:
            return out
        lo = np.maximum(self.offset, offset)
        hi = np.minimum(np.add(self.offset, self.shape), np.add(offset, shape))
        if np.any(hi <= lo):
            return out
        dst = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, offset))
        src = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, self.offset))
        out[dst] = self.mask[src]
        return out

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


def _check_binary(path, arr: np.ndarray, slope: float, inter: float) -> None:
    """Raise InputError unless every voxel of the (scaled) mask is 0 or 1."""
    if arr.size == 0:
        raise InputError(path, "mask is empty (zero voxels)")
    if (slope, inter) != (1.0, 0.0):
        lo, hi = float(arr.min()) * slope + inter, float(arr.max()) * slope + inter
        values = np.unique(arr) * slope + inter
        bad = values[(values != 0) & (values != 1)]
    else:
        if arr.dtype == bool:
            return
        lo, hi = arr.min(), arr.max()
        if np.issubdtype(arr.dtype, np.integer) and lo >= 0 and hi <= 1:
            return
        bad = np.array([])
        if not (lo >= 0 and hi <= 1):
            bad = np.array([lo if not lo >= 0 else hi])
        elif np.count_nonzero(arr) != np.count_nonzero(arr == 1):
            frac = arr[(arr != 0) & (arr != 1)]
            bad = frac[:1]
    if bad.size:
        raise InputError(
            path,
            f"mask is not binary: holds the value {bad.flat[0]:g} (range {float(lo):g}..{float(hi):g}); "
            "a mask must hold only 0 and 1 (import a multi-label file with `radgpt import`)",
        )


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
        for in-memory arrays) it was built from.
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
    structures: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    ignored: list = field(default_factory=list)

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
    def from_folder(cls, case_dir: str | os.PathLike, *, resample: bool = False) -> "Case":
        """Load an AbdomenAtlas case folder (CONTRACT section 1).

        ``case_dir/ct.nii.gz`` is optional; ``case_dir/segmentations/*.nii.gz`` holds
        one binary mask per structure.  Every file is read once.  Masks on another
        grid than the reference are an :class:`InputError` unless ``resample`` is
        set, in which case they are resampled (nearest neighbour) onto it.
        """
        case_dir = Path(case_dir)
        if not case_dir.exists():
            raise InputError(case_dir, "case folder does not exist")
        if not case_dir.is_dir():
            raise InputError(case_dir, "not a folder (expected a case folder with segmentations/)")
        seg_dir = case_dir / "segmentations"
        if not seg_dir.is_dir():
            raise InputError(seg_dir, "missing folder: a case needs segmentations/<structure>.nii.gz")
        mask_files = sorted(p for p in seg_dir.iterdir() if p.name.endswith(MASK_SUFFIXES) and p.is_file())
        if not mask_files:
            raise InputError(seg_dir, "no mask files (*.nii.gz) in the folder")

        ct_path = next((case_dir / n for n in ("ct.nii.gz", "ct.nii") if (case_dir / n).is_file()), None)
        case = None
        if ct_path is not None:
            ct = read_nifti(ct_path)
            check_ct(ct)
            case = cls._from_reference(case_dir.name, ct)
            case.ct_raw, case.ct_slope, case.ct_inter = ct.array, ct.slope, ct.inter
            case.sources["ct"] = [{"path": str(ct_path), "sha256": ct.sha256}]

        warnings, ignored = [], []
        for path in mask_files:
            name = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
            canonical = vocab.canonical_name(name)
            if canonical is None:
                if vocab.is_known_unused(name):
                    ignored.append(name)
                else:
                    warnings.append(f"{path}: unknown structure name '{name}' (ignored)")
                continue
            vol = read_nifti(path)
            if case is None:
                case = cls._from_reference(case_dir.name, vol)
            case.add_volume(canonical, vol, resample=resample)
        if case is None:  # only unknown or unused names
            raise InputError(seg_dir, "no mask with a known structure name (see CONTRACT.md section 1)")
        case.warnings[:0] = warnings
        case.ignored.extend(ignored)
        return case

    @classmethod
    def _from_reference(cls, case_id: str, ref: Volume) -> "Case":
        return cls(
            case_id=case_id,
            shape=ref.shape,
            affine=ref.affine,
            ornt=ref.ornt,
            source_shape=ref.source_shape,
        )

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

    def add_volume(self, canonical: str, vol: Volume, *, resample: bool = False) -> None:
        """Check a mask read from disk against this case's grid and store its crop."""
        _check_binary(vol.path, vol.array, vol.slope, vol.inter)
        dev = grid_deviation_mm(self.shape, self.affine, vol.shape, vol.affine)
        arr = vol.array
        if vol.slope != 1.0 or vol.inter != 0.0:
            arr = (arr * vol.slope + vol.inter) > 0.5
        if dev > GRID_TOLERANCE_MM:
            if not resample:
                what = (
                    f"shape {vol.shape} vs {self.shape}" if vol.shape != self.shape
                    else f"voxel positions differ by up to {dev:.3g} mm"
                )
                raise InputError(
                    vol.path,
                    f"mask is not on the case grid ({what}, in canonical RAS order); "
                    "pass --resample to resample masks onto the CT grid",
                )
            arr = _resample_nearest(arr, vol.affine, self.shape, self.affine)
        self.add_crop(canonical, Crop.from_full(arr), source={"path": str(vol.path), "sha256": vol.sha256})

    def add_crop(self, canonical: str, crop: Crop, source: dict) -> None:
        """Store a crop; a second file mapping to the same name (e.g. left and right
        kidney cysts) is united with the first."""
        if canonical in self.structures:
            old = self.structures[canonical]
            if not crop.is_empty:
                if old.is_empty:
                    merged = crop
                else:
                    lo = np.minimum(old.offset, crop.offset)
                    hi = np.maximum(np.add(old.offset, old.shape), np.add(crop.offset, crop.shape))
                    shape = tuple(int(x) for x in hi - lo)
                    box = old.in_box(tuple(lo), shape) | crop.in_box(tuple(lo), shape)
                    merged = Crop(box, tuple(int(x) for x in lo))
                self.structures[canonical] = merged
            if source not in self.sources[canonical]:
                self.sources[canonical].append(source)
        else:
            self.structures[canonical] = crop
            self.sources[canonical] = [source]


def check_ct(ct: Volume) -> None:
    """Raise InputError unless the CT holds finite numbers (integer or float HU)."""
    arr = ct.array
    if np.issubdtype(arr.dtype, np.floating):
        bad = np.count_nonzero(~np.isfinite(arr))
        if bad:
            raise InputError(ct.path, f"CT holds {bad} NaN or infinite voxel(s); expected Hounsfield units")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InputError(ct.path, f"unsupported CT data type {arr.dtype}")


def _resample_nearest(arr: np.ndarray, src_affine, dst_shape, dst_affine) -> np.ndarray:
    """Nearest-neighbour resampling of a canonical-frame mask onto another canonical grid."""
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(src_affine) @ dst_affine
    out = affine_transform(
        np.ascontiguousarray(arr).astype(np.uint8), m[:3, :3], offset=m[:3, 3],
        output_shape=tuple(dst_shape), order=0, mode="constant", cval=0,
    )
    return out.astype(bool)
