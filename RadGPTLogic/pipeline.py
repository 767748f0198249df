"""The one-case pipeline: case folder (or in-memory case) -> findings -> reports -> output folder.

Every face of the product runs a case through here: the CLI (``radgpt report``,
``radgpt demo``), batch workers, and the Slicer module's save.  Steps::

    load_case ──▶ Engine.compute ──▶ render_outputs ──▶ write_outputs
    (io.casefolder)  (engine)          (report.*)          (io.atomic.publish)

:func:`write_outputs` replaces the output folder in one step and drops what the new
findings make stale: earlier outputs of later steps (narratives, enhanced reports,
DICOM objects) when the findings changed, and derived masks no longer produced.
Files the tool did not write are never touched.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping

from .case import Case
from .engine import Engine
from .errors import InputError
from .findings import Findings
from .io.atomic import publish, read_manifest
from .io.casefolder import crop_nifti_bytes, load_case
from .rules import DEFAULT_RULES, Rules

log = logging.getLogger("radgpt")

#: What ``radgpt report`` writes besides derived masks.
REPORT_OUTPUTS = ("findings.json", "report.txt", "report.md", "report.html")
#: Outputs of later steps, made from the findings of their time.
DEPENDENT_OUTPUTS = ("narrative.txt", "narrative_check.json", "narrative_enhanced.txt",
                     "report_enhanced.txt", "report_enhanced_check.json")
#: Derived masks the engine may write (``derived/<name>.nii.gz``).
DERIVED_NAMES = tuple(f"pancreas_{p}" for p in ("head", "neck", "body", "tail"))


def render_outputs(findings: Findings, case: Case | None = None, derived: dict | None = None,
                   template_dir=None) -> dict:
    """Everything ``radgpt report`` writes: relative name -> content (str or bytes).

    ``derived`` maps names of computed masks (pancreas parts) to crops, written as
    NIfTI on the case's grid under ``derived/``.  Template errors are an
    :class:`InputError` naming the template.
    """
    import jinja2

    from .report.structured import render_reports

    data = findings.to_dict()
    try:
        files = {"findings.json": findings.to_json(), **render_reports(data, case=case, template_dir=template_dir)}
    except jinja2.TemplateError as exc:
        where = getattr(exc, "filename", None) or template_dir or "report template"
        line = getattr(exc, "lineno", None)
        raise InputError(where, f"template error{f' at line {line}' if line else ''}: {exc.message}") from None
    if derived:
        if case is None:
            raise ValueError("derived masks are written on the case's grid: pass the case")
        # Computed masks (pancreas parts), on the CT's grid: shown and edited in Slicer.
        for name, crop in sorted(derived.items()):
            files[f"derived/{name}.nii.gz"] = crop_nifti_bytes(case, crop)
    return files


def _previous_findings(out_dir: Path) -> dict | None:
    try:
        data = json.loads((out_dir / "findings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _without_provenance(findings: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in findings.items() if k != "provenance"}


def write_outputs(out_dir, files: dict, findings: Findings) -> None:
    """Publish ``files`` into ``out_dir`` in one step, dropping the tool's outputs they make stale."""
    out_dir = Path(out_dir)
    owned = read_manifest(out_dir)
    previous = _previous_findings(out_dir)
    if not owned and previous is not None:
        # A folder written before manifests existed: the known output names are the tool's.
        owned = {n: "" for n in REPORT_OUTPUTS + DEPENDENT_OUTPUTS}
        owned.update({f"derived/{n}.nii.gz": "" for n in DERIVED_NAMES})
    changed = previous is not None and _without_provenance(previous) != _without_provenance(findings.to_dict())
    stale = set()
    for name in owned:
        if name in files or not (out_dir / name).is_file():
            continue
        if changed or name.startswith("derived/"):
            stale.add(name)
    publish(out_dir, files, remove=stale, owned=owned)
    for name in sorted(stale):
        if not name.startswith("derived/"):
            log.warning("%s: removed (made from earlier findings that changed)", out_dir / name)


def report_case(case: Case, out_dir, *, phase: str = "unknown", rules: Rules = DEFAULT_RULES,
                template_dir=None, engine: Engine | None = None) -> Findings:
    """Findings and reports of an in-memory ``case`` (e.g. from Slicer nodes) into ``out_dir``.

    ``engine`` may be one that already holds this case (its cache is reused).
    """
    if template_dir is not None and not Path(template_dir).is_dir():
        raise InputError(template_dir, "template folder does not exist")
    engine = engine or Engine(case, phase=phase, rules=rules)
    findings = engine.compute()
    for line in findings.warnings:
        log.warning("%s", line)
    files = render_outputs(findings, case, engine.derived_masks(), template_dir)
    write_outputs(out_dir, files, findings)
    return findings


def run_report(case_dir, out_dir, phase: str = "unknown", resample: bool = False, rules: Rules | None = None,
               template_dir=None) -> Findings:
    """Load a case folder, compute findings and write the outputs (all or nothing).

    Outputs: findings.json, report.txt, report.md, report.html (with key images), and
    ``derived/<name>.nii.gz`` for masks the engine computed (pancreas head/neck/body/tail
    when not given).  ``template_dir`` holds an institution's templates overriding the
    shipped ones by file name.  Warnings go to the ``radgpt`` logger.
    """
    if template_dir is not None and not Path(template_dir).is_dir():
        raise InputError(template_dir, "template folder does not exist")
    case = load_case(case_dir, resample=resample)
    return report_case(case, out_dir, phase=phase, rules=rules or DEFAULT_RULES, template_dir=template_dir)
