"""The core and the Slicer module's tests under the Pythons Slicer ships.

Slicer 5.6/5.8 bundle Python 3.9 with numpy 1.26 and scipy 1.13; Slicer main bundles
Python 3.12 with numpy 2.  ``.ci/run`` builds ``.venv-py3.9`` and ``.venv-py3.12`` with
those versions; this test runs the module tests and a core subset in each (skipped
only when the venv is absent, e.g. on a developer machine that did not build it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The panel's tests (Qt harness: live update, Segment, save/export, narrative) and a core subset.
TESTS = ["Testing/test_slicer_module.py", "Testing/test_slicer_segment.py", "Testing/test_slicer_export.py",
         "Testing/test_phantom_truth.py", "Testing/test_report_templates.py"]


@pytest.mark.parametrize("version,numpy_major", [("3.9", "1"), ("3.12", "2")])
def test_suite_passes_under_slicer_python(version, numpy_major):
    python = REPO / f".venv-py{version}" / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"{python.parent.parent.name} not built (.ci/run builds it)")
    probe = subprocess.run([str(python), "-c", "import sys, numpy; print(sys.version_info[:2], numpy.__version__)"],
                           capture_output=True, text=True, check=True).stdout
    assert probe.startswith(f"({version.replace('.', ', ')})") and f" {numpy_major}." in probe, probe
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
