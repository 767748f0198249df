"""The LLM endpoint: configuration, one chat completion with a bounded answer, bounded batches.

Any OpenAI-compatible server works (vLLM, llama.cpp, Ollama, hosted APIs): the
``openai`` client is pointed at its ``base_url``.  The LLM is **off** unless an
endpoint is configured; only derived text (reports, findings) is ever sent, never
pixels.

Configuration, first match wins for each field:

1. explicit arguments (command-line options);
2. environment: ``RADGPT_LLM_BASE_URL``, ``RADGPT_LLM_MODEL``, ``RADGPT_LLM_API_KEY``
   (or ``OPENAI_API_KEY``), ``RADGPT_LLM_TIMEOUT``, ``RADGPT_LLM_CONTEXT_TOKENS``;
3. a JSON config file: the ``config_file`` argument, else ``RADGPT_LLM_CONFIG``, else
   ``~/.config/radgpt/llm.json``, with keys ``base_url``, ``model``, ``api_key``,
   ``timeout_s``, ``max_retries``, ``max_concurrency``, ``context_tokens``,
   ``min_tokens_per_s``, ``max_answer_tokens``.

Without a model name the first model the server lists (``/v1/models``) is used.

Retries are the ``openai`` client's own (connection errors, timeouts, HTTP 408, 409,
429 and 5xx, with exponential backoff that honours the server's ``Retry-After``), at
most ``max_retries`` per request; there is no second loop here.  Every request carries
``max_tokens``, and its timeout follows from it: ``timeout_s`` (connection and prompt
processing) plus ``max_tokens / min_tokens_per_s`` seconds, so a slow model is given
the time its longest allowed answer needs instead of being cut off and asked the same
question again while it is still generating.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ..errors import InputError

DEFAULT_CONFIG_FILE = Path.home() / ".config" / "radgpt" / "llm.json"

LLMErrorKind = Literal["context_overflow", "http_error", "server_error", "timeout", "connection", "empty_answer",
                       "no_model"]


class LLMError(RuntimeError):
    """The endpoint gave no usable answer (after the client's retries); the message is one line.

    ``kind`` says why (:data:`LLMErrorKind`); for ``context_overflow``, ``context_tokens`` is
    the window the server named in its error, when it named one.
    """

    def __init__(self, message: str, kind: LLMErrorKind = "http_error", context_tokens: int | None = None):
        super().__init__(" ".join(str(message).split()))
        self.kind = kind
        self.context_tokens = context_tokens


@dataclass(frozen=True)
class LLMConfig:
    """Where the LLM is and how it is asked.

    ``timeout_s``: seconds for connecting and prompt processing, per request; the
    answer's own time (``max_tokens / min_tokens_per_s``) is added.  ``max_retries``:
    the openai client's retries per request.  ``context_tokens``: the model's context
    window when the server does not report one (see :mod:`.budget`; None = 8192).
    ``max_answer_tokens``: a cap on every answer's ``max_tokens`` on top of the one that
    follows from the report's length (for slow models).
    """

    base_url: str
    model: str | None = None
    api_key: str = "not-needed"
    timeout_s: float = 120.0
    max_retries: int = 2
    max_concurrency: int = 4
    temperature: float = 0.0
    context_tokens: int | None = None
    min_tokens_per_s: float = 2.0
    max_answer_tokens: int | None = None

    def request_timeout_s(self, max_tokens: int | None) -> float:
        """The timeout of one request whose answer may be ``max_tokens`` long."""
        return self.timeout_s + (max_tokens or 0) / max(self.min_tokens_per_s, 1e-3)


@dataclass(frozen=True)
class Answer:
    """One completion: its text, why it ended (``stop``, ``length`` = cut off by ``max_tokens``)
    and the token counts the server reported (None when it reported none)."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass(frozen=True)
class Request:
    """One conversation to send, with the longest answer allowed (None: the server's default)."""

    messages: list
    max_tokens: int | None = None


def load_config(base_url=None, model=None, api_key=None, config_file=None, timeout_s=None, context_tokens=None,
                env=None, max_answer_tokens=None) -> LLMConfig | None:
    """Merge arguments, environment and config file; None when no endpoint is configured."""
    env = os.environ if env is None else env
    file_values = {}
    path = config_file or env.get("RADGPT_LLM_CONFIG")
    path = Path(path) if path else DEFAULT_CONFIG_FILE
    if path.is_file():
        try:
            file_values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(path, f"unreadable LLM config file ({exc})") from None
        if not isinstance(file_values, dict):
            raise InputError(path, "LLM config file must hold a JSON object")
    elif config_file:
        raise InputError(path, "LLM config file not found")

    def pick(arg, env_key, file_key, alt_env=None):
        if arg is not None:
            return arg
        if env.get(env_key):
            return env[env_key]
        if alt_env and env.get(alt_env):
            return env[alt_env]
        return file_values.get(file_key)

    url = pick(base_url, "RADGPT_LLM_BASE_URL", "base_url")
    if not url:
        return None
    cfg = LLMConfig(base_url=str(url).rstrip("/"))
    values = {
        "model": pick(model, "RADGPT_LLM_MODEL", "model"),
        "api_key": pick(api_key, "RADGPT_LLM_API_KEY", "api_key", alt_env="OPENAI_API_KEY"),
        "timeout_s": pick(timeout_s, "RADGPT_LLM_TIMEOUT", "timeout_s"),
        "context_tokens": pick(context_tokens, "RADGPT_LLM_CONTEXT_TOKENS", "context_tokens"),
        "max_retries": file_values.get("max_retries"),
        "max_concurrency": file_values.get("max_concurrency"),
        "min_tokens_per_s": file_values.get("min_tokens_per_s"),
        "max_answer_tokens": max_answer_tokens if max_answer_tokens is not None
        else file_values.get("max_answer_tokens"),
    }
    values = {k: v for k, v in values.items() if v is not None}
    source = str(path) if file_values else "the LLM settings"
    try:
        for key in ("timeout_s", "min_tokens_per_s"):
            if key in values:
                values[key] = float(values[key])
        for key in ("max_retries", "max_concurrency", "context_tokens", "max_answer_tokens"):
            if key in values:
                values[key] = int(values[key])
    except (TypeError, ValueError) as exc:
        raise InputError(source, f"LLM setting is not a number ({exc})") from None
    if values.get("context_tokens") is not None and values["context_tokens"] < 256:
        raise InputError(source, f"context_tokens must be at least 256 (got {values['context_tokens']})")
    return replace(cfg, **values)


def add_endpoint_options(parser, title: str = "LLM endpoint (OpenAI-compatible; off unless configured)"):
    """The command-line options read by :func:`load_config` (plus ``--concurrency``), as one group.

    Returns the argparse group so a command can add its own LLM options to it.
    """
    g = parser.add_argument_group(title)
    g.add_argument("--base-url", help="server URL, e.g. http://127.0.0.1:8000/v1 (env RADGPT_LLM_BASE_URL)")
    g.add_argument("--model", help="model name (default: the first model the server lists)")
    g.add_argument("--api-key", help="API key (env RADGPT_LLM_API_KEY or OPENAI_API_KEY)")
    g.add_argument("--config", help="JSON config file (default ~/.config/radgpt/llm.json)")
    g.add_argument("--concurrency", type=int, help="requests in flight at most (default: config, else 4)")
    return g


def make_client(config: LLMConfig):
    """The openai client for ``config`` (its own retries, honouring Retry-After)."""
    from openai import OpenAI  # heavy import: only when the LLM is used

    return OpenAI(base_url=config.base_url, api_key=config.api_key or "not-needed",
                  timeout=config.timeout_s, max_retries=max(0, config.max_retries))


def list_models(config: LLMConfig, client=None) -> list:
    """The server's model entries (``/v1/models``) as plain dicts, extra fields kept."""
    client = client or make_client(config)
    try:
        models = list(client.models.list())
    except Exception as exc:  # noqa: BLE001 - any client/network error becomes one line
        raise LLMError(f"{config.base_url}: cannot list models ({type(exc).__name__}: {exc})", "connection") from None
    return [m.to_dict() if hasattr(m, "to_dict") else dict(m) for m in models]


def resolve_model(config: LLMConfig, client=None) -> LLMConfig:
    """The config with ``model`` filled from the server's model list when it was not given."""
    if config.model:
        return config
    models = list_models(config, client)
    if not models:
        raise LLMError(f"{config.base_url}: the server lists no model; pass --model", "no_model")
    return replace(config, model=str(models[0].get("id")))


_OVERFLOW = re.compile(r"context|too long|too many tokens|maximum.{0,20}length|exceed", re.I)
_WINDOW_IN_TEXT = [re.compile(p, re.I) for p in (
    r"maximum context length is (\d+)", r"context (?:size|length|window)(?: of| is|:|=)?\s*\(?(\d{3,7})",
    r"n_ctx\W{1,4}(\d{3,7})")]


def _window_from_error(exc) -> int | None:
    """The context window an overflow error names (vLLM's message, llama.cpp's ``n_ctx``), or None."""
    body = getattr(exc, "body", None)
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in ("n_ctx", "max_model_len", "context_length"):
                if isinstance(item.get(key), int) and item[key] > 0:
                    return item[key]
            stack.extend(item.values())
    text = f"{getattr(exc, 'message', '')} {json.dumps(body) if body is not None else ''}"
    for pat in _WINDOW_IN_TEXT:
        m = pat.search(text)
        if m:
            return int(m.group(1))
    return None


def complete(config: LLMConfig, request: Request, client=None) -> Answer:
    """One chat completion for ``request`` (temperature from config, ``max_tokens`` set, timeout from it).

    Raises :class:`LLMError` (one line, with ``kind``) when no answer comes after the
    client's retries, when the server refuses the request (a 4xx; an over-long prompt is
    ``context_overflow``) or when the answer is empty.
    """
    import openai

    client = client or make_client(config)
    config = resolve_model(config, client)
    kwargs = {"model": config.model, "messages": request.messages, "temperature": config.temperature,
              "timeout": config.request_timeout_s(request.max_tokens)}
    if request.max_tokens is not None:
        kwargs["max_tokens"] = int(request.max_tokens)
    where = config.base_url
    try:
        resp = client.chat.completions.create(**kwargs)
    except openai.APITimeoutError:
        raise LLMError(f"{where}: no answer within {kwargs['timeout']:.0f} s "
                       f"(after {config.max_retries} retries)", "timeout") from None
    except openai.APIConnectionError as exc:
        raise LLMError(f"{where}: cannot reach the LLM server after {config.max_retries} retries ({exc})",
                       "connection") from None
    except openai.APIStatusError as exc:
        code = exc.status_code
        message = getattr(exc, "message", str(exc))
        if code in (400, 413, 422) and _OVERFLOW.search(f"{message} {exc.body}"):
            raise LLMError(f"{where}: HTTP {code}, the prompt does not fit the model's context ({message})",
                           "context_overflow", _window_from_error(exc)) from None
        kind: LLMErrorKind = "server_error" if code >= 500 else "http_error"
        retried = f" after {config.max_retries} retries" if code >= 500 or code in (408, 409, 429) else ""
        raise LLMError(f"{where}: HTTP {code} from the LLM server{retried} ({message})", kind) from None
    choice = resp.choices[0] if resp.choices else None
    text = choice.message.content if choice is not None and choice.message is not None else None
    finish = getattr(choice, "finish_reason", None) if choice is not None else None
    usage = getattr(resp, "usage", None)
    if not text or not text.strip():
        raise LLMError(f"{where}: empty answer from model {config.model} (finish reason {finish})", "empty_answer")
    return Answer(text, finish, getattr(usage, "prompt_tokens", None) or None,
                  getattr(usage, "completion_tokens", None) or None)


def chat(config: LLMConfig, messages: list, client=None, max_tokens: int | None = None) -> str:
    """The answer text of one chat completion (see :func:`complete`)."""
    return complete(config, Request(messages, max_tokens), client).text


def complete_many(config: LLMConfig, requests: list, max_concurrency: int | None = None) -> list:
    """An :class:`Answer` or the :class:`LLMError` it ended with, per request, in input order;
    at most ``max_concurrency`` requests in flight."""
    client = make_client(config)
    config = resolve_model(config, client)
    workers = max(1, min(max_concurrency or config.max_concurrency, len(requests) or 1))

    def one(request):
        try:
            return complete(config, request, client=client)
        except LLMError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, requests))


def chat_many(config: LLMConfig, conversations: list, max_concurrency: int | None = None,
              max_tokens: int | None = None) -> list:
    """Answer texts (or the :class:`LLMError` each ended with) for many conversations, in order."""
    answers = complete_many(config, [Request(c, max_tokens) for c in conversations], max_concurrency)
    return [a if isinstance(a, LLMError) else a.text for a in answers]
