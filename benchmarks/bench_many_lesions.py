"""Benchmark: 5,000 small liver lesions through `radgpt report` (issue 7: many lesions stay fast and readable).

Case: a 200 x 200 x 120 grid at 1 mm, a 180 x 180 x 100 mm liver holding 5,000 lesions of
3 x 3 x 3 voxels (27 mm^3, above the 10 mm^3 floor) on a 6 mm lattice, a CT with the liver at
60 HU and the lesions at 20 HU; written as a case folder, then reported by a fresh
``radgpt report`` process (interpreter start-up, loading, findings, all reports, writing).

Goal: under 30 s on 2 cores; report.html stays small (key images only for the largest
lesions of each organ; the rest are listed).

Usage::

    python benchmarks/bench_many_lesions.py [--repeat 3] [--lesions 5000] [--write-results]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from RadGPTLogic.case import Case  # noqa: E402
from RadGPTLogic.io.casefolder import write_case_folder  # noqa: E402


def make_case(folder: Path, n_lesions: int) -> Path:
    grid = (200, 200, 120)
    liver = np.zeros(grid, bool)
    liver[10:190, 10:190, 10:110] = True
    lesion = np.zeros(grid, bool)
    placed = 0
    for i in range(14, 186, 6):
        for j in range(14, 186, 6):
            for k in range(14, 106, 6):
                if placed < n_lesions:
                    lesion[i:i + 3, j:j + 3, k:k + 3] = True
                    placed += 1
    ct = np.where(liver, 60, -100).astype(np.int16)
    ct[lesion] = 20
    case = Case.from_arrays("MANY_LESIONS", np.eye(4), {"liver": liver, "liver_lesion": lesion}, ct=ct)
    return write_case_folder(case, folder / "MANY_LESIONS")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--lesions", type=int, default=5000)
    ap.add_argument("--write-results", action="store_true", help="append a row to benchmarks/RESULTS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        case = make_case(Path(tmp), args.lesions)
        times = []
        for n in range(args.repeat):
            out = Path(tmp) / f"out{n}"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "RadGPTLogic", "report", str(case), "--out", str(out)],
                           check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                           stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        html_mb = (out / "report.html").stat().st_size / 1e6
        findings_mb = (out / "findings.json").stat().st_size / 1e6
        import json

        n_found = len(json.loads((out / "findings.json").read_text())["lesions"])
    median = statistics.median(times)
    print(f"{n_found} lesions: report median {median:.1f} s (runs {', '.join(f'{t:.1f}' for t in times)}); "
          f"report.html {html_mb:.2f} MB, findings.json {findings_mb:.1f} MB")
    if args.write_results:
        row = (f"| {time.strftime('%Y-%m-%d')} | {n_found} | {median:.1f} | {html_mb:.2f} | {findings_mb:.1f} | "
               f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__} |\n")
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
