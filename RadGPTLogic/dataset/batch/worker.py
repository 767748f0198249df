"""Case processes: long-lived worker processes that run case stages one at a time and die with their parent.

A :class:`CaseProcess` is one child process with its own pipe.  The parent sends
``(stage, payload, opts)`` messages (see :mod:`.stages`) and receives one result per
message; a stage that overruns its time limit, or a process that crashes, costs only
that process, which its owner replaces.  Both executors use them: the local pool
keeps ``workers`` of them; on Dask every worker thread keeps one, so a per-case
time limit can end a case without ending the Dask worker, and a segmentation model
stays loaded between cases.

Two ways to start one: :class:`CaseProcess` through ``multiprocessing`` (the local
pool; ``fork`` on Linux, so a worker starts at once), and :meth:`CaseProcess.popen`,
a fresh interpreter started with :mod:`subprocess` (used inside Dask workers, which
are daemonic ``multiprocessing`` processes and may not have ``multiprocessing``
children; POSIX only).

Dying with the parent, also after SIGKILL: every child inherits the read end of one
*lifeline* pipe whose only write end stays in the parent (each child closes the
copy it inherited).  A thread in the child blocks reading it; when the parent ends,
however it ends, the kernel closes the write end, the read returns end-of-file and
the child exits at once.  The child also closes its copy of the parent's end of its
own pipe.  Children ignore SIGINT and SIGTERM: a Ctrl-C in the terminal reaches
the whole process group, and the batch process decides what stops.
"""

from __future__ import annotations

import os
import signal
import threading
import time

#: Exit status of a child whose parent went away.
ORPHAN_EXIT = 75


class Lifeline:
    """The pipe whose closing tells children that their parent is gone (see the module doc)."""

    def __init__(self, ctx):
        self.read_end, self.write_end = ctx.Pipe(duplex=False)

    def close(self) -> None:
        for end in (self.write_end, self.read_end):
            try:
                end.close()
            except OSError:
                pass


def _watch_parent(read_end) -> None:
    try:
        read_end.recv_bytes()  # nothing is ever sent: returns only by end-of-file
    except (EOFError, OSError):
        pass
    os._exit(ORPHAN_EXIT)


def run_stage(stage: str, payload, opts):
    """Run one stage message in this process: ``("task", task)`` / ``("row", row)`` for
    ``segment``, the row for ``report`` and ``case``."""
    from . import stages

    if stage == "segment":
        try:
            return ("task", stages.segment_stage(payload, opts))
        except Exception as exc:  # noqa: BLE001 - becomes the case's failed row
            row = stages.new_row(payload)
            row["worker"] = stages._worker_name()
            stages._failed(row, exc)
            return ("row", row)
    if stage == "report":
        return stages.report_stage(payload, opts)
    if stage == "case":
        return stages.case_stages(payload, opts)
    raise ValueError(f"unknown stage {stage!r}")


#: Environment variables that the BLAS and OpenMP libraries read when they are loaded.
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread() -> None:
    """Make the BLAS libraries (OpenBLAS, MKL ...) of this process run on one thread.

    A batch gets its parallelism from case processes, one per core.  Left alone,
    OpenBLAS starts a thread per core in every process, and its threads spin-wait
    after each call: one case process then keeps both cores of a 2-core machine busy
    (measured: 129 ms of CPU for a 71 ms case) and a second process adds nothing.
    Dask's nanny sets these variables for its workers for the same reason.  Two
    steps, because numpy and scipy each bring their own OpenBLAS: the variables, read
    by libraries loaded from now on (scipy's, at its first import in a case) and by
    child processes; and ``threadpoolctl`` for the ones already loaded (numpy's, in a
    forked child).
    """
    for name in _THREAD_VARIABLES:
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an environment without it (a dependency of the package): variables only
        return
    threadpool_limits(limits=1)


def _worker_main(conn, parent_end, lifeline_read, lifeline_write, opts) -> None:
    """Child process: stage messages over ``conn`` until ``None`` or the parent is gone."""
    for end in (parent_end, lifeline_write):
        try:
            if end is not None:
                end.close()  # copies inherited by fork: only the parent may hold these
        except OSError:
            pass
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)  # the batch process decides when to stop
        except (ValueError, OSError):
            pass
    threading.Thread(target=_watch_parent, args=(lifeline_read,), name="radgpt-parent-watch", daemon=True).start()
    one_blas_thread()
    try:  # pay the import cost before the first case's clock starts
        from ... import pipeline  # noqa: F401
    except Exception:  # noqa: BLE001 - the case will report it
        pass
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        stage, payload, message_opts = message
        result = run_stage(stage, payload, message_opts if message_opts is not None else opts)
        try:
            conn.send(result)
        except (OSError, ValueError):
            return


def _popen_main() -> None:
    """Entry of a :meth:`CaseProcess.popen` child: ``python -c ... CONN_FD LIFELINE_FD``."""
    import sys
    from multiprocessing.connection import Connection

    conn = Connection(int(sys.argv[1]))
    lifeline = Connection(int(sys.argv[2]), writable=False)
    _worker_main(conn, None, lifeline, None, None)


class _PopenProcess:
    """A :class:`subprocess.Popen` with the few ``multiprocessing.Process`` members used here."""

    sentinel = None  # the end of its pipe tells when it dies

    def __init__(self, popen):
        self.popen = popen
        self.pid = popen.pid

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        try:
            self.popen.kill()
        except OSError:
            pass

    def join(self, timeout=None) -> None:
        import subprocess

        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    @property
    def exitcode(self):
        return self.popen.poll()


class CaseProcess:
    """One worker process (see the module doc); ``opts`` are the default options of its stages."""

    def __init__(self, ctx, lifeline: Lifeline | None, opts=None, *, _process=None, _conn=None):
        self.index: int | None = None
        self.task: dict | None = None
        self.stage: str | None = None
        self.started = 0.0
        if _process is not None:
            self.proc, self.conn = _process, _conn
            return
        if lifeline is None:
            raise ValueError("a new worker process needs the batch's lifeline")
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, name="radgpt-batch-worker", daemon=True,
                                args=(child, self.conn, lifeline.read_end, lifeline.write_end, opts))
        self.proc.start()
        child.close()

    @classmethod
    def popen(cls, lifeline_fd: int) -> "CaseProcess":
        """A case process in a fresh interpreter (same ``sys.path``), watching the pipe read end
        ``lifeline_fd`` whose write end only the caller holds."""
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        mine, theirs = socket.socketpair()
        child_fd = theirs.detach()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        # Dask's nanny sets a glibc malloc trim threshold of 64 KiB for its workers (to give
        # memory back at once); in a case process it returns every freed array to the kernel
        # and faults it in again: a small case took 82 ms instead of 66.
        env.pop("MALLOC_TRIM_THRESHOLD_", None)
        code = "from RadGPTLogic.dataset.batch.worker import _popen_main; _popen_main()"
        try:
            popen = subprocess.Popen([sys.executable, "-c", code, str(child_fd), str(lifeline_fd)],
                                     pass_fds=(child_fd, lifeline_fd), env=env, stdin=subprocess.DEVNULL,
                                     start_new_session=True)  # a Ctrl-C to the terminal is not for it
        finally:
            os.close(child_fd)
        return cls(None, None, _process=_PopenProcess(popen), _conn=Connection(mine.detach()))

    @property
    def busy(self) -> bool:
        return self.task is not None

    def send(self, stage: str, payload, opts=None) -> bool:
        """Hand a stage to the process; False when it is gone."""
        try:
            self.conn.send((stage, payload, opts))
        except (OSError, ValueError):
            return False
        self.stage, self.started = stage, time.monotonic()
        return True

    def receive(self):
        """The result of the stage in hand, or None when the process died without one."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except Exception:  # noqa: BLE001 - EOF or a half-sent result: the process died
            return None
        return None

    def run(self, stage: str, payload, opts=None, timeout: float | None = None):
        """Blocking: ``("result", value)``, ``("timeout", None)`` or ``("died", message)``.

        After a timeout or death the process is killed and must be replaced.
        """
        from multiprocessing.connection import wait

        if not self.send(stage, payload, opts):
            self.kill()
            return "died", self.death_message()
        deadline = None if timeout is None else self.started + timeout
        watched = [self.conn] + ([self.proc.sentinel] if self.proc.sentinel is not None else [])
        while True:
            wait_s = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(watched, timeout=wait_s)
            if ready:
                value = self.receive()
                if value is not None:
                    return "result", value
                message = self.death_message()
                self.kill()
                return "died", message
            if deadline is not None and time.monotonic() >= deadline:
                self.kill()
                return "timeout", None

    def stop(self) -> None:
        """Ask the idle process to end (it finishes nothing: it is idle)."""
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass

    def join(self, timeout: float = 5.0) -> None:
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout)
        self.conn.close()

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
