"""Save and export from the panel (worker thread): case folder, dataset triplet, DICOM SEG + SR.

The saved layout is the command line's: ``FOLDER/case/`` is an AbdomenAtlas case
folder (``ct.nii.gz``, ``segmentations/<structure>.nii.gz`` on the CT's grid) and
``FOLDER/<case_id>/`` the ``radgpt report`` outputs computed from it
(``findings.json``, ``report.txt``/``.md``/``.html``), with a one-case
``batch_summary.json`` beside them, so ``radgpt export-triplets FOLDER --dest DATASET``
works on it as on any batch; "Add to dataset" does exactly that (``--update``).
Every write is atomic in the core functions called.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from RadGPTLogic.errors import InputError


def _folder(folder) -> Path:
    if not folder or not str(folder).strip():
        raise InputError(None, "choose a case folder first")
    return Path(str(folder)).expanduser()


def save_case(session, folder) -> str:
    """Write the case (CT + current masks) and its reports; returns the line shown in the panel."""
    from RadGPTLogic.pipeline import run_report
    from RadGPTLogic.io.casefolder import write_case_folder

    out = _folder(folder)
    out.mkdir(parents=True, exist_ok=True)
    case_dir = out / "case"
    if case_dir.exists():
        shutil.rmtree(case_dir)  # the saved case is replaced by the edited one
    write_case_folder(session.case, case_dir)
    case_id = session.case.case_id
    findings = run_report(case_dir, out / case_id, phase=session.engine.phase)
    summary = {"cases": [{"case_id": findings.case_id, "status": "ok", "case_dir": str(case_dir.resolve())}]}
    (out / "batch_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return f"Saved to {out}: case/, {case_id}/findings.json and reports."


def add_to_dataset(session, folder, dataset) -> str:
    """Save the case, then add it to the triplet dataset (same layout as ``radgpt export-triplets``)."""
    from RadGPTLogic.dataset.triplets import export_triplets

    if not dataset or not str(dataset).strip():
        raise InputError(None, "choose a dataset folder first")
    save_case(session, folder)
    dest = Path(str(dataset)).expanduser()
    result = export_triplets(_folder(folder), dest, mode="copy", update=dest.is_dir() and any(dest.iterdir()))
    return f"Added {', '.join(result.exported)} to the dataset {dest}."


def export_dicom(session, dicom_files, folder) -> str:
    """DICOM SEG + SR TID 1500 referencing the CT series the volume came from."""
    from RadGPTLogic.io.dicom_export import export_dicom as write_dicom

    if not dicom_files:
        raise InputError(None, "the CT was not loaded from DICOM: no series to reference")
    findings = session.engine.compute().to_dict()
    series = Path(dicom_files[0]).parent
    out = _folder(folder) / "dicom"
    written = write_dicom(session.case, findings, series, out)
    return f"DICOM SEG + SR written to {out} ({len(written)} file(s))."
