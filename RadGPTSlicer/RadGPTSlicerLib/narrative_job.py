"""The panel's narrative: the core's fact-checked LLM narrative, run off the GUI thread.

Opt-in only.  What leaves the machine is exactly what ``radgpt narrative`` sends: the
structured report text, the list of facts it must keep (sizes, volumes,
attenuation, locations, stages) and the example reports.  Before anything is
sent, the findings are stripped of what could identify the patient or the
machine: the case ID (the CT volume's name, often the patient's) becomes
``case``, and warnings (which may quote node names or file paths) and provenance
(file paths) are dropped.  Never images, masks or the CT.

The job writes those findings and their structured report into a temporary
folder and calls :func:`RadGPTLogic.report.narrative.write_narrative`, which checks
every fact and falls back to the structured report when the model keeps getting
facts wrong.  The result carries the text, one line about the check, and the
files to save beside the reports when the narrative was accepted.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: Shown beside the opt-in box: what is sent, what never is.
WHAT_IS_SENT = (
    "Sent to the endpoint: the structured report text and its measured facts (sizes, volumes, "
    "attenuation, locations, stages) and the example reports. Not sent: images, masks, the CT, "
    "the case or volume name, file paths. Nothing is sent until you press Write narrative."
)
#: Case ID the language model sees.
ANONYMOUS_CASE_ID = "case"


@dataclass
class ShownNarrative:
    text: str
    check_text: str
    accepted: bool
    model: str = ""
    files: dict = field(default_factory=dict)   # narrative.txt, narrative_check.json (accepted only)
    findings: dict = field(default_factory=dict)  # the panel's findings it was written for


def check_text(result) -> str:
    """One line beside the narrative: accepted, or fallback with the checker's reasons."""
    if result.ok:
        return f"Fact check passed (attempt {result.accepted_attempt}, model {result.model})."
    problems = (result.check or {}).get("errors") or (result.check or {}).get("problems") or []
    reasons = "; ".join(str(p.get("message", p)) if isinstance(p, dict) else str(p) for p in problems[:3])
    return (f"Fact check failed after {len(result.attempts)} attempt(s): the structured report is shown "
            f"instead{f' ({reasons})' if reasons else ''}.")


def outgoing_findings(findings: dict) -> dict:
    """The findings as the language model may see them (no case name, warnings or provenance)."""
    data = json.loads(json.dumps(findings))
    data["case_id"] = ANONYMOUS_CASE_ID
    data["warnings"] = []
    data.pop("provenance", None)
    return data


def narrative_job(findings: dict, settings: dict):
    """The job function ``fn(context)`` for :class:`RadGPTSlicerLib.jobs.JobRunner`.

    ``settings``: ``endpoint`` (required: nothing is sent to a server the panel does
    not show), ``model`` and ``examples`` (a file or folder; empty = shipped
    examples).  The API key, when the server needs one, comes from the environment
    (``RADGPT_LLM_API_KEY``) or the radgpt config file, never from Slicer's settings.
    """
    from RadGPTLogic.errors import InputError
    from RadGPTLogic.report.structured import render_text

    endpoint = (settings.get("endpoint") or "").strip()
    if not endpoint:
        raise InputError(None, "no language-model endpoint set (Narrative section)")
    shown_findings = json.loads(json.dumps(findings))
    sent = outgoing_findings(findings)
    structured = render_text(sent)

    def run(context):
        from RadGPTLogic.llm.client import load_config
        from RadGPTLogic.report.narrative import write_narrative

        config = load_config(base_url=endpoint, model=(settings.get("model") or "").strip() or None)
        context.check()
        with tempfile.TemporaryDirectory(prefix="radgpt_narrative_") as tmp:
            out = Path(tmp)
            (out / "findings.json").write_text(json.dumps(sent), encoding="utf-8")
            (out / "report.txt").write_text(structured, encoding="utf-8")
            result = write_narrative(out, config, examples=(settings.get("examples") or "").strip() or None)
            files = {}
            if result.ok:
                files = {name: (out / name).read_text(encoding="utf-8")
                         for name in ("narrative.txt", "narrative_check.json")}
        context.check()  # cancelled while waiting for the model: the answer is dropped
        return ShownNarrative(result.narrative, check_text(result), result.ok, result.model, files, shown_findings)

    return run


def files_for_case(shown: ShownNarrative, case_id: str) -> dict:
    """The accepted narrative's files for a saved case (its record names the saved case ID)."""
    if not shown.accepted or not shown.files:
        return {}
    record = json.loads(shown.files["narrative_check.json"])
    record["case_id"] = case_id
    return {"narrative.txt": shown.files["narrative.txt"],
            "narrative_check.json": json.dumps(record, indent=2) + "\n"}
