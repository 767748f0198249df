"""``radgpt batch --executor dask`` on a real cluster: a ``dask scheduler`` and two ``dask worker``
processes started as separate processes on 127.0.0.1 (not an in-process mock).

Checks: the same bytes as the local executor; a worker killed mid-case loses nothing;
a per-case timeout ends that case only; a scheduler that goes away ends the batch with
every unfinished case marked and resumable; Ctrl-C cancels cleanly; stages as tasks
(segmentation on the GPU-resource worker, set up once per worker; narratives limited
cluster-wide).  Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from batch_helpers import (  # noqa: E402
    CopySegmenter,
    alive,
    marking_runner,
    marks,
    thread_recording_runner,
    thread_records,
)
from distributed import Client  # noqa: E402

from RadGPTLogic.dataset.batch import run_batch  # noqa: E402
from RadGPTLogic.phantom import build_phantom, default_lesions, write_case  # noqa: E402

TESTING = Path(__file__).resolve().parent
REPO = TESTING.parent
SPACING = (4.0, 4.0, 5.0)
CASES = [f"BDMAP_0000030{i}" for i in range(1, 7)]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTING), str(REPO)]),
                DASK_DISTRIBUTED__WORKER__DAEMON="True")


class Cluster:
    """``dask scheduler`` + ``dask worker`` processes on 127.0.0.1; stopped at exit."""

    def __init__(self, folder: Path, workers=(("w1", None), ("w2", None))):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.file = folder / "scheduler.json"
        self.logs = []
        self.scheduler = self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                                   "--scheduler-file", str(self.file), "--no-dashboard"])
        deadline = time.monotonic() + 60
        while not self.file.is_file():
            assert time.monotonic() < deadline and self.scheduler.poll() is None, self.log("scheduler")
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text(encoding="utf-8"))["address"]
        self.workers = {}
        for name, resources in workers:
            args = ["worker", "--scheduler-file", str(self.file), "--host", "127.0.0.1", "--nthreads", "1",
                    "--nworkers", "1", "--name", name, "--no-dashboard", "--death-timeout", "30"]
            if resources:
                args += ["--resources", resources]
            self.workers[name] = self._start(name, args)
        self.wait_for_workers(len(workers))

    def _start(self, name, args):
        log = open(self.folder / f"{name}.log", "w")
        self.logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "dask", *args], env=_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, name) -> str:
        return (self.folder / f"{name}.log").read_text(encoding="utf-8")[-3000:]

    def wait_for_workers(self, n: int, timeout: float = 90) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(n, timeout=timeout)

    def worker_pids(self) -> dict:
        """Dask worker process pid (the nanny's child) -> worker name."""
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
            return {pid: names[addr] for addr, pid in client.run(os.getpid).items()}

    def stop(self) -> None:
        for proc in list(self.workers.values()) + [self.scheduler]:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            proc.wait(10)
        for log in self.logs:
            log.close()


def _write_root(root: Path, n: int = len(CASES)) -> Path:
    lesions = default_lesions()
    specs = [lesions, lesions[:2], [], [lesions[2]], lesions[3:], lesions[:1]]
    for seed, case_id in enumerate(CASES[:n]):
        write_case(build_phantom(size="small", spacing=SPACING, seed=seed, lesions=specs[seed]), root,
                   case_id=case_id)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return _write_root(tmp_path_factory.mktemp("dask") / "root")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


def _copy_root(root: Path, tmp_path: Path, behaviour: dict | None = None) -> Path:
    dst = tmp_path / "root"
    shutil.copytree(root, dst)
    if behaviour:
        (dst / "behaviour.json").write_text(json.dumps(behaviour))
    return dst


def _status(result) -> dict:
    return {r["case_id"]: r for r in result.rows}


def _kill_marked(root: Path) -> None:
    for _, pid, _ in marks(root):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- same answers


def test_dask_gives_the_bytes_of_the_local_executor(root, cluster, tmp_path):
    local = run_batch(root, tmp_path / "local", workers=2, handle_signals=False)
    dask = run_batch(root, tmp_path / "dask", executor="dask", scheduler=cluster.address, handle_signals=False)
    assert local.exit_code == dask.exit_code == 0
    assert {r["status"] for r in dask.rows} == {"ok"}
    workers_used = {r["worker"] for r in dask.rows}
    assert len(workers_used) == 2  # both worker processes' case processes ran cases
    for case_id in CASES:
        for name in ("findings.json", "report.txt", "report.md", "report.html"):
            assert (tmp_path / "dask" / case_id / name).read_bytes() == \
                (tmp_path / "local" / case_id / name).read_bytes(), (case_id, name)
    assert (tmp_path / "dask" / "reports.csv").read_bytes() == (tmp_path / "local" / "reports.csv").read_bytes()
    summary = json.loads((tmp_path / "dask" / "batch_summary.json").read_text(encoding="utf-8"))
    assert summary["options"]["executor"] == "dask" and summary["options"]["scheduler"] == cluster.address
    # Resume works across executors: everything is up to date for the local one.
    again = run_batch(root, tmp_path / "dask", workers=1, handle_signals=False)
    assert {r["status"] for r in again.rows} == {"skipped"}


def test_case_processes_on_dask_workers_keep_glibcs_malloc_defaults(root, cluster, tmp_path):
    """Dask's nanny gives its workers a 64 KiB malloc trim threshold; the case processes they
    start must not inherit it (a small case took 82 ms instead of 66 with it) and run BLAS
    on one thread."""
    pytest.importorskip("threadpoolctl")
    work = _copy_root(root, tmp_path)
    with Client(cluster.address, timeout=30) as client:
        nanny_env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    result = run_batch(work, tmp_path / "out", executor="dask", scheduler=cluster.address,
                       runner=thread_recording_runner, handle_signals=False)
    assert {r["status"] for r in result.rows} == {"ok"}
    records = thread_records(work)
    assert len(records) == len(CASES)
    if set(nanny_env.values()) == {None}:
        pytest.skip("this Dask version's nanny sets no malloc trim threshold")  # nothing to keep out
    for record in records:
        assert "MALLOC_TRIM_THRESHOLD_" not in record["env"], record
        assert {threads for _, _, threads in record["blas"]} <= {1}, record


# --------------------------------------------------------------------------- faults


def test_worker_killed_mid_case_loses_nothing(root, cluster, tmp_path):
    slow = CASES[0]
    root2 = _copy_root(root, tmp_path, {slow: {"sleep": 30, "first_attempt_only": True}})
    pids = cluster.worker_pids()
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=run_batch(
        root2, tmp_path / "out", executor="dask", scheduler=cluster.address, runner=marking_runner,
        handle_signals=False)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not marks(root2, slow):
            assert time.monotonic() < deadline, "the slow case never started"
            time.sleep(0.1)
        (_, case_pid, worker_pid), = marks(root2, slow)
        assert worker_pid in pids  # the case process is a child of a Dask worker process
        os.kill(worker_pid, signal.SIGKILL)
        thread.join(120)
        assert not thread.is_alive(), "batch did not finish"
    finally:
        _kill_marked(root2)
    result = box["result"]
    status = _status(result)
    assert status[slow]["status"] == "ok" and result.exit_code == 0, status[slow]
    attempts = marks(root2, slow)
    assert len(attempts) == 2  # retried once, by a live worker
    deadline = time.monotonic() + 10
    while alive(case_pid):  # the killed worker's case process followed it
        assert time.monotonic() < deadline, "orphaned case process still running"
        time.sleep(0.1)
    cluster.wait_for_workers(2)  # the nanny restarted the worker for the next tests


def test_timeout_ends_that_case_only(root, cluster, tmp_path):
    slow = CASES[1]
    root2 = _copy_root(root, tmp_path, {slow: {"sleep": 60}})
    t0 = time.monotonic()
    try:
        result = run_batch(root2, tmp_path / "out", executor="dask", scheduler=cluster.address, timeout=3,
                           runner=marking_runner, handle_signals=False)
    finally:
        _kill_marked(root2)
    assert time.monotonic() - t0 < 45
    status = _status(result)
    assert status[slow]["status"] == "timeout" and "3 s" in status[slow]["error"]
    assert all(status[c]["status"] == "ok" for c in CASES if c != slow)
    assert not (tmp_path / "out" / slow).exists() and not list((tmp_path / "out").glob(".*"))
    assert not any(alive(pid) for _, pid, _ in marks(root2, slow))  # only its case process was stopped
    assert cluster.worker_pids()  # the Dask workers live on


def test_scheduler_gone_marks_unfinished_cases_resumable(root, tmp_path):
    c = Cluster(tmp_path / "c", workers=(("solo", None),))
    root2 = _copy_root(root, tmp_path, {case: {"sleep": 1.5} for case in CASES})
    killed = []

    def progress(done, total, row):
        if not killed:
            killed.append(row["case_id"])
            os.killpg(c.scheduler.pid, signal.SIGKILL)

    t0 = time.monotonic()
    try:
        result = run_batch(root2, tmp_path / "out", executor="dask", scheduler=c.address, runner=marking_runner,
                           progress=progress, handle_signals=False)
    finally:
        c.stop()
        _kill_marked(root2)
    assert time.monotonic() - t0 < 90
    assert result.lost and "scheduler" in result.lost and result.exit_code == 1
    status = _status(result)
    assert status[killed[0]]["status"] == "ok"
    unfinished = [case for case in CASES if status[case]["status"] != "ok"]
    assert unfinished and all(status[case]["status"] == "cancelled" for case in unfinished)
    assert all("scheduler" in status[case]["error"] and "resumable" in status[case]["error"] for case in unfinished)
    summary = json.loads((tmp_path / "out" / "batch_summary.json").read_text(encoding="utf-8"))
    assert summary["lost"] == result.lost and summary["counts"]["cancelled"] == len(unfinished)
    (root2 / "behaviour.json").unlink()
    again = run_batch(root2, tmp_path / "out", workers=2, handle_signals=False)
    again_status = _status(again)
    assert again.exit_code == 0 and again_status[killed[0]]["status"] == "skipped"
    assert all(again_status[case]["status"] in ("ok", "skipped") for case in unfinished)


CTRL_C_SCRIPT = """
import sys
from batch_helpers import marking_runner
from RadGPTLogic.dataset.batch import run_batch
sys.exit(run_batch(sys.argv[1], sys.argv[2], executor="dask", scheduler=sys.argv[3],
                   runner=marking_runner).exit_code)
"""


def test_ctrl_c_cancels_cleanly(root, cluster, tmp_path):
    root2 = _copy_root(root, tmp_path, {case: {"sleep": 60} for case in CASES})
    batch = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, str(root2), str(tmp_path / "out"),
                              cluster.address], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(marks(root2)) < 2:
            assert time.monotonic() < deadline and batch.poll() is None, batch.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        batch.send_signal(signal.SIGINT)  # first: start nothing new
        time.sleep(0.5)
        batch.send_signal(signal.SIGINT)  # second: cancel the running cases
        assert batch.wait(60) == 130
    finally:
        if batch.poll() is None:
            batch.kill()
        running = marks(root2)
        _kill_marked(root2)
    summary = json.loads((tmp_path / "out" / "batch_summary.json").read_text(encoding="utf-8"))
    assert summary["interrupted"] == "SIGINT" and summary["counts"]["cancelled"] == len(CASES)
    errors = {c["error"] for c in summary["cases"]}
    assert "cancelled while running (batch interrupted)" in errors
    assert not [c for c in CASES if (tmp_path / "out" / c).exists()]
    # The case processes were stopped, not left sleeping.
    deadline = time.monotonic() + 10
    while any(alive(pid) for _, pid, _ in running):
        assert time.monotonic() < deadline
        time.sleep(0.1)


# --------------------------------------------------------------------------- stages as tasks


def test_segmentation_tasks_go_to_the_gpu_worker_and_set_up_once(root, tmp_path):
    c = Cluster(tmp_path / "c", workers=(("cpu", None), ("gpu", "GPU=1")))
    try:
        pids = c.worker_pids()
        ct_only = tmp_path / "cts"
        for case_id in CASES[:4]:  # CT-only folders, "segmented" by copying the masks of the source case
            (ct_only / case_id).mkdir(parents=True)
            shutil.copy(root / case_id / "ct.nii.gz", ct_only / case_id / "ct.nii.gz")
        log = tmp_path / "seglog"
        seg = CopySegmenter(root / CASES[0], log, resources={"GPU": 1})
        result = run_batch(ct_only, tmp_path / "out", executor="dask", scheduler=c.address, segmenter=seg,
                           handle_signals=False)
        status = _status(result)
        assert all(status[case]["status"] == "ok" for case in CASES[:4]), status
        setups = sorted(p.name for p in log.glob("setup-*"))
        segments = sorted(p.name for p in log.glob("segment-*"))
        assert len(segments) == 4 and len(setups) == 1  # the "model" was loaded once, then kept
        gpu_pid = next(pid for pid, name in pids.items() if name == "gpu")
        for name in segments:  # every segmentation ran in a case process of the GPU worker
            with open(f"/proc/{int(name.rsplit('-', 1)[1])}/stat") as fh:
                assert int(fh.read().rsplit(")", 1)[1].split()[1]) == gpu_pid
        # The report equals that of the source case (same CT, same masks).
        got = json.loads((tmp_path / "out" / CASES[0] / "findings.json").read_text(encoding="utf-8"))
        want = run_batch(root, tmp_path / "ref", workers=1, ids=CASES[:1], handle_signals=False)
        assert want.exit_code == 0
        ref = json.loads((tmp_path / "ref" / CASES[0] / "findings.json").read_text(encoding="utf-8"))
        assert {k: v for k, v in got.items() if k != "provenance"} == \
            {k: v for k, v in ref.items() if k != "provenance"}
    finally:
        c.stop()


def test_narratives_are_limited_cluster_wide(root, cluster, tmp_path):
    from batch_helpers import narrative_reply, scripted_server_class

    from RadGPTLogic.llm.client import LLMConfig

    out = tmp_path / "out"
    with scripted_server_class()(narrative_reply(out), delay_s=0.4) as server:
        config = LLMConfig(base_url=server.url, model=server.model, max_retries=0, timeout_s=30)
        result = run_batch(root, out, executor="dask", scheduler=cluster.address, llm=config, llm_concurrency=1,
                           handle_signals=False)
        assert server.max_in_flight == 1  # two workers, one request at a time across the cluster
    assert result.exit_code == 0
    assert all(r["status"] == "ok" and r["narrative"] == "accepted" for r in result.rows), result.rows


def test_cli_joins_a_running_cluster(root, cluster, tmp_path):
    import contextlib
    import io

    from RadGPTLogic.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["batch", str(root), "--out", str(tmp_path / "out"), "--executor", "dask",
                   "--scheduler", cluster.address, "--ids", str(_ids(tmp_path, CASES[:2]))])
    assert rc == 0, err.getvalue()
    assert f"Dask cluster at {cluster.address}" in err.getvalue()
    summary = json.loads((tmp_path / "out" / "batch_summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["ok"] == 2 and summary["options"]["cluster"] == "joined"
    # A scheduler that is not there: one line, exit 2, nothing half-done.
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["batch", str(root), "--out", str(tmp_path / "out2"), "--executor", "dask",
                   "--scheduler", "tcp://127.0.0.1:9"])
    assert rc == 2 and "tcp://127.0.0.1:9" in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1


def _ids(folder: Path, ids) -> Path:
    path = folder / "ids.txt"
    path.write_text("\n".join(ids) + "\n")
    return path
