"""Enhanced mode: merge a radiologist's free-text notes into the reports, losing no fact.

``radgpt enhance OUT_DIR --notes FILE`` asks the LLM to place each item of the
notes into the right organ section of the structured report (and of the accepted
narrative, when ``narrative.txt`` holds one), creating sections where needed and
updating the impression.  Each merged report is checked with
:func:`~RadGPTLogic.report.factcheck.check_narrative` against findings.json, with
the notes as a second source: every fact of the findings must still be there
(dropped or changed facts are errors), and additions the notes support are
allowed and listed under ``from_notes``.  A failed check is sent back with the
errors (at most ``max_tries`` tries, each prompt fitted to the model's context
window, see :mod:`RadGPTLogic.llm.checked`); if it still fails, or the LLM fails in
any way, the original report is kept with the notes appended verbatim and the
check file says why.

Writes, atomically: ``report_enhanced.txt`` (structured report + notes),
``narrative_enhanced.txt`` (only when an accepted narrative exists) and
``report_enhanced_check.json`` (every attempt, errors, from-notes additions,
status, model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..llm.checked import error_lines
from .factcheck import check_narrative, extract_numbers, normalise
from .narrative import NO_ENDPOINT, SYSTEM_PROMPT, read_out_dir

MERGE_RULES = "\n".join([
    "Rules:",
    "1. Remove nothing: every sentence, number, location, stage and category of the REPORT must still be there, "
    "with its numbers and units exactly as written.",
    "2. Put each item of the NOTES into the section of the organ it concerns (for example cirrhosis under the "
    "liver, a lymph node under lymph nodes); create a new section, with a heading in the report's style, for an "
    "organ the report does not cover. Patient age and sex, if given, go at the top.",
    "3. Add only what the NOTES say, in the radiologist's terms, keeping any uncertainty the notes express. Do not "
    "add filler such as \"not specified\".",
    "4. Update the IMPRESSION with the clinically important content of the notes.",
    "5. Keep the report's layout, headings and wording otherwise unchanged.",
    "6. Answer with the merged report only, between a line \"#start\" and a line \"#end\".",
])

FAILED_MERGE = ("RADIOLOGIST NOTES (added verbatim: the automatic merge failed the fact check after "
                "{tries} attempt(s)):")
NO_MERGE = "RADIOLOGIST NOTES (added verbatim: no automatic merge, {why}):"


@dataclass
class EnhanceResult:
    out_dir: str
    case_id: str
    statuses: dict        # report name -> "accepted" / "fallback"
    files: list           # written file names
    model: str
    record: dict          # what report_enhanced_check.json holds
    reasons: dict = field(default_factory=dict)  # report name -> fallback reason (None when accepted)

    @property
    def ok(self) -> bool:
        return all(s == "accepted" for s in self.statuses.values())


def merge_messages(report: str, notes: str, kind: str, errors: list | None = None) -> list:
    """The merge prompt; on a retry it lists the errors of the previous answer (never the answer)."""
    what = "structured report" if kind == "structured" else "narrative report"
    lines = [f"Merge the RADIOLOGIST NOTES into the {what} below (the REPORT).", "", MERGE_RULES, "",
             "REPORT:", report.strip(), "", "RADIOLOGIST NOTES:", notes.strip(), ""]
    if errors:
        lines += ["Your previous merged report failed the automatic fact check against the findings:",
                  *error_lines(errors), "Write the whole merged report again with these errors corrected.", ""]
    text = "\n".join(lines + ["Now write the merged report between #start and #end."])
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def notes_coverage(merged: str, notes: str) -> list:
    """Warnings for numbers of the notes that the merged report does not repeat."""
    have = {(round(n.value, 4), n.unit.lower()) for n in extract_numbers(normalise(merged))[0]}
    out = []
    for n in extract_numbers(normalise(notes))[0]:
        if (round(n.value, 4), n.unit.lower()) not in have:
            out.append(f"note item '{n.text.strip()}' does not appear in the merged report")
    return out


def read_notes(path) -> str:
    """The notes text from a file ('-' reads standard input)."""
    if str(path) == "-":
        import sys

        text = sys.stdin.read()
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(p, "notes file not found")
        try:
            text = p.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(p, f"cannot read the notes as UTF-8 text ({exc})") from None
    if not text.strip():
        raise InputError(path, "notes are empty")
    return text


def _accepted_narrative(out: Path) -> str | None:
    """narrative.txt when narrative_check.json says the LLM narrative was accepted."""
    check, narrative = out / "narrative_check.json", out / "narrative.txt"
    if not (check.is_file() and narrative.is_file()):
        return None
    try:
        status = json.loads(check.read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError):
        return None
    return narrative.read_text(encoding="utf-8") if status == "accepted" else None


def enhance_report(out_dir, notes: str, config, max_tries: int = 3,
                   max_concurrency: int | None = None) -> EnhanceResult:
    """Merge ``notes`` into OUT_DIR's structured report (and accepted narrative); see the module doc.

    Always writes the files: on any failure the notes are appended verbatim."""
    from ..io.atomic import write_files_atomically
    from ..llm.checked import CheckedJob, prepare, run_checked
    from ..llm.client import LLMError

    if config is None:
        raise InputError(None, NO_ENDPOINT)
    if not notes or not notes.strip():
        raise InputError(None, "notes are empty")
    out = Path(out_dir)
    findings, structured = read_out_dir(out)
    narrative = _accepted_narrative(out)
    sources = {"structured": structured}
    if narrative is not None:
        sources["narrative"] = narrative
    def variants_for(text: str, kind: str):
        return lambda errors: [merge_messages(text, notes, kind, errors)]

    jobs = {
        kind: CheckedJob(variants_for(text, kind), check=lambda t: check_narrative(t, findings, notes=notes),
                         answer_basis=text + notes)
        for kind, text in sources.items()
    }
    budget = None
    try:
        config, budget = prepare(config)
    except LLMError as exc:
        for job in jobs.values():
            job.finish("llm_error", str(exc))
    if budget is not None:
        run_checked(config, list(jobs.values()), budget, max_tries, max_concurrency)
    names = {"structured": "report_enhanced.txt", "narrative": "narrative_enhanced.txt"}
    files, record = {}, {
        "case_id": findings.get("case_id"), "model": config.model, "max_tries": max_tries,
        "context": budget.to_dict() if budget is not None else None, "notes": notes, "reports": {},
    }
    statuses, reasons = {}, {}
    for kind, job in jobs.items():
        if job.accepted is not None:
            text = job.accepted
            coverage = notes_coverage(text, notes)
        else:
            if job.reason == "fact_check_failed":
                header = FAILED_MERGE.format(tries=len(job.attempts))
            else:
                header = NO_MERGE.format(why=f"{job.reason}: {job.reason_detail}")
            text = sources[kind].rstrip() + "\n\n" + header + "\n" + notes.strip() + "\n"
            coverage = []
        final = job.accepted_check or job.last_check
        files[names[kind]] = text
        statuses[kind], reasons[kind] = job.status, job.reason
        record["reports"][kind] = {
            "file": names[kind],
            "status": job.status,
            "reason": job.reason,
            "reason_detail": job.reason_detail,
            "accepted_attempt": job.attempts[-1]["attempt"] if job.accepted is not None else None,
            "attempts": job.attempts,
            "from_notes": final.from_notes if final else [],
            "notes_not_merged": coverage,
            "final": final.to_dict() if final else None,
        }
    files["report_enhanced_check.json"] = json.dumps(record, indent=2) + "\n"
    write_files_atomically(out, files)
    return EnhanceResult(out_dir=str(out), case_id=findings.get("case_id"), statuses=statuses,
                         files=sorted(files), model=config.model, record=record, reasons=reasons)


__all__ = ["EnhanceResult", "enhance_report", "merge_messages", "notes_coverage", "read_notes"]
