"""Benchmark: `radgpt batch` throughput, executor overhead and client memory (issue 13).

Cases: small phantoms (``RadGPTLogic.phantom``, size="small", 4 x 4 x 5 mm voxels,
five lesion mixes), hard-linked copies of five written cases.

Measured, each batch in a fresh process (``--force``: every case recomputed):

* **throughput**: 200 cases with the local executor and 1 worker, 2 workers, and a
  2-worker Dask ``LocalCluster`` (goal: 2 workers >= 1.8 x one);
* **overhead per case**: a runner that does nothing (the case's work is nil), 200 and
  2,000 cases, local 2 workers and Dask 2 workers: wall time per case is what the
  executor itself costs;
* **client memory**: the batch process's peak RSS (``ru_maxrss``) at 200 and 2,000
  no-op cases (goal: flat as the case count grows), with the local pool, with a Dask
  ``LocalCluster`` (its scheduler runs inside the batch process) and with a cluster
  the batch joins (``dask scheduler`` and ``dask worker`` started as their own
  processes, as for a real cluster);
* **ceiling**: what two processes get from this machine at all: two separate
  1-worker batches over the two halves of the cases, started at once (with
  ``OPENBLAS_NUM_THREADS=1``, as the pool's case processes run), timed until both end.

Usage::

    python benchmarks/bench_batch.py [--work benchmarks/_work/batch] [--cases 200] [--many 2000] [--more 6000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

RUN_CODE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[5])
from RadGPTLogic.dataset.batch import run_batch
root, out, executor, workers, _, runner, scheduler = sys.argv[1:8]
kw = {"scheduler": scheduler} if scheduler else {}
if runner == "noop":
    from bench_batch import noop_runner
    kw["runner"] = noop_runner
t0 = time.perf_counter()
result = run_batch(root, out, executor=executor, workers=int(workers), resume=False, tables=False, **kw)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "exit_code": result.exit_code, "counts": result.counts,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def noop_runner(case_dir, out_dir, **kw):
    """A case whose work is nil: the executor's own cost per case remains."""
    return {"case_id": Path(case_dir).name, "lesions": []}


def build_root(root: Path, n: int) -> Path:
    """``n`` case folders: hard links to five phantom cases written once."""
    from RadGPTLogic.phantom import build_phantom, default_lesions, write_case

    if root.is_dir() and len(list(root.iterdir())) == n:
        return root
    shutil.rmtree(root, ignore_errors=True)
    seeds = root.parent / (root.name + "_seeds")
    if not seeds.is_dir():
        lesions = default_lesions()
        for i, les in enumerate([lesions, lesions[:2], [], [lesions[2]], lesions[3:]]):
            write_case(build_phantom(size="small", spacing=(4.0, 4.0, 5.0), seed=i, lesions=les), seeds,
                       case_id=f"SEED_{i}")
    for i in range(n):
        src = seeds / f"SEED_{i % 5}"
        dst = root / f"BDMAP_{i + 1:08d}"
        shutil.copytree(src, dst, copy_function=os.link)
    return root


def _env(extra_env: dict | None = None) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]), **(extra_env or {}))


def _start(root: Path, out: Path, executor: str, workers: int, runner: str = "report",
           extra_env: dict | None = None, scheduler: str = "") -> subprocess.Popen:
    shutil.rmtree(out, ignore_errors=True)
    return subprocess.Popen([sys.executable, "-c", RUN_CODE, str(root), str(out), executor, str(workers), str(HERE),
                             runner, scheduler], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(extra_env))


def _result(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"batch failed: {stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["cases"] = sum(result["counts"].values())
    return result


def run(root: Path, out: Path, executor: str, workers: int, runner: str = "report", scheduler: str = "") -> dict:
    return _result(_start(root, out, executor, workers, runner, scheduler=scheduler))


@contextlib.contextmanager
def joined_cluster(workers: int = 2):
    """A ``dask scheduler`` and ``dask worker --nworkers N --nthreads 1``, each its own process
    on 127.0.0.1, as a user starts a cluster; yields the scheduler's address."""
    import socket

    from distributed import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": _env()}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              **quiet)]
    try:
        procs.append(subprocess.Popen([dask, "worker", address, "--nworkers", str(workers), "--nthreads", "1",
                                       "--no-dashboard"], **quiet))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(30)


def ceiling(root: Path, work: Path) -> float:
    """Seconds for two separate 1-worker batches over the halves of ``root``'s cases, at once."""
    cases = sorted(root.iterdir())
    halves = []
    for i, part in enumerate((cases[: len(cases) // 2], cases[len(cases) // 2:])):
        half = work / f"half_{len(cases)}_{i}"
        if not half.is_dir() or len(list(half.iterdir())) != len(part):
            shutil.rmtree(half, ignore_errors=True)
            half.mkdir(parents=True)
            for case in part:
                (half / case.name).symlink_to(case)
        halves.append(half)
    t0 = time.perf_counter()
    procs = [_start(half, work / f"out_half_{i}", "local", 1, extra_env={"OPENBLAS_NUM_THREADS": "1"})
             for i, half in enumerate(halves)]
    for proc in procs:
        assert _result(proc)["counts"]["ok"] == len(cases) // 2 + (len(cases) % 2) * (proc is procs[1])
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "batch")
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--many", type=int, default=2000)
    ap.add_argument("--more", type=int, nargs="*", default=[], help="further case counts for the no-op rows")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    small = build_root(args.work / f"root_{args.cases}", args.cases)
    many = build_root(args.work / f"root_{args.many}", args.many)
    rows = {}
    for name, executor, workers in (("local-1", "local", 1), ("local-2", "local", 2), ("dask-2", "dask", 2)):
        r = run(small, args.work / "out", executor, workers)
        assert r["counts"]["ok"] == args.cases, r
        rows[name] = r
        print(f"{name}: {args.cases} cases in {r['seconds']:.1f} s = {args.cases / r['seconds']:.2f} cases/s, "
              f"client peak {r['peak_mb']:.0f} MB", flush=True)
    print(f"local 2 workers / 1: {rows['local-1']['seconds'] / rows['local-2']['seconds']:.2f}x; "
          f"dask 2 workers / local 1: {rows['local-1']['seconds'] / rows['dask-2']['seconds']:.2f}x")
    both = ceiling(small, args.work)
    print(f"ceiling: two separate 1-worker batches over halves, at once: {both:.1f} s = "
          f"{args.cases / both:.2f} cases/s, {rows['local-1']['seconds'] / both:.2f}x local 1", flush=True)
    noop = {}
    sizes = [(args.cases, small), (args.many, many)] + [(n, build_root(args.work / f"root_{n}", n)) for n in args.more]

    def noop_run(name: str, executor: str, n: int, root: Path, scheduler: str = "") -> None:
        r = noop[name, n] = run(root, args.work / "out", executor, 2, runner="noop", scheduler=scheduler)
        assert r["counts"]["ok"] == n, r
        print(f"no-op {name} {n} cases: {r['seconds']:.1f} s ({1000 * r['seconds'] / n:.1f} ms per case with "
              f"start-up), client peak {r['peak_mb']:.0f} MB", flush=True)

    configs = (("local-2", "local"), ("dask-2", "dask"), ("dask-joined", "dask"))
    for n, root in sizes:
        noop_run("local-2", "local", n, root)
        noop_run("dask-2", "dask", n, root)
    with joined_cluster(2) as address:  # started only now: its idle processes share the 2 cores
        for n, root in sizes:
            noop_run("dask-joined", "dask", n, root, scheduler=address)
    for name, _ in configs:
        extra = noop[name, args.many]["seconds"] - noop[name, args.cases]["seconds"]
        print(f"{name}: marginal executor cost {1000 * extra / (args.many - args.cases):.1f} ms per case "
              f"(2 workers, start-up excluded); client peak {noop[name, args.cases]['peak_mb']:.0f} MB at "
              f"{args.cases} cases, {noop[name, args.many]['peak_mb']:.0f} MB at {args.many}"
              + "".join(f", {noop[name, n]['peak_mb']:.0f} MB at {n}" for n in args.more))
    return 0


if __name__ == "__main__":
    sys.exit(main())
