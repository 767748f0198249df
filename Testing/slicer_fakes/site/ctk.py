"""Fake ``ctk``: the CTK widgets the RadGPT .ui uses, as PyQt5 widgets."""

from slicer.widgets import ctkCollapsibleButton  # noqa: F401
