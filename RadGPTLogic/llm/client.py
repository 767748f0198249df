"""The LLM endpoint: configuration, chat with timeouts and retries, bounded batches.

Any OpenAI-compatible server works (vLLM, llama.cpp, Ollama, hosted APIs): the
``openai`` client is pointed at its ``base_url``.  The LLM is **off** unless an
endpoint is configured; only derived text (reports, findings) is ever sent, never
pixels.

Configuration, first match wins for each field:

1. explicit arguments (command-line options);
2. environment: ``RADGPT_LLM_BASE_URL``, ``RADGPT_LLM_MODEL``, ``RADGPT_LLM_API_KEY``
   (or ``OPENAI_API_KEY``), ``RADGPT_LLM_TIMEOUT``;
3. a JSON config file: the ``config_file`` argument, else ``RADGPT_LLM_CONFIG``, else
   ``~/.config/radgpt/llm.json``, with keys ``base_url``, ``model``, ``api_key``,
   ``timeout_s``, ``max_retries``, ``max_concurrency``.

Without a model name the first model the server lists (``/v1/models``) is used.
"""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InputError

DEFAULT_CONFIG_FILE = Path.home() / ".config" / "radgpt" / "llm.json"


class LLMError(RuntimeError):
    """The endpoint could not give an answer (after retries); the message is one line."""


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str | None = None
    api_key: str = "not-needed"
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 1.0
    max_concurrency: int = 4
    temperature: float = 0.0


def load_config(base_url=None, model=None, api_key=None, config_file=None, timeout_s=None,
                env=None) -> LLMConfig | None:
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
        "max_retries": file_values.get("max_retries"),
        "max_concurrency": file_values.get("max_concurrency"),
    }
    values = {k: v for k, v in values.items() if v is not None}
    for key in ("timeout_s",):
        if key in values:
            values[key] = float(values[key])
    for key in ("max_retries", "max_concurrency"):
        if key in values:
            values[key] = int(values[key])
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


def _client(config: LLMConfig):
    from openai import OpenAI  # heavy import: only when the LLM is used

    # Retries are ours (with jittered exponential backoff and a clear final error).
    return OpenAI(base_url=config.base_url, api_key=config.api_key or "not-needed",
                  timeout=config.timeout_s, max_retries=0)


def resolve_model(config: LLMConfig, client=None) -> LLMConfig:
    """The config with ``model`` filled from the server's model list when it was not given."""
    if config.model:
        return config
    client = client or _client(config)
    try:
        models = client.models.list()
        first = next(iter(models), None)
    except Exception as exc:  # noqa: BLE001 - any client/network error becomes one line
        raise LLMError(f"{config.base_url}: cannot list models ({type(exc).__name__}: {exc})") from None
    if first is None:
        raise LLMError(f"{config.base_url}: the server lists no model; pass --model")
    return replace(config, model=first.id)


def chat(config: LLMConfig, messages: list, client=None) -> str:
    """One chat completion (temperature from config), retried on transient errors.

    Retries connection errors, timeouts, HTTP 429 and 5xx up to ``max_retries`` times
    with exponential backoff (``backoff_s`` x 2^attempt, jittered).  Raises
    :class:`LLMError` when no answer comes.
    """
    import openai

    client = client or _client(config)
    config = resolve_model(config, client)
    transient = (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError,
                 openai.InternalServerError)
    last = None
    for attempt in range(config.max_retries + 1):
        try:
            resp = client.chat.completions.create(
                model=config.model, messages=messages, temperature=config.temperature,
            )
            content = resp.choices[0].message.content if resp.choices else None
            if content is None:
                raise LLMError(f"{config.base_url}: empty answer from model {config.model}")
            return content
        except transient as exc:
            last = exc
            if attempt < config.max_retries:
                time.sleep(config.backoff_s * (2 ** attempt) * (0.5 + random.random() / 2))
        except openai.APIStatusError as exc:  # 4xx other than 429: retrying will not help
            raise LLMError(f"{config.base_url}: HTTP {exc.status_code} from the LLM server ({exc.message})") from None
    raise LLMError(
        f"{config.base_url}: no answer after {config.max_retries + 1} tries ({type(last).__name__}: {last})"
    )


def chat_many(config: LLMConfig, conversations: list, max_concurrency: int | None = None) -> list:
    """Answers for many conversations, at most ``max_concurrency`` in flight.

    Each item is the answer text or the :class:`LLMError` it ended with, in input order.
    """
    client = _client(config)
    config = resolve_model(config, client)
    workers = max(1, min(max_concurrency or config.max_concurrency, len(conversations) or 1))

    def one(messages):
        try:
            return chat(config, messages, client=client)
        except LLMError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, conversations))
