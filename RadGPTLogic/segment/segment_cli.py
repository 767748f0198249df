"""The ``segment``, ``run`` and ``doctor`` sub-commands.

``radgpt segment CT... --model M [--model M ...] --out OUT``
    One CT (a NIfTI file or a DICOM series folder): ``OUT`` is its case folder.
    Several CTs (several arguments, a folder of NIfTI files, or a ``.txt`` list with
    one path per line): ``OUT/<case id>/`` each, the models loaded once.
``radgpt run CT --model M --out OUT``
    Segment into ``OUT/case/`` and report into ``OUT/report/`` (as ``radgpt demo``).
``radgpt doctor``
    What this machine can run (:mod:`.doctor`).

Exit codes: those of ``radgpt report`` (0 done, 2 bad input, 1 internal error,
130 interrupted), plus 3 = out of memory, and 1 when some CTs of several failed.
Progress: a bar on a terminal (tqdm, which nnunetv2 installs), plain lines otherwise.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError

log = logging.getLogger("radgpt")
EXIT_OOM = 3
NIFTI_SUFFIXES = (".nii.gz", ".nii")


# ----------------------------------------------------------------------------- arguments
def _add_model_options(p) -> None:
    p.add_argument("--model", action="append", required=True, metavar="MODEL",
                   help="nnU-Net v2 results folder or preset (total, abdomenatlas-subsegments); repeat for "
                        "several models, in precedence order (the first wins where masks conflict)")
    p.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--folds", nargs="+", metavar="FOLD", help="folds to use (default: all the folder has)")
    p.add_argument("--no-mirroring", action="store_true",
                   help="no test-time mirroring even where the model allows it (faster)")
    p.add_argument("--tile-step", type=float, default=0.5,
                   help="sliding-window step as a fraction of the patch (default 0.5; larger is faster)")
    p.add_argument("--label-map", metavar="JSON",
                   help='{"model label name": "RadGPT structure name"} for labels RadGPT does not know')
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop the segmentation after this long")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")


def register(sub) -> None:
    import argparse

    s = sub.add_parser("segment", help="segment CTs with nnU-Net v2 models into case folders")
    s.add_argument("ct", nargs="+", help="CT: NIfTI file or DICOM series folder; or several, a folder of NIfTI "
                                         "files, or a .txt list of paths")
    s.add_argument("--out", required=True, help="case folder (one CT) or folder of case folders (several)")
    _add_model_options(s)
    s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    s.set_defaults(func=cmd_segment)

    r = sub.add_parser("run", help="segment one CT and report on it: OUT/case/ and OUT/report/")
    r.add_argument("ct", help="CT: NIfTI file or DICOM series folder")
    r.add_argument("--out", required=True, help="output folder (gets case/ and report/)")
    from ..rules import PHASES

    r.add_argument("--phase", choices=PHASES, default="unknown", help="contrast phase (default: unknown)")
    _add_model_options(r)
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("doctor", help="Python, torch, CUDA, GPUs and the segmentation models found")
    d.add_argument("--models-root", action="append", default=[], metavar="DIR",
                   help="another folder to search for nnU-Net results folders")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    d.set_defaults(func=cmd_doctor)


# ----------------------------------------------------------------------------- inputs
def _case_id(ct: Path) -> str:
    name = ct.name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name in ("ct", "image", "imaging") and ct.parent.name:
        return ct.parent.name  # CASE/ct.nii.gz
    return name[:-5] if name.endswith("_0000") else name  # nnU-Net's channel suffix


def expand_cts(items) -> list:
    """The CT paths named: files, DICOM folders, folders of NIfTI files, ``.txt`` lists."""
    from ..io.dicom import is_dicom_folder

    out: list = []
    for item in items:
        path = Path(item)
        if path.is_file() and path.suffix == ".txt":
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(path, f"cannot read the list of CTs ({exc})") from None
            out.extend(Path(line.strip()) for line in lines if line.strip() and not line.startswith("#"))
        elif path.is_dir() and not is_dicom_folder(path):
            found = sorted(p for p in path.iterdir() if p.name.endswith(NIFTI_SUFFIXES))
            if not found:
                raise InputError(path, "neither a DICOM series folder nor a folder of NIfTI CTs")
            out.extend(found)
        else:
            out.append(path)
    for ct in out:
        if not ct.exists():
            raise InputError(ct, "CT not found")
    return out


def _label_map(path):
    if not path:
        return None
    from .labels import load_user_map

    return load_user_map(path)


# ----------------------------------------------------------------------------- running
class _Progress:
    """A tqdm bar on a terminal, else a plain line per stage and per 10 % of tiles."""

    def __init__(self, enabled: bool, n_cases: int):
        self.enabled = enabled
        self.n_cases = n_cases
        self.bar: Any = None
        self.key: Any = None
        self.last_tenth = -1
        self.tty = sys.stderr.isatty()

    def __call__(self, event) -> None:
        if not self.enabled:
            return
        if event.kind == "log":
            log.info("segmentation: %s", event.message)
            return
        if event.kind in ("case_done", "case_error"):
            self._close()
            print(("  " if event.kind == "case_done" else "radgpt: error: ") + event.message, file=sys.stderr)
            return
        if event.kind != "progress":
            return
        prefix = f"[{event.case + 1}/{self.n_cases}] " if self.n_cases > 1 else ""
        where = " ".join(p for p in (event.stage, event.model, f"fold {event.fold}" if event.fold else "") if p)
        key = (event.case, event.stage, event.model, event.fold)
        if self.tty:
            try:
                from tqdm import tqdm
            except ImportError:
                self.tty = False
            else:
                if key != self.key:
                    self._close()
                    self.bar = tqdm(total=event.total or None, desc=prefix + where, file=sys.stderr, leave=False)
                    self.key = key
                if self.bar is not None:
                    self.bar.n = event.done
                    self.bar.refresh()
                return
        if key != self.key:
            self.key, self.last_tenth = key, -1
            if event.stage != "predict":
                print(f"{prefix}{where} ...", file=sys.stderr)
        if event.stage == "predict" and event.total:
            tenth = (10 * event.done) // event.total
            if tenth != self.last_tenth:
                self.last_tenth = tenth
                print(f"{prefix}{where}: {event.done}/{event.total} tiles", file=sys.stderr)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.key = None


def run_segmentation(args, jobs) -> tuple:
    """Run the jobs in the runner's process; ``(exit code, final event)``."""
    from .runner import SegmentationRunner

    runner = SegmentationRunner(args.model, device=args.device, folds=args.folds,
                                mirroring=False if args.no_mirroring else None, tile_step=args.tile_step,
                                timeout_s=args.timeout, label_map=_label_map(args.label_map))
    show = _Progress(not args.no_progress, len(jobs))
    runner.start_many(jobs)
    final = None
    try:
        while final is None:
            runner.wait(timeout=0.1)
            for event in runner.poll():
                if event.kind in ("done", "error", "cancelled"):
                    final = event
                else:
                    show(event)
    except KeyboardInterrupt:
        runner.cancel()
        raise
    finally:
        show._close()
    if final.kind == "done":
        return (1 if runner.returncode == 1 else 0), final
    return {2: 2, EXIT_OOM: EXIT_OOM}.get(runner.returncode or 0, 2 if "timed out" in final.message else 1), final


def cmd_segment(args) -> int:
    cts = expand_cts(args.ct)
    out = Path(args.out)
    if len(cts) == 1 and len(args.ct) == 1 and not Path(args.ct[0]).suffix == ".txt" \
            and (Path(args.ct[0]).is_file() or cts[0] == Path(args.ct[0])):
        jobs = [(cts[0], out)]
    else:
        ids = [_case_id(ct) for ct in cts]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise InputError(None, f"several CTs would be written to the same case folder: {', '.join(dupes)}")
        jobs = [(ct, out / case_id) for ct, case_id in zip(cts, ids)]
    code, final = run_segmentation(args, jobs)
    if final.kind == "done":
        print(final.message or f"segmented {len(jobs)} CT(s) -> {out}")
        return code
    print(f"radgpt: error: {final.message}", file=sys.stderr)
    return code


def cmd_run(args) -> int:
    from dataclasses import replace

    from ..io.casefolder import load_case
    from ..pipeline import report_case

    ct = Path(args.ct)
    if not ct.exists():
        raise InputError(ct, "CT not found")
    out = Path(args.out)
    code, final = run_segmentation(args, [(ct, out / "case")])
    if final.kind != "done":
        print(f"radgpt: error: {final.message}", file=sys.stderr)
        return code
    case = replace(load_case(out / "case"), case_id=_case_id(ct) if not ct.is_dir() else ct.name)
    findings = report_case(case, out / "report", phase=args.phase)
    print(f"{findings.case_id}: segmented into {out / 'case'}; {len(findings.lesions)} lesion(s), "
          f"{len(findings.organs)} organ(s) -> {out / 'report'}")
    return 0


def cmd_doctor(args) -> int:
    from .doctor import doctor_report, format_doctor

    report = doctor_report(extra_roots=tuple(args.models_root))
    print(json.dumps(report, indent=1, default=str) if args.json else format_doctor(report))
    return 0
