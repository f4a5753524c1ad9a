"""A small real HTTP server on 127.0.0.1 for engine tests.

It counts requests per (method, path), keeps the last bodies it saw, can add a fixed delay, answers chat
completions (plain or as an SSE stream) with a fixed text, and answers other paths with a small JSON body
or a status chosen per path. Threads: one per connection, so tens of concurrent engine users are fine.

Each answered request is also kept as a `Served` record (`served()`): the delay its sleep actually achieved
and the time the handler spent from the parsed request to the last byte written, so that a test can judge
an engine's measured latency against what the server did, not against the nominal `delay_s`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from scipy.stats import binom


@dataclass(frozen=True)
class Served:
    """One answered request, as the server saw it."""

    path: str
    started_unix: float  # when the handler had the request line and headers
    slept_s: float  # the delay actually achieved (0.0 without a delay)
    service_s: float  # request parsed -> response written: a lower bound of any client's latency


# What a request costs beyond the handler's own time on loopback: the round trip and both ends' HTTP code.
# The median costs 0.7-2 ms; with both cores kept busy by other processes, the confidence bounds of an
# engine's p50 and the server's were up to 5.4 ms apart (Locust). Four times that: a slip of units, or a
# think time or a wait counted into latency, is still far outside. An allowance for the engine's side of
# a request, not a share of the server's delay.
TRANSPORT_S = 0.020


def quantile_bounds(values: Sequence[float], q: float, confidence: float = 0.999) -> tuple[float, float]:
    """Distribution-free confidence bounds of the q-quantile: the order statistics x(l) <= x(u) such that
    the number of samples below the true quantile, Binomial(n, q), lies in [l, u - 1] with at least
    `confidence`. A rank past either end is clipped to the sample's extreme (the p99 of a few hundred
    samples has no order statistic above it: the largest sample is what the data can say)."""
    ordered = sorted(values)
    n, alpha = len(ordered), 1 - confidence
    low = int(binom.ppf(alpha / 2, n, q))
    high = int(binom.ppf(1 - alpha / 2, n, q)) + 1
    return ordered[min(max(low, 1), n) - 1], ordered[min(max(high, 1), n) - 1]


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
        self._served: list[Served] = []
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

    def served(self, since: int = 0) -> list[Served]:
        """The requests answered so far, in the order their responses were written; `since` skips the
        first ones (take `len(server.served())` before a run to get that run's alone)."""
        with self._lock:
            return self._served[since:]

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

    def _record_served(self, served: Served) -> None:
        with self._lock:
            self._served.append(served)

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
                started_unix, started = time.time(), time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                server._record(self.command, path, body, dict(self.headers.items()))
                slept = 0.0
                if server.delay_s:
                    asleep = time.perf_counter()
                    time.sleep(server.delay_s)
                    slept = time.perf_counter() - asleep  # with any oversleep of a loaded machine
                status = server.status_by_path.get(path, 200)
                if path == "/v1/chat/completions" and status == 200:
                    self._chat(body)
                else:
                    self._send_json(status, {"ok": status < 400, "path": path})
                service = time.perf_counter() - started
                server._record_served(Served(path, started_unix, slept, service))

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
