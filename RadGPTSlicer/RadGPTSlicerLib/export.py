"""Save and export from the panel (worker thread): case folder and reports, dataset triplet, DICOM SEG + SR.

A *project folder* holds every case an annotator saves, in the command line's own
layout, so ``radgpt batch`` and ``radgpt export-triplets`` work on it unchanged::

    FOLDER/
      cases/<case_id>/ct.nii.gz, segmentations/<structure>.nii.gz   (AbdomenAtlas case folder)
      reports/<case_id>/findings.json, report.txt/.md/.html     (``radgpt report`` outputs)
      reports/batch_summary.json                                    (one row per saved case)

Saving writes through the core's all-or-nothing writers and never deletes a file it
did not write: the first save of a case uses
:func:`RadGPTLogic.io.casefolder.write_case_folder` (which refuses a non-empty
folder); a re-save of an edited case replaces the folder with
:func:`RadGPTLogic.io.atomic.publish`, dropping only masks the tool wrote earlier
for structures no longer in the case.  A folder of the user's own is refused.
Reports come from :func:`RadGPTLogic.pipeline.report_case` with the panel's engine
(its cache makes this a re-use, not a re-computation); their provenance records
the files just written, with their SHA-256, so batch resume and triplet export
verify them as they verify any ``radgpt report`` output.

"Add to dataset" saves, then exports that one case with
:func:`RadGPTLogic.dataset.triplets.export_triplets` (``update`` keeps the
dataset's other cases).  DICOM SEG + SR go through
:func:`RadGPTLogic.io.dicom_export.export_dicom` with the CT series the volume was
loaded from (the files Slicer's DICOM database lists for its instance UIDs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from RadGPTLogic.errors import InputError

CASES, REPORTS = "cases", "reports"
SUMMARY = "batch_summary.json"


def safe_case_id(name: str) -> str:
    """A case ID usable as a folder name: letters, digits, ``._-``; others become ``_``."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name or "")).strip("._")
    return text or "case"


def _folder(folder, what: str = "project folder") -> Path:
    if not folder or not str(folder).strip():
        raise InputError(None, f"choose a {what} first")
    return Path(str(folder)).expanduser()


@contextmanager
def _saved_as(case, case_id: str, sources: dict):
    """The case under another ID and with file sources while its reports are written (same thread)."""
    old_id, old_sources = case.case_id, case.sources
    case.case_id, case.sources = case_id, sources
    try:
        yield case
    finally:
        case.case_id, case.sources = old_id, old_sources


def write_case_files(case, case_dir: Path) -> dict:
    """Write the case folder (CT + masks); return ``{relative name: sha256}`` of what was written.

    First save: :func:`write_case_folder`.  Re-save (the folder's manifest says RadGPT
    wrote it): :func:`publish` with the new files, removing only RadGPT-written masks
    of structures the case no longer has.  Any other non-empty folder is refused.
    """
    import numpy as np

    from RadGPTLogic.io.atomic import publish, read_manifest
    from RadGPTLogic.io.casefolder import SEGMENTATIONS, crop_nifti_bytes, ct_for_writing, write_case_folder
    from RadGPTLogic.io.nifti import nifti_gz_bytes

    owned = read_manifest(case_dir) if case_dir.is_dir() else {}
    if not owned:
        if case_dir.is_dir() and any(case_dir.iterdir()):
            raise InputError(case_dir, "holds files RadGPT did not write; choose another project folder or case ID")
        write_case_folder(case, case_dir)
    else:
        files = {}
        if case.has_ct:
            files["ct.nii.gz"] = nifti_gz_bytes(np.asarray(ct_for_writing(case)), case.ornt, case.affine)
        for name in sorted(case.structures):
            files[f"{SEGMENTATIONS}/{name}.nii.gz"] = crop_nifti_bytes(case, case.structures[name])
        stale = [n for n in owned if n.startswith(f"{SEGMENTATIONS}/") and n not in files]
        publish(case_dir, files, remove=stale)
    return {name: digest for name, digest in read_manifest(case_dir).items()
            if name == "ct.nii.gz" or name.startswith(f"{SEGMENTATIONS}/")}


def _file_sources(case, case_dir: Path, written: dict) -> dict:
    """``case.sources`` as loading the folder would record them: path and SHA-256 per file."""
    from RadGPTLogic.io.casefolder import SEGMENTATIONS

    sources = {}
    if "ct.nii.gz" in written:
        sources["ct"] = [{"path": str(case_dir / "ct.nii.gz"), "sha256": written["ct.nii.gz"]}]
    for name in case.structures:
        rel = f"{SEGMENTATIONS}/{name}.nii.gz"
        if rel in written:
            sources[name] = [{"path": str(case_dir / rel), "sha256": written[rel]}]
    return sources


def _update_summary(reports: Path, row: dict) -> None:
    """Add or replace this case's row in ``reports/batch_summary.json`` (other rows stay)."""
    from RadGPTLogic import __version__
    from RadGPTLogic.dataset.batch import SUMMARY_COLUMNS
    from RadGPTLogic.io.atomic import atomic_write_file

    path = reports / SUMMARY
    summary = None
    if path.is_file():
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise InputError(path, "not valid JSON; move it away to save here") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("cases"), list):
            raise InputError(path, "not a radgpt batch summary; move it away to save here")
    if summary is None:
        summary = {"kind": "radgpt-batch-summary", "summary_version": 1, "software_version": __version__,
                   "root": str((reports.parent / CASES).resolve()), "out": str(reports.resolve()),
                   "written_by": "RadGPT Slicer panel", "cases": []}
    cases = [c for c in summary["cases"] if not (isinstance(c, dict) and c.get("case_id") == row["case_id"])]
    cases.append({k: row.get(k) for k in SUMMARY_COLUMNS})
    summary["cases"] = sorted(cases, key=lambda c: str(c.get("case_id")))
    summary["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_file(path, json.dumps(summary, indent=2) + "\n")


def save_case(session, folder, case_id: str = "", narrative=None) -> dict:
    """Save CT, masks, findings and reports of the panel's case into the project ``folder``.

    ``narrative``: the panel's :class:`~RadGPTSlicerLib.narrative_job.ShownNarrative`; an
    accepted one is saved beside the reports (``narrative.txt``, ``narrative_check.json``)
    when it was written for the findings being saved.  Returns
    ``{"case_id", "case_dir", "out_dir", "findings", "narrative"}``.
    """
    from RadGPTLogic.io.atomic import write_files_atomically
    from RadGPTLogic.pipeline import report_case

    project = _folder(folder)
    case_id = safe_case_id(case_id or session.case.case_id)
    case_dir, out_dir = project / CASES / case_id, project / REPORTS / case_id
    written = write_case_files(session.case, case_dir)
    with _saved_as(session.case, case_id, _file_sources(session.case, case_dir, written)) as case:
        findings = report_case(case, out_dir, phase=session.engine.phase, engine=session.engine).to_dict()
    from .narrative_job import files_for_case

    narrative_files = files_for_case(narrative, case_id) if narrative is not None else {}
    if narrative_files and same_findings(narrative.findings, findings):
        write_files_atomically(out_dir, narrative_files)
    else:
        narrative_files = {}
    lesions = findings.get("lesions") or []
    organs = []
    for lesion in lesions:
        if lesion.get("organ") and lesion["organ"] not in organs:
            organs.append(lesion["organ"])
    _update_summary(project / REPORTS, {
        "case_id": case_id, "status": "ok", "error": "", "seconds": 0.0, "n_lesions": len(lesions),
        "organs_with_lesions": ";".join(organs),
        "t_stages": ";".join(f"{l.get('id')}:{l['t_stage']}" for l in lesions if l.get("t_stage")),
        "report": f"{case_id}/report.txt", "phase": findings.get("phase", "unknown"),
        "note": "saved from the Slicer panel", "case_dir": str(case_dir.resolve()),
    })
    return {"case_id": case_id, "case_dir": case_dir, "out_dir": out_dir, "findings": findings,
            "narrative": bool(narrative_files)}


def same_findings(a, b) -> bool:
    """The same findings apart from case ID and provenance (where they were written from)."""
    def strip(f):
        return {k: v for k, v in (f or {}).items() if k not in ("provenance", "case_id")}
    return a is not None and strip(a) == strip(b)


def add_to_dataset(session, folder, dataset, case_id: str = "", narrative=None) -> dict:
    """Save the case, then add it to the triplet ``dataset`` (the ``radgpt export-triplets`` layout)."""
    from RadGPTLogic.dataset.triplets import export_triplets

    dest = _folder(dataset, "dataset folder")
    saved = save_case(session, folder, case_id, narrative)
    cid = saved["case_id"]
    with tempfile.TemporaryDirectory(prefix="radgpt_triplet_") as tmp:
        # a one-case batch output: export_triplets copies this case only, the dataset keeps the others
        out = Path(tmp)
        shutil.copytree(saved["out_dir"], out / cid)
        summary = json.loads((_folder(folder) / REPORTS / SUMMARY).read_text(encoding="utf-8"))
        row = next(c for c in summary["cases"] if c.get("case_id") == cid)
        (out / SUMMARY).write_text(json.dumps({**summary, "cases": [row]}), encoding="utf-8")
        warnings = []
        result = export_triplets(out, dest, mode="copy", narrative=True,
                                 update=dest.is_dir() and any(dest.iterdir()), warn=warnings.append)
    if cid not in result.exported:
        raise InputError(dest, warnings[0] if warnings else f"{cid} could not be added")
    return {**saved, "dataset": dest, "kept": list(result.kept)}


def dicom_series_files(volume_node, database) -> list:
    """The files of the DICOM series a volume was loaded from, in slice order, or [] when unknown.

    ``DICOM.instanceUIDs`` (set by Slicer's DICOMScalarVolumePlugin) lists the SOP
    instance UIDs; ``database.fileForInstance`` gives each one's file.
    """
    uids = (volume_node.GetAttribute("DICOM.instanceUIDs") or "").split() if volume_node is not None else []
    if not uids or database is None:
        return []
    files = [database.fileForInstance(uid) for uid in uids]
    return files if all(files) else []


def export_dicom(session, dicom_files, folder, case_id: str = "") -> tuple:
    """DICOM SEG + SR TID 1500 referencing the CT series; written to ``FOLDER/dicom/<case_id>/``.

    Returns ``(paths written, notes)``: the writer's warnings about the source files
    (e.g. blank UIDs it had to generate), one line each, for the log.
    """
    import warnings

    from RadGPTLogic.io.dicom_export import export_dicom as write_dicom

    if not dicom_files:
        raise InputError(None, "the CT was not loaded from DICOM (Slicer's DICOM database): no series to reference")
    cid = safe_case_id(case_id or session.case.case_id)
    out = _folder(folder) / "dicom" / cid
    findings = session.engine.compute().to_dict()
    with tempfile.TemporaryDirectory(prefix="radgpt_series_") as tmp:
        # exactly the series' files in one folder (the database may keep them elsewhere, mixed with others)
        for n, src in enumerate(dicom_files):
            dst = Path(tmp) / f"{n:05d}.dcm"
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        with _saved_as(session.case, cid, session.case.sources), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            written = write_dicom(session.case, findings, tmp, out)
    notes = [" ".join(str(w.message).replace(tmp, "the CT series").split()) for w in caught]
    return written, notes
