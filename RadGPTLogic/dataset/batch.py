"""``radgpt batch``: run the report engine over many case folders, losing none.

A batch finds the case folders under a root (folders holding ``segmentations/``),
runs :func:`RadGPTLogic.cli.run_report` for each into ``OUT/<case_id>/`` and records
what happened to every case in ``OUT/batch_summary.csv`` and ``batch_summary.json``
(written atomically at the end, also after Ctrl-C / SIGTERM).

Every case ends in exactly one status (:data:`STATUSES`):

``ok``
    findings.json and the reports were written (or rewritten).
``failed``
    bad input or an internal error; ``error`` holds one line (the bad file and the
    problem for bad input).  Also: a folder that looks like a case (holds
    ``ct.nii.gz`` or is named ``BDMAP_*``) but has no ``segmentations/``, a case id
    found twice under the root, an id from ``--ids`` that is not under the root,
    and a worker process that died (e.g. killed for memory).
``timeout``
    the case ran longer than the per-case timeout; its worker was killed.
``skipped``
    resume (the default): ``OUT/<case_id>/findings.json`` exists, was made from
    the same input files (``provenance.inputs`` sha256 of the CT and of every mask
    with a known structure name, and no input added or removed), with the same
    phase, rules and software version.  ``force=True`` recomputes.
``cancelled``
    only when the batch was interrupted: not started, or stopped while running.

Folders without ``segmentations/`` that do not look like a case (no CT file, not
``BDMAP_*``) are not cases: they are searched for case folders below them and are
otherwise ignored.

Processes: ``workers`` long-lived worker processes, each with its own pipe, each
handling one case at a time; only the small summary row comes back.  A worker that
times out or dies is replaced; the others are unaffected.  ``workers=1`` runs the
cases in this process (the timeout then fires between Python operations, through
SIGALRM).

Signals: the first SIGINT/SIGTERM stops submitting new cases and lets running ones
finish; a second one cancels the running cases.  Workers ignore both signals (the
batch process decides), so a Ctrl-C in the terminal does not kill them mid-case.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..rules import PHASES, normalise_phase

STATUSES = ("ok", "failed", "timeout", "skipped", "cancelled")

SUMMARY_COLUMNS = (
    "case_id", "status", "error", "seconds", "n_lesions", "organs_with_lesions", "t_stages", "report",
    "phase", "note", "case_dir",
)


# Exit codes of an interrupted batch (shell convention 128 + signal number).
_EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

# ============================================================================ tables


def _norm_key(text: str) -> str:
    """A table header or id for comparison: lower case, ``_``/``-`` as spaces, spaces squeezed."""
    return " ".join(str(text).strip().lower().replace("_", " ").replace("-", " ").split())

_ID_HEADERS = {"case id", "case", "id", "bdmap id", "bdmap", "caseid", "case name", "name"}
_PHASE_HEADERS = {"phase", "ct phase", "contrast phase", "contrast"}


def _read_table(path) -> list:
    """Rows (lists of stripped cells) of a small CSV/TSV file; blank lines dropped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file") from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    delimiter = "\t" if "\t" in first else ";" if (";" in first and "," not in first) else ","
    rows = []
    for n, row in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        cells = [c.strip() for c in row]
        if any(cells):
            rows.append((n, cells))
    return rows


def read_phase_csv(path) -> dict:
    """``case_id -> phase`` from a CSV with ``case_id,phase`` columns.

    Header names are matched loosely (``case_id``/``BDMAP ID``/``case``/``id`` and
    ``phase``/``CT Phase``), so RadGPT's ``AbdomenAtlas_metadata.csv`` works as is;
    without a header the first two columns are taken.  Values go through
    :func:`normalise_phase`; an unknown value, or one case given two different
    phases, is an :class:`InputError` naming the file and line.
    """
    rows = _read_table(path)
    if not rows:
        raise InputError(path, "empty phase CSV (expected case_id,phase rows)")
    header = [_norm_key(c) for c in rows[0][1]]
    id_col = next((i for i, h in enumerate(header) if h in _ID_HEADERS), None)
    phase_col = next((i for i, h in enumerate(header) if h in _PHASE_HEADERS), None)
    if id_col is not None and phase_col is not None:
        body = rows[1:]
    elif len(rows[0][1]) >= 2 and normalise_phase(rows[0][1][1]) is not None and id_col is None:
        id_col, phase_col, body = 0, 1, rows  # no header
    else:
        raise InputError(path, "no case_id and phase columns (expected a header 'case_id,phase')")
    out = {}
    for line, cells in body:
        case_id = cells[id_col] if id_col < len(cells) else ""
        if not case_id:
            continue
        raw = cells[phase_col] if phase_col < len(cells) else ""
        phase = normalise_phase(raw)
        if phase is None:
            raise InputError(path, f"line {line}: unknown phase {raw!r} for {case_id} "
                                   f"(expected one of {', '.join(PHASES)}, or Plain/Venous/Arterial/Delay)")
        if case_id in out and out[case_id] != phase:
            raise InputError(path, f"line {line}: {case_id} has two phases ({out[case_id]} and {phase})")
        out[case_id] = phase
    return out


def read_ids(path) -> list:
    """Case ids from a text file (one per line, ``#`` comments) or a CSV with a
    ``case_id`` / ``BDMAP ID`` column (else its first column); order kept, duplicates dropped."""
    rows = _read_table(path)
    if not rows:
        return []
    header = [_norm_key(c) for c in rows[0][1]]
    col = next((i for i, h in enumerate(header) if h in _ID_HEADERS), None)
    body = rows[1:] if col is not None else rows
    col = col or 0
    out = []
    for _, cells in body:
        value = cells[col] if col < len(cells) else ""
        if value and not value.startswith("#") and value not in out:
            out.append(value)
    return out


# ============================================================================ discovery


@dataclass(frozen=True)
class CaseFolder:
    """A case folder found under the root; ``problem`` (one line) when it cannot be run."""

    case_id: str
    path: Path
    problem: str | None = None


def _is_case(path: Path) -> bool:
    return (path / "segmentations").is_dir()


def _looks_like_case(path: Path) -> bool:
    from ..io.casefolder import CT_FILE_NAMES

    return path.name.upper().startswith("BDMAP_") or any((path / n).is_file() for n in CT_FILE_NAMES)


def discover_cases(root, exclude=()) -> list:
    """Case folders under ``root``, sorted by case id (then path).

    A case folder holds ``segmentations/``; ``root`` itself may be one.  The search
    descends into other folders (not into case folders, hidden folders, ``exclude``,
    or folders holding ``batch_summary.json`` or ``metadata.jsonl``: batch outputs
    and triplet datasets), following symbolic links once.  Folders that look like a case
    (hold ``ct.nii.gz``/``ct.nii`` or are named ``BDMAP_*``) but lack
    ``segmentations/`` come back with a ``problem``; so does the second folder of
    a case id found twice.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "case root does not exist or is not a folder")
    if _is_case(root):
        return [CaseFolder(root.name, root, None)]
    skip = {os.path.realpath(p) for p in exclude}
    found, stack, seen = [], [root], set()
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                subdirs = sorted(Path(e.path) for e in it if not e.name.startswith(".") and e.is_dir())
        except OSError:
            continue
        for sub in reversed(subdirs):
            if os.path.realpath(sub) in skip:
                continue
            if any((sub / n).is_file() for n in ("batch_summary.json", "metadata.jsonl")):
                continue  # a batch output or a triplet dataset: copies, not cases
            if _is_case(sub):
                found.append(CaseFolder(sub.name, sub, None))
            elif _looks_like_case(sub):
                problem = InputError(sub / "segmentations",
                                     "missing folder: a case needs segmentations/<structure>.nii.gz").one_line()
                found.append(CaseFolder(sub.name, sub, problem))
            else:
                stack.append(sub)
    found.sort(key=lambda c: (c.case_id, c.problem is not None, str(c.path)))
    out, first = [], {}
    for case in found:
        if case.case_id in first:
            other = first[case.case_id]
            case = CaseFolder(case.case_id, case.path,
                              InputError(case.path, f"duplicate case id (also found at {other.path}); not run").one_line())
        else:
            first[case.case_id] = case
        out.append(case)
    return out


# ============================================================================ one case


def current_inputs(case_dir) -> dict:
    """The files ``run_report`` would read for ``case_dir``: relative path -> Path
    (the one definition in :mod:`RadGPTLogic.io.casefolder`)."""
    from ..io.casefolder import relative_inputs

    return relative_inputs(case_dir)


def recorded_inputs(findings: dict) -> dict | None:
    """``provenance.inputs`` as relative path -> sha256 (None when not recorded from files)."""
    inputs = (findings.get("provenance") or {}).get("inputs")
    if not isinstance(inputs, dict) or not inputs:
        return None
    out = {}
    for name, entries in inputs.items():
        for entry in entries or ():
            if not isinstance(entry, dict) or "path" not in entry or "sha256" not in entry:
                return None
            base = Path(entry["path"]).name
            out[base if name == "ct" else f"segmentations/{base}"] = entry["sha256"]
    return out


def input_changes(case_dir, findings: dict) -> list:
    """How the case folder's inputs differ from those findings.json was made from
    (empty when identical): ``["segmentations/liver.nii.gz changed", ...]``."""
    from ..io.atomic import sha256_file

    recorded = recorded_inputs(findings)
    if recorded is None:
        return ["findings.json records no input hashes"]
    now = current_inputs(case_dir)
    changes = [f"{rel} added" for rel in sorted(set(now) - set(recorded))]
    changes += [f"{rel} removed" for rel in sorted(set(recorded) - set(now))]
    for rel in sorted(set(now) & set(recorded)):
        try:
            digest = sha256_file(now[rel])
        except OSError:
            digest = None
        if digest != recorded[rel]:
            changes.append(f"{rel} changed")
    return changes


def check_up_to_date(case_dir, out_dir, phase: str, rules) -> tuple:
    """``(up_to_date, reason, findings_dict)``: may ``out_dir`` be kept as it is?

    ``reason`` says why not (None when there is no previous output at all).
    """
    from .. import __version__

    findings_path = Path(out_dir) / "findings.json"
    if not findings_path.is_file():
        return False, None, None
    try:
        data = json.loads(findings_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "previous findings.json unreadable", None
    if not isinstance(data, dict):
        return False, "previous findings.json unreadable", None
    if not (Path(out_dir) / "report.txt").is_file():
        return False, "previous report.txt missing", data
    prov = data.get("provenance") or {}
    if data.get("phase") != phase:
        return False, f"phase changed ({data.get('phase')} -> {phase})", data
    if prov.get("version") != __version__:
        return False, f"software version changed ({prov.get('version')} -> {__version__})", data
    if prov.get("rules") != json.loads(json.dumps(rules.as_dict())):
        return False, "rules changed", data
    changes = input_changes(case_dir, data)
    if changes:
        more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
        return False, "; ".join(changes[:3]) + more, data
    return True, "up to date", data


@dataclass(frozen=True)
class _Options:
    resume: bool
    resample: bool
    rules: object
    template_dir: str | None
    runner: object = None  # callable like run_report (tests, embedding); None: run_report


class _CaseTimeout(BaseException):
    """Raised by SIGALRM in in-process mode (BaseException: not swallowed as a case error)."""


def _fill_from_findings(row: dict, data: dict | None) -> None:
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


def _new_row(task: dict) -> dict:
    return {
        "case_id": task["case_id"], "status": None, "error": "", "seconds": 0.0, "n_lesions": None,
        "organs_with_lesions": "", "t_stages": "", "report": "", "phase": task.get("phase", "unknown"),
        "note": "", "case_dir": task.get("case_dir", ""), "out_dir": task.get("out_dir", ""),
    }


def process_case(task: dict, opts: _Options) -> dict:
    """Run one case (or confirm it is up to date); never raises for a bad case.

    Returns the summary row.  Only :class:`KeyboardInterrupt` and the in-process
    timeout pass through.
    """
    t0 = time.monotonic()
    row = _new_row(task)
    try:
        if opts.resume:
            fresh, reason, data = check_up_to_date(task["case_dir"], task["out_dir"], task["phase"], opts.rules)
            if fresh:
                row.update(status="skipped", note="up to date")
                _fill_from_findings(row, data)
                return row
            row["note"] = f"recomputed: {reason}" if reason else ""
        elif (Path(task["out_dir"]) / "findings.json").exists():
            row["note"] = "recomputed: --force"
        runner = opts.runner
        if runner is None:
            from ..pipeline import run_report as runner
        findings = runner(task["case_dir"], task["out_dir"], phase=task["phase"], resample=opts.resample,
                          rules=opts.rules, template_dir=opts.template_dir)
        data = findings.to_dict() if hasattr(findings, "to_dict") else findings
        row["status"] = "ok"
        _fill_from_findings(row, data if isinstance(data, dict) else None)
    except InputError as exc:
        row.update(status="failed", error=exc.one_line())
    except MemoryError:
        row.update(status="failed", error="internal error: out of memory")
    except Exception as exc:  # noqa: BLE001 - a bad case must never stop the batch
        row.update(status="failed", error=" ".join(f"internal error: {type(exc).__name__}: {exc}".split()),
                   traceback=traceback.format_exc())
    finally:
        row["seconds"] = round(time.monotonic() - t0, 3)
    return row


# ============================================================================ the pool


def _worker_main(conn, opts: _Options) -> None:
    """Worker process: one case at a time, tasks and rows over its own pipe."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)  # the batch process decides when to stop
        except (ValueError, OSError):
            pass
    try:  # pay the import cost before the first case's clock starts
        from .. import pipeline  # noqa: F401
    except Exception:  # noqa: BLE001 - the case will report it
        pass
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        row = process_case(task, opts)
        try:
            conn.send(row)
        except (OSError, ValueError):
            return


class _Slot:
    def __init__(self, ctx, opts):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, opts), name="radgpt-batch-worker", daemon=True)
        self.proc.start()
        child.close()
        self.task = None
        self.index = None
        self.started = 0.0

    def assign(self, index: int, task: dict) -> bool:
        try:
            self.conn.send(task)
        except (OSError, ValueError):
            return False
        self.index, self.task, self.started = index, task, time.monotonic()
        return True

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def death_message(self) -> str:
        self.proc.join(1)
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (possibly out of memory)" if -code == signal.SIGKILL else ""
            return f"worker process killed by {name}{hint} while running this case"
        return f"worker process exited (code {code}) while running this case"


class _Stop:
    """What the signal handler saw: the first signal stops submitting, the second cancels."""

    def __init__(self, say):
        self.signum = None
        self.cancel = False
        self.in_case = False  # in-process mode: a case is running in this thread
        self.say = say

    def handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            self.say(f"radgpt batch: {signal.Signals(signum).name}: starting no new cases; waiting for the running "
                     "ones (send it again to cancel them)")
        else:
            self.cancel = True
            if self.in_case:
                raise KeyboardInterrupt


@dataclass
class BatchResult:
    """Rows in case-id order, the counts per status, and how the batch ended."""

    rows: list
    out: Path
    seconds: float
    interrupted: str | None = None  # signal name when stopped by SIGINT/SIGTERM
    exit_code: int = 0
    counts: dict = field(default_factory=dict)

    @property
    def failed(self) -> list:
        return [r for r in self.rows if r["status"] in ("failed", "timeout")]


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _say_stderr(line: str) -> None:
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


def run_batch(root, out, *, workers: int | None = None, phase: str = "unknown", phases: dict | None = None,
              ids=None, resume: bool = True, timeout: float | None = None, rules=None, template_dir=None,
              resample: bool = False, progress=None, runner=None, handle_signals: bool = True,
              options_record: dict | None = None) -> BatchResult:
    """Run every case folder under ``root`` into ``out/<case_id>/``; see the module doc.

    Parameters
    ----------
    workers : int, optional
        Worker processes (default: the CPUs this process may use); 1 runs in-process.
    phase, phases :
        The phase of every case, or ``case_id -> phase`` (cases missing from it get
        ``phase``).  Values as :func:`normalise_phase` accepts.
    ids : iterable of str, optional
        Only these case ids; ids not found under ``root`` are ``failed`` rows.
    resume : bool
        Skip cases whose outputs are up to date (default); False recomputes all.
    timeout : float, optional
        Per-case limit in seconds; the case becomes ``timeout``.
    rules, template_dir, resample :
        As for :func:`RadGPTLogic.cli.run_report`.
    progress : callable(done, total, row), optional
        Called in this process as each case ends (the CLI prints :func:`format_progress`).
    runner : callable, optional
        Replaces ``run_report`` (same signature; must be picklable for workers > 1).
    handle_signals : bool
        Install the SIGINT/SIGTERM handlers (only possible in the main thread).

    Writes ``out/batch_summary.csv`` and ``out/batch_summary.json`` atomically and
    returns a :class:`BatchResult` whose ``exit_code`` is 0 (all ok/skipped), 1 (any
    failed or timeout) or 130/143 (interrupted by SIGINT/SIGTERM).
    """
    from ..rules import DEFAULT_RULES

    t_start = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    root, out = Path(root), Path(out)
    rules = rules or DEFAULT_RULES
    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a folder")
    if template_dir is not None and not Path(template_dir).is_dir():
        raise InputError(template_dir, "template folder does not exist")
    if workers is None:
        workers = _default_workers()
    if int(workers) < 1:
        raise InputError(None, f"--workers must be at least 1 (got {workers})")
    workers = int(workers)
    if timeout is not None and not timeout > 0:
        raise InputError(None, f"--timeout must be positive (got {timeout})")
    default_phase = normalise_phase(phase)
    if default_phase is None:
        raise InputError(None, f"unknown phase {phase!r}")
    phases = {k: normalise_phase(v) or "unknown" for k, v in (phases or {}).items()}

    # The output folder is never searched for cases, but it may lie inside the root.
    exclude = [out] if out.resolve() != root.resolve() else []
    found = discover_cases(root, exclude=exclude)
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        by_id = {}
        for case in found:
            by_id.setdefault(case.case_id, []).append(case)
        found = [c for i in wanted for c in by_id.get(i, [])]
        for i in wanted:
            if i not in by_id:
                found.append(CaseFolder(i, root / i, InputError(root, f"no case folder {i!r} under the root "
                                                                      "(listed in --ids)").one_line()))
        found.sort(key=lambda c: (c.case_id, c.problem is not None, str(c.path)))
    if not found:
        raise InputError(root, "no case folders found (a case folder holds segmentations/<structure>.nii.gz)")
    out.mkdir(parents=True, exist_ok=True)

    total = len(found)
    rows: list = [None] * total
    done = 0

    def record(index: int, row: dict) -> None:
        nonlocal done
        rows[index] = row
        done += 1
        if progress is not None:
            try:
                progress(done, total, row)
            except Exception:  # noqa: BLE001 - a broken progress printer must not lose the batch
                pass

    tasks = deque()
    for index, case in enumerate(found):
        task = {"case_id": case.case_id, "case_dir": str(case.path), "out_dir": str(out / case.case_id),
                "phase": phases.get(case.case_id, default_phase)}
        if case.problem:
            row = _new_row(task)
            row.update(status="failed", error=case.problem)
            record(index, row)
        else:
            tasks.append((index, task))

    opts = _Options(resume=resume, resample=resample, rules=rules,
                    template_dir=None if template_dir is None else str(template_dir), runner=runner)
    stop = _Stop(_say_stderr)
    main_thread = threading.current_thread() is threading.main_thread()
    installed = {}
    if handle_signals and main_thread:
        for sig in (signal.SIGINT, signal.SIGTERM):
            installed[sig] = signal.signal(sig, stop.handler)
    can_alarm = main_thread and hasattr(signal, "setitimer")
    try:
        if workers == 1 and (timeout is None or can_alarm):
            _run_in_process(tasks, opts, timeout, stop, record)
        else:
            _run_pool(tasks, opts, min(workers, max(1, len(tasks))), timeout, stop, record)
    finally:
        for sig, old in installed.items():
            signal.signal(sig, old)
        for index, task in tasks:  # never started (interrupted, or an error in this process)
            if rows[index] is None:
                row = _new_row(task)
                row.update(status="cancelled", error="not started (batch interrupted)")
                rows[index] = row
        for index, row in enumerate(rows):
            if row is None:  # only after an unexpected error in this process
                row = _new_row({"case_id": found[index].case_id, "case_dir": str(found[index].path)})
                row.update(status="cancelled", error="not finished (batch stopped)")
                rows[index] = row
        counts = {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES}
        interrupted = signal.Signals(stop.signum).name if stop.signum is not None else None
        if stop.signum is not None:
            exit_code = _EXIT_ON_SIGNAL.get(stop.signum, 130)
        else:
            exit_code = 1 if counts["failed"] or counts["timeout"] or counts["cancelled"] else 0
        result = BatchResult(rows=rows, out=out, seconds=round(time.monotonic() - t_start, 3),
                             interrupted=interrupted, exit_code=exit_code, counts=counts)
        _write_summary(result, root, started_at, options_record or {
            "workers": workers, "phase": default_phase, "phases_given": bool(phases), "resume": resume,
            "timeout_s": timeout, "t4_rule": getattr(rules, "t4_rule", None),
            "templates": None if template_dir is None else str(template_dir), "resample": resample,
            "ids_given": ids is not None,
        })
    return result


def _run_in_process(tasks, opts, timeout, stop, record) -> None:
    def on_alarm(signum, frame):
        raise _CaseTimeout()

    old_alarm = signal.signal(signal.SIGALRM, on_alarm) if timeout is not None else None
    try:
        while tasks and stop.signum is None:
            index, task = tasks[0]
            t0 = time.monotonic()
            try:
                stop.in_case = True
                if timeout is not None:
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    row = process_case(task, opts)
                finally:
                    if timeout is not None:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                    stop.in_case = False
            except _CaseTimeout:
                _remove_partial_output(task["out_dir"])
                row = _new_row(task)
                row.update(status="timeout", error=f"no result within {timeout:g} s (case stopped)")
            except KeyboardInterrupt:
                stop.cancel = True
                if stop.signum is None:
                    stop.signum = signal.SIGINT
                row = _new_row(task)
                row.update(status="cancelled", error="cancelled while running (batch interrupted)")
            if row["status"] in ("timeout", "cancelled"):
                row["seconds"] = round(time.monotonic() - t0, 3)
            tasks.popleft()
            record(index, row)
    finally:
        if old_alarm is not None:
            signal.signal(signal.SIGALRM, old_alarm)


def _remove_partial_output(out_dir) -> None:
    """Resolve what a killed worker's write left beside ``out_dir`` (see
    :func:`RadGPTLogic.io.atomic.recover`): the folder ends whole, old or new."""
    from ..io.atomic import recover

    try:
        recover(out_dir)
    except OSError:
        pass


def _run_pool(tasks, opts, workers, timeout, stop, record) -> None:
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context()
    slots: list = []
    dead_at_start = 0

    def finish(slot, row, remove: bool) -> None:
        index, task = slot.index, slot.task
        slot.task = slot.index = None
        if remove:  # the worker is killed or dead: drop it and any half-written output folder
            slot.kill()
            slots.remove(slot)
            _remove_partial_output(task["out_dir"])
        record(index, row)

    def give_work(slot, fresh: bool) -> None:
        nonlocal dead_at_start
        index, task = tasks[0]
        if slot.assign(index, task):
            tasks.popleft()
        elif fresh:
            dead_at_start += 1
            if dead_at_start > 3 * workers + 3:
                raise RuntimeError("batch worker processes exit at start; run with --workers 1 to see why")

    try:
        while True:
            if stop.signum is None:
                # Replace workers that died while idle, then hand out work.
                for slot in [s for s in slots if s.task is None and not s.proc.is_alive()]:
                    slot.kill()
                    slots.remove(slot)
                for slot in [s for s in slots if s.task is None]:
                    if tasks:
                        give_work(slot, fresh=False)
                while len(slots) < workers and tasks:
                    slot = _Slot(ctx, opts)
                    slots.append(slot)
                    give_work(slot, fresh=True)
            busy = [s for s in slots if s.task is not None]
            if not busy:
                if tasks and stop.signum is None:
                    continue
                break
            if stop.cancel:
                for slot in busy:
                    row = _new_row(slot.task)
                    row.update(status="cancelled", error="cancelled while running (batch interrupted)",
                               seconds=round(time.monotonic() - slot.started, 3))
                    finish(slot, row, remove=True)
                break
            wait_s = 0.25
            if timeout is not None:
                wait_s = max(0.0, min(wait_s, min(s.started + timeout for s in busy) - time.monotonic()))
            ready = set(wait([s.conn for s in busy] + [s.proc.sentinel for s in busy], timeout=wait_s))
            now = time.monotonic()
            for slot in busy:
                if slot.conn in ready or slot.proc.sentinel in ready:
                    row = None
                    try:
                        if slot.conn.poll():
                            row = slot.conn.recv()
                    except Exception:  # noqa: BLE001 - EOF or a half-sent row: the worker died
                        row = None
                    if row is not None:
                        finish(slot, row, remove=False)
                        continue
                    message = slot.death_message()
                    row = _new_row(slot.task)
                    row.update(status="failed", error=message, seconds=round(now - slot.started, 3))
                    finish(slot, row, remove=True)
                elif timeout is not None and now - slot.started >= timeout:
                    row = _new_row(slot.task)
                    row.update(status="timeout", error=f"no result within {timeout:g} s (worker stopped)",
                               seconds=round(now - slot.started, 3))
                    finish(slot, row, remove=True)
    finally:
        for slot in slots:
            if slot.task is not None:  # only after an error in this process
                slot.kill()
                continue
            try:
                slot.conn.send(None)
            except (OSError, ValueError):
                pass
        for slot in slots:
            slot.proc.join(5)
            if slot.proc.is_alive():
                slot.proc.kill()
                slot.proc.join(5)
            slot.conn.close()


# ============================================================================ summary


def _csv_value(key: str, value) -> str:
    if value is None:
        return ""
    if key == "seconds":
        return f"{float(value):.3f}"
    return str(value)


def _write_summary(result: BatchResult, root: Path, started_at: str, options: dict) -> None:
    from .. import __version__
    from ..io.atomic import atomic_write_file

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
