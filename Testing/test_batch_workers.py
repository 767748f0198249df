"""Batch worker processes, resume against the output manifest, and the dataset tables (local executor).

Cases are small phantoms (about 0.1 s each); slow cases come from the stand-in runner
in ``batch_helpers`` (a marker per call, a sleep where ``behaviour.json`` asks).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_helpers import alive, marks, thread_recording_runner, thread_records

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


# --------------------------------------------------------------------------- the narrative stage


def _llm(server):
    from RadGPTLogic.llm.client import LLMConfig

    return LLMConfig(base_url=server.url, model=server.model, max_retries=0, timeout_s=20)


def test_narrative_stage_bounded_and_never_loses_the_report(root, tmp_path):
    from batch_helpers import narrative_reply, scripted_server_class

    Server = scripted_server_class()
    out = tmp_path / "out"
    with Server(narrative_reply(out), delay_s=0.3) as server:
        result = run_batch(root, out, workers=2, llm=_llm(server), llm_concurrency=1, handle_signals=False)
        assert server.max_in_flight == 1 and len(server.requests) >= len(CASES)
    assert result.exit_code == 0
    for row in result.rows:
        assert row["status"] == "ok" and row["narrative"] == "accepted", row
        check = json.loads((out / row["case_id"] / "narrative_check.json").read_text(encoding="utf-8"))
        assert check["status"] == "accepted"
    reports = {r["BDMAP ID"]: r for r in csv.DictReader((out / "reports.csv").open(encoding="utf-8"))}
    assert all(reports[c]["narrative report"] == (out / c / "narrative.txt").read_text(encoding="utf-8") for c in CASES)

    # Resumed: reports and narratives are kept, nothing is asked again.
    with Server(narrative_reply(out)) as server:
        again = run_batch(root, out, workers=1, llm=_llm(server), handle_signals=False)
        assert server.requests == []
    assert {(r["status"], r["narrative"]) for r in again.rows} == {("skipped", "kept")}

    # An endpoint that always fails: every case is still ok, with its report; the narrative says why.
    out2 = tmp_path / "out2"
    with Server(["x"], fail_first=10_000) as server:
        result = run_batch(root, out2, workers=2, llm=_llm(server), handle_signals=False)
    assert result.exit_code == 0
    for row in result.rows:
        assert row["status"] == "ok" and row["narrative"] == "fallback", row
        case_out = out2 / row["case_id"]
        # The fallback: narrative.txt holds the structured report; the check says why.
        text = (case_out / "narrative.txt").read_text(encoding="utf-8")
        assert text.startswith("NOTE: no LLM narrative") and text.endswith((case_out / "report.txt").read_text())
        check = json.loads((case_out / "narrative_check.json").read_text(encoding="utf-8"))
        assert check["status"] == "fallback" and check["reason"] == "llm_error"


# --------------------------------------------------------------------------- segmentation stage (stand-in)


def test_segmentation_stage_wiring_local(root, tmp_path):
    # A stand-in segmenter copies a case's masks (the wiring alone; the real model is tested below).
    from batch_helpers import CopySegmenter

    cts = tmp_path / "cts"
    for case_id in CASES[:2]:
        (cts / case_id).mkdir(parents=True)
        shutil.copy(root / case_id / "ct.nii.gz", cts / case_id / "ct.nii.gz")
    log = tmp_path / "log"
    out = tmp_path / "out"
    seg = CopySegmenter(root / CASES[0], log)
    # Without a segmenter a CT-only folder is a failed case naming the missing folder.
    plain = run_batch(cts, tmp_path / "plain", workers=1, handle_signals=False)
    assert all(r["status"] == "failed" and "segmentations" in r["error"] for r in plain.rows)
    result = run_batch(cts, out, workers=2, segmenter=seg, handle_signals=False)
    assert result.exit_code == 0 and all(r["status"] == "ok" and "segmented" in r["note"] for r in result.rows)
    assert len(list(log.glob("segment-*"))) == 2
    got = json.loads((out / CASES[0] / "findings.json").read_text(encoding="utf-8"))
    ref = run_batch(root, tmp_path / "ref", workers=1, ids=CASES[:1], handle_signals=False)
    assert ref.exit_code == 0
    want = json.loads((tmp_path / "ref" / CASES[0] / "findings.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in got.items() if k != "provenance"} == {k: v for k, v in want.items() if k != "provenance"}
    # Resumed: the segmented folder holds this CT already; nothing is segmented again.
    again = run_batch(cts, out, workers=1, segmenter=seg, handle_signals=False)
    assert {r["status"] for r in again.rows} == {"skipped"} and len(list(log.glob("segment-*"))) == 2


def test_progress_bar_shows_rate_and_eta():
    stream = io.StringIO()
    bar = Progress(stream, bar=True)
    bar.t0 -= 60.0  # a minute in
    bar(30, 120, {"case_id": "c", "status": "ok", "seconds": 1.0, "error": "", "note": ""})
    assert "30/120 30.0 cases/min ETA 03:00" in stream.getvalue()
    bar(31, 120, {"case_id": "BDMAP_1", "status": "failed", "seconds": 1.0, "error": "x: bad", "note": ""})
    assert "[31/120] BDMAP_1 failed 1.0 s: x: bad" in stream.getvalue()  # failures get their own line
    plain = io.StringIO()
    Progress(plain, bar=False)(1, 2, {"case_id": "c", "status": "ok", "seconds": 0.5, "error": "", "note": ""})
    assert plain.getvalue() == "[1/2] c ok 0.5 s\n"


def test_batch_segments_ct_only_folders_with_the_real_tiny_model(tmp_path):
    """``radgpt batch --seg-model``: CT-only case folders go through the real nnU-Net stage
    (in the batch worker, models loaded once per worker), then the report; a resumed run
    keeps both; a model folder that does not exist fails every case with one line."""
    import contextlib

    from segment_helpers import TINY_MODEL, needs_model, small_fov_ct

    from RadGPTLogic.cli import main

    if needs_model.args[0]:
        pytest.skip(needs_model.kwargs["reason"])
    cts = tmp_path / "cts"
    for n in range(2):
        small_fov_ct(cts / f"CASE_{n}" / "ct.nii.gz", seed=n)
    args = ["batch", str(cts), "--out", str(tmp_path / "out"), "--workers", "1", "--seg-model", str(TINY_MODEL),
            "--seg-device", "cpu"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "batch_summary.json").read_text(encoding="utf-8"))
    rows = summary["cases"] if isinstance(summary, dict) and "cases" in summary else summary
    assert [r["status"] for r in rows] == ["ok", "ok"] and all("segmented" in r["note"] for r in rows)
    for n in range(2):
        case = tmp_path / "out" / "segmented" / f"CASE_{n}"
        record = json.loads((case / "segmentation.json").read_text(encoding="utf-8"))
        assert record["models"][0]["name"] == "Dataset987_RadGPTTinyPhantom"
        findings = json.loads((tmp_path / "out" / f"CASE_{n}" / "findings.json").read_text(encoding="utf-8"))
        # the CT is a box cut around the liver: the segmented liver reaches its edge (HU measured, volume not)
        assert findings["organs"]["liver"]["complete"] is False and findings["organs"]["liver"]["mean_hu"] > 30
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(args) == 0
    again = json.loads((tmp_path / "out" / "batch_summary.json").read_text(encoding="utf-8"))
    rows = again["cases"] if isinstance(again, dict) and "cases" in again else again
    assert {r["status"] for r in rows} == {"skipped"}
    err = io.StringIO()
    missing = tmp_path / "no_such_model"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["batch", str(cts), "--out", str(tmp_path / "out2"), "--workers", "1", "--seg-model", str(missing)])
    assert rc == 1 and str(missing) in err.getvalue()


def test_case_processes_run_blas_on_one_thread(root, tmp_path):
    """Parallelism comes from the case processes: in each, every BLAS library (numpy's, and
    scipy's own, loaded after the process started) runs one thread, or two case processes
    would fight over the cores with spinning BLAS threads."""
    pytest.importorskip("threadpoolctl")
    work = tmp_path / "root"
    shutil.copytree(root, work)
    result = run_batch(work, tmp_path / "out", workers=2, runner=thread_recording_runner, handle_signals=False)
    assert {r["status"] for r in result.rows} == {"ok"}
    records = thread_records(work)
    assert len(records) == len(result.rows) and len({r["pid"] for r in records}) == 2
    for record in records:
        if not record["blas"]:
            pytest.skip("numpy and scipy use no BLAS library that threadpoolctl knows")
        assert {threads for _, _, threads in record["blas"]} == {1}, record
        assert record["env"]["OPENBLAS_NUM_THREADS"] == "1"
