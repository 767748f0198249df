"""Debounced, incremental re-measurement while the user edits segments.

The pattern is the one of Slicer's auto-complete segment editor effects
(``AbstractScriptedSegmentEditorAutoCompleteEffect``): segmentation events only
(re)start a single-shot timer; when it fires, per-segment labelmap modification
times are compared with the last ones seen, and only the segments that changed are
read again.  A guard keeps an edit that arrives during a computation from starting
a nested one: it marks the findings dirty again, and the timer is restarted once
the running update has finished.

Nothing here imports Qt or Slicer: the timer and every Slicer access are injected,
so the controller runs unchanged under pytest with a fake timer and fake nodes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Mapping

import numpy as np

from RadGPTLogic import vocabulary as vocab
from RadGPTLogic.case import Crop


class LiveUpdateController:
    """Keeps an :class:`~RadGPTLogic.engine.Engine` in step with a segmentation being edited.

    Parameters
    ----------
    timer_factory : callable(callback) -> timer
        Creates the debounce timer: an object with ``start()`` (starts or restarts
        the countdown) and ``stop()`` that calls ``callback()`` once when the time
        is up.  In Slicer: a single-shot ``qt.QTimer`` of about 500 ms connected to
        ``callback``; in tests a fake fired by hand.
    list_segments : callable() -> mapping
        Segment ID -> segment name, for all segments now in the segmentation.
    read_segment : callable(segment_id) -> array or Crop
        The segment's mask in the engine case's canonical RAS frame (a full bool
        array, or a :class:`~RadGPTLogic.case.Crop`); see
        :func:`RadGPTSlicerLib.adapter.segment_crop_for_engine`.
    segment_mtime : callable(segment_id) -> int or None
        Modification time of the segment's labelmap (None: the segment is gone).
    on_findings : callable(Findings)
        Called with the new findings after each recomputation.
    on_stale : callable(bool), optional
        Called with True when the shown findings no longer match the segmentation
        (an edit was seen) and with False once they are current again.
    on_error : callable(Exception), optional
        Called when an update fails; without it the exception propagates.
    """

    def __init__(
        self,
        *,
        timer_factory: Callable,
        list_segments: Callable[[], Mapping[str, str]],
        read_segment: Callable,
        segment_mtime: Callable,
        on_findings: Callable,
        on_stale: Callable[[bool], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ):
        self._list_segments = list_segments
        self._read_segment = read_segment
        self._segment_mtime = segment_mtime
        self._on_findings = on_findings
        self._on_stale = on_stale
        self._on_error = on_error
        self._timer = timer_factory(self._on_timeout)

        self.engine = None
        self._enabled = True
        self._seen: dict = {}  # segment ID -> (name, mtime) the engine reflects
        self._crops: dict = {}  # segment ID -> Crop last read (only for reportable names)
        self._dirty = False
        self._computing = False
        self._stale = False
        #: Segment IDs read again / dropped by the last update (for display and tests).
        self.last_changed: tuple = ()
        self.last_removed: tuple = ()
        #: Number of ``engine.compute()`` calls made by this controller.
        self.computations = 0

    # ------------------------------------------------------------ state
    @property
    def enabled(self) -> bool:
        """Auto-update on (the GUI's checkbox).  Off: edits only mark the findings stale."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        if not self._enabled:
            self._timer.stop()
        elif self._dirty and self.engine is not None and not self._computing:
            self._timer.start()

    @property
    def stale(self) -> bool:
        """True while the last findings do not reflect the segmentation."""
        return self._stale

    @property
    def computing(self) -> bool:
        return self._computing

    @property
    def timer(self):
        """The debounce timer made by ``timer_factory`` (e.g. to disconnect it on cleanup)."""
        return self._timer

    # ------------------------------------------------------ lifecycle
    def snapshot(self) -> dict:
        """Segment ID -> (name, mtime) as the segmentation is now."""
        out = OrderedDict()
        for segment_id, name in self._list_segments().items():
            mtime = self._segment_mtime(segment_id)
            if mtime is not None:
                out[segment_id] = (name, mtime)
        return out

    def attach(self, engine, baseline: Mapping | None = None) -> None:
        """Follow ``engine``, whose case was built from the segmentation as in ``baseline``.

        ``baseline`` is a :meth:`snapshot` taken *before* the case was read, so an
        edit made while it was being read is seen as a change.  Without it the
        segmentation is assumed unchanged since the case was built.
        """
        self._timer.stop()
        self.engine = engine
        self._seen = dict(self.snapshot() if baseline is None else baseline)
        self._crops.clear()
        self._dirty = False

    def reset(self, engine_factory: Callable, compute: bool = True):
        """Build a new engine with ``engine_factory()`` (a full read), follow it, compute.

        Returns the findings (or the engine when ``compute`` is False).
        """
        baseline = self.snapshot()
        engine = engine_factory()
        self.attach(engine, baseline)
        if not compute:
            return engine
        return self.update_now(force=True)

    def swap_engine(self, engine) -> None:
        """Follow another engine over the *same* case (e.g. built for another phase).

        What was seen of the segmentation stays valid, so pending edits are still
        applied by the next :meth:`update_now`.
        """
        if self.engine is not None and engine.case is not self.engine.case:
            raise ValueError("swap_engine needs an engine over the same case; use reset() for a new case")
        self.engine = engine

    def detach(self) -> None:
        """Stop following the engine (inputs changed, module closed)."""
        self._timer.stop()
        self.engine = None
        self._seen.clear()
        self._crops.clear()
        self._dirty = False

    # --------------------------------------------------------- events
    def mark_dirty(self, *_args) -> None:
        """The segmentation changed: (re)start the debounce timer and nothing else.

        Takes and ignores any arguments, so it can serve directly as a VTK observer
        callback ``(caller, event)``.  During a computation it only records that
        another update is needed; the running update restarts the timer when done.
        """
        self._dirty = True
        self._set_stale(True)
        if self._computing:
            return
        if self._enabled and self.engine is not None:
            self._timer.start()

    def _on_timeout(self) -> None:
        self.update_now()

    def update_now(self, force: bool = False):
        """Bring the engine up to date with the segmentation and recompute.

        Only segments whose name or labelmap modification time changed are read
        again; removed segments are dropped from the engine.  When nothing
        reportable changed, nothing is recomputed unless ``force``.  Returns the new
        findings, or None (no engine, nothing changed, re-entrant call, error).
        """
        if self.engine is None:
            return None
        if self._computing:  # re-entrant call (e.g. an event processed during compute)
            self._dirty = True
            return None
        self._computing = True
        self._dirty = False
        self._timer.stop()
        findings = None
        try:
            changed = self._apply_changes()
            if changed or force:
                findings = self.engine.compute()
                self.computations += 1
                self._on_findings(findings)
        except Exception as exc:  # noqa: BLE001 - reported through on_error
            self._computing = False
            self._set_stale(True)
            if self._on_error is None:
                raise
            self._on_error(exc)
            return None
        self._computing = False
        if self._dirty:  # edits arrived while computing: one more round, later
            self._set_stale(True)
            if self._enabled:
                self._timer.start()
        else:
            self._set_stale(False)
        return findings

    # -------------------------------------------------------- helpers
    def _apply_changes(self) -> bool:
        """Push changed and removed segments into the engine; True if a reportable structure changed."""
        engine = self.engine
        current = OrderedDict()
        for segment_id, name in self._list_segments().items():
            mtime = self._segment_mtime(segment_id)  # before reading: a later edit is seen next time
            if mtime is not None:
                current[segment_id] = (name, mtime)
        changed = [s for s, state in current.items() if self._seen.get(s) != state]
        removed = [s for s in self._seen if s not in current]
        self.last_changed, self.last_removed = tuple(changed), tuple(removed)
        if not changed and not removed:
            return False

        affected = set()
        for segment_id in removed + changed:
            old = self._seen.get(segment_id)
            if old is not None and vocab.canonical_name(old[0]):
                affected.add(vocab.canonical_name(old[0]))
            self._crops.pop(segment_id, None)
        for segment_id in changed:
            canonical = vocab.canonical_name(current[segment_id][0])
            if canonical:
                affected.add(canonical)

        for canonical in sorted(affected):
            members = [s for s, (name, _) in current.items() if vocab.canonical_name(name) == canonical]
            if not members:
                engine.remove_structure(canonical)
                continue
            engine.update_structure(canonical, union_crops([self._crop(s) for s in members]))
            for s in members:  # record per segment, so a failure later leaves the rest to retry
                self._seen[s] = current[s]
        for segment_id in removed:
            self._seen.pop(segment_id, None)
        for segment_id in changed:
            self._seen[segment_id] = current[segment_id]
        return bool(affected)

    def _crop(self, segment_id: str) -> Crop:
        crop = self._crops.get(segment_id)
        if crop is None:
            mask = self._read_segment(segment_id)
            crop = mask if isinstance(mask, Crop) else Crop.from_full(np.asarray(mask))
            self._crops[segment_id] = crop
        return crop

    def _set_stale(self, stale: bool) -> None:
        if stale != self._stale:
            self._stale = stale
            if self._on_stale is not None:
                self._on_stale(stale)


def union_crops(crops: list) -> Crop:
    """Union of crops in one canonical frame (segments that name one structure)."""
    full = [c for c in crops if not c.is_empty]
    if len(full) <= 1:
        return full[0] if full else Crop.empty()
    lo = np.min([c.offset for c in full], axis=0)
    hi = np.max([np.add(c.offset, c.shape) for c in full], axis=0)
    offset, shape = tuple(int(x) for x in lo), tuple(int(x) for x in hi - lo)
    box = np.zeros(shape, bool)
    for c in full:
        box |= c.in_box(offset, shape)
    return Crop(box, offset)
