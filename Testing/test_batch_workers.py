"""Batch worker processes, resume against the output manifest, and the dataset tables (local executor).

Cases are small phantoms (about 0.1 s each); slow cases come from the stand-in runner
in ``batch_helpers`` (a marker per call, a sleep where ``behaviour.json`` asks).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch_helpers import alive, marks
from RadGPTLogic.dataset.batch import Progress, run_batch
from RadGPTLogic.phantom import build_phantom, default_lesions, write_case

TESTING = Path(__file__).resolve().parent
REPO = TESTING.parent
SPACING = (4.0, 4.0, 5.0)
CASES = [f"BDMAP_0000010{i}" for i in range(1, 5)]


def _write_root(root: Path) -> Path:
    lesions = default_lesions()
    for seed, (case_id, les) in enumerate(zip(CASES, [lesions, lesions[:2], [], lesions[3:]])):
        write_case(build_phantom(size="small", spacing=SPACING, seed=seed, lesions=les), root, case_id=case_id)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return _write_root(tmp_path_factory.mktemp("workers") / "root")


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- workers die with their parent


BATCH_SCRIPT = """
import sys
from batch_helpers import marking_runner
from RadGPTLogic.dataset.batch import run_batch
sys.exit(run_batch(sys.argv[1], sys.argv[2], workers=2, runner=marking_runner).exit_code)
"""


def test_workers_exit_when_the_batch_process_is_killed(tmp_path, root):
    root2 = tmp_path / "root"
    shutil.copytree(root, root2)
    (root2 / "behaviour.json").write_text(json.dumps({c: {"sleep": 120} for c in CASES}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTING), str(REPO)]))
    batch = subprocess.Popen([sys.executable, "-c", BATCH_SCRIPT, str(root2), str(tmp_path / "out")], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        running = _wait_for(lambda: len(marks(root2)) >= 2 and marks(root2), 60, "two cases running")
        workers = [pid for _, pid, ppid in running if ppid == batch.pid]
        assert len(workers) == 2 and all(alive(p) for p in workers)
        batch.send_signal(signal.SIGKILL)
        batch.wait(10)
        # The workers ignore SIGTERM and sleep in a case for 120 s; they still end within seconds.
        _wait_for(lambda: not any(alive(p) for p in workers), 10, "the orphaned workers to exit")
    finally:
        if batch.poll() is None:
            batch.kill()
        for _, pid, _ in marks(root2):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_workers_ignore_terminal_signals_but_follow_the_batch(root, tmp_path):
    # A Ctrl-C reaches the whole process group: workers ignore it, the batch decides (first: drain).
    root2 = tmp_path / "root"
    shutil.copytree(root, root2)
    (root2 / "behaviour.json").write_text(json.dumps({CASES[0]: {"sleep": 2}}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTING), str(REPO)]))
    batch = subprocess.Popen([sys.executable, "-c", BATCH_SCRIPT, str(root2), str(tmp_path / "out")], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_for(lambda: marks(root2, CASES[0]), 60, "the slow case to start")
        os.killpg(batch.pid, signal.SIGINT)  # as a terminal's Ctrl-C does
        assert batch.wait(60) == 130
    finally:
        if batch.poll() is None:
            batch.kill()
    rows = {r["case_id"]: r for r in csv.DictReader((tmp_path / "out" / "batch_summary.csv").open())}
    assert rows[CASES[0]]["status"] == "ok"  # the running case was let finish
    assert {r["status"] for r in rows.values()} <= {"ok", "cancelled"}
    assert not any(alive(pid) for _, pid, _ in marks(root2))
