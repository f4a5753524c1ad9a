"""The one target supervisor: starts, stops, kills and restarts the target, and times each start.

The embedded model server is started through its launcher; an external target through the scenario's
`target.start_command` (an argv list, never a shell string, run only under `--allow-exec`). Each start is
timed from the process's start to its port accepting connections to its being ready (the embedded server's
/health answering 200; an external target answering HTTP at all), and written as one `TargetStart` line to
`target/starts.jsonl` in the run folder. `restart()` brings the target back on the same port (chaos kills
through `kill()`), and the embedded server's own worker restarts, read from its /health, go to
`target/workers.jsonl`, so everything that restarted during a run is in its folder.

Several embedded instances (`target.embedded.instances`) each run on a port of their own, behind the
runner's round-robin proxy (run/faultproxy.py); `kill`, `restart` and `exited` take an instance's index, and
instance 0 is the one `port`, `pid` and `base_url` name (the monitor scrapes it).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from scenariokit.ports import free_port
from scenariokit.processes import signal_group
from scenariokit_server.launcher import ServerHandle, ServerStartError, spawn_server

POLL_S = 0.05  # between readiness probes: a start is timed to about this
STOP_GROUP_S = 5.0
TARGET_DIR = "target"
STARTS_FILE = "starts.jsonl"
WORKERS_FILE = "workers.jsonl"


class TargetStartError(ServerStartError):
    """The target exited, or was not ready in time, while starting (a run error: exit 3)."""


@dataclass(frozen=True)
class TargetStart:
    """One start of the target, timed. `t` is when its process was started (unix seconds); the two
    durations are from then. None: not reached (a failed start, with `detail` saying why)."""

    t: float
    kind: Literal["start", "restart"]
    mode: Literal["cold", "warm"]
    pid: int
    port_open_s: float | None
    time_to_ready_s: float | None
    ok: bool = True
    detail: str = ""
    instance: int = 0  # which of several embedded instances
    port: int | None = None  # where it listened (the same port after a restart)


@dataclass
class _Instance:
    """One target process the supervisor runs: its port, its launcher handle, and whether we killed it."""

    index: int
    port: int = 0
    # the launcher's handle, for an external command too: it stops a process group and closes its log
    handle: ServerHandle | None = None
    killed: bool = False  # by us (chaos): the run goes on, and the target is not "down"
    log_path: Path | None = None


@dataclass(frozen=True)
class TargetConfig:
    """What the supervisor starts: the embedded server (with its launcher options), or an external target's
    argv, or nothing (a target someone else runs: the supervisor only records that nothing was started)."""

    base_url: str | None  # None: the embedded server, on a free loopback port
    mode: Literal["cold", "warm"] = "warm"
    embedded_options: tuple[tuple[str, int | str], ...] = ()
    start_command: tuple[str, ...] | None = None
    ready_timeout_s: float = 60.0
    server_args: tuple[str, ...] = ()  # more flags for the embedded server (the runner's image origin)
    instances: int = 1  # embedded servers, each on its own port


class TargetSupervisor:
    """A context manager: `start()` on entry is the caller's, `stop()` on exit is its own."""

    def __init__(self, config: TargetConfig, run_dir: Path) -> None:
        self.config = config
        self.folder = run_dir / TARGET_DIR
        self.logs = run_dir / "logs"
        self.starts: list[TargetStart] = []
        count = config.instances if config.base_url is None else 1
        self.instances = [_Instance(i) for i in range(count)]
        # a chaos kill and restart run on the fault scheduler's thread, beside the poll loop's reads
        self._lock = threading.RLock()
        if config.base_url is not None:
            url = config.base_url
            self.instances[0].port = urlsplit(url).port or (443 if url.startswith("https") else 80)

    # --- what the runner reads ---------------------------------------------------------------------

    @property
    def embedded(self) -> bool:
        return self.config.base_url is None

    @property
    def port(self) -> int:
        return self.instances[0].port

    @property
    def ports(self) -> list[int]:
        """Every instance's port, in index order (the proxy's upstreams)."""
        return [instance.port for instance in self.instances]

    @property
    def base_url(self) -> str:
        return self.config.base_url or f"http://127.0.0.1:{self.port}"

    def url_of(self, index: int) -> str:
        return self.config.base_url or f"http://127.0.0.1:{self.instances[index].port}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        handle = self.instances[0].handle
        return handle.process if handle is not None else None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def exited(self) -> bool:
        """Whether a target process ended on its own (a kill through the supervisor is deliberate)."""
        return any(
            not instance.killed and instance.handle is not None and instance.handle.process.poll() is not None
            for instance in self.instances
        )

    # --- starting ----------------------------------------------------------------------------------

    def start(self, cancelled: Callable[[], bool] = lambda: False) -> TargetStart:
        """Starts every instance, all at once (each loads its models: one after the other would add up);
        returns the first's start. One that fails raises its TargetStartError; `stop` ends the others."""
        if len(self.instances) == 1:
            return self._start("start", self.instances[0], cancelled)
        for instance in self.instances:  # ports chosen here, one by one: two threads could draw the same
            instance.port = instance.port or free_port()
        with ThreadPoolExecutor(len(self.instances), thread_name_prefix="target-start") as pool:
            futures = [pool.submit(self._start, "start", i, cancelled) for i in self.instances]
        started = [future.result() for future in futures]  # raises a failed start's error
        return started[0]

    def restart(self, cancelled: Callable[[], bool] = lambda: False, instance: int = 0) -> TargetStart:
        """Stops the instance if it still runs (SIGKILL: a restart is not a drain) and starts it again on the
        same port."""
        self.kill(instance=instance)  # also when it died on its own: what is left of its group goes
        return self._start("restart", self.instances[instance], cancelled)

    def kill(self, sig: int = signal.SIGKILL, instance: int = 0) -> None:
        """Kills an instance's whole process group (a chaos fault; the run goes on)."""
        target = self.instances[instance]
        with self._lock:
            if target.handle is None:
                return
            target.killed = True
            handle = target.handle
        signal_group(handle.pid, sig)
        handle.stop(STOP_GROUP_S)  # reaps the leader, waits for the group, closes the log

    def _start(
        self, kind: Literal["start", "restart"], instance: _Instance, cancelled: Callable[[], bool]
    ) -> TargetStart:
        if self.embedded and not instance.port:
            instance.port = free_port()
        instance.log_path = self.logs / self._log_name(kind, instance.index)
        started, clock = time.time(), time.monotonic()
        with self._lock:  # the new process and the flag change together: exited() never sees half
            handle = instance.handle = self._spawn(instance)
            instance.killed = False
        try:
            port_open_s, ready_s = self._wait_ready(handle, instance, clock, cancelled)
        except TargetStartError as exc:
            self._record(self._timed(started, kind, handle, instance, None, None, str(exc)))
            raise
        handle.ready = ready_s is not None  # a ready server drains on stop; one still starting is killed
        event = self._timed(started, kind, handle, instance, port_open_s, ready_s)
        if ready_s is not None:
            self._record(event)
        return event

    def _timed(
        self,
        started: float,
        kind: Literal["start", "restart"],
        handle: ServerHandle,
        instance: _Instance,
        port_open_s: float | None,
        ready_s: float | None,
        failed: str | None = None,
    ) -> TargetStart:
        return TargetStart(
            t=started,
            kind=kind,
            mode=self.config.mode,
            pid=handle.pid,
            port_open_s=port_open_s,
            time_to_ready_s=ready_s,
            ok=failed is None,
            detail=failed or "",
            instance=instance.index,
            port=instance.port,
        )

    def _log_name(self, kind: str, index: int = 0) -> str:
        stem = "model-server" if self.embedded else "target"
        stem += f"-{index}" if index else ""
        restarts = sum(1 for s in self.starts if s.kind == "restart" and s.instance == index)
        return f"{stem}.log" if kind == "start" else f"{stem}.restart-{restarts + 1}.log"

    def _spawn(self, instance: _Instance) -> ServerHandle:
        assert instance.log_path is not None
        if self.embedded:
            extra = ["--no-warm-up"] if self.config.mode == "cold" else []
            extra += self.config.server_args
            options: dict[str, Any] = dict(self.config.embedded_options)
            options.pop("instances", None)  # the supervisor's, not the server's
            return spawn_server(instance.port, extra_args=extra, log_path=instance.log_path, **options)
        assert self.config.start_command is not None
        log = instance.log_path.open("wb")
        try:
            # an argv list and no shell: `;`, `$(...)` and newlines in an argument reach the program as text
            process = subprocess.Popen(
                list(self.config.start_command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: killed whole, and out of the terminal's Ctrl-C
            )
        except OSError as exc:  # no such program, not executable, an argument too long for the kernel
            log.write(f"{exc}\n".encode())
            log.close()
            raise TargetStartError(f"the start command could not run: {exc.strerror or exc}") from None
        return ServerHandle(process, instance.port, log)

    def _wait_ready(
        self, handle: ServerHandle, instance: _Instance, clock: float, cancelled: Callable[[], bool]
    ) -> tuple[float | None, float | None]:
        """(port open, ready) in seconds from `clock`; (…, None) when cancelled. Raises TargetStartError
        when the process exits or the time runs out (the process is then stopped; its log stays)."""
        port_open_s: float | None = None
        deadline = clock + self.config.ready_timeout_s
        while not cancelled():
            if handle.process.poll() is not None:
                code = handle.process.returncode
                self._fail(instance, f"the target exited with code {code} while starting")
            if port_open_s is None and self._port_open(instance):
                port_open_s = time.monotonic() - clock
            if port_open_s is not None and self.ready(instance.index):
                return port_open_s, time.monotonic() - clock
            if time.monotonic() > deadline:
                self._fail(instance, f"the target was not ready within {self.config.ready_timeout_s:g}s")
            time.sleep(POLL_S)
        return port_open_s, None

    def _fail(self, instance: _Instance, why: str) -> None:
        self.kill(instance=instance.index)
        instance.killed = False
        name = instance.log_path.name if instance.log_path else "target.log"
        raise TargetStartError(f"{why} (its output: logs/{name})")

    def _port_open(self, instance: _Instance) -> bool:
        host = urlsplit(self.base_url).hostname or "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            return probe.connect_ex((host, instance.port)) == 0

    def ready(self, index: int = 0) -> bool:
        """The embedded server: /health is 200 (every worker up). Any other target: it answers HTTP."""
        base = self.url_of(index)
        url = base + "/health" if self.embedded else base + "/"
        try:
            status = httpx.get(url, timeout=1.0).status_code
        except httpx.HTTPError:
            return False
        return status == 200 if self.embedded else True

    # --- the run folder ----------------------------------------------------------------------------

    def _record(self, event: TargetStart) -> None:
        with self._lock:  # instances start on threads of their own, and chaos restarts on the scheduler's
            self.starts.append(event)
            self.folder.mkdir(parents=True, exist_ok=True)
            with (self.folder / STARTS_FILE).open("a") as handle:
                handle.write(json.dumps(asdict(event)) + "\n")

    def worker_status(self) -> list[dict[str, Any]] | None:
        """The embedded server's workers as its /health names them (pid, up, restarts); None for a target
        without that /health, or one that does not answer."""
        if not self.embedded:
            return None
        try:
            body = httpx.get(self.base_url + "/health", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return None
        workers = body.get("workers") if isinstance(body, dict) else None
        return workers if isinstance(workers, list) else None

    def note_workers(self) -> None:
        """Appends the workers' state (their own restarts included) to target/workers.jsonl."""
        if (workers := self.worker_status()) is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / WORKERS_FILE).open("a") as handle:
            handle.write(json.dumps({"t": time.time(), "pid": self.pid, "workers": workers}) + "\n")

    # --- stopping ----------------------------------------------------------------------------------

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (a ready server drains its in-flight requests; one still starting stops whole at
        once), then SIGKILL to whatever of its group remains; every instance."""
        for instance in self.instances:
            if instance.handle is not None:
                instance.handle.stop(timeout_s)

    def __enter__(self) -> TargetSupervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_starts(run_dir: Path) -> list[TargetStart]:
    """The run folder's target starts (an older run has none)."""
    path = run_dir / TARGET_DIR / STARTS_FILE
    if not path.is_file():
        return []
    return [TargetStart(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def check_start_command(command: Sequence[str] | None, allow_exec: bool) -> str | None:
    """Why a scenario's start command may not run (decisions.md: only with --allow-exec), or None."""
    if command is None or allow_exec:
        return None
    return (
        "the scenario's target.start_command runs a program, which needs --allow-exec on the command line "
        "(a scenario from an untrusted source can then never run one); nothing was sent"
    )
