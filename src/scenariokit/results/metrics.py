"""Aggregate per-request records into the numbers a run is judged by.

Latency distributions use HdrHistogram (1 µs to 1 h, 3 significant digits), over the records themselves,
never over an engine's rounded summary. Every figure can be taken overall, per request name, per load stage
and per second. In open-model runs latency is also measured from each request's intended start, so a stall
in the generator or the target cannot hide (coordinated omission); both are reported.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from hdrh.histogram import HdrHistogram

from scenariokit.compile.ir import Stage, StageTable, Window
from scenariokit.engines.records import RequestRecord

if TYPE_CHECKING:
    from scenariokit.results.recovery import Occurrence

MICROS = 1_000_000
HIST_MAX_US = 3600 * MICROS
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
HDR_GRID = HdrHistogram(
    1, HIST_MAX_US, 3
)  # the settings of every distribution: index <-> value, never filled

TimeMetric = Callable[[RequestRecord], Iterable[float]]
TIME_METRIC_VALUES: dict[str, TimeMetric] = {
    "latency": lambda r: (r.corrected_latency,),
    "uncorrected_latency": lambda r: (r.latency,),
    "ttfb": lambda r: () if r.ttfb is None else (r.ttfb,),
    "ttft": lambda r: () if r.ttft is None else (r.ttft,),
    "itl": lambda r: r.itl or (),
    "tpot": lambda r: () if r.tpot is None else (r.tpot,),
    "schedule_delay": lambda r: () if r.intended is None else (max(0.0, r.t - r.intended),),
}


@dataclass(frozen=True)
class SampleStats:
    """Seconds. Percentiles from HdrHistogram; count, min, max and mean exact."""

    count: int
    min: float
    mean: float
    max: float
    percentiles: dict[str, float] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        return self.percentiles[f"p{p:g}"]

    def statistic(self, name: str) -> float:
        match name:
            case "mean":
                return self.mean
            case "min":
                return self.min
            case "max":
                return self.max
            case "median":
                return self.percentiles["p50"]
        return self.percentiles[name]


EMPTY = SampleStats(0, math.nan, math.nan, math.nan, {})


def sample_stats(values: Iterable[float], extra_percentiles: Iterable[float] = ()) -> SampleStats:
    histogram = HdrHistogram(1, HIST_MAX_US, 3)
    count, total, low, high = 0, 0.0, math.inf, -math.inf
    for value in values:
        histogram.record_value(min(HIST_MAX_US, max(1, _micros_up(value))))
        count += 1
        total += value
        low, high = min(low, value), max(high, value)
    if count == 0:
        return EMPTY
    wanted = sorted(set(PERCENTILES) | set(extra_percentiles))
    values_at = _nearest_rank(histogram, wanted, count)
    percentiles = {f"p{p:g}": min(high, max(low, v)) for p, v in zip(wanted, values_at, strict=True)}
    return SampleStats(count, low, total / count, high, percentiles)


def micros_up(seconds: np.ndarray) -> np.ndarray:
    """`_micros_up` of many values at once, clipped to the histogram's range as `sample_stats` clips:
    the same float operations (a product, a ceiling, a division), so the same integers."""
    micros = np.ceil(seconds * MICROS)
    micros += micros / MICROS < seconds
    return np.clip(micros, 1, HIST_MAX_US).astype(np.int64)


def hdr_indexes(micros: np.ndarray) -> np.ndarray:
    """The bucket index hdrh's `record_value` counts each value in (`_counts_index_for`), vectorized.

    hdrh computes the bucket from the bit length of `value | sub_bucket_mask`; `np.frexp` gives the bit
    length of integers below 2**53 exactly."""
    grid = HDR_GRID
    bits = np.frexp((micros | grid.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = bits - grid.unit_magnitude - (grid.sub_bucket_half_count_magnitude + 1)
    sub_bucket = micros >> (bucket + grid.unit_magnitude)
    return ((bucket + 1) << grid.sub_bucket_half_count_magnitude) + sub_bucket - grid.sub_bucket_half_count


def _micros_up(seconds: float) -> int:
    """Whole microseconds rounded up, so a percentile never reads below the sample it stands for.

    The second check catches a product that floating point rounded down onto a whole number.
    """
    micros = math.ceil(seconds * MICROS)
    return micros + 1 if micros / MICROS < seconds else micros


def _nearest_rank(histogram: HdrHistogram, percentiles: list[float], count: int) -> list[float]:
    """The smallest recorded value with at least p% of samples at or below it (seconds), per percentile.

    hdrh's own get_value_at_percentile rounds the rank to the nearest sample, which can report a p90 below
    a value that 17% of the samples exceed; an SLO needs this conservative definition (nearest rank).
    One vectorized pass over the bucket counts: walking hdrh's iterator took ~70 ms per distribution.
    """
    return nearest_rank_of_counts(np.ctypeslib.as_array(histogram.counts), percentiles, count)


def nearest_rank_of_counts(counts: np.ndarray, percentiles: list[float], count: int) -> list[float]:
    """`_nearest_rank` on a histogram's bucket counts alone (a tracker keeps only those)."""
    return value_at_ranks(counts, [max(1, math.ceil(p / 100 * count - 1e-9)) for p in percentiles])


def value_at_ranks(counts: np.ndarray, ranks: list[int]) -> list[float]:
    """The highest value of the bucket holding each 1-based rank, in seconds."""
    indexes = np.searchsorted(np.cumsum(counts), ranks, side="left")
    return [
        HDR_GRID.get_highest_equivalent_value(HDR_GRID.get_value_from_index(int(i))) / MICROS for i in indexes
    ]


def stage_intervals(stages: tuple[Stage, ...], name: str) -> list[tuple[float, float]]:
    """Offsets [start, end) of the stages whose label or kind is `name`."""
    return StageTable.of(stages).intervals(name)


# a fault's occurrences as [start, end) offsets from the run's start, by fault name (results/recovery.py
# reads them from faults.jsonl)
FaultSpans = Mapping[str, Sequence[tuple[float, float]]]
NO_FAULTS: FaultSpans = {}


def fault_spans(found: Sequence[Occurrence]) -> dict[str, list[tuple[float, float]]]:
    """Each fault's occurrences as [start, end) offsets, by name."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for o in found:
        spans.setdefault(o.name, []).append((o.start_s, max(o.start_s, o.end_s)))
    return spans


def window_intervals(
    window: Window | None, stages: tuple[Stage, ...], run_length: float, faults: FaultSpans = NO_FAULTS
) -> list[tuple[float, float]]:
    """[start, end) offsets of an SLO's window. A name is a fault's (its occurrences) or a stage's: one
    namespace, so never both. `after X` runs from each end of X to X's next start, the last one to the
    end of the run (inf: every reader clips at the run's length), or only its first `length_s` seconds."""
    if window is None:
        return [(0.0, math.inf)]
    if window.stage is not None:
        name = window.stage
        spans = list(faults[name]) if name in faults else stage_intervals(stages, name)
        return after_spans(spans, window.length_s) if window.after else spans
    return [(window.start_s or 0.0, window.end_s if window.end_s is not None else math.inf)]


def merged(intervals: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The union of [start, end) intervals as sorted, disjoint starts and ends."""
    starts: list[float] = []
    ends: list[float] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if starts and a <= ends[-1]:
            ends[-1] = max(ends[-1], b)
        else:
            starts.append(a)
            ends.append(b)
    return np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)


def inside(offsets: np.ndarray, intervals: Sequence[tuple[float, float]]) -> np.ndarray:
    """Per offset, whether it lies in one of the intervals: a bisection each, however many intervals (a
    fault that recurs has up to a thousand occurrences, and as many `after` windows)."""
    starts, ends = merged(intervals)
    if not len(starts):
        return np.zeros(len(offsets), dtype=bool)
    at = np.searchsorted(starts, offsets, side="right") - 1
    return (at >= 0) & (offsets < ends[np.maximum(at, 0)])


def after_spans(spans: Sequence[tuple[float, float]], length_s: float | None) -> list[tuple[float, float]]:
    """From each end to the next start (the last: to inf), cut to `length_s` when given."""
    ordered = sorted(spans)
    out = []
    for i, (_, end) in enumerate(ordered):
        following = ordered[i + 1][0] if i + 1 < len(ordered) else math.inf
        stop = min(following, end + length_s) if length_s is not None else following
        if stop > end:
            out.append((end, stop))
    return out


@dataclass
class RunData:
    """The records of one run, with its time origin and stages."""

    records: list[RequestRecord]
    started_unix: float
    ended_unix: float
    stages: tuple[Stage, ...]
    dropped_times: list[float] = field(default_factory=list)
    occurrences: Sequence[Occurrence] = ()  # the run's applied fault occurrences (results/recovery.py)

    @property
    def faults(self) -> FaultSpans:
        """Each fault's occurrences as [start, end) offsets: what `during <fault>` selects."""
        return fault_spans(self.occurrences)

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended_unix - self.started_unix)

    def offset(self, unix: float) -> float:
        return unix - self.started_unix

    def select(
        self, names: tuple[str, ...] = (), window: Window | None = None
    ) -> tuple[list[RequestRecord], float]:
        """Records of the named requests that started inside the window, and the window's measured length."""
        intervals = window_intervals(window, self.stages, self.duration_s, self.faults)
        offsets = np.fromiter((self.offset(r.t) for r in self.records), float, len(self.records))
        chosen = [
            r
            for r, kept in zip(self.records, inside(offsets, intervals).tolist(), strict=True)
            if kept and (not names or r.name in names)
        ]
        length = sum(max(0.0, min(b, self.duration_s) - a) for a, b in intervals)
        return chosen, length

    def dropped_in(self, window: Window | None) -> int:
        intervals = window_intervals(window, self.stages, self.duration_s, self.faults)
        return sum(1 for t in self.dropped_times if any(a <= self.offset(t) < b for a, b in intervals))


def summarize(records: list[RequestRecord], length_s: float) -> dict[str, object]:
    """The figures of one table row: counts, rates, latency distribution, error kinds."""
    ok = sum(1 for r in records if r.ok)
    latency = sample_stats(r.corrected_latency for r in records)
    return {
        "requests": len(records),
        "ok": ok,
        "errors": len(records) - ok,
        "error_rate": (len(records) - ok) / len(records) if records else None,
        "throughput": ok / length_s if length_s > 0 else None,
        "latency": latency,
        "errors_by_kind": dict(Counter(r.error_kind for r in records if not r.ok).most_common()),
        "error_reasons": error_reasons(records),
    }


def error_reasons(records: Iterable[RequestRecord]) -> dict[str, dict[str, dict[str, object]]]:
    """Per error kind, the engine's own reasons for its failures without a response: how many records had
    each code (k6's error_code, or Locust's exception class), most first, and a sample message of each
    code (the first a record carries). Kinds with no engine code (http_*, wrong_answer) are left out."""
    codes: dict[str, Counter[str]] = defaultdict(Counter)
    messages: dict[str, dict[str, str]] = defaultdict(dict)
    for r in records:
        if r.ok or r.code is None:
            continue
        kind = r.error_kind or "other"
        codes[kind][r.code] += 1
        if r.message is not None:
            messages[kind].setdefault(r.code, r.message)
    return {
        kind: {"codes": dict(counts.most_common()), "messages": messages.get(kind, {})}
        for kind, counts in sorted(codes.items(), key=lambda item: -item[1].total())
    }


def per_name(data: RunData) -> dict[str, dict[str, object]]:
    by_name: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in data.records:
        by_name[r.name].append(r)
    return {name: summarize(rs, data.duration_s) for name, rs in sorted(by_name.items())}


def per_stage(data: RunData) -> list[dict[str, object]]:
    rows = []
    for stage in StageTable.of(data.stages).windows:
        records, length = data.select(window=Window(start_s=stage.start_s, end_s=stage.end_s))
        rows.append(
            {
                "label": stage.label,
                "kind": stage.kind,
                "start_s": stage.start_s,
                "end_s": stage.end_s,
                "level": (stage.start, stage.end),
                **summarize(records, length),
            }
        )
    return rows


def timeline(data: RunData) -> list[dict[str, float | int | None]]:
    """One row per second: sent, ok, errors, achieved rate and concurrency, latency p50/p95/p99."""
    seconds = max(1, math.ceil(data.duration_s))
    buckets: list[list[RequestRecord]] = [[] for _ in range(seconds)]
    busy = [0.0] * seconds
    for r in data.records:
        i = math.floor(data.offset(r.t))
        if 0 <= i < seconds:
            buckets[i].append(r)
        _spread_busy_time(busy, data.offset(r.t), data.offset(r.end))
    rows = []
    for i, bucket in enumerate(buckets):
        d = sample_stats(r.corrected_latency for r in bucket)
        rows.append(
            {
                "second": i,
                "sent": len(bucket),
                "ok": sum(1 for r in bucket if r.ok),
                "errors": sum(1 for r in bucket if not r.ok),
                "concurrency": busy[i],  # Little's law: request-seconds in flight during this second
                "p50": d.percentiles.get("p50"),
                "p95": d.percentiles.get("p95"),
                "p99": d.percentiles.get("p99"),
            }
        )
    return rows


def _spread_busy_time(busy: list[float], start: float, end: float) -> None:
    first, last = max(0, math.floor(start)), min(len(busy) - 1, math.floor(end))
    for second in range(first, last + 1):
        busy[second] += max(0.0, min(end, second + 1) - max(start, second))
