"""Error kinds keep the engine's own reason, and a target without /metrics is not scraped, never down.

Real runs of `scenariokit run` on each engine against a loopback REST server that has no /metrics (404):
a request that times out, one that gets a reply that is not HTTP (no row of the failure table names what
the engine says then: `other`, with the engine's code and message kept), one to a port nothing listens on
(connection refused). summary.json carries, per kind, the engine's code (k6's error_code, Locust's
exception class) and a sample message; summary.md and the report never call the target down.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scenariokit.cli import main
from scenariokit.engines.outcomes import MESSAGE_CHARS

SLOW_S = 2.5  # /slow answers after this; the scenario's timeout (1 s) is shorter, and /a far quicker
SCENARIO = """\
version: 1
name: reasons
target: {{kind: http, base_url: "{url}", timeout: 1s}}
load: {{curve: "hold(2, 3s)", think_time: constant(50ms)}}
requests:
{requests}
"""
MIXED = """\
  a: {weight: 2, path: /a}
  slow: {weight: 1, path: /slow}
  garbage: {weight: 1, path: /garbage}
"""
# what each engine says, by kind: (its code, a fragment of its message)
REASONS = {
    "k6": {
        "timeout": ("1050", "request timeout"),
        "other": ("1000", "malformed HTTP response"),
        "connection_refused": ("1212", "connection refused"),
    },
    "locust": {
        "timeout": ("RetriesExceeded", "timed out"),  # geventhttpclient gives up on a timeout
        "other": (None, ""),  # geventhttpclient's parser error: its class is checked below
        "connection_refused": ("ConnectionRefusedError", "Connection refused"),
    },
}


class RestHandler(BaseHTTPRequestHandler):
    """A REST service: no /metrics (404), /slow answers late, /garbage answers with a line that is not
    HTTP and closes the connection."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path == "/garbage":
            self.wfile.write(b"HELLO\r\n\r\n")
            self.close_connection = True
            return
        if self.path == "/slow":
            time.sleep(SLOW_S)
        status = 404 if self.path == "/metrics" else 200
        body = json.dumps({"path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def rest_server(close_after_probe: bool = False) -> Iterator[str]:
    """The server's URL. With `close_after_probe`, it answers the runner's start-up check (GET /) and then
    stops listening: every request of the run is refused."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RestHandler)
    server.daemon_threads = True
    probed = threading.Event()
    if close_after_probe:
        handle = RestHandler.do_GET

        def once(handler: RestHandler) -> None:
            # Before the answer, so that once the runner has it nothing listens. shutdown, not close
            # alone: the serving thread's poll holds the socket open until it returns, and a connection
            # queued meanwhile would be reset, not refused.
            server.socket.shutdown(socket.SHUT_RDWR)
            server.socket.close()
            handle(handler)
            probed.set()

        server.RequestHandlerClass = type("Once", (RestHandler,), {"do_GET": once})
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    closer = threading.Thread(target=lambda: probed.wait(60) and _close(server), daemon=True)
    if close_after_probe:
        closer.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _close(server)


def _close(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def run(tmp_path: Path, engine: str, url: str, requests: str) -> tuple[int, Path]:
    scenario = tmp_path / "reasons.yaml"
    scenario.write_text(SCENARIO.format(url=url, requests=requests))
    out = tmp_path / "run"
    code = main(["run", str(scenario), "--engine", engine, "--out", str(out), "--quiet"])
    return code, out


def reasons(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    summary = json.loads((out / "summary.json").read_text())
    return summary, summary["overall"]["error_reasons"]


def assert_reason(engine: str, kind: str, reason: dict[str, Any]) -> None:
    code, fragment = REASONS[engine][kind]
    (got,) = reason["codes"]  # one code for the kind in these runs
    if code is not None:
        assert got == code, reason
    message = reason["messages"][got]
    assert fragment in message and 0 < len(message) <= MESSAGE_CHARS, reason


@pytest.mark.engine
@pytest.mark.parametrize("engine", ["locust", "k6"])
def test_timeouts_and_unnamed_failures_keep_the_engines_code_and_message(tmp_path: Path, engine: str) -> None:
    with rest_server() as url:
        code, out = run(tmp_path, engine, url, MIXED)
    summary, by_kind = reasons(out)
    assert code in (0, 1, 4), summary["exit_detail"]
    assert summary["overall"]["errors_by_kind"].keys() == by_kind.keys() == {"timeout", "other"}
    assert_reason(engine, "timeout", by_kind["timeout"])
    assert_reason(engine, "other", by_kind["other"])
    if engine == "locust":  # not a bare `other`: the client's own exception class, not Python's builtins
        (klass,) = by_kind["other"]["codes"]
        assert klass not in ("Exception", "OSError", "other"), by_kind
    # per request too: each request's failures are its own
    per_request = summary["by_request"]
    assert per_request["slow"]["error_reasons"].keys() == {"timeout"}
    assert per_request["garbage"]["error_reasons"].keys() == {"other"}
    assert per_request["a"]["errors"] == 0 and per_request["a"]["error_reasons"] == {}
    # the target has no /metrics and answered requests all along: not scraped, never down
    note = "the target has no Prometheus /metrics: target-side signals not available"
    assert summary["analysis"]["target_note"] == note
    assert all("down" not in s["component"] for s in summary["analysis"]["signals"])
    markdown = (out / "summary.md").read_text()
    assert note in markdown and "target: down" not in markdown
    assert "target: down" not in (out / "report.html").read_text()


@pytest.mark.engine
@pytest.mark.parametrize("engine", ["locust", "k6"])
def test_a_refused_connection_keeps_the_engines_code_and_message(tmp_path: Path, engine: str) -> None:
    with rest_server(close_after_probe=True) as url:
        code, out = run(tmp_path, engine, url, "  a: {path: /a}\n")
    summary, by_kind = reasons(out)
    assert code in (0, 1, 4), summary["exit_detail"]
    assert summary["overall"]["requests"] > 0 and summary["overall"]["ok"] == 0
    assert by_kind.keys() == {"connection_refused"}
    assert_reason(engine, "connection_refused", by_kind["connection_refused"])


@pytest.mark.parametrize(
    ("reason", "row"),
    [
        (None, "| http_5xx:503 | 3 | — | — |"),
        (
            {"codes": {"1000": 2, "1213": 1}, "messages": {"1213": "a | b `c` \\ d"}},
            "| other | 3 | 1000 (2), 1213 (1) | a \\| b \\`c\\` \\\\ d |",
        ),
    ],
)
def test_a_message_stays_in_its_markdown_cell(reason: dict[str, Any] | None, row: str) -> None:
    """An engine's message is text from outside: a pipe or a backtick in it cannot break the table."""
    from scenariokit.results.summary import ErrorReasonOut, _error_row

    kind = "other" if reason else "http_5xx:503"
    assert _error_row(kind, 3, None if reason is None else ErrorReasonOut(**reason)) == row
