"""LLM narrative: the structured report rewritten in an institution's style, checked fact by fact.

``radgpt narrative OUT_DIR --examples FILE_OR_DIR`` reads ``OUT_DIR/findings.json``
(and ``report.txt``), picks the few-shot example reports closest to the case's
diagnoses, asks the configured OpenAI-compatible endpoint for a narrative in the
examples' style and layout, and checks the answer against findings.json with
:mod:`.factcheck`.  A failed check is sent back to the model with the errors
listed (at most ``max_tries`` tries); if every try fails, the structured report
stays the narrative-of-record.  Writes, atomically:

* ``OUT_DIR/narrative.txt``: the accepted narrative, or the structured report under
  a header line saying that the LLM narrative failed the fact check;
* ``OUT_DIR/narrative_check.json``: every attempt (text, errors), the final status,
  the model and the example reports used.

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
from .factcheck import CheckResult, check_narrative, describe_text, fact_checklist

DEFAULT_K = 3
DEFAULT_PACKAGE_STYLE = "sectioned"
EXAMPLE_SUFFIXES = (".txt", ".md", ".csv")
NO_ENDPOINT = ("no LLM endpoint configured: pass --base-url URL (an OpenAI-compatible server, e.g. "
               "http://127.0.0.1:8000/v1), or set RADGPT_LLM_BASE_URL, or put base_url in "
               "~/.config/radgpt/llm.json; the LLM is off by default")
FAILED_HEADER = ("NOTE: the LLM narrative failed the automatic fact check after {tries} attempt(s); "
                 "the structured report below is the report of record.")

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


def case_labels(findings: dict) -> frozenset:
    """The same labels, from findings.json."""
    lesions = [(l["organ"], KIND_LABEL.get(l.get("kind"), "tumor")) for l in findings.get("lesions") or []]
    vascular = any(d for l in findings.get("lesions") or [] for d in (l.get("vessel_contact_deg") or {}).values())
    enlarged, steatosis = set(), set()
    for name, entry in (findings.get("organs") or {}).items():
        organ = "kidney" if name.startswith("kidney") else name
        if entry.get("enlarged") in ("enlarged", "massively_enlarged"):
            enlarged.add(organ)
        if entry.get("steatosis") is True:
            steatosis.add(organ)
    return _labels(lesions, enlarged, steatosis, vascular)


def _organs(labels) -> set:
    return {l.split(":")[0] for l in labels if ":" in l}


def example_rank(example: Example, labels: frozenset) -> tuple:
    """Sort key: most shared labels, most shared organs, fewest extra and missing labels, name."""
    shared = len(example.labels & labels)
    organs = len(_organs(example.labels) & _organs(labels))
    return (-shared, -organs, len(example.labels - labels), len(labels - example.labels), example.name)


def select_examples(examples: list, findings: dict, k: int = DEFAULT_K) -> list:
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

RULES = """Rules:
1. Keep every finding of the structured report: each lesion with its size (both diameters), its location (liver segment; pancreatic head/neck/body/tail; kidney side and pole), every vessel the tumour touches with abutment (<= 180 degrees) or encasement (> 180 degrees), the T stage, the resectability category, and each organ's enlargement or steatosis.
2. Copy numbers with their units exactly as the structured report writes them (for example "3.0 x 2.1 cm", "231 degrees", "1582.0 mL"). Do not convert, re-round or recompute a number, and write no number that is not in the structured report. Volumes and HU values may be left out.
3. Add nothing: no lesion, metastasis, lymph node, ascites, duct dilatation, organ abnormality, diagnosis or N/M stage that the structured report does not state. Keep uncertain findings uncertain ("possible steatosis" stays possible).
4. Keep all the information about one organ together, in one section or one run of sentences.
5. Write in the style, layout, headings and wording of the example reports of this institution, and always end with an impression.
6. Answer with the report only, between a line "#start" and a line "#end"."""


def build_messages(findings: dict, structured: str, examples: list, style_note: str | None = None) -> list:
    """The chat messages for the first try."""
    parts = ["Rewrite the STRUCTURED REPORT below as a narrative report in the style of the EXAMPLE REPORTS "
             "from this institution.", "", RULES]
    if style_note:
        parts += ["", f"Style note from the institution: {style_note}"]
    for i, ex in enumerate(examples, start=1):
        parts += ["", f"EXAMPLE REPORT {i}:", ex.text.strip()]
    parts += ["", "STRUCTURED REPORT:", structured.strip(), "",
              "FACTS THAT MUST APPEAR (sizes as written in the structured report):"]
    parts += [f"- {line.strip()}" if not line.startswith("  ") else f"  - {line.strip()}"
              for line in fact_checklist(findings)]
    parts += ["", "Now write the narrative report between #start and #end."]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(parts)}]


def retry_message(check: CheckResult) -> dict:
    """The follow-up that lists the fact-check errors of the previous answer."""
    lines = ["Your report failed the automatic fact check against the findings:"]
    lines += [f"- {e['kind']}: {e['detail']}" for e in check.errors]
    lines += ["", "Write the whole report again with these errors corrected, following the same rules and "
              "the same style. Answer between #start and #end."]
    return {"role": "user", "content": "\n".join(lines)}


def extract_report(reply: str) -> str:
    """The text between '#start' and '#end' (or the whole answer without code fences)."""
    text = reply.replace("\r\n", "\n")
    m = re.search(r"#\s*start\s*\n?(.*?)(?:\n\s*#\s*end\b|$)", text, flags=re.S | re.I)
    if m:
        text = m.group(1)
    text = re.sub(r"^\s*```[\w-]*\s*\n|\n\s*```\s*$", "", text.strip())
    return text.strip() + "\n"


# =============================================================================
# The checked conversation loop (shared with enhance.py)
# =============================================================================


@dataclass
class CheckedJob:
    """One conversation whose answers must pass ``check(text) -> CheckResult``."""

    messages: list
    check: object
    attempts: list = field(default_factory=list)
    accepted: str | None = None
    accepted_check: CheckResult | None = None
    last_check: CheckResult | None = None
    error: Exception | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "llm_error"
        return "accepted" if self.accepted is not None else "fallback"


def run_checked(config, jobs: list, max_tries: int = 3, max_concurrency: int | None = None) -> list:
    """Ask, check, re-ask with the errors listed, for all jobs at once (bounded concurrency).

    Each round sends every job still open through :func:`chat_many`; a job closes when
    an answer passes its check, when ``max_tries`` answers failed, or on an LLM error.
    """
    from ..llm.client import chat_many

    if max_tries < 1:
        raise InputError(None, f"--max-tries must be at least 1 (got {max_tries})")
    open_jobs = list(jobs)
    for attempt in range(1, max_tries + 1):
        if not open_jobs:
            break
        replies = chat_many(config, [j.messages for j in open_jobs], max_concurrency=max_concurrency)
        still = []
        for job, reply in zip(open_jobs, replies):
            if isinstance(reply, Exception):
                job.error = reply
                continue
            text = extract_report(reply)
            check = job.check(text)
            job.last_check = check
            job.attempts.append({"attempt": attempt, "text": text, "ok": check.ok, "errors": check.errors,
                                 "warnings": check.warnings, "from_notes": check.from_notes})
            if check.ok:
                job.accepted, job.accepted_check = text, check
            elif attempt < max_tries:
                job.messages = job.messages + [{"role": "assistant", "content": reply}, retry_message(check)]
                still.append(job)
        open_jobs = still
    return jobs


# =============================================================================
# Narrative for one or many output folders
# =============================================================================


@dataclass
class NarrativeResult:
    out_dir: str
    case_id: str
    status: str                  # "accepted" or "fallback"
    accepted_attempt: int | None
    narrative: str               # what narrative.txt holds
    attempts: list
    model: str
    examples: list               # example names used
    check: dict                  # the final check (accepted attempt, else the last one)

    @property
    def ok(self) -> bool:
        return self.status == "accepted"


def read_out_dir(out_dir) -> tuple:
    """(findings dict, structured report text) of a ``radgpt report`` output folder."""
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(out, "output folder not found (run `radgpt report CASE --out OUT_DIR` first)")
    path = out / "findings.json"
    if not path.is_file():
        raise InputError(path, "not found (run `radgpt report CASE --out OUT_DIR` first)")
    try:
        findings = json.loads(path.read_text(encoding="utf-8"))
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


def _fallback_text(structured: str, tries: int) -> str:
    return FAILED_HEADER.format(tries=tries) + "\n\n" + structured.rstrip() + "\n"


def write_narratives(out_dirs, config, examples=None, style=None, max_tries: int = 3, k: int = DEFAULT_K,
                     max_concurrency: int | None = None) -> list:
    """Narratives for many output folders; each item is a :class:`NarrativeResult` or the
    :class:`~RadGPTLogic.llm.client.LLMError` that stopped that case (its files are left as they were)."""
    from ..io.atomic import write_files_atomically
    from ..llm.client import LLMError, resolve_model

    if config is None:
        raise InputError(None, NO_ENDPOINT)
    cases = [(Path(d), *read_out_dir(d)) for d in out_dirs]  # all inputs checked before any LLM call
    package = examples is None
    pool, style_note = filter_style(load_examples(examples), style, package)
    try:
        config = resolve_model(config)
    except LLMError as exc:
        return [exc for _ in cases]
    jobs, chosen = [], []
    for out, findings, structured in cases:
        picked = select_examples(pool, findings, k)
        chosen.append(picked)
        jobs.append(CheckedJob(build_messages(findings, structured, picked, style_note),
                               check=lambda text, f=findings: check_narrative(text, f)))
    run_checked(config, jobs, max_tries, max_concurrency)
    results = []
    for (out, findings, structured), job, picked in zip(cases, jobs, chosen):
        if job.error is not None:
            results.append(job.error if isinstance(job.error, LLMError) else LLMError(str(job.error)))
            continue
        accepted_attempt = job.attempts[-1]["attempt"] if job.accepted is not None else None
        narrative = job.accepted if job.accepted is not None else _fallback_text(structured, len(job.attempts))
        final = job.accepted_check or job.last_check
        record = {
            "case_id": findings.get("case_id"),
            "status": job.status,
            "narrative_of_record": "llm" if job.accepted is not None else "structured_report",
            "accepted_attempt": accepted_attempt,
            "max_tries": max_tries,
            "model": config.model,
            "examples": [e.name for e in picked],
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
            out_dir=str(out), case_id=findings.get("case_id"), status=job.status,
            accepted_attempt=accepted_attempt, narrative=narrative, attempts=job.attempts,
            model=config.model, examples=[e.name for e in picked], check=record["final"],
        ))
    return results


def write_narrative(out_dir, config, examples=None, style=None, max_tries: int = 3,
                    k: int = DEFAULT_K) -> NarrativeResult:
    """Narrative for one ``radgpt report`` output folder; raises ``LLMError`` when the
    endpoint gives no answer and ``InputError`` for bad input or no endpoint."""
    result = write_narratives([out_dir], config, examples=examples, style=style, max_tries=max_tries, k=k)[0]
    if isinstance(result, Exception):
        raise result
    return result
