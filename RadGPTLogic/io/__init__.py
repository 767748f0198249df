"""Readers and writers: NIfTI, Slicer .seg.nrrd, multi-label importers, atomic output."""
