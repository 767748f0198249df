"""What a batch reports: the per-case rows, progress as cases end, and the summary files.

``OUT/batch_summary.csv`` (:data:`SUMMARY_COLUMNS`) and ``OUT/batch_summary.json``
(the same rows plus counts, options and how the batch ended) are written atomically
at the end, also after Ctrl-C / SIGTERM or a lost Dask scheduler.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: How a case of a batch ended (each case ends in exactly one).
BatchStatus = Literal["ok", "failed", "timeout", "skipped", "cancelled"]
STATUSES: tuple = ("ok", "failed", "timeout", "skipped", "cancelled")

SUMMARY_COLUMNS = (
    "case_id", "status", "error", "seconds", "n_lesions", "organs_with_lesions", "t_stages", "report",
    "phase", "note", "narrative", "worker", "case_dir",
)


@dataclass
class BatchResult:
    """Rows in case-id order, the counts per status, and how the batch ended."""

    rows: list
    out: Path
    seconds: float
    interrupted: str | None = None  # signal name when stopped by SIGINT/SIGTERM
    exit_code: int = 0
    counts: dict = field(default_factory=dict)
    lost: str | None = None  # the executor went away (a Dask scheduler): what happened

    @property
    def failed(self) -> list:
        return [r for r in self.rows if r["status"] in ("failed", "timeout")]


def say_stderr(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, RuntimeError, ValueError):
        pass


def format_progress(done: int, total: int, row: dict) -> str:
    """``[12/340] BDMAP_00000012 ok 1.3 s`` (+ the error or note)."""
    line = f"[{done}/{total}] {row['case_id']} {row['status']} {row['seconds']:.1f} s"
    if row.get("error"):
        line += f": {row['error']}"
    elif row.get("note") and row["status"] != "skipped":
        line += f" ({row['note']})"
    return line


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Progress on ``stream``: a one-line bar with rate and ETA on a terminal, plain lines otherwise.

    On a terminal the bar is redrawn in place and only cases that did not succeed get
    a line of their own; in a log every case gets :func:`format_progress`'s line.
    """

    def __init__(self, stream=None, bar: bool | None = None, width: int = 28):
        self.stream = stream if stream is not None else sys.stderr
        self.bar = bar if bar is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.t0 = time.monotonic()
        self.counts: dict = {}

    def bar_text(self, done: int, total: int, now: float | None = None) -> str:
        elapsed = max(1e-9, (now if now is not None else time.monotonic()) - self.t0)
        rate = done / elapsed
        filled = int(self.width * done / total) if total else self.width
        eta = _duration((total - done) / rate) if rate > 0 else "--:--"
        counts = " ".join(f"{n} {s}" for s, n in self.counts.items() if n)
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
                f"{rate * 60:.1f} cases/min ETA {eta} {counts}").rstrip()

    def __call__(self, done: int, total: int, row: dict) -> None:
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        try:
            if not self.bar:
                print(format_progress(done, total, row), file=self.stream, flush=True)
                return
            if row["status"] not in ("ok", "skipped"):
                print("\r\033[K" + format_progress(done, total, row), file=self.stream)
            end = "\n" if done == total else ""
            print("\r\033[K" + self.bar_text(done, total), end=end, file=self.stream, flush=True)
        except (OSError, ValueError):
            pass


def _csv_value(key: str, value) -> str:
    if value is None:
        return ""
    if key == "seconds":
        return f"{float(value):.3f}"
    return str(value)


def write_summary(result: BatchResult, root: Path, started_at: str, options: dict) -> None:
    """``OUT/batch_summary.csv`` and ``OUT/batch_summary.json``, each replaced atomically."""
    from ... import __version__
    from ...io.atomic import atomic_write_file

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for row in result.rows:
        row = {**row, "case_dir": str(Path(row["case_dir"]).resolve()) if row.get("case_dir") else ""}
        writer.writerow([_csv_value(k, row.get(k)) for k in SUMMARY_COLUMNS])
    summary = {
        "kind": "radgpt-batch-summary",
        "summary_version": 1,
        "software_version": __version__,
        "root": str(root.resolve()),
        "out": str(result.out.resolve()),
        "started_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": result.seconds,
        "interrupted": result.interrupted,
        "lost": result.lost,
        "exit_code": result.exit_code,
        "options": options,
        "counts": result.counts,
        "cases": [
            {**{k: row.get(k) for k in SUMMARY_COLUMNS},
             "case_dir": str(Path(row["case_dir"]).resolve()) if row.get("case_dir") else "",
             **({"traceback": row["traceback"]} if row.get("traceback") else {})}
            for row in result.rows
        ],
    }
    # One file at a time: the summaries sit beside the case folders, which stay as they are.
    atomic_write_file(result.out / "batch_summary.csv", buf.getvalue())
    atomic_write_file(result.out / "batch_summary.json", json.dumps(summary, indent=2) + "\n")
