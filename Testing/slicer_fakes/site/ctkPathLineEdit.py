"""Custom-widget module for PyQt5's .ui loader (it imports the header name, `ctkPathLineEdit.h`)."""

from slicer.widgets import ctkPathLineEdit  # noqa: F401
