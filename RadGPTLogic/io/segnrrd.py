"""3D Slicer ``.seg.nrrd`` segmentations in, :class:`~RadGPTLogic.case.Case` out.

A Slicer segmentation file stores segments as label values in one 3-D array, or
in several *layers* (a 4-D array, first axis = layer) when segments overlap.  The
header gives each segment's name (``Segment<N>_Name``), layer and label value, and
the grid as ``space`` (left-posterior-superior or right-anterior-superior),
``space directions`` and ``space origin``.

Reading is done by ``slicerio`` (an optional dependency: ``pip install
radgpt-slicer[nrrd]``), which returns the voxel array in the file's own (i, j, k)
order and the voxel-to-LPS matrix; LPS -> RAS flips the first two world axes.
Each segment is extracted on its own, so overlapping segments (a liver and the
lesion inside it) keep their shared voxels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..case import Case, Crop
from ..errors import InputError
from ..geometry import GRID_TOLERANCE_MM, canonical_affine, canonical_orientation, grid_deviation_mm, to_canonical
from .assemble import add_named_crop, case_with_ct, file_stem

# LPS <-> RAS: negate the first two world coordinates (the matrix is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def case_from_seg_nrrd(path, ct_path=None, case_id=None, *, dicom_series=None, dicom_resample=False) -> Case:
    """Build a :class:`Case` from a Slicer ``.seg.nrrd`` file.

    Parameters
    ----------
    path : path
        The segmentation (3-D, or 4-D with layers of overlapping segments).
    ct_path : path, optional
        The CT (NIfTI) the segmentation belongs to; it becomes the reference grid and
        supplies HU values.  The segmentation must be on the CT grid or on a box of
        it (Slicer may save a segmentation cropped to its content): same voxel size
        and axes, whole-voxel shift, within 1e-3 mm.
    case_id : str, optional
        Defaults to the file name without ``.seg.nrrd``.

    Returns
    -------
    Case
        One crop per canonical structure (segment names go through
        ``vocabulary.canonical_name``; segments mapping to the same name are united).
        Known-unused names go to ``case.ignored``, unknown ones to ``case.warnings``.

    Raises
    ------
    InputError
        Naming the file: missing, unreadable, not a segmentation, off the CT grid,
        slicerio missing, or no segment with a known structure name.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    slicerio = _import_slicerio(path)
    seg = _read_segmentation(slicerio, path)
    voxels = seg["voxels"]
    grid_shape = tuple(voxels.shape[-3:])
    affine = _ras_affine(seg, path)
    ornt = canonical_orientation(affine)
    seg_affine = canonical_affine(affine, grid_shape, ornt)
    seg_shape = _canonical_shape(grid_shape, ornt)
    case_id = case_id or file_stem(path)

    if ct_path is not None:
        case = case_with_ct(case_id, ct_path, dicom_series=dicom_series, dicom_resample=dicom_resample)
        offset = _offset_on_grid(case, seg_shape, seg_affine, path, ct_path)
    else:
        case = Case(case_id=case_id, shape=seg_shape, affine=seg_affine, ornt=ornt, source_shape=grid_shape)
        offset = (0, 0, 0)

    for segment in seg.get("segments", []):
        name = segment.get("name") or segment.get("id")
        if not name:
            case.warnings.append(f"{path}: a segment has neither name nor ID (ignored)")
            continue
        mask = _segment_mask(slicerio, seg, segment, path)
        crop = _shift(Crop.from_full(to_canonical(mask, ornt)), offset)
        del mask
        add_named_crop(case, name, crop, str(path), path)
    if not case.structures:
        raise InputError(path, "no segment has a known structure name (see docs/CONTRACT.md section 1)")
    return case


def _import_slicerio(path: Path):
    try:
        import slicerio
    except ImportError:
        raise InputError(
            path, "reading Slicer .seg.nrrd files needs slicerio: pip install radgpt-slicer[nrrd]"
        ) from None
    return slicerio


def _read_segmentation(slicerio, path: Path) -> dict:
    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as exc:  # noqa: BLE001 - pynrrd/slicerio raise many types for bad files
        raise InputError(path, f"not a readable Slicer segmentation ({exc})") from None
    voxels = seg.get("voxels")
    if voxels is None or np.ndim(voxels) not in (3, 4):
        shape = None if voxels is None else np.shape(voxels)
        raise InputError(path, f"expected a 3-D or 4-D (layered) segmentation, found shape {shape}")
    seg["voxels"] = np.asarray(voxels)
    return seg


def _ras_affine(seg: dict, path: Path) -> np.ndarray:
    """Voxel (i, j, k) -> RAS mm from slicerio's voxel -> LPS matrix."""
    ijk_to_lps = np.asarray(seg.get("ijkToLPS"), float)
    if ijk_to_lps.shape != (4, 4) or not np.all(np.isfinite(ijk_to_lps)) or abs(np.linalg.det(ijk_to_lps[:3, :3])) < 1e-12:
        raise InputError(path, "missing or degenerate space directions / space origin")
    return LPS_TO_RAS @ ijk_to_lps


def _segment_mask(slicerio, seg: dict, segment: dict, path: Path) -> np.ndarray:
    """Bool mask of one segment on the file's (i, j, k) grid.

    Uses ``slicerio.segment_mask`` where available (slicerio >= 1.4); older
    releases lack it, so the same rule is applied here: voxels of the segment's
    layer equal to its label value.
    """
    if hasattr(slicerio, "segment_mask"):
        return np.asarray(slicerio.segment_mask(seg, segment), bool)
    voxels = seg["voxels"]
    layer = int(segment.get("layer", 0))
    if voxels.ndim == 4:
        if not 0 <= layer < voxels.shape[0]:
            raise InputError(path, f"segment '{segment.get('name')}' is in layer {layer}, the file has {voxels.shape[0]}")
        voxels = voxels[layer]
    return voxels == int(segment.get("labelValue", 1))


def _offset_on_grid(case: Case, shape, affine: np.ndarray, path: Path, ct_path) -> tuple:
    """Canonical voxel offset of the segmentation grid inside the case (CT) grid.

    (0, 0, 0) for the same grid; a whole-voxel shift for a box of the CT grid
    (same spacing and axes).  Anything else is an :class:`InputError` naming ``path``.
    """
    origin_in_ct = np.linalg.solve(case.affine, affine[:, 3])[:3]
    offset = np.rint(origin_in_ct).astype(int)
    shifted = case.affine.copy()
    shifted[:3, 3] = (case.affine @ np.append(offset, 1.0))[:3]
    dev = grid_deviation_mm(shape, affine, shape, shifted)
    inside = np.all(offset >= 0) and np.all(offset + np.asarray(shape) <= np.asarray(case.shape))
    if dev > GRID_TOLERANCE_MM or not inside:
        why = f"voxel positions differ by up to {dev:.3g} mm" if dev > GRID_TOLERANCE_MM else "it extends beyond the CT"
        raise InputError(
            path,
            f"segmentation is not on the grid of the CT {ct_path} ({why}; segmentation shape "
            f"{tuple(shape)} vs CT {case.shape}, in canonical RAS order)",
        )
    return tuple(int(o) for o in offset)


def _canonical_shape(source_shape, ornt: np.ndarray) -> tuple:
    """Shape of the canonical-frame view of an array of ``source_shape`` (no array needed)."""
    shape = [0, 0, 0]
    for src_axis, (dst_axis, _flip) in enumerate(ornt):
        shape[int(dst_axis)] = int(source_shape[src_axis])
    return tuple(shape)


def _shift(crop: Crop, offset) -> Crop:
    if crop.is_empty or not any(offset):
        return crop
    return Crop(crop.mask, tuple(int(a + b) for a, b in zip(crop.offset, offset)))
