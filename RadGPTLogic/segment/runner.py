"""Run the segmentation stage in its own process: progress, cancel, timeout, one-line errors.

The CLI (``radgpt segment``/``run``) and the Slicer module's Segment button drive
the same :class:`SegmentationRunner`, as SlicerNNUnet and SlicerMONAIAuto3DSeg run
inference outside Slicer's process:

* :meth:`~SegmentationRunner.start` launches ``python -m RadGPTLogic.segment.worker``
  (:mod:`.worker`) in a new session (its own process group) and returns at once;
* :meth:`~SegmentationRunner.poll` returns the :class:`RunnerEvent`\\ s that arrived
  (never blocks: a GUI timer calls it); :meth:`~SegmentationRunner.wait` blocks;
* :meth:`~SegmentationRunner.cancel` ends the whole process tree (SIGTERM to the
  group, SIGKILL after 1.5 s: gone within 2 s) and leaves no half-written case
  folder (the stage writes each folder with :func:`RadGPTLogic.io.atomic.publish`;
  leftovers of a killed write are resolved with :func:`~RadGPTLogic.io.atomic.recover`);
* ``timeout_s`` does the same when the run takes too long and says so.

Every run ends with exactly one final event: ``done`` (``result`` = the case
folder), ``error`` (``message`` = one line) or ``cancelled``.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

#: Seconds between SIGTERM and SIGKILL on cancel or timeout.
TERM_GRACE_S = 1.5
FINAL_KINDS = ("done", "error", "cancelled")


@dataclass(frozen=True)
class RunnerEvent:
    """One event of a run.

    kind : "progress", "log", "case_done", "done", "error" or "cancelled"
    message : one line for people
    stage : "load", "predict" or "write" (progress)
    model, fold : what is running (progress)
    done, total : progress counts (tiles for "predict"; total 0 = unknown)
    result : the case folder ("case_done", "done")
    case : index of the CT among the run's jobs
    """

    kind: str
    message: str = ""
    stage: str = ""
    model: str = ""
    fold: str = ""
    done: int = 0
    total: int = 0
    result: str = ""
    case: int = 0


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


class SegmentationRunner:
    """Segmentation in a separate process (see the module doc).

    Parameters mirror ``radgpt segment``: ``models`` (folders or presets, precedence
    order), ``device``, ``folds``, ``mirroring`` (None: as the checkpoint allows;
    False: never), ``tile_step``, ``label_map`` (``{label name: canonical}``),
    ``timeout_s`` (None: no limit), ``python_executable`` (PythonSlicer inside Slicer).
    """

    def __init__(self, models, *, device: str = "auto", folds=None, mirroring: Optional[bool] = None,
                 tile_step: float = 0.5, timeout_s: Optional[float] = None,
                 python_executable: Optional[str] = None, label_map: Optional[dict] = None):
        self.models = [str(m) for m in models]
        self.device = device
        self.folds = [str(f) for f in folds] if folds else None
        self.mirroring = mirroring
        self.tile_step = tile_step
        self.timeout_s = timeout_s
        self.python_executable = python_executable or sys.executable
        self.label_map = label_map
        self._proc: Optional[subprocess.Popen] = None
        self._events: queue.Queue = queue.Queue()
        self._final: Optional[RunnerEvent] = None
        self._lock = threading.Lock()
        self._stderr: collections.deque = collections.deque(maxlen=40)
        self._jobs: list = []
        self._started = 0.0
        self._readers: list = []
        self._stopping = False

    # ------------------------------------------------------------------ interface
    def start(self, ct_path, out_case_dir) -> None:
        """Segment one CT into ``out_case_dir`` (see :meth:`start_many`)."""
        self.start_many([(ct_path, out_case_dir)])

    def start_many(self, jobs) -> None:
        """Segment several ``(CT, case folder)`` pairs in one process: the models load once."""
        if self.running:
            raise RuntimeError("a segmentation is already running")
        self._jobs = [(str(ct), str(out)) for ct, out in jobs]
        self._final = None
        self._stopping = False
        self._events = queue.Queue()
        self._stderr.clear()
        spec = {"models": self.models, "device": self.device, "folds": self.folds, "mirroring": self.mirroring,
                "tile_step": self.tile_step, "label_map": self.label_map, "jobs": self._jobs}
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._started = time.monotonic()
        self._proc = subprocess.Popen(
            [self.python_executable, "-m", "RadGPTLogic.segment.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(spec).encode("utf-8"))
            self._proc.stdin.close()
        except BrokenPipeError:
            pass  # the worker died at once; its exit is reported by the reader
        self._readers = [threading.Thread(target=self._read_events, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

    def poll(self) -> list:
        """Events since the last call (never blocks)."""
        self._check_timeout()
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def wait(self, timeout: Optional[float] = None) -> Optional[RunnerEvent]:
        """Block until the run ends; its final event (None when ``timeout`` s passed first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._final is None:
            self._check_timeout()
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        return self._final

    def cancel(self) -> None:
        """End the process tree within 2 s; a ``cancelled`` event follows; nothing half-written stays."""
        if self._stop():
            self._put(RunnerEvent("cancelled", "segmentation cancelled"))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        """The worker's exit status once it ended (see :mod:`.worker`), else None.

        After the final event the worker is about to exit: wait for it (briefly).
        """
        if self._proc is None:
            return None
        if self._final is not None:
            try:
                return self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                return None
        return self._proc.poll()

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------------ internals
    def _stop(self) -> bool:
        """Kill the process group; True when a run was stopped."""
        proc = self._proc
        if proc is None or self._final is not None:
            return False
        with self._lock:
            if self._final is not None:
                return False
            self._stopping = True
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=2)
        except ProcessLookupError:
            pass
        try:  # children that outlived the leader (the group id is still the leader's pid)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._clean_partial_outputs()
        return True

    def _clean_partial_outputs(self) -> None:
        from ..io.atomic import recover

        for _ct, out in self._jobs:
            try:
                recover(out)
            except Exception:  # noqa: BLE001 - cleaning must not hide the cancel itself
                pass

    def _check_timeout(self) -> None:
        if self.timeout_s is None or self._final is not None or self._proc is None:
            return
        if time.monotonic() - self._started > self.timeout_s and self._stop():
            self._put(RunnerEvent("error", f"segmentation timed out after {self.timeout_s:g} s "
                                           "(--timeout); nothing was written for the unfinished CT"))

    def _put(self, event: RunnerEvent) -> None:
        with self._lock:
            if self._final is not None:
                return
            if event.kind in FINAL_KINDS:
                self._final = event
            self._events.put(event)

    def _read_events(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for raw in proc.stdout:
            try:
                data = json.loads(raw.decode("utf-8", "replace"))
                event = RunnerEvent(**{k: v for k, v in data.items() if k in RunnerEvent.__dataclass_fields__})
            except (ValueError, TypeError):
                continue
            if not self._stopping:
                self._put(event)
        code = proc.wait()
        for reader in self._readers[1:]:
            reader.join(timeout=2)
        if self._final is None and not self._stopping:
            tail = [line for line in self._stderr if line.strip()]
            why = tail[-1] if tail else ""
            self._clean_partial_outputs()
            self._put(RunnerEvent("error", f"the segmentation process ended with code {code}"
                                           + (f": {why}" if why else "")))

    def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr.append(line)
            if line.strip() and not self._stopping:
                self._put(RunnerEvent("log", line))
