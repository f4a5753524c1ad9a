"""SLO verdicts kept up to date batch by batch, in memory that does not grow with the run.

Per SLO scope (its requests and its window) the tracker keeps counters (requests, errors, ok) and, per
time metric judged there, one HdrHistogram's bucket counts (the settings of `metrics.sample_stats`) with
the exact count, sum, minimum, maximum and spread, and per percentile SLO the exact count of samples beyond
its limit (from the values, never from buckets). That is all a verdict needs (`slo.Facts`), so the live
exporter, the abort judge and the live view read verdicts in time independent of the run's length, decided
by `slo.decide_facts`, the rule the summary uses.

Two figures differ from the summary's by construction, and neither decides anything: a live percentile's
own bounds are the HDR values at the order-statistic ranks (the summary's are the exact samples), and a
mean's spread is merged batch by batch (Chan et al.), equal to numpy's two-pass figure to rounding.
Dropped iterations are counted by the engine's reader, not here: their live verdict is on no drops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scenariokit.compile.ir import TIME_METRICS, TREND_METRICS, Slo, Stage, Window
from scenariokit.engines.records import RequestRecord
from scenariokit.results.confidence import DEFAULT_CONFIDENCE, quantile_ranks
from scenariokit.results.metrics import (
    EMPTY,
    HDR_GRID,
    PERCENTILES,
    TIME_METRIC_VALUES,
    SampleStats,
    hdr_indexes,
    micros_up,
    nearest_rank_of_counts,
    value_at_ranks,
    window_intervals,
)
from scenariokit.results.slo import WRONG_SIDE, Facts, Verdict, is_extreme, unmeasured, verdict_of

ScopeKey = tuple[tuple[str, ...], Window | None]


@dataclass
class Distribution:
    """One time metric in one scope: what `sample_stats` computes, kept as bucket counts and sums."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(HDR_GRID.counts_len, dtype=np.int64))
    n: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    mean: float = 0.0  # running mean and sum of squared deviations, for the spread
    m2: float = 0.0

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        self.counts += np.bincount(hdr_indexes(micros_up(values)), minlength=len(self.counts))
        # a running sum in the samples' order, as sample_stats adds them: accumulate is sequential
        self.total = float(np.add.accumulate(np.concatenate(([self.total], values)))[-1])
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))
        size, batch_mean = len(values), float(values.mean())
        batch_m2 = float(np.square(values - batch_mean).sum())
        joined = self.n + size
        delta = batch_mean - self.mean
        self.mean += delta * size / joined
        self.m2 += batch_m2 + delta * delta * self.n * size / joined
        self.n = joined

    def stats(self, extra_percentiles: Sequence[float] = ()) -> SampleStats:
        """Equal to `sample_stats` over the same values, in the same order."""
        if self.n == 0:
            return EMPTY
        wanted = sorted(set(PERCENTILES) | set(extra_percentiles))
        values_at = nearest_rank_of_counts(self.counts, wanted, self.n)
        percentiles = {
            f"p{p:g}": min(self.high, max(self.low, v)) for p, v in zip(wanted, values_at, strict=True)
        }
        return SampleStats(self.n, self.low, self.total / self.n, self.high, percentiles)

    def stdev(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n >= 2 else math.nan


@dataclass
class Scope:
    """The requests an SLO is about (names) during its window: counters, and a distribution per metric."""

    requests: int = 0
    errors: int = 0
    ok: int = 0
    metrics: dict[str, Distribution] = field(default_factory=dict)


class SloTracker:
    """A record sink (`add(batch)`, `close()`) whose verdicts cost O(SLOs), whatever the run's length.

    `origin_unix` is the run's clock origin for windows (the engine's start); when it is not known yet,
    the first batch's earliest start stands in for it, as the abort judge always did."""

    def __init__(
        self,
        slos: Sequence[Slo],
        stages: tuple[Stage, ...],
        confidence: float = DEFAULT_CONFIDENCE,
        engine: str | None = None,
        origin_unix: float | None = None,
    ) -> None:
        # soak trends are fitted on the whole series after the run (results/trend.py), not kept live
        self.slos = tuple(slo for slo in slos if slo.metric not in TREND_METRICS)
        self.stages = stages
        self.confidence = confidence
        self.engine = engine
        self.origin_unix = origin_unix
        self.scopes: dict[ScopeKey, Scope] = {}
        self.beyond: list[int] = [0] * len(self.slos)  # per percentile SLO: samples beyond its limit
        for slo in self.slos:
            scope = self.scopes.setdefault(scope_key(slo), Scope())
            if slo.metric in TIME_METRICS:
                scope.metrics.setdefault(slo.metric, Distribution())

    def add(self, batch: Sequence[RequestRecord]) -> None:
        if not batch:
            return
        if self.origin_unix is None:
            self.origin_unix = min(r.t for r in batch)
        chosen = {key: self.select(key, batch) for key in self.scopes}
        values: dict[tuple[ScopeKey, str], np.ndarray] = {}
        for key, scope in self.scopes.items():
            records = chosen[key]
            ok = sum(1 for r in records if r.ok)
            scope.requests, scope.ok, scope.errors = (
                scope.requests + len(records),
                scope.ok + ok,
                scope.errors + len(records) - ok,
            )
            for metric, dist in scope.metrics.items():
                read = TIME_METRIC_VALUES[metric]
                values[key, metric] = np.fromiter((v for r in records for v in read(r)), float)
                dist.add(values[key, metric])
        for i, slo in enumerate(self.slos):
            if slo.metric in TIME_METRICS and slo.percentile is not None and not is_extreme(slo):
                wrong = WRONG_SIDE[slo.op][0]
                self.beyond[i] += int(
                    np.count_nonzero(wrong(values[scope_key(slo), slo.metric], slo.threshold))
                )

    def close(self) -> None:
        """Nothing to flush: the tracker holds counts only."""

    def select(self, key: ScopeKey, batch: Sequence[RequestRecord]) -> Sequence[RequestRecord]:
        """The batch's records in the scope: its request names, started inside its window."""
        names, window = key
        origin = self.origin_unix or 0.0
        # no window is [0, inf): a record that started before the origin is in no scope (RunData.select)
        intervals = window_intervals(window, self.stages, math.inf)
        return [
            r
            for r in batch
            if (not names or r.name in names) and any(a <= r.t - origin < b for a, b in intervals)
        ]

    def distribution(self, slo: Slo) -> Distribution:
        return self.scopes[scope_key(slo)].metrics[slo.metric]

    def facts(self, slo: Slo, now_unix: float) -> Facts:
        """The SLO's facts so far: what `slo.facts_of` gives over the same records ending `now_unix`."""
        scope = self.scopes[scope_key(slo)]
        if slo.metric in TIME_METRICS:
            dist = scope.metrics[slo.metric]
            if dist.n == 0:
                return Facts(None, 0)
            stats = dist.stats([slo.percentile] if slo.percentile else [])
            if is_extreme(slo):
                return Facts(stats.min if slo.statistic == "min" else stats.max, dist.n)
            if slo.percentile is None:
                return Facts(stats.mean, dist.n, stdev=dist.stdev())
            q_low, q_high = self._quantile_bounds(dist, slo.percentile / 100)
            k = self.beyond[self.slos.index(slo)]
            return Facts(stats.statistic(slo.statistic or "mean"), dist.n, k, q_low=q_low, q_high=q_high)
        if slo.metric == "error_rate":
            rate = scope.errors / scope.requests if scope.requests else None
            return Facts(rate, scope.requests, scope.errors)
        if slo.metric == "throughput":
            length = self.window_length(slo.window, now_unix)
            return Facts(scope.ok / length if length > 0 else None, scope.ok, scope.ok, length=length)
        return Facts(0.0, scope.requests, 0)  # drops are the reader's to count (module docstring)

    def _quantile_bounds(self, dist: Distribution, q: float) -> tuple[float | None, float | None]:
        """The HDR values at the order-statistic ranks: the bounds' buckets, not the samples themselves."""
        low_rank, high_rank = quantile_ranks(dist.n, q, self.confidence)
        ranks = [r for r in (low_rank, high_rank) if r is not None]
        at = dict(zip(ranks, value_at_ranks(dist.counts, ranks), strict=True))
        clip = lambda v: min(dist.high, max(dist.low, v))  # noqa: E731 - as sample_stats clips
        return (
            None if low_rank is None else clip(at[low_rank]),
            None if high_rank is None else clip(at[high_rank]),
        )

    def window_length(self, window: Window | None, now_unix: float) -> float:
        elapsed = max(0.0, now_unix - (self.origin_unix if self.origin_unix is not None else now_unix))
        intervals = window_intervals(window, self.stages, elapsed)
        return sum(max(0.0, min(b, elapsed) - a) for a, b in intervals)

    def errors_of(self, slo: Slo) -> tuple[int, int]:
        """Errors and requests in the SLO's scope so far."""
        scope = self.scopes.get(scope_key(slo))  # none for a soak trend (not tracked live)
        return (scope.errors, scope.requests) if scope is not None else (0, 0)

    def verdicts(self, now_unix: float) -> list[Verdict]:
        """Every SLO's verdict on the records so far (engine capabilities checked when one is named)."""
        out = []
        for slo in self.slos:
            skipped = unmeasured(slo, self.engine, self.confidence) if self.engine else None
            out.append(skipped or verdict_of(slo, self.facts(slo, now_unix), self.confidence))
        return out


def scope_key(slo: Slo) -> ScopeKey:
    return tuple(sorted(slo.requests)), slo.window
