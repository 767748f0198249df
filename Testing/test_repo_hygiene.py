"""Project rules that are easy to break silently: layout, CI command, core import hygiene, start-up cost."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO

TOP_LEVEL = {"RadGPTSlicer", "RadGPTLogic", "Resources", "Testing", "CMakeLists.txt", "README.md", "LICENSE",
             "pyproject.toml", "benchmarks", "docs", ".ci"}


def test_top_level_layout():
    assert TOP_LEVEL <= {p.name for p in REPO.iterdir()}
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"The test command is `([^`]+)`", readme)
    assert m, "README must state its test command"
    command = m.group(1)
    assert command in readme.split("Install and run the tests:")[1].split("```")[1]
    ci_lines = [l.strip() for l in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
                if l.strip() and not l.strip().startswith("#")]
    assert ci_lines[-1] == command


def test_core_never_imports_slicer_vtk_qt():
    pattern = re.compile(r"^\s*(import|from)\s+(slicer|vtk|qt|ctk)\b", re.M)
    offenders = [str(p) for p in (REPO / "RadGPTLogic").rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_report_command_does_not_import_heavy_libraries():
    code = (
        "import sys, RadGPTLogic.cli, RadGPTLogic.engine, RadGPTLogic.case, RadGPTLogic.report.structured;"
        "heavy = [m for m in ('torch', 'nnunetv2', 'openai', 'highdicom', 'SimpleITK', 'skimage', 'matplotlib')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == ""
