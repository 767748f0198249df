"""Worker process of :class:`slicer_fakes.fake_runner.FakeSegmentationRunner` (run as a script).

    python fake_segmenter.py CT OUT_CASE_DIR --behaviour ok|fail|slow|crash --size small

Emits runner events as JSON lines on stdout (progress per stage and per "tile"),
then writes ``OUT_CASE_DIR`` atomically: ``ct.nii.gz``, ``segmentations/<name>.nii.gz``
on the CT's own grid and a ``segmentation.json`` with per-structure provenance and
lesion probabilities.  The masks are the phantom's own (the CT must be the
phantom's CT), written in the CT file's orientation.  ``fail`` ends with a one-line
error event naming the CT; ``slow`` keeps predicting until it is cancelled;
``crash`` dies without an event (the runner reports the last stderr line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path


def emit(kind, **fields) -> None:
    print(json.dumps({"kind": kind, **fields}), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ct")
    ap.add_argument("out")
    ap.add_argument("--behaviour", default="ok")
    ap.add_argument("--size", default="small")
    ap.add_argument("--model", default="default")
    ap.add_argument("--probabilities", default="{}")
    args = ap.parse_args(argv)

    import numpy as np

    from RadGPTLogic.geometry import from_canonical, source_affine
    from RadGPTLogic.io.nifti import read_nifti, source_nifti_gz_bytes
    from RadGPTLogic.phantom import build_phantom

    emit("progress", stage="start", model=args.model, message="starting")
    emit("progress", stage="load", model=args.model, message=f"reading {args.ct}")
    vol = read_nifti(args.ct)
    if args.behaviour == "crash":
        print("RuntimeError: CUDA error: out of memory (fake crash)", file=sys.stderr, flush=True)
        os._exit(3)
    tiles = 8
    for done in range(1, tiles + 1 if args.behaviour != "slow" else 10 ** 6):
        time.sleep(0.03)
        emit("progress", stage="predict", model=args.model, fold="0", done=min(done, tiles), total=tiles)
    if args.behaviour == "fail":
        emit("error", message=f"{args.ct}: the model needs a CT in Hounsfield units (fake failure)")
        return 2

    source = np.asarray(from_canonical(vol.array, vol.ornt))
    affine = source_affine(vol.affine, vol.ornt, source.shape)
    phantom = build_phantom(size=args.size)
    if source.shape != phantom.ct.shape or not np.array_equal(source, phantom.ct):
        emit("error", message=f"{args.ct}: not the RadGPT phantom CT (the fake segmenter knows only phantoms)")
        return 2
    emit("progress", stage="write", model=args.model, message="writing masks")
    out = Path(args.out)
    partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    (partial / "segmentations").mkdir(parents=True)
    (partial / "ct.nii.gz").write_bytes(Path(args.ct).read_bytes())
    probabilities = json.loads(args.probabilities)
    structures = {}
    for label, (name, mask) in enumerate(sorted(phantom.masks.items()), start=1):
        (partial / "segmentations" / f"{name}.nii.gz").write_bytes(
            source_nifti_gz_bytes(np.asarray(mask, np.uint8), affine))
        entry = {"model": args.model, "label": label, "precedence": label}
        if name in probabilities:
            entry["probability"] = probabilities[name]
        structures[name] = entry
    (partial / "segmentation.json").write_text(json.dumps({"structures": structures}, indent=1))
    os.replace(partial, out)
    emit("done", result=str(out), message="segmentation written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
