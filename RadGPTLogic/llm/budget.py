"""The model's context window and the size of prompts in tokens, so that every request fits.

:func:`probe_budget` asks the server once, before any prompt is built:

* **the window** (``context_tokens``): llama.cpp's ``GET /props`` (``n_ctx``), else the
  model's entry in ``GET /v1/models`` (vLLM ``max_model_len``, LM Studio
  ``loaded_context_length``/``max_context_length``, ``context_length``/``context_window``
  of hosted APIs); when the server reports none, the configured ``context_tokens``,
  else :data:`DEFAULT_CONTEXT_TOKENS`.  When both the server and the configuration
  give one, the smaller wins.  A window learnt later from an overflow error replaces it
  (:meth:`Budget.learn_window`).
* **the token counter**: the server's ``POST /tokenize`` (llama.cpp and vLLM answer
  ``{"tokens": [...]}``) when it has one, else a conservative estimate of one token per
  :data:`CHARS_PER_TOKEN` characters (SmolLM2's tokenizer measured 2.5-2.8 on structured reports,
  2.8-3.5 on narrative ones: numbers cost most).  A chat template adds
  :data:`MESSAGE_OVERHEAD_TOKENS` per message.

A prompt fits when its tokens plus the answer's ``max_tokens`` plus
:data:`SAFETY_TOKENS` stay within the window.
"""

from __future__ import annotations

import json
import math
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Literal

DEFAULT_CONTEXT_TOKENS = 8192
CHARS_PER_TOKEN = 2.2
MESSAGE_OVERHEAD_TOKENS = 8
SAFETY_TOKENS = 32
PROBE_TIMEOUT_S = 5.0

ContextSource = Literal["server", "config", "default", "server_error"]
CounterKind = Literal["server", "estimate"]

_WINDOW_KEYS = ("n_ctx", "max_model_len", "loaded_context_length", "max_context_length", "context_length",
                "context_window")


def server_root(base_url: str) -> str:
    """The server's root URL: ``base_url`` without a trailing ``/v1``."""
    return re.sub(r"/v1/?$", "", base_url.rstrip("/"))


def _get_json(url: str, payload: dict | None = None, api_key: str | None = None):
    """The JSON answer of a GET (or POST with ``payload``), or None on any failure."""
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if api_key and api_key != "not-needed":
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT_S) as resp:  # noqa: S310 - the configured server
            return json.loads(resp.read() or b"null")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _find_window(obj) -> int | None:
    """The first positive context size under one of :data:`_WINDOW_KEYS`, searched breadth-first."""
    queue = [obj]
    while queue:
        item = queue.pop(0)
        if isinstance(item, dict):
            for key in _WINDOW_KEYS:
                value = item.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
            queue.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            queue.extend(item)
    return None


class TokenCounter:
    """Tokens of a text: the server's ``/tokenize`` when it answers, else the character rule."""

    def __init__(self, root_url: str | None = None, model: str | None = None, api_key: str | None = None,
                 chars_per_token: float = CHARS_PER_TOKEN):
        self.root_url = root_url
        self.model = model
        self.api_key = api_key
        self.chars_per_token = chars_per_token
        self.kind: CounterKind = "estimate"
        self._cache: dict = {}
        self._lock = threading.Lock()
        if root_url is not None and self._server_count("hello world") is not None:
            self.kind = "server"

    def _server_count(self, text: str) -> int | None:
        answer = _get_json(f"{self.root_url}/tokenize",
                           {"content": text, "prompt": text, "model": self.model, "add_special": False},
                           self.api_key)
        if isinstance(answer, dict):
            if isinstance(answer.get("count"), int):
                return answer["count"]
            if isinstance(answer.get("tokens"), list):
                return len(answer["tokens"])
        return None

    def estimate(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token)

    def count(self, text: str) -> int:
        with self._lock:
            if text in self._cache:
                return self._cache[text]
        n = self._server_count(text) if self.kind == "server" else None
        n = self.estimate(text) if n is None else n
        with self._lock:
            self._cache[text] = n
        return n

    def count_messages(self, messages: list) -> int:
        return sum(self.count(str(m.get("content") or "")) + MESSAGE_OVERHEAD_TOKENS for m in messages) \
            + MESSAGE_OVERHEAD_TOKENS


@dataclass
class Budget:
    """A context window and the counter that sizes prompts against it."""

    context_tokens: int
    source: ContextSource
    counter: TokenCounter = field(default_factory=TokenCounter)

    def prompt_tokens(self, messages: list) -> int:
        return self.counter.count_messages(messages)

    def room(self, messages: list) -> int:
        """Tokens left for the answer after ``messages`` (negative when the prompt alone overflows)."""
        return self.context_tokens - self.prompt_tokens(messages) - SAFETY_TOKENS

    def learn_window(self, tokens: int | None) -> bool:
        """Adopt a smaller window the server named in an overflow error; True when it changed."""
        if tokens and 0 < tokens < self.context_tokens:
            self.context_tokens, self.source = int(tokens), "server_error"
            return True
        return False

    def to_dict(self) -> dict:
        return {"context_tokens": self.context_tokens, "context_source": self.source,
                "token_counter": self.counter.kind}


def probe_budget(config, models: list | None = None) -> Budget:
    """The :class:`Budget` of ``config``'s server and model (see the module docstring).

    ``models``: the ``/v1/models`` entries when the caller already listed them (else they are read).
    """
    root = server_root(config.base_url)
    reported = _find_window(_get_json(f"{root}/props", api_key=config.api_key))
    if reported is None and models is None:
        listed = _get_json(f"{config.base_url.rstrip('/')}/models", api_key=config.api_key)
        models = listed.get("data") if isinstance(listed, dict) and isinstance(listed.get("data"), list) else None
    if reported is None and models:
        entry = next((m for m in models if m.get("id") == config.model), models[0])
        reported = _find_window(entry)  # llama.cpp's meta.n_ctx_train is the training window: not used
    configured = getattr(config, "context_tokens", None)
    source: ContextSource
    if reported and configured:
        window, source = (reported, "server") if reported <= configured else (configured, "config")
    elif reported:
        window, source = reported, "server"
    elif configured:
        window, source = configured, "config"
    else:
        window, source = DEFAULT_CONTEXT_TOKENS, "default"
    return Budget(int(window), source, TokenCounter(root, config.model, config.api_key))
