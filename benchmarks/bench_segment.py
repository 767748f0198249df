"""Benchmark: the segmentation stage with the tiny model on the full-size phantom (issue 9, point 8).

The CT is the full-size phantom (512 x 512 x 300 voxels of 0.75 x 0.75 x 1 mm, default
lesions), written as NIfTI.  ``radgpt segment`` runs it through the runner (a separate
worker process, as the CLI and the Slicer module do) with the committed tiny model.

Measured per device (``cpu``; ``cuda`` too when this machine has a GPU):

* **wall**: the whole command (process start, torch/nnunetv2 import, model load, CT
  read, preprocessing, sliding window, resampling back, writing the case folder);
* **model**: nnunetv2's part alone (``segmentation.json`` -> ``models[0].seconds``);
* **peak RSS** of the worker process (``ru_maxrss`` of the finished child), goal < 8 GB
  on the CPU so that a laptop can run it;
* **peak GPU memory** (``torch.cuda.max_memory_allocated`` inside the worker, recorded in
  ``segmentation.json`` as ``models[0].peak_gpu_mib``) when on a GPU.

Usage::

    python benchmarks/bench_segment.py [--work benchmarks/_work/segment] [--device cpu] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL = REPO / "Testing" / "models" / "Dataset987_RadGPTTinyPhantom" / "nnUNetTrainer__nnUNetPlans__3d_tiny"

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from RadGPTLogic.segment.runner import SegmentationRunner
ct, out, device, model = sys.argv[2:6]
runner = SegmentationRunner([model], device=device)
started = time.monotonic()
runner.start(ct, out)
final = runner.wait()
wall = time.monotonic() - started
runner.returncode
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
print(json.dumps({"final": final.kind, "message": final.message, "wall_s": wall, "worker_peak_rss_mb": peak}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(HERE / "_work" / "segment"))
    parser.add_argument("--device", action="append", help="cpu (default) and/or cuda")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import nibabel as nib

    from RadGPTLogic.phantom import build_phantom

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ct = work / "full.nii.gz"
    if not ct.is_file():
        phantom = build_phantom(size="full")
        nib.save(nib.Nifti1Image(phantom.ct, phantom.affine), str(ct))
        del phantom
    rows = []
    for device in args.device or ["cpu"]:
        out = work / f"case_{device.replace(':', '_')}"
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(ct), str(out), device, str(MODEL)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        record = json.loads((out / "segmentation.json").read_text(encoding="utf-8"))
        row.update(device=device, model_s=record["models"][0]["seconds"], command_s=time.monotonic() - started,
                   peak_gpu_mib=record["models"][0].get("peak_gpu_mib"),
                   structures=len(record["structures"]))
        rows.append(row)
        print(json.dumps(row))
    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "rows": rows}
    (work / "results.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
