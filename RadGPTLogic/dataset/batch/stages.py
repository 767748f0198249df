"""The stages of one case, each a unit an executor can run on its own: segment -> report -> narrative.

Every stage is a plain function of picklable values, so the local process pool and
a Dask cluster run the very same code:

``segment_stage(task, opts) -> task``
    Only for a case given as a CT without masks, when ``opts.segmenter`` is set: the
    segmenter writes a case folder (``OUT/segmented/<case_id>/``) and the task is
    pointed at it.  Raises :class:`~RadGPTLogic.errors.InputError` on failure.
    Executors run it where ``segmenter.resources`` allows (``{"GPU": 1}`` on Dask).
``report_stage(task, opts) -> row``
    Resume check, then :func:`RadGPTLogic.pipeline.run_report`; never raises for a
    bad case: the row says ``ok`` / ``skipped`` / ``failed``.
``narrative_stage(row, opts) -> row``
    When ``opts.llm`` is set and the report stage succeeded: the fact-checked LLM
    narrative (:func:`RadGPTLogic.report.narrative.write_narratives`).  A failure
    is recorded in the row's ``narrative`` column and never changes the case's
    status or loses its report.  Executors bound how many run at once
    (``opts.llm_concurrency``, cluster-wide on Dask).

A segmenter is any picklable object with ``resources`` (a dict), ``setup()``
(called once per worker process before its first case: load the model there) and
``segment(ct_path, out_case_dir)``; :class:`RunnerSegmenter` adapts
:class:`RadGPTLogic.segment.stage.Segmenter`.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ...errors import InputError
from .resume import check_up_to_date

if TYPE_CHECKING:
    from ...rules import Rules

#: Folder of ``OUT`` holding the case folders written by the segmentation stage.
SEGMENTED = "segmented"


@dataclass(frozen=True)
class BatchOptions:
    """What every stage of every case shares (picklable: sent to worker processes)."""

    resume: bool = True
    resample: bool = False
    rules: Rules | None = None     # None: DEFAULT_RULES
    template_dir: str | None = None
    runner: Callable[..., Any] | None = None  # like run_report (tests, embedding); None: run_report
    segmenter: object = None       # see the module doc; None: no segmentation stage
    llm: object = None             # RadGPTLogic.llm.client.LLMConfig; None: no narrative stage
    llm_concurrency: int = 2       # narrative stages running at once (cluster-wide)
    examples: str | None = None    # few-shot examples for the narrative (None: the package's)
    style: str | None = None


def new_row(task: dict) -> dict:
    """The summary row of a case before anything ran."""
    return {
        "case_id": task["case_id"], "status": None, "error": "", "seconds": 0.0, "n_lesions": None,
        "organs_with_lesions": "", "t_stages": "", "report": "", "phase": task.get("phase", "unknown"),
        "note": "", "narrative": "", "worker": "", "case_dir": task.get("case_dir", ""),
        "out_dir": task.get("out_dir", ""),
    }


def fill_from_findings(row: dict, data: dict | None) -> None:
    """Copy the row's findings columns (lesion count, organs, T stages) from findings.json data."""
    if not data:
        return
    lesions = data.get("lesions") or []
    organs = []
    for lesion in lesions:
        if lesion.get("organ") and lesion["organ"] not in organs:
            organs.append(lesion["organ"])
    row["n_lesions"] = len(lesions)
    row["organs_with_lesions"] = ";".join(organs)
    row["t_stages"] = ";".join(f"{l.get('id')}:{l['t_stage']}" for l in lesions if l.get("t_stage"))
    row["report"] = f"{row['case_id']}/report.txt"


def _worker_name() -> str:
    return f"{os.uname().nodename if hasattr(os, 'uname') else 'host'}:{os.getpid()}"


def _failed(row: dict, exc: BaseException) -> None:
    if isinstance(exc, InputError):
        row.update(status="failed", error=exc.one_line())
    elif isinstance(exc, MemoryError):
        row.update(status="failed", error="internal error: out of memory")
    else:
        row.update(status="failed", error=" ".join(f"internal error: {type(exc).__name__}: {exc}".split()),
                   traceback=traceback.format_exc())


# ----------------------------------------------------------------------------- segmentation

_SET_UP: dict = {}  # id(segmenter spec) -> segmenter whose setup() ran in this process


def _ready_segmenter(segmenter):
    """The segmenter, set up once in this process (the model stays loaded between cases)."""
    key = repr(segmenter)
    ready = _SET_UP.get(key)
    if ready is None:
        setup = getattr(segmenter, "setup", None)
        if setup is not None:
            setup()
        _SET_UP[key] = ready = segmenter
    return ready


def needs_segmentation(task: dict) -> bool:
    return bool(task.get("segment"))


def segment_stage(task: dict, opts: BatchOptions) -> dict:
    """Segment the task's CT into ``OUT/segmented/<case_id>/`` and return the task pointed there.

    Kept when that folder already holds this very CT (same sha256) and masks and
    ``opts.resume`` is set.
    """
    from ...io.atomic import sha256_file
    from ...io.casefolder import CT_FILE_NAMES

    if not needs_segmentation(task):
        return task
    if opts.segmenter is None:
        raise InputError(Path(task["case_dir"]) / "segmentations",
                         "missing folder, and no segmentation model given (--model)")
    case_dir = Path(task["case_dir"])
    ct = next((case_dir / n for n in CT_FILE_NAMES if (case_dir / n).is_file()), None)
    if ct is None:
        raise InputError(case_dir, "no ct.nii.gz to segment")
    target = Path(task["out_dir"]).parent / SEGMENTED / task["case_id"]
    done = target / ct.name
    if opts.resume and done.is_file() and (target / "segmentations").is_dir() \
            and sha256_file(done) == sha256_file(ct):
        return {**task, "case_dir": str(target), "segment": False, "segmented": "kept"}
    _ready_segmenter(opts.segmenter).segment(str(ct), str(target))
    if not (target / "segmentations").is_dir():
        raise InputError(target, "the segmentation stage wrote no segmentations/ folder")
    return {**task, "case_dir": str(target), "segment": False, "segmented": "new"}


class RunnerSegmenter:
    """A segmenter over :class:`RadGPTLogic.segment.stage.Segmenter` (nnU-Net v2 models).

    Runs in the batch worker's own process (the batch already isolates cases in
    worker processes with their own timeouts and cancel), and loads the models once
    per worker process (:meth:`setup`), never once per case.  ``resources``
    defaults to ``{"GPU": 1}`` for a CUDA device, else none.
    """

    def __init__(self, models, device: str = "auto", timeout_s: float | None = None, resources: dict | None = None,
                 folds=None, mirroring: bool | None = None, tile_step: float = 0.5, label_map: dict | None = None):
        self.models = [str(m) for m in models]
        self.device = device
        self.timeout_s = timeout_s  # kept for callers; the batch's own per-case timeout applies
        self.folds = folds
        self.mirroring = mirroring
        self.tile_step = tile_step
        self.label_map = label_map
        self.resources = dict(resources) if resources is not None else (
            {"GPU": 1} if str(device).startswith("cuda") else {})
        self._segmenter: Any = None  # RadGPTLogic.segment.stage.Segmenter, made by setup()

    def __repr__(self) -> str:
        return f"RunnerSegmenter({self.models!r}, device={self.device!r}, folds={self.folds!r})"

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_segmenter"}

    def __setstate__(self, state):
        self.__dict__.update(state, _segmenter=None)

    def setup(self) -> None:
        try:
            from ...segment.stage import Segmenter
        except ImportError:
            raise InputError(None, "segmentation is not available in this installation "
                                   "(RadGPTLogic.segment is missing)") from None
        self._segmenter = Segmenter(self.models, device=self.device, folds=self.folds, mirroring=self.mirroring,
                                    tile_step=self.tile_step, label_map=self.label_map)

    def segment(self, ct_path, out_case_dir) -> None:
        if self._segmenter is None:
            self.setup()
        self._segmenter.segment(ct_path, out_case_dir)


# ----------------------------------------------------------------------------- report

def report_stage(task: dict, opts: BatchOptions) -> dict:
    """Run one case's report (or confirm it is up to date); never raises for a bad case.

    Returns the summary row.  Only :class:`KeyboardInterrupt` (and other
    ``BaseException``\\ s such as the in-process timeout) pass through.
    """
    from ...rules import DEFAULT_RULES

    t0 = time.monotonic()
    row = new_row(task)
    row["worker"] = _worker_name()
    rules = opts.rules or DEFAULT_RULES
    try:
        if task.get("error"):  # an earlier stage failed
            raise InputError(None, task["error"])
        if opts.resume:
            fresh, reason, data = check_up_to_date(task["case_dir"], task["out_dir"], task["phase"], rules)
            if fresh:
                row.update(status="skipped", note="up to date")
                fill_from_findings(row, data)
                return row
            row["note"] = f"recomputed: {reason}" if reason else ""
        elif (Path(task["out_dir"]) / "findings.json").exists():
            row["note"] = "recomputed: --force"
        if task.get("segmented") == "new":
            row["note"] = "; ".join(n for n in ("segmented", row["note"]) if n)
        runner = opts.runner
        if runner is None:
            from ...pipeline import run_report

            runner = run_report
        findings = runner(task["case_dir"], task["out_dir"], phase=task["phase"], resample=opts.resample,
                          rules=rules, template_dir=opts.template_dir)
        data = findings.to_dict() if hasattr(findings, "to_dict") else findings
        row["status"] = "ok"
        fill_from_findings(row, data if isinstance(data, dict) else None)
    except Exception as exc:  # noqa: BLE001 - a bad case must never stop the batch
        _failed(row, exc)
    finally:
        row["seconds"] = round(time.monotonic() - t0, 3)
    return row


def case_stages(task: dict, opts: BatchOptions) -> dict:
    """Segmentation (when needed) and report of one case in this process: the summary row."""
    t0 = time.monotonic()
    try:
        task = segment_stage(task, opts)
    except Exception as exc:  # noqa: BLE001
        row = new_row(task)
        row["worker"] = _worker_name()
        _failed(row, exc)
        row["seconds"] = round(time.monotonic() - t0, 3)
        return row
    row = report_stage(task, opts)
    row["seconds"] = round(time.monotonic() - t0, 3)
    return row


# ----------------------------------------------------------------------------- narrative

def wants_narrative(row: dict, opts: BatchOptions) -> bool:
    return opts.llm is not None and row.get("status") in ("ok", "skipped")


def narrative_stage(row: dict, opts: BatchOptions) -> dict:
    """Write the case's narrative when wanted (see the module doc); the row with ``narrative`` set.

    A skipped (up-to-date) case keeps a narrative it already has: its report did
    not change, and the pipeline drops narratives whenever findings change.
    """
    if not wants_narrative(row, opts):
        return row
    row = dict(row)
    out_dir = Path(row["out_dir"])
    t0 = time.monotonic()
    try:
        if row["status"] == "skipped" and (out_dir / "narrative_check.json").is_file() \
                and (out_dir / "narrative.txt").is_file():
            from .resume import output_problems

            if not output_problems(out_dir, ("narrative.txt", "narrative_check.json")):
                row["narrative"] = "kept"
                return row
        from ...report.narrative import write_narratives

        result = write_narratives([out_dir], opts.llm, examples=opts.examples, style=opts.style,
                                  max_concurrency=1)[0]
        if isinstance(result, Exception):
            row["narrative"] = " ".join(f"failed: {result}".split())
        else:
            row["narrative"] = result.status  # accepted | fallback
    except Exception as exc:  # noqa: BLE001 - the report stays whatever happens here
        message = exc.one_line() if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        row["narrative"] = " ".join(f"failed: {message}".split())
    finally:
        row["seconds"] = round(float(row.get("seconds") or 0) + time.monotonic() - t0, 3)
    return row
