"""The executor interface: how a batch's cases get run, whatever runs them.

An executor receives the cases as a queue and reports each case's summary row as
the case ends.  Two exist: ``local`` (:mod:`.local`, worker processes on this
machine, the default) and ``dask`` (:mod:`.dask_executor`, a ``dask.distributed``
cluster); :func:`RadGPTLogic.dataset.batch.run.make_executor` picks one by name.

Contract of :meth:`Executor.run`:

* ``tasks`` is a queue of ``(index, task)`` (:class:`.case_queue.CaseQueue`, or a
  :class:`collections.deque`: ``tasks[0]``, ``popleft()``, ``len``, truth); the
  executor pops a case from the left when it starts it (so the queue drains as work
  is handed out, and the client never holds more than a bounded number of submitted
  cases).  Whatever is still queued when ``run`` returns was never started.
* ``record(index, row)`` is called exactly once for every popped case, in the
  calling thread, as that case ends (its final row, after every stage).
* ``stop`` (:class:`Stop`): once ``stop.signum`` is set no new case starts and the
  running ones finish; once ``stop.cancel`` is set the running ones are ended and
  recorded ``cancelled``.
* When the executor itself is lost (a Dask scheduler that went away), ``run``
  records its running cases ``cancelled`` with the reason, sets ``lost`` to one
  line saying what happened, and returns.
"""

from __future__ import annotations

import signal


class Stop:
    """What the signal handler saw: the first SIGINT/SIGTERM stops submitting, the second cancels."""

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


class Executor:
    """Base class of the executors (see the module doc)."""

    name = "executor"

    def __init__(self) -> None:
        self.lost: str | None = None

    def describe(self) -> dict:
        """What to record about the executor in batch_summary.json."""
        return {"executor": self.name}

    def run(self, tasks, opts, timeout, record, stop) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def remove_partial_output(out_dir) -> None:
    """Resolve what a killed worker's write left beside ``out_dir`` (see
    :func:`RadGPTLogic.io.atomic.recover`): the folder ends whole, old or new."""
    from ...io.atomic import recover

    try:
        recover(out_dir)
    except OSError:
        pass
