"""Tumor-class probabilities kept beside a segmented case: ``probabilities/<mask>.npz``.

The segmentation stage keeps, for each lesion mask a model wrote, that class's
softmax probability in the mask's neighbourhood, so that every lesion can carry a
segmentation confidence (see docs/CONTRACT.md, "Confidence").  One file per lesion
mask, ``CASE/probabilities/<canonical lesion mask name>.npz`` (numpy's compressed
``.npz``), holding:

``probability``
    uint8 array, the probability times 255, rounded (steps of 1/255 = 0.0039; the
    0.5 threshold lies between 127 and 128).  Cropped to the mask's bounding box
    grown by a margin, clipped to the grid.
``offset_ijk``
    int64[3]: index of the crop's first voxel.
``grid_shape_ijk``
    int64[3]: shape of the whole grid the crop was cut from (the CT's).

Frame: the **CT file's own stored voxel order** (i, j, k as nibabel returns the
array of ``ct.nii.gz``, the same order as the masks in ``segmentations/``), not the
canonical RAS frame the engine works in.  Voxels outside the crop are far from
the predicted region; readers treat them as probability 0.

Readers: :func:`read_probability` (one file, source frame),
:func:`canonical_probability` (a source-frame crop in the canonical RAS frame, a
:class:`~RadGPTLogic.case.ProbabilityCrop`), :func:`check_segmentation_record`
(the parts of ``segmentation.json`` confidence reads) and
:func:`attach_probabilities`, which puts both on a :class:`~RadGPTLogic.case.Case`
(the case-folder loader calls it; so may the Slicer module, for a case built from
nodes).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from .. import vocabulary as vocab
from ..case import Case, ProbabilityCrop
from ..errors import InputError
from ..geometry import to_canonical

PROBABILITIES = "probabilities"
#: Voxels added around the mask's bounding box on every side.
MARGIN_VOXELS = 4
SCALE = 255


def probability_npz_bytes(probability_ijk: np.ndarray, region_ijk: np.ndarray,
                          margin_voxels: int = MARGIN_VOXELS) -> bytes:
    """The ``.npz`` bytes of one lesion mask's probabilities.

    Parameters
    ----------
    probability_ijk : ndarray of float
        The class probability (0-1) on the CT's whole grid, in the CT file's voxel order.
    region_ijk : ndarray of bool
        The mask the model wrote for that class (same grid); the crop is its bounding
        box grown by ``margin_voxels``.  An empty mask keeps an empty crop.
    """
    probability_ijk = np.asarray(probability_ijk)
    region_ijk = np.asarray(region_ijk, bool)
    if probability_ijk.shape != region_ijk.shape or probability_ijk.ndim != 3:
        raise ValueError(f"probability {probability_ijk.shape} and mask {region_ijk.shape} must be one 3-D grid")
    grid = np.array(region_ijk.shape, np.int64)
    if region_ijk.any():
        idx = np.argwhere(region_ijk)
        lo = np.maximum(idx.min(0) - margin_voxels, 0)
        hi = np.minimum(idx.max(0) + 1 + margin_voxels, grid)
    else:
        lo = hi = np.zeros(3, np.int64)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    scaled = np.rint(np.clip(probability_ijk[box], 0.0, 1.0) * SCALE).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, probability=scaled, offset_ijk=lo.astype(np.int64), grid_shape_ijk=grid)
    return buffer.getvalue()


def read_probability(path, grid_shape_ijk=None) -> tuple[np.ndarray, np.ndarray]:
    """``(offset_ijk int64[3], probability float32 crop)`` of one file, values 0-1.

    Raises :class:`InputError` naming the file when it is not such a file or, with
    ``grid_shape_ijk``, when it was cut from another grid.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            scaled = np.asarray(data["probability"])
            offset = np.asarray(data["offset_ijk"], np.int64)
            grid = np.asarray(data["grid_shape_ijk"], np.int64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(path, f"not a RadGPT probability file ({type(exc).__name__}: {exc})") from None
    if scaled.ndim != 3 or scaled.dtype != np.uint8 or offset.shape != (3,) or grid.shape != (3,):
        raise InputError(path, "not a RadGPT probability file (expects a 3-D uint8 'probability', "
                               "'offset_ijk' and 'grid_shape_ijk')")
    if np.any(offset < 0) or np.any(offset + scaled.shape > grid):
        raise InputError(path, "the probability crop lies outside its grid")
    if grid_shape_ijk is not None and tuple(int(v) for v in grid) != tuple(int(v) for v in grid_shape_ijk):
        raise InputError(path, f"cut from a grid of {tuple(int(v) for v in grid)} voxels, "
                               f"not the CT's {tuple(int(v) for v in grid_shape_ijk)}")
    return offset, scaled.astype(np.float32) / SCALE


def canonical_probability(offset_ijk, values, ornt, source_shape) -> ProbabilityCrop:
    """A source-frame probability crop (``offset_ijk``, ``values``, as :func:`read_probability`
    returns) as a :class:`ProbabilityCrop` in the canonical RAS frame.

    ``ornt`` and ``source_shape`` are the orientation and shape of the file the crop
    was cut from (the case's ``ornt`` and ``source_shape``).  Along a source axis that
    the canonical frame flips, the crop's canonical start is ``n - (offset + size)``.
    """
    ornt = np.asarray(ornt, float)
    offset_ijk = [int(v) for v in offset_ijk]
    values = np.asarray(values, np.float32)
    canonical_offset = [0, 0, 0]
    for source_axis, (axis, direction) in enumerate(ornt):
        start, size, n = offset_ijk[source_axis], values.shape[source_axis], int(source_shape[source_axis])
        canonical_offset[int(axis)] = start if direction > 0 else n - (start + size)
    return ProbabilityCrop(np.ascontiguousarray(to_canonical(values, ornt)), tuple(canonical_offset))


def _problem(where, what: str):
    return InputError(where, f"{what} (see docs/CONTRACT.md, Confidence)")


def check_segmentation_record(data, where=None) -> dict:
    """The ``segmentation.json`` record ``data`` with its ``structures`` as a dict, checked.

    Checked are the parts that confidence and mask origins read: the record is an
    object; ``structures`` an object of objects (a list of names, an older form, is
    turned into one); in each entry ``model``, ``sha256`` and ``probabilities`` are
    strings and ``probability`` a number when present; ``probabilities`` names a
    file in the case folder's ``probabilities/`` (``probabilities/<name>.npz``).
    Anything else is an :class:`InputError` naming ``where`` (the file).
    """
    if not isinstance(data, dict):
        raise _problem(where, "not a segmentation record: expects a JSON object")
    structures = data.get("structures", {})
    if isinstance(structures, list):
        if not all(isinstance(n, str) for n in structures):
            raise _problem(where, "'structures' lists names that are not strings")
        structures = {n: {} for n in structures}
    if not isinstance(structures, dict):
        raise _problem(where, f"'structures' must be an object, not {type(structures).__name__}")
    for key in ("models", "precedence"):
        if key in data and not isinstance(data[key], list):
            raise _problem(where, f"'{key}' must be a list, not {type(data[key]).__name__}")
    out = {}
    for name, entry in structures.items():
        if not isinstance(entry, dict):
            raise _problem(where, f"structures.{name} must be an object, not {type(entry).__name__}")
        for key in ("model", "sha256", "probabilities"):
            if key in entry and not isinstance(entry[key], str):
                raise _problem(where, f"structures.{name}.{key} must be a string, not {type(entry[key]).__name__}")
        value = entry.get("probability")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _problem(where, f"structures.{name}.probability must be a number, not {type(value).__name__}")
        rel = entry.get("probabilities")
        if rel is not None:
            parts = rel.split("/")
            if len(parts) != 2 or parts[0] != PROBABILITIES or parts[1] in ("", ".", "..") or "\\" in rel:
                raise _problem(where, f"structures.{name}.probabilities must name a file in {PROBABILITIES}/, "
                                      f"not {rel!r}")
        out[str(name)] = entry
    return {**data, "structures": out}


def probability_files(record: dict) -> dict:
    """Canonical lesion mask -> the relative path of its probabilities file, from a checked record."""
    out = {}
    for name, entry in record.get("structures", {}).items():
        canonical = vocab.canonical_name(name)
        if canonical in vocab.LESIONS and entry.get("probabilities"):
            out[canonical] = entry["probabilities"]
    return out


def attach_probabilities(case: Case, segmentation, crops: dict, where=None) -> Case:
    """Record a segmentation record and its lesion probabilities on ``case``; returns ``case``.

    Parameters
    ----------
    segmentation : dict
        The ``segmentation.json`` record (checked with :func:`check_segmentation_record`).
    crops : dict
        Lesion mask name -> ``(offset_ijk, values)`` in the case's **source** frame
        (the CT file's voxel order, as :func:`read_probability` returns them; values 0-1).
        Only masks the record lists with a ``probabilities`` file are used by the engine
        for confidence; names are mapped to canonical names.
    where :
        What to name in errors (the record's file, or a Slicer node).

    A crop that does not lie inside the case's grid is an :class:`InputError`.
    """
    record = check_segmentation_record(segmentation, where)
    listed = probability_files(record)
    case.segmentation = record
    for name, (offset_ijk, values) in crops.items():
        canonical = vocab.canonical_name(name) or name
        if canonical not in listed:
            continue
        offset = np.asarray(offset_ijk, np.int64).reshape(-1)
        values = np.asarray(values, np.float32)
        if values.ndim != 3 or offset.shape != (3,) or np.any(offset < 0) or \
                np.any(offset + values.shape > np.asarray(case.source_shape)):
            raise InputError(where if where is not None else name,
                             f"{name}: probability crop {values.shape} at {offset.tolist()} lies outside the "
                             f"case grid {tuple(case.source_shape)}")
        case.probabilities[canonical] = canonical_probability(offset, values, case.ornt, case.source_shape)
    return case
