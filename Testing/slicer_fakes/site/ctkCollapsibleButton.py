"""Custom-widget module for PyQt5's .ui loader (it imports the header name, `ctkCollapsibleButton.h`)."""

from slicer.widgets import ctkCollapsibleButton  # noqa: F401
