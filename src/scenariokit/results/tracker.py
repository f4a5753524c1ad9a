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
Goodput counts, per scope, the requests `slo.GoodputRule` calls good; max(throughput) keeps, per scope, an
ok count per second of the run (8 bytes a second). recovery_time is judged after the run, from the
per-second figures (results/recovery.py), like the soak trends.

Fault windows (`during kill`, `after kill for 30s`, and a goodput whose latency SLOs name one) need the
fault's times, known only as the run goes. After the run (results/stream.py) the tracker is given the whole
timeline. During it (`faults=None`) the runner tells it what it knows with `known_faults(spans, until)`:
the occurrences so far (an active one ending at inf) and the time up to which that is final. Until then a
record that such a scope might hold waits in a buffer, at most MAX_PENDING records (the oldest beyond it
are dropped from those scopes' live verdicts and counted in `unplaced`; the summary judges the stored
records again), so memory stays bounded whatever the runner does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scenariokit.compile.ir import FLEET_METRICS, TIME_METRICS, TREND_METRICS, Slo, Stage, Window
from scenariokit.engines.records import RequestRecord
from scenariokit.results.confidence import DEFAULT_CONFIDENCE, quantile_ranks
from scenariokit.results.metrics import (
    EMPTY,
    HDR_GRID,
    NO_FAULTS,
    PERCENTILES,
    TIME_METRIC_VALUES,
    FaultSpans,
    SampleStats,
    hdr_indexes,
    inside,
    micros_up,
    nearest_rank_of_counts,
    value_at_ranks,
    window_intervals,
)
from scenariokit.results.recovery import seconds_inside
from scenariokit.results.slo import (
    WRONG_SIDE,
    Facts,
    GoodputRule,
    Verdict,
    is_extreme,
    is_sustained,
    sustained_facts,
    unmeasured,
    verdict_of,
)

ScopeKey = tuple[tuple[str, ...], Window | None]
MAX_PENDING = 500_000  # records waiting for a fault window's bounds, during the run
# judged on the whole run after it, not kept here (the GPU gauges from the monitor's samples)
AFTER_RUN = frozenset({"recovery_time"}) | TREND_METRICS | FLEET_METRICS


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
    good: int = 0  # goodput: requests that met every latency SLO covering them (counted when asked)
    counts_good: bool = False
    per_second: np.ndarray | None = None  # max(throughput): ok requests per second of the run

    def count_ok_seconds(self, seconds: np.ndarray) -> None:
        """Add the ok requests' seconds from the origin (those before it are in no second)."""
        assert self.per_second is not None
        seconds = seconds[seconds >= 0]
        if not len(seconds):
            return
        need = int(seconds.max()) + 1
        if need > len(self.per_second):
            grown = np.zeros(max(need, 2 * len(self.per_second)), dtype=np.int64)
            grown[: len(self.per_second)] = self.per_second
            self.per_second = grown
        np.add.at(self.per_second, seconds, 1)


class SloTracker:
    """A record sink (`add(batch)`, `close()`) whose verdicts cost O(SLOs), whatever the run's length.

    `origin_unix` is the run's clock origin for windows (the engine's start); when it is not known yet,
    the first batch's earliest start stands in for it, as the abort judge always did. `faults`: the run's
    whole fault timeline (offsets from the origin), or None while the run goes on (`known_faults`)."""

    def __init__(
        self,
        slos: Sequence[Slo],
        stages: tuple[Stage, ...],
        confidence: float = DEFAULT_CONFIDENCE,
        engine: str | None = None,
        origin_unix: float | None = None,
        faults: FaultSpans | None = NO_FAULTS,
    ) -> None:
        # soak trends and recoveries are read from the whole run after it, not kept live
        self.every = tuple(slos)
        self.slos = tuple(slo for slo in slos if slo.metric not in AFTER_RUN)
        self.stages = stages
        self.confidence = confidence
        self.engine = engine
        self.origin_unix = origin_unix
        self.faults: FaultSpans = faults if faults is not None else {}
        self.settled_until = math.inf if faults is not None else -math.inf  # offsets: the timeline is final
        self.pending: list[RequestRecord] = []
        self.unplaced = 0
        self.goodput = GoodputRule.of(self.every, stages, self.faults)
        self.scopes: dict[ScopeKey, Scope] = {}
        self.beyond: list[int] = [0] * len(self.slos)  # per percentile SLO: samples beyond its limit
        for slo in self.slos:
            scope = self.scopes.setdefault(scope_key(slo), Scope())
            if slo.metric in TIME_METRICS:
                scope.metrics.setdefault(slo.metric, Distribution())
            scope.counts_good = scope.counts_good or slo.metric == "goodput"
            if is_sustained(slo) and scope.per_second is None:
                scope.per_second = np.zeros(64, dtype=np.int64)
        stage_names = {s.label for s in stages} | {s.kind for s in stages}
        self.waiting = frozenset(key for key in self.scopes if self._needs_faults(key, stage_names))

    def _needs_faults(self, key: ScopeKey, stage_names: set[str]) -> bool:
        """A scope whose records' places depend on fault times: its window names a fault, or it counts
        goodput and a latency SLO's window does."""
        names = [key[1]] + [slo.window for slo, *_ in self.goodput.covering] * self.scopes[key].counts_good
        return any(w is not None and w.stage is not None and w.stage not in stage_names for w in names)

    def add(self, batch: Sequence[RequestRecord]) -> None:
        if not batch:
            return
        if self.origin_unix is None:
            self.origin_unix = min(r.t for r in batch)
        if not self.waiting or self.settled_until == math.inf:
            self._place(batch, self.scopes)
            return
        self._place(batch, {k: v for k, v in self.scopes.items() if k not in self.waiting})
        self.pending.extend(batch)
        self._settle()

    def known_faults(self, spans: FaultSpans, until_unix: float) -> None:
        """What the runner knows of the fault timeline: each fault's occurrences so far as unix (start,
        end) pairs (an active one ending at inf), final for every instant before `until_unix`."""
        origin = self.origin_unix if self.origin_unix is not None else until_unix
        self.faults = {name: [(a - origin, b - origin) for a, b in found] for name, found in spans.items()}
        self.goodput = GoodputRule.of(self.every, self.stages, self.faults)
        self.settled_until = max(self.settled_until, until_unix - origin)
        self._settle()

    def _settle(self) -> None:
        """Place the waiting records the timeline is final for; keep at most MAX_PENDING of the rest."""
        origin = self.origin_unix or 0.0
        ready = [r for r in self.pending if r.t - origin < self.settled_until]
        if ready:
            self.pending = [r for r in self.pending if r.t - origin >= self.settled_until]
            self._place(ready, {k: self.scopes[k] for k in self.waiting})
        if len(self.pending) > MAX_PENDING:
            self.pending.sort(key=lambda r: r.t)
            self.unplaced += len(self.pending) - MAX_PENDING
            del self.pending[: len(self.pending) - MAX_PENDING]

    def _place(self, batch: Sequence[RequestRecord], scopes: dict[ScopeKey, Scope]) -> None:
        """Count the batch's records in the given scopes."""
        origin = self.origin_unix or 0.0
        chosen = {key: self.select(key, batch) for key in scopes}
        values: dict[tuple[ScopeKey, str], np.ndarray] = {}
        for key, scope in scopes.items():
            records = chosen[key]
            ok = sum(1 for r in records if r.ok)
            scope.requests, scope.ok, scope.errors = (
                scope.requests + len(records),
                scope.ok + ok,
                scope.errors + len(records) - ok,
            )
            if scope.counts_good:
                scope.good += sum(1 for r in records if self.goodput.good(r, r.t - origin))
            if scope.per_second is not None:
                offsets = np.fromiter((r.t - origin for r in records if r.ok), float)
                scope.count_ok_seconds(np.floor(offsets).astype(np.int64))
            for metric, dist in scope.metrics.items():
                read = TIME_METRIC_VALUES[metric]
                values[key, metric] = np.fromiter((v for r in records for v in read(r)), float)
                dist.add(values[key, metric])
        for i, slo in enumerate(self.slos):
            key = scope_key(slo)
            if key in scopes and slo.metric in TIME_METRICS and slo.percentile is not None:
                if is_extreme(slo):
                    continue
                wrong = WRONG_SIDE[slo.op][0]
                self.beyond[i] += int(np.count_nonzero(wrong(values[key, slo.metric], slo.threshold)))

    def close(self) -> None:
        """Nothing to flush: the tracker holds counts (and, during a run, records awaiting a fault's end)."""

    def select(self, key: ScopeKey, batch: Sequence[RequestRecord]) -> Sequence[RequestRecord]:
        """The batch's records in the scope: its request names, started inside its window."""
        names, window = key
        origin = self.origin_unix or 0.0
        # no window is [0, inf): a record that started before the origin is in no scope (RunData.select)
        intervals = window_intervals(window, self.stages, math.inf, self.faults)
        offsets = np.fromiter((r.t - origin for r in batch), float, len(batch))
        return [
            r
            for r, kept in zip(batch, inside(offsets, intervals).tolist(), strict=True)
            if kept and (not names or r.name in names)
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
        if slo.metric == "success_rate":
            rate = scope.ok / scope.requests if scope.requests else None
            return Facts(rate, scope.requests, scope.ok)
        if is_sustained(slo) and scope.per_second is not None:
            whole = math.floor(self.elapsed(now_unix))
            counts = np.zeros(whole, dtype=np.int64)
            kept = scope.per_second[:whole]
            counts[: len(kept)] = kept
            intervals = window_intervals(slo.window, self.stages, whole, self.faults)
            return sustained_facts(counts, seconds_inside(whole, intervals))
        if slo.metric in ("throughput", "goodput"):
            length = self.window_length(slo.window, now_unix)
            count = scope.good if slo.metric == "goodput" else scope.ok
            return Facts(count / length if length > 0 else None, count, count, length=length)
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

    def elapsed(self, now_unix: float) -> float:
        return max(0.0, now_unix - (self.origin_unix if self.origin_unix is not None else now_unix))

    def window_length(self, window: Window | None, now_unix: float) -> float:
        elapsed = self.elapsed(now_unix)
        intervals = window_intervals(window, self.stages, elapsed, self.faults)
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
