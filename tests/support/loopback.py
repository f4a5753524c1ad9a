"""A small real HTTP server on 127.0.0.1 for engine tests.

It counts requests per (method, path), keeps the last bodies it saw, can add a fixed delay, answers chat
completions (plain or as an SSE stream) with a fixed text, and answers other paths with a small JSON body
or a status chosen per path. Threads: one per connection, so tens of concurrent engine users are fine.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class LoopbackServer:
    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        answer: str = "HOLIDAY SALE 2026",
        status_by_path: dict[str, int] | None = None,
        chunk_delay_s: float = 0.0,
    ) -> None:
        self.delay_s = delay_s
        self.chunk_delay_s = chunk_delay_s
        self.answer = answer
        self.status_by_path = dict(status_by_path or {})
        self.counts: Counter[tuple[str, str]] = Counter()
        self.bodies: deque[tuple[str, bytes, dict[str, str]]] = deque(maxlen=200)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, path: str, method: str | None = None) -> int:
        with self._lock:
            return sum(n for (m, p), n in self.counts.items() if p == path and method in (None, m))

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- request handling ---------------------------------------------------------------------------

    def _record(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        with self._lock:
            self.counts[(method, path)] += 1
            self.bodies.append((path, body, headers))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
            # client's delayed ACK add 40 ms to some responses
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                server._record(self.command, path, body, dict(self.headers.items()))
                if server.delay_s:
                    time.sleep(server.delay_s)
                status = server.status_by_path.get(path, 200)
                if path == "/v1/chat/completions" and status == 200:
                    self._chat(body)
                else:
                    self._send_json(status, {"ok": status < 400, "path": path})

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def _send_json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _chat(self, body: bytes) -> None:
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    request = {}
                if not isinstance(request, dict) or not request.get("messages"):
                    self._send_json(
                        400,
                        {
                            "error": {
                                "message": "messages must not be empty",
                                "type": "BadRequestError",
                                "code": 400,
                            }
                        },
                    )
                    return
                if request.get("stream"):
                    self._stream(request)
                    return
                tokens = server.answer.split()
                self._send_json(
                    200,
                    {
                        "id": "chatcmpl-loopback",
                        "object": "chat.completion",
                        "model": request.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": server.answer},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 10,
                            "completion_tokens": len(tokens),
                            "total_tokens": 10 + len(tokens),
                        },
                    },
                )

            def _stream(self, request: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                words = server.answer.split()
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    self._chunk(
                        {
                            "object": "chat.completion.chunk",
                            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                        }
                    )
                    if server.chunk_delay_s:
                        time.sleep(server.chunk_delay_s)
                if (request.get("stream_options") or {}).get("include_usage"):
                    self._chunk(
                        {
                            "object": "chat.completion.chunk",
                            "choices": [],
                            "usage": {
                                "prompt_tokens": 10,
                                "completion_tokens": len(words),
                                "total_tokens": 10 + len(words),
                            },
                        }
                    )
                self._write_chunk(b"data: [DONE]\n\n")
                self._write_chunk(b"")

            def _chunk(self, payload: dict[str, Any]) -> None:
                self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

            def _write_chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler
