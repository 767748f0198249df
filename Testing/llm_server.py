"""An OpenAI-compatible HTTP server on 127.0.0.1 for the tests: scripted replies or a real model.

It answers like llama.cpp or vLLM, so the real ``openai`` client is exercised over real
HTTP (nothing leaves the machine):

* ``POST /v1/chat/completions`` (non-streaming): honours ``max_tokens`` (a longer answer
  is cut and ends with ``finish_reason: "length"``) and, with ``context_tokens``, refuses
  a prompt plus ``max_tokens`` that exceeds the window with HTTP 400 and vLLM's message
  ("This model's maximum context length is N tokens ...");
* ``GET /v1/models``: the model, with ``max_model_len`` when ``report_context`` is set;
* ``POST /tokenize`` (``{"content": text}`` -> ``{"tokens": [...]}``, llama.cpp's form)
  when ``tokenize`` is set, else 404 like a server without one.

    with ScriptedLLMServer(["first answer", "second answer"]) as server:
        config = LLMConfig(base_url=server.url, model=server.model)
        ...
    server.requests  # the chat request bodies received, in order

``replies`` is a list (consumed in order; the last one repeats) or a callable
``f(request_body) -> str``.  ``fail_first=n`` answers the first n chat requests with
HTTP ``fail_status`` (default 500) and a ``retry-after-ms`` header (``retry_after_ms``);
``delay_s`` delays every chat answer.  Scripted text is counted in "tokens" of one word
or punctuation mark each.

A real model plugs in with ``generate(messages, max_tokens) -> (text, finish_reason,
prompt_tokens, completion_tokens)`` and ``count_tokens(text) -> int`` (see
``test_llm_real_model.py``); requests are then served one at a time.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_TOKEN = re.compile(r"\w+|[^\w\s]")


def word_tokens(text: str) -> list:
    """The scripted server's tokens: words and punctuation marks."""
    return _TOKEN.findall(text)


class ScriptedLLMServer:
    def __init__(self, replies=None, model: str = "scripted-model", fail_first: int = 0, delay_s: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0, context_tokens: int | None = None,
                 report_context: bool = False, tokenize: bool = False, fail_status: int = 500,
                 retry_after_ms: int | None = 5, generate=None, count_tokens=None):
        self.replies = replies
        self.model = model
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after_ms = retry_after_ms
        self.delay_s = delay_s
        self.context_tokens = context_tokens
        self.report_context = report_context
        self.tokenize = tokenize
        self.generate = generate
        self.count_tokens = count_tokens or (lambda text: len(word_tokens(text)))
        self.requests: list = []
        self.prompt_tokens: list = []   # tokens of each chat request's prompt, as this server counts them
        self.refused: int = 0           # requests answered 400 for the context window
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._calls = 0
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._thread = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ScriptedLLMServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def messages_tokens(self, messages: list) -> int:
        """Prompt tokens of a chat: contents plus 4 per message (a ChatML-like template)."""
        return sum(self.count_tokens(str(m.get("content") or "")) + 4 for m in messages) + 2

    def _scripted(self, body: dict, call: int) -> str:
        if callable(self.replies):
            return self.replies(body)
        index = min(call - self.fail_first - 1, len(self.replies) - 1)
        return self.replies[index]

    def _answer(self, body: dict) -> tuple:
        """(HTTP status, payload, extra headers) for one chat request."""
        with self._lock:
            self._calls += 1
            call = self._calls
            self.requests.append(body)
        messages = body.get("messages") or []
        prompt = self.messages_tokens(messages)
        with self._lock:
            self.prompt_tokens.append(prompt)
        if call <= self.fail_first:
            headers = {"retry-after-ms": str(self.retry_after_ms)} if self.retry_after_ms else {}
            return self.fail_status, {"error": {"message": "scripted failure", "type": "server_error"}}, headers
        max_tokens = body.get("max_tokens")
        if self.context_tokens is not None and prompt + (max_tokens or 0) > self.context_tokens:
            with self._lock:
                self.refused += 1
            return 400, {"error": {
                "message": f"This model's maximum context length is {self.context_tokens} tokens. However, you "
                           f"requested {prompt + (max_tokens or 0)} tokens ({prompt} in the messages, "
                           f"{max_tokens or 0} in the completion). Please reduce the length of the messages or "
                           "completion.",
                "type": "BadRequestError", "code": 400}}, {}
        if self.generate is not None:
            limit = max_tokens or (self.context_tokens - prompt if self.context_tokens else 512)
            with self._model_lock:
                text, finish, used_prompt, used = self.generate(messages, limit)
        else:
            text, finish, used_prompt = self._scripted(body, call), "stop", prompt
            tokens = word_tokens(text)
            used = len(tokens)
            if max_tokens is not None and used > max_tokens:
                text, finish, used = " ".join(tokens[:max_tokens]), "length", max_tokens
        return 200, {
            "id": f"chatcmpl-{call}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": used_prompt, "completion_tokens": used, "total_tokens": used_prompt + used},
        }, {}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    entry = {"id": server.model, "object": "model", "created": 0, "owned_by": "radgpt-tests"}
                    if server.report_context and server.context_tokens:
                        entry["max_model_len"] = server.context_tokens
                    self._send(200, {"object": "list", "data": [entry]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length", 0))
                return json.loads(self.rfile.read(length) or b"{}")

            def do_POST(self):
                path = self.path.rstrip("/")
                if path == "/tokenize" and server.tokenize:
                    text = str(self._body().get("content") or "")
                    self._send(200, {"tokens": list(range(server.count_tokens(text)))})
                    return
                if not path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                body = self._body()
                with server._lock:
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    if server.delay_s:
                        time.sleep(server.delay_s)
                    code, payload, headers = server._answer(body)
                finally:
                    with server._lock:
                        server._in_flight -= 1
                self._send(code, payload, headers)

        return Handler
