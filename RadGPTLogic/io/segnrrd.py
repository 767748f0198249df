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

Which structure a segment is, first match wins:

1. the ``labels`` mapping file (``radgpt import --labels mapping.json``): a JSON object
   ``{"<segment name or ID>": "<structure name>"}``, e.g. ``{"Mass": "kidney_tumor"}``;
2. the segment's name, through :func:`RadGPTLogic.vocabulary.canonical_name`
   ("Liver", "right kidney", "liver_lesion" ...);
3. the segment's Slicer terminology (``Segment<N>_Tags`` ``TerminologyEntry``: category,
   type, type modifier, anatomic region and its modifier), through
   :func:`RadGPTLogic.terminology.name_from_terminology`: a segment named "Kidney"
   tagged Kidney / Right is ``kidney_right``, one named "Mass" tagged Neoplasm in
   Kidney is ``kidney_tumor``.

Every segment that maps nowhere gets one warning saying why (name unknown,
terminology not a reported structure, an organ without its side); when no segment
maps at all, the one-line error lists the segment names found and how to map them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .. import terminology as term
from .. import vocabulary as vocab
from ..case import Case, Crop
from ..errors import InputError
from ..geometry import GRID_TOLERANCE_MM, canonical_affine, canonical_orientation, grid_deviation_mm, to_canonical
from .assemble import case_with_ct, file_stem

# LPS <-> RAS: negate the first two world coordinates (the matrix is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


log = logging.getLogger("radgpt")

# How many segment names the "nothing maps" error lists before "... and N more".
_NAMES_IN_ERROR = 12


def case_from_seg_nrrd(path, ct_path=None, case_id=None, *, labels=None, dicom_series=None,
                       dicom_resample=False) -> Case:
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
    labels : path or dict, optional
        Segment name (or ID) -> structure name: a JSON file holding one object, or
        the dict itself (see the module docstring for the order of the rules).

    Returns
    -------
    Case
        One crop per canonical structure (segments mapping to the same name are
        united).  Known-unused names go to ``case.ignored``; segments that map
        nowhere, and names disagreeing with their terminology, to ``case.warnings``.

    Raises
    ------
    InputError
        Naming the file: missing, unreadable, not a segmentation, off the CT grid,
        slicerio missing, a malformed mapping file, or no segment that maps to a
        structure (the message lists the segment names; the per-segment warnings are
        logged first on the ``radgpt`` logger).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    mapping = load_name_mapping(labels) if labels is not None else {}
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

    found = []
    for segment in seg.get("segments", []):
        name = segment.get("name") or segment.get("id")
        if not name:
            case.warnings.append(f"{path}: a segment has neither name nor ID (ignored)")
            continue
        found.append(str(name))
        structure, note = segment_structure(segment, mapping)
        if note:
            case.warnings.append(f"{path}: segment '{name}': {note}")
        if structure is None:
            if note is None and str(name) not in case.ignored:
                case.ignored.append(str(name))  # a known structure no rule uses (bones, lungs ...)
            continue
        mask = _segment_mask(slicerio, seg, segment, path)
        crop = _shift(Crop.from_full(to_canonical(mask, ornt)), offset)
        del mask
        case.add_crop(structure, crop, source={"path": str(path)})
    if not case.structures:
        for line in case.warnings:
            log.warning("%s", line)
        shown = ", ".join(f"'{n}'" for n in found[:_NAMES_IN_ERROR])
        more = f" and {len(found) - _NAMES_IN_ERROR} more" if len(found) > _NAMES_IN_ERROR else ""
        raise InputError(
            path,
            f"no segment maps to a known structure (segments: {shown or 'none'}{more}); name the segments "
            "with structure names (liver, kidney_left, kidney_tumor ...; see docs/CONTRACT.md), set their terminology "
            "in Slicer, or pass --labels mapping.json with {\"segment name\": \"structure\"}",
        )
    return case


def load_name_mapping(spec) -> dict:
    """Segment name -> canonical structure name from a JSON file (or a dict).

    Keys are compared after :func:`RadGPTLogic.vocabulary.normalise` (so "Mass" and
    "mass" are one name); values must be structure names the vocabulary knows.
    Raises :class:`InputError` naming the file for anything else.
    """
    where = None
    if isinstance(spec, dict):
        data = spec
    else:
        where = Path(spec)
        if not where.is_file():
            raise InputError(where, "for a .seg.nrrd, --labels takes a JSON file mapping segment names to "
                                    "structure names, e.g. {\"Mass\": \"kidney_tumor\"}; no such file")
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(where, f"not a readable JSON name mapping ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise InputError(where, "name mapping must be a non-empty JSON object {\"segment name\": \"structure\"}")
    out = {}
    for key, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise InputError(where, f"segment '{key}': structure name must be a non-empty string, not {value!r}")
        canonical = vocab.canonical_name(value)
        if canonical is None:
            raise InputError(where, f"segment '{key}' is mapped to '{value}', which is not a known structure name")
        out[vocab.normalise(str(key))] = canonical
    return out


def _terminology_codes(segment: dict) -> dict | None:
    """The segment's terminology as :class:`~RadGPTLogic.terminology.Code` values, or None.

    slicerio >= 1.1 parses the ``TerminologyEntry`` tag into ``segment["terminology"]``
    (lists ``[scheme, value, meaning]``); otherwise the raw tag string is parsed.
    """
    parsed = segment.get("terminology")
    if isinstance(parsed, dict):
        def code(key):
            item = parsed.get(key)
            if not item or len(item) < 2 or not str(item[1]).strip():
                return None
            return term.Code(str(item[1]).strip(), str(item[0]).strip(), str(item[2]).strip() if len(item) > 2 else "")

        return {"category": code("category"), "type": code("type"), "type_modifier": code("typeModifier"),
                "region": code("anatomicRegion"), "region_modifier": code("anatomicRegionModifier")}
    tags = segment.get("tags")
    entry = tags.get("TerminologyEntry") if isinstance(tags, dict) else None
    return term.parse_slicer_terminology(entry) if entry else None


def _describe(codes: dict) -> str:
    what = codes["type"].meaning if codes.get("type") else "none"
    if codes.get("type_modifier"):
        what = f"{codes['type_modifier'].meaning} {what}"
    if codes.get("region"):
        where = codes["region"].meaning
        if codes.get("region_modifier"):
            where = f"{codes['region_modifier'].meaning} {where}"
        what = f"{what} in {where}"
    return what


def segment_structure(segment: dict, mapping: dict) -> tuple:
    """Canonical structure of one slicerio segment and a note for the user (or None).

    Returns ``(name or None, note or None)``; the rules are those of the module
    docstring (mapping file, then name, then terminology).
    """
    name = str(segment.get("name") or segment.get("id") or "")
    for key in (name, str(segment.get("id") or "")):
        if key and vocab.normalise(key) in mapping:
            return mapping[vocab.normalise(key)], None
    codes = _terminology_codes(segment)
    from_terms, why = (term.name_from_terminology(codes["category"], codes["type"], codes["type_modifier"],
                                                  codes["region"], codes["region_modifier"])
                       if codes else (None, "no terminology"))
    by_name = vocab.canonical_name(name)
    if by_name is not None:
        if from_terms is not None and codes is not None and from_terms != by_name:  # from_terms: codes given
            return by_name, (f"its name says {by_name}, its terminology ({_describe(codes)}) says {from_terms}; "
                             f"using {by_name}")
        return by_name, None
    if from_terms is not None:
        return from_terms, None
    if vocab.is_known_unused(name):
        return None, None
    detail = f"terminology {_describe(codes)}: {why}" if codes and codes.get("type") else "no terminology"
    return None, f"not a known structure name, {detail} (ignored; map it with --labels)"


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
    if (ijk_to_lps.shape != (4, 4) or not np.all(np.isfinite(ijk_to_lps))
            or abs(np.linalg.det(ijk_to_lps[:3, :3])) < 1e-12):
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
            raise InputError(path,
                             f"segment '{segment.get('name')}' is in layer {layer}, the file has {voxels.shape[0]}")
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
