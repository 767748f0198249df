"""LLM narrative: the structured report rewritten in an institution's style, checked fact by fact.

``radgpt narrative OUT_DIR --examples FILE_OR_DIR`` reads ``OUT_DIR/findings.json``
(and ``report.txt``), picks the few-shot example reports closest to the case's
diagnoses, asks the configured OpenAI-compatible endpoint for a narrative in the
examples' style and layout, and checks the answer against findings.json with
:mod:`.factcheck`.  Every prompt is fitted to the model's context window
(:mod:`RadGPTLogic.llm.budget`: examples are dropped until it fits, then the compact
facts replace the structured report) and every request caps its answer with
``max_tokens`` (twice the structured report's tokens at most).  A failed check is
answered with a fresh prompt that lists the errors, never with the failed answer
itself (at most ``max_tries`` answers; :mod:`RadGPTLogic.llm.checked`).  Whatever
happens (fact check failed, answer cut off or empty, prompt too long, server errors
or timeouts after the client's retries, no server at all), the case ends with its
files written, atomically:

* ``OUT_DIR/narrative.txt``: the accepted narrative, or the structured report under
  a header line saying why no LLM narrative was accepted;
* ``OUT_DIR/narrative_check.json``: ``status`` (``accepted`` / ``fallback``),
  ``reason`` and ``reason_detail`` of a fallback, every try (prompt tokens,
  ``max_tokens``, finish reason, text, errors or the LLM error), the context window
  and how it was learnt, the model and the example reports used.

Example reports come from ``--examples`` (a .txt/.md file with one or several
reports separated by a line ``---``, a folder of such files, or a CSV with a
``report`` column and optional ``name``/``style`` columns) or, by default, from
the package's own set (``RadGPTLogic/report/examples/*.txt``, two institutional
styles: ``sectioned_*`` and ``paragraph_*``).

Few-shot selection is deterministic: every example is labelled by a rule
labeller (:func:`label_report`: organs with lesions and the lesion kinds, PDAC
vascular involvement, steatosis, enlargement, or ``normal``), the case is
labelled from findings.json (:func:`case_labels`), and examples are ranked by
shared labels, then shared organs, then fewest extra/missing labels, then name.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import InputError
from ..findings import FindingsDict
from ..llm.checked import error_lines, extract_report  # noqa: F401 - extract_report: part of this API
from .factcheck import check_narrative, describe_text, fact_checklist

DEFAULT_K = 3
DEFAULT_PACKAGE_STYLE = "sectioned"
EXAMPLE_SUFFIXES = (".txt", ".md", ".csv")
NO_ENDPOINT = ("no LLM endpoint configured: pass --base-url URL (an OpenAI-compatible server, e.g. "
               "http://127.0.0.1:8000/v1), or set RADGPT_LLM_BASE_URL, or put base_url in "
               "~/.config/radgpt/llm.json; the LLM is off by default")
FAILED_HEADER = ("NOTE: the LLM narrative failed the automatic fact check after {tries} attempt(s); "
                 "the structured report below is the report of record.")
# Fallback reasons that say the endpoint failed, not the model's text (exit status 1 of `radgpt narrative`).
ENDPOINT_REASONS = ("llm_error", "context_overflow", "context_too_small")

# =============================================================================
# Example reports
# =============================================================================


@dataclass(frozen=True)
class Example:
    name: str
    text: str
    style: str | None = None
    labels: frozenset = frozenset()


def package_examples_dir() -> Path:
    """The folder holding the shipped example reports."""
    try:
        from importlib.resources import files

        return Path(str(files("RadGPTLogic.report") / "examples"))
    except (ImportError, TypeError):  # pragma: no cover - very old Pythons
        return Path(__file__).with_name("examples")


def _split_reports(text: str) -> list:
    parts = re.split(r"^[ \t]*-{3,}[ \t]*$", text.replace("\r\n", "\n"), flags=re.M)
    return [p.strip() for p in parts if p.strip()]


def _style_of(name: str) -> str | None:
    m = re.match(r"^([A-Za-z]+)_", name)
    return m.group(1).lower() if m else None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "example reports must be UTF-8 text") from None
    except OSError as exc:
        raise InputError(path, f"cannot read example reports ({exc.strerror or exc})") from None


def _examples_from_file(path: Path, package: bool = False) -> list:
    if path.suffix.lower() == ".csv":
        text = _read_text(path)
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as exc:
            raise InputError(path, f"unreadable CSV ({exc})") from None
        if not rows:
            raise InputError(path, "CSV holds no example report")
        columns = {c.strip().lower(): c for c in rows[0].keys() if c}
        col = columns.get("report") or columns.get("narrative report") or columns.get("generated_report")
        if col is None:
            raise InputError(path, f"CSV needs a 'report' column (found: {', '.join(columns) or 'none'})")
        name_col = columns.get("name") or columns.get("id") or columns.get("case")
        style_col = columns.get("style")
        out = []
        for i, row in enumerate(rows, start=1):
            report = (row.get(col) or "").strip()
            if not report:
                continue
            name = (row.get(name_col) or "").strip() if name_col else ""
            style = (row.get(style_col) or "").strip().lower() if style_col else ""
            out.append(Example(name or f"{path.stem}#{i}", report, style or None))
        return out
    reports = _split_reports(_read_text(path))
    style = _style_of(path.stem) if package else None
    if len(reports) == 1:
        return [Example(path.stem, reports[0], style)]
    return [Example(f"{path.stem}#{i}", r, style) for i, r in enumerate(reports, start=1)]


def load_examples(source=None) -> list:
    """Example reports, labelled: from ``source`` (file or folder) or the package's set."""
    package = source is None
    path = package_examples_dir() if package else Path(source)
    if not path.exists():
        raise InputError(path, "example reports not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in EXAMPLE_SUFFIXES)
        if not files:
            raise InputError(path, "folder holds no example report (.txt, .md or .csv)")
        examples = [e for p in files for e in _examples_from_file(p, package)]
    else:
        if path.suffix.lower() not in EXAMPLE_SUFFIXES:
            raise InputError(path, "example reports must be a .txt, .md or .csv file, or a folder of them")
        examples = _examples_from_file(path, package)
    if not examples:
        raise InputError(path, "no example report found (empty file?)")
    names = [e.name for e in examples]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(path, f"duplicate example names: {', '.join(dupes)}")
    return [replace(e, labels=label_report(e.text)) for e in examples]


# =============================================================================
# Labels and selection
# =============================================================================

KIND_LABEL = {"lesion": "tumor", "tumor": "tumor", "cyst": "cyst", "pdac": "pdac", "pnet": "pnet"}


def _labels(lesions, enlarged, steatosis, vascular) -> frozenset:
    labels = set()
    for organ, kind in lesions:
        labels.add(f"{organ}:lesion")
        labels.add(f"{organ}:{kind}")
    if vascular and any(o == "pancreas" for o, _ in lesions):
        labels.add("pancreas:vascular")
    labels |= {f"{o}:enlarged" for o in enlarged}
    labels |= {f"{o}:steatosis" for o in steatosis}
    return frozenset(labels or {"normal"})


def label_report(text: str) -> frozenset:
    """Rule labels of a free-text report, e.g. {'liver:lesion', 'liver:cyst', 'spleen:enlarged'}."""
    d = describe_text(text)
    return _labels(d["lesions"], d["enlarged"], d["steatosis"], d["vascular"])


def case_labels(findings: FindingsDict) -> frozenset:
    """The same labels, from findings.json."""
    lesions = [(les["organ"], KIND_LABEL.get(les.get("kind") or "", "tumor")) for les in findings.get("lesions") or []]
    vascular = any(d for les in findings.get("lesions") or [] for d in (les.get("vessel_contact_deg") or {}).values())
    enlarged, steatosis = set(), set()
    for name, entry in (findings.get("organs") or {}).items():
        organ = "kidney" if name.startswith("kidney") else name
        if entry.get("enlarged") in ("enlarged", "massively_enlarged"):
            enlarged.add(organ)
        if entry.get("steatosis") is True:
            steatosis.add(organ)
    return _labels(lesions, enlarged, steatosis, vascular)


def _organs(labels) -> set:
    return {les.split(":")[0] for les in labels if ":" in les}


def example_rank(example: Example, labels: frozenset) -> tuple:
    """Sort key: most shared labels, most shared organs, fewest extra and missing labels, name."""
    shared = len(example.labels & labels)
    organs = len(_organs(example.labels) & _organs(labels))
    return (-shared, -organs, len(example.labels - labels), len(labels - example.labels), example.name)


def select_examples(examples: list, findings: FindingsDict, k: int = DEFAULT_K) -> list:
    """The ``k`` examples closest to the case's diagnoses (deterministic)."""
    labels = case_labels(findings)
    return sorted(examples, key=lambda e: example_rank(e, labels))[:max(0, k)]


def filter_style(examples: list, style: str | None, package: bool) -> tuple:
    """(examples of the requested style, free-text style note or None).

    A ``style`` that names example styles (``sectioned``, ``paragraph`` or a CSV
    ``style`` value) keeps those examples; any other text is passed to the model as
    a style instruction.  The package's set defaults to the sectioned style, so one
    prompt never mixes two institutions.
    """
    if style is None and package:
        style = DEFAULT_PACKAGE_STYLE
    if not style:
        return examples, None
    kept = [e for e in examples if e.style == style.strip().lower()]
    if kept:
        return kept, None
    return examples, style


# =============================================================================
# Prompt
# =============================================================================

SYSTEM_PROMPT = (
    "You are a careful radiology reporting assistant. You turn a machine-generated structured report of an "
    "abdominal CT into the narrative report a radiologist of a given institution would write. You never change, "
    "add or drop a medical fact."
)

RULES = "\n".join([
    "Rules:",
    "1. Keep every finding of the structured report: each lesion with its size (both diameters), its location "
    "(liver segment; pancreatic head/neck/body/tail; kidney side and pole), every vessel the tumour touches with "
    "abutment (<= 180 degrees) or encasement (> 180 degrees), the T stage, the resectability category, and each "
    "organ's enlargement or steatosis.",
    "2. Copy numbers with their units exactly as the structured report writes them (for example \"3.0 x 2.1 cm\", "
    "\"231 degrees\", \"1582.0 mL\"), each with its own organ or lesion. Do not convert, re-round or recompute a "
    "number, and write no number that is not in the structured report. Volumes and HU values may be left out.",
    "3. Add nothing: no lesion, metastasis, lymph node, ascites, duct dilatation, organ abnormality, diagnosis or "
    "N/M stage that the structured report does not state. Keep uncertain findings uncertain (\"possible steatosis\" "
    "stays possible).",
    "4. Keep all the information about one organ together, in one section or one run of sentences.",
    "5. Write in the style, layout, headings and wording of the example reports of this institution, and always "
    "end with an impression.",
    "6. Answer with the report only, between a line \"#start\" and a line \"#end\".",
])


def build_messages(findings: FindingsDict, structured: str | None, examples: list, style_note: str | None = None,
                   errors: list | None = None) -> list:
    """The chat messages: rules, examples, the structured report (None: the compact facts only) and,
    on a retry, the errors of the previous answer (never the answer itself)."""
    parts = ["Rewrite the STRUCTURED REPORT below as a narrative report in the style of the EXAMPLE REPORTS "
             "from this institution." if structured is not None else
             "Write the narrative report of an abdominal CT from the FACTS below.", "", RULES]
    if style_note:
        parts += ["", f"Style note from the institution: {style_note}"]
    for i, ex in enumerate(examples, start=1):
        parts += ["", f"EXAMPLE REPORT {i}:", ex.text.strip()]
    if structured is not None:
        parts += ["", "STRUCTURED REPORT:", structured.strip()]
    parts += ["", "FACTS THAT MUST APPEAR (sizes as written in the structured report):"]
    parts += [f"- {line.strip()}" if not line.startswith("  ") else f"  - {line.strip()}"
              for line in fact_checklist(findings)]
    if errors:
        parts += ["", "Your previous report failed the automatic fact check against the findings:"]
        parts += error_lines(errors)
        parts += ["Write the whole report again with these errors corrected, following the same rules."]
    parts += ["", "Now write the narrative report between #start and #end."]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(parts)}]


def prompt_variants(findings: FindingsDict, structured: str, examples: list, style_note: str | None = None):
    """``variants(errors)`` for :class:`~RadGPTLogic.llm.checked.CheckedJob`: all examples, then one fewer
    each time down to none, then the compact facts without the structured report."""

    def variants(errors):
        out = [build_messages(findings, structured, examples[:n], style_note, errors)
               for n in range(len(examples), -1, -1)]
        return out + [build_messages(findings, None, [], style_note, errors)]

    return variants


# =============================================================================
# Narrative for one or many output folders
# =============================================================================


@dataclass
class NarrativeResult:
    out_dir: str
    case_id: str
    status: str                  # "accepted" or "fallback"
    reason: str | None           # why it fell back (see RadGPTLogic.llm.checked), None when accepted
    accepted_attempt: int | None
    narrative: str               # what narrative.txt holds
    attempts: list
    model: str | None
    examples: list               # example names chosen (the prompt sent may hold fewer: see the record)
    check: dict | None           # the final check (accepted attempt, else the last one)
    record: dict = field(default_factory=dict)  # what narrative_check.json holds

    @property
    def ok(self) -> bool:
        return self.status == "accepted"

    @property
    def llm_failed(self) -> bool:
        """Fell back because the endpoint failed (not because of the model's text)."""
        return self.reason in ENDPOINT_REASONS


def read_out_dir(out_dir) -> tuple:
    """(findings dict, structured report text) of a ``radgpt report`` output folder."""
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(out, "output folder not found (run `radgpt report CASE --out OUT_DIR` first)")
    path = out / "findings.json"
    if not path.is_file():
        raise InputError(path, "not found (run `radgpt report CASE --out OUT_DIR` first)")
    try:
        findings: FindingsDict = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable findings ({exc})") from None
    if not isinstance(findings, dict) or "lesions" not in findings or "organs" not in findings:
        raise InputError(path, "not a RadGPT findings file (needs 'organs' and 'lesions')")
    report = out / "report.txt"
    if report.is_file():
        structured = report.read_text(encoding="utf-8")
    else:
        from .structured import render_text

        structured = render_text(findings)
    return findings, structured


def fallback_header(reason: str | None, tries: int, detail: str | None = None) -> str:
    """The first line of narrative.txt when the structured report is kept."""
    if reason in (None, "fact_check_failed"):
        return FAILED_HEADER.format(tries=tries)
    why = {"truncated": "the answer was cut off at its length limit",
           "empty_answer": "the model gave an empty answer",
           "context_too_small": "the prompt does not fit the model's context window",
           "context_overflow": "the server refused the prompt as too long",
           "llm_error": "the LLM server gave no answer"}.get(reason, reason)
    return (f"NOTE: no LLM narrative ({why}; {tries} attempt(s)); the structured report below is the report "
            "of record.")


def _fallback_text(structured: str, reason: str | None, tries: int) -> str:
    return fallback_header(reason, tries) + "\n\n" + structured.rstrip() + "\n"


def write_narratives(out_dirs, config, examples=None, style=None, max_tries: int = 3, k: int = DEFAULT_K,
                     max_concurrency: int | None = None) -> list:
    """A :class:`NarrativeResult` per output folder, in order; each folder gets narrative.txt and
    narrative_check.json whatever the LLM does (the structured report is kept on any failure)."""
    from ..io.atomic import write_files_atomically
    from ..llm.checked import CheckedJob, prepare, run_checked
    from ..llm.client import LLMError

    if config is None:
        raise InputError(None, NO_ENDPOINT)
    if max_tries < 1:
        raise InputError(None, f"--max-tries must be at least 1 (got {max_tries})")
    cases = [(Path(d), *read_out_dir(d)) for d in out_dirs]  # all inputs checked before any LLM call
    package = examples is None
    pool, style_note = filter_style(load_examples(examples), style, package)
    jobs, chosen = [], []
    for _out, findings, structured in cases:
        picked = select_examples(pool, findings, k)
        chosen.append(picked)
        jobs.append(CheckedJob(prompt_variants(findings, structured, picked, style_note),
                               check=lambda text, f=findings: check_narrative(text, f), answer_basis=structured))
    budget = None
    try:
        config, budget = prepare(config)
    except LLMError as exc:
        for job in jobs:
            job.finish("llm_error", str(exc))
    if budget is not None:
        run_checked(config, jobs, budget, max_tries, max_concurrency)
    results = []
    for (out, findings, structured), job, picked in zip(cases, jobs, chosen):
        accepted = job.status == "accepted"
        accepted_attempt = job.attempts[-1]["attempt"] if accepted else None
        narrative = job.accepted if job.accepted is not None else \
            _fallback_text(structured, job.reason, len(job.attempts))
        final = job.accepted_check or job.last_check
        sent = None if job.variant_used is None else max(0, len(picked) - job.variant_used)
        record = {
            "case_id": findings.get("case_id"),
            "status": job.status,
            "reason": job.reason,
            "reason_detail": job.reason_detail,
            "narrative_of_record": "llm" if accepted else "structured_report",
            "accepted_attempt": accepted_attempt,
            "tries": len(job.attempts),
            "max_tries": max_tries,
            "model": config.model,
            "context": budget.to_dict() if budget is not None else None,
            "examples": [e.name for e in picked],
            "examples_in_accepted_prompt": None if sent is None else [e.name for e in picked[:sent]],
            "example_labels": {e.name: sorted(e.labels) for e in picked},
            "case_labels": sorted(case_labels(findings)),
            "style_note": style_note,
            "attempts": job.attempts,
            "final": final.to_dict() if final else None,
        }
        write_files_atomically(out, {
            "narrative.txt": narrative,
            "narrative_check.json": json.dumps(record, indent=2) + "\n",
        })
        results.append(NarrativeResult(
            out_dir=str(out), case_id=findings.get("case_id"), status=job.status, reason=job.reason,
            accepted_attempt=accepted_attempt, narrative=narrative, attempts=job.attempts,
            model=config.model, examples=[e.name for e in picked], check=record["final"], record=record,
        ))
    return results


def write_narrative(out_dir, config, examples=None, style=None, max_tries: int = 3,
                    k: int = DEFAULT_K) -> NarrativeResult:
    """Narrative for one ``radgpt report`` output folder (see :func:`write_narratives`); raises
    ``InputError`` for bad input or no endpoint, never for an LLM failure."""
    return write_narratives([out_dir], config, examples=examples, style=style, max_tries=max_tries, k=k)[0]
