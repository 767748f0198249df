"""Ask, check, re-ask: conversations whose answers must pass a check, each within the context window.

A :class:`CheckedJob` gives its prompt as *variants*, richest first (e.g. with three,
two, one, no example reports), built for the errors of the previous try (None on the
first).  Each try sends the richest variant that fits the window together with an
answer of at least ``min_answer_tokens``; ``max_tokens`` is the smaller of
``want_answer_tokens`` and the room left, so a runaway answer ends early.  A retry
never re-sends the failed answer: the job builds a fresh prompt that lists the errors.

A job ends ``accepted`` (an answer passed its check) or ``fallback`` with a
``reason``:

* ``fact_check_failed``: every try's answer failed the check;
* ``truncated``: the last answer was cut off by ``max_tokens``;
* ``empty_answer``: the last answer was empty;
* ``context_too_small``: no variant fits the window with room for an answer;
* ``context_overflow``: the server refused the prompt as too long (a smaller window it
  names in its error is adopted and the prompt rebuilt; such a refused request, which
  generated nothing, does not count against ``max_tries``);
* ``llm_error``: no answer after the client's retries (timeout, connection, HTTP error).

Every try is recorded in ``attempts`` (prompt tokens, ``max_tokens``, finish reason,
the answer, the check's errors or the LLM error).
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal

from .budget import Budget, probe_budget
from .client import LLMConfig, LLMError, Request, complete, list_models, make_client

JobStatus = Literal["accepted", "fallback"]
FallbackReason = Literal["fact_check_failed", "truncated", "empty_answer", "context_too_small", "context_overflow",
                         "llm_error"]

# The answer may be this many times the tokens of the text it rewrites, and at least MIN_ANSWER_TOKENS.
ANSWER_FACTOR = 2.0
MIN_ANSWER_TOKENS = 128
MAX_ERRORS_SENT = 12
MAX_REFITS = 3  # prompts rebuilt for a smaller window the server named in an overflow error


def extract_report(reply: str) -> str:
    """The text between '#start' and '#end' (or the whole answer without code fences)."""
    text = reply.replace("\r\n", "\n")
    m = re.search(r"#\s*start\s*\n?(.*?)(?:\n\s*#\s*end\b|$)", text, flags=re.S | re.I)
    if m:
        text = m.group(1)
    text = re.sub(r"^\s*```[\w-]*\s*\n|\n\s*```\s*$", "", text.strip())
    return text.strip() + "\n"


def error_lines(errors: list, limit: int = MAX_ERRORS_SENT) -> list:
    """The errors of a failed try as prompt lines (at most ``limit``, then a count)."""
    lines = [f"- {e['kind']}: {e['detail']}" for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"- ... and {len(errors) - limit} more error(s) of the same kinds")
    return lines


@dataclass
class CheckedJob:
    """One conversation whose answers must pass ``check(text) -> CheckResult``.

    ``variants(errors) -> [messages, ...]``: the prompt, richest variant first, for the
    errors of the previous try (None on the first try).  ``answer_basis``: the text the
    answer rewrites; its length bounds the answer (``ANSWER_FACTOR`` times its tokens).
    """

    variants: Callable[[list | None], list]
    check: Callable
    answer_basis: str
    status: JobStatus = "fallback"
    reason: FallbackReason | None = None
    reason_detail: str | None = None
    attempts: list = field(default_factory=list)
    accepted: str | None = None
    accepted_check: Any = None   # the CheckResult of the accepted answer
    last_check: Any = None       # the CheckResult of the last checked answer
    variant_used: int | None = None

    def finish(self, reason: FallbackReason, detail: str) -> None:
        self.status, self.reason, self.reason_detail = "fallback", reason, " ".join(detail.split())


def answer_tokens(budget: Budget, basis: str, cap: int | None = None) -> tuple:
    """(least, wanted) ``max_tokens`` for an answer rewriting ``basis``, both at most ``cap``."""
    base = budget.counter.count(basis)
    least, wanted = max(MIN_ANSWER_TOKENS // 2, base), max(MIN_ANSWER_TOKENS, math.ceil(ANSWER_FACTOR * base))
    return (least, wanted) if not cap else (min(least, cap), min(wanted, cap))


def _fit(job: CheckedJob, budget: Budget, errors: list | None, cap: int | None = None) -> tuple | None:
    """(variant index, messages, prompt tokens, max_tokens) of the richest variant that fits, or None."""
    least, wanted = answer_tokens(budget, job.answer_basis, cap)
    for i, messages in enumerate(job.variants(errors)):
        room = budget.room(messages)
        if room >= least:
            return i, messages, budget.prompt_tokens(messages), min(wanted, room)
    return None


def run_job(config: LLMConfig, job: CheckedJob, budget: Budget, max_tries: int = 3, client=None) -> CheckedJob:
    """Run one job to ``accepted`` or ``fallback`` (see the module docstring)."""
    errors = None
    answered = refits = 0
    while answered < max_tries:
        attempt = len(job.attempts) + 1
        fit = _fit(job, budget, errors, config.max_answer_tokens)
        if fit is None:
            job.finish("context_too_small", f"no prompt fits the model's context window of {budget.context_tokens} "
                                            "tokens with room for the answer")
            return job
        index, messages, prompt_tokens, max_tokens = fit
        record = {"attempt": attempt, "prompt_tokens": prompt_tokens, "max_tokens": max_tokens,
                  "prompt_variant": index, "context_tokens": budget.context_tokens}
        job.attempts.append(record)
        try:
            answer = complete(config, Request(messages, max_tokens), client)
        except LLMError as exc:
            record.update(ok=False, llm_error={"kind": exc.kind, "message": str(exc)})
            if exc.kind == "context_overflow" and refits < MAX_REFITS and budget.learn_window(exc.context_tokens):
                # No answer was generated: the same request again, fitted to the window the server named,
                # does not count as a try.
                refits += 1
                job.finish("context_overflow", str(exc))
                continue
            answered += 1
            if exc.kind == "empty_answer":
                job.finish("empty_answer", str(exc))
                errors = [{"kind": "empty_answer", "detail": "your answer was empty"}]
                continue
            job.finish("context_overflow" if exc.kind == "context_overflow" else "llm_error", str(exc))
            return job
        answered += 1
        record.update(finish_reason=answer.finish_reason, usage_prompt_tokens=answer.prompt_tokens,
                      usage_completion_tokens=answer.completion_tokens)
        text = extract_report(answer.text)
        if answer.truncated:
            record.update(text=text, ok=False, errors=[])
            job.finish("truncated", f"the answer was cut off at max_tokens = {max_tokens}")
            errors = [{"kind": "truncated", "detail": f"your answer was cut off after {max_tokens} tokens; "
                       "write a shorter report, without repetition"}]
            continue
        check = job.check(text)
        job.last_check = check
        record.update(text=text, ok=check.ok, errors=check.errors, warnings=check.warnings,
                      from_notes=check.from_notes)
        if check.ok:
            job.status, job.reason, job.reason_detail = "accepted", None, None
            job.accepted, job.accepted_check, job.variant_used = text, check, index
            return job
        job.finish("fact_check_failed", f"{len(check.errors)} fact-check error(s) in the last answer")
        errors = check.errors
    return job


def prepare(config: LLMConfig) -> tuple:
    """(config with its model resolved, :class:`Budget`) for the server; raises :class:`LLMError`."""
    models = None
    if not config.model:
        models = list_models(config, make_client(config))
        if not models:
            raise LLMError(f"{config.base_url}: the server lists no model; pass --model", "no_model")
        config = replace(config, model=str(models[0].get("id")))
    return config, probe_budget(config, models)


def run_checked(config: LLMConfig, jobs: list, budget: Budget, max_tries: int = 3,
                max_concurrency: int | None = None) -> list:
    """Run all jobs, at most ``max_concurrency`` at once (each job's tries are sequential)."""
    if max_tries < 1:
        raise ValueError(f"max_tries must be at least 1 (got {max_tries})")
    if not jobs:
        return jobs
    client = make_client(config)
    workers = max(1, min(max_concurrency or config.max_concurrency, len(jobs)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda job: run_job(config, job, budget, max_tries, client), jobs))
    return jobs
