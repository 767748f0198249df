"""Live-update benchmark of the Slicer panel on the full-size phantom (Qt harness, fake Slicer).

The phantom (512 x 512 x 300, 29 masks) is loaded as one shared-layer segmentation
(Couinaud segments on their own layers), Compute runs, then lesion strokes are
painted through the embedded editor (overwrite-all).  Measured on a real Qt event
loop: stroke -> panel refreshed (table and report swapped in), and the longest gap
between 2 ms heartbeat timer ticks on the GUI thread during the updates (the
longest the GUI was blocked).  Goals: median <= 300 ms, longest gap <= 50 ms.

    python benchmarks/bench_live_update.py [--strokes 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strokes", type=int, default=7)
    ap.add_argument("--size", default="full")
    args = ap.parse_args(argv)

    import slicer_fakes as harness

    harness.install()
    harness.reset()
    from PyQt5 import QtCore

    import slicer
    from RadGPTLogic.phantom import build_phantom

    p = build_phantom(size=args.size)
    couinaud = tuple(f"liver_segment_{n}" for n in range(1, 9))
    volume = harness.add_volume(p.ct, p.affine)
    seg = harness.add_segmentation(volume, p.masks, shared=True, separate=couinaud)
    module, widget = harness.open_panel()
    t0 = time.perf_counter()
    widget.ui.computeButton.click()
    assert harness.wait_until(lambda: widget._findings is not None, 600)
    compute_s = time.perf_counter() - t0

    gaps, last = [], [time.perf_counter()]

    def beat():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    heartbeat = QtCore.QTimer()
    heartbeat.setInterval(2)
    heartbeat.timeout.connect(beat)

    segmentation = seg.GetSegmentation()
    lesion_id = segmentation.GetSegmentIdBySegmentName("liver_lesion")
    centre = np.argwhere(segmentation.fake_segment_mask(lesion_id)).mean(axis=0).astype(int)  # k, j, i
    shape = segmentation.fake_grid[0]
    latencies = []
    harness.wait_until(lambda: False, 0.2)
    for n in range(args.strokes):
        modifier = np.zeros(shape, bool)
        k, j, i = centre + np.array([0, 0, 4 + n])
        modifier[k - 1:k + 2, j - 3:j + 4, i - 3:i + 4] = True  # a 7-voxel brush dab
        widget.editor.setCurrentSegmentID(lesion_id)
        updates = widget.controller.updates
        last[0] = time.perf_counter()
        heartbeat.start()
        start = time.perf_counter()
        widget.editor.fake_stroke(modifier)
        assert harness.wait_until(lambda: widget.controller.updates > updates and not widget.controller.busy, 120)
        latencies.append(time.perf_counter() - start)
        heartbeat.stop()
        harness.wait_until(lambda: False, 0.2)
    assert slicer.util.COSTS["full_exports"] == 0
    median = statistics.median(latencies)
    print(f"compute (background, incl. snapshot) {compute_s:.2f} s")
    print(f"stroke -> panel refreshed: median {median * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
          f"over {len(latencies)} strokes")
    print(f"GUI thread longest gap between 2 ms heartbeats: {max(gaps) * 1000:.0f} ms")
    print(f"GUI snapshot copy: median {statistics.median(widget.controller.snapshot_times) * 1000:.0f} ms")
    widget.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
