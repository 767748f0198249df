"""Command line: the ``radgpt`` program (``radgpt report``, ``demo``, ``import``, ``export-dicom``).

Other sub-commands live with their code and register themselves (narrative,
evaluate, batch, export-triplets, segment, run, doctor).  This module only parses arguments, calls the
pipeline (:mod:`RadGPTLogic.pipeline`) or an importer, and turns outcomes into exit
codes: 0 success; 2 bad input or usage (one line on stderr naming the file); 1
internal error (traceback only with ``--debug``); 130 interrupted.  Warnings reach
the user through the ``radgpt`` logger, printed as ``radgpt: warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path

from .rules import PHASES, T4_RULES

log = logging.getLogger("radgpt")

def _cmd_report(args) -> int:
    from dataclasses import replace

    from .pipeline import run_report
    from .rules import DEFAULT_RULES

    rules = replace(DEFAULT_RULES, t4_rule=args.t4_rule)
    findings = run_report(args.case_dir, args.out, args.phase, args.resample, rules=rules,
                          template_dir=args.templates)
    print(f"{findings.case_id}: {len(findings.lesions)} lesion(s), {len(findings.organs)} organ(s) -> {args.out}")
    return 0


def _cmd_demo(args) -> int:
    from .phantom import build_phantom, write_case
    from .pipeline import run_report

    out = Path(args.out)
    phantom = build_phantom(size=args.size, phase=args.phase)
    case_dir = write_case(phantom, out / "case", case_id="PHANTOM_0001")
    run_report(case_dir, out / "report", args.phase)
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

        case = case_from_seg_nrrd(args.seg, ct_path=args.ct, case_id=out.name, labels=args.labels,
                                  dicom_series=args.dicom_series, dicom_resample=args.dicom_resample)
    else:
        from .io.labelmaps import case_from_labelmap

        case = case_from_labelmap(args.seg, table=args.labels, ct_path=args.ct, case_id=out.name,
                                  dicom_series=args.dicom_series, dicom_resample=args.dicom_resample)
    from .io.atomic import publish, read_manifest
    from .io.casefolder import write_case_folder
    from .io.origin import IMPORT_FILE, import_record

    for line in case.warnings:
        log.warning("%s", line)
    write_case_folder(case, out)
    # Where the masks came from (model output, expert labels ...): read by export-dicom.
    table = _import_table_source(args)
    publish(out, {IMPORT_FILE: import_record(args.seg, table, read_manifest(out))})
    print(f"{out}: {len(case.structures)} structure(s) written")
    return 0


def _import_table_source(args) -> str | None:
    """How `radgpt import` named the labels: the label table's source (a registry name
    such as ``amos``, a file), ``names embedded in the file``, or None (Slicer names)."""
    if args.seg.lower().endswith(".nrrd"):
        return str(args.labels) if args.labels else None  # a segment-name mapping, not a label table
    if args.labels:
        from .io.label_tables import load_table

        return load_table(args.labels).source
    return "names embedded in the file"


def _cmd_export_dicom(args) -> int:
    import json
    import warnings

    from .errors import InputError
    from .io.casefolder import load_case
    from .io.dicom_export import export_dicom

    findings_path = Path(args.out_dir) / "findings.json"
    try:
        findings = json.loads(findings_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(findings_path, f"cannot read findings ({exc}); run `radgpt report` first") from None
    case = load_case(args.case_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = export_dicom(case, findings, args.dicom, Path(args.out_dir) / "dicom")
    for w in caught:
        log.warning("%s", w.message)
    for p in paths:
        print(p)
    return 0


class _OneLineFormatter(logging.Formatter):
    """``radgpt: warning: <message>`` with the message on one line."""

    def format(self, record: logging.LogRecord) -> str:
        return f"radgpt: {record.levelname.lower()}: {' '.join(record.getMessage().split())}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and embedders redirect it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    """Print the ``radgpt`` logger's warnings (and, verbose, info lines) on stderr, one line each."""
    if any(getattr(h, "_radgpt_cli", False) for h in log.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(_OneLineFormatter())
    handler._radgpt_cli = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .phantom import SIMULATED_PHASES

    p = argparse.ArgumentParser(prog="radgpt", description="Findings and reports from abdominal CT masks.")
    p.add_argument("--version", action="version", version=f"radgpt {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("report", help="findings.json + structured report for one case folder")
    r.add_argument("case_dir", help="AbdomenAtlas case folder: [ct.nii.gz] + segmentations/*.nii.gz")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--phase", choices=PHASES, default="unknown", help="contrast phase (default: unknown)")
    r.add_argument("--resample", action="store_true", help="resample masks on another grid onto the CT grid")
    r.add_argument("--templates", help="folder of institution templates overriding the shipped ones by file name")
    r.add_argument("--t4-rule", choices=T4_RULES, default="encasement",
                   help="AJCC T4 for CA/SMA/CHA: > 180 degrees of contact (default) or any solid contact")
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    r.set_defaults(func=_cmd_report)

    d = sub.add_parser("demo", help="write a synthetic abdomen case and its report")
    d.add_argument("--out", required=True, help="output folder (gets case/ and report/)")
    d.add_argument("--size", choices=("small", "full"), default="small",
                   help="small: 200x160x100 voxels of 2 x 2 x 2.5 mm (default); "
                        "full: 512x512x300 of 0.75 x 0.75 x 1 mm, the size of a clinical CT")
    d.add_argument("--phase", choices=SIMULATED_PHASES, default="non-contrast",
                   help="contrast phase the synthetic CT is made in (default: non-contrast)")
    d.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    d.set_defaults(func=_cmd_demo)

    i = sub.add_parser("import", help="turn a multi-label NIfTI or Slicer .seg.nrrd into a case folder")
    i.add_argument("seg", help="multi-label .nii.gz or .seg.nrrd")
    i.add_argument("--labels", help="label table: total, abdomenatlas, abdomenatlas3, amos, a dataset.json or a "
                                    "JSON/colour table; for a .seg.nrrd, a JSON file mapping segment names to "
                                    "structure names")
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
    from .dataset.dataset_cli import register as register_dataset
    from .evaluate.evaluate_cli import register as register_evaluate
    from .report.narrative_cli import register as register_narrative
    from .segment.segment_cli import register as register_segment

    register_narrative(sub)
    register_evaluate(sub)
    register_dataset(sub)
    register_segment(sub)
    return p


def main(argv=None) -> int:
    from .errors import InputError

    setup_logging()
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
    except OSError as exc:  # permissions, read-only or full disk: the user's to fix, with the path
        from .io.atomic import os_error

        if args.debug:
            traceback.print_exc()
        print(f"radgpt: error: {os_error(exc.filename or '', exc, 'access the file').one_line()}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
        if args.debug:
            traceback.print_exc()
        print(f"radgpt: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
