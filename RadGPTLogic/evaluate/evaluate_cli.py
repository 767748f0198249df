"""``radgpt evaluate``: tumour detection metrics of predicted reports against reference reports.

    radgpt evaluate --pred PRED --truth TRUTH [--extractor rules|llm]
                    [--uncertain exclude|positive|negative] [--threshold-mm 20] [--out DIR]
                    [--report-file auto|NAME] [--base-url URL --model NAME --api-key KEY
                    --config FILE --concurrency N]

PRED and TRUTH are each one of:

* a CSV of labels: ``case_id,liver,liver_mm,pancreas,pancreas_mm,kidney,kidney_mm``
  (tumour yes/no/uncertain, also 1/0/u; sizes in mm; empty = no label / no size;
  other columns ignored), e.g. a ``labels_*.csv`` written by an earlier run;
* a CSV of report texts: ``case_id,report``;
* a folder of ``<case_id>.txt`` reports and/or of radgpt output folders
  ``<case_id>/`` holding ``narrative.txt`` or ``report.txt`` (``--report-file auto``,
  the default, takes ``narrative.txt`` when present, else ``report.txt``; give a file
  name to choose).

Report texts become labels by the rule extractor (default) or the LLM.  Cases on one
side only are skipped with a warning.  The Markdown table goes to stdout; with
``--out``, ``metrics.csv``, ``metrics.md``, ``labels_pred.csv`` and
``labels_truth.csv`` are written atomically.  Exit codes: 0 done; 2 bad input (one
line naming the file); 1 the LLM endpoint gave no usable answer at all.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import ORGANS

_TUMOR_CELLS = {"yes": "yes", "y": "yes", "1": "yes", "true": "yes", "no": "no", "n": "no", "0": "no",
                "false": "no", "uncertain": "uncertain", "u": "uncertain", "unknown": "uncertain"}


def _positive_mm(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a size in mm > 0: {text!r}")
    return value


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``evaluate`` to the ``radgpt`` sub-commands; returns its parser."""
    e = subparsers.add_parser(
        "evaluate", help="tumour sensitivity/specificity/PPV of reports against reference reports or labels",
        description="Per-organ (liver, pancreas, kidney) tumour labels are extracted from predicted and reference "
                    "reports, then compared per ground-truth size stratum (95% Wilson intervals).")
    e.add_argument("--pred", required=True, help="predicted reports or labels: CSV (case_id,report or label "
                   "columns) or a folder of <case>.txt / <case>/report.txt")
    e.add_argument("--truth", required=True, help="reference reports or labels, same forms as --pred")
    e.add_argument("--extractor", choices=("rules", "llm"), default="rules",
                   help="how report texts become labels (default: rules; llm needs an endpoint)")
    e.add_argument("--uncertain", choices=("exclude", "positive", "negative"), default="exclude",
                   help="uncertain labels (both sides): leave the case out for that organ (default), "
                        "or count as tumour / no tumour")
    e.add_argument("--threshold-mm", type=_positive_mm, default=20.0,
                   help="size strata: <= T mm and > T mm by the ground-truth largest size (default 20)")
    e.add_argument("--report-file", default="auto",
                   help="file read in each <case>/ folder (default auto: narrative.txt if present, else report.txt)")
    e.add_argument("--out", help="folder for metrics.csv, metrics.md, labels_pred.csv, labels_truth.csv")
    from ..llm.client import add_endpoint_options

    add_endpoint_options(e, "LLM endpoint (--extractor llm)")
    e.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    e.set_defaults(func=cmd_evaluate)
    return e


# --------------------------------------------------------------------------- inputs


@dataclass
class Side:
    """One side of the comparison as read: either labels or report texts, by case."""

    path: Path
    labels: dict | None = None  # case -> labels dict (organ -> entry | None)
    reports: dict | None = None  # case -> text

    @property
    def cases(self):
        return set(self.labels if self.labels is not None else self.reports)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        from ..errors import InputError

        raise InputError(path, "not UTF-8 text") from None
    except OSError as exc:
        from ..errors import InputError

        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None


def _parse_label_cell(path, line, column, value):
    from ..errors import InputError

    v = (value or "").strip().lower()
    if v == "":
        return None
    if v not in _TUMOR_CELLS:
        raise InputError(path, f"line {line}: column {column} must be yes, no or uncertain (got {value!r})")
    return _TUMOR_CELLS[v]


def _parse_mm_cell(path, line, column, value):
    from ..errors import InputError

    v = (value or "").strip()
    if v == "":
        return None
    try:
        mm = float(v)
    except ValueError:
        raise InputError(path, f"line {line}: column {column} must be a size in mm (got {value!r})") from None
    if mm != mm or mm < 0:
        raise InputError(path, f"line {line}: column {column} must be a size in mm >= 0 (got {value!r})")
    return mm


def read_csv_side(path: Path) -> Side:
    from ..errors import InputError

    text = _read_text(path)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InputError(path, f"not a readable CSV ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputError(path, "empty CSV: expected a header case_id,report or case_id,liver,liver_mm,...")
    header = [h.strip().lower() for h in rows[0]]
    if "case_id" not in header:
        raise InputError(path, "no case_id column: expected case_id,report or case_id,liver,liver_mm,pancreas,"
                               "pancreas_mm,kidney,kidney_mm")
    col = {h: i for i, h in enumerate(header)}
    is_labels = all(o in col for o in ORGANS)
    if not is_labels and "report" not in col:
        raise InputError(path, "expected a report column (report texts) or liver, pancreas and kidney columns "
                               "(labels)")
    out: dict = {}
    for line, row in enumerate(rows[1:], start=2):
        cell = lambda name: row[col[name]] if col.get(name) is not None and col[name] < len(row) else ""  # noqa: E731
        case = cell("case_id").strip()
        if not case:
            raise InputError(path, f"line {line}: empty case_id")
        if case in out:
            raise InputError(path, f"line {line}: case_id {case!r} appears twice")
        if is_labels:
            labels = {}
            for organ in ORGANS:
                tumor = _parse_label_cell(path, line, organ, cell(organ))
                mm = _parse_mm_cell(path, line, f"{organ}_mm", cell(f"{organ}_mm"))
                labels[organ] = None if tumor is None else {"tumor": tumor,
                                                            "largest_mm": None if tumor == "no" else mm}
            out[case] = labels
        else:
            out[case] = cell("report")
    if not out:
        raise InputError(path, "no rows after the header")
    return Side(path, labels=out) if is_labels else Side(path, reports=out)


def read_folder_side(path: Path, report_file: str = "auto", warn=None) -> Side:
    from ..errors import InputError

    reports = {}

    def add(case, file):
        if case in reports:
            raise InputError(path, f"case {case!r} appears twice ({case}.txt and {case}/)")
        reports[case] = _read_text(file)

    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() == ".txt":
            add(entry.stem, entry)
        elif entry.is_dir():
            names = ("narrative.txt", "report.txt") if report_file == "auto" else (report_file,)
            found = next((entry / n for n in names if (entry / n).is_file()), None)
            if found is None:
                if warn:
                    warn(f"{entry}: no {' or '.join(names)}; skipped")
                continue
            add(entry.name, found)
    if not reports:
        raise InputError(path, "no reports found: expected <case_id>.txt files or <case_id>/report.txt folders")
    return Side(path, reports=reports)


def read_side(path, report_file: str = "auto", warn=None) -> Side:
    from ..errors import InputError

    path = Path(path)
    if not path.exists():
        raise InputError(path, "not found")
    if path.is_dir():
        return read_folder_side(path, report_file, warn)
    return read_csv_side(path)


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvaluationResult:
    rows: list
    markdown: str
    pred_labels: dict
    truth_labels: dict
    notes: dict = field(default_factory=dict)  # (side, case) -> why labels are None
    skipped: dict = field(default_factory=dict)  # "pred_only"/"truth_only" -> cases
    files: dict = field(default_factory=dict)  # what --out gets


class NoLLMAnswer(RuntimeError):
    """Every LLM request failed: nothing to evaluate."""


def _labels_for(side: Side, cases: list, extractor: str, llm_config, concurrency, notes: dict, name: str) -> dict:
    if side.labels is not None:
        return {c: side.labels[c] for c in cases}
    texts = [(side.reports or {}).get(c) or "" for c in cases]
    if extractor == "rules":
        from .labels import extract_labels

        return {c: extract_labels(t) for c, t in zip(cases, texts)}
    from ..llm.client import LLMError
    from .llm_labels import llm_extract_labels

    try:
        results = llm_extract_labels(llm_config, texts, max_concurrency=concurrency)
    except LLMError as exc:  # e.g. the model list could not be read: nothing was labelled
        raise NoLLMAnswer(str(exc)) from None
    out = {}
    for case, res in zip(cases, results):
        out[case] = res.labels
        if res.labels is None:
            notes[(name, case)] = res.reason
    if cases and all(r.labels is None for r in results):
        raise NoLLMAnswer(f"no usable LLM answer for any {name} report (first: {results[0].reason})")
    return out


def run_evaluate(pred, truth, extractor: str = "rules", uncertain: str = "exclude", out=None, llm_config=None,
                 concurrency: int | None = None, report_file: str = "auto", threshold_mm: float = 20.0,
                 warn=None) -> EvaluationResult:
    """Read both sides, label them, compute the metrics and (with ``out``) write the files atomically."""
    from ..errors import InputError
    from .metrics import compute_metrics, labels_csv, metrics_csv, metrics_markdown, paper_table

    warn = warn or (lambda line: None)
    p_side = read_side(pred, report_file, warn)
    t_side = read_side(truth, report_file, warn)
    common = sorted(p_side.cases & t_side.cases)
    pred_only = sorted(p_side.cases - t_side.cases)
    truth_only = sorted(t_side.cases - p_side.cases)
    for name, only, path in (("PRED", pred_only, p_side.path), ("TRUTH", truth_only, t_side.path)):
        if only:
            shown = ", ".join(only[:10]) + (f", ... ({len(only) - 10} more)" if len(only) > 10 else "")
            warn(f"{len(only)} case(s) only in {name} ({path}): {shown}; skipped")
    if not common:
        raise InputError(p_side.path, f"no case_id in common with {t_side.path}")
    if extractor == "llm" and (p_side.labels is None or t_side.labels is None) and llm_config is None:
        raise InputError(None, "--extractor llm needs an LLM endpoint: pass --base-url, set RADGPT_LLM_BASE_URL "
                               "or write ~/.config/radgpt/llm.json")
    notes: dict = {}
    pred_labels = _labels_for(p_side, common, extractor, llm_config, concurrency, notes, "pred")
    truth_labels = _labels_for(t_side, common, extractor, llm_config, concurrency, notes, "truth")
    for (name, case), reason in sorted(notes.items()):
        warn(f"{name} {case}: no labels ({reason}); left out")
    rows = compute_metrics(pred_labels, truth_labels, uncertain=uncertain, threshold_mm=threshold_mm)
    title = f"Tumour detection: {len(common)} case(s), labels by {'LLM' if extractor == 'llm' else 'rules'}"
    md = (f"### {title}: sensitivity and specificity by tumour size\n\n" + paper_table(rows, threshold_mm) + "\n"
          + metrics_markdown(rows, uncertain=uncertain, threshold_mm=threshold_mm, title="All strata, with PPV"))
    files = {
        "metrics.csv": metrics_csv(rows),
        "metrics.md": md,
        "labels_pred.csv": labels_csv(pred_labels, {c: r for (n, c), r in notes.items() if n == "pred"}),
        "labels_truth.csv": labels_csv(truth_labels, {c: r for (n, c), r in notes.items() if n == "truth"}),
    }
    if out is not None:
        from ..io.atomic import write_files_atomically

        write_files_atomically(out, files)
    return EvaluationResult(rows, md, pred_labels, truth_labels, notes,
                            {"pred_only": pred_only, "truth_only": truth_only}, files)


def _warn(line: str) -> None:
    logging.getLogger("radgpt").warning("%s", line)


def cmd_evaluate(args) -> int:
    llm_config = None
    if args.extractor == "llm":
        from dataclasses import replace

        from ..llm.client import load_config

        llm_config = load_config(base_url=args.base_url, model=args.model, api_key=args.api_key,
                                 config_file=args.config)
        if llm_config is not None and args.concurrency:
            llm_config = replace(llm_config, max_concurrency=max(1, args.concurrency))
    try:
        result = run_evaluate(args.pred, args.truth, extractor=args.extractor, uncertain=args.uncertain,
                              out=args.out, llm_config=llm_config,
                              concurrency=max(1, args.concurrency) if args.concurrency else None,
                              report_file=args.report_file, threshold_mm=args.threshold_mm, warn=_warn)
    except NoLLMAnswer as exc:
        print(f"radgpt: error: {exc}", file=sys.stderr)
        return 1
    print(result.markdown, end="")
    if args.out:
        print(f"\nWritten to {args.out}: metrics.csv, metrics.md, labels_pred.csv, labels_truth.csv")
    return 0
