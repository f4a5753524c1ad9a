"""scenariokit's runtime for generated locustfiles (copied next to the script; needs only Locust).

It renders the compiler's parsed templates with data, sends each request through the user's
FastHttpSession, judges it against its `expect`, measures what Locust does not (TTFB, TTFT and inter-token
gaps of streamed chat answers, exact latency), and writes one JSON line per request for scenariokit's
runner.

Records: when SCENARIOKIT_RESULTS_DIR is set, each process appends to `records-<pid>.jsonl` there, flushed
every 0.5 s and at exit, one JSON array per request, its fields in the order of RECORD_FIELDS (an array
encodes and decodes in less than half the time of an object, which matters at thousands of requests/s):

    [t: start unix s, intended: intended start unix s or null, name: str, stage: stage label,
     status: int (0 = no response), ok: bool, error: str or null, latency: s, ttfb: s or null,
     ttft: s or null, itl: [s, ...] or null, tokens: int or null, bytes: int, users: level]

error is one of connection_refused, connection_reset, timeout, http_<code>, wrong_answer, bad_stream,
other:<ExceptionName>. The test's start is written once as `{"test_start": unix s}` (stage windows are
measured from it). An open-model arrival that no user could start in time is written as
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
import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import events

DROP_AFTER_S = 1.0
FLUSH_EVERY_S = 0.5


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


@dataclass(frozen=True)
class DataSet:
    name: str
    pick: str
    records: list[dict[str, str]]

    @classmethod
    def load(cls, path: Path) -> DataSet:
        payload = json.loads(path.read_text(encoding="utf-8"))
        return cls(payload["name"], payload["pick"], payload["records"])


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
    label: str
    duration: float
    start: float
    end: float


class Scenario:
    """The compiled scenario's data, loaded once per process, plus the shared run state."""

    def __init__(
        self,
        script: str,
        *,
        name: str,
        base_url: str,
        stages: list[Stage],
        datasets: list[str],
        seed: int,
        max_users: int = 0,
    ) -> None:
        here = Path(script).resolve().parent
        self.name = name
        self.base_url = os.environ.get("SCENARIOKIT_BASE_URL") or base_url
        self.stages = stages
        self.seed = int(os.environ.get("SCENARIOKIT_SEED", seed))
        self.max_users = max_users
        self.datasets = {n: DataSet.load(here / "data" / f"{n}.json") for n in datasets}
        self.duration = sum(s.duration for s in stages)
        self.started_at: float | None = None
        self._sequential: dict[str, int] = {}
        self._users = 0
        self._arrivals: Iterator[float] | None = None
        self._fixed: dict[str, Sent] = {}
        self.recorder = Recorder(os.environ.get("SCENARIOKIT_RESULTS_DIR"))
        events.test_start.add_listener(self._on_test_start)

    # -- time and stages ---------------------------------------------------------------------------

    def _on_test_start(self, environment: Any, **_: Any) -> None:
        self.started_at = time.time()
        self.recorder.write({"test_start": self.started_at})
        # What Locust and this module built so far (~50,000 objects) lives as long as the run: frozen out
        # of the collector, the full collections that thousands of requests/s bring on (15 in 6 s against
        # nginx, 4% of the process's time) no longer walk it. Locust's rate: +8%, measured.
        gc.freeze()
        # A young collection walks every young object still alive (a request's in flight for each user)
        # and comes every 700 allocations, some tens of requests; every 7,000 it walks about as many, a
        # tenth as often, and cyclic garbage waits a few hundred requests longer. Locust's rate: +5%.
        gc.set_threshold(7000)
        # Distributed runs set SCENARIOKIT_WORKERS so that each worker sends its share of the arrivals.
        count = max(1, int(os.environ.get("SCENARIOKIT_WORKERS", "1")))
        index = (getattr(environment.runner, "worker_index", 0) or 0) % count
        self._arrivals = arrival_times(self.stages, self.started_at, index, count)

    def elapsed(self) -> float:
        if self.started_at is None:
            self.started_at = time.time()
        return time.time() - self.started_at

    def stage_at(self, t: float) -> tuple[Stage | None, float]:
        for stage in self.stages:
            if t < stage.duration:
                return stage, t
            t -= stage.duration
        return (self.stages[-1], self.stages[-1].duration) if self.stages else (None, 0.0)

    def level_at(self, t: float) -> float:
        return self.stage_and_level(t)[1]

    def stage_and_level(self, t: float) -> tuple[Stage | None, float]:
        """The stage `t` seconds into the run and the intended users or rate then (one walk of the
        stages, as every record needs both)."""
        stage, offset = self.stage_at(t)
        if stage is None:
            return None, 0.0
        if stage.duration <= 0:
            return stage, stage.end
        return stage, stage.start + (stage.end - stage.start) * min(1.0, offset / stage.duration)

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
        stage, _ = self.stage_at(run_time)
        users = round(self.level_at(run_time))
        slope = abs(stage.end - stage.start) / stage.duration if stage and stage.duration > 0 else 0.0
        return users, max(1.0, slope, abs(users - current_users))

    def open_tick(self, run_time: float) -> tuple[int, float] | None:
        """LoadTestShape.tick for an open model: the whole user pool, at once; arrivals pace the load."""
        if run_time >= self.duration:
            return None
        return self.max_users, float(max(1, self.max_users))

    # -- per-user state ----------------------------------------------------------------------------

    def user_rng(self) -> random.Random:
        self._users += 1
        return random.Random(self.seed * 1_000_003 + self._users)

    def row(self, rng: random.Random, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
        """One record of each named data set, for one request (all its references read the same one)."""
        row = {}
        for name in names:
            data = self.datasets[name]
            if data.pick == "sequential":
                i = self._sequential.get(name, 0)
                self._sequential[name] = i + 1
                row[name] = data.records[i % len(data.records)]
            else:
                row[name] = rng.choice(data.records)
        return row

    def next_arrival(self) -> float | None:
        """Open model: the intended start of the next arrival this user may send, or None when done."""
        if self._arrivals is None:
            self._arrivals = arrival_times(self.stages, time.time(), 0, 1)
            self.started_at = self.started_at or time.time()
        for intended in self._arrivals:
            late = time.time() - intended
            if late <= DROP_AFTER_S:
                return intended
            stage, _ = self.stage_at(intended - (self.started_at or intended))
            self.recorder.write({"dropped": 1, "t": intended, "stage": stage.label if stage else ""})
        return None


def arrival_times(stages: list[Stage], start: float, index: int, count: int) -> Iterator[float]:
    """Intended start times (unix s) of evenly spaced arrivals under a piecewise-linear rate curve.

    Arrival k happens when the integral of the rate reaches k. Within a stage the rate is r0 + b*t, so its
    integral is r0*t + b*t^2/2: a quadratic solved for each k. Process `index` of `count` takes every
    count-th arrival.
    """
    offset, done = 0.0, 0.0  # stage start time; arrivals integrated before this stage
    k = 1
    for stage in stages:
        r0 = stage.start
        slope = (stage.end - stage.start) / stage.duration if stage.duration > 0 else 0.0
        total = (stage.start + stage.end) / 2 * stage.duration
        while k <= done + total + 1e-9:
            need = k - done
            if abs(slope) < 1e-12:
                t = need / r0 if r0 > 0 else stage.duration
            else:
                disc = max(0.0, r0 * r0 + 2 * slope * need)
                t = (-r0 + math.sqrt(disc)) / slope
            if (k - 1) % count == index:
                yield start + offset + min(max(t, 0.0), stage.duration)
            k += 1
        offset += stage.duration
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
    "bytes", "users",
)  # fmt: skip
_encode = json.JSONEncoder(separators=(",", ":")).encode


class Recorder:
    """Buffers records and markers, and appends them as JSON lines to records-<pid>.jsonl every
    FLUSH_EVERY_S and at exit (encoding in the flush keeps the request path short)."""

    def __init__(self, results_dir: str | None) -> None:
        self.dir = Path(results_dir) if results_dir else None
        self.buffer: list[Any] = []
        self._flusher: Any = None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            atexit.register(self.flush)
            events.quitting.add_listener(lambda **_: self.flush())

    @property
    def path(self) -> Path | None:
        """This process's file, named when it is written: `locust --processes` forks its workers after
        this module is imported, and each must append to a file of its own."""
        return self.dir / f"records-{os.getpid()}.jsonl" if self.dir is not None else None

    def write(self, record: tuple[Any, ...] | dict[str, Any]) -> None:
        """A request's record (a tuple in RECORD_FIELDS order) or a marker (a dict)."""
        if self.dir is None:
            return
        self.buffer.append(record)
        if self._flusher is None:
            self._flusher = gevent.spawn(self._flush_forever)

    def _flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_EVERY_S)
            self.flush()

    def flush(self) -> None:
        path = self.path
        if not self.buffer or path is None:
            return
        items, self.buffer = self.buffer, []
        text = "\n".join(map(_encode, items)) + "\n"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)


def error_kind(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).lower()
    if isinstance(exc, ConnectionRefusedError) or "refused" in text:
        return "connection_refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError) or "reset" in text or "broken pipe" in text:
        return "connection_reset"
    if isinstance(exc, TimeoutError) or "timeout" in name.lower() or "timed out" in text:
        return "timeout"
    return f"other:{name}"


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
        try:
            chunk = json.loads(data)
        except ValueError:
            measured.error = "bad_stream"
            continue
        if chunk.get("usage"):
            measured.tokens = chunk["usage"].get("completion_tokens")
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                chunks += 1
                parts.append(content)
                if last_token_at is None:
                    measured.ttft = now - started
                else:
                    gaps.append(now - last_token_at)
                last_token_at = now
    measured.answer = "".join(parts)
    measured.itl = gaps
    if measured.tokens is None and chunks:
        measured.tokens = chunks


def read_whole(response: Any, request: Request, started: float, measured: Measured, want_text: bool) -> None:
    content = response.content or b""
    measured.ttfb = time.perf_counter() - started
    measured.nbytes = len(content)
    if not (request.chat or want_text):  # nothing reads the body: skip decoding it
        return
    text = content.decode("utf-8", errors="replace")
    measured.answer = text
    if request.chat and 200 <= measured.status < 300:
        try:
            payload = json.loads(text)
            measured.answer = payload["choices"][0]["message"]["content"] or ""
            measured.tokens = (payload.get("usage") or {}).get("completion_tokens")
        except (ValueError, KeyError, IndexError, TypeError):
            measured.error = "bad_stream"


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


class Client:
    """One per Locust user: picks records, sends requests, records what happened."""

    def __init__(self, scenario: Scenario, user: Any) -> None:
        self.scenario = scenario
        self.user = user
        self.rng = scenario.user_rng()

    def send(self, request: Request, open_model: bool = False) -> None:
        intended = None
        if open_model:
            intended = self.scenario.next_arrival()
            if intended is None:
                gevent.sleep(1.0)  # the schedule is over; the shape ends the run
                return
            gevent.sleep(max(0.0, intended - time.time()))
        if request.datasets:
            sent = Sent.of(request, self.scenario.row(self.rng, request.datasets))
        else:  # the same every time: rendered once
            sent = self.scenario.fixed(request)
        kwargs: dict[str, Any] = {"headers": sent.headers}
        if sent.body is not None:
            kwargs["data"] = sent.body
        self._send(request, sent.path, kwargs, sent.contains, intended)

    def _send(
        self,
        request: Request,
        path: str,
        kwargs: dict[str, Any],
        contains: str | None,
        intended: float | None,
    ) -> None:
        measured = Measured()
        t0 = time.time()
        started = time.perf_counter()
        with self.user.client.request(
            request.method, path, name=request.name, stream=request.stream, catch_response=True, **kwargs
        ) as response:
            measured.status = int(getattr(response, "status_code", 0) or 0)
            failure = getattr(response, "error", None)
            try:
                if failure is not None and measured.status == 0:
                    measured.error = error_kind(failure)
                elif request.stream and 200 <= measured.status < 300:
                    read_stream(response, started, measured)
                else:
                    read_whole(response, request, started, measured, contains is not None)
            except Exception as exc:  # a connection that broke mid-body is a measured error, not a crash
                measured.error = error_kind(exc)
                measured.status = measured.status if measured.error.startswith("other") else 0
            latency = time.perf_counter() - started
            error = judge(request, measured, contains)
            response.request_meta["response_time"] = latency * 1000  # Locust's stats see full latency
            response.request_meta["response_length"] = measured.nbytes
            if error is None:
                response.success()
            else:
                response.failure(error)
        self._record(request, t0, intended, measured, latency, error)

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
        stage, level = self.scenario.stage_and_level(elapsed)
        # a tuple: the collector stops tracking it once it sees only numbers and strings inside, so records
        # waiting for the flush do not bring on full collections
        self.scenario.recorder.write(
            (
                t0,
                intended,
                request.name,
                stage.label if stage else "",
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
        )
