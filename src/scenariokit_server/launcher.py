"""Start the embedded server as a subprocess on a free loopback port and wait until it is healthy."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from scenariokit.ports import free_port


class ServerHandle:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: object) -> None:
        self.process = process
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if hasattr(self._log, "close"):
            self._log.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_server(
    port: int = 0,
    *,
    workers: int | None = None,
    max_in_flight: int | None = None,
    max_queue: int | None = None,
    fault: str | None = None,
    extra_args: list[str] | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 60.0,
) -> ServerHandle:
    port = port or free_port()
    argv = [sys.executable, "-m", "scenariokit_server", "--port", str(port)]
    for flag, value in (
        ("--workers", workers),
        ("--max-in-flight", max_in_flight),
        ("--max-queue", max_queue),
        ("--fault", fault),
    ):
        if value is not None:
            argv += [flag, str(value)]
    argv += extra_args or []
    log = log_path.open("wb") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    handle = ServerHandle(process, port, log)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            handle.stop()
            raise RuntimeError(f"the model server exited with code {process.returncode} while starting")
        try:
            if httpx.get(f"{handle.base_url}/health", timeout=1.0).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    handle.stop()
    raise RuntimeError(f"the model server was not healthy within {ready_timeout_s:g}s")
