"""The runner's image server: a scenario's `serve: http` data sets, over HTTP on 127.0.0.1, for one run.

The reference guide's requests name their image by URL (`{"image_url": ...}`). So that such a scenario runs
without internet, the runner serves the data set's images itself and starts the embedded server allowing
only this server's origin (`--allow-url-host 127.0.0.1:PORT`). What it serves is a table fixed before it
starts, path -> bytes, taken from the compiled data sets: no file system is read while it runs, so there is
no directory listing and no path to escape by (`..`, `%2e%2e`, links); anything not in the table is 404.
It is bounded: at most MAX_CONNECTIONS connections at once (more are closed at once), HTTP/1.0 (one request
per connection) and a socket timeout per connection, so a slow client cannot hold a thread for long.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scenariokit.compile.ir import Scenario

MAX_CONNECTIONS = 64
SOCKET_TIMEOUT_S = 5.0
STATS_FILE = "image-server.json"  # in the run folder's logs/


@dataclass
class ImageStats:
    """What the image server did, written to logs/image-server.json when it stops."""

    origin: str
    files: int
    served: int = 0
    not_found: int = 0
    refused: int = 0  # connections closed at once: MAX_CONNECTIONS were open


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = SOCKET_TIMEOUT_S  # per connection: a client that sends nothing is dropped

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        found = self.server.files.get(self.path)  # the raw request target: exact match, no decoding
        if found is None:
            self.server.count("not_found")
            self.send_error(404)
            return
        data, mime = found
        self.send_response(200)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(data)
        self.server.count("served")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # counted, not logged: a run sends thousands


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2 * MAX_CONNECTIONS  # the listen backlog: a burst of connects is not dropped

    def __init__(self, files: Mapping[str, tuple[bytes, str]], stats: ImageStats) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = dict(files)
        self.stats = stats
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.lock = threading.Lock()

    def count(self, what: str) -> None:
        with self.lock:
            setattr(self.stats, what, getattr(self.stats, what) + 1)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection while a slot is free; past MAX_CONNECTIONS the connection is closed."""
        if not self.slots.acquire(blocking=False):
            self.count("refused")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer: nothing to report


def served_files(scenario: Scenario) -> dict[str, tuple[bytes, str]]:
    """Every served data set's images by path (`/<set>/<id>/<file>`, the records' `url` field)."""
    return {path: item for dataset in scenario.datasets for path, item in dataset.served_files().items()}


@contextmanager
def serving_images(scenario: Scenario, logs: Path | None = None) -> Iterator[str | None]:
    """Yields the image server's origin (`http://127.0.0.1:PORT`) while it serves, or None when the
    scenario serves nothing. Its counts go to `logs/image-server.json` when it stops."""
    files = served_files(scenario)
    if not files:
        yield None
        return
    stats = ImageStats(origin="", files=len(files))
    server = _Server(files, stats)
    stats.origin = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="image-server", daemon=True)
    thread.start()
    try:
        yield stats.origin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        if logs is not None:
            (logs / STATS_FILE).write_text(json.dumps(asdict(stats)) + "\n")


def read_stats(run_dir: Path) -> ImageStats | None:
    path = run_dir / "logs" / STATS_FILE
    return ImageStats(**json.loads(path.read_text())) if path.is_file() else None


def allowed_host(origin: str) -> str:
    """The embedded server's `--allow-url-host` value for the origin: its host and port, nothing else."""
    return origin.removeprefix("http://")
