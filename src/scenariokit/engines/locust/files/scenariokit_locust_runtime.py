"""scenariokit's runtime for generated locustfiles (copied next to the script; needs only Locust).

It renders the compiler's parsed templates with data, sends each request through the user's
FastHttpSession, judges it against its `expect`, measures what Locust does not (TTFB, TTFT and inter-token
gaps of streamed chat answers, exact latency), and writes one JSON line per request for scenariokit's
runner.

Records: when SCENARIOKIT_RESULTS_DIR is set, each process appends to `records-<pid>-<seq>.jsonl` there,
flushed every 0.5 s and at exit; once a file holds SCENARIOKIT_RAW_ROTATE_BYTES, the next flush starts
`<seq + 1>` (the runner deletes a file whose successor exists once it has read it and stored its records
in Parquet, so the raw folder stays bounded however long the run). One JSON array per request, its fields
in the order of RECORD_FIELDS (an array encodes and decodes in less than half the time of an object, which
matters at thousands of requests/s):

    [t: start unix s, intended: intended start unix s or null, name: str, stage: stage label,
     status: int (0 = no response), ok: bool, error: str or null, latency: s, ttfb: s or null,
     ttft: s or null, itl: [s, ...] or null, tokens: int or null, bytes: int, users: level,
     code: str, message: str or null]

error is one of the kinds of the script's FAILURES table (a failure without a response: connection_refused,
timeout, ...), http_<code>, wrong_answer, bad_stream, other (scenariokit/engines/outcomes.py). code and
message come only with a failure the HTTP client raised (a success's array ends at users): the exception's
class name, and its message cleaned (sample_message: secrets redacted, control characters out, cut short)
on the first record of each (request, kind, code) in this process, null after.

The test's start is written once as `{"test_start": unix s}` (stage windows are measured from it). An
open-model arrival that no user could start in time is written as
`{"dropped": 1, "t": intended unix s, "stage": label}` and is not sent.

Open model: Locust has no arrival-rate executor, so this module makes one. A fixed pool of users shares one
schedule of intended start times, computed by integrating the piecewise-linear rate curve (evenly spaced
arrivals, like k6's ramping-arrival-rate). A user takes the next arrival, sleeps until it is due, and
sends; its record keeps the intended time, so latency can be measured from it (no coordinated omission).
An arrival taken more than DROP_AFTER_S late (no user was free) is dropped and counted. With several Locust
processes each process takes every n-th arrival (its worker index of the worker count).
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import json
import math
import os
import random
import re
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import events

DROP_AFTER_S = 1.0
FLUSH_EVERY_S = 0.5
RAW_ROTATE_BYTES = 16 << 20  # the runner's default (engines/records.py); its environment wins
# a failure's sample message (scenariokit/engines/outcomes.py, sample_message, holds both runtimes to it)
MESSAGE_CHARS = 200
REDACTED = "[redacted]"
SECRET_MIN_CHARS = 4
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Test-only: seconds added to this process's wall clock, standing in for a host whose clock is off (the
# distributed test shifts one worker's and checks that the master corrects its records; docs/distributed.md).
CLOCK_SHIFT_ENV = "SCENARIOKIT_CLOCK_SHIFT_S"
_CLOCK_SHIFT = float(os.environ.get(CLOCK_SHIFT_ENV) or 0.0)


def _shifted_time() -> float:
    return time.time() + _CLOCK_SHIFT


# the runtime's wall clock (unix s): time.time itself unless shifted, so the hot path pays no call more
now = _shifted_time if _CLOCK_SHIFT else time.time
# The script's FAILURES table: (kind, exception class names, lower-case message fragments), first match.
Failures = list[tuple[str, tuple[str, ...], tuple[str, ...]]]


# --- templates ------------------------------------------------------------------------------------
# The compiler parsed every template (compile/ir.py): here a template is a tuple of parts, each literal
# text, ("data", data set, field) or ("env", NAME); any other string is sent as it is. A JSON body is a
# tree whose strings may be such tuples (JSON has no tuples, so one is never data). `row` holds the one
# record of each data set the request reads.


def render(parts: tuple[Any, ...], row: dict[str, dict[str, str]]) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif part[0] == "env":
            out.append(os.environ.get(part[1], ""))
        else:
            out.append(row[part[1]][part[2]])
    return "".join(out)


def render_text(value: Any, row: dict[str, dict[str, str]]) -> Any:
    return render(value, row) if isinstance(value, tuple) else value


def render_json(value: Any, row: dict[str, dict[str, str]]) -> Any:
    if isinstance(value, tuple):
        return render(value, row)
    if isinstance(value, list):
        return [render_json(v, row) for v in value]
    if isinstance(value, dict):
        return {k: render_json(v, row) for k, v in value.items()}
    return value


def env_values(value: Any) -> set[str]:
    """The environment values a template tree reads (what a failure's message must not quote)."""
    if isinstance(value, tuple):
        return {
            os.environ.get(part[1], "") for part in value if not isinstance(part, str) and part[0] == "env"
        }
    if isinstance(value, list):
        return set().union(*(env_values(v) for v in value))
    if isinstance(value, dict):
        return set().union(*(env_values(v) for v in value.values()))
    return set()


@dataclass(frozen=True)
class DataSet:
    name: str
    pick: str
    records: list[dict[str, str]]
    split: str | None = None  # "workers": each generator of a distributed run uses every n-th record

    @classmethod
    def load(cls, path: Path) -> DataSet:
        payload = json.loads(path.read_text(encoding="utf-8"))
        return cls(payload["name"], payload["pick"], payload["records"], payload.get("split"))

    def share(self, index: int, count: int) -> list[dict[str, str]]:
        """The records generator `index` of `count` uses: every one, or with `split: workers` records
        index, index + count, ... (all of them where there are fewer records than generators)."""
        if self.split != "workers" or count <= 1:
            return self.records
        return self.records[index % count :: count] or self.records


# --- the scenario as data -------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One kind of request; its strings may be templates (see render), `datasets` those they read."""

    name: str
    method: str
    path: Any
    headers: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    body: Any = None
    datasets: tuple[str, ...] = ()
    chat: bool = False
    stream: bool = False
    expect_status: tuple[int, ...] = ()
    expect_contains: Any = None
    timeout: float = 60.0


@dataclass(frozen=True)
class Sent:
    """A request rendered: what goes on the wire (JSON as text, passed as data, so that Locust's client
    adds no header of its own: the compiled headers are all a request sends) and the answer it expects."""

    path: str
    headers: dict[str, str]
    body: str | None
    contains: str | None

    @classmethod
    def of(cls, request: Request, row: dict[str, dict[str, str]]) -> Sent:
        headers = {name: render_text(value, row) for name, value in request.headers.items()}
        if request.json is not None:
            body = json.dumps(render_json(request.json, row))
        else:
            body = render_text(request.body, row)
        contains = render_text(request.expect_contains, row)
        return cls(render_text(request.path, row), headers, body, contains)


@dataclass(frozen=True)
class Stage:
    """A row of the compiler's stage table (compile/ir.py, StageTable): [start_s, end_s) from the test's
    start (empty for an instant jump), the level moving from `start` to `end`."""

    label: str
    kind: str
    start_s: float
    end_s: float
    start: float
    end: float

    def level_at(self, t: float) -> float:
        if self.end_s <= self.start_s:
            return self.end
        frac = min(max((t - self.start_s) / (self.end_s - self.start_s), 0.0), 1.0)
        return self.start + (self.end - self.start) * frac


def stage_index(stages: list[Stage], t: float) -> int:
    """The stage `t` s into the run: the first that lasts and is not over, else the last that lasts."""
    found = -1
    for i, stage in enumerate(stages):
        if stage.end_s > stage.start_s:
            found = i
            if t < stage.end_s:
                break
    return found


def stage_and_level(stages: list[Stage], t: float) -> tuple[str, float]:
    """The label of the stage `t` s into the run and the intended users or rate then: the stage's,
    interpolated; after the curve, where the curve ends (one walk of the stages: every record needs
    both)."""
    i = stage_index(stages, t)
    label = stages[i].label if i >= 0 else ""
    if i < 0 or t >= stages[-1].end_s:
        return label, stages[-1].end if stages else 0.0
    return label, stages[i].level_at(t)


class Scenario:
    """The compiled scenario's data, loaded once per process, plus the shared run state."""

    def __init__(
        self,
        script: str,
        *,
        name: str,
        base_url: str,
        stages: list[Stage],
        failures: Failures,
        datasets: list[str],
        seed: int,
        max_users: int = 0,
    ) -> None:
        here = Path(script).resolve().parent
        # the compiled script is deterministic byte for byte: a worker whose file differs compiled another
        # scenario (or the master's overrides: --duration, --rate, ...), and is refused by the master
        self.script_sha = hashlib.sha256(Path(script).read_bytes()).hexdigest()
        self.name = name
        self.base_url = os.environ.get("SCENARIOKIT_BASE_URL") or base_url
        self.stages = stages
        self.failures = failures
        self.seed = int(os.environ.get("SCENARIOKIT_SEED", seed))
        self.max_users = max_users
        self.datasets = {n: DataSet.load(here / "data" / f"{n}.json") for n in datasets}
        self.duration = stages[-1].end_s if stages else 0.0
        self.started_at: float | None = None
        self._sequential: dict[str, int] = {}
        self._share = (0, 1)  # this generator's index and the generators' count (a distributed run)
        self._records: dict[str, list[dict[str, str]]] = {}  # each data set's records this one uses
        self._users = 0
        self._arrivals: Iterator[float] | None = None
        self._fixed: dict[str, Sent] = {}
        self._env_secrets: dict[str, set[str]] = {}
        self._said: set[tuple[str, str, str]] = set()  # (request, kind, code) whose message was written
        self.recorder = Recorder(os.environ.get("SCENARIOKIT_RESULTS_DIR"))
        _RECORDERS.append(self.recorder)
        self.link: WorkerLink | MasterLink | None = None
        events.init.add_listener(self._on_init)
        events.test_start.add_listener(self._on_test_start)

    # -- time and stages ---------------------------------------------------------------------------

    def _on_init(self, environment: Any, **_: Any) -> None:
        """A distributed run: a worker with no results folder sends its records to the master; a master
        with one writes its workers' records there (the distribution section below)."""
        from locust.runners import MasterRunner, WorkerRunner

        runner = environment.runner
        results_dir = os.environ.get("SCENARIOKIT_RESULTS_DIR")
        if isinstance(runner, WorkerRunner):
            self.link = WorkerLink(runner, remote=not results_dir, script_sha=self.script_sha)
            if not results_dir:  # on another machine: its records go to the master
                self.recorder.link = self.link
        elif isinstance(runner, MasterRunner) and results_dir:
            self.link = MasterLink(runner, results_dir, self.script_sha)

    def _on_test_start(self, environment: Any, **_: Any) -> None:
        self.started_at = now()
        self.recorder.write({"test_start": self.started_at})
        # What Locust and this module built so far lives as long as the run: frozen out of the collector,
        # the full collections that thousands of requests/s bring on no longer walk it (docs/performance.md).
        gc.freeze()
        # A young collection walks every young object still alive (a request's in flight for each user);
        # every 7,000 allocations instead of 700 it walks about as many, a tenth as often, and cyclic
        # garbage waits a few hundred requests longer (docs/performance.md).
        gc.set_threshold(7000)
        # Distributed runs set SCENARIOKIT_WORKERS so that each worker sends its share of the arrivals.
        # a remote worker learns the count from the master's options (Locust sends expect_workers)
        options = environment.parsed_options
        announced = getattr(options, "expect_workers", 0) if isinstance(self.link, WorkerLink) else 0
        count = max(1, int(os.environ.get("SCENARIOKIT_WORKERS") or announced or 1))
        index = (getattr(environment.runner, "worker_index", 0) or 0) % count
        self._share = (index, count)
        self._records = {name: data.share(index, count) for name, data in self.datasets.items()}
        self._arrivals = arrival_times(self.stages, self.started_at, index, count)

    def elapsed(self) -> float:
        if self.started_at is None:
            self.started_at = now()
        return now() - self.started_at

    def fixed(self, request: Request) -> Sent:
        """A request that reads no data set, rendered once (its environment references do not change)."""
        found = self._fixed.get(request.name)
        if found is None:
            found = self._fixed[request.name] = Sent.of(request, {})
        return found

    def closed_tick(self, run_time: float, current_users: int) -> tuple[int, float] | None:
        """LoadTestShape.tick for a closed model: interpolated users, spawn rate that keeps up."""
        if run_time >= self.duration:
            return None
        stage = self.stages[stage_index(self.stages, run_time)]
        users = round(stage_and_level(self.stages, run_time)[1])
        slope = abs(stage.end - stage.start) / (stage.end_s - stage.start_s)
        return users, max(1.0, slope, abs(users - current_users))

    def open_tick(self, run_time: float) -> tuple[int, float] | None:
        """LoadTestShape.tick for an open model: the whole user pool, at once; arrivals pace the load."""
        if run_time >= self.duration:
            return None
        return self.max_users, float(max(1, self.max_users))

    def secrets(self, request: Request, sent: Sent) -> set[str]:
        """What a failure's message must not quote: the request's header values and the environment
        values any of its templates read."""
        env = self._env_secrets.get(request.name)
        if env is None:
            parts = [request.path, request.headers, request.json, request.body, request.expect_contains]
            env = self._env_secrets[request.name] = env_values(parts)
        return env | set(sent.headers.values())

    def first_message(self, name: str, kind: str, code: str, message: str) -> str | None:
        """The message on the first record of its (request, kind, code) in this process, else None."""
        key = (name, kind, code)
        if key in self._said:
            return None
        self._said.add(key)
        return message

    # -- per-user state ----------------------------------------------------------------------------

    def user_rng(self) -> random.Random:
        self._users += 1
        return random.Random(self.seed * 1_000_003 + self._users)

    def row(self, rng: random.Random, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
        """One record of each named data set, for one request (all its references read the same one)."""
        row = {}
        for name in names:
            data = self.datasets[name]
            records = self._records.get(name) or data.records
            if data.pick == "sequential":
                i = self._sequential.get(name, 0)
                self._sequential[name] = i + 1
                row[name] = records[i % len(records)]
            else:
                row[name] = rng.choice(records)
        return row

    def next_arrival(self) -> float | None:
        """Open model: the intended start of the next arrival this user may send, or None when done."""
        if self._arrivals is None:
            self._arrivals = arrival_times(self.stages, now(), 0, 1)
            self.started_at = self.started_at or now()
        for intended in self._arrivals:
            late = now() - intended
            if late <= DROP_AFTER_S:
                return intended
            stage, _ = stage_and_level(self.stages, intended - (self.started_at or intended))
            self.recorder.write({"dropped": 1, "t": intended, "stage": stage})
        return None


def arrival_times(stages: list[Stage], start: float, index: int, count: int) -> Iterator[float]:
    """Intended start times (unix s) of evenly spaced arrivals under a piecewise-linear rate curve.

    Arrival k happens when the integral of the rate reaches k. Within a stage the rate is r0 + b*t, so
    its integral is r0*t + b*t^2/2: a quadratic solved for each k. An instant jump integrates nothing.
    Process `index` of `count` takes every count-th arrival.
    """
    done = 0.0  # arrivals integrated before this stage
    k = 1
    for w in (stage for stage in stages if stage.end_s > stage.start_s):
        r0, duration = w.start, w.end_s - w.start_s
        slope = (w.end - w.start) / duration
        total = (w.start + w.end) / 2 * duration
        while k <= done + total + 1e-9:
            need = k - done
            if abs(slope) < 1e-12:
                t = need / r0 if r0 > 0 else duration
            else:
                disc = max(0.0, r0 * r0 + 2 * slope * need)
                t = (-r0 + math.sqrt(disc)) / slope
            if (k - 1) % count == index:
                yield start + w.start_s + min(max(t, 0.0), duration)
            k += 1
        done += total


# --- think time ----------------------------------------------------------------------------------


def exponential_wait(mean: float) -> Any:
    """A Locust wait_time with exponentially distributed pauses (Poisson-like users)."""
    return lambda user: random.expovariate(1.0 / mean) if mean > 0 else 0.0


def normal_wait(mean: float, sd: float) -> Any:
    """A Locust wait_time with normally distributed pauses, clipped at 0."""
    return lambda user: max(0.0, random.gauss(mean, sd))


# --- measurement ----------------------------------------------------------------------------------


RECORD_FIELDS = (
    "t", "intended", "name", "stage", "status", "ok", "error", "latency", "ttfb", "ttft", "itl", "tokens",
    "bytes", "users", "code", "message",
)  # fmt: skip
_encode = json.JSONEncoder(separators=(",", ":")).encode


class Recorder:
    """Buffers records and markers, and appends them as JSON lines to records-<pid>-<seq>.jsonl every
    FLUSH_EVERY_S and at exit (encoding in the flush keeps the request path short). A file is never
    written again once the next one is started, so a file that has a successor is complete."""

    def __init__(self, results_dir: str | None, name: str | None = None) -> None:
        self.dir = Path(results_dir) if results_dir else None
        self.name = name  # the files' id; None: this process's pid
        self.buffer: list[Any] = []
        self._flusher: Any = None
        self.rotate_bytes = max(1, int(os.environ.get("SCENARIOKIT_RAW_ROTATE_BYTES") or RAW_ROTATE_BYTES))
        self._pid = 0  # the process the sequence belongs to (see path)
        self._seq = 1
        self._written = 0
        # a Locust worker with no results folder of its own (on another machine) sends its records to the
        # master instead (MasterLink); set by Scenario once Locust has made its runner
        self.link: WorkerLink | None = None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            atexit.register(self.flush)
            events.quitting.add_listener(lambda **_: self.flush())

    @property
    def path(self) -> Path | None:
        """This process's current file, named when it is written: `locust --processes` forks its workers
        after this module is imported, and each must append to files of its own, numbered from 1."""
        if self.dir is None:
            return None
        if self.name is not None:
            return self.dir / f"records-{self.name}-{self._seq}.jsonl"
        if self._pid != os.getpid():
            self._pid, self._seq, self._written = os.getpid(), 1, 0
        return self.dir / f"records-{self._pid}-{self._seq}.jsonl"

    def write(self, record: tuple[Any, ...] | dict[str, Any]) -> None:
        """A request's record (a tuple in RECORD_FIELDS order) or a marker (a dict)."""
        if self.dir is None and self.link is None:
            return
        self.buffer.append(record)
        if self._flusher is None:
            self._flusher = gevent.spawn(self._flush_forever)

    def _flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_EVERY_S)
            self.flush()

    def flush(self) -> None:
        if self.link is not None:
            items, self.buffer = self.buffer, []
            self.link.send(items)
            return
        path = self.path
        if not self.buffer or path is None:
            return
        items, self.buffer = self.buffer, []
        data = ("\n".join(map(_encode, items)) + "\n").encode("utf-8")
        with path.open("ab") as handle:
            handle.write(data)
        self._written += len(data)
        if self._written >= self.rotate_bytes:  # whole flushes only: a line never spans two files
            self._seq, self._written = self._seq + 1, 0


# --- distribution: records over Locust's own worker -> master messages -------------------------
# A worker on another machine has no folder the runner reads: it sends its records to the master every
# FLUSH_EVERY_S as one `sk_records` message (rows as arrays in RECORD_FIELDS order and markers as maps,
# which Locust's msgpack carries compactly), with its own CPU share (psutil: Locust's dependency). The
# master measures each worker's clock offset when it joins (CLOCK_PINGS ping/pong exchanges, the one with
# the shortest round trip kept: NTP's rule), subtracts it from the worker's times, and writes the records
# into records-w<worker>-<seq>.jsonl in its results folder, where the runner reads them as it reads a
# local process's. A worker that stops answering Locust's heartbeats is written as lost.

RECORDS_MESSAGE = "sk_records"
PING_MESSAGE = "sk_ping"
PONG_MESSAGE = "sk_pong"
STOP_MESSAGE = "sk_stop"
DONE_MESSAGE = "sk_done"
CLOCK_PINGS = 8
PING_GAP_S = 0.05
PING_AFTER_S = 0.5  # a worker registers its handlers just after it says it is ready
LOST_CHECK_S = 1.0
CPU_SAMPLE_MIN_S = 0.25  # a worker's CPU share is measured over at least this long
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.]+")


class WorkerLink:
    """A worker's side: answers the master's pings on its own clock, sends its records and CPU share,
    and stops when the master asks, saying so once its last records are sent (local workers too)."""

    def __init__(self, runner: Any, remote: bool, script_sha: str) -> None:
        import psutil

        self.runner = runner
        self.script_sha = script_sha
        self.remote = remote  # sends its records to the master (no results folder of its own)
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # primes it: the first batch's share covers the time since
        self._cpu_at = time.monotonic()
        runner.register_message(PING_MESSAGE, self._on_ping)
        # its own greenlet: the users' graceful stop must not hold up Locust's heartbeats
        runner.register_message(STOP_MESSAGE, self._on_stop, concurrent=True)
        events.test_stop.add_listener(lambda **_: flush_recorders())

    def _on_stop(self, environment: Any, msg: Any, **_: Any) -> None:
        """Locust's headless master quits at the shape's end and gives its workers 0.5 s; instead it asks
        each to stop first: the users finish their task (--stop-timeout), test_stop flushes the records,
        and then this says done."""
        self.runner.stop()
        flush_recorders()
        self.runner.send_message(DONE_MESSAGE, {})

    def _on_ping(self, environment: Any, msg: Any, **_: Any) -> None:
        data = msg.data or {}
        # remote: no results folder of its own, its records come over the messages (else it is a local
        # `--processes` worker writing its own files, on the master's clock)
        answer = {"k": data.get("k"), "t0": data.get("t0"), "tw": now(), "remote": self.remote}
        answer["script"] = self.script_sha
        self.runner.send_message(PONG_MESSAGE, answer)

    def send(self, items: list[Any]) -> None:
        cpu = None  # psutil's share over a few milliseconds (two flushes at the stop) is noise: none
        if time.monotonic() - self._cpu_at >= CPU_SAMPLE_MIN_S:
            cpu, self._cpu_at = self._process.cpu_percent(None) / 100.0, time.monotonic()
        payload = {"rows": [list(i) for i in items if isinstance(i, tuple)], "cpu": cpu, "t": now()}
        payload["markers"] = [i for i in items if isinstance(i, dict)]
        with suppress(Exception):  # the master is gone (it ended the run): nothing left to send to
            self.runner.send_message(RECORDS_MESSAGE, payload)


_RECORDERS: list[Recorder] = []


def flush_recorders() -> None:
    """Flushes every recorder of this process (a worker's last batch goes before Locust's client_stopped)."""
    for recorder in _RECORDERS:
        recorder.flush()


@dataclass
class _Joined:
    """One worker as the master sees it."""

    client_id: str
    recorder: Recorder
    pings: list[tuple[float, float]] = field(default_factory=list)  # (rtt, offset) per answered ping
    offset: float | None = None  # worker clock minus master clock, once measured
    remote: bool = False  # on another machine (its records come over the messages), from its pongs
    mismatch: bool = False  # its compiled script (sha256, in its pongs) is not the master's
    pending: list[Any] = field(default_factory=list)  # batches that came before the offset
    lost: bool = False


class MasterLink:
    """The master's side: times each worker's clock, writes its records corrected, notes lost workers."""

    def __init__(self, runner: Any, results_dir: str, script_sha: str) -> None:
        self.runner = runner
        self.script_sha = script_sha
        self.dir = results_dir
        self.workers: dict[str, _Joined] = {}
        self.done: set[str] = set()  # the workers that stopped and sent their last records
        self._stopped = False
        runner.register_message(RECORDS_MESSAGE, self._on_records)
        runner.register_message(PONG_MESSAGE, self._on_pong)
        runner.register_message(DONE_MESSAGE, lambda msg, **_: self.done.add(msg.node_id))
        events.worker_connect.add_listener(self._on_connect)
        events.test_stop.add_listener(self._on_test_stop)
        gevent.spawn(self._watch_lost)

    def _on_test_stop(self, environment: Any, **_: Any) -> None:
        """Before Locust's master quits: every worker still there stops and sends its last records (see
        WorkerLink._on_stop); waited for up to the stop timeout and a margin."""
        from locust.runners import STATE_MISSING

        if self._stopped:
            return
        self._stopped = True
        live = {c.id for c in self.runner.clients.all if c.state != STATE_MISSING}
        for client_id in live:
            self.runner.send_message(STOP_MESSAGE, {}, client_id=client_id)
        if getattr(gevent.getcurrent(), "_run", None) == getattr(self.runner, "client_listener", None):
            # stopped from Locust's message loop (a worker quit by itself): no answer can arrive while
            # this waits, so the workers' last batches are left to arrive before Locust quits
            flush_recorders()
            return
        deadline = time.monotonic() + float(environment.stop_timeout or 0) + 10.0
        while not live <= self.done and time.monotonic() < deadline:
            gevent.sleep(0.1)
        flush_recorders()

    def _joined(self, client_id: str) -> _Joined:
        found = self.workers.get(client_id)
        if found is None:
            name = "w" + _UNSAFE_ID.sub("_", client_id)[-48:]
            recorder = Recorder(self.dir, name=name)
            _RECORDERS.append(recorder)
            found = self.workers[client_id] = _Joined(client_id, recorder)
        return found

    def _on_connect(self, client_id: str, **_: Any) -> None:
        self._joined(client_id)
        gevent.spawn(self._time_clock, client_id)

    def _time_clock(self, client_id: str) -> None:
        gevent.sleep(PING_AFTER_S)
        for k in range(CLOCK_PINGS):
            data = {"k": k, "t0": time.time()}
            self.runner.send_message(PING_MESSAGE, data, client_id=client_id)
            gevent.sleep(PING_GAP_S)
        gevent.sleep(1.0)  # the last answers
        joined = self._joined(client_id)
        rtt, offset = min(joined.pings) if joined.pings else (None, 0.0)
        joined.offset = offset
        if joined.mismatch:
            return
        if joined.remote:  # a local worker shares the master's clock and writes its own files
            marker = {"worker_clock": client_id, "offset_s": offset, "rtt_s": rtt, "pings": len(joined.pings)}
            joined.recorder.write(marker)
        for batch in joined.pending:
            self._write(joined, batch)
        joined.pending = []

    def _on_pong(self, environment: Any, msg: Any, **_: Any) -> None:
        t3 = time.time()
        data = msg.data or {}
        t0, tw = float(data["t0"]), float(data["tw"])
        # the worker read its clock between t0 and t3: at best halfway, within half the round trip
        joined = self._joined(msg.node_id)
        joined.pings.append((t3 - t0, tw - (t0 + t3) / 2))
        joined.remote = bool(data.get("remote"))
        script = str(data.get("script"))
        if script != self.script_sha and not joined.mismatch:
            # another scenario's requests would be judged as this one's: the run stops, a run error
            joined.mismatch = True
            joined.recorder.write({"worker_mismatch": msg.node_id, "t": time.time(), "script": script})
            joined.recorder.flush()
            gevent.spawn(self._abandon)

    def _abandon(self) -> None:
        """Ends the run now: the workers are told to quit, and this process exits (Locust's own quit,
        before the test has started, leaves its main loop waiting for the run time to pass)."""
        with suppress(Exception):
            self.runner.quit()
        flush_recorders()
        os._exit(3)

    def _on_records(self, environment: Any, msg: Any, **_: Any) -> None:
        joined = self._joined(msg.node_id)
        if joined.offset is None:
            joined.pending.append(msg.data)
        else:
            self._write(joined, msg.data)

    def _write(self, joined: _Joined, batch: dict[str, Any]) -> None:
        shift = joined.offset or 0.0
        write = joined.recorder.write
        for row in batch.get("rows") or []:
            try:  # a row the worker garbled is written as it came: the runner's reader skips and counts it
                row[0] -= shift  # start
                if row[1] is not None:
                    row[1] -= shift  # intended start
            except (TypeError, IndexError, KeyError):
                pass
            # not an array (a map could pass for a marker): written as one no reader knows (skipped, counted)
            write(tuple(row) if isinstance(row, list) else {"garbled": repr(row)[:200]})
        for marker in batch.get("markers") or []:
            # the master's own test start is the run's: a worker's is not kept
            if isinstance(marker, dict) and "dropped" in marker and isinstance(marker.get("t"), float):
                write({**marker, "t": marker["t"] - shift})
        with suppress(TypeError, ValueError):
            if batch.get("cpu") is not None:  # a batch too soon after the previous one has no share
                at = float(batch.get("t") or 0.0) - shift
                write({"worker_cpu": float(batch["cpu"]), "t": at, "worker": joined.client_id})

    def _watch_lost(self) -> None:
        """A worker whose heartbeats stopped (Locust marks it missing) is written as lost, once."""
        from locust.runners import STATE_MISSING

        while True:
            gevent.sleep(LOST_CHECK_S)
            for client_id, joined in list(self.workers.items()):
                client = self.runner.clients.get(client_id)
                if not joined.lost and client is not None and client.state == STATE_MISSING:
                    joined.lost = True
                    joined.recorder.write({"worker_lost": client_id, "t": time.time()})
                    joined.recorder.flush()


MAX_CAUSES = 4  # an exception chain is read this deep: a reset is one step under the client's own error


def failure_kind(exc: BaseException, failures: Failures) -> str:
    """The kind of a failure that left no response: the first row of the script's FAILURES table whose
    exception classes include the error's class or a base of it, or one of whose fragments its class name
    or message holds. The causes the error chains (`__cause__`, else `__context__`) count too: the
    FastHttpUser client raises HTTPConnectionClosed for a reset before the first byte, with the
    ConnectionResetError only as its context."""
    names: list[str] = []
    texts: list[str] = []
    seen: BaseException | None = exc
    for _ in range(MAX_CAUSES):
        if seen is None:
            break
        names += [c.__name__ for c in type(seen).__mro__]
        texts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return classify(names, " <- ".join(texts), failures)


def sample_message(message: str, secrets: Any = ()) -> str:
    """A failure's message as a record keeps it: secrets redacted, control characters out, cut short."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= SECRET_MIN_CHARS:
            message = message.replace(secret, REDACTED)
    text = _CONTROL.sub(" ", message).strip()
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def classify(names: list[str], message: str, failures: Failures) -> str:
    text = message.lower()
    for kind, exceptions, fragments in failures:
        if any(name in exceptions for name in names) or any(f in text for f in fragments):
            return kind
    return "other"


def normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass
class Measured:
    status: int = 0
    ttfb: float | None = None
    ttft: float | None = None
    itl: list[float] | None = None
    tokens: int | None = None
    nbytes: int = 0
    answer: str = ""
    error: str | None = None
    code: str | None = None  # a raised failure's class name and message (sample_message)
    message: str | None = None


def read_stream(response: Any, started: float, measured: Measured) -> None:
    """Read an SSE chat stream line by line as it arrives: TTFB, TTFT, gaps between content chunks."""
    raw = response._response
    parts: list[str] = []
    last_token_at: float | None = None
    gaps: list[float] = []
    chunks = 0
    while True:
        line = raw.readline(b"\n")
        if not line:
            break
        now = time.perf_counter()
        measured.nbytes += len(line)
        if measured.ttfb is None:
            measured.ttfb = now - started
        text = line.decode("utf-8", errors="replace").strip()
        if not text.startswith("data:"):
            continue
        data = text[5:].strip()
        if data == "[DONE]":
            break
        event = stream_event(data)
        if event is None:
            measured.error = "bad_stream"
            continue
        pieces, tokens = event
        measured.tokens = tokens if tokens is not None else measured.tokens
        for content in pieces:
            chunks += 1
            parts.append(content)
            if last_token_at is None:
                measured.ttft = now - started
            else:
                gaps.append(now - last_token_at)
            last_token_at = now
    measured.answer = "" if measured.error else "".join(parts)
    measured.itl = gaps
    if measured.tokens is None and chunks:
        measured.tokens = chunks


def stream_event(data: str) -> tuple[list[str], int | None] | None:
    """One SSE event of a streamed chat answer: its text pieces and the completion tokens it reports;
    None when it is not a chat chunk."""
    try:
        chunk = json.loads(data)
    except ValueError:
        return None
    if not isinstance(chunk, dict):
        return None
    usage = chunk.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    choices = chunk.get("choices")
    pieces = []
    for choice in choices if isinstance(choices, list) else []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str) and content:
            pieces.append(content)
    return pieces, tokens


def chat_answer(text: str) -> tuple[str, int | None] | None:
    """A whole chat completion's answer text and completion tokens; None when it is not one."""
    try:
        payload = json.loads(text)
        content = payload["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    usage = payload.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return (content if isinstance(content, str) else ""), tokens


def read_whole(response: Any, request: Request, started: float, measured: Measured, want_text: bool) -> None:
    content = response.content or b""
    measured.ttfb = time.perf_counter() - started
    measured.nbytes = len(content)
    if not (request.chat or want_text):  # nothing reads the body: skip decoding it
        return
    text = content.decode("utf-8", errors="replace")
    measured.answer = text
    if request.chat and 200 <= measured.status < 300:  # else the answer is the body (an error's text)
        answer = chat_answer(text)
        if answer is None:
            measured.error, measured.answer = "bad_stream", ""
        else:
            measured.answer, measured.tokens = answer


def judge(request: Request, measured: Measured, contains: str | None) -> str | None:
    """The error kind, or None when the response is what the request expects."""
    if measured.error and measured.status == 0:
        return measured.error
    ok_status = (
        measured.status in request.expect_status if request.expect_status else (200 <= measured.status < 300)
    )
    if not ok_status:
        return f"http_{measured.status}"
    if measured.error == "bad_stream" and not request.expect_status:
        return "bad_stream"
    if contains is not None and normalized(contains) not in normalized(measured.answer):
        return "wrong_answer"
    return None


def flow_datasets(steps: tuple[Request, ...]) -> tuple[str, ...]:
    """The data sets a flow's steps read, in order of first use: one record of each per pick."""
    return tuple(dict.fromkeys(name for step in steps for name in step.datasets))


class Client:
    """One per Locust user: picks records, sends requests, records what happened."""

    def __init__(self, scenario: Scenario, user: Any) -> None:
        self.scenario = scenario
        self.user = user
        self.rng = scenario.user_rng()

    def send(self, *steps: Request, open_model: bool = False) -> None:
        """One task: a request, or a flow's steps in order, each sent when the one before has its answer
        and judged on its own (a failed step does not stop the next, as a failed request does not end a
        Locust task). In an open model the task is one arrival: the first step carries its intended
        start; a later step's intended start is its own (it starts when the step before ends, as a real
        client's would), so a late arrival's delay is counted once. One record of each data set the
        steps read is drawn for the whole task."""
        intended = None
        if open_model:
            intended = self.scenario.next_arrival()
            if intended is None:
                gevent.sleep(1.0)  # the schedule is over; the shape ends the run
                return
            gevent.sleep(max(0.0, intended - now()))
        # a task of one request (nearly every one, thousands a second) skips building the union
        names = steps[0].datasets if len(steps) == 1 else flow_datasets(steps)
        row = self.scenario.row(self.rng, names) if names else {}
        for request in steps:
            # a request that reads no data is the same every time: rendered once
            sent = Sent.of(request, row) if request.datasets else self.scenario.fixed(request)
            self._send(request, sent, intended)
            intended = None

    def _send(self, request: Request, sent: Sent, intended: float | None) -> None:
        kwargs: dict[str, Any] = {"headers": sent.headers}
        if sent.body is not None:
            kwargs["data"] = sent.body
        measured = Measured()
        t0 = now()
        started = time.perf_counter()
        try:
            latency, error = self._exchange(request, sent, kwargs, measured, started)
        except Exception as exc:
            # The client refused the request before sending it (a header value it cannot write): an error
            # record of its kind. Left to Locust, it is a traceback in the log, whose message quotes the
            # header's value (a secret), and no record at all; the record's message has it redacted.
            self._failed(request, sent, exc, measured)
            latency, error = time.perf_counter() - started, measured.error
            measured.status = 0
            self._report_refused(request, latency, error or "other")
        self._record(request, t0, intended, measured, latency, error)

    def _failed(self, request: Request, sent: Sent, exc: BaseException, measured: Measured) -> None:
        """A failure the client raised: its kind, and the engine's own reason (class name, message)."""
        kind = failure_kind(exc, self.scenario.failures)
        code = type(exc).__name__
        message = sample_message(str(exc), self.scenario.secrets(request, sent))
        measured.error, measured.code = kind, code
        measured.message = self.scenario.first_message(request.name, kind, code, message)

    def _exchange(
        self, request: Request, sent: Sent, kwargs: dict[str, Any], measured: Measured, started: float
    ) -> tuple[float, str | None]:
        """Sends the request and reads its answer into `measured`: (latency, error kind or None)."""
        contains = sent.contains
        with self.user.client.request(
            request.method, sent.path, name=request.name, stream=request.stream, catch_response=True, **kwargs
        ) as response:
            measured.status = int(getattr(response, "status_code", 0) or 0)
            failure = getattr(response, "error", None)
            try:
                if failure is not None and measured.status == 0:
                    self._failed(request, sent, failure, measured)
                elif request.stream and 200 <= measured.status < 300:
                    read_stream(response, started, measured)
                else:
                    read_whole(response, request, started, measured, contains is not None)
            except Exception as exc:  # a connection that broke mid-body is a measured error, not a crash
                self._failed(request, sent, exc, measured)
                measured.status = measured.status if measured.error == "other" else 0
            latency = time.perf_counter() - started
            error = judge(request, measured, contains)
            response.request_meta["response_time"] = latency * 1000  # Locust's stats see full latency
            response.request_meta["response_length"] = measured.nbytes
            if error is None:
                response.success()
            else:
                response.failure(error)
        return latency, error

    def _report_refused(self, request: Request, latency: float, error: str) -> None:
        """Locust's own statistics count the refused request too, under its kind (never the client's
        message, which may quote a header's value)."""
        self.user.environment.events.request.fire(
            request_type=request.method,
            name=request.name,
            response_time=latency * 1000,
            response_length=0,
            response=None,
            context={},
            exception=RuntimeError(error),
        )

    def _record(
        self,
        request: Request,
        t0: float,
        intended: float | None,
        measured: Measured,
        latency: float,
        error: str | None,
    ) -> None:
        elapsed = t0 - (self.scenario.started_at or t0)
        stage, level = stage_and_level(self.scenario.stages, elapsed)
        # a tuple: the collector stops tracking it once it sees only numbers and strings inside, so records
        # waiting for the flush do not bring on full collections
        record: tuple[Any, ...] = (
            t0,
            intended,
            request.name,
            stage,
            measured.status,
            error is None,
            error,
            latency,
            measured.ttfb,
            measured.ttft,
            measured.itl if request.stream else None,
            measured.tokens,
            measured.nbytes,
            level,
        )
        if error is not None and measured.code is not None:  # the engine's reason: failures only
            record += (measured.code, measured.message)
        self.scenario.recorder.write(record)
