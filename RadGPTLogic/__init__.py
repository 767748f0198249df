"""RadGPT core: deterministic findings and reports from abdominal CT masks.

This package never imports 3D Slicer, VTK or Qt, so it runs in plain Python
(command line, batch jobs) and inside Slicer alike.  Heavy optional libraries
(torch, nnunetv2, openai, highdicom) are imported inside the functions that
need them so that ``radgpt report`` starts fast.
"""

__version__ = "0.1.0"
