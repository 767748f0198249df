"""``run_batch``: find the cases, hand them to an executor, record every outcome, write the summary."""

from __future__ import annotations

import signal
import threading
import time
from itertools import islice
from pathlib import Path

from ...errors import InputError
from ...rules import normalise_phase
from .case_queue import CaseQueue, CaseTable
from .discovery import CaseFolder, discover_cases
from .executor import Executor, Stop
from .stages import BatchOptions, new_row
from .summary import BatchResult, RowSpool, say_stderr, write_summary

# Exit codes of an interrupted batch (shell convention 128 + signal number).
_EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _select(found: list, ids, root: Path) -> list:
    wanted = list(dict.fromkeys(ids))
    by_id: dict = {}
    for case in found:
        by_id.setdefault(case.case_id, []).append(case)
    selected = [c for i in wanted for c in by_id.get(i, [])]
    for i in wanted:
        if i not in by_id:
            selected.append(CaseFolder(i, root / i, InputError(root, f"no case folder {i!r} under the root "
                                                                     "(listed in --ids)").one_line()))
    selected.sort(key=lambda c: (c.case_id, c.problem is not None, str(c.path)))
    return selected


def make_executor(name: str = "local", *, workers: int | None = None, scheduler: str | None = None,
                  say=None) -> Executor:
    """``local`` (``workers`` processes; 1 runs in this process) or ``dask`` (``scheduler``
    address, or a local cluster of ``workers`` processes when None)."""
    if name == "local":
        if scheduler:
            raise InputError(None, "--scheduler needs --executor dask")
        from .local import LocalExecutor

        return LocalExecutor(workers)
    if name == "dask":
        from .dask_executor import DaskExecutor

        return DaskExecutor(scheduler=scheduler, workers=workers, say=say)
    raise InputError(None, f"unknown executor {name!r} (expected local or dask)")


def run_batch(root, out, *, workers: int | None = None, phase: str = "unknown", phases: dict | None = None,
              ids=None, resume: bool = True, timeout: float | None = None, rules=None, template_dir=None,
              resample: bool = False, progress=None, runner=None, handle_signals: bool = True,
              options_record: dict | None = None, executor: str | Executor = "local",
              scheduler: str | None = None, segmenter=None, llm=None, llm_concurrency: int = 2,
              examples=None, style: str | None = None, tables: bool = True) -> BatchResult:
    """Run every case folder under ``root`` into ``out/<case_id>/``; see :mod:`RadGPTLogic.dataset.batch`.

    Parameters
    ----------
    workers : int, optional
        Worker processes (default: the CPUs this process may use); 1 runs in-process.
        With ``executor="dask"`` and no ``scheduler``: the local cluster's workers.
    phase, phases :
        The phase of every case, or ``case_id -> phase`` (cases missing from it get
        ``phase``).  Values as :func:`~RadGPTLogic.rules.normalise_phase` accepts.
    ids : iterable of str, optional
        Only these case ids; ids not found under ``root`` are ``failed`` rows.
    resume : bool
        Skip cases whose outputs are up to date (default); False recomputes all.
    timeout : float, optional
        Time limit in seconds for each case's segmentation and for its report; the
        case becomes ``timeout`` and nothing of it is half-written.
    rules, template_dir, resample :
        As for :func:`RadGPTLogic.pipeline.run_report`.
    progress : callable(done, total, row), optional
        Called in this process as each case ends (the CLI passes a :class:`.summary.Progress`).
    runner : callable, optional
        Replaces ``run_report`` (same signature; must be picklable for workers > 1 and Dask).
    handle_signals : bool
        Install the SIGINT/SIGTERM handlers (only possible in the main thread).
    executor, scheduler :
        ``"local"`` (default), ``"dask"`` (``scheduler`` address, or a local cluster),
        or an :class:`~.executor.Executor`.
    segmenter :
        Segments cases given as a CT without masks (see :mod:`.stages`).
    llm, llm_concurrency, examples, style :
        An LLM endpoint (``LLMConfig``) for the narrative stage, and how many
        narratives may run at once across all workers.
    tables : bool
        Also write ``reports.csv`` and the findings table (:mod:`RadGPTLogic.dataset.report_tables`).

    Writes ``out/batch_summary.csv`` and ``out/batch_summary.json`` atomically and
    returns a :class:`.summary.BatchResult` whose ``exit_code`` is 0 (all ok/skipped),
    1 (any failed, timeout or cancelled, or the executor was lost) or 130/143
    (interrupted by SIGINT/SIGTERM).
    """
    from ...rules import DEFAULT_RULES

    t_start = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    root, out = Path(root), Path(out)
    rules = rules or DEFAULT_RULES
    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a folder")
    if template_dir is not None and not Path(template_dir).is_dir():
        raise InputError(template_dir, "template folder does not exist")
    if workers is not None and int(workers) < 1:
        raise InputError(None, f"--workers must be at least 1 (got {workers})")
    if timeout is not None and not timeout > 0:
        raise InputError(None, f"--timeout must be positive (got {timeout})")
    default_phase = normalise_phase(phase)
    if default_phase is None:
        raise InputError(None, f"unknown phase {phase!r}")
    phases = {k: normalise_phase(v) or "unknown" for k, v in (phases or {}).items()}
    if not isinstance(executor, Executor):
        executor = make_executor(executor, workers=workers, scheduler=scheduler, say=say_stderr)

    # The output folder is never searched for cases, but it may lie inside the root.
    exclude = [out] if out.resolve() != root.resolve() else []
    found = discover_cases(root, exclude=exclude, segment=segmenter is not None)
    if ids is not None:
        found = _select(found, ids, root)
    if not found:
        raise InputError(root, "no case folders found (a case folder holds segmentations/<structure>.nii.gz)")
    out.mkdir(parents=True, exist_ok=True)

    cases = CaseTable(found)
    del found  # the compact table replaces the CaseFolder objects
    total = len(cases)
    # Finished rows go to disk as cases end and tasks are made as they are handed out:
    # the batch process holds a few bytes per case (flat memory for 10,000 cases).
    spool = RowSpool(out, total)

    def record(index: int, row: dict) -> None:
        spool.add(index, row)
        if progress is not None:
            try:
                progress(spool.done, total, row)
            except Exception:  # noqa: BLE001 - a broken progress printer must not lose the batch
                pass

    def task_of(index: int) -> dict:
        case_id = cases.case_ids[index]
        task = {"case_id": case_id, "case_dir": cases.case_dirs[index], "out_dir": str(out / case_id),
                "phase": phases.get(case_id, default_phase)}
        if cases.needs_segmentation(index):
            task["segment"] = True
        return task

    for index, problem in sorted(cases.problems.items()):
        row = new_row(task_of(index))
        row.update(status="failed", error=problem)
        record(index, row)
    tasks = CaseQueue(cases.runnable(), task_of)

    opts = BatchOptions(resume=resume, resample=resample, rules=rules,
                        template_dir=None if template_dir is None else str(template_dir), runner=runner,
                        segmenter=segmenter, llm=llm, llm_concurrency=max(1, int(llm_concurrency)),
                        examples=None if examples is None else str(examples), style=style)
    stop = Stop(say_stderr)
    main_thread = threading.current_thread() is threading.main_thread()
    installed = {}
    if handle_signals and main_thread:
        for sig in (signal.SIGINT, signal.SIGTERM):
            installed[sig] = signal.signal(sig, stop.handler)
    try:
        if tasks:
            executor.run(tasks, opts, timeout, record, stop)
    finally:
        for sig, old in installed.items():
            signal.signal(sig, old)
        not_started = "not started (batch interrupted)"
        if executor.lost:
            not_started = f"not started ({executor.lost}); resumable"
        for index, task in tasks:  # never started (interrupted, lost executor, or an error here)
            if index not in spool:
                row = new_row(task)
                row.update(status="cancelled", error=not_started)
                spool.add(index, row)
        for index in range(total):
            if index not in spool:  # only after an unexpected error in this process
                row = new_row(task_of(index))
                row.update(status="cancelled", error="not finished (batch stopped)")
                spool.add(index, row)
        counts = dict(spool.counts)
        interrupted = signal.Signals(stop.signum).name if stop.signum is not None else None
        if stop.signum is not None:
            exit_code = _EXIT_ON_SIGNAL.get(stop.signum, 130)
        else:
            exit_code = 1 if counts["failed"] or counts["timeout"] or counts["cancelled"] or executor.lost else 0
        first_failed = [cases.case_ids[i] for i in islice(spool.indices("failed", "timeout"), 20)]
        result = BatchResult(out=out, seconds=round(time.monotonic() - t_start, 3), interrupted=interrupted,
                             exit_code=exit_code, counts=counts, lost=executor.lost, first_failed=first_failed)
        record_opts = options_record or {
            "workers": workers, "phase": default_phase, "phases_given": bool(phases), "resume": resume,
            "timeout_s": timeout, "t4_rule": getattr(rules, "t4_rule", None),
            "templates": None if template_dir is None else str(template_dir), "resample": resample,
            "ids_given": ids is not None,
        }
        try:
            write_summary(result, root, started_at, {**record_opts, **executor.describe()}, spool)
            if tables:
                from ..report_tables import write_batch_tables

                done_ids = (cases.case_ids[i] for i in spool.indices("ok", "skipped"))
                try:
                    write_batch_tables(out, done_ids)
                except (InputError, OSError) as exc:
                    say_stderr(f"radgpt batch: warning: dataset tables not written ({exc})")
        finally:
            spool.close()
    return result
