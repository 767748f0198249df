"""A segmentation runner with the interface of ``RadGPTLogic.segment.runner`` and a real worker process.

The Segment button's tests use this where they need exact truth or a failure on
demand (the real runner and model are tested too, in test_slicer_segment.py): the
same ``start``/``poll``/``cancel``/``wait``/``running`` interface as
:class:`RadGPTLogic.segment.runner.SegmentationRunner`, with a real child process
(``fake_segmenter.py``) that emits the events as JSON lines, writes the case
folder atomically, can be cancelled (the whole process group ends within 2 s and
no partial output stays) and fails with a one-line error.

The worker "segments" a RadGPT phantom CT by rebuilding the phantom and checking
that the CT it was given is the phantom's (so the test has exact truth for every
mask and for the geometry the module wrote); any other CT is a one-line error.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from RadGPTLogic.segment.runner import RunnerEvent  # the real event type

WORKER = Path(__file__).resolve().parent / "fake_segmenter.py"

class FakeSegmentationRunner:
    """The runner interface over ``fake_segmenter.py`` (``behaviour``: ok, fail, slow, crash)."""

    def __init__(self, models, *, device="auto", folds=None, mirroring=None, tile_step=0.5, timeout_s=None,
                 python_executable=None, label_map=None, behaviour="ok", size="small", probabilities=None):
        self.models = list(models)
        self.device = device
        self.python_executable = python_executable or sys.executable
        self.behaviour = behaviour
        self.size = size
        self.probabilities = dict(probabilities or {})
        self._proc = None
        self._events = queue.Queue()
        self._final = None
        self._out = None
        self._reader = None
        self.started_with = None

    # ------------------------------------------------------------ interface
    def start(self, ct_path, out_case_dir) -> None:
        self.started_with = (str(ct_path), str(out_case_dir), self.device)
        self._out = Path(out_case_dir)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                            os.environ.get("PYTHONPATH", "")])}
        cmd = [self.python_executable, str(WORKER), str(ct_path), str(out_case_dir), "--behaviour", self.behaviour,
               "--size", self.size, "--model", self.models[0], "--probabilities", json.dumps(self.probabilities)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                      start_new_session=True)  # its own process group: cancel ends all of it
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def poll(self) -> list:
        out = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return out
            out.append(event)

    def cancel(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=1.5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=0.5)
        except ProcessLookupError:
            pass
        self._remove_partial_output()
        self._put(RunnerEvent("cancelled", "segmentation cancelled"))

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._final is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("segmentation still running")
            time.sleep(0.02)
        return self._final

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self):
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------ internals
    def _put(self, event) -> None:
        if self._final is not None:
            return
        if event.kind in ("done", "error", "cancelled"):
            self._final = event
        self._events.put(event)

    def _read(self) -> None:
        proc = self._proc
        for line in proc.stdout:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            self._put(RunnerEvent(**data))
        code = proc.wait()
        if self._final is None and code != 0 and code not in (-signal.SIGTERM, -signal.SIGKILL):
            err = (proc.stderr.read() or "").strip().splitlines()
            self._remove_partial_output()
            self._put(RunnerEvent("error", err[-1] if err else f"the segmentation process ended with code {code}"))

    def _remove_partial_output(self) -> None:
        if self._out is None:
            return
        for leftover in self._out.parent.glob(f".{self._out.name}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
