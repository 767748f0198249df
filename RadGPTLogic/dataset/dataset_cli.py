"""``radgpt batch`` and ``radgpt export-triplets``.

``register(subparsers)`` adds both to the ``radgpt`` command line (called from
:func:`RadGPTLogic.cli.build_parser`; ``python -m RadGPTLogic batch ...`` works too).

Exit codes: ``batch`` 0 when every case is ok or skipped, 1 when any case failed or
timed out (the summary says which), 130/143 when stopped by SIGINT/SIGTERM (the
summary of what was done is still written), 2 for bad usage or input (no case under
the root, unreadable phase CSV ...).  ``export-triplets`` 0 when every ok case was
exported, 1 when some were left out (inputs changed since the report, files
missing), 2 for bad usage or input (no batch summary, DATASET not empty without
``--update``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..llm.client import add_endpoint_options
from ..rules import PHASES


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive (got {text})")
    return value


def register(subparsers) -> None:
    """Add ``batch`` and ``export-triplets`` to the ``radgpt`` sub-commands."""
    b = subparsers.add_parser(
        "batch", help="reports for every case folder under a root, with a per-case status summary",
        description="Finds the case folders under ROOT (folders holding segmentations/), writes "
                    "OUT/<case_id>/ (findings.json, report.txt, report.md, report.html, derived/) for each, "
                    "and OUT/batch_summary.csv + batch_summary.json with one status per case: ok, failed "
                    "(with the one-line error), timeout, skipped (up to date, with --resume), cancelled "
                    "(interrupted). Exit 0 when all are ok/skipped, 1 when any failed or timed out.")
    b.add_argument("root", help="folder of case folders (AbdomenAtlas BDMAP_* or any names), searched recursively")
    b.add_argument("--out", required=True, help="output folder: OUT/<case_id>/ and OUT/batch_summary.{csv,json}")
    b.add_argument("--workers", type=_positive_int, default=None,
                   help="worker processes, one case each at a time (default: number of CPUs; 1 runs in-process); "
                        "with --executor dask and no --scheduler: the local cluster's workers")
    b.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: worker processes on this machine (default); dask: a dask.distributed cluster "
                        "(needs the [dask] extra)")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --executor dask: join the running cluster at ADDRESS (e.g. tcp://10.0.0.5:8786, "
                        "started with `dask scheduler` and `dask worker`); default: start a local cluster")
    ph = b.add_mutually_exclusive_group()
    ph.add_argument("--phase", choices=PHASES, default=None, help="contrast phase of every case (default: unknown)")
    ph.add_argument("--phase-csv", metavar="FILE",
                    help="CSV case_id,phase (also RadGPT's 'BDMAP ID','CT Phase' with Plain/Venous/Arterial/Delay); "
                         "cases not listed get unknown")
    b.add_argument("--ids", metavar="FILE", help="only these case ids (one per line, or a CSV with a case_id column)")
    rs = b.add_mutually_exclusive_group()
    rs.add_argument("--resume", dest="force", action="store_false", default=False,
                    help="skip cases whose findings.json was made from the same input files, phase, rules and "
                         "version (default)")
    rs.add_argument("--force", dest="force", action="store_true", help="recompute every case")
    b.add_argument("--timeout", type=_positive_seconds, metavar="SECONDS",
                   help="per-case time limit; a case over it is stopped and marked timeout (default: none)")
    b.add_argument("--t4-rule", choices=("encasement", "any_contact"), default="encasement",
                   help="AJCC T4 for CA/SMA/CHA: > 180 degrees of contact (default) or any solid contact")
    b.add_argument("--templates", metavar="DIR", help="folder of institution templates overriding the shipped ones")
    b.add_argument("--resample", action="store_true", help="resample masks on another grid onto the CT grid")
    b.add_argument("--seg-model", action="append", metavar="MODEL",
                   help="segment case folders that hold only a CT with this nnU-Net model (preset name or model "
                        "folder; repeat for several) before their report; needs the segmentation backend")
    b.add_argument("--seg-device", default="auto", help="device for --seg-model: auto, cpu, cuda, cuda:1 ...")
    b.add_argument("--no-progress-bar", dest="bar", action="store_false", default=None,
                   help="one plain line per case even on a terminal (the default in logs)")
    b.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    n = add_endpoint_options(b, "narrative stage (LLM, OpenAI-compatible; only with --narrative)")
    n.add_argument("--narrative", action="store_true",
                   help="write the fact-checked LLM narrative of every ok case; --concurrency bounds the "
                        "requests in flight across all workers (default 2)")
    n.add_argument("--examples", metavar="FILE_OR_DIR", help="example reports for the narrative (as radgpt narrative)")
    n.add_argument("--style", help="example style for the narrative (as radgpt narrative)")
    b.set_defaults(func=cmd_batch)

    e = subparsers.add_parser(
        "export-triplets", help="CT-mask-report dataset from batch outputs",
        description="Builds DATASET/<case_id>/ (ct.nii.gz, segmentations/*.nii.gz, report.txt, findings.json, "
                    "[narrative.txt]) for every case the batch summary lists as ok or skipped, plus "
                    "metadata.csv, metadata.jsonl and README.md. The dataset appears at once (built beside it, "
                    "then renamed).")
    e.add_argument("out", help="batch output folder (holds batch_summary.json)")
    e.add_argument("--dest", required=True, help="dataset folder to create (must be absent or empty unless --update)")
    e.add_argument("--cases", metavar="ROOT",
                   help="root of the case folders (default: the case folders recorded in batch_summary.json)")
    lk = e.add_mutually_exclusive_group()
    lk.add_argument("--copy", dest="mode", action="store_const", const="copy", default="hardlink",
                    help="copy CT and masks (default: hard links where possible, else copies)")
    lk.add_argument("--link", dest="mode", action="store_const", const="symlink",
                    help="symbolic links to the CT and masks (absolute paths)")
    e.add_argument("--narrative", action="store_true",
                   help="add narrative.txt where narrative_check.json says accepted and it still passes the fact check")
    e.add_argument("--update", action="store_true", help="add or replace cases in an existing dataset")
    e.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not re-hash the CT and masks against findings.json's provenance")
    e.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    e.set_defaults(func=cmd_export_triplets)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _llm_config(args):
    from ..errors import InputError
    from ..llm.client import load_config

    if not args.narrative:
        return None
    config = load_config(args.base_url, args.model, args.api_key, args.config)
    if config is None:
        raise InputError(None, "--narrative needs an LLM endpoint: --base-url URL (or RADGPT_LLM_BASE_URL)")
    try:
        import openai  # noqa: F401 - only to fail early with a clear message
    except ImportError:
        raise InputError(None, "the LLM client needs the 'openai' package: pip install 'radgpt-slicer[llm]'") from None
    return config


def cmd_batch(args) -> int:
    from dataclasses import replace

    from ..errors import InputError
    from ..rules import DEFAULT_RULES
    from .batch import Progress, read_ids, read_phase_csv, run_batch

    phases = read_phase_csv(args.phase_csv) if args.phase_csv else None
    ids = read_ids(args.ids) if args.ids else None
    rules = replace(DEFAULT_RULES, t4_rule=args.t4_rule)
    llm = _llm_config(args)
    if args.concurrency is not None and args.concurrency < 1:
        raise InputError(None, f"--concurrency must be at least 1 (got {args.concurrency})")
    segmenter = None
    if args.seg_model:
        import importlib.util

        from .batch import RunnerSegmenter

        if importlib.util.find_spec("RadGPTLogic.segment") is None:
            raise InputError(None, "--seg-model needs the segmentation backend (RadGPTLogic.segment), "
                                   "which this installation lacks")
        segmenter = RunnerSegmenter(list(args.seg_model), device=args.seg_device, timeout_s=args.timeout)
    result = run_batch(
        args.root, args.out, workers=args.workers, segmenter=segmenter, phase=args.phase or "unknown",
        phases=phases, ids=ids,
        resume=not args.force, timeout=args.timeout, rules=rules, template_dir=args.templates,
        resample=args.resample, progress=Progress(sys.stderr, bar=args.bar),
        executor=args.executor, scheduler=args.scheduler, llm=llm, llm_concurrency=args.concurrency or 2,
        examples=args.examples, style=args.style,
        options_record={
            "workers": args.workers, "phase": args.phase, "phase_csv": args.phase_csv, "ids": args.ids,
            "resume": not args.force, "timeout_s": args.timeout, "t4_rule": args.t4_rule,
            "templates": args.templates, "resample": args.resample, "narrative": bool(llm),
        },
    )
    counts = ", ".join(f"{n} {status}" for status, n in result.counts.items() if n)
    summary = result.out / "batch_summary.csv"
    print(f"batch: {result.cases} case(s): {counts} in {result.seconds:.1f} s -> {summary}")
    n_bad = result.counts.get("failed", 0) + result.counts.get("timeout", 0)
    if n_bad:
        shown = ", ".join(result.first_failed)
        if n_bad > len(result.first_failed):
            shown += f" and {n_bad - len(result.first_failed)} more"
        _say(f"radgpt batch: {n_bad} case(s) failed or timed out: {shown} (see batch_summary.csv)")
    if result.interrupted:
        _say(f"radgpt batch: interrupted by {result.interrupted}; the summary lists what was done")
    if result.lost:
        _say(f"radgpt batch: {result.lost}; unfinished cases are marked cancelled (run again to resume)")
    return result.exit_code


def cmd_export_triplets(args) -> int:
    from .triplets import export_triplets

    log = logging.getLogger("radgpt")
    result = export_triplets(args.out, args.dest, cases_root=args.cases, mode=args.mode, narrative=args.narrative,
                             update=args.update, verify=args.verify, warn=lambda line: log.warning("%s", line))
    print(f"export-triplets: {len(result.exported)} case(s) exported, {len(result.excluded)} left out "
          f"-> {result.dest}")
    return 1 if result.excluded else 0

