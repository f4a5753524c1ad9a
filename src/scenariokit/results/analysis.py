"""Stage: read a run's data for capacity: QPS and latency at each load level, the knee, the first
component to show distress, and suggestions tied to that evidence.

Everything here is computed from the stored records and monitor samples, so `scenariokit report` gives the
same analysis as the run. Thresholds are named constants, stated in the report next to what they found.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scenariokit.compile.ir import Stage, StageTable
from scenariokit.results.fleet import Fleet, Point
from scenariokit.results.health import SATURATED_CPU, saturated_points
from scenariokit.results.inflight import connection_counts, peak_connections_in
from scenariokit.results.metrics import RunData
from scenariokit.results.seconds import RequestSeconds, request_seconds

MAX_LEVELS = 12  # a ramp is binned into at most this many levels
MIN_LEVEL_SECONDS = 2  # a level held for less than this is too short to read
KNEE_SHARE_OF_PEAK = 0.9  # the knee: the lowest level that reaches 90% of the best throughput ...
KNEE_LATENCY_CLIMB = 1.25  # ... after which p50 latency grows by 25% or more
KNEE_ERROR_CLIMB = 0.01  # ... or the error rate grows by a percentage point or more
KNEE_BRACKET_GAP = 1.5  # levels further apart than this factor cannot place a knee between them
SUSTAINED_S = 3.0  # a distress signal must hold this many seconds
CPU_SATURATED = 100.0 * SATURATED_CPU  # percent of all cores
MEMORY_HIGH = 90.0  # percent of host memory
LATENCY_DISTRESS = 2.0  # per-second p95 this many times the run's early p95
ERROR_DISTRESS = 0.01  # per-second error share
GPU_MEMORY_FULL = 0.95  # framebuffer used / total: past this an allocation (a KV block, a batch) can fail
GPU_PEGGED = 95.0  # percent utilisation: the GPU has no idle time left to absorb more work
KV_CACHE_FULL = 0.9  # vLLM preempts and queues requests as its KV cache fills


def level_at(stages: Sequence[Stage], offset_s: float) -> float:
    """The intended users (closed) or rate (open) `offset_s` into the run."""
    return StageTable.of(stages).level_at(offset_s)


# --- load levels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """The run's behaviour at one intended load level (users or requests/s), over all seconds spent there."""

    level: float
    seconds: int
    requests: int
    throughput: float  # ok responses per second
    error_rate: float
    achieved_concurrency: float  # requests in flight on average (Little's law)
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None = None  # of the ok requests' latency, as the percentiles
    peak_in_flight: int = 0  # the most in flight at once in the level's seconds (results/inflight.py)
    peak_connections: int | None = None  # the engine's open connections to the target (run/connections.py)


def level_groups(stages: Sequence[Stage], duration_s: float) -> dict[float, list[int]]:
    """The run's seconds by intended level (exact on holds and steps, binned on ramps)."""
    planned = sum(s.duration_s for s in stages)
    seconds = max(1, math.ceil(min(duration_s, planned) - 1e-6))  # the tail after the curve is no level
    table = StageTable.of(tuple(stages))
    return _bin_levels([table.level_at(s + 0.5) for s in range(seconds)])


def seconds_of(data: RunData) -> RequestSeconds:
    """The per-second view the analysis reads, from records in memory (results/stream.py streams it)."""
    groups = level_groups(data.stages, data.duration_s)
    return request_seconds([data.records], data.started_unix, data.duration_s, groups)


def load_levels(data: RunData, seconds: RequestSeconds | None = None) -> list[Level]:
    """Throughput, errors and latency at each intended level."""
    view = seconds or seconds_of(data)
    busy = [row["concurrency"] for row in view.timeline]
    levels = []
    for (level, indexes), totals in sorted(zip(view.groups.items(), view.levels, strict=True)):
        if len(indexes) < MIN_LEVEL_SECONDS or level <= 0 or not totals.requests:
            continue
        latency = totals.ok_latency  # of the ok requests
        levels.append(
            Level(
                level=level,
                seconds=len(indexes),
                requests=totals.requests,
                throughput=totals.ok / len(indexes),
                error_rate=1 - totals.ok / totals.requests,
                achieved_concurrency=sum(float(busy[i] or 0.0) for i in indexes) / len(indexes),
                p50=latency.percentiles.get("p50"),
                p95=latency.percentiles.get("p95"),
                p99=latency.percentiles.get("p99"),
                mean=latency.mean if latency.count else None,
                peak_in_flight=max(
                    (view.peak_in_flight[i] for i in indexes if i < len(view.peak_in_flight)), default=0
                ),
            )
        )
    return levels


def with_connections(
    levels: list[Level], view: RequestSeconds, counts: list[tuple[float, int]], started: float
) -> list[Level]:
    """Each level with the most connections the engine held open to the target in its seconds."""
    return [
        dataclasses.replace(lv, peak_connections=peak_connections_in(counts, started, view.groups[lv.level]))
        for lv in levels
    ]


def _bin_levels(intended: list[float]) -> dict[float, list[int]]:
    """Seconds by level: distinct levels when there are few (holds, steps), else equal-width bins."""
    distinct = {round(v, 3) for v in intended}
    if len(distinct) <= MAX_LEVELS:
        groups: dict[float, list[int]] = {}
        for i, v in enumerate(intended):
            groups.setdefault(round(v, 3), []).append(i)
        return groups
    high = max(intended)
    width = high / MAX_LEVELS
    groups = {}
    for i, v in enumerate(intended):
        upper = min(MAX_LEVELS, max(1, math.ceil(v / width - 1e-9))) * width
        groups.setdefault(round(upper, 3), []).append(i)
    return groups


@dataclass(frozen=True)
class SaturationFit:
    """Throughput over load fitted by two segments, X = min(slope x level, capacity): the asymptotic bounds
    of operational analysis. Past `knee_level` (= capacity / slope) more load cannot add throughput."""

    slope: float  # ok/s per user (closed) or per request/s offered (open) while it still scales
    capacity: float  # ok/s where it stops
    knee_level: float
    r_squared: float
    p_value: float  # F test: does the flat segment explain the data better than one straight line?


@dataclass(frozen=True)
class Knee:
    found: bool
    level: float | None  # the highest level worth adding load to
    throughput: float | None  # ok/s there
    peak_throughput: float | None
    explanation: str
    fit: SaturationFit | None = None
    # no knee placed, but the top level is in distress: the knee lies between these two levels
    between: tuple[float, float] | None = None


def find_knee(levels: Sequence[Level], unit: str = "users") -> Knee:
    """The lowest level that reaches 90% of the best throughput, when a higher level shows latency or
    errors climbing with no more throughput: past it, more load only queues."""
    usable = [lv for lv in levels if lv.p50 is not None]
    if len(usable) < 3:
        return Knee(False, None, None, None, f"too few load levels to find a knee ({len(usable)}; need 3)")
    peak = max(lv.throughput for lv in usable)
    fit = fit_saturation(usable)
    knee = next(lv for lv in usable if lv.throughput >= KNEE_SHARE_OF_PEAK * peak)
    above = [lv for lv in usable if lv.level > knee.level]
    climbing = [
        lv
        for lv in above
        if (lv.p50 or 0) >= KNEE_LATENCY_CLIMB * (knee.p50 or 0)
        or lv.error_rate - knee.error_rate >= KNEE_ERROR_CLIMB
    ]
    if not climbing:
        between = _knee_bracket(usable)
        sentence = _no_knee_sentence(usable, unit) if between is None else _bracket_sentence(usable, unit)
        return Knee(False, None, None, peak, sentence + _fit_sentence(fit, unit), fit, between)
    worst = climbing[-1]
    return Knee(
        True,
        knee.level,
        knee.throughput,
        peak,
        f"throughput reaches {knee.throughput:.2f} ok/s at {knee.level:g} {unit} (p50 {_ms(knee.p50)}); "
        f"at {worst.level:g} {unit} it is {worst.throughput:.2f} ok/s while p50 is {_ms(worst.p50)} "
        f"and errors {worst.error_rate:.1%}" + _fit_sentence(fit, unit),
        fit,
    )


def fit_saturation(levels: Sequence[Level]) -> SaturationFit | None:
    """Least squares of X = min(a L, c) against the nested X = a L (no saturation), with an F test for the
    second parameter. Each split of the sorted levels into a rising and a flat part is tried; the split
    with the least squared error wins. None with fewer than three levels (the test needs a residual)."""
    from scipy.stats import f as f_distribution

    points = sorted((lv.level, lv.throughput) for lv in levels if lv.level > 0)
    if len(points) < 3:
        return None
    xs, ys = [x for x, _ in points], [y for _, y in points]
    line_slope = sum(x * y for x, y in points) / sum(x * x for x in xs)
    sse_line = sum((y - line_slope * x) ** 2 for x, y in points)
    best: tuple[float, float, float] | None = None  # (sse, slope, capacity)
    for split in range(1, len(points)):
        rising, flat = points[:split], points[split:]
        slope = sum(x * y for x, y in rising) / sum(x * x for x, _ in rising)
        capacity = statistics.fmean(y for _, y in flat)
        sse = sum((y - min(slope * x, capacity)) ** 2 for x, y in points)
        if best is None or sse < best[0]:
            best = (sse, slope, capacity)
    assert best is not None
    sse, slope, capacity = best
    if slope <= 0:
        return None
    dof = len(points) - 2
    mean = statistics.fmean(ys)
    total = sum((y - mean) ** 2 for y in ys)
    if sse <= 1e-12:
        p_value = 0.0 if sse_line > 1e-12 else 1.0
    else:
        statistic = (sse_line - sse) / (sse / dof)
        p_value = float(f_distribution.sf(statistic, 1, dof)) if statistic > 0 else 1.0
    return SaturationFit(
        slope=slope,
        capacity=capacity,
        knee_level=capacity / slope,
        r_squared=1 - sse / total if total > 0 else 1.0,
        p_value=p_value,
    )


def _knee_bracket(levels: Sequence[Level]) -> tuple[float, float] | None:
    """The top two levels when the top one is in distress (errors or p50 climbing) yet so far above the
    one below (a spike) that the knee cannot be placed between them."""
    below, top = levels[-2], levels[-1]
    distressed = top.error_rate - below.error_rate >= KNEE_ERROR_CLIMB or (
        top.p50 or 0
    ) >= KNEE_LATENCY_CLIMB * (below.p50 or 0)
    return (below.level, top.level) if distressed and top.level >= KNEE_BRACKET_GAP * below.level else None


def _bracket_sentence(levels: Sequence[Level], unit: str) -> str:
    below, top = levels[-2], levels[-1]
    return (
        f"the knee lies between {below.level:g} and {top.level:g} {unit}, too far apart to place it: at "
        f"{top.level:g} {unit}, {top.throughput:.2f} ok/s with p50 {_ms(top.p50)} and errors "
        f"{top.error_rate:.1%}, against p50 {_ms(below.p50)} and errors {below.error_rate:.1%} at "
        f"{below.level:g}"
    )


def _no_knee_sentence(levels: Sequence[Level], unit: str) -> str:
    top = levels[-1]
    return (
        f"no knee up to {top.level:g} {unit}: throughput still grows or latency holds "
        f"({top.throughput:.2f} ok/s, p50 {_ms(top.p50)} at the top level)"
    )


PER_UNIT = {"users": "user", "req/s": "req/s offered"}


def _fit_sentence(fit: SaturationFit | None, unit: str) -> str:
    if fit is None:
        return ""
    return (
        f"; a two-segment fit rises {fit.slope:.2f} ok/s per {PER_UNIT.get(unit, unit)} up to "
        f"{fit.knee_level:.1f} {unit}, then holds at {fit.capacity:.2f} ok/s (R² {fit.r_squared:.2f}, "
        f"p = {fit.p_value:.3g} against no saturation)"
    )


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f} ms"


# --- distress -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """The first sustained sign of distress of one component."""

    component: str
    at_s: float  # seconds into the run
    level: float  # intended load then
    detail: str


def first_sustained(points: Iterable[tuple[float, bool]], hold: float = SUSTAINED_S) -> float | None:
    """The time of the first run of true points that lasts `hold` seconds, each point standing for one
    sampling interval (the median gap between points), so the rule holds whatever the interval."""
    ordered = list(points)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(ordered)]
    spacing = statistics.median(gaps) if gaps else 1.0
    start: float | None = None  # where the current run of true points began
    for t, flag in ordered:
        start = (t if start is None else start) if flag else None
        if start is not None and t - start + spacing >= hold - 1e-9:
            return start
    return None


def _series(samples: list[dict[str, Any]], metric: str) -> list[tuple[float, float]]:
    """(unix t, summed value) of a target metric over its label sets; samples without it are skipped."""
    out = []
    for sample in samples:
        values = sample.get("metrics", {})
        matched = [v for k, v in values.items() if k == metric or k.startswith(metric + "{")]
        if matched:
            out.append((sample["t"], sum(matched)))
    return out


def distress_signals(
    data: RunData,
    target: list[dict[str, Any]],
    host: list[dict[str, Any]],
    gpu: list[dict[str, Any]],
    generator: dict[str, Any],
    seconds: RequestSeconds | None = None,
    fleet: Fleet | None = None,
) -> list[Signal]:
    """Every component that showed sustained distress, earliest first (`fleet`: monitoring.targets)."""
    view = seconds or seconds_of(data)
    found: list[tuple[str, float | None, str]] = []
    rel = data.offset

    waiting = _series(target, "vllm:num_requests_waiting")
    at = first_sustained((rel(t), v > 0) for t, v in waiting)
    found.append(("target: request queue", at, "requests waiting for a model worker"))
    for name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"):
        kv = _series(target, name)
        at = first_sustained((rel(t), v >= 0.9) for t, v in kv)
        found.append(("target: KV cache", at, f"{name} at or above 90%"))
    found.append(("target: down", target_down_at(data, target, view), "/metrics stopped answering"))

    cpu = [(rel(s["t"]), s["cpu_percent"] >= CPU_SATURATED) for s in host]
    found.append(("host: CPU", first_sustained(cpu), f"all cores at or above {CPU_SATURATED:.0f}%"))
    memory = [(rel(s["t"]), s["memory_percent"] >= MEMORY_HIGH) for s in host]
    found.append(("host: memory", first_sustained(memory), f"memory at or above {MEMORY_HIGH:.0f}%"))
    for sample_gpus in _gpu_points(gpu, rel):
        found.append(sample_gpus)

    # every engine process counts, and one at its single core is saturated on its own (results/health.py)
    gen_points = [(rel(t), flag) for t, flag in saturated_points(generator)]
    found.append(("load generator: CPU", first_sustained(gen_points), "the engine's own CPU saturated"))

    found += _request_signals(view)
    found += fleet_signals(fleet) if fleet else []
    signals = [
        Signal(component, at, level_at(data.stages, at), detail)
        for component, at, detail in found
        if at is not None
    ]
    return sorted(signals, key=lambda s: s.at_s)


# --- the target's /metrics ------------------------------------------------------------------------

# A scrape that found no server there, or none that answered: with no request answered in that second
# either, the target is down. `absent` (no Prometheus text at /metrics: a plain REST service) never is.
SCRAPE_FAILED = ("refused", "timeout", "error")
NOT_SCRAPED = "the target has no Prometheus /metrics: target-side signals not available"


def scrape_outcomes(target: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """(unix t, outcome) of each scrape (run/monitor.py, SCRAPE_OUTCOMES). A sample from before outcomes
    were written has only `up`: up is ok; not up before any scrape worked reads as absent (a 404 and a
    refused connection looked alike then, and a target that never served /metrics is the common case),
    after one worked as error."""
    out, seen_ok = [], False
    for sample in target:
        outcome = sample.get("scrape")
        if outcome is None:
            up = bool(sample.get("up", True))
            outcome = "ok" if up else ("error" if seen_ok else "absent")
        seen_ok = seen_ok or outcome == "ok"
        out.append((float(sample["t"]), str(outcome)))
    return out


def target_down_at(
    data: RunData, target: list[dict[str, Any]], seconds: RequestSeconds | None = None
) -> float | None:
    """When the target went down: the first 2 s of scrapes that failed to connect or answer, in seconds
    where no request got an ok response (a target that answers requests is up, whatever its /metrics
    does)."""
    answered = (seconds or seconds_of(data)).answered
    points = [
        (data.offset(t), outcome in SCRAPE_FAILED and math.floor(data.offset(t)) not in answered)
        for t, outcome in scrape_outcomes(target)
    ]
    return first_sustained(points, 2)


def target_scrape_note(target: list[dict[str, Any]]) -> str:
    """Said once when no scrape of the target's /metrics found Prometheus text and some found the path
    not served: the target-side signals (queue, KV cache, down) could not be read."""
    outcomes = {outcome for _, outcome in scrape_outcomes(target)}
    return NOT_SCRAPED if "absent" in outcomes and "ok" not in outcomes else ""


def _gpu_points(gpu: list[dict[str, Any]], rel: Any) -> list[tuple[str, float | None, str]]:
    memory = [
        (rel(s["t"]), any(g["memory_used_bytes"] >= 0.95 * g["memory_total_bytes"] for g in s["gpus"]))
        for s in gpu
    ]
    util = [(rel(s["t"]), any(g["util_percent"] >= 95 for g in s["gpus"])) for s in gpu]
    return [
        ("GPU: memory", first_sustained(memory), "GPU memory at or above 95%"),
        ("GPU: utilisation", first_sustained(util), "GPU utilisation at or above 95%"),
    ]


def _held(points: list[Point], test: Any) -> float | None:
    return first_sustained((p.t, test(p.value)) for p in points)


def fleet_signals(fleet: Fleet) -> list[tuple[str, float | None, str]]:
    """The targets' own distress, by role: a GPU's framebuffer near full ("GPU memory") or its utilisation
    pegged ("GPU compute"), a vLLM KV cache full or its queue growing, a node's CPU or memory pegged. Each
    names the GPU or target and what it read at the time."""
    out: list[tuple[str, float | None, str]] = []
    for g in fleet.gpus:
        at = _held(g.memory, lambda v: v >= GPU_MEMORY_FULL)
        seen = next((p for p in g.memory if at is not None and p.t >= at), None)
        used = f" ({seen.value:.1%} of {g.total_bytes / 2**30:.1f} GiB used then)" if seen else ""
        name, model = f"{g.gpu.target} GPU {g.gpu.index}", f"{g.gpu.model}: " if g.gpu.model else ""
        full = f"{model}framebuffer at or above {GPU_MEMORY_FULL:.0%}{used}"
        out.append((f"GPU memory ({name})", at, full))
        at = _held(g.util, lambda v: v >= GPU_PEGGED)
        out.append((f"GPU compute ({name})", at, f"{model}utilisation at or above {GPU_PEGGED:.0f}%"))
    for v in fleet.vllm:
        at = _held(v.kv, lambda x: x >= KV_CACHE_FULL)
        out.append((f"KV cache ({v.target})", at, f"vLLM's KV cache at or above {KV_CACHE_FULL:.0%}"))
        at = _held(v.waiting, lambda x: x > 0)
        out.append((f"request queue ({v.target})", at, "requests waiting for the engine"))
    for n in fleet.nodes:
        at = _held(n.cpu, lambda x: x >= SATURATED_CPU)
        out.append((f"host CPU ({n.target})", at, f"all cores at or above {CPU_SATURATED:.0f}% busy"))
        at = _held(n.memory, lambda x: x >= MEMORY_HIGH / 100)
        out.append((f"host memory ({n.target})", at, f"memory at or above {MEMORY_HIGH:.0f}% used"))
    return out


def _request_signals(view: RequestSeconds) -> list[tuple[str, float | None, str]]:
    """Errors by kind and a latency climb, from the per-second view of the requests."""
    seconds = len(view.timeline)
    sent = [int(row["sent"] or 0) for row in view.timeline]
    out: list[tuple[str, float | None, str]] = []
    for kind, count in view.kinds:
        errors = view.kind_seconds.get(kind, [0] * seconds)
        points = [(float(i), sent[i] > 0 and errors[i] / sent[i] >= ERROR_DISTRESS) for i in range(seconds)]
        out.append((f"errors: {kind}", first_sustained(points, 2), f"{count:,} responses of this kind"))
    ok_latencies = view.ok_p95
    early = [v for v in ok_latencies[: max(3, seconds // 5)] if v is not None]
    if early:
        baseline = sorted(early)[len(early) // 2]
        points = [
            (float(i), v is not None and v >= LATENCY_DISTRESS * baseline) for i, v in enumerate(ok_latencies)
        ]
        out.append(
            (
                "target: latency",
                first_sustained(points),
                f"p95 at or above {LATENCY_DISTRESS:g}x the early p95 ({_ms(baseline)})",
            )
        )
    return out


FLEET_ADVICE = {
    "GPU memory": "the GPU's memory filled first: fewer concurrent sequences per replica (vLLM's "
    "--max-num-seqs, --gpu-memory-utilization), a smaller batch or a quantised model, or more GPUs",
    "GPU compute": "the GPU's compute saturated first: more load only queues; add GPUs or replicas",
    "KV cache": "the KV cache filled first: requests are preempted and queue; shorten contexts or add "
    "replicas",
    "host CPU": "the target host's CPU saturated first: tokenisation, pre- and post-processing need cores",
}


# signals of the generator's own machine (psutil, NVML, the engine): a reason to doubt the measurement
# (results/health.py says so), not a component of the system under test
GENERATOR_SIDE = ("host:", "GPU:", "load generator:")


def _fleet_first(signals: list[Signal], unit: str) -> str:
    """When a target-side component led the target's distress: what it was, when, and what came next."""
    served = [s for s in signals if not s.component.startswith(GENERATOR_SIDE)]
    if not served:
        return ""
    first = served[0]
    kind = next((k for k in FLEET_ADVICE if first.component.startswith(k + " (")), None)
    if kind is None:
        return ""
    later = next((s for s in served[1:] if s.component.startswith(("errors:", "target: latency"))), None)
    then = (
        f", {later.at_s - first.at_s:.0f} s before {later.component} at {later.at_s:.0f} s" if later else ""
    )
    return (
        f"First to fail: {first.component} at {first.at_s:.0f} s ({first.level:g} {unit}; {first.detail})"
        f"{then}: {FLEET_ADVICE[kind]}."
    )


# --- the whole analysis ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    unit: str
    levels: list[Level]
    knee: Knee
    signals: list[Signal]
    suggestions: list[str] = field(default_factory=list)
    target_note: str = ""  # NOT_SCRAPED when the target has no Prometheus /metrics

    @property
    def first_distress(self) -> Signal | None:
        return self.signals[0] if self.signals else None


def analyse(
    data: RunData,
    load_model: str,
    target: list[dict[str, Any]],
    host: list[dict[str, Any]],
    gpu: list[dict[str, Any]],
    generator: dict[str, Any],
    seconds: RequestSeconds | None = None,
    fleet: Fleet | None = None,
) -> Analysis:
    """`seconds`: the per-second view when streamed (results/stream.py); else made from `data.records`.
    `fleet`: the monitoring targets' series (results/fleet.py)."""
    unit = "users" if load_model == "closed" else "req/s"
    view = seconds or seconds_of(data)
    levels = with_connections(load_levels(data, view), view, connection_counts(generator), data.started_unix)
    knee = find_knee(levels, unit)
    signals = distress_signals(data, target, host, gpu, generator, view, fleet)
    return Analysis(
        unit, levels, knee, signals, suggest(levels, knee, signals, data, unit), target_scrape_note(target)
    )


def suggest(levels: list[Level], knee: Knee, signals: list[Signal], data: RunData, unit: str) -> list[str]:
    """Advice that quotes the evidence it rests on."""
    out = []
    peak_level = max((max(s.start, s.end) for s in data.stages), default=0.0)
    by_component = {s.component: s for s in signals}
    if knee.found and knee.level:
        replicas = math.ceil(peak_level / knee.level) if peak_level > knee.level else 1
        out.append(
            f"Capacity: about {knee.throughput:.2f} ok/s per target, reached at {knee.level:g} {unit}; more "
            f"load only adds waiting. The curve peaks at {peak_level:g} {unit}: that needs about {replicas} "
            f"target(s) of this size if they scale out linearly (measure it)."
        )
    elif knee.between is not None:
        low, high = knee.between
        out.append(
            f"The load jumped from {low:g} to {high:g} {unit} and the service was already in distress at "
            f"{high:g}: to find its capacity, hold levels in between (e.g. `curve: steps({low:g}, {high:g}, "
            f"{max(1, round((high - low) / 5)):g}, 20s)`, as in scenarios/knee-sweep.yaml)."
        )
    elif levels and not signals:
        out.append(
            f"No component showed distress up to {peak_level:g} {unit}: raise the curve's peak to find "
            "the knee."
        )
    if queue := by_component.get("target: request queue"):
        out.append(
            f"The target's queue grew first at {queue.at_s:.0f} s ({queue.level:g} {unit}): the model "
            "workers are the bottleneck, not the HTTP layer. Add workers or replicas, or batch requests."
            if signals[0] is queue
            else f"The target's queue grew at {queue.at_s:.0f} s ({queue.level:g} {unit})."
        )
    refused = [s for s in signals if s.component in ("errors: http_4xx:429", "errors: http_5xx:503")]
    for signal in refused:
        out.append(
            f"Admission control refused requests from {signal.at_s:.0f} s ({signal.level:g} {unit}; "
            f"{signal.detail}): clients should back off on Retry-After; a longer queue only trades refusals "
            "for latency."
        )
    if timeouts := by_component.get("errors: timeout"):
        out.append(
            f"Client timeouts from {timeouts.at_s:.0f} s ({timeouts.level:g} {unit}): the target stalled "
            "longer than the scenario's timeout; check the queue and CPU curves at that time."
        )
    if wrong := by_component.get("errors: wrong_answer"):
        out.append(
            f"Wrong answers under load from {wrong.at_s:.0f} s ({wrong.detail}): correctness degrades "
            "with load, which status codes alone would hide."
        )
    if signals and (first := _fleet_first(signals, unit)):
        out.append(first)
    if (cpu := by_component.get("host: CPU")) and signals[0] is cpu:
        out.append(
            f"Host CPU saturated first, at {cpu.at_s:.0f} s ({cpu.level:g} {unit}). When the generator "
            "shares the host with the target, run the engine elsewhere (Locust workers, k6 segments)."
        )
    if generator := by_component.get("load generator: CPU"):
        out.append(
            f"The load generator saturated at {generator.at_s:.0f} s: numbers past that point measure "
            "the generator; add engine processes or machines."
        )
    if memory := by_component.get("host: memory"):
        out.append(
            f"Host memory passed {MEMORY_HIGH:.0f}% at {memory.at_s:.0f} s: look for growth per request."
        )
    return out
