"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for tests and offline demos.

It answers ``POST /v1/chat/completions`` (non-streaming) and ``GET /v1/models`` like
an OpenAI-compatible server, with replies scripted by the caller, so the real
``openai`` client is exercised over real HTTP.  Nothing leaves the machine.

    with ScriptedLLMServer(["first answer", "second answer"]) as server:
        config = LLMConfig(base_url=server.url, model=server.model)
        ...
    server.requests  # the JSON bodies received, in order

``replies`` is a list (consumed in order; the last one repeats) or a callable
``f(request_body) -> str``.  ``fail_first=n`` answers the first n chat requests with
HTTP 500 (for retry tests); ``delay_s`` delays every chat answer.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedLLMServer:
    def __init__(self, replies, model: str = "scripted-model", fail_first: int = 0, delay_s: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0):
        self.replies = replies
        self.model = model
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.requests: list = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._calls = 0
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._thread = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "ScriptedLLMServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _reply_for(self, body: dict) -> str | None:
        """The scripted reply, or None to answer HTTP 500."""
        with self._lock:
            self._calls += 1
            call = self._calls
            self.requests.append(body)
        if call <= self.fail_first:
            return None
        if callable(self.replies):
            return self.replies(body)
        index = min(call - self.fail_first - 1, len(self.replies) - 1)
        return self.replies[index]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [
                        {"id": server.model, "object": "model", "created": 0, "owned_by": "radgpt-tests"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    if server.delay_s:
                        time.sleep(server.delay_s)
                    text = server._reply_for(body)
                finally:
                    with server._lock:
                        server._in_flight -= 1
                if text is None:
                    self._send(500, {"error": {"message": "scripted failure", "type": "server_error"}})
                    return
                self._send(200, {
                    "id": f"chatcmpl-{server._calls}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", server.model),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                })

        return Handler
