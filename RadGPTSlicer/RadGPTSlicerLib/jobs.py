"""Work off the GUI thread: a function on a worker thread, its result picked up by a GUI timer.

The pattern of SlicerMONAIAuto3DSeg (thread + queue + QTimer): the worker never
touches Qt or Slicer; a timer on the GUI thread polls the job and calls
``on_done``/``on_error``/``on_progress`` there, so results are always swapped in on
the GUI thread (PythonQt must not be called from other threads).

The timer is injected (``timer_factory(interval_ms, single_shot, callback)``
returning an object with ``start()`` and ``stop()``): a ``qt.QTimer`` in Slicer and in
the Qt-harness tests.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("RadGPT")


class Cancelled(Exception):
    """Raised inside a job function that saw its cancel request."""


class JobContext:
    """Handed to the job function: report progress, check for cancellation (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._progress = None
        self._cancel = threading.Event()

    def report(self, fraction: float, text: str = "") -> None:
        with self._lock:
            self._progress = (max(0.0, min(1.0, float(fraction))), str(text))

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def take_progress(self):
        with self._lock:
            progress, self._progress = self._progress, None
        return progress


class BackgroundJob:
    def __init__(self, future, context, on_done, on_error, on_progress, name):
        self.future = future
        self.context = context
        self.on_done = on_done
        self.on_error = on_error
        self.on_progress = on_progress
        self.name = name

    def cancel(self) -> None:
        """Ask the job to stop; its result (if it still finishes) is dropped."""
        self.context._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self.context.cancelled()


class JobRunner:
    """Runs jobs one at a time on its own worker thread; a GUI timer delivers their results.

    Jobs of one runner are serialised, so state they share (the measurement
    session) is only ever used by one thread.
    """

    def __init__(self, timer_factory, poll_ms: int = 10, name: str = "RadGPT"):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._timer = timer_factory(poll_ms, False, self._poll)
        self._jobs: list = []

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def submit(self, fn, *, on_done=None, on_error=None, on_progress=None, name: str = "") -> BackgroundJob:
        """Run ``fn(context)`` on the worker thread; callbacks come later on the GUI thread."""
        context = JobContext()
        job = BackgroundJob(self._executor.submit(fn, context), context, on_done, on_error, on_progress, name)
        self._jobs.append(job)
        self._timer.start()
        return job

    def _poll(self) -> None:
        for job in list(self._jobs):
            progress = job.context.take_progress()
            if progress is not None and job.on_progress is not None and not job.cancelled:
                job.on_progress(*progress)
            if not job.future.done():
                continue
            self._jobs.remove(job)
            exc = job.future.exception()
            if job.cancelled or isinstance(exc, Cancelled):
                log.info("RadGPT: %s cancelled", job.name or "job")
                if job.on_error is not None and isinstance(exc, Cancelled):
                    job.on_error(exc)
                elif job.on_error is not None and job.cancelled:
                    job.on_error(Cancelled())
                continue
            if exc is not None:
                if job.on_error is not None:
                    job.on_error(exc)
                else:
                    log.error("RadGPT: %s failed: %s", job.name or "job", exc)
                continue
            if job.on_done is not None:
                job.on_done(job.future.result())
        if not self._jobs:
            self._timer.stop()

    def wait_idle(self, timeout: float = None) -> None:
        """Block until the submitted jobs have run (not their callbacks); for the self-test."""
        for job in list(self._jobs):
            job.future.exception(timeout=timeout)

    def shutdown(self) -> None:
        for job in self._jobs:
            job.cancel()
        self._jobs.clear()
        self._timer.stop()
        self._executor.shutdown(wait=False)
