"""Output folders are all-or-nothing, also when they exist: a run killed at any step of the write
leaves the old folder or the new one (never findings beside reports of another run), two runs into
one folder never interleave, the next run cleans up, and the user's own files are never deleted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, run_cli, simple_case_arrays, write_case

from RadGPTLogic.io import atomic
from RadGPTLogic.io.atomic import manifest_problems, publish, read_manifest, recover

KILLER = textwrap.dedent("""
    import os, signal, sys
    from RadGPTLogic.io import atomic
    from RadGPTLogic.pipeline import run_report
    case_dir, out_dir, step, exchange = sys.argv[1:5]
    if exchange == "no":
        atomic._EXCHANGE = False  # the two-rename path of systems without an atomic exchange
    def hook(name):
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)
    atomic._step_hook = hook
    run_report(case_dir, out_dir, phase="venous")
""")

STEPS = ["tmp-created", "old-files-linked", "wrote findings.json", "wrote report.txt", "wrote report.html",
         "manifest-written", "new-complete", "exchanged"]
FALLBACK_STEPS = ["new-complete", "old-moved-aside", "new-in-place"]


def _run_killed(case_dir, out_dir, step, exchange="yes"):
    return subprocess.run([sys.executable, "-c", KILLER, str(case_dir), str(out_dir), step, exchange],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)


def _state(out: Path) -> dict:
    """What a reader finds: the findings' spleen volume and whether the folder is whole."""
    findings = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    report = (out / "report.txt").read_text(encoding="utf-8")
    return {"spleen_ml": findings["organs"]["spleen"]["volume_ml"], "whole": manifest_problems(out) == [],
            "report_agrees": f"volume {findings['organs']['spleen']['volume_ml']:.1f} mL" in report}


@pytest.fixture
def two_states(tmp_path):
    """A case reported once (the old state), then edited so that its findings change."""
    ct, affine, masks = simple_case_arrays()
    case = write_case(tmp_path, ct, affine, masks)
    out = tmp_path / "out"
    run_cli("report", case, "--out", out, "--phase", "venous", check=True)
    atomic.write_files_atomically(out, {"narrative.txt": "made from the old findings"})
    (out / "my_notes.txt").write_text("mine")
    old = _state(out)
    spleen = masks["spleen"].copy()
    spleen[np.nonzero(spleen)[0][0]] = 0  # erase one slab: the spleen volume changes
    nib.save(nib.Nifti1Image(spleen, affine), case / "segmentations" / "spleen.nii.gz")
    return case, out, old


@pytest.mark.parametrize("exchange, step", [("yes", s) for s in STEPS] + [("no", s) for s in FALLBACK_STEPS])
def test_a_kill_at_any_step_leaves_a_whole_folder(two_states, exchange, step):
    case, out, old = two_states
    proc = _run_killed(case, out, step, exchange)
    assert proc.returncode == -9, proc.stderr  # it really died at that step
    if not out.exists():
        assert (exchange, step) == ("no", "old-moved-aside")  # the one moment between two renames
    recover(out)  # what every later writer (and batch) does first
    state = _state(out)
    assert state["whole"] and state["report_agrees"]
    assert state["spleen_ml"] in (old["spleen_ml"], _new_spleen(case))
    assert (out / "my_notes.txt").read_text(encoding="utf-8") == "mine"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".out.")]
    assert leftovers == []
    # The next run completes and finds nothing to clean.
    run_cli("report", case, "--out", out, "--phase", "venous", check=True)
    assert _state(out) == {"spleen_ml": _new_spleen(case), "whole": True, "report_agrees": True}
    assert not (out / "narrative.txt").exists()  # made from findings that changed
    assert (out / "my_notes.txt").read_text(encoding="utf-8") == "mine"


def _new_spleen(case: Path) -> float:
    img = nib.load(case / "segmentations" / "spleen.nii.gz")
    return float(np.count_nonzero(np.asarray(img.dataobj)) * abs(np.linalg.det(img.affine[:3, :3])) / 1000.0)


def test_kill_leftovers_are_cleaned_by_the_next_run(two_states):
    case, out, _ = two_states
    _run_killed(case, out, "wrote report.txt")
    assert [p for p in out.parent.iterdir() if p.name.startswith(".out.tmp-")]
    run_cli("report", case, "--out", out, "--phase", "venous", check=True)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.")]


def test_two_runs_into_one_folder_never_interleave(tmp_path):
    ct, affine, masks = simple_case_arrays()
    a = write_case(tmp_path, ct, affine, masks, case_id="CASE_A")
    smaller = dict(masks)
    smaller["liver_lesion"] = np.zeros_like(masks["liver_lesion"])
    b = write_case(tmp_path, ct, affine, smaller, case_id="CASE_B")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(6):
        procs = [subprocess.Popen([sys.executable, "-m", "RadGPTLogic.cli", "report", str(c), "--out", str(out)],
                                  cwd=REPO, env=env, stderr=subprocess.DEVNULL) for c in (a, b, a, b)]
        assert all(p.wait() == 0 for p in procs)
        findings = json.loads((out / "findings.json").read_text(encoding="utf-8"))
        report = (out / "report.txt").read_text(encoding="utf-8")
        assert manifest_problems(out) == []
        assert f"case {findings['case_id']}" in report.splitlines()[0]  # findings and report of one run
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_users_files_survive_and_stale_tool_files_go(tmp_path):
    out = tmp_path / "out"
    publish(out, {"findings.json": "{}", "derived/pancreas_head.nii.gz": b"tool"})
    (out / "derived" / "mine.nii.gz").write_bytes(b"user")
    publish(out, {"findings.json": "{\"v\": 2}"}, remove={"derived/pancreas_head.nii.gz", "derived/mine.nii.gz"})
    assert not (out / "derived" / "pancreas_head.nii.gz").exists()  # the tool wrote it: removable
    assert (out / "derived" / "mine.nii.gz").read_bytes() == b"user"  # never the user's
    assert set(read_manifest(out)) == {"findings.json"}


def test_a_hand_edited_output_is_detected(tmp_path):
    out = tmp_path / "out"
    publish(out, {"findings.json": "{}", "report.txt": "r"})
    assert manifest_problems(out) == []
    (out / "findings.json").write_text("{\"edited\": true}")
    assert manifest_problems(out, ["findings.json", "report.txt"]) == ["findings.json changed"]


def test_empty_output_path_is_refused(simple_case):
    proc = run_cli("report", simple_case, "--out", "")
    assert proc.returncode == 2 and "empty output path" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_os_errors_are_one_line_user_errors(simple_case, tmp_path):
    target = Path("/sys/radgpt_out_test")
    if os.access("/sys", os.W_OK) and not target.exists():
        try:
            target.mkdir()
            target.rmdir()
            pytest.skip("/sys is writable here: no read-only location to test against")
        except OSError:
            pass
    proc = run_cli("report", simple_case, "--out", target)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("radgpt: error: ") and "/sys" in line and "internal error" not in line
    # The messages say what happened in words a user can act on.
    full = atomic.os_error("/data/out", OSError(28, "No space left on device", "/data/out/x"), "write")
    assert full.one_line() == "/data/out/x: cannot write (no space left on the device)"
