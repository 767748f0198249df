"""The panel's narrative: the core's checked LLM narrative, run off the GUI thread.

Only text and numbers leave the machine (the findings and the structured report, as
``radgpt narrative`` sends them); never images.  The job writes the current
findings and report to a temporary output folder and calls
:func:`RadGPTLogic.report.narrative.write_narrative`, which checks every fact and
falls back to the structured report when the model keeps getting facts wrong.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ShownNarrative:
    text: str
    check_text: str
    accepted: bool


def check_text(result) -> str:
    """One line beside the narrative: accepted, or fallback with the checker's reasons."""
    if result.ok:
        return f"Fact check passed (attempt {result.accepted_attempt}, model {result.model})."
    problems = (result.check or {}).get("errors") or (result.check or {}).get("problems") or []
    reasons = "; ".join(str(p.get("message", p)) if isinstance(p, dict) else str(p) for p in problems[:3])
    return (f"Fact check failed after {len(result.attempts)} attempt(s); the structured report is shown instead"
            + (f" ({reasons})." if reasons else "."))


def narrative_job(findings: dict, settings: dict):
    """The job function ``fn(context)`` for :class:`RadGPTSlicerLib.jobs.JobRunner`."""
    from RadGPTLogic.report.structured import render_text

    findings = json.loads(json.dumps(findings))  # the job owns its copy
    structured = render_text(findings)

    def run(context):
        from RadGPTLogic.errors import InputError
        from RadGPTLogic.llm.client import load_config
        from RadGPTLogic.report.narrative import write_narrative

        config = load_config(base_url=settings.get("endpoint") or None, model=settings.get("model") or None)
        if config is None:
            raise InputError(None, "no language-model endpoint set (Narrative section or RADGPT_LLM_BASE_URL)")
        context.check()
        with tempfile.TemporaryDirectory(prefix="radgpt_narrative_") as tmp:
            out = Path(tmp)
            (out / "findings.json").write_text(json.dumps(findings), encoding="utf-8")
            (out / "report.txt").write_text(structured, encoding="utf-8")
            result = write_narrative(out, config, examples=settings.get("examples") or None)
        context.check()  # cancelled while waiting for the model: the answer is dropped
        return ShownNarrative(result.narrative, check_text(result), result.ok)

    return run
