"""Start the embedded server as a subprocess on a free loopback port and wait until it is healthy.

The server runs in a process group of its own (`start_new_session`): its model workers and
multiprocessing's resource tracker are in that group, so stopping the group leaves nothing behind, and a
Ctrl-C at the terminal reaches the runner alone, which stops the server in order.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from scenariokit.ports import free_port
from scenariokit.processes import signal_group, wait_group_gone

GROUP_EXIT_S = 3.0  # after the server: its resource tracker cleans up and exits once the server is gone


class ServerStartError(RuntimeError):
    """The server exited, or was not healthy in time, while starting."""


class ServerHandle:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: object) -> None:
        self.process = process
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.ready = False
        self._log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout_s: float = 60.0, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Returns once /health answers 200, or at once when `cancelled()` (the runner got a signal)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not cancelled():
            if self.process.poll() is not None:
                code = self.process.returncode
                raise ServerStartError(f"the model server exited with code {code} while starting")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    self.ready = True
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        if not cancelled():
            raise ServerStartError(f"the model server was not healthy within {timeout_s:g}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM. A ready server lets in-flight requests finish; one still loading its models has none,
        so its whole group stops at once rather than after the models load. Whatever remains is killed."""
        pgid = self.process.pid  # the leader of its own group
        if self.process.poll() is None:
            if self.ready:
                self.process.send_signal(signal.SIGTERM)
            else:
                signal_group(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                signal_group(pgid, signal.SIGKILL)
                with suppress(subprocess.TimeoutExpired):
                    self.process.wait(5)
        if not wait_group_gone(pgid, GROUP_EXIT_S):
            signal_group(pgid, signal.SIGKILL)
        if hasattr(self._log, "close"):
            self._log.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def spawn_server(
    port: int = 0,
    *,
    workers: int | None = None,
    max_in_flight: int | None = None,
    max_queue: int | None = None,
    fault: str | None = None,
    extra_args: list[str] | None = None,
    log_path: Path | None = None,
) -> ServerHandle:
    """Starts the server without waiting for it (`ServerHandle.wait_ready`), so that a caller can stop it
    while it starts."""
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
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return ServerHandle(process, port, log)


def start_server(port: int = 0, *, ready_timeout_s: float = 60.0, **options: Any) -> ServerHandle:
    """Starts the server and waits until it answers /health; the options are `spawn_server`'s."""
    handle = spawn_server(port, **options)
    try:
        handle.wait_ready(ready_timeout_s)
    except BaseException:
        handle.stop()
        raise
    return handle
