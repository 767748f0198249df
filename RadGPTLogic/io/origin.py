"""How each structure's mask was made, for the DICOM segment algorithm type.

DICOM SEG says of every segment whether an algorithm made it (``AUTOMATIC``), an
algorithm and a person (``SEMIAUTOMATIC``) or a person (``MANUAL``).  A case folder
records what is known in two optional files:

* ``segmentation.json``, written by the segmentation stage next to the masks it
  predicts: ``{"structures": {"<name>": {"model": "...", "version": "...",
  "sha256": "<sha256 of segmentations/<name>.nii.gz as written>"}, ...}}`` (a list
  of names is read too).  Every structure listed is model output.
* ``import.json``, written by ``radgpt import`` (:func:`import_record`): the label
  file and label table the masks came from, the origin that table implies
  (:data:`TABLE_ORIGINS`: TotalSegmentator output is model output, AMOS an expert
  annotation, AbdomenAtlas AI predictions revised by annotators) and the sha256 of
  each mask file written.

The rule, first match wins, per structure:

1. listed in ``segmentation.json``: ``AUTOMATIC``; ``SEMIAUTOMATIC`` when the mask
   file's sha256 is recorded and differs now (edited after the model wrote it);
2. listed in ``import.json`` with a known origin: that origin (``AUTOMATIC``,
   ``SEMIAUTOMATIC`` or ``MANUAL``); automatic masks whose file changed since the
   import become ``SEMIAUTOMATIC``, manual ones stay ``MANUAL``;
3. anything else (masks whose making nothing records, Slicer files, tables of
   unknown origin): ``MANUAL``, the user's own masks, and the export says so.

A caller that knows better (the Slicer module, after edits in the Segment Editor)
passes algorithm types to :func:`~RadGPTLogic.io.dicom_export.export_dicom` itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SEGMENTATION_FILE = "segmentation.json"
IMPORT_FILE = "import.json"
IMPORT_FORMAT = "radgpt-import/1"

AUTOMATIC, SEMIAUTOMATIC, MANUAL = "AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"

# Label table (``--labels`` registry name, or how the table was found) -> (algorithm
# type, algorithm name).  Tables not listed (dataset.json, JSON or colour tables,
# Slicer files) have no known origin.
TABLE_ORIGINS = {
    "total": (AUTOMATIC, "TotalSegmentator"),
    "totalsegmentator": (AUTOMATIC, "TotalSegmentator"),
    "liver_segments": (AUTOMATIC, "TotalSegmentator"),
    "liver_vessels": (AUTOMATIC, "TotalSegmentator"),
    "names embedded in the file": (AUTOMATIC, "TotalSegmentator"),  # its CaretExtension label XML
    "amos": (MANUAL, None),
    "abdomenatlas": (SEMIAUTOMATIC, "AbdomenAtlas annotation pipeline"),
    "abdomenatlas1.1": (SEMIAUTOMATIC, "AbdomenAtlas annotation pipeline"),
    "abdomenatlas3": (SEMIAUTOMATIC, "AbdomenAtlas annotation pipeline"),
    "abdomenatlas3.0": (SEMIAUTOMATIC, "AbdomenAtlas annotation pipeline"),
}


@dataclass(frozen=True)
class MaskOrigin:
    """Segment algorithm type of one structure, the algorithm (name, version) where
    one was involved, and the rule that decided."""

    algorithm_type: str
    algorithm_name: str | None = None
    algorithm_version: str | None = None
    why: str = ""


def case_folder_of(case) -> Path | None:
    """The case folder a loaded case's masks came from (``<dir>/segmentations/*.nii*``), or None."""
    for entries in case.sources.values():
        for entry in entries:
            path = entry.get("path") if isinstance(entry, dict) else None
            if path and Path(path).parent.name == "segmentations":
                return Path(path).parent.parent
    return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _segmentation_entries(case_dir: Path) -> dict:
    data = _read_json(case_dir / SEGMENTATION_FILE)
    if not isinstance(data, dict):
        return {}
    structures = data.get("structures")
    default = {k: data[k] for k in ("model", "version") if isinstance(data.get(k), str)}
    if isinstance(structures, list):
        return {str(n): dict(default) for n in structures}
    if isinstance(structures, dict):
        return {str(n): {**default, **(e if isinstance(e, dict) else {})} for n, e in structures.items()}
    return {}


def _current_hashes(case, name: str) -> set:
    return {e["sha256"] for e in case.sources.get(name, []) if isinstance(e, dict) and e.get("sha256")}


def mask_origins(case, case_dir=None) -> dict[str, MaskOrigin]:
    """Structure name -> :class:`MaskOrigin` for every structure of ``case`` (see the module rule).

    ``case_dir`` defaults to the folder the case was loaded from (None for a case
    built in memory: every structure is then ``MANUAL`` unless a caller says otherwise).
    """
    case_dir = Path(case_dir) if case_dir is not None else case_folder_of(case)
    model = _segmentation_entries(case_dir) if case_dir is not None else {}
    record = _read_json(case_dir / IMPORT_FILE) if case_dir is not None else None
    imported = record.get("structures", {}) if isinstance(record, dict) else {}
    table_type = record.get("algorithm_type") if isinstance(record, dict) else None
    table_name = record.get("algorithm_name") if isinstance(record, dict) else None
    label_table = record.get("label_table") if isinstance(record, dict) else None
    out: dict[str, MaskOrigin] = {}
    for name in case.structures:
        now = _current_hashes(case, name)
        if name in model:
            entry = model[name]
            recorded = entry.get("sha256")
            edited = bool(recorded) and bool(now) and recorded not in now
            out[name] = MaskOrigin(
                SEMIAUTOMATIC if edited else AUTOMATIC, entry.get("model") or "segmentation model",
                entry.get("version"),
                f"{SEGMENTATION_FILE}: model output" + (", edited since" if edited else ""))
            continue
        entry = imported.get(name) if isinstance(imported, dict) else None
        if isinstance(entry, dict) and table_type in (AUTOMATIC, SEMIAUTOMATIC, MANUAL):
            recorded = entry.get("sha256")
            edited = bool(recorded) and bool(now) and recorded not in now
            kind = SEMIAUTOMATIC if (edited and table_type == AUTOMATIC) else table_type
            out[name] = MaskOrigin(kind, table_name if kind != MANUAL else None, None,
                                   f"{IMPORT_FILE}: {label_table}" + (", edited since" if edited else ""))
            continue
        out[name] = MaskOrigin(MANUAL, None, None, "no record of an algorithm: taken as the user's own masks")
    return out


def import_record(seg_path, label_table: str | None, manifest: dict) -> str:
    """The ``import.json`` text for a case folder written by ``radgpt import``.

    ``label_table`` is the table's source (a registry name, ``names embedded in the
    file``, a path, or None for a Slicer file); ``manifest`` the written folder's
    manifest (relative path -> sha256), from which each mask's hash is taken.
    """
    key = str(label_table or "").strip().lower()
    kind, algorithm = TABLE_ORIGINS.get(key, (None, None))
    structures = {}
    for rel, sha in sorted(manifest.items()):
        if rel.startswith("segmentations/") and rel.endswith(".nii.gz"):
            structures[rel[len("segmentations/"):-len(".nii.gz")]] = {"sha256": sha}
    record = {
        "format": IMPORT_FORMAT,
        "source": Path(seg_path).name,
        "label_table": label_table,
        "algorithm_type": kind,
        "algorithm_name": algorithm,
        "structures": structures,
    }
    return json.dumps(record, indent=2) + "\n"


__all__ = ["SEGMENTATION_FILE", "IMPORT_FILE", "AUTOMATIC", "SEMIAUTOMATIC", "MANUAL", "TABLE_ORIGINS",
           "MaskOrigin", "mask_origins", "case_folder_of", "import_record"]
