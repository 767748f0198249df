"""Debounced live updates while the user edits segments, with the work off the GUI thread.

The pattern of Slicer's auto-complete effects (a segmentation event only restarts a
single-shot timer), made non-blocking:

1. ``mark_dirty(segment_id)`` (a segmentation event with the segment ID as call
   data; None when the event does not say which) records the segment and restarts
   the debounce timer.  Nothing else happens on the event.
2. When the timer fires (GUI thread), ``take_snapshot(ids)`` copies only the
   labelmap layers of the dirty segments (see
   :func:`RadGPTSlicerLib.layers.snapshot_layers`) and the segment names, and the
   measurement job is queued on the worker thread.
3. The worker finds which segments really changed (their own voxels), updates the
   engine, renders changed key images and the report HTML.
4. A GUI timer picks the result up and ``on_result`` swaps it into the panel.

Edits arriving while a job runs are collected and sent as the next job once the
running one is delivered; the shown findings stay marked stale until then.  Nothing
here imports Qt or Slicer: timers, snapshotting and display are injected.
"""

from __future__ import annotations

import time
from typing import Callable

from .jobs import JobRunner


class LiveUpdateController:
    """Keeps a :class:`~RadGPTSlicerLib.session.MeasurementSession` in step with edits.

    Parameters
    ----------
    timer_factory : callable(interval_ms, single_shot, callback) -> timer
    take_snapshot : callable(segment_ids or None) -> (snapshots, names, full_crops)
        GUI thread: copies of the layers holding ``segment_ids`` (all when None),
        all segment names, and crops of segments read by full export.
    on_result : callable(UpdateResult)
        GUI thread: show the new findings.
    on_stale : callable(bool)
        The shown findings are out of date (True) / current again (False).
    on_error : callable(Exception)
    delay_ms : int
        Debounce delay after the last event.
    """

    def __init__(self, *, timer_factory: Callable, take_snapshot: Callable, on_result: Callable,
                 on_stale: Callable, on_error: Callable, delay_ms: int = 60, jobs: JobRunner = None):
        self._take_snapshot = take_snapshot
        self._on_result = on_result
        self._on_stale = on_stale
        self._on_error = on_error
        self._timer = timer_factory(delay_ms, True, self._on_timeout)
        self.jobs = jobs if jobs is not None else JobRunner(timer_factory)
        self.session = None
        self._enabled = True
        self._dirty: set = set()
        self._dirty_all = False
        self._in_flight = False
        self._stale = False
        self._first_dirty_at = None
        #: seconds from the first edit event to the result shown, per update
        self.latencies: list = []
        #: seconds the GUI thread spent in the snapshot step, per update
        self.snapshot_times: list = []
        self.updates = 0

    # ----------------------------------------------------------- state
    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        if not self._enabled:
            self._timer.stop()
        elif self._has_dirty() and self.session is not None and not self._in_flight:
            self._timer.start()

    @property
    def stale(self) -> bool:
        return self._stale

    @property
    def busy(self) -> bool:
        return self._in_flight

    def _has_dirty(self) -> bool:
        return self._dirty_all or bool(self._dirty)

    def _set_stale(self, stale: bool) -> None:
        if stale != self._stale:
            self._stale = stale
            self._on_stale(stale)

    # ------------------------------------------------------- lifecycle
    def attach(self, session) -> None:
        """Follow ``session`` (built by a Compute from a snapshot taken before any later edit)."""
        self.session = session
        if self._has_dirty() and self._enabled and not self._in_flight:
            self._timer.start()

    def detach(self) -> None:
        """Stop following (inputs changed, node removed, scene closed); drops pending work."""
        self._timer.stop()
        self.session = None
        self._dirty.clear()
        self._dirty_all = False
        self._first_dirty_at = None
        self._set_stale(False)

    def shutdown(self) -> None:
        self.detach()
        self.jobs.shutdown()

    # ----------------------------------------------------------- events
    def mark_dirty(self, segment_id=None) -> None:
        """A segment changed (``None``: some change the event did not attribute)."""
        if segment_id is None:
            self._dirty_all = True
        else:
            self._dirty.add(str(segment_id))
        if self._first_dirty_at is None:
            self._first_dirty_at = time.perf_counter()
        if self.session is None:
            return  # nothing computed yet: the next Compute reads everything anyway
        self._set_stale(True)
        if self._enabled and not self._in_flight:
            self._timer.start()

    def update_now(self, force: bool = False) -> bool:
        """Snapshot the dirty segments and queue their measurement; False when there is nothing to do."""
        self._timer.stop()
        if self.session is None or self._in_flight:
            return False
        if not self._has_dirty() and not force:
            return False
        ids = None if self._dirty_all else sorted(self._dirty)
        self._dirty.clear()
        self._dirty_all = False
        t0 = time.perf_counter()
        try:
            snapshots, names, full_crops = self._take_snapshot(ids)
        except Exception as exc:  # noqa: BLE001 - shown by on_error; the edit stays pending
            self._dirty_all = True
            self._on_error(exc)
            return False
        self.snapshot_times.append(time.perf_counter() - t0)
        session = self.session
        self._in_flight = True
        self.jobs.submit(lambda ctx: session.apply(snapshots, names, full_crops, force=force),
                         on_done=lambda result: self._delivered(session, result),
                         on_error=lambda exc: self._failed(session, exc), name="live update")
        return True

    def _on_timeout(self) -> None:
        self.update_now()

    def _delivered(self, session, result) -> None:
        self._in_flight = False
        if session is not self.session:  # inputs changed meanwhile: drop it
            return
        if result is not None:
            self.updates += 1
            self._on_result(result)
            if self._first_dirty_at is not None:
                self.latencies.append(time.perf_counter() - self._first_dirty_at)
        self._first_dirty_at = None
        self._after_job()

    def _failed(self, session, exc) -> None:
        self._in_flight = False
        if session is not self.session:
            return
        self._dirty_all = True  # retry everything on the next edit or Compute
        self._set_stale(True)
        self._on_error(exc)

    def _after_job(self) -> None:
        if self._has_dirty():
            self._set_stale(True)
            if self._first_dirty_at is None:
                self._first_dirty_at = time.perf_counter()
            if self._enabled:
                self._timer.start()
        else:
            self._set_stale(False)
