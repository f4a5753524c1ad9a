"""nginx serving one small static file on 127.0.0.1, in a temp folder, for tests whose target must cost
less than the load generator (docs: field notes, "This machine": nginx answers ~228,000 requests/s to wrk
here, about 20 times what Locust can send), so that the generator is the bottleneck.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from scenariokit.ports import free_port
from scenariokit.processes import signal_group

CONFIG = """\
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        location / {{ try_files $uri /ok.json; }}
    }}
}}
"""
START_S = 10.0


def have_nginx() -> bool:
    return shutil.which("nginx") is not None


class Nginx:
    """`with Nginx() as url:` an nginx answering every path with a 16-byte JSON file."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        # nginx's worker runs as `nobody`: the folder and file must be readable by others (a root-only
        # temp folder answers 403 to every request)
        self._root = Path(tempfile.mkdtemp(prefix="sk-nginx-"))
        (self._root / "www").mkdir()
        (self._root / "tmp").mkdir()
        (self._root / "www" / "ok.json").write_text('{"ok": true}\n')
        for path in (self._root, self._root / "www", self._root / "www" / "ok.json"):
            os.chmod(path, 0o755)
        conf = self._root / "nginx.conf"
        conf.write_text(CONFIG.format(root=self._root, port=self.port))
        self._process = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(self._root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group: its worker is stopped with it
        )
        self._wait_ready()
        return self.url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/ok.json", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"nginx did not answer on {self.url} within {START_S:.0f} s")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            # SIGQUIT is nginx's graceful stop; the group holds its worker
            signal_group(self._process.pid, signal.SIGQUIT)
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                signal_group(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=5)
            self._process = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
