"""``radgpt export-triplets``: a CT-mask-report dataset from ``radgpt batch`` outputs.

Layout of the dataset (``DATASET``)::

    DATASET/
      README.md                 what every column means, how the dataset was built
      metadata.csv              one row per case (:data:`METADATA_COLUMNS`)
      metadata.jsonl            the same rows with native JSON types, plus report text,
                                narrative text, per-lesion facts and input hashes
      phases.csv                case_id,phase: the phase each report was made with
                                (``radgpt batch DATASET --phase-csv DATASET/phases.csv``
                                re-makes every report.txt byte for byte)
      reports.csv               one row per case, AbdomenAtlas 3.0 style (:mod:`.report_tables`)
      findings_table.parquet    a row per organ and per lesion (.csv without pyarrow)
      <case_id>/
        ct.nii.gz               (ct.nii when the case had an uncompressed CT; absent without CT)
        segmentations/*.nii.gz  every mask file of the case folder
        report.txt              the structured report
        findings.json           the findings the report was rendered from
        narrative.txt           only with --narrative, see below

Which cases: those ``OUT/batch_summary.json`` lists as ``ok`` or ``skipped`` (skipped =
ok in an earlier run and still up to date).  Unless ``verify=False``, every input
the findings were made from is hashed again and compared with
``provenance.inputs``; a case whose CT or masks changed since its report (or gained
or lost a mask) is left out with a warning, so a report is never paired with other
masks.  findings.json and report.txt must also be the outputs of one run (each
matches the SHA-256 that the output folder's manifest recorded when they were
written together); a pair that does not, or a folder without a manifest (written by
an older version), is left out: rerun ``radgpt batch``.

Lesion counts of an organ whose lesions were not assessed (no lesion mask for it:
findings.json ``lesions_assessed``) are empty in the metadata, not 0.

CT and masks are hard links where the file system allows (else copies), copies
with ``mode="copy"``, or absolute symbolic links with ``mode="symlink"``; the small
text files are always copied, so later batch runs cannot change the dataset.

``narrative=True`` adds ``narrative.txt`` when ``narrative_check.json`` says
``accepted`` *and* the narrative still passes the fact check against the exported
findings.json (a narrative left over from older findings is not exported).

The dataset appears at once: it is built in a hidden temporary folder beside
``DATASET`` and renamed into place.  A non-empty ``DATASET`` is refused unless
``update=True``, which keeps its other cases and adds or replaces the exported
ones (the old and the new dataset are swapped by two renames).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..findings import FindingsDict, LesionEntry
from .batch.discovery import discover_cases
from .batch.resume import input_changes, recorded_inputs
from .report_tables import csv_text

LESION_ORGANS = ("liver", "pancreas", "kidney")
PHASES_CSV = "phases.csv"
VOLUME_ORGANS = ("liver", "spleen", "pancreas", "kidney_left", "kidney_right")

METADATA_COLUMNS = (
    "case_id", "phase", "lesions_assessed", "organs_with_lesions", "organs_with_tumors",
    *(f"n_lesions_{o}" for o in LESION_ORGANS),
    *(f"largest_lesion_mm_{o}" for o in LESION_ORGANS),
    "t_stage", "resectability",
    *(f"{o}_volume_ml" for o in VOLUME_ORGANS),
    "liver_steatosis", "pancreas_steatosis", "has_ct",
    "report_path", "narrative_path", "software_version", "inputs_digest",
)

COLUMN_DOC = {
    "case_id": "case folder name (AbdomenAtlas BDMAP id or any)",
    "phase": "contrast phase used for the report: non-contrast, arterial, venous, delayed or unknown "
             "(also in phases.csv; `radgpt report <case_id> --phase <phase>` reproduces report.txt)",
    "lesions_assessed": "organs (liver, pancreas, kidney) whose lesions were assessed: the case had at least one "
                        "lesion mask for the organ (possibly empty); ';'-separated in the CSV, a list in the JSONL",
    "organs_with_lesions": "organs (liver, pancreas, kidney) with at least one reported lesion of any kind; "
                           "';'-separated in the CSV, a list in the JSONL",
    "organs_with_tumors": "organs with at least one lesion that is not a cyst (kind lesion, tumor, pdac or pnet)",
    "n_lesions_liver": "number of reported lesion components in the liver (all kinds, cysts included); "
                       "empty when the liver's lesions were not assessed (no lesion mask), which is not 0",
    "n_lesions_pancreas": "same for the pancreas",
    "n_lesions_kidney": "same for both kidneys",
    "largest_lesion_mm_liver": "largest WHO longest axial diameter (mm, unrounded, as in findings.json) among "
                               "the liver's lesions; empty without lesions or when not assessed",
    "largest_lesion_mm_pancreas": "same for the pancreas",
    "largest_lesion_mm_kidney": "same for the kidneys",
    "t_stage": "highest AJCC 8th T stage among staged (solid pancreatic) lesions; empty when none was staged",
    "resectability": "least favourable NCCN resectability among staged lesions "
                     "(resectable < borderline < locally_advanced); empty when not assessed",
    "liver_volume_ml": "organ volume in mL; empty when the mask is absent or touches the scan edge",
    "spleen_volume_ml": "same for the spleen",
    "pancreas_volume_ml": "same for the pancreas",
    "kidney_left_volume_ml": "same for the left kidney",
    "kidney_right_volume_ml": "same for the right kidney",
    "liver_steatosis": "true/false where the phase allows a judgement (see findings.json steatosis_rule), else empty",
    "pancreas_steatosis": "fatty pancreas: true/false where the phase allows a judgement, else empty",
    "has_ct": "true when the case has a CT (else HU-based fields are empty)",
    "report_path": "structured report, relative to the dataset folder",
    "narrative_path": "accepted LLM narrative, relative to the dataset folder; empty when not exported",
    "software_version": "radgpt version that computed findings.json",
    "inputs_digest": "sha256 of the JSON list of [relative input path, sha256] pairs (sorted) from "
                     "findings.json provenance.inputs: equal digests mean identical CT and masks",
}

_T_RE = re.compile(r"^T(is|\d)([a-c]?)", re.I)
_RESECTABILITY_ORDER = {"resectable": 0, "borderline": 1, "locally_advanced": 2}


@dataclass
class ExportResult:
    dest: Path
    exported: list = field(default_factory=list)   # case ids written by this export
    excluded: list = field(default_factory=list)   # (case_id, reason)
    kept: list = field(default_factory=list)       # case ids kept from the existing dataset (update)
    copied_instead_of_linked: int = 0


class _LeaveOut(Exception):
    pass


# ============================================================================ metadata


def _t_rank(stage: str | None) -> tuple:
    m = _T_RE.match(stage or "")
    if not m:
        return (-1, "")
    number = 0 if m.group(1).lower() == "is" else int(m.group(1))
    return (number, m.group(2).lower())


def inputs_digest(findings: FindingsDict) -> str | None:
    """sha256 of ``json.dumps(sorted([relative path, sha256] ...))`` from provenance.inputs."""
    recorded = recorded_inputs(findings)
    if recorded is None:
        return None
    pairs = sorted([rel, sha] for rel, sha in recorded.items())
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def lesions_assessed(findings: FindingsDict) -> dict:
    """``{organ: bool}``: were the organ's lesions assessed (a lesion mask was given)?

    From findings.json's ``lesions_assessed``; findings written before that key
    existed count as assessed (the earlier behaviour), as does an organ it omits.
    """
    recorded = findings.get("lesions_assessed")
    recorded = recorded if isinstance(recorded, dict) else {}
    return {o: recorded.get(o) is not False for o in LESION_ORGANS}


def metadata_from_findings(findings: FindingsDict) -> dict:
    """The findings-derived metadata columns of one case (native types).

    Lesion counts and sizes of an organ whose lesions were not assessed are None
    (empty in the CSV), never 0: no lesion mask is not a lesion-free organ.
    """
    lesions = findings.get("lesions") or []
    organs = findings.get("organs") or {}
    assessed = lesions_assessed(findings)
    row: dict[str, Any] = {"case_id": findings.get("case_id"), "phase": findings.get("phase")}
    row["lesions_assessed"] = [o for o in LESION_ORGANS if assessed[o]]
    row["organs_with_lesions"] = [o for o in LESION_ORGANS if any(l.get("organ") == o for l in lesions)]
    row["organs_with_tumors"] = [o for o in LESION_ORGANS
                                 if any(l.get("organ") == o and l.get("kind") != "cyst" for l in lesions)]
    for o in LESION_ORGANS:
        count = sum(1 for l in lesions if l.get("organ") == o)
        row[f"n_lesions_{o}"] = count if assessed[o] or count else None
    for o in LESION_ORGANS:
        sizes = [l["longest_diameter_mm"] for l in lesions
                 if l.get("organ") == o and l.get("longest_diameter_mm") is not None]
        row[f"largest_lesion_mm_{o}"] = max(sizes) if sizes else None
    staged = [l for l in lesions if l.get("t_stage")]
    row["t_stage"] = max(staged, key=lambda l: _t_rank(l["t_stage"]))["t_stage"] if staged else None
    graded = [r for r in (l.get("resectability") for l in lesions) if r is not None and r in _RESECTABILITY_ORDER]
    row["resectability"] = max(graded, key=_RESECTABILITY_ORDER.__getitem__) if graded else None
    for o in VOLUME_ORGANS:
        row[f"{o}_volume_ml"] = (organs.get(o) or {}).get("volume_ml")
    row["liver_steatosis"] = (organs.get("liver") or {}).get("steatosis")
    row["pancreas_steatosis"] = (organs.get("pancreas") or {}).get("steatosis")
    row["has_ct"] = "ct" in ((findings.get("provenance") or {}).get("inputs") or {})
    row["software_version"] = (findings.get("provenance") or {}).get("version")
    row["inputs_digest"] = inputs_digest(findings)
    return row


def _lesion_summary(lesion: LesionEntry) -> dict:
    keys = ("id", "organ", "side", "kind", "longest_diameter_mm", "perpendicular_diameter_mm", "volume_ml",
            "mean_hu", "attenuation", "slice_index", "location", "vessel_contact_deg", "t_stage", "resectability")
    return {k: lesion.get(k) for k in keys}


def metadata_csv(rows: list) -> str:
    return csv_text(METADATA_COLUMNS, rows)


def _readme(rows: list, mode: str, narrative: bool, verify: bool) -> str:
    from .. import __version__

    lines = [
        "# CT-mask-report triplets",
        "",
        f"Built by `radgpt export-triplets` (radgpt {__version__}) on {time.strftime('%Y-%m-%d %H:%M:%S %z')}: "
        f"{len(rows)} case(s).",
        "",
        "## Layout",
        "",
        "```",
        "<case_id>/ct.nii.gz               the CT (ct.nii if the source was uncompressed; absent without CT)",
        "<case_id>/segmentations/*.nii.gz  one binary mask per structure (AbdomenAtlas 3.0 names)",
        "<case_id>/report.txt              the structured report, rendered from findings.json",
        "<case_id>/findings.json           every measurement, with provenance (software, input hashes, rules)",
        "<case_id>/narrative.txt           the fact-checked LLM narrative (only where accepted)",
        "metadata.csv                      one row per case (columns below)",
        "metadata.jsonl                    the same rows as JSON, plus report_text, narrative_text, lesions, inputs",
        "phases.csv                        case_id,phase: the phase each report was made with",
        "reports.csv                       BDMAP ID, structured report, narrative report (AbdomenAtlas 3.0 style)",
        "findings_table.parquet            one row per organ and per lesion (findings_table.csv without pyarrow)",
        "```",
        "",
        "To re-make a case's report from the dataset: `radgpt report <case_id> --out OUT --phase <phase>` with "
        "the case's phase from phases.csv (or every case: `radgpt batch . --out OUT --phase-csv phases.csv`); "
        "report.txt comes out identical with the same radgpt version and rules.",
        "",
        "CT and masks are " + {
            "hardlink": "hard links to the source files where possible (else copies): a source file rewritten "
                        "in place changes the dataset too; files replaced by a new file do not",
            "copy": "copies of the source files",
            "symlink": "symbolic links (absolute paths) to the source files: the sources must stay in place",
        }[mode] + ". " + (
            "Each case's CT and masks were re-hashed and matched the hashes recorded in findings.json."
            if verify else "Input hashes were not re-checked at export (--no-verify).") + (
            " Narratives: exported only when the narrative check accepted them and they still pass the fact "
            "check against findings.json." if narrative else ""),
        "",
        "## metadata.csv columns",
        "",
        "Empty cells mean null (not measured or not applicable); booleans are `true`/`false`; "
        "numbers are unrounded, exactly as in findings.json.",
        "",
        "| column | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{c}` | {COLUMN_DOC[c]} |" for c in METADATA_COLUMNS]
    lines += [
        "",
        "metadata.jsonl adds: `report_text` (the structured report), `narrative_text` (or null), `lesions` "
        "(per lesion: id, organ, side, kind, diameters, volume, HU, attenuation, slice index, location, "
        "vessel contact, T stage, resectability) and `inputs` (relative input path -> sha256).",
        "",
        "Measurement rules: see findings.json `provenance.rules` and the project's docs/MEASUREMENT.md.",
        "",
    ]
    return "\n".join(lines)


# ============================================================================ files


def _place(src: Path, dst: Path, mode: str, result: ExportResult) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        os.symlink(src.resolve(), dst)
        return
    if mode == "hardlink":
        try:
            os.link(src, dst)
            return
        except OSError:
            result.copied_instead_of_linked += 1
    shutil.copy2(src, dst)


def _replicate(src_dir: Path, dst_dir: Path) -> None:
    """Copy an existing dataset case folder cheaply: symlinks as symlinks, files as hard links (else copies)."""
    for dirpath, dirnames, filenames in os.walk(src_dir):
        rel = Path(dirpath).relative_to(src_dir)
        (dst_dir / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            src, dst = Path(dirpath) / name, dst_dir / rel / name
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def _export_case(row: dict, out: Path, case_dir: Path, tmp: Path, mode: str, narrative: bool, verify: bool,
                 result: ExportResult) -> dict:
    case_id = row["case_id"]
    out_case = out / case_id
    try:
        findings_bytes = (out_case / "findings.json").read_bytes()
        report_bytes = (out_case / "report.txt").read_bytes()
    except OSError as exc:
        raise _LeaveOut(f"{out_case}: batch output missing ({exc.strerror or exc})") from None
    mixed = _not_one_run(out_case, {"findings.json": findings_bytes, "report.txt": report_bytes})
    if mixed:
        raise _LeaveOut(f"{out_case}: findings.json and report.txt are not the outputs of one run ({mixed}); "
                        "rerun radgpt batch")
    try:
        findings_text, report_text = findings_bytes.decode("utf-8"), report_bytes.decode("utf-8")
        findings = json.loads(findings_text)
    except ValueError:
        raise _LeaveOut(f"{out_case / 'findings.json'}: not valid JSON") from None
    if findings.get("case_id") != case_id:
        raise _LeaveOut(f"{out_case / 'findings.json'}: case_id {findings.get('case_id')!r} is not {case_id!r}")
    if not case_dir.is_dir():
        raise _LeaveOut(f"{case_dir}: case folder not found")
    if verify:
        changes = input_changes(case_dir, findings)
        if changes:
            raise _LeaveOut(f"{case_dir}: inputs differ from those of the report ({'; '.join(changes[:3])}"
                            f"{' ...' if len(changes) > 3 else ''}); rerun radgpt batch")

    dest_case = tmp / case_id
    dest_case.mkdir()
    from ..io.casefolder import case_folder_files

    try:
        files = case_folder_files(case_dir)
    except InputError as exc:
        raise _LeaveOut(exc.one_line()) from None
    if files.ct is not None:
        _place(files.ct, dest_case / files.ct.name, mode, result)
    for mask in files.masks:
        _place(mask.path, dest_case / mask.relative, mode, result)
    (dest_case / "findings.json").write_text(findings_text, encoding="utf-8")
    (dest_case / "report.txt").write_text(report_text, encoding="utf-8")

    narrative_text = None
    if narrative:
        narrative_text = _accepted_narrative(out_case, findings)
        if narrative_text is not None:
            (dest_case / "narrative.txt").write_text(narrative_text, encoding="utf-8")

    meta = metadata_from_findings(findings)
    meta["report_path"] = f"{case_id}/report.txt"
    meta["narrative_path"] = f"{case_id}/narrative.txt" if narrative_text is not None else None
    meta["report_text"] = report_text
    meta["narrative_text"] = narrative_text
    meta["lesions"] = [_lesion_summary(l) for l in findings.get("lesions") or []]
    meta["inputs"] = recorded_inputs(findings)
    return {**{k: meta.get(k) for k in METADATA_COLUMNS}, **meta}  # the CSV's column order first


def _not_one_run(out_case: Path, contents: dict) -> str:
    """Why ``contents`` (name -> bytes read) are not files the tool wrote together into
    ``out_case`` (empty when they are): each must match its SHA-256 in the folder's manifest."""
    from ..io.atomic import read_manifest

    manifest = read_manifest(out_case)
    if not manifest:
        return "no output manifest: written by an older version"
    problems = [f"{name} not in the manifest" if name not in manifest else f"{name} changed"
                for name, data in sorted(contents.items())
                if manifest.get(name) != hashlib.sha256(data).hexdigest()]
    return "; ".join(problems)


def _phases_csv(rows: list) -> str:
    """``case_id,phase`` of every case: ``radgpt batch DATASET --phase-csv DATASET/phases.csv`` re-makes the reports."""
    return csv_text(("case_id", "phase"), ([row["case_id"], row.get("phase") or "unknown"] for row in rows))


def _write_dataset_tables(folder: Path, case_ids: list) -> None:
    """reports.csv and the findings table of the dataset, from the very files it holds."""
    from .report_tables import write_tables

    def cases():
        for case_id in case_ids:
            case = folder / case_id
            narrative = case / "narrative.txt"
            yield (json.loads((case / "findings.json").read_text(encoding="utf-8")),
                   (case / "report.txt").read_text(encoding="utf-8"),
                   narrative.read_text(encoding="utf-8") if narrative.is_file() else None)

    write_tables(folder, cases())


def _accepted_narrative(out_case: Path, findings: FindingsDict) -> str | None:
    check_path, text_path = out_case / "narrative_check.json", out_case / "narrative.txt"
    if not (check_path.is_file() and text_path.is_file()):
        return None
    try:
        check_bytes, text_bytes = check_path.read_bytes(), text_path.read_bytes()
        status = json.loads(check_bytes.decode("utf-8")).get("status")
        text = text_bytes.decode("utf-8")
    except (OSError, ValueError, AttributeError):
        return None
    if status != "accepted" or _not_one_run(out_case, {"narrative.txt": text_bytes,
                                                         "narrative_check.json": check_bytes}):
        return None
    from ..report.factcheck import check_narrative

    return text if check_narrative(text, findings).ok else None


# ============================================================================ export


def _read_summary(out: Path) -> list:
    path = out / "batch_summary.json"
    if not path.is_file():
        raise InputError(path, "no batch summary (run radgpt batch ROOT --out OUT first)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        cases = summary["cases"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(path, "not a radgpt batch summary (unreadable JSON or no 'cases')") from None
    return cases


def _read_jsonl(path: Path) -> dict:
    rows = {}
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["case_id"]] = row
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"cannot read the existing dataset's metadata ({exc})") from None
    return rows


def export_triplets(out, dest, *, cases_root=None, mode: str = "hardlink", narrative: bool = False,
                    update: bool = False, verify: bool = True, warn=None) -> ExportResult:
    """Build (or with ``update`` extend) the triplet dataset ``dest`` from batch output ``out``.

    ``mode``: ``hardlink`` (default; copies where links are impossible), ``copy`` or
    ``symlink``.  ``cases_root``: where the case folders are (default: the folders
    recorded in the batch summary).  ``warn(line)`` hears about every case left out.
    Raises :class:`InputError` for a missing summary, no exportable case, or a
    non-empty ``dest`` without ``update``.
    """
    if mode not in ("hardlink", "copy", "symlink"):
        raise ValueError(f"mode must be hardlink, copy or symlink, not {mode!r}")
    out, dest = Path(out), Path(dest)
    say = warn or (lambda line: None)
    cases = [c for c in _read_summary(out) if c.get("status") in ("ok", "skipped")]
    if not cases:
        raise InputError(out / "batch_summary.json", "no case with status ok or skipped to export")
    if dest.exists() and not dest.is_dir():
        raise InputError(dest, "exists and is not a folder")
    existing = dest.is_dir() and any(dest.iterdir())
    if existing and not update:
        raise InputError(dest, "exists and is not empty (use --update to add or replace cases)")
    old_rows = {}
    if existing:
        if not (dest / "metadata.jsonl").is_file():
            raise InputError(dest, "not a triplet dataset (no metadata.jsonl); refusing to update it")
        old_rows = _read_jsonl(dest / "metadata.jsonl")
    folders = {}
    if cases_root is not None:
        folders = {c.case_id: c.path for c in discover_cases(cases_root) if c.problem is None}

    result = ExportResult(dest=dest)
    from ..io.atomic import staged_folder

    with staged_folder(dest) as tmp:
        rows = {}
        for case in cases:
            case_id = case["case_id"]
            if case_id in rows:
                continue
            case_dir = folders.get(case_id) if cases_root is not None else (
                Path(case["case_dir"]) if case.get("case_dir") else None)
            try:
                if case_dir is None:
                    raise _LeaveOut(f"{cases_root or out}: no case folder for {case_id}")
                rows[case_id] = _export_case(case, out, Path(case_dir), tmp, mode, narrative, verify, result)
                result.exported.append(case_id)
            except _LeaveOut as exc:
                shutil.rmtree(tmp / case_id, ignore_errors=True)
                result.excluded.append((case_id, str(exc)))
                say(f"{case_id} left out: {exc}")
        for case_id, row in old_rows.items():
            if case_id not in rows and (dest / case_id).is_dir():
                _replicate(dest / case_id, tmp / case_id)
                rows[case_id] = row
                result.kept.append(case_id)
        if not rows:
            raise InputError(out, "no case could be exported (see the warnings above)")
        ordered = [rows[k] for k in sorted(rows)]
        (tmp / "metadata.csv").write_text(metadata_csv(ordered), encoding="utf-8")
        (tmp / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ordered), encoding="utf-8")
        (tmp / PHASES_CSV).write_text(_phases_csv(ordered), encoding="utf-8")
        _write_dataset_tables(tmp, sorted(rows))
        (tmp / "README.md").write_text(_readme(ordered, mode, narrative, verify), encoding="utf-8")
        if mode == "hardlink" and result.copied_instead_of_linked:
            say(f"{result.copied_instead_of_linked} file(s) copied: hard links are not possible there "
                "(another file system?)")
    return result
