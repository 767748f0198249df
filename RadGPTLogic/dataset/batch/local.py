"""The ``local`` executor: worker processes on this machine (the default; needs no server).

``workers`` long-lived :class:`~.worker.CaseProcess` children, each running one
stage of one case at a time (segmentation, then the report); only the small
summary row comes back.  A case that overruns the time limit, or whose process
dies, costs only that process, which is replaced.  Narratives (I/O-bound LLM
calls) run in a thread pool of this process, ``opts.llm_concurrency`` at a time.

``workers=1`` runs the cases in this process (no child): the time limit then fires
between Python operations, through SIGALRM.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING

from .executor import Executor, remove_partial_output
from .stages import case_stages, narrative_stage, new_row, wants_narrative

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor


class _CaseTimeout(BaseException):
    """Raised by SIGALRM in in-process mode (BaseException: not swallowed as a case error)."""


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int | None = None, context=None):
        super().__init__()
        self.workers = int(workers) if workers is not None else default_workers()
        self.context = context

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers}

    def run(self, tasks, opts, timeout, record, stop) -> None:
        can_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        if self.workers == 1 and (timeout is None or can_alarm):
            _run_in_process(tasks, opts, timeout, stop, record)
        else:
            _Pool(self.context, opts, min(self.workers, max(1, len(tasks))), timeout, stop, record).run(tasks)


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
                    row = case_stages(task, opts)
                finally:
                    if timeout is not None:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                    stop.in_case = False
            except _CaseTimeout:
                remove_partial_output(task["out_dir"])
                row = new_row(task)
                row.update(status="timeout", error=f"no result within {timeout:g} s (case stopped)")
            except KeyboardInterrupt:
                stop.cancel = True
                if stop.signum is None:
                    stop.signum = signal.SIGINT
                row = new_row(task)
                row.update(status="cancelled", error="cancelled while running (batch interrupted)")
            if row["status"] in ("timeout", "cancelled"):
                row["seconds"] = round(time.monotonic() - t0, 3)
            tasks.popleft()
            if stop.signum is None or row["status"] != "cancelled":
                row = narrative_stage(row, opts)
            record(index, row)
    finally:
        if old_alarm is not None:
            signal.signal(signal.SIGALRM, old_alarm)


class _Pool:
    """The process pool of one batch run."""

    def __init__(self, ctx, opts, workers, timeout, stop, record) -> None:
        import multiprocessing as mp

        from .worker import Lifeline

        self.ctx = ctx or mp.get_context()
        self.opts, self.workers, self.timeout, self.stop, self.record = opts, workers, timeout, stop, record
        self.lifeline = Lifeline(self.ctx)
        self.slots: list = []
        self.dead_at_start = 0
        self.narratives: dict = {}  # future -> index
        self.llm_pool: ThreadPoolExecutor | None = None  # narrative stages, started on first use

    # -- bookkeeping ----------------------------------------------------------------
    def _finish(self, slot, row, remove: bool) -> None:
        index, task = slot.index, slot.task
        slot.task = slot.index = slot.stage = None
        if remove:  # the worker is killed or dead: drop it and any half-written output folder
            slot.kill()
            self.slots.remove(slot)
            remove_partial_output(task["out_dir"])
        if wants_narrative(row, self.opts) and not self.stop.cancel:
            if self.llm_pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self.llm_pool = ThreadPoolExecutor(max_workers=max(1, self.opts.llm_concurrency),
                                                   thread_name_prefix="radgpt-narrative")
            self.narratives[self.llm_pool.submit(narrative_stage, row, self.opts)] = (index, row)
        else:
            self.record(index, row)

    def _give_work(self, slot, tasks, fresh: bool) -> None:
        index, task = tasks[0]
        if slot.send("segment" if task.get("segment") else "report", task):
            tasks.popleft()
            slot.index, slot.task = index, task
        elif fresh:
            self.dead_at_start += 1
            if self.dead_at_start > 3 * self.workers + 3:
                raise RuntimeError("batch worker processes exit at start; run with --workers 1 to see why")

    def _collect_narratives(self) -> None:
        for future in [f for f in self.narratives if f.done()]:
            index, row = self.narratives.pop(future)
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 - narrative_stage records its own errors
                row = dict(row, narrative=f"failed: {type(exc).__name__}: {exc}")
            self.record(index, row)

    # -- the loop -------------------------------------------------------------------
    def run(self, tasks) -> None:
        from multiprocessing.connection import wait

        from .worker import CaseProcess

        stop, timeout = self.stop, self.timeout
        try:
            while True:
                if stop.signum is None:
                    # Replace workers that died while idle, then hand out work.
                    for slot in [s for s in self.slots if not s.busy and not s.proc.is_alive()]:
                        slot.kill()
                        self.slots.remove(slot)
                    for slot in [s for s in self.slots if not s.busy]:
                        if tasks:
                            self._give_work(slot, tasks, fresh=False)
                    while len(self.slots) < self.workers and tasks:
                        slot = CaseProcess(self.ctx, self.lifeline, self.opts)
                        self.slots.append(slot)
                        self._give_work(slot, tasks, fresh=True)
                self._collect_narratives()
                busy = [s for s in self.slots if s.busy]
                if not busy and not self.narratives:
                    if tasks and stop.signum is None:
                        continue
                    break
                if stop.cancel:
                    for slot in busy:
                        row = new_row(slot.task)
                        row.update(status="cancelled", error="cancelled while running (batch interrupted)",
                                   seconds=round(time.monotonic() - slot.started, 3))
                        self._finish(slot, row, remove=True)
                    for future, (index, row) in list(self.narratives.items()):
                        if future.cancel() or not future.done():
                            self.narratives.pop(future)
                            self.record(index, dict(row, narrative="cancelled (batch interrupted)"))
                    self._collect_narratives()
                    break
                wait_s = 0.25 if not self.narratives else 0.05
                if timeout is not None and busy:
                    wait_s = max(0.0, min(wait_s, min(s.started + timeout for s in busy) - time.monotonic()))
                if busy:
                    ready = set(wait([s.conn for s in busy] + [s.proc.sentinel for s in busy], timeout=wait_s))
                else:
                    time.sleep(wait_s)
                    ready = set()
                now = time.monotonic()
                for slot in busy:
                    if slot.conn in ready or slot.proc.sentinel in ready:
                        result = slot.receive()
                        if result is None:
                            row = new_row(slot.task)
                            row.update(status="failed", error=slot.death_message(),
                                       seconds=round(now - slot.started, 3))
                            self._finish(slot, row, remove=True)
                        elif slot.stage == "segment" and result[0] == "task":
                            slot.task = result[1]  # segmented: the report runs next, on the same worker
                            if not slot.send("report", slot.task):
                                row = new_row(slot.task)
                                row.update(status="failed", error=slot.death_message())
                                self._finish(slot, row, remove=True)
                        else:
                            self._finish(slot, result[1] if slot.stage == "segment" else result, remove=False)
                    elif timeout is not None and now - slot.started >= timeout:
                        row = new_row(slot.task)
                        row.update(status="timeout", error=f"no result within {timeout:g} s (worker stopped)",
                                   seconds=round(now - slot.started, 3))
                        self._finish(slot, row, remove=True)
        finally:
            for slot in self.slots:
                if slot.busy:  # only after an error in this process
                    slot.kill()
                else:
                    slot.stop()
            for slot in self.slots:
                slot.join(5)
            self.lifeline.close()
            if self.llm_pool is not None:
                self.llm_pool.shutdown(wait=False)
