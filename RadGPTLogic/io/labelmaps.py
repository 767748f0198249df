"""Multi-label NIfTI files in, :class:`~RadGPTLogic.case.Case` out.

:func:`case_from_labelmap` turns one integer label map (TotalSegmentator, nnU-Net,
AMOS, AbdomenAtlas 1.1/3.0 ...) plus a label table into a case with one
:class:`~RadGPTLogic.case.Crop` per canonical structure (written as a case folder
by :func:`RadGPTLogic.io.casefolder.write_case_folder`).

Frames: the label map is read into the canonical RAS frame
(:mod:`RadGPTLogic.geometry`); all crops are in that frame.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .. import vocabulary as vocab
from ..case import Case, Crop
from ..errors import InputError
from ..geometry import GRID_TOLERANCE_MM, grid_deviation_mm
from .assemble import (
    add_absent_lesions,
    add_named_crop,
    case_on_volume_grid,
    case_with_ct,
    file_stem,
    note_header,
    require_orientation,
)
from .label_tables import LabelTable, load_table
from .nifti import Volume, read_nifti

# Label values above this are indexed through a compact relabelling instead of
# directly: scipy's find_objects allocates one list entry per value up to the maximum.
_MAX_DIRECT_LABEL = 65535
# Slices of the canonical grid handled at once when a full pass needs temporaries
# (about 16 M voxels, so 128 MB of int64 temporaries at most).
_CHUNK_VOXELS = 16_000_000
# Label values read from float files (or through NIfTI scaling) must be this close
# to an integer.
_INTEGRAL_TOLERANCE = 1e-4
# NIfTI extension codes that hold TotalSegmentator's CaretExtension label XML
# (it writes 0; 30 is the registered NIFTI_ECODE_CARET).
_CARET_ECODES = (0, 30)


# =========================================================================== import

def case_from_labelmap(seg_path, table=None, ct_path=None, case_id=None, *, dicom_series=None,
                       dicom_resample=False) -> Case:
    """Build a :class:`Case` from one multi-label NIfTI file.

    Parameters
    ----------
    seg_path : path
        Label map: integer voxel values (a float file is accepted when every value
        is integral); 0 is background.
    table : None, str, path, dict or LabelTable
        Value -> structure name (see :func:`~RadGPTLogic.io.label_tables.load_table`).
        ``None`` uses the names embedded in the file (TotalSegmentator's
        CaretExtension XML header) and is an :class:`InputError` when there are none.
    ct_path : path, optional
        The CT the labels were drawn on.  It becomes the reference grid (the case
        keeps its orientation, for slice numbers and for writing files back) and the
        source of HU values.  The label map must lie on the same grid within
        :data:`~RadGPTLogic.io.nifti.GRID_TOLERANCE_MM` (1e-3 mm).
    case_id : str, optional
        Defaults to the label file's name without ``.nii.gz``.

    Returns
    -------
    Case
        One crop per canonical structure present (values mapping to the same name,
        e.g. TotalSegmentator's left and right kidney cysts, are united; derived
        unions such as the AbdomenAtlas 3.0 liver are built).  Lesion names of the
        table that are absent from the image are stored as empty crops ("looked
        for, none found").  Names of bones, lungs, muscles ... go to ``case.ignored``;
        unknown names go to ``case.warnings``.

    Raises
    ------
    InputError
        Naming the file: missing/unreadable files, non-integral label values, a label
        map off the CT grid, a label map or CT without orientation (no qform/sform),
        no label names, a table that does not fit the file (:func:`check_table_fits`),
        or no known structure at all.
    """
    seg_path = Path(seg_path)
    lt = load_table(table) if table is not None else None
    labels = read_nifti(seg_path)
    require_orientation(labels)
    label_array, present = _index_labels(labels)
    unlisted = []
    if lt is None:
        lt = embedded_label_table(seg_path)
    else:
        unlisted = check_table_fits(seg_path, lt, [value for value, _, _ in present],
                                    read_embedded_label_names(seg_path))
    case_id = case_id or file_stem(seg_path)
    if ct_path is not None:
        case = case_with_ct(case_id, ct_path, dicom_series=dicom_series, dicom_resample=dicom_resample)
        _require_same_grid(case, labels, ct_path)
        note_header(case, labels)
    else:
        case = case_on_volume_grid(case_id, labels)
    case.warnings.extend(unlisted)

    source = str(seg_path)
    for value, ident, box in present:
        names = lt.names_for(value)
        if not names:
            continue  # left out by the user's table (warned above)
        crop = _crop_of_label(label_array, ident, box)
        for name in names:
            add_named_crop(case, name, crop, source, seg_path)
        del crop
    add_absent_lesions(case, lt.all_names(), source)
    if not case.structures:
        raise InputError(
            seg_path,
            f"no label maps to a known structure (table: {lt.source}); check --labels",
        )
    return case


def _name_key(name: str) -> str:
    """A label name for comparison: its canonical structure, else the normalised spelling."""
    return vocab.canonical_name(name) or vocab.normalise(name)


def check_table_fits(path, table: LabelTable, present_values, embedded: dict) -> list:
    """Raise :class:`InputError` naming ``path`` when ``table`` does not fit the label map.

    It does not fit when a label value present in the file is missing from a complete
    table (a published numbering or a ``dataset.json``: the file uses another
    numbering), or when the file carries its own label names (TotalSegmentator's
    header) that disagree with the table's: a label map read with the wrong table
    renames every structure (the stomach reported as an enlarged pancreas), so these
    are never warnings.  Returns warnings for values a user's own table leaves out.
    """
    clashes = [(v, embedded[v], table.names[v]) for v in present_values
               if v in embedded and v in table.names and _name_key(embedded[v]) != _name_key(table.names[v])]
    if clashes:
        v, own, theirs = clashes[0]
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise InputError(path, f"the label names stored in the file disagree with the label table ({table.source}): "
                               f"value {v} is '{own}' in the file but '{theirs}' in the table{more}; "
                               "leave out --labels to use the file's own names")
    missing = [v for v in present_values if not table.names_for(v)]
    if missing and not table.complete:
        return [f"{path}: label value {v} is not in the label table ({table.source}); ignored" for v in missing]
    if missing:
        shown = ", ".join(str(v) for v in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise InputError(path, f"label value{'s' if len(missing) > 1 else ''} {shown} of the file "
                               f"{'are' if len(missing) > 1 else 'is'} not in the label table ({table.source}): "
                               "the table does not fit this file; check --labels")
    return []


def embedded_label_table(path) -> LabelTable:
    """Label names stored in the NIfTI header (TotalSegmentator's CaretExtension XML).

    Raises :class:`InputError` naming ``path`` when the file has none.
    """
    names = read_embedded_label_names(path)
    if not names:
        raise InputError(
            path,
            "no label table given and none embedded in the file; pass --labels "
            "(a table name such as total, amos, abdomenatlas, abdomenatlas3, "
            "an nnU-Net dataset.json, a JSON table or a colour table file)",
        )
    return LabelTable(names, {}, source="names embedded in the file")


def read_embedded_label_names(path) -> dict:
    """``{value: name}`` from a CaretExtension ``<LabelTable>`` in the NIfTI header; {} if none.

    TotalSegmentator writes ``<Label Key="1" Red=.. ><![CDATA[spleen]]></Label>``
    entries inside ``<CaretExtension><VolumeInformation><LabelTable>``, with
    extension code 0 (30 is the code registered for Caret).
    """
    import nibabel as nib

    try:
        header = nib.load(str(path)).header
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise InputError(path, f"cannot read NIfTI header ({exc})") from None
    for ext in getattr(header, "extensions", ()):
        if ext.get_code() not in _CARET_ECODES:
            continue
        names = _parse_caret_labels(ext.get_content())
        if names:
            return names
    return {}


def _parse_caret_labels(content) -> dict:
    """Parse the label table of one CaretExtension blob; {} when it is not one."""
    if isinstance(content, str):
        content = content.encode("utf-8", "replace")
    content = bytes(content).rstrip(b"\x00 \t\r\n")
    if b"<LabelTable" not in content:
        return {}
    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        return {}
    names = {}
    for label in root.iter("Label"):
        key, name = label.get("Key"), (label.text or "").strip()
        if key is None or not key.strip().lstrip("-").isdigit() or not name:
            continue
        value = int(key)
        if value != 0:
            names[value] = name
    return names


# ------------------------------------------------------------------ label indexing

def _index_labels(vol: Volume):
    """Integer label array (canonical frame) and ``[(value, id, box)]`` for each value present.

    ``id`` is the value of that label inside the returned array (the label value
    itself, or its index after compact relabelling) and ``box`` its tight bounding
    box (tuple of slices), found in one pass with ``scipy.ndimage.find_objects``.
    """
    from scipy.ndimage import find_objects

    arr = vol.array
    if _direct_indexing_ok(arr, vol.slope, vol.inter):
        boxes = find_objects(arr)
        return arr, [(v, v, box) for v, box in enumerate(boxes, start=1) if box is not None]
    compact, values = _compact_labels(vol)
    boxes = find_objects(compact, max_label=len(values))
    return compact, [(v, i, box) for i, (v, box) in enumerate(zip(values, boxes), start=1) if box is not None]


def _direct_indexing_ok(arr: np.ndarray, slope: float, inter: float) -> bool:
    """True when stored values *are* the label values and fit find_objects directly."""
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or (slope, inter) != (1.0, 0.0):
        return False
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        return False  # negative values would be skipped silently by find_objects
    return int(arr.max()) <= _MAX_DIRECT_LABEL


def _slab_ranges(shape):
    """Ranges along canonical axis 2 that hold about :data:`_CHUNK_VOXELS` voxels each."""
    step = max(1, _CHUNK_VOXELS // max(1, shape[0] * shape[1]))
    return [(a, min(a + step, shape[2])) for a in range(0, shape[2], step)]


def _compact_labels(vol: Volume):
    """Relabel a float, scaled, negative or sparse-valued label map to 1..n.

    Returns the relabelled array (uint8/uint16/uint32, canonical frame) and the
    sorted label values ``values`` with ``values[i - 1]`` the value of id ``i``.
    Works slab by slab so temporaries stay small.
    """
    arr = vol.array
    raw = _present_raw_values(vol)
    labels = np.rint(raw.astype(np.float64) * vol.slope + vol.inter).astype(np.int64)
    values = np.unique(labels[labels != 0])
    # Raw value position -> compact id (0 for background).
    lut = np.searchsorted(values, labels) + 1
    lut[labels == 0] = 0
    dtype = np.uint8 if len(values) < 2**8 else np.uint16 if len(values) < 2**16 else np.uint32
    lut = lut.astype(dtype)
    compact = np.empty(arr.shape, dtype)
    for a, b in _slab_ranges(arr.shape):
        compact[:, :, a:b] = lut[np.searchsorted(raw, arr[:, :, a:b])]
    return compact, [int(v) for v in values]


def _present_raw_values(vol: Volume) -> np.ndarray:
    """Sorted distinct stored values; InputError at the first non-integral label value."""
    arr = vol.array
    raw = None
    for a, b in _slab_ranges(arr.shape):
        u = np.unique(arr[:, :, a:b])
        _check_integral(vol, u)
        raw = u if raw is None else np.union1d(raw, u)
    if raw is None:
        raise InputError(vol.path, "label map is empty (zero voxels)")
    return raw


def _check_integral(vol: Volume, raw_values: np.ndarray) -> None:
    scaled = raw_values.astype(np.float64) * vol.slope + vol.inter
    finite = np.isfinite(scaled)
    bad = ~finite | (np.abs(scaled - np.rint(np.where(finite, scaled, 0))) > _INTEGRAL_TOLERANCE)
    if bad.any():
        example = scaled[bad][0]
        raise InputError(
            vol.path,
            f"label map holds the non-integer value {example:g}; a label map must hold "
            "integer label values (not probabilities or an interpolated resampling)",
        )


def _crop_of_label(label_array: np.ndarray, ident: int, box) -> Crop:
    """Crop of the voxels equal to ``ident``; ``box`` is their tight bounding box."""
    mask = np.ascontiguousarray(label_array[box] == ident)
    return Crop(mask, tuple(int(s.start) for s in box))


def _require_same_grid(case: Case, labels: Volume, ct_path) -> None:
    dev = grid_deviation_mm(case.shape, case.affine, labels.shape, labels.affine)
    if dev > GRID_TOLERANCE_MM:
        what = (
            f"shape {labels.shape} vs {case.shape}" if labels.shape != case.shape
            else f"voxel positions differ by up to {dev:.3g} mm"
        )
        raise InputError(
            labels.path,
            f"label map is not on the grid of the CT {ct_path} ({what}, in canonical RAS order)",
        )

