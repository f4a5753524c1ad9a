"""The engine-neutral intermediate representation both backends consume.

Everything here is plain, frozen data in SI units (seconds, requests per second, fractions), already
validated. A backend never sees YAML, pydantic models or expression text: only these nodes. Each node that
came from the scenario keeps the `Span` it came from, so a backend can still point at the YAML line.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Literal, Union

from scenariokit.compile.diagnostics import UNKNOWN_SPAN, Span
from scenariokit.engines import DEFAULT_ENGINE

LoadModel = Literal["closed", "open"]
TargetKind = Literal["openai-chat", "http"]


# --- load -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One piece of a piecewise-linear load curve.

    The level (users for a closed model, requests/s for an open one) moves linearly from `start` to `end`
    over `duration_s`. A zero-length stage is an instant jump. `label` names the stage for SLO windows
    (`during spike`); `kind` is the curve function that produced it (ramp, hold, spike, steps).
    """

    kind: str
    label: str
    duration_s: float
    start: float
    end: float
    span: Span = UNKNOWN_SPAN

    def level_at(self, offset_s: float) -> float:
        if self.duration_s <= 0:
            return self.end
        frac = min(max(offset_s / self.duration_s, 0.0), 1.0)
        return self.start + (self.end - self.start) * frac


@dataclass(frozen=True)
class Distribution:
    """A think-time distribution in seconds. kind: none | constant | uniform | exponential | normal."""

    kind: Literal["none", "constant", "uniform", "exponential", "normal"]
    params: tuple[tuple[str, float], ...] = ()
    span: Span = UNKNOWN_SPAN

    def param(self, name: str) -> float:
        return dict(self.params)[name]

    @property
    def mean_s(self) -> float:
        p = dict(self.params)
        match self.kind:
            case "none":
                return 0.0
            case "constant":
                return p["value"]
            case "uniform":
                return (p["low"] + p["high"]) / 2
            case "exponential" | "normal":
                return p["mean"]
        raise AssertionError(self.kind)


NO_THINK_TIME = Distribution("none")


@dataclass(frozen=True)
class LoadProfile:
    model: LoadModel
    stages: tuple[Stage, ...]
    think_time: Distribution = NO_THINK_TIME
    # Open model only: the virtual users an engine may use to keep the arrival rate (k6 maxVUs).
    pre_allocated_users: int = 0
    max_users: int = 0
    # The latency the author expects; sizes the open model's user pool and the plan's request estimate.
    expected_latency_s: float = 1.0
    span: Span = UNKNOWN_SPAN

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.stages)

    @property
    def peak(self) -> float:
        return max((max(s.start, s.end) for s in self.stages), default=0.0)

    @cached_property
    def table(self) -> StageTable:
        return StageTable.of(self.stages)

    def level_at(self, t: float) -> float:
        """The intended users (closed) or rate (open) at `t` seconds into the run."""
        return self.table.level_at(t)

    def stage_at(self, t: float) -> tuple[StageWindow | None, float]:
        """The stage the run is in at `t` (see StageTable), and how far into it `t` is."""
        window = self.table.window_at(t)
        return (window, t - window.start_s) if window else (None, 0.0)

    def level_integral(self) -> float:
        """Area under the curve: user-seconds (closed) or total arrivals (open)."""
        return sum((s.start + s.end) / 2 * s.duration_s for s in self.stages)

    def stage_windows(self) -> list[tuple[Stage, float, float]]:
        """(stage, start_s, end_s) for every stage, in order."""
        out, elapsed = [], 0.0
        for stage in self.stages:
            out.append((stage, elapsed, elapsed + stage.duration_s))
            elapsed += stage.duration_s
        return out


@dataclass(frozen=True)
class StageWindow:
    """One stage on the run's clock: [start_s, end_s) from the run's start, its level moving linearly
    from `start` to `end`. A zero-length stage (an instant jump) has an empty window: it holds no time,
    so no request is ever in it."""

    label: str
    kind: str
    start_s: float
    end_s: float
    start: float
    end: float

    @property
    def lasts(self) -> bool:
        return self.end_s > self.start_s

    def level_at(self, t: float) -> float:
        if not self.lasts:
            return self.end
        frac = min(max((t - self.start_s) / (self.end_s - self.start_s), 0.0), 1.0)
        return self.start + (self.end - self.start) * frac


@dataclass(frozen=True)
class StageTable:
    """Which stage a run is in at `t` seconds from its start: the one answer for every reader (the
    results here; both runtimes get the table as data in their script and look it up the same way).

    The stage at `t` is the first stage that lasts and is not over at `t` (so before the start, the first
    that lasts); once the curve is over (an engine's graceful stop), the last that lasts. The level at `t`
    is that stage's, interpolated; once the curve is over, where the curve ends (after a trailing jump,
    such as a spike's drop, where it lands).
    """

    stages: tuple[StageWindow, ...]

    @classmethod
    def of(cls, stages: Sequence[Stage]) -> StageTable:
        rows, elapsed = [], 0.0
        for stage in stages:
            end_s = elapsed + stage.duration_s
            rows.append(StageWindow(stage.label, stage.kind, elapsed, end_s, stage.start, stage.end))
            elapsed = end_s
        return cls(tuple(rows))

    @property
    def windows(self) -> tuple[StageWindow, ...]:
        """The stages that last, in order."""
        return tuple(row for row in self.stages if row.lasts)

    @property
    def duration_s(self) -> float:
        return self.stages[-1].end_s if self.stages else 0.0

    def index_at(self, t: float) -> int:
        """The index in `stages` of the stage at `t` (see the class), or -1 when no stage lasts."""
        found = -1
        for i, row in enumerate(self.stages):
            if row.lasts:
                found = i
                if t < row.end_s:
                    break
        return found

    def window_at(self, t: float) -> StageWindow | None:
        i = self.index_at(t)
        return self.stages[i] if i >= 0 else None

    def level_at(self, t: float) -> float:
        if not self.stages:
            return 0.0
        if t >= self.duration_s:
            return self.stages[-1].end
        window = self.window_at(t)
        return window.level_at(t) if window else self.stages[-1].end

    def intervals(self, name: str) -> list[tuple[float, float]]:
        """[start_s, end_s) of the stages that last whose label or kind is `name` (`during name`)."""
        return [(w.start_s, w.end_s) for w in self.windows if name in (w.label, w.kind)]


# --- data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A named data set materialized at compile time: one string field mapping per record.

    `default_field` is what a bare `{name}` reference renders to (for images: a data: URL).
    """

    name: str
    source: str
    fields: tuple[str, ...]
    default_field: str
    records: tuple[Mapping[str, str], ...]
    pick: Literal["random", "sequential"] = "random"
    span: Span = UNKNOWN_SPAN
    served: bool = False  # `serve: http`: the runner serves its images (`url` is each one's path there)
    # `workers`: each of a distributed run's generators uses its own share of the records (every n-th)
    split: Literal["workers"] | None = None

    def served_files(self) -> dict[str, tuple[bytes, str]]:
        """What the runner's image server answers: each record's `url` path -> (image bytes, MIME type)."""
        if not self.served:
            return {}
        return {r["url"]: (base64.b64decode(r["base64"]), r["mime"]) for r in self.records}


# The origin of the runner's image server, read by the engine when a request renders `{name.url}` of a
# served data set (`${env:SCENARIOKIT_DATA_URL}` + the image's path): set by `scenariokit run`, or by hand
# for a compiled script run elsewhere.
DATA_URL_ENV = "SCENARIOKIT_DATA_URL"


# --- templates ------------------------------------------------------------------------------------
# Strings in requests may pull in data and secrets: `{dataset}`, `{dataset.field}`, `${env:NAME}` (and
# `{{`/`}}` for literal braces), parsed by `expr.parse_template` into parts. In the IR a string without
# a reference is a plain `str`, one with references a `Template`: engines emit its parts as data, and
# their runtimes only join them per request.


@dataclass(frozen=True)
class LiteralText:
    """Text copied as is (with `{{`/`}}` already turned into single braces)."""

    text: str
    span: Span = UNKNOWN_SPAN


@dataclass(frozen=True)
class DataRef:
    """`{dataset}` (field None: the data set's default field) or `{dataset.field}`. In a `Template` the
    field is always named: lower resolves the default."""

    dataset: str
    field: str | None
    span: Span = UNKNOWN_SPAN


@dataclass(frozen=True)
class EnvRef:
    """`${env:NAME}`: the environment variable, read when the test runs (unset: empty)."""

    name: str
    span: Span = UNKNOWN_SPAN


TemplatePart = LiteralText | DataRef | EnvRef


@dataclass(frozen=True)
class Template:
    """A string with at least one reference, rendered per request by joining its parts."""

    parts: tuple[TemplatePart, ...]
    span: Span = UNKNOWN_SPAN

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.dataset for p in self.parts if isinstance(p, DataRef)))


# A string in a request: plain text, or a template to render.
Text = Union[str, Template]  # noqa: UP007
# A JSON body: its strings are `Text` (its keys plain text).
JsonTemplate = Union[None, bool, int, float, str, Template, list["JsonTemplate"], dict[str, "JsonTemplate"]]  # noqa: UP007


def as_text(parts: Sequence[TemplatePart], span: Span = UNKNOWN_SPAN) -> Text:
    """The IR value of a parsed string: a `str` when no part is a reference, else a `Template`."""
    if all(isinstance(p, LiteralText) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, LiteralText))
    return Template(tuple(parts), span)


def templates_in(value: JsonTemplate) -> Iterator[Template]:
    """Every template in a text or JSON value, in document order."""
    if isinstance(value, Template):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from templates_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from templates_in(item)


# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What makes a response a success. An empty `status` means any 2xx.

    `contains` (a template) must appear in the answer text, compared case-insensitively with runs of
    whitespace collapsed; the answer text is the chat message content for chat targets, else the body.
    """

    status: tuple[int, ...] = ()
    contains: Text | None = None
    span: Span = UNKNOWN_SPAN


@dataclass(frozen=True)
class RequestTemplate:
    """One kind of request, as sent: `headers` are all it sends (the target's merged in, see
    merge_headers), and each of its strings is `Text`. `name` is its records' name: the entry's, or for a
    step of a flow `<entry>.<step>` (`flow` then names the entry). `weight` is the weight of the mix's
    entry that sends it (a step's is its flow's: each pick of the flow sends each step once)."""

    name: str
    weight: float
    method: str
    path: Text
    headers: Headers = ()
    json_body: JsonTemplate = None
    text_body: Text | None = None
    # An OpenAI-style chat request whose answer is parsed (streamed as SSE when `stream`).
    chat: bool = False
    stream: bool = False
    expect: Expect = field(default_factory=Expect)
    timeout_s: float = 60.0
    span: Span = UNKNOWN_SPAN
    flow: str | None = None  # the entry whose step it is (None: an entry of its own)

    @property
    def templates(self) -> tuple[Template, ...]:
        """Its templates: path, headers, body, expected answer, in that order."""
        values: list[JsonTemplate] = [self.path, *(v for _, v in self.headers), self.json_body]
        values += [self.text_body, self.expect.contains]
        return tuple(t for v in values for t in templates_in(v))

    @property
    def datasets(self) -> tuple[str, ...]:
        """The data sets its templates read, in order of first use: one record of each per request."""
        return tuple(dict.fromkeys(d for t in self.templates for d in t.datasets))


@dataclass(frozen=True)
class Task:
    """One entry of the weighted mix: what a user does when the mix picks it. A plain entry is a task of
    one step; a flow (`steps:`) sends its steps in order, one after the other, in the same user, the next
    when the one before has its answer (judged on its own: a failed step does not stop the next). The
    weight picks the task once; in an open model one arrival runs the whole task. Think time comes between
    tasks, never between steps. A task's steps read one record of each data set they use, shared by all
    of them (a later step can send what an earlier one sent)."""

    name: str
    weight: float
    steps: tuple[RequestTemplate, ...]
    span: Span = UNKNOWN_SPAN

    @property
    def is_flow(self) -> bool:
        return any(step.flow is not None for step in self.steps)

    @property
    def datasets(self) -> tuple[str, ...]:
        """The data sets its steps read, in order of first use: one record of each per pick."""
        return tuple(dict.fromkeys(d for step in self.steps for d in step.datasets))

    @property
    def timeout_s(self) -> float:
        """The longest a pick can take: its steps' timeouts together."""
        return sum(step.timeout_s for step in self.steps)


# Headers as sent: (name, value), one per name in any case.
Headers = tuple[tuple[str, Text], ...]


def merge_headers(*layers: Iterable[tuple[str, Text]], json_body: bool = False) -> Headers:
    """The headers a request sends, from layers that each override the ones before (target, request,
    `raw:`). Names compare case-insensitively, as HTTP's do: a later layer's header replaces an earlier
    one of the same name in any case, in its place, with the later spelling and value. A JSON body gets
    `Content-Type: application/json` unless a layer set a content type."""
    merged: dict[str, tuple[str, Text]] = {}
    for layer in layers:
        for name, value in layer:
            merged[name.lower()] = (name, value)
    if json_body and "content-type" not in merged:
        merged["content-type"] = ("Content-Type", "application/json")
    return tuple(merged.values())


def integer_weights(weights: list[float], max_total: int = 10_000) -> list[int]:
    """The smallest integers with the same ratios as `weights` (3, 1, 0.1 -> 30, 10, 1).

    Falls back to rounding on a 1/max_total grid when exact ratios need larger numbers. Zero stays zero.
    """
    fractions = [Fraction(w).limit_denominator(1000) for w in weights]
    denominator = math.lcm(*(f.denominator for f in fractions)) if fractions else 1
    ints = [int(f * denominator) for f in fractions]
    divisor = math.gcd(*ints) if any(ints) else 1
    ints = [i // divisor for i in ints]
    if sum(ints) <= max_total:
        return ints
    total = sum(weights)
    return [max(1, round(w / total * max_total)) if w > 0 else 0 for w in weights]


# --- SLOs -----------------------------------------------------------------------------------------

SloMetric = Literal[
    "latency", "ttfb", "ttft", "itl", "tpot", "error_rate", "throughput", "dropped_iterations",
    "latency_trend", "error_rate_trend", "throughput_trend", "memory_growth",
    "success_rate", "goodput", "recovery_time", "gpu_util", "gpu_memory",
]  # fmt: skip
# Time metrics are judged in seconds; error_rate as a fraction; throughput in requests/s;
# dropped_iterations as a count.
TIME_METRICS = frozenset({"latency", "ttfb", "ttft", "itl", "tpot"})
# Soak metrics: a slope per hour fitted over the run's steady part (results/trend.py). latency_trend and
# throughput_trend are relative to the level at the part's start (a fraction per hour: 10%/h = 0.1),
# error_rate_trend is absolute (fraction points per hour), memory_growth the target's RSS in bytes per hour.
TREND_METRICS = frozenset({"latency_trend", "error_rate_trend", "throughput_trend", "memory_growth"})
# The target's GPUs, sampled gauges read from the `dcgm` monitoring targets (results/fleet.py), not from
# requests: gpu_util (utilisation) and gpu_memory (framebuffer used / total), both fractions (90% = 0.9).
FLEET_METRICS = frozenset({"gpu_util", "gpu_memory"})
# success_rate is the mirror of error_rate (a fraction of requests); goodput a rate like throughput, of the
# requests that succeeded and met every latency SLO covering them; recovery_time (seconds) is measured per
# occurrence of the fault named in `Slo.subject`, from the run's per-second figures (results/recovery.py).


@dataclass(frozen=True)
class Window:
    """An SLO time window: a name (`during spike`), or seconds from the start (`during 1m..2m`).

    The name is a stage label or kind, or a fault name: one namespace. `during X` is the union of X's
    intervals; `after X` (`after` true) runs from each end of X to X's next start or the run's end, and
    `after X for 30s` (`length_s`) only the first 30 s of each of those."""

    stage: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    after: bool = False
    length_s: float | None = None


@dataclass(frozen=True)
class AbortRule:
    """`abort_when: error_rate > 20% over 10s`: the run ends at once (exit 1, summary's exit_reason
    `aborted`) when the rate over the records of the trailing `window_s` holds the comparison. A rule is
    checked once the run has lasted its window and the window holds `MIN_ABORT_REQUESTS` requests."""

    metric: Literal["error_rate", "success_rate"]
    op: Literal["<", "<=", ">", ">="]
    threshold: float  # a fraction
    window_s: float
    text: str
    span: Span = UNKNOWN_SPAN

    def holds(self, bad: int, total: int) -> bool:
        """Whether the rule holds on `bad` errors of `total` requests (the rate is the metric's)."""
        errors = bad / total
        rate = errors if self.metric == "error_rate" else 1.0 - errors
        match self.op:
            case "<":
                return rate < self.threshold
            case "<=":
                return rate <= self.threshold
            case ">":
                return rate > self.threshold
        return rate >= self.threshold


MIN_ABORT_REQUESTS = 10  # fewer in a window say too little to end a run on


@dataclass(frozen=True)
class Slo:
    text: str
    metric: SloMetric
    # For time metrics: p50, p95, p99, p99.9, mean, median, min, max. None for rate-like metrics.
    statistic: str | None
    op: Literal["<", "<=", ">", ">="]
    threshold: float
    requests: tuple[str, ...] = ()
    window: Window | None = None
    span: Span = UNKNOWN_SPAN
    subject: str | None = None  # recovery_time: the fault whose recovery is measured

    @property
    def percentile(self) -> float | None:
        if self.statistic and self.statistic.startswith("p"):
            return float(self.statistic[1:])
        if self.statistic == "median":
            return 50.0
        return None

    def holds(self, value: float) -> bool:
        match self.op:
            case "<":
                return value < self.threshold
            case "<=":
                return value <= self.threshold
            case ">":
                return value > self.threshold
            case ">=":
                return value >= self.threshold
        raise AssertionError(self.op)


# --- faults ---------------------------------------------------------------------------------------

# Faults by where they act: the target's process (kill-target), the runner's TCP proxy between the engine
# and the target (network), the embedded server's admin endpoint (server-side).
NETWORK_FAULTS = frozenset({"latency", "bandwidth", "reset", "hang", "drop", "packet-loss"})
SERVER_FAULTS = frozenset({"server-latency", "server-errors", "stall-worker"})
FaultParam = Union[float, int, str, tuple[str, ...]]  # noqa: UP007


@dataclass(frozen=True)
class Fault:
    """One fault of `faults:`, planned: the seconds from the run's start at which each occurrence begins
    (a schedule expanded at compile time, a random one drawn from its seed), how long each lasts, and the
    kind's parameters in SI units under the names the runner and the proxy read:

    kill-target {signal, instance, exec}; latency {delay_s, jitter_s}; bandwidth {bytes_per_s};
    reset, hang, drop {share}; packet-loss {share, stall_s}; server-latency {delay_s};
    server-errors {share}; stall-worker {}.
    """

    name: str
    kind: str
    times: tuple[float, ...]
    duration_s: float
    params: Mapping[str, FaultParam] = field(default_factory=dict)
    span: Span = UNKNOWN_SPAN

    @property
    def network(self) -> bool:
        return self.kind in NETWORK_FAULTS

    @property
    def server_side(self) -> bool:
        return self.kind in SERVER_FAULTS

    def windows(self) -> list[tuple[float, float]]:
        """[start_s, end_s) of each planned occurrence, from the run's start."""
        return [(t, t + self.duration_s) for t in self.times]


# --- the whole scenario ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    base_url: str  # "embedded" means the bundled model server, started by the runner
    model: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # as written; each request's `headers` has them merged in
    # Start-up settings for the embedded server (workers, max_in_flight, max_queue, fault), when used.
    embedded_options: tuple[tuple[str, int | str], ...] = ()
    span: Span = UNKNOWN_SPAN
    start: str = "warm"  # "cold": the runner starts the target without warming its models
    start_command: tuple[str, ...] | None = None  # an external target's argv (run only with --allow-exec)
    ready_timeout_s: float = 120.0  # for the target the runner starts to become ready

    @property
    def is_embedded(self) -> bool:
        return self.base_url == "embedded"

    @property
    def instances(self) -> int:
        """Embedded servers the runner starts (`target.embedded.instances`), each on its own port."""
        return int(dict(self.embedded_options).get("instances", 1)) if self.is_embedded else 1


EMBEDDED_DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class MonitorTarget:
    """One endpoint of `monitoring.targets`: scraped on the monitor's tick into
    `monitor/targets/<name>.jsonl`; `name` is already safe as a file name ([a-z0-9-])."""

    name: str
    url: str
    role: Literal["vllm", "dcgm", "node", "process"]


@dataclass(frozen=True)
class Instances:
    """`monitoring.instances`: where the ready instance count comes from (a PromQL `query` sent to
    `prometheus_url`, None meaning the run's own Prometheus; or the `monitoring.targets` of `role` answering
    their scrape), and what time-to-scale reads: one instance's capacity in ok/s (None: measured from the
    run's knee), the band below the offered rate and the seconds in a row that count as caught up."""

    source: Literal["query", "targets"]
    query: str | None = None
    prometheus_url: str | None = None
    role: Literal["vllm", "dcgm", "node", "process"] | None = None
    capacity_per_instance: float | None = None
    band: float = 0.1
    hold_s: float = 3.0
    span: Span = UNKNOWN_SPAN


@dataclass(frozen=True)
class Monitoring:
    """The `monitoring:` section: a Prometheus server or not, the sampling interval, and the endpoints
    scraped besides the target's own /metrics."""

    prometheus: bool = False
    interval_s: float = 1.0
    targets: tuple[MonitorTarget, ...] = ()
    instances: Instances | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    source_path: str
    source_sha256: str
    target: Target
    load: LoadProfile
    requests: tuple[RequestTemplate, ...]
    datasets: tuple[Dataset, ...] = ()
    slos: tuple[Slo, ...] = ()
    engine: str = DEFAULT_ENGINE  # a name in the engine registry (scenariokit.engines)
    seed: int = 0
    description: str = ""
    monitoring: Monitoring = Monitoring()
    abort_when: tuple[AbortRule, ...] = ()
    faults: tuple[Fault, ...] = ()

    @cached_property
    def mix(self) -> tuple[Task, ...]:
        """The weighted mix: a task per request, but one for the steps of a flow (the requests that name it
        in `flow`, which lower keeps together and in order). Derived from `requests`, so a scenario built
        or changed by hand never disagrees with it."""
        tasks: list[Task] = []
        for r in self.requests:
            last = tasks[-1] if tasks else None
            if r.flow is not None and last is not None and last.is_flow and last.name == r.flow:
                tasks[-1] = Task(last.name, last.weight, (*last.steps, r), last.span)
            else:
                tasks.append(Task(r.flow or r.name, r.weight, (r,), r.span))
        return tuple(tasks)

    @property
    def default_base_url(self) -> str:
        return EMBEDDED_DEFAULT_URL if self.target.is_embedded else self.target.base_url
