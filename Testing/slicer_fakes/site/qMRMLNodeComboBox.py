"""Custom-widget module for PyQt5's .ui loader (it imports the header name, `qMRMLNodeComboBox.h`)."""

from slicer.widgets import qMRMLNodeComboBox  # noqa: F401
