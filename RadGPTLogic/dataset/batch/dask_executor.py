"""The ``dask`` executor: a batch's cases as tasks on a ``dask.distributed`` cluster.

With no scheduler address a :class:`distributed.LocalCluster` of ``workers``
single-threaded worker processes is started (and closed afterwards); with an
address the batch joins a running cluster, e.g. one started by hand::

    dask scheduler --host 10.0.0.5 --port 8786
    dask worker tcp://10.0.0.5:8786 --nworkers 2 --nthreads 1                     # CPU nodes
    dask worker tcp://10.0.0.5:8786 --nthreads 1 --resources "GPU=1"              # a GPU node

Every worker must have this package installed and see the case folders and the
output folder at the same paths (a shared file system).

Tasks: each case is a chain of tasks, one per stage (:mod:`.stages`):
segmentation (only for a CT without masks; ``resources=segmenter.resources``, e.g.
``{"GPU": 1}``), report (any worker), narrative (when an LLM endpoint is given;
at most ``opts.llm_concurrency`` at once across the cluster, through a
:class:`distributed.Semaphore`).  Cases are submitted as the queue drains: at most
twice as many cases as the cluster has worker threads are in flight, so the client's
memory does not grow with the number of cases; rows stream into the summary as
cases end.

Inside a Dask worker, every worker thread keeps one case process
(:meth:`.worker.CaseProcess.popen`) that runs that thread's segmentation and report
stages: a per-case time limit kills that process only (the case is ``timeout``, the
Dask worker lives on), and a segmentation model stays loaded between cases.  Case
processes exit when their Dask worker process ends, however it ends.

Faults: a Dask worker that dies mid-case has its task retried by the scheduler on
another worker (``distributed.scheduler.allowed-failures`` times, default 3; then
the case is ``failed`` with the reason); a case that overruns ``timeout`` is
``timeout``; when the scheduler goes away, the cases in flight are ``cancelled``
(the reason in ``error``), :attr:`lost` says what happened, and the batch ends with
every unfinished case resumable; Ctrl-C: the first stops submitting, the second
cancels the running cases and stops their case processes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from .executor import Executor, remove_partial_output
from .stages import narrative_stage, new_row, wants_narrative

# ============================================================================ on the workers

_LOCK = threading.Lock()
_PROCESSES: dict = {}   # worker thread id -> CaseProcess
_LIFELINE: list = []    # [read fd, write fd]; the write end lives as long as this process


def _case_process():
    from .worker import CaseProcess

    with _LOCK:
        if not _LIFELINE:
            _LIFELINE.extend(os.pipe())  # not inheritable (PEP 446): only the case processes get the read end
        ident = threading.get_ident()
        proc = _PROCESSES.get(ident)
        if proc is None or not proc.proc.is_alive():
            proc = _PROCESSES[ident] = CaseProcess.popen(_LIFELINE[0])
    return proc


def _drop_case_process() -> None:
    with _LOCK:
        _PROCESSES.pop(threading.get_ident(), None)


def stop_case_processes() -> int:
    """Kill this Dask worker's case processes (cancelling a batch); how many were running."""
    with _LOCK:
        procs = list(_PROCESSES.values())
        _PROCESSES.clear()
    for proc in procs:
        proc.proc.kill()
    return len(procs)


def run_stage_on_worker(stage: str, item: dict, opts, timeout):
    """A Dask task: run ``stage`` of a case in this worker thread's case process.

    ``item`` is the case's task, or its final row when an earlier stage ended the
    case (passed through).  Returns a task (after segmentation) or the row.
    """
    if item.get("status"):
        return item
    proc = _case_process()
    kind, value = proc.run(stage, item, opts, timeout)
    if kind == "result":
        return value[1] if stage == "segment" else value
    _drop_case_process()
    remove_partial_output(item["out_dir"])
    row = new_row(item)
    row["worker"] = f"{os.uname().nodename}:{proc.proc.pid}"
    if kind == "timeout":
        row.update(status="timeout", error=f"no result within {timeout:g} s (worker stopped)", seconds=timeout)
    else:
        row.update(status="failed", error=value)
    return row


def narrative_on_worker(row: dict, opts, semaphore_name: str) -> dict:
    """A Dask task: the narrative stage, at most ``opts.llm_concurrency`` at once cluster-wide."""
    if not wants_narrative(row, opts):
        return row
    from distributed import Semaphore

    with Semaphore(max_leases=opts.llm_concurrency, name=semaphore_name):
        return narrative_stage(row, opts)


# ============================================================================ on the client

#: Length of Dask's developer logs (recent messages of every connection, scheduler
#: transitions) in the batch process: Dask keeps the last 1,000 by default, and a
#: message submitting a case holds its whole task, so the client grew by about 8 KB a
#: case up to 1,000 cases (measured).  The logs matter only when debugging Dask itself.
MESSAGE_LOG_LENGTH = 50


def _short_message_logs():
    """Dask's config with its developer logs at most :data:`MESSAGE_LOG_LENGTH` long, for the
    client and a local cluster's scheduler made inside (a length the user set lower, or
    None for unbounded, is kept)."""
    import dask

    key = "distributed.admin.low-level-log-length"
    configured = dask.config.get(key, None)
    if configured is None or configured <= MESSAGE_LOG_LENGTH:
        return dask.config.set({})
    return dask.config.set({key: MESSAGE_LOG_LENGTH})



class DaskExecutor(Executor):
    """See the module doc.  ``in_flight``: cases submitted at most (default: 2 x worker threads)."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None, say=None,
                 in_flight: int | None = None, connect_timeout: float = 20.0):
        super().__init__()
        self.scheduler = scheduler
        self.workers = workers
        self.say = say or (lambda line: None)
        self.in_flight = in_flight
        self.connect_timeout = connect_timeout
        self.address = None
        self.dashboard = None
        self.threads = None

    def describe(self) -> dict:
        return {"executor": self.name, "scheduler": self.address, "cluster": "joined" if self.scheduler else "local",
                "workers": self.workers, "worker_threads": self.threads, "dashboard": self.dashboard}

    # -- connecting -----------------------------------------------------------------
    def _connect(self, opts):
        from ...errors import InputError

        try:
            import distributed
        except ImportError:
            raise InputError(None, "--executor dask needs dask.distributed: "
                                   "pip install 'radgpt-slicer[dask]'") from None
        import logging

        cluster = None
        with _short_message_logs():
            if self.scheduler is None:
                from .local import default_workers

                n = int(self.workers or default_workers())
                self.workers = n
                resources = dict(getattr(opts.segmenter, "resources", None) or {}) if opts.segmenter else {}
                cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                   dashboard_address=":0", silence_logs=logging.ERROR,
                                                   resources=resources or None)
                target = cluster
            else:
                target = self.scheduler
            try:
                client = distributed.Client(target, timeout=self.connect_timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                if cluster is not None:
                    cluster.close()
                raise InputError(self.scheduler, f"cannot reach the Dask scheduler ({exc})") from None
        self.address = client.scheduler.address
        info = client.scheduler_info()
        if "dashboard" in (info.get("services") or {}):
            self.dashboard = client.dashboard_link
        self.say(f"radgpt batch: Dask cluster at {self.address}"
                 + (f", dashboard {self.dashboard}" if self.dashboard else " (no dashboard: bokeh not installed)"))
        return distributed, cluster, client

    def _capacity(self, client) -> int:
        try:
            threads = sum(client.nthreads().values())
        except Exception:  # noqa: BLE001 - a scheduler that went away is noticed by the loop
            threads = self.threads or 1
        self.threads = threads
        return self.in_flight or max(2, 2 * max(1, threads))

    # -- the loop -------------------------------------------------------------------
    def run(self, tasks, opts, timeout, record, stop) -> None:
        distributed, cluster, client = self._connect(opts)
        batch = uuid.uuid4().hex[:8]
        semaphore = f"radgpt-llm-{batch}"
        running: dict = {}  # final future -> (index, task, [all futures of the case])

        def submit(index, task) -> None:
            tag = f"{task['case_id']}-{batch}"
            chain = []
            item = task
            if task.get("segment"):
                resources = dict(getattr(opts.segmenter, "resources", None) or {}) or None
                item = client.submit(run_stage_on_worker, "segment", task, opts, timeout, key=f"radgpt-segment-{tag}",
                                     pure=False, resources=resources)
                chain.append(item)
            item = client.submit(run_stage_on_worker, "report", item, opts, timeout, key=f"radgpt-report-{tag}",
                                 pure=False)
            chain.append(item)
            if opts.llm is not None:
                item = client.submit(narrative_on_worker, item, opts, semaphore, key=f"radgpt-narrative-{tag}",
                                     pure=False)
                chain.append(item)
            running[item] = (index, task, chain)

        def cancelled_row(task, error):
            row = new_row(task)
            row.update(status="cancelled", error=error)
            return row

        try:
            capacity = self._capacity(client)
            last_capacity_check = time.monotonic()
            while True:
                if stop.signum is None and self.lost is None:
                    if time.monotonic() - last_capacity_check > 5:  # workers may join or leave
                        capacity, last_capacity_check = self._capacity(client), time.monotonic()
                    while tasks and len(running) < capacity:
                        index, task = tasks.popleft()
                        submit(index, task)
                if not running:
                    break
                if stop.cancel:
                    self._cancel(client, running, record, cancelled_row)
                    break
                try:
                    with client.as_current():
                        done, _ = distributed.wait(list(running), timeout=0.5, return_when="FIRST_COMPLETED")
                except (TimeoutError, distributed.TimeoutError):
                    done = ()
                except Exception:  # noqa: BLE001 - e.g. FuturesCancelledError: the scheduler went away
                    done = [f for f in running if f.done()]
                for future in done:
                    index, task, chain = running.pop(future)
                    row = self._row_of(future, task, client)
                    if row is None:  # the scheduler is gone
                        running[future] = (index, task, chain)
                        break
                    if row["status"] in ("failed", "timeout") and not row.get("worker"):
                        remove_partial_output(task["out_dir"])
                    record(index, row)
                if self.lost is None and client.status not in ("running", "connecting"):
                    self.lost = f"the Dask scheduler at {self.address} went away"
                if self.lost is not None:
                    for future, (index, task, _) in list(running.items()):
                        running.pop(future)
                        record(index, cancelled_row(task, f"stopped: {self.lost}; resumable"))
                    break
        finally:
            for index, task, _ in list(running.values()):  # only after an error here
                record(index, cancelled_row(task, "not finished (batch stopped)"))
            try:
                client.close(timeout=5)
            except Exception:  # noqa: BLE001 - closing a client whose scheduler is gone may complain
                pass
            if cluster is not None:
                try:
                    cluster.close(timeout=10)
                except Exception:  # noqa: BLE001
                    pass

    def _row_of(self, future, task, client):
        """The final row of a finished case future, or None when the scheduler is gone."""
        status = future.status
        if status == "finished":
            try:
                return future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. the result could not be fetched
                status, error = "error", exc
        if status == "cancelled":
            if client.status != "running":
                self.lost = f"the Dask scheduler at {self.address} went away"
                return None
            row = new_row(task)
            row.update(status="cancelled", error="cancelled on the Dask cluster")
            return row
        try:
            error = future.exception()
        except Exception as exc:  # noqa: BLE001
            error = exc
        row = new_row(task)
        name = type(error).__name__
        if name == "KilledWorker":
            row.update(status="failed", error="Dask worker processes died repeatedly while running this case "
                                              "(KilledWorker); see the workers' logs")
        else:
            row.update(status="failed", error=" ".join(f"internal error on a Dask worker: {name}: {error}".split()))
        return row

    def _cancel(self, client, running, record, cancelled_row) -> None:
        futures = [f for _, _, chain in running.values() for f in chain]
        try:
            client.cancel(futures, force=True)
            client.run(stop_case_processes)
        except Exception:  # noqa: BLE001 - a scheduler that is gone has nothing left to cancel
            pass
        for future, (index, task, _) in list(running.items()):
            running.pop(future)
            remove_partial_output(task["out_dir"])
            record(index, cancelled_row(task, "cancelled while running (batch interrupted)"))
