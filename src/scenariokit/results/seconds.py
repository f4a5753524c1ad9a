"""What the timeline and the analysis read from a run's records, per second, without a histogram per second.

`SecondTable` is fed record batches (all of a run's records in memory, or a Parquet part's batch at a time:
results/stream.py) and keeps counts, sums and extremes per second in arrays (a day is 86,400 rows of a few
numbers), a distribution of ok latencies per load level (results/analysis.py groups the seconds into at most
a dozen levels), and spills each request's (second, histogram bucket, ok) to a file per SPILL_SECONDS of the
run. The per-second nearest-rank percentiles are taken one file at a time, so memory is the arrays plus one
file's triples: bounded by the request rate, not by the run's length.

Its figures equal `metrics.timeline` and what the analysis computed from the records (tests/test_stream.py):
the same HDR buckets, the same nearest rank, the same clipping to each second's observed extremes.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from scenariokit.engines.records import RequestRecord
from scenariokit.results.inflight import InFlight
from scenariokit.results.metrics import (
    HDR_GRID,
    MICROS,
    SampleStats,
    _spread_busy_time,
    hdr_indexes,
    micros_up,
)
from scenariokit.results.tracker import Distribution

SPILL_SECONDS = 600  # per-second percentiles are computed this many seconds of the run at a time
Row = dict[str, float | int | None]


@dataclass(frozen=True)
class LevelTotals:
    """The requests started in one load level's seconds."""

    requests: int
    ok: int
    ok_latency: SampleStats


@dataclass(frozen=True)
class RequestSeconds:
    """The per-second view of a run's requests that the analysis reads."""

    timeline: list[Row]  # metrics.timeline's rows
    ok_p95: list[float | None]  # per second: the p95 of the ok requests' latency (None: no ok request)
    kinds: list[tuple[str | None, int]]  # error kinds over all records, most common first
    kind_seconds: dict[str | None, list[int]]  # per error kind: its errors in each second
    answered: frozenset[int]  # the seconds (from the origin, any sign) in which some request got an ok
    groups: dict[float, list[int]]  # load level -> its seconds (results/analysis.py `level_groups`)
    levels: list[LevelTotals]  # one per group, in `groups`' order
    peak_in_flight: list[int] = field(default_factory=list)  # per second (results/inflight.py)


class SecondTable:
    def __init__(
        self, started: float, duration_s: float, spill: Path, groups: dict[float, list[int]] | None = None
    ) -> None:
        self.started = started
        self.duration_s = duration_s
        self.seconds = max(1, math.ceil(duration_s))
        self.spill = spill
        self.sent = np.zeros(self.seconds, dtype=np.int64)
        self.ok = np.zeros(self.seconds, dtype=np.int64)
        # each second's extremes, of all latencies and of the ok ones (sample_stats clips percentiles to them)
        self.low, self.high = np.full(self.seconds, math.inf), np.full(self.seconds, -math.inf)
        self.ok_low, self.ok_high = np.full(self.seconds, math.inf), np.full(self.seconds, -math.inf)
        self.busy = [0.0] * self.seconds  # a list: added in the records' order, as timeline adds
        self.kinds: Counter[str | None] = Counter()
        self.kind_seconds: dict[str | None, np.ndarray] = {}
        self.answered: set[int] = set()  # ok seconds outside [0, seconds): the in-range ones are `ok > 0`
        self.groups = groups or {}
        self.group_of = np.full(self.seconds, -1, dtype=np.int64)
        for g, indexes in enumerate(self.groups.values()):
            self.group_of[[i for i in indexes if i < self.seconds]] = g
        self.group_requests = np.zeros(len(self.groups), dtype=np.int64)
        self.group_ok = np.zeros(len(self.groups), dtype=np.int64)
        self.group_latency = [Distribution() for _ in self.groups]
        self.in_flight = InFlight(started, duration_s)  # all requests: the peaks of rows and seconds

    def add(self, batch: Sequence[RequestRecord]) -> None:
        if not batch:
            return
        self.in_flight.add(batch)
        size = len(batch)
        offsets = np.fromiter((r.t - self.started for r in batch), float, size)
        second = np.floor(offsets).astype(np.int64)
        latency = np.fromiter((r.corrected_latency for r in batch), float, size)
        ok = np.fromiter((r.ok for r in batch), bool, size)
        for r in batch:
            _spread_busy_time(self.busy, r.t - self.started, r.end - self.started)
        inside = (second >= 0) & (second < self.seconds)
        self.answered.update(int(i) for i in second[ok & ~inside])
        self._errors(batch, second, inside)
        second, latency, ok = second[inside], latency[inside], ok[inside]
        np.add.at(self.sent, second, 1)
        np.add.at(self.ok, second, ok.astype(np.int64))
        np.minimum.at(self.low, second, latency)
        np.maximum.at(self.high, second, latency)
        np.minimum.at(self.ok_low, second[ok], latency[ok])
        np.maximum.at(self.ok_high, second[ok], latency[ok])
        self._levels(second, latency, ok)
        self._spill(second, hdr_indexes(micros_up(latency)), ok)

    def _errors(self, batch: Sequence[RequestRecord], second: np.ndarray, inside: np.ndarray) -> None:
        for r, i, counted in zip(batch, second.tolist(), inside.tolist(), strict=True):
            if r.ok:
                continue
            kind = r.error_kind
            self.kinds[kind] += 1
            if counted:
                if kind not in self.kind_seconds:
                    self.kind_seconds[kind] = np.zeros(self.seconds, dtype=np.int64)
                self.kind_seconds[kind][i] += 1

    def _levels(self, second: np.ndarray, latency: np.ndarray, ok: np.ndarray) -> None:
        if not self.groups:
            return
        group = self.group_of[second]
        member = group >= 0
        np.add.at(self.group_requests, group[member], 1)
        np.add.at(self.group_ok, group[member & ok], 1)
        for g in np.unique(group[member & ok]):
            self.group_latency[g].add(latency[(group == g) & ok])

    def _spill(self, second: np.ndarray, bucket: np.ndarray, ok: np.ndarray) -> None:
        chunk = second // SPILL_SECONDS
        for c in np.unique(chunk):
            mine = chunk == c
            triples = np.stack([second[mine], bucket[mine], ok[mine]], axis=1).astype(np.int32)
            with (self.spill / f"{int(c):06d}.i32").open("ab") as out:
                out.write(triples.tobytes())

    def percentiles(self, wanted: Sequence[float], ok_only: bool = False) -> dict[str, np.ndarray]:
        """Per second and percentile, `sample_stats`' value (NaN for a second with no such request)."""
        out = {f"p{p:g}": np.full(self.seconds, np.nan) for p in wanted}
        counts, low, high = (
            (self.ok, self.ok_low, self.ok_high) if ok_only else (self.sent, self.low, self.high)
        )
        for path in sorted(self.spill.glob("*.i32")):
            triples = np.fromfile(path, dtype=np.int32).reshape(-1, 3)
            if ok_only:
                triples = triples[triples[:, 2] == 1]
            order = np.lexsort((triples[:, 1], triples[:, 0]))  # by second, then by bucket
            second, bucket = triples[order, 0], triples[order, 1]
            present = np.unique(second)
            starts = np.searchsorted(second, present, side="left")
            for p in wanted:
                ranks = np.maximum(1, np.ceil(p / 100 * counts[present] - 1e-9)).astype(np.int64)
                values = bucket_tops()[bucket[starts + ranks - 1]] / MICROS  # metrics._nearest_rank
                out[f"p{p:g}"][present] = np.minimum(high[present], np.maximum(low[present], values))
        return out

    def timeline(self) -> list[Row]:
        """Equal to `metrics.timeline` over the same records."""
        at = self.percentiles((50.0, 95.0, 99.0))
        rows: list[Row] = []
        for i in range(self.seconds):
            sent, ok = int(self.sent[i]), int(self.ok[i])
            row: Row = {"second": i, "sent": sent, "ok": ok, "errors": sent - ok, "concurrency": self.busy[i]}
            rows.append(row | {name: None if sent == 0 else float(values[i]) for name, values in at.items()})
        return rows

    def result(self) -> RequestSeconds:
        ok_p95 = self.percentiles((95.0,), ok_only=True)["p95"]
        return RequestSeconds(
            timeline=self.timeline(),
            ok_p95=[None if self.ok[i] == 0 else float(ok_p95[i]) for i in range(self.seconds)],
            kinds=self.kinds.most_common(),
            kind_seconds={kind: counts.tolist() for kind, counts in self.kind_seconds.items()},
            answered=frozenset(self.answered | {int(i) for i in np.flatnonzero(self.ok)}),
            groups=self.groups,
            levels=[
                LevelTotals(int(n), int(k), dist.stats())
                for n, k, dist in zip(self.group_requests, self.group_ok, self.group_latency, strict=True)
            ],
            peak_in_flight=self.in_flight.per_second(self.seconds),
        )


@cache
def bucket_tops() -> np.ndarray:
    """Each histogram bucket's highest equivalent value in microseconds (what `_nearest_rank` reports)."""
    grid = HDR_GRID
    return np.array(
        [grid.get_highest_equivalent_value(grid.get_value_from_index(i)) for i in range(grid.counts_len)],
        dtype=np.int64,
    )


def request_seconds(
    batches: Iterable[Sequence[RequestRecord]],
    started: float,
    duration_s: float,
    groups: dict[float, list[int]] | None = None,
) -> RequestSeconds:
    """The per-second view of the records in `batches` (a run's records in one batch, or streamed)."""
    with tempfile.TemporaryDirectory(prefix="scenariokit-seconds-") as spill:
        table = SecondTable(started, duration_s, Path(spill), groups)
        for batch in batches:
            table.add(batch)
        return table.result()
