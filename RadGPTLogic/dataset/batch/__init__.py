"""``radgpt batch``: run the report pipeline over many case folders, losing none.

A batch finds the case folders under a root (folders holding ``segmentations/``;
with a segmentation model also folders holding only a CT), runs each case's stages
(segmentation when needed, the report through
:func:`RadGPTLogic.pipeline.run_report`, the LLM narrative when an endpoint is
given) into ``OUT/<case_id>/`` on an executor (``local`` worker processes, or a
``dask.distributed`` cluster), and records what happened to every case in
``OUT/batch_summary.csv`` and ``batch_summary.json`` (written atomically at the end,
also after Ctrl-C / SIGTERM or a lost scheduler), plus the dataset tables
``OUT/reports.csv`` and the findings table.

Every case ends in exactly one status (:data:`STATUSES`):

``ok``
    findings.json and the reports were written (or rewritten).
``failed``
    bad input or an internal error; ``error`` holds one line (the bad file and the
    problem for bad input).  Also: a folder that looks like a case (holds
    ``ct.nii.gz`` or is named ``BDMAP_*``) but has no ``segmentations/`` (and no
    model was given), a case id found twice under the root, an id from ``--ids``
    that is not under the root, and a worker process that died (e.g. killed for
    memory) or, on Dask, a case that killed its workers repeatedly.
``timeout``
    the case's segmentation or report ran longer than the per-case limit; only that
    case's worker process was stopped, and nothing of it is half-written.
``skipped``
    resume (the default): ``OUT/<case_id>/`` holds one whole set of outputs (every
    report matches the hash its manifest recorded when the findings were written)
    made from the same input files (``provenance.inputs``), phase, rules and
    software version (see :mod:`.resume`).  ``force=True`` recomputes.
``cancelled``
    only when the batch was interrupted or its Dask scheduler went away: not
    started, or stopped while running.  A re-run picks these cases up.

Modules, in the order data flows: :mod:`.tables` (phase CSV, id lists),
:mod:`.discovery` (case folders), :mod:`.resume` (is an output up to date?),
:mod:`.stages` (one case's segment/report/narrative stages), :mod:`.worker` (case
processes that die with their parent), :mod:`.executor` (the interface),
:mod:`.local` and :mod:`.dask_executor` (the executors), :mod:`.summary` (rows,
progress, summary files), :mod:`.run` (:func:`run_batch`).
"""

from __future__ import annotations

from ...rules import normalise_phase
from .discovery import CaseFolder, discover_cases
from .executor import Executor, Stop
from .resume import check_up_to_date, current_inputs, input_changes, output_problems, recorded_inputs
from .run import make_executor, run_batch
from .stages import BatchOptions, RunnerSegmenter, case_stages, narrative_stage, report_stage, segment_stage
from .summary import STATUSES, SUMMARY_COLUMNS, BatchResult, Progress, format_progress
from .tables import read_ids, read_phase_csv

__all__ = [
    "STATUSES", "SUMMARY_COLUMNS", "BatchResult", "BatchOptions", "CaseFolder", "Executor", "Progress", "Stop",
    "RunnerSegmenter", "case_stages", "check_up_to_date", "current_inputs", "discover_cases", "format_progress",
    "input_changes", "make_executor", "narrative_stage", "normalise_phase", "output_problems", "read_ids",
    "read_phase_csv", "recorded_inputs", "report_stage", "run_batch", "segment_stage",
]
