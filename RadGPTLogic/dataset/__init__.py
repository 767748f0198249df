"""Dataset building: ``radgpt batch`` over many case folders and ``radgpt export-triplets``.

- :mod:`.batch` (a package): find case folders under a root, run each case's stages
  (segmentation, :func:`RadGPTLogic.pipeline.run_report`, narrative) on an executor
  (local worker processes or a Dask cluster), and record every case's outcome in
  ``batch_summary.csv`` / ``batch_summary.json``.
- :mod:`.report_tables`: ``reports.csv`` and the tidy findings table of finished cases.
- :mod:`.triplets`: turn the batch outputs into a CT-mask-report dataset with
  ``metadata.csv`` / ``metadata.jsonl``.
- :mod:`.dataset_cli`: the two sub-commands (``register(subparsers)``).

Heavy modules (numpy, nibabel, the engine) are imported only where a case is run.
"""

from .batch import (
    STATUSES,
    SUMMARY_COLUMNS,
    BatchResult,
    discover_cases,
    format_progress,
    normalise_phase,
    read_ids,
    read_phase_csv,
    run_batch,
)
from .triplets import METADATA_COLUMNS, ExportResult, export_triplets

__all__ = [
    "STATUSES",
    "SUMMARY_COLUMNS",
    "BatchResult",
    "discover_cases",
    "format_progress",
    "normalise_phase",
    "read_ids",
    "read_phase_csv",
    "run_batch",
    "METADATA_COLUMNS",
    "ExportResult",
    "export_triplets",
]
