"""Fake ``vtk.util.numpy_support``: the fakes' data arrays hold numpy arrays already."""

from __future__ import annotations


def vtk_to_numpy(vtk_array):
    """A flat numpy *view* of the array's memory, as VTK returns it (no copy)."""
    return vtk_array.numpy_view()
