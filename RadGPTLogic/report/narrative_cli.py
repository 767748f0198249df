"""``radgpt narrative`` and ``radgpt enhance``: registered on the main parser by cli.py.

    from .report.narrative_cli import register
    register(sub)   # sub = parser.add_subparsers(...)

Every case always ends with its files written: narrative.txt holds the accepted
narrative or, on any failure (fact check, cut-off or empty answer, context overflow,
LLM server errors and timeouts), the structured report under a header line, and
narrative_check.json says which and why (a fallback is not a crash).

Exit codes: 0 when every case ended accepted or kept the structured report because the
model's text failed (fact check, cut off, empty; one warning line each on stderr); 1
when for some case the endpoint itself failed (no answer, HTTP error, prompt too long
for the model's context; one error line each, files still written); 2 bad input
(:class:`~RadGPTLogic.errors.InputError`, printed by cli.py).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace

from ..errors import InputError

log = logging.getLogger("radgpt")


def _llm_options(p: argparse.ArgumentParser) -> None:
    from ..llm.client import add_endpoint_options

    g = add_endpoint_options(p)
    g.add_argument("--timeout", type=float,
                   help="seconds per request for connecting and reading the prompt (default 120); the answer's "
                        "own time (max_tokens / min_tokens_per_s) is added")
    g.add_argument("--context-tokens", type=int, metavar="N",
                   help="the model's context window when the server does not report one (default 8192)")
    g.add_argument("--max-answer-tokens", type=int, metavar="N",
                   help="cap every answer at N tokens (default: twice the report's length; for slow models)")
    g.add_argument("--max-tries", type=int, default=3, help="answers per report before falling back (default 3)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")


def _config(args):
    from ..llm.client import load_config
    from .narrative import NO_ENDPOINT

    if args.max_tries is not None and args.max_tries < 1:
        raise InputError(None, f"--max-tries must be at least 1 (got {args.max_tries})")
    if args.concurrency is not None and args.concurrency < 1:
        raise InputError(None, f"--concurrency must be at least 1 (got {args.concurrency})")
    if args.timeout is not None and args.timeout <= 0:
        raise InputError(None, f"--timeout must be positive (got {args.timeout})")
    if args.context_tokens is not None and args.context_tokens < 256:
        raise InputError(None, f"--context-tokens must be at least 256 (got {args.context_tokens})")
    if args.max_answer_tokens is not None and args.max_answer_tokens < 16:
        raise InputError(None, f"--max-answer-tokens must be at least 16 (got {args.max_answer_tokens})")
    config = load_config(args.base_url, args.model, args.api_key, args.config, args.timeout, args.context_tokens,
                         max_answer_tokens=args.max_answer_tokens)
    if config is None:
        raise InputError(None, NO_ENDPOINT)
    try:
        import openai  # noqa: F401 - only to fail early with a clear message
    except ImportError:
        raise InputError(None, "the LLM client needs the 'openai' package: pip install 'radgpt-slicer[llm]'") from None
    if args.concurrency:
        config = replace(config, max_concurrency=args.concurrency)
    return config


def cmd_narrative(args) -> int:
    from .narrative import write_narratives

    config = _config(args)
    if args.num_examples < 1:
        raise InputError(None, f"--num-examples must be at least 1 (got {args.num_examples})")
    results = write_narratives(args.out_dirs, config, examples=args.examples, style=args.style,
                               max_tries=args.max_tries, k=args.num_examples, max_concurrency=args.concurrency)
    code = 0
    for out_dir, res in zip(args.out_dirs, results):
        where = f"{out_dir}/narrative_check.json"
        if res.ok:
            print(f"{res.case_id}: narrative accepted on try {res.accepted_attempt} -> {out_dir}/narrative.txt")
        elif res.reason == "fact_check_failed":
            n = len(res.check["errors"]) if res.check else 0
            log.warning("%s: the LLM narrative failed the fact check %d time(s) (%d error(s) left); the structured "
                        "report is kept as narrative-of-record (see %s)", res.case_id, len(res.attempts), n, where)
        else:
            code = 1 if res.llm_failed else code
            log.log(logging.ERROR if res.llm_failed else logging.WARNING,
                    "%s: no LLM narrative (%s: %s); the structured report is kept as narrative-of-record (see %s)",
                    res.case_id, res.reason, " ".join(str(res.record.get("reason_detail") or "").split()), where)
    return code


def cmd_enhance(args) -> int:
    from .enhance import enhance_report, read_notes
    from .narrative import ENDPOINT_REASONS

    config = _config(args)
    notes = read_notes(args.notes)
    res = enhance_report(args.out_dir, notes, config, max_tries=args.max_tries, max_concurrency=args.concurrency)
    code = 0
    for kind, status in res.statuses.items():
        name = "report_enhanced.txt" if kind == "structured" else "narrative_enhanced.txt"
        reason = res.reasons.get(kind)
        if status == "accepted":
            print(f"{res.case_id}: notes merged into the {kind} report -> {args.out_dir}/{name}")
        elif reason == "fact_check_failed":
            log.warning("%s: the merged %s report failed the fact check; the notes were appended verbatim instead "
                        "(%s/%s)", res.case_id, kind, args.out_dir, name)
        else:
            code = 1 if reason in ENDPOINT_REASONS else code
            detail = res.record["reports"][kind].get("reason_detail") or ""
            log.log(logging.ERROR if reason in ENDPOINT_REASONS else logging.WARNING,
                    "%s: no merge of the %s report (%s: %s); the notes were appended verbatim (%s/%s)",
                    res.case_id, kind, reason, " ".join(detail.split()), args.out_dir, name)
    return code


def register(subparsers) -> None:
    """Add the ``narrative`` and ``enhance`` subcommands."""
    n = subparsers.add_parser("narrative", help="LLM narrative in an institution's style, fact-checked")
    n.add_argument("out_dirs", nargs="+", metavar="OUT_DIR", help="output folder(s) of `radgpt report`")
    n.add_argument("--examples", metavar="FILE_OR_DIR",
                   help="example reports: .txt/.md (reports separated by a line '---'), a folder of them, "
                        "or a CSV with a 'report' column (default: the shipped examples)")
    n.add_argument("--style", help="example style to use (sectioned, paragraph, or a CSV 'style' value), "
                                   "or a free-text style note for the model")
    n.add_argument("-k", "--num-examples", type=int, default=3, help="few-shot examples per case (default 3)")
    _llm_options(n)
    n.set_defaults(func=cmd_narrative)

    e = subparsers.add_parser("enhance", help="merge a radiologist's notes into the reports, fact-checked")
    e.add_argument("out_dir", metavar="OUT_DIR", help="output folder of `radgpt report` (and `radgpt narrative`)")
    e.add_argument("--notes", required=True, metavar="FILE", help="free-text notes ('-' reads standard input)")
    _llm_options(e)
    e.set_defaults(func=cmd_enhance)
