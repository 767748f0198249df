"""Custom-widget module for PyQt5's .ui loader (it imports the header name, `qMRMLWidget.h`)."""

from slicer.widgets import qMRMLWidget  # noqa: F401
