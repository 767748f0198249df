"""Fake ``vtk.util`` (only ``numpy_support``)."""
