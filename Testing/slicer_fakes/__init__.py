"""Qt harness for the RadGPT Slicer module: the real widget on PyQt5 with fake Slicer modules.

``install()`` puts the fakes of ``slicer``, ``vtk``, ``qt`` and ``ctk`` (folder
``site/``) first on ``sys.path``, starts a ``QApplication`` on the offscreen platform
(Qt 5.15, Slicer 5.x's Qt) and isolates ``QSettings`` in a temporary folder.
``open_panel()`` imports ``RadGPTSlicer.py``, builds its widget with the ``.ui`` file
really loaded and returns it.  ``scene_from_arrays()`` makes a CT volume node and a
segmentation node, optionally with all segments on one shared labelmap layer (how
Slicer loads a multi-label file).  ``wait_until()`` spins the Qt event loop.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODULE_DIR = REPO / "RadGPTSlicer"
_APP = None


def install():
    """Make the fakes importable and start the offscreen Qt application (idempotent)."""
    global _APP
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for path in (str(MODULE_DIR), str(HERE / "site")):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    from PyQt5 import QtCore, QtWidgets

    if _APP is None:
        _APP = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["radgpt-test"])
        QtCore.QCoreApplication.setOrganizationName("RadGPTTest")
        QtCore.QCoreApplication.setApplicationName("RadGPTTest")
        QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
        QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope,
                                 tempfile.mkdtemp(prefix="radgpt_qsettings_"))
    import slicer  # noqa: F401  (the fake)

    return _APP


def reset():
    """A fresh fake scene and application state."""
    import slicer

    slicer.reset()
    from PyQt5 import QtCore

    QtCore.QSettings().clear()


def open_panel():
    """The module's widget, set up as Slicer does (``setup()`` then ``enter()``)."""
    import importlib

    install()
    module = importlib.import_module("RadGPTSlicer")
    widget = module.RadGPTSlicerWidget()
    widget.setup()
    widget.parent.isEntered = True
    widget.enter()
    return module, widget


def wait_until(predicate, timeout=30.0, step_ms=5):
    """Run the Qt event loop until ``predicate()`` is true; False on timeout."""
    from PyQt5 import QtCore, QtWidgets

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.AllEvents, step_ms)
        if predicate():
            return True
        time.sleep(step_ms / 1000.0)
    return predicate()


def add_volume(ct_ijk: np.ndarray, ijk_to_ras: np.ndarray, name="CT"):
    import slicer

    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.fake_array = np.ascontiguousarray(np.asarray(ct_ijk).transpose(2, 1, 0))
    node.fake_ijk_to_ras = np.asarray(ijk_to_ras, float)
    node.CreateDefaultDisplayNodes()
    return node


def add_segmentation(volume_node, masks_ijk: dict, shared=True, name="Segmentation", dtype=np.uint8, separate=()):
    """A segmentation node on the CT's geometry; segment IDs ``seg<n>`` in the order of ``masks_ijk``.

    ``shared``: all segments on one layer with label values 1, 2, ... (later masks win
    where they overlap, as in a multi-label file); otherwise one layer per segment.
    """
    import slicer

    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segmentation = node.GetSegmentation()
    entries = [(f"seg{n}", seg_name, np.asarray(mask).transpose(2, 1, 0), None)
               for n, (seg_name, mask) in enumerate(masks_ijk.items(), start=1)]
    if shared:
        segmentation.fake_add_shared_layer([e for e in entries if e[1] not in separate], dtype=dtype)
        for segment_id, seg_name, mask_kji, color in entries:
            if seg_name in separate:
                segmentation.fake_add_segment(segment_id, seg_name, mask_kji, color)
    else:
        for segment_id, seg_name, mask_kji, color in entries:
            segmentation.fake_add_segment(segment_id, seg_name, mask_kji, color)
    return node
