"""The fault scheduler: carries out the scenario's `faults:` on schedule and writes each occurrence to
`faults.jsonl` (results/faults.py's `FaultEvent`, the one format).

Each fault runs on a thread of its own (its occurrences never overlap: the compiler refuses that), so a
kill whose restart waits for the models to load never delays another fault, and the runner's poll loop is
never blocked. Planned times are seconds from the engine's own test start (the clock stage windows use);
until the engine has said when that was, a fault waits, at most `ORIGIN_WAIT_S`, then counts from when the
scheduler started. Every wait is bounded and ends at once when the run stops; a fault that cannot be
applied is an event with outcome "error: ...", never an exception in the run. Faults still active when the
run ends are lifted then and written with `cut_short`.

How each kind acts:
- `kill-target`: through the one target supervisor (run/target.py): the instance's process group gets the
  signal, stays down for `duration`, and is restarted on the same port (a cold start, timed in
  target/starts.jsonl); `ready` is when it answered ready. With `exec` (an external target, only under
  `--allow-exec`), the argv runs instead (no shell, bounded time and output, kept in
  `faults/<name>-<n>.log`), and `ready` is when the target answers HTTP again.
- network kinds: `FaultProxy.set_fault` / `clear_fault` on the runner's proxy (run/faultproxy.py).
- server-side kinds: the embedded server's `POST /admin/fault`, which takes the whole fault state at once,
  so the scheduler keeps the union of the active server faults and sends it to every instance.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from scenariokit.compile.ir import NETWORK_FAULTS, SERVER_FAULTS, Fault, Scenario
from scenariokit.processes import signal_group, wait_group_gone
from scenariokit.results.faults import FaultEvent, append_fault_event
from scenariokit.run.target import TargetSupervisor

FAULTS_DIR = "faults"
PROXY_FILE = "proxy.json"
ORIGIN_WAIT_S = 10.0  # for the engine's test start before the scheduler's own start stands in for it
EXEC_TIMEOUT_S = 60.0  # an exec fault's command (kubectl delete, docker restart) is killed after this
EXEC_LOG_BYTES = 1 << 20  # of its output kept; the rest is read and counted, not stored
ADMIN_TIMEOUT_S = 5.0
READY_POLL_S = 0.1
STOP_JOIN_S = 30.0  # for all fault threads together once the run stops: lifting is quick, a restart is cut
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM}
# The lowered parameters each network kind hands the proxy (a fault's params also hold other keys, such as
# its recovery band's, which the proxy refuses)
PROXY_PARAMS = {
    "latency": ("delay_s", "jitter_s"),
    "bandwidth": ("bytes_per_s",),
    "reset": ("share",),
    "hang": ("share",),
    "drop": ("share",),
    "packet-loss": ("share", "stall_s"),
}


class NetworkFaults(Protocol):
    """What the scheduler needs of the proxy (run/faultproxy.py's FaultProxy)."""

    def set_fault(self, name: str, kind: str, params: Any) -> None: ...

    def clear_fault(self, name: str) -> None: ...


class FaultFailed(Exception):
    """A fault could not be applied or lifted; its message becomes the event's outcome."""


def needs_proxy(scenario: Scenario) -> bool:
    """Any fault, or several embedded instances (the proxy is their round-robin front). A run with faults
    gets the proxy even when none acts through it: its request count does not come from the engine, so
    requests lost in an outage are counted (faults/proxy.json). An https target gets none (network faults
    are refused there; a kill's count is then the engine's alone)."""
    wanted = bool(scenario.faults) or scenario.target.instances > 1
    return wanted and not scenario.target.base_url.startswith("https://")


def needs_admin(scenario: Scenario) -> bool:
    return any(f.server_side for f in scenario.faults)


def check_faults(scenario: Scenario, base_url: str, allow_exec: bool) -> str | None:
    """Why the scenario's faults may not run (exit 2, before anything is sent), or None. The compiler
    checked the scenario; this checks what the command line decides: --allow-exec, and a --base-url."""
    if any(f.params.get("exec") for f in scenario.faults) and not allow_exec:
        names = ", ".join(f.name for f in scenario.faults if f.params.get("exec"))
        return (
            f"the fault(s) {names} run a program (`exec`), which needs --allow-exec on the command line "
            "(a scenario from an untrusted source can then never run one); nothing was sent"
        )
    if base_url.startswith("https://") and any(f.network for f in scenario.faults):
        return (
            "network faults go through the runner's TCP proxy, whose http URL replaces the target's; an "
            "https target's certificate and SNI would not match it, so they are refused; nothing was sent"
        )
    return None


# --- server-side faults: one state, sent whole ----------------------------------------------------


class ServerFaults:
    """The union of the active server-side faults, sent as one state to each instance's admin endpoint
    (which replaces its whole fault state): the scenario's own `embedded.fault` option stays under them."""

    def __init__(self, admin_urls: Callable[[], Sequence[str]], base: str | None) -> None:
        self.admin_urls = admin_urls
        self.base = dict(part.split("=", 1) for part in (base or "").split(",") if "=" in part)
        self.active: dict[str, Fault] = {}
        self.lock = threading.Lock()

    def apply(self, fault: Fault) -> dict[str, Any]:
        with self.lock:
            self.active[fault.name] = fault
            return self._send()

    def lift(self, fault: Fault) -> dict[str, Any]:
        with self.lock:
            self.active.pop(fault.name, None)
            return self._send()

    def state(self) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.base)
        for fault in self.active.values():
            if fault.kind == "server-latency":
                delay = float(fault.params["delay_s"])
                body["latency"] = f"{max(delay, _seconds(body.get('latency'))):g}s"
            elif fault.kind == "server-errors":
                body["error_rate"] = max(float(fault.params["share"]), float(body.get("error_rate", 0)))
            elif fault.kind == "stall-worker":
                body["stall_worker"] = True
        return body

    def _send(self) -> dict[str, Any]:
        body, answers = self.state(), []
        for url in self.admin_urls():
            try:
                response = httpx.post(url + "/admin/fault", json=body, timeout=ADMIN_TIMEOUT_S)
            except httpx.HTTPError as exc:
                raise FaultFailed(f"the admin endpoint {url} did not answer: {type(exc).__name__}") from None
            if response.status_code != 200:
                raise FaultFailed(f"the admin endpoint {url} answered {response.status_code}")
            answers.append(response.json())
        return {"state": body, "answers": answers}


def _seconds(text: Any) -> float:
    """A server fault option's latency (`200ms`, `0.2s`), as the server reads it; 0 when absent."""
    if not text:
        return 0.0
    text = str(text)
    for unit, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


# --- exec: a user's command, bounded ---------------------------------------------------------------


def run_exec(argv: Sequence[str], log_path: Path, timeout_s: float, stop: threading.Event) -> dict[str, Any]:
    """Runs argv (no shell) in its own process group; keeps the first EXEC_LOG_BYTES of its output in
    `log_path`. Killed (the whole group) past `timeout_s` or when the run stops. Returns facts for the
    event's detail; raises FaultFailed when it could not run, timed out or exited non-zero."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise FaultFailed(f"exec could not run: {exc.strerror or exc}") from None
    kept, dropped, why = _drain(process, log_path, time.monotonic() + timeout_s, stop)
    if why is not None:
        signal_group(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(5)
    wait_group_gone(process.pid, 2.0)
    facts = {"log": f"{FAULTS_DIR}/{log_path.name}", "returncode": process.returncode, "pid": process.pid}
    facts |= {"output_bytes": kept + dropped, "output_dropped_bytes": dropped}
    if why is not None:
        raise FaultFailed(f"exec {why}; killed (its output: {facts['log']})")
    if process.returncode != 0:
        raise FaultFailed(f"exec exited with code {process.returncode} (its output: {facts['log']})")
    return facts


def _drain(
    process: subprocess.Popen[bytes], log_path: Path, deadline: float, stop: threading.Event
) -> tuple[int, int, str | None]:
    """Copies the process's output to the log until it closes; (kept, dropped, why it was cut or None)."""
    assert process.stdout is not None
    kept = dropped = 0
    with log_path.open("wb") as log, selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            if stop.is_set():
                return kept, dropped, "was still running when the run ended"
            left = deadline - time.monotonic()
            if left <= 0:
                return kept, dropped, f"ran past {EXEC_TIMEOUT_S:g}s"
            if not selector.select(min(left, 0.2)):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                return kept, dropped, None
            room = max(0, EXEC_LOG_BYTES - kept)
            log.write(chunk[:room])
            kept, dropped = kept + min(room, len(chunk)), dropped + max(0, len(chunk) - room)


# --- the scheduler -------------------------------------------------------------------------------


@dataclass
class FaultTargets:
    """What faults act on: the supervisor (kill-target on a target the runner started), the proxy
    (network faults), the target's base URL (exec's readiness check)."""

    supervisor: TargetSupervisor | None
    proxy: NetworkFaults | None
    base_url: str
    embedded_fault: str | None = None  # the scenario's `target.embedded.fault` option
    ready_timeout_s: float = 120.0


@dataclass
class _Occurrence:
    """One occurrence being carried out: what its event will say."""

    fault: Fault
    n: int
    planned_s: float
    start: float = 0.0
    ready: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class FaultScheduler:
    """A context manager: on entry one thread per fault starts; on exit (the run's end) every thread is
    told to stop, lifts what is active, writes its cut-short event, and is joined (bounded)."""

    def __init__(
        self,
        faults: Sequence[Fault],
        run_dir: Path,
        targets: FaultTargets,
        origin: Callable[[], float | None],
        seed: int = 0,
    ) -> None:
        self.faults = list(faults)
        self.run_dir = run_dir
        self.targets = targets
        self.origin = origin
        self.seed = seed
        self.stop_event = threading.Event()
        self.server = ServerFaults(self._admin_urls, targets.embedded_fault)
        self._threads: list[threading.Thread] = []
        self._origin_s: float | None = None
        self._origin_lock = threading.Lock()
        self._started = time.time()
        self._write_lock = threading.Lock()

    def __enter__(self) -> FaultScheduler:
        self._started = time.time()
        for fault in self.faults:
            thread = threading.Thread(target=self._run_fault, args=(fault,), name=f"fault-{fault.name}")
            thread.daemon = True  # never keeps a crashed runner alive; stop() joins them in order
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + STOP_JOIN_S
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    # --- the clock ---------------------------------------------------------------------------------

    def _origin_unix(self) -> float | None:
        """The engine's test start, once known; the scheduler's start once ORIGIN_WAIT_S has passed
        without it; None while waiting (or once the run stopped)."""
        while not self.stop_event.is_set():
            with self._origin_lock:
                if self._origin_s is None:
                    self._origin_s = self.origin()
                    if self._origin_s is None and time.time() - self._started > ORIGIN_WAIT_S:
                        self._origin_s = self._started
                if self._origin_s is not None:
                    return self._origin_s
            self.stop_event.wait(0.05)
        return None

    def _wait_until(self, unix: float) -> bool:
        """Sleeps until `unix` (True) or until the run stops (False)."""
        return not self.stop_event.wait(max(0.0, unix - time.time()))

    # --- one fault ---------------------------------------------------------------------------------

    def _run_fault(self, fault: Fault) -> None:
        origin = self._origin_unix()
        if origin is None:
            return
        rng = random.Random(f"{self.seed}/{fault.name}/instance")  # `instance: random`, the same every run
        for n, planned in enumerate(fault.times):
            if not self._wait_until(origin + planned):
                return
            occurrence = _Occurrence(fault, n, planned, start=time.time())
            try:
                self._occur(occurrence, rng)
            except Exception as exc:  # a fault that fails is an event, never a crashed run
                why = str(exc) if isinstance(exc, FaultFailed) else f"{type(exc).__name__}: {exc}"
                self._write(occurrence, time.time(), f"error: {why}", cut_short=False)

    def _occur(self, occurrence: _Occurrence, rng: random.Random) -> None:
        fault = occurrence.fault
        if fault.kind == "kill-target":
            if fault.params.get("exec"):
                self._exec(occurrence)
            else:
                self._kill(occurrence, rng)
            return
        self._apply(fault, occurrence)
        occurrence.start = time.time()
        lasted = self._wait_until(occurrence.start + fault.duration_s)
        self._lift(fault)
        self._write(occurrence, time.time(), "ok", cut_short=not lasted)

    def _apply(self, fault: Fault, occurrence: _Occurrence) -> None:
        if fault.kind in NETWORK_FAULTS:
            if self.targets.proxy is None:
                raise FaultFailed("no proxy runs in front of the target")
            params = {key: fault.params[key] for key in PROXY_PARAMS[fault.kind] if key in fault.params}
            self.targets.proxy.set_fault(fault.name, fault.kind, params)
        elif fault.kind in SERVER_FAULTS:
            answers = self.server.apply(fault)["answers"]
            if fault.kind == "stall-worker":
                occurrence.detail["stalled_worker_pids"] = [a.get("stalled_worker_pid") for a in answers]
        else:
            raise FaultFailed(f"unknown fault kind {fault.kind}")

    def _lift(self, fault: Fault) -> None:
        if fault.kind in NETWORK_FAULTS and self.targets.proxy is not None:
            self.targets.proxy.clear_fault(fault.name)
        elif fault.kind in SERVER_FAULTS:
            self.server.lift(fault)

    def _kill(self, occurrence: _Occurrence, rng: random.Random) -> None:
        """Kill, stay down for the duration, restart on the same port; `ready` when it answered ready."""
        supervisor = self.targets.supervisor
        if supervisor is None:
            raise FaultFailed("the runner did not start this target, so it cannot kill it")
        fault = occurrence.fault
        chosen = fault.params.get("instance", "random")
        index = rng.randrange(len(supervisor.instances)) if chosen == "random" else int(chosen)
        sig = SIGNALS[str(fault.params.get("signal", "SIGKILL"))]
        victim = supervisor.instances[index]
        occurrence.detail |= {
            "instance": index,
            "port": victim.port,
            "pid": victim.handle and victim.handle.pid,
        }
        occurrence.start = time.time()
        supervisor.kill(sig, instance=index)
        occurrence.detail["down_s"] = time.time() - occurrence.start  # a SIGTERM drains first
        lasted = self._wait_until(occurrence.start + fault.duration_s)
        end = time.time()
        if not lasted:  # the run ended while it was down: no restart, the supervisor's stop is enough
            self._write(occurrence, end, "ok", cut_short=True)
            return
        started = supervisor.restart(cancelled=self.stop_event.is_set, instance=index)
        if started.time_to_ready_s is not None:
            occurrence.ready = started.t + started.time_to_ready_s
        occurrence.detail["restart_pid"] = started.pid
        self._write(occurrence, end, "ok", cut_short=occurrence.ready is None)

    def _exec(self, occurrence: _Occurrence) -> None:
        """An external target's kill command; `ready` when the target answers HTTP again."""
        fault = occurrence.fault
        log = self.run_dir / FAULTS_DIR / f"{fault.name}-{occurrence.n}.log"
        occurrence.start = time.time()
        argv = [str(arg) for arg in fault.params["exec"]]  # type: ignore[union-attr]
        occurrence.detail |= run_exec(argv, log, EXEC_TIMEOUT_S, self.stop_event)
        end = time.time()
        occurrence.ready = self._answers_again(end + max(fault.duration_s, 0.0))
        self._write(occurrence, end, "ok", cut_short=occurrence.ready is None and self.stop_event.is_set())

    def _answers_again(self, not_before: float) -> float | None:
        if not self._wait_until(not_before):
            return None
        deadline = time.monotonic() + self.targets.ready_timeout_s
        while time.monotonic() < deadline and not self.stop_event.is_set():
            try:
                httpx.get(self.targets.base_url + "/", timeout=1.0)
                return time.time()
            except httpx.HTTPError:
                self.stop_event.wait(READY_POLL_S)
        return None

    def _admin_urls(self) -> list[str]:
        supervisor = self.targets.supervisor
        if supervisor is None or not supervisor.embedded:
            return []
        return [supervisor.url_of(i) for i in range(len(supervisor.instances))]

    # --- the timeline ------------------------------------------------------------------------------

    def _write(self, occurrence: _Occurrence, end: float, outcome: str, cut_short: bool) -> None:
        fault = occurrence.fault
        event = FaultEvent(
            name=fault.name,
            kind=fault.kind,
            occurrence=occurrence.n,
            planned_s=occurrence.planned_s,
            start=occurrence.start,
            end=max(end, occurrence.start),
            ready=occurrence.ready,
            params={k: list(v) if isinstance(v, tuple) else v for k, v in fault.params.items()},
            outcome=outcome,
            cut_short=cut_short,
            detail=occurrence.detail,
        )
        with self._write_lock:
            append_fault_event(self.run_dir, event)


@dataclass(frozen=True)
class ChaosRun:
    """What the engine run needs for faults: the URL the engine sends to (the proxy's, or the target's) and
    what the scheduler acts on."""

    engine_url: str
    targets: FaultTargets
    faults: tuple[Fault, ...]
    seed: int = 0

    def scheduler(self, run_dir: Path, origin: Callable[[], float | None]) -> FaultScheduler:
        return FaultScheduler(self.faults, run_dir, self.targets, origin, self.seed)


# --- the proxy in front of the target --------------------------------------------------------------


@contextmanager
def fault_proxy(
    scenario: Scenario, run_dir: Path, base_url: str, supervisor: TargetSupervisor | None
) -> Iterator[tuple[str, Any]]:
    """Yields (the URL the engine sends to, the proxy or None). With a network fault or several embedded
    instances, a FaultProxy on loopback forwards to the target (round-robin over the instances); its
    counts go to faults/proxy.json when it stops."""
    if not needs_proxy(scenario):
        yield base_url, None
        return
    from scenariokit.run.faultproxy import FaultProxy  # only runs that need it load it

    if supervisor is not None and supervisor.embedded:
        upstreams = [("127.0.0.1", port) for port in supervisor.ports]
    else:
        parts = urlsplit(base_url)
        upstreams = [(parts.hostname or "127.0.0.1", parts.port or 80)]
    proxy = FaultProxy(upstreams, seed=scenario.seed)
    port = proxy.start()
    try:
        yield f"http://127.0.0.1:{port}{urlsplit(base_url).path}", proxy  # a path prefix stays
    finally:
        proxy.stop()
        folder = run_dir / FAULTS_DIR
        folder.mkdir(exist_ok=True)
        counts = {"upstreams": [f"{h}:{p}" for h, p in upstreams], "counts": proxy.counts()}
        (folder / PROXY_FILE).write_text(json.dumps(counts, indent=2) + "\n")
