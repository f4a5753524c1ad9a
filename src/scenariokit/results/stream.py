"""The summary's tables and verdicts from a run folder in bounded memory: the Parquet parts are read a
record batch at a time (pyarrow, BATCH_ROWS rows), never whole.

One pass feeds, per batch: the SLO tracker (results/tracker.py; origin the engine's start, as the summary
judges), a row accumulator per table row (overall, per request name, per stage: what `metrics.summarize`
computes) and one distribution per time metric. A second pass, only for percentile SLOs, reads the exact
samples at the order-statistic ranks that bound each percentile (the summary shows them): the histogram
says which bucket holds the rank and how many samples lie below it, and the pass keeps only that bucket's
samples. Memory is then the accumulators (one HDR's counts, ~184 KB, per distribution) plus one batch plus
the samples of one 3-significant-digit bucket, whatever the run's length.

Every percentile, count, rate and status equals the in-memory path's (tests/test_stream.py); a mean's spread
is merged batch by batch and equals numpy's two-pass figure to rounding (its t bounds likewise).
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from scenariokit.compile.ir import TIME_METRICS, Slo, Stage, StageTable
from scenariokit.engines.records import RequestRecord
from scenariokit.results.confidence import DEFAULT_CONFIDENCE, quantile_ranks
from scenariokit.results.inflight import InFlight
from scenariokit.results.metrics import (
    TIME_METRIC_VALUES,
    FaultSpans,
    SampleStats,
    fault_spans,
    hdr_indexes,
    micros_up,
    window_intervals,
)
from scenariokit.results.recovery import Occurrence, recoveries
from scenariokit.results.seconds import RequestSeconds, SecondTable
from scenariokit.results.slo import (
    Facts,
    GoodputRule,
    Verdict,
    is_extreme,
    judge_recovery,
    unmeasured,
    verdict_of,
)
from scenariokit.results.tracker import Distribution, SloTracker, scope_key

BATCH_ROWS = 65_536


def record_batches(run_dir: Path, batch_rows: int = BATCH_ROWS) -> Iterator[list[RequestRecord]]:
    """The stored records in `load_records`' order, a batch at a time."""
    for part in sorted((run_dir / "records").glob("part-*.parquet")):
        source = pq.ParquetFile(part)
        present = [f for f in RequestRecord._fields if f in source.schema_arrow.names]
        for batch in source.iter_batches(batch_size=batch_rows, columns=present):
            columns = batch.to_pydict()
            columns["itl"] = [tuple(v) if v is not None else None for v in columns["itl"]]
            for name in RequestRecord._fields:  # a part written before a field existed (code, message)
                columns.setdefault(name, [None] * batch.num_rows)
            ordered = [columns[name] for name in RequestRecord._fields]
            yield list(map(RequestRecord._make, zip(*ordered, strict=True)))


@dataclass
class RowTotals:
    """`metrics.summarize`'s figures, kept a batch at a time, in the records' order."""

    requests: int = 0
    ok: int = 0
    latency: Distribution = field(default_factory=Distribution)
    kinds: Counter[str | None] = field(default_factory=Counter)
    codes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    messages: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, records: Sequence[RequestRecord]) -> None:
        self.requests += len(records)
        self.ok += sum(1 for r in records if r.ok)
        self.latency.add(np.fromiter((r.corrected_latency for r in records), float, len(records)))
        for r in records:
            if r.ok:
                continue
            self.kinds[r.error_kind] += 1
            if r.code is not None:  # metrics.error_reasons' rule
                kind = r.error_kind or "other"
                self.codes[kind][r.code] += 1
                if r.message is not None:
                    self.messages[kind].setdefault(r.code, r.message)

    def row(self, length_s: float) -> dict[str, object]:
        n, ok = self.requests, self.ok
        return {
            "requests": n,
            "ok": ok,
            "errors": n - ok,
            "error_rate": (n - ok) / n if n else None,
            "throughput": ok / length_s if length_s > 0 else None,
            "latency": self.latency.stats(),
            "errors_by_kind": dict(self.kinds.most_common()),
            "error_reasons": {
                kind: {"codes": dict(counts.most_common()), "messages": self.messages.get(kind, {})}
                for kind, counts in sorted(self.codes.items(), key=lambda item: -item[1].total())
            },
        }


@dataclass
class FaultTotals:
    """The requests started during one fault occurrence: counts, error kinds, and those never answered."""

    requests: int = 0
    errors: int = 0
    lost: int = 0  # sent in the window and never answered (no response: status 0)
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, records: Sequence[RequestRecord]) -> None:
        self.requests += len(records)
        for r in records:
            if not r.ok:
                self.errors += 1
                self.kinds[r.error_kind or "other"] += 1
            self.lost += r.status == 0


@dataclass
class Peaks:
    """The most requests in flight at once (results/inflight.py) in each of the summary's rows."""

    overall: int | None = None
    by_request: dict[str, int] = field(default_factory=dict)
    by_stage: list[int] = field(default_factory=list)  # in the stages' order


@dataclass
class StreamedRun:
    """What the summary reads besides analysis: rows, time-metric distributions and verdicts."""

    records: int
    last_end: float | None  # the latest request end, for a run.json without ended_unix
    overall: dict[str, object]
    by_request: dict[str, dict[str, object]]
    by_stage: list[dict[str, object]]
    time_metrics: dict[str, SampleStats]
    verdicts: list[Verdict]
    seconds: RequestSeconds  # the timeline and what the analysis reads per second
    good: int = 0  # requests that met every latency SLO covering them (slo.GoodputRule)
    faults: list[FaultTotals] = field(default_factory=list)  # one per occurrence, in `occurrences`' order
    # per occurrence, from its start until the target answered again (kill-target's `ready`), else = faults
    outages: list[FaultTotals] = field(default_factory=list)
    peaks: Peaks = field(default_factory=Peaks)


class _Pass:
    """The first pass's accumulators."""

    def __init__(
        self,
        slos: Sequence[Slo],
        stages: tuple[Stage, ...],
        started: float,
        c: float,
        seconds: SecondTable,
        occurrences: Sequence[Occurrence] = (),
    ) -> None:
        self.started = started
        self.seconds = seconds
        spans = fault_spans(occurrences)
        self.tracker = SloTracker(slos, stages, c, origin_unix=started, faults=spans)
        self.goodput = GoodputRule.of(slos, stages, spans)
        self.good = 0
        self.occurrences = occurrences
        self.faults = [FaultTotals() for _ in occurrences]
        self.outages = [FaultTotals() for _ in occurrences]
        self.overall = RowTotals()
        self.by_name: dict[str, RowTotals] = defaultdict(RowTotals)
        self.in_flight_by_name: dict[str, InFlight] = {}  # the run's own is the second table's
        self.windows = StageTable.of(stages).windows
        self.by_stage = [RowTotals() for _ in self.windows]
        self.metrics = {name: Distribution() for name in TIME_METRIC_VALUES}
        self.records = 0
        self.last_end: float | None = None

    def add(self, batch: list[RequestRecord]) -> None:
        if not batch:
            return
        self.records += len(batch)
        self.last_end = max(self.last_end or -math.inf, max(r.end for r in batch))
        self.tracker.add(batch)
        self.seconds.add(batch)
        self.overall.add(batch)
        names: dict[str, list[RequestRecord]] = defaultdict(list)
        for r in batch:
            names[r.name].append(r)
        for name, records in names.items():
            self.by_name[name].add(records)
            if name not in self.in_flight_by_name:
                self.in_flight_by_name[name] = InFlight(self.started, self.seconds.duration_s)
            self.in_flight_by_name[name].add(records)
        for stage, totals in zip(self.windows, self.by_stage, strict=True):
            totals.add([r for r in batch if stage.start_s <= r.t - self.started < stage.end_s])
        for name, dist in self.metrics.items():
            read = TIME_METRIC_VALUES[name]
            dist.add(np.fromiter((v for r in batch for v in read(r)), float))
        self.good += sum(1 for r in batch if self.goodput.good(r, r.t - self.started))
        if self.occurrences:
            self._count_faults(batch)

    def _count_faults(self, batch: list[RequestRecord]) -> None:
        """Each occurrence's requests, found by bisection in the batch's sorted starts: a fault that recurs
        every few seconds over a day has thousands of occurrences."""
        offsets = np.fromiter((r.t - self.started for r in batch), float, len(batch))
        order = np.argsort(offsets, kind="stable")
        starts = np.array([o.start_s for o in self.occurrences])
        ends = np.maximum(starts, np.array([o.end_s for o in self.occurrences]))
        ready = np.maximum(
            ends, np.array([o.ready_s if o.ready_s is not None else -np.inf for o in self.occurrences])
        )
        for totals, stops in ((self.faults, ends), (self.outages, ready)):
            low = np.searchsorted(offsets[order], starts, side="left")
            high = np.searchsorted(offsets[order], stops, side="left")
            for fault, a, b in zip(totals, low.tolist(), high.tolist(), strict=True):
                if b > a:
                    fault.add([batch[i] for i in sorted(order[a:b].tolist())])


def stream_run(
    run_dir: Path,
    slos: Sequence[Slo],
    stages: tuple[Stage, ...],
    engine: str,
    started: float,
    ended: float | None,
    dropped_times: Sequence[float] = (),
    confidence: float = DEFAULT_CONFIDENCE,
    groups: dict[float, list[int]] | None = None,
    occurrences: Sequence[Occurrence] = (),
) -> StreamedRun:
    """The summary's figures over the run folder's records; `ended` None: the last request's end (one
    more pass, over two columns). `groups`: the analysis's load levels (analysis.level_groups);
    `occurrences`: the run's applied faults (results/recovery.py), for fault windows and recoveries."""
    ended = ended if ended is not None else last_end(run_dir, started)
    duration = max(0.0, ended - started)
    with tempfile.TemporaryDirectory(prefix="scenariokit-seconds-") as spill:
        table = SecondTable(started, duration, Path(spill), groups)
        first = _Pass(slos, stages, started, confidence, table, occurrences)
        for batch in record_batches(run_dir):
            first.add(batch)
        per_second = first.seconds.result()
    exact = exact_order_statistics(run_dir, first.tracker, confidence)
    found = recoveries(occurrences, per_second.timeline)
    verdicts = []
    for slo in slos:
        if slo.metric == "recovery_time":
            mine = [r for (name, _), r in found.items() if name == slo.subject]
            verdicts.append(judge_recovery(slo, mine, confidence))
            continue
        bounds = exact.get(first.tracker.slos.index(slo)) if slo in first.tracker.slos else None
        spans = first.tracker.faults
        facts = _facts(first.tracker, slo, started + duration, bounds, dropped_times, stages, started, spans)
        verdicts.append(unmeasured(slo, engine, confidence) or verdict_of(slo, facts, confidence))
    by_stage = []
    for stage, totals in zip(first.windows, first.by_stage, strict=True):
        length = max(0.0, min(stage.end_s, duration) - stage.start_s)
        level = (stage.start, stage.end)
        by_stage.append(
            {
                "label": stage.label,
                "kind": stage.kind,
                "start_s": stage.start_s,
                "end_s": stage.end_s,
                "level": level,
            }
            | totals.row(length)
        )
    return StreamedRun(
        records=first.records,
        last_end=first.last_end,
        overall=first.overall.row(duration),
        by_request={name: first.by_name[name].row(duration) for name in sorted(first.by_name)},
        by_stage=by_stage,
        time_metrics={name: dist.stats() for name, dist in first.metrics.items()},
        verdicts=verdicts,
        seconds=per_second,
        good=first.good,
        faults=first.faults,
        outages=first.outages,
        peaks=Peaks(
            overall=first.seconds.in_flight.peak(),
            by_request={name: peak.peak() for name, peak in sorted(first.in_flight_by_name.items())},
            by_stage=[first.seconds.in_flight.peak(w.start_s, w.end_s) for w in first.windows],
        ),
    )


def last_end(run_dir: Path, default: float) -> float:
    """The latest request end (start + latency) among the stored records; `default` when there is none."""
    latest = -math.inf
    for part in sorted((run_dir / "records").glob("part-*.parquet")):
        for batch in pq.ParquetFile(part).iter_batches(batch_size=BATCH_ROWS, columns=["t", "latency"]):
            columns = batch.to_pydict()
            latest = max(
                latest,
                max(
                    (t + lat for t, lat in zip(columns["t"], columns["latency"], strict=True)), default=latest
                ),
            )
    return latest if latest > -math.inf else default


def _facts(
    tracker: SloTracker,
    slo: Slo,
    end_unix: float,
    bounds: tuple[float | None, float | None] | None,
    dropped_times: Sequence[float],
    stages: tuple[Stage, ...],
    started: float,
    faults: FaultSpans,
) -> Facts:
    """The tracker's facts, with the exact order statistics and the reader's drops the summary judges."""
    facts = tracker.facts(slo, end_unix)
    if bounds is not None:
        return replace(facts, q_low=bounds[0], q_high=bounds[1])
    if slo.metric == "dropped_iterations":  # as RunData.dropped_in
        intervals = window_intervals(slo.window, stages, end_unix - started, faults)
        dropped = sum(1 for t in dropped_times if any(a <= t - started < b for a, b in intervals))
        return Facts(float(dropped), facts.samples + dropped, dropped)
    return facts


def exact_order_statistics(
    run_dir: Path, tracker: SloTracker, c: float
) -> dict[int, tuple[float | None, float | None]]:
    """Per percentile SLO (by index), the exact samples at the ranks bounding its percentile: one more
    pass, keeping only the samples of the buckets that hold those ranks."""
    wanted: dict[int, list[tuple[int | None, int, int]]] = {}  # slo -> (rank, bucket, samples below)
    for i, slo in enumerate(tracker.slos):
        if slo.metric not in TIME_METRICS or slo.percentile is None or is_extreme(slo):
            continue
        dist = tracker.distribution(slo)
        if dist.n == 0:
            continue
        cumulative = np.cumsum(dist.counts)
        picks = []
        for rank in quantile_ranks(dist.n, slo.percentile / 100, c):
            if rank is None:
                picks.append((None, -1, 0))
                continue
            bucket = int(np.searchsorted(cumulative, rank, side="left"))
            picks.append((rank, bucket, int(cumulative[bucket - 1]) if bucket else 0))
        wanted[i] = picks
    if not wanted:
        return {}
    kept: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)  # (slo, bucket) -> its samples
    for batch in record_batches(run_dir):
        for i, picks in wanted.items():
            slo = tracker.slos[i]
            records = tracker.select(scope_key(slo), batch)
            values = np.fromiter((v for r in records for v in TIME_METRIC_VALUES[slo.metric](r)), float)
            buckets = hdr_indexes(micros_up(values))
            for _, bucket, _ in picks:
                if bucket >= 0:
                    kept[i, bucket].append(values[buckets == bucket])
    out: dict[int, tuple[float | None, float | None]] = {}
    for i, picks in wanted.items():
        found: list[float | None] = []
        for rank, bucket, below in picks:
            if rank is None:
                found.append(None)
                continue
            samples = np.sort(np.concatenate(kept[i, bucket]))
            found.append(float(samples[rank - below - 1]))
        out[i] = (found[0], found[1])
    return out
