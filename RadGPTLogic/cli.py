"""Command line: ``radgpt report``, ``radgpt demo``, ``radgpt import``.

Exit codes: 0 success; 2 bad input or usage (one line on stderr naming the file);
1 internal error (traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

PHASE_CHOICES = ("non-contrast", "arterial", "venous", "delayed", "unknown")


def _report_files(findings, case=None, derived=None, template_dir=None) -> dict:
    """Everything ``radgpt report`` writes: name (relative to OUT_DIR) -> content."""
    import jinja2

    from .errors import InputError
    from .report.structured import render_html, render_markdown, render_text

    data = findings.to_dict()
    try:
        files = {
            "findings.json": findings.to_json(),
            "report.txt": render_text(data, template_dir=template_dir),
            "report.md": render_markdown(data, template_dir=template_dir),
            "report.html": render_html(data, case=case, template_dir=template_dir),
        }
    except jinja2.TemplateError as exc:
        where = getattr(exc, "filename", None) or template_dir or "report template"
        line = getattr(exc, "lineno", None)
        raise InputError(where, f"template error{f' at line {line}' if line else ''}: {exc.message}") from None
    if derived:
        from .io.export import mask_nifti_bytes

        # Computed masks (pancreas parts), on the CT's grid: shown and edited in Slicer.
        for name, crop in sorted(derived.items()):
            files[f"derived/{name}.nii.gz"] = mask_nifti_bytes(case, crop)
    return files


def run_report(case_dir, out_dir, phase: str = "unknown", resample: bool = False, warn=None, rules=None,
               template_dir=None):
    """Load a case folder, compute findings and write the outputs atomically.

    Outputs: findings.json, report.txt, report.md, report.html (with key images), and
    ``derived/<name>.nii.gz`` for masks the engine computed (pancreas head/neck/body/tail
    when not given).  ``template_dir`` holds an institution's templates overriding the
    shipped ones by file name.
    """
    from .case import Case
    from .engine import Engine
    from .io.atomic import write_files_atomically
    from .errors import InputError
    from .rules import DEFAULT_RULES

    if template_dir is not None and not Path(template_dir).is_dir():
        raise InputError(template_dir, "template folder does not exist")
    case = Case.from_folder(case_dir, resample=resample)
    engine = Engine(case, phase=phase, rules=rules or DEFAULT_RULES)
    findings = engine.compute()
    if warn is not None:
        for line in findings.warnings:
            warn(line)
    files = _report_files(findings, case, engine.derived_masks(), template_dir)
    previous = _previous_findings(out_dir)
    write_files_atomically(out_dir, files)
    _remove_stale_outputs(Path(out_dir), files, previous, findings.to_dict(), warn)
    return findings


# Outputs of later steps that describe the findings they were made from.
DEPENDENT_OUTPUTS = ("narrative.txt", "narrative_check.json", "narrative_enhanced.txt",
                     "report_enhanced.txt", "report_enhanced_check.json")


def _previous_findings(out_dir) -> dict | None:
    import json

    path = Path(out_dir) / "findings.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove_stale_outputs(out_dir: Path, written: dict, previous: dict | None, current: dict, warn) -> None:
    """After re-running into an existing OUT_DIR: drop what no longer matches the findings.

    Derived masks not written this time are removed; narratives and enhanced reports
    are removed when the findings changed (they were checked against the old ones).
    """
    derived = out_dir / "derived"
    if derived.is_dir():
        for p in derived.iterdir():
            if f"derived/{p.name}" not in written and p.name.endswith(".nii.gz"):
                p.unlink()
    if previous is None:
        return
    strip = lambda f: {k: v for k, v in f.items() if k != "provenance"}  # noqa: E731
    if strip(previous) == strip(current):
        return
    for name in DEPENDENT_OUTPUTS:
        p = out_dir / name
        if p.exists():
            p.unlink()
            if warn is not None:
                warn(f"{p}: removed (made from earlier findings that changed)")


def _cmd_report(args) -> int:
    from dataclasses import replace

    from .rules import DEFAULT_RULES

    rules = replace(DEFAULT_RULES, t4_rule=args.t4_rule)
    findings = run_report(args.case_dir, args.out, args.phase, args.resample, warn=_warn, rules=rules,
                          template_dir=args.templates)
    print(f"{findings.case_id}: {len(findings.lesions)} lesion(s), {len(findings.organs)} organ(s) -> {args.out}")
    return 0


def _cmd_demo(args) -> int:
    from .phantom import build_phantom, write_case

    out = Path(args.out)
    phantom = build_phantom(size=args.size, phase=args.phase)
    case_dir = write_case(phantom, out / "case", case_id="PHANTOM_0001")
    run_report(case_dir, out / "report", args.phase, warn=_warn)
    print(f"Synthetic case written to {case_dir}")
    print(f"Report written to {out / 'report'} (findings.json, report.txt, report.md, report.html)\n")
    print((out / "report" / "report.txt").read_text(encoding="utf-8"))
    return 0


def _cmd_import(args) -> int:
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        from .errors import InputError

        raise InputError(out, "output case folder exists and is not empty")
    if args.seg.lower().endswith(".nrrd"):
        from .io.segnrrd import case_from_seg_nrrd

        case = case_from_seg_nrrd(args.seg, ct_path=args.ct, case_id=out.name, dicom_series=args.dicom_series,
                                  dicom_resample=args.dicom_resample)
    else:
        from .io.labelmaps import case_from_labelmap

        case = case_from_labelmap(args.seg, table=args.labels, ct_path=args.ct, case_id=out.name,
                                  dicom_series=args.dicom_series, dicom_resample=args.dicom_resample)
    from .io.labelmaps import write_case_folder

    for line in case.warnings:
        _warn(line)
    write_case_folder(case, out)
    print(f"{out}: {len(case.structures)} structure(s) written")
    return 0


def _cmd_export_dicom(args) -> int:
    import json
    import warnings

    from .case import Case
    from .errors import InputError
    from .io.dicom_export import export_dicom

    findings_path = Path(args.out_dir) / "findings.json"
    try:
        findings = json.loads(findings_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(findings_path, f"cannot read findings ({exc}); run `radgpt report` first") from None
    case = Case.from_folder(args.case_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = export_dicom(case, findings, args.dicom, Path(args.out_dir) / "dicom")
    for w in caught:
        _warn(str(w.message))
    for p in paths:
        print(p)
    return 0


def _warn(line: str) -> None:
    print(f"radgpt: warning: {line}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="radgpt", description="Findings and reports from abdominal CT masks.")
    p.add_argument("--version", action="version", version=f"radgpt {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("report", help="findings.json + structured report for one case folder")
    r.add_argument("case_dir", help="AbdomenAtlas case folder: [ct.nii.gz] + segmentations/*.nii.gz")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--phase", choices=PHASE_CHOICES, default="unknown", help="contrast phase (default: unknown)")
    r.add_argument("--resample", action="store_true", help="resample masks on another grid onto the CT grid")
    r.add_argument("--templates", help="folder of institution templates overriding the shipped ones by file name")
    r.add_argument("--t4-rule", choices=("encasement", "any_contact"), default="encasement",
                   help="AJCC T4 for CA/SMA/CHA: > 180 degrees of contact (default) or any solid contact")
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    r.set_defaults(func=_cmd_report)

    d = sub.add_parser("demo", help="write a synthetic abdomen case and its report")
    d.add_argument("--out", required=True, help="output folder (gets case/ and report/)")
    d.add_argument("--size", choices=("small", "full"), default="small")
    d.add_argument("--phase", choices=PHASE_CHOICES, default="non-contrast")
    d.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    d.set_defaults(func=_cmd_demo)

    i = sub.add_parser("import", help="turn a multi-label NIfTI or Slicer .seg.nrrd into a case folder")
    i.add_argument("seg", help="multi-label .nii.gz or .seg.nrrd")
    i.add_argument("--labels", help="label table: total, abdomenatlas, abdomenatlas3, amos, a dataset.json or a JSON/colour table")
    i.add_argument("--ct", help="CT on the same grid (copied into the case): a NIfTI file or a DICOM series folder")
    i.add_argument("--dicom-series", metavar="UID",
                   help="SeriesInstanceUID when the --ct folder holds several series (default: the CT series "
                        "with the most slices)")
    i.add_argument("--dicom-resample", action="store_true",
                   help="DICOM --ct: accept uneven spacing, a few missing slices or gantry tilt by interpolating "
                        "onto a uniform grid")
    i.add_argument("--out", required=True, help="case folder to create")
    i.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    i.set_defaults(func=_cmd_import)

    x = sub.add_parser("export-dicom", help="DICOM SEG + SR (TID 1500) of a reported case, referencing its CT series")
    x.add_argument("case_dir", help="the case folder the report was made from (its CT grid = the DICOM series)")
    x.add_argument("out_dir", help="the report folder holding findings.json; files go to OUT_DIR/dicom/")
    x.add_argument("--dicom", required=True, help="folder of the CT's DICOM series")
    x.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    x.set_defaults(func=_cmd_export_dicom)

    # Sub-commands that live with their own code (their heavy imports stay inside).
    from .evaluate.evaluate_cli import register as register_evaluate
    from .dataset.dataset_cli import register as register_dataset
    from .report.narrative_cli import register as register_narrative

    register_narrative(sub)
    register_evaluate(sub)
    register_dataset(sub)
    return p


def main(argv=None) -> int:
    from .errors import InputError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"radgpt: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("radgpt: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
        if args.debug:
            traceback.print_exc()
        print(f"radgpt: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
