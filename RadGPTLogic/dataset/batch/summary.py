"""What a batch reports: the per-case rows, progress as cases end, and the summary files.

A case's row goes to disk as the case ends (:class:`RowSpool`, an unnamed file in
the output folder), not into a list: the batch process holds a few bytes per case,
so its memory does not grow with the number of cases.  ``OUT/batch_summary.csv``
(:data:`SUMMARY_COLUMNS`) and ``OUT/batch_summary.json`` (the same rows plus counts,
options and how the batch ended) are then streamed from the spool in case-id order
and each replaced atomically, also after Ctrl-C / SIGTERM or a lost Dask scheduler.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
import textwrap
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

#: How a case of a batch ended (each case ends in exactly one).
BatchStatus = Literal["ok", "failed", "timeout", "skipped", "cancelled"]
STATUSES: tuple = ("ok", "failed", "timeout", "skipped", "cancelled")

SUMMARY_COLUMNS = (
    "case_id", "status", "error", "seconds", "n_lesions", "organs_with_lesions", "t_stages", "report",
    "phase", "note", "narrative", "worker", "case_dir",
)


@dataclass
class BatchResult:
    """How a batch ended: counts per status, and its rows, read back from ``batch_summary.json``."""

    out: Path
    seconds: float
    interrupted: str | None = None  # signal name when stopped by SIGINT/SIGTERM
    exit_code: int = 0
    counts: dict = field(default_factory=dict)
    lost: str | None = None  # the executor went away (a Dask scheduler): what happened
    first_failed: list = field(default_factory=list)  # up to 20 ids of failed/timeout cases, in case-id order
    _rows: list | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def cases(self) -> int:
        return sum(self.counts.values())

    @property
    def rows(self) -> list:
        """Every case's row in case-id order (``SUMMARY_COLUMNS``, plus ``traceback`` where one
        was recorded), as ``OUT/batch_summary.json`` holds them: read on first use, so
        a batch of 10,000 cases does not keep them in memory unless asked."""
        if self._rows is None:
            summary = json.loads((self.out / "batch_summary.json").read_text(encoding="utf-8"))
            self._rows = summary["cases"]
        return self._rows

    @property
    def failed(self) -> list:
        return [r for r in self.rows if r["status"] in ("failed", "timeout")]


class RowSpool:
    """The rows of a batch's cases, kept on disk as the cases end (one JSON line each).

    ``total`` cases, numbered 0 .. total-1 in case-id order.  In memory: 9 bytes a
    case (where its row starts in the file, and its status).  The file is an
    unnamed temporary file in ``folder`` (the output folder), gone when closed or
    when the process dies.  Recording a case twice keeps the later row.
    """

    def __init__(self, folder: Path, total: int):
        self._file = tempfile.TemporaryFile(dir=folder, prefix=".batch-rows-")
        self._offsets = array("q", [-1]) * total
        self._status = bytearray(total)  # 0: not ended; else 1 + its index in STATUSES
        self.counts = dict.fromkeys(STATUSES, 0)

    def add(self, index: int, row: dict) -> None:
        code = 1 + STATUSES.index(row["status"])
        self._file.seek(0, 2)
        self._offsets[index] = self._file.tell()
        self._file.write(json.dumps(row, default=str).encode("utf-8") + b"\n")
        if self._status[index]:
            self.counts[STATUSES[self._status[index] - 1]] -= 1
        self._status[index] = code
        self.counts[row["status"]] += 1

    @property
    def done(self) -> int:
        """How many cases have ended."""
        return sum(self.counts.values())

    def __contains__(self, index: int) -> bool:
        return bool(self._status[index])

    def indices(self, *statuses: str) -> Iterator[int]:
        """The cases (in order) that ended in one of ``statuses``."""
        codes = {1 + STATUSES.index(s) for s in statuses}
        return (i for i, code in enumerate(self._status) if code in codes)

    def __iter__(self) -> Iterator[dict]:
        """The recorded rows in case order (cases not recorded are left out)."""
        self._file.flush()
        for offset in self._offsets:
            if offset >= 0:
                self._file.seek(offset)
                yield json.loads(self._file.readline())

    def close(self) -> None:
        self._file.close()


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


def _summary_case(row: dict) -> dict:
    """A row as the summary files record it: the summary columns, the case folder resolved."""
    case = {k: row.get(k) for k in SUMMARY_COLUMNS}
    case["case_dir"] = str(Path(row["case_dir"]).resolve()) if row.get("case_dir") else ""
    if row.get("traceback"):
        case["traceback"] = row["traceback"]
    return case


def write_summary(result: BatchResult, root: Path, started_at: str, options: dict, rows) -> None:
    """``OUT/batch_summary.csv`` and ``OUT/batch_summary.json`` from ``rows`` (an iterable in
    case order, read once), streamed to disk and each replaced atomically.

    The JSON is laid out as ``json.dumps(summary, indent=2)`` would lay it out, without
    holding the whole summary in memory.
    """
    from ... import __version__
    from ...io.atomic import atomic_writer

    head = {
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
    }
    # The summaries sit beside the case folders, which stay as they are; each file is
    # replaced on its own (the JSON, then the CSV), and neither when writing fails.
    with atomic_writer(result.out / "batch_summary.csv") as csv_file, \
            atomic_writer(result.out / "batch_summary.json") as json_file:
        writer = csv.writer(csv_file, lineterminator="\n")
        writer.writerow(SUMMARY_COLUMNS)
        json_file.write(json.dumps(head, indent=2)[:-2] + ',\n  "cases": [')
        separator = "\n"
        for row in rows:
            case = _summary_case(row)
            writer.writerow([_csv_value(k, case[k]) for k in SUMMARY_COLUMNS])
            json_file.write(separator + textwrap.indent(json.dumps(case, indent=2), "    "))
            separator = ",\n"
        json_file.write("\n  ]\n}\n" if separator == ",\n" else "]\n}\n")
