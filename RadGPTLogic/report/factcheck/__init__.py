"""Fact check of a free-text report (an LLM narrative) against findings.json.

Deterministic, rule based, no LLM.  The narrative is read sentence by sentence:

* lesion mentions (lesion nouns that are not negated, and size expressions such
  as ``3.1 x 2.2 cm``), each with its organ, size, location (Couinaud segment,
  pancreatic part, kidney side and pole), kind and attenuation words;
* every number with a unit (mm, cm, mL/cc/cm3/L/mm3, HU, degrees, %), counts of
  lesions ("two liver lesions") and image numbers;
* T stage, N/M stage, resectability category, vessel contact statements;
* organ statements (enlarged / normal size, steatosis / fatty infiltration);
* findings the engine never makes (metastasis, lymph nodes, ascites, duct
  dilatation, thrombosis, specific diagnoses ...).

Each mention is matched to the findings' lesions (size first, then side,
location, kind), and the result is compared with findings.json.  Negation
("no focal lesion", "without", "not enlarged", "is not seen") and hedging
("possible steatosis") are understood at clause level.  See
:data:`ERROR_KINDS` for what counts as an error and :func:`number_matches` for
the rounding tolerances.

Modules, in the order data flows: :mod:`.vocabulary` (words and patterns), :mod:`.text`
(normalising, sentences, negation), :mod:`.numbers`, :mod:`.mentions` (lesion mentions and their
matching), :mod:`.notes` (enhanced mode) and :mod:`.checker` (the check).

``check_narrative(text, findings)`` returns a JSON-serialisable
:class:`CheckResult`.  With ``notes`` (a radiologist's free text, enhanced
mode), additions that the notes support are not errors: they are listed in
``from_notes``.
"""

from __future__ import annotations

from .checker import ERROR_KINDS, CheckResult, ErrorKind, check_narrative, fact_checklist, lesion_location_text
from .mentions import describe_text, find_mentions, find_segments, match_mentions
from .numbers import extract_numbers, number_matches
from .text import normalise

__all__ = [
    "ERROR_KINDS", "CheckResult", "ErrorKind", "check_narrative", "describe_text", "extract_numbers",
    "fact_checklist", "find_mentions", "find_segments", "lesion_location_text", "match_mentions", "normalise",
    "number_matches",
]
