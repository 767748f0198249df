"""Custom-widget module for PyQt5's .ui loader (it imports the header name, `qMRMLSegmentEditorWidget.h`)."""

from slicer.widgets import qMRMLSegmentEditorWidget  # noqa: F401
