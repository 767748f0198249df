"""Evaluation of reports: per-organ tumour labels from report text, and detection metrics.

* :mod:`.labels`: a deterministic, negation-aware rule extractor (no LLM, no network).
* :mod:`.llm_labels`: the same labels from an OpenAI-compatible LLM (optional).
* :mod:`.metrics`: sensitivity, specificity and PPV with Wilson 95 % intervals, per organ
  and per ground-truth size stratum; CSV and Markdown output.
* :mod:`.evaluate_cli`: ``radgpt evaluate`` (``register(subparsers)``).

Labels everywhere have one shape (``None`` when a report could not be labelled)::

    {"liver": {"tumor": "yes" | "no" | "uncertain", "largest_mm": float | None},
     "pancreas": {...}, "kidney": {...}}

Importing this package is cheap: nothing here imports ``openai`` until the LLM
extractor actually runs.
"""

ORGANS = ("liver", "pancreas", "kidney")
TUMOR_VALUES = ("yes", "no", "uncertain")
