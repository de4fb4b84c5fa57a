"""A scripted OpenAI-compatible chat server for judge tests (stdlib only, no network beyond 127.0.0.1).

    with JudgeServer() as server:
        server.verdict = lambda body: "Rating: [[9]]"
        settings = {"base_url": server.url, ...}

Serves ``POST /v1/chat/completions`` and ``GET /v1/models``. Every attribute below can be
changed while the server runs; each request reads them when it arrives.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple


def _default_verdict(body: Dict[str, Any]) -> Optional[str]:
    return "Rating: [[7]]"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping out delay_s must not hold up close
    request_queue_size = 256  # many simultaneous connects: the default backlog of 5 drops SYNs (1 s stalls)
    judge: "JudgeServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that timed out and hung up is an expected case in these tests."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: Nagle + delayed ACK adds 40 ms
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Quiet logging."""

    def _send(self, status: int, payload: Dict[str, Any], headers: Sequence[Tuple[str, str]] = ()) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        judge = self.server.judge
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": judge.model, "object": "model", "created": 0,
                                                         "owned_by": "tests"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        judge = self.server.judge
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        number = judge._arrive(body, self.headers.get("Authorization"))
        try:
            if judge.delay_s:
                time.sleep(judge.delay_s)
            status = judge.fail(body, number) if judge.fail else None
            if status:
                self._send(status, {"error": {"message": judge.error_message, "type": "scripted", "code": status}},
                           [("retry-after-ms", str(judge.retry_after_ms))])
                return
            self._send(200, judge._completion(body, number))
        finally:
            judge._leave()


class JudgeServer:
    """The scripted server; use as a context manager, ``url`` is the OpenAI ``base_url``."""

    def __init__(self) -> None:
        self.verdict: Callable[[Dict[str, Any]], Optional[str]] = _default_verdict
        """body -> the judge's text (None: a null content)."""
        self.logprobs: Optional[Callable[[Dict[str, Any]], Optional[List[Tuple[str, float]]]]] = None
        """body -> [(token, logprob)] for the first token's top_logprobs when asked; None ignores logprobs."""
        self.fail: Optional[Callable[[Dict[str, Any], int], Optional[int]]] = None
        """(body, call number from 1) -> an HTTP status to answer instead (429, 500), or None."""
        self.delay_s: float = 0.0
        """Sleep before answering."""
        self.usage: bool = True
        """Report token usage."""
        self.no_choices: bool = False
        """Answer with an empty choices list."""
        self.error_message: str = "scripted failure"
        """Message in a scripted error's body."""
        self.retry_after_ms: int = 10
        """retry-after-ms sent with scripted errors, so the openai client's retries are quick in tests."""
        self.model: str = "test-judge"
        """Model listed by /v1/models."""
        self.calls: List[Dict[str, Any]] = []
        """Every request body received, in arrival order."""
        self.auth_headers: List[Optional[str]] = []
        """The Authorization header of every request."""
        self.max_in_flight: int = 0
        """Most requests being answered at once."""
        self.arrived_at: List[float] = []
        """``time.perf_counter()`` at each request's arrival (same order as ``calls``): when the client's calls
        really started, for time-to-first-call figures."""
        self._in_flight = 0
        self._lock = threading.Lock()
        self._httpd: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> "JudgeServer":
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.judge = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _arrive(self, body: Dict[str, Any], auth: Optional[str]) -> int:
        with self._lock:
            self.calls.append(body)
            self.arrived_at.append(time.perf_counter())
            self.auth_headers.append(auth)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return len(self.calls)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _completion(self, body: Dict[str, Any], number: int) -> Dict[str, Any]:
        text = self.verdict(body)
        choice: Dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop", "logprobs": None}
        alternatives = self.logprobs(body) if self.logprobs and body.get("logprobs") else None
        if alternatives is not None:
            top = [{"token": token, "logprob": logprob, "bytes": None} for token, logprob in alternatives]
            first = top[0] if top else {"token": "", "logprob": 0.0, "bytes": None}
            choice["logprobs"] = {"content": [{**first, "top_logprobs": top}]}
        response: Dict[str, Any] = {"id": f"chatcmpl-{number}", "object": "chat.completion",
                                    "created": int(time.time()), "model": body.get("model"), "choices": [] if self.no_choices else [choice]}
        if self.usage:
            prompt = len(json.dumps(body.get("messages"))) // 4
            completion = len(text or "") // 4 + 1
            response["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}
        return response
