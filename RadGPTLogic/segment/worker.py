"""The segmentation process: ``python -m RadGPTLogic.segment.worker`` (started by :mod:`.runner`).

Protocol: one JSON object on stdin::

    {"models": [...], "device": "auto", "folds": null, "mirroring": null, "tile_step": 0.5,
     "label_map": null, "jobs": [["CT path", "case folder"], ...]}

and events on stdout, one JSON object per line (the fields of
:class:`~.runner.RunnerEvent`): ``progress`` (stage ``load`` / ``predict`` /
``write``, model, fold, done, total, ``case`` = job index), ``log``, ``case_done``
(one per job, ``result`` = its case folder), then exactly one final ``done`` or
``error``.  Anything else the libraries print goes to stderr (file descriptor 1 is
pointed at 2 before nnunetv2 is imported), so stdout carries only events.

Exit status: 0 done; 1 after ``done`` when some CTs of several failed (each
said in a ``case_error`` event); 2 bad input (CT, model folder, labels, device); 3 out of
memory; 1 anything else.  The models are loaded once for all jobs.
"""

from __future__ import annotations

import json
import os
import sys

EXIT_INPUT, EXIT_OOM, EXIT_INTERNAL, EXIT_SOME_FAILED = 2, 3, 1, 1


def out_of_memory_advice(device: str) -> str:
    return (f"out of memory on {device} during segmentation: use --device cpu"
            if str(device).startswith("cuda") else
            f"out of memory on {device} during segmentation: close other programs") + \
        " or use fewer folds (--folds), or a larger --tile-step"


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or torch's CPU allocator failing."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "can't allocate memory" in text)


def main() -> int:
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # library prints go to stderr; stdout is the event stream
    sys.stdout = sys.stderr

    def emit(kind: str, **fields) -> None:
        events.write(json.dumps({"kind": kind, **fields}) + "\n")

    device = "?"
    try:
        spec = json.loads(sys.stdin.read())
        device = spec.get("device", "auto")
        from ..errors import InputError
    except Exception as exc:  # noqa: BLE001 - a broken spec is the runner's bug, said in one line
        emit("error", message=f"segmentation worker: bad job description ({exc})")
        return EXIT_INTERNAL
    try:
        from .stage import Segmenter

        segmenter = Segmenter(spec["models"], device=device, folds=spec.get("folds"),
                              mirroring=spec.get("mirroring"), tile_step=float(spec.get("tile_step", 0.5)),
                              label_map=spec.get("label_map"), events=emit)
        device = segmenter.device
        jobs = spec["jobs"]
        failed = 0
        for n, (ct_path, out_dir) in enumerate(jobs):
            def case_emit(kind: str, _n=n, **fields) -> None:
                emit(kind, case=_n, **fields)

            segmenter.events = case_emit
            try:
                result = segmenter.segment(ct_path, out_dir)
            except InputError as exc:
                if len(jobs) == 1:
                    raise
                failed += 1  # one bad CT of many: say so and go on with the others
                emit("case_error", case=n, message=exc.one_line())
                continue
            emit("case_done", case=n, result=str(result), message=f"{ct_path}: segmented into {result}")
        summary = f"segmented {len(jobs) - failed} of {len(jobs)} CT(s)" + (f"; {failed} failed" if failed else "")
        emit("done", result=str(jobs[-1][1]) if len(jobs) == 1 else "", message=summary)
        return EXIT_SOME_FAILED if failed else 0
    except InputError as exc:
        emit("error", message=exc.one_line())
        return EXIT_INPUT
    except BaseException as exc:  # noqa: BLE001 - every failure is one line for the user
        if is_out_of_memory(exc):
            emit("error", message=out_of_memory_advice(device))
            return EXIT_OOM
        if isinstance(exc, KeyboardInterrupt):
            emit("error", message="segmentation interrupted")
            return EXIT_INTERNAL
        import traceback

        traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        emit("error", message=f"internal error in segmentation: {type(exc).__name__}: {first}")
        return EXIT_INTERNAL
    finally:
        events.flush()


if __name__ == "__main__":
    sys.exit(main())
