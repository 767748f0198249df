"""Benchmark: `radgpt report` on a full-size phantom against the NIfTI-loading floor.

Case: the synthetic abdomen at 512 x 512 x 300 voxels, 0.75 x 0.75 x 1.0 mm, all
structures and five lesions, the pancreatic one touching the SMV and the common
hepatic artery (RadGPTLogic.phantom, size="full", lesions=staging_lesions()).

Measured in one run, each in a fresh process (interpreter start-up included in both):

* **floor**: a plain Python process that only loads the same NIfTI files with nibabel
  (``np.asanyarray(nib.load(f).dataobj)`` for the CT and every mask);
* **report**: ``radgpt report CASE --out OUT --phase venous``.

Wall time is the median of ``--repeat`` runs; peak RSS is the child's ``ru_maxrss``.
Goals: report <= 2 x floor, peak RSS <= 1.5 GB (issue 2); anatomy and staging add at
most 0.5 s (issue 3).

Usage::

    python benchmarks/bench_report.py [--repeat 3] [--work benchmarks/_work] [--write-results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

FLOOR_CODE = r"""
import resource, sys
from pathlib import Path
import numpy as np, nibabel as nib
case = Path(sys.argv[1])
files = [case / "ct.nii.gz"] + sorted((case / "segmentations").glob("*.nii.gz"))
total = 0
for f in files:
    total += np.asanyarray(nib.load(str(f)).dataobj).size
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, total, file=sys.stderr)
"""

REPORT_CODE = r"""
import resource, sys
from RadGPTLogic.io.casefolder import load_case
from RadGPTLogic.cli import main
rc = main(["report", sys.argv[1], "--out", sys.argv[2], "--phase", "venous"])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(rc)
"""


BREAKDOWN_CODE = r"""
import cProfile, json, pstats, sys, time
from RadGPTLogic.io.casefolder import load_case
from RadGPTLogic.engine import Engine
case = load_case(sys.argv[1])
prof = cProfile.Profile()
t0 = time.perf_counter()
prof.enable()
Engine(case, "venous").compute()
prof.disable()
total = time.perf_counter() - t0
stats = pstats.Stats(prof).stats
def cum(name):
    return sum(v[3] for k, v in stats.items() if k[2] == name and k[0].endswith("engine.py"))
anatomy = sum(cum(n) for n in ("_anatomy_context", "_liver_location", "_kidney_location",
                               "_pancreas_location_and_stage"))
print(json.dumps({"compute_s": round(total, 3), "anatomy_staging_s": round(anatomy, 3)}))
"""


def _timed(args: list) -> tuple[float, int]:
    """Run a child process; return (wall seconds, peak RSS in MB from its last stderr line)."""
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed: {proc.stderr}")
    rss_kb = int(proc.stderr.strip().splitlines()[-1].split()[0])
    return wall, rss_kb // 1024


def make_case(work: Path) -> Path:
    case = work / "PHANTOM_FULL_STAGED"
    if (case / "segmentations").is_dir():
        return case
    # Built in a child process: Linux children inherit the parent's peak-RSS mark,
    # which would then show in every measured child's ru_maxrss.
    code = (
        "import sys; from RadGPTLogic.phantom import build_phantom, staging_lesions, write_case; "
        "write_case(build_phantom(size='full', lesions=staging_lesions()), sys.argv[1], case_id=sys.argv[2])"
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(work), case.name], check=True, cwd=REPO)
    print(f"built full-size phantom in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return case


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {numpy.__version__}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=HERE / "_work")
    ap.add_argument("--write-results", action="store_true", help="append a row to benchmarks/RESULTS.md")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    case = make_case(args.work)
    n_files = 1 + len(list((case / "segmentations").glob("*.nii.gz")))
    size_mb = sum(f.stat().st_size for f in case.rglob("*.nii.gz")) / 2**20

    floors, reports, floor_rss, report_rss = [], [], [], []
    for _ in range(args.repeat):
        w, r = _timed([sys.executable, "-c", FLOOR_CODE, str(case)])
        floors.append(w)
        floor_rss.append(r)
        with tempfile.TemporaryDirectory() as tmp:
            w, r = _timed([sys.executable, "-c", REPORT_CODE, str(case), str(Path(tmp) / "out")])
        reports.append(w)
        report_rss.append(r)
    proc = subprocess.run([sys.executable, "-c", BREAKDOWN_CODE, str(case)], capture_output=True, text=True,
                          cwd=REPO, check=True)
    breakdown = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {
        "case": "phantom full 512x512x300 @0.75x0.75x1.0 mm, 5 lesions, staged PDAC",
        "files": n_files,
        "files_mb": round(size_mb, 1),
        "floor_s": round(statistics.median(floors), 2),
        "report_s": round(statistics.median(reports), 2),
        "ratio": round(statistics.median(reports) / statistics.median(floors), 2),
        "floor_peak_rss_mb": max(floor_rss),
        "report_peak_rss_mb": max(report_rss),
        # Engine.compute alone (cProfile on, so slightly pessimistic) and the part of it
        # spent on anatomy and staging (first call: includes their imports).
        "compute_s": breakdown["compute_s"],
        "anatomy_staging_s": breakdown["anatomy_staging_s"],
        "machine": machine(),
        "repeat": args.repeat,
    }
    print(json.dumps(result, indent=2))
    if args.write_results:
        row = (
            f"| {time.strftime('%Y-%m-%d')} | {result['floor_s']} | {result['report_s']} | {result['ratio']} | "
            f"{result['report_peak_rss_mb']} | {result['floor_peak_rss_mb']} | {result['compute_s']} | "
            f"{result['anatomy_staging_s']} | {result['machine']} |\n"
        )
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
