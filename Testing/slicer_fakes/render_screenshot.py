"""Render the RadGPT panel from the Qt harness to a PNG (the Extensions Index screenshot).

    python Testing/slicer_fakes/render_screenshot.py [OUT.png]   (default: Resources/Screenshot01.png)

The real module widget, built from its ``.ui`` file on PyQt5 (offscreen), after a
Compute on the small phantom and a click on the first lesion: inputs, the findings
table, the report with key images, the editor-mode cue, narrative and export
sections.  Only the Segment Editor itself (Slicer's C++ widget) is a placeholder.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

#: Width of the rendered panel (its height is what its layout needs) and of the saved image (pixels).
PANEL_WIDTH = 640
SAVED_WIDTH = 560


def render(out_path) -> Path:
    import slicer_fakes as harness

    harness.install()
    harness.reset()
    from PyQt5 import QtCore, QtGui

    from RadGPTLogic.phantom import build_phantom

    p = build_phantom(size="small")
    volume = harness.add_volume(p.ct, p.affine, name="CT abdomen")
    harness.add_segmentation(volume, p.masks, shared=True, separate=tuple(f"liver_segment_{n}" for n in range(1, 9)),
                             name="CT abdomen segmentation")
    module, widget = harness.open_panel()
    try:
        widget._parameterNode.phase = "venous"
        widget.ui.computeButton.click()
        if not harness.wait_until(lambda: widget._findings is not None and not widget.controller.busy, 120):
            raise RuntimeError("the panel did not compute the phantom's findings")
        widget.ui.findingsTable.selectRow(0)
        widget.onLesionClicked(0)
        widget.ui.narrativeCollapsibleButton.setCollapsed(False)
        panel = widget.parent
        panel.setFixedWidth(PANEL_WIDTH)
        panel.show()
        harness.wait_until(lambda: False, 0.2)
        height = max(panel.sizeHint().height(), panel.minimumSizeHint().height(), panel.heightForWidth(PANEL_WIDTH))
        panel.setFixedSize(PANEL_WIDTH, height + 40)
        harness.wait_until(lambda: False, 0.3)
        image = panel.grab().toImage()
        if image.width() != SAVED_WIDTH:
            image = image.scaledToWidth(SAVED_WIDTH, QtCore.Qt.SmoothTransformation)
        image = image.convertToFormat(QtGui.QImage.Format_Indexed8, QtCore.Qt.ThresholdDither)  # small PNG
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(out_path), "PNG", 9):
            raise RuntimeError(f"{out_path}: could not write the screenshot")
        return out_path
    finally:
        widget.cleanup()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(HERE.parents[1] / "Resources" / "Screenshot01.png")
    print(render(target))
