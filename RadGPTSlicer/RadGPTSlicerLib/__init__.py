"""RadGPTSlicerLib: the Slicer-side glue of the RadGPT module, free of Qt.

Nothing in this package imports ``slicer``, ``vtk``, ``qt`` or ``ctk``: every Slicer
call goes through an object passed in by the caller (``slicer.util`` inside Slicer,
a fake in the pytest suite), so all of it is unit-tested without Slicer.

Modules
-------
adapter
    Nodes <-> arrays: build a :class:`RadGPTLogic.case.Case` from a volume node and a
    segmentation node (one segment at a time, never a flattened labelmap), read one
    segment again after an edit, list segments and their modification times.
live_update
    :class:`~RadGPTSlicerLib.live_update.LiveUpdateController`: debounced,
    incremental re-measurement after Segment Editor edits.
findings_view
    Findings -> table rows, lesion focus point and caliper end points for the panel.
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
