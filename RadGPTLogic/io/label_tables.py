"""Label tables: which integer value of a multi-label image is which structure.

A table is a plain dict ``value -> name`` (value 0 is background and never listed).
Names are the ones the producing tool uses; :func:`RadGPTLogic.vocabulary.canonical_name`
maps them onto the engine's vocabulary later, so tables stay faithful to their source.

Some label maps have structures that are the *union* of several values (AbdomenAtlas
3.0 stores the liver only as its eight Couinaud segments; nnU-Net region-based
training names regions as lists of labels).  Those are kept apart from the plain
table, in :data:`DERIVED` (registry name -> ``{derived_name: [values]}``), and a
loaded table is a :class:`LabelTable` holding both.

:func:`load_table` accepts a registry name (see :data:`TABLES`), a dict, or a path to
an nnU-Net v2 ``dataset.json``, a plain JSON table ``{"1": "liver", ...}`` or a
Slicer / ITK-SNAP colour table text file.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import InputError

# --------------------------------------------------------------------------- tables

# TotalSegmentator v2, task "total" (117 classes).
# Source: wasserth/TotalSegmentator, totalsegmentator/map_to_binary.py, class_map["total"]
# (Apache-2.0).  The same names are embedded in every TotalSegmentator output file
# (CaretExtension XML), which the tests check against this table.
TOTALSEGMENTATOR_TOTAL = {
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gallbladder",
    5: "liver",
    6: "stomach",
    7: "pancreas",
    8: "adrenal_gland_right",
    9: "adrenal_gland_left",
    10: "lung_upper_lobe_left",
    11: "lung_lower_lobe_left",
    12: "lung_upper_lobe_right",
    13: "lung_middle_lobe_right",
    14: "lung_lower_lobe_right",
    15: "esophagus",
    16: "trachea",
    17: "thyroid_gland",
    18: "small_bowel",
    19: "duodenum",
    20: "colon",
    21: "urinary_bladder",
    22: "prostate",
    23: "kidney_cyst_left",
    24: "kidney_cyst_right",
    25: "sacrum",
    26: "vertebrae_S1",
    27: "vertebrae_L5",
    28: "vertebrae_L4",
    29: "vertebrae_L3",
    30: "vertebrae_L2",
    31: "vertebrae_L1",
    # 32..43: vertebrae_T12 .. vertebrae_T1; 44..50: vertebrae_C7 .. vertebrae_C1
    **{32 + n: f"vertebrae_T{12 - n}" for n in range(12)},
    **{44 + n: f"vertebrae_C{7 - n}" for n in range(7)},
    51: "heart",
    52: "aorta",
    53: "pulmonary_vein",
    54: "brachiocephalic_trunk",
    55: "subclavian_artery_right",
    56: "subclavian_artery_left",
    57: "common_carotid_artery_right",
    58: "common_carotid_artery_left",
    59: "brachiocephalic_vein_left",
    60: "brachiocephalic_vein_right",
    61: "atrial_appendage_left",
    62: "superior_vena_cava",
    63: "inferior_vena_cava",
    64: "portal_vein_and_splenic_vein",
    65: "iliac_artery_left",
    66: "iliac_artery_right",
    67: "iliac_vena_left",
    68: "iliac_vena_right",
    69: "humerus_left",
    70: "humerus_right",
    71: "scapula_left",
    72: "scapula_right",
    73: "clavicula_left",
    74: "clavicula_right",
    75: "femur_left",
    76: "femur_right",
    77: "hip_left",
    78: "hip_right",
    79: "spinal_cord",
    80: "gluteus_maximus_left",
    81: "gluteus_maximus_right",
    82: "gluteus_medius_left",
    83: "gluteus_medius_right",
    84: "gluteus_minimus_left",
    85: "gluteus_minimus_right",
    86: "autochthon_left",
    87: "autochthon_right",
    88: "iliopsoas_left",
    89: "iliopsoas_right",
    90: "brain",
    91: "skull",
    # 92..103: rib_left_1 .. rib_left_12; 104..115: rib_right_1 .. rib_right_12
    **{92 + n: f"rib_left_{n + 1}" for n in range(12)},
    **{104 + n: f"rib_right_{n + 1}" for n in range(12)},
    116: "sternum",
    117: "costal_cartilages",
}

# TotalSegmentator v2, task "liver_segments" (Couinaud segments 1-8).
# Source: wasserth/TotalSegmentator, totalsegmentator/map_to_binary.py,
# class_map["liver_segments"] (Apache-2.0).
TOTALSEGMENTATOR_LIVER_SEGMENTS = {k: f"liver_segment_{k}" for k in range(1, 9)}

# TotalSegmentator v2, task "liver_vessels".
# Source: wasserth/TotalSegmentator, totalsegmentator/map_to_binary.py,
# class_map["liver_vessels"] (Apache-2.0).
TOTALSEGMENTATOR_LIVER_VESSELS = {1: "liver_vessels", 2: "liver_tumor"}

# AbdomenAtlas 1.1 (25 classes), the numbering of its combined multi-label files.
# Source: MrGiovanni/AbdomenAtlas, AbdomenAtlas 1.1 class list (numbering as used
# by its released combined label maps; the per-structure mask files carry the names).
# Not yet checked here against an upstream file: a case folder of per-structure
# masks avoids depending on this numbering.
ABDOMENATLAS_1_1 = {
    1: "aorta",
    2: "gall_bladder",
    3: "kidney_left",
    4: "kidney_right",
    5: "liver",
    6: "pancreas",
    7: "postcava",
    8: "spleen",
    9: "stomach",
    10: "adrenal_gland_left",
    11: "adrenal_gland_right",
    12: "bladder",
    13: "celiac_trunk",
    14: "colon",
    15: "duodenum",
    16: "esophagus",
    17: "femur_left",
    18: "femur_right",
    19: "hepatic_vessel",
    20: "intestine",
    21: "lung_left",
    22: "lung_right",
    23: "portal_vein_and_splenic_vein",
    24: "prostate",
    25: "rectum",
}

# AbdomenAtlas 3.0 sub-segmenter label map (RadGPT's OrganSubSegmenter output):
# the AbdomenAtlas 1.1 classes without liver and pancreas, followed by the liver's
# Couinaud segments and the pancreas' head/body/tail.
# Source: MrGiovanni/RadGPT, generate_reports/organ_masks (nnU-Net model
# "nnUNetOrgansAndSubSegments"); the numbering is that model's dataset.json labels.
# Not yet checked here against that dataset.json: pass the model's own dataset.json
# with --labels when in doubt.
ABDOMENATLAS_3_0 = {
    1: "aorta",
    2: "gall_bladder",
    3: "kidney_left",
    4: "kidney_right",
    5: "postcava",
    6: "spleen",
    7: "stomach",
    8: "adrenal_gland_left",
    9: "adrenal_gland_right",
    10: "bladder",
    11: "celiac_trunk",
    12: "colon",
    13: "duodenum",
    14: "esophagus",
    15: "femur_left",
    16: "femur_right",
    17: "hepatic_vessel",
    18: "intestine",
    19: "lung_left",
    20: "lung_right",
    21: "portal_vein_and_splenic_vein",
    22: "prostate",
    23: "rectum",
    **{24 + n: f"liver_segment_{n + 1}" for n in range(8)},
    32: "pancreas_head",
    33: "pancreas_body",
    34: "pancreas_tail",
}
# In the 3.0 map the whole organs exist only as unions of their parts.
ABDOMENATLAS_3_0_DERIVED = {
    "liver": list(range(24, 32)),
    "pancreas": [32, 33, 34],
}

# AMOS22 (15 abdominal organs).
# Source: AMOS22 challenge label definitions (dataset.json of the AMOS release).
AMOS = {
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gall_bladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "postcava",
    10: "pancreas",
    11: "adrenal_gland_right",
    12: "adrenal_gland_left",
    13: "duodenum",
    14: "bladder",
    15: "prostate_uterus",
}

# Registry: the names accepted by `--labels` (compared case-insensitively).
TABLES = {
    "total": TOTALSEGMENTATOR_TOTAL,
    "totalsegmentator": TOTALSEGMENTATOR_TOTAL,
    "liver_segments": TOTALSEGMENTATOR_LIVER_SEGMENTS,
    "liver_vessels": TOTALSEGMENTATOR_LIVER_VESSELS,
    "abdomenatlas": ABDOMENATLAS_1_1,
    "abdomenatlas1.1": ABDOMENATLAS_1_1,
    "abdomenatlas3": ABDOMENATLAS_3_0,
    "abdomenatlas3.0": ABDOMENATLAS_3_0,
    "amos": AMOS,
}

# Registry name -> {derived structure name: [label values whose union it is]}.
DERIVED = {
    "abdomenatlas3": ABDOMENATLAS_3_0_DERIVED,
    "abdomenatlas3.0": ABDOMENATLAS_3_0_DERIVED,
}

# nnU-Net and colour tables name these values, but they are not structures.
_NOT_STRUCTURES = {"background", "ignore", "clear label", "clear_label", "unlabeled", "unlabelled"}


# ---------------------------------------------------------------------- LabelTable

@dataclass
class LabelTable:
    """A loaded label table.

    Attributes
    ----------
    names : dict int -> str
        Label value -> structure name as the source spells it (no value 0).
    unions : dict str -> list of int
        Structure name -> label values whose union is that structure (derived
        organs, nnU-Net regions).  A value may take part in several unions and
        also have its own name.
    source : str
        Where the table came from (registry name, file path, ``embedded``), for messages.
    complete : bool
        The table names every label its numbering has (a published scheme, an nnU-Net
        ``dataset.json``): a value it lacks means the file uses another numbering.
        User tables may name a subset on purpose.
    """

    names: dict
    unions: dict = field(default_factory=dict)
    source: str = "table"
    complete: bool = False

    def names_for(self, value: int) -> list:
        """Every structure name that label ``value`` is part of (own name first)."""
        out = [self.names[value]] if value in self.names else []
        out += [name for name, values in self.unions.items() if value in values]
        return out

    def all_names(self) -> list:
        """All structure names the table can produce, own names then union names."""
        return list(self.names.values()) + list(self.unions)

    def values(self) -> set:
        """All label values the table knows."""
        out = set(self.names)
        for values in self.unions.values():
            out.update(values)
        return out


# ------------------------------------------------------------------------- loading

def load_table(spec) -> LabelTable:
    """Load a label table from a registry name, a dict, or a file.

    Parameters
    ----------
    spec : str, os.PathLike, Mapping or LabelTable
        * a name from :data:`TABLES` (case-insensitive), e.g. ``"total"``, ``"amos"``;
        * a dict ``{value: name}`` (keys int or digit strings) or ``{name: value}`` /
          ``{name: [values]}`` (nnU-Net style);
        * a path to an nnU-Net v2 ``dataset.json`` (its ``"labels"``: name -> int, or
          name -> list of ints for a region that is the union of those labels);
        * a path to a plain JSON table ``{"1": "liver", ...}``;
        * a path to a Slicer colour table (``value name r g b a`` per line) or an
          ITK-SNAP label description (``value r g b a vis mesh "name"``); ``#`` starts
          a comment.

    Raises
    ------
    InputError
        Naming the file (or the spec) for an unknown name, a missing file or a
        malformed table.
    """
    if isinstance(spec, LabelTable):
        return spec
    if isinstance(spec, Mapping):
        return _table_from_mapping(spec, source="dict", where=None)
    if not isinstance(spec, (str, os.PathLike)):
        raise InputError(None, f"label table must be a name, a file or a dict, not {type(spec).__name__}")
    key = os.fspath(spec).strip().lower()
    if key in TABLES:
        return LabelTable(dict(TABLES[key]), _copy_unions(DERIVED.get(key, {})), source=key, complete=True)
    path = Path(spec)
    if not path.is_file():
        known = ", ".join(sorted(TABLES))
        raise InputError(path, f"not a known label table name ({known}) and no such file")
    if path.suffix.lower() == ".json":
        return _table_from_json(path)
    return _table_from_colour_file(path)


def _copy_unions(unions: Mapping) -> dict:
    return {name: list(values) for name, values in unions.items()}


def _registered_derived(table: Mapping) -> dict:
    """Derived unions of a registry table passed in as the dict object itself."""
    for key, registered in TABLES.items():
        if registered is table:
            return _copy_unions(DERIVED.get(key, {}))
    return {}


def _table_from_json(path: Path) -> LabelTable:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a readable JSON label table ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("labels"), dict):
        # nnU-Net v2 dataset.json: "labels" is name -> value (or region list), every class listed.
        table = _table_from_mapping(data["labels"], source=str(path), where=path)
        table.complete = True
        return table
    if not isinstance(data, dict):
        raise InputError(path, "JSON label table must be an object such as {\"1\": \"liver\"}")
    return _table_from_mapping(data, source=str(path), where=path)


def _table_from_mapping(data: Mapping, source: str, where) -> LabelTable:
    """Read ``{value: name}`` or ``{name: value | [values]}``, whichever ``data`` is."""
    if not data:
        raise InputError(where, "label table is empty")
    if all(_as_label_value(k) is not None for k in data):
        return _value_to_name(data, source, where)
    return _name_to_value(data, source, where)


def _value_to_name(data: Mapping, source: str, where) -> LabelTable:
    names = {}
    for key, name in data.items():
        value = _as_label_value(key)
        if not isinstance(name, str) or not name.strip():
            raise InputError(where, f"label {key}: name must be a non-empty string, not {name!r}")
        if value == 0 or name.strip().lower() in _NOT_STRUCTURES:
            continue  # background
        names[value] = name.strip()
    return LabelTable(names, _registered_derived(data), source=source)


def _name_to_value(data: Mapping, source: str, where) -> LabelTable:
    """nnU-Net ``labels``: name -> int, or name -> list of ints (a region = their union)."""
    names: dict[int, str] = {}
    unions: dict[str, list[int]] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not name.strip():
            raise InputError(where, f"label name must be a non-empty string, not {name!r}")
        name = name.strip()
        if name.lower() in _NOT_STRUCTURES:
            continue
        if isinstance(value, (list, tuple)):
            values = [_as_label_value(v) for v in value]
            if not values or any(v is None for v in values):
                raise InputError(where,
                                 f"label '{name}': a region must be a list of integer label values, not {value!r}")
            unions[name] = sorted(set(v for v in values if v is not None and v != 0))  # None: refused above
            continue
        v = _as_label_value(value)
        if v is None:
            raise InputError(where, f"label '{name}': value must be an integer or a list of integers, not {value!r}")
        if v == 0:
            continue
        if v in names:
            raise InputError(where, f"label value {v} is given twice ('{names[v]}' and '{name}')")
        names[v] = name
    return LabelTable(names, unions, source=source)


def _as_label_value(x) -> int | None:
    """``x`` as an int label value (int, integral float or digit string), else None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and x.is_integer():
        return int(x)
    if isinstance(x, str):
        s = x.strip()
        if s.lstrip("+-").isdigit():
            return int(s)
    return None


def _table_from_colour_file(path: Path) -> LabelTable:
    """Slicer colour table or ITK-SNAP label description file."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(path, f"cannot read label table ({exc})") from None
    names: dict[int, str] = {}
    for lineno, line in enumerate(lines, start=1):
        entry = _parse_colour_line(line, path, lineno)
        if entry is None:
            continue
        value, name = entry
        if value == 0 or name.lower() in _NOT_STRUCTURES:
            continue
        if value in names and names[value] != name:
            raise InputError(path, f"line {lineno}: label value {value} is given twice ('{names[value]}' and '{name}')")
        names[value] = name
    if not names:
        raise InputError(path, "no label entries found (expected lines 'value name r g b a')")
    return LabelTable(names, {}, source=str(path))


def _parse_colour_line(line: str, path: Path, lineno: int):
    """(value, name) of one colour-table line, or None for blank/comment lines."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as exc:
        raise InputError(path, f"line {lineno}: cannot parse '{text}' ({exc})") from None
    if not tokens:
        return None
    value = _as_label_value(tokens[0])
    if value is None or len(tokens) < 2:
        raise InputError(path, f"line {lineno}: expected 'value name r g b a', found '{text}'")
    if '"' in text or "'" in text:
        # ITK-SNAP: IDX R G B A VIS MSH "LABEL": the quoted name comes last.
        name = tokens[-1]
    elif len(tokens) >= 6:
        # Slicer: value name r g b a (a name may hold spaces in hand-written files).
        name = " ".join(tokens[1:-4])
    else:
        name = " ".join(tokens[1:])
    if not name.strip():
        raise InputError(path, f"line {lineno}: empty structure name")
    return value, name.strip()
