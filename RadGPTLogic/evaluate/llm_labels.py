"""Tumour labels from report text by an LLM (any OpenAI-compatible endpoint).

The model answers one strict JSON object per report, with the same definitions as
the rule extractor (:mod:`.labels`)::

    {"liver": {"tumor": "yes|no|uncertain", "largest_mm": number|null},
     "pancreas": {...}, "kidney": {...}}

Parsing is lenient about packaging and strict about content: the JSON may sit in a
code fence or inside other text (the first JSON object holding the three organs is
used); "tumor" accepts yes/no/uncertain (also true/false, 1/0, "u", "unknown",
"indeterminate", "possible"); "largest_mm" accepts a number, a numeric string or a
size with units ("3.1 x 2.2 cm" -> 31).  A missing organ, an unknown tumour value or a
negative size is invalid.  An invalid answer gets exactly one retry in the same
conversation, asking for valid JSON; if that fails too, the report's labels are
``None`` with the reason.  An endpoint that gives no answer at all (after the
client's own retries) also yields ``None`` with the error.  Requests go out through
:func:`RadGPTLogic.llm.client.chat_many`, at most ``max_concurrency`` in flight.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from . import ORGANS

SYSTEM_PROMPT = (
    "You label radiology reports for a research evaluation. You read one abdominal CT report and answer "
    "with a single JSON object, nothing else."
)

USER_PROMPT = """Read the CT report below. For each of three organs - liver, pancreas and kidney (either kidney) - \
decide whether the report describes a tumour in that organ now, and give the size of the largest one.

Definitions:
- A tumour is any focal lesion of the organ: mass, lesion, tumour, nodule, cyst (cysts count as tumours), \
neoplasm, metastasis, carcinoma (HCC, PDAC, RCC and the like), PNET, IPMN, hemangioma, adenoma, or a \
hypodensity/hyperdensity, unless the report itself explains it as something else (focal fat, perfusion \
anomaly, abscess, hematoma, scar).
- Not tumours: steatosis, cirrhosis, hydronephrosis, stones or calculi, pancreatitis, pseudocyst, atrophy, \
organ enlargement, polycystic kidney disease.
- "yes": the report states a tumour in that organ.
- "no": the report negates it ("no focal lesion", "without mass", "cyst ruled out"), calls the organ normal or \
unremarkable, does not mention the organ, or mentions a tumour only as history (resected, status post).
- "uncertain": only when the report itself is uncertain whether there is a tumour there ("indeterminate", \
"too small to characterize", "possible", "cannot exclude", "may represent", "questionable").
- "largest_mm": the largest dimension of the largest tumour of that organ, as measured in this report, in \
millimetres (convert centimetres: "3.1 x 2.2 cm" -> 31). Ignore earlier measurements, volumes and the size of \
the organ itself. Use null when the report gives no size or when "tumor" is "no".

Answer with this JSON object only (no code fence, no comments):
{{"liver": {{"tumor": "yes|no|uncertain", "largest_mm": number or null}}, \
"pancreas": {{"tumor": "yes|no|uncertain", "largest_mm": number or null}}, \
"kidney": {{"tumor": "yes|no|uncertain", "largest_mm": number or null}}}}

Report:
<<<
{report}
>>>"""

RETRY_PROMPT = ("Your answer could not be used ({reason}). Reply again with only the JSON object in exactly the "
                "format asked: the keys liver, pancreas and kidney, each with \"tumor\" (yes, no or uncertain) and "
                "\"largest_mm\" (a number or null). No other text.")

_TUMOR_WORDS = {
    "yes": "yes", "y": "yes", "true": "yes", "1": "yes", "present": "yes", "positive": "yes",
    "no": "no", "n": "no", "false": "no", "0": "no", "absent": "no", "negative": "no", "none": "no",
    "uncertain": "uncertain", "u": "uncertain", "unknown": "uncertain", "unsure": "uncertain",
    "indeterminate": "uncertain", "possible": "uncertain", "equivocal": "uncertain", "maybe": "uncertain",
}
_ORGAN_KEYS = {"liver": "liver", "hepatic": "liver", "pancreas": "pancreas", "pancreatic": "pancreas",
               "kidney": "kidney", "kidneys": "kidney", "renal": "kidney"}


# The answer is one small JSON object (about 60 tokens); a runaway answer stops here.
LABEL_MAX_TOKENS = 256


@dataclass
class LLMLabelResult:
    """One report's outcome: ``labels`` or ``None`` with ``reason``; ``raw`` = the last answer."""

    labels: dict | None
    reason: str | None = None
    raw: str | None = None
    tries: int = 0


def build_messages(report: str) -> list:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PROMPT.format(report=(report or "").strip())}]


def _candidates(text: str):
    """JSON objects found in ``text``: fenced blocks first, then every '{' that decodes."""
    fences = re.findall(r"```(?:json|JSON)?\s*(.*?)```", text, re.S)
    for block in fences:
        try:
            yield json.loads(block)
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        yield obj


def _tumor(value, organ):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and value in (0, 1):
        return "yes" if value == 1 else "no"
    if isinstance(value, str) and value.strip().lower() in _TUMOR_WORDS:
        return _TUMOR_WORDS[value.strip().lower()]
    raise ValueError(f"{organ}.tumor is {json.dumps(value)}, not yes/no/uncertain")


def _size(value, organ):
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none", "n/a", "na")):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{organ}.largest_mm is {json.dumps(value)}, not a number")
    if isinstance(value, (int, float)):
        mm = float(value)
    elif isinstance(value, str):
        from .labels import parse_size_mm

        mm = parse_size_mm(value)
        if mm is None:
            raise ValueError(f"{organ}.largest_mm is {json.dumps(value)}, not a number")
    else:
        raise ValueError(f"{organ}.largest_mm is {json.dumps(value)}, not a number")
    if mm != mm or mm < 0 or mm > 2000:
        raise ValueError(f"{organ}.largest_mm is {value}, not a plausible size in mm")
    return round(mm, 1)


def _validate(obj) -> dict:
    if not isinstance(obj, dict):
        raise ValueError("the answer is not a JSON object")
    by_organ = {}
    for key, value in obj.items():
        organ = _ORGAN_KEYS.get(str(key).strip().lower())
        if organ:
            by_organ[organ] = value
    missing = [o for o in ORGANS if o not in by_organ]
    if missing:
        raise ValueError(f"missing organ(s) {', '.join(missing)}")
    labels = {}
    for organ in ORGANS:
        entry = by_organ[organ]
        if isinstance(entry, (str, bool)):  # {"liver": "yes"}: accepted, no size
            entry = {"tumor": entry}
        if not isinstance(entry, dict):
            raise ValueError(f"{organ} is not an object with tumor and largest_mm")
        low = {str(k).strip().lower(): v for k, v in entry.items()}
        tumor_key = next((k for k in ("tumor", "tumour", "tumor_present", "presence") if k in low), None)
        if tumor_key is None:
            raise ValueError(f"{organ} has no \"tumor\" field")
        tumor = _tumor(low[tumor_key], organ)
        size = _size(low.get("largest_mm", low.get("largest_size_mm")), organ)
        labels[organ] = {"tumor": tumor, "largest_mm": None if tumor == "no" else size}
    return labels


def parse_llm_labels(text) -> tuple:
    """``(labels, None)`` from an answer text, or ``(None, reason)`` when it holds no valid answer."""
    if not isinstance(text, str) or not text.strip():
        return None, "empty answer"
    first_error = None
    found = False
    for obj in _candidates(text):
        found = True
        try:
            return _validate(obj), None
        except ValueError as exc:
            first_error = first_error or str(exc)
    if not found:
        return None, "no JSON object in the answer"
    return None, first_error


def llm_extract_labels(config, reports: list, max_concurrency: int | None = None) -> list:
    """An :class:`LLMLabelResult` per report text, in order (one format retry per report)."""
    from ..llm.client import chat_many

    reports = list(reports)
    if not reports:
        return []
    conversations = [build_messages(r) for r in reports]
    results: list = [None] * len(reports)
    retry = []
    for i, answer in enumerate(chat_many(config, conversations, max_concurrency=max_concurrency,
                                          max_tokens=LABEL_MAX_TOKENS)):
        if isinstance(answer, Exception):
            results[i] = LLMLabelResult(None, f"LLM error: {answer}", None, 1)
            continue
        labels, reason = parse_llm_labels(answer)
        if labels is not None:
            results[i] = LLMLabelResult(labels, None, answer, 1)
        else:
            retry.append(i)
            results[i] = LLMLabelResult(None, reason, answer, 1)
    if retry:
        followups = [conversations[i] + [{"role": "assistant", "content": results[i].raw},
                                         {"role": "user", "content": RETRY_PROMPT.format(reason=results[i].reason)}]
                     for i in retry]
        for i, answer in zip(retry, chat_many(config, followups, max_concurrency=max_concurrency,
                                                        max_tokens=LABEL_MAX_TOKENS)):
            first = results[i].reason
            if isinstance(answer, Exception):
                results[i] = LLMLabelResult(None, f"invalid answer ({first}); retry failed: LLM error: {answer}",
                                            results[i].raw, 2)
                continue
            labels, reason = parse_llm_labels(answer)
            if labels is not None:
                results[i] = LLMLabelResult(labels, None, answer, 2)
            else:
                results[i] = LLMLabelResult(None, f"invalid answer twice ({first}; then {reason})", answer, 2)
    return results
