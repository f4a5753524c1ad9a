"""nginx as a target that costs less than the load generator (calibration, the tests' fast target, the
benchmarks' fronts): one config written from a few parameters, one start, one readiness wait, one stop.

`NginxConfig` says what it serves: a fixed `return 200` body, or a reverse proxy to an upstream with
keep-alive; optionally a stub_status page and an access log. `NginxServer` runs it from a prefix folder
(`nginx -p prefix -c prefix/nginx.conf -e prefix/error.log`) in a process group of its own, waits until
nginx itself answers, and stops it with SIGQUIT (nginx's graceful stop, which also completes the access
log), then SIGKILL. A caller may prefix the argv (`ip netns exec NS`, `taskset -c 1`) and give its own
readiness probe (from inside a namespace, say).

Every value written into the config is checked first: a path, body or name that could end a directive or
name an nginx variable is refused with ValueError rather than written.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from scenariokit.processes import signal_group

START_S = 10.0
STOP_S = 10.0
STUB_STATUS_FIELDS = ("active", "accepts", "handled", "requests", "reading", "writing", "waiting")
_STATUS_PATH = re.compile(r"/[A-Za-z0-9_./-]*")
_UPSTREAM = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")


def have_nginx() -> bool:
    return shutil.which("nginx") is not None


def _quoted(text: str, what: str, newlines: bool = False) -> str:
    """`text` as an nginx double-quoted string. `$` would name a variable, and a control character could
    end the directive or the line, so both are refused (a newline only escaped where `newlines`)."""
    if "$" in text:
        raise ValueError(f"{what} {text!r}: `$` would name an nginx variable")
    allowed = "\n" if newlines else ""
    if any((ord(ch) < 32 and ch not in allowed) or ord(ch) == 127 for ch in text):
        raise ValueError(f"{what} {text!r} holds a control character")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _host(address: str) -> str:
    """The address as a URL or `listen` writes it (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


@dataclass(frozen=True)
class NginxConfig:
    """One server with one worker. `upstream` (host:port) makes it a reverse proxy; else every path but
    `status_path` answers 200 with `body`."""

    port: int
    address: str = "127.0.0.1"
    worker_connections: int = 1024
    rlimit_nofile: int | None = None  # the worker's file limit, for worker_connections above the default
    body: str = '{"ok": true}'
    content_type: str = "application/json"
    upstream: str | None = None
    upstream_keepalive: int = 64  # idle connections kept open to the upstream
    status_path: str | None = None  # a stub_status page (its `requests` count is what nginx served)
    access_log: bool = False  # prefix/access.log, one line a request
    keepalive_requests: int = 1_000_000  # a generator's connection is never closed by nginx mid-run
    keepalive_timeout_s: int = 75  # nginx's default
    backlog: int | None = None  # the listen queue, for many users connecting at once

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.address)  # ValueError for anything but an IP address
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not a TCP port")
        counts = [self.worker_connections, self.upstream_keepalive, self.keepalive_requests]
        counts += [n for n in (self.rlimit_nofile, self.backlog) if n is not None]
        if min(counts) < 1 or self.keepalive_timeout_s < 0:
            raise ValueError(f"nginx counts must be positive: {self}")
        if self.status_path is not None and not _STATUS_PATH.fullmatch(self.status_path):
            raise ValueError(f"status path {self.status_path!r}: a URL path of letters, digits and _./-")
        if self.upstream is not None and not _UPSTREAM.fullmatch(self.upstream):
            raise ValueError(f"upstream {self.upstream!r}: write host:port")
        if not _CONTENT_TYPE.fullmatch(self.content_type):
            raise ValueError(f"content type {self.content_type!r} is not a MIME type")
        _quoted(self.body, "body", newlines=True)

    @property
    def url(self) -> str:
        return f"http://{_host(self.address)}:{self.port}"

    def render(self, prefix: Path) -> str:
        """nginx.conf for a server run from `prefix` (its pid, logs and temp files live there)."""
        root = prefix.as_posix()
        _quoted(root, "prefix")  # refused before any path is built from it
        limit = f"worker_rlimit_nofile {self.rlimit_nofile};\n" if self.rlimit_nofile is not None else ""
        log = _quoted(f"{root}/access.log", "access log") if self.access_log else "off"
        temps = "".join(
            f"    {kind}_temp_path {_quoted(f'{root}/tmp', 'temp path')};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        backlog = f" backlog={self.backlog}" if self.backlog is not None else ""
        return (
            "daemon off;\nmaster_process on;\nworker_processes 1;\n"
            f"{limit}pid {_quoted(f'{root}/nginx.pid', 'pid')};\n"
            f"error_log {_quoted(f'{root}/error.log', 'error log')} warn;\n"
            f"events {{ worker_connections {self.worker_connections}; }}\n"
            f"http {{\n    access_log {log};\n{temps}"
            f"    keepalive_requests {self.keepalive_requests};\n"
            f"    keepalive_timeout {self.keepalive_timeout_s}s;\n"
            f"{self._upstream_block()}"
            f"    server {{\n        listen {_host(self.address)}:{self.port}{backlog};\n"
            f"{self._locations()}    }}\n}}\n"
        )

    def _upstream_block(self) -> str:
        if self.upstream is None:
            return ""
        return f"    upstream target {{ server {self.upstream}; keepalive {self.upstream_keepalive}; }}\n"

    def _locations(self) -> str:
        if self.upstream is None:
            root = (
                f"default_type {self.content_type}; return 200 {_quoted(self.body, 'body', newlines=True)};"
            )
        else:  # HTTP/1.1 with no Connection header: the upstream connections are kept alive
            root = 'proxy_pass http://target; proxy_http_version 1.1; proxy_set_header Connection "";'
        status = f"        location = {self.status_path} {{ stub_status; }}\n" if self.status_path else ""
        return f"        location / {{ {root} }}\n{status}"


class NginxServer:
    """`with NginxServer(config) as nginx:` nginx answering at `nginx.url` until the block ends.

    `prefix`: the folder it runs from (made if missing; kept, with its logs, after the stop); None for a
    temp folder removed at the stop. `wrap`: words before nginx's argv. `ready`: a probe that says whether
    it answers (default: a GET from here whose answer comes from nginx, not from whatever else listens).
    """

    def __init__(
        self,
        config: NginxConfig,
        prefix: Path | None = None,
        *,
        wrap: Sequence[str] = (),
        ready: Callable[[], bool] | None = None,
        start_s: float = START_S,
    ) -> None:
        if prefix is not None:
            _quoted(prefix.absolute().as_posix(), "prefix")  # before anything is made or started
        self.config = config
        self.url = config.url
        self._prefix = prefix.absolute() if prefix is not None else None
        self._temporary = prefix is None
        self._wrap = list(wrap)
        self._ready = ready or self._answers
        self._start_s = start_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def prefix(self) -> Path:
        if self._prefix is None:
            raise RuntimeError("nginx has not been started")
        return self._prefix

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    @property
    def _pid_file(self) -> Path:
        return self.prefix / "nginx.pid"

    def __enter__(self) -> NginxServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Writes the config, starts nginx and returns once it answers; stops it and raises otherwise."""
        prefix = self._make_prefix()
        conf = prefix / "nginx.conf"
        conf.write_text(self.config.render(prefix), "utf-8")
        binary = shutil.which("nginx") or "nginx"
        argv = [*self._wrap, binary, "-p", str(prefix), "-c", str(conf), "-e", str(self.error_log)]
        self._process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group: its worker is stopped with it
        )
        try:
            self._wait_ready(self._process)
        except BaseException:
            self.stop()
            raise

    def _make_prefix(self) -> Path:
        if self._prefix is None:
            self._prefix = Path(tempfile.mkdtemp(prefix="sk-nginx-"))
        self._prefix.mkdir(parents=True, exist_ok=True)
        (self._prefix / "tmp").mkdir(exist_ok=True)
        (self._prefix / "nginx.pid").unlink(missing_ok=True)  # a previous run's, left by a kill
        # nginx's worker runs as `nobody`: a root-only folder (mkdtemp makes 0700) answers 403 or cannot
        # write its temp files; the folders above it are the caller's
        self._prefix.chmod(0o755)
        return self._prefix

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._start_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited with code {process.returncode}: {self._log_tail()}")
            # the pid file is written once the ports are bound: before it, what answers may be another
            # server that holds the port (and nginx is about to exit)
            if self._pid_file.is_file() and self._ready():
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"nginx did not answer on {self.url} within {self._start_s:g} s: {self._log_tail()}"
        )

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection(self.config.address, self.config.port, timeout=1.0)
        try:
            connection.request("GET", self.config.status_path or "/")
            return (connection.getresponse().getheader("Server") or "").startswith("nginx")
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _log_tail(self) -> str:
        try:
            lines = self.error_log.read_text("utf-8", "replace").splitlines()
        except OSError:
            return "no error log"
        return " | ".join(lines[-3:]) or "its error log is empty"

    def stop(self) -> None:
        """SIGQUIT to the group (graceful: the worker finishes its requests and the logs are complete),
        SIGKILL after STOP_S."""
        process, self._process = self._process, None
        if process is not None:
            signal_group(process.pid, signal.SIGQUIT)
            try:
                process.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self._temporary and self._prefix is not None:
            shutil.rmtree(self._prefix, ignore_errors=True)
            self._prefix = None


def stub_status(url: str, path: str) -> dict[str, int]:
    """The counters of nginx's stub_status page at `url` + `path` (this read is counted in `requests`)."""
    with urllib.request.urlopen(url + path, timeout=5) as response:
        page = response.read().decode()
    numbers = [int(n) for n in re.findall(r"\d+", page)]
    if len(numbers) != len(STUB_STATUS_FIELDS):
        raise RuntimeError(f"not an nginx stub_status page: {page!r}")
    return dict(zip(STUB_STATUS_FIELDS, numbers, strict=True))
