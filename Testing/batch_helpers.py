"""Helpers for the batch tests that must be importable by worker processes (case processes,
Dask workers started as separate processes): stand-in runners and segmenters.

Behaviour comes from ``behaviour.json`` in the folder that holds the case folders
(``{"<case_id>": {"sleep": seconds, "first_attempt_only": true}}``), so that a cluster
started before the test reads what the test asks for.  Every call leaves a marker
``marks/<case_id>-<pid>`` holding ``"pid ppid"``: the test finds the processes there.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path


def _behaviour(case_dir) -> dict:
    path = Path(case_dir).parent / "behaviour.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(Path(case_dir).name, {})
    except (OSError, ValueError):
        return {}


def alive(pid: int) -> bool:
    """Is the process ``pid`` running (a zombie counts as ended)?"""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def marks(root: Path, case_id: str | None = None) -> list:
    """``(case_id, pid, ppid)`` of every marker under ``root/marks``."""
    out = []
    folder = Path(root) / "marks"
    for path in sorted(folder.glob("*")) if folder.is_dir() else ():
        cid, _, _ = path.name.rpartition("-")
        try:
            pid, ppid = (int(x) for x in path.read_text(encoding="utf-8").split())
        except ValueError:
            continue  # being written
        if case_id is None or cid == case_id:
            out.append((cid, pid, ppid))
    return out


def marking_runner(case_dir, out_dir, **kw):
    """``run_report``, after leaving a marker and sleeping as ``behaviour.json`` says."""
    case_dir = Path(case_dir)
    folder = case_dir.parent / "marks"
    folder.mkdir(exist_ok=True)
    earlier = list(folder.glob(f"{case_dir.name}-*"))
    tmp = folder / f".{case_dir.name}-{os.getpid()}"
    tmp.write_text(f"{os.getpid()} {os.getppid()}")
    tmp.rename(folder / f"{case_dir.name}-{os.getpid()}")
    behaviour = _behaviour(case_dir)
    if behaviour.get("sleep") and not (behaviour.get("first_attempt_only") and earlier):
        time.sleep(float(behaviour["sleep"]))
    from RadGPTLogic.pipeline import run_report

    return run_report(case_dir, out_dir, **kw)


def thread_recording_runner(case_dir, out_dir, **kw):
    """``run_report``, then ``threads/<case_id>.json`` beside the case folders: the thread count of
    every BLAS library loaded in this process (scipy's own OpenBLAS loaded by then) and the
    malloc variables of its environment."""
    from threadpoolctl import threadpool_info

    from RadGPTLogic.pipeline import run_report

    data = run_report(case_dir, out_dir, **kw)
    import scipy.linalg  # noqa: F401 - loads scipy's BLAS if the case did not

    record = {"pid": os.getpid(),
              "blas": [(lib.get("internal_api"), lib.get("filepath"), lib.get("num_threads"))
                       for lib in threadpool_info() if lib.get("user_api") == "blas"],
              "env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k.endswith("_NUM_THREADS")}}
    folder = Path(case_dir).parent / "threads"
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{Path(case_dir).name}.{os.getpid()}"
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.rename(folder / f"{Path(case_dir).name}.json")
    return data


def thread_records(root) -> list:
    """What :func:`thread_recording_runner` recorded for every case under ``root``."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((Path(root) / "threads").glob("*.json"))]


class CopySegmenter:
    """A stand-in segmentation stage: "segments" a CT by copying the masks of a reference case.

    ``setup()`` leaves ``<log>/setup-<pid>`` (once per process that set it up) and every
    ``segment()`` leaves ``<log>/segment-<case>-<pid>``, so a test can tell where each ran.
    """

    def __init__(self, masks_from, log_dir, resources=None):
        self.masks_from = str(masks_from)
        self.log_dir = str(log_dir)
        self.resources = dict(resources or {})

    def __repr__(self) -> str:
        return f"CopySegmenter({self.masks_from!r}, {self.log_dir!r})"

    def setup(self) -> None:
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.log_dir) / f"setup-{os.getpid()}").write_text("")

    def segment(self, ct_path, out_case_dir) -> None:
        from RadGPTLogic.io.atomic import publish

        files = {Path(ct_path).name: Path(ct_path).read_bytes()}
        for mask in sorted((Path(self.masks_from) / "segmentations").iterdir()):
            files[f"segmentations/{mask.name}"] = mask.read_bytes()
        publish(out_case_dir, files)
        case = Path(out_case_dir).name
        (Path(self.log_dir) / f"segment-{case}-{os.getpid()}").write_text("")


def copy_case(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)


def scripted_server_class():
    """The project's local OpenAI-compatible test server (``Testing/llm_server.py``)."""
    from llm_server import ScriptedLLMServer

    return ScriptedLLMServer


def narrative_reply(out: Path):
    """A scripted LLM answer: the case's own structured report (named in the prompt), minus the
    "not assessable" steatosis sentences that the fact checker reads as claims, between #start/#end."""
    import re

    def reply(body: dict) -> str:
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
        case_id = re.findall(r"case (BDMAP_\d+)", text)[-1]
        report = (Path(out) / case_id / "report.txt").read_text(encoding="utf-8")
        report = re.sub(r" (Steatosis|Fatty pancreas) not assessable[^.]*\.", "", report)
        return f"#start\n{report}\n#end\n"

    return reply
