"""Aggregate per-request records into the numbers a run is judged by.

Distributions use HdrHistogram (1 µs to 1 h, 3 significant digits) over the records themselves, never an
engine's rounded summary; count, min, max and mean are exact. Percentiles are nearest-rank (the smallest
value with at least p% of the samples at or below it), reported as the upper edge of the histogram bucket
that holds it and clamped to [min, max]: at most 0.1% above the exact sample, never below it.

A `Metrics` is a view over a run's records: the whole run, or a selection made with `window()`,
`during()` and `for_requests()`, each knowing its measured length so rates stay honest. Definitions:

- latency: request sent -> last byte. In open-model runs it is measured from the *intended* send time
  (coordinated omission corrected, as wrk2 does); `uncorrected_latency` keeps the plain figure and
  `schedule_delay` (start - intended) shows how late the generator was.
- itl: every gap between streamed chunks; tpot: vLLM's (e2e - ttft) / (output tokens - 1).
- error_rate: non-ok responses / requests sent. Dropped arrivals (never sent) are counted apart.
- throughput: ok responses to requests *started* in the selection, divided by its measured length: the
  selection's intervals clipped to the run's measured span [0, duration_s).
- duration_s: from the engine's test start to the earlier of the planned end and the end of the run.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from scenariokit.ir import LoadModel, LoadProfile, Scenario, Stage, Window
from scenariokit.records import RequestRecord

MICROS = 1_000_000
HIST_MAX_US = 3600 * MICROS
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
INF = math.inf
Interval = tuple[float, float]

TimeMetric = Callable[[RequestRecord], Iterable[float]]
TIME_METRIC_VALUES: dict[str, TimeMetric] = {
    "latency": lambda r: (r.corrected_latency,),
    "uncorrected_latency": lambda r: (r.latency,),
    "schedule_delay": lambda r: () if r.schedule_delay is None else (r.schedule_delay,),
    "ttfb": lambda r: () if r.ttfb is None else (r.ttfb,),
    "ttft": lambda r: () if r.ttft is None else (r.ttft,),
    "itl": lambda r: r.itl or (),
    "tpot": lambda r: () if r.tpot is None else (r.tpot,),
}


# --- distributions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """Seconds. count, min, mean and max exact; percentiles keyed "p50", "p99.9", ..."""

    count: int
    min: float
    mean: float
    max: float
    percentiles: dict[str, float] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        return self.percentiles[f"p{p:g}"]

    def statistic(self, name: str) -> float:
        """mean, min, max, median or pNN."""
        match name:
            case "mean":
                return self.mean
            case "min":
                return self.min
            case "max":
                return self.max
            case "median":
                return self.percentiles["p50"]
        return self.percentiles[f"p{float(name[1:]):g}"]


EMPTY = Distribution(0, math.nan, math.nan, math.nan, {})


def distribution(values: Iterable[float], extra_percentiles: Iterable[float] = ()) -> Distribution:
    histogram = HdrHistogram(1, HIST_MAX_US, 3)
    count, total, low, high = 0, 0.0, INF, -INF
    for value in values:
        histogram.record_value(min(HIST_MAX_US, max(1, round(value * MICROS))))
        count += 1
        total += value
        low, high = min(low, value), max(high, value)
    if count == 0:
        return EMPTY
    wanted = sorted(set(PERCENTILES) | set(extra_percentiles))
    values_at = _nearest_rank(histogram, wanted, count)
    percentiles = {f"p{p:g}": min(high, max(low, v)) for p, v in zip(wanted, values_at, strict=True)}
    return Distribution(count, low, total / count, high, percentiles)


def _nearest_rank(histogram: HdrHistogram, percentiles: list[float], count: int) -> list[float]:
    """Nearest-rank percentiles (seconds) from the bucket counts, in one vectorized pass.

    hdrh's own get_value_at_percentile rounds the rank to the nearest sample, which can report a p90
    below a value that 17% of the samples exceed; an SLO needs the conservative nearest-rank definition.
    """
    cumulative = np.cumsum(np.ctypeslib.as_array(histogram.counts))
    ranks = [max(1, math.ceil(p / 100 * count - 1e-9)) for p in percentiles]
    indexes = np.searchsorted(cumulative, ranks, side="left")
    return [
        histogram.get_highest_equivalent_value(histogram.get_value_from_index(int(i))) / MICROS
        for i in indexes
    ]


def exact_percentile(values: list[float], p: float) -> float:
    """Nearest rank over the exact values (numpy's inverted_cdf): for small per-second samples."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered) - 1e-9)) - 1]


# --- stage windows --------------------------------------------------------------------------------


def stage_spans(stages: tuple[Stage, ...]) -> list[tuple[Stage, float, float]]:
    """(stage, start_s, end_s) of each stage with a length; the first starts at -inf and the last ends
    at +inf, so every request belongs to exactly one stage (stragglers count in the stage they follow)."""
    spans = [(s, a, b) for s, a, b in LoadProfile("closed", stages).stage_windows() if b > a]
    if spans:
        spans[0] = (spans[0][0], -INF, spans[0][2])
        spans[-1] = (spans[-1][0], spans[-1][1], INF)
    return spans


def stage_intervals(stages: tuple[Stage, ...], name: str) -> list[Interval]:
    """The windows of the stages whose label or kind is `name` (`during spike` covers every spike)."""
    return [(a, b) for stage, a, b in stage_spans(stages) if name in (stage.label, stage.kind)]


def _intersect(left: list[Interval], right: list[Interval]) -> list[Interval]:
    out = [(max(a, c), min(b, d)) for a, b in left for c, d in right]
    return [(a, b) for a, b in out if b > a]


# --- the view -------------------------------------------------------------------------------------


@dataclass
class Metrics:
    """A run's records (or a selection of them), its clock and its load curve.

    started_unix: the engine's test start, origin of stage windows and timeline seconds.
    ended_unix: when the run stopped (None: the last response). The measured span is clipped to the plan.
    intervals: offsets [a, b) this view covers; names: the request names it covers (empty: all).
    Dropped arrivals carry no request name, so `for_requests` keeps them.
    """

    records: list[RequestRecord]
    started_unix: float
    ended_unix: float | None = None
    stages: tuple[Stage, ...] = ()
    dropped_times: list[float] = field(default_factory=list)
    model: LoadModel = "closed"
    intervals: tuple[Interval, ...] = ((-INF, INF),)
    names: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.ended_unix is None:  # resolved once, so a selection keeps the whole run's span
            self.ended_unix = max((r.end for r in self.records), default=self.started_unix)

    @classmethod
    def from_records(
        cls,
        records: Iterable[RequestRecord],
        scenario: Scenario,
        run_start_unix: float,
        run_end_unix: float | None = None,
        dropped_times: Iterable[float] = (),
    ) -> Metrics:
        return cls(
            list(records),
            run_start_unix,
            run_end_unix,
            scenario.load.stages,
            list(dropped_times),
            scenario.load.model,
        )

    # --- the clock

    @property
    def load(self) -> LoadProfile:
        return LoadProfile(self.model, self.stages)

    @cached_property
    def duration_s(self) -> float:
        """The run's measured span from its start: to the earlier of the plan's end and the run's end."""
        planned = self.load.duration_s
        span = (self.ended_unix or self.started_unix) - self.started_unix
        return max(0.0, min(span, planned) if planned > 0 else span)

    def offset(self, unix: float) -> float:
        return unix - self.started_unix

    @property
    def length_s(self) -> float:
        """The measured length of this view: its intervals clipped to [0, duration_s)."""
        return sum(max(0.0, min(b, self.duration_s) - max(a, 0.0)) for a, b in self.intervals)

    # --- selections

    def _covers(self, unix: float) -> bool:
        at = self.offset(unix)
        return any(a <= at < b for a, b in self.intervals)

    def _narrow(self, intervals: list[Interval], names: frozenset[str] | None = None) -> Metrics:
        chosen = _intersect(list(self.intervals), intervals)
        if self.names is not None and names is not None:
            names = self.names & names
        view = replace(self, intervals=tuple(chosen), names=self.names if names is None else names)
        keep = view.names
        view.records = [r for r in self.records if (keep is None or r.name in keep) and view._covers(r.t)]
        view.dropped_times = [t for t in self.dropped_times if view._covers(t)]
        return view

    def window(self, start_s: float | None, end_s: float | None) -> Metrics:
        """Requests that started in [start_s, end_s) seconds from the run start (None: open)."""
        low = -INF if start_s is None else start_s
        return self._narrow([(low, INF if end_s is None else end_s)])

    def during(self, stage: str) -> Metrics:
        """Requests that started in any stage labelled `stage` or of kind `stage`."""
        return self._narrow(stage_intervals(self.stages, stage))

    def for_requests(self, names: Iterable[str]) -> Metrics:
        wanted = frozenset(names)
        return self._narrow([(-INF, INF)], wanted) if wanted else self

    def select_window(self, window: Window | None) -> Metrics:
        """An SLO's window: a stage name, or seconds from the run start."""
        if window is None:
            return self
        if window.stage is not None:
            return self.during(window.stage)
        return self.window(window.start_s, window.end_s)

    def has_stage(self, name: str) -> bool:
        return any(name in (s.label, s.kind) for s in self.stages)

    # --- figures

    @property
    def requests(self) -> int:
        return len(self.records)

    @cached_property
    def ok(self) -> int:
        return sum(1 for r in self.records if r.ok)

    @property
    def errors(self) -> int:
        return self.requests - self.ok

    @property
    def dropped(self) -> int:
        return len(self.dropped_times)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.records else None

    @property
    def throughput(self) -> float | None:
        """ok responses per second of measured length (see the module docstring)."""
        length = self.length_s
        return self.ok / length if length > 0 else None

    @property
    def achieved_rate(self) -> float | None:
        """Requests sent per second of measured length."""
        length = self.length_s
        return self.requests / length if length > 0 else None

    def errors_by_kind(self) -> dict[str, int]:
        kinds = Counter(r.error_kind or "other" for r in self.records if not r.ok)
        if self.dropped:
            kinds["dropped"] += self.dropped
        return dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))

    def values(self, metric: str) -> list[float]:
        get = TIME_METRIC_VALUES[metric]
        return [v for r in self.records for v in get(r)]

    def distribution(self, metric: str, extra_percentiles: Iterable[float] = ()) -> Distribution:
        extra = tuple(sorted(set(extra_percentiles) - set(PERCENTILES)))
        key = (metric, extra)
        cache: dict[tuple[str, tuple[float, ...]], Distribution] = self.__dict__.setdefault("_dists", {})
        if key not in cache:
            cache[key] = distribution(self.values(metric), extra)
        return cache[key]

    def time_metrics(self) -> dict[str, Distribution]:
        return {name: self.distribution(name) for name in TIME_METRIC_VALUES}

    def row(self) -> dict[str, Any]:
        """The figures of one table row."""
        return {
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "throughput": self.throughput,
            "achieved_rate": self.achieved_rate,
            "dropped": self.dropped,
            "length_s": self.length_s,
            "latency": self.distribution("latency"),
            "errors_by_kind": self.errors_by_kind(),
        }

    # --- splits

    def by_request(self) -> dict[str, Metrics]:
        names = sorted({r.name for r in self.records})
        return {name: self.for_requests((name,)) for name in names}

    def by_stage(self) -> list[tuple[Stage, float, float, Metrics]]:
        """(stage, planned start_s, planned end_s, view) per stage with a length, by time from the run
        start; the views split the records completely (see `stage_spans`)."""
        planned = [(s, a, b) for s, a, b in self.load.stage_windows() if b > a]
        spans = stage_spans(self.stages)
        return [
            (stage, a, b, self._narrow([(lo, hi)]))
            for (stage, a, b), (_, lo, hi) in zip(planned, spans, strict=True)
        ]

    def by_stage_label(self) -> dict[str, Metrics]:
        """Per stage by the label the engine tagged each request with (k6: the stage it finished in)."""
        groups: dict[str, list[RequestRecord]] = defaultdict(list)
        for r in self.records:
            groups[r.stage].append(r)
        return {label: replace(self, records=rs, dropped_times=[]) for label, rs in sorted(groups.items())}

    def timeline(self) -> list[dict[str, Any]]:
        """One row per second of the run, by request start; every record lands in exactly one row."""
        seconds = max(1, math.ceil(self.duration_s))
        index = [max(0, math.floor(self.offset(r.t))) for r in self.records]
        seconds = max(seconds, max(index, default=0) + 1)
        buckets: list[list[RequestRecord]] = [[] for _ in range(seconds)]
        for i, r in zip(index, self.records, strict=True):
            buckets[i].append(r)
        dropped = Counter(max(0, math.floor(self.offset(t))) for t in self.dropped_times)
        busy = self._busy_seconds(seconds)
        level = self.load.level_at
        return [_second_row(i, b, dropped[i], busy[i], level(i + 0.5)) for i, b in enumerate(buckets)]

    def _busy_seconds(self, seconds: int) -> list[float]:
        """Request-seconds in flight during each second: the time-average concurrency (Little's law)."""
        busy = [0.0] * seconds
        for r in self.records:
            start, end = self.offset(r.t), self.offset(r.end)
            for second in range(max(0, int(start)), min(seconds - 1, int(end)) + 1):
                busy[second] += max(0.0, min(end, second + 1) - max(start, second))
        return busy


def _second_row(
    second: int, bucket: list[RequestRecord], dropped: int, busy: float, level: float
) -> dict[str, Any]:
    latencies = [r.corrected_latency for r in bucket]
    ok = sum(1 for r in bucket if r.ok)
    kinds = Counter(r.error_kind or "other" for r in bucket if not r.ok)
    return {
        "second": second,
        "sent": len(bucket),
        "ok": ok,
        "errors": len(bucket) - ok,
        "errors_by_kind": dict(sorted(kinds.items())),
        "dropped": dropped,
        "intended_level": level,
        "achieved_rate": float(len(bucket)),
        "concurrency": busy,
        "p50": exact_percentile(latencies, 50) if latencies else None,
        "p95": exact_percentile(latencies, 95) if latencies else None,
        "p99": exact_percentile(latencies, 99) if latencies else None,
    }


# --- the orchestrator's name, and table helpers kept for its callers ------------------------------

RunData = Metrics


def summarize(view: Metrics) -> dict[str, Any]:
    return view.row()


def per_name(view: Metrics) -> dict[str, dict[str, Any]]:
    return {name: sub.row() for name, sub in view.by_request().items()}


def per_stage(view: Metrics) -> list[dict[str, Any]]:
    return [
        {
            "label": stage.label,
            "kind": stage.kind,
            "start_s": a,
            "end_s": b,
            "level": (stage.start, stage.end),
            **sub.row(),
        }
        for stage, a, b, sub in view.by_stage()
    ]
