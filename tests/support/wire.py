"""A loopback HTTP server that records what reaches the wire, as a deterministic set of canonical requests.

Each request it receives becomes one canonical form: method, path with query, headers (names lower-cased,
sorted, duplicates kept, the volatile ones dropped) and body (parsed JSON, else a sha256 and length of the
bytes). Data-set values (a card's data URL, its base64, its text) are replaced by a placeholder naming the
data set and field, so that which record a user drew does not show, while an image sent in another
encoding, or not from the data set, does. The server keeps the *set* of distinct canonical requests: it is
bounded by the scenario's request kinds, and equal between two runs that sent every kind.

It answers so that the engines' runtimes accept it: a chat completion (or an SSE stream of chunks ending in
`data: [DONE]`) whose text is the printed text of the card in the request, and 400 for a chat request
without messages; other paths get a small JSON object.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

CHAT_PATH = "/v1/chat/completions"

# Headers left out of a recording, each because it differs for reasons other than the scenario:
LOOPBACK_ORIGIN = re.compile(r"http://127\.0\.0\.1:\d+(?=[/<])")
DROPPED_HEADERS = frozenset(
    {
        "host",  # carries the recorder's port, a new free one each run
        "content-length",  # follows the body, which is recorded itself (and varies with the image drawn)
        "user-agent",  # names the engine and its version: differs by design, and on every upgrade
        "connection",  # keep-alive handling is the engine's HTTP client's, not the scenario's
        "accept-encoding",  # the engine client's compression offer, not set by any scenario
    }
)
# scenariokit's runner checks that the target is up (GET /) and samples its metrics (GET /metrics) with
# httpx while the engine runs: its own traffic, not the scenario's, and timed by the runner, so not recorded
RUNNER_PROBES = frozenset({("GET", "/"), ("GET", "/metrics")})
RUNNER_AGENT = "python-httpx/"
MAX_DISTINCT = 1000  # a canonicalisation that fails to remove per-request values must not grow unbounded
MIN_DATA_VALUE = 6  # shorter data-set values (ids like "3") would match unrelated text by accident
PREVIEW_CHARS = 200  # a short non-JSON body is also kept as text, so that a golden diff is readable
DEFAULT_ANSWER = "OK"


class DataValues:
    """The values of a scenario's data sets, each mapped to a placeholder `<data:SET.FIELD>`.

    Only values that differ between records are replaced (a mime type shared by every card is kept as
    sent), and only those of at least MIN_DATA_VALUE characters.
    """

    def __init__(self, datasets: Mapping[str, Iterable[Mapping[str, str]]] | None = None) -> None:
        self._placeholders: dict[str, str] = {}
        self._answers: dict[str, str] = {}
        for name, records in sorted((datasets or {}).items()):
            rows = list(records)
            fields = sorted({field for row in rows for field in row})
            for field in fields:
                values = [str(row.get(field, "")) for row in rows]
                if len(set(values)) < 2:
                    continue
                for row, value in zip(rows, values, strict=True):
                    if len(value) >= MIN_DATA_VALUE:
                        self._placeholders.setdefault(value, f"<data:{name}.{field}>")
                        if row.get("text"):
                            self._answers.setdefault(value, str(row["text"]))
        # longest first: a data URL contains its base64, which must not be replaced inside it first
        self._by_length = sorted(self._placeholders, key=len, reverse=True)

    @classmethod
    def from_script_dir(cls, folder: Path) -> DataValues:
        """Reads the data files `scenariokit compile` writes beside a script (`data/NAME.json`)."""
        datasets: dict[str, list[dict[str, str]]] = {}
        for path in sorted((folder / "data").glob("*.json")):
            loaded = json.loads(path.read_text(encoding="utf-8"))
            datasets[str(loaded.get("name") or path.stem)] = list(loaded.get("records") or [])
        return cls(datasets)

    def replace(self, text: str) -> str:
        exact = self._placeholders.get(text)
        if exact is not None:
            return exact
        for value in self._by_length:
            if value in text:
                text = text.replace(value, self._placeholders[value])
        # the runner's image server (`serve: http`) listens on a new free port each run
        return LOOPBACK_ORIGIN.sub("http://127.0.0.1:<port>", text)

    def answer_for(self, value: Any) -> str | None:
        """The known text of the first data-set value found in a parsed request body (a card's image)."""
        if isinstance(value, str):
            return self._answers.get(value)
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            found = self.answer_for(child)
            if found is not None:
                return found
        return None

    def canonical_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.replace(value)
        if isinstance(value, dict):
            return {self.replace(k): self.canonical_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.canonical_json(v) for v in value]
        return value


def canonical_request(
    method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes, data: DataValues
) -> dict[str, Any]:
    kept = sorted(
        [name.lower(), data.replace(value)] for name, value in headers if name.lower() not in DROPPED_HEADERS
    )
    return {"method": method, "path": data.replace(path), "headers": kept, "body": canonical_body(body, data)}


def canonical_body(body: bytes, data: DataValues) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        return {"json": data.canonical_json(json.loads(body))}
    except ValueError:  # not JSON (or not UTF-8): what matters is that the same bytes go out
        pass
    try:
        text = data.replace(body.decode("utf-8"))
    except UnicodeDecodeError:
        return {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
    raw = text.encode("utf-8")
    out: dict[str, Any] = {"sha256": hashlib.sha256(raw).hexdigest(), "length": len(raw)}
    if len(text) <= PREVIEW_CHARS:
        out["text"] = text
    return out


def recording_key(canonical: Mapping[str, Any]) -> str:
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"))


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # a spike opens tens of connections at once: socketserver's default backlog of 5 overflows, and k6
    # then sees connection resets that a real server would not cause
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # an engine stopping its users resets connections mid-request: expected, not worth a traceback
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class WireRecorder:
    """Threaded HTTP/1.1 server on 127.0.0.1 (a free port) that keeps the set of canonical requests."""

    def __init__(self, data: DataValues | None = None) -> None:
        self.data = data or DataValues()
        self.received = 0
        self.probes = 0
        self.truncated = 0
        self.overflow = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def recording(self) -> list[dict[str, Any]]:
        """The distinct canonical requests seen so far, sorted."""
        with self._lock:
            keys = sorted(self._seen)
        return [json.loads(key) for key in keys]

    def __enter__(self) -> WireRecorder:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _record(self, canonical: Mapping[str, Any]) -> None:
        key = recording_key(canonical)
        with self._lock:
            self.received += 1
            if key in self._seen:
                return
            if len(self._seen) >= MAX_DISTINCT:
                self.overflow += 1
                return
            self._seen.add(key)

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
                body = self._read_body()
                if len(body) < int(self.headers.get("Content-Length") or 0):
                    # the engine stopped a user mid-send: a truncated body is not what the scenario sends
                    with server._lock:
                        server.truncated += 1
                    self.close_connection = True
                    return
                agent = self.headers.get("User-Agent") or ""
                if (self.command, self.path) in RUNNER_PROBES and agent.startswith(RUNNER_AGENT):
                    with server._lock:
                        server.probes += 1
                else:
                    server._record(
                        canonical_request(self.command, self.path, self.headers.items(), body, server.data)
                    )
                if self.path.split("?", 1)[0] == CHAT_PATH:
                    self._chat(body)
                else:
                    self._send_json(200, {"ok": True})

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    parts = []
                    while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(parts)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send_json(self, status: int, payload: Mapping[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _chat(self, body: bytes) -> None:
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    request = None
                if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
                    self._error("the body must be a JSON object with a list of messages")
                    return
                if not request["messages"]:
                    self._error("messages must not be empty")
                    return
                answer = server.data.answer_for(request["messages"]) or DEFAULT_ANSWER
                tokens = len(answer.split())
                usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
                if request.get("stream"):
                    self._stream(request, answer, usage)
                    return
                message = {"role": "assistant", "content": answer}
                self._send_json(
                    200,
                    {
                        "id": "chatcmpl-wire",
                        "object": "chat.completion",
                        "created": 0,
                        "model": request.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                        "usage": usage,
                    },
                )

            def _error(self, message: str) -> None:
                self._send_json(400, {"error": {"message": message, "type": "BadRequestError", "code": 400}})

            def _stream(self, request: Mapping[str, Any], answer: str, usage: Mapping[str, int]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                base = {"id": "chatcmpl-wire", "object": "chat.completion.chunk", "created": 0}
                base["model"] = request.get("model")
                words = answer.split()
                for i, word in enumerate(words):
                    delta = {"content": word if i == 0 else " " + word}
                    if i == 0:
                        delta["role"] = "assistant"
                    self._event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if (request.get("stream_options") or {}).get("include_usage"):
                    self._event({**base, "choices": [], "usage": usage})
                self._write_chunk(b"data: [DONE]\n\n")
                self._write_chunk(b"")

            def _event(self, payload: Mapping[str, Any]) -> None:
                self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

            def _write_chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler
