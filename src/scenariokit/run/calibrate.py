"""`scenariokit calibrate`: this machine's cost of load, per engine, for `plan --capacity`.

Each engine runs a small closed-model scenario against a fast local server (nginx on loopback when it is on
PATH, else a small threaded HTTP server of our own) at two user counts. From each run it keeps the requests
sent, the CPU seconds its process tree used and its peak resident memory (summed over the tree, sampled
every SAMPLE_S). Requests per CPU second is the rate one core carries; the memory of the two runs gives a
line, so that the per-user cost is a slope and the engine's own base is apart from it.

The result is JSON at `calibration_path()` ($XDG_CACHE_HOME/scenariokit/calibration.json, by default
~/.cache/...), with the host's facts and the date, so that a file from another machine or an old one is
named as such when it is read (`load_calibration`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import yaml

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import get_engine
from scenariokit.engines.base import LaunchPlan
from scenariokit.ports import free_port
from scenariokit.processes import signal_group
from scenariokit.run.hardware import cpu_model
from scenariokit.run.nginx import NginxConfig, NginxServer

FORMAT = 1
SAMPLE_S = 0.1
STALE_DAYS = 30  # an older calibration is warned about: engines, kernels and hosts change
USERS = (40, 240)  # the two user counts: far enough apart that the memory slope stands above the noise
THINK_S = 0.2  # each user's pause: 240 users ask ~1,200 requests/s, within reach of either engine here
MAX_SECONDS = 600.0
GRACE_S = 30.0  # past the curve's end before the engine is stopped (its start and its users' last task)


class CalibrationError(Exception):
    """A calibration file that cannot be used (not JSON, not ours, a figure missing or not a number)."""


@dataclass(frozen=True)
class Point:
    """One measured run."""

    users: int
    think_s: float
    seconds: float  # the hold, the part measured
    requests: int
    cpu_s: float
    peak_rss_bytes: int


@dataclass(frozen=True)
class EngineCost:
    """One engine's cost on the calibrated host."""

    engine: str
    version: str
    requests_per_core_s: float  # requests one fully used core sends in a second
    memory_base_bytes: float  # one engine instance with no users
    memory_per_user_bytes: float
    points: tuple[Point, ...] = ()


@dataclass(frozen=True)
class Calibration:
    created: str  # ISO 8601, UTC
    host: dict[str, Any]
    engines: dict[str, EngineCost] = field(default_factory=dict)

    def as_json(self) -> str:
        data = {"format": FORMAT, "created": self.created, "host": self.host}
        data["engines"] = {name: asdict(cost) for name, cost in sorted(self.engines.items())}
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


def calibration_path(environ: dict[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME/scenariokit/calibration.json (XDG's default: ~/.cache)."""
    env = os.environ if environ is None else environ
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "scenariokit" / "calibration.json"


def host_facts() -> dict[str, Any]:
    return {
        "hostname": platform.node() or None,
        "cpu_model": cpu_model(),
        "cpu_threads": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
    }


# --- reading -------------------------------------------------------------------------------------


def load_calibration(path: Path, now: dt.datetime | None = None) -> tuple[Calibration, list[str]]:
    """The calibration in `path` and warnings: older than STALE_DAYS, or measured on another host."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read a calibration: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CalibrationError(f"{path}: not a scenariokit calibration (format {FORMAT})")
    try:
        calibration = Calibration(
            created=str(data["created"]),
            host=dict(data["host"]),
            engines={str(k): _engine_cost(v) for k, v in dict(data["engines"]).items()},
        )
        created = dt.datetime.fromisoformat(calibration.created)
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{path}: a figure is missing or not a number: {exc}") from None
    return calibration, _warnings(path, calibration, created, now or dt.datetime.now(dt.UTC))


def _engine_cost(data: Any) -> EngineCost:
    cost = EngineCost(
        engine=str(data["engine"]),
        version=str(data["version"]),
        requests_per_core_s=_figure(data["requests_per_core_s"], low=1.0, high=1e7),
        memory_base_bytes=_figure(data["memory_base_bytes"], low=0.0, high=2.0**40),
        memory_per_user_bytes=_figure(data["memory_per_user_bytes"], low=1.0, high=2.0**30),
        points=tuple(Point(**p) for p in data.get("points", ())),
    )
    return cost


def _figure(value: Any, low: float, high: float) -> float:
    """A number from `low` to `high`: a plan divides by these, and a figure far outside what any machine
    measures (1e-300 requests a core) would plan a fleet of 10^300 machines."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    if not low <= value <= high:  # also NaN
        raise ValueError(f"{value!r} is out of range ({low:g} to {high:g})")
    return float(value)


def _warnings(path: Path, calibration: Calibration, created: dt.datetime, now: dt.datetime) -> list[str]:
    said = []
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    age = (now - created).days
    if age > STALE_DAYS:
        said.append(f"{path} is {age} days old: run `scenariokit calibrate` again")
    here = host_facts()
    differ = [
        k for k in ("cpu_model", "cpu_threads", "memory_bytes") if calibration.host.get(k) != here.get(k)
    ]
    if differ:
        said.append(
            f"{path} was measured on another host ({', '.join(differ)} differ): its figures are that "
            "host's, not this one's"
        )
    return said


# --- measuring -----------------------------------------------------------------------------------


def calibrate(engines: list[str], seconds: float, users: tuple[int, int] = USERS) -> Calibration:
    """Measures each engine at both user counts against one local server."""
    with local_server() as url:
        costs = {name: measure_engine(name, url, seconds, users) for name in engines}
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    return Calibration(created=created, host=host_facts(), engines=costs)


def measure_engine(engine: str, url: str, seconds: float, users: tuple[int, int]) -> EngineCost:
    points = tuple(measure(engine, url, n, THINK_S, seconds) for n in users)
    if any(p.requests == 0 or p.cpu_s <= 0 for p in points):
        # nothing to divide by: the engine did not start or could not reach the server
        raise RuntimeError(f"{engine} sent no request while calibrating ({points})")
    return cost_from_points(engine, get_engine(engine).version(), points)


def cost_from_points(engine: str, version: str, points: tuple[Point, ...]) -> EngineCost:
    """Requests per CPU second over every run; memory as the line through the lowest and highest count
    (a slope below 1 KiB a user, noise on a small count, is held at 1 KiB: a user is never free)."""
    requests = sum(p.requests for p in points)
    cpu = sum(p.cpu_s for p in points)
    low, high = min(points, key=lambda p: p.users), max(points, key=lambda p: p.users)
    span = high.users - low.users
    slope = (high.peak_rss_bytes - low.peak_rss_bytes) / span if span else 0.0
    slope = max(slope, 1024.0)
    base = max(0.0, low.peak_rss_bytes - slope * low.users)
    return EngineCost(engine, version, requests / cpu if cpu > 0 else 0.0, base, slope, points)


def calibration_scenario(url: str, users: int, think_s: float, seconds: float) -> dict[str, Any]:
    """A closed model that holds `users` for `seconds` after a 1 s ramp, one GET."""
    return {
        "version": 1,
        "name": f"calibrate-{users}",
        "target": {"kind": "http", "base_url": url, "timeout": "10s"},
        "load": {
            "curve": f"ramp(0, {users}, 1s) -> hold({seconds:g}s) as measured",
            "think_time": f"constant({think_s * 1000:g}ms)",
            "expected_latency": "1ms",
        },
        "requests": {"get": {"path": "/"}},
    }


def measure(engine: str, url: str, users: int, think_s: float, seconds: float) -> Point:
    with tempfile.TemporaryDirectory(prefix="sk-calibrate-") as tmp:
        folder = Path(tmp)
        source = folder / "calibrate.yaml"
        source.write_text(yaml.safe_dump(calibration_scenario(url, users, think_s, seconds)), "utf-8")
        requests, cpu_s, peak = run_measured(source, engine, url, folder)
    return Point(users, think_s, seconds, requests, round(cpu_s, 3), peak)


def run_measured(source: Path, engine_name: str, url: str, folder: Path) -> tuple[int, float, int]:
    """Runs a scenario file's compiled script with the stock engine, as `run` would, and returns its
    records, the CPU seconds of the engine's process tree and the tree's peak resident memory."""
    scenario = load_scenario(source).scenario
    engine = get_engine(engine_name)
    script = engine.compile(scenario).write(folder / "script")
    raw = folder / "raw"
    raw.mkdir()
    limit = scenario.load.duration_s + GRACE_S
    plan = LaunchPlan(script, url, raw, max_run_s=limit, open_model=scenario.load.model == "open")
    launch = engine.launch(plan)
    with (folder / "engine.log").open("wb") as log:
        process = subprocess.Popen(
            launch.argv, env=launch.env, stdout=log, stderr=log, cwd=script.parent, start_new_session=True
        )
        cpu_s, peak = _watch(process, limit)
    reader = engine.reader(raw, launch)
    count = 0
    while batch := reader.poll():
        count += len(batch)
    return count, cpu_s, peak


def _watch(process: subprocess.Popen[bytes], limit_s: float) -> tuple[float, int]:
    """Samples the process tree until it ends (stopped at `limit_s`): CPU seconds (each process's last
    reading: a process that ends keeps what it had used) and the peak of the summed resident memory."""
    cpu: dict[int, float] = {}
    peak = 0
    deadline = time.monotonic() + limit_s
    root = psutil.Process(process.pid)
    while process.poll() is None:
        if time.monotonic() > deadline:
            signal_group(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(f"the engine ran past {limit_s:.0f} s")
        rss = 0
        for member in _tree(root):
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                cpu[member.pid] = times.user + times.system
                rss += member.memory_info().rss
        peak = max(peak, rss)
        time.sleep(SAMPLE_S)
    return sum(cpu.values()), peak


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


# --- the local server ----------------------------------------------------------------------------


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx

    def do_GET(self) -> None:  # http.server's name for it
        body = b'{"ok": true}\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """A fast server on 127.0.0.1 for the length of the calibration: nginx where it is installed (it costs
    the generator's cores least), else Python's threaded server."""
    if shutil.which("nginx"):
        with _nginx() as url:
            yield url
        return
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _nginx() -> Iterator[str]:
    with NginxServer(NginxConfig(free_port(), worker_connections=8192)) as server:
        yield server.url
