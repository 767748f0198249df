"""The panel's measurement process: one :class:`MeasurementSession` per Compute, in its own interpreter.

Measuring (engine, key images, report HTML, saving) is numpy and scipy work, and
many of those calls hold Python's GIL for tens of milliseconds.  Run on a thread
of Slicer's process they would stall Slicer's GUI thread whenever it needs Python;
in a process of their own they cannot.  This is the pattern of SlicerNNUnet and
SlicerMONAIAuto3DSeg (inference in a separate process), kept alive for the whole
session so the engine's cache survives between edits.

:class:`RemoteSession` (panel side) has the interface of
:class:`~RadGPTSlicerLib.session.MeasurementSession`: ``apply``, ``render_images``,
``set_phase``, ``save_case``, ``add_to_dataset``, ``export_dicom``, ``phase``,
``stats`` and ``close``.  Each call sends one message (:mod:`RadGPTSlicerLib.ipc`:
arrays travel out of band, the GIL is released while the pipe is written and read)
and waits for the answer; calls come from the panel's worker thread, one at a
time.  Errors come back as their one line (:class:`MeasurementProcessError`), the
traceback goes to the log.  A process that dies is reported as one line; the next
Compute starts a new one.

The process is started with Slicer's own Python (``PythonSlicer``; this Python in
the tests) and told where the module and the core live, so it needs no install.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import numpy as np

from . import ipc

log = logging.getLogger("RadGPT")

#: Seconds the process gets to finish after "quit" before it is killed.
QUIT_TIMEOUT_S = 2.0
#: Start of the error a process answers when it lacks the layer a patch applies to.
RESEND = "resend whole layers:"


class MeasurementProcessError(RuntimeError):
    """A measurement request failed in the process (the message is the one-line error)."""


def _sys_paths() -> list:
    """Folders the process needs on sys.path: the one holding RadGPTSlicerLib and the one holding RadGPTLogic."""
    import RadGPTLogic

    here = Path(__file__).resolve().parents[1]
    core = Path(RadGPTLogic.__file__).resolve().parents[1]
    return [str(here)] + ([str(core)] if core != here else [])


class RemoteSession:
    """A :class:`MeasurementSession` living in a child process (see the module doc)."""

    def __init__(self, python_executable=None):
        from .segment_stage import python_executable as default_python

        bootstrap = ("import sys; sys.path[:0] = {paths!r}; "
                     "from RadGPTSlicerLib.measure_process import serve; serve()").format(paths=_sys_paths())
        self._proc = subprocess.Popen(
            [python_executable or default_python(), "-c", bootstrap], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))  # no console window on Windows
        self._lock = threading.Lock()
        self._closed = False
        self._phase = "unknown"
        self._sent: dict = {}  # layer key -> the LayerSnapshot last sent (the process holds the same voxels)
        #: layer copies are taken into these arrays (the panel's snapshot step reads it)
        from .layers import ArrayPool

        self.buffers = ArrayPool()
        self._stderr = threading.Thread(target=self._log_stderr, daemon=True)
        self._stderr.start()

    # ------------------------------------------------------------------ calls
    def _call(self, op: str, *args):
        with self._lock:
            if self._closed:
                raise MeasurementProcessError("the measurement process was closed")
            try:
                ipc.send(self._proc.stdin, (op, args))
                status, value = ipc.recv(self._proc.stdout)
            except (ipc.ChannelClosed, OSError, ValueError):
                code = self._proc.poll()
                raise MeasurementProcessError(
                    f"the measurement process ended unexpectedly (exit code {code}); press Compute to restart it"
                ) from None
        if status == "ok":
            return value
        message, detail = value
        log.debug("RadGPT measurement process: %s", detail)
        raise MeasurementProcessError(message)

    def open(self, case_id, ct_kji, ijk_to_ras, phase, source_name="", transformed=False):
        """Start the session on a CT given as Slicer's ``[k, j, i]`` array (C-contiguous: sent without a copy)."""
        import numpy as np

        self._phase = phase
        return self._call("open", case_id, np.ascontiguousarray(ct_kji), np.asarray(ijk_to_ras, float), phase,
                          source_name, bool(transformed))

    def apply(self, snapshots, names, full_crops=None, force=False):
        """Send each layer as the box of voxels that changed since it was last sent (the whole layer
        the first time or when its extent changed); the process patches its own copy."""
        from .layers import LayerPatch, changed_box

        snapshots = list(snapshots)
        message = []
        for snap in snapshots:
            sent = self._sent.get(snap.key)
            if sent is not None and sent.extent == snap.extent and sent.voxels.shape == snap.voxels.shape:
                box = changed_box(sent.voxels, snap.voxels)
                lo, hi = box if box is not None else ((0, 0, 0), (0, 0, 0))
                message.append(LayerPatch(snap.key, snap.extent, dict(snap.labels), lo, hi,
                                          np.ascontiguousarray(snap.voxels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])))
            else:
                message.append(snap)
        args = (dict(names), dict(full_crops or {}), bool(force))
        try:
            result = self._call("apply", message, *args)
        except MeasurementProcessError as exc:
            if not str(exc).startswith(RESEND):
                raise
            result = self._call("apply", snapshots, *args)  # the process lost a layer: send them whole
        for snap in snapshots:
            old = self._sent.get(snap.key)
            self._sent[snap.key] = snap
            if old is not None and old.voxels is not snap.voxels and old.voxels.size:
                self.buffers.release(old.voxels)  # nothing reads the copy before last any more
        return result

    def render_images(self, stop=None):
        """Draw pending key images one per call, asking ``stop()`` in between; None when stopped."""
        while True:
            if stop is not None and stop():
                return None
            if not self._call("draw_next_image"):
                return self._call("render_images")

    def set_phase(self, phase):
        result = self._call("set_phase", phase)
        self._phase = phase
        return result

    @property
    def phase(self) -> str:
        return self._phase

    def stats(self) -> dict:
        return self._call("stats")

    def save_case(self, folder, case_id="", narrative=None):
        return self._call("save_case", folder, case_id, narrative)

    def add_to_dataset(self, folder, dataset, case_id="", narrative=None):
        return self._call("add_to_dataset", folder, dataset, case_id, narrative)

    def export_dicom(self, dicom_files, folder, case_id=""):
        return self._call("export_dicom", list(dicom_files), folder, case_id)

    # -------------------------------------------------------------- lifetime
    @property
    def pid(self):
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        """End the process (any thread; a call in progress gets a one-line error)."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc.poll() is None:
            if self._lock.acquire(blocking=False):  # idle: ask it to quit
                try:
                    ipc.send(proc.stdin, ("quit", ()))
                except (OSError, ValueError):
                    pass
                finally:
                    self._lock.release()
                try:
                    proc.wait(timeout=QUIT_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
            else:  # busy with a request: end it now
                proc.kill()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=QUIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._stderr.join(timeout=QUIT_TIMEOUT_S)  # the process is gone: its stderr ends
        try:
            proc.stderr.close()
        except OSError:
            pass

    def _log_stderr(self) -> None:
        for line in iter(self._proc.stderr.readline, b""):
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                log.info("RadGPT measurement process: %s", text)


# ============================================================== process side
def serve(stdin=None, stdout=None) -> None:
    """The process's loop: read a request, run it on the session, answer; until "quit" or end of input."""
    from .session import MeasurementSession

    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must never corrupt the message stream
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
    session = None
    while True:
        try:
            op, args = ipc.recv(stdin)
        except ipc.ChannelClosed:
            return
        if op == "quit":
            return
        try:
            if op == "open":
                case_id, ct_kji, ijk_to_ras, phase, source_name, transformed = args
                session = MeasurementSession(case_id, ct_kji.transpose(2, 1, 0), ijk_to_ras, phase, source_name)
                if transformed:
                    session.case.warnings.append(
                        f"volume '{source_name}' is under a transform: positions are in the volume's own "
                        "(untransformed) RAS")
                value = None
            elif session is None:
                raise RuntimeError("no case opened in the measurement process")
            elif op == "apply":
                layers, names, full_crops, force = args
                value = session.apply(_whole_layers(session, layers), names, full_crops, force)
            elif op in ("render_images", "draw_next_image", "set_phase", "stats", "save_case", "add_to_dataset",
                        "export_dicom"):
                value = getattr(session, op)(*args)
            else:
                raise RuntimeError(f"unknown request {op!r}")
            reply = ("ok", value)
        except Exception as exc:  # noqa: BLE001 - every failure goes back as one line
            reply = ("error", (" ".join(str(exc).split()) or type(exc).__name__, traceback.format_exc()))
        try:
            ipc.send(stdout, reply)
        except (OSError, ValueError):
            return


def _whole_layers(session, layers) -> list:
    """Layer snapshots from what the panel sent: whole layers as they are, patches applied to this
    process's copy of their layer (the tracker's)."""
    from .layers import LayerPatch, LayerSnapshot

    out, missing = [], []
    for layer in layers:
        if not isinstance(layer, LayerPatch):
            out.append(layer)
            continue
        held = session.tracker.layer_voxels(layer.key, layer.extent)
        if held is None:
            missing.append(layer.key)
            continue
        voxels = held
        if layer.voxels.size:
            voxels = held.copy()
            (k0, j0, i0), (k1, j1, i1) = layer.lo, layer.hi
            voxels[k0:k1, j0:j1, i0:i1] = layer.voxels
        out.append(LayerSnapshot(layer.key, voxels, layer.extent, layer.labels))
    if missing:
        raise RuntimeError(f"{RESEND} {missing}")
    return out
