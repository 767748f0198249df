"""Assembling a :class:`~RadGPTLogic.case.Case` from files that were read.

Shared by every reader that builds a case: case folders
(:mod:`RadGPTLogic.io.casefolder`), multi-label maps (:mod:`RadGPTLogic.io.labelmaps`),
Slicer ``.seg.nrrd`` files (:mod:`RadGPTLogic.io.segnrrd`) and DICOM CT series
(:mod:`RadGPTLogic.io.dicom`): the reference grid from a CT or a first mask, the
checks a CT and a binary mask must pass, grid agreement (or nearest-neighbour
resampling when asked), and where names that are not structures go.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import vocabulary as vocab
from ..case import Case, Crop
from ..errors import InputError
from ..geometry import GRID_TOLERANCE_MM, grid_deviation_mm
from .nifti import Volume, read_nifti

#: File name endings of NIfTI files and Slicer segmentations, longest first.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd")


def file_stem(path) -> str:
    """File name without ``.nii.gz`` / ``.nii`` / ``.seg.nrrd`` / ``.nrrd`` (case-insensitive)."""
    name = Path(path).name
    for ext in IMAGE_SUFFIXES:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def case_on_volume_grid(case_id: str, ref: Volume) -> Case:
    """An empty case on the grid of ``ref`` (which keeps its orientation for slice numbers)."""
    case = Case.on_grid(case_id, ref.shape, ref.affine, ref.ornt, ref.source_shape)
    note_header(case, ref)
    return case


def note_header(case: Case, vol: Volume) -> None:
    """Copy the header warnings of a file read into ``case`` (to ``case.warnings``, once each)."""
    for line in getattr(vol, "warnings", ()):
        if line not in case.warnings:
            case.warnings.append(line)


def require_orientation(vol: Volume) -> None:
    """Raise InputError for a NIfTI file without orientation (for ``radgpt import``, which would
    otherwise write it out as scanner coordinates with the sides guessed)."""
    if not getattr(vol, "orientation_known", True):
        raise InputError(vol.path, "no orientation in the NIfTI header (qform_code and sform_code are 0), so left "
                                   "and right cannot be told apart; set the qform/sform of the file (e.g. copy "
                                   "the CT's) before importing it")


def check_ct(ct: Volume) -> None:
    """Raise InputError unless the CT holds finite numbers (integer or float HU)."""
    arr = ct.array
    if np.issubdtype(arr.dtype, np.floating):
        bad = np.count_nonzero(~np.isfinite(arr))
        if bad:
            raise InputError(ct.path, f"CT holds {bad} NaN or infinite voxel(s); expected Hounsfield units")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InputError(ct.path, f"unsupported CT data type {arr.dtype}")


def attach_ct(case: Case, ct: Volume) -> None:
    """Make ``ct`` (checked, on the case's grid) the case's source of HU values."""
    check_ct(ct)
    note_header(case, ct)
    case.ct_raw, case.ct_slope, case.ct_inter = ct.array, ct.slope, ct.inter
    case.sources["ct"] = [{"path": str(ct.path), "sha256": ct.sha256}]


def case_with_ct(case_id: str, ct_path, *, dicom_series=None, dicom_resample=False) -> Case:
    """A case whose reference grid and HU values come from the CT at ``ct_path`` (for import).

    ``ct_path`` is a NIfTI file (one without orientation is refused, see
    :func:`require_orientation`) or a folder holding a DICOM series
    (:func:`case_with_dicom_ct`; ``dicom_series`` picks a
    SeriesInstanceUID, ``dicom_resample`` accepts uneven slices by interpolation).
    NaN/inf CT values are an :class:`InputError` naming the CT.
    """
    if Path(ct_path).is_dir():
        return case_with_dicom_ct(case_id, ct_path, dicom_series, resample=dicom_resample)
    ct = read_nifti(ct_path)
    require_orientation(ct)
    check_ct(ct)
    case = case_on_volume_grid(case_id, ct)
    attach_ct(case, ct)
    return case


def case_with_dicom_ct(case_id: str, dicom_folder, series_uid: str | None = None, *, resample: bool = False) -> Case:
    """A case whose reference grid and HU come from a DICOM series (the DICOM twin of :func:`case_with_ct`).

    Masks and label maps are then checked against (or resampled onto) the series'
    grid.  ``case.sources["ct"]`` records the folder, the series digest and its
    SeriesInstanceUID; the reader's warnings go to ``case.warnings``.
    """
    from .dicom import read_dicom_series_info

    volume, info = read_dicom_series_info(dicom_folder, series_uid, resample=resample)
    case = case_on_volume_grid(case_id, volume)
    attach_ct(case, volume)
    case.sources["ct"] = [{"path": str(dicom_folder), "sha256": volume.sha256, "series_uid": info.series_uid}]
    case.warnings.extend(info.warnings)
    return case


def check_binary_mask(path, arr: np.ndarray, slope: float, inter: float, *, zeros_beside: bool = False) -> None:
    """Raise InputError unless every voxel of the (scaled) mask is 0 or 1.

    ``zeros_beside``: ``arr`` is the part of an unscaled mask beside which there are
    more voxels, all 0 (so the range named in the error includes 0, and an empty
    part is fine).
    """
    if zeros_beside and arr.size == 0:
        return
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
        if zeros_beside:
            lo, hi = min(lo, arr.dtype.type(0)), max(hi, arr.dtype.type(0))
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


def add_mask_volume(case: Case, canonical: str, vol: Volume, *, resample: bool = False,
                    reference: Volume | None = None) -> None:
    """Check a binary mask read from disk against the case's grid and store its crop.

    A mask on another grid is an :class:`InputError` naming it, unless ``resample``
    is set: then it is resampled (nearest neighbour) onto the case's grid.  When the
    ``reference`` file that gave the grid (the CT) has no orientation in its header and
    the mask has one, the error names the reference instead: the grids disagree because
    the CT cannot be placed in the patient, not because the mask is wrong.
    """
    arr = vol.array
    # Only the slabs the reader saw data in are scanned (a full-size mask is mostly empty);
    # a scaled mask's zero bytes need not mean 0, so it is scanned whole.
    box = vol.nonzero_box if (vol.slope, vol.inter) == (1.0, 0.0) and arr.size else None
    if box is None:
        check_binary_mask(vol.path, arr, vol.slope, vol.inter)
    else:
        part = arr[box]
        check_binary_mask(vol.path, part, 1.0, 0.0, zeros_beside=part.size < arr.size)
    note_header(case, vol)
    dev = grid_deviation_mm(case.shape, case.affine, vol.shape, vol.affine)
    if vol.slope != 1.0 or vol.inter != 0.0:
        arr = (arr * vol.slope + vol.inter) > 0.5
    if dev > GRID_TOLERANCE_MM:
        if reference is not None and not getattr(reference, "orientation_known", True) \
                and getattr(vol, "orientation_known", True):
            raise InputError(reference.path, "no orientation in the NIfTI header (qform_code and sform_code are 0) "
                                             f"while the masks have one ({vol.path.name}), so the CT cannot be "
                                             "placed on their grid; set the CT's qform/sform (e.g. copy the masks')")
        if not resample:
            what = (
                f"shape {vol.shape} vs {case.shape}" if vol.shape != case.shape
                else f"voxel positions differ by up to {dev:.3g} mm"
            )
            raise InputError(
                vol.path,
                f"mask is not on the case grid ({what}, in canonical RAS order); "
                "pass --resample to resample masks onto the CT grid",
            )
        arr, box = resample_nearest(arr, vol.affine, case.shape, case.affine), None
    case.add_crop(canonical, Crop.from_full(arr, within=box), source={"path": str(vol.path), "sha256": vol.sha256})


def resample_nearest(arr: np.ndarray, src_affine, dst_shape, dst_affine) -> np.ndarray:
    """Nearest-neighbour resampling of a canonical-frame mask onto another canonical grid."""
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(src_affine) @ dst_affine
    out = affine_transform(
        np.ascontiguousarray(arr).astype(np.uint8), m[:3, :3], offset=m[:3, 3],
        output_shape=tuple(dst_shape), order=0, mode="constant", cval=0,
    )
    return out.astype(bool)


def add_named_crop(case: Case, name: str, crop: Crop, source, where) -> None:
    """Store ``crop`` under the canonical name of ``name``, or record why not.

    Known-unused names (bones, lungs ...) go to ``case.ignored``, unknown names to
    ``case.warnings`` (once each).
    """
    canonical = vocab.canonical_name(name)
    if canonical is not None:
        case.add_crop(canonical, crop, source=source)
        return
    if vocab.is_known_unused(name):
        if name not in case.ignored:
            case.ignored.append(name)
        return
    warning = f"{where}: unknown structure name '{name}' (ignored)"
    if warning not in case.warnings:
        case.warnings.append(warning)


def add_absent_lesions(case: Case, names, source) -> None:
    """Empty crops for lesion names the table offers but the image lacks.

    A label map from a model that segments lesions states "none found" by leaving
    the value out; an empty mask says the same in an AbdomenAtlas folder.
    Absent organs are *not* added: an absent organ is "not given", not "size 0".
    """
    for name in names:
        canonical = vocab.canonical_name(name)
        if canonical in vocab.LESIONS and canonical not in case.structures:
            case.add_crop(canonical, Crop.empty(), source=source)
