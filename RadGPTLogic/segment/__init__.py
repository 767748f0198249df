"""Stage I: segmentation of a CT with nnU-Net v2 models into a case folder.

Modules, in the order data flows: ``models`` (results folders, presets),
``labels`` (a model's labels -> RadGPT names), ``device`` (which torch device),
``predict`` (one model on one CT through nnunetv2's predictor), ``compose``
(several models -> one set of masks, with precedence and provenance), ``stage``
(CT in, case folder out: :class:`~.stage.Segmenter`), ``worker`` and ``runner``
(the stage in its own process, with progress, cancel and timeout), ``doctor``
(what this machine can run).  torch and nnunetv2 are imported only inside the
functions that need them.
"""

from .runner import RunnerEvent, SegmentationRunner

__all__ = ["RunnerEvent", "SegmentationRunner"]
