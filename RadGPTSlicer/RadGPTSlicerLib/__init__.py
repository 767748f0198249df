"""RadGPTSlicerLib: the Slicer-side glue of the RadGPT module, free of Qt.

No module here imports ``slicer``, ``vtk``, ``qt`` or ``ctk`` at the top: Slicer calls go
through objects passed in by the caller (``slicer.util`` inside Slicer, a fake in the
pytest suite), and the few functions that must create nodes (loading a segmentation,
in :mod:`segment_stage`) import ``slicer`` inside the function.  Timers are injected,
so every class here runs under Slicer's PythonQt and under the tests' PyQt5 alike.

Modules
-------
adapter
    Nodes <-> arrays: IJK-to-RAS matrix, segment names, the slow full-extent read.
layers
    Segments read from their own labelmap layers (GUI-thread copy) and per-segment
    change detection from the segments' own voxels (worker thread).
session
    :class:`~RadGPTSlicerLib.session.MeasurementSession`: case, engine, tracker and
    key-image cache of one Compute (worker thread only).
live_update
    :class:`~RadGPTSlicerLib.live_update.LiveUpdateController`: debounce, snapshot,
    background measurement, findings first and key images after.
jobs
    One worker thread per runner, results delivered on the GUI thread by a timer.
findings_view
    Findings -> table rows, review order, calipers, editor-mode text, one-line errors.
segment_stage
    The Segment button: CT written, runner process polled, masks loaded as segments.
narrative_job
    The opt-in narrative: what is sent, the background job, the fact-check line.
export
    Save (CLI layout), add to a triplet dataset, DICOM SEG + SR.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = ["ensure_core_importable"]


def ensure_core_importable() -> bool:
    """Make ``import RadGPTLogic`` work; return True when it does.

    In an installed extension (and in a CMake build tree) the ``RadGPTLogic`` package
    sits next to ``RadGPTSlicer.py`` in the qt-scripted-modules folder, which Slicer
    puts on ``sys.path``.  When a developer runs the module straight from a source
    checkout (``Slicer --additional-module-paths <repo>/RadGPTSlicer``) the package is
    one folder up, at the repository root: that folder is added to ``sys.path``.
    A pip-installed ``radgpt-slicer`` in Slicer's Python works as it is.
    """
    if importlib.util.find_spec("RadGPTLogic") is not None:
        return True
    repo_root = Path(__file__).resolve().parents[2]
    if (repo_root / "RadGPTLogic" / "__init__.py").is_file():
        sys.path.insert(0, str(repo_root))
        importlib.invalidate_caches()
        return importlib.util.find_spec("RadGPTLogic") is not None
    return False
